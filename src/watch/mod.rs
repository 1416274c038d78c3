//! Watching: probes sample the system ([`sampler`]), samples fill windows, rules
//! compare windows with thresholds and the baseline ([`baseline`]), and the result
//! is a [`Verdict`] that always carries its explanation.

pub mod baseline;
pub mod decision;
#[cfg(test)]
mod events_tests;
pub mod judge;
pub mod replay;
#[cfg(test)]
mod resume_tests;
pub mod review;
pub mod sampler;
pub mod stats;
pub mod status;
pub mod verdict;
pub mod window;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::oplog::{OpId, SampleRow};
use crate::plan::{Action, Plan, rule};
use crate::workspace::Workspace;
pub use baseline::BaselineStats;
pub use review::ReviewResult;
pub use verdict::{Evaluator, Outcome, Verdict};

/// Something that happened during a watch, for the terminal or a JSON stream.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    Sample(SampleRow),
    /// The first failed sample since the watch began.
    FirstBadSample(SampleRow),
    /// A rule's outcome changed.
    Verdict(Verdict),
    /// A scheduled review was evaluated.
    Review(ReviewResult),
    /// Every success criterion held.
    Success {
        at: i64,
    },
}

/// How a watch ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum WatchResult {
    /// A rule called for a rollback.
    Rollback {
        verdict: Box<Verdict>,
        first_bad_at: Option<i64>,
    },
    /// The success criteria held.
    Success { at: i64 },
    /// Time ran out with no decision; the last verdicts.
    TimeUp { verdicts: Vec<Verdict> },
}

/// Where a watch's schedule starts: the deploy time reviews count from, and the
/// reviews already done. A resumed watch reads both back from the operation log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule {
    pub deploy_at: i64,
    pub done: BTreeSet<String>,
}

/// Most samples stored in one transaction.
const BATCH: usize = 512;

/// Watches until a rollback verdict, success, or `limit`. Every sample is stored
/// in the operation log under `op`; events go to `on_event` as they happen.
pub async fn watch(
    ws: &Workspace,
    op: OpId,
    limit: Option<Duration>,
    on_event: impl FnMut(&WatchEvent),
) -> anyhow::Result<WatchResult> {
    let schedule = Schedule {
        deploy_at: ws.now_ms(),
        done: BTreeSet::new(),
    };
    watch_from(ws, op, limit, schedule, on_event).await
}

/// [`watch`] continuing `schedule`: reviews count from its deploy time and those
/// it lists as done are not run again; the samples of the windows in play are
/// reloaded from the operation log, so a resumed watch judges them as if it had
/// never stopped.
pub async fn watch_from(
    ws: &Workspace,
    op: OpId,
    limit: Option<Duration>,
    schedule: Schedule,
    on_event: impl FnMut(&WatchEvent),
) -> anyhow::Result<WatchResult> {
    // Failed reviews are told to the plan's webhooks as they happen; deliveries
    // finish (bounded) and are recorded when the watch ends.
    let mut notifier = crate::notify::Notifier::start(ws);
    let result = watch_schedule(ws, op, limit, schedule, on_event, &mut notifier).await;
    notifier.finish(ws, op, crate::incident::NOTIFY_WAIT).await;
    result
}

