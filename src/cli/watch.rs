use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::incident::{self, ResponseEvent, Trigger};
use crate::rollback::StepEvent;
use crate::watch::{self, Outcome, WatchEvent, WatchResult};

/// Probe health against the plan's rules and decide: pass, investigate or roll back
///
/// Samples every probe on its interval, compares windows with thresholds and the
/// baseline, and explains every verdict. Ends on a rollback verdict, when the
/// [success] criteria hold, or after --for.
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
}

pub async fn run(ctx: &Ctx, args: WatchArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let may_act = args.auto_rollback || args.confirm;
    // Only a watch that may roll back holds the lock; an alert-only one changes nothing.
    let _lock = if may_act { Some(ws.lock("watch")?) } else { None };
    let checkpoint = if may_act {
        Some(super::last_checkpoint(&ws)?)
    } else {
        None
    };
    let p = &ctx.printer;
    let started = ws.now_ms();
    let op = ws.oplog.begin(
        "watch",
        &serde_json::json!({ "for_ms": args.duration.map(|d| d.as_millis() as u64), "auto_rollback": args.auto_rollback, "confirm": args.confirm }),
        started,
    )?;
    p.status(format!(
        "watching {} probe(s) against {} rule(s){}",
        ws.plan.probes.len(),
        ws.plan.rules.len(),
        args.duration.map_or(String::new(), |d| format!(
            " for {}",
            crate::plan::units::format_duration(d)
        ))
    ));
    let result = watch::watch(&ws, op, args.duration, |e| {
        if p.json() {
            p.json_line(e);
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
            WatchEvent::Success { .. } => p.out(p.green("success: every [success] criterion held")),
            _ => {}
        }
    })
    .await;
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
                deploy_at: Some(started),
            };
            let (incident, report) = incident::respond(&ws, trigger, &cp, |e| {
                if p.json() {
                    p.json_line(e);
                    return;
                }
                match e {
                    ResponseEvent::RollbackStarted { checkpoint } => p.status(format!("rolling back to {checkpoint}")),
                    ResponseEvent::Step(StepEvent::Finished(s)) => p.status(format!(
                        "  step {} {}: {} ({}ms)",
                        s.seq,
                        s.name,
                        if s.ok { "ok" } else { "FAILED" },
                        s.duration_ms
                    )),
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
