//! Command-line wiring: global flags, one file per command, each a thin layer
//! over the domain modules. The only place that reads the process environment.

mod baseline;
pub(crate) mod check;
mod checkpoint;
mod checkpoints;
mod demo;
mod demo_app;
mod deploy;
mod export;
mod fsck;
mod gc;
mod init;
mod log;
mod redo;
mod replay;
mod report;
mod restore;
mod rollback;
mod run;
mod runbook;
mod service;
mod show;
mod status;
mod undo;
mod verify;
mod watch;
mod watch_view;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::context::{Clock, Env};
use crate::error::{CommandError, ExitCode};
use crate::output::{Printer, Verbosity};
use crate::plan::{PLAN_FILE, Plan};
use crate::redact::Redactor;
use crate::workspace::Workspace;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  failure (a step, a check or an I/O operation failed)
  2  bad usage or an invalid plan (nothing was changed)
  3  locked: another backout command is changing this project
  4  a watch reached a rollback verdict and did not roll back itself
  5  damaged store: fsck found missing or corrupt objects, or restore refused a damaged checkpoint
  6  a watch or deploy rolled back, and the recovery was verified
  7  a watch or deploy rolled back, and the rollback failed or the recovery was not verified

Start with `backout demo` to see the whole loop, or `backout init` in your project.";

/// backout turns a rollback plan into code that runs: checkpoint, run, watch,
/// roll back, verify, report.
#[derive(Debug, Parser)]
#[command(name = "backout", version, about, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// The plan file [default: backout.toml, searched upward from the current directory]
    #[arg(long, global = true, value_name = "PATH")]
    plan: Option<PathBuf>,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    json: bool,
    /// More detail on stderr (repeat for more); also BACKOUT_LOG=debug
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Init(init::InitArgs),
    Check(check::CheckArgs),
    Checkpoint(checkpoint::CheckpointArgs),
    Checkpoints(checkpoints::CheckpointsArgs),
    Restore(restore::RestoreArgs),
    Export(export::ExportArgs),
    Fsck(fsck::FsckArgs),
    Gc(gc::GcArgs),
    Baseline(baseline::BaselineArgs),
    Deploy(deploy::DeployArgs),
    Watch(watch::WatchArgs),
    Run(run::RunArgs),
    Status(status::StatusArgs),
    Rollback(rollback::RollbackArgs),
    Undo(undo::UndoArgs),
    Redo(redo::RedoArgs),
    Verify(verify::VerifyArgs),
    Log(log::LogArgs),
    Replay(replay::ReplayArgs),
    Show(show::ShowArgs),
    Report(report::ReportArgs),
    Runbook(runbook::RunbookArgs),
    Service(service::ServiceArgs),
    Demo(demo::DemoArgs),
    DemoApp(demo_app::DemoAppArgs),
}

/// What every command gets: the printer, the environment, the clock.
pub struct Ctx {
    pub printer: Printer,
    pub env: Env,
    pub clock: Clock,
    pub plan_arg: Option<PathBuf>,
    pub cwd: PathBuf,
}

impl Ctx {
    /// Finds the plan (`--plan`, or `backout.toml` upward from here).
    pub fn plan_path(&self) -> Result<PathBuf, CommandError> {
        match &self.plan_arg {
            Some(p) => Ok(if p.is_absolute() { p.clone() } else { self.cwd.join(p) }),
            None => Plan::find(&self.cwd).ok_or_else(|| {
                CommandError::usage(anyhow::anyhow!(
                    "no {PLAN_FILE} in {} or any directory above it\n  = hint: run `backout init` to write one, or pass --plan PATH",
                    self.cwd.display()
                ))
            }),
        }
    }

