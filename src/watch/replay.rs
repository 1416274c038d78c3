//! Replay: a plan's rules run again over the samples past watches and baselines
//! recorded in the operation log, each against the baseline that was current
//! when it began, exactly as a live watch would have judged them. What they
//! would have decided, and when, tells a user how their rules behave on their
//! own traffic before they trust them: false verdicts per hour on the healthy
//! stretches, and how long they take to detect the incidents.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::baseline;
use super::verdict::{Evaluator, Outcome};
use crate::oplog::{OpId, OperationRow, Oplog, OplogError};
use crate::plan::{Action, Plan, evidence};

/// What a recorded operation was, as far as the replay is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Label {
    /// Every verdict in it is a false one.
    Healthy,
    /// A regression began at `onset`: verdicts before it are false ones, the
    /// first after it detects it.
    Incident { onset: i64 },
}

/// One change of a rule's verdict during the replay of one operation.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub at: i64,
    /// Since the operation's first sample.
    pub offset_ms: i64,
    pub rule: String,
    pub outcome: Outcome,
    pub explanation: String,
    /// An entry into investigate or rollback on a healthy stretch.
    pub false_verdict: bool,
}

/// The replay of one operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpReplay {
    pub op: OpId,
    pub kind: String,
    pub started_at: i64,
    pub label: Label,
    pub samples: usize,
    pub first_sample_at: Option<i64>,
    pub last_sample_at: Option<i64>,
    /// Healthy time in it (ms): all of it, or what came before the onset.
    pub healthy_ms: i64,
    pub changes: Vec<Change>,
    /// For an incident, each rule's detection delay (ms) after the onset;
    /// `None`: not detected.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub detected: BTreeMap<String, Option<i64>>,
}

/// One rule over every replayed operation.
#[derive(Debug, Clone, Serialize)]
pub struct RuleSummary {
    pub rule: String,
    pub when: String,
    pub action: Action,
    pub false_verdicts: usize,
    pub false_per_hour: f64,
    pub false_rollbacks: usize,
    /// False rollbacks in the first window of an operation (a fresh watch).
    pub false_rollbacks_at_start: usize,
    pub incidents: usize,
    pub detected: usize,
    pub median_delay_ms: Option<i64>,
    pub max_delay_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    pub healthy_ms: i64,
    pub ops: Vec<OpReplay>,
    pub rules: Vec<RuleSummary>,
}

/// The label an operation gets unless the user says otherwise: a watch that
/// recorded a rollback verdict is an incident that began at its deploy; every
/// other watch, and every baseline, was healthy.
pub fn default_label(oplog: &Oplog, op: &OperationRow) -> Result<Label, OplogError> {
    if op.kind == "watch" && !oplog.events_of(op.id, "verdict")?.is_empty() {
        let onset = op.args["deploy_at"].as_i64().unwrap_or(op.started_at);
        return Ok(Label::Incident { onset });
    }
    Ok(Label::Healthy)
}

