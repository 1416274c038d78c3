//! "Recovered and verified" is true (promise 9): backout knows which process
//! serves each service. A copy started by hand, as people start their apps, is
//! found by its port and adopted (stopped and restarted by the rollback); any
//! other process on the port is named and refused; a start counts only when
//! the new instance listens, a stop only when nothing does any more; a wait
//! fails at once, with the service's log, when the instance died; verify fails
//! when the answer comes from a process backout did not start; and a restore
//! restarts the services running the state it replaced.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::bin;
use crate::resume::{backout, sh};
use crate::services::{Cleanup, config, json, ok, version};

/// A process started by the test, as a person would start it, killed on drop.
pub struct ByHand(Child);

impl ByHand {
    /// `argv` in `dir`, its own session (as a shell's `&` job would be), waited
    /// for until it listens on `port`.
    pub fn start(dir: &Path, argv: &[&str], port: u16) -> ByHand {
        let mut c = Command::new(argv[0]);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let child = c
            .args(&argv[1..])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let listening = (0..1500).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(listening, "{argv:?} never listened on {port}");
        ByHand(child)
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Whether it still runs (reaped when it ended).
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for ByHand {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `pid` runs (a zombie waiting for init to reap it does not).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| !r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn plan(port: u16) -> String {
    format!(
        r#"
[plan]
name = "identity"
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

[verify]
checks = [{{ http = "http://127.0.0.1:{port}/health", status = 200 }}]
"#,
        exe = bin().display()
    )
}

/// A project at 1.0.0 with checkpoint cp-1, then 1.1.0 committed.
fn project() -> (tempfile::TempDir, u16) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = crate::closed_port();
    std::fs::write(p.join("backout.toml"), plan(port)).unwrap();
    std::fs::write(p.join("app.toml"), config("1.0.0")).unwrap();
    sh(p, "git init -q -b main && git add -A && git commit -qm 1.0.0");
    ok(p, &["checkpoint"]);
    std::fs::write(p.join("app.toml"), config("1.1.0")).unwrap();
    sh(p, "git commit -qam 1.1.0");
    (d, port)
}

/// The argv the plan starts the service with, as a person would type it.
fn by_hand_argv(port: u16) -> Vec<String> {
    vec![
        bin().display().to_string(),
        "demo-app".into(),
        "--config".into(),
        "app.toml".into(),
        "--port".into(),
        port.to_string(),
    ]
}

fn start_by_hand(p: &Path, port: u16) -> ByHand {
    let argv = by_hand_argv(port);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    ByHand::start(p, &argv, port)
}

fn served_by(p: &Path) -> serde_json::Value {
    json(p, &["service", "status"])[0].clone()
}

/// The issue's false "recovered and verified": the app was started by hand;
/// the rollback's stop stopped nothing, its start died on the port, and the
/// wait and checks passed against the old process still serving 1.1.0.
#[test]
fn a_rollback_stops_the_copy_started_by_hand_and_recovers_for_real() {
    let (d, port) = project();
    let p = d.path();
    let _cleanup = Cleanup(p.to_path_buf());
    let mut hand = start_by_hand(p, port);
    assert_eq!(version(port).as_deref(), Some("1.1.0"));
    let s = served_by(p);
    assert_eq!(s["status"]["state"], "foreign", "{s}");
    assert_eq!(s["status"]["pid"], hand.pid(), "{s}");

    let out = backout(p, &["rollback", "--yes", "-v"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("stopped pid {}", hand.pid())) && err.contains("started outside backout"),
        "the restart says it stopped the copy started by hand: {err}"
    );
    assert!(!hand.alive(), "the copy started by hand is stopped");
    assert_eq!(version(port).as_deref(), Some("1.0.0"), "the restored code serves");
    let s = served_by(p);
    assert_eq!(s["serving"], "ours", "{s}");
    assert_eq!(s["status"]["state"], "running", "{s}");
    assert!(err.contains("[pass] quotes serves port"), "{err}");
}

/// A process that is not the service (another program, another directory)
/// holds the port: backout names it and refuses, it never counts its answers.
#[test]
fn another_program_on_the_port_is_named_refused_and_never_counted() {
    let (d, port) = project();
    let p = d.path();
    let _cleanup = Cleanup(p.to_path_buf());
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("health"), "ok").unwrap();
    let port_s = port.to_string();
    let mut other = ByHand::start(
        elsewhere.path(),
        &["python3", "-m", "http.server", &port_s, "--bind", "127.0.0.1"],
        port,
    );
    // Its /health answers 200: the plan's own checks would pass for it.
    let out = backout(p, &["verify"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("[pass] GET"), "the http check alone passes: {stdout}");
    assert!(
        stdout.contains("[FAIL] quotes serves port") && stdout.contains(&format!("pid {}", other.pid())),
        "verify names the process that answers instead: {stdout}"
    );

    let out = backout(p, &["service", "start"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("port {port} is held by pid {}", other.pid())) && err.contains("http.server"),
        "{err}"
    );

    let out = backout(p, &["rollback", "--yes"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("restart quotes: FAILED") && err.contains(&format!("pid {}", other.pid())),
        "{err}"
    );
    assert!(other.alive(), "a process that is not the service is never stopped");
}

/// A start whose instance dies (here: on the port another program holds, as
/// in the issue, found after the spawn) fails at once with how it ended and
/// the end of its log; so does a stop that leaves the port served.
#[test]
fn a_start_that_dies_says_why_with_its_log() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = crate::closed_port();
    std::fs::write(
        p.join("backout.toml"),
        format!(
            r#"
[plan]
name = "dies"
[[service]]
name = "quotes"
start = ["sh", "-c", "echo 'Traceback: OSError: [Errno 98] Address already in use' >&2; exit 3"]
port = {port}
"#
        ),
    )
    .unwrap();
    let out = backout(p, &["service", "start", "quotes"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("exited with exit status 3"), "{err}");
    assert!(err.contains("Address already in use"), "the log's last lines: {err}");
    assert!(err.contains(".backout/run/quotes.log"), "{err}");
}

/// Waiting for a service whose instance dies while it is awaited fails at
/// once, naming how it ended, instead of polling until its timeout (10
/// minutes here).
#[test]
fn a_wait_fails_at_once_when_the_instance_dies() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = crate::closed_port();
    std::fs::write(
        p.join("backout.toml"),
        format!(
            r#"
[plan]
name = "dies-later"
[[service]]
name = "quotes"
start = ["sh", "-c", "echo starting; sleep 1; echo 'ImportError: no module named flask' >&2; exit 4"]
ready = "health"
[[probe]]
name = "health"
http = {{ url = "http://127.0.0.1:{port}/health", status = 200 }}
every = "5s"
timeout = "1s"
[rollback]
steps = [{{ service = "quotes", action = "restart" }}, {{ wait = "health", timeout = "10m" }}]
"#
        ),
    )
    .unwrap();
    sh(p, "git init -q -b main && git commit -q --allow-empty -m init");
    ok(p, &["checkpoint"]);
    let out = backout(p, &["rollback", "--yes", "--json"]).output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    // The restart waits for its ready probe: that is where the death is seen.
    let step = &j["rollback"]["steps"][0];
    let said = step["output"].as_str().unwrap_or_default();
    assert_eq!(step["ok"], false, "{j}");
    assert!(said.contains("exited with exit status 4"), "{said}");
    assert!(said.contains("ImportError: no module named flask"), "{said}");
    assert!(
        !said.contains("not healthy after"),
        "failed fast, not at its timeout: {said}"
    );
}

/// `backout service`: start, status, restart, stop, each checked; adopt an
/// instance started by hand that runs elsewhere than the plan says.
#[test]
fn service_commands_start_stop_restart_and_adopt() {
    let (d, port) = project();
    let p = d.path();
    let _cleanup = Cleanup(p.to_path_buf());
    let out = ok(p, &["service", "status"]);
    assert!(out.contains("quotes (process): stopped"), "{out}");

    let start = backout(p, &["service", "start"]).output().unwrap();
    let err = String::from_utf8_lossy(&start.stderr);
    assert!(start.status.success(), "{err}");
    assert!(
        err.contains(&format!("listening on port {port}")) && err.contains("ready"),
        "{err}"
    );
    assert_eq!(version(port).as_deref(), Some("1.1.0"));
    let first = served_by(p)["status"]["pid"].as_i64().unwrap();

    ok(p, &["service", "restart", "quotes"]);
    let second = served_by(p)["status"]["pid"].as_i64().unwrap();
    assert_ne!(first, second);
    assert!(!running(first as i32), "the first instance is gone");

    let stop = backout(p, &["service", "stop"]).output().unwrap();
    assert!(String::from_utf8_lossy(&stop.stderr).contains(&format!("quotes stopped (pid {second})")));
    assert_eq!(version(port), None);
    let again = backout(p, &["service", "stop"]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("was not running"));

    // Started by hand from another directory with another command line: not
    // taken for the service by itself, but adopted when asked.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(p.join("app.toml"), elsewhere.path().join("quotes.toml")).unwrap();
    let port_s = port.to_string();
    let exe = bin().display().to_string();
    let mut hand = ByHand::start(
        elsewhere.path(),
        &[&exe, "demo-app", "--port", &port_s, "--config", "quotes.toml"],
        port,
    );
    let refused = backout(p, &["service", "start"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("backout service adopt quotes"));
    let adopted = ok(p, &["service", "adopt", "quotes"]);
    assert!(adopted.contains(&format!("adopted pid {}", hand.pid())), "{adopted}");
    assert_eq!(served_by(p)["serving"], "ours");
    assert_eq!(served_by(p)["adopted"], true);
    ok(p, &["service", "stop", "quotes"]);
    assert!(!hand.alive(), "an adopted instance is stopped by backout");
    assert_eq!(
        backout(p, &["service", "start", "nope"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

/// A restore replaces what running services loaded: they are restarted onto
/// it (or, with --no-restart, named), and undo puts them back on the old state.
#[test]
fn a_restore_restarts_the_services_running_the_replaced_state() {
    let (d, port) = project();
    let p = d.path();
    let _cleanup = Cleanup(p.to_path_buf());
    ok(p, &["service", "start"]);
    assert_eq!(version(port).as_deref(), Some("1.1.0"));
    let dry = backout(p, &["restore", "cp-1", "--dry-run"]).output().unwrap();
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(said.contains("would be restarted") && said.contains("quotes"), "{said}");
    assert_eq!(version(port).as_deref(), Some("1.1.0"), "a dry run restarts nothing");

    let out = backout(p, &["restore", "cp-1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        version(port).as_deref(),
        Some("1.0.0"),
        "the service runs what was restored"
    );

    let out = backout(p, &["undo"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        version(port).as_deref(),
        Some("1.1.0"),
        "undo restarts it on the state it put back"
    );

    let out = backout(p, &["restore", "cp-1", "--no-restart"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("quotes still run what they loaded before the restore"),
        "{err}"
    );
    assert_eq!(version(port).as_deref(), Some("1.1.0"), "left running as asked");
}

/// Undo after an incident puts back the broken state the rollback was for:
/// it restarts the service on it and reports its health without requiring it
/// (exit 0), never re-runs a command capture's restore when the state already
/// matches (here it would fail, as a `pip install` without the network does),
/// and redo and undo then alternate as often as asked.
#[test]
fn undo_after_an_incident_reports_the_broken_state_and_redo_always_works() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = crate::closed_port();
    let _cleanup = Cleanup(p.to_path_buf());
    std::fs::write(
        p.join("backout.toml"),
        format!(
            r#"
[plan]
name = "undo-incident"
[capture]
git = true
commands = [{{ name = "config", save = ["cat", "app.toml"], restore = ["sh", "-c", "echo 'pip: no network' >&2; exit 1"] }}]
[[service]]
name = "quotes"
start = ["{exe}", "demo-app", "--config", "app.toml", "--port", "{port}"]
ready = "quote"
ready-timeout = "10s"
[[probe]]
name = "quote"
http = {{ url = "http://127.0.0.1:{port}/api/quote", status = 200 }}
every = "100ms"
timeout = "1s"
[rollback]
steps = [{{ git = "revert" }}, {{ service = "quotes", action = "restart" }}, {{ wait = "quote", timeout = "10s" }}]
"#,
            exe = bin().display()
        ),
    )
    .unwrap();
    std::fs::write(p.join("app.toml"), config("1.0.0")).unwrap();
    sh(p, "git init -q -b main && git add -A && git commit -qm 1.0.0");
    ok(p, &["checkpoint"]);
    let broken = config("1.1.0").replace("error-rate = 0", "error-rate = 1");
    std::fs::write(p.join("app.toml"), broken).unwrap();
    sh(p, "git commit -qam 1.1.0");
    // Started by hand, as it was deployed; the rollback adopts and stops it.
    let _hand = start_by_hand(p, port);
    assert_eq!(version(port).as_deref(), Some("1.1.0"));
    ok(p, &["rollback", "--yes"]);
    assert_eq!(version(port).as_deref(), Some("1.0.0"));

    for round in 0..2 {
        let out = backout(p, &["undo"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "round {round}: {err}");
        assert!(
            err.contains("not healthy in the state put back") && err.contains("status 500"),
            "round {round}: undo says the state it put back is unhealthy: {err}"
        );
        assert_eq!(
            version(port).as_deref(),
            Some("1.1.0"),
            "round {round}: the broken state is back"
        );
        let out = backout(p, &["redo"]).output().unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            version(port).as_deref(),
            Some("1.0.0"),
            "round {round}: redo reapplied the rollback"
        );
    }
}
