//! Baseline statistics: what each probe looked like before the change. Every
//! number a probe measures gets statistics: latency and size, the headline
//! `value`, each named field (`rss`, `cpu`, `fds`, `count`, ...), and for probes
//! that count matches, their rate per second.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::oplog::{Oplog, OplogError, SampleRow};
use crate::plan::Plan;
use crate::plan::rule::{Agg, Field};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineStats {
    pub count: usize,
    pub error_rate: f64,
    pub latency_median: Option<f64>,
    pub latency_p95: Option<f64>,
    pub latency_mean: Option<f64>,
    pub size_mean: Option<f64>,
    /// Statistics of every other number the probe measured, by field key
    /// (`value`, `rss`, `cpu`, `fds`, `count`, `exit_code`) plus `rate`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldStats>,
    /// The samples these statistics came from, for the statistical rules (read
    /// back from the operation log; not part of the stored statistics).
    #[serde(skip)]
    pub samples: Vec<SampleRow>,
    /// Watches whose samples the baseline includes (`[baseline] history`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_watches: Vec<i64>,
}

/// Statistics of one numeric field over the baseline's samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldStats {
    pub count: usize,
    pub median: f64,
    pub p95: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl FieldStats {
    pub fn of(values: &[f64]) -> Option<FieldStats> {
        Some(FieldStats {
            count: values.len(),
            median: aggregate(values, Agg::P50)?,
            p95: aggregate(values, Agg::P95)?,
            mean: aggregate(values, Agg::Mean)?,
            min: aggregate(values, Agg::Min)?,
            max: aggregate(values, Agg::Max)?,
        })
    }

    /// The statistic a rule aggregating with `agg` compares with.
    pub fn pick(&self, agg: Agg) -> f64 {
        match agg {
            Agg::P95 | Agg::P99 | Agg::P90 => self.p95,
            Agg::Max => self.max,
            Agg::Min => self.min,
            Agg::Mean => self.mean,
            Agg::P50 | Agg::Last => self.median,
        }
    }
}

impl BaselineStats {
    pub fn from_samples(samples: &[SampleRow]) -> Self {
        let count = samples.len();
        let failed = samples.iter().filter(|s| !s.ok).count();
        // Latency of answers only: a refused connection is fast and says nothing
        // of the service's speed (the same rule as in a watch's windows).
        let lat: Vec<f64> = samples.iter().filter(|s| s.ok).filter_map(|s| s.latency_ms).collect();
        let sizes: Vec<f64> = samples.iter().filter_map(|s| s.size.map(|v| v as f64)).collect();
        BaselineStats {
            count,
            error_rate: if count == 0 { 0.0 } else { failed as f64 / count as f64 },
            latency_median: aggregate(&lat, Agg::P50),
            latency_p95: aggregate(&lat, Agg::P95),
            latency_mean: aggregate(&lat, Agg::Mean),
            size_mean: aggregate(&sizes, Agg::Mean),
            fields: field_stats(samples),
            samples: samples.to_vec(),
            from_watches: Vec::new(),
        }
    }

    /// The baseline value a rule on `field.agg` compares with.
    pub fn value(&self, field: Field, agg: Agg) -> Option<f64> {
        match field {
            Field::ErrorRate => Some(self.error_rate),
            Field::Latency => match agg {
                Agg::P95 | Agg::P99 | Agg::P90 | Agg::Max => self.latency_p95,
                Agg::Mean => self.latency_mean,
                _ => self.latency_median,
            },
            Field::Size => self.size_mean,
            Field::Up => Some(1.0 - self.error_rate),
            Field::Status | Field::ConsecutiveFailures => None,
            // A count depends on its window; its rate is what compares across windows.
            Field::Count => None,
            Field::Rate => self.fields.get("rate").map(|f| f.mean),
            Field::Value => self.fields.get("value").map(|f| f.pick(agg)),
            Field::Rss | Field::Cpu | Field::Fds | Field::ExitCode => {
                self.fields.get(field.key()?).map(|f| f.pick(agg))
            }
        }
    }
}

/// Most samples a baseline takes from history, per probe.
pub const HISTORY_SAMPLES: usize = 20_000;

