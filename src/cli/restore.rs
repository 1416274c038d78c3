use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::resource;
use crate::store::Progress;
use crate::workspace::Workspace;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Put resources back as a checkpoint holds them
///
/// The whole restore is planned and every stored object it needs is checked
/// first: a damaged checkpoint is refused before anything is written. Then a
/// safety checkpoint of the same resources is taken (restore from it to undo),
/// and each resource is restored as a journaled step. Before anything is
/// written, what the restore discards of what was written since the checkpoint
/// is measured and said — rows per table, Redis keys, files — with the safety
/// checkpoint that keeps it (`backout export` gets it out). A restore is all or
/// nothing: if one fails partway (a directory it cannot write in, a file it
/// cannot remove), everything it changed is put back as the safety checkpoint
/// holds it; one killed while it wrote is taken back by the next `restore`,
/// `undo` or `redo`. Paths are restored
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
    let cp = super::checkpoint_arg(&ws, &args.checkpoint)?;
    let id = cp.id;
    let only: Vec<String> = args.only.iter().map(|o| o.trim_end_matches('/').to_string()).collect();
    let bar = ctx.printer.progress();
    // Services running now run what they loaded from the state being replaced.
    let running = crate::rollback::services::running(&ws)?;
    let mut _lock = None;
    let outcome = if args.dry_run {
        resource::restore(&ws, None, &cp, &only, true, &bar)?
    } else {
        _lock = Some(ws.lock("restore")?);
        take_back_interrupted(ctx, &ws, &bar)?;
        let crash = CrashAfter::from_env(ctx, &bar);
        let bar: &dyn Progress = match &crash {
            Some(c) => c,
            None => &bar,
        };
        let op = ws.oplog.begin(
            "restore",
            &serde_json::json!({ "checkpoint": resource::checkpoint_name(id), "only": only }),
            ws.now_ms(),
        )?;
        // What undoing this restore brings back: these services, running.
        crate::rollback::services::ensure_recorded(&ws, op, &running)?;
        let result = resource::restore(&ws, Some(op), &cp, &only, false, bar);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => resource::takeback::outcome_of(e),
        };
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        ws.oplog.finish(op, outcome, error.as_deref(), ws.now_ms())?;
        // A failed restore took a safety checkpoint too.
        let pruned = resource::retention::after_operation(&ws);
        match result {
            Ok(mut o) => {
                o.pruned = pruned;
                o
            }
            Err(e) => {
                print_pruned(ctx, pruned.as_ref());
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
    print_pruned(ctx, outcome.pruned.as_ref());
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
        return Ok(ExitCode::Ok);
    }
    if outcome.dry_run {
        p.out(format!(
            "running services would be restarted so they run what is restored: {} (--no-restart leaves them)",
            names.join(", ")
        ));
        return Ok(ExitCode::Ok);
    }
    if args.no_restart {
        p.warn(format!(
            "{} still run what they loaded before the restore: `backout service restart {}` makes them run what is restored",
            names.join(", "),
            names.join(" ")
        ));
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
            Ok(acted) => acted.text.lines().for_each(|l| p.status(l)),
            Err(e) => {
                return Err(CommandError::failure(anyhow::anyhow!(
                    "the restore is done, but restarting {} failed: {e:#}\n  = hint: `backout undo` takes the restore back",
                    svc.name
                )));
            }
        }
    }
    Ok(ExitCode::Ok)
}

/// Says what `[store]` pruned after an operation, and why the store is
/// still over its budget if it is.
pub fn print_pruned(ctx: &Ctx, pruned: Option<&resource::retention::Pruned>) {
    let Some(pr) = pruned else {
        return;
    };
    for line in pr.lines() {
        ctx.printer.status(line);
    }
    if let Some(w) = &pr.warning {
        ctx.printer.warn(w);
    }
}

/// Takes back any restore a kill interrupted while it wrote (see
/// [`resource::takeback`]), saying so; for `restore`, `undo` and `redo`,
/// which hold the lock. Returns what it found.
pub fn take_back_interrupted(
    ctx: &Ctx,
    ws: &Workspace,
    progress: &dyn Progress,
) -> Result<Vec<resource::takeback::Interrupted>, CommandError> {
    let found = resource::takeback::take_back_interrupted(ws, progress)?;
    for i in &found {
        let line = match (&i.left, i.put_back.as_slice()) {
            (Some(why), _) => format!("op-{}, a restore of {}, was {why}", i.op, i.checkpoint),
            (None, []) => format!(
                "op-{}, a restore of {}, was killed before it wrote anything; closed",
                i.op, i.checkpoint
            ),
            (None, names) => format!(
                "op-{}, a restore of {} killed while it wrote, was taken back first: {} as {} holds {}, as before that restore",
                i.op,
                i.checkpoint,
                if names.len() == 1 {
                    format!("{} is", names[0])
                } else {
                    format!("{} are", names.join(", "))
                },
                i.safety_checkpoint.as_deref().unwrap_or("?"),
                if names.len() == 1 { "it" } else { "them" },
            ),
        };
        ctx.printer.warn(line);
    }
    Ok(found)
}

/// Test hook (`BACKOUT_TEST_CRASH_AT=restoring:N`, documented with the other
/// crash points): kill -9 once the commit of a restore has made N changes,
/// so tests can interrupt it at an exact point of its writes.
struct CrashAfter<'a> {
    inner: &'a dyn Progress,
    at: u64,
    done: AtomicU64,
    writing: AtomicBool,
}

impl<'a> CrashAfter<'a> {
    fn from_env(ctx: &Ctx, inner: &'a dyn Progress) -> Option<CrashAfter<'a>> {
        let at = ctx
            .env
            .var("BACKOUT_TEST_CRASH_AT")?
            .strip_prefix("restoring:")?
            .parse()
            .ok()?;
        Some(CrashAfter {
            inner,
            at,
            done: AtomicU64::new(0),
            writing: AtomicBool::new(false),
        })
    }
}

impl Progress for CrashAfter<'_> {
    fn begin(&self, what: &str, files: u64, bytes: u64) {
        // A commit's stage is "restoring PATH"; staging and scanning write nothing.
        self.writing.store(what.starts_with("restoring "), Ordering::SeqCst);
        self.inner.begin(what, files, bytes);
    }
    fn advance(&self, files: u64, bytes: u64) {
        self.inner.advance(files, bytes);
        if self.writing.load(Ordering::SeqCst) && self.done.fetch_add(files, Ordering::SeqCst) + files >= self.at {
            // A real kill -9: nothing but what is already durable survives.
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
            std::thread::sleep(std::time::Duration::from_secs(10));
        }
    }
    fn end(&self) {
        self.inner.end();
    }
}
