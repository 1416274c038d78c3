//! Services backout starts, stops and restarts. Kind `process`: backout spawns the
//! command in its own process group, sends stdout and stderr to
//! `.backout/run/<name>.log`, and remembers it in `.backout/run/<name>.pid` (pid,
//! kernel start time, so a recycled pid is never mistaken for the service, and
//! the instance's token).
//!
//! Every spawned instance carries a unique token in its environment
//! (`BACKOUT_SERVICE_ID=<name>-<random>`), which its descendants inherit. The
//! token is written to `.backout/run/<name>.spawn` *before* the spawn,
//! and that intent file is removed only once the pid file holds the instance. So
//! when backout is killed between the spawn and the pid file, the next start or
//! stop of the service (and every rollback, resumed or new, and every undo or
//! redo) finds the intent, looks the token up in `/proc/*/environ`, and ends
//! every process that carries it — no orphan survives to hold the port or run
//! the old code next to the new instance. A stop also ends the descendants of
//! the instance that left its process group, by the same token.
//!
//! Kinds `compose`, `systemd` and `command` are driven through their own tools
//! ([`control`]).

pub mod control;
pub mod identity;
pub mod procs;
pub mod ready;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::plan::{Service, ServiceKind};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot start service {name:?} (`{command}`)")]
    Spawn {
        name: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("service {name:?}: cannot write {path}")]
    Io {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("service {name:?} (pid {pid}) did not stop within {timeout:?}, even after KILL")]
    StopTimeout { name: String, pid: i32, timeout: Duration },
    #[error("service {name:?}: {count} process(es) carrying {SERVICE_ID_VAR}={token} survived TERM and KILL")]
    Orphans { name: String, token: String, count: usize },
    #[error("service {name:?}: port {port} is held by {holder}, which backout did not start\n  = hint: {hint}")]
    PortHeld {
        name: String,
        port: u16,
        holder: String,
        hint: String,
    },
    #[error("service {name:?} (pid {pid}) exited{how}{}", log_excerpt(.log, .tail))]
    Exited {
        name: String,
        pid: i32,
        how: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "service {name:?} (pid {pid}) runs but did not listen on port {port} within {}{}",
        crate::plan::units::format_duration(*.timeout),
        log_excerpt(.log, .tail)
    )]
    NotListening {
        name: String,
        pid: i32,
        port: u16,
        timeout: Duration,
        log: PathBuf,
        tail: String,
    },
    /// A restart whose stop went through and whose start did not: both said.
    #[error("{stopped}\n{failed}")]
    StartAfterStop { stopped: String, failed: Box<ServiceError> },
    #[error("service {name:?} did not become ready{}: {message}", .running.map_or(String::new(), |p| format!(" (it still runs, pid {p})")))]
    NotReady {
        name: String,
        running: Option<i32>,
        message: String,
    },
    #[error("service {name:?}: `{command}` failed ({how})\n{output}")]
    Control {
        name: String,
        command: String,
        how: String,
        output: String,
    },
}

/// "; last lines of LOG:" and the lines, or nothing when the log is empty.
fn log_excerpt(log: &Path, tail: &str) -> String {
    if tail.trim().is_empty() {
        return String::new();
    }
    let body: Vec<String> = tail.lines().map(|l| format!("  | {l}")).collect();
    format!("; the last lines of {}:\n{}", log.display(), body.join("\n"))
}

/// What a service is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// A process backout started or adopted.
    Running {
        pid: i32,
    },
    /// Running under a manager (compose, systemd, a status command): no pid of ours.
    Active,
    /// Not started by backout, yet something holds the service's port (an
    /// instance started by hand, or another program): not counted as the service.
    Foreign {
        pid: i32,
        port: u16,
    },
    Stopped,
    /// The kind has no way to tell (a command service without `status`).
    Unknown,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Running { pid } => write!(f, "running (pid {pid})"),
            Status::Active => f.write_str("running"),
            Status::Foreign { pid, port } => {
                write!(f, "not started by backout; pid {pid} holds its port {port}")
            }
            Status::Stopped => f.write_str("stopped"),
            Status::Unknown => f.write_str("unknown (its kind cannot tell)"),
        }
    }
}

