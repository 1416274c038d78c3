//! `.backout/lock`: held by every command that changes something, so two of them
//! never run at once. A second one fails at once with who holds it and since when.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("locked by PID {pid} since {since}: another backout command ({command}) is changing this project")]
    Held {
        pid: String,
        since: String,
        command: String,
    },
    #[error("cannot open the lock file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock at `path` without waiting.
    pub fn acquire(path: &Path, command: &str, now: jiff::Timestamp) -> Result<Lock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        // A holder killed while it was spawning a child leaves the lock to that
        // child until it execs (close-on-exec): a few milliseconds. Only when the
        // recorded holder is dead is it worth waiting that out.
        let mut tries = 0;
        let mut result = file.try_lock();
        while matches!(result, Err(TryLockError::WouldBlock)) && tries < 100 && holder_is_dead(&mut file) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tries += 1;
            result = file.try_lock();
        }
        match result {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let mut parts = holder.trim().splitn(3, ' ');
                return Err(LockError::Held {
                    pid: parts.next().filter(|s| !s.is_empty()).unwrap_or("?").to_string(),
                    since: parts.next().unwrap_or("?").to_string(),
                    command: parts.next().unwrap_or("?").to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Who holds it, for the message a second command prints.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(
            file,
            "{} {} {command}",
            std::process::id(),
            now.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        .map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Lock { _file: file })
    }
}

/// Whether the pid written in the lock file names no live process.
fn holder_is_dead(file: &mut File) -> bool {
    let mut holder = String::new();
    if file.rewind().is_err() || file.read_to_string(&mut holder).is_err() {
        return false;
    }
    let _ = file.rewind();
    match holder.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let held = Lock::acquire(&path, "rollback", now).unwrap();
        match Lock::acquire(&path, "restore", now) {
            Err(LockError::Held { pid, since, command }) => {
                assert_eq!(pid, std::process::id().to_string());
                assert_eq!(since, "2023-11-14T22:13:20Z");
                assert_eq!(command, "rollback");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        Lock::acquire(&path, "restore", now).unwrap();
    }
}