    pub fn load_plan(&self) -> Result<Plan, CommandError> {
        let path = self.plan_path()?;
        if !path.is_file() {
            return Err(CommandError::usage(anyhow::anyhow!(
                "plan file {} does not exist\n  = hint: run `backout init` to write one",
                path.display()
            )));
        }
        let plan = Plan::load(&path, &self.env).map_err(|e| match e {
            // Point at the plan as the user would type its path: relative to here.
            crate::plan::PlanLoadError::Invalid(mut errs) => {
                for err in &mut errs.0 {
                    err.file = PathBuf::from(rel(&err.file, &self.cwd));
                }
                crate::plan::PlanLoadError::Invalid(errs)
            }
            other => other,
        })?;
        self.printer.redactor().add(plan.secrets.iter().cloned());
        self.printer
            .redactor()
            .add_patterns(plan.redact_patterns.iter().cloned());
        Ok(plan)
    }

    /// Loads the plan and opens its workspace.
    pub fn workspace(&self) -> Result<Workspace, CommandError> {
        let plan = self.load_plan()?;
        Ok(Workspace::open(
            plan,
            self.clock.clone(),
            self.printer.redactor().clone(),
        )?)
    }
}

/// Runs the command line; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { ExitCode::Usage } else { ExitCode::Ok };
            let _ = e.print();
            return code as i32;
        }
    };
    let env = Env::from_process();
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (false, 0) => Verbosity::Normal,
        _ => Verbosity::Verbose,
    };
    // One redactor for the terminal and the logs: the secrets the plan brings
    // when it loads apply to both.
    let redactor = Redactor::new();
    init_tracing(&env, cli.verbose, &redactor);
    let printer = Printer::new(
        cli.json,
        verbosity,
        env.var("NO_COLOR").is_some_and(|v| !v.is_empty()),
        redactor,
    );
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            printer.error(format!("cannot read the current directory: {e}"));
            return ExitCode::Failure as i32;
        }
    };
    let ctx = Ctx {
        printer,
        env,
        clock: Clock::system(),
        plan_arg: cli.plan.clone(),
        cwd,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            ctx.printer.error(format!("cannot start the async runtime: {e}"));
            return ExitCode::Failure as i32;
        }
    };
    // Test hook (documented with BACKOUT_TEST_CRASH_AT in the README): kill -9
    // right after spawning a process service, before its pid is recorded.
    if let Some(name) = ctx
        .env
        .var("BACKOUT_TEST_CRASH_AT")
        .and_then(|v| v.strip_prefix("spawned:").map(str::to_string))
    {
        let _ = crate::service::CRASH_AFTER_SPAWN.set(name);
    }
    let result = runtime.block_on(dispatch(&ctx, cli.command));
    match result {
        Ok(code) => code as i32,
        Err(e) => {
            ctx.printer.error(e.to_string());
            e.code as i32
        }
    }
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<ExitCode, CommandError> {
    match command {
        Command::Init(a) => init::run(ctx, a),
        Command::Check(a) => check::run(ctx, a),
        Command::Checkpoint(a) => checkpoint::run(ctx, a).await,
        Command::Checkpoints(a) => checkpoints::run(ctx, a),
        Command::Restore(a) => restore::run(ctx, a).await,
        Command::Export(a) => export::run(ctx, a).await,
        Command::Fsck(a) => fsck::run(ctx, a),
        Command::Gc(a) => gc::run(ctx, a),
        Command::Baseline(a) => baseline::run(ctx, a).await,
        Command::Deploy(a) => deploy::run(ctx, a).await,
        Command::Watch(a) => watch::run(ctx, a).await,
        Command::Run(a) => run::run(ctx, a).await,
        Command::Status(a) => status::run(ctx, a),
        Command::Rollback(a) => rollback::run(ctx, a).await,
        Command::Undo(a) => undo::run(ctx, a).await,
        Command::Redo(a) => redo::run(ctx, a).await,
        Command::Verify(a) => verify::run(ctx, a).await,
        Command::Log(a) => log::run(ctx, a),
        Command::Replay(a) => replay::run(ctx, a),
        Command::Show(a) => show::run(ctx, a),
        Command::Report(a) => report::run(ctx, a),
        Command::Runbook(a) => runbook::run(ctx, a),
        Command::Service(a) => service::run(ctx, a).await,
        Command::Demo(a) => demo::run(ctx, a).await,
        Command::DemoApp(a) => demo_app::run(ctx, a).await,
    }
}

