//! Rules applied to windows of samples: each evaluation gives a [`Verdict`] with
//! the rule, the window, the value, the threshold, the baseline and the samples
//! it used, and one line a person can act on.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::baseline::{BaselineStats, aggregate};
use crate::oplog::SampleRow;
use crate::plan::rule::{self, Condition, Field, Threshold, Window};
use crate::plan::{Action, Criterion, DEFAULT_WINDOW_SAMPLES, Decision, NoData, Plan, Rule, units};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// Not enough samples to decide.
    Inconclusive,
    Investigate,
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub rule: String,
    /// The rule as written.
    pub when: String,
    pub probe: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub baseline: Option<f64>,
    pub window: String,
    pub samples: usize,
    pub failed_samples: usize,
    pub first_sample_at: Option<i64>,
    pub last_sample_at: Option<i64>,
    /// One line a person can act on.
    pub explanation: String,
}

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
}

/// Samples a `[success]` criterion needs in its window before it can hold (a
/// window of fewer samples needs them all); the default `min-samples` of rules.
pub const SUCCESS_MIN_SAMPLES: usize = 3;

/// Samples a rule needs to detect a total failure (every sample bad).
pub fn samples_needed(r: &Rule) -> usize {
    match r.condition.metric.field {
        Field::ConsecutiveFailures => match r.condition.threshold {
            Threshold::Absolute { value } => (value.ceil() as usize).max(1),
            Threshold::Baseline { .. } => r.min_samples,
        },
        Field::Up | Field::Status => 1,
        _ => r.min_samples,
    }
}

/// The samples of `condition`'s window, oldest first.
fn window<'a>(c: &Condition, samples: &'a VecDeque<SampleRow>, now: i64) -> Vec<&'a SampleRow> {
    match c.window.unwrap_or(Window::Samples(DEFAULT_WINDOW_SAMPLES)) {
        Window::Samples(n) => samples.iter().skip(samples.len().saturating_sub(n)).collect(),
        Window::Duration(d) => {
            let from = now.saturating_sub(crate::context::millis(d));
            samples.iter().filter(|s| s.at > from).collect()
        }
    }
}

/// Reads `c` over `samples` at `now`, needing at least `min` samples.
pub fn read(
    c: &Condition,
    samples: &VecDeque<SampleRow>,
    now: i64,
    min: usize,
    baseline: Option<&BaselineStats>,
) -> Reading {
    let field = c.metric.field;
    let win = if field == Field::ConsecutiveFailures {
        samples.iter().collect()
    } else {
        window(c, samples, now)
    };
    let failed = win.iter().filter(|s| !s.ok).count();
    let mut r = Reading {
        holds: None,
        value: None,
        threshold: None,
        baseline: baseline.and_then(|b| b.value(field, c.metric.agg)),
        samples: win.len(),
        failed,
        first_at: win.first().map(|s| s.at),
        last_at: win.last().map(|s| s.at),
        missing: None,
    };
    if win.len() < min {
        r.missing = Some(format!("{} of {min} samples needed", win.len()));
        return r;
    }
    r.value = match field {
        Field::Up => win.last().map(|s| if s.ok { 1.0 } else { 0.0 }),
        Field::ErrorRate => Some(failed as f64 / win.len() as f64),
        Field::ConsecutiveFailures => Some(win.iter().rev().take_while(|s| !s.ok).count() as f64),
        Field::Status => win.iter().rev().find_map(|s| s.status).map(f64::from),
        Field::Latency => aggregate(
            &win.iter().filter_map(|s| s.latency_ms).collect::<Vec<_>>(),
            c.metric.agg,
        ),
        Field::Size => aggregate(
            &win.iter().filter_map(|s| s.size.map(|v| v as f64)).collect::<Vec<_>>(),
            c.metric.agg,
        ),
        Field::Count => {
            let counts: Vec<f64> = win.iter().filter_map(|s| count_of(s, c)).collect();
            (!counts.is_empty()).then(|| counts.iter().sum())
        }
        Field::Rate => rate(c, &win),
        Field::Value => match &c.metric.selector {
            None => aggregate(&win.iter().filter_map(|s| s.value).collect::<Vec<_>>(), c.metric.agg),
            Some(sel) => aggregate(
                &win.iter().filter_map(|s| series_value(s, sel)).collect::<Vec<_>>(),
                c.metric.agg,
            ),
        },
        Field::Rss | Field::Cpu | Field::Fds | Field::ExitCode => {
            let key = field.key().unwrap_or_default();
            aggregate(
                &win.iter()
                    .filter_map(|s| s.fields.get(key).copied())
                    .collect::<Vec<_>>(),
                c.metric.agg,
            )
        }
    };
    r.threshold = match &c.threshold {
        Threshold::Absolute { value } => Some(*value),
        Threshold::Baseline { delta } => r.baseline.map(|b| delta.apply(b)),
    };
    if r.threshold.is_none() {
        r.missing = Some("no baseline: run `backout baseline` before the change".into());
        return r;
    }
    if r.value.is_none() {
        r.missing = Some(format!("no {} in the window", field.name()));
        return r;
    }
    r.holds = Some(c.op.holds(r.value.unwrap_or_default(), r.threshold.unwrap_or_default()));
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

/// Holds recent samples and the state of `for` conditions; evaluates rules.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<Rule>,
    success: Vec<Criterion>,
    baselines: HashMap<String, BaselineStats>,
    samples: HashMap<String, VecDeque<SampleRow>>,
    /// Since when each rule's condition has held without a break.
    rule_since: HashMap<usize, i64>,
    success_since: HashMap<usize, i64>,
    decision: Decision,
    total_probes: usize,
    /// Since when the decision matrix has called for each rule's action.
    decision_since: HashMap<String, i64>,
    /// How much history to keep, in ms and in samples.
    keep_ms: i64,
    keep_n: usize,
}

