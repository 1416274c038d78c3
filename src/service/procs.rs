//! Who holds a TCP port, and what a process is: read from `/proc`, the
//! kernel's own account, so a service started by hand is seen as surely as
//! one backout started.
//!
//! A listening socket is a line in `/proc/net/tcp` or `/proc/net/tcp6` in
//! state `0A` (LISTEN) with the socket's inode; the processes holding it are
//! those with a `/proc/PID/fd/*` link to `socket:[INODE]`. A pre-forking
//! server (gunicorn, uvicorn's workers) has several processes on one socket:
//! all are listed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A process, as `/proc` describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// The kernel's start time (clock ticks since boot): with the pid, an identity
    /// a recycled pid cannot fake.
    pub start: u64,
    /// The command line, arguments joined by spaces (the name in brackets when
    /// unreadable, as `ps` shows kernel threads).
    pub command: String,
    pub argv: Vec<String>,
    /// Its working directory, when readable.
    pub cwd: Option<PathBuf>,
}

impl Proc {
    /// Reads a live, non-zombie process.
    pub fn read(pid: i32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat.get(open + 1..close)?.to_string();
        let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
        if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
            return None;
        }
        let ppid = fields.get(1)?.parse().ok()?;
        let pgid = fields.get(2)?.parse().ok()?;
        let start = fields.get(19)?.parse().ok()?;
        let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let command = if argv.is_empty() {
            format!("[{name}]")
        } else {
            argv.join(" ")
        };
        Some(Proc {
            pid,
            ppid,
            pgid,
            start,
            command,
            argv,
            cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
        })
    }

    /// `pid N (`command`)`, the command cut to a readable length.
    pub fn describe(&self) -> String {
        let mut c = self.command.clone();
        if c.chars().count() > 80 {
            c = c.chars().take(77).collect::<String>() + "...";
        }
        format!("pid {} (`{c}`)", self.pid)
    }
}

/// Every live process's pid.
fn pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

/// The inodes of the sockets listening on TCP `port`, on any address, IPv4 or IPv6.
fn listening_inodes(port: u16) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(text.lines().skip(1).filter_map(|l| listening_line(l, port)));
    }
    inodes
}

/// The inode of one `/proc/net/tcp*` line when it is a socket listening on `port`.
fn listening_line(line: &str, port: u16) -> Option<u64> {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    let f: Vec<&str> = line.split_whitespace().collect();
    let local = f.get(1)?;
    let state = f.get(3)?;
    if *state != "0A" {
        return None;
    }
    let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    if p != port {
        return None;
    }
    f.get(9)?.parse().ok().filter(|i| *i != 0)
}

/// The processes holding a socket that listens on TCP `port` (several for a
/// pre-forking server), lowest pid first. Processes of other users are not
/// seen unless backout runs as root.
pub fn listeners(port: u16) -> Vec<Proc> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return Vec::new();
    }
    let wanted: BTreeSet<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut found = Vec::new();
    for pid in pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().map(|s| wanted.contains(s)))
                .unwrap_or(false)
        });
        if holds && let Some(p) = Proc::read(pid) {
            found.push(p);
        }
    }
    found.sort_by_key(|p| p.pid);
    found
}

/// Whether backout sees every process's descriptors (it runs as root): then a
/// listening socket no process holds is one being closed, not someone else's.
pub fn sees_every_process() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether anything listens on TCP `port` (a socket exists, whoever holds it).
pub fn port_in_use(port: u16) -> bool {
    !listening_inodes(port).is_empty()
}

/// Whether `pid` is `ancestor` or descends from it.
pub fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut p = pid;
    // A chain longer than this is a loop in a racing /proc read.
    for _ in 0..64 {
        if p == ancestor {
            return true;
        }
        if p <= 1 {
            return false;
        }
        match Proc::read(p) {
            Some(proc) => p = proc.ppid,
            None => return false,
        }
    }
    false
}

/// `pid` and every live process descending from it, parents first.
pub fn tree(pid: i32) -> Vec<Proc> {
    let all: Vec<Proc> = pids().into_iter().filter_map(Proc::read).collect();
    let mut out: Vec<Proc> = all.iter().filter(|p| p.pid == pid).cloned().collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        out.extend(all.iter().filter(|p| p.ppid == parent && p.pid != parent).cloned());
        i += 1;
    }
    out
}

/// The last `n` lines of a service's log, for an error that says why it died.
pub fn log_tail(log: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(log) else {
        return String::new();
    };
    // Only the end matters; a long log is cut before it is decoded.
    let start = bytes.len().saturating_sub(64 * 1024);
    let text = String::from_utf8_lossy(&bytes[start..]);
    crate::exec::tail_lines(text.trim_end(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_line_gives_its_inode_for_its_port_only() {
        let v4 = "   1: 0100007F:2231 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listening_line(v4, 0x2231), Some(123456));
        assert_eq!(listening_line(v4, 80), None);
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(listening_line(&established, 0x2231), None);
        let v6 = "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 98765 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listening_line(v6, 8080), Some(98765));
    }

    #[test]
    fn the_process_holding_a_port_is_found_with_its_command_and_cwd() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = listeners(port);
        let me = std::process::id() as i32;
        assert_eq!(held.iter().map(|p| p.pid).collect::<Vec<_>>(), [me]);
        assert_eq!(held[0].cwd.as_deref(), std::env::current_dir().ok().as_deref());
        assert!(port_in_use(port));
        drop(listener);
        assert!(listeners(port).is_empty());
        assert!(!port_in_use(port));
    }

    #[test]
    fn a_tree_holds_the_descendants_and_descends_from_follows_parents() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let grandchild = (0..200)
            .find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                tree(pid).into_iter().find(|p| p.pid != pid)
            })
            .expect("the shell's sleep appears");
        assert!(descends_from(grandchild.pid, pid));
        assert!(descends_from(grandchild.pid, std::process::id() as i32));
        assert!(!descends_from(pid, grandchild.pid));
        let _ = std::process::Command::new("kill")
            .arg(grandchild.pid.to_string())
            .status();
        let _ = child.wait();
    }
}
