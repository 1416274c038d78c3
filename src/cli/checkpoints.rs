use clap::Args;
use serde::Serialize;

use super::{Ctx, when};
use crate::error::{CommandError, ExitCode};
use crate::output::bytes;
use crate::resource::{Resources, checkpoint_name};

/// List checkpoints, oldest first: id, time, label, phase, resources, size
///
/// A checkpoint whose capture was interrupted is listed as incomplete and is
/// never used by restore or rollback.
///
/// Example: backout checkpoints --json
#[derive(Debug, Args)]
pub struct CheckpointsArgs {}

#[derive(Serialize)]
struct Line {
    id: String,
    created_at: i64,
    time: String,
    label: Option<String>,
    phase: Option<String>,
    resources: Vec<String>,
    bytes: u64,
    stored: u64,
    complete: bool,
}

pub fn run(ctx: &Ctx, _args: CheckpointsArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let lines: Vec<Line> = ws
        .oplog
        .checkpoints()?
        .iter()
        .map(|c| {
            let r = Resources::from_row(c);
            let mut resources: Vec<String> = r.summary.iter().map(|s| s.name.clone()).collect();
            if resources.is_empty() && r.git.is_some() {
                resources.push("git".into());
            }
            Line {
                id: checkpoint_name(c.id),
                created_at: c.created_at,
                time: when(c.created_at),
                label: c.label.clone(),
                phase: c.phase.clone(),
                resources,
                bytes: r.bytes(),
                stored: r.summary.iter().map(|s| s.stored).sum(),
                complete: c.complete,
            }
        })
        .collect();
    if ctx.printer.json() {
        ctx.printer.data(&lines);
        return Ok(ExitCode::Ok);
    }
    if lines.is_empty() {
        ctx.printer.status("no checkpoints yet; run `backout checkpoint`");
        return Ok(ExitCode::Ok);
    }
    // Each column as wide as its widest cell: labels, "no (interrupted)"
    // and long ids stay in their column.
    let header = ["ID", "TIME (UTC)", "COMPLETE", "SIZE", "LABEL", "PHASE", "RESOURCES"].map(String::from);
    let rows: Vec<[String; 7]> = lines
        .iter()
        .map(|l| {
            [
                l.id.clone(),
                l.time.clone(),
                if l.complete { "yes" } else { "no (interrupted)" }.to_string(),
                bytes(l.bytes),
                l.label.clone().unwrap_or_else(|| "-".into()),
                l.phase.clone().unwrap_or_else(|| "-".into()),
                if l.resources.is_empty() {
                    "-".into()
                } else {
                    l.resources.join(", ")
                },
            ]
        })
        .collect();
    let mut width = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(width)
            .enumerate()
            .map(|(i, (cell, w))| match i {
                // The size right-aligned; the last column not padded.
                3 => format!("{cell:>w$}"),
                6 => cell.clone(),
                _ => format!("{cell:<w$}"),
            })
            .collect();
        ctx.printer.out(cells.join("  "));
    }
    Ok(ExitCode::Ok)
}
