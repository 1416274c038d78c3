use std::path::Path;
use std::time::Duration;

use clap::Args;

use super::Ctx;
use super::watch::ActArgs;
use crate::deploy::{MarkedBy, Marker};
use crate::error::{CommandError, ExitCode};
use crate::incident::Trigger;
use crate::resource;
use crate::watch::Schedule;

/// Deploy with a marker: checkpoint, baseline, run the deploy command, watch
///
/// Takes a checkpoint of the state before the change, measures the baseline
/// (the plan's [baseline] for), records the deploy marker (its time, that
/// checkpoint, the command), runs the deploy command with its output shown as
/// it comes, then watches exactly as `backout watch` does. A deploy command
/// that fails is itself a rollback verdict. Every figure (time to detect, to
/// recover) counts from the marker, and a rollback goes to its checkpoint.
///
/// Deploying by other means (a CI job, a git push)? `backout deploy --mark`
/// records the checkpoint, the baseline and the marker, and returns: deploy,
/// then run `backout watch`, which counts from the mark.
///
/// Exit codes: 0 healthy, 4 rollback verdict not acted on, 6 rolled back and
/// recovered, 7 rolled back and not recovered.
///
/// Example: backout deploy --label v2.3 --auto-rollback --for 10m -- ./deploy.sh v2.3
#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    act: ActArgs,
    /// A few words for listings, the timeline and the report (a version, a ticket)
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Only record the checkpoint, the baseline and the deploy marker: deploy by
    /// other means next, then run `backout watch`
    #[arg(long, conflicts_with_all = ["command", "duration", "auto_rollback", "confirm", "alert_only"])]
    mark: bool,
    /// Do not measure a baseline first (rules compare with the last one measured)
    #[arg(long)]
    no_baseline: bool,
    /// After the deploy command, restart this service of the plan (repeatable,
    /// or `all`) so it runs what was deployed; confirmed like `backout service
    /// restart` (the new instance listens on its port), then judged by the watch
    #[arg(long, value_name = "SERVICE")]
    restart: Vec<String>,
    /// The deploy command's time limit; at it, its whole process group is killed
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = super::baseline::parse_duration)]
    timeout: Duration,
    /// The deploy command and its arguments, after `--`; run in the current
    /// directory, with BACKOUT_DEPLOY_CHECKPOINT set to the checkpoint before it
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Whether `program` can be started from `cwd`: a path to a file, or a name
/// found on the PATH.
fn findable(program: &str, cwd: &Path, path_var: Option<&str>) -> bool {
    if program.contains('/') {
        return cwd.join(program).is_file();
    }
    path_var
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .any(|d| Path::new(d).join(program).is_file())
}

