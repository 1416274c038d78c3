//! Which process serves a service. A process service with a port (its `port`,
//! or the port of its `ready` probe on this machine) is served by whoever
//! holds a socket listening there; backout counts it as the service only when
//! that is the instance it started (a process carrying the instance's token,
//! or descending from its pid) or one it adopted.
//!
//! An instance started by hand — how people start their apps — is found by
//! its port. When it is this service (its working directory is the service's,
//! or its command line is the service's start command) backout adopts it: the
//! pid file records it with no token (`PID START -`), and stop and restart act
//! on it. Anything else holding the port is refused by name: starting a second
//! instance beside it would die on "Address already in use" and leave the old
//! one answering every probe.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::procs::{self, Proc};
use super::{Instance, SERVICE_ID_VAR, ServiceError, ServiceFiles};
use crate::plan::Service;

/// How spawned instances ended, kept by their reaper threads while backout
/// runs: the error for an instance that died says how.
static EXITS: Mutex<Option<HashMap<i32, std::process::ExitStatus>>> = Mutex::new(None);

pub(super) fn note_exit(pid: i32, status: std::process::ExitStatus) {
    if let Ok(mut m) = EXITS.lock() {
        m.get_or_insert_with(HashMap::new).insert(pid, status);
    }
}

/// " with exit status 1", " killed by signal 9", or "" when unknown.
fn how_it_ended(pid: i32) -> String {
    use std::os::unix::process::ExitStatusExt;
    let recorded = || EXITS.lock().ok().and_then(|m| m.as_ref()?.get(&pid).copied());
    // A dead child is a zombie until its reaper thread (spawned with it) has
    // waited for it: give that thread a moment to record how it ended.
    let mut status = recorded();
    for _ in 0..20 {
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        status = recorded();
    }
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!(" with exit status {c}"),
            (None, Some(sig)) => format!(" killed by signal {sig}"),
            _ => String::new(),
        },
        None => String::new(),
    }
}

/// Whether `p` is an instance of `svc` started outside backout: it runs in the
/// service's working directory, or its command line is the service's start
/// command (the program compared by file name, `python3` and
/// `/usr/bin/python3` alike).
pub fn looks_like(svc: &Service, p: &Proc) -> bool {
    let same_dir = match (&p.cwd, std::fs::canonicalize(&svc.cwd)) {
        (Some(cwd), Ok(dir)) => *cwd == dir,
        _ => false,
    };
    same_dir || same_command(&svc.start.resolved(), &p.argv)
}

fn same_command(start: &[String], argv: &[String]) -> bool {
    let base = |a: &str| Path::new(a).file_name().map(|f| f.to_os_string());
    match (start.split_first(), argv.split_first()) {
        (Some((prog, args)), Some((p, a))) => base(prog) == base(p) && args == a,
        _ => false,
    }
}

/// Whether `p` belongs to the instance `i`: it carries the instance's token
/// (a spawned instance and everything it started), or descends from its pid.
fn belongs(p: &Proc, i: &Instance) -> bool {
    if procs::descends_from(p.pid, i.pid) {
        return true;
    }
    let Some(token) = &i.token else {
        return false;
    };
    let needle = format!("{SERVICE_ID_VAR}={token}");
    std::fs::read(format!("/proc/{}/environ", p.pid))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
}

/// The holders of a port that are roots among themselves: a pre-forking
/// server's workers descend from its master, which is the one to adopt or stop.
fn roots(holders: &[Proc]) -> Vec<Proc> {
    holders
        .iter()
        .filter(|p| {
            !holders
                .iter()
                .any(|q| q.pid != p.pid && procs::descends_from(p.pid, q.pid))
        })
        .cloned()
        .collect()
}

