use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::rollback::select::{self, Request};
use crate::rollback::{Options, StepEvent};

/// Apply the plan's phases in order: checkpoint, apply, verify each one
///
/// On a failed apply step or verify check, the phase is rolled back with its
/// default rollback option (to the checkpoint taken just before it), the result
/// is reported, and no later phase runs.
///
/// Example: backout run --phase ticker-metadata
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run only this phase
    #[arg(long, value_name = "NAME")]
    phase: Option<String>,
}

pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let p = &ctx.printer;
    let _lock = ws.lock("run")?;
    let phases: Vec<_> = match &args.phase {
        Some(n) => vec![ws.plan.phase(n).cloned().ok_or_else(|| {
            CommandError::usage(select::SelectError::UnknownPhase {
                name: n.clone(),
                known: ws
                    .plan
                    .phases
                    .iter()
                    .map(|p| p.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })?],
        None => ws.plan.phases.clone(),
    };
    if phases.is_empty() {
        return Err(CommandError::usage(anyhow::anyhow!(
            "the plan has no phases\n  = hint: add [[phase]] tables with apply, verify and rollback"
        )));
    }
    let on = |e: &StepEvent| {
        if let StepEvent::Finished(s) = e {
            super::print_step(p, "  ", s);
        }
    };
    let mut done = Vec::new();
    for phase in &phases {
        // What a failure will do is said before anything changes.
        match phase.default() {
            Some(opt) => p.status(format!(
                "phase {}: applying; on failure it is rolled back with option {:?}",
                phase.name, opt.name
            )),
            None => p.warn(format!(
                "phase {}: applying; it has no rollback option, so on failure backout stops and leaves it as it is (`backout rollback --to CHECKPOINT` then)",
                phase.name
            )),
        }
        let (applied, cp) = crate::rollback::apply::apply_phase(&ws, phase, on, |c| {
            p.status(format!(
                "  [{}] {}: {}",
                if c.passed { "pass" } else { "FAIL" },
                c.name,
                c.evidence
            ))
        })
        .await?;
        if applied.ok {
            p.out(format!(
                "phase {}: applied and verified ({})",
                phase.name, applied.checkpoint
            ));
            done.push(serde_json::to_value(&applied)?);
            continue;
        }
        let failure = if applied.applied {
            "verification failed"
        } else {
            "apply failed"
        };
        let rollback = match phase.default() {
            None => {
                p.out(format!(
                    "phase {}: {failure}; left as it is (no rollback option); its checkpoint {} holds the state before it: `backout rollback --to {}`",
                    phase.name, applied.checkpoint, applied.checkpoint
                ));
                None
            }
            Some(opt) => {
                p.out(format!(
                    "phase {}: {failure}; rolling it back to {}",
                    phase.name, applied.checkpoint
                ));
                let sel = select::select(
                    &ws.plan,
                    &Request {
                        phase: Some(phase.name.clone()),
                        option: Some(opt.name.clone()),
                        component: None,
                    },
                )
                .map_err(CommandError::usage)?;
                p.status(format!("phase {}: rollback option {:?}", phase.name, opt.name));
                let rb = crate::rollback::execute(&ws, &cp, &sel, &Options::default(), on).await?;
                p.out(format!(
                    "phase {}: rollback {} in {}ms; safety checkpoint {}",
                    phase.name,
                    if rb.ok { "done" } else { "FAILED" },
                    rb.timing.total_ms,
                    rb.safety_checkpoint.as_deref().unwrap_or("-")
                ));
                super::restore::print_pruned(ctx, rb.pruned.as_ref());
                Some(rb)
            }
        };
        p.data(&serde_json::json!({ "phases": done, "failed": applied, "rollback": rollback }));
        return Ok(ExitCode::Failure);
    }
    p.data(&serde_json::json!({ "phases": done }));
    p.out(format!("{} phase(s) applied and verified", done.len()));
    Ok(ExitCode::Ok)
}