/// The command as a person would type it.
fn shown(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(ctx: &Ctx, args: DeployArgs) -> Result<ExitCode, CommandError> {
    let p = &ctx.printer;
    if !args.mark && args.command.is_empty() {
        return Err(CommandError::usage(anyhow::anyhow!(
            "no deploy command\n  = hint: backout deploy [--auto-rollback] -- ./deploy.sh ARGS, or `backout deploy --mark` when you deploy by other means"
        )));
    }
    if let Some(program) = args.command.first()
        && !findable(program, &ctx.cwd, ctx.env.var("PATH"))
    {
        return Err(CommandError::usage(anyhow::anyhow!(
            "cannot find the deploy command {program:?} (in {} or on the PATH); nothing was done\n  = hint: give a path (./deploy.sh) or a program on the PATH",
            ctx.cwd.display()
        )));
    }
    let ws = ctx.workspace()?;
    let restart = services_to_restart(&ws, &args.restart)?;
    let mut lock = Some(ws.lock("deploy")?);
    if let Some(open) = crate::rollback::target::open_deploy(&ws.oplog)? {
        p.warn(format!(
            "the deploy of {} (op-{}: {}) was never concluded (no watch succeeded, nothing was rolled back); this deploy's checkpoint holds its state",
            super::when(open.at),
            open.op,
            open.what()
        ));
    }
    let command = (!args.command.is_empty()).then(|| shown(&args.command));
    let op = ws.oplog.begin(
        "deploy",
        &serde_json::json!({ "label": args.label, "command": command, "mark": args.mark, "pid": std::process::id() }),
        ws.now_ms(),
    )?;
    let result = prepare(ctx, &ws, op, &args, command).await;
    let mut marker = match result {
        Ok(m) => m,
        Err(e) => {
            ws.oplog
                .finish(op, "failed", Some(&format!("{:#}", e.error)), ws.now_ms())?;
            return Err(e);
        }
    };
    if args.mark {
        ws.oplog.finish(op, "ok", None, ws.now_ms())?;
        p.data(&serde_json::json!({ "marker": marker }));
        p.out(format!(
            "deploy marked at {} (op-{op}); the state before it is {}",
            super::when(marker.at),
            marker.checkpoint().unwrap_or_default()
        ));
        p.out("now deploy by your own means, then run `backout watch`: it counts from this mark, and a rollback goes back to that checkpoint");
        return Ok(ExitCode::Ok);
    }

    // The deploy itself.
    p.status(format!("deploying: {}", marker.command.as_deref().unwrap_or_default()));
    let mut pending = Vec::new();
    let out = crate::deploy::run_command(
        &ws.oplog,
        &ws.clock,
        &mut marker,
        &args.command,
        &ctx.cwd,
        args.timeout,
        |chunk| {
            pending.extend_from_slice(chunk);
            while let Some(n) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=n).collect();
                p.status(format!("  | {}", String::from_utf8_lossy(&line).trim_end()));
            }
        },
    )
    .await;
    if !pending.is_empty() {
        p.status(format!("  | {}", String::from_utf8_lossy(&pending).trim_end()));
    }
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            ws.oplog.finish(op, "failed", Some(&format!("{e:#}")), ws.now_ms())?;
            return Err(CommandError::failure(e));
        }
    };
    let mut ok = out.success();
    let mut how = out.describe();
    p.status(format!(
        "deploy command {} ({}, {})",
        if ok { "done" } else { "FAILED" },
        how,
        crate::report::ms(out.duration.as_millis() as i64)
    ));
    // The services that run what was deployed, restarted onto it. Their
    // readiness is the watch's to judge; one that cannot even start fails the deploy.
    if ok && !restart.is_empty() {
        let run_dir = ws.run_dir()?;
        for svc in &restart {
            let timeout = svc.ready_timeout + svc.stop_timeout;
            match crate::service::control::act(
                svc,
                crate::plan::ServiceAction::Restart,
                &run_dir,
                timeout,
                None,
                &ws.clock,
            )
            .await
            {
                Ok(acted) => acted.text.lines().for_each(|l| p.status(format!("  {l}"))),
                Err(e) => {
                    how = format!("restarting {} failed: {e:#}", svc.name);
                    p.status(format!("  {how}"));
                    ok = false;
                    break;
                }
            }
        }
        marker.command_ended_at = Some(ws.now_ms());
    }
    ws.oplog.finish(
        op,
        if ok { "ok" } else { "failed" },
        (!ok).then(|| format!("the deploy failed: {how}")).as_deref(),
        ws.now_ms(),
    )?;
    // Normally the checkpoint just taken; the one before an earlier deploy
    // when this one fixes forward on top of a known-bad one.
    let target = if args.act.may_act() {
        let t = super::rollback_target(&ws, None)?;
        super::show_target(p, &t);
        Some(t)
    } else {
        None
    };
    if !ok {
        let verdict = crate::deploy::command_failed(&marker, &how);
        p.out(p.red(&verdict.explanation));
        let trigger = Trigger {
            watch_op: op,
            verdict,
            verdict_at: marker.command_ended_at.unwrap_or_else(|| ws.now_ms()),
            first_bad_at: None,
            deploy: Some(marker),
            watch_started_at: None,
        };
        return super::watch::act_on(ctx, &ws, &args.act, trigger, target).await;
    }
    if ws.plan.probes.is_empty() {
        p.out("deployed; the plan has no [[probe]], so there is nothing to watch");
        return Ok(ExitCode::Ok);
    }
    // A watch that only alerts changes nothing: like `backout watch`, it leaves
    // the lock to whoever decides to roll back meanwhile.
    if !args.act.may_act() {
        lock.take();
    }
    let schedule = Schedule {
        deploy_at: marker.reviews_from(),
        done: Default::default(),
    };
    let code = super::watch::watch_and_act(ctx, &ws, &args.act, schedule, Some(marker), target, false).await;
    drop(lock);
    code
}

