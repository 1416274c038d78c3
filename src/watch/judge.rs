//! Statistical rules: a rule with `(mann-whitney)` or `(sequential)` after its
//! baseline threshold compares the probe's samples with the baseline's samples
//! instead of one statistic with a limit. Both are explained with their numbers.
//!
//! - Mann–Whitney (Kayenta's judge): over a full window, a one-sided U test of
//!   the window's values against the baseline's; the rule holds when the test
//!   is significant (p below 1 − confidence) *and* the window's statistic is
//!   beyond the threshold (`baseline + 25%`: the effect size it must exceed).
//! - Sequential: every sample is bad or not — failed, for an error rate; beyond
//!   the threshold applied to the baseline's quantile, for a latency — and an
//!   e-detector ([`super::stats::Detector`]) tests "bad samples are no more
//!   frequent than the baseline allows". It needs no window and no minimum:
//!   the test is valid from the first sample, and it raises its verdict when the
//!   detector reaches 1 / (1 − confidence).

use super::baseline::{BaselineStats, aggregate, quantile_sorted};
use super::stats::{self, Detector};
use super::window::{History, Reading, TestReading, values, window};
use crate::oplog::SampleRow;
use crate::plan::evidence;
use crate::plan::rule::{Agg, Condition, Delta, Field, Op, StatTest, TestKind, Threshold};

/// One-sided z of the 90% upper confidence bounds taken on the baseline.
const Z90: f64 = 1.281_551_565_544_600_4;

/// Fewest baseline samples a statistical rule works with.
pub const MIN_BASELINE_SAMPLES: usize = 10;

/// The values `c` compares: the field's numbers, or for an error rate one 0/1
/// per sample (1: failed).
fn compared(c: &Condition, samples: &[&SampleRow]) -> Vec<f64> {
    match c.metric.field {
        Field::ErrorRate => samples.iter().map(|s| if s.ok { 0.0 } else { 1.0 }).collect(),
        _ => values(c, samples),
    }
}

/// The statistic an effect compares: the metric's aggregation (a rate for an
/// error rate).
fn statistic(c: &Condition, v: &[f64]) -> Option<f64> {
    match c.metric.field {
        Field::ErrorRate => aggregate(v, Agg::Mean),
        _ => aggregate(v, c.metric.agg),
    }
}

fn delta(c: &Condition) -> Delta {
    match &c.threshold {
        Threshold::Baseline { delta } => delta.clone(),
        Threshold::Absolute { .. } => Delta::None,
    }
}

fn rising(c: &Condition) -> bool {
    matches!(c.op, Op::Gt | Op::Ge)
}

fn empty_reading(cap: usize) -> Reading {
    Reading {
        holds: None,
        value: None,
        threshold: None,
        baseline: None,
        samples: 0,
        failed: 0,
        first_at: None,
        last_at: None,
        missing: None,
        capacity: cap,
        full: false,
        bound: false,
        test: None,
    }
}

fn baseline_missing(c: &Condition, b: Option<&BaselineStats>) -> Option<String> {
    let Some(b) = b else {
        return Some("no baseline: run `backout baseline` before the change".into());
    };
    let n = compared(c, &b.samples.iter().collect::<Vec<_>>()).len();
    (n < MIN_BASELINE_SAMPLES).then(|| {
        format!(
            "the baseline has {n} sample(s) of {} to test against; a statistical rule needs at least {MIN_BASELINE_SAMPLES}: run `backout baseline` again",
            c.metric.field.name()
        )
    })
}