async fn watch_schedule(
    ws: &Workspace,
    op: OpId,
    limit: Option<Duration>,
    mut schedule: Schedule,
    mut on_event: impl FnMut(&WatchEvent),
    notifier: &mut crate::notify::Notifier,
) -> anyhow::Result<WatchResult> {
    let plan = &ws.plan;
    let baselines = load_baselines(ws, plan)?;
    let mut eval = Evaluator::new(plan, baselines);
    let started = ws.now_ms();
    if started > schedule.deploy_at {
        // A little more than the longest window, so sample-count windows fill too.
        let from = schedule
            .deploy_at
            .max(started.saturating_sub(eval.history_ms()).saturating_sub(60_000));
        let probes: BTreeSet<&str> = plan.probes.iter().map(|p| p.name.as_str()).collect();
        for s in ws.oplog.samples_between(from, started)? {
            if probes.contains(s.probe.as_str()) {
                eval.push(s);
            }
        }
    }
    let probe_state = ws.state_dir.join("probes");
    let mut rx = sampler::start_with(plan.probes.clone(), ws.clock.clone(), Some(probe_state));
    let deadline = limit.map(crate::context::async_deadline);
    let mut first_bad: Option<i64> = None;
    let mut last: HashMap<String, Outcome> = HashMap::new();
    let all_reviews = !plan.reviews.is_empty();
    // A review waits until this watch has sampled every probe it names (a probe
    // that cannot answer still yields a failed sample at its timeout): one that
    // fell due while no watch ran is judged on fresh data, and one due moments
    // after the start is not failed for want of a first sample.
    let mut sampled: BTreeSet<String> = BTreeSet::new();
    let ready = |r: &crate::plan::Review, sampled: &BTreeSet<String>| {
        r.expect.iter().all(|c| sampled.contains(&c.condition.metric.probe))
    };
    loop {
        // Wake for the next sample, the next review, or the end, whichever comes first.
        let next_review = plan
            .reviews
            .iter()
            .filter(|r| ready(r, &sampled) && !schedule.done.contains(&r.name))
            .map(|r| schedule.deploy_at.saturating_add(crate::context::millis(r.at)))
            .min()
            .map(|due| {
                crate::context::async_deadline(Duration::from_millis(due.saturating_sub(ws.now_ms()).max(0) as u64))
            });
        let wake = match (deadline, next_review) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        };
        let next = match wake {
            Some(w) => tokio::time::timeout_at(w, rx.recv()).await.ok(),
            None => Some(rx.recv().await),
        };
        let mut batch = Vec::new();
        match next {
            Some(Some(s)) => {
                batch.push(s);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(s) => batch.push(s),
                        Err(_) => break,
                    }
                }
            }
            Some(None) => anyhow::bail!("every probe stopped sampling"),
            None => {}
        }
        ws.oplog.insert_samples(op, &batch)?;
        sampled.extend(batch.iter().map(|s| s.probe.clone()));
        for sample in batch {
            on_event(&WatchEvent::Sample(sample.clone()));
            if !sample.ok && first_bad.is_none() && sample.at >= started {
                first_bad = Some(sample.at);
                ws.oplog
                    .event(op, sample.at, "first_bad_sample", &serde_json::to_value(&sample)?)?;
                on_event(&WatchEvent::FirstBadSample(sample.clone()));
            }
            eval.push(sample);
        }
        let now = ws.now_ms();
        // Every change of this evaluation is recorded and shown before the
        // first rollback verdict (in plan order) ends the watch, so a rule
        // that changed with it is not lost.
        let mut rollback = None;
        for v in eval.evaluate(now) {
            if last.get(&v.rule) != Some(&v.outcome) {
                let before = last.insert(v.rule.clone(), v.outcome);
                ws.oplog.event(op, now, "rule_outcome", &serde_json::to_value(&v)?)?;
                // Every change is shown, the return to ok included; only a
                // rule's first verdict, when it is ok, is not news.
                if v.outcome != Outcome::Pass || before.is_some() {
                    on_event(&WatchEvent::Verdict(v.clone()));
                }
                if v.outcome == Outcome::Rollback && rollback.is_none() {
                    ws.oplog.event(op, now, "verdict", &serde_json::to_value(&v)?)?;
                    rollback = Some(v);
                } else if v.outcome == Outcome::Investigate {
                    ws.oplog.event(op, now, "investigate", &serde_json::to_value(&v)?)?;
                }
            }
        }
        if let Some(v) = rollback {
            return Ok(WatchResult::Rollback {
                verdict: Box::new(v),
                first_bad_at: first_bad,
            });
        }
        let due = review::due(plan, schedule.deploy_at, &schedule.done, now);
        for r in due.into_iter().filter(|r| ready(r, &sampled)) {
            let result = review::evaluate(r, &eval, schedule.deploy_at, now);
            schedule.done.insert(result.name.clone());
            ws.oplog.event(op, now, "review", &serde_json::to_value(&result)?)?;
            on_event(&WatchEvent::Review(result.clone()));
            if !result.passed {
                let failed: Vec<&str> = result
                    .expectations
                    .iter()
                    .filter(|e| e.holds != Some(true))
                    .map(|e| e.text.as_str())
                    .collect();
                notifier.send(&crate::notify::Event {
                    event: "review_failed",
                    severity: if result.action == Action::Rollback {
                        crate::plan::incident::Severity::Critical
                    } else {
                        crate::plan::incident::Severity::Warning
                    },
                    plan: plan.name.clone(),
                    incident: None,
                    message: format!("review {} failed: {}", result.name, failed.join(", ")),
                    at: now,
                    details: serde_json::to_value(&result)?,
                });
            }
            if !result.passed && result.action == Action::Rollback {
                let v = review_verdict(&result);
                ws.oplog.event(op, now, "verdict", &serde_json::to_value(&v)?)?;
                return Ok(WatchResult::Rollback {
                    verdict: Box::new(v),
                    first_bad_at: first_bad,
                });
            }
        }
        let reviews_done = all_reviews && schedule.done.len() >= plan.reviews.len();
        if eval.success(now) || (reviews_done && plan.success.is_empty() && reviews_passed(ws, &schedule)?) {
            ws.oplog.event(op, now, "success", &serde_json::json!({}))?;
            on_event(&WatchEvent::Success { at: now });
            return Ok(WatchResult::Success { at: now });
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(WatchResult::TimeUp {
                verdicts: eval.evaluate(ws.now_ms()),
            });
        }
    }
}

