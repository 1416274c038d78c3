use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::resource::{self, RestoreError};

/// Put resources back as a checkpoint holds them
///
/// The whole restore is planned and every stored object it needs is checked
/// first: a damaged checkpoint is refused before anything is written. Then a
/// safety checkpoint of the same resources is taken (restore from it to undo),
/// and each resource is restored as a journaled step. Before anything is
/// written, what the restore discards of what was written since the checkpoint
/// is measured and said — rows per table, Redis keys, files — with the safety
/// checkpoint that keeps it (`backout export` gets it out). Paths are restored
/// exactly — contents, modes, symlinks, mtimes, and files the checkpoint did not
/// have are removed — never outside the plan root and never through a symlink.
/// Git gets back its working tree, index, HEAD and branch.
///
/// Example: backout restore cp-3 --only api/venv --dry-run
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The checkpoint: `cp-3` or `3`
    checkpoint: String,
    /// Only this resource (`git`, or a captured path such as `api/venv`); repeatable
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Print exactly what would change, and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Leave running services as they are [default: restart them, so they run
    /// what was restored rather than what they loaded before]
    #[arg(long)]
    no_restart: bool,
}

/// Changes a real restore lists before it only counts.
const LIST_UP_TO: usize = 40;

pub async fn run(ctx: &Ctx, args: RestoreArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let id = resource::parse_checkpoint_name(&args.checkpoint).ok_or_else(|| {
        CommandError::usage(anyhow::anyhow!(
            "{:?} is not a checkpoint id\n  = hint: write cp-3 or 3; `backout checkpoints` lists them",
            args.checkpoint
        ))
    })?;
    let cp = ws
        .oplog
        .checkpoint(id)?
        .ok_or_else(|| CommandError::usage(RestoreError::NoSuchCheckpoint(resource::checkpoint_name(id))))?;
    let only: Vec<String> = args.only.iter().map(|o| o.trim_end_matches('/').to_string()).collect();
    let bar = ctx.printer.progress();
    // Services running now run what they loaded from the state being replaced.
    let running = crate::rollback::services::running(&ws)?;
    let mut _lock = None;
    let mut op = None;
    let outcome = if args.dry_run {
        resource::restore(&ws, None, &cp, &only, true, &bar)?
    } else {
        _lock = Some(ws.lock("restore")?);
        let o = ws.oplog.begin(
            "restore",
            &serde_json::json!({ "checkpoint": resource::checkpoint_name(id), "only": only }),
            ws.now_ms(),
        )?;
        op = Some(o);
        // What undoing this restore brings back: these services, running.
        crate::rollback::services::ensure_recorded(&ws, o, &running)?;
        match resource::restore(&ws, Some(o), &cp, &only, false, &bar) {
            Ok(out) => out,
            Err(e) => {
                ws.oplog.finish(o, "failed", Some(&format!("{e:#}")), ws.now_ms())?;
                return Err(e.into());
            }
        }
    };
    ctx.printer.data(&outcome);
    let p = &ctx.printer;
    // A dry run lists everything; a real restore lists up to a screenful,
    // then counts per resource (the JSON has every change).
    let listed = if args.dry_run || ctx.printer.verbose() {
        outcome.changes.len()
    } else {
        LIST_UP_TO
    };
    for c in outcome.changes.iter().take(listed) {
        let sign = match c.action.as_str() {
            "add" => "+",
            "remove" => "-",
            "change" => "~",
            "meta" => "m",
            "move" => ">",
            _ => "*",
        };
        p.out(format!("{sign} {}: {} {}", c.resource, c.action, c.what));
    }
    if outcome.changes.len() > listed {
        let mut counts: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
        for c in &outcome.changes[listed..] {
            *counts.entry((c.resource.as_str(), c.action.as_str())).or_default() += 1;
        }
        let rest: Vec<String> = counts.iter().map(|((r, a), n)| format!("{r}: {n} {a}")).collect();
        p.out(format!(
            "… and {} more ({}; -v lists them)",
            outcome.changes.len() - listed,
            rest.join(", ")
        ));
    }
    for w in &outcome.warnings {
        p.warn(w);
    }
    // What was written since the checkpoint and is (or would be) discarded.
    for d in &outcome.discarded {
        p.out(d.sentence());
    }
    let what = outcome.resources.join(", ");
    if outcome.dry_run {
        p.out(format!(
            "dry run: restoring {} ({what}) would make {} change(s); nothing was changed",
            outcome.checkpoint,
            outcome.changes.len()
        ));
    } else {
        p.out(format!(
            "restored {} ({what}): {} change(s); safety checkpoint {} (`backout undo` takes it back)",
            outcome.checkpoint,
            outcome.changes.len(),
            outcome.safety_checkpoint.as_deref().unwrap_or("?")
        ));
    }
    let names: Vec<&str> = running.iter().map(|t| t.name.as_str()).collect();
    if names.is_empty() || outcome.changes.is_empty() {
        if let Some(op) = op {
            ws.oplog.finish(op, "ok", None, ws.now_ms())?;
        }
        return Ok(ExitCode::Ok);
    }
    if outcome.dry_run {
        p.out(format!(
            "running services would be restarted so they run what is restored: {} (--no-restart leaves them)",
            names.join(", ")
        ));
        return Ok(ExitCode::Ok);
    }
    let op = op.expect("a real restore has an operation");
    if args.no_restart {
        p.warn(format!(
            "{} still run what they loaded before the restore: `backout service restart {}` makes them run what is restored",
            names.join(", "),
            names.join(" ")
        ));
        ws.oplog.finish(op, "ok", None, ws.now_ms())?;
        return Ok(ExitCode::Ok);
    }
    let run_dir = ws.run_dir()?;
    for t in &running {
        let Some(svc) = ws.plan.service(&t.name) else {
            continue;
        };
        let ready = svc.ready.as_deref().and_then(|r| ws.plan.probe(r));
        match crate::service::control::act(
            svc,
            crate::plan::ServiceAction::Restart,
            &run_dir,
            t.timeout,
            ready,
            &ws.clock,
        )
        .await
        {
            Ok(lines) => lines.lines().for_each(|l| p.status(l)),
            Err(e) => {
                let msg = format!(
                    "the restore is done, but restarting {} failed: {e:#}\n  = hint: `backout undo` takes the restore back",
                    svc.name
                );
                ws.oplog.finish(op, "failed", Some(&msg), ws.now_ms())?;
                return Err(CommandError::failure(anyhow::anyhow!(msg)));
            }
        }
    }
    ws.oplog.finish(op, "ok", None, ws.now_ms())?;
    Ok(ExitCode::Ok)
}
