//! watch verdicts and exit codes against real targets.

use crate::{Project, closed_port};

fn plan(port: u16, rules: &str) -> String {
    format!(
        "[plan]\nname = \"w\"\nrto = \"1m\"\n[capture]\ngit = true\n[[probe]]\nname = \"api\"\nevery = \"100ms\"\ntimeout = \"300ms\"\nhttp = {{ url = \"http://127.0.0.1:{port}/\" }}\n{rules}"
    )
}

#[test]
fn alert_only_exits_with_the_rollback_triggered_code_and_explains() {
    let p = Project::new();
    p.file(
        "backout.toml",
        &plan(
            closed_port(),
            "[[rule]]\nname = \"down\"\nwhen = \"api.consecutive_failures >= 3\"\n",
        ),
    );
    let r = p.run(&["watch", "--alert-only", "--for", "30s"]);
    r.code_is(4);
    assert!(
        r.stdout()
            .contains("down: ROLLBACK: api.consecutive_failures is 3 >= 3"),
        "{}\n{}",
        r.stdout(),
        r.stderr()
    );
    assert!(r.stderr().contains("connection failed"), "{}", r.stderr());
}

#[test]
fn an_investigate_rule_alerts_but_never_ends_the_watch() {
    let p = Project::new();
    p.file(
        "backout.toml",
        &plan(
            closed_port(),
            "[[rule]]\nname = \"slow\"\nwhen = \"api.error_rate > 50%\"\nthen = \"investigate\"\n",
        ),
    );
    let r = p.run(&["watch", "--for", "1s"]);
    r.success();
    assert!(r.stdout().contains("slow: INVESTIGATE"), "{}", r.stdout());
}

/// A rule that changes in the same evaluation as the rollback verdict, even
/// one listed after it, is shown before the watch ends.
#[test]
fn every_change_of_the_evaluation_that_rolls_back_is_shown() {
    let p = Project::new();
    p.file(
        "backout.toml",
        &plan(
            closed_port(),
            "[[rule]]\nname = \"down\"\nwhen = \"api.consecutive_failures >= 1\"\nmin-samples = 1\n[[rule]]\nname = \"flaky\"\nwhen = \"api.error_rate > 0%\"\nthen = \"investigate\"\nmin-samples = 1\n",
        ),
    );
    let r = p.run(&["watch", "--for", "30s"]);
    r.code_is(4);
    let out = r.stdout();
    assert!(out.contains("down: ROLLBACK"), "{out}");
    assert!(out.contains("flaky: INVESTIGATE"), "{out}");
}

#[test]
fn json_lines_stream_samples_and_verdicts() {
    let p = Project::new();
    p.file(
        "backout.toml",
        &plan(closed_port(), "[[rule]]\nwhen = \"api.consecutive_failures >= 2\"\n"),
    );
    let r = p.run(&["watch", "--json", "--for", "30s"]);
    r.code_is(4);
    let events: Vec<serde_json::Value> = r.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().any(|e| e["event"] == "sample"));
    let v = events
        .iter()
        .find(|e| e["event"] == "verdict" && e["outcome"] == "rollback")
        .expect("a rollback verdict");
    assert_eq!(v["samples"], 2);
    assert_eq!(v["probe"], "api");
}

#[test]
fn auto_rollback_needs_a_checkpoint_first() {
    let p = Project::new();
    p.git(&["init", "-q"]);
    p.file("backout.toml", &plan(closed_port(), ""));
    let r = p.run(&["watch", "--auto-rollback", "--for", "1s"]);
    r.code_is(2);
    assert!(r.stderr().contains("backout checkpoint"), "{}", r.stderr());
}
