use anyhow::Context as _;
use clap::Args;

use super::{Ctx, when};
use crate::error::{CommandError, ExitCode};
use crate::report::ms;

/// Show one operation (op-N), checkpoint (cp-N) or incident (inc-N) in full
///
/// An operation with its journaled steps and timeline events; a checkpoint with
/// what it holds; an incident with its verdict, recovery times and report files.
///
/// Example: backout show op-12
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// op-N, cp-N or inc-N
    id: String,
}

pub fn run(ctx: &Ctx, args: ShowArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let p = &ctx.printer;
    let bad = || {
        CommandError::usage(anyhow::anyhow!(
            "{:?} is not an id\n  = hint: ids look like op-12, cp-3 or inc-1",
            args.id
        ))
    };
    let (kind, num) = args.id.split_once('-').ok_or_else(bad)?;
    let num: i64 = num.parse().map_err(|_| bad())?;
    match kind {
        "op" => {
            let o = ws
                .oplog
                .operation(num)?
                .with_context(|| format!("no operation {}", args.id))
                .map_err(CommandError::usage)?;
            let steps = ws.oplog.steps(num)?;
            let events = ws.oplog.events_of_op(num)?;
            p.data(&serde_json::json!({ "operation": o, "steps": steps, "events": events }));
            let took = o
                .ended_at
                .map_or("unfinished (interrupted or running)".into(), |e| ms(e - o.started_at));
            p.out(format!(
                "{} {}: {} ({took})",
                args.id,
                o.kind,
                o.outcome.as_deref().unwrap_or("-")
            ));
            p.out(format!("  started {}", when(o.started_at)));
            p.out(format!("  arguments {}", o.args));
            if let Some(e) = &o.error {
                p.out(format!("  error {e}"));
            }
            for s in &steps {
                let d = s.ended_at.map_or("unfinished".into(), |e| ms(e - s.started_at));
                p.out(format!(
                    "  step {}. {} [{}] {d}",
                    s.seq,
                    s.name,
                    s.outcome.as_deref().unwrap_or("unfinished")
                ));
                if let Some(c) = &s.command {
                    p.out(format!("     $ {c}"));
                }
                if let Some(c) = s.exit_code {
                    p.out(format!("     exit code {c}"));
                }
            }
            for e in &events {
                p.out(format!("  {} {} {}", when(e.at), e.kind, e.detail));
            }
        }
        "cp" => {
            let c = ws
                .oplog
                .checkpoint(num)?
                .with_context(|| format!("no checkpoint {}", args.id))
                .map_err(CommandError::usage)?;
            p.data(&c);
            p.out(format!(
                "{} {} ({})",
                args.id,
                when(c.created_at),
                if c.complete {
                    "complete"
                } else {
                    "INCOMPLETE: never used for restore"
                }
            ));
            if let Some(l) = &c.label {
                p.out(format!("  label {l}"));
            }
            p.out(format!(
                "  resources {}",
                serde_json::to_string_pretty(&c.resources).unwrap_or_default()
            ));
        }
        "inc" => {
            let row = ws
                .oplog
                .incidents()?
                .into_iter()
                .find(|i| i.id == num)
                .with_context(|| format!("no incident {}", args.id))
                .map_err(CommandError::usage)?;
            let i = crate::report::load(&ws, &args.id)?;
            let dir = crate::report::report_dir(&ws, &args.id);
            p.data(&serde_json::json!({ "incident": row, "time_to_detect_ms": i.time_to_detect_ms(), "time_to_recover_ms": i.time_to_recover_ms(), "verified": i.verified(), "report_dir": dir }));
            p.out(format!(
                "{} {}: {}",
                args.id,
                when(row.opened_at),
                i.verdict.explanation
            ));
            if let Some(t) = i.time_to_detect_ms() {
                p.out(format!("  time to detect {}", ms(t)));
            }
            if let Some(t) = i.time_to_recover_ms() {
                p.out(format!("  time to recover {}", ms(t)));
            }
            p.out(format!(
                "  {}",
                if i.verified() {
                    "recovered and verified"
                } else {
                    "NOT verified"
                }
            ));
            for f in ["report.md", "report.html", "report.json"] {
                p.out(format!("  {}", dir.join(f).display()));
            }
        }
        _ => return Err(bad()),
    }
    Ok(ExitCode::Ok)
}