/// The environment variable holding a spawned instance's token.
pub const SERVICE_ID_VAR: &str = "BACKOUT_SERVICE_ID";

/// Test hook (`BACKOUT_TEST_CRASH_AT=spawned:NAME`, set by the CLI): kill -9
/// backout right after it spawned service NAME, before the pid file is written.
pub static CRASH_AFTER_SPAWN: OnceLock<String> = OnceLock::new();

/// Where a service's pid file, log and spawn intent live.
#[derive(Debug, Clone)]
pub struct ServiceFiles {
    pub pidfile: PathBuf,
    pub log: PathBuf,
    /// The token of an instance being spawned, written before the spawn and
    /// removed once the pid file holds it.
    pub intent: PathBuf,
}

impl ServiceFiles {
    pub fn new(run_dir: &Path, name: &str) -> Self {
        ServiceFiles {
            pidfile: run_dir.join(format!("{name}.pid")),
            log: run_dir.join(format!("{name}.log")),
            intent: run_dir.join(format!("{name}.spawn")),
        }
    }
}

/// A fresh token for one instance of `name`.
fn new_token(name: &str) -> String {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let seed = format!("{name} {} {:?}", std::process::id(), std::time::SystemTime::now());
        bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..8]);
    }
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}-{:016x}", u64::from_le_bytes(bytes))
}

/// Live processes whose environment holds `BACKOUT_SERVICE_ID=token`, as (pid,
/// process group), found by reading `/proc/*/environ` (a process's environment
/// as it was exec'd; descendants inherit it). Zombies and this process are left out.
pub fn processes_with_token(token: &str) -> Vec<(i32, i32)> {
    let needle = format!("{SERVICE_ID_VAR}={token}");
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Unreadable (another user's process, or gone): not ours.
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        if let Some(pgid) = group_of(pid) {
            found.push((pid, pgid));
        }
    }
    found
}

/// The process group of a live, non-zombie `pid`.
fn group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(2)?.parse().ok()
}

