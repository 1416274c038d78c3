//! examples/microservices-migration (seed 001) end to end, for real: a docker
//! compose project (images built FROM scratch from busybox-static; no registry)
//! and a PostgreSQL database of its own in the test server. Phase 1 breaks the
//! gateway's metadata endpoint; the watch says roll back and option B rebuilds
//! only the gateway while the other services keep serving. A failing
//! ticker-metadata-service is then taken out by option C (degraded mode: the
//! gateway falls back to its direct query). Phases 2 and 3 follow; phase 3's
//! option B drops the new tables; the emergency total rollback puts code,
//! containers and database (rows included) back as they were before phase 1.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::example_dependency_upgrade::{copy_example, http_get, json};
use crate::resume::sh;
use crate::{Project, Run, closed_port};

/// `docker compose` when the plugin is there, else `docker-compose`.
fn compose() -> &'static str {
    if std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "docker compose"
    } else {
        "docker-compose"
    }
}

/// Takes the project down (containers and every image it built) and drops its
/// database however the test ends.
struct Cleanup {
    dir: PathBuf,
    project: String,
    admin_url: String,
    db: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args([
                "-c",
                // `down --rmi local` knows only the services of the compose file
                // as it is now: those a rollback removed from it go by name.
                &format!(
                    "{} -p {p} down --rmi local -v -t 1; docker images --format '{{{{.Repository}}}}' | grep -E '^{p}[-_]' | xargs -r docker rmi -f",
                    compose(),
                    p = self.project
                ),
            ])
            .current_dir(&self.dir)
            .output();
        let _ = std::process::Command::new("psql")
            .args([
                &self.admin_url,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db),
            ])
            .output();
    }
}

fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn tables(url: &str) -> String {
    psql(
        url,
        "select string_agg(table_name, ',' order by table_name) from information_schema.tables where table_schema = 'public'",
    )
}

/// The body of a 200 answer, None for anything else (or nothing).
fn get(port: u16, path: &str) -> Option<String> {
    http_get(port, path).and_then(|(status, body)| (status == 200).then_some(body))
}

