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
    /// The operation the incident belongs to: the watch (or the deploy whose
    /// command failed).
    pub watch_op: OpId,
    pub verdict: Verdict,
    pub verdict_at: i64,
    pub first_bad_at: Option<i64>,
    /// The deploy marker every figure counts from, when the change has one.
    pub deploy: Option<crate::deploy::Marker>,
    /// When the watch began, when a watch reached the verdict.
    pub watch_started_at: Option<i64>,
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

    let watch_op = t.watch_op;
    let incident = assemble(ws, id, t, rb, checks, diagnostics)?;
    let path = report::write(ws, &incident)?;
    ws.oplog.set_incident_report(incident_id, &path)?;
    notifier.finish(ws, watch_op, NOTIFY_WAIT).await;
    Ok((incident, path))
}

/// Puts an incident together from what happened: the verdict, the rollback, the
/// checks, the diagnostics, and the samples, baselines and thresholds for charts.
pub fn assemble(
    ws: &Workspace,
    id: String,
    t: Trigger,
    rollback: crate::rollback::RollbackReport,
    verification: Vec<CheckResult>,
    diagnostics: Vec<crate::report::Diagnostic>,
) -> anyhow::Result<Incident> {
    let baselines = baselines(ws)?;
    let deploy_at = t.deploy.as_ref().map(|m| m.at);
    let from = deploy_at
        .or(t.first_bad_at)
        .unwrap_or(t.verdict_at)
        .saturating_sub(crate::context::millis(ws.plan.baseline_for));
    let samples = ws.oplog.samples_between(from, ws.now_ms())?;
    let mut incident = Incident {
        id,
        plan: ws.plan.name.clone(),
        limits: limits(ws, &baselines),
        verdict: t.verdict,
        deploy_at,
        deploy: t.deploy,
        watch_started_at: t.watch_started_at,
        first_bad_at: t.first_bad_at,
        verdict_at: t.verdict_at,
        planned_checks: planned_checks(ws, &rollback),
        rollback,
        earlier_rollbacks: Vec::new(),
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

/// The checks a verification after `rb` runs: its level's own and `[verify]`'s.
fn planned_checks(ws: &Workspace, rb: &crate::rollback::RollbackReport) -> usize {
    rollback::select::level_checks(&ws.plan, &rb.selection).len()
        + ws.plan.verify.checks.len()
        + usize::from(ws.plan.verify.stable_for.is_some())
}

/// The incident a rollback by hand continues: the newest one, when its
/// rollback failed and is the last operation that changed anything before
/// `rb` (nothing undone, restored or deployed since). A follow-up rollback
/// after a failed one is part of the same incident: same trigger, same
/// detection, one recovery time.
fn continued(ws: &Workspace, rb: &crate::rollback::RollbackReport) -> anyhow::Result<Option<Incident>> {
    let Some(last) = ws.oplog.incidents()?.into_iter().max_by_key(|i| i.id) else {
        return Ok(None);
    };
    let Ok(incident) = report::load(ws, &format!("inc-{}", last.id)) else {
        return Ok(None);
    };
    if incident.rollback.ok {
        return Ok(None);
    }
    let before = ws
        .oplog
        .finished(&["rollback", "undo", "redo", "restore", "deploy"], 10)?
        .into_iter()
        .find(|o| o.id != rb.op && o.id < rb.op);
    Ok(before.filter(|o| o.id == incident.rollback.op).map(|_| incident))
}

/// Writes the report of a rollback run by hand (`backout rollback`, any level):
/// an incident of its own, so every rollback leaves the same record. `deploy`
/// is the marker of the change it took back, when that change was marked.
pub fn report_manual(
    ws: &Workspace,
    deploy: Option<crate::deploy::Marker>,
    rb: crate::rollback::RollbackReport,
    checks: Vec<CheckResult>,
    diagnostics: Vec<crate::report::Diagnostic>,
    reason: Option<&str>,
) -> anyhow::Result<(Incident, std::path::PathBuf)> {
    if let Some(mut incident) = continued(ws, &rb)? {
        let failed = std::mem::replace(&mut incident.rollback, rb);
        incident.earlier_rollbacks.push(failed);
        incident.planned_checks = planned_checks(ws, &incident.rollback);
        incident.verification = checks;
        incident.diagnostics.extend(diagnostics);
        let until = ws.now_ms();
        let from = incident.samples.last().map_or(incident.verdict_at, |s| s.at + 1);
        incident.samples.extend(ws.oplog.samples_between(from, until)?);
        incident.timeline = report::timeline(&incident);
        let path = report::write(ws, &incident)?;
        return Ok((incident, path));
    }
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
    let trigger = Trigger {
        watch_op: rb.op,
        verdict,
        verdict_at: at,
        first_bad_at: None,
        deploy,
        watch_started_at: None,
    };
    let incident = assemble(ws, format!("inc-{incident_id}"), trigger, rb, checks, diagnostics)?;
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
        let mut c = verify::stable_for(ws, d, |elapsed| progress(elapsed, d)).await;
        // Stable, and still answered by the instances backout started: a period
        // in which another process took over the port proves nothing.
        if c.passed
            && let Some(lost) = verify::serving(ws, &degraded, |_| {}).into_iter().find(|s| !s.passed)
        {
            c.passed = false;
            c.evidence = format!("{}, but at its end {}", c.evidence, lost.evidence);
        }
        on(&c);
        checks.push(c);
    }
    let failed: Vec<&str> = checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
    // Passed checks vouch for the state they ran against: the checkpoint
    // holding it becomes a known-good rollback target.
    if failed.is_empty() && !checks.is_empty() {
        crate::rollback::target::record_good(&ws.oplog, op, ws.now_ms(), "verify passed")?;
    }
    let error = (!failed.is_empty()).then(|| format!("failed: {}", failed.join(", ")));
    ws.oplog.finish(
        op,
        if failed.is_empty() { "ok" } else { "failed" },
        error.as_deref(),
        ws.now_ms(),
    )?;
    Ok(checks)
}
