//! Windows of samples and what a condition reads over them: which samples a
//! window holds, whether it is full, the value of a field over it, and a lower
//! bound of that value while a fresh watch's window is still filling.

use std::collections::VecDeque;

use super::baseline::{BaselineStats, aggregate};
use crate::oplog::SampleRow;
use crate::plan::rule::{self, Agg, Condition, Field, TestKind, Threshold, Window};
use crate::plan::{DEFAULT_WINDOW_SAMPLES, evidence};

/// The result of one condition over its window.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// `None`: not enough samples.
    pub holds: Option<bool>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub baseline: Option<f64>,
    pub samples: usize,
    pub failed: usize,
    pub first_at: Option<i64>,
    pub last_at: Option<i64>,
    pub missing: Option<String>,
    /// Samples the window holds when full.
    pub capacity: usize,
    /// Whether the window is full (a fresh watch's is still filling).
    pub full: bool,
    /// `value` is a lower bound from a window still filling, already beyond the
    /// limit whatever the rest of the window holds.
    pub bound: bool,
    /// A statistical rule's test and its numbers.
    pub test: Option<TestReading>,
}

/// What a statistical rule's test found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestReading {
    pub kind: TestKind,
    pub confidence: f64,
    /// Mann–Whitney: the one-sided p-value of the window against the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Sequential: the detector's e-value, and the level it must reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_threshold: Option<f64>,
    /// Sequential: the share of bad samples the null allows (`p0`), and the
    /// samples of the window that were bad (failed, or beyond the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_in_window: Option<usize>,
    /// Samples of the baseline the test compared with.
    pub baseline_samples: usize,
}

/// Samples a `[success]` criterion needs in its window before it can hold (a
/// window of fewer samples needs them all).
pub const SUCCESS_MIN_SAMPLES: usize = 3;

/// What a reading asks of its window before it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A rule: a statistic of a window is judged on a full window (or, for a
    /// rising rule, on a filling window that already decides the full one);
    /// `min`: the plan's `min-samples`, when set.
    Rule { min: Option<usize> },
    /// A review or a success criterion: the window as it is, with at least this
    /// many samples.
    AsIs(usize),
}

/// One probe's recent samples, oldest first, and what a window needs to know
/// about them.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    pub samples: &'a VecDeque<SampleRow>,
    /// The first sample of the probe this evaluator saw: a window reaching
    /// further back than it is still filling.
    pub first_at: Option<i64>,
    /// The probe's interval (ms).
    pub every_ms: i64,
}

/// The samples of `c`'s window, oldest first, and whether the window is full.
///
/// A duration window ends at the probe's latest sample, not at the evaluation's
/// clock, and starts half an interval after `latest - window`: a 30s window of
/// a 250ms probe holds 120 samples whenever it is evaluated, never 119 or 121
/// as answers come a few milliseconds early or late. It is full once it holds
/// that many, or once the probe's history reaches back to its start (a probe
/// slowed down by timeouts fills its window with fewer samples).
pub(super) fn window<'a>(c: &Condition, h: &History<'a>, now: i64, cap: usize) -> (Vec<&'a SampleRow>, bool) {
    match c.window.unwrap_or(Window::Samples(DEFAULT_WINDOW_SAMPLES)) {
        Window::Samples(n) => {
            let w: Vec<_> = h.samples.iter().skip(h.samples.len().saturating_sub(n)).collect();
            let full = w.len() >= n;
            (w, full)
        }
        Window::Duration(d) => {
            let d = crate::context::millis(d);
            let Some(last) = h.samples.back() else {
                return (Vec::new(), false);
            };
            if now.saturating_sub(last.at) > d {
                // Nothing for a whole window: the probe stopped answering at all.
                return (Vec::new(), false);
            }
            let margin = (h.every_ms / 2).min(d / 2);
            let from = last.at.saturating_sub(d).saturating_add(margin);
            let mut w: Vec<_> = h.samples.iter().filter(|s| s.at > from).collect();
            if w.len() > cap {
                w.drain(..w.len() - cap);
            }
            let full = w.len() >= cap || h.first_at.is_some_and(|f| f <= from + h.every_ms);
            (w, full)
        }
    }
}

