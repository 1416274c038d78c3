//! Failures explain themselves: a rollback that fails says which steps ran,
//! which did not, that verification did not run and why — on the console and
//! in the report, which agree and never say "met" — and the rollback a person
//! runs next, once the cause is fixed, continues the same incident.

use crate::bin;
use crate::resume::{backout, sh};
use crate::services::{Cleanup, config, ok, version};

fn plan(port: u16) -> String {
    format!(
        r#"
[plan]
name = "failures"
rto = "5m"
[capture]
git = true

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

[[rule]]
name = "errors"
when = "quote.consecutive_failures >= 3"
then = "rollback"

[rollback]
steps = [
  {{ git = "revert" }},
  {{ name = "migrate down", run = "test -f migration-fixed" }},
  {{ service = "quotes", action = "restart" }},
  {{ wait = "quote", timeout = "10s" }},
]

[verify]
checks = [
  {{ http = "http://127.0.0.1:{port}/api/quote", status = 200 }},
  {{ file = "app.toml", contains = "1.0.0" }},
]
"#,
        exe = bin().display()
    )
}

#[test]
fn a_failed_rollback_says_what_did_not_run_and_the_next_one_continues_its_incident() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = crate::closed_port();
    let _cleanup = Cleanup(p.to_path_buf());
    std::fs::write(p.join("backout.toml"), plan(port)).unwrap();
    std::fs::write(p.join("app.toml"), config("1.0.0")).unwrap();
    sh(p, "git init -q -b main && git add -A && git commit -qm 1.0.0");
    ok(p, &["service", "start"]);
    ok(p, &["deploy", "--mark", "--no-baseline"]);
    std::fs::write(
        p.join("app.toml"),
        config("1.1.0").replace("error-rate = 0", "error-rate = 1"),
    )
    .unwrap();
    sh(p, "git commit -qam 1.1.0");
    // Restarted onto the bad version; its readiness fails, which is the watch's to judge.
    let _ = backout(p, &["service", "restart"]).output().unwrap();

    let out = backout(p, &["watch", "--auto-rollback", "--for", "30s"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "rolled back, not recovered\n{stdout}\n{stderr}"
    );
    for want in [
        "step 2 migrate down: FAILED",
        "steps not run: 3. restart quotes, 4. wait for quote",
        "verification not run: the rollback failed at step 2 (migrate down), so none of the plan's 2 check(s) ran",
        "not recovered (rollback FAILED)",
    ] {
        assert!(
            stdout.contains(want) || stderr.contains(want),
            "{want:?}\n{stdout}\n{stderr}"
        );
    }
    assert!(!stdout.contains("met"), "nothing is 'met' when not recovered: {stdout}");
    let md = std::fs::read_to_string(p.join(".backout/reports/inc-1/report.md")).unwrap();
    for want in [
        "rollback FAILED",
        "| 3 | restart quotes | - | not run | - |",
        "verification not run: the rollback failed at step 2",
    ] {
        assert!(md.contains(want), "{want:?}\n{md}");
    }
    assert!(!md.contains("No `[verify]` checks"), "{md}");
    assert!(!md.contains("(met"), "{md}");

    // The cause fixed, the rollback run again by hand: the same incident.
    std::fs::write(p.join("migration-fixed"), "").unwrap();
    let out = backout(p, &["rollback", "--yes"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("part of inc-1"), "{stdout}");
    assert_eq!(version(port).as_deref(), Some("1.0.0"));
    assert!(!p.join(".backout/reports/inc-2").exists(), "no second incident");
    let md = std::fs::read_to_string(p.join(".backout/reports/inc-1/report.md")).unwrap();
    for want in [
        "recovered and verified",
        "attempt 1 of this incident: rollback (full) to cp-1 FAILED at step 2 (migrate down)",
        "rollback (attempt 2) end (ok)",
        "(deploy → healthy again)",
    ] {
        assert!(md.contains(want), "{want:?}\n{md}");
    }
}
