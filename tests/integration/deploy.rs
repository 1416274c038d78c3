//! Deploy markers and the default rollback target, for real: the embedded
//! demo service (`backout demo-app`) run by a start/stop script the way many
//! teams run theirs, deployed by a script that commits a bad version and
//! restarts it. `backout deploy` rolls back to the checkpoint before the
//! deploy and exits with its own code; a watch after `backout run --phase`
//! goes back to before the change, not to the broken state the phase's
//! checkpoint holds; after an incident, a dry run does not plan to revert the
//! revert; every figure counts from the deploy marker.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Project, Run, bin, closed_port};

fn config(version: &str, error_rate: f64) -> String {
    format!("version = \"{version}\"\nerror-rate = {error_rate}\nlatency-ms = 0\nmemory-mb = 0\n")
}

/// The service's own script: start in the background with a pid file, stop
/// and wait until the process is gone.
fn svc_script(port: u16) -> String {
    format!(
        r#"#!/bin/sh
cd "$(dirname "$0")"
case "$1" in
  start)
    "{bin}" demo-app --config app.toml --port {port} >> app.log 2>&1 &
    echo $! > app.pid ;;
  stop)
    if [ -f app.pid ]; then
      pid=$(cat app.pid)
      kill "$pid" 2>/dev/null
      i=0
      while [ $i -lt 200 ] && kill -0 "$pid" 2>/dev/null && ! grep -q ') Z' /proc/"$pid"/stat 2>/dev/null; do
        sleep 0.05; i=$((i+1))
      done
      rm -f app.pid
    fi ;;
  status)
    [ -f app.pid ] && kill -0 "$(cat app.pid)" 2>/dev/null ;;
  restart)
    sh "$0" stop && sh "$0" start ;;
esac
"#,
        bin = bin().display()
    )
}

/// A deploy script: commits version $1 (default 1.1.0), which fails half its
/// requests, restarts onto it, then does its last steps while it serves.
fn deploy_script(exit: i32) -> String {
    format!(
        "#!/bin/sh\nset -e\nv=${{1:-1.1.0}}\nprintf 'version = \"%s\"\\nerror-rate = 0.5\\nlatency-ms = 0\\nmemory-mb = 0\\n' \"$v\" > app.toml\ngit commit -qam \"quotes $v\"\nsh svc.sh restart\necho deployed $v\nsleep 1\nexit {exit}\n"
    )
}

fn plan(port: u16, verify_version: &str) -> String {
    format!(
        r#"[plan]
name = "deploys"
rto = "1m"

[capture]
git = true

[baseline]
for = "500ms"

[[service]]
name = "quotes"
kind = "command"
start = ["sh", "svc.sh", "start"]
stop = ["sh", "svc.sh", "stop"]
status = ["sh", "svc.sh", "status"]

[[probe]]
name = "health"
every = "100ms"
timeout = "1s"
http = {{ url = "http://127.0.0.1:{port}/health", status = 200 }}

[[probe]]
name = "api"
every = "100ms"
timeout = "1s"
http = {{ url = "http://127.0.0.1:{port}/api/quote", status = 200 }}

[[rule]]
name = "api-errors"
when = "api.error_rate > 10% over 2s"
min-samples = 10

[rollback]
steps = [
  {{ git = "revert" }},
  {{ service = "quotes", action = "restart" }},
  {{ wait = "health", timeout = "10s" }},
]

[[phase]]
name = "restart"
apply = [{{ service = "quotes", action = "restart" }}, {{ wait = "health", timeout = "10s" }}]

[verify]
checks = [
  {{ http = "http://127.0.0.1:{port}/api/quote", status = 200 }},
  {{ file = "app.toml", contains = 'version = "{verify_version}"' }},
]
"#
    )
}

/// Stops the service whatever a test did.
struct App(PathBuf);

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args(["svc.sh", "stop"])
            .current_dir(&self.0)
            .output();
    }
}

/// A git project with the service running, version 1.0.0, started by hand.
fn project(verify_version: &str) -> (Project, App, u16) {
    let p = Project::new();
    let port = closed_port();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.name", "t"]);
    p.git(&["config", "user.email", "t@t"]);
    p.file("backout.toml", &plan(port, verify_version))
        .file("app.toml", &config("1.0.0", 0.0))
        .file("svc.sh", &svc_script(port))
        .file("deploy.sh", &deploy_script(0))
        .file("deploy-fails.sh", &deploy_script(3))
        .file(".gitignore", ".backout/\napp.pid\napp.log\n");
    for s in ["deploy.sh", "deploy-fails.sh"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.path().join(s), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "quotes 1.0.0"]);
    let app = App(p.path().to_path_buf());
    sh(p.path(), "sh svc.sh start");
    wait_version(port, "1.0.0");
    (p, app, port)
}

fn sh(dir: &Path, script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
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
}

