use clap::{Args, ValueEnum};

use super::Ctx;
use crate::error::{CommandError, ExitCode};

/// Print the plan as a runbook a person can follow
///
/// Purpose, prerequisites, services, monitoring thresholds and the time each
/// needs to detect a failure, rollback steps as commands a person could run by
/// hand, the validation checklist, and the recovery times measured in past
/// rollbacks. Generated from the plan and the log, so it never goes stale.
///
/// Example: backout runbook --format html > runbook.html
#[derive(Debug, Args)]
pub struct RunbookArgs {
    #[arg(long, value_enum, default_value_t = Format::Md)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Md,
    Html,
}

pub fn run(ctx: &Ctx, args: RunbookArgs) -> Result<ExitCode, CommandError> {
    let plan = ctx.load_plan()?;
    // The log is optional: a runbook can be written before anything ran.
    let state = plan.root.join(crate::workspace::STATE_DIR).join("state.db");
    let log = if state.exists() {
        Some(crate::oplog::Oplog::open(&state, ctx.printer.redactor().clone())?)
    } else {
        None
    };
    let blocks = crate::runbook::build(&plan, log.as_ref());
    let text = match args.format {
        Format::Md => crate::runbook::markdown(&blocks),
        Format::Html => crate::runbook::html(&blocks),
    };
    if ctx.printer.json() {
        ctx.printer
            .data(&serde_json::json!({ "format": format!("{:?}", args.format).to_lowercase(), "text": text }));
    } else {
        ctx.printer.out(text.trim_end());
    }
    Ok(ExitCode::Ok)
}