/// The processes listening on `port`. A socket listed with no process holding
/// it belongs to a process exiting right now (its descriptors closed, the
/// socket not yet gone) or to one backout cannot see: it is given up to a
/// second to settle either way.
fn settled_listeners(port: u16) -> Vec<Proc> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        let holders = procs::listeners(port);
        if !holders.is_empty() || !procs::port_in_use(port) || Instant::now() >= until {
            return holders;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Before a start: when something holds the service's port, adopt it if it is
/// this service (recording it in the pid file), or refuse naming it.
pub(super) fn adopt_holder(svc: &Service, files: &ServiceFiles) -> Result<Option<Proc>, ServiceError> {
    let Some(port) = svc.port else {
        return Ok(None);
    };
    let holders = settled_listeners(port);
    if holders.is_empty() {
        if procs::port_in_use(port) && !procs::sees_every_process() {
            return Err(held(svc, port, "a process backout cannot see (another user's)".into()));
        }
        return Ok(None);
    }
    let roots = roots(&holders);
    match roots.as_slice() {
        [one] if looks_like(svc, one) => {
            adopt(files, one).map_err(|source| ServiceError::Io {
                name: svc.name.clone(),
                path: files.pidfile.clone(),
                source,
            })?;
            Ok(Some(one.clone()))
        }
        _ => Err(held(svc, port, describe_all(&roots))),
    }
}

/// Records `p` as the service's instance.
pub fn adopt(files: &ServiceFiles, p: &Proc) -> std::io::Result<()> {
    super::write_run_file(&files.pidfile, format!("{} {} -\n", p.pid, p.start).as_bytes())
}

fn describe_all(ps: &[Proc]) -> String {
    ps.iter().map(Proc::describe).collect::<Vec<_>>().join(", ")
}

fn held(svc: &Service, port: u16, holder: String) -> ServiceError {
    ServiceError::PortHeld {
        name: svc.name.clone(),
        port,
        holder,
        hint: format!(
            "stop it, or if it is {name} started by hand from elsewhere, `backout service adopt {name}` lets backout manage it",
            name = svc.name
        ),
    }
}

/// After a stop: whatever still listens on the service's port. Copies of this
/// service started by hand are stopped (TERM, then KILL after the stop
/// timeout) and returned; anything else is an error naming it.
pub(super) fn stop_holders(svc: &Service) -> Result<Vec<Proc>, ServiceError> {
    let Some(port) = svc.port else {
        return Ok(Vec::new());
    };
    let holders = roots(&settled_listeners(port));
    if holders.is_empty() {
        if procs::port_in_use(port) && !procs::sees_every_process() {
            return Err(still_held(
                svc,
                port,
                "a process backout cannot see (another user's)".into(),
            ));
        }
        return Ok(Vec::new());
    }
    if let Some(other) = holders.iter().find(|p| !looks_like(svc, p)) {
        return Err(still_held(svc, port, other.describe()));
    }
    for p in &holders {
        let i = Instance {
            pid: p.pid,
            started: p.start,
            token: None,
            adopted: true,
        };
        super::end_instance(svc, &i)?;
    }
    Ok(holders)
}

fn still_held(svc: &Service, port: u16, holder: String) -> ServiceError {
    ServiceError::PortHeld {
        name: svc.name.clone(),
        port,
        holder,
        hint: format!(
            "it is not {} (another working directory and command): stop it by hand, or give the service its own port",
            svc.name
        ),
    }
}

/// Who serves a service's port, against the instance backout knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    /// The recorded instance (or a process of it) listens on the port.
    Ours { pid: i32, port: u16 },
    /// Something else listens there; `ours` is the recorded instance, if alive.
    Foreign { ours: Option<i32>, holder: Proc, port: u16 },
    /// Nothing listens on the port.
    Nobody { ours: Option<i32>, port: u16 },
    /// A process service without a port, or another kind: not known.
    Unknown,
}

impl Serving {
    pub fn is_ours(&self) -> bool {
        matches!(self, Serving::Ours { .. })
    }

