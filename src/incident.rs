//! Responding to a rollback verdict: open the incident, roll back, verify the
//! recovery and write the report. Shared by `backout watch --auto-rollback` and
//! the demo, so both leave the same trail in the operation log.

use serde::Serialize;

use crate::oplog::{CheckpointRow, OpId};
use crate::report::{self, Incident};
use crate::rollback::{self, StepEvent};
use crate::verify::{self, CheckResult};
use crate::watch::Verdict;
use crate::workspace::Workspace;

/// Progress of a response, for the terminal.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ResponseEvent {
    RollbackStarted { checkpoint: String },
    Step(StepEvent),
    Check(CheckResult),
    Verifying,
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

/// Opens the incident, rolls back to `checkpoint`, verifies, writes the report.
pub async fn respond(
    ws: &Workspace,
    t: Trigger,
    checkpoint: &CheckpointRow,
    mut on: impl FnMut(&ResponseEvent),
) -> anyhow::Result<(Incident, std::path::PathBuf)> {
    let incident_id = ws
        .oplog
        .open_incident(t.watch_op, t.verdict_at, &serde_json::to_value(&t.verdict)?)?;
    on(&ResponseEvent::RollbackStarted {
        checkpoint: crate::resource::checkpoint_name(checkpoint.id),
    });
    let rb = rollback::rollback(ws, checkpoint, |e| on(&ResponseEvent::Step(e.clone()))).await?;
    let mut checks = Vec::new();
    if rb.ok {
        on(&ResponseEvent::Verifying);
        checks = verify_all(ws, |c| on(&ResponseEvent::Check(c.clone()))).await?;
    }
    let from = t.deploy_at.or(t.first_bad_at).unwrap_or(t.verdict_at);
    let samples = ws.oplog.samples_between(from, ws.now_ms())?;
    let mut incident = Incident {
        id: format!("inc-{incident_id}"),
        plan: ws.plan.name.clone(),
        verdict: t.verdict,
        deploy_at: t.deploy_at,
        first_bad_at: t.first_bad_at,
        verdict_at: t.verdict_at,
        rollback: rb,
        verification: checks,
        rto_ms: ws.plan.rto.map(|d| d.as_millis() as u64),
        timeline: Vec::new(),
        samples,
    };
    incident.timeline = report::timeline(&incident);
    let path = report::write(ws, &incident)?;
    ws.oplog.set_incident_report(incident_id, &path)?;
    Ok((incident, path))
}

/// Runs the plan's checks and its stable-for period as one `verify` operation.
pub async fn verify_all(ws: &Workspace, mut on: impl FnMut(&CheckResult)) -> anyhow::Result<Vec<CheckResult>> {
    let op = ws.oplog.begin("verify", &serde_json::json!({}), ws.now_ms())?;
    let mut checks = verify::run_checks(ws, &mut on).await;
    if let Some(d) = ws.plan.verify.stable_for {
        let c = verify::stable_for(ws, d, |_| {}).await;
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
