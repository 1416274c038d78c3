//! Watching beyond HTTP: tcp and log probes in a real watch, scheduled reviews
//! that survive a stop and `--resume`, `backout status`, a baseline taken by
//! `backout checkpoint`, and the prometheus probe against a real Prometheus.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::Project;

/// A listening socket the test holds: connects succeed (the kernel accepts).
fn listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn status(p: &Project) -> serde_json::Value {
    let r = p.run(&["status", "--json"]);
    r.success();
    serde_json::from_str(&r.stdout()).unwrap()
}

#[test]
fn reviews_run_on_schedule_and_a_resumed_watch_keeps_the_schedule() {
    let (_db, port) = listener();
    let p = Project::new();
    p.file("app.log", "");
    // time-scale 3600: an hour of the plan passes in a second.
    p.file(
        "backout.toml",
        &format!(
            r#"[plan]
name = "reviews"
rto = "1m"
time-scale = 3600
[[probe]]
name = "db"
every = "6m"
timeout = "1s"
tcp = {{ address = "127.0.0.1:{port}" }}
[[probe]]
name = "errors"
every = "6m"
timeout = "1s"
log = {{ path = "app.log", patterns = ["ERROR", "CRITICAL"] }}
[[review]]
at = "1h"
expect = ["db.up", "errors.count == 0 over 1h"]
[[review]]
name = "stability"
at = "4h"
expect = ["db.up"]
"#
        ),
    );
    // Ends between the two reviews (at 1s and 4s).
    let r = p.run(&["watch", "--for", "2500ms"]);
    r.success();
    assert!(
        r.stdout().contains("review +1h: passed (2 expectation(s) held)"),
        "{}",
        r.stdout()
    );
    let s = status(&p);
    assert_eq!(s["state"], serde_json::json!({"ended": "time_up"}), "{s}");
    assert_eq!(s["reviews"][0]["state"], "passed", "{s}");
    assert_eq!(s["reviews"][1]["state"], "pending", "{s}");
    let deploy = s["deploy_at"].clone();

    // Resumed: same deploy time; the first review is not run again, the second
    // runs at deploy + 4s, and with every review passed the watch succeeds.
    let started = Instant::now();
    let r = p.run(&["watch", "--resume", "--for", "30s"]);
    r.success();
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "ended on the last review, not on --for"
    );
    assert!(r.stdout().contains("review stability: passed"), "{}", r.stdout());
    assert!(!r.stdout().contains("review +1h"), "{}", r.stdout());
    assert!(r.stdout().contains("success"), "{}", r.stdout());
    let s = status(&p);
    assert_eq!(s["deploy_at"], deploy);
    assert_eq!(s["reviews"][1]["state"], "passed", "{s}");
    let text = p.run(&["status"]);
    assert!(text.stdout().contains("[passed]  stability"), "{}", text.stdout());
}

#[test]
fn a_failed_review_that_asks_for_rollback_ends_the_watch_with_code_4() {
    let p = Project::new();
    p.file("app.log", "");
    p.file(
        "backout.toml",
        r#"[plan]
name = "r"
rto = "1m"
time-scale = 3600
[[probe]]
name = "db"
every = "6m"
timeout = "1s"
tcp = { address = "127.0.0.1:1" }
[[review]]
at = "1h"
expect = ["db.up"]
then = "rollback"
"#,
    );
    let r = p.run(&["watch", "--alert-only", "--for", "30s"]);
    r.code_is(4);
    assert!(
        r.stdout().contains("review +1h: FAILED (1 of 1: db.up) → rollback"),
        "{}",
        r.stdout()
    );
    let s = status(&p);
    assert_eq!(s["reviews"][0]["state"], "failed", "{s}");
}

