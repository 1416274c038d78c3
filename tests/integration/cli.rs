//! init, check, help, plan errors, lock, log.

use crate::{Project, bin, closed_port};

#[test]
fn init_detects_the_project_then_check_accepts_it() {
    let p = Project::new();
    p.git(&["init", "-q"]);
    p.file("requirements.txt", "flask==2.3.3\n")
        .file(
            "docker-compose.yml",
            "services:\n  api:\n    build: .\n  # a comment\n  db:\n    image: postgres\n",
        )
        .file(".venv/pyvenv.cfg", "home = /usr/bin\n");
    let r = p.run(&["init", "--health", "http://127.0.0.1:8000/health"]);
    r.success();
    assert!(r.stdout().contains("wrote"), "{}", r.stdout());
    let plan = std::fs::read_to_string(p.path().join("backout.toml")).unwrap();
    for needle in [
        "git = true",
        "requirements.txt",
        "api",
        "db",
        ".venv",
        "http://127.0.0.1:8000/health",
    ] {
        assert!(plan.contains(needle), "starter plan lacks {needle:?}:\n{plan}");
    }
    let c = p.run(&["check"]);
    c.success();
    assert!(c.stdout().contains("is valid"), "{}", c.stdout());
    assert!(c.stdout().contains("detects a total failure in"), "{}", c.stdout());

    // Never overwrites without --force.
    let again = p.run(&["init"]);
    again.code_is(2);
    assert!(again.stderr().contains("already exists"), "{}", again.stderr());
    p.run(&["init", "--force"]).success();
}

#[test]
fn check_is_found_upward_and_reports_json() {
    let p = Project::new();
    p.run(&["init", "--health", "http://127.0.0.1:9/health"]).success();
    std::fs::create_dir_all(p.path().join("a/b")).unwrap();
    let mut c = p.cmd(&["check", "--json"]);
    c.current_dir(p.path().join("a/b"));
    let out = c.output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["probes"][0]["name"], "health");
    assert_eq!(v["probes"][0]["every_ms"], 2000);
    // The starter's "down" rule needs no baseline: its time to detect is known.
    let down = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "down")
        .unwrap();
    assert!(down["detect_ms"].as_u64().unwrap() > 0);
}

#[test]
fn no_plan_is_a_usage_error_with_a_hint() {
    let p = Project::new();
    let r = p.run(&["check"]);
    r.code_is(2);
    assert!(r.stderr().contains("backout init"), "{}", r.stderr());
}

#[test]
fn a_malformed_plan_gives_the_exact_error() {
    let p = Project::new();
    p.file(
        "backout.toml",
        "[plan]\nname = \"x\"\nrto = \"5m\"\n\n[[probe]]\nname = \"api\"\nevery = \"1s\"\ntimeout = \"1s\"\nhttp = { url = \"http://127.0.0.1:9/\" }\n\n[[rule]]\nwhen = \"api.error_rate > 5% over 5 minutes\"\n",
    );
    let r = p.run(&["check"]);
    r.code_is(2);
    assert_eq!(
        r.stderr(),
        "error: expected a duration like 30s or 5m, found \"5 minutes\"\n  \
         --> backout.toml:12:34\n   |\n\
         12 | when = \"api.error_rate > 5% over 5 minutes\"\n   |                                  ^^^^^^^^^\n   \
         = hint: write `over 5m` or `over 10 samples`\n"
    );
}

