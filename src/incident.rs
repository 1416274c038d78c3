//! Responding to a rollback verdict: open the incident, capture diagnostics,
//! notify, roll back, verify the recovery and write the report. Shared by
//! `backout watch --auto-rollback` and the demo, so both leave the same trail.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::notify::{Event, Notifier};
use crate::oplog::{CheckpointRow, OpId};
use crate::plan::incident::Severity;
use crate::plan::rule::{Field, Threshold};
use crate::report::{self, Incident, chart::Limit};
use crate::rollback::{self, StepEvent};
use crate::verify::{self, CheckResult};
use crate::watch::{BaselineStats, Verdict};
use crate::workspace::Workspace;

/// How long the end of a response waits for webhooks still being delivered.
pub const NOTIFY_WAIT: Duration = Duration::from_secs(10);

/// Progress of a response, for the terminal.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ResponseEvent {
    Diagnostics { items: usize },
    RollbackStarted { checkpoint: String },
    Step(StepEvent),
    Verifying,
    Check(CheckResult),
}

/// What the incident started from.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub watch_op: OpId,
    pub verdict: Verdict,
    pub verdict_at: i64,
    pub first_bad_at: Option<i64>,
    pub deploy_at: Option<i64>,
}

/// Opens the incident, captures diagnostics, rolls back to `checkpoint`,
/// verifies, writes the report; notifies along the way.
pub async fn respond(
    ws: &Workspace,
    t: Trigger,
    checkpoint: &CheckpointRow,
    mut on: impl FnMut(&ResponseEvent),
) -> anyhow::Result<(Incident, std::path::PathBuf)> {
    let incident_id = ws
        .oplog
        .open_incident(t.watch_op, t.verdict_at, &serde_json::to_value(&t.verdict)?)?;
    let id = format!("inc-{incident_id}");
    let cp_name = crate::resource::checkpoint_name(checkpoint.id);
    let event = |event: &'static str, severity: Severity, message: String, details: serde_json::Value| Event {
        event,
        severity,
        plan: ws.plan.name.clone(),
        incident: Some(id.clone()),
        message,
        at: ws.now_ms(),
        details,
    };
    let mut notifier = Notifier::start(ws);
    notifier.send(&event(
        "trigger",
        Severity::Critical,
        t.verdict.explanation.clone(),
        serde_json::to_value(&t.verdict)?,
    ));

    // Evidence first: nothing has been changed yet.
    let diagnostics = crate::diagnostics::capture(ws).await;
    on(&ResponseEvent::Diagnostics {
        items: diagnostics.len(),
    });

    on(&ResponseEvent::RollbackStarted {
        checkpoint: cp_name.clone(),
    });
    notifier.send(&event(
        "rollback_start",
        Severity::Critical,
        format!("rolling back to {cp_name}"),
        serde_json::json!({ "checkpoint": cp_name }),
    ));
    let rb = rollback::rollback(ws, checkpoint, |e| on(&ResponseEvent::Step(e.clone()))).await?;
    let took = crate::report::ms(rb.ended_at - rb.started_at);
    let (severity, message) = if rb.ok {
        (Severity::Info, format!("rolled back to {cp_name} in {took}"))
    } else {
        (Severity::Critical, format!("rollback to {cp_name} FAILED after {took}"))
    };
    notifier.send(&event(
        "rollback_end",
        severity,
        message,
        serde_json::json!({ "ok": rb.ok }),
    ));

    let mut checks = Vec::new();
    if rb.ok {
        on(&ResponseEvent::Verifying);
        let level = rollback::select::level_checks(&ws.plan, &rb.selection);
        checks = verify_all(ws, &level, |c| on(&ResponseEvent::Check(c.clone())), |_, _| {}).await?;
        let failed: Vec<&str> = checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        let (severity, message) = if checks.is_empty() {
            (
                Severity::Warning,
                "no [verify] checks in the plan: recovery is not proven".to_string(),
            )
        } else if failed.is_empty() {
            (
                Severity::Info,
                format!("recovery verified: {} check(s) passed", checks.len()),
            )
        } else {
            (
                Severity::Critical,
                format!("verification FAILED: {}", failed.join(", ")),
            )
        };
        notifier.send(&event(
            "verification",
            severity,
            message,
            serde_json::to_value(&checks)?,
        ));
    }

    let incident = assemble(
        ws,
        id,
        t.verdict,
        t.deploy_at,
        t.first_bad_at,
        t.verdict_at,
        rb,
        checks,
        diagnostics,
    )?;
    let path = report::write(ws, &incident)?;
    ws.oplog.set_incident_report(incident_id, &path)?;
    notifier.finish(ws, t.watch_op, NOTIFY_WAIT).await;
    Ok((incident, path))
}

