use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use super::Ctx;
use crate::deploy::Marker;
use crate::error::{CommandError, ExitCode};
use crate::incident::{self, ResponseEvent, Trigger};
use crate::report::Incident;
use crate::rollback::StepEvent;
use crate::rollback::target::Target;
use crate::watch::{self, Outcome, Schedule, WatchEvent, WatchResult};
use crate::workspace::Workspace;

/// Probe health against the plan's rules and decide: pass, investigate or roll back
///
/// Samples every probe on its interval, compares windows with thresholds and the
/// baseline, and explains every verdict. Runs each [[review]] when it falls due.
/// Ends on a rollback verdict, when the [success] criteria hold (or every review
/// passed), or after --for. On a terminal it draws a live view; otherwise it
/// prints plain lines, or JSON lines with --json.
///
/// The deploy time (what reviews and every figure count from) and the default
/// rollback target come from the latest deploy marker (`backout deploy`, `deploy
/// --mark`, `backout run`) while its change is open; without one, from the
/// start of the watch. Exit codes: 0 healthy, 4 rollback verdict not acted on,
/// 6 rolled back and recovered, 7 rolled back and not recovered.
///
/// Example: backout watch --for 30m --auto-rollback
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    act: ActArgs,
    /// Continue the last watch's schedule: same deploy time, reviews already done skipped
    #[arg(long)]
    resume: bool,
    /// With --auto-rollback or --confirm: the checkpoint to roll back to (cp-N)
    /// [default: the newest known to be good, e.g. the deploy marker's]
    #[arg(long, value_name = "CHECKPOINT")]
    to: Option<String>,
}

/// How long to watch and what to do on a rollback verdict: shared by `watch`
/// and `deploy`.
#[derive(Debug, Clone, Args)]
pub struct ActArgs {
    /// Stop after this long [default: until a verdict or success]
    #[arg(long = "for", value_name = "DURATION", value_parser = super::baseline::parse_duration)]
    pub duration: Option<Duration>,
    /// On a rollback verdict, roll back to the default target, verify and report
    #[arg(long, group = "mode")]
    pub auto_rollback: bool,
    /// On a rollback verdict, ask before rolling back (on a terminal)
    #[arg(long, group = "mode")]
    pub confirm: bool,
    /// On a rollback verdict, only report it and exit with code 4 (the default)
    #[arg(long, group = "mode")]
    pub alert_only: bool,
}

impl ActArgs {
    /// Whether a rollback verdict may lead to a rollback.
    pub fn may_act(&self) -> bool {
        self.auto_rollback || self.confirm
    }
}

/// The reviews of the deploy at `deploy_at` already recorded as done.
fn reviews_done(ws: &Workspace, deploy_at: i64) -> Result<std::collections::BTreeSet<String>, CommandError> {
    Ok(ws
        .oplog
        .events_since(deploy_at)?
        .into_iter()
        .filter(|e| e.kind == "review" && e.detail["deploy_at"] == deploy_at)
        .filter_map(|e| e.detail["name"].as_str().map(String::from))
        .collect())
}

/// The schedule of the last watch, from the operation log.
fn last_schedule(ws: &Workspace) -> Result<Schedule, CommandError> {
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
    Ok(Schedule {
        deploy_at,
        done: reviews_done(ws, deploy_at)?,
    })
}

pub async fn run(ctx: &Ctx, args: WatchArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let may_act = args.act.may_act();
    // Only a watch that may roll back holds the lock; an alert-only one changes nothing.
    let _lock = if may_act { Some(ws.lock("watch")?) } else { None };
    if args.to.is_some() && !may_act {
        return Err(CommandError::usage(anyhow::anyhow!(
            "--to names the checkpoint a rollback goes to: use it with --auto-rollback or --confirm"
        )));
    }
    let p = &ctx.printer;
    let target = if may_act {
        let t = super::rollback_target(&ws, args.to.as_deref())?;
        super::show_target(p, &t);
        if let Some(already) = &t.already_there {
            p.status(format!("note: {already}; a rollback now would only repeat its steps"));
        }
        Some(t)
    } else {
        None
    };
    let open = crate::rollback::target::open_deploy(&ws.oplog)?;
    let (schedule, deploy) = if args.resume {
        let s = last_schedule(&ws)?;
        p.status(format!(
            "resuming the watch of the deploy at {} ({} review(s) done)",
            super::when(s.deploy_at),
            s.done.len()
        ));
        let m = open.filter(|m| m.reviews_from() == s.deploy_at);
        (s, m)
    } else {
        match open {
            Some(m) => (
                Schedule {
                    deploy_at: m.reviews_from(),
                    done: reviews_done(&ws, m.reviews_from())?,
                },
                Some(m),
            ),
            None => (
                Schedule {
                    deploy_at: ws.now_ms(),
                    done: Default::default(),
                },
                None,
            ),
        }
    };
    watch_and_act(ctx, &ws, &args.act, schedule, deploy, target, args.resume).await
}

