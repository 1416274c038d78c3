use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::incident::{self, ResponseEvent, Trigger};
use crate::rollback::StepEvent;
use crate::watch::{self, Outcome, Schedule, WatchEvent, WatchResult};

/// Probe health against the plan's rules and decide: pass, investigate or roll back
///
/// Samples every probe on its interval, compares windows with thresholds and the
/// baseline, and explains every verdict. Runs each [[review]] when it falls due.
/// Ends on a rollback verdict, when the [success] criteria hold (or every review
/// passed), or after --for. On a terminal it draws a live view; otherwise it
/// prints plain lines, or JSON lines with --json.
///
/// Example: backout watch --for 30m --auto-rollback
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Stop after this long [default: until a verdict or success]
    #[arg(long = "for", value_name = "DURATION", value_parser = super::baseline::parse_duration)]
    duration: Option<Duration>,
    /// On a rollback verdict, roll back to the last checkpoint, verify and report
    #[arg(long, group = "mode")]
    auto_rollback: bool,
    /// On a rollback verdict, ask before rolling back (on a terminal)
    #[arg(long, group = "mode")]
    confirm: bool,
    /// On a rollback verdict, only report it and exit with code 4 (the default)
    #[arg(long, group = "mode")]
    alert_only: bool,
    /// Continue the last watch's schedule: same deploy time, reviews already done skipped
    #[arg(long)]
    resume: bool,
    /// With --auto-rollback or --confirm: the checkpoint to roll back to (cp-N), e.g.
    /// the one before a multi-phase change [default: the last complete one]
    #[arg(long, value_name = "CHECKPOINT")]
    to: Option<String>,
}

/// The schedule of the last watch, from the operation log.
fn last_schedule(ws: &crate::workspace::Workspace) -> Result<Schedule, CommandError> {
    let Some(last) = ws.oplog.operations(Some("watch"), 1)?.into_iter().next() else {
        return Err(CommandError::usage(anyhow::anyhow!(
            "no watch to resume; start one with `backout watch`"
        )));
    };
    if let Some(pid) = last.args["pid"].as_u64().filter(|_| last.ended_at.is_none())
        && std::path::Path::new(&format!("/proc/{pid}")).exists()
        && pid != u64::from(std::process::id())
    {
        return Err(CommandError::usage(anyhow::anyhow!(
            "the last watch (op-{}) is still running as pid {pid}; stop it before resuming",
            last.id
        )));
    }
    let deploy_at = last.args["deploy_at"].as_i64().unwrap_or(last.started_at);
    let done = ws
        .oplog
        .events_since(deploy_at)?
        .into_iter()
        .filter(|e| e.kind == "review" && e.detail["deploy_at"] == deploy_at)
        .filter_map(|e| e.detail["name"].as_str().map(String::from))
        .collect();
    Ok(Schedule { deploy_at, done })
}

