//! The statistics behind the statistical rules: the Mann–Whitney U test that
//! Kayenta's judge uses (asymptotic, with tie and continuity corrections, as
//! scipy computes it), a sequential e-detector (an e-CUSUM over a mixture of
//! alternatives: its false alarms are bounded however long it watches), and the
//! confidence bounds they need. Pinned against scipy in the tests.

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function, to a relative error below 1.2e-7
/// (Chebyshev fit of Numerical Recipes' `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The result of a Mann–Whitney U test of `x` against `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of `x`: how many (x, y) pairs have x above y (ties count a half).
    pub u: f64,
    /// One-sided p-value that `x` tends to be larger than `y`.
    pub p_greater: f64,
    /// One-sided p-value that `x` tends to be smaller than `y`.
    pub p_less: f64,
}

/// The Mann–Whitney U test of `x` against `y` by the normal approximation,
/// with the tie correction and the continuity correction (scipy's
/// `mannwhitneyu(x, y, method="asymptotic")`). `None` when either is empty.
/// When every value is the same the test can tell nothing: both p-values are 1.
pub fn mann_whitney(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let (mut r1, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Tied values share the mean of their ranks (1-based).
        let rank = (i + j) as f64 / 2.0 + 1.0;
        r1 += rank * all[i..=j].iter().filter(|v| v.1).count() as f64;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let (a, b) = (n1 as f64, n2 as f64);
    let u1 = r1 - a * (a + 1.0) / 2.0;
    let u2 = a * b - u1;
    let mu = a * b / 2.0;
    let nn = n as f64;
    let var = a * b / 12.0 * ((nn + 1.0) - ties / (nn * (nn - 1.0)).max(1.0));
    let p = |u: f64| {
        if var <= 0.0 {
            1.0
        } else {
            normal_sf((u - mu - 0.5) / var.sqrt())
        }
    };
    Some(MannWhitney {
        u: u1,
        p_greater: p(u1),
        p_less: p(u2),
    })
}

/// The Wilson score upper bound of a proportion: `k` of `n` with `z` standard
/// errors (one-sided). With `n = 0`, 1.
pub fn wilson_upper(k: usize, n: usize, z: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let d = 1.0 + z * z / n;
    let c = p + z * z / (2.0 * n);
    let r = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((c + r) / d).min(1.0)
}

/// The odds ratios of the alternatives the e-detector mixes: a breach that
/// doubles, quadruples or multiplies by eight the odds of a bad sample.
const ODDS: [f64; 3] = [2.0, 4.0, 8.0];

/// A sequential e-detector of a rise in the share of bad samples: an e-CUSUM
/// (Shin, Ramdas & Rinaldo, "E-detectors", 2023) over a mixture of likelihood
/// ratios against the null "a sample is bad with probability at most `p0`".
///
/// Each new sample multiplies each alternative's statistic by its likelihood
/// ratio, after lifting it back to 1 when it fell below (the CUSUM restart);
/// their mean is the detector. Under the null, the mean number of samples before
/// it first reaches `1/α` is at least `1/α`, however long it watches, so
/// continuous monitoring keeps its false alarms bounded. After a breach begins,
/// it grows by the breach's information per sample from the moment it began:
/// nothing is diluted by the healthy samples before it, unlike a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    p0: f64,
    /// ln of each alternative's likelihood ratio for a bad and a good sample.
    bad: [f64; 3],
    good: [f64; 3],
    /// ln of each alternative's CUSUM statistic.
    log_m: [f64; 3],
    samples: usize,
}

impl Detector {
    /// A detector of "bad samples are more frequent than `p0`".
    pub fn new(p0: f64) -> Detector {
        let p0 = p0.clamp(1e-6, 1.0 - 1e-6);
        let odds0 = p0 / (1.0 - p0);
        let mut bad = [0.0; 3];
        let mut good = [0.0; 3];
        for (i, k) in ODDS.iter().enumerate() {
            let o = odds0 * k;
            let p1 = o / (1.0 + o);
            bad[i] = (p1 / p0).ln();
            good[i] = ((1.0 - p1) / (1.0 - p0)).ln();
        }
        Detector {
            p0,
            bad,
            good,
            log_m: [0.0; 3],
            samples: 0,
        }
    }

    pub fn p0(&self) -> f64 {
        self.p0
    }

    /// Samples seen.
    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn push(&mut self, is_bad: bool) {
        self.samples += 1;
        for i in 0..ODDS.len() {
            let lr = if is_bad { self.bad[i] } else { self.good[i] };
            self.log_m[i] = self.log_m[i].max(0.0) + lr;
        }
    }

    /// How many bad samples in a row lift a fresh detector of `p0` to `level`.
    pub fn samples_to_reach(p0: f64, level: f64) -> Option<usize> {
        let mut d = Detector::new(p0);
        (1..=100_000).find(|_| {
            d.push(true);
            d.e_value() >= level
        })
    }