#[test]
fn an_error_in_the_log_trips_a_count_rule() {
    let p = Project::new();
    p.file("logs/app.log", "ERROR from before the watch is not counted\n");
    p.file(
        "backout.toml",
        r#"[plan]
name = "logs"
rto = "1m"
[[probe]]
name = "errors"
every = "100ms"
timeout = "1s"
log = { path = "logs/app.log", pattern = "ERROR|CRITICAL" }
[[rule]]
name = "errors"
when = "errors.count > 0 over 1m"
min-samples = 1
"#,
    );
    let child = p
        .cmd(&["watch", "--alert-only", "--for", "90s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first sample puts the cursor at the end of the file; keep logging
    // until the watch has seen an error (however slowly it started) and ended.
    let mut child = child;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p.path().join("logs/app.log"))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < until {
        f.write_all(b"INFO fine\nERROR database is gone\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = child.wait_with_output().unwrap();
    let r = crate::Run(out);
    r.code_is(4);
    assert!(
        r.stdout().contains("errors: ROLLBACK: errors.count is ") && r.stdout().contains(" > 0 over 1m"),
        "{}\n{}",
        r.stdout(),
        r.stderr()
    );
    // The cursor persisted under .backout/probes for a resumed watch.
    assert!(p.path().join(".backout/probes/errors.cursor").exists());
}

/// An HTTP server answering 200 after `delay`, on a thread the test leaves running.
fn slow_http(delay: Duration) -> u16 {
    let (l, port) = listener();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = std::io::Read::read(&mut c, &mut buf);
                std::thread::sleep(delay);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            });
        }
    });
    port
}

/// Regression: a review due moments after the start was judged as soon as any
/// probe had answered, so a slower probe it names was "UNKNOWN" and the review
/// failed (seed 003's +30m review at a steep time-scale).
#[test]
fn a_review_due_at_the_start_waits_for_every_probe_it_names() {
    let (_db, port) = listener();
    let slow = slow_http(Duration::from_millis(400));
    let p = Project::new();
    p.file(
        "backout.toml",
        &format!(
            r#"[plan]
name = "early-review"
rto = "1m"
time-scale = 3600
[[probe]]
name = "db"
every = "6m"
timeout = "1s"
tcp = {{ address = "127.0.0.1:{port}" }}
[[probe]]
name = "api"
every = "6m"
timeout = "2s"
http = {{ url = "http://127.0.0.1:{slow}/" }}
[[review]]
at = "1m"
expect = ["db.up", "api.up"]
"#
        ),
    );
    let r = p.run(&["watch", "--for", "3s"]);
    r.success();
    assert!(
        r.stdout().contains("review +1m: passed (2 expectation(s) held)"),
        "{}",
        r.stdout()
    );
}

#[test]
fn checkpoint_records_a_baseline_when_the_plan_asks() {
    let (_db, port) = listener();
    let p = Project::new();
    p.git(&["init", "-q"]);
    p.file(
        "backout.toml",
        &format!(
            r#"[plan]
name = "b"
rto = "1m"
[capture]
git = true
[baseline]
for = "500ms"
on-checkpoint = true
[[probe]]
name = "db"
every = "100ms"
timeout = "1s"
tcp = {{ address = "127.0.0.1:{port}" }}
"#
        ),
    );
    p.git(&["add", "."]);
    p.git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"]);
    let r = p.run(&["checkpoint"]);
    r.success();
    assert!(r.stdout().contains("checkpoint"), "{}", r.stdout());
    assert!(r.stdout().contains("db: "), "{}", r.stdout());
    let log = p.run(&["log", "--kind", "baseline", "--json"]);
    let ops: serde_json::Value = serde_json::from_str(&log.stdout()).unwrap();
    assert_eq!(ops.as_array().unwrap().len(), 1, "{ops}");
    assert_eq!(ops[0]["outcome"], "ok");
    // --json: one document with the baseline folded in (it printed two).
    let r = p.run(&["checkpoint", "--json"]);
    r.success();
    let doc: serde_json::Value =
        serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", r.stdout()));
    assert!(doc["checkpoint"].is_string(), "{doc}");
    assert_eq!(doc["baseline"][0][0], "db", "{doc}");
    assert!(doc["baseline"][0][1]["count"].as_u64().unwrap() >= 1, "{doc}");
}

