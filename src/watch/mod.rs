//! Watching: probes sample the system ([`sampler`]), samples fill windows, rules
//! compare windows with thresholds and the baseline ([`baseline`]), and the result
//! is a [`Verdict`] that always carries its explanation.

pub mod baseline;
pub mod decision;
pub mod review;
pub mod sampler;
pub mod verdict;

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::oplog::{OpId, SampleRow};
use crate::plan::{Plan, rule};
use crate::workspace::Workspace;
pub use baseline::BaselineStats;
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

/// Watches until a rollback verdict, success, or `limit`. Every sample is stored
/// in the operation log under `op`; events go to `on_event` as they happen.
pub async fn watch(
    ws: &Workspace,
    op: OpId,
    limit: Option<Duration>,
    mut on_event: impl FnMut(&WatchEvent),
) -> anyhow::Result<WatchResult> {
    let plan = &ws.plan;
    let baselines = load_baselines(ws, plan)?;
    let mut eval = Evaluator::new(plan, baselines);
    let started = ws.now_ms();
    let mut rx = sampler::start(plan.probes.clone(), ws.clock.clone());
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    let mut first_bad: Option<i64> = None;
    let mut last: HashMap<String, Outcome> = HashMap::new();
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(s) => s,
                Err(_) => {
                    return Ok(WatchResult::TimeUp {
                        verdicts: eval.evaluate(ws.now_ms()),
                    });
                }
            },
            None => rx.recv().await,
        };
        let Some(sample) = next else {
            anyhow::bail!("every probe stopped sampling");
        };
        ws.oplog.insert_sample(op, &sample)?;
        on_event(&WatchEvent::Sample(sample.clone()));
        if !sample.ok && first_bad.is_none() && sample.at >= started {
            first_bad = Some(sample.at);
            ws.oplog
                .event(op, sample.at, "first_bad_sample", &serde_json::to_value(&sample)?)?;
            on_event(&WatchEvent::FirstBadSample(sample.clone()));
        }
        eval.push(sample);
        let now = ws.now_ms();
        for v in eval.evaluate(now) {
            if last.get(&v.rule) != Some(&v.outcome) {
                last.insert(v.rule.clone(), v.outcome);
                if v.outcome != Outcome::Pass || last.len() > 1 {
                    on_event(&WatchEvent::Verdict(v.clone()));
                }
                if v.outcome == Outcome::Rollback {
                    ws.oplog.event(op, now, "verdict", &serde_json::to_value(&v)?)?;
                    return Ok(WatchResult::Rollback {
                        verdict: Box::new(v),
                        first_bad_at: first_bad,
                    });
                }
                if v.outcome == Outcome::Investigate {
                    ws.oplog.event(op, now, "investigate", &serde_json::to_value(&v)?)?;
                }
            }
        }
        if eval.success(now) {
            ws.oplog.event(op, now, "success", &serde_json::json!({}))?;
            on_event(&WatchEvent::Success { at: now });
            return Ok(WatchResult::Success { at: now });
        }
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
    let until = tokio::time::Instant::now() + duration;
    let mut by_probe: HashMap<String, Vec<SampleRow>> = HashMap::new();
    while let Ok(Some(s)) = tokio::time::timeout_at(until, rx.recv()).await {
        ws.oplog.insert_sample(op, &s)?;
        on_sample(&s);
        by_probe.entry(s.probe.clone()).or_default().push(s);
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

fn load_baselines(ws: &Workspace, plan: &Plan) -> anyhow::Result<HashMap<String, BaselineStats>> {
    let mut out = HashMap::new();
    for p in &plan.probes {
        if let Some(v) = ws.oplog.latest_baseline(&p.name)?
            && let Ok(stats) = serde_json::from_value(v)
        {
            out.insert(p.name.clone(), stats);
        }
    }
    Ok(out)
}

/// Time a rule needs to detect a total failure (every sample bad): the samples it
/// needs times the probe's interval, plus its `for` duration.
pub fn time_to_detect(plan: &Plan, r: &crate::plan::Rule) -> Option<(usize, Duration)> {
    let probe = plan.probe(&r.condition.metric.probe)?;
    let n = verdict::samples_needed(r);
    let t = probe.every * n as u32 + r.condition.hold.unwrap_or_default();
    Some((n, t))
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
