//! Services backout starts, stops and restarts. Kind `process`: backout spawns the
//! command in its own process group, sends stdout and stderr to
//! `.backout/run/<name>.log`, and remembers it in `.backout/run/<name>.pid` (pid and
//! kernel start time, so a recycled pid is never mistaken for the service).
//! Kinds `compose`, `systemd` and `command` are driven through their own tools
//! ([`control`]).

pub mod control;

use std::path::{Path, PathBuf};
use std::process::Stdio;
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
    #[error("service {name:?}: `{command}` failed ({how})\n{output}")]
    Control {
        name: String,
        command: String,
        how: String,
        output: String,
    },
}

/// What a service is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Running {
        pid: i32,
    },
    /// Running under a manager (compose, systemd, a status command): no pid of ours.
    Active,
    Stopped,
    /// The kind has no way to tell (a command service without `status`).
    Unknown,
}

/// Where a service's pid file and log live.
#[derive(Debug, Clone)]
pub struct ServiceFiles {
    pub pidfile: PathBuf,
    pub log: PathBuf,
}

impl ServiceFiles {
    pub fn new(run_dir: &Path, name: &str) -> Self {
        ServiceFiles {
            pidfile: run_dir.join(format!("{name}.pid")),
            log: run_dir.join(format!("{name}.log")),
        }
    }
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

pub fn status(svc: &Service, files: &ServiceFiles) -> Status {
    match svc.kind {
        ServiceKind::Process => match read_pidfile(&files.pidfile) {
            Some((pid, started)) if start_time(pid) == Some(started) => Status::Running { pid },
            _ => Status::Stopped,
        },
        _ => control::status_blocking(svc),
    }
}

fn read_pidfile(path: &Path) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Starts the service unless it already runs; returns its pid.
pub fn start(svc: &Service, files: &ServiceFiles) -> Result<i32, ServiceError> {
    if let Status::Running { pid } = status(svc, files) {
        return Ok(pid);
    }
    let argv = svc.start.resolved();
    let io = |path: &Path| {
        let name = svc.name.clone();
        let path = path.to_path_buf();
        move |source| ServiceError::Io { name, path, source }
    };
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
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    let mut child = cmd.spawn().map_err(|source| ServiceError::Spawn {
        name: svc.name.clone(),
        command: svc.start.shown(),
        source,
    })?;
    let pid = child.id() as i32;
    // Reap the child when it exits while we still run, so it never lingers as a
    // zombie; if we exit first, init adopts it and the service keeps running.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let started = start_time(pid).unwrap_or(0);
    write_atomic(&files.pidfile, format!("{pid} {started}\n").as_bytes()).map_err(io(&files.pidfile))?;
    Ok(pid)
}

/// Stops the service's whole process group: TERM, then KILL after its stop timeout.
pub fn stop(svc: &Service, files: &ServiceFiles) -> Result<(), ServiceError> {
    if let Status::Running { pid } = status(svc, files) {
        let pg = rustix::process::Pid::from_raw(pid).expect("a running pid is positive");
        let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::TERM);
        if !wait_gone(pid, svc.stop_timeout) {
            let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
            if !wait_gone(pid, Duration::from_secs(5)) {
                return Err(ServiceError::StopTimeout {
                    name: svc.name.clone(),
                    pid,
                    timeout: svc.stop_timeout,
                });
            }
        }
    }
    let _ = std::fs::remove_file(&files.pidfile);
    Ok(())
}

pub fn restart(svc: &Service, files: &ServiceFiles) -> Result<i32, ServiceError> {
    stop(svc, files)?;
    start(svc, files)
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
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
            stop_timeout: Duration::from_millis(300),
            control: crate::plan::ServiceControl::Process,
        }
    }

    #[test]
    fn start_stop_restart_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let files = ServiceFiles::new(dir.path(), "t");
        let s = svc("echo started; exec sleep 300");
        let pid = start(&s, &files).unwrap();
        assert_eq!(status(&s, &files), Status::Running { pid });
        assert_eq!(start(&s, &files).unwrap(), pid, "start is idempotent");
        // Its output reaches the log file (polled: the shell may not have run yet).
        let logged = (0..250).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::fs::read_to_string(&files.log)
                .unwrap_or_default()
                .contains("started")
        });
        assert!(logged, "the service's stdout never reached {}", files.log.display());
        let pid2 = restart(&s, &files).unwrap();
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
        let pid = start(&s, &files).unwrap();
        stop(&s, &files).unwrap();
        assert!(start_time(pid).is_none());
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
