//! The demo loop, end to end, and the same loop driven by hand with the commands.

use crate::Project;

#[test]
fn demo_detects_rolls_back_verifies_and_reports() {
    let p = Project::new();
    let dir = p.path().join("demo");
    let r = p.run(&["demo", "--keep", dir.to_str().unwrap()]);
    r.success();
    let out = r.stdout();
    assert!(out.contains("verdict: api-errors: ROLLBACK"), "{out}");
    assert!(out.contains("time to detect:"), "{out}");
    assert!(out.contains("recovery-time objective: 30s (met)"), "{out}");

    // The report exists and names the rule that fired, with its values.
    let report = std::fs::read_to_string(dir.join(".backout/reports/inc-1/report.md")).unwrap();
    assert!(report.contains("rule `api-errors`"), "{report}");
    assert!(report.contains("api.error_rate > 10% over 2s"), "{report}");
    assert!(report.contains("git revert --no-edit"), "{report}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".backout/reports/inc-1/report.json")).unwrap())
            .unwrap();
    assert_eq!(json["verdict"]["rule"], "api-errors");
    assert_eq!(json["rollback"]["ok"], true);

    // History preserved: the bad commit is still there, reverted on top.
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let log = git(&["log", "--format=%s"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(subjects.len(), 3, "{log}");
    assert!(subjects[0].starts_with("Revert \"quotes 1.1.0"), "{log}");
    assert!(git(&["show", "HEAD:app.toml"]).contains("version = \"1.0.0\""));

    // The operation log has every stage, and no service was left running.
    let ops = p
        .cmd(&["log", "--json", "-n", "50"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let ops: serde_json::Value = serde_json::from_slice(&ops.stdout).unwrap();
    let kinds: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for k in ["demo", "checkpoint", "baseline", "watch", "rollback", "verify"] {
        assert!(kinds.contains(&k), "no {k} operation in {kinds:?}");
    }
    let pidfile = dir.join(".backout/run/quotes.pid");
    assert!(!pidfile.exists(), "the demo left its service running");
}

#[test]
fn demo_json_is_one_document() {
    let p = Project::new();
    let dir = p.path().join("d");
    let r = p.run(&["demo", "--json", "--keep", dir.to_str().unwrap()]);
    r.success();
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert!(v["time_to_detect_ms"].as_i64().unwrap() >= 0);
    assert!(v["time_to_recover_ms"].as_i64().unwrap() > 0);
    assert_eq!(v["incident"]["verdict"]["rule"], "api-errors");
    assert!(v["incident"]["timeline"].as_array().unwrap().len() >= 6);
}

#[test]
fn demo_cleans_up_its_temporary_directory() {
    let p = Project::new();
    let tmp = p.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let r = p.cmd(&["demo"]).env("TMPDIR", &tmp).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the demo left files behind"
    );
}

#[test]
fn the_demo_project_can_be_driven_by_hand() {
    // demo --keep leaves a project where every command works on its own.
    let p = Project::new();
    let dir = p.path().join("demo");
    p.run(&["demo", "--keep", dir.to_str().unwrap()]).success();
    let run = |args: &[&str]| crate::Run(p.cmd(args).current_dir(&dir).output().unwrap());
    run(&["check"]).success();
    // The demo rolled back to cp-1 and verified it: there is nothing to roll back.
    let dry = run(&["rollback", "--dry-run"]);
    dry.success();
    assert!(
        dry.stdout().contains("nothing to roll back: rollback op-") && dry.stdout().contains("--to cp-1"),
        "{}",
        dry.stdout()
    );
    // Named, the same rollback is planned again.
    let dry = run(&["rollback", "--dry-run", "--to", "cp-1"]);
    dry.success();
    assert!(dry.stdout().contains("1. git revert"), "{}", dry.stdout());
    // The service is stopped now, so verification fails with evidence.
    let v = run(&["verify"]);
    v.code_is(1);
    assert!(v.stdout().contains("[FAIL]"), "{}", v.stdout());
    // Without a terminal, a rollback needs --yes.
    run(&["rollback", "--to", "cp-1"]).code_is(2);
}