#[test]
fn help_lists_every_command_with_an_example() {
    let mut text = String::new();
    let top = std::process::Command::new(bin()).arg("--help").output().unwrap();
    assert!(top.status.success());
    text.push_str(&String::from_utf8_lossy(&top.stdout));
    let commands = [
        "init",
        "check",
        "checkpoint",
        "checkpoints",
        "restore",
        "export",
        "fsck",
        "gc",
        "baseline",
        "deploy",
        "watch",
        "run",
        "rollback",
        "undo",
        "redo",
        "verify",
        "log",
        "demo",
        "demo-app",
    ];
    for c in commands {
        assert!(text.contains(&format!("  {c} ")), "--help does not list {c}");
        let out = std::process::Command::new(bin()).args([c, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(help.contains("Example: backout"), "{c} --help has no example:\n{help}");
        text.push_str(&format!("\n\n===== backout {c} --help =====\n{help}"));
    }
    insta::assert_snapshot!("cli_reference", text);
}

#[test]
fn a_second_mutating_command_is_refused_while_the_lock_is_held() {
    let p = Project::new();
    p.git(&["init", "-q"]);
    let port = closed_port();
    p.file(
        "backout.toml",
        &format!("[plan]\nname = \"x\"\nrto = \"1m\"\n[capture]\ngit = true\n[[probe]]\nname = \"api\"\nevery = \"100ms\"\ntimeout = \"100ms\"\nhttp = {{ url = \"http://127.0.0.1:{port}/\" }}\n"),
    );
    // A real backout process holding the lock: a baseline that samples for 20s.
    let mut holder = p
        .cmd(&["baseline", "--for", "20s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lock = p.path().join(".backout/lock");
    let held = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::read_to_string(&lock).is_ok_and(|s| s.starts_with(&holder.id().to_string()))
    });
    assert!(held, "the first command never took the lock");
    let r = p.run(&["checkpoint"]);
    let _ = holder.kill();
    let _ = holder.wait();
    r.code_is(3);
    assert!(
        r.stderr().contains(&format!("locked by PID {}", holder.id())),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("baseline"), "{}", r.stderr());
    // Once the holder is gone (killed, even), the lock is free.
    p.run(&["checkpoint"]).success();
}

#[test]
fn checkpoint_records_an_operation_listed_by_log() {
    let p = Project::new();
    p.git(&["init", "-q"]);
    p.file("a.txt", "a\n");
    p.git(&["add", "."]);
    p.git(&["commit", "-qm", "a"]);
    p.file(
        "backout.toml",
        "[plan]\nname = \"x\"\nrto = \"1m\"\n[capture]\ngit = true\n",
    );
    p.file("untracked.txt", "work in progress\n");
    let r = p.run(&["checkpoint", "--label", "before upgrade"]);
    r.success();
    assert!(r.stdout().contains("checkpoint cp-1 complete"), "{}", r.stdout());
    assert_eq!(
        p.git(&["show", "refs/backout/checkpoints/cp-1:untracked.txt"]),
        "work in progress"
    );
    let log = p.run(&["log", "--json"]);
    log.success();
    let v: serde_json::Value = serde_json::from_str(&log.stdout()).unwrap();
    assert_eq!(v[0]["kind"], "checkpoint");
    assert_eq!(v[0]["outcome"], "ok");
    assert_eq!(v[0]["args"]["label"], "before upgrade");
}

#[test]
fn secrets_from_the_environment_never_reach_output_or_state() {
    const SECRET: &str = "canary-5ecr3t-value";
    let port = closed_port();
    let p = Project::new().env("API_TOKEN", SECRET);
    p.file(
        "backout.toml",
        &format!(
            "[plan]\nname = \"x\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"100ms\"\ntimeout = \"200ms\"\nhttp = {{ url = \"http://u:${{API_TOKEN}}@127.0.0.1:{port}/?t=${{API_TOKEN}}\", headers = {{ Authorization = \"Bearer ${{API_TOKEN}}\" }} }}\n[[rule]]\nwhen = \"api.consecutive_failures >= 3\"\n[verify]\nchecks = [{{ run = [\"sh\", \"-c\", \"echo token=$0; exit 1\", \"${{API_TOKEN}}\"] }}]\n"
        ),
    );
    let mut all = String::new();
    for args in [
        &["check"][..],
        &["check", "--json"],
        &["watch", "--for", "2s"],
        &["verify"],
        &["verify", "--json"],
        &["log", "--steps"],
    ] {
        let r = p.run(args);
        all.push_str(&r.stdout());
        all.push_str(&r.stderr());
    }
    assert!(all.contains("********"), "expected masked output:\n{all}");
    assert!(!all.contains(SECRET), "secret leaked to the terminal:\n{all}");
    // Nothing under .backout holds it either (the WAL included).
    for entry in crate::walk(&p.path().join(".backout")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "secret in {}",
            entry.display()
        );
    }
}

#[test]
fn checkpoint_can_leave_a_named_backup_branch_and_tag() {
    let p = Project::new();
    p.git(&["init", "-q"]);
    p.file("a.txt", "a\n");
    p.git(&["add", "."]);
    p.git(&["commit", "-qm", "a"]);
    p.file(
        "backout.toml",
        "[plan]\nname = \"x\"\nrto = \"1m\"\n[capture]\ngit = true\n",
    );
    let head = p.git(&["rev-parse", "HEAD"]);
    let r = p.run(&[
        "checkpoint",
        "--branch",
        "backup/pre-phase-1-migration",
        "--tag",
        "stable-pre-flask-3",
    ]);
    r.success();
    assert!(
        r.stdout().contains("backup branch backup/pre-phase-1-migration"),
        "{}",
        r.stdout()
    );
    assert_eq!(p.git(&["rev-parse", "backup/pre-phase-1-migration"]), head);
    assert_eq!(p.git(&["rev-parse", "stable-pre-flask-3"]), head);
    // An existing name is never moved, and a bad one is refused, before any capture.
    let again = p.run(&["checkpoint", "--tag", "stable-pre-flask-3"]);
    again.code_is(2);
    assert!(again.stderr().contains("already exists"), "{}", again.stderr());
    p.run(&["checkpoint", "--branch", "bad..name"]).code_is(2);
    let list: serde_json::Value = serde_json::from_str(&p.run(&["checkpoints", "--json"]).stdout()).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "refused checkpoints captured nothing"
    );
}