/// Reads a Mann–Whitney rule over its window.
pub fn mann_whitney(
    c: &Condition,
    test: StatTest,
    h: History<'_>,
    now: i64,
    min: Option<usize>,
    b: Option<&BaselineStats>,
) -> Reading {
    let cap = evidence::capacity(c, std::time::Duration::from_millis(h.every_ms.max(1) as u64));
    let (win, full) = window(c, &h, now, cap);
    let mut r = empty_reading(cap);
    r.samples = win.len();
    r.failed = win.iter().filter(|s| !s.ok).count();
    r.first_at = win.first().map(|s| s.at);
    r.last_at = win.last().map(|s| s.at);
    r.full = full;
    if let Some(m) = baseline_missing(c, b) {
        r.missing = Some(m);
        return r;
    }
    let Some(b) = b else { return r };
    let ys = compared(c, &b.samples.iter().collect::<Vec<_>>());
    let min = min.unwrap_or(1);
    if win.len() < min {
        r.missing = Some(format!("{} of {min} samples needed", win.len()));
        return r;
    }
    if !full {
        r.missing = Some(format!(
            "window filling: {} of {cap} samples so far; a Mann–Whitney rule judges a full window",
            win.len()
        ));
        return r;
    }
    let xs = compared(c, &win);
    let (Some(value), Some(base)) = (statistic(c, &xs), statistic(c, &ys)) else {
        r.missing = Some(match c.metric.field {
            Field::Latency => format!(
                "no successful sample in the window ({} of {} failed)",
                r.failed,
                win.len()
            ),
            f => format!("no {} in the window", f.name()),
        });
        return r;
    };
    let Some(mw) = stats::mann_whitney(&xs, &ys) else {
        return r;
    };
    let p = if rising(c) { mw.p_greater } else { mw.p_less };
    let threshold = delta(c).apply(base);
    r.value = Some(value);
    r.baseline = Some(base);
    r.threshold = Some(threshold);
    r.holds = Some(p < 1.0 - test.confidence && c.op.holds(value, threshold));
    r.test = Some(TestReading {
        kind: TestKind::MannWhitney,
        confidence: test.confidence,
        p_value: Some(p),
        e_value: None,
        e_threshold: None,
        null_share: None,
        bad_in_window: None,
        baseline_samples: ys.len(),
    });
    r
}

/// A sequential rule's detector and what it counts as a bad sample.
#[derive(Debug, Clone)]
pub struct Sequential {
    detector: Detector,
    test: StatTest,
    /// The limit a value must pass to be bad (numbers); for an error rate, the
    /// rate the null allows.
    limit: f64,
    /// The baseline statistic the limit came from.
    base: f64,
    baseline_samples: usize,
}

impl Sequential {
    /// The detector of `c` against baseline `b`, or why there is none.
    pub fn new(c: &Condition, test: StatTest, b: Option<&BaselineStats>) -> Result<Sequential, String> {
        if let Some(m) = baseline_missing(c, b) {
            return Err(m);
        }
        let b = b.ok_or("no baseline")?;
        let ys = compared(c, &b.samples.iter().collect::<Vec<_>>());
        let n = ys.len();
        if c.metric.field == Field::ErrorRate {
            // The null: failures no more frequent than the baseline's rate at its
            // upper 90% confidence bound, plus the rule's tolerance.
            let failed = ys.iter().filter(|v| **v > 0.5).count();
            let base = stats::wilson_upper(failed, n, Z90);
            let p0 = delta(c).apply(base).clamp(1e-4, 0.99);
            return Ok(Sequential {
                detector: Detector::new(p0),
                test,
                limit: p0,
                base,
                baseline_samples: n,
            });
        }
        // The null: values beyond the threshold applied to the baseline's
        // quantile (taken at its upper 90% confidence bound) are no more
        // frequent than that quantile says.
        let q = evidence::quantile(c.metric.agg).unwrap_or(0.5);
        let mut sorted = ys;
        sorted.sort_by(f64::total_cmp);
        let se = Z90 * (q * (1.0 - q) / n as f64).sqrt();
        let (level, p0) = if rising(c) {
            ((q + se).min(0.999), 1.0 - q)
        } else {
            ((q - se).max(0.001), q)
        };
        let base = quantile_sorted(&sorted, level);
        Ok(Sequential {
            detector: Detector::new(p0),
            test,
            limit: delta(c).apply(base),
            base,
            baseline_samples: n,
        })
    }

    fn is_bad(&self, c: &Condition, s: &SampleRow) -> Option<bool> {
        if c.metric.field == Field::ErrorRate {
            return Some(!s.ok);
        }
        let v = *values(c, &[s]).first()?;
        Some(if rising(c) { v > self.limit } else { v < self.limit })
    }

    /// Counts one new sample of the rule's probe.
    pub fn push(&mut self, c: &Condition, s: &SampleRow) {
        if let Some(bad) = self.is_bad(c, s) {
            self.detector.push(bad);
        }
    }

    fn e_threshold(&self) -> f64 {
        1.0 / (1.0 - self.test.confidence)
    }

