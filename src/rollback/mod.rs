//! The rollback executor: a safety checkpoint of what the steps will change, then
//! the selected steps in order, each journaled durably in the operation log
//! before it starts and after it ends, with its command, exit code, output and
//! duration. A killed rollback resumes from its journal ([`resume`]): completed
//! steps are never repeated, the interrupted one is cleaned up (its process
//! group killed, half-done git operations undone) and run again, and every step
//! kind is idempotent or checks whether it already took effect.
//!
//! Levels and options live in [`select`], the step kinds in [`steps`], undo and
//! redo in [`undo`], the record of the services a rollback touches (what undo
//! brings back) and of degraded mode in [`services`].

pub mod apply;
pub mod resources;
pub mod select;
pub mod services;
pub mod steps;
pub mod undo;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::oplog::{CheckpointRow, OpId};
use crate::plan::StepKind;
use crate::resource::{self, Resources};
use crate::workspace::Workspace;
pub use select::{Request, Selected, Selection};

/// The label of the checkpoint an operation takes before its first step.
pub const SAFETY_LABEL: &str = "before rollback";

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StepReport {
    pub seq: i64,
    pub name: String,
    /// The command as a person could run it by hand.
    pub command: Option<String>,
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub output: String,
    pub started_at: i64,
    pub duration_ms: u64,
    /// Done before an interruption; not run again on resume.
    pub already_done: bool,
}

/// Time taken against the objectives.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Timing {
    pub total_ms: u64,
    pub safety_checkpoint_ms: u64,
    pub rto_ms: Option<u64>,
    pub target_ms: Option<u64>,
    pub within_rto: Option<bool>,
    pub within_target: Option<bool>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RollbackReport {
    pub op: OpId,
    pub checkpoint: String,
    pub selection: Selection,
    pub label: String,
    /// Taken before the first step, so the rollback itself can be undone.
    pub safety_checkpoint: Option<String>,
    /// How long the safety checkpoint took.
    pub safety_checkpoint_ms: u64,
    pub steps: Vec<StepReport>,
    pub started_at: i64,
    pub ended_at: i64,
    /// When a `wait` step (or the last step) saw the system healthy again.
    pub healthy_at: Option<i64>,
    pub ok: bool,
    /// Continued from the journal of an interrupted run.
    pub resumed: bool,
    /// Services a `degraded` step stopped: the system runs without them.
    pub degraded: Vec<String>,
    /// An interrupted rollback this one replaced instead of resuming it.
    pub abandoned: Vec<OpId>,
    pub timing: Timing,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StepEvent {
    Started { seq: i64, name: String },
    Finished(StepReport),
}

/// Where a test may ask the executor to kill itself (SIGKILL), to prove resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after step N is journaled as begun, before it runs.
    Begin(i64),
    /// Right after step N is journaled as ended.
    End(i64),
}

impl CrashPoint {
    /// Parses `begin:N` or `end:N`.
    pub fn parse(s: &str) -> Option<CrashPoint> {
        let (k, n) = s.split_once(':')?;
        let n = n.parse().ok()?;
        match k {
            "begin" => Some(CrashPoint::Begin(n)),
            "end" => Some(CrashPoint::End(n)),
            _ => None,
        }
    }
}

/// How the executor runs, beyond the plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub crash_at: Option<CrashPoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(
        "step {step:?} changes the git working tree, but the plan does not capture git, so no safety checkpoint could keep what it discards\n  = hint: set [capture] git = true"
    )]
    NoGitCapture { step: String },
    #[error("no interrupted rollback to resume\n  = hint: `backout log` lists the operations")]
    NothingToResume,
    #[error("op-{op} cannot be resumed: its checkpoint cp-{checkpoint} is gone or incomplete")]
    CheckpointGone { op: OpId, checkpoint: i64 },
    #[error(
        "op-{op} cannot be resumed: the plan changed since it started (journal step {seq} is {journaled:?}, the plan now says {planned:?})\n  = hint: restore the plan file as it was, or roll back anew"
    )]
    PlanChanged {
        op: OpId,
        seq: i64,
        journaled: String,
        planned: String,
    },
    #[error(transparent)]
    Select(#[from] select::SelectError),
}

