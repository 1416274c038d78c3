use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::output::bytes;
use crate::plan::units::parse_duration;
use crate::resource::gc::{self, GcRules};

/// Drop old checkpoints and the stored objects only they used
///
/// A checkpoint is dropped when every rule given says so; the newest complete
/// checkpoint and the safety checkpoints the next `undo` and `redo` put back
/// are always kept. Safety checkpoints (taken by rollback, restore, undo and
/// redo) are also pruned by the plan's `[store]` retention, as after each of
/// those commands: the newest `keep-safety` (default 10) stay, with those
/// younger than `keep-safety-for`, and older ones go while the store is over
/// `max-size`. Interrupted (incomplete) checkpoints and leftover temporary
/// files are always removed.
///
/// Example: backout gc --keep 5 --older-than 7d
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep the newest N complete checkpoints
    #[arg(long, value_name = "N")]
    keep: Option<usize>,
    /// Drop checkpoints older than this, e.g. 7d or 12h
    #[arg(long, value_name = "DURATION")]
    older_than: Option<String>,
}

pub fn run(ctx: &Ctx, args: GcArgs) -> Result<ExitCode, CommandError> {
    let older_than = args
        .older_than
        .as_deref()
        .map(|s| {
            parse_duration(s).map_err(|e| {
                CommandError::usage(anyhow::anyhow!(
                    "--older-than {s:?}: {}\n  = hint: {}",
                    e.message,
                    e.hint
                ))
            })
        })
        .transpose()?;
    let ws = ctx.workspace()?;
    let _lock = ws.lock("gc")?;
    let op = ws.oplog.begin(
        "gc",
        &serde_json::json!({ "keep": args.keep, "older_than": args.older_than }),
        ws.now_ms(),
    )?;
    let report = match gc::gc(
        &ws,
        &GcRules {
            keep: args.keep,
            older_than,
        },
    ) {
        Ok(r) => r,
        Err(e) => {
            ws.oplog.finish(op, "failed", Some(&format!("{e:#}")), ws.now_ms())?;
            return Err(e.into());
        }
    };
    ws.oplog.finish(op, "ok", None, ws.now_ms())?;
    ctx.printer.data(&report);
    let p = &ctx.printer;
    for d in &report.dropped {
        p.out(format!("dropped {d}"));
    }
    for d in &report.pruned {
        p.out(format!("dropped {d} (a safety checkpoint past the [store] retention)"));
    }
    for d in &report.incomplete {
        p.out(format!("dropped {d} (incomplete)"));
    }
    if let Some(w) = &report.warning {
        p.warn(w);
    }
    p.out(format!(
        "kept {} checkpoint(s); removed {} object(s), {} freed",
        report.kept.len(),
        report.objects_removed,
        bytes(report.bytes_freed)
    ));
    Ok(ExitCode::Ok)
}