fn version(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let json: serde_json::Value = serde_json::from_str(body.rsplit("\r\n\r\n").next()?).ok()?;
    json["version"].as_str().map(String::from)
}

#[track_caller]
fn wait_version(port: u16, want: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        if version(port).as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the service never answered as {want} (it says {:?})", version(port));
}

fn all(r: &Run) -> String {
    r.stdout() + &r.stderr()
}

fn report(p: &Project, inc: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(p.path().join(format!(".backout/reports/{inc}/report.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn at(v: &serde_json::Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// `backout deploy -- ./deploy.sh` with a bad version: it checkpoints before
/// the deploy, watches, rolls back to that checkpoint, verifies, exits 6, and
/// prints the timeline and figures — counted from the deploy marker, which is
/// before the watch began (the deploy script runs on after the restart).
#[test]
fn a_bad_deploy_rolls_back_to_the_checkpoint_before_it_and_exits_rolled_back() {
    let (p, _app, port) = project("1.0.0");
    // An older checkpoint, so the target is chosen, not the only one there is.
    p.run(&["checkpoint", "--label", "last week"]).success();
    let r = p.run(&[
        "deploy",
        "--label",
        "1.1.0",
        "--auto-rollback",
        "--for",
        "60s",
        "--",
        "./deploy.sh",
    ]);
    r.code_is(6);
    let out = all(&r);
    assert!(
        out.contains("  | deployed 1.1.0"),
        "the deploy's output is shown:\n{out}"
    );
    assert!(
        out.contains("rollback target: cp-2: taken before the deploy of"),
        "{out}"
    );
    assert!(out.contains("rolling back to cp-2"), "{out}");
    assert!(out.contains("Timeline (since deploy)"), "{out}");
    assert!(out.contains("time to detect:"), "{out}");
    assert!(out.contains("(deploy → verdict)"), "{out}");
    assert!(out.contains("recovery-time objective: 1m (met)"), "{out}");
    wait_version(port, "1.0.0");
    assert!(
        std::fs::read_to_string(p.path().join("app.toml"))
            .unwrap()
            .contains("1.0.0")
    );

    // The figures count from the marker, not from the start of the watch.
    let j = report(&p, "inc-1");
    let deploy_at = at(&j, "deploy_at");
    assert_eq!(at(&j["deploy"], "at"), deploy_at);
    assert_eq!(j["deploy"]["checkpoint_id"], 2);
    let command_end = at(&j["deploy"], "command_ended_at");
    let watch_start = at(&j, "watch_started_at");
    let first_bad = at(&j, "first_bad_at");
    let verdict = at(&j, "verdict_at");
    let healthy = at(&j["rollback"], "healthy_at");
    // The deploy script slept a second after the restart: the marker is
    // before the watch, and the figures include that time.
    assert!(deploy_at < command_end && command_end <= watch_start, "{j}");
    assert!(
        watch_start <= first_bad && first_bad <= verdict && verdict <= healthy,
        "{j}"
    );
    let timeline = j["timeline"].as_array().unwrap();
    assert_eq!(at(&timeline[0], "at"), deploy_at);
    assert!(
        timeline[0]["what"]
            .as_str()
            .unwrap()
            .starts_with("deploy of 1.1.0: `./deploy.sh`"),
        "{j}"
    );
    assert!(
        timeline
            .iter()
            .any(|e| e["what"] == "watch start" && e["at"] == watch_start),
        "{j}"
    );
    let md = std::fs::read_to_string(p.path().join(".backout/reports/inc-1/report.md")).unwrap();
    assert!(md.contains("| time to detect (deploy → verdict) |"), "{md}");
    assert!(md.contains("| time to recover (deploy → healthy again) |"), "{md}");
}

/// A deploy command that fails is a rollback verdict of its own: alert only,
/// it exits 4 and the dry run names the deploy's checkpoint; with
/// --auto-rollback it rolls back and exits 6.
#[test]
fn a_failing_deploy_command_is_a_reason_to_roll_back() {
    let (p, _app, port) = project("1.0.0");
    let r = p.run(&["deploy", "--", "./deploy-fails.sh"]);
    r.code_is(4);
    assert!(
        all(&r).contains("deploy command: ROLLBACK: `./deploy-fails.sh` failed (exit code 3)"),
        "{}",
        all(&r)
    );
    let dry = p.run(&["rollback", "--dry-run"]);
    dry.success();
    assert!(
        dry.stdout().contains("why: cp-1: taken before the deploy of"),
        "{}",
        dry.stdout()
    );

    // Deploy again on top of the broken one: said, and its checkpoint (cp-2,
    // the broken state) is not where the rollback goes: cp-1 is.
    let r = p.run(&["deploy", "--auto-rollback", "--", "./deploy-fails.sh", "1.1.1"]);
    let out = all(&r);
    assert!(out.contains("was never concluded"), "{out}");
    assert!(
        out.contains("rollback target: cp-1: taken before the deploy of"),
        "{out}"
    );
    assert!(out.contains("cp-2 was taken during the deploy of"), "{out}");
    r.code_is(6);
    let j = report(&p, "inc-1");
    assert_eq!(j["verdict"]["rule"], "deploy command");
    assert!(at(&j, "deploy_at") <= at(&j, "verdict_at"));
    wait_version(port, "1.0.0");
}

/// The issue's story. The app runs; a checkpoint; a bad version is committed
/// by hand; `backout run --phase restart` restarts onto it (its checkpoint
/// holds the broken state); `watch --auto-rollback` used to go back to that
/// checkpoint ("nothing to revert") and stay broken. It goes back to the
/// checkpoint from before the change. Afterwards `rollback --dry-run` used to
/// plan to revert the revert (the phase's checkpoint was the newest); it says
/// there is nothing to roll back.
#[test]
fn run_phase_then_watch_goes_back_to_before_the_change_and_never_reverts_the_revert() {
    let (p, _app, port) = project("1.0.0");
    p.run(&["checkpoint"]).success();
    sh(
        p.path(),
        &format!(
            "printf '{}' > app.toml && git commit -qam 'quotes 1.1.0'",
            config("1.1.0", 0.5).replace('\n', "\\n")
        ),
    );
    let run = p.run(&["run", "--phase", "restart"]);
    run.success();
    wait_version(port, "1.1.0");

    let w = p.run(&["watch", "--auto-rollback", "--for", "60s"]);
    let out = all(&w);
    assert!(
        out.contains("rollback target: cp-1: taken before the deploy of"),
        "{out}"
    );
    assert!(out.contains("cp-2 was taken during the deploy"), "{out}");
    w.code_is(6);
    wait_version(port, "1.0.0");
    assert_eq!(p.git(&["show", "HEAD:app.toml"]), config("1.0.0", 0.0).trim_end());
    // The watch measured from the phase run, the deploy.
    let j = report(&p, "inc-1");
    assert_eq!(j["deploy"]["by"], "phase");
    assert!(at(&j, "deploy_at") < at(&j, "watch_started_at"), "{j}");

    let dry = p.run(&["rollback", "--dry-run"]);
    dry.success();
    assert!(
        dry.stdout().contains("nothing to roll back: rollback op-"),
        "{}",
        dry.stdout()
    );
    assert!(!dry.stdout().contains("git revert"), "{}", dry.stdout());
    let dry = p.run(&["rollback", "--dry-run", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&dry.stdout()).unwrap();
    assert_eq!(j["nothing_to_roll_back"], true);
    assert_eq!(j["checkpoint"], "cp-1");
    // A real rollback refuses the same way, and changes nothing.
    let r = p.run(&["rollback", "--yes"]);
    r.code_is(2);
    assert!(r.stderr().contains("--to cp-1"), "{}", r.stderr());
    assert_eq!(version(port).as_deref(), Some("1.0.0"));
}

/// Deployed by other means: `deploy --mark` records the checkpoint and the
/// marker; the watch counts from the mark and rolls back to its checkpoint.
/// When the recovery cannot be verified, the exit code says so (7) and no
/// figure says "met".
#[test]
fn a_marked_deploy_is_watched_from_the_mark_and_an_unverified_recovery_exits_7() {
    // The verify check wants a version nobody ships: recovery is never proven.
    let (p, _app, port) = project("9.9.9");
    let m = p.run(&["deploy", "--mark", "--label", "by CI"]);
    m.success();
    assert!(m.stdout().contains("the state before it is cp-1"), "{}", m.stdout());
    sh(
        p.path(),
        &format!(
            "printf '{}' > app.toml && git commit -qam 'quotes 1.1.0' && sh svc.sh restart",
            config("1.1.0", 0.5).replace('\n', "\\n")
        ),
    );
    wait_version(port, "1.1.0");
    let w = p.run(&["watch", "--auto-rollback", "--for", "60s"]);
    let out = all(&w);
    assert!(out.contains("watching the deploy of"), "{out}");
    assert!(
        out.contains("rollback target: cp-1: taken before the deploy of"),
        "{out}"
    );
    w.code_is(7);
    assert!(out.contains("not recovered (verification FAILED)"), "{out}");
    assert!(!out.contains("(met"), "{out}");
    let j = report(&p, "inc-1");
    assert_eq!(j["deploy"]["by"], "mark");
    assert!(at(&j, "deploy_at") < at(&j, "watch_started_at"), "{j}");
    let md = std::fs::read_to_string(p.path().join(".backout/reports/inc-1/report.md")).unwrap();
    assert!(
        md.contains("| recovery-time objective | 1m (not recovered: verification FAILED) |"),
        "{md}"
    );
}
