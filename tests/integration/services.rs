//! Process services for real (`backout demo-app`, whose /api/version tells
//! which code it runs): undo and redo bring every service a rollback touched
//! back to its state from before it — restarted onto the restored code and
//! waited for, or stopped — with degraded mode recorded accordingly; and a
//! backout killed (kill -9) between spawning a service and recording its pid
//! leaves no orphan behind once the rollback resumes or a new one starts.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::resume::{backout, sh};
use crate::{bin, closed_port};

fn plan(port: u16) -> String {
    format!(
        r#"
[plan]
name = "services"
[capture]
git = true

[[service]]
name = "quotes"
start = ["{exe}", "demo-app", "--config", "app.toml", "--port", "{port}"]
ready = "health"
ready-timeout = "10s"
stop-timeout = "2s"

[[probe]]
name = "health"
http = {{ url = "http://127.0.0.1:{port}/health", status = 200 }}
every = "100ms"
timeout = "1s"

[rollback]
steps = [
  {{ git = "revert" }},
  {{ service = "quotes", action = "restart" }},
  {{ wait = "health", timeout = "10s" }},
]

[[phase]]
name = "deploy"
apply = [{{ service = "quotes", action = "restart" }}, {{ wait = "health", timeout = "10s" }}]
rollback = [
  {{ name = "A: revert", default = true, steps = [
    {{ git = "revert" }},
    {{ service = "quotes", action = "restart" }},
    {{ wait = "health", timeout = "10s" }},
  ] }},
  {{ name = "C: degraded", steps = [{{ degraded = ["quotes"] }}] }},
]
"#,
        exe = bin().display()
    )
}

pub fn config(version: &str) -> String {
    format!("version = \"{version}\"\nerror-rate = 0\nlatency-ms = 0\nmemory-mb = 0\n")
}

/// Ends whatever service process a test left, however it ends.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for token in tokens_of(&self.0) {
            for pid in carriers(&token) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).output();
            }
        }
    }
}

/// Tokens the project's services were (or were being) started with: the pid
/// file's third word and the spawn intent.
fn tokens_of(dir: &Path) -> Vec<String> {
    let run = dir.join(".backout/run");
    let mut v = Vec::new();
    if let Ok(t) = std::fs::read_to_string(run.join("quotes.pid"))
        && let Some(tok) = t.split_whitespace().nth(2)
    {
        v.push(tok.to_string());
    }
    if let Ok(t) = std::fs::read_to_string(run.join("quotes.spawn")) {
        v.push(t.trim().to_string());
    }
    v
}

/// Live processes whose environment carries `BACKOUT_SERVICE_ID=token`.
fn carriers(token: &str) -> Vec<i32> {
    let needle = format!("BACKOUT_SERVICE_ID={token}");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')))
            .unwrap_or(true);
        if zombie {
            continue;
        }
        if std::fs::read(e.path().join("environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        {
            pids.push(pid);
        }
    }
    pids
}

pub fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .next()
        .is_some_and(|l| l.contains(" 200"))
        .then(|| body.rsplit("\r\n\r\n").next().unwrap_or("").trim().to_string())
}

pub fn version(port: u16) -> Option<String> {
    get(port, "/api/version")
}

pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = backout(dir, args).output().unwrap();
    assert!(
        out.status.success(),
        "backout {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(dir, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(".backout/run/quotes.pid"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn degraded(dir: &Path) -> Option<serde_json::Value> {
    let j = json(dir, &["status"]);
    j.get("degraded").cloned()
}

fn project() -> (tempfile::TempDir, u16) {
    let d = tempfile::tempdir().unwrap();
    let port = closed_port();
    std::fs::write(d.path().join("backout.toml"), plan(port)).unwrap();
    std::fs::write(d.path().join("app.toml"), config("1.0.0")).unwrap();
    sh(d.path(), "git init -q -b main && git add -A && git commit -qm 1.0.0");
    (d, port)
}