/// Whether every review of this deploy recorded in the log passed.
fn reviews_passed(ws: &Workspace, schedule: &Schedule) -> anyhow::Result<bool> {
    Ok(ws
        .oplog
        .events_since(schedule.deploy_at)?
        .iter()
        .filter(|e| e.kind == "review" && e.detail["deploy_at"] == schedule.deploy_at)
        .all(|e| e.detail["passed"] == true))
}

/// A failed review that calls for a rollback, as a verdict.
fn review_verdict(r: &ReviewResult) -> Verdict {
    let failed: Vec<&review::Expectation> = r.expectations.iter().filter(|e| e.holds != Some(true)).collect();
    Verdict {
        outcome: Outcome::Rollback,
        rule: format!("review {}", r.name),
        when: r
            .expectations
            .iter()
            .map(|e| e.text.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        probe: failed
            .first()
            .and_then(|e| e.text.split('.').next())
            .unwrap_or_default()
            .to_string(),
        value: failed.first().and_then(|e| e.value),
        threshold: None,
        baseline: None,
        window: format!(
            "review at +{}",
            crate::plan::units::format_duration(Duration::from_millis(r.offset_ms))
        ),
        samples: 0,
        failed_samples: 0,
        first_sample_at: None,
        last_sample_at: None,
        window_samples: None,
        window_full: true,
        test: None,
        explanation: format!(
            "{}: {}",
            r.summary(),
            failed
                .iter()
                .map(|e| e.explanation.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// Samples every probe for `duration` and stores each probe's statistics as its
/// baseline under `op`.
pub async fn measure_baseline(
    ws: &Workspace,
    op: OpId,
    duration: Duration,
    mut on_sample: impl FnMut(&SampleRow),
) -> anyhow::Result<Vec<(String, BaselineStats)>> {
    let mut rx = sampler::start(ws.plan.probes.clone(), ws.clock.clone());
    let until = crate::context::async_deadline(duration);
    let mut by_probe: HashMap<String, Vec<SampleRow>> = HashMap::new();
    while let Ok(Some(first)) = tokio::time::timeout_at(until, rx.recv()).await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        ws.oplog.insert_samples(op, &batch)?;
        for s in batch {
            on_sample(&s);
            by_probe.entry(s.probe.clone()).or_default().push(s);
        }
    }
    let now = ws.now_ms();
    let mut out = Vec::new();
    for p in &ws.plan.probes {
        let stats = BaselineStats::from_samples(by_probe.get(&p.name).map_or(&[][..], Vec::as_slice));
        ws.oplog
            .save_baseline(op, &p.name, now, &serde_json::to_value(&stats)?)?;
        out.push((p.name.clone(), stats));
    }
    Ok(out)
}

/// Each probe's baseline now (see [`baseline::load_at`]).
pub fn load_baselines(ws: &Workspace, plan: &Plan) -> anyhow::Result<HashMap<String, BaselineStats>> {
    Ok(baseline::load_at(&ws.oplog, plan, ws.now_ms())?)
}

/// Time a rule needs to detect a sustained breach (every sample failed, or every
/// answer beyond its limit) from the first sample of a fresh watch: the samples
/// it needs times the probe's interval, plus its `for` duration.
pub fn time_to_detect(plan: &Plan, r: &crate::plan::Rule) -> Option<(usize, Duration)> {
    detect_times(plan, r).fresh
}

/// Samples and time a rule needs to detect a sustained breach: on a fresh watch
/// and with a full window of healthy samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectTimes {
    pub fresh: Option<(usize, Duration)>,
    pub full: Option<(usize, Duration)>,
    /// The figures assume a 0% baseline (a relative error-rate rule).
    pub zero_baseline: bool,
}

pub fn detect_times(plan: &Plan, r: &crate::plan::Rule) -> DetectTimes {
    let Some(probe) = plan.probe(&r.condition.metric.probe) else {
        return DetectTimes {
            fresh: None,
            full: None,
            zero_baseline: false,
        };
    };
    let mut d = crate::plan::evidence::detect(r, probe.every);
    if let Some(t) = r.condition.test.filter(|t| t.kind == rule::TestKind::Sequential)
        && r.condition.metric.field != rule::Field::ErrorRate
    {
        // Every answer beyond the limit: how many lift the detector to its level
        // (a quantile fixes the share the null allows; an error rate's depends
        // on the baseline).
        let q = crate::plan::evidence::quantile(r.condition.metric.agg).unwrap_or(0.5);
        let p0 = if matches!(r.condition.op, rule::Op::Gt | rule::Op::Ge) {
            1.0 - q
        } else {
            q
        };
        let n = stats::Detector::samples_to_reach(p0, 1.0 / (1.0 - t.confidence));
        d.fresh = n;
        d.full = n;
    }
    let time = |n: usize| {
        let times = u32::try_from(n).unwrap_or(u32::MAX);
        (
            n,
            probe
                .every
                .saturating_mul(times)
                .saturating_add(r.condition.hold.unwrap_or_default()),
        )
    };
    DetectTimes {
        fresh: d.fresh.map(time),
        full: d.full.map(time),
        zero_baseline: d.zero_baseline,
    }
}

/// ` over WINDOW` as a rule summary reads it; empty where no window applies.
pub fn over_phrase(c: &rule::Condition) -> String {
    match c.metric.field {
        rule::Field::ConsecutiveFailures => String::new(),
        _ => format!(" over {}", describe_window(c)),
    }
}

/// A one-line description of a window for people.
pub fn describe_window(c: &rule::Condition) -> String {
    if c.metric.field == rule::Field::ConsecutiveFailures {
        return "every sample so far".into();
    }
    match c.window {
        Some(w) => w.to_string(),
        None => rule::Window::Samples(crate::plan::DEFAULT_WINDOW_SAMPLES).to_string(),
    }
}
