//! Driving services by action, whatever their kind: `process` through the pid
//! file ([`super::start`] and friends), `compose` through `docker compose` or
//! `docker-compose` (whichever is installed), `systemd` through `systemctl`,
//! `command` through the plan's own start, stop and status commands. Every
//! external command runs in its own process group with the step's timeout.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::identity::{self, Confirmed};
use super::{ServiceError, ServiceFiles, Started, Status};
use crate::context::Clock;
use crate::exec::{self, Invocation};
use crate::plan::{Command, Probe, Service, ServiceAction, ServiceControl};

/// The compose command line on this machine: `docker compose` (the plugin) when
/// it answers, else the standalone `docker-compose`.
pub fn compose_program() -> &'static [String] {
    static PROGRAM: OnceLock<Vec<String>> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let plugin = std::process::Command::new("docker")
            .args(["compose", "version"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if plugin {
            vec!["docker".into(), "compose".into()]
        } else {
            vec!["docker-compose".into()]
        }
    })
}

/// `compose [-f FILE] [-p PROJECT] ARGS...` for one compose service.
pub fn compose_argv(control: &ServiceControl, args: &[&str]) -> Option<(Vec<String>, PathBuf)> {
    let ServiceControl::Compose {
        project_dir,
        file,
        project,
        ..
    } = control
    else {
        return None;
    };
    let mut argv: Vec<String> = compose_program().to_vec();
    if let Some(f) = file {
        argv.extend(["-f".into(), f.display().to_string()]);
    }
    if let Some(p) = project {
        argv.extend(["-p".into(), p.clone()]);
    }
    argv.extend(args.iter().map(|a| a.to_string()));
    Some((argv, project_dir.clone()))
}

