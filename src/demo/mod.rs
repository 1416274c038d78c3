//! `backout demo`: the whole loop on an embedded sample service, offline, in a
//! temporary git repository: start the service, checkpoint, baseline, deploy a bad
//! version, watch, detect it through the plan's rules, roll back with `git revert`,
//! restart, verify, and write the incident report.

pub mod app;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::context::{Clock, Env};
use crate::incident::{self, ResponseEvent, Trigger};
use crate::plan::Plan;
use crate::redact::Redactor;
use crate::report::Incident;
use crate::resource::{self, git};
use crate::rollback::{self, StepEvent};
use crate::service::{self, ServiceFiles};
use crate::watch::{self, WatchEvent, WatchResult};
use crate::workspace::Workspace;
use app::AppConfig;

/// What the demo did, for the closing timeline and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoResult {
    pub dir: PathBuf,
    pub kept: bool,
    pub checkpoint: String,
    pub bad_commit: String,
    pub revert_commit: String,
    pub incident: Incident,
    pub report: PathBuf,
    pub time_to_detect_ms: Option<i64>,
    pub time_to_recover_ms: Option<i64>,
}

/// The version that works.
pub fn good_config() -> AppConfig {
    AppConfig {
        version: "1.0.0".into(),
        error_rate: 0.0,
        latency_ms: 2,
        memory_mb: 0,
    }
}

/// The bad deploy: a pricing cache that raises errors and latency.
pub fn bad_config() -> AppConfig {
    AppConfig {
        version: "1.1.0".into(),
        error_rate: 0.3,
        latency_ms: 40,
        memory_mb: 0,
    }
}

/// The demo's plan, for the service at `port` started with `exe`.
pub fn plan_text(exe: &Path, port: u16) -> String {
    let exe = exe.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"# The backout demo: a quote service, watched, and rolled back when a deploy breaks it.
[plan]
name = "demo-quotes"
description = "The sample quote service shipped inside backout"
rto = "30s"

[capture]
git = true          # HEAD, branch and the whole working tree, untracked files included

[baseline]
for = "2s"          # how the service looks before the change

[[service]]
name = "quotes"
start = ["{exe}", "demo-app", "--config", "app.toml", "--port", "{port}"]
ready = "health"
stop-timeout = "2s"

[[probe]]
name = "health"
every = "200ms"
timeout = "1s"
http = {{ url = "http://127.0.0.1:{port}/health", status = 200, json = {{ status = "healthy" }} }}

[[probe]]
name = "api"
every = "100ms"
timeout = "1s"
http = {{ url = "http://127.0.0.1:{port}/api/quote", status = 200 }}

[[rule]]
name = "api-errors"
when = "api.error_rate > 10% over 2s"
then = "rollback"
min-samples = 10

[[rule]]
name = "api-slow"
when = "api.latency.p95 > baseline + 50% over 3s"
then = "investigate"
min-samples = 5

[[rule]]
name = "health-down"
when = "health.consecutive_failures >= 3"
then = "rollback"

[success]
when = ["api.error_rate == 0 over 5s for 10s"]

[rollback]
target = "10s"      # level 1: the whole rollback, measured in every report
steps = [
  {{ git = "revert" }},                              # revert every commit since the checkpoint, history kept
  {{ service = "quotes", action = "restart" }},
  {{ wait = "health", timeout = "10s" }},
]

[verify]
checks = [
  {{ http = "http://127.0.0.1:{port}/health", status = 200, json = {{ status = "healthy", version = "1.0.0" }} }},
  {{ http = "http://127.0.0.1:{port}/api/quote", status = 200 }},
  {{ file = "app.toml", contains = 'version = "1.0.0"' }},
]
stable-for = "2s"
"#
    )
}

/// A free port on loopback.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

const IDENTITY: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "Demo Dev"),
    ("GIT_AUTHOR_EMAIL", "dev@demo.invalid"),
    ("GIT_COMMITTER_NAME", "Demo Dev"),
    ("GIT_COMMITTER_EMAIL", "dev@demo.invalid"),
];

