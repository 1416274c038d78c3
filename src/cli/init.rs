use std::path::Path;

use clap::Args;

use super::Ctx;
use crate::context::Env;
use crate::error::{CommandError, ExitCode};
use crate::plan::{PLAN_FILE, Plan, starter};

/// Write a commented starter backout.toml for the project in this directory
///
/// Detects the git repository, requirements.txt / pyproject.toml / package.json /
/// Cargo.toml, a compose file and its services, and a venv, and fills them in.
///
/// Example: backout init --health http://127.0.0.1:8000/health
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The service's health URL: adds a probe, rules, rollback steps and checks
    #[arg(long, value_name = "URL")]
    health: Option<String>,
    /// Overwrite an existing plan
    #[arg(long)]
    force: bool,
}

pub fn run(ctx: &Ctx, args: InitArgs) -> Result<ExitCode, CommandError> {
    let path = match &ctx.plan_arg {
        Some(p) => ctx.cwd.join(p),
        None => ctx.cwd.join(PLAN_FILE),
    };
    if path.exists() && !args.force {
        return Err(CommandError::usage(anyhow::anyhow!(
            "{} already exists; not overwriting it\n  = hint: pass --force to replace it, or edit it and run `backout check`",
            path.display()
        )));
    }
    let root = path.parent().unwrap_or(Path::new("."));
    let detected = starter::detect(root);
    let text = starter::render(&detected, args.health.as_deref());
    // Never write a plan that would not load.
    Plan::parse(&path, &text, &Env::default()).map_err(|e| {
        CommandError::usage(anyhow::anyhow!(
            "the starter plan would not be valid: {e}\n  = hint: check the --health URL"
        ))
    })?;
    crate::service::write_atomic(&path, text.as_bytes())
        .map_err(|e| CommandError::failure(anyhow::anyhow!("writing {}: {e}", path.display())))?;

    let plan = Plan::parse(&path, &text, &Env::default()).map_err(CommandError::usage)?;
    let ws = crate::workspace::Workspace::open(plan, ctx.clock.clone(), ctx.printer.redactor().clone())?;
    let op = ws.oplog.begin(
        "init",
        &serde_json::json!({ "health": args.health, "force": args.force }),
        ws.now_ms(),
    )?;
    ws.oplog.finish(op, "ok", None, ws.now_ms())?;

    let mut found = Vec::new();
    if detected.git {
        found.push("git repository".to_string());
    }
    if let Some(p) = &detected.python {
        found.push(p.clone());
    }
    if detected.node {
        found.push("package.json".into());
    }
    if detected.cargo {
        found.push("Cargo.toml".into());
    }
    if let Some(c) = &detected.compose_file {
        found.push(format!("{c} ({})", detected.compose_services.join(", ")));
    }
    if let Some(v) = &detected.venv {
        found.push(format!("venv {v}"));
    }
    ctx.printer
        .data(&serde_json::json!({ "plan": path, "detected": found }));
    ctx.printer.out(format!("wrote {}", path.display()));
    if !found.is_empty() {
        ctx.printer.out(format!("detected: {}", found.join(", ")));
    }
    ctx.printer.status("next: review it, then run `backout check`");
    Ok(ExitCode::Ok)
}