/// The commands an action amounts to for `svc`, as a person would type them.
pub fn describe(svc: &Service, action: ServiceAction) -> String {
    invocations(svc, action)
        .iter()
        .map(|(argv, _)| argv.iter().map(|a| shown_arg(a)).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(" && ")
}

fn shown_arg(a: &str) -> String {
    Command {
        argv: vec![crate::plan::Text::plain(a)],
        shell: false,
    }
    .shown()
}

/// The external commands for a non-process service; empty for `process`.
fn invocations(svc: &Service, action: ServiceAction) -> Vec<(Vec<String>, PathBuf)> {
    match &svc.control {
        // What a person types to do the same by hand.
        ServiceControl::Process => {
            let verb = match action {
                ServiceAction::Start => "start",
                ServiceAction::Stop | ServiceAction::Down => "stop",
                ServiceAction::Restart | ServiceAction::Rebuild => "restart",
            };
            let argv = ["backout", "service", verb, svc.name.as_str()];
            vec![(argv.iter().map(|a| a.to_string()).collect(), svc.cwd.clone())]
        }
        c @ ServiceControl::Compose { service, .. } => {
            let s = service.as_str();
            let args: Vec<&str> = match action {
                // `up -d` creates the container when it does not exist yet; idempotent.
                ServiceAction::Start => vec!["up", "-d", "--no-deps", s],
                ServiceAction::Stop => vec!["stop", s],
                // Recreate, so a changed compose file or image is picked up.
                ServiceAction::Restart => vec!["up", "-d", "--no-deps", "--force-recreate", s],
                ServiceAction::Rebuild => vec!["up", "-d", "--no-deps", "--build", "--force-recreate", s],
                ServiceAction::Down => vec!["rm", "-s", "-f", s],
            };
            compose_argv(c, &args).into_iter().collect()
        }
        ServiceControl::Systemd { unit, user } => {
            let verb = match action {
                ServiceAction::Start => "start",
                ServiceAction::Stop | ServiceAction::Down => "stop",
                ServiceAction::Restart | ServiceAction::Rebuild => "restart",
            };
            let mut argv = vec!["systemctl".to_string()];
            if *user {
                argv.push("--user".into());
            }
            argv.extend([verb.to_string(), unit.clone()]);
            vec![(argv, svc.cwd.clone())]
        }
        ServiceControl::Command { stop, .. } => {
            let start = (svc.start.resolved(), svc.cwd.clone());
            let stop = (stop.resolved(), svc.cwd.clone());
            match action {
                ServiceAction::Start => vec![start],
                ServiceAction::Stop | ServiceAction::Down => vec![stop],
                ServiceAction::Restart | ServiceAction::Rebuild => vec![stop, start],
            }
        }
    }
}

/// What an action did: the lines saying so, and among them what a person
/// must hear even when the rest is not shown (a process started outside
/// backout that was stopped or adopted).
#[derive(Debug, Clone, Default)]
pub struct Acted {
    pub text: String,
    pub notes: Vec<String>,
}

/// Performs `action` on `svc`; returns lines saying what happened, each one
/// checked: a process service's start is confirmed only once the instance it
/// started listens on the service's port (or, without one, stays alive), a
/// stop only once nothing of the service listens there any more, and a start
/// or restart of a service with a `ready` probe waits for that probe (answered
/// by the instance just started) within `timeout`.
pub async fn act(
    svc: &Service,
    action: ServiceAction,
    run_dir: &Path,
    timeout: Duration,
    ready: Option<&Probe>,
    clock: &Clock,
) -> Result<Acted, ServiceError> {
    let began = std::time::Instant::now();
    let mut acted = act_only(svc, action, run_dir, timeout).await?;
    let starts = !matches!(action, ServiceAction::Stop | ServiceAction::Down);
    if let (true, Some(probe)) = (starts, ready) {
        let left = timeout.saturating_sub(began.elapsed());
        let watched = [super::ready::Watched {
            svc,
            files: ServiceFiles::new(run_dir, &svc.name),
        }];
        let w = super::ready::until_healthy(probe, clock, left, &watched).await;
        if !w.ok {
            return Err(ServiceError::NotReady {
                name: svc.name.clone(),
                running: super::instance(&watched[0].files).map(|i| i.pid),
                message: w.message,
            });
        }
        acted.text.push_str(&format!("\n{}: ready ({})", svc.name, w.message));
    }
    Ok(acted)
}

/// [`act`] without waiting for the `ready` probe.
async fn act_only(
    svc: &Service,
    action: ServiceAction,
    run_dir: &Path,
    timeout: Duration,
) -> Result<Acted, ServiceError> {
    if matches!(svc.control, ServiceControl::Process) {
        let svc = svc.clone();
        let files = ServiceFiles::new(run_dir, &svc.name);
        let name = svc.name.clone();
        let confirm_within = svc.ready_timeout.min(timeout);
        let joined = tokio::task::spawn_blocking(move || -> Result<Acted, ServiceError> {
            let mut notes = Vec::new();
            let mut start = |svc: &Service| -> Result<String, ServiceError> {
                Ok(match super::start(svc, &files)? {
                    Started::Spawned(pid) => match identity::confirm(svc, &files, pid, confirm_within)? {
                        Confirmed::Listening(port) => {
                            format!("{} started (pid {pid}), listening on port {port}", svc.name)
                        }
                        Confirmed::Alive => format!(
                            "{} started (pid {pid}); alive after {} (no port to check it serves: set `port` or `ready`)",
                            svc.name,
                            crate::plan::units::format_duration(identity::SETTLE)
                        ),
                    },
                    Started::AlreadyRunning(pid) => format!("{} already running (pid {pid})", svc.name),
                    Started::Adopted(p) => {
                        let line = format!(
                            "{} already running as {}, started outside backout: adopted",
                            svc.name,
                            p.describe()
                        );
                        notes.push(line.clone());
                        line
                    }
                })
            };
            let stop = |svc: &Service, notes: &mut Vec<String>| -> Result<String, ServiceError> {
                let stopped = super::stop(svc, &files)?;
                notes.extend(stopped.foreign_lines(&svc.name));
                Ok(stopped.describe(&svc.name))
            };
            let text = match action {
                ServiceAction::Start => start(&svc)?,
                ServiceAction::Stop | ServiceAction::Down => stop(&svc, &mut Vec::new())?,
                ServiceAction::Restart | ServiceAction::Rebuild => {
                    let mut stop_notes = Vec::new();
                    let stopped = stop(&svc, &mut stop_notes)?;
                    let started = start(&svc).map_err(|e| ServiceError::StartAfterStop {
                        stopped: stopped.clone(),
                        failed: Box::new(e),
                    })?;
                    notes.splice(0..0, stop_notes);
                    format!("{stopped}\n{started}")
                }
            };
            Ok(Acted { text, notes })
        })
        .await;
        return joined.unwrap_or_else(|e| {
            Err(ServiceError::Control {
                name,
                command: format!("{action:?}").to_lowercase(),
                how: "the worker panicked".into(),
                output: e.to_string(),
            })
        });
    }
    let mut lines = Vec::new();
    for (argv, cwd) in invocations(svc, action) {
        let shown = argv.iter().map(|a| shown_arg(a)).collect::<Vec<_>>().join(" ");
        let inv = Invocation {
            argv,
            cwd,
            env: svc.env.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect(),
            timeout,
        };
        let out = exec::run(&inv).await.map_err(|e| ServiceError::Control {
            name: svc.name.clone(),
            command: shown.clone(),
            how: "could not start it".into(),
            output: format!("{e:#}"),
        })?;
        // Stopping a service its compose file does not define (yet, or any more:
        // a phase adds it, a git reset took it out) has nothing to stop.
        if !out.success()
            && matches!(action, ServiceAction::Stop | ServiceAction::Down)
            && matches!(svc.control, ServiceControl::Compose { .. })
            && out.output.to_lowercase().contains("no such service")
        {
            lines.push(format!("{}: not in the compose file, nothing to stop", svc.name));
            continue;
        }
        if !out.success() {
            return Err(ServiceError::Control {
                name: svc.name.clone(),
                command: shown,
                how: out.describe(),
                output: exec::tail_lines(&out.output, 20),
            });
        }
        lines.push(format!("{}: {shown} ok", svc.name));
    }
    Ok(Acted {
        text: lines.join("\n"),
        notes: Vec::new(),
    })
}

/// What a managed service is doing, asked of its manager (a few seconds at most).
pub fn status_blocking(svc: &Service) -> Status {
    let run = |argv: Vec<String>, cwd: &Path| -> Option<(bool, String)> {
        let (program, args) = argv.split_first()?;
        let out = std::process::Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    };
    match &svc.control {
        ServiceControl::Process => Status::Unknown,
        c @ ServiceControl::Compose { service, .. } => {
            let Some((argv, cwd)) = compose_argv(c, &["ps", "-q", service]) else {
                return Status::Unknown;
            };
            match run(argv, &cwd) {
                Some((true, id)) if !id.is_empty() => match container_state(&id) {
                    Some(state) if state.running => Status::Active,
                    Some(_) => Status::Stopped,
                    None => Status::Unknown,
                },
                Some((true, _)) => Status::Stopped,
                _ => Status::Unknown,
            }
        }
        ServiceControl::Systemd { unit, user } => {
            let mut argv = vec!["systemctl".to_string()];
            if *user {
                argv.push("--user".into());
            }
            argv.extend(["is-active".into(), unit.clone()]);
            match run(argv, &svc.cwd) {
                Some((true, _)) => Status::Active,
                Some((false, _)) => Status::Stopped,
                None => Status::Unknown,
            }
        }
        ServiceControl::Command { status, .. } => match status {
            Some(cmd) => match run(cmd.resolved(), &svc.cwd) {
                Some((true, _)) => Status::Active,
                Some((false, _)) => Status::Stopped,
                None => Status::Unknown,
            },
            None => Status::Unknown,
        },
    }
}

/// A container's state as docker reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainerState {
    pub id: String,
    pub running: bool,
    /// `running`, `exited`, `restarting`, ...
    pub status: String,
    /// `healthy`, `unhealthy`, `starting`, or `None` without a HEALTHCHECK.
    pub health: Option<String>,
}

/// Asks docker for a container's state and health.
pub fn container_state(id: &str) -> Option<ContainerState> {
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
            id,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    Some(ContainerState {
        id: id.to_string(),
        running: parts.next()? == "true",
        status: parts.next()?.to_string(),
        health: parts.next().map(str::to_string),
    })
}

/// The state of a compose service's container, `None` when it has none.
pub fn compose_service_state(svc: &Service) -> Result<Option<ContainerState>, String> {
    let ServiceControl::Compose { service, .. } = &svc.control else {
        return Err(format!("service {:?} is not a compose service", svc.name));
    };
    let (argv, cwd) = compose_argv(&svc.control, &["ps", "-q", service]).ok_or("not compose")?;
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(&cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", argv.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed in {}: {}",
            argv.join(" "),
            cwd.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if id.is_empty() {
        return Ok(None);
    }
    Ok(container_state(id.lines().next().unwrap_or_default()))
}
