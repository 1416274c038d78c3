use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::output::bytes;
use crate::resource::{self, Resources, git};

/// Capture a verified restore point of everything the plan's [capture] names
///
/// Git state, and each path in `[capture] paths` into the content-addressed store
/// under .backout/objects (only changed files are read). The checkpoint is marked
/// complete only once everything is captured, durable and verified.
///
/// With `[baseline] on-checkpoint = true` in the plan, also samples every probe
/// for the baseline's duration and stores the baseline rules compare with.
///
/// Example: backout checkpoint --label "before 2.0 upgrade"
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// A note shown in listings and reports
    #[arg(long)]
    label: Option<String>,
    /// The phase this checkpoint precedes
    #[arg(long)]
    phase: Option<String>,
    /// Also create this git branch at HEAD (e.g. backup/pre-phase-1-migration)
    #[arg(long, value_name = "NAME")]
    branch: Option<String>,
    /// Also create this git tag at HEAD (e.g. stable-pre-flask-3)
    #[arg(long, value_name = "NAME")]
    tag: Option<String>,
}

/// Checks a backup branch or tag name before anything is captured: valid, and
/// not already taken (an existing one is never moved).
fn check_ref(root: &std::path::Path, kind: &str, name: &str) -> Result<String, CommandError> {
    let full = if kind == "branch" {
        format!("refs/heads/{name}")
    } else {
        format!("refs/tags/{name}")
    };
    let usage = |msg: String| CommandError::usage(anyhow::anyhow!(msg));
    git::git(root, &["check-ref-format", &full], &[]).map_err(|_| {
        usage(format!(
            "{name:?} is not a valid git {kind} name\n  = hint: like backup/pre-phase-1 or stable-pre-upgrade"
        ))
    })?;
    if git::git(root, &["rev-parse", "--verify", "-q", &full], &[]).is_ok() {
        return Err(usage(format!(
            "the {kind} {name:?} already exists; backout never moves an existing one\n  = hint: choose another name, or delete it first"
        )));
    }
    Ok(full)
}

pub async fn run(ctx: &Ctx, args: CheckpointArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let _lock = ws.lock("checkpoint")?;
    let mut refs = Vec::new();
    for (kind, name) in [("branch", &args.branch), ("tag", &args.tag)] {
        if let Some(name) = name {
            if !ws.plan.capture.git {
                return Err(CommandError::usage(anyhow::anyhow!(
                    "--{kind} needs [capture] git = true in the plan"
                )));
            }
            refs.push((kind, name.clone(), check_ref(ws.root(), kind, name)?));
        }
    }
    let op = ws.oplog.begin(
        "checkpoint",
        &serde_json::json!({ "label": args.label, "phase": args.phase, "branch": args.branch, "tag": args.tag }),
        ws.now_ms(),
    )?;
    let specs = resource::plan_specs(&ws.plan);
    let bar = ctx.printer.progress();
    let started = std::time::Instant::now();
    match resource::checkpoint_of(&ws, op, args.label.as_deref(), args.phase.as_deref(), &specs, &bar) {
        Ok(cp) => {
            ws.oplog.finish(op, "ok", None, ws.now_ms())?;
            let name = resource::checkpoint_name(cp.id);
            let res = Resources::from_row(&cp);
            let stored: u64 = res.summary.iter().map(|s| s.stored).sum();
            let ms = started.elapsed().as_millis() as u64;
            ctx.printer.out(format!(
                "checkpoint {name} complete: {} captured, {} new in the store ({} ms)",
                bytes(res.bytes()),
                bytes(stored),
                ms
            ));
            if let Some(g) = &res.git {
                let head = g
                    .head
                    .as_deref()
                    .map_or("no commit yet".to_string(), |h| h[..12.min(h.len())].to_string());
                let branch = g.branch.as_deref().map_or("detached HEAD".to_string(), |b| {
                    b.trim_start_matches("refs/heads/").to_string()
                });
                ctx.printer
                    .out(format!("  git: {branch} at {head}, working tree pinned by {}", g.pin));
                // The seeds' named backups: a branch or tag at the captured HEAD.
                if let Some(h) = &g.head {
                    for (kind, name, full) in &refs {
                        git::git(&g.toplevel, &["update-ref", full, h, ""], &[]).map_err(CommandError::failure)?;
                        ws.oplog.event(
                            op,
                            ws.now_ms(),
                            "backup_ref",
                            &serde_json::json!({ "kind": kind, "name": name, "at": h }),
                        )?;
                        ctx.printer
                            .out(format!("  backup {kind} {name} at {}", &h[..12.min(h.len())]));
                    }
                }
            }
            for s in res.summary.iter().filter(|s| s.kind != "git") {
                ctx.printer.out(format!(
                    "  {}: {} file{}, {} ({} new)",
                    s.name,
                    s.files,
                    if s.files == 1 { "" } else { "s" },
                    bytes(s.bytes),
                    bytes(s.stored)
                ));
            }
            for w in res.summary.iter().flat_map(|s| &s.warnings) {
                ctx.printer.warn(w);
            }
            if let Some(m) = crate::rollback::target::open_deploy(&ws.oplog)? {
                ctx.printer.status(format!(
                    "note: the deploy of {} (op-{}) is still open: {name} holds its state, so it is not a default rollback target until a watch of it succeeds",
                    super::when(m.at),
                    m.op
                ));
            }
            // One JSON document for scripts, the baseline folded in when the
            // plan takes one with every checkpoint.
            let baseline = if ws.plan.baseline_on_checkpoint {
                let stats = super::baseline::record(ctx, &ws).await?;
                super::baseline::print_text(ctx, &stats);
                Some(stats)
            } else {
                None
            };
            ctx.printer.data(&serde_json::json!({
                "checkpoint": name,
                "bytes": res.bytes(),
                "stored": stored,
                "ms": ms,
                "summary": res.summary,
                "resources": cp.resources,
                "baseline": baseline,
            }));
            Ok(ExitCode::Ok)
        }
        Err(e) => {
            ws.oplog.finish(op, "failed", Some(&format!("{e:#}")), ws.now_ms())?;
            Err(CommandError::from(e))
        }
    }
}
