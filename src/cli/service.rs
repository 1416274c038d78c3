use clap::{Args, Subcommand};

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::plan::{ServiceAction, ServiceKind};
use crate::service::identity::{self, Serving};
use crate::service::procs::Proc;
use crate::service::{self, ServiceFiles, Status, control};

/// Start, stop, restart the plan's services, or see which process serves each
///
/// A process service is started by backout in its own process group, its
/// output in .backout/run/NAME.log. A start counts only once the new
/// instance listens on the service's port (`port`, or its `ready` probe's) and
/// its `ready` probe passes; a stop only once nothing listens there. An
/// instance started by hand is found by its port: it is adopted when it runs
/// in the service's directory or with its start command, and refused by name
/// otherwise.
///
/// Example: backout service status
#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    action: Option<ServiceCommand>,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Which process serves each service, and since when [the default]
    Status(Names),
    /// Start services (all when none is named) and wait until they serve
    Start(Names),
    /// Stop services (all when none is named)
    Stop(Names),
    /// Stop, then start, services (all when none is named)
    Restart(Names),
    /// Let backout manage an instance started by hand: the process holding the
    /// service's port, or --pid
    Adopt(AdoptArgs),
}

#[derive(Debug, Args)]
struct Names {
    /// Service names from the plan [default: every service]
    names: Vec<String>,
}

#[derive(Debug, Args)]
struct AdoptArgs {
    /// The service
    name: String,
    /// The process to adopt [default: the one listening on the service's port]
    #[arg(long)]
    pid: Option<i32>,
}

pub async fn run(ctx: &Ctx, args: ServiceArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    match args
        .action
        .unwrap_or(ServiceCommand::Status(Names { names: Vec::new() }))
    {
        ServiceCommand::Status(n) => status(ctx, &ws, &n.names),
        ServiceCommand::Start(n) => act(ctx, &ws, &n.names, ServiceAction::Start).await,
        ServiceCommand::Stop(n) => act(ctx, &ws, &n.names, ServiceAction::Stop).await,
        ServiceCommand::Restart(n) => act(ctx, &ws, &n.names, ServiceAction::Restart).await,
        ServiceCommand::Adopt(a) => adopt(ctx, &ws, &a),
    }
}

/// The named services, in plan order (all of them when none is named).
fn pick<'a>(
    ws: &'a crate::workspace::Workspace,
    names: &[String],
) -> Result<Vec<&'a crate::plan::Service>, CommandError> {
    if ws.plan.services.is_empty() {
        return Err(CommandError::usage(anyhow::anyhow!(
            "the plan has no [[service]]\n  = hint: add one with name and start, e.g. start = [\"python\", \"app.py\"]"
        )));
    }
    for n in names {
        if ws.plan.service(n).is_none() {
            let known: Vec<&str> = ws.plan.services.iter().map(|s| s.name.as_str()).collect();
            return Err(CommandError::usage(anyhow::anyhow!(
                "no service named {n:?} in the plan\n  = hint: the plan's services: {}",
                known.join(", ")
            )));
        }
    }
    Ok(ws
        .plan
        .services
        .iter()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .collect())
}

#[derive(serde::Serialize)]
struct Row {
    name: String,
    kind: String,
    status: Status,
    /// Started outside backout and adopted.
    adopted: bool,
    /// When the instance started (UTC), when backout knows it.
    since: Option<String>,
    command: Option<String>,
    port: Option<u16>,
    /// Who serves the port: `ours`, `foreign`, `nobody`, or null without a port.
    serving: Option<&'static str>,
    serving_detail: Option<String>,
    log: Option<String>,
}

fn status(ctx: &Ctx, ws: &crate::workspace::Workspace, names: &[String]) -> Result<ExitCode, CommandError> {
    let run_dir = ws.run_dir()?;
    let p = &ctx.printer;
    let mut rows = Vec::new();
    for svc in pick(ws, names)? {
        let files = ServiceFiles::new(&run_dir, &svc.name);
        let st = service::status(svc, &files);
        let inst = service::instance(&files);
        let proc = match st {
            Status::Running { pid } | Status::Foreign { pid, .. } => Proc::read(pid),
            _ => None,
        };
        let serving = identity::serving(svc, &files);
        let (serving_kind, detail) = match &serving {
            Serving::Ours { .. } => (Some("ours"), Some(serving.describe(&svc.name))),
            Serving::Foreign { .. } => (Some("foreign"), Some(serving.describe(&svc.name))),
            Serving::Nobody { .. } => (Some("nobody"), Some(serving.describe(&svc.name))),
            Serving::Unknown => (None, None),
        };
        rows.push(Row {
            name: svc.name.clone(),
            kind: format!("{:?}", svc.kind).to_lowercase(),
            status: st,
            adopted: inst.as_ref().is_some_and(|i| i.adopted),
            since: proc.as_ref().and_then(|p| started_at(p.start)),
            command: proc.as_ref().map(|p| p.command.clone()),
            port: svc.port,
            serving: serving_kind,
            serving_detail: detail,
            log: (svc.kind == ServiceKind::Process && files.log.exists()).then(|| super::rel(&files.log, ws.root())),
        });
    }
    p.data(&rows);
    for r in &rows {
        let mut state = r.status.to_string();
        if r.adopted {
            state.push_str(", adopted (started outside backout)");
        }
        if let Some(since) = &r.since {
            state.push_str(&format!(", since {since}"));
        }
        let line = format!("{} ({}): {state}", r.name, r.kind);
        p.out(match (&r.status, r.serving) {
            (Status::Foreign { .. }, _) | (_, Some("foreign")) => p.yellow(&line),
            (Status::Running { .. } | Status::Active, Some("ours") | None) => p.green(&line),
            _ => line,
        });
        if let Some(c) = &r.command {
            p.out(format!("  command: {c}"));
        }
        if let Some(d) = &r.serving_detail {
            p.out(format!("  {d}"));
        }
        if matches!(r.status, Status::Foreign { .. }) {
            p.out(format!(
                "  `backout service restart {0}` stops it and starts {0} under backout; `backout service adopt {0}` keeps it running",
                r.name
            ));
        }
        if let Some(l) = &r.log {
            p.out(format!("  log: {l}"));
        }
    }
    Ok(ExitCode::Ok)
}