    /// A sentence for a check's evidence or an error.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Serving::Ours { pid, port } => format!("port {port} is served by {name}'s pid {pid}, started by backout"),
            Serving::Foreign {
                ours: Some(o),
                holder,
                port,
            } => format!(
                "port {port} is served by {}, not by {name}'s pid {o} that backout started",
                holder.describe()
            ),
            Serving::Foreign {
                ours: None,
                holder,
                port,
            } => format!(
                "port {port} is served by {}, which backout did not start; {name} itself is not running",
                holder.describe()
            ),
            Serving::Nobody { ours: Some(o), port } => {
                format!("{name} runs (pid {o}) but nothing listens on port {port}")
            }
            Serving::Nobody { ours: None, port } => format!("{name} is not running; nothing listens on port {port}"),
            Serving::Unknown => format!("{name} has no port to check who serves it"),
        }
    }
}

/// Who serves `svc` now.
pub fn serving(svc: &Service, files: &ServiceFiles) -> Serving {
    let Some(port) = svc.port.filter(|_| svc.kind == crate::plan::ServiceKind::Process) else {
        return Serving::Unknown;
    };
    let ours = super::instance(files);
    let holders = procs::listeners(port);
    if let Some(i) = &ours
        && let Some(p) = holders.iter().find(|p| belongs(p, i))
    {
        return Serving::Ours { pid: p.pid, port };
    }
    match holders.into_iter().next() {
        Some(holder) => Serving::Foreign {
            ours: ours.map(|i| i.pid),
            holder,
            port,
        },
        None => Serving::Nobody {
            ours: ours.map(|i| i.pid),
            port,
        },
    }
}

/// How a started instance proved itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// It listens on the service's port.
    Listening(u16),
    /// It has no port to check: it stayed alive for [`SETTLE`].
    Alive,
}

/// How long an instance without a port must stay alive to count as started.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Whether the instance backout recorded for `svc` still lives; when it died,
/// the error says how and shows the end of its log.
pub fn check_alive(svc: &Service, files: &ServiceFiles, pid: i32) -> Result<(), ServiceError> {
    if super::instance(files).is_some_and(|i| i.pid == pid) {
        return Ok(());
    }
    Err(ServiceError::Exited {
        name: svc.name.clone(),
        pid,
        how: how_it_ended(pid),
        log: files.log.clone(),
        tail: procs::log_tail(&files.log, 8),
    })
}

/// Waits until the instance `pid` just started serves: it listens on the
/// service's port (or, without one, stays alive for [`SETTLE`]). Fails as soon
/// as it dies, with how it ended and the end of its log, and at `timeout` when
/// it never listened — naming whoever holds the port instead.
pub fn confirm(svc: &Service, files: &ServiceFiles, pid: i32, timeout: Duration) -> Result<Confirmed, ServiceError> {
    let began = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        check_alive(svc, files, pid)?;
        match svc.port {
            Some(port) => match serving(svc, files) {
                Serving::Ours { .. } => return Ok(Confirmed::Listening(port)),
                Serving::Foreign { holder, .. } if began.elapsed() >= timeout => {
                    return Err(ServiceError::PortHeld {
                        name: svc.name.clone(),
                        port,
                        holder: holder.describe(),
                        hint: format!("{} (pid {pid}) runs but cannot listen there", svc.name),
                    });
                }
                _ if began.elapsed() >= timeout => {
                    return Err(ServiceError::NotListening {
                        name: svc.name.clone(),
                        pid,
                        port,
                        timeout,
                        log: files.log.clone(),
                        tail: procs::log_tail(&files.log, 8),
                    });
                }
                _ => {}
            },
            None if began.elapsed() >= SETTLE.min(timeout) => return Ok(Confirmed::Alive),
            None => {}
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_matches_by_program_name_and_arguments() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert!(same_command(
            &s(&["python3", "app.py"]),
            &s(&["/usr/bin/python3", "app.py"])
        ));
        assert!(!same_command(&s(&["python3", "app.py"]), &s(&["python3", "other.py"])));
        assert!(!same_command(
            &s(&["python3", "app.py"]),
            &s(&["python3", "app.py", "-v"])
        ));
        assert!(!same_command(&s(&["python3"]), &s(&[])));
    }
}
