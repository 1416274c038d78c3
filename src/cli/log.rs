use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};

/// List operations recorded in the operation log, newest first
///
/// Every command that changed something is there, with its outcome and duration.
///
/// Example: backout log --kind rollback -n 5
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only operations of this kind (checkpoint, baseline, watch, rollback, verify, demo...)
    #[arg(long)]
    kind: Option<String>,
    /// How many to show
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    /// Also list each operation's steps
    #[arg(long)]
    steps: bool,
    /// Only operations started within this long (e.g. 2h, 7d)
    #[arg(long, value_name = "DURATION", value_parser = super::baseline::parse_duration)]
    since: Option<std::time::Duration>,
}

pub fn run(ctx: &Ctx, args: LogArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let since = args
        .since
        .map_or(0, |d| ws.now_ms().saturating_sub(crate::context::millis(d)));
    let ops = ws.oplog.operations_since(args.kind.as_deref(), since, args.limit)?;
    if ctx.printer.json() {
        let mut out = Vec::new();
        for o in &ops {
            let mut v = serde_json::to_value(o).map_err(CommandError::failure)?;
            if args.steps {
                v["steps"] = serde_json::to_value(ws.oplog.steps(o.id)?).map_err(CommandError::failure)?;
            }
            out.push(v);
        }
        ctx.printer.data(&out);
        return Ok(ExitCode::Ok);
    }
    if ops.is_empty() {
        ctx.printer.status("no operations recorded yet");
    }
    for o in &ops {
        let took = o
            .ended_at
            .map_or("running or interrupted".into(), |e| crate::report::ms(e - o.started_at));
        let outcome = o.outcome.as_deref().unwrap_or("-");
        ctx.printer.out(format!(
            "op-{:<5} {}  {:<11} {:<20} {took}",
            o.id,
            super::when(o.started_at),
            o.kind,
            outcome
        ));
        if let Some(e) = &o.error {
            ctx.printer.out(format!("          {e}"));
        }
        if args.steps {
            for s in ws.oplog.steps(o.id)? {
                let code = s.exit_code.map_or(String::new(), |c| format!(" exit {c}"));
                ctx.printer.out(format!(
                    "          {}. {} [{}{code}] {}",
                    s.seq,
                    s.name,
                    s.outcome.as_deref().unwrap_or("unfinished"),
                    s.command.unwrap_or_default()
                ));
            }
        }
    }
    Ok(ExitCode::Ok)
}
