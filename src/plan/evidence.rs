//! What evidence a rule needs before it may decide: how many samples its window
//! holds at its probe's interval, whether a window still filling can already
//! prove it, how many bad samples make a full window trip, and the warnings
//! `backout check` gives about rules that cannot decide well.
//!
//! The principle: a watch never acts on evidence its rule would not accept in a
//! full window. A rule over a window judges the whole window; while the window
//! is still filling (a fresh watch), it trips only when the samples seen so far
//! already decide the full window, whatever the rest of it holds (7 failed
//! samples are more than 5% of 120 however the other 113 turn out), and is
//! otherwise inconclusive, never "12.5% of 8 samples".

use std::time::Duration;

use super::rule::{Agg, Condition, Delta, Field, Op, TestKind, Threshold, Window};
use super::{DEFAULT_WINDOW_SAMPLES, Rule, units};

/// Samples a rule on the latest value (`.last`, `rss`, `value`) needs by default.
pub const POINT_MIN_SAMPLES: usize = 3;

/// `n` samples at one every `every`, saturating rather than wrapping for the
/// absurd counts a huge threshold derives.
pub fn times(every: Duration, n: usize) -> Duration {
    every.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
}

/// How a rule reads its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The latest sample decides (`up`, `status`, `.last`), or a run counted back
    /// from it (`consecutive_failures`).
    Point,
    /// A statistic of the whole window. `early`: the statistic of a window still
    /// filling bounds the full window's from below, so a `>`/`>=` rule can trip
    /// before the window is full.
    Window { early: bool },
}

/// How `c` reads its samples.
pub fn shape(c: &Condition) -> Shape {
    match c.test.map(|t| t.kind) {
        // Judged on a full window, as Kayenta judges a whole interval.
        Some(TestKind::MannWhitney) => return Shape::Window { early: false },
        // Valid from the first sample on: no window to fill.
        Some(TestKind::Sequential) => return Shape::Point,
        None => {}
    }
    let f = c.metric.field;
    let windowed = match f {
        Field::Up | Field::Status | Field::ConsecutiveFailures => false,
        Field::ErrorRate | Field::Count | Field::Rate => true,
        _ => c.metric.agg != Agg::Last,
    };
    if !windowed {
        return Shape::Point;
    }
    let rising = matches!(c.op, Op::Gt | Op::Ge);
    let monotone = match f {
        Field::ErrorRate | Field::Count => true,
        // Matches per second of a duration window divide by its length, not by
        // the samples seen, so a partial sum is a lower bound.
        Field::Rate => matches!(c.window, Some(Window::Duration(_))),
        _ => match c.metric.agg {
            Agg::Max | Agg::P50 | Agg::P90 | Agg::P95 | Agg::P99 => true,
            Agg::Mean => f.non_negative(),
            Agg::Min | Agg::Last => false,
        },
    };
    Shape::Window {
        early: rising && monotone,
    }
}

/// Samples the window of `c` holds at one sample every `every`: `over 30s` at
/// 250ms is 120; `over 10 samples` is 10; no `over` is the latest 3.
pub fn capacity(c: &Condition, every: Duration) -> usize {
    match c.window.unwrap_or(Window::Samples(DEFAULT_WINDOW_SAMPLES)) {
        Window::Samples(n) => n.max(1),
        Window::Duration(d) => {
            let every = every.as_secs_f64().max(1e-6);
            ((d.as_secs_f64() / every).round() as usize).max(1)
        }
    }
}

/// The quantile an aggregation computes, if it is one.
pub fn quantile(agg: Agg) -> Option<f64> {
    match agg {
        Agg::P50 => Some(0.50),
        Agg::P90 => Some(0.90),
        Agg::P95 => Some(0.95),
        Agg::P99 => Some(0.99),
        _ => None,
    }
}

