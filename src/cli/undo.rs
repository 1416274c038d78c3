use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};

/// Take back the last rollback or restore: put the project back as it was
/// before it, services included
///
/// The state comes from the safety checkpoint the rollback took before its first
/// step: git (HEAD, branch, index, work tree, untracked files), captured paths,
/// databases and command-captured state. Every service the rollback touched goes
/// back to the state it had before: running ones are restarted (rebuilt when the
/// rollback rebuilt them) so they run the restored code, and waited for when
/// they have a readiness probe; stopped ones are stopped; degraded mode is
/// recorded as it was. The undo is itself an operation with its own safety
/// checkpoint, so `backout redo` can reapply what it took back.
///
/// Example: backout undo
#[derive(Debug, Args)]
pub struct UndoArgs {}

pub async fn run(ctx: &Ctx, _args: UndoArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let _lock = ws.lock("undo")?;
    // A restore killed while it wrote is the newest change: taking it back
    // is this undo.
    let taken = super::restore::take_back_interrupted(ctx, &ws, &ctx.printer.progress())?;
    if taken.iter().any(|t| t.left.is_none() && !t.put_back.is_empty()) {
        ctx.printer.data(&taken);
        ctx.printer
            .out("undo: took back the interrupted restore; the project is as it was before it");
        return Ok(ExitCode::Ok);
    }
    let r = crate::rollback::undo::undo(&ws).await?;
    report(ctx, &r);
    Ok(ExitCode::Ok)
}

pub fn report(ctx: &Ctx, r: &crate::rollback::undo::UndoReport) {
    ctx.printer.data(r);
    let p = &ctx.printer;
    for s in &r.steps {
        let state = if s.already_done { "done before" } else { "ok" };
        p.status(format!("step {} {}: {state} ({}ms)", s.seq, s.name, s.duration_ms));
    }
    for n in &r.notes {
        p.status(format!("note: {n}"));
    }
    let verb = if r.kind == "undo" { "took back" } else { "reapplied" };
    p.out(format!(
        "{}: {verb} op-{}; the project matches {} ({}ms{}); safety checkpoint {}",
        r.kind,
        r.target_op,
        r.restored,
        r.duration_ms,
        if r.resumed { ", finished an interrupted run" } else { "" },
        r.safety_checkpoint
    ));
    let services: Vec<&str> = r.steps.iter().skip(1).map(|s| s.name.as_str()).collect();
    if !services.is_empty() {
        p.out(format!("services: {}", services.join(", ")));
    }
    match r.degraded.as_deref() {
        Some([]) => {}
        Some(d) => p.out(format!(
            "degraded mode: {} stopped; the rest keep running",
            d.join(", ")
        )),
        None => {}
    }
    super::restore::print_pruned(ctx, r.pruned.as_ref());
}