    /// The rule's reading now; the window only gives context (its statistic
    /// and how many of its samples were bad).
    pub fn read(&self, c: &Condition, h: History<'_>, now: i64) -> Reading {
        let cap = evidence::capacity(c, std::time::Duration::from_millis(h.every_ms.max(1) as u64));
        let (win, full) = window(c, &h, now, cap);
        let mut r = empty_reading(cap);
        r.samples = win.len();
        r.failed = win.iter().filter(|s| !s.ok).count();
        r.first_at = win.first().map(|s| s.at);
        r.last_at = win.last().map(|s| s.at);
        r.full = full;
        let bad = win.iter().filter(|s| self.is_bad(c, s) == Some(true)).count();
        let e = self.detector.e_value();
        r.test = Some(TestReading {
            kind: TestKind::Sequential,
            confidence: self.test.confidence,
            p_value: None,
            e_value: Some(e),
            e_threshold: Some(self.e_threshold()),
            null_share: Some(self.detector.p0()),
            bad_in_window: Some(bad),
            baseline_samples: self.baseline_samples,
        });
        if self.detector.samples() == 0 {
            r.missing = Some(match c.metric.field {
                Field::Latency if !win.is_empty() => "no successful sample yet".into(),
                _ => "no sample yet".into(),
            });
            return r;
        }
        r.value = statistic(c, &compared(c, &win));
        r.baseline = Some(self.base);
        r.threshold = Some(self.limit);
        r.holds = Some(e >= self.e_threshold());
        r
    }
}

/// Builds the detectors of every sequential rule, by rule index.
pub fn detectors<'a>(
    conds: impl Iterator<Item = (usize, &'a Condition)>,
    baselines: &std::collections::HashMap<String, BaselineStats>,
) -> std::collections::HashMap<usize, Result<Sequential, String>> {
    conds
        .filter_map(|(i, c)| {
            let t = c.test.filter(|t| t.kind == TestKind::Sequential)?;
            Some((i, Sequential::new(c, t, baselines.get(&c.metric.probe))))
        })
        .collect()
}

