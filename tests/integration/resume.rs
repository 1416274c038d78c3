//! The rollback journal under fire: killed (SIGKILL) at every step boundary and
//! at hundreds of random moments, `backout rollback --resume` always ends in the
//! fully rolled-back state, never a mixture; `backout undo` then always returns
//! the exact state from before the rollback, uncommitted work included.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::bin;

/// A project whose rollback has four steps on real targets: git revert of two
/// commits, paths restored from a tag, a SQLite table dropped (with retries), a
/// process service restarted.
pub const PLAN: &str = r#"
[plan]
name = "resume"
rto = "1m"

[capture]
git = true

[[service]]
name = "worker"
start = ["sleep", "30"]
stop-timeout = "2s"

[rollback]
target = "30s"
steps = [
  { git = "revert" },
  { restore = ["conf"], from = "good" },
  { run = ["python3", "-c", "import sqlite3; c = sqlite3.connect('app.db'); c.execute('DROP TABLE IF EXISTS orders'); c.commit()"], retries = 2 },
  { service = "worker", action = "restart" },
]
"#;

pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn backout(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("BACKOUT_LOG")
        .env_remove("BACKOUT_TEST_CRASH_AT");
    c
}

/// Builds the project at `dir`: checkpoint, then the change the rollback undoes
/// (two commits, a new table), plus uncommitted work the rollback must keep.
fn setup(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("backout.toml"), PLAN).unwrap();
    sh(
        dir,
        "git init -q -b main
         mkdir conf
         echo 'version = 1' > app.txt
         echo 'mode = safe' > conf/settings
         echo 'readme' > readme.md
         sqlite3 app.db 'CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES (\"ada\");'
         printf '*.log\n' > .gitignore
         git add -A && git commit -qm init && git tag good",
    );
    let out = backout(dir, &["checkpoint"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sh(
        dir,
        "echo 'version = 2' > app.txt && git commit -qam 'v2'
         echo 'mode = fast' > conf/settings && echo extra > conf/extra && git add -A && git commit -qm 'fast mode'
         sqlite3 app.db 'CREATE TABLE orders (id INTEGER PRIMARY KEY); INSERT INTO orders DEFAULT VALUES;'
         echo 'my unsaved notes' > notes.txt
         echo 'edited, not committed' >> readme.md",
    );
}

/// Everything the rollback touches, as text: files (not .git, not .backout), the
/// HEAD tree, the branch, the commit count, the index, the database dump.
/// `exact` adds the HEAD commit id (undo must restore refs exactly; a resumed
/// revert makes new commits with their own timestamps).
pub fn state(dir: &Path, exact: bool) -> String {
    let mut files = Vec::new();
    collect(dir, dir, &mut files);
    files.sort();
    let mut s = String::new();
    for f in &files {
        let data = std::fs::read(dir.join(f)).unwrap_or_default();
        if f == "app.db" {
            continue;
        }
        s.push_str(&format!("{f}: {}\n", String::from_utf8_lossy(&data)));
    }
    s.push_str(&sh(
        dir,
        "git rev-parse 'HEAD^{tree}'; git symbolic-ref HEAD; git rev-list --count HEAD; git ls-files -s; sqlite3 app.db .dump",
    ));
    if exact {
        s.push_str(&sh(dir, "git rev-parse HEAD"));
    }
    s
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if dir == root && (name == ".git" || name == ".backout") {
            continue;
        }
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            collect(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// Kills processes a test left running in `dir` (services started by a run that
/// was then killed), found by their working directory.
pub fn reap(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd"))
            && cwd.starts_with(dir)
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Lays out a fresh copy of the template at `work` (same absolute path every
/// time, so the checkpoint's recorded work tree is this one).
fn fresh(template: &Path, work: &Path) {
    reap(work);
    let _ = std::fs::remove_dir_all(work);
    let ok = Command::new("cp")
        .args(["-a", template.to_str().unwrap(), work.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
}

struct Fixture {
    _tmp: tempfile::TempDir,
    template: PathBuf,
    work: PathBuf,
    before: String,
    before_exact: String,
    after: String,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let template = tmp.path().join("template");
    setup(&work);
    reap(&work);
    let before = state(&work, false);
    let before_exact = state(&work, true);
    std::fs::rename(&work, &template).unwrap();
    // The reference: one rollback nobody interrupts.
    fresh(&template, &work);
    let out = backout(&work, &["rollback", "--yes"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = state(&work, false);
    assert_ne!(before, after);
    assert!(
        after.contains("version = 1") && after.contains("mode = safe"),
        "{after}"
    );
    assert!(!after.contains("CREATE TABLE orders"), "{after}");
    assert!(
        after.contains("my unsaved notes") && after.contains("edited, not committed"),
        "{after}"
    );
    reap(&work);
    Fixture {
        _tmp: tmp,
        template,
        work,
        before,
        before_exact,
        after,
    }
}

impl Fixture {
    /// Brings an interrupted project to its end state: resume when a rollback was
    /// interrupted, start one when none began, nothing when one finished.
    fn resume(&self, why: &str) {
        let out = backout(&self.work, &["rollback", "--resume", "--yes"])
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("no interrupted rollback"), "{why}: resume failed: {err}");
            let log = backout(&self.work, &["log", "--json", "-n", "50"]).output().unwrap();
            let ops: serde_json::Value = serde_json::from_slice(&log.stdout).unwrap_or_default();
            let finished = ops
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["kind"] == "rollback" && o["outcome"] == "ok");
            if !finished {
                let out = backout(&self.work, &["rollback", "--yes"]).output().unwrap();
                assert!(out.status.success(), "{why}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        assert_eq!(state(&self.work, false), self.after, "{why}: not the rolled-back state");
        let out = backout(&self.work, &["undo"]).output().unwrap();
        assert!(
            out.status.success(),
            "{why}: undo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(state(&self.work, true), self.before_exact, "{why}: undo is not exact");
        reap(&self.work);
    }
}

#[test]
fn killed_at_every_step_boundary_resume_finishes_and_undo_is_exact() {
    let f = fixture();
    assert_eq!(state(&f.template, false).len(), f.before.len());
    for seq in 1..=4 {
        for at in ["begin", "end"] {
            fresh(&f.template, &f.work);
            let point = format!("{at}:{seq}");
            let out = backout(&f.work, &["rollback", "--yes"])
                .env("BACKOUT_TEST_CRASH_AT", &point)
                .output()
                .unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(9), "{point}: it did not die");
            f.resume(&point);
        }
    }
}

#[test]
fn killed_at_random_moments_resume_finishes_and_undo_is_exact() {
    let f = fixture();
    // A fixed seed, so a failure names a moment that can be replayed.
    let mut seed: u64 = 0x5eed_2026;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    for i in 0..200 {
        fresh(&f.template, &f.work);
        let delay = Duration::from_millis(next() % 400);
        let mut child = backout(&f.work, &["rollback", "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        f.resume(&format!("run {i}, killed after {delay:?}"));
    }
}

#[test]
fn an_undo_killed_at_random_moments_finishes_exactly_when_run_again() {
    let f = fixture();
    let mut seed: u64 = 0x0dd_2026;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    for i in 0..50 {
        fresh(&f.template, &f.work);
        let out = backout(&f.work, &["rollback", "--yes"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let delay = Duration::from_millis(next() % 200);
        let mut child = backout(&f.work, &["undo"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        // Run again: it finishes the interrupted undo, or undoes the rollback when
        // the killed one never began; when the killed one had finished there is
        // nothing left to undo.
        let out = backout(&f.work, &["undo"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("nothing to undo"),
            "undo {i}, killed after {delay:?}: {err}"
        );
        assert_eq!(
            state(&f.work, true),
            f.before_exact,
            "undo {i}, killed after {delay:?}: not the exact pre-rollback state"
        );
        reap(&f.work);
    }
}
