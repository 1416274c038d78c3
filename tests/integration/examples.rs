//! The seed examples under `examples/`, run end to end for real: the sample
//! system, its change, its failure, detection by `backout watch`, the seed's
//! preferred rollback, verification and the report; then the seed's alternatives.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Project;

/// The repository's `examples/NAME`.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

/// Copies a directory tree, leaving out what a run leaves behind.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        let n = name.to_string_lossy();
        if matches!(
            n.as_ref(),
            ".paas" | ".backout" | "__pycache__" | ".pytest_cache" | "venv" | "logs"
        ) {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A project holding a copy of the example, committed to a fresh repository.
fn project_from(name: &str, edit: impl Fn(&str) -> String) -> Project {
    let p = Project::new();
    copy_tree(&example(name), p.path());
    let plan = p.path().join("backout.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, edit(&text)).unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.name", "example"]);
    p.git(&["config", "user.email", "example@example.invalid"]);
    p.git(&["add", "-A"]);
    p.git(&["commit", "-q", "-m", "initial"]);
    p
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh").args(["-ec", script]).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One HTTP/1.0 GET on loopback: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Kills the processes a test started (the pidfile's backend, services) when it ends.
struct Reap(PathBuf);

impl Drop for Reap {
    fn drop(&mut self) {
        crate::resume::reap(&self.0);
    }
}

/// Seeds 000 and 003: POST /api/user/exchanges fails with a NameError after
/// commit 60745b8; the watch sees the 500s and rolls back with option A (a
/// one-line fix commit, pushed to the git-push PaaS); the monitoring plan's
/// reviews at +30m/+2h/+4h/+24h pass (time-scale 3600); then option B (full
/// revert and push) restores the exchanges and loses the Smart Scalper fix.
#[test]
fn exchange_endpoint_fix_deployed_by_git_push() {
    let port = crate::closed_port();
    let p = project_from("exchange-endpoint", |plan| {
        plan.replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"))
    })
    .env("EXCHANGE_TOKEN", "tok-7f3a");
    let dir = p.path().to_path_buf();
    let _reap = Reap(dir.clone());
    sh(&dir, &format!("sh scripts/setup-paas.sh {port} && git push -q paas main 2>&1"));
    let served = || json(&get(port, "/api/health").1)["revision"].as_str().unwrap().to_string();
    assert_eq!(served(), p.git(&["rev-parse", "HEAD"]), "the first push deployed HEAD");
    // Before 60745b8 the Smart Scalper fails (the AttributeError DL-033 fixes).
    let (status, body) = get(port, "/api/smart-scalper/analysis");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("manipulation_risk"), "{body}");

    p.run(&["check"]).success();
    p.run(&["checkpoint", "--label", "before DL-033"]).success();
    p.run(&["baseline"]).success();
    // The change: commit 60745b8, pushed.
    p.run(&["run", "--phase", "60745b8"]).success();
    let bad = p.git(&["rev-parse", "HEAD"]);
    assert_eq!(served(), bad);
    let smoke = Command::new("python3")
        .args(["scripts/smoke.py", &format!("http://127.0.0.1:{port}")])
        .current_dir(&dir)
        .output()
        .unwrap();
    let smoke = String::from_utf8_lossy(&smoke.stdout).into_owned();
    assert!(
        smoke.starts_with("HTTP 500") && smoke.contains("NameError: name 'session' is not defined"),
        "{smoke}"
    );

    // Detection and the preferred rollback (option A, the plan's [rollback] steps).
    let w = p.run(&["watch", "--auto-rollback", "--for", "1h"]);
    w.success();
    let out = w.stdout() + &w.stderr();
    assert!(out.contains("exchange-500: ROLLBACK: exchanges.error_rate is 100% > 5%"), "{out}");
    for check in [
        "[pass] syntax (py_compile)",
        "[pass] fix in place: 2 line(s) match",
        "[pass] POST /api/user/exchanges → 201: exit code 0: HTTP 201",
        "[pass] Smart Scalper preserved (manipulation_risk)",
    ] {
        assert!(out.contains(check), "{check}\n{out}");
    }
    // What serves: the fix commit on top of 60745b8, manipulation_risk kept.
    let head = p.git(&["rev-parse", "HEAD"]);
    assert_eq!(p.git(&["rev-parse", "HEAD~1"]), bad, "the fix is one commit on top of 60745b8");
    assert_eq!(
        p.git(&["log", "-1", "--format=%s"]),
        "fix: DL-034 Add missing session variable in exchanges.py add_user_exchange"
    );
    assert_eq!(p.git(&["diff", "--shortstat", "HEAD~1"]), "1 file changed, 1 insertion(+)");
    assert_eq!(served(), head, "the PaaS serves the fix");
    let (status, body) = get(port, "/api/smart-scalper/analysis");
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["manipulation_risk"].is_number(), "{body}");
    // Which rows: exchanges created through the fixed endpoint are in the database.
    let rows = sh(
        &dir,
        "python3 -c \"import sqlite3; print(sqlite3.connect('.paas/run/app.db').execute(\\\"SELECT count(*) FROM user_exchanges WHERE connection_name = 'test'\\\").fetchone()[0])\"",
    );
    assert!(rows.parse::<u32>().unwrap() >= 1, "the smoke check's row: {rows}");

    // The report: recovery time against the plan's RTO (10m).
    let r = p.run(&["report", "--format", "json"]);
    r.success();
    let report = json(&r.stdout());
    assert_eq!(report["rto_ms"], 600_000);
    let timing = &report["rollback"]["timing"];
    assert_eq!(timing["within_rto"], true, "{timing}");
    assert!(timing["total_ms"].as_i64().unwrap() <= 600_000, "{timing}");
    assert!(
        report["verdict"].to_string().contains("exchange-500"),
        "{}",
        report["verdict"]
    );

    // Seed 003: the monitoring plan after the fix; every review passes.
    let w = p.run(&["watch", "--for", "30h"]);
    w.success();
    let out = w.stdout();
    for review in [
        "review checkpoint 1 (+30m): immediate functionality: passed",
        "review checkpoint 2 (+2h): user flow: passed",
        "review checkpoint 3 (+4h): stability: passed",
        "review medium-term (+24h): exchange creation success rate >95%: passed",
    ] {
        assert!(out.contains(review), "{review}\n{out}");
    }
    let s = p.run(&["status", "--json"]);
    s.success();
    let s = json(&s.stdout());
    let reviews = s["reviews"].as_array().unwrap();
    assert_eq!(reviews.len(), 4, "{s}");
    assert!(reviews.iter().all(|r| r["state"] == "passed"), "{s}");

    // Option B: full revert and push. Exchanges work; the Smart Scalper breaks,
    // which the verification says (exit 1).
    let b = p.run(&["rollback", "--phase", "60745b8", "--option", "B: full revert", "--yes"]);
    b.code_is(1);
    let out = b.stdout() + &b.stderr();
    assert!(out.contains("[pass] POST /api/user/exchanges → 201"), "{out}");
    assert!(out.contains("[FAIL] Smart Scalper preserved (manipulation_risk)"), "{out}");
    assert!(out.contains("RTO 10m: met"), "{out}");
    let subjects = p.git(&["log", "-2", "--format=%s"]);
    assert!(
        subjects.contains("Revert \"fix: DL-033") && subjects.contains("Revert \"fix: DL-034"),
        "{subjects}"
    );
    assert_eq!(served(), p.git(&["rev-parse", "HEAD"]));
    let (status, body) = get(port, "/api/smart-scalper/analysis");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("'InstitutionalAnalysis' object has no attribute 'manipulation_risk'"),
        "{body}"
    );
}
