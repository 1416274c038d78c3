//! Rules applied to windows of samples: each evaluation gives a [`Verdict`] with
//! the rule, the window, the value, the threshold, the baseline and the samples
//! it used, and one line a person can act on.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::baseline::BaselineStats;
pub use super::window::{History, Need, Reading, SUCCESS_MIN_SAMPLES, read};
use crate::oplog::SampleRow;
use crate::plan::rule::{self, Condition, Field, TestKind, Threshold, Window};
use crate::plan::{Action, Criterion, DEFAULT_WINDOW_SAMPLES, Decision, NoData, Plan, Rule, evidence, units};

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
    /// Samples the rule's window holds when full (`over 30s` at 250ms: 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_samples: Option<usize>,
    /// Whether the window was full; `false`: a fresh watch's window still
    /// filling, whose value (if any) is a lower bound already past the limit.
    #[serde(default = "full_by_default")]
    pub window_full: bool,
    /// A statistical rule's test: its p-value or e-value, and the baseline
    /// samples it compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Box<super::window::TestReading>>,
    /// One line a person can act on.
    pub explanation: String,
}

fn full_by_default() -> bool {
    true
}

/// Holds recent samples and the state of `for` conditions; evaluates rules.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<Rule>,
    success: Vec<Criterion>,
    baselines: HashMap<String, BaselineStats>,
    samples: HashMap<String, VecDeque<SampleRow>>,
    /// Each probe's first sample seen, and its interval (ms).
    first_at: HashMap<String, i64>,
    every_ms: HashMap<String, i64>,
    /// Since when each rule's condition has held without a break.
    rule_since: HashMap<usize, i64>,
    /// Rules tripped and not yet cleared, with since when their condition has
    /// been false (hysteresis: `clear-after`).
    latched: HashMap<usize, Option<i64>>,
    success_since: HashMap<usize, i64>,
    decision: Decision,
    total_probes: usize,
    /// The detectors of sequential rules, by rule index (or why there is none).
    sequential: HashMap<usize, Result<super::judge::Sequential, String>>,
    /// Since when the decision matrix has called for each rule's action.
    decision_since: HashMap<String, i64>,
    /// How much history to keep, in ms and in samples.
    keep_ms: i64,
    keep_n: usize,
}

