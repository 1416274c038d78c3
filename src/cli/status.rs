use std::time::Duration;

use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::plan::units::format_duration;
use crate::watch::status::{self, ReviewState, WatchState};

/// Show the current watch: whether it runs, the last verdicts, which reviews passed, which are due
///
/// Also says when the system runs in degraded mode (services a rollback
/// stopped), and since when. Reads the operation log only, so it works while a
/// watch runs elsewhere and after one was interrupted (continue it with
/// `backout watch --resume`).
///
/// Example: backout status --json
#[derive(Debug, Args)]
pub struct StatusArgs {}

pub fn run(ctx: &Ctx, _args: StatusArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let now = ws.now_ms();
    let p = &ctx.printer;
    let ms = |v: i64| format_duration(Duration::from_millis(v.max(0) as u64));
    let degraded = crate::rollback::services::degraded_now(&ws)?;
    if let Some(d) = &degraded {
        p.out(p.yellow(&format!(
            "degraded mode: {} stopped by op-{} at {} ({} ago); the rest keep running",
            d.services.join(", "),
            d.op,
            super::when(d.since),
            ms(now - d.since)
        )));
    }
    let Some(s) = status::load(&ws, now)? else {
        match &degraded {
            Some(d) => p.data(&serde_json::json!({ "watch": null, "degraded": d })),
            None => p.data(&serde_json::json!({ "watch": null })),
        }
        p.out("no watch yet: start one with `backout watch`");
        return Ok(ExitCode::Ok);
    };
    p.data(&s);
    let state = match &s.state {
        WatchState::Running => p.green("running"),
        WatchState::Ended(o) => format!("ended: {o}"),
        WatchState::Interrupted => p.yellow("interrupted (continue with `backout watch --resume`)"),
    };
    let left = match (&s.state, s.ends_at) {
        (WatchState::Running, Some(end)) => format!(", {} left", ms(end - now)),
        _ => String::new(),
    };
    p.out(format!(
        "watch op-{}: {state}; deploy at {}, {} ago{left}",
        s.op,
        super::when(s.deploy_at),
        ms(s.elapsed_ms)
    ));
    if !s.verdicts.is_empty() {
        p.out(p.bold("last verdicts"));
        for v in &s.verdicts {
            let line = format!("  {}", v["explanation"].as_str().unwrap_or_default());
            match v["outcome"].as_str() {
                Some("rollback") => p.out(p.red(&line)),
                Some("investigate") => p.out(p.yellow(&line)),
                _ => p.out(line),
            }
        }
    }
    if !s.reviews.is_empty() {
        p.out(p.bold("reviews"));
        for r in &s.reviews {
            let line = match r.state {
                ReviewState::Passed => p.green(&format!("  [passed]  {}", r.name)),
                ReviewState::Failed => p.red(&format!(
                    "  [FAILED]  {}: {}",
                    r.name,
                    r.summary.as_deref().unwrap_or_default()
                )),
                ReviewState::Due => p.yellow(&format!("  [due]     {} (since {})", r.name, super::when(r.due_at))),
                ReviewState::Pending => format!("  [pending] {} in {}", r.name, ms(r.time_left_ms)),
            };
            p.out(line);
        }
    }
    Ok(ExitCode::Ok)
}
