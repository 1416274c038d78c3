//! Where the current watch stands, read back from the operation log: its
//! deploy time, whether it still runs, each rule's latest verdict, and each
//! scheduled review — passed, failed, due, or how long until it is.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::oplog::OpId;
use crate::workspace::Workspace;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchState {
    Running,
    /// Ended with this outcome (success, time_up, rollback_triggered, failed).
    Ended(String),
    /// Not running and never finished: killed or crashed; `watch --resume` continues it.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Passed,
    Failed,
    /// Its time has come and no watch has evaluated it yet.
    Due,
    Pending,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviewStatus {
    pub name: String,
    pub due_at: i64,
    pub state: ReviewState,
    /// Until it is due (pending), else 0.
    pub time_left_ms: i64,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchStatus {
    pub op: OpId,
    pub deploy_at: i64,
    pub state: WatchState,
    pub elapsed_ms: i64,
    /// When the watch's `--for` runs out, if it was given one.
    pub ends_at: Option<i64>,
    /// The latest verdict of each rule, as recorded.
    pub verdicts: Vec<serde_json::Value>,
    pub reviews: Vec<ReviewStatus>,
    /// The degraded mode in force, if any (services a rollback stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<crate::rollback::services::Degraded>,
}

/// The status of the latest watch, or `None` when there was none.
pub fn load(ws: &Workspace, now: i64) -> anyhow::Result<Option<WatchStatus>> {
    let Some(op) = ws.oplog.operations(Some("watch"), 1)?.into_iter().next() else {
        return Ok(None);
    };
    let deploy_at = op.args["deploy_at"].as_i64().unwrap_or(op.started_at);
    let state = match (&op.ended_at, &op.outcome) {
        (Some(_), Some(o)) => WatchState::Ended(o.clone()),
        (Some(_), None) => WatchState::Ended("unknown".into()),
        (None, _) => {
            let alive = op.args["pid"]
                .as_u64()
                .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
            if alive {
                WatchState::Running
            } else {
                WatchState::Interrupted
            }
        }
    };
    let events = ws.oplog.events_since(deploy_at)?;
    let mut verdicts: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut reviews_done: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for e in events {
        match e.kind.as_str() {
            "rule_outcome" => {
                if let Some(rule) = e.detail["rule"].as_str() {
                    verdicts.insert(rule.to_string(), e.detail.clone());
                }
            }
            "review" if e.detail["deploy_at"] == deploy_at => {
                if let Some(name) = e.detail["name"].as_str() {
                    reviews_done.insert(name.to_string(), e.detail.clone());
                }
            }
            _ => {}
        }
    }
    let reviews = ws
        .plan
        .reviews
        .iter()
        .map(|r| {
            let due_at = deploy_at.saturating_add(crate::context::millis(r.at));
            let done = reviews_done.get(&r.name);
            let state = match done.map(|d| d["passed"] == true) {
                Some(true) => ReviewState::Passed,
                Some(false) => ReviewState::Failed,
                None if due_at <= now => ReviewState::Due,
                None => ReviewState::Pending,
            };
            ReviewStatus {
                name: r.name.clone(),
                due_at,
                time_left_ms: if state == ReviewState::Pending { due_at - now } else { 0 },
                summary: done.map(summary),
                state,
            }
        })
        .collect();
    Ok(Some(WatchStatus {
        op: op.id,
        deploy_at,
        ends_at: op.args["for_ms"].as_i64().map(|f| op.started_at + f),
        state,
        elapsed_ms: now - deploy_at,
        verdicts: verdicts.into_values().collect(),
        reviews,
        degraded: crate::rollback::services::degraded_now(ws)?,
    }))
}

fn summary(detail: &serde_json::Value) -> String {
    let exps = detail["expectations"].as_array().cloned().unwrap_or_default();
    let failed: Vec<String> = exps
        .iter()
        .filter(|e| e["holds"] != true)
        .filter_map(|e| e["explanation"].as_str().map(String::from))
        .collect();
    if failed.is_empty() {
        format!("{} expectation(s) held", exps.len())
    } else {
        failed.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Clock, Env};
    use crate::plan::Plan;
    use crate::redact::Redactor;
    use std::time::Duration;

    /// A deploy, a review recorded, then the clock moves: the status follows,
    /// with no sleeping.
    #[test]
    fn reviews_pass_fall_due_and_count_down() {
        let dir = tempfile::tempdir().unwrap();
        let src = "[plan]\nname = \"t\"\nrto = \"1m\"\n[[probe]]\nname = \"health\"\nevery = \"10s\"\ntimeout = \"1s\"\nhttp = { url = \"http://127.0.0.1:1/\" }\n[[review]]\nat = \"30m\"\nexpect = [\"health.up\"]\n[[review]]\nat = \"2h\"\nexpect = [\"health.up\"]\n[[review]]\nat = \"4h\"\nexpect = [\"health.up\"]\n";
        let plan = Plan::parse(&dir.path().join("backout.toml"), src, &Env::default()).unwrap();
        let clock = Clock::fixed(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let ws = Workspace::open(plan, clock.clone(), Redactor::new()).unwrap();
        let deploy = clock.now_ms();
        assert!(load(&ws, deploy).unwrap().is_none());
        let op = ws
            .oplog
            .begin(
                "watch",
                &serde_json::json!({ "deploy_at": deploy, "pid": u32::MAX }),
                deploy,
            )
            .unwrap();
        clock.advance(Duration::from_secs(31 * 60));
        ws.oplog
            .event(op, clock.now_ms(), "review", &serde_json::json!({ "name": "+30m", "deploy_at": deploy, "passed": true, "expectations": [{"holds": true}] }))
            .unwrap();
        clock.advance(Duration::from_secs(2 * 3600));
        let s = load(&ws, clock.now_ms()).unwrap().unwrap();
        assert_eq!(s.state, WatchState::Interrupted, "no process {} runs", u32::MAX);
        assert_eq!(s.elapsed_ms, (31 * 60 + 7200) * 1000);
        let states: Vec<&ReviewState> = s.reviews.iter().map(|r| &r.state).collect();
        assert_eq!(states, [&ReviewState::Passed, &ReviewState::Due, &ReviewState::Pending]);
        assert_eq!(s.reviews[2].time_left_ms, (4 * 3600 - 31 * 60 - 7200) * 1000);
        ws.oplog.finish(op, "time_up", None, clock.now_ms()).unwrap();
        let s = load(&ws, clock.now_ms()).unwrap().unwrap();
        assert_eq!(s.state, WatchState::Ended("time_up".into()));
    }
}