/// A process start time (clock ticks since boot) as a UTC time.
fn started_at(ticks: u64) -> Option<String> {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let age_ms = ((uptime - ticks as f64 / hz) * 1000.0).max(0.0) as i64;
    let now = jiff::Timestamp::now().as_millisecond();
    Some(super::when(now - age_ms))
}

async fn act(
    ctx: &Ctx,
    ws: &crate::workspace::Workspace,
    names: &[String],
    action: ServiceAction,
) -> Result<ExitCode, CommandError> {
    let targets = pick(ws, names)?;
    let _lock = ws.lock("service")?;
    let run_dir = ws.run_dir()?;
    let verb = format!("{action:?}").to_lowercase();
    let op = ws.oplog.begin(
        "service",
        &serde_json::json!({ "action": verb, "services": targets.iter().map(|s| &s.name).collect::<Vec<_>>() }),
        ws.now_ms(),
    )?;
    let p = &ctx.printer;
    let mut results = Vec::new();
    let mut failed = None;
    for svc in targets {
        let ready = svc.ready.as_deref().and_then(|r| ws.plan.probe(r));
        // The longest a service may take: its readiness, plus its stop.
        let timeout = svc.ready_timeout + svc.stop_timeout;
        match control::act(svc, action, &run_dir, timeout, ready, &ws.clock).await {
            Ok(acted) => {
                for l in acted.text.lines() {
                    p.status(l);
                }
                results.push(serde_json::json!({ "service": svc.name, "ok": true, "output": acted.text }));
            }
            Err(e) => {
                let msg = format!("{e:#}");
                results.push(serde_json::json!({ "service": svc.name, "ok": false, "output": msg }));
                failed = Some(anyhow::anyhow!(msg));
                break;
            }
        }
    }
    let outcome = if failed.is_some() { "failed" } else { "ok" };
    ws.oplog
        .event(op, ws.now_ms(), "service", &serde_json::json!({ "results": results }))?;
    ws.oplog.finish(
        op,
        outcome,
        failed.as_ref().map(|e| e.to_string()).as_deref(),
        ws.now_ms(),
    )?;
    p.data(&results);
    match failed {
        Some(e) => Err(CommandError::failure(e)),
        None => Ok(ExitCode::Ok),
    }
}

fn adopt(ctx: &Ctx, ws: &crate::workspace::Workspace, a: &AdoptArgs) -> Result<ExitCode, CommandError> {
    let svc = pick(ws, std::slice::from_ref(&a.name))?[0];
    if svc.kind != ServiceKind::Process {
        return Err(CommandError::usage(anyhow::anyhow!(
            "service {:?} is a {:?} service: its manager knows its processes; only process services are adopted",
            svc.name,
            svc.kind
        )));
    }
    let _lock = ws.lock("service")?;
    let files = ServiceFiles::new(&ws.run_dir()?, &svc.name);
    if let Some(i) = service::instance(&files) {
        return Err(CommandError::usage(anyhow::anyhow!(
            "service {:?} already runs under backout (pid {})\n  = hint: `backout service restart {}` restarts it",
            svc.name,
            i.pid,
            svc.name
        )));
    }
    let proc = match a.pid {
        Some(pid) => {
            Proc::read(pid).ok_or_else(|| CommandError::usage(anyhow::anyhow!("no running process with pid {pid}")))?
        }
        None => {
            let Some(port) = svc.port else {
                return Err(CommandError::usage(anyhow::anyhow!(
                    "service {:?} has no port to find its process by\n  = hint: pass --pid, or set `port` (or a local `ready` probe) on the service",
                    svc.name
                )));
            };
            let holders = service::procs::listeners(port);
            // The master of a pre-forking server: the holder none of the others descends from.
            let root = holders
                .iter()
                .find(|p| {
                    !holders
                        .iter()
                        .any(|q| q.pid != p.pid && service::procs::descends_from(p.pid, q.pid))
                })
                .cloned();
            root.ok_or_else(|| {
                CommandError::failure(anyhow::anyhow!(
                    "nothing backout can see listens on port {port}\n  = hint: start it with `backout service start {}`",
                    svc.name
                ))
            })?
        }
    };
    identity::adopt(&files, &proc)
        .map_err(|e| CommandError::failure(anyhow::anyhow!("cannot write {}: {e}", files.pidfile.display())))?;
    let op = ws.oplog.begin(
        "service",
        &serde_json::json!({ "action": "adopt", "services": [svc.name], "pid": proc.pid }),
        ws.now_ms(),
    )?;
    ws.oplog.finish(op, "ok", None, ws.now_ms())?;
    ctx.printer
        .data(&serde_json::json!({ "service": svc.name, "pid": proc.pid, "command": proc.command }));
    ctx.printer.out(format!(
        "{}: adopted {}; backout stops and restarts it from now on (its output goes where it went before, not to .backout/run)",
        svc.name,
        proc.describe()
    ));
    Ok(ExitCode::Ok)
}