/// How many of the `cap` largest values reach down to the interpolated quantile
/// `q`: when this many samples are above a limit, the quantile of the full
/// window is above it too, whatever the others are.
pub fn quantile_rank_from_top(q: f64, cap: usize) -> usize {
    let h = q * (cap.saturating_sub(1)) as f64;
    cap - (h.floor() as usize).min(cap.saturating_sub(1))
}

/// Bad samples (failed ones for an error rate; ones beyond the limit otherwise)
/// that make a full window of `cap` samples trip for certain; `threshold` is the
/// rule's limit when known (a relative one depends on the baseline). `None`: no
/// count of samples decides (a mean depends on how far beyond), or none ever can.
pub fn trip_count(c: &Condition, cap: usize, threshold: Option<f64>) -> Option<usize> {
    let early = matches!(shape(c), Shape::Window { early: true });
    let count = match c.metric.field {
        Field::Up | Field::Status => 1,
        Field::ConsecutiveFailures => match threshold {
            Some(v) if matches!(c.op, Op::Gt) => (v.floor() as usize).saturating_add(1),
            Some(v) => (v.ceil() as usize).max(1),
            None => return None,
        },
        Field::ErrorRate if early => {
            let t = threshold?;
            let share = t * cap as f64;
            let n = match c.op {
                Op::Gt => ((share + 1e-9).floor() as usize).saturating_add(1),
                _ => ((share - 1e-9).ceil() as usize).max(1),
            };
            if n > cap {
                return None;
            }
            n
        }
        Field::Count | Field::Rate if early => 1,
        _ if early => match c.metric.agg {
            Agg::Max => 1,
            a => quantile_rank_from_top(quantile(a)?, cap),
        },
        _ if shape(c) == Shape::Point => 1,
        // A window that must be full before it decides: every sample of it.
        _ => cap,
    };
    Some(count)
}

/// The samples a rule needs in its window before it may decide: `min-samples`
/// when the plan sets it, else derived from the window and the threshold (the
/// bad samples that trip a full window, or the whole window).
pub fn default_min_samples(r: &Rule, every: Duration) -> usize {
    let c = &r.condition;
    let cap = capacity(c, every);
    match (c.metric.field, shape(c)) {
        (Field::Up | Field::Status | Field::ConsecutiveFailures, _) => 1,
        (_, Shape::Point) => POINT_MIN_SAMPLES,
        (_, Shape::Window { early: true }) => trip_count(c, cap, absolute(c)).unwrap_or(cap),
        (_, Shape::Window { early: false }) => cap,
    }
}

/// The effective `min-samples` of a rule: the plan's, or the derived default.
pub fn min_samples(r: &Rule, every: Duration) -> usize {
    r.min_samples.unwrap_or_else(|| default_min_samples(r, every))
}

/// How long a tripped rule's condition must stay false before the rule is ok
/// again: the plan's `clear-after`, else a quarter of its window (at least two
/// probe intervals) for a rule over a window or with a statistical test, and
/// nothing for one on the latest value. A statistic hovering at its limit then makes one verdict, not one
/// each time a sample enters or leaves the window.
pub fn clear_after(r: &Rule, every: Duration) -> Duration {
    if let Some(c) = r.clear_after {
        return c;
    }
    match shape(&r.condition) {
        Shape::Point if r.condition.test.is_none() => Duration::ZERO,
        // A sequential detector hovers at its level like a statistic at its
        // limit: it clears as a rule over its window does.
        Shape::Point | Shape::Window { .. } => {
            let span = times(every, capacity(&r.condition, every));
            (span / 4).max(every.saturating_mul(2))
        }
    }
}

fn absolute(c: &Condition) -> Option<f64> {
    match c.threshold {
        Threshold::Absolute { value } => Some(value),
        Threshold::Baseline { .. } => None,
    }
}