/// The numbers an aggregating field takes in the window. Latency counts only
/// successful samples: a refused connection answers fast and says nothing of
/// how fast the service is (failures are what error rates count).
pub(super) fn values(c: &Condition, win: &[&SampleRow]) -> Vec<f64> {
    match c.metric.field {
        Field::Latency => win.iter().filter(|s| s.ok).filter_map(|s| s.latency_ms).collect(),
        Field::Size => win.iter().filter_map(|s| s.size.map(|v| v as f64)).collect(),
        Field::Value => match &c.metric.selector {
            None => win.iter().filter_map(|s| s.value).collect(),
            Some(sel) => win.iter().filter_map(|s| series_value(s, sel)).collect(),
        },
        f => {
            let key = f.key().unwrap_or_default();
            win.iter().filter_map(|s| s.fields.get(key).copied()).collect()
        }
    }
}

/// The value of `c` over a whole window.
fn value(c: &Condition, win: &[&SampleRow], failed: usize) -> Option<f64> {
    match c.metric.field {
        Field::Up => win.last().map(|s| if s.ok { 1.0 } else { 0.0 }),
        Field::ErrorRate => (!win.is_empty()).then(|| failed as f64 / win.len() as f64),
        Field::ConsecutiveFailures => Some(win.iter().rev().take_while(|s| !s.ok).count() as f64),
        Field::Status => win.iter().rev().find_map(|s| s.status).map(f64::from),
        Field::Count => {
            let counts: Vec<f64> = win.iter().filter_map(|s| count_of(s, c)).collect();
            (!counts.is_empty()).then(|| counts.iter().sum())
        }
        Field::Rate => rate(c, win),
        _ => aggregate(&values(c, win), c.metric.agg),
    }
}

/// A lower bound of the full window's value from a window still filling that
/// will hold `cap` samples: the samples not seen yet can only add failures,
/// matches and large values. `None`: too few samples to bound it yet.
fn lower_bound(c: &Condition, win: &[&SampleRow], failed: usize, cap: usize) -> Option<f64> {
    match c.metric.field {
        Field::ErrorRate => Some(failed as f64 / win.len().max(cap) as f64),
        Field::Count | Field::Rate => value(c, win, failed),
        _ => {
            let mut v = values(c, win);
            match c.metric.agg {
                Agg::Max => v.into_iter().reduce(f64::max),
                Agg::Mean => (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len().max(cap) as f64),
                a => {
                    let k = evidence::quantile_rank_from_top(evidence::quantile(a)?, cap);
                    if v.len() < k {
                        return None;
                    }
                    v.sort_by(|a, b| b.total_cmp(a));
                    Some(v[k - 1])
                }
            }
        }
    }
}