/// Puts an incident together from what happened: the verdict, the rollback, the
/// checks, the diagnostics, and the samples, baselines and thresholds for charts.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    ws: &Workspace,
    id: String,
    verdict: Verdict,
    deploy_at: Option<i64>,
    first_bad_at: Option<i64>,
    verdict_at: i64,
    rollback: crate::rollback::RollbackReport,
    verification: Vec<CheckResult>,
    diagnostics: Vec<crate::report::Diagnostic>,
) -> anyhow::Result<Incident> {
    let baselines = baselines(ws)?;
    let from = deploy_at.or(first_bad_at).unwrap_or(verdict_at) - ws.plan.baseline_for.as_millis() as i64;
    let samples = ws.oplog.samples_between(from, ws.now_ms())?;
    let mut incident = Incident {
        id,
        plan: ws.plan.name.clone(),
        limits: limits(ws, &baselines),
        verdict,
        deploy_at,
        first_bad_at,
        verdict_at,
        rollback,
        verification,
        rto_ms: ws.plan.rto.map(|d| d.as_millis() as u64),
        timeline: Vec::new(),
        baselines,
        samples,
        diagnostics,
        root_cause: None,
        lessons: None,
    };
    incident.timeline = report::timeline(&incident);
    Ok(incident)
}

/// Writes the report of a rollback run by hand (`backout rollback`, any level):
/// an incident of its own, so every rollback leaves the same record.
pub fn report_manual(
    ws: &Workspace,
    rb: crate::rollback::RollbackReport,
    checks: Vec<CheckResult>,
    diagnostics: Vec<crate::report::Diagnostic>,
    reason: Option<&str>,
) -> anyhow::Result<(Incident, std::path::PathBuf)> {
    let because = reason.map_or(String::new(), |r| format!(": {r}"));
    let verdict = Verdict {
        outcome: crate::watch::Outcome::Rollback,
        rule: "manual".into(),
        when: format!("backout rollback ({})", rb.label),
        probe: String::new(),
        value: None,
        threshold: None,
        baseline: None,
        window: String::new(),
        samples: 0,
        failed_samples: 0,
        first_sample_at: None,
        last_sample_at: None,
        window_samples: None,
        window_full: true,
        test: None,
        explanation: format!(
            "rollback ({}) to {} requested by hand{because}",
            rb.label, rb.checkpoint
        ),
    };
    let at = rb.started_at;
    let incident_id = ws.oplog.open_incident(rb.op, at, &serde_json::to_value(&verdict)?)?;
    let incident = assemble(
        ws,
        format!("inc-{incident_id}"),
        verdict,
        None,
        None,
        at,
        rb,
        checks,
        diagnostics,
    )?;
    let path = report::write(ws, &incident)?;
    ws.oplog.set_incident_report(incident_id, &path)?;
    Ok((incident, path))
}

/// The latest baseline of every probe.
fn baselines(ws: &Workspace) -> anyhow::Result<BTreeMap<String, BaselineStats>> {
    let mut out = BTreeMap::new();
    for p in &ws.plan.probes {
        if let Some(v) = ws.oplog.latest_baseline(&p.name)?
            && let Ok(b) = serde_json::from_value(v)
        {
            out.insert(p.name.clone(), b);
        }
    }
    Ok(out)
}

/// Latency thresholds of the plan's rules, resolved against the baselines.
fn limits(ws: &Workspace, baselines: &BTreeMap<String, BaselineStats>) -> Vec<Limit> {
    ws.plan
        .rules
        .iter()
        .filter(|r| r.condition.metric.field == Field::Latency)
        .filter_map(|r| {
            let c = &r.condition;
            let value = match &c.threshold {
                Threshold::Absolute { value } => *value,
                Threshold::Baseline { delta } => {
                    delta.apply(baselines.get(&c.metric.probe)?.value(Field::Latency, c.metric.agg)?)
                }
            };
            Some(Limit {
                probe: c.metric.probe.clone(),
                value,
                label: format!("{}: {}", r.name, r.text),
            })
        })
        .collect()
}

/// Runs a level's own checks (`level`: `[rollback] verify`, a phase option's or
/// a component's `verify`; empty for none), then the plan's `[verify]` checks
/// and its stable-for period, as one `verify` operation; `progress` hears how
/// much of the stable-for period has passed.
pub async fn verify_all(
    ws: &Workspace,
    level: &[crate::plan::Check],
    mut on: impl FnMut(&CheckResult),
    mut progress: impl FnMut(Duration, Duration),
) -> anyhow::Result<Vec<CheckResult>> {
    let op = ws.oplog.begin("verify", &serde_json::json!({}), ws.now_ms())?;
    // First who answers: every check after this one would pass for any process on the port.
    let degraded = crate::rollback::services::degraded_now(ws)?
        .map(|d| d.services)
        .unwrap_or_default();
    let mut checks = verify::serving(ws, &degraded, &mut on);
    checks.extend(verify::run_list(ws, level, &mut on).await);
    checks.extend(verify::run_checks(ws, &mut on).await);
    if let Some(d) = ws.plan.verify.stable_for {
        let c = verify::stable_for(ws, d, |elapsed| progress(elapsed, d)).await;
        on(&c);
        checks.push(c);
    }
    let failed: Vec<&str> = checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
    let error = (!failed.is_empty()).then(|| format!("failed: {}", failed.join(", ")));
    ws.oplog.finish(
        op,
        if failed.is_empty() { "ok" } else { "failed" },
        error.as_deref(),
        ws.now_ms(),
    )?;
    Ok(checks)
}