impl Evaluator {
    pub fn new(plan: &Plan, baselines: HashMap<String, BaselineStats>) -> Self {
        let conds = plan
            .rules
            .iter()
            .map(|r| &r.condition)
            .chain(plan.success.iter().map(|c| &c.condition))
            .chain(plan.reviews.iter().flat_map(|r| r.expect.iter().map(|c| &c.condition)));
        let mut keep_ms = 0i64;
        let mut keep_n = DEFAULT_WINDOW_SAMPLES;
        for c in conds {
            match c.window {
                Some(Window::Duration(d)) => keep_ms = keep_ms.max(crate::context::millis(d)),
                Some(Window::Samples(n)) => keep_n = keep_n.max(n),
                None => {}
            }
        }
        for r in &plan.rules {
            keep_n = keep_n.max(samples_needed(r));
        }
        Evaluator {
            rules: plan.rules.clone(),
            success: plan.success.clone(),
            baselines,
            samples: HashMap::new(),
            rule_since: HashMap::new(),
            success_since: HashMap::new(),
            decision: plan.decision.clone(),
            total_probes: plan.probes.len(),
            decision_since: HashMap::new(),
            keep_ms,
            keep_n,
        }
    }

    pub fn push(&mut self, s: SampleRow) {
        let q = self.samples.entry(s.probe.clone()).or_default();
        let at = s.at;
        q.push_back(s);
        while q.len() > self.keep_n && q.front().is_some_and(|f| f.at <= at.saturating_sub(self.keep_ms)) {
            q.pop_front();
        }
    }

    /// One verdict per rule, at `now`.
    pub fn evaluate(&mut self, now: i64) -> Vec<Verdict> {
        let empty = VecDeque::new();
        let mut out = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let c = &r.condition;
            let samples = self.samples.get(&c.metric.probe).unwrap_or(&empty);
            // A run of failures is countable from the first sample; other fields need their window.
            let min = if c.metric.field == Field::ConsecutiveFailures {
                1
            } else {
                samples_needed(r)
            };
            let reading = read(c, samples, now, min, self.baselines.get(&c.metric.probe));
            let held_for = track_hold(&mut self.rule_since, i, reading.holds == Some(true), now);
            let hold_ok = c.hold.is_none_or(|h| held_for >= crate::context::millis(h));
            let outcome = match reading.holds {
                None if r.no_data == NoData::Rollback && reading.samples == 0 => Outcome::Rollback,
                None => Outcome::Inconclusive,
                Some(true) if hold_ok => match r.action {
                    Action::Rollback => Outcome::Rollback,
                    Action::Investigate => Outcome::Investigate,
                },
                Some(_) => Outcome::Pass,
            };
            out.push(verdict(r, &reading, outcome, held_for));
        }
        super::decision::apply(
            &self.decision,
            &self.rules,
            self.total_probes,
            &mut out,
            &mut self.decision_since,
            now,
        );
        out
    }

    /// Reads one condition over its window now (at least one sample), for reviews.
    pub fn check(&self, c: &Condition, now: i64) -> Reading {
        let empty = VecDeque::new();
        let samples = self.samples.get(&c.metric.probe).unwrap_or(&empty);
        read(c, samples, now, 1, self.baselines.get(&c.metric.probe))
    }

    /// How far back samples are kept (ms), so a resumed watch can reload them.
    pub fn history_ms(&self) -> i64 {
        self.keep_ms
    }

    /// Whether every success criterion holds (false when there are none).
    pub fn success(&mut self, now: i64) -> bool {
        if self.success.is_empty() {
            return false;
        }
        let empty = VecDeque::new();
        let mut all = true;
        for (i, s) in self.success.iter().enumerate() {
            let c = &s.condition;
            let samples = self.samples.get(&c.metric.probe).unwrap_or(&empty);
            // Success is the confident side: like a rule, it needs a few samples
            // in its window before it can hold (one good sample proves little).
            let min = match c.window {
                Some(Window::Samples(n)) => n.clamp(1, SUCCESS_MIN_SAMPLES),
                _ => SUCCESS_MIN_SAMPLES,
            };
            let reading = read(c, samples, now, min, self.baselines.get(&c.metric.probe));
            let held_for = track_hold(&mut self.success_since, i, reading.holds == Some(true), now);
            let ok = reading.holds == Some(true) && c.hold.is_none_or(|h| held_for >= crate::context::millis(h));
            all &= ok;
        }
        all
    }
}