/// Replays `plan`'s rules over each operation's samples.
pub fn replay(oplog: &Oplog, plan: &Plan, ops: &[(OperationRow, Label)]) -> Result<Replay, OplogError> {
    let probes: std::collections::BTreeSet<&str> = plan.probes.iter().map(|p| p.name.as_str()).collect();
    let window_ms: HashMap<&str, i64> = plan
        .rules
        .iter()
        .filter_map(|r| {
            let every = plan.probe(&r.condition.metric.probe)?.every;
            let span = evidence::times(every, evidence::capacity(&r.condition, every));
            Some((r.name.as_str(), span.as_millis() as i64))
        })
        .collect();
    let mut out = Vec::new();
    for (op, label) in ops {
        let samples: Vec<_> = oplog
            .samples_of(op.id, None)?
            .into_iter()
            .filter(|s| probes.contains(s.probe.as_str()))
            .collect();
        let (Some(first), Some(last)) = (samples.first().map(|s| s.at), samples.last().map(|s| s.at)) else {
            continue;
        };
        // The baseline as it was when the operation began (never itself).
        let baselines = baseline::load_at(oplog, plan, op.started_at - 1)?;
        let mut eval = Evaluator::new(plan, baselines);
        let mut last_outcome: HashMap<String, Outcome> = HashMap::new();
        let mut changes = Vec::new();
        let mut now = i64::MIN;
        let onset = match label {
            Label::Incident { onset } => Some(*onset),
            Label::Healthy => None,
        };
        let mut detected: BTreeMap<String, Option<i64>> = BTreeMap::new();
        if onset.is_some() {
            for r in &plan.rules {
                detected.insert(r.name.clone(), None);
            }
        }
        let n = samples.len();
        for s in samples {
            // Evaluated as the answer arrives, as a watch does.
            now = now.max(s.at + s.latency_ms.unwrap_or(0.0) as i64);
            eval.push(s);
            for v in eval.evaluate(now) {
                let before = last_outcome.insert(v.rule.clone(), v.outcome);
                if before == Some(v.outcome) {
                    continue;
                }
                let entered = matches!(v.outcome, Outcome::Investigate | Outcome::Rollback)
                    && !matches!(before, Some(Outcome::Investigate | Outcome::Rollback));
                let before_onset = onset.is_none_or(|o| now < o);
                if entered
                    && !before_onset
                    && let Some(d @ None) = detected.get_mut(&v.rule)
                {
                    *d = Some(now - onset.unwrap_or(now));
                }
                changes.push(Change {
                    at: now,
                    offset_ms: now - first,
                    rule: v.rule.clone(),
                    outcome: v.outcome,
                    explanation: v.explanation,
                    false_verdict: entered && before_onset,
                });
            }
        }
        let healthy_ms = match onset {
            Some(o) => (o.min(last) - first).max(0),
            None => last - first,
        };
        out.push(OpReplay {
            op: op.id,
            kind: op.kind.clone(),
            started_at: op.started_at,
            label: *label,
            samples: n,
            first_sample_at: Some(first),
            last_sample_at: Some(last),
            healthy_ms,
            changes,
            detected,
        });
    }
    let healthy_ms: i64 = out.iter().map(|o| o.healthy_ms).sum();
    let hours = healthy_ms as f64 / 3_600_000.0;
    let rules = plan
        .rules
        .iter()
        .map(|r| {
            let falses: Vec<(&OpReplay, &Change)> = out
                .iter()
                .flat_map(|o| o.changes.iter().map(move |c| (o, c)))
                .filter(|(_, c)| c.rule == r.name && c.false_verdict)
                .collect();
            let start_ms = window_ms.get(r.name.as_str()).copied().unwrap_or(0);
            let rollbacks: Vec<&(&OpReplay, &Change)> =
                falses.iter().filter(|(_, c)| c.outcome == Outcome::Rollback).collect();
            let mut delays: Vec<i64> = out
                .iter()
                .filter_map(|o| o.detected.get(&r.name).copied().flatten())
                .collect();
            delays.sort_unstable();
            let incidents = out.iter().filter(|o| o.detected.contains_key(&r.name)).count();
            RuleSummary {
                rule: r.name.clone(),
                when: r.text.clone(),
                action: r.action,
                false_verdicts: falses.len(),
                false_per_hour: if hours > 0.0 { falses.len() as f64 / hours } else { 0.0 },
                false_rollbacks: rollbacks.len(),
                false_rollbacks_at_start: rollbacks.iter().filter(|(_, c)| c.offset_ms <= start_ms).count(),
                incidents,
                detected: delays.len(),
                median_delay_ms: median(&delays),
                max_delay_ms: delays.last().copied(),
            }
        })
        .collect();
    Ok(Replay {
        healthy_ms,
        ops: out,
        rules,
    })
}

fn median(sorted: &[i64]) -> Option<i64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}