/// Ends every process carrying `token`: TERM to each one's process group and to
/// itself, KILL to what is left after `grace`. Returns how many it found.
fn end_token(name: &str, token: &str, grace: Duration) -> Result<usize, ServiceError> {
    let found = processes_with_token(token);
    if found.is_empty() {
        return Ok(0);
    }
    let own_group = rustix::process::getpgrp().as_raw_nonzero().get();
    let signal_all = |procs: &[(i32, i32)], sig: rustix::process::Signal| {
        for &(pid, pgid) in procs {
            if pgid > 1
                && pgid != own_group
                && let Some(pg) = rustix::process::Pid::from_raw(pgid)
            {
                let _ = rustix::process::kill_process_group(pg, sig);
            }
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, sig);
            }
        }
    };
    // A process between releasing its memory and becoming a zombie has no
    // environment left to read, yet it is not gone: so the ones signalled are
    // also awaited by their start time until they are dead or zombies.
    let signalled: Vec<(i32, Option<u64>)> = found.iter().map(|&(pid, _)| (pid, start_time(pid))).collect();
    let wait = |timeout: Duration| -> Vec<(i32, i32)> {
        let until = crate::context::deadline(timeout);
        loop {
            let mut left = processes_with_token(token);
            for &(pid, started) in &signalled {
                if started.is_some() && start_time(pid) == started && !left.iter().any(|&(p, _)| p == pid) {
                    left.push((pid, group_of(pid).unwrap_or(0)));
                }
            }
            if left.is_empty() || Instant::now() >= until {
                return left;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    signal_all(&found, rustix::process::Signal::TERM);
    let left = wait(grace);
    if !left.is_empty() {
        signal_all(&left, rustix::process::Signal::KILL);
        let left = wait(Duration::from_secs(5));
        if !left.is_empty() {
            return Err(ServiceError::Orphans {
                name: name.to_string(),
                token: token.to_string(),
                count: left.len(),
            });
        }
    }
    Ok(found.len())
}

/// Ends what an interrupted start left: when the intent file names an instance
/// the pid file does not hold, every process carrying its token. Returns how
/// many it ended.
pub fn reap_interrupted_start(svc: &Service, files: &ServiceFiles) -> Result<usize, ServiceError> {
    let Ok(token) = std::fs::read_to_string(&files.intent) else {
        return Ok(0);
    };
    let token = token.trim();
    let held = read_pidfile(&files.pidfile).and_then(|p| p.token);
    let ended = if token.is_empty() || held.as_deref() == Some(token) {
        0
    } else {
        let n = end_token(&svc.name, token, svc.stop_timeout)?;
        if n > 0 {
            tracing::warn!(
                service = svc.name,
                token,
                processes = n,
                "ended the processes of a start that was interrupted before its pid was recorded"
            );
        }
        n
    };
    let _ = std::fs::remove_file(&files.intent);
    Ok(ended)
}

/// [`reap_interrupted_start`] for every process service of the plan: run before
/// a rollback, undo or redo changes anything.
pub fn reap_interrupted_starts(plan: &crate::plan::Plan, run_dir: &Path) -> Vec<String> {
    let mut notes = Vec::new();
    for svc in plan.services.iter().filter(|s| s.kind == ServiceKind::Process) {
        let files = ServiceFiles::new(run_dir, &svc.name);
        if !files.intent.exists() {
            continue;
        }
        match reap_interrupted_start(svc, &files) {
            Ok(0) => {}
            Ok(n) => notes.push(format!(
                "{}: ended {n} process(es) of a start interrupted before its pid was recorded",
                svc.name
            )),
            Err(e) => notes.push(format!("{e}")),
        }
    }
    notes
}

/// The kernel's start time of `pid` (field 22 of /proc/PID/stat), `None` when the
/// process is gone or a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// What the service is doing: for a process service, its recorded instance
/// when that still lives, else whoever holds its port ([`Status::Foreign`]).
pub fn status(svc: &Service, files: &ServiceFiles) -> Status {
    match svc.kind {
        ServiceKind::Process => match instance(files) {
            Some(i) => Status::Running { pid: i.pid },
            None => match svc
                .port
                .and_then(|port| Some((procs::listeners(port).into_iter().next()?, port)))
            {
                Some((holder, port)) => Status::Foreign { pid: holder.pid, port },
                None => Status::Stopped,
            },
        },
        _ => control::status_blocking(svc),
    }
}

/// The instance the pid file records, when it still lives.
pub fn instance(files: &ServiceFiles) -> Option<Instance> {
    read_pidfile(&files.pidfile).filter(|p| start_time(p.pid) == Some(p.started))
}

/// What a pid file holds: `PID START TOKEN` for an instance backout spawned
/// (older ones have no token), `PID START -` for one it adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub pid: i32,
    pub started: u64,
    pub token: Option<String>,
    /// Started outside backout and adopted: it has no token, and its process
    /// group may be the shell's that started it, so it is stopped by its tree.
    pub adopted: bool,
}

fn read_pidfile(path: &Path) -> Option<Instance> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let pid = parts.next()?.parse().ok()?;
    let started = parts.next()?.parse().ok()?;
    let (token, adopted) = match parts.next() {
        Some("-") => (None, true),
        t => (t.map(str::to_string), false),
    };
    Some(Instance {
        pid,
        started,
        token,
        adopted,
    })
}

/// What a start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new instance.
    Spawned(i32),
    /// An instance of backout's already ran.
    AlreadyRunning(i32),
    /// An instance started by hand held the port; backout adopted it.
    Adopted(procs::Proc),
}