#[test]
fn undo_and_redo_bring_a_process_service_back_onto_the_code_they_restore() {
    let (d, port) = project();
    let p = d.path();
    let _cleanup = Cleanup(p.to_path_buf());
    ok(p, &["run", "--phase", "deploy"]);
    assert_eq!(version(port).as_deref(), Some("1.0.0"));
    // cp-1 was taken before that phase: version 1.0.0. Deploy 1.1.0.
    std::fs::write(p.join("app.toml"), config("1.1.0")).unwrap();
    sh(p, "git commit -qam 1.1.0");
    ok(p, &["run", "--phase", "deploy"]);
    assert_eq!(version(port).as_deref(), Some("1.1.0"));

    ok(p, &["rollback", "--to", "cp-1", "--yes"]);
    assert_eq!(version(port).as_deref(), Some("1.0.0"));
    let rolled_back = pid(p).unwrap();

    // Undo: the files come back and the service is restarted onto them, then
    // waited for (its readiness probe), so it answers at once.
    let j = json(p, &["undo"]);
    assert_eq!(
        crate::step_names(&j),
        ["put back cp-3", "restart quotes", "wait for health"],
        "{j}"
    );
    assert_eq!(version(port).as_deref(), Some("1.1.0"), "runs the restored code");
    assert!(std::fs::read_to_string(p.join("app.toml")).unwrap().contains("1.1.0"));
    assert_ne!(pid(p), Some(rolled_back), "a new process");

    let j = json(p, &["redo"]);
    assert_eq!(crate::step_names(&j)[1..], ["restart quotes", "wait for health"], "{j}");
    assert_eq!(version(port).as_deref(), Some("1.0.0"));
    // Undoing the redo: back to 1.1.0 again.
    ok(p, &["undo"]);
    assert_eq!(version(port).as_deref(), Some("1.1.0"));
    assert_eq!(degraded(p), None);

    // Degraded mode: the option stops quotes and records it; undo starts it
    // again on the same code and clears the record; redo stops it again.
    ok(
        p,
        &["rollback", "--phase", "deploy", "--option", "C: degraded", "--yes"],
    );
    assert_eq!(version(port), None, "degraded: quotes is stopped");
    assert_eq!(degraded(p).unwrap()["services"], serde_json::json!(["quotes"]));
    let status = ok(p, &["status"]);
    assert!(status.contains("degraded mode: quotes stopped by op-"), "{status}");
    let j = json(p, &["undo"]);
    assert_eq!(j["degraded"], serde_json::json!([]), "{j}");
    assert_eq!(version(port).as_deref(), Some("1.1.0"));
    assert_eq!(degraded(p), None, "degraded mode cleared");
    ok(p, &["redo"]);
    assert_eq!(version(port), None, "redo stops it again");
    assert_eq!(degraded(p).unwrap()["services"], serde_json::json!(["quotes"]));

    // A service stopped before a rollback is stopped again by its undo. The
    // rollback restarted quotes, so degraded mode ended; the undo brings it back.
    ok(p, &["rollback", "--to", "cp-1", "--yes"]);
    assert_eq!(version(port).as_deref(), Some("1.0.0"));
    assert_eq!(degraded(p), None, "the rollback brought quotes back up");
    let j = json(p, &["undo"]);
    assert_eq!(crate::step_names(&j)[1..], ["stop quotes"], "{j}");
    assert_eq!(version(port), None, "stopped, as before the rollback");
    assert_eq!(pid(p), None);
    assert_eq!(degraded(p).unwrap()["services"], serde_json::json!(["quotes"]));
    assert!(std::fs::read_to_string(p.join("app.toml")).unwrap().contains("1.1.0"));
}

/// Runs backout with the test hook that kills it (SIGKILL) right after it
/// spawned quotes, before the pid is recorded; returns the orphan's token.
fn crash_after_spawn(p: &Path, port: u16, args: &[&str]) -> (String, Vec<i32>) {
    let out = backout(p, args)
        .env("BACKOUT_TEST_CRASH_AT", "spawned:quotes")
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "killed by the hook: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pid(p), None, "the pid was never recorded");
    let token = std::fs::read_to_string(p.join(".backout/run/quotes.spawn"))
        .expect("the spawn intent is durable before the spawn")
        .trim()
        .to_string();
    // The orphan lives on and serves: without the token nothing would find it.
    let orphans = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            let c = carriers(&token);
            (!c.is_empty() && version(port).is_some()).then_some(c)
        })
        .expect("the orphan runs and serves");
    (token, orphans)
}

#[test]
fn a_service_spawned_just_before_a_kill_9_leaves_no_orphan() {
    let (d, port) = project();
    let p = d.path();
    let _cleanup = Cleanup(p.to_path_buf());
    // quotes 1.0.0 runs (cp-1 is taken before the phase), then 1.1.0 is committed.
    ok(p, &["run", "--phase", "deploy"]);
    std::fs::write(p.join("app.toml"), config("1.1.0")).unwrap();
    sh(p, "git commit -qam 1.1.0");

    // Killed between spawning quotes and recording its pid; resumed.
    let (token, orphans) = crash_after_spawn(p, port, &["rollback", "--to", "cp-1", "--yes"]);
    let out = ok(p, &["rollback", "--resume"]);
    assert!(out.contains("done (resumed)"), "{out}");
    assert!(carriers(&token).is_empty(), "the orphans {orphans:?} were ended");
    let live = pid(p).expect("the resumed rollback recorded its instance");
    let now: Vec<String> = tokens_of(p);
    assert_eq!(now.len(), 1, "no spawn intent left: {now:?}");
    assert_eq!(carriers(&now[0]), [live], "exactly one instance, the recorded one");
    assert_eq!(version(port).as_deref(), Some("1.0.0"));

    // An undo killed right after its spawn is finished by the next undo. (The
    // resumed rollback recorded quotes as running before its first run began.)
    let (token, _) = crash_after_spawn(p, port, &["undo"]);
    let j = json(p, &["undo"]);
    assert_eq!(j["resumed"], true, "{j}");
    assert!(carriers(&token).is_empty(), "the orphan was ended");
    let live = pid(p).unwrap();
    assert_eq!(carriers(&tokens_of(p)[0]), [live]);
    assert_eq!(
        version(port).as_deref(),
        Some("1.1.0"),
        "restarted onto the restored code"
    );

    // Killed again; this time a new rollback replaces the interrupted one: it
    // ends the orphan before its first step too.
    let (token, _) = crash_after_spawn(p, port, &["rollback", "--to", "cp-1", "--yes"]);
    ok(p, &["rollback", "--to", "cp-1", "--yes"]);
    assert!(carriers(&token).is_empty(), "the orphan was ended");
    let live = pid(p).unwrap();
    assert_eq!(carriers(&tokens_of(p)[0]), [live]);
    assert_eq!(version(port).as_deref(), Some("1.0.0"));
}