/// Each probe's baseline as it was at time `at`: the latest `backout baseline`
/// measured by then, with its samples read back for the statistical rules, and,
/// with `[baseline] history = N`, the samples of the last N healthy watches that
/// ended by then (the statistics are then recomputed over all of them).
pub fn load_at(oplog: &Oplog, plan: &Plan, at: i64) -> Result<HashMap<String, BaselineStats>, OplogError> {
    let watches = if plan.baseline_history > 0 {
        oplog.healthy_watches(at, plan.baseline_history)?
    } else {
        Vec::new()
    };
    let mut out = HashMap::new();
    for p in &plan.probes {
        let measured = oplog.baseline_at(&p.name, at)?;
        let mut samples = match &measured {
            Some((op, _, _)) => oplog.samples_of(*op, Some(&p.name))?,
            None => Vec::new(),
        };
        let stored: Option<BaselineStats> = measured.and_then(|(_, _, v)| serde_json::from_value(v).ok());
        if watches.is_empty() {
            if let Some(mut stats) = stored {
                stats.samples = samples;
                out.insert(p.name.clone(), stats);
            }
            continue;
        }
        // Newest watches first, and no more than HISTORY_SAMPLES in all: hours
        // of watching would make every statistic slow and change nothing.
        for w in &watches {
            let room = HISTORY_SAMPLES.saturating_sub(samples.len());
            if room == 0 {
                break;
            }
            let mut more = oplog.samples_of(*w, Some(&p.name))?;
            more.drain(..more.len().saturating_sub(room));
            samples.extend(more);
        }
        if samples.is_empty() {
            continue;
        }
        let mut stats = BaselineStats::from_samples(&samples);
        stats.from_watches = watches.clone();
        out.insert(p.name.clone(), stats);
    }
    Ok(out)
}

/// What is wrong with `b` as the baseline of `probe` for the plan's rules: too
/// few samples for the statistic a rule compares with, or a statistic so noisy
/// that a lucky or unlucky minute moves the rule's limit by a good part of its
/// margin.
pub fn warnings(plan: &Plan, probe: &str, b: &BaselineStats) -> Vec<String> {
    let mut out = Vec::new();
    let answers: Vec<f64> = {
        let mut v: Vec<f64> = b.samples.iter().filter(|s| s.ok).filter_map(|s| s.latency_ms).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let every = plan.probe(probe).map(|p| p.every);
    for r in plan.rules.iter().filter(|r| r.condition.metric.probe == probe) {
        let c = &r.condition;
        let crate::plan::rule::Threshold::Baseline { delta } = &c.threshold else {
            continue;
        };
        if c.test.is_some() && b.samples.len() < crate::watch::judge::MIN_BASELINE_SAMPLES {
            out.push(format!(
                "{probe}: rule {:?} tests against the baseline's samples, and it has {}: take a new baseline",
                r.name,
                b.samples.len()
            ));
            continue;
        }
        if c.metric.field != Field::Latency || answers.is_empty() {
            continue;
        }
        let q = crate::plan::evidence::quantile(c.metric.agg).unwrap_or(0.5);
        let need = (10.0 / (1.0 - q)).ceil() as usize;
        let n = answers.len();
        if n < need {
            let longer = every.map_or(String::new(), |e| {
                format!(
                    " (`backout baseline --for {}`)",
                    crate::plan::units::format_duration(crate::plan::evidence::times(
                        e,
                        need.saturating_add(need / 10)
                    ))
                )
            });
            out.push(format!(
                "{probe}: the baseline has {n} answers; a p{} from fewer than {need} rests on a handful of them: sample longer{longer} or add history ([baseline] history = 5)",
                (q * 100.0).round()
            ));
            continue;
        }
        // Distribution-free 90% interval of the quantile: the order statistics
        // 1.645 standard errors of the rank either side.
        let rank = q * n as f64;
        let half = 1.645 * (n as f64 * q * (1.0 - q)).sqrt();
        let at = |r: f64| answers[(r.round().max(1.0) as usize).min(n) - 1];
        let (lo, mid, hi) = (at(rank - half), quantile_sorted(&answers, q), at(rank + half));
        let spread = (hi - lo) / 2.0 / mid.max(1e-9);
        let margin = match delta {
            crate::plan::rule::Delta::Percent(p) => Some(p.abs() / 100.0),
            crate::plan::rule::Delta::Factor(f) => Some((f - 1.0).abs()),
            crate::plan::rule::Delta::Absolute(a) => Some(a.abs() / mid.max(1e-9)),
            crate::plan::rule::Delta::None => None,
        };
        if margin.is_some_and(|m| spread > m / 2.0) {
            out.push(format!(
                "{probe}: the baseline's p{} is {:.1}ms, but from {n} answers it could as well be {:.1}–{:.1}ms (90%, ±{:.0}%): more than half of rule {:?}'s margin; sample longer or add history ([baseline] history = 5)",
                (q * 100.0).round(),
                mid,
                lo,
                hi,
                spread * 100.0,
                r.name
            ));
        }
    }
    out
}

fn field_stats(samples: &[SampleRow]) -> BTreeMap<String, FieldStats> {
    let mut by_key: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in samples {
        if let Some(v) = s.value {
            by_key.entry("value".into()).or_default().push(v);
        }
        for (k, v) in &s.fields {
            by_key.entry(k.clone()).or_default().push(*v);
        }
    }
    let mut out: BTreeMap<String, FieldStats> = by_key
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), FieldStats::of(v)?)))
        .collect();
    // Matches per second between consecutive samples; the first sample's count
    // covers an unknown span before the baseline began.
    let counted: Vec<(i64, f64)> = samples
        .iter()
        .filter_map(|s| s.fields.get("count").map(|n| (s.at, *n)))
        .collect();
    let rates: Vec<f64> = counted
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| w[1].1 / ((w[1].0 - w[0].0) as f64 / 1000.0))
        .collect();
    if let Some(r) = FieldStats::of(&rates) {
        out.insert("rate".into(), r);
    }
    out
}