/// Rolls back to `checkpoint` with the plan's full (`[rollback]`) steps.
pub async fn rollback(
    ws: &Workspace,
    checkpoint: &CheckpointRow,
    on: impl FnMut(&StepEvent),
) -> anyhow::Result<RollbackReport> {
    let sel = select::resolve(&ws.plan, &Selection::Full)?;
    execute(ws, checkpoint, &sel, &Options::default(), on).await
}

/// Rolls back to `checkpoint` with the selected steps, as a new operation.
pub async fn execute(
    ws: &Workspace,
    checkpoint: &CheckpointRow,
    sel: &Selected,
    opts: &Options,
    on: impl FnMut(&StepEvent),
) -> anyhow::Result<RollbackReport> {
    check_safety(ws, sel)?;
    ws.oplog.set_durable()?;
    let cp_name = resource::checkpoint_name(checkpoint.id);
    let started_at = ws.now_ms();
    let args = serde_json::json!({
        "checkpoint": cp_name,
        "checkpoint_id": checkpoint.id,
        "selection": sel.selection,
    });
    // An interrupted rollback left behind is closed, not resumed later by
    // surprise: this rollback's safety checkpoint holds whatever state it left.
    let mut abandoned = Vec::new();
    while let Some(old) = ws.oplog.interrupted(&["rollback"])? {
        ws.oplog.finish(
            old.id,
            "abandoned",
            Some("interrupted, then replaced by a new rollback instead of --resume"),
            started_at,
        )?;
        abandoned.push(old.id);
    }
    let op = ws.oplog.begin("rollback", &args, started_at)?;
    ws.oplog.event(
        op,
        started_at,
        "rollback_start",
        &serde_json::json!({ "checkpoint": cp_name, "level": sel.label }),
    )?;
    let mut report = drive(ws, op, false, checkpoint, sel, started_at, opts, on).await?;
    report.abandoned = abandoned;
    Ok(report)
}

/// Continues the newest interrupted rollback from its journal.
pub async fn resume(ws: &Workspace, opts: &Options, on: impl FnMut(&StepEvent)) -> anyhow::Result<RollbackReport> {
    ws.oplog.set_durable()?;
    let op = ws
        .oplog
        .interrupted(&["rollback"])?
        .ok_or(RollbackError::NothingToResume)?;
    let cp_id = op.args["checkpoint_id"].as_i64().unwrap_or(-1);
    let checkpoint = ws
        .oplog
        .checkpoint(cp_id)?
        .filter(|c| c.complete)
        .ok_or(RollbackError::CheckpointGone {
            op: op.id,
            checkpoint: cp_id,
        })?;
    let selection: Selection = serde_json::from_value(op.args["selection"].clone()).unwrap_or(Selection::Full);
    let sel = select::resolve(&ws.plan, &selection)?;
    // The journal must describe the same steps the plan now gives.
    for row in ws.oplog.steps(op.id)? {
        let planned = sel.steps.get(row.seq as usize - 1).map(|s| s.name.clone());
        if planned.as_deref() != Some(row.name.as_str()) {
            return Err(RollbackError::PlanChanged {
                op: op.id,
                seq: row.seq,
                journaled: row.name,
                planned: planned.unwrap_or_else(|| "(no such step)".into()),
            }
            .into());
        }
    }
    ws.oplog
        .event(op.id, ws.now_ms(), "rollback_resumed", &serde_json::json!({}))?;
    drive(ws, op.id, true, &checkpoint, &sel, op.started_at, opts, on).await
}

/// A destructive git step never runs without a safety snapshot of the work tree.
fn check_safety(ws: &Workspace, sel: &Selected) -> Result<(), RollbackError> {
    if ws.plan.capture.git {
        return Ok(());
    }
    match sel.steps.iter().find(|s| {
        matches!(
            s.kind,
            StepKind::GitRevert | StepKind::GitReset | StepKind::RestorePaths { .. }
        )
    }) {
        Some(s) => Err(RollbackError::NoGitCapture { step: s.name.clone() }),
        None => Ok(()),
    }
}

fn crash_if(opts: &Options, at: CrashPoint) {
    if opts.crash_at == Some(at) {
        // A real kill -9: no destructor, no flush, nothing but what is already durable.
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::thread::sleep(Duration::from_secs(10));
    }
}

