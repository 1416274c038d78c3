use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};

/// Run the plan's [verify] checks and prove the system is healthy
///
/// Each check prints pass or fail with its evidence; the exit code is 0 only when
/// every check passed.
///
/// Example: backout verify --json
#[derive(Debug, Args)]
pub struct VerifyArgs {}

pub async fn run(ctx: &Ctx, _args: VerifyArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let p = &ctx.printer;
    let mut shown = 0;
    let checks = crate::incident::verify_all(
        &ws,
        |c| {
            let mark = if c.passed { p.green("pass") } else { p.red("FAIL") };
            p.out(format!("[{mark}] {}: {}", c.name, c.evidence));
        },
        // A line at every tenth of the stable-for period.
        |elapsed, total| {
            let tenth = (elapsed.as_secs_f64() / total.as_secs_f64() * 10.0) as u32;
            if tenth > shown && tenth < 10 {
                shown = tenth;
                p.status(format!(
                    "  stable so far: {} of {}",
                    crate::plan::units::format_duration(std::time::Duration::from_secs(elapsed.as_secs())),
                    crate::plan::units::format_duration(total)
                ));
            }
        },
    )
    .await?;
    let passed = checks.iter().all(|c| c.passed);
    p.data(&serde_json::json!({ "passed": passed, "checks": checks }));
    if checks.is_empty() {
        p.warn("the plan has no [verify] checks");
    }
    Ok(if passed { ExitCode::Ok } else { ExitCode::Failure })
}