impl Started {
    pub fn pid(&self) -> i32 {
        match self {
            Started::Spawned(p) | Started::AlreadyRunning(p) => *p,
            Started::Adopted(p) => p.pid,
        }
    }
}

/// Starts the service unless it already runs. An instance started outside
/// backout that holds the service's port is adopted when it is this service
/// (same working directory or command line; see [`identity::looks_like`]),
/// and refused otherwise: a second instance would die on the port, leaving
/// the old one to answer. A spawned instance still has to prove it serves:
/// [`identity::confirm`].
pub fn start(svc: &Service, files: &ServiceFiles) -> Result<Started, ServiceError> {
    if let Some(i) = instance(files) {
        return Ok(Started::AlreadyRunning(i.pid));
    }
    reap_interrupted_start(svc, files)?;
    if let Some(adopted) = identity::adopt_holder(svc, files)? {
        return Ok(Started::Adopted(adopted));
    }
    spawn(svc, files).map(Started::Spawned)
}

fn spawn(svc: &Service, files: &ServiceFiles) -> Result<i32, ServiceError> {
    let argv = svc.start.resolved();
    let io = |path: &Path| {
        let name = svc.name.clone();
        let path = path.to_path_buf();
        move |source| ServiceError::Io { name, path, source }
    };
    // The intent is written before the process exists: whatever happens to
    // backout next, the token finds the instance.
    let token = new_token(&svc.name);
    write_run_file(&files.intent, format!("{token}\n").as_bytes()).map_err(io(&files.intent))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.log)
        .map_err(io(&files.log))?;
    let log2 = log.try_clone().map_err(io(&files.log))?;
    let mut cmd = std::process::Command::new(&argv[0]);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.args(&argv[1..])
        .current_dir(&svc.cwd)
        .envs(svc.env.iter().map(|(k, v)| (k, &v.value)))
        .env(SERVICE_ID_VAR, &token)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    let mut child = cmd.spawn().map_err(|source| ServiceError::Spawn {
        name: svc.name.clone(),
        command: svc.start.shown(),
        source,
    })?;
    let pid = child.id() as i32;
    if CRASH_AFTER_SPAWN.get().is_some_and(|n| *n == svc.name) {
        // A real kill -9 between the spawn and the pid file: only the intent was written.
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::thread::sleep(Duration::from_secs(10));
    }
    // Reap the child when it exits while we still run, so it never lingers as a
    // zombie, and keep how it ended for the error that says why it died; if we
    // exit first, init adopts it and the service keeps running.
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            identity::note_exit(pid, status);
        }
    });
    let started = start_time(pid).unwrap_or(0);
    write_run_file(&files.pidfile, format!("{pid} {started} {token}\n").as_bytes()).map_err(io(&files.pidfile))?;
    let _ = std::fs::remove_file(&files.intent);
    Ok(pid)
}

/// What a stop did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// The instance of backout's that was stopped.
    pub instance: Option<i32>,
    /// Processes started outside backout that held the service's port and were
    /// stopped as this service (see [`identity::looks_like`]).
    pub foreign: Vec<procs::Proc>,
}

impl Stopped {
    /// One line per process started outside backout that was stopped.
    pub fn foreign_lines(&self, name: &str) -> Vec<String> {
        self.foreign
            .iter()
            .map(|p| format!("{name}: stopped {}, started outside backout", p.describe()))
            .collect()
    }

    /// "stopped (pid N)", "was not running", ...
    pub fn describe(&self, name: &str) -> String {
        let mut parts = Vec::new();
        if let Some(pid) = self.instance {
            parts.push(format!("{name} stopped (pid {pid})"));
        }
        parts.extend(self.foreign_lines(name));
        if parts.is_empty() {
            format!("{name} was not running; nothing to stop")
        } else {
            parts.join("\n")
        }
    }
}