/// Updates since-when a condition has held; returns for how long (ms).
fn track_hold(since: &mut HashMap<usize, i64>, i: usize, holds: bool, now: i64) -> i64 {
    if holds {
        now - *since.entry(i).or_insert(now)
    } else {
        since.remove(&i);
        0
    }
}

fn verdict(r: &Rule, reading: &Reading, outcome: Outcome, held_for: i64) -> Verdict {
    let c = &r.condition;
    let field = c.metric.field;
    let fmt = |v: Option<f64>| v.map_or("?".to_string(), |v| rule::format_value(field, v));
    let window = super::describe_window(c);
    let subject = format!("{} is {}", c.metric, fmt(reading.value));
    let threshold = match (&c.threshold, reading.threshold) {
        (Threshold::Baseline { .. }, Some(t)) => format!(
            "{} ({} = {})",
            rule::format_threshold(field, &c.threshold),
            "baseline",
            fmt(reading.baseline).to_string() + &format!(" → {}", rule::format_value(field, t))
        ),
        _ => rule::format_threshold(field, &c.threshold),
    };
    let span = format!("over {window} ({} samples, {} failed)", reading.samples, reading.failed);
    let explanation = match outcome {
        Outcome::Inconclusive => format!(
            "{}: inconclusive: {} ({})",
            r.name,
            reading.missing.clone().unwrap_or_else(|| "waiting".into()),
            r.text
        ),
        Outcome::Rollback if reading.holds.is_none() => {
            format!(
                "{}: ROLLBACK: no samples and the rule's no-data policy is rollback ({})",
                r.name, r.text
            )
        }
        Outcome::Pass => format!("{}: ok: {subject}, limit {} {threshold} {span}", r.name, c.op.symbol()),
        Outcome::Rollback | Outcome::Investigate => {
            let hold = c.hold.map_or(String::new(), |_| {
                format!(
                    ", for {}",
                    units::format_duration(std::time::Duration::from_millis(held_for as u64))
                )
            });
            let action = if outcome == Outcome::Rollback {
                "ROLLBACK"
            } else {
                "INVESTIGATE"
            };
            format!(
                "{}: {action}: {subject} {} {threshold} {span}{hold}",
                r.name,
                c.op.symbol()
            )
        }
    };
    Verdict {
        outcome,
        rule: r.name.clone(),
        when: r.text.clone(),
        probe: c.metric.probe.clone(),
        value: reading.value,
        threshold: reading.threshold,
        baseline: reading.baseline,
        window,
        samples: reading.samples,
        failed_samples: reading.failed,
        first_sample_at: reading.first_at,
        last_sample_at: reading.last_at,
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Env;
    use std::path::Path;

    fn plan(rules: &str) -> Plan {
        let src = format!(
            "[plan]\nname = \"t\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"1s\"\ntimeout = \"1s\"\nhttp = {{ url = \"http://127.0.0.1:1/\" }}\n{rules}"
        );
        Plan::parse(Path::new("backout.toml"), &src, &Env::default()).unwrap()
    }

    fn s(at: i64, ok: bool, latency: f64) -> SampleRow {
        SampleRow {
            probe: "api".into(),
            at,
            ok,
            latency_ms: Some(latency),
            status: Some(if ok { 200 } else { 500 }),
            size: Some(10),
            ..Default::default()
        }
    }

    #[test]
    fn error_rate_over_a_window_triggers_rollback_with_explanation() {
        let p = plan("[[rule]]\nname = \"errors\"\nwhen = \"api.error_rate > 20% over 10s\"\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        for i in 0..8 {
            e.push(s(i * 1000, true, 5.0));
        }
        assert_eq!(e.evaluate(7000)[0].outcome, Outcome::Pass);
        e.push(s(8000, false, 5.0));
        e.push(s(9000, false, 5.0));
        assert_eq!(e.evaluate(9000)[0].outcome, Outcome::Pass, "2 of 10 is 20%, not above");
        e.push(s(10_000, false, 5.0));
        let v = &e.evaluate(10_000)[0];
        assert_eq!(v.outcome, Outcome::Rollback);
        assert_eq!(v.samples, 10);
        assert_eq!(v.failed_samples, 3);
        assert_eq!(
            v.explanation,
            "errors: ROLLBACK: api.error_rate is 30% > 20% over 10s (10 samples, 3 failed)"
        );
    }

    #[test]
    fn too_few_samples_is_inconclusive_never_rollback() {
        let p = plan("[[rule]]\nwhen = \"api.error_rate > 5% over 1m\"\nmin-samples = 5\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        for i in 0..4 {
            e.push(s(i * 1000, false, 5.0));
        }
        let v = &e.evaluate(4000)[0];
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert!(v.explanation.contains("4 of 5 samples needed"), "{}", v.explanation);
    }

    #[test]
    fn no_data_policy_can_ask_for_rollback() {
        let p = plan("[[rule]]\nwhen = \"api.error_rate > 5% over 10s\"\nno-data = \"rollback\"\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        assert_eq!(e.evaluate(0)[0].outcome, Outcome::Rollback);
    }

    #[test]
    fn baseline_relative_latency() {
        let p = plan("[[rule]]\nwhen = \"api.latency.p95 > baseline + 25% over 5 samples\"\nthen = \"investigate\"\n");
        let base = BaselineStats {
            count: 10,
            latency_p95: Some(100.0),
            ..Default::default()
        };
        let mut e = Evaluator::new(&p, HashMap::from([("api".to_string(), base)]));
        for i in 0..5 {
            e.push(s(i, true, 120.0));
        }
        assert_eq!(e.evaluate(5)[0].outcome, Outcome::Pass);
        e.push(s(6, true, 130.0));
        let v = &e.evaluate(6)[0];
        assert_eq!(v.outcome, Outcome::Investigate);
        assert_eq!(v.threshold, Some(125.0));
        assert!(v.explanation.contains("baseline = 100ms → 125ms"), "{}", v.explanation);
    }

    #[test]
    fn without_a_baseline_a_relative_rule_is_inconclusive() {
        let p = plan("[[rule]]\nwhen = \"api.latency.p95 > baseline + 25%\"\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        for i in 0..5 {
            e.push(s(i, true, 500.0));
        }
        let v = &e.evaluate(5)[0];
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert!(v.explanation.contains("no baseline"));
    }

    #[test]
    fn consecutive_failures_and_hold_durations() {
        let p = plan("[[rule]]\nwhen = \"api.consecutive_failures >= 3\"\n[[rule]]\nwhen = \"api.up == 0 for 5s\"\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s(0, false, 1.0));
        e.push(s(1000, false, 1.0));
        let v = e.evaluate(1000);
        assert_eq!((v[0].outcome, v[1].outcome), (Outcome::Pass, Outcome::Pass));
        e.push(s(2000, false, 1.0));
        assert_eq!(e.evaluate(2000)[0].outcome, Outcome::Rollback);
        // `for 5s`: first seen down at the evaluation at t=1000.
        e.push(s(5500, false, 1.0));
        assert_eq!(e.evaluate(5500)[1].outcome, Outcome::Pass, "held 4.5s of 5s");
        e.push(s(6000, false, 1.0));
        assert_eq!(e.evaluate(6000)[1].outcome, Outcome::Rollback);
        // One good sample breaks the hold.
        e.push(s(6500, true, 1.0));
        assert_eq!(e.evaluate(6500)[1].outcome, Outcome::Pass);
    }

    #[test]
    fn success_needs_every_criterion_held() {
        let p = plan("[success]\nwhen = [\"api.error_rate == 0 over 3s for 2s\"]\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s(0, true, 1.0));
        assert!(!e.success(0));
        e.push(s(1000, true, 1.0));
        assert!(!e.success(1000), "two samples are not enough to hold");
        e.push(s(2000, true, 1.0));
        assert!(!e.success(2000), "holds from now on, for 0s");
        e.push(s(3000, true, 1.0));
        assert!(!e.success(3000));
        e.push(s(4000, true, 1.0));
        assert!(e.success(4000), "held for 2s");
        e.push(s(5000, false, 1.0));
        assert!(!e.success(5000));
    }

    #[test]
    fn success_without_for_is_not_met_by_one_sample() {
        let p = plan("[success]\nwhen = [\"api.error_rate == 0 over 1m\"]\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s(0, true, 1.0));
        assert!(!e.success(0));
        e.push(s(1000, true, 1.0));
        assert!(!e.success(1000));
        e.push(s(2000, true, 1.0));
        assert!(e.success(2000));
        // A window of fewer samples than the minimum needs them all.
        let p = plan("[success]\nwhen = [\"api.error_rate == 0 over 2 samples\"]\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s(0, true, 1.0));
        assert!(!e.success(0));
        e.push(s(1000, true, 1.0));
        assert!(e.success(1000));
    }

    fn with_fields(probe: &str, at: i64, fields: &[(&str, f64)], value: Option<f64>) -> SampleRow {
        SampleRow {
            probe: probe.into(),
            at,
            ok: true,
            value,
            fields: fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..SampleRow::default()
        }
    }

    #[test]
    fn selectors_pick_one_log_pattern_or_one_prometheus_series() {
        let src = r#"[plan]
name = "t"
rto = "1m"
[[probe]]
name = "errors"
every = "1s"
timeout = "1s"
log = { path = "app.log", patterns = ["ERROR", "CRITICAL"] }
[[probe]]
name = "q"
every = "1s"
timeout = "1s"
prometheus = { url = "http://127.0.0.1:9090", query = "rate(http_errors[1m])" }
[[rule]]
name = "critical"
when = "errors.count[CRITICAL] > 0 over 10s"
min-samples = 1
[[rule]]
name = "api-series"
when = "q.value[job=\"api\"] > 0.5"
min-samples = 1
"#;
        let p = Plan::parse(Path::new("backout.toml"), src, &Env::default()).unwrap();
        assert_eq!(p.rules[0].condition.metric.selector.as_deref(), Some("CRITICAL"));
        assert_eq!(p.rules[0].condition.metric.to_string(), "errors.count[CRITICAL]");
        let mut e = Evaluator::new(&p, HashMap::new());
        // Plenty of ERRORs, no CRITICAL: the CRITICAL rule holds its fire.
        e.push(with_fields(
            "errors",
            1000,
            &[("count", 7.0), ("count:ERROR", 7.0), ("count:CRITICAL", 0.0)],
            None,
        ));
        // The api series is low, another one high: only the api series counts.
        e.push(with_fields(
            "q",
            1000,
            &[("{job=\"api\"}", 0.2), ("{job=\"db\"}", 0.9)],
            Some(0.9),
        ));
        let v = e.evaluate(1000);
        assert_eq!((v[0].outcome, v[1].outcome), (Outcome::Pass, Outcome::Pass), "{v:#?}");
        e.push(with_fields(
            "errors",
            2000,
            &[("count", 1.0), ("count:ERROR", 0.0), ("count:CRITICAL", 1.0)],
            None,
        ));
        e.push(with_fields(
            "q",
            2000,
            &[("{instance=\"a\",job=\"api\"}", 0.8), ("{job=\"db\"}", 0.1)],
            Some(0.8),
        ));
        let v = e.evaluate(2000);
        assert_eq!(
            (v[0].outcome, v[1].outcome),
            (Outcome::Rollback, Outcome::Rollback),
            "{v:#?}"
        );
        assert_eq!(v[0].value, Some(1.0));
        assert_eq!(v[1].value, Some(0.8));

        // A selector naming no pattern of the probe is a located plan error.
        let bad = src.replace("errors.count[CRITICAL]", "errors.count[FATAL]");
        let err = Plan::parse(Path::new("backout.toml"), &bad, &Env::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("probe \"errors\" has no pattern \"FATAL\"") && err.contains("[ERROR], [CRITICAL]"),
            "{err}"
        );
        let bad = src.replace("errors.count[CRITICAL]", "errors.up[CRITICAL]");
        assert!(Plan::parse(Path::new("backout.toml"), &bad, &Env::default()).is_err());
    }
}