#[allow(clippy::too_many_arguments)] // one call site each in execute and resume
async fn drive(
    ws: &Workspace,
    op: OpId,
    resumed: bool,
    checkpoint: &CheckpointRow,
    sel: &Selected,
    started_at: i64,
    opts: &Options,
    mut on: impl FnMut(&StepEvent),
) -> anyhow::Result<RollbackReport> {
    // Nothing destructive runs before what it would destroy is saved. A resumed
    // operation keeps the one it took first: that is the state before it began.
    let t = Instant::now();
    let safety = match ws.oplog.checkpoint_of(op, SAFETY_LABEL)? {
        Some(cp) if resumed => cp,
        _ => resource::checkpoint(ws, op, Some(SAFETY_LABEL), None)?,
    };
    let safety_checkpoint_ms = t.elapsed().as_millis() as u64;
    // A start a crash interrupted before its pid was recorded leaves no orphan
    // behind to race the steps below.
    let reaped = crate::service::reap_interrupted_starts(&ws.plan, &ws.run_dir()?);
    if !reaped.is_empty() {
        ws.oplog.event(
            op,
            ws.now_ms(),
            "orphans_ended",
            &serde_json::json!({ "services": reaped }),
        )?;
    }
    let journal: HashMap<i64, Option<String>> = ws.oplog.steps(op)?.into_iter().map(|r| (r.seq, r.outcome)).collect();
    // The services the steps act on, as they are before the first step (kept
    // from the first run when resumed): what `undo` brings back. A rollback
    // begun by an older backout has steps but no record: what the services do
    // now is not their state from before, so nothing is recorded.
    let before = match services::recorded(ws, op)? {
        Some(r) => r,
        None if !journal.is_empty() => services::ServicesBefore {
            services: Vec::new(),
            degraded: services::degraded_now(ws)?.map(|d| d.services).unwrap_or_default(),
        },
        None => services::ensure_recorded(ws, op, &services::touched(&ws.plan, &sel.steps))?,
    };
    let mut relaunched = std::collections::BTreeSet::new();
    let target = Resources::from_row(checkpoint);
    let mut report = RollbackReport {
        op,
        checkpoint: resource::checkpoint_name(checkpoint.id),
        selection: sel.selection.clone(),
        label: sel.label.clone(),
        safety_checkpoint: Some(resource::checkpoint_name(safety.id)),
        safety_checkpoint_ms,
        steps: Vec::new(),
        started_at,
        ended_at: started_at,
        healthy_at: None,
        ok: true,
        resumed,
        degraded: Vec::new(),
        abandoned: Vec::new(),
        timing: Timing {
            total_ms: 0,
            safety_checkpoint_ms,
            rto_ms: None,
            target_ms: None,
            within_rto: None,
            within_target: None,
        },
    };
    for (i, step) in sel.steps.iter().enumerate() {
        let seq = i as i64 + 1;
        let command = steps::describe(&ws.plan, step, &target);
        let previous = journal.get(&seq);
        if let Some(Some(outcome)) = previous
            && outcome == "ok"
        {
            let s = StepReport {
                seq,
                name: step.name.clone(),
                command,
                ok: true,
                exit_code: Some(0),
                output: "done before the interruption; not run again".into(),
                started_at: ws.now_ms(),
                duration_ms: 0,
                already_done: true,
            };
            note_services(&ws.plan, step, &mut report.degraded, &mut relaunched);
            on(&StepEvent::Finished(s.clone()));
            report.steps.push(s);
            continue;
        }
        let interrupted = previous.is_some();
        let at = ws.now_ms();
        if interrupted {
            steps::recover(ws, op, seq);
            ws.oplog.step_rebegin(op, seq, &step.name, command.as_deref(), at)?;
        } else {
            ws.oplog.step_begin(op, seq, &step.name, command.as_deref(), at)?;
        }
        crash_if(opts, CrashPoint::Begin(seq));
        on(&StepEvent::Started {
            seq,
            name: step.name.clone(),
        });
        let sctx = steps::StepCtx {
            ws,
            op,
            seq,
            target: &target,
            checkpoint,
            interrupted,
        };
        let s = steps::run_recorded(&sctx, step, command, at).await?;
        let ok = s.ok;
        crash_if(opts, CrashPoint::End(seq));
        if ok && matches!(step.kind, StepKind::Wait { .. }) {
            report.healthy_at = Some(ws.now_ms());
        }
        if ok {
            note_services(&ws.plan, step, &mut report.degraded, &mut relaunched);
        }
        on(&StepEvent::Finished(s.clone()));
        report.steps.push(s);
        if !ok {
            report.ok = false;
            break;
        }
    }
    report.ended_at = ws.now_ms();
    if report.ok && report.healthy_at.is_none() {
        report.healthy_at = Some(report.ended_at);
    }
    let total = (report.ended_at - report.started_at).max(0) as u64;
    let rto_ms = ws.plan.rto.map(|d| d.as_millis() as u64);
    let target_ms = sel.target.map(|d| d.as_millis() as u64);
    report.timing = Timing {
        total_ms: total,
        safety_checkpoint_ms,
        rto_ms,
        target_ms,
        within_rto: rto_ms.map(|r| total <= r),
        within_target: target_ms.map(|t| total <= t),
    };
    ws.oplog.event(
        op,
        report.ended_at,
        "rollback_timing",
        &serde_json::to_value(&report.timing)?,
    )?;
    ws.oplog.event(
        op,
        report.ended_at,
        "rollback_end",
        &serde_json::json!({ "ok": report.ok }),
    )?;
    // Degraded mode from now: what was in force, less what this rollback
    // brought back up, plus what it stopped for degraded mode.
    let mut degraded: Vec<String> = before
        .degraded
        .iter()
        .filter(|n| !relaunched.contains(*n) && !report.degraded.contains(n))
        .cloned()
        .collect();
    degraded.extend(report.degraded.iter().cloned());
    services::set_degraded(ws, op, &degraded, !report.degraded.is_empty())?;
    if let Some(h) = report.healthy_at {
        ws.oplog.event(op, h, "healthy", &serde_json::json!({}))?;
    }
    let outcome = if report.ok { "ok" } else { "failed" };
    let error = report
        .steps
        .iter()
        .find(|s| !s.ok)
        .map(|s| format!("step {} ({}) failed", s.seq, s.name));
    ws.oplog.finish(op, outcome, error.as_deref(), report.ended_at)?;
    Ok(report)
}

