use std::time::Duration;

use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::plan::units;
use crate::watch::BaselineStats;

/// Sample every probe before the change and store each one's statistics
///
/// Rules such as `api.latency.p95 > baseline + 25%` compare with the latest baseline.
/// Warns when it is too short or too noisy for the rules that use it.
///
/// Example: backout baseline --for 2m
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// How long to sample [default: the plan's [baseline] for, else 30s]
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    units::parse_duration(s).map_err(|e| format!("{}; {}", e.message, e.hint))
}

pub async fn run(ctx: &Ctx, args: BaselineArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let _lock = ws.lock("baseline")?;
    measure(ctx, &ws, args.duration.unwrap_or(ws.plan.baseline_for)).await
}

/// Measures a baseline for the plan's `[baseline] for` and prints nothing but
/// the progress line: `checkpoint` folds the result into its own JSON document.
/// The caller holds the lock.
pub async fn record(ctx: &Ctx, ws: &crate::workspace::Workspace) -> Result<Vec<(String, BaselineStats)>, CommandError> {
    sample(ctx, ws, ws.plan.baseline_for).await
}

async fn measure(ctx: &Ctx, ws: &crate::workspace::Workspace, d: Duration) -> Result<ExitCode, CommandError> {
    let stats = sample(ctx, ws, d).await?;
    ctx.printer.data(&stats);
    print_text(ctx, &stats);
    Ok(ExitCode::Ok)
}

async fn sample(
    ctx: &Ctx,
    ws: &crate::workspace::Workspace,
    d: Duration,
) -> Result<Vec<(String, BaselineStats)>, CommandError> {
    let op = ws.oplog.begin(
        "baseline",
        &serde_json::json!({ "for_ms": d.as_millis() as u64 }),
        ws.now_ms(),
    )?;
    ctx.printer.status(format!(
        "sampling {} probe(s) for {}",
        ws.plan.probes.len(),
        units::format_duration(d)
    ));
    let stats = crate::watch::measure_baseline(ws, op, d, |_| {}).await?;
    ws.oplog.finish(op, "ok", None, ws.now_ms())?;
    // Too short or too noisy for the rules that compare with it: said now,
    // before anyone trusts a verdict made against it.
    for (probe, s) in &stats {
        for w in crate::watch::baseline::warnings(&ws.plan, probe, s) {
            ctx.printer.warn(w);
        }
    }
    Ok(stats)
}

/// The text form of a baseline: one line per probe, one per measured field.
pub fn print_text(ctx: &Ctx, stats: &[(String, BaselineStats)]) {
    for (probe, s) in stats {
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}ms"));
        ctx.printer.out(format!(
            "{probe}: {} samples, error rate {}%, latency median {}, p95 {}, mean {}",
            s.count,
            units::trim_float(s.error_rate * 100.0),
            f(s.latency_median),
            f(s.latency_p95),
            f(s.latency_mean)
        ));
        for (field, f) in &s.fields {
            let v = |x: f64| units::trim_float((x * 1000.0).round() / 1000.0);
            ctx.printer.out(format!(
                "  {field}: median {}, p95 {}, mean {}, min {}, max {} ({} samples)",
                v(f.median),
                v(f.p95),
                v(f.mean),
                v(f.min),
                v(f.max),
                f.count
            ));
        }
        if s.count == 0 {
            ctx.printer
                .warn(format!("{probe} took no sample: its baseline is empty"));
        }
    }
}