/// Reads `c` over its window in `h` at `now`.
pub fn read(c: &Condition, h: History<'_>, now: i64, need: Need, baseline: Option<&BaselineStats>) -> Reading {
    let field = c.metric.field;
    let shape = evidence::shape(c);
    let cap = evidence::capacity(c, std::time::Duration::from_millis(h.every_ms.max(1) as u64));
    let (win, full) = if field == Field::ConsecutiveFailures {
        (h.samples.iter().collect(), true)
    } else {
        window(c, &h, now, cap)
    };
    let failed = win.iter().filter(|s| !s.ok).count();
    let relative = matches!(c.threshold, Threshold::Baseline { .. });
    let mut r = Reading {
        holds: None,
        value: None,
        threshold: None,
        // An absolute rule has no baseline to show.
        baseline: baseline.and_then(|b| b.value(field, c.metric.agg)).filter(|_| relative),
        samples: win.len(),
        failed,
        first_at: win.first().map(|s| s.at),
        last_at: win.last().map(|s| s.at),
        missing: None,
        capacity: cap,
        full,
        bound: false,
        test: None,
    };
    let min = match need {
        Need::AsIs(m) => m,
        Need::Rule { min } => min.unwrap_or(match (field, shape) {
            (Field::Up | Field::Status | Field::ConsecutiveFailures, _) => 1,
            (_, evidence::Shape::Point) => evidence::POINT_MIN_SAMPLES,
            _ => 1,
        }),
    };
    if win.len() < min {
        r.missing = Some(format!("{} of {min} samples needed", win.len()));
        return r;
    }
    r.threshold = match &c.threshold {
        Threshold::Absolute { value } => Some(*value),
        Threshold::Baseline { delta } => r.baseline.map(|b| delta.apply(b)),
    };
    let Some(threshold) = r.threshold else {
        r.missing = Some("no baseline: run `backout baseline` before the change".into());
        return r;
    };
    let whole_window = matches!(need, Need::Rule { .. }) && shape != evidence::Shape::Point;
    if whole_window && !full {
        // A fresh watch: decide only what the full window is bound to decide.
        if shape == (evidence::Shape::Window { early: true })
            && let Some(lb) = lower_bound(c, &win, failed, cap)
            && c.op.holds(lb, threshold)
        {
            r.value = Some(lb);
            r.bound = true;
            r.holds = Some(true);
            return r;
        }
        let so_far = match value(c, &win, failed) {
            Some(v) if field != Field::ErrorRate => format!(", {} = {}", c.metric, rule::format_value(field, v)),
            _ => String::new(),
        };
        r.missing = Some(format!(
            "window filling: {} of {cap} samples so far ({failed} failed{so_far}); it decides on a full window{}",
            win.len(),
            match (shape, evidence::trip_count(c, cap, Some(threshold))) {
                (evidence::Shape::Window { early: true }, Some(k)) if field == Field::ErrorRate =>
                    format!(", or sooner at {k} failed"),
                _ => String::new(),
            }
        ));
        return r;
    }
    r.value = value(c, &win, failed);
    let Some(v) = r.value else {
        r.missing = Some(match field {
            Field::Latency => format!(
                "no successful sample in the window ({failed} of {} failed): latency is measured on answers only, failures count in error_rate",
                win.len()
            ),
            _ => format!("no {} in the window", field.name()),
        });
        return r;
    };
    r.holds = Some(c.op.holds(v, threshold));
    r
}

/// A log sample's new matches: of every pattern, or of one (`[ERROR]`). A probe
/// with a single pattern stores only the total, which is that pattern's count.
fn count_of(s: &SampleRow, c: &Condition) -> Option<f64> {
    let total = s.fields.get("count").copied();
    match &c.metric.selector {
        None => total,
        Some(pattern) => match s.fields.get(&format!("count:{pattern}")) {
            Some(n) => Some(*n),
            None if !s.fields.keys().any(|k| k.starts_with("count:")) => total,
            None => None,
        },
    }
}

/// The value of the Prometheus series whose labels include every `k="v"` pair of
/// `selector` (the largest, when several do); a single-series answer has no labels
/// to match, so it stands for any selector.
fn series_value(s: &SampleRow, selector: &str) -> Option<f64> {
    let pairs: Vec<String> = selector
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|p| p.trim().replace(' ', ""))
        .filter(|p| !p.is_empty())
        .collect();
    let matching = s.fields.iter().filter(|(labels, _)| {
        let inner = labels.trim_matches(|c| c == '{' || c == '}');
        let have: Vec<&str> = inner.split(',').map(str::trim).collect();
        labels.starts_with('{') && pairs.iter().all(|p| have.contains(&p.as_str()))
    });
    matching.map(|(_, v)| *v).reduce(f64::max).or_else(|| {
        if s.fields.keys().any(|k| k.starts_with('{')) {
            None
        } else {
            s.value
        }
    })
}

/// Matches per second over the window: a duration window divides by its length;
/// a sample window by the time its samples span (the first sample's matches
/// happened before that span, so they are left out).
fn rate(c: &Condition, win: &[&SampleRow]) -> Option<f64> {
    let counted: Vec<(i64, f64)> = win.iter().filter_map(|s| count_of(s, c).map(|n| (s.at, n))).collect();
    match c.window.unwrap_or(Window::Samples(DEFAULT_WINDOW_SAMPLES)) {
        Window::Duration(d) if !counted.is_empty() => {
            Some(counted.iter().map(|(_, n)| n).sum::<f64>() / d.as_secs_f64().max(0.001))
        }
        Window::Duration(_) => None,
        Window::Samples(_) => {
            let (first, last) = (counted.first()?, counted.last()?);
            let span = (last.0 - first.0) as f64 / 1000.0;
            (span > 0.0).then(|| counted[1..].iter().map(|(_, n)| n).sum::<f64>() / span)
        }
    }
}
