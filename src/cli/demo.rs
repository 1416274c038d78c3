use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};

/// Run the whole loop on an embedded sample service, offline
///
/// In a temporary git repository: start the sample service, checkpoint, measure a
/// baseline, deploy a bad version, watch, detect it, roll back with `git revert`,
/// restart, verify, and write the incident report. Cleans up unless --keep.
///
/// Example: backout demo --keep /tmp/backout-demo
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo project in DIR (empty or absent) to explore it afterwards
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

pub async fn run(ctx: &Ctx, args: DemoArgs) -> Result<ExitCode, CommandError> {
    let exe = std::env::current_exe().context("finding the backout binary to run the demo service")?;
    let tmp;
    let (dir, kept) = match &args.keep {
        Some(d) => (ctx.cwd.join(d), true),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("backout-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            (tmp.path().to_path_buf(), false)
        }
    };
    let p = &ctx.printer;
    let result = crate::demo::run(&dir, &exe, kept, |line| p.status(line)).await?;
    p.data(&result);
    super::watch::print_incident(p, &result.incident);
    p.out(format!(
        "history kept: bad commit {} reverted by {}",
        &result.bad_commit[..8],
        &result.revert_commit[..8]
    ));
    if kept {
        p.out(format!("report: {}", result.report.display()));
        p.out(format!("explore: cd {} && backout log --steps", dir.display()));
    } else {
        p.out("report: written, then removed with the temporary directory (use --keep DIR to keep it)");
    }
    Ok(ExitCode::Ok)
}