/// Runs the demo in `dir` (which must be empty or absent), using `exe` as the
/// service binary. `say` receives progress lines.
pub async fn run(dir: &Path, exe: &Path, kept: bool, mut say: impl FnMut(&str)) -> anyhow::Result<DemoResult> {
    fs_err::create_dir_all(dir)?;
    if fs_err::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty; the demo needs an empty directory", dir.display());
    }
    let port = free_port()?;
    say(&format!(
        "• creating a git repository with the sample quote service in {}",
        dir.display()
    ));
    fs_err::write(dir.join("app.toml"), good_config().to_toml())?;
    fs_err::write(dir.join("backout.toml"), plan_text(exe, port))?;
    fs_err::write(dir.join(".gitignore"), ".backout/\n")?;
    git::git(dir, &["init", "-q", "-b", "main"], &[])?;
    git::git(dir, &["config", "user.name", "Demo Dev"], &[])?;
    git::git(dir, &["config", "user.email", "dev@demo.invalid"], &[])?;
    git::git(dir, &["add", "-A"], &[])?;
    git::git(dir, &["commit", "-qm", "quotes 1.0.0"], IDENTITY)?;

    let plan = Plan::load(&dir.join("backout.toml"), &Env::default())?;
    let ws = Workspace::open(plan, Clock::system(), Redactor::new())?;
    let _lock = ws.lock("demo")?;
    let demo_op = ws
        .oplog
        .begin("demo", &serde_json::json!({ "dir": dir }), ws.now_ms())?;
    let svc = ws.plan.services[0].clone();
    let files = ServiceFiles::new(&ws.run_dir()?, &svc.name);
    let result = scenario(&ws, &svc, &files, dir, kept, &mut say).await;
    // The service never outlives the demo, whatever happened.
    let _ = service::stop(&svc, &files);
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    let err = result.as_ref().err().map(|e| format!("{e:#}"));
    ws.oplog.finish(demo_op, outcome, err.as_deref(), ws.now_ms())?;
    result
}

