use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};

/// Take back the last rollback or restore: put the repository back as it was
/// before it (HEAD, branch, index, work tree, untracked files)
///
/// The state comes from the safety checkpoint the rollback took before its first
/// step. The undo is itself an operation with its own safety checkpoint, so
/// `backout redo` can reapply what it took back.
///
/// Example: backout undo
#[derive(Debug, Args)]
pub struct UndoArgs {}

pub fn run(ctx: &Ctx, _args: UndoArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let _lock = ws.lock("undo")?;
    let r = crate::rollback::undo::undo(&ws)?;
    report(ctx, &r);
    Ok(ExitCode::Ok)
}

pub fn report(ctx: &Ctx, r: &crate::rollback::undo::UndoReport) {
    ctx.printer.data(r);
    let verb = if r.kind == "undo" { "took back" } else { "reapplied" };
    ctx.printer.out(format!(
        "{}: {verb} op-{}; the repository matches {} ({}ms{}); safety checkpoint {}",
        r.kind,
        r.target_op,
        r.restored,
        r.duration_ms,
        if r.resumed { ", finished an interrupted run" } else { "" },
        r.safety_checkpoint
    ));
}