/// Watches from `schedule` (the deploy `deploy` when marked) and acts on a
/// rollback verdict as `act` says, rolling back to `target`.
pub(super) async fn watch_and_act(
    ctx: &Ctx,
    ws: &Workspace,
    act: &ActArgs,
    schedule: Schedule,
    deploy: Option<Marker>,
    target: Option<Target>,
    resumed: bool,
) -> Result<ExitCode, CommandError> {
    let p = &ctx.printer;
    let started = ws.now_ms();
    let op = ws.oplog.begin(
        "watch",
        &serde_json::json!({
            "for_ms": act.duration.map(|d| d.as_millis() as u64),
            "auto_rollback": act.auto_rollback,
            "confirm": act.confirm,
            "deploy_at": schedule.deploy_at,
            "deploy_op": deploy.as_ref().map(|m| m.op),
            "target": target.as_ref().map(|t| &t.checkpoint),
            "resumed": resumed,
            "pid": std::process::id(),
        }),
        started,
    )?;
    match &deploy {
        Some(m) => p.status(format!(
            "watching the deploy of {} (op-{}: {}); every figure counts from it",
            super::when(m.at),
            m.op,
            m.what()
        )),
        None if !resumed => p.status(
            "no open deploy marker: figures count from the start of this watch (mark deploys with `backout deploy`)",
        ),
        None => {}
    }
    p.status(format!(
        "watching {} probe(s) against {} rule(s){}",
        ws.plan.probes.len(),
        ws.plan.rules.len(),
        act.duration.map_or(String::new(), |d| format!(
            " for {}",
            crate::plan::units::format_duration(d)
        ))
    ));
    let live = !p.json() && p.interactive();
    let baselines = watch::load_baselines(ws, &ws.plan)?;
    for (probe, b) in &baselines {
        for w in watch::baseline::warnings(&ws.plan, probe, b) {
            p.warn(w);
        }
    }
    let mut view = super::watch_view::LiveView::new(&ws.plan, &baselines, &schedule);
    let deploy_at = schedule.deploy_at;
    let result = watch::watch_from(ws, op, act.duration, schedule, |e| {
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
        WatchResult::Success { at } => {
            // The state that held is good: the checkpoint holding it, if any,
            // becomes a known-good rollback target; this ends the deploy.
            let good = crate::rollback::target::record_good(&ws.oplog, op, at, "a watch succeeded")?;
            ws.oplog.finish(op, "success", None, ws.now_ms())?;
            p.out(format!(
                "healthy: {} after the {}{}",
                crate::report::ms(at - deploy_at),
                if deploy.is_some() {
                    "deploy"
                } else {
                    "start of the watch"
                },
                good.map_or(String::new(), |id| format!(
                    "; {} is now a known-good rollback target",
                    crate::resource::checkpoint_name(id)
                ))
            ));
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
            let trigger = Trigger {
                watch_op: op,
                verdict: *verdict,
                verdict_at,
                first_bad_at,
                deploy,
                watch_started_at: Some(started),
            };
            act_on(ctx, ws, act, trigger, target).await
        }
    }
}

/// A rollback verdict (a rule, a review, a failed deploy command): roll back
/// to `target` when `act` says so — verify, report, print the timeline and
/// the figures — or say how to.
pub(super) async fn act_on(
    ctx: &Ctx,
    ws: &Workspace,
    act: &ActArgs,
    trigger: Trigger,
    target: Option<Target>,
) -> Result<ExitCode, CommandError> {
    let p = &ctx.printer;
    let go = act.auto_rollback || (act.confirm && ask(p, &trigger.verdict.explanation));
    let Some(target) = target.filter(|_| go) else {
        p.status("rollback verdict: not rolling back (run `backout rollback` to do it)");
        return Ok(ExitCode::RollbackTriggered);
    };
    let (incident, report) = incident::respond(ws, trigger, &target.row, |e| {
        if p.json() {
            p.json_line(e);
            return;
        }
        match e {
            ResponseEvent::RollbackStarted { checkpoint } => {
                p.status(format!("rolling back to {checkpoint} ({})", target.why))
            }
            ResponseEvent::Step(StepEvent::Finished(s)) => super::print_step(p, "  ", s),
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
        p.json_line(&serde_json::json!({
            "event": "incident",
            "incident": incident.id,
            "report": report,
            "verified": incident.verified(),
            "recovered": incident.recovered(),
            "time_to_detect_ms": incident.time_to_detect_ms(),
            "time_to_recover_ms": incident.time_to_recover_ms(),
        }));
    } else {
        print_incident(p, &incident);
        p.out(format!("report: {}", report.display()));
        super::restore::print_pruned(ctx, incident.rollback.pruned.as_ref());
    }
    Ok(if incident.recovered() {
        ExitCode::RolledBack
    } else {
        ExitCode::NotRecovered
    })
}

/// The incident's timeline and figures, as the report has them: the closing
/// lines of `watch`, `deploy` and the demo.
pub(super) fn print_incident(p: &crate::output::Printer, i: &Incident) {
    p.out("");
    p.out(p.bold(&format!("Timeline ({})", i.since())));
    for line in crate::report::figures::timeline_lines(i) {
        p.out(format!("  {line}"));
    }
    p.out("");
    for line in crate::report::figures::console_lines(i) {
        p.out(line);
    }
    for line in crate::report::figures::not_run(i) {
        p.out(p.yellow(&line));
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