fn wait_for(port: u16, path: &str, want: &str) {
    for _ in 0..100 {
        if get(port, path).is_some_and(|b| b.contains(want)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "127.0.0.1:{port}{path} never served {want:?} (last: {:?})",
        http_get(port, path)
    );
}

#[track_caller]
fn ok(r: Run) -> String {
    r.success();
    r.stdout() + &r.stderr()
}

/// Polls `check` every 20 ms on a thread until the returned closure is called;
/// that closure gives (polls, failures).
fn poll(check: impl Fn() -> bool + Send + 'static) -> impl FnOnce() -> (usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let (polls, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let thread = {
        let (stop, polls, failures) = (stop.clone(), polls.clone(), failures.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !check() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                polls.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    move || {
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        (polls.load(Ordering::Relaxed), failures.load(Ordering::Relaxed))
    }
}

#[test]
fn microservices_example_rolls_back_each_phase_and_the_whole_migration() {
    let Some(admin_url) = crate::server_url("BACKOUT_TEST_PG_URL") else {
        return;
    };
    assert!(
        Path::new("/bin/busybox").exists(),
        "busybox-static is missing: ./scripts/test installs it"
    );
    let p = Project::new();
    let dir = p.path().to_path_buf();
    let project = format!("tradeul{}", std::process::id());
    let db = format!("tradeul_{}", std::process::id());
    let db_url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    let p = p.env("TRADEUL_DB_URL", &db_url);
    let ports: Vec<(u16, u16)> = [8000, 8001, 8002, 8003, 8010, 8020]
        .into_iter()
        .map(|port| (port, closed_port()))
        .collect();
    let port = |of: u16| ports.iter().find(|(p, _)| *p == of).unwrap().1;
    let (gw, session, ticker, fundamental) = (port(8000), port(8002), port(8010), port(8020));
    let mut replace: Vec<(String, String)> = ports
        .iter()
        .map(|(from, to)| (format!("127.0.0.1:{from}"), format!("127.0.0.1:{to}")))
        .collect();
    replace.push(("project = \"tradeul\"".into(), format!("project = \"{project}\"")));
    replace.push(("project=tradeul".into(), format!("project={project}")));
    let replace: Vec<(&str, String)> = replace.iter().map(|(a, b)| (a.as_str(), b.clone())).collect();
    copy_example("microservices-migration", &dir, &replace);
    let _cleanup = Cleanup {
        dir: dir.clone(),
        project: project.clone(),
        admin_url: admin_url.clone(),
        db: db.clone(),
    };
    psql(&admin_url, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    psql(&admin_url, &format!("CREATE DATABASE {db}"));
    let out = std::process::Command::new("psql")
        .args([&db_url, "-v", "ON_ERROR_STOP=1", "-q", "-f", "db/schema.sql"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sh(&dir, "scripts/prepare.sh");
    p.git(&["init", "-q", "-b", "main"]);
    for (k, v) in [("user.name", "t"), ("user.email", "t@t")] {
        p.git(&["config", k, v]);
    }
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "feat: Add ticker metadata modal"]);
    let up = |what: &str| sh(&dir, &format!("{} -p {project} up -d --build {what} 2>&1", compose()));
    let container = |svc: &str| {
        sh(&dir, &format!("{} -p {project} ps -q {svc}", compose()))
            .trim()
            .to_string()
    };

    // The system before the migration, and its pre-requisites: a checkpoint of
    // git and the database.
    up("");
    wait_for(gw, "/health", "\"version\":\"1\"");
    wait_for(gw, "/api/v1/scanner/gappers_up", "gappers_up");
    wait_for(gw, "/api/v1/analytics/rvol", "rvol");
    wait_for(session, "/api/session/current", "MARKET_OPEN");
    ok(p.run(&["check"]));
    ok(p.run(&["checkpoint", "--branch", "backup/pre-phase-1-migration"]));
    let caps_before = psql(
        &db_url,
        "select string_agg(symbol || '=' || market_cap, ',' order by symbol) from ticker_metadata",
    );
    assert_eq!(tables(&db_url), "ticker_metadata,tickers");

    // Phase 1 with the seed's failure planted: the gateway calls a path the new
    // service does not serve, so the metadata endpoint answers 502.
    let url_file = dir.join("migration/phase-1/services/api-gateway/metadata_url");
    let url = std::fs::read_to_string(&url_file).unwrap();
    std::fs::write(&url_file, url.replace("/api/metadata", "/metadata")).unwrap();
    p.git(&["commit", "-qam", "phase 1 gateway: wrong metadata path"]);
    ok(p.run(&["run", "--phase", "ticker-metadata-service"]));
    assert!(get(ticker, "/health").is_some(), "ticker-metadata-service runs");
    assert_eq!(http_get(gw, "/api/v1/ticker/AAPL/metadata").map(|r| r.0), Some(502));

    // Detection: the watch says roll back (and, alert-only, leaves it to us).
    let w = p.run(&["watch", "--for", "60s"]);
    w.code_is(4);
    assert!(w.stdout().contains("metadata-errors: ROLLBACK"), "{}", w.stdout());

    // Option B: only the gateway, while scanner and session are polled throughout.
    let (scanner_before, ticker_before) = (container("scanner"), container("ticker-metadata-service"));
    let done = poll(move || get(session, "/api/session/current").is_some() && get(ticker, "/health").is_some());
    let j = json(p.run(&[
        "rollback",
        "--phase",
        "ticker-metadata-service",
        "--option",
        "B: solo api-gateway",
        "--yes",
        "--json",
    ]));
    let (polls, failures) = done();
    assert_eq!(j["rollback"]["ok"], true, "{j}");
    assert_eq!(j["rollback"]["timing"]["within_rto"], true, "{j}");
    assert!(polls > 5);
    assert_eq!(failures, 0, "the other services failed while the gateway rolled back");
    assert_eq!(container("scanner"), scanner_before, "scanner was not touched");
    assert_eq!(
        container("ticker-metadata-service"),
        ticker_before,
        "ticker-metadata-service was not touched"
    );
    assert!(get(gw, "/health").unwrap().contains("\"version\":\"1\""));
    assert!(
        get(gw, "/api/v1/ticker/AAPL/metadata")
            .unwrap()
            .contains("\"source\":\"direct\"")
    );
    let v = ok(p.run(&["verify"]));
    assert!(v.contains("[pass] modal de metadata funciona"), "{v}");
    // The incident report of that rollback, measured against the plan's RTO.
    let report = json(p.run(&["report", "--json"]));
    assert_eq!(report["rto_ms"], 300_000, "{report}");
    assert_eq!(report["rollback"]["timing"]["within_rto"], true, "{report}");
    assert_eq!(
        report["rollback"]["checkpoint"], "cp-2",
        "the pre-phase-1 checkpoint `run` took"
    );

    // The gateway fixed forward (right path): metadata through the new service.
    p.git(&["reset", "-q", "--hard", "HEAD"]);
    std::fs::write(dir.join("services/api-gateway/metadata_url"), url).unwrap();
    p.git(&["commit", "-qam", "gateway: /api/metadata"]);
    up("api-gateway");
    wait_for(
        gw,
        "/api/v1/ticker/AAPL/metadata",
        "\"source\":\"ticker-metadata-service\"",
    );

    // Option C: the new service itself fails; degraded mode stops it and the
    // gateway falls back to its direct query; everything else keeps serving.
    let routes = dir.join("services/ticker-metadata-service/routes.sh");
    let good = std::fs::read_to_string(&routes).unwrap();
    std::fs::write(
        &routes,
        good.replace(
            r#"respond "200 OK" "$(cat "/srv/data/$sym.json")""#,
            r#"respond "500 Internal Server Error" '{"error":"enrich_metadata failed"}'"#,
        ),
    )
    .unwrap();
    up("ticker-metadata-service");
    wait_for(gw, "/health", "healthy");
    for _ in 0..50 {
        if http_get(gw, "/api/v1/ticker/AAPL/metadata").is_some_and(|r| r.0 == 502) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http_get(gw, "/api/v1/ticker/AAPL/metadata").map(|r| r.0), Some(502));
    let j = json(p.run(&[
        "rollback",
        "--phase",
        "ticker-metadata-service",
        "--option",
        "C: modo degradado",
        "--yes",
        "--json",
    ]));
    assert_eq!(
        j["rollback"]["degraded"],
        serde_json::json!(["ticker-metadata-service"]),
        "{j}"
    );
    assert_eq!(get(ticker, "/health"), None, "ticker-metadata-service is stopped");
    assert!(
        get(gw, "/api/v1/ticker/AAPL/metadata")
            .unwrap()
            .contains("\"source\":\"direct\"")
    );
    assert!(get(gw, "/api/v1/scanner/gappers_up").is_some());
    assert!(get(session, "/api/session/current").is_some());

    // Phases 2 and 3 (the service back first).
    std::fs::write(&routes, good).unwrap();
    up("ticker-metadata-service");
    wait_for(ticker, "/health", "healthy");
    ok(p.run(&["run", "--phase", "scanner-analytics-rest"]));
    assert!(get(gw, "/health").unwrap().contains("\"version\":\"3\""));
    ok(p.run(&["run", "--phase", "fundamental-data-service"]));
    assert!(get(fundamental, "/health").is_some());
    assert_eq!(
        tables(&db_url),
        "dilution_events,financial_statements,sec_filings,ticker_metadata,tickers"
    );
    assert_eq!(
        psql(&db_url, "select sum(market_cap) from ticker_metadata"),
        "0",
        "the backfill zeroed them"
    );

    // Phase 3, option B: the new tables dropped, the service stopped, the rest serving.
    let j = json(p.run(&[
        "rollback",
        "--phase",
        "fundamental-data-service",
        "--option",
        "B: revertir migrations de DB",
        "--yes",
        "--json",
    ]));
    assert_eq!(j["rollback"]["ok"], true, "{j}");
    assert_eq!(tables(&db_url), "ticker_metadata,tickers");
    assert_eq!(get(fundamental, "/health"), None);
    assert!(get(gw, "/api/v1/scanner/gappers_up").is_some());
    // ...which leaves the zeroed market caps: only the database backup has them.
    assert_eq!(psql(&db_url, "select sum(market_cap) from ticker_metadata"), "0");

    // The emergency total rollback to the pre-phase-1 checkpoint: everything
    // down, code reset, database restored from its dump, rebuilt, verified.
    let j = json(p.run(&["rollback", "--to", "cp-1", "--yes", "--json"]));
    assert_eq!(j["rollback"]["ok"], true, "{j}");
    let timing = &j["rollback"]["timing"];
    assert_eq!(timing["rto_ms"], 300_000, "{timing}");
    assert_eq!(timing["within_rto"], true, "{timing}");
    assert!(timing["total_ms"].as_u64().unwrap() <= timing["rto_ms"].as_u64().unwrap());
    assert_eq!(tables(&db_url), "ticker_metadata,tickers");
    assert_eq!(
        psql(
            &db_url,
            "select string_agg(symbol || '=' || market_cap, ',' order by symbol) from ticker_metadata"
        ),
        caps_before,
        "the rows are back"
    );
    assert!(get(gw, "/health").unwrap().contains("\"version\":\"1\""));
    assert!(
        get(gw, "/api/v1/ticker/AAPL/metadata")
            .unwrap()
            .contains("\"source\":\"direct\"")
    );
    assert_eq!(
        get(ticker, "/health"),
        None,
        "no ticker-metadata-service before phase 1"
    );
    assert_eq!(get(fundamental, "/health"), None);
    assert!(!dir.join("services/ticker-metadata-service").exists());
    assert_eq!(p.git(&["log", "-1", "--format=%s"]), "feat: Add ticker metadata modal");
    assert_eq!(
        p.git(&["rev-parse", "HEAD"]),
        p.git(&["rev-parse", "backup/pre-phase-1-migration"]),
        "back at the seed's backup branch"
    );
    let v = ok(p.run(&["verify"]));
    assert!(v.contains("[pass] sesión"), "{v}");
}
