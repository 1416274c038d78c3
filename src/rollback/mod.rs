//! The rollback executor: a safety checkpoint of what the steps will change, then
//! the plan's steps in order, each journaled in the operation log before it starts
//! and after it ends, with its command, exit code, output and duration.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exec::{self, Invocation};
use crate::oplog::{CheckpointRow, OpId};
use crate::plan::{ServiceAction, Step, StepKind};
use crate::resource::{self, Resources, git};
use crate::service::{self, ServiceFiles};
use crate::workspace::Workspace;

#[derive(Debug, Clone, Serialize)]
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
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub op: OpId,
    pub checkpoint: String,
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
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StepEvent {
    Started { seq: i64, name: String },
    Finished(StepReport),
}

/// Rolls back to `checkpoint` with the plan's `[rollback]` steps.
pub async fn rollback(
    ws: &Workspace,
    checkpoint: &CheckpointRow,
    mut on: impl FnMut(&StepEvent),
) -> anyhow::Result<RollbackReport> {
    let cp_name = resource::checkpoint_name(checkpoint.id);
    let started_at = ws.now_ms();
    let op = ws
        .oplog
        .begin("rollback", &serde_json::json!({ "checkpoint": cp_name }), started_at)?;
    ws.oplog.event(
        op,
        started_at,
        "rollback_start",
        &serde_json::json!({ "checkpoint": cp_name }),
    )?;

    // Nothing destructive runs before what it would destroy is saved.
    let t = Instant::now();
    let safety = resource::checkpoint(ws, op, Some("before rollback"), None)?;
    let safety_checkpoint_ms = t.elapsed().as_millis() as u64;
    let target = Resources::from_row(checkpoint);
    let mut report = RollbackReport {
        op,
        checkpoint: cp_name,
        safety_checkpoint: Some(resource::checkpoint_name(safety.id)),
        safety_checkpoint_ms,
        steps: Vec::new(),
        started_at,
        ended_at: started_at,
        healthy_at: None,
        ok: true,
    };
    for (i, step) in ws.plan.rollback.iter().enumerate() {
        let seq = i as i64 + 1;
        let command = describe(ws, step, &target);
        let at = ws.now_ms();
        ws.oplog.step_begin(op, seq, &step.name, command.as_deref(), at)?;
        on(&StepEvent::Started {
            seq,
            name: step.name.clone(),
        });
        let t = Instant::now();
        let (ok, exit_code, output) = run_step(ws, step, &target).await;
        let s = StepReport {
            seq,
            name: step.name.clone(),
            command,
            ok,
            exit_code,
            output: exec::tail_lines(&output, 40),
            started_at: at,
            duration_ms: t.elapsed().as_millis() as u64,
        };
        ws.oplog.step_end(
            op,
            seq,
            if ok { "ok" } else { "failed" },
            exit_code,
            &s.output,
            ws.now_ms(),
        )?;
        if ok && matches!(step.kind, StepKind::Wait { .. }) {
            report.healthy_at = Some(ws.now_ms());
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
    let outcome = if report.ok { "ok" } else { "failed" };
    ws.oplog.event(
        op,
        report.ended_at,
        "rollback_end",
        &serde_json::json!({ "ok": report.ok }),
    )?;
    if let Some(h) = report.healthy_at {
        ws.oplog.event(op, h, "healthy", &serde_json::json!({}))?;
    }
    let error = report
        .steps
        .iter()
        .find(|s| !s.ok)
        .map(|s| format!("step {} ({}) failed", s.seq, s.name));
    ws.oplog.finish(op, outcome, error.as_deref(), report.ended_at)?;
    Ok(report)
}

/// The command a step amounts to, for the journal and the report.
fn describe(ws: &Workspace, step: &Step, target: &Resources) -> Option<String> {
    match &step.kind {
        StepKind::GitRevert => target
            .git
            .as_ref()
            .and_then(|g| g.head.as_ref())
            .map(|h| format!("git revert --no-edit {h}..HEAD")),
        StepKind::Service { service, action } => {
            Some(format!("{action:?} {}", service.as_deref().unwrap_or("all services")).to_lowercase())
        }
        StepKind::Wait { probe } => ws
            .plan
            .probe(probe)
            .map(|p| format!("wait until {} is healthy", p.kind.target())),
        StepKind::Run { command, .. } => Some(command.shown()),
    }
}

/// Runs one step: (ok, exit code, output).
async fn run_step(ws: &Workspace, step: &Step, target: &Resources) -> (bool, Option<i32>, String) {
    match &step.kind {
        StepKind::GitRevert => {
            let Some(state) = &target.git else {
                return (
                    false,
                    None,
                    "the checkpoint holds no git state: set [capture] git = true".into(),
                );
            };
            let Some(head) = &state.head else {
                return (
                    false,
                    None,
                    "the checkpoint was taken before the first commit; nothing to revert to".into(),
                );
            };
            match git::commits_since(&state.toplevel, head) {
                Ok(c) if c.is_empty() => {
                    return (
                        true,
                        Some(0),
                        format!(
                            "HEAD is at the checkpoint ({}); nothing to revert",
                            &head[..head.len().min(12)]
                        ),
                    );
                }
                Ok(_) => {}
                Err(e) => return (false, None, format!("{e:#}")),
            }
            let inv = Invocation {
                argv: vec![
                    "git".into(),
                    "revert".into(),
                    "--no-edit".into(),
                    format!("{head}..HEAD"),
                ],
                cwd: state.toplevel.clone(),
                env: vec![("GIT_TERMINAL_PROMPT".into(), "0".into())],
                timeout: step.timeout,
            };
            let out = run_inv(&inv).await;
            if !out.0 {
                // Leave the repository as it was, not half-reverted.
                let _ = git::git(&state.toplevel, &["revert", "--abort"], &[]);
            }
            out
        }
        StepKind::Service { service, action } => {
            let run_dir = match ws.run_dir() {
                Ok(d) => d,
                Err(e) => return (false, None, format!("{e:#}")),
            };
            let targets: Vec<_> = ws
                .plan
                .services
                .iter()
                .filter(|s| service.as_ref().is_none_or(|n| *n == s.name))
                .cloned()
                .collect();
            let action = *action;
            let res = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for svc in &targets {
                    let files = ServiceFiles::new(&run_dir, &svc.name);
                    let r = match action {
                        ServiceAction::Start => {
                            service::start(svc, &files).map(|p| format!("{} started (pid {p})", svc.name))
                        }
                        ServiceAction::Stop => service::stop(svc, &files).map(|()| format!("{} stopped", svc.name)),
                        ServiceAction::Restart => {
                            service::restart(svc, &files).map(|p| format!("{} restarted (pid {p})", svc.name))
                        }
                    };
                    match r {
                        Ok(line) => out.push(line),
                        Err(e) => return Err(format!("{}\n{e:#}", out.join("\n"))),
                    }
                }
                Ok(out.join("\n"))
            })
            .await;
            match res {
                Ok(Ok(o)) => (true, Some(0), o),
                Ok(Err(e)) => (false, None, e),
                Err(e) => (false, None, e.to_string()),
            }
        }
        StepKind::Wait { probe } => match ws.plan.probe(probe) {
            Some(p) => wait_healthy(ws, p, step.timeout).await,
            None => (false, None, format!("no probe named {probe:?}")),
        },
        StepKind::Run { command, cwd } => {
            let inv = Invocation {
                argv: command.resolved(),
                cwd: cwd.clone(),
                env: Vec::new(),
                timeout: step.timeout,
            };
            run_inv(&inv).await
        }
    }
}

async fn run_inv(inv: &Invocation) -> (bool, Option<i32>, String) {
    match exec::run(inv).await {
        Ok(o) => {
            let mut out = o.output.clone();
            if !o.success() {
                out.push_str(&format!("\n({})", o.describe()));
            }
            (o.success(), o.exit_code, out)
        }
        Err(e) => (false, None, format!("{e:#}")),
    }
}

/// Samples `probe` until it is healthy or `timeout` passes.
pub async fn wait_healthy(
    ws: &Workspace,
    probe: &crate::plan::Probe,
    timeout: Duration,
) -> (bool, Option<i32>, String) {
    let until = Instant::now() + timeout;
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