/// The services `--restart` names (`all`: every one), checked before anything runs.
fn services_to_restart<'a>(
    ws: &'a crate::workspace::Workspace,
    names: &[String],
) -> Result<Vec<&'a crate::plan::Service>, CommandError> {
    if names.iter().any(|n| n == "all") {
        return Ok(ws.plan.services.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            ws.plan.service(n).ok_or_else(|| {
                let known: Vec<&str> = ws.plan.services.iter().map(|s| s.name.as_str()).collect();
                CommandError::usage(anyhow::anyhow!(
                    "--restart {n:?}: no such service in the plan; nothing was done\n  = hint: the plan's services: {}",
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
        })
        .collect()
}

/// Checkpoint, baseline, marker: everything before the deploy command.
async fn prepare(
    ctx: &Ctx,
    ws: &crate::workspace::Workspace,
    op: crate::oplog::OpId,
    args: &DeployArgs,
    command: Option<String>,
) -> Result<Marker, CommandError> {
    let p = &ctx.printer;
    let label = format!(
        "before deploy{}",
        args.label.as_deref().map_or(String::new(), |l| format!(" {l}"))
    );
    let cp = resource::checkpoint(ws, op, Some(&label), None).map_err(CommandError::from)?;
    let res = resource::Resources::from_row(&cp);
    p.status(format!(
        "checkpoint {}: the state before the deploy ({} captured)",
        resource::checkpoint_name(cp.id),
        crate::output::bytes(res.bytes())
    ));
    if !args.no_baseline && !ws.plan.probes.is_empty() {
        for (probe, s) in super::baseline::record(ctx, ws).await? {
            p.status(format!(
                "  baseline {probe}: {} samples, error rate {}%, latency p95 {}",
                s.count,
                crate::plan::units::trim_float(s.error_rate * 100.0),
                s.latency_p95.map_or("-".into(), |l| format!("{l:.1}ms"))
            ));
        }
    }
    let by = if args.mark { MarkedBy::Mark } else { MarkedBy::Deploy };
    let mut marker = Marker::new(op, ws.now_ms(), Some(cp.id), by);
    marker.label = args.label.clone();
    marker.command = command;
    crate::deploy::record(&ws.oplog, &marker)?;
    Ok(marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_shown_as_it_would_be_typed() {
        let argv: Vec<String> = ["./deploy.sh", "v2", "two words", "it's"].map(String::from).to_vec();
        assert_eq!(shown(&argv), "./deploy.sh v2 'two words' 'it'\\''s'");
    }

    #[test]
    fn a_program_is_found_by_path_or_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deploy.sh"), "").unwrap();
        assert!(findable("./deploy.sh", dir.path(), None));
        assert!(!findable("./missing.sh", dir.path(), None));
        let path = dir.path().display().to_string();
        assert!(findable(
            "deploy.sh",
            Path::new("/"),
            Some(&format!("/nonexistent:{path}"))
        ));
        assert!(!findable("deploy.sh", Path::new("/"), Some("/nonexistent")));
    }
}
