//! `backout run`: a phase is applied as a journaled operation, after a
//! checkpoint of its own (the one its rollback options return to), and then
//! verified with the phase's checks.

use serde::Serialize;

use super::steps::{self, StepCtx};
use super::{StepEvent, StepReport};
use crate::oplog::{CheckpointRow, OpId};
use crate::plan::Phase;
use crate::resource::{self, Resources};
use crate::verify::CheckResult;
use crate::workspace::Workspace;

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub op: OpId,
    pub phase: String,
    /// Taken before the first apply step: what the phase rolls back to.
    pub checkpoint: String,
    pub steps: Vec<StepReport>,
    pub checks: Vec<CheckResult>,
    /// Every apply step succeeded.
    pub applied: bool,
    /// Applied and every check passed.
    pub ok: bool,
}

/// Checkpoints, applies and verifies one phase. The checkpoint row is returned
/// so a failed phase can be rolled back to it.
pub async fn apply_phase(
    ws: &Workspace,
    phase: &Phase,
    mut on: impl FnMut(&StepEvent),
    mut on_check: impl FnMut(&CheckResult),
) -> anyhow::Result<(ApplyReport, CheckpointRow)> {
    ws.oplog.set_durable()?;
    let op = ws
        .oplog
        .begin("apply", &serde_json::json!({ "phase": phase.name }), ws.now_ms())?;
    let cp = resource::checkpoint(ws, op, Some(&format!("before phase {}", phase.name)), Some(&phase.name))?;
    // The first phase of a change is its deploy: `watch` counts from here,
    // and a full rollback goes back to the state before it (see `target`).
    let marked = match super::target::phase_marker_checkpoint(&ws.oplog, cp.id)? {
        Some(before) => {
            let mut m = crate::deploy::Marker::new(op, ws.now_ms(), Some(before), crate::deploy::MarkedBy::Phase);
            m.phase = Some(phase.name.clone());
            crate::deploy::record(&ws.oplog, &m)?;
            true
        }
        None => false,
    };
    let target = Resources::from_row(&cp);
    let mut report = ApplyReport {
        op,
        phase: phase.name.clone(),
        checkpoint: resource::checkpoint_name(cp.id),
        steps: Vec::new(),
        checks: Vec::new(),
        applied: true,
        ok: false,
    };
    for (i, step) in phase.apply.iter().enumerate() {
        let seq = i as i64 + 1;
        let command = steps::describe(&ws.plan, step, &target);
        let at = ws.now_ms();
        ws.oplog.step_begin(op, seq, &step.name, command.as_deref(), at)?;
        on(&StepEvent::Started {
            seq,
            name: step.name.clone(),
        });
        let cx = StepCtx {
            ws,
            op,
            seq,
            target: &target,
            checkpoint: &cp,
            interrupted: false,
            discarded: Default::default(),
            notes: Default::default(),
        };
        let s = steps::run_recorded(&cx, step, command, at).await?;
        let ok = s.ok;
        on(&StepEvent::Finished(s.clone()));
        report.steps.push(s);
        if !ok {
            report.applied = false;
            break;
        }
    }
    // The deploy is done when its steps are: reviews count from here.
    if marked {
        let tail = report.steps.last().map(|s| s.output.clone()).unwrap_or_default();
        let code = report.steps.last().and_then(|s| s.exit_code);
        crate::deploy::record_command_end(&ws.oplog, op, ws.now_ms(), code, report.applied, &tail)?;
    }
    if report.applied {
        report.checks = crate::verify::run_list(ws, &phase.verify, &mut on_check).await;
    }
    report.ok = report.applied && report.checks.iter().all(|c| c.passed);
    // Verified by its checks, the phase ends the change it is part of: the
    // next phase is a change of its own (see `target`).
    if report.ok && !report.checks.is_empty() {
        ws.oplog.event(
            op,
            ws.now_ms(),
            super::target::PHASE_VERIFIED,
            &serde_json::json!({ "phase": phase.name }),
        )?;
    }
    let outcome = if report.ok { "ok" } else { "failed" };
    let error = if !report.applied {
        Some(format!("phase {} failed to apply", phase.name))
    } else if !report.ok {
        Some(format!("phase {} failed its verification", phase.name))
    } else {
        None
    };
    ws.oplog.finish(op, outcome, error.as_deref(), ws.now_ms())?;
    Ok((report, cp))
}