pub async fn run(ctx: &Ctx, args: WatchArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let may_act = args.auto_rollback || args.confirm;
    // Only a watch that may roll back holds the lock; an alert-only one changes nothing.
    let _lock = if may_act { Some(ws.lock("watch")?) } else { None };
    if args.to.is_some() && !may_act {
        return Err(CommandError::usage(anyhow::anyhow!(
            "--to names the checkpoint a rollback goes to: use it with --auto-rollback or --confirm"
        )));
    }
    let checkpoint = match (&args.to, may_act) {
        (_, false) => None,
        (None, true) => Some(super::last_checkpoint(&ws)?),
        (Some(name), true) => Some(super::named_checkpoint(&ws, name)?),
    };
    let p = &ctx.printer;
    let started = ws.now_ms();
    let schedule = if args.resume {
        last_schedule(&ws)?
    } else {
        Schedule {
            deploy_at: started,
            done: Default::default(),
        }
    };
    let op = ws.oplog.begin(
        "watch",
        &serde_json::json!({
            "for_ms": args.duration.map(|d| d.as_millis() as u64),
            "auto_rollback": args.auto_rollback,
            "confirm": args.confirm,
            "deploy_at": schedule.deploy_at,
            "resumed": args.resume,
            "pid": std::process::id(),
        }),
        started,
    )?;
    if args.resume {
        p.status(format!(
            "resuming the watch of the deploy at {} ({} review(s) done)",
            super::when(schedule.deploy_at),
            schedule.done.len()
        ));
    }
    p.status(format!(
        "watching {} probe(s) against {} rule(s){}",
        ws.plan.probes.len(),
        ws.plan.rules.len(),
        args.duration.map_or(String::new(), |d| format!(
            " for {}",
            crate::plan::units::format_duration(d)
        ))
    ));
    let live = !p.json() && p.interactive();
    let baselines = watch::load_baselines(&ws, &ws.plan)?;
    for (probe, b) in &baselines {
        for w in watch::baseline::warnings(&ws.plan, probe, b) {
            p.warn(w);
        }
    }
    let mut view = super::watch_view::LiveView::new(&ws.plan, &baselines, &schedule);
    let deploy_at = schedule.deploy_at;
    let result = watch::watch_from(&ws, op, args.duration, schedule, |e| {
        if p.json() {
            p.json_line(e);
            return;
        }
        if live {
            if view.update(e) {
                view.draw(p, ws.now_ms());
            }
            return;
        }
        match e {
            WatchEvent::Sample(s) if !s.ok => {
                p.status(format!(
                    "{} {}: {}",
                    super::when(s.at),
                    s.probe,
                    s.error.as_deref().unwrap_or("failed")
                ));
            }
            WatchEvent::Verdict(v) => {
                let line = format!("{} {}", super::when(ws.now_ms()), v.explanation);
                match v.outcome {
                    Outcome::Rollback => p.out(p.red(&line)),
                    Outcome::Investigate => p.out(p.yellow(&line)),
                    Outcome::Pass | Outcome::Inconclusive => p.status(line),
                }
            }
            WatchEvent::Review(r) => {
                let line = format!("{} {}", super::when(ws.now_ms()), r.summary());
                if r.passed {
                    p.out(p.green(&line));
                } else {
                    p.out(p.red(&line));
                    for x in r.expectations.iter().filter(|x| x.holds != Some(true)) {
                        p.out(format!("  {}", x.explanation));
                    }
                }
            }
            WatchEvent::Success { .. } => p.out(p.green("success: the watch's success criteria held")),
            _ => {}
        }
    })
    .await;
    if live {
        view.draw(p, ws.now_ms());
    }
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            ws.oplog.finish(op, "failed", Some(&format!("{e:#}")), ws.now_ms())?;
            return Err(CommandError::failure(e));
        }
    };
    match result {
        WatchResult::Success { .. } => {
            ws.oplog.finish(op, "success", None, ws.now_ms())?;
            Ok(ExitCode::Ok)
        }
        WatchResult::TimeUp { verdicts } => {
            ws.oplog.finish(op, "time_up", None, ws.now_ms())?;
            if p.json() {
                p.json_line(&serde_json::json!({ "event": "time_up", "verdicts": verdicts }));
            }
            for v in verdicts {
                p.out(v.explanation);
            }
            Ok(ExitCode::Ok)
        }
        WatchResult::Rollback { verdict, first_bad_at } => {
            let verdict_at = ws.now_ms();
            ws.oplog.finish(op, "rollback_triggered", None, verdict_at)?;
            let go = args.auto_rollback || (args.confirm && ask(p, &verdict.explanation));
            let Some(cp) = checkpoint.filter(|_| go) else {
                p.status("rollback verdict: not rolling back (run `backout rollback` to do it)");
                return Ok(ExitCode::RollbackTriggered);
            };
            let trigger = Trigger {
                watch_op: op,
                verdict: *verdict,
                verdict_at,
                first_bad_at,
                deploy_at: Some(deploy_at),
            };
            let (incident, report) = incident::respond(&ws, trigger, &cp, |e| {
                if p.json() {
                    p.json_line(e);
                    return;
                }
                match e {
                    ResponseEvent::RollbackStarted { checkpoint } => p.status(format!("rolling back to {checkpoint}")),
                    ResponseEvent::Step(StepEvent::Finished(s)) => {
                        p.status(format!(
                            "  step {} {}: {} ({}ms)",
                            s.seq,
                            s.name,
                            if s.ok { "ok" } else { "FAILED" },
                            s.duration_ms
                        ));
                        for d in &s.discarded {
                            p.status(format!("    {}", d.sentence()));
                        }
                    }
                    ResponseEvent::Check(c) => p.status(format!(
                        "  [{}] {}: {}",
                        if c.passed { "pass" } else { "FAIL" },
                        c.name,
                        c.evidence
                    )),
                    _ => {}
                }
            })
            .await?;
            if p.json() {
                p.json_line(&serde_json::json!({ "event": "incident", "incident": incident.id, "report": report, "verified": incident.verified() }));
            } else {
                if let Some(t) = incident.time_to_recover_ms() {
                    p.out(format!("recovered in {}", crate::report::ms(t)));
                }
                p.out(format!("report: {}", report.display()));
            }
            Ok(if incident.verified() {
                ExitCode::Ok
            } else {
                ExitCode::Failure
            })
        }
    }
}

/// Asks on the terminal; anything but yes is no. Without a terminal, no.
pub fn ask(p: &crate::output::Printer, question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    p.status(format!("{question}\nroll back now? [y/N]"));
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}
