use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};

/// Reapply what the last `backout undo` took back
///
/// Puts the project back as it was just before that undo, from the undo's own
/// safety checkpoint, and its services as they were then (running ones
/// restarted onto that code, stopped ones stopped, degraded mode as it was).
/// Only while nothing was rolled back since.
///
/// Example: backout redo
#[derive(Debug, Args)]
pub struct RedoArgs {}

pub async fn run(ctx: &Ctx, _args: RedoArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let _lock = ws.lock("redo")?;
    super::restore::take_back_interrupted(ctx, &ws, &ctx.printer.progress())?;
    let r = crate::rollback::undo::redo(&ws).await?;
    super::undo::report(ctx, &r);
    Ok(ExitCode::Ok)
}