async fn scenario(
    ws: &Workspace,
    svc: &crate::plan::Service,
    files: &ServiceFiles,
    dir: &Path,
    kept: bool,
    say: &mut impl FnMut(&str),
) -> anyhow::Result<DemoResult> {
    let health = ws
        .plan
        .probe("health")
        .context("the demo plan has a health probe")?
        .clone();
    let pid = service::start(svc, files)?.pid();
    let (ready, _, why) = rollback::wait_healthy(ws, &health, Duration::from_secs(10)).await;
    if !ready {
        bail!(
            "the demo service did not start: {why}\n{}",
            std::fs::read_to_string(&files.log).unwrap_or_default()
        );
    }
    say(&format!(
        "• started quotes 1.0.0 (pid {pid}) on {}",
        crate::verify::probe_url(&health)
    ));

    let cp_op = ws.oplog.begin(
        "checkpoint",
        &serde_json::json!({ "label": "before 1.1.0" }),
        ws.now_ms(),
    )?;
    let cp = resource::checkpoint(ws, cp_op, Some("before 1.1.0"), None)?;
    ws.oplog.finish(cp_op, "ok", None, ws.now_ms())?;
    let cp_name = resource::checkpoint_name(cp.id);
    say(&format!(
        "• checkpoint {cp_name}: git HEAD, branch and working tree captured and verified"
    ));

    let base_op = ws
        .oplog
        .begin("baseline", &serde_json::json!({ "for": "2s" }), ws.now_ms())?;
    let stats = watch::measure_baseline(ws, base_op, ws.plan.baseline_for, |_| {}).await?;
    ws.oplog.finish(base_op, "ok", None, ws.now_ms())?;
    for (probe, s) in &stats {
        say(&format!(
            "• baseline {probe}: {} samples, error rate {}%, latency p95 {}",
            s.count,
            crate::plan::units::trim_float(s.error_rate * 100.0),
            s.latency_p95.map_or("-".into(), |l| format!("{l:.1}ms"))
        ));
    }

    // The bad deploy, marked first as `backout deploy` does: a commit, then a
    // restart onto it. Every figure counts from the marker.
    let deploy_op = ws.oplog.begin(
        "deploy",
        &serde_json::json!({ "label": "quotes 1.1.0", "by": "demo" }),
        ws.now_ms(),
    )?;
    let mut marker = crate::deploy::Marker::new(deploy_op, ws.now_ms(), Some(cp.id), crate::deploy::MarkedBy::Demo);
    marker.label = Some("quotes 1.1.0".into());
    marker.command = Some("git commit && restart quotes".into());
    crate::deploy::record(&ws.oplog, &marker)?;
    fs_err::write(dir.join("app.toml"), bad_config().to_toml())?;
    git::git(dir, &["commit", "-qam", "quotes 1.1.0: new pricing cache"], IDENTITY)?;
    let bad_commit = git::git(dir, &["rev-parse", "HEAD"], &[])?;
    service::restart(svc, files)?;
    let (ready, _, why) = rollback::wait_healthy(ws, &health, Duration::from_secs(10)).await;
    let ended = ws.now_ms();
    crate::deploy::record_command_end(&ws.oplog, deploy_op, ended, ready.then_some(0), ready, &why)?;
    ws.oplog
        .finish(deploy_op, if ready { "ok" } else { "failed" }, None, ended)?;
    if !ready {
        bail!("the bad version did not start: {why}");
    }
    (marker.command_ended_at, marker.exit_code, marker.command_ok) = (Some(ended), Some(0), Some(true));
    let watch_started = ws.now_ms();
    let watch_op = ws.oplog.begin(
        "watch",
        &serde_json::json!({ "auto_rollback": true, "deploy_at": marker.at, "deploy_op": deploy_op }),
        watch_started,
    )?;
    say(&format!(
        "• deployed quotes 1.1.0 (commit {}); watching",
        &bad_commit[..8]
    ));

    let schedule = watch::Schedule {
        deploy_at: marker.at,
        done: Default::default(),
    };
    let result = watch::watch_from(ws, watch_op, Some(Duration::from_secs(20)), schedule, |e| match e {
        WatchEvent::FirstBadSample(s) => say(&format!(
            "  first bad sample: {} {}",
            s.probe,
            s.error.as_deref().unwrap_or("failed")
        )),
        WatchEvent::Verdict(v) if v.outcome != watch::Outcome::Pass && v.outcome != watch::Outcome::Inconclusive => {
            say(&format!("  {}", v.explanation))
        }
        _ => {}
    })
    .await?;
    let WatchResult::Rollback { verdict, first_bad_at } = result else {
        ws.oplog.finish(watch_op, "no_verdict", None, ws.now_ms())?;
        bail!("the watch ended without a rollback verdict: {result:?}");
    };
    let verdict_at = ws.now_ms();
    ws.oplog.finish(watch_op, "rollback_triggered", None, verdict_at)?;
    let trigger = Trigger {
        watch_op,
        verdict: *verdict,
        verdict_at,
        first_bad_at,
        deploy: Some(marker),
        watch_started_at: Some(watch_started),
    };
    let (incident, report) = incident::respond(ws, trigger, &cp, |e| match e {
        ResponseEvent::RollbackStarted { checkpoint } => say(&format!("• rolling back to {checkpoint}")),
        ResponseEvent::Step(StepEvent::Finished(s)) => say(&format!(
            "  step {} {}: {} ({}ms)",
            s.seq,
            s.name,
            if s.ok { "ok" } else { "FAILED" },
            s.duration_ms
        )),
        ResponseEvent::Verifying => say("• verifying"),
        ResponseEvent::Check(c) => say(&format!(
            "  [{}] {}: {}",
            if c.passed { "pass" } else { "FAIL" },
            c.name,
            c.evidence
        )),
        _ => {}
    })
    .await?;
    if !incident.rollback.ok {
        bail!("the rollback failed; see {}", report.display());
    }
    if !incident.verified() {
        bail!("verification failed after the rollback; see {}", report.display());
    }
    let revert_commit = git::git(dir, &["rev-parse", "HEAD"], &[])?;
    Ok(DemoResult {
        dir: dir.to_path_buf(),
        kept,
        checkpoint: cp_name,
        bad_commit,
        revert_commit,
        time_to_detect_ms: incident.time_to_detect_ms(),
        time_to_recover_ms: incident.time_to_recover_ms(),
        incident,
        report,
    })
}