/// The longest run of failures a watch keeps samples for; a `consecutive_failures`
/// threshold beyond it is one no watch reaches anyway.
const MAX_RUN_KEPT: usize = 100_000;

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
            // A run of failures is counted back from the latest sample: keep
            // one more than the run that trips, whatever the windows hold.
            if let (crate::plan::rule::Field::ConsecutiveFailures, crate::plan::rule::Threshold::Absolute { value }) =
                (c.metric.field, &c.threshold)
                && let Some(run) = crate::plan::evidence::trip_count(c, 1, Some(*value))
            {
                keep_n = keep_n.max(run.saturating_add(1).min(MAX_RUN_KEPT));
            }
            match c.window {
                Some(Window::Duration(d)) => keep_ms = keep_ms.max(crate::context::millis(d)),
                Some(Window::Samples(n)) => keep_n = keep_n.max(n),
                None => {}
            }
        }
        for r in &plan.rules {
            keep_n = keep_n.max(r.min_samples.unwrap_or(1));
        }
        let sequential = super::judge::detectors(plan.rules.iter().map(|r| &r.condition).enumerate(), &baselines);
        Evaluator {
            rules: plan.rules.clone(),
            success: plan.success.clone(),
            sequential,
            baselines,
            samples: HashMap::new(),
            first_at: HashMap::new(),
            every_ms: plan
                .probes
                .iter()
                .map(|p| (p.name.clone(), p.every.as_millis().max(1) as i64))
                .collect(),
            rule_since: HashMap::new(),
            latched: HashMap::new(),
            success_since: HashMap::new(),
            decision: plan.decision.clone(),
            total_probes: plan.probes.len(),
            decision_since: HashMap::new(),
            keep_ms,
            keep_n,
        }
    }

    pub fn push(&mut self, s: SampleRow) {
        for (i, d) in self.sequential.iter_mut() {
            if let (Ok(d), Some(r)) = (d, self.rules.get(*i))
                && r.condition.metric.probe == s.probe
            {
                d.push(&r.condition, &s);
            }
        }
        let first = self.first_at.entry(s.probe.clone()).or_insert(s.at);
        *first = (*first).min(s.at);
        let q = self.samples.entry(s.probe.clone()).or_default();
        let at = s.at;
        q.push_back(s);
        while q.len() > self.keep_n && q.front().is_some_and(|f| f.at <= at.saturating_sub(self.keep_ms)) {
            q.pop_front();
        }
    }

    /// The history of `probe`, for [`read`].
    fn history<'a>(&'a self, probe: &str, empty: &'a VecDeque<SampleRow>) -> History<'a> {
        History {
            samples: self.samples.get(probe).unwrap_or(empty),
            first_at: self.first_at.get(probe).copied(),
            every_ms: self.every_ms.get(probe).copied().unwrap_or(1000),
        }
    }

    /// One verdict per rule, at `now`.
    pub fn evaluate(&mut self, now: i64) -> Vec<Verdict> {
        let empty = VecDeque::new();
        let mut out = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let c = &r.condition;
            let h = self.history(&c.metric.probe, &empty);
            let base = self.baselines.get(&c.metric.probe);
            let reading = match (c.test, self.sequential.get(&i)) {
                (Some(t), _) if t.kind == TestKind::MannWhitney => {
                    super::judge::mann_whitney(c, t, h, now, r.min_samples, base)
                }
                (Some(_), Some(Ok(d))) => d.read(c, h, now),
                (Some(_), Some(Err(why))) => super::judge::unavailable(c, h, why),
                _ => read(c, h, now, Need::Rule { min: r.min_samples }, base),
            };
            let held_for = track_hold(&mut self.rule_since, i, reading.holds == Some(true), now);
            let hold_ok = c.hold.is_none_or(|h| held_for >= crate::context::millis(h));
            let fires = reading.holds == Some(true) && hold_ok;
            // Hysteresis: a tripped rule stays tripped until its condition has
            // been false for `clear-after`.
            let every =
                std::time::Duration::from_millis(self.every_ms.get(&c.metric.probe).copied().unwrap_or(1000) as u64);
            let clear_ms = crate::context::millis(evidence::clear_after(r, every));
            let clearing = match (fires, self.latched.get(&i).copied()) {
                (true, _) => {
                    self.latched.insert(i, None);
                    None
                }
                (false, Some(since)) => {
                    let since = since.unwrap_or(now);
                    if now - since >= clear_ms {
                        self.latched.remove(&i);
                        None
                    } else {
                        self.latched.insert(i, Some(since));
                        Some((now - since, clear_ms))
                    }
                }
                (false, None) => None,
            };
            let outcome = match reading.holds {
                _ if fires || clearing.is_some() => match r.action {
                    Action::Rollback => Outcome::Rollback,
                    Action::Investigate => Outcome::Investigate,
                },
                None if r.no_data == NoData::Rollback && reading.samples == 0 => Outcome::Rollback,
                None => Outcome::Inconclusive,
                Some(_) => Outcome::Pass,
            };
            out.push(verdict(r, &reading, outcome, held_for, clearing));
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
        let h = self.history(&c.metric.probe, &empty);
        read(c, h, now, Need::AsIs(1), self.baselines.get(&c.metric.probe))
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
            let h = self.history(&c.metric.probe, &empty);
            // Success is the confident side: like a rule, it needs a few samples
            // in its window before it can hold (one good sample proves little).
            let min = match c.window {
                Some(Window::Samples(n)) => n.clamp(1, SUCCESS_MIN_SAMPLES),
                _ => SUCCESS_MIN_SAMPLES,
            };
            let reading = read(c, h, now, Need::AsIs(min), self.baselines.get(&c.metric.probe));
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

/// A number that may be tiny or huge, for people: `0.0004`, `3.1e-9`, `312`.
fn sci(v: f64) -> String {
    if v != 0.0 && !(1e-3..1e6).contains(&v.abs()) {
        format!("{v:.1e}")
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        units::trim_float((v * 1e4).round() / 1e4)
    }
}

/// How a statistical rule's test came out, in place of a window's count.
fn test_span(t: &super::window::TestReading, field: Field, reading: &Reading, window: &str, answered: &str) -> String {
    match t.kind {
        TestKind::MannWhitney => {
            let p = t.p_value.unwrap_or(1.0);
            let alpha = 1.0 - t.confidence;
            format!(
                "over {window} ({} samples, {} failed{answered}; Mann–Whitney p = {} {} {} against {} baseline samples)",
                reading.samples,
                reading.failed,
                sci(p),
                if p < alpha { "<" } else { "≥" },
                sci(alpha),
                t.baseline_samples
            )
        }
        TestKind::Sequential => {
            let e = t.e_value.unwrap_or(0.0);
            let h = t.e_threshold.unwrap_or(f64::INFINITY);
            let share = rule::format_value(Field::ErrorRate, t.null_share.unwrap_or(0.0));
            let bad = t.bad_in_window.unwrap_or(0);
            let what = if field == Field::ErrorRate {
                format!("failures at most {share} of samples")
            } else {
                format!(
                    "at most {share} of answers beyond {}",
                    reading.threshold.map_or("?".into(), |v| rule::format_value(field, v))
                )
            };
            format!(
                "(sequential test: e = {} {} {} against {what}; {bad} of the {} samples over {window} {})",
                sci(e),
                if e >= h { "≥" } else { "<" },
                sci(h),
                reading.samples,
                if field == Field::ErrorRate {
                    "failed"
                } else {
                    "beyond it"
                }
            )
        }
    }
}

/// `clearing`: the rule tripped and its condition has been false for this long
/// (ms) of the time it must stay false to clear.
fn verdict(r: &Rule, reading: &Reading, outcome: Outcome, held_for: i64, clearing: Option<(i64, i64)>) -> Verdict {
    let c = &r.condition;
    let field = c.metric.field;
    let fmt = |v: Option<f64>| v.map_or("?".to_string(), |v| rule::format_value(field, v));
    let window = super::describe_window(c);
    let subject = if reading.bound {
        format!("{} is at least {}", c.metric, fmt(reading.value))
    } else {
        format!("{} is {}", c.metric, fmt(reading.value))
    };
    let threshold = match (&c.threshold, reading.threshold) {
        (Threshold::Baseline { .. }, Some(t)) => format!(
            "{} ({} = {})",
            rule::format_threshold(field, &c.threshold),
            "baseline",
            fmt(reading.baseline).to_string() + &format!(" → {}", rule::format_value(field, t))
        ),
        _ => rule::format_threshold(field, &c.threshold),
    };
    let answered = if field == Field::Latency && reading.failed > 0 {
        format!("; latency of the {} answered", reading.samples - reading.failed)
    } else {
        String::new()
    };
    let span = if let Some(t) = &reading.test {
        test_span(t, field, reading, &window, &answered)
    } else if reading.bound {
        format!(
            "over {window} ({} of {} samples so far, {} failed{answered}: past the limit whatever the rest of the window holds)",
            reading.samples, reading.capacity, reading.failed
        )
    } else {
        format!(
            "over {window} ({} samples, {} failed{answered})",
            reading.samples, reading.failed
        )
    };
    let sequential = reading.test.as_ref().is_some_and(|t| t.kind == TestKind::Sequential);
    // A sequential test's claim is about the samples since the breach began,
    // not one window's statistic: say the claim, then the test.
    let claim = format!("{} {} {threshold} {span}", c.metric, c.op.symbol());
    let explanation = match outcome {
        _ if sequential && reading.holds.is_some() => {
            let word = match outcome {
                Outcome::Rollback => "ROLLBACK",
                Outcome::Investigate => "INVESTIGATE",
                _ => "ok",
            };
            let clear = clearing.map_or(String::new(), |(for_ms, of_ms)| {
                let ms = |v: i64| units::format_duration(std::time::Duration::from_millis(v.max(0) as u64));
                format!(
                    " (clearing: ok once the test stays under its level for {}, {} so far)",
                    ms(of_ms),
                    ms(for_ms)
                )
            });
            if word == "ok" {
                format!("{}: ok: no sign that {claim}", r.name)
            } else {
                format!("{}: {word}: {claim}{clear}", r.name)
            }
        }
        Outcome::Inconclusive => format!(
            "{}: inconclusive: {} ({})",
            r.name,
            reading.missing.clone().unwrap_or_else(|| "waiting".into()),
            r.text
        ),
        Outcome::Rollback | Outcome::Investigate if clearing.is_some() => {
            let (for_ms, of_ms) = clearing.unwrap_or_default();
            let ms = |v: i64| units::format_duration(std::time::Duration::from_millis(v.max(0) as u64));
            let now = match reading.value {
                Some(_) => format!("{subject}, no longer {} {threshold} {span}", c.op.symbol()),
                None => reading.missing.clone().unwrap_or_else(|| "no reading".into()),
            };
            format!(
                "{}: {} (clearing): {now}; ok once it stays so for {} ({} so far)",
                r.name,
                if outcome == Outcome::Rollback {
                    "ROLLBACK"
                } else {
                    "INVESTIGATE"
                },
                ms(of_ms),
                ms(for_ms)
            )
        }
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
        window_samples: (evidence::shape(c) != evidence::Shape::Point).then_some(reading.capacity),
        window_full: reading.full,
        test: reading.test.clone().map(Box::new),
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
        let v = &e.evaluate(7000)[0];
        assert_eq!(v.outcome, Outcome::Inconclusive, "8 of 10 samples: not a full window");
        assert!(
            v.explanation.contains("window filling: 8 of 10 samples so far"),
            "{}",
            v.explanation
        );
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
    fn a_run_of_failures_longer_than_the_default_window_trips() {
        // The evaluator keeps 3 samples by default; a run of 5 must still be seen.
        let p = plan("[[rule]]\nwhen = \"api.consecutive_failures >= 5\"\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s(0, true, 5.0));
        for i in 1..5 {
            e.push(s(i * 1000, false, 5.0));
            assert_ne!(e.evaluate(i * 1000)[0].outcome, Outcome::Rollback, "a run of {i}");
        }
        e.push(s(5000, false, 5.0));
        assert_eq!(e.evaluate(5000)[0].outcome, Outcome::Rollback);
    }

    #[test]
    fn a_huge_run_threshold_keeps_a_bounded_history() {
        let p = plan("[[rule]]\nwhen = \"api.consecutive_failures > 1e300\"\n");
        let e = Evaluator::new(&p, HashMap::new());
        assert_eq!(e.keep_n, MAX_RUN_KEPT);
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
        // Plenty of ERRORs, no CRITICAL: the CRITICAL rule holds its fire (its
        // window is still filling: a match may yet come).
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
        assert_eq!(
            (v[0].outcome, v[1].outcome),
            (Outcome::Inconclusive, Outcome::Pass),
            "{v:#?}"
        );
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

    fn quarter(rules: &str) -> Plan {
        let src = format!(
            "[plan]\nname = \"t\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"250ms\"\ntimeout = \"1s\"\nhttp = {{ url = \"http://127.0.0.1:1/\" }}\n{rules}"
        );
        Plan::parse(Path::new("backout.toml"), &src, &Env::default()).unwrap()
    }

    /// Issue 17 item 9 / issue 18: with the default min-samples and `over 30s`,
    /// one failed probe at the start of a healthy watch was "12.5% > 5% over 30s
    /// (8 samples, 1 failed)" and a ROLLBACK.
    #[test]
    fn one_failed_probe_at_the_start_of_a_watch_never_rolls_back() {
        let p = quarter("[[rule]]\nname = \"errors\"\nwhen = \"api.error_rate > 5% over 30s\"\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        let t0 = 1_000_000;
        for i in 0..400i64 {
            let at = t0 + i * 250;
            e.push(s(at, i != 0, 20.0));
            let v = &e.evaluate(at + 20)[0];
            assert_ne!(v.outcome, Outcome::Rollback, "sample {i}: {}", v.explanation);
            if i == 7 {
                assert_eq!(v.outcome, Outcome::Inconclusive);
                assert!(
                    v.explanation
                        .contains("window filling: 8 of 120 samples so far (1 failed)"),
                    "{}",
                    v.explanation
                );
                assert!(!v.window_full);
            }
            if i == 119 {
                assert_eq!(v.outcome, Outcome::Pass, "{}", v.explanation);
                assert_eq!((v.samples, v.failed_samples), (120, 1));
            }
        }
    }

    /// A fresh watch still catches what a full window would: 7 failed samples
    /// are more than 5% of 120 whatever the other 113 turn out to be.
    #[test]
    fn a_filling_window_trips_when_the_full_window_must() {
        let p = quarter("[[rule]]\nname = \"errors\"\nwhen = \"api.error_rate > 5% over 30s\"\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        for i in 0..6 {
            e.push(s(i * 250, false, 1.0));
            assert_eq!(e.evaluate(i * 250)[0].outcome, Outcome::Inconclusive);
        }
        e.push(s(1500, false, 1.0));
        let v = &e.evaluate(1500)[0];
        assert_eq!(v.outcome, Outcome::Rollback);
        assert!(!v.window_full);
        assert_eq!(v.window_samples, Some(120));
        assert_eq!(
            v.explanation,
            "errors: ROLLBACK: api.error_rate is at least 5.833% > 5% over 30s (7 of 120 samples so far, 7 failed: past the limit whatever the rest of the window holds)"
        );
        // A p95 needs its 7 largest of 120 above the limit.
        let p =
            quarter("[[rule]]\nname = \"slow\"\nwhen = \"api.latency.p95 > 100ms over 30s\"\nthen = \"investigate\"\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        for i in 0..6 {
            e.push(s(i * 250, true, 500.0));
        }
        assert_eq!(e.evaluate(1250)[0].outcome, Outcome::Inconclusive);
        e.push(s(1500, true, 500.0));
        assert_eq!(e.evaluate(1500)[0].outcome, Outcome::Investigate);
    }

    /// Issue 18: a 30s window held 119 or 120 samples depending on when the
    /// last probe answered, and its p95 flapped. Windows now end at the latest
    /// sample and hold the same count whenever they are evaluated.
    #[test]
    fn a_window_holds_the_same_samples_whenever_it_is_evaluated() {
        let p =
            quarter("[[rule]]\nname = \"slow\"\nwhen = \"api.latency.p95 > 59ms over 30s\"\nthen = \"investigate\"\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        // Fixed samples: 20ms answers with every 20th at 60ms (6 of 120: a
        // nearest-rank p95 of 119 samples was 60ms, of 120 samples 20ms).
        // Probes start up to 20ms late.
        let mut changes = 0;
        let mut last = None;
        for i in 0..600i64 {
            let at = i * 250 + (i * i * 7 + i * 13) % 21;
            let lat = if i % 20 == 0 { 60.0 } else { 20.0 };
            e.push(s(at, true, lat));
            // Evaluated when it answers, and again when other probes' samples
            // arrive up to 240ms later.
            for late in [lat as i64, 120, 240] {
                let v = &e.evaluate(at + late)[0];
                if i >= 120 {
                    assert_eq!(v.samples, 120, "sample {i} +{late}ms");
                    if last.is_some_and(|o| o != v.outcome) {
                        changes += 1;
                    }
                    last = Some(v.outcome);
                }
            }
        }
        assert_eq!(changes, 0);
        assert_eq!(last, Some(Outcome::Pass));
    }

    /// Issue 17: a latency rule said "ok: p95 0.2ms" while every sample was
    /// "connection refused".
    #[test]
    fn failed_samples_never_give_a_latency() {
        let p = plan("[[rule]]\nname = \"slow\"\nwhen = \"api.latency.p95 > baseline + 50% over 5 samples\"\n");
        let base = BaselineStats {
            count: 10,
            latency_p95: Some(40.0),
            ..Default::default()
        };
        let mut e = Evaluator::new(&p, HashMap::from([("api".to_string(), base)]));
        for i in 0..5 {
            e.push(s(i * 1000, false, 0.2));
        }
        let v = &e.evaluate(4000)[0];
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(v.value, None);
        assert!(
            v.explanation
                .contains("no successful sample in the window (5 of 5 failed)"),
            "{}",
            v.explanation
        );
        // With some answers, only they count: 3 answers at 100ms, 2 refusals at 0.2ms.
        for i in 5..8 {
            e.push(s(i * 1000, true, 100.0));
        }
        let v = &e.evaluate(7000)[0];
        assert_eq!(v.value, Some(100.0));
        assert!(v.explanation.contains("latency of the 3 answered"), "{}", v.explanation);
        // The baseline too ignores failures.
        let rows: Vec<SampleRow> = (0..10)
            .map(|i| s(i, i % 2 == 0, if i % 2 == 0 { 30.0 } else { 0.2 }))
            .collect();
        assert_eq!(BaselineStats::from_samples(&rows).latency_median, Some(30.0));
    }

    #[test]
    fn thresholds_in_points_and_milliseconds_above_the_baseline() {
        let base = BaselineStats {
            count: 240,
            error_rate: 0.0,
            latency_p95: Some(40.0),
            ..Default::default()
        };
        let bases = || HashMap::from([("api".to_string(), base.clone())]);
        // `+ 10%` of a 0% baseline is 0%: one failure trips it.
        let p = plan(
            "[[rule]]\nname = \"rel\"\nwhen = \"api.error_rate > baseline + 10% over 20 samples\"\n[[rule]]\nname = \"pp\"\nwhen = \"api.error_rate > baseline + 10pp over 20 samples\"\n[[rule]]\nname = \"ms\"\nwhen = \"api.latency.p95 > baseline + 50ms over 20 samples\"\n",
        );
        let mut e = Evaluator::new(&p, bases());
        for i in 0..20 {
            e.push(s(i * 1000, i != 3 && i != 9, if i < 18 { 80.0 } else { 85.0 }));
        }
        let v = e.evaluate(19_000);
        assert_eq!(v[0].outcome, Outcome::Rollback, "{}", v[0].explanation);
        assert_eq!(
            v[1].outcome,
            Outcome::Pass,
            "2 of 20 is 10pp above 0%, not more: {}",
            v[1].explanation
        );
        assert_eq!(v[1].threshold, Some(0.1));
        assert!(
            v[1].explanation.contains("baseline + 10pp (baseline = 0% → 10%)"),
            "{}",
            v[1].explanation
        );
        // p95 of 18 answers at 80ms and 2 at 85ms is below 40ms + 50ms.
        assert_eq!(v[2].threshold, Some(90.0));
        assert_eq!(v[2].outcome, Outcome::Pass, "{}", v[2].explanation);
        e.push(s(20_000, false, 1.0));
        let v = e.evaluate(20_000);
        assert_eq!(v[1].outcome, Outcome::Rollback, "3 of 20 is 15%: {}", v[1].explanation);
        for i in 21..24 {
            e.push(s(i * 1000, true, 120.0));
        }
        let v = e.evaluate(23_000);
        assert_eq!(v[2].outcome, Outcome::Rollback, "{}", v[2].explanation);
        assert!(
            v[2].explanation.contains("baseline + 50ms (baseline = 40ms → 90ms)"),
            "{}",
            v[2].explanation
        );
    }

    #[test]
    fn absolute_rules_carry_no_baseline() {
        let p = plan("[[rule]]\nwhen = \"api.latency.p95 > 1s over 3 samples\"\n");
        let base = BaselineStats {
            count: 10,
            latency_p95: Some(40.0),
            ..Default::default()
        };
        let mut e = Evaluator::new(&p, HashMap::from([("api".to_string(), base)]));
        for i in 0..3 {
            e.push(s(i * 1000, true, 10.0));
        }
        let v = &e.evaluate(2000)[0];
        assert_eq!(v.baseline, None);
        assert!(serde_json::to_value(v).unwrap()["baseline"].is_null());
    }
}
