use anyhow::Context as _;
use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::plan::units;
use crate::resource::{self, Resources};
use crate::rollback::StepEvent;

/// Roll back to a checkpoint with the plan's [rollback] steps, then verify
///
/// A safety checkpoint of the current state is taken first, so nothing is lost.
/// Without --yes on a terminal, shows the steps and asks.
///
/// Example: backout rollback --dry-run
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The checkpoint to roll back to (cp-N) [default: the last complete one]
    #[arg(long, value_name = "CHECKPOINT")]
    to: Option<String>,
    /// Print the steps and commands without running them
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    yes: bool,
}

pub async fn run(ctx: &Ctx, args: RollbackArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let p = &ctx.printer;
    let _lock = if args.dry_run { None } else { Some(ws.lock("rollback")?) };
    let cp = match &args.to {
        None => super::last_checkpoint(&ws)?,
        Some(name) => {
            let id: i64 = name.trim_start_matches("cp-").parse().map_err(|_| {
                CommandError::usage(anyhow::anyhow!(
                    "{name:?} is not a checkpoint id\n  = hint: checkpoint ids look like cp-3"
                ))
            })?;
            let row = ws
                .oplog
                .checkpoint(id)?
                .context(format!("no checkpoint {name}"))
                .map_err(CommandError::usage)?;
            if !row.complete {
                return Err(CommandError::usage(anyhow::anyhow!(
                    "checkpoint {name} is incomplete (its capture was interrupted); choose another"
                )));
            }
            row
        }
    };
    let name = resource::checkpoint_name(cp.id);
    let target = Resources::from_row(&cp);
    let mut plan_lines = vec![format!("roll back to {name} ({})", super::when(cp.created_at))];
    for (i, s) in ws.plan.rollback.iter().enumerate() {
        let cmd = match (&s.kind, &target.git) {
            (crate::plan::StepKind::GitRevert, Some(g)) => match &g.head {
                Some(h) => {
                    let n = crate::resource::git::commits_since(&g.toplevel, h)
                        .map(|c| c.len())
                        .unwrap_or(0);
                    format!(": git revert --no-edit {}..HEAD ({n} commit(s))", &h[..12.min(h.len())])
                }
                None => String::new(),
            },
            _ => String::new(),
        };
        plan_lines.push(format!("  {}. {}{cmd}", i + 1, s.name));
    }
    if let Some(rto) = ws.plan.rto {
        plan_lines.push(format!("recovery-time objective: {}", units::format_duration(rto)));
    }
    if args.dry_run {
        p.data(&serde_json::json!({ "checkpoint": name, "steps": plan_lines[1..] }));
        for l in &plan_lines {
            p.out(l);
        }
        return Ok(ExitCode::Ok);
    }
    if !args.yes && !p.json() {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            if !super::watch::ask(p, &plan_lines.join("\n")) {
                p.status("not rolling back");
                return Ok(ExitCode::Failure);
            }
        } else {
            return Err(CommandError::usage(anyhow::anyhow!(
                "not a terminal: pass --yes to roll back without asking"
            )));
        }
    }
    let rb = crate::rollback::rollback(&ws, &cp, |e| {
        if let StepEvent::Finished(s) = e {
            p.status(format!(
                "step {} {}: {} ({}ms)",
                s.seq,
                s.name,
                if s.ok { "ok" } else { "FAILED" },
                s.duration_ms
            ));
            if !s.ok {
                p.status(s.output.clone());
            }
        }
    })
    .await?;
    let checks = if rb.ok {
        crate::incident::verify_all(
            &ws,
            |c| {
                p.status(format!(
                    "[{}] {}: {}",
                    if c.passed { "pass" } else { "FAIL" },
                    c.name,
                    c.evidence
                ))
            },
            |_, _| {},
        )
        .await?
    } else {
        Vec::new()
    };
    let verified = rb.ok && checks.iter().all(|c| c.passed);
    p.data(&serde_json::json!({ "rollback": rb, "verification": checks, "verified": verified }));
    p.out(format!(
        "rollback to {name} {} in {}; safety checkpoint {}",
        if rb.ok { "done" } else { "FAILED" },
        crate::report::ms(rb.ended_at - rb.started_at),
        rb.safety_checkpoint.as_deref().unwrap_or("-")
    ));
    Ok(if verified { ExitCode::Ok } else { ExitCode::Failure })
}