/// How many samples a rule needs to detect a sustained breach (every sample
/// failed, for an error rate; every answer beyond the limit, otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detect {
    /// From the first sample of a fresh watch (its window empty).
    pub fresh: Option<usize>,
    /// With a full window of healthy samples, once the breach begins.
    pub full: Option<usize>,
    /// The counts assume a baseline of 0 (a relative error-rate rule, whose
    /// limit depends on the baseline: a higher one needs more samples).
    pub zero_baseline: bool,
}

/// Samples `r` needs to detect a sustained breach, fresh and with a full window.
pub fn detect(r: &Rule, every: Duration) -> Detect {
    let c = &r.condition;
    let cap = capacity(c, every);
    if c.test.map(|t| t.kind) == Some(TestKind::Sequential) {
        // How many bad samples a detector needs is the watch's to say.
        return Detect {
            fresh: None,
            full: None,
            zero_baseline: false,
        };
    }
    let zero_baseline = matches!(c.threshold, Threshold::Baseline { .. }) && c.metric.field == Field::ErrorRate;
    let threshold = match &c.threshold {
        Threshold::Baseline { delta } if zero_baseline => Some(delta.apply(0.0)),
        _ => absolute(c),
    };
    // How many bad samples make a Mann–Whitney test significant depends on them.
    let full = trip_count(c, cap, threshold).filter(|_| c.test.is_none());
    let explicit = r.min_samples.unwrap_or(1);
    let fresh = match shape(c) {
        Shape::Point => {
            let gate = r.min_samples.unwrap_or(match c.metric.field {
                Field::Up | Field::Status | Field::ConsecutiveFailures => 1,
                _ => POINT_MIN_SAMPLES,
            });
            full.map(|n| n.max(gate))
        }
        Shape::Window { early: true } => full.map(|n| n.max(explicit)),
        Shape::Window { early: false } => Some(cap.max(explicit)),
    };
    // A window that holds fewer samples than min-samples asks for never decides.
    let never = c.metric.field != Field::ConsecutiveFailures && explicit > cap;
    Detect {
        fresh: fresh.filter(|_| !never),
        full: full.filter(|_| !never),
        zero_baseline,
    }
}

/// Whether `[baseline] for` (at one sample every `every`) is too short for
/// what `r` compares with: a p95 from fewer than 200 answers rests on a
/// handful of them (about 10 beyond it), and a statistical test needs at least
/// 10. History (`[baseline] history`) makes up for a short baseline.
pub fn baseline_warning(r: &Rule, every: Duration, baseline_for: Duration, history: usize) -> Option<String> {
    let c = &r.condition;
    if !matches!(c.threshold, Threshold::Baseline { .. }) || history > 0 {
        return None;
    }
    let n = (baseline_for.as_secs_f64() / every.as_secs_f64().max(1e-6)).floor() as usize;
    let need = match (c.metric.field, quantile(c.metric.agg)) {
        (Field::Latency, Some(q)) => (10.0 / (1.0 - q)).ceil() as usize,
        _ if c.test.is_some() => 10,
        _ => return None,
    };
    (n < need).then(|| {
        format!(
            "rule {:?}: [baseline] for = {} holds {n} samples at every {}; its {} needs about {need}: for = \"{}\" or more, or history = 5",
            r.name,
            units::format_duration(baseline_for),
            units::format_duration(every),
            match quantile(c.metric.agg) {
                Some(q) if c.metric.field == Field::Latency => format!("baseline p{}", (q * 100.0).round()),
                _ => "statistical test".into(),
            },
            units::format_duration(times(every, need))
        )
    })
}