/// Issue 17 item 8 / issue 18: a relative threshold on a metric whose baseline
/// is often 0 trips on a single event, and a window that holds fewer samples
/// than min-samples never decides; `check` says both, and says how long a rule
/// takes to detect on a fresh watch and with a full window.
#[test]
fn check_warns_about_rules_that_cannot_mean_what_they_say() {
    let p = Project::new();
    p.file(
        "backout.toml",
        &format!(
            "[plan]\nname = \"x\"\nrto = \"5m\"\n[[probe]]\nname = \"api\"\nevery = \"250ms\"\ntimeout = \"1s\"\nhttp = {{ url = \"http://127.0.0.1:{}/\" }}\n[[rule]]\nname = \"rel\"\nwhen = \"api.error_rate > baseline + 10% over 30s\"\n[[rule]]\nname = \"never\"\nwhen = \"api.error_rate > 5% over 10 samples\"\nmin-samples = 20\n[[rule]]\nname = \"slow\"\nwhen = \"api.latency.p95 > baseline + 50ms over 30s\"\nmin-samples = 100\n",
            closed_port()
        ),
    );
    let c = p.run(&["check"]);
    c.success();
    let err = c.stderr();
    assert!(
        err.contains("rule \"rel\": `baseline + 10%` is relative to a baseline that is often 0")
            && err.contains("api.error_rate > baseline + 2pp"),
        "{err}"
    );
    assert!(
        err.contains(
            "rule \"never\": its window holds 10 samples of \"api\" but min-samples asks for 20: it can never decide"
        ),
        "{err}"
    );
    let out = c.stdout();
    assert!(
        out.contains("slow → rollback: api.latency.p95 > baseline + 50ms over 30s; detects answers all beyond the limit in 100 sample(s) = 25s on a fresh watch, 7 sample(s) = 1.75s with a full window"),
        "{out}"
    );
    let j = p.run(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout()).unwrap();
    let slow = &v["rules"][2];
    assert_eq!(
        (
            &slow["window_samples"],
            &slow["detect_samples"],
            &slow["detect_full_window_samples"]
        ),
        (&serde_json::json!(120), &serde_json::json!(100), &serde_json::json!(7))
    );
}
