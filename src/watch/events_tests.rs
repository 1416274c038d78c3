//! A watch shows every change of a rule's verdict, the return to ok included,
//! and a verdict that hovers at its limit is one verdict, not one per sample.

use std::collections::HashMap;
use std::time::Duration;

use super::verdict::{Evaluator, Outcome};
use super::{Schedule, WatchEvent, WatchResult, watch_from};
use crate::context::{Clock, Env};
use crate::oplog::SampleRow;
use crate::plan::Plan;
use crate::redact::Redactor;
use crate::workspace::Workspace;

#[tokio::test]
async fn the_return_to_ok_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on yet: the probe fails until the listener opens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let src = format!(
        "[plan]\nname = \"r\"\nrto = \"1m\"\n[[probe]]\nname = \"db\"\nevery = \"50ms\"\ntimeout = \"1s\"\ntcp = {{ address = \"127.0.0.1:{port}\" }}\n[[rule]]\nname = \"db-down\"\nwhen = \"db.consecutive_failures >= 2\"\nthen = \"investigate\"\n"
    );
    let plan = Plan::parse(&dir.path().join("backout.toml"), &src, &Env::default()).unwrap();
    let ws = Workspace::open(plan, Clock::system(), Redactor::new()).unwrap();
    let op = ws.oplog.begin("watch", &serde_json::json!({}), ws.now_ms()).unwrap();
    let opener = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(l);
    });
    let mut seen = Vec::new();
    let schedule = Schedule {
        deploy_at: ws.now_ms(),
        done: Default::default(),
    };
    let r = watch_from(&ws, op, Some(Duration::from_millis(1800)), schedule, |e| {
        if let WatchEvent::Verdict(v) = e {
            seen.push(v.outcome);
        }
    })
    .await
    .unwrap();
    opener.await.unwrap();
    assert!(matches!(r, WatchResult::TimeUp { .. }), "{r:?}");
    let i = seen
        .iter()
        .position(|o| *o == Outcome::Investigate)
        .expect("an investigate verdict");
    assert!(
        seen[i..].contains(&Outcome::Pass),
        "the return to ok is shown: {seen:?}"
    );
}

fn s(at: i64, latency: f64) -> SampleRow {
    SampleRow {
        probe: "api".into(),
        at,
        ok: true,
        latency_ms: Some(latency),
        ..Default::default()
    }
}

#[test]
fn a_statistic_hovering_at_its_limit_is_one_verdict() {
    let src = "[plan]\nname = \"t\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"250ms\"\ntimeout = \"1s\"\nhttp = { url = \"http://127.0.0.1:1/\" }\n[[rule]]\nname = \"slow\"\nwhen = \"api.latency.max > 50ms over 5s\"\nthen = \"investigate\"\n";
    let plan = Plan::parse(std::path::Path::new("backout.toml"), src, &Env::default()).unwrap();
    let mut e = Evaluator::new(&plan, HashMap::new());
    // A slow answer every 5.5s: the max of a 5s window goes over 50ms each
    // time one enters and back under as it leaves.
    let mut outcomes = Vec::new();
    for i in 0..240i64 {
        let at = i * 250;
        e.push(s(at, if i % 22 == 0 { 80.0 } else { 20.0 }));
        let o = e.evaluate(at)[0].outcome;
        if outcomes.last() != Some(&o) {
            outcomes.push(o);
        }
    }
    let entries = outcomes.iter().filter(|o| **o == Outcome::Investigate).count();
    assert_eq!(entries, 1, "{outcomes:?}");
    // With `clear-after = "0s"` each slow answer is an entry of its own.
    let plan = Plan::parse(
        std::path::Path::new("backout.toml"),
        &format!("{src}clear-after = \"0s\"\n"),
        &Env::default(),
    )
    .unwrap();
    let mut e = Evaluator::new(&plan, HashMap::new());
    let mut outcomes = Vec::new();
    for i in 0..240i64 {
        let at = i * 250;
        e.push(s(at, if i % 22 == 0 { 80.0 } else { 20.0 }));
        let o = e.evaluate(at)[0].outcome;
        if outcomes.last() != Some(&o) {
            outcomes.push(o);
        }
    }
    assert!(
        outcomes.iter().filter(|o| **o == Outcome::Investigate).count() > 5,
        "{outcomes:?}"
    );
}
