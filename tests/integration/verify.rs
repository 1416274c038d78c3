//! `backout verify` checks on real targets, and `backout runbook`.

use crate::Project;

#[test]
fn verify_checks_files_commands_and_packages_with_evidence() {
    let p = Project::new();
    let venv = p.path().join("venv");
    let ok = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap()
        .success();
    assert!(ok, "python3 -m venv failed");
    // The interpreter's own pip is what a venv uses; ask the system one for its version.
    let pip = std::process::Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .unwrap();
    let pip_version = String::from_utf8_lossy(&pip.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    p.file(
        "src/rest_base.py",
        "a: Optional[RestManager]\nb = 1\nc: Optional[RestManager]\n",
    );
    p.file(
        "backout.toml",
        &format!(
            r#"[plan]
name = "v"
rto = "1m"
[verify]
checks = [
  {{ file = "src/rest_base.py", contains = "b = 1", not-contains = "session = None" }},
  {{ file = "src/rest_base.py", matches = 'Optional\[RestManager\]', count = 2 }},
  {{ run = ["sh", "-c", "echo '3 passed in 0.01s'"], output = '\d+ passed' }},
  {{ package = "pip", version = "{pip_version}" }},
]
"#
        ),
    );
    let r = p.run(&["verify"]);
    r.success();
    let out = r.stdout();
    assert!(
        out.contains("2 line(s) match /Optional\\[RestManager\\]/ (lines 1, 3)"),
        "{out}"
    );
    assert!(out.contains("3 passed in 0.01s"), "the test summary is kept: {out}");
    assert!(out.contains(&format!("pip {pip_version} installed")), "{out}");

    // Each kind fails with its evidence, and the exit code says so.
    let plan = std::fs::read_to_string(p.path().join("backout.toml")).unwrap();
    p.file(
        "backout.toml",
        &plan
            .replace("count = 2", "count = 3")
            .replace(r"'\d+ passed'", "'failed'")
            .replace(&format!("version = \"{pip_version}\""), "version = \"0.0.1\""),
    );
    let r = p.run(&["verify", "--json"]);
    r.code_is(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(v["passed"], false);
    let evidence: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["evidence"].as_str().unwrap())
        .collect();
    assert!(
        evidence[1].contains("2 line(s) match") && evidence[1].contains("expected 3"),
        "{evidence:?}"
    );
    assert!(evidence[2].contains("output does not match /failed/"), "{evidence:?}");
    assert!(
        evidence[3].contains(&format!("pip {pip_version} installed, expected 0.0.1")),
        "{evidence:?}"
    );
}

#[test]
fn an_http_check_can_bound_latency() {
    let p = Project::new();
    let dir = p.path().join("demo");
    p.run(&["demo", "--keep", dir.to_str().unwrap()]).success();
    // Start the demo service again (the demo stopped it) with a 300ms latency.
    std::fs::write(dir.join("slow.toml"), "version = \"9\"\nlatency-ms = 300\n").unwrap();
    let port = crate::closed_port();
    let mut app = p
        .cmd(&["demo-app", "--config", "slow.toml", "--port", &port.to_string()])
        .current_dir(&dir)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/quote");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    p.file(
        "backout.toml",
        &format!(
            "[plan]\nname = \"l\"\nrto = \"1m\"\n[verify]\nchecks = [{{ http = \"{url}\", max-latency = \"100ms\" }}]\n"
        ),
    );
    let r = p.run(&["verify"]);
    let _ = app.kill();
    let _ = app.wait();
    r.code_is(1);
    assert!(r.stdout().contains("slower than 100ms"), "{}", r.stdout());
}

#[test]
fn the_runbook_is_generated_from_the_plan_and_the_log() {
    let p = Project::new();
    let dir = p.path().join("demo");
    p.run(&["demo", "--keep", dir.to_str().unwrap()]).success();
    let md = crate::Run(p.cmd(&["runbook"]).current_dir(&dir).output().unwrap());
    md.success();
    let md = md.stdout();
    for needle in [
        "# Runbook: demo-quotes",
        "Recover within **30s**",
        "Measured: 1 rollback(s), 1 succeeded",
        "| api-errors | `api.error_rate > 10%` over 2s | **roll back** | 10 sample(s), 1s |",
        "git revert --no-edit <checkpoint HEAD>..HEAD",
        "kill -TERM -- -$(cut -d' ' -f1 .backout/run/quotes.pid)",
        "- [ ] file app.toml: `grep -F 'version = \"1.0.0\"' app.toml`",
        "every probe healthy, continuously, for 2s",
    ] {
        assert!(md.contains(needle), "runbook lacks {needle:?}:\n{md}");
    }
    let html = crate::Run(
        p.cmd(&["runbook", "--format", "html"])
            .current_dir(&dir)
            .output()
            .unwrap(),
    );
    html.success();
    assert!(html.stdout().starts_with("<!doctype html>"));
    assert!(html.stdout().contains("<h2>Rolling back</h2>"));
    assert!(!html.stdout().contains("<script"));
}

#[test]
fn the_runbook_lists_levels_options_reviews_and_the_decision_matrix() {
    let p = Project::new();
    p.git(&["init", "-q"]);
    p.file("backout.toml", include_str!("fixtures/runbook-levels.toml"));
    let r = p.run(&["runbook"]);
    r.success();
    let md = r.stdout();
    for needle in [
        "**Level 1 — everything**, target 5m",
        "### Level 2 — phase exchange-fix",
        "**Option A (default) — time 30s, risk low**: direct fix",
        "`backout rollback --phase exchange-fix --option B`",
        "git push origin",
        "### Level 3 — component mexc",
        "git checkout --no-overlay <checkpoint> -- src/mexc",
        "| +30m | +30m | `api.up` | investigate |",
        "| critical | any | rollback | at once |",
        "| otherwise |  | rollback |  |",
    ] {
        assert!(md.contains(needle), "runbook lacks {needle:?}:\n{md}");
    }
}
