use clap::{Args, ValueEnum};

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::rollback::select::{self, Request};

/// Run the plan's [verify] checks and prove the system is healthy
///
/// Each check prints pass or fail with its evidence; the exit code is 0 only when
/// every check passed. With --level, --phase or --component, the checks proper
/// to that rollback level ([rollback] verify, the option's or the component's
/// verify) run first, as after such a rollback.
///
/// Example: backout verify --phase phase-4-composites --json
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also the checks of a level-1 rollback ([rollback] verify)
    #[arg(long, value_enum, conflicts_with_all = ["phase", "component"])]
    level: Option<Level>,
    /// Also the checks of this phase's rollback option (its default, or --option)
    #[arg(long, value_name = "NAME", conflicts_with = "component")]
    phase: Option<String>,
    /// The phase's rollback option whose checks run, by name
    #[arg(long, value_name = "NAME", requires = "phase")]
    option: Option<String>,
    /// Also the checks of this component's rollback
    #[arg(long, value_name = "NAME")]
    component: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Level {
    /// Everything: the checks of the plan's [rollback]
    Full,
}

pub async fn run(ctx: &Ctx, args: VerifyArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let p = &ctx.printer;
    let level = if args.level.is_some() || args.phase.is_some() || args.component.is_some() {
        let req = Request {
            phase: args.phase,
            option: args.option,
            component: args.component,
        };
        select::select(&ws.plan, &req).map_err(CommandError::usage)?.checks
    } else {
        Vec::new()
    };
    let mut shown = 0;
    let checks = crate::incident::verify_all(
        &ws,
        &level,
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