/// The prometheus probe in a real watch against the Prometheus `scripts/test`
/// starts (BACKOUT_TEST_PROM_URL); required under CI=true.
#[test]
fn a_watch_queries_a_real_prometheus() {
    let url = match std::env::var("BACKOUT_TEST_PROM_URL") {
        Ok(u) if !u.is_empty() => u,
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("BACKOUT_TEST_PROM_URL is not set: scripts/test starts Prometheus")
        }
        _ => return,
    };
    let p = Project::new();
    p.file(
        "backout.toml",
        &format!(
            r#"[plan]
name = "prom"
rto = "1m"
[[probe]]
name = "targets"
every = "100ms"
timeout = "2s"
prometheus = {{ url = "{url}", query = "count(up == 1)" }}
[[rule]]
when = "targets.value < 1"
[success]
when = ["targets.value >= 1 over 3 samples"]
"#
        ),
    );
    let r = p.run(&["watch", "--json", "--for", "30s"]);
    r.success();
    let events: Vec<serde_json::Value> = r.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sample = events.iter().find(|e| e["event"] == "sample").unwrap();
    assert!(sample["value"].as_f64().unwrap() >= 1.0, "{sample}");
    assert!(events.iter().any(|e| e["event"] == "success"));
}

/// End to end on real parts: the demo app started here exposes /metrics, the
/// Prometheus of `scripts/test` discovers and scrapes it, and a watch whose rule
/// queries its error share rolls back once the scrapes show 50% errors.
#[test]
fn a_watch_rolls_back_on_a_prometheus_query_of_a_target_it_scrapes() {
    let (url, targets) = match (
        std::env::var("BACKOUT_TEST_PROM_URL"),
        std::env::var("BACKOUT_TEST_PROM_TARGETS"),
    ) {
        (Ok(u), Ok(t)) if !u.is_empty() && !t.is_empty() => (u, std::path::PathBuf::from(t)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("BACKOUT_TEST_PROM_URL / BACKOUT_TEST_PROM_TARGETS are not set: scripts/test starts Prometheus")
        }
        _ => return,
    };
    let p = Project::new();
    p.file(
        "app.toml",
        "version = \"1.1.0\"\nerror-rate = 0.5\nlatency-ms = 0\nmemory-mb = 0\n",
    );
    let port = crate::closed_port();
    let mut app = std::process::Command::new(crate::bin())
        .args(["demo-app", "--config", "app.toml", "--port", &port.to_string()])
        .current_dir(p.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let get = |path: &str| -> Option<String> {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let until = Instant::now() + Duration::from_secs(10);
    while get("/health").is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..10 {
        get("/api/quote").unwrap();
    }
    assert!(
        get("/metrics")
            .unwrap()
            .contains("backout_demo_requests_total{outcome=\"error\"} 5")
    );
    // Unique per run: Prometheus keeps series from earlier runs.
    let label = format!("t{}x{port}", std::process::id());
    let sd = targets.join(format!("{label}.json"));
    std::fs::write(
        &sd,
        format!(r#"[{{"targets": ["127.0.0.1:{port}"], "labels": {{"run": "{label}"}}}}]"#),
    )
    .unwrap();
    p.file(
        "backout.toml",
        &format!(
            r#"[plan]
name = "prom-e2e"
rto = "1m"
[[probe]]
name = "errors"
every = "200ms"
timeout = "2s"
prometheus = {{ url = "{url}", query = 'sum(backout_demo_requests_total{{run="{label}",outcome="error"}}) / sum(backout_demo_requests_total{{run="{label}"}})' }}
[[rule]]
name = "error-share"
when = "errors.value > 0.2"
min-samples = 1
"#
        ),
    );
    let r = p.run(&["watch", "--alert-only", "--for", "60s"]);
    let _ = std::fs::remove_file(&sd);
    let _ = app.kill();
    let _ = app.wait();
    r.code_is(4);
    assert!(
        r.stdout()
            .contains("error-share: ROLLBACK: errors.value.last is 0.5 > 0.2"),
        "{}\n{}",
        r.stdout(),
        r.stderr()
    );
}