/// What `backout check` should warn about in rule `r` on a probe sampled every
/// `every`: windows too small for the claim, rules that can never decide,
/// relative thresholds on metrics whose baseline is often 0.
pub fn warnings(r: &Rule, probe: &str, every: Duration) -> Vec<String> {
    let c = &r.condition;
    let name = &r.name;
    let mut out = Vec::new();
    let cap = capacity(c, every);
    let every_s = units::format_duration(every);
    if let Some(Window::Duration(w)) = c.window {
        let holds = w.as_secs_f64() / every.as_secs_f64().max(1e-6);
        if holds < 3.0 && shape(c) != Shape::Point {
            out.push(format!(
                "rule {name:?}: its {} window holds {} sample(s) of {probe:?} (every {every_s}); fewer than 3 makes a noisy verdict",
                units::format_duration(w),
                holds.floor()
            ));
        }
    }
    if c.test.map(|t| t.kind) == Some(TestKind::MannWhitney) && cap < 20 {
        out.push(format!(
            "rule {name:?}: a Mann–Whitney test over {cap} samples can hardly tell anything from its baseline; give it a window of at least 20 samples ({} at every {every_s})",
            units::format_duration(every.saturating_mul(20))
        ));
    }
    if let Some(m) = r.min_samples
        && m > cap
        && c.metric.field != Field::ConsecutiveFailures
    {
        out.push(format!(
            "rule {name:?}: its window holds {cap} samples of {probe:?} but min-samples asks for {m}: it can never decide (it stays inconclusive even when every sample fails); lower min-samples or widen the window"
        ));
    }
    if let (Field::ErrorRate, Shape::Window { early: true }, Some(t)) = (c.metric.field, shape(c), absolute(c))
        && t > 0.0
        && t < 1.0
        && trip_count(c, cap, Some(t)) == Some(1)
    {
        let least = ((1.0 / t + 1e-9).floor() as usize).saturating_add(1);
        out.push(format!(
            "rule {name:?}: its window holds {cap} samples, so one failed sample is {} of it: a single failure trips `> {}`; a window of at least {least} samples ({} at every {every_s}) lets it mean more than one",
            super::rule::format_value(Field::ErrorRate, 1.0 / cap as f64),
            super::rule::format_value(Field::ErrorRate, t),
            units::format_duration(times(every, least)),
        ));
    }
    if let (Some(q), Shape::Window { .. }) = (quantile(c.metric.agg), shape(c))
        && c.metric.field.aggregates()
        && q > 0.5
    {
        // Interpolated: one sample moves the quantile while q·(n-1) > n-2.
        let least = (((2.0 - q) / (1.0 - q)).floor() as usize).saturating_add(1);
        if cap < least {
            out.push(format!(
                "rule {name:?}: a {} over {cap} samples moves with a single slow answer; a window of at least {least} samples ({} at every {every_s}) needs more than one",
                c.metric.agg.name(),
                units::format_duration(times(every, least)),
            ));
        }
    }
    if let Threshold::Baseline { delta } = &c.threshold
        && c.test.is_none()
        && matches!(delta, Delta::None | Delta::Percent(_) | Delta::Factor(_))
        && matches!(c.op, Op::Gt | Op::Ge)
        && c.metric.field.baseline_can_be_zero()
    {
        let suggest = match c.metric.field {
            f if f.is_ratio() => format!("`{} {} baseline + 2pp` (percentage points)", c.metric, c.op.symbol()),
            Field::Rate => format!("`{} {} baseline + 1/s`", c.metric, c.op.symbol()),
            _ => format!("`{} {} baseline + 5`", c.metric, c.op.symbol()),
        };
        out.push(format!(
            "rule {name:?}: `{}` is relative to a baseline that is often 0 for {}: then the limit is 0 too and a single event trips it; write an absolute amount instead, like {suggest}",
            super::rule::format_threshold(c.metric.field, &c.threshold),
            c.metric.field.name(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rule::parse_condition;

    fn rule(when: &str, min: Option<usize>) -> Rule {
        Rule {
            name: "r".into(),
            text: when.into(),
            condition: parse_condition(when).unwrap(),
            action: crate::plan::Action::Rollback,
            min_samples: min,
            no_data: crate::plan::NoData::Inconclusive,
            clear_after: None,
            severity: None,
            line: 1,
        }
    }

    const QUARTER: Duration = Duration::from_millis(250);

    #[test]
    fn the_default_min_samples_follows_the_window_and_the_threshold() {
        // 30s at 250ms holds 120 samples; more than 5% of them is 7.
        let r = rule("api.error_rate > 5% over 30s", None);
        assert_eq!(capacity(&r.condition, QUARTER), 120);
        assert_eq!(default_min_samples(&r, QUARTER), 7);
        // One failure of 8 can never be "more than 5% of a full window".
        assert!(default_min_samples(&r, QUARTER) > 1);
        // A p95 over 120 samples: its 7 largest reach down to it.
        let r = rule("api.latency.p95 > 300ms over 30s", None);
        assert_eq!(default_min_samples(&r, QUARTER), 7);
        // A rule that must see its whole window.
        let r = rule("api.latency.min > 300ms over 30s", None);
        assert_eq!(default_min_samples(&r, QUARTER), 120);
        let r = rule("api.up", None);
        assert_eq!(default_min_samples(&r, QUARTER), 1);
        let r = rule("api.rss > 1GB", None);
        assert_eq!(default_min_samples(&r, QUARTER), POINT_MIN_SAMPLES);
    }

    #[test]
    fn time_to_detect_fresh_and_full() {
        let r = rule("api.error_rate > 5% over 30s", Some(100));
        let d = detect(&r, QUARTER);
        assert_eq!((d.fresh, d.full), (Some(100), Some(7)));
        let r = rule("api.error_rate > 5% over 30s", None);
        assert_eq!(detect(&r, QUARTER).fresh, Some(7));
        let r = rule("api.consecutive_failures >= 3", None);
        let d = detect(&r, QUARTER);
        assert_eq!((d.fresh, d.full, d.zero_baseline), (Some(3), Some(3), false));
        // 2 points above a 0% baseline: 3 failed of 120.
        let r = rule("api.error_rate > baseline + 2pp over 30s", None);
        let d = detect(&r, QUARTER);
        assert_eq!((d.fresh, d.full, d.zero_baseline), (Some(3), Some(3), true));
        // `over 10 samples` with min-samples 20 never decides.
        let r = rule("api.error_rate > 5% over 10 samples", Some(20));
        let d = detect(&r, QUARTER);
        assert_eq!((d.fresh, d.full), (None, None));
    }

    #[test]
    fn check_warns_about_rules_that_cannot_decide_well() {
        let w = warnings(&rule("api.error_rate > 5% over 10 samples", Some(20)), "api", QUARTER);
        assert!(w.iter().any(|m| m.contains("can never decide")), "{w:?}");
        let w = warnings(&rule("api.error_rate > 5% over 10 samples", None), "api", QUARTER);
        assert!(
            w.iter()
                .any(|m| m.contains("single failure trips") && m.contains("21 samples")),
            "{w:?}"
        );
        let w = warnings(&rule("api.latency.p95 > 1s over 5s", None), "api", QUARTER);
        assert!(w.iter().any(|m| m.contains("single slow answer")), "{w:?}");
        assert!(warnings(&rule("api.latency.p95 > 1s over 30s", None), "api", QUARTER).is_empty());
    }

    #[test]
    fn check_warns_about_a_relative_threshold_on_a_zero_baseline() {
        let w = warnings(&rule("api.error_rate > baseline + 10% over 30s", None), "api", QUARTER);
        assert!(
            w.iter().any(|m| m.contains("often 0") && m.contains("baseline + 2pp")),
            "{w:?}"
        );
        let w = warnings(&rule("errors.count > baseline * 2 over 1m", None), "errors", QUARTER);
        assert!(w.iter().any(|m| m.contains("often 0")), "{w:?}");
        // Absolute amounts and latency are fine.
        assert!(warnings(&rule("api.error_rate > baseline + 2pp over 30s", None), "api", QUARTER).is_empty());
        assert!(warnings(&rule("api.latency.p95 > baseline + 50% over 30s", None), "api", QUARTER).is_empty());
    }
}