/// Folds values with `agg`. Percentiles interpolate linearly between the two
/// nearest ranks (numpy's and R's default, type 7), so a window that gains or
/// loses one sample moves its p95 a little, never from one sample to the next.
pub fn aggregate(values: &[f64], agg: Agg) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let pct = |p: f64| {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        quantile_sorted(&v, p)
    };
    Some(match agg {
        Agg::Last => *values.last()?,
        Agg::Mean => values.iter().sum::<f64>() / values.len() as f64,
        Agg::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Agg::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Agg::P50 => pct(0.50),
        Agg::P90 => pct(0.90),
        Agg::P95 => pct(0.95),
        Agg::P99 => pct(0.99),
    })
}

/// The interpolated `p` quantile of sorted, non-empty `v`.
pub fn quantile_sorted(v: &[f64], p: f64) -> f64 {
    let h = p.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        // numpy.percentile(range(1, 101), [50, 95]) == [50.5, 95.05]
        assert_eq!(aggregate(&v, Agg::P50), Some(50.5));
        assert!((aggregate(&v, Agg::P95).unwrap() - 95.05).abs() < 1e-9);
        // One more or one fewer sample moves a p95 a little, not a rank.
        let w: Vec<f64> = (1..=120).map(f64::from).collect();
        let x: Vec<f64> = (1..=119).map(f64::from).collect();
        let (a, b) = (aggregate(&w, Agg::P95).unwrap(), aggregate(&x, Agg::P95).unwrap());
        assert!((a - b).abs() < 1.0, "{a} vs {b}");
        assert_eq!(aggregate(&v, Agg::Max), Some(100.0));
        assert_eq!(aggregate(&v, Agg::Mean), Some(50.5));
        assert_eq!(aggregate(&[], Agg::Mean), None);
        assert_eq!(aggregate(&[3.0], Agg::P99), Some(3.0));
    }

    #[test]
    fn a_baseline_too_short_or_too_noisy_for_its_rules_is_flagged() {
        let src = "[plan]\nname = \"t\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"250ms\"\ntimeout = \"1s\"\nhttp = { url = \"http://127.0.0.1:1/\" }\n[[rule]]\nwhen = \"api.latency.p95 > baseline + 10% over 30s\"\n";
        let plan = Plan::parse(
            std::path::Path::new("backout.toml"),
            src,
            &crate::context::Env::default(),
        )
        .unwrap();
        // A long tail (10ms + j³/50000 for j = 0..n, shuffled): a p95 from 60
        // of them is too few.
        let rows = |n: i64| -> Vec<SampleRow> {
            (0..n)
                .map(|i| SampleRow {
                    probe: "api".into(),
                    at: i * 250,
                    ok: true,
                    latency_ms: Some(10.0 + (((i * 37) % n) as f64).powi(3) / 50_000.0),
                    ..Default::default()
                })
                .collect()
        };
        let w = warnings(&plan, "api", &BaselineStats::from_samples(&rows(60)));
        assert!(w.iter().any(|m| m.contains("fewer than 200")), "{w:?}");
        // 240 of them: enough, but the p95 is uncertain by more than half of 10%.
        let w = warnings(&plan, "api", &BaselineStats::from_samples(&rows(240)));
        assert!(w.iter().any(|m| m.contains("could as well be")), "{w:?}");
        // A +100% margin tolerates it.
        let plan = Plan::parse(
            std::path::Path::new("backout.toml"),
            &src.replace("+ 10%", "+ 100%"),
            &crate::context::Env::default(),
        )
        .unwrap();
        assert!(warnings(&plan, "api", &BaselineStats::from_samples(&rows(240))).is_empty());
    }

    #[test]
    fn history_adds_the_samples_of_the_last_healthy_watches() {
        let dir = tempfile::tempdir().unwrap();
        let log = Oplog::open(&dir.path().join("state.db"), crate::redact::Redactor::new()).unwrap();
        let rows = |start: i64, n: i64, lat: f64| -> Vec<SampleRow> {
            (0..n)
                .map(|i| SampleRow {
                    probe: "api".into(),
                    at: start + i * 250,
                    ok: true,
                    latency_ms: Some(lat),
                    ..Default::default()
                })
                .collect()
        };
        let op = |kind: &str, r: &[SampleRow], outcome: &str| {
            let op = log.begin(kind, &serde_json::json!({}), r[0].at).unwrap();
            log.insert_samples(op, r).unwrap();
            if kind == "baseline" {
                let stats = BaselineStats::from_samples(r);
                log.save_baseline(op, "api", r[r.len() - 1].at, &serde_json::to_value(&stats).unwrap())
                    .unwrap();
            }
            log.finish(op, outcome, None, r[r.len() - 1].at + 1).unwrap();
            op
        };
        op("baseline", &rows(0, 40, 10.0), "ok");
        let healthy = op("watch", &rows(100_000, 100, 20.0), "time_up");
        // A watch that called for a rollback is no reference.
        let bad = op("watch", &rows(200_000, 100, 500.0), "rollback_triggered");
        log.event(bad, 210_000, "verdict", &serde_json::json!({})).unwrap();
        let src = "[plan]\nname = \"t\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"250ms\"\ntimeout = \"1s\"\nhttp = { url = \"http://127.0.0.1:1/\" }\n";
        let env = crate::context::Env::default();
        let plain = Plan::parse(std::path::Path::new("backout.toml"), src, &env).unwrap();
        let b = &load_at(&log, &plain, 300_000).unwrap()["api"];
        assert_eq!((b.count, b.samples.len(), b.latency_median), (40, 40, Some(10.0)));
        let with = Plan::parse(
            std::path::Path::new("backout.toml"),
            &format!("{src}[baseline]\nhistory = 5\n"),
            &env,
        )
        .unwrap();
        let b = &load_at(&log, &with, 300_000).unwrap()["api"];
        assert_eq!(b.count, 140, "the baseline's 40 and the healthy watch's 100");
        assert_eq!(b.from_watches, vec![healthy]);
        assert_eq!(b.latency_median, Some(20.0));
        // As of before the healthy watch ended: the baseline alone.
        assert_eq!(load_at(&log, &with, 100_000).unwrap()["api"].count, 40);
    }

    #[test]
    fn every_numeric_field_gets_statistics() {
        let rows: Vec<SampleRow> = (0..4)
            .map(|i| SampleRow {
                probe: "api".into(),
                at: i * 1000,
                ok: true,
                value: Some(i as f64),
                fields: BTreeMap::from([("rss".into(), 100.0 * (i + 1) as f64), ("count".into(), 2.0)]),
                ..Default::default()
            })
            .collect();
        let b = BaselineStats::from_samples(&rows);
        assert_eq!(b.fields["rss"].max, 400.0);
        assert_eq!(b.fields["value"].mean, 1.5);
        assert_eq!(b.value(Field::Rss, Agg::Last), Some(250.0), "the median of 100..400");
        assert_eq!(b.value(Field::Rate, Agg::Last), Some(2.0), "2 matches a second");
        assert_eq!(b.value(Field::Count, Agg::Last), None);
        // Old baselines (no `fields`) still load.
        let old: BaselineStats = serde_json::from_str(r#"{"count":1,"error_rate":0.0,"latency_median":null,"latency_p95":null,"latency_mean":null,"size_mean":null}"#).unwrap();
        assert!(old.fields.is_empty());
    }
}