/// A reading that says why a sequential rule has no detector.
pub fn unavailable(c: &Condition, h: History<'_>, why: &str) -> Reading {
    let cap = evidence::capacity(c, std::time::Duration::from_millis(h.every_ms.max(1) as u64));
    let mut r = empty_reading(cap);
    r.samples = h.samples.len().min(cap);
    r.missing = Some(why.to_string());
    r
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::super::verdict::{Evaluator, Outcome};
    use super::*;
    use crate::context::Env;
    use crate::plan::Plan;

    /// A fixed pseudo-random stream: the same samples on every run.
    struct Lcg(u64);
    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            (-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
        }
        /// The noisy service: 1% (or `err`) failures, lognormal latency
        /// around 20ms (p95 ≈ 39ms) with rare 300ms spikes, times `k`.
        fn sample(&mut self, at: i64, err: f64, k: f64) -> SampleRow {
            let ok = self.unit() >= err;
            let lat = if self.unit() < 0.005 {
                300.0
            } else {
                20.0 * (0.406 * self.normal()).exp()
            };
            SampleRow {
                probe: "api".into(),
                at,
                ok,
                latency_ms: Some(lat * k),
                ..Default::default()
            }
        }
    }

    fn plan(rules: &str) -> Plan {
        let src = format!(
            "[plan]\nname = \"t\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"250ms\"\ntimeout = \"1s\"\nhttp = {{ url = \"http://127.0.0.1:1/\" }}\n{rules}"
        );
        Plan::parse(Path::new("backout.toml"), &src, &Env::default()).unwrap()
    }

    fn baseline(rng: &mut Lcg, n: usize) -> HashMap<String, BaselineStats> {
        let rows: Vec<SampleRow> = (0..n as i64)
            .map(|i| rng.sample(-100_000 + i * 250, 0.01, 1.0))
            .collect();
        HashMap::from([("api".to_string(), BaselineStats::from_samples(&rows))])
    }

    #[test]
    fn mann_whitney_judges_a_full_window_against_the_baseline() {
        let p = plan(
            "[[rule]]\nname = \"slow\"\nwhen = \"api.latency.p50 > baseline + 25% (mann-whitney, 98%) over 30s\"\nthen = \"investigate\"\n",
        );
        let mut rng = Lcg(7);
        let mut e = Evaluator::new(&p, baseline(&mut rng, 240));
        for i in 0..119 {
            e.push(rng.sample(i * 250, 0.01, 1.0));
        }
        let v = &e.evaluate(119 * 250)[0];
        assert_eq!(v.outcome, Outcome::Inconclusive, "{}", v.explanation);
        assert!(v.explanation.contains("judges a full window"), "{}", v.explanation);
        for i in 119..240 {
            e.push(rng.sample(i * 250, 0.01, 1.0));
        }
        let v = &e.evaluate(240 * 250)[0];
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.explanation);
        assert!(v.explanation.contains("Mann–Whitney p = "), "{}", v.explanation);
        // Latency × 1.8 for a whole window: significant, and past +25%.
        for i in 240..360 {
            e.push(rng.sample(i * 250, 0.01, 1.8));
        }
        let v = &e.evaluate(360 * 250)[0];
        assert_eq!(v.outcome, Outcome::Investigate, "{}", v.explanation);
        let t = v.test.as_ref().unwrap();
        assert!(t.p_value.unwrap() < 0.02, "{t:?}");
        assert_eq!(t.baseline_samples, 239, "the baseline's answers, its failure left out");
        assert!(v.value.unwrap() > v.threshold.unwrap());
        assert!(
            v.explanation.contains("< 0.02 against 239 baseline samples"),
            "{}",
            v.explanation
        );
        // The baseline's own answers, 20% slower: significant, but an effect
        // under the rule's 25%.
        let bases = baseline(&mut Lcg(7), 240);
        let answers: Vec<SampleRow> = bases["api"].samples.iter().filter(|s| s.ok).cloned().collect();
        let mut e = Evaluator::new(&p, bases);
        for (i, s) in answers.iter().take(120).enumerate() {
            let mut s = s.clone();
            s.at = i as i64 * 250;
            s.latency_ms = s.latency_ms.map(|l| l * 1.2);
            e.push(s);
        }
        let v = &e.evaluate(119 * 250)[0];
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.explanation);
        assert!(v.test.as_ref().unwrap().p_value.unwrap() < 0.02, "{}", v.explanation);
    }

    #[test]
    fn a_statistical_rule_without_baseline_samples_is_inconclusive() {
        let p = plan(
            "[[rule]]\nwhen = \"api.error_rate > baseline (sequential)\"\n[[rule]]\nwhen = \"api.latency > baseline (mann-whitney) over 5 samples\"\n",
        );
        // A baseline stored before samples were kept with it: statistics only.
        let stats = BaselineStats {
            count: 240,
            latency_median: Some(20.0),
            ..Default::default()
        };
        let mut e = Evaluator::new(&p, HashMap::from([("api".to_string(), stats)]));
        let mut rng = Lcg(3);
        for i in 0..10 {
            e.push(rng.sample(i * 250, 1.0, 1.0));
        }
        for v in e.evaluate(2500) {
            assert_eq!(v.outcome, Outcome::Inconclusive, "{}", v.explanation);
            assert!(
                v.explanation.contains("the baseline has 0 sample(s)"),
                "{}",
                v.explanation
            );
        }
    }

    #[test]
    fn the_sequential_rule_stays_quiet_on_healthy_traffic_and_catches_a_rise() {
        let p = plan(
            "[[rule]]\nname = \"errors\"\nwhen = \"api.error_rate > baseline (sequential, 99.9%) over 30s\"\n[[rule]]\nname = \"slow\"\nwhen = \"api.latency.p50 > baseline + 25% (sequential) over 30s\"\nthen = \"investigate\"\n",
        );
        let mut rng = Lcg(11);
        let mut e = Evaluator::new(&p, baseline(&mut rng, 240));
        // An hour of healthy samples (1% failures): no verdict at all, from the
        // very first sample on.
        for i in 0..14_400i64 {
            e.push(rng.sample(i * 250, 0.01, 1.0));
            for v in e.evaluate(i * 250) {
                assert!(
                    matches!(v.outcome, Outcome::Pass | Outcome::Inconclusive),
                    "sample {i}: {}",
                    v.explanation
                );
            }
        }
        // Latency × 1.8: caught within 60 samples (15s).
        let t0 = 14_400i64;
        let mut caught = None;
        for i in t0..t0 + 60 {
            e.push(rng.sample(i * 250, 0.01, 1.8));
            let v = e.evaluate(i * 250);
            if v[1].outcome == Outcome::Investigate {
                caught = Some(v[1].clone());
                break;
            }
        }
        let v = caught.expect("a latency rise caught within 15s");
        assert!(v.explanation.contains("sequential test: e = "), "{}", v.explanation);
        assert!(
            v.explanation.contains("≥ 100 against at most 50% of answers beyond"),
            "{}",
            v.explanation
        );
        // Errors 1% → 8%: caught within 400 samples (100s).
        let t0 = t0 + 60;
        let caught = (t0..t0 + 400).find(|i| {
            e.push(rng.sample(i * 250, 0.08, 1.0));
            e.evaluate(i * 250)[0].outcome == Outcome::Rollback
        });
        assert!(caught.is_some(), "errors at 8% caught");
    }
}