fn init_tracing(env: &Env, verbose: u8, redactor: &Redactor) {
    let filter = match env.var("BACKOUT_LOG") {
        Some(f) => f.to_string(),
        None => match verbose {
            0 => "warn".into(),
            1 => "backout=info".into(),
            _ => "backout=debug".into(),
        },
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(crate::output::LogWriter::new(redactor.clone()))
        .with_target(false)
        .try_init();
}

/// Formats a timestamp (ms) as local-independent UTC for tables.
pub fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
}

/// A path shown relative to `base` when it is inside it.
pub fn rel(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

/// The checkpoint a command's argument names (`cp-3` or `3`), complete or not.
pub fn checkpoint_arg(ws: &Workspace, name: &str) -> Result<crate::oplog::CheckpointRow, CommandError> {
    let id = crate::resource::parse_checkpoint_name(name).ok_or_else(|| {
        CommandError::usage(anyhow::anyhow!(
            "{name:?} is not a checkpoint id\n  = hint: write cp-3 or 3; `backout checkpoints` lists them"
        ))
    })?;
    ws.oplog.checkpoint(id)?.ok_or_else(|| {
        CommandError::usage(crate::resource::RestoreError::NoSuchCheckpoint(
            crate::resource::checkpoint_name(id),
        ))
    })
}

/// A complete checkpoint by name (`cp-N`), for `--to`.
pub fn named_checkpoint(ws: &Workspace, name: &str) -> Result<crate::oplog::CheckpointRow, CommandError> {
    let row = checkpoint_arg(ws, name)?;
    if !row.complete {
        return Err(CommandError::usage(anyhow::anyhow!(
            "checkpoint {name} is incomplete (its capture was interrupted); choose another"
        )));
    }
    Ok(row)
}

/// The checkpoint a rollback goes to: `--to` by name (explained, with a
/// warning when the rule would never have chosen it), or the default target,
/// the newest checkpoint known to be good (see [`crate::rollback::target`]).
pub fn rollback_target(ws: &Workspace, to: Option<&str>) -> Result<crate::rollback::target::Target, CommandError> {
    use crate::rollback::target::{self, TargetError};
    match to {
        Some(name) => {
            let row = named_checkpoint(ws, name)?;
            Ok(target::explain(&ws.oplog, &row)?)
        }
        None => target::default_target(&ws.oplog).map_err(|e| match e {
            TargetError::Oplog(o) => CommandError::from(o),
            other => CommandError::usage(other),
        }),
    }
}

/// Says which checkpoint a rollback goes to and why, then what to know about it.
pub fn show_target(p: &Printer, t: &crate::rollback::target::Target) {
    p.status(format!("rollback target: {}", t.why));
    for w in &t.warnings {
        p.warn(w);
    }
}

/// One finished step on stderr: its outcome and time, then what it printed —
/// always when it failed, with `-v` when it passed (a migration's own output is
/// what an operator wants to read there).
fn print_step(p: &Printer, indent: &str, s: &crate::rollback::StepReport) {
    let state = if s.already_done {
        "done before"
    } else if s.ok {
        "ok"
    } else {
        "FAILED"
    };
    p.status(format!(
        "{indent}step {} {}: {state} ({}ms)",
        s.seq, s.name, s.duration_ms
    ));
    if (!s.ok || p.verbose()) && !s.output.trim().is_empty() {
        let body: Vec<String> = s
            .output
            .trim_end()
            .lines()
            .map(|l| format!("{indent}  | {l}"))
            .collect();
        p.status(body.join("\n"));
    } else {
        // What a restore discarded is said whether or not the step's output is.
        for d in &s.discarded {
            p.status(format!("{indent}  {}", d.sentence()));
        }
        for n in &s.notes {
            p.status(format!("{indent}  {n}"));
        }
    }
}