/// Notes what a step that succeeded did to services: stopped them for degraded
/// mode, or brought them (back) up.
fn note_services(
    plan: &crate::plan::Plan,
    step: &crate::plan::Step,
    degraded: &mut Vec<String>,
    relaunched: &mut std::collections::BTreeSet<String>,
) {
    match &step.kind {
        StepKind::Degraded { services } => degraded.extend(services.iter().cloned()),
        StepKind::Service { service, action }
            if *action != crate::plan::ServiceAction::Stop && *action != crate::plan::ServiceAction::Down =>
        {
            for s in plan
                .services
                .iter()
                .filter(|s| service.as_ref().is_none_or(|n| *n == s.name))
            {
                relaunched.insert(s.name.clone());
                degraded.retain(|d| *d != s.name);
            }
        }
        _ => {}
    }
}

/// Samples `probe` until it is healthy or `timeout` passes.
pub async fn wait_healthy(
    ws: &Workspace,
    probe: &crate::plan::Probe,
    timeout: Duration,
) -> (bool, Option<i32>, String) {
    let until = crate::context::deadline(timeout);
    // Poll faster than the probe's interval: every millisecond here is recovery time.
    let pause = probe.every.min(Duration::from_millis(20));
    let mut tries = 0;
    loop {
        tries += 1;
        let s = crate::probe::sample(probe, &ws.clock).await;
        if s.ok {
            return (true, Some(0), format!("{} healthy after {tries} tries", probe.name));
        }
        if Instant::now() >= until {
            let why = s.error.unwrap_or_default();
            return (
                false,
                None,
                format!(
                    "{} not healthy after {tries} tries in {}: {why}",
                    probe.name,
                    crate::plan::units::format_duration(timeout)
                ),
            );
        }
        tokio::time::sleep(pause).await;
    }
}
