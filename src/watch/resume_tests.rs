//! A resumed watch judges the windows in play with the samples stored before it
//! stopped, and keeps its deploy time.

use std::time::Duration;

use super::{Schedule, WatchResult, watch_from};
use crate::context::{Clock, Env};
use crate::oplog::SampleRow;
use crate::plan::Plan;
use crate::redact::Redactor;
use crate::workspace::Workspace;

fn workspace(dir: &std::path::Path, port: u16) -> Workspace {
    let src = format!(
        "[plan]\nname = \"r\"\nrto = \"1m\"\n[[probe]]\nname = \"db\"\nevery = \"100ms\"\ntimeout = \"1s\"\ntcp = {{ address = \"127.0.0.1:{port}\" }}\n[[rule]]\nname = \"db-errors\"\nwhen = \"db.error_rate > 5% over 1m\"\n"
    );
    let plan = Plan::parse(&dir.join("backout.toml"), &src, &Env::default()).unwrap();
    Workspace::open(plan, Clock::system(), Redactor::new()).unwrap()
}

#[tokio::test]
async fn stored_failures_count_in_the_resumed_window() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ws = workspace(dir.path(), listener.local_addr().unwrap().port());
    let now = ws.now_ms();
    let before = ws.oplog.begin("watch", &serde_json::json!({}), now - 20_000).unwrap();
    // A 1m window at 100ms holds 600 samples: more than 5% of them is 31.
    let failed: Vec<SampleRow> = (1..=40)
        .map(|i| SampleRow {
            probe: "db".into(),
            at: now - 10_000 + i * 200,
            ok: false,
            error: Some("refused".into()),
            ..Default::default()
        })
        .collect();
    ws.oplog.insert_samples(before, &failed).unwrap();

    // The target is healthy now, but 40 of the window's samples failed: more
    // than 5% of the full window, whatever the rest of it holds.
    let op = ws.oplog.begin("watch", &serde_json::json!({}), now).unwrap();
    let schedule = Schedule {
        deploy_at: now - 20_000,
        done: Default::default(),
    };
    let r = watch_from(&ws, op, Some(Duration::from_secs(10)), schedule, |_| {})
        .await
        .unwrap();
    let WatchResult::Rollback { verdict, .. } = r else {
        panic!("expected a rollback, got {r:?}")
    };
    assert!(verdict.samples >= 40, "{verdict:?}");
    assert!(verdict.failed_samples >= 40, "{verdict:?}");

    // A fresh watch (deploy now) ignores them: the healthy target passes.
    let op = ws.oplog.begin("watch", &serde_json::json!({}), ws.now_ms()).unwrap();
    let fresh = Schedule {
        deploy_at: ws.now_ms(),
        done: Default::default(),
    };
    let r = watch_from(&ws, op, Some(Duration::from_millis(600)), fresh, |_| {})
        .await
        .unwrap();
    assert!(matches!(r, WatchResult::TimeUp { .. }), "{r:?}");
}