    /// The detector's e-value: the mean of the alternatives' statistics.
    pub fn e_value(&self) -> f64 {
        self.log_m.iter().map(|l| l.min(700.0).exp()).sum::<f64>() / ODDS.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    /// Values computed once with scipy 1.x:
    /// `scipy.stats.mannwhitneyu(x, y, alternative=..., method="asymptotic")`
    /// and `scipy.stats.norm.sf`; pinned here so the tests need no Python.
    #[test]
    fn normal_tail_matches_scipy() {
        for (z, p) in SF {
            assert!(close(normal_sf(*z), *p, 2e-7), "sf({z}) = {} not {p}", normal_sf(*z));
        }
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        for (x, y, u, greater, less) in MWU {
            let r = mann_whitney(x, y).unwrap();
            assert_eq!(r.u, *u, "U of {x:?} vs {y:?}");
            assert!(
                close(r.p_greater, *greater, 1e-6),
                "greater {} vs {greater}",
                r.p_greater
            );
            assert!(close(r.p_less, *less, 1e-6), "less {} vs {less}", r.p_less);
        }
        assert_eq!(mann_whitney(&[], &[1.0]), None);
        let same = mann_whitney(&[2.0; 5], &[2.0; 7]).unwrap();
        assert_eq!((same.p_greater, same.p_less), (1.0, 1.0));
    }

    #[test]
    fn wilson_upper_bound() {
        // The root p > k/n of (k/n - p)^2 = z^2 p (1 - p) / n, found with
        // scipy.optimize.brentq; z = scipy.stats.norm.ppf(0.9).
        let z = 1.281_551_565_544_600_4;
        for (k, n, ub) in WILSON {
            assert!(
                close(wilson_upper(*k, *n, z), *ub, 1e-9),
                "{k}/{n}: {}",
                wilson_upper(*k, *n, z)
            );
        }
        assert_eq!(wilson_upper(0, 0, z), 1.0);
    }

    #[test]
    fn the_detector_stays_low_on_healthy_samples_and_rises_on_a_breach() {
        let mut d = Detector::new(0.01);
        // 1% bad, evenly spread: the detector never gets near 1000.
        for i in 0..100_000 {
            d.push(i % 100 == 0);
            assert!(d.e_value() < 1000.0, "sample {i}: {}", d.e_value());
        }
        // 8% bad from now: it passes 1000 within a few hundred samples.
        let mut n = 0;
        while d.e_value() < 1000.0 {
            d.push(n % 12 == 0);
            n += 1;
            assert!(n < 400, "not detected after {n} samples");
        }
        assert!(n > 20, "detected too fast to be a test: {n}");
        // Each alternative's likelihood ratios, by hand: odds 1/99 doubled is p1 = 2/101.
        let d = Detector::new(0.01);
        assert!((d.bad[0] - (2.0f64 / 101.0 / 0.01).ln()).abs() < 1e-12);
        assert!((d.good[0] - ((99.0f64 / 101.0) / 0.99).ln()).abs() < 1e-12);
    }

    // (z, scipy.stats.norm.sf(z))
    const SF: &[(f64, f64)] = &[
        (-3.0, 0.9986501019683699),
        (-1.0, 0.8413447460685429),
        (0.0, 0.5),
        (0.5, 0.3085375387259869),
        (1.0, 0.15865525393145707),
        (1.6448536269514722, 0.050000000000000044),
        (2.0, 0.022750131948179195),
        (2.5, 0.006209665325776132),
        (3.0, 0.0013498980316300933),
        (4.0, 3.167124183311986e-05),
        (5.0, 2.866515718791933e-07),
        (6.5, 4.016000583859088e-11),
    ];
    // (x, y, U1, p greater, p less)
    #[allow(clippy::type_complexity)]
    const MWU: &[(&[f64], &[f64], f64, f64, f64)] = &[
        (
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[6.0, 7.0, 8.0, 9.0, 10.0],
            0.0,
            0.9966923245172357,
            0.006092890177672406,
        ),
        (
            &[3.0, 3.0, 5.0, 7.0, 7.0, 9.0],
            &[1.0, 3.0, 3.0, 4.0, 7.0],
            22.0,
            0.11002498646495895,
            0.9214762247360839,
        ),
        (
            &[
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                1.0, 1.0, 1.0, 1.0,
            ],
            &[
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
            ],
            660.0,
            0.011751732379214994,
            0.989055189085798,
        ),
        (
            &[
                30.41, 23.01, 47.34, 23.21, 80.91, 52.32, 31.31, 45.42, 68.88, 112.32, 24.99, 55.36,
            ],
            &[
                24.71, 17.96, 31.09, 24.6, 30.89, 16.28, 20.07, 23.52, 20.24, 20.22, 14.77, 21.13, 21.65, 19.6, 19.97,
                26.54, 15.43, 26.54, 18.89, 20.54,
            ],
            220.0,
            5.366654173284303e-05,
            0.9999542923592439,
        ),
        (
            &[18.6, 28.8, 27.2, 20.1, 16.9, 42.2, 24.9, 12.7, 20.1],
            &[
                19.2, 26.8, 18.3, 14.9, 34.3, 9.1, 11.4, 16.3, 16.4, 19.1, 20.0, 29.9, 10.9, 66.3, 25.7,
            ],
            84.0,
            0.16997523017199861,
            0.844685858990254,
        ),
    ];
    // (k, n, Wilson upper)
    const WILSON: &[(usize, usize, f64)] = &[
        (0, 240, 0.006796715266206418),
        (2, 240, 0.019880804607414423),
        (3, 240, 0.025553807562605935),
        (24, 240, 0.12760031845052622),
        (120, 240, 0.5412210967412514),
        (5, 20, 0.38975558344486616),
    ];
}