/// Stops the service: its instance's whole process group (an adopted one's
/// process tree), TERM then KILL after its stop timeout; every process still
/// carrying its token; whatever an interrupted start left. Then, when the
/// service has a port, nothing may still listen there: a copy of this service
/// started by hand is stopped too, anything else is an error naming it — a stop
/// that leaves the port served has stopped nothing that matters.
pub fn stop(svc: &Service, files: &ServiceFiles) -> Result<Stopped, ServiceError> {
    reap_interrupted_start(svc, files)?;
    let recorded = read_pidfile(&files.pidfile);
    let mut report = Stopped::default();
    if let Some(i) = instance(files) {
        end_instance(svc, &i)?;
        report.instance = Some(i.pid);
    }
    if let Some(token) = recorded.and_then(|p| p.token) {
        end_token(&svc.name, &token, svc.stop_timeout)?;
    }
    let _ = std::fs::remove_file(&files.pidfile);
    report.foreign = identity::stop_holders(svc)?;
    Ok(report)
}

/// TERM to the instance (its group when it leads one, else its tree), KILL
/// after the stop timeout.
fn end_instance(svc: &Service, i: &Instance) -> Result<(), ServiceError> {
    // A spawned instance leads its own group. An adopted one may share the
    // group of the shell that started it: only its own tree is signalled then.
    let leads_group = !i.adopted || procs::Proc::read(i.pid).is_some_and(|p| p.pgid == i.pid);
    let signal = |sig: rustix::process::Signal| {
        if leads_group {
            if let Some(pg) = rustix::process::Pid::from_raw(i.pid) {
                let _ = rustix::process::kill_process_group(pg, sig);
            }
        } else {
            for p in procs::tree(i.pid) {
                if let Some(pid) = rustix::process::Pid::from_raw(p.pid) {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
        }
    };
    signal(rustix::process::Signal::TERM);
    if !wait_gone(i.pid, svc.stop_timeout) {
        signal(rustix::process::Signal::KILL);
        if !wait_gone(i.pid, Duration::from_secs(5)) {
            return Err(ServiceError::StopTimeout {
                name: svc.name.clone(),
                pid: i.pid,
                timeout: svc.stop_timeout,
            });
        }
    }
    Ok(())
}

pub fn restart(svc: &Service, files: &ServiceFiles) -> Result<(Stopped, Started), ServiceError> {
    let stopped = stop(svc, files)?;
    Ok((stopped, start(svc, files)?))
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let until = crate::context::deadline(timeout);
    loop {
        if start_time(pid).is_none() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes a pid or intent file whole (temp file, rename: a reader never sees
/// half of it) without fsync. They describe processes, and what survives a kill
/// -9 of backout is the page cache, so the order of the writes is all that
/// matters; after an OS crash or power cut the processes they name are gone too.
/// Two fsyncs less per start, on the recovery path.
fn write_run_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Durable write: temp file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Command, Text};

    fn svc(script: &str) -> Service {
        Service {
            name: "t".into(),
            kind: ServiceKind::Process,
            start: Command {
                argv: vec![Text::plain(script)],
                shell: true,
            },
            cwd: std::env::temp_dir(),
            env: vec![],
            ready: None,
            ready_timeout: Duration::from_secs(5),
            port: None,
            stop_timeout: Duration::from_millis(300),
            control: crate::plan::ServiceControl::Process,
        }
    }

    #[test]
    fn start_stop_restart_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let files = ServiceFiles::new(dir.path(), "t");
        let s = svc("echo started; exec sleep 300");
        let pid = start(&s, &files).unwrap().pid();
        assert_eq!(status(&s, &files), Status::Running { pid });
        assert_eq!(
            start(&s, &files).unwrap(),
            Started::AlreadyRunning(pid),
            "start is idempotent"
        );
        // Its output reaches the log file (polled: the shell may not have run yet).
        let logged = (0..250).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::fs::read_to_string(&files.log)
                .unwrap_or_default()
                .contains("started")
        });
        assert!(logged, "the service's stdout never reached {}", files.log.display());
        let pid2 = restart(&s, &files).unwrap().1.pid();
        assert_ne!(pid, pid2);
        stop(&s, &files).unwrap();
        assert_eq!(status(&s, &files), Status::Stopped);
        assert!(start_time(pid2).is_none());
    }

    #[test]
    fn a_service_ignoring_term_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let files = ServiceFiles::new(dir.path(), "t");
        let s = svc("trap '' TERM; sleep 300 & wait; sleep 300");
        let pid = start(&s, &files).unwrap().pid();
        stop(&s, &files).unwrap();
        assert!(start_time(pid).is_none());
    }

    fn alive(pid: i32) -> bool {
        start_time(pid).is_some()
    }

    #[test]
    fn each_instance_carries_its_token_and_a_stop_ends_descendants_that_left_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let files = ServiceFiles::new(dir.path(), "t");
        // The child moves to a session (and group) of its own: the group kill misses it.
        let s = svc("setsid sleep 300 & echo $! > escaped; exec sleep 300");
        let s = Service {
            cwd: dir.path().to_path_buf(),
            ..s
        };
        let pid = start(&s, &files).unwrap().pid();
        assert!(!files.intent.exists(), "the intent is gone once the pid is recorded");
        let token = read_pidfile(&files.pidfile).unwrap().token.unwrap();
        assert!(token.starts_with("t-"), "{token}");
        let escaped_file = dir.path().join("escaped");
        let escaped: i32 = (0..250)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                std::fs::read_to_string(&escaped_file).ok()?.trim().parse().ok()
            })
            .expect("the shell wrote its child's pid");
        let carrying: Vec<i32> = (0..100)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                processes_with_token(&token)
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect::<Vec<_>>()
            })
            .find(|v| v.contains(&pid) && v.contains(&escaped))
            .expect("both the instance and its escaped child carry the token");
        assert!(carrying.len() >= 2);
        stop(&s, &files).unwrap();
        assert!(
            !alive(pid) && !alive(escaped),
            "the escaped child was ended by its token"
        );
        assert!(processes_with_token(&token).is_empty());
    }

    #[test]
    fn a_start_interrupted_before_its_pid_was_recorded_leaves_no_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let files = ServiceFiles::new(dir.path(), "t");
        let s = svc("exec sleep 300");
        // What a kill -9 right after the spawn leaves: the intent, a process
        // carrying its token in a group of its own, and no pid file.
        let token = new_token("t");
        write_atomic(&files.intent, format!("{token}\n").as_bytes()).unwrap();
        let mut orphan = std::process::Command::new("sh");
        std::os::unix::process::CommandExt::process_group(&mut orphan, 0);
        let mut orphan = orphan
            .args(["-c", "sleep 300 & exec sleep 300"])
            .env(SERVICE_ID_VAR, &token)
            .spawn()
            .unwrap();
        let opid = orphan.id() as i32;
        assert!(
            (0..100).any(|_| {
                std::thread::sleep(Duration::from_millis(20));
                processes_with_token(&token).len() == 2
            }),
            "the orphan and its child carry the token"
        );
        let pid = start(&s, &files).unwrap().pid();
        let _ = orphan.wait();
        assert!(!alive(opid) || start_time(opid).is_none());
        assert!(
            processes_with_token(&token).is_empty(),
            "no process of the interrupted start is left"
        );
        assert!(!files.intent.exists());
        assert_eq!(status(&s, &files), Status::Running { pid });
        stop(&s, &files).unwrap();
    }

    #[test]
    fn a_recycled_pid_is_not_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let files = ServiceFiles::new(dir.path(), "t");
        // Our own pid with a wrong start time: must read as stopped, never be killed.
        std::fs::write(&files.pidfile, format!("{} 1\n", std::process::id())).unwrap();
        assert_eq!(status(&svc("true"), &files), Status::Stopped);
    }
}
