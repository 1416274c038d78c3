//! The process probe: resident memory, CPU use and open file descriptors of a
//! process (and by default its descendants), read straight from `/proc`.
//!
//! The process is found afresh at every sample — by pid, pid file, a plan
//! service's pid file or a command-line regex — so a service that dies and comes
//! back under a new pid is followed. CPU is the share of one core used between
//! two samples, from the kernel's utime + stime of every process in the tree.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use crate::oplog::SampleRow;
use crate::plan::{ProcessProbe, ProcessTarget};

/// CPU ticks by process, keyed by pid and start time so a recycled pid is not
/// mistaken for the old process.
type Ticks = HashMap<(i32, u64), u64>;

/// The CPU ticks seen at the previous sample, and when.
#[derive(Debug, Default)]
pub struct CpuState {
    last: Option<(Instant, Ticks)>,
}

/// What `/proc/PID/stat` says about one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub pid: i32,
    pub ppid: i32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks.
    pub start: u64,
    pub zombie: bool,
}

/// Parses `/proc/PID/stat`. The command name may hold spaces and parentheses:
/// fields are counted from the last `)`.
pub fn parse_stat(pid: i32, text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        pid,
        zombie: matches!(f.first(), Some(&"Z") | Some(&"X")),
        ppid: f.get(1)?.parse().ok()?,
        cpu_ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn stat(pid: i32) -> Option<Stat> {
    parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The pid the probe targets now, or why there is none.
pub fn find(target: &ProcessTarget) -> Result<i32, String> {
    let alive = |pid: i32| stat(pid).is_some_and(|s| !s.zombie);
    match target {
        ProcessTarget::Pid(pid) if alive(*pid) => Ok(*pid),
        ProcessTarget::Pid(pid) => Err(format!("process {pid} is not running")),
        ProcessTarget::Pidfile(path) | ProcessTarget::Service { pidfile: path, .. } => {
            let what = match target {
                ProcessTarget::Service { name, .. } => format!("service {name:?}"),
                _ => format!("pid file {}", path.display()),
            };
            from_pidfile(path).ok_or_else(|| format!("{what} is not running (no live pid in {})", path.display()))
        }
        ProcessTarget::Cmdline(re) => {
            let me = std::process::id() as i32;
            all_pids()
                .into_iter()
                .filter(|p| *p != me)
                .filter_map(|pid| {
                    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                    let s = stat(pid).filter(|s| !s.zombie)?;
                    re.is_match(line.trim_end()).then_some((s.start, pid))
                })
                .min()
                .map(|(_, pid)| pid)
                .ok_or_else(|| format!("no running process's command line matches /{}/", re.as_str()))
        }
    }
}

/// A pid file's live pid: its first word, and when a second word is there (the
/// kernel start time backout's services record), only if it still matches.
fn from_pidfile(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut words = text.split_whitespace();
    let pid: i32 = words.next()?.parse().ok()?;
    let s = stat(pid).filter(|s| !s.zombie)?;
    match words.next().and_then(|w| w.parse::<u64>().ok()) {
        Some(start) if start != s.start => None,
        _ => Some(pid),
    }
}

/// `root` and, when asked, every descendant.
fn tree(root: i32, children: bool) -> Vec<Stat> {
    let Some(r) = stat(root) else { return Vec::new() };
    if !children {
        return vec![r];
    }
    let stats: Vec<Stat> = all_pids().into_iter().filter_map(stat).collect();
    let mut by_parent: HashMap<i32, Vec<Stat>> = HashMap::new();
    for s in &stats {
        by_parent.entry(s.ppid).or_default().push(*s);
    }
    let mut out = vec![r];
    let mut seen = HashSet::from([root]);
    let mut i = 0;
    while i < out.len() {
        for c in by_parent.get(&out[i].pid).into_iter().flatten() {
            if seen.insert(c.pid) {
                out.push(*c);
            }
        }
        i += 1;
    }
    out
}

/// Resident set size in bytes, from `VmRSS` in `/proc/PID/status`.
fn rss(pid: i32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

fn open_fds(pid: i32) -> Option<f64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as f64)
}

pub fn sample(p: &ProcessProbe, cpu: &mut CpuState) -> SampleRow {
    let started = Instant::now();
    let mut row = SampleRow::default();
    let pid = match find(&p.target) {
        Ok(pid) => pid,
        Err(why) => {
            row.error = Some(why);
            cpu.last = None;
            return row;
        }
    };
    let procs: Vec<Stat> = tree(pid, p.children).into_iter().filter(|s| !s.zombie).collect();
    if procs.is_empty() {
        row.error = Some(format!("process {pid} exited while being measured"));
        return row;
    }
    let now = Instant::now();
    let ticks: Ticks = procs.iter().map(|s| ((s.pid, s.start), s.cpu_ticks)).collect();
    if let Some((then, prev)) = &cpu.last {
        let secs = now.duration_since(*then).as_secs_f64();
        if secs > 0.0 {
            // A process that appeared since the last sample used its whole life's ticks in between.
            let used: u64 = ticks
                .iter()
                .map(|(k, t)| t.saturating_sub(prev.get(k).copied().unwrap_or(0)))
                .sum();
            let hz = rustix::param::clock_ticks_per_second() as f64;
            row.fields.insert("cpu".into(), used as f64 / hz / secs);
        }
    }
    cpu.last = Some((now, ticks));
    let rss: f64 = procs.iter().filter_map(|s| rss(s.pid)).sum();
    let fds: f64 = procs.iter().filter_map(|s| open_fds(s.pid)).sum();
    row.fields.insert("rss".into(), rss);
    row.fields.insert("fds".into(), fds);
    row.fields.insert("pid".into(), f64::from(pid));
    row.fields.insert("processes".into(), procs.len() as f64);
    row.latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    row.ok = true;
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parses_names_with_spaces_and_parens() {
        let s = parse_stat(
            7,
            "7 (my (odd) name) S 1 7 7 0 -1 4194560 100 0 0 0 25 5 0 0 20 0 1 0 12345 1000 50",
        )
        .unwrap();
        assert_eq!((s.ppid, s.cpu_ticks, s.start, s.zombie), (1, 30, 12345, false));
    }

    /// A shell in its own process group, so the test can kill what it forked.
    fn spawn(script: &str) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sh")
            .args(["-c", script])
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn kill_group(child: &mut std::process::Child) {
        let pg = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
        child.wait().unwrap();
    }

    #[test]
    fn measures_a_process_tree_and_follows_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("api.pid");
        // A parent with a busy child: the tree's CPU shows the child's work.
        let mut first = spawn("(while :; do :; done) & wait");
        std::fs::write(&pidfile, format!("{}\n", first.id())).unwrap();
        let p = ProcessProbe {
            target: ProcessTarget::Pidfile(pidfile.clone()),
            children: true,
        };
        // The shell forks its child in its own time: wait for the tree to form.
        for _ in 0..200 {
            if sample(&p, &mut CpuState::default()).fields.get("processes") == Some(&2.0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut cpu = CpuState::default();
        let s = sample(&p, &mut cpu);
        assert!(s.ok, "{s:?}");
        assert!(s.fields["rss"] > 0.0 && s.fields["fds"] >= 3.0, "{s:?}");
        assert_eq!(s.fields["processes"], 2.0);
        assert!(!s.fields.contains_key("cpu"), "CPU needs two samples");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let s = sample(&p, &mut cpu);
        assert!(s.fields["cpu"] > 0.0, "a spinning child uses CPU: {s:?}");

        let alone = ProcessProbe {
            children: false,
            ..p.clone()
        };
        assert_eq!(sample(&alone, &mut CpuState::default()).fields["processes"], 1.0);

        // Dies (with its child): the sample fails, naming the pid file.
        kill_group(&mut first);
        let s = sample(&p, &mut cpu);
        assert!(!s.ok);
        assert!(s.error.unwrap().contains("api.pid"));
        // Restarts under a new pid: followed.
        let mut second = spawn("sleep 30");
        std::fs::write(&pidfile, format!("{}\n", second.id())).unwrap();
        let s = sample(&p, &mut cpu);
        assert!(s.ok, "{s:?}");
        assert_eq!(s.fields["pid"], f64::from(second.id()));
        kill_group(&mut second);
    }

    #[test]
    fn finds_by_command_line_and_checks_the_start_time() {
        let mut child = spawn("exec sleep 31.4159");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let p = ProcessProbe {
            target: ProcessTarget::Cmdline(regex::Regex::new(r"^sleep 31\.4159$").unwrap()),
            children: false,
        };
        let s = sample(&p, &mut CpuState::default());
        assert_eq!(s.fields.get("pid").copied(), Some(f64::from(child.id())), "{s:?}");

        // A pid file whose start time no longer matches names a recycled pid.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("svc.pid");
        std::fs::write(&f, format!("{} 1", child.id())).unwrap();
        assert!(find(&ProcessTarget::Pidfile(f.clone())).is_err());
        let start = stat(child.id() as i32).unwrap().start;
        std::fs::write(&f, format!("{} {start}", child.id())).unwrap();
        assert_eq!(find(&ProcessTarget::Pidfile(f)), Ok(child.id() as i32));
        kill_group(&mut child);
    }
}
