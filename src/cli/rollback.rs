use clap::{Args, ValueEnum};

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::plan::units;
use crate::resource::{self, Resources};
use crate::rollback::select::{self, Request, SelectError};
use crate::rollback::{CrashPoint, Options, RollbackReport, StepEvent};

/// Roll back to a checkpoint: everything, one phase, or one component, then verify
///
/// With no arguments: the plan's full rollback ([rollback] steps) to the newest
/// checkpoint known to be good: the deploy marker's, or one a watch or verify
/// vouched for; never a safety checkpoint, a checkpoint of the state being
/// rolled back, or one that would undo the last rollback. The dry run and the
/// rollback say which and why. A safety checkpoint of the current state is taken first,
/// so nothing is lost and `backout undo` can take the rollback back. Every step is
/// journaled; after a crash or kill, --resume continues where it stopped. Without
/// --yes on a terminal, shows the steps and asks.
///
/// Example: backout rollback --phase ticker-metadata --option "B: full revert" --dry-run
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The checkpoint to roll back to (cp-N) [default: the newest known to be
    /// good; with --phase, the one taken before that phase, if any]
    #[arg(long, value_name = "CHECKPOINT")]
    to: Option<String>,
    /// Roll back everything (level 1, the default)
    #[arg(long, value_enum, conflicts_with_all = ["phase", "component"])]
    level: Option<Level>,
    /// Roll back one phase (level 2) with its default option, or --option
    #[arg(long, value_name = "NAME", conflicts_with = "component")]
    phase: Option<String>,
    /// Roll back one component (level 3)
    #[arg(long, value_name = "NAME")]
    component: Option<String>,
    /// The phase's rollback option to use, by name
    #[arg(long, value_name = "NAME", requires = "phase")]
    option: Option<String>,
    /// Print the steps and commands, and the time against the RTO, without running them
    #[arg(long)]
    dry_run: bool,
    /// Why, in a sentence, for the incident report: a trigger no probe sees
    /// (users phoning in "still broken")
    #[arg(long, value_name = "TEXT", conflicts_with = "resume")]
    reason: Option<String>,
    /// Do not ask for confirmation
    #[arg(short, long)]
    yes: bool,
    /// Continue the rollback a crash or kill interrupted, from its journal
    #[arg(long, conflicts_with_all = ["to", "level", "phase", "component", "option", "dry_run"])]
    resume: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Level {
    /// Everything: the plan's [rollback] steps
    Full,
}

pub async fn run(ctx: &Ctx, args: RollbackArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let p = &ctx.printer;
    let _lock = if args.dry_run { None } else { Some(ws.lock("rollback")?) };
    // Fault injection for the resume tests: kill -9 ourselves at a step boundary.
    let opts = Options {
        crash_at: ctx.env.var("BACKOUT_TEST_CRASH_AT").and_then(CrashPoint::parse),
    };
    let on = |e: &StepEvent| {
        if let StepEvent::Finished(s) = e {
            super::print_step(p, "", s);
        }
    };
    if args.resume {
        let rb = crate::rollback::resume(&ws, &opts, on).await?;
        // A resumed rollback has no evidence from before its first step: the first run changed things already.
        return finish(ctx, &ws, None, rb, Vec::new(), None).await;
    }
    // A phase goes back to the checkpoint taken before it, when there is one.
    let phase_cp = match (&args.to, &args.phase) {
        (None, Some(phase)) => ws
            .oplog
            .latest_checkpoint_of_phase(phase)?
            .map(|cp| crate::rollback::target::for_phase(&ws.oplog, &cp, phase))
            .transpose()?,
        _ => None,
    };
    let chosen = match phase_cp {
        Some(t) => t,
        None => super::rollback_target(&ws, args.to.as_deref())?,
    };
    let cp = chosen.row.clone();
    // The last change was a rollback (or restore) to this very checkpoint:
    // running it again would only repeat its steps. Said, not guessed.
    if let Some(already) = chosen.already_there.as_deref().filter(|_| args.to.is_none()) {
        let msg = format!(
            "nothing to roll back: {already}\n  = hint: pass --to {} to run the rollback again anyway",
            chosen.checkpoint
        );
        if args.dry_run {
            p.data(
                &serde_json::json!({ "checkpoint": chosen.checkpoint, "target": chosen, "nothing_to_roll_back": true }),
            );
            p.out(msg);
            return Ok(ExitCode::Ok);
        }
        return Err(CommandError::usage(anyhow::anyhow!(msg)));
    }
    // Phases applied after this one and still in place: rolling this one back
    // alone may break them (seed 002's phases each build on the one before).
    let later = match (&args.phase, &args.to) {
        (Some(phase), None) => crate::rollback::select::phases_applied_after(&ws.oplog, phase, &cp)?,
        _ => Vec::new(),
    };
    let req = Request {
        phase: args.phase.clone(),
        option: args.option.clone(),
        component: args.component.clone(),
    };
    let sel = select::select(&ws.plan, &req).map_err(|e: SelectError| CommandError::usage(e))?;
    let name = resource::checkpoint_name(cp.id);
    let target = Resources::from_row(&cp);
    let mut lines = vec![
        format!("roll back ({}) to {name} ({})", sel.label, super::when(cp.created_at)),
        format!("  why: {}", chosen.why),
    ];
    lines.extend(chosen.warnings.iter().map(|w| format!("warning: {w}")));
    let mut json_steps = Vec::new();
    for (i, s) in sel.steps.iter().enumerate() {
        let cmd = crate::rollback::steps::describe(&ws.plan, s, &target);
        let extra = match (&s.kind, &target.git) {
            (crate::plan::StepKind::GitRevert, Some(g)) => g
                .head
                .as_ref()
                .map(|h| {
                    let n = crate::resource::git::commits_since(&g.toplevel, h)
                        .map(|c| c.len())
                        .unwrap_or(0);
                    format!(" ({n} commit(s))")
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        lines.push(format!(
            "  {}. {}{}{extra} [timeout {}]",
            i + 1,
            s.name,
            cmd.as_deref()
                .filter(|c| *c != s.name)
                .map_or(String::new(), |c| format!(": {c}")),
            units::format_duration(s.timeout)
        ));
        json_steps.push(serde_json::json!({
            "seq": i + 1, "name": s.name, "command": cmd, "timeout_ms": s.timeout.as_millis() as u64,
        }));
    }
    let later_warning = (!later.is_empty()).then(|| {
        let names: Vec<String> = later
            .iter()
            .map(|l| format!("{} ({} before it)", l.phase, l.checkpoint))
            .collect();
        format!(
            "applied after this phase and not rolled back: {}; their changes may assume this phase's. Roll them back first, latest first (`backout rollback --phase {}`), or all together with `--to {name}`",
            names.join(", "),
            later[later.len() - 1].phase,
        )
    });
    if let Some(w) = &later_warning {
        lines.push(format!("warning: {w}"));
    }
    let worst = sel.worst_case();
    let mut time = vec![format!(
        "at most {} (the sum of the step timeouts)",
        units::format_duration(worst)
    )];
    if let Some(e) = sel.estimate {
        time.insert(0, format!("estimated {}", units::format_duration(e)));
    }
    lines.push(format!("time: {}", time.join(", ")));
    let expected = sel.estimate.unwrap_or(worst);
    for (what, limit) in [("level target", sel.target), ("recovery-time objective", ws.plan.rto)] {
        if let Some(l) = limit {
            let verdict = if expected <= l { "within" } else { "OVER" };
            lines.push(format!(
                "{what}: {} ({verdict} it{})",
                units::format_duration(l),
                if sel.estimate.is_some() {
                    ""
                } else {
                    " even in the worst case"
                }
            ));
        }
    }
    // What the restores among the steps would discard, said before asking.
    let asks = !args.yes && !p.json() && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let discarded = if args.dry_run || asks {
        crate::rollback::resources::would_discard(&ws, &cp, &sel.steps)
    } else {
        Vec::new()
    };
    lines.extend(discarded.iter().map(|d| d.sentence()));
    if args.dry_run {
        p.data(&serde_json::json!({
            "checkpoint": name,
            "target": chosen,
            "nothing_to_roll_back": false,
            "selection": sel.selection,
            "level": sel.label,
            "steps": json_steps,
            "estimate_ms": sel.estimate.map(|d| d.as_millis() as u64),
            "worst_case_ms": worst.as_millis() as u64,
            "target_ms": sel.target.map(|d| d.as_millis() as u64),
            "rto_ms": ws.plan.rto.map(|d| d.as_millis() as u64),
            "applied_after": later,
            "discarded": discarded,
        }));
        for l in &lines {
            p.out(l);
        }
        return Ok(ExitCode::Ok);
    }
    if !args.yes && !p.json() {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            if !super::watch::ask(p, &lines.join("\n")) {
                p.status("not rolling back");
                return Ok(ExitCode::Failure);
            }
        } else {
            return Err(CommandError::usage(anyhow::anyhow!(
                "not a terminal: pass --yes to roll back without asking"
            )));
        }
    }
    if args.yes || p.json() {
        super::show_target(p, &chosen);
    }
    if let Some(w) = later_warning {
        p.warn(w);
    }
    // The change this takes back, when it was marked: the report's figures count from it.
    let deploy = crate::rollback::target::open_deploy(&ws.oplog)?;
    // Evidence first, as for an automatic rollback: nothing has changed yet.
    let diagnostics = crate::diagnostics::capture(&ws).await;
    let rb = crate::rollback::execute(&ws, &cp, &sel, &opts, on).await?;
    finish(ctx, &ws, deploy, rb, diagnostics, args.reason.as_deref()).await
}

/// Verifies a finished rollback and reports it with its timing.
async fn finish(
    ctx: &Ctx,
    ws: &crate::workspace::Workspace,
    deploy: Option<crate::deploy::Marker>,
    rb: RollbackReport,
    diagnostics: Vec<crate::report::Diagnostic>,
    reason: Option<&str>,
) -> Result<ExitCode, CommandError> {
    let p = &ctx.printer;
    let checks = if rb.ok {
        let level = select::level_checks(&ws.plan, &rb.selection);
        crate::incident::verify_all(
            ws,
            &level,
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
    let (incident, report) =
        crate::incident::report_manual(ws, deploy, rb.clone(), checks.clone(), diagnostics, reason)?;
    p.data(&serde_json::json!({ "rollback": rb, "verification": checks, "verified": verified, "incident": incident.id, "report": report }));
    p.out(format!(
        "rollback ({}) to {} {}{} in {}; safety checkpoint {} (`backout undo` takes it back)",
        rb.label,
        rb.checkpoint,
        if rb.ok { "done" } else { "FAILED" },
        if rb.resumed { " (resumed)" } else { "" },
        crate::report::ms(rb.ended_at - rb.started_at),
        rb.safety_checkpoint.as_deref().unwrap_or("-")
    ));
    // The same figures as the report: "met" only for a verified recovery.
    for line in crate::report::figures::console_lines(&incident) {
        p.out(format!("  {line}"));
    }
    for line in crate::report::figures::not_run(&incident) {
        p.out(p.yellow(&format!("  {line}")));
    }
    if !incident.earlier_rollbacks.is_empty() {
        p.out(format!(
            "  part of {} (its rollback failed before this one): one incident, one recovery time",
            incident.id
        ));
    }
    p.out(format!("report: {}", report.display()));
    super::restore::print_pruned(ctx, rb.pruned.as_ref());
    for op in &rb.abandoned {
        p.warn(format!(
            "op-{op} was an interrupted rollback; it is closed as abandoned (this rollback's safety checkpoint holds the state it left)"
        ));
    }
    if !rb.degraded.is_empty() {
        p.warn(format!(
            "degraded mode: {} stopped; the rest keep running",
            rb.degraded.join(", ")
        ));
    }
    Ok(if verified { ExitCode::Ok } else { ExitCode::Failure })
}
