//! The services an operation touches, as they were before it. A rollback
//! records, before its first step, the state of every service its steps act on
//! (running, stopped, or unknown when its kind cannot tell) and the degraded
//! mode in force, as a `services_before` event of its operation. `undo` brings
//! each of those services back to that state — a running one restarted (rebuilt
//! when the rollback rebuilt it, since its image holds the code) so it runs the
//! restored code, and waited for when it has a readiness probe; a stopped one
//! stopped — and records the degraded mode as it was. The undo records the
//! same services as they were before it, which is what `redo` brings back.
//!
//! Degraded mode is a fact of the operation log: the latest `degraded`
//! (`{"stopped": [...]}`) or `degraded_cleared` event says which services the
//! system runs without.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::oplog::OpId;
use crate::plan::{ServiceAction, Step, StepKind};
use crate::service::{self, ServiceFiles, Status};
use crate::workspace::Workspace;

/// The event holding what an operation found before it changed anything.
pub const EVENT: &str = "services_before";

/// A service's state, as far as its kind can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Was {
    Running,
    Stopped,
    /// A command service without a status command, or a manager that did not answer.
    Unknown,
}

/// How a service is brought back up so it runs the code now on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relaunch {
    Restart,
    /// The operation rebuilt it (a compose service built from the project): its
    /// image holds the code, so a restart alone would keep the rolled-back one.
    Rebuild,
}

impl Relaunch {
    pub fn action(self) -> ServiceAction {
        match self {
            Relaunch::Restart => ServiceAction::Restart,
            Relaunch::Rebuild => ServiceAction::Rebuild,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub state: Was,
    pub relaunch: Relaunch,
    /// The longest timeout of the operation's steps on this service: what an
    /// undo gives its own action on it (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl ServiceRecord {
    /// What an undo gives its action on this service: the operation's longest
    /// step timeout on it, or [`super::undo::SERVICE_TIMEOUT`] for older records.
    pub fn timeout(&self) -> Duration {
        self.timeout_ms
            .map_or(super::undo::SERVICE_TIMEOUT, Duration::from_millis)
    }
}

/// A service an operation's steps act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub name: String,
    pub relaunch: Relaunch,
    /// The longest timeout of the steps acting on it.
    pub timeout: Duration,
}

/// What an operation found before its first step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesBefore {
    pub services: Vec<ServiceRecord>,
    /// The services degraded mode had stopped (empty: not degraded).
    #[serde(default)]
    pub degraded: Vec<String>,
}

/// The services `steps` act on, in plan order, each with how it comes back up
/// and the longest timeout the steps gave it.
pub fn touched(plan: &crate::plan::Plan, steps: &[Step]) -> Vec<Touched> {
    let mut rebuilt = BTreeSet::new();
    let mut timeouts: BTreeMap<String, Duration> = BTreeMap::new();
    let mut note = |name: &str, timeout: Duration| {
        let t = timeouts.entry(name.to_string()).or_default();
        *t = (*t).max(timeout);
    };
    for step in steps {
        match &step.kind {
            StepKind::Service { service, action } => {
                for s in plan
                    .services
                    .iter()
                    .filter(|s| service.as_ref().is_none_or(|n| *n == s.name))
                {
                    note(&s.name, step.timeout);
                    if *action == ServiceAction::Rebuild {
                        rebuilt.insert(s.name.clone());
                    }
                }
            }
            StepKind::Degraded { services } => services.iter().for_each(|n| note(n, step.timeout)),
            _ => {}
        }
    }
    plan.services
        .iter()
        .filter_map(|s| {
            let timeout = *timeouts.get(&s.name)?;
            let relaunch = if rebuilt.contains(&s.name) {
                Relaunch::Rebuild
            } else {
                Relaunch::Restart
            };
            Some(Touched {
                name: s.name.clone(),
                relaunch,
                timeout,
            })
        })
        .collect()
}

/// The plan's services that run now (under backout, under their manager, or
/// started by hand and holding their port), each to be restarted within its
/// readiness and stop timeouts: what a restore must restart so they run what
/// it put back.
pub fn running(ws: &Workspace) -> anyhow::Result<Vec<Touched>> {
    let all: Vec<Touched> = ws
        .plan
        .services
        .iter()
        .map(|s| Touched {
            name: s.name.clone(),
            relaunch: Relaunch::Restart,
            timeout: s.ready_timeout + s.stop_timeout,
        })
        .collect();
    let now = snapshot(ws, &all)?;
    Ok(all
        .into_iter()
        .zip(now.services)
        .filter(|(_, r)| r.state == Was::Running)
        .map(|(t, _)| t)
        .collect())
}

/// Asks each service (concurrently: a compose or systemd status is a command)
/// what it is doing now.
pub fn snapshot(ws: &Workspace, services: &[Touched]) -> anyhow::Result<ServicesBefore> {
    let run_dir = ws.run_dir()?;
    let plan = &ws.plan;
    let records = std::thread::scope(|scope| {
        let handles: Vec<_> = services
            .iter()
            .map(
                |Touched {
                     name,
                     relaunch,
                     timeout,
                 }| {
                    let run_dir = &run_dir;
                    scope.spawn(move || {
                        let state = match plan.service(name) {
                            Some(svc) => match service::status(svc, &ServiceFiles::new(run_dir, name)) {
                                Status::Running { .. } | Status::Active | Status::Foreign { .. } => Was::Running,
                                Status::Stopped => Was::Stopped,
                                Status::Unknown => Was::Unknown,
                            },
                            None => Was::Unknown,
                        };
                        ServiceRecord {
                            name: name.clone(),
                            state,
                            relaunch: *relaunch,
                            timeout_ms: Some(timeout.as_millis() as u64),
                        }
                    })
                },
            )
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a status thread panicked"))
            .collect::<Vec<_>>()
    });
    Ok(ServicesBefore {
        services: records,
        degraded: degraded_now(ws)?.map(|d| d.services).unwrap_or_default(),
    })
}

/// What `op` recorded before its first step, if anything.
pub fn recorded(ws: &Workspace, op: OpId) -> anyhow::Result<Option<ServicesBefore>> {
    Ok(ws
        .oplog
        .events_of(op, EVENT)?
        .into_iter()
        .next()
        .and_then(|e| serde_json::from_value(e.detail).ok()))
}

/// What `op` recorded, or, when it recorded nothing yet (it had not reached its
/// first step), a snapshot taken now and recorded durably.
pub fn ensure_recorded(ws: &Workspace, op: OpId, services: &[Touched]) -> anyhow::Result<ServicesBefore> {
    if let Some(r) = recorded(ws, op)? {
        return Ok(r);
    }
    let r = snapshot(ws, services)?;
    ws.oplog.event(op, ws.now_ms(), EVENT, &serde_json::to_value(&r)?)?;
    Ok(r)
}

/// The degraded mode in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Degraded {
    /// The services stopped for it.
    pub services: Vec<String>,
    /// The operation that put the system in that mode, and when.
    pub op: OpId,
    pub since: i64,
}

/// The degraded mode in force, from the latest `degraded` or
/// `degraded_cleared` event.
pub fn degraded_now(ws: &Workspace) -> anyhow::Result<Option<Degraded>> {
    let last = ws.oplog.latest_event_of(&["degraded", "degraded_cleared"])?;
    Ok(last.and_then(|e| {
        let services: Vec<String> = e.detail["stopped"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        (e.kind == "degraded" && !services.is_empty()).then_some(Degraded {
            services,
            op: e.op_id,
            since: e.at,
        })
    }))
}

/// Records `services` as the degraded mode from now (empty: cleared), under
/// `op`, when that changes what is in force, or when `always`.
pub fn set_degraded(ws: &Workspace, op: OpId, services: &[String], always: bool) -> anyhow::Result<()> {
    let now: Vec<String> = degraded_now(ws)?.map(|d| d.services).unwrap_or_default();
    let same = {
        let a: BTreeSet<&String> = now.iter().collect();
        let b: BTreeSet<&String> = services.iter().collect();
        a == b
    };
    // Unchanged: nothing to record, unless a rollback stopped services for
    // degraded mode again, which its timeline should show.
    let again = always && !services.is_empty();
    if same && !again {
        return Ok(());
    }
    if services.is_empty() {
        ws.oplog.event(
            op,
            ws.now_ms(),
            "degraded_cleared",
            &serde_json::json!({ "restarted": now }),
        )?;
    } else {
        ws.oplog
            .event(op, ws.now_ms(), "degraded", &serde_json::json!({ "stopped": services }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::context::{Clock, Env};
    use crate::plan::Plan;
    use crate::redact::Redactor;

    const PLAN: &str = r#"
[plan]
name = "t"
[[service]]
name = "api"
start = "sleep 300"
[[service]]
name = "web"
kind = "command"
start = "true"
stop = "true"
[[service]]
name = "cron"
kind = "command"
start = "true"
stop = "true"
status = "false"
[rollback]
steps = [{ service = "all", action = "restart" }, { service = "web", action = "rebuild", timeout = "3m" }, { degraded = ["cron"] }]
"#;

    fn workspace(dir: &std::path::Path) -> Workspace {
        let plan = Plan::parse(&dir.join("backout.toml"), PLAN, &Env::default()).unwrap();
        let clock = Clock::fixed(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        Workspace::open(plan, clock, Redactor::new()).unwrap()
    }

    #[test]
    fn touched_services_in_plan_order_rebuilt_when_a_step_rebuilt_them() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspace(dir.path());
        let steps = &ws.plan.rollback;
        let brief = |t: Vec<Touched>| -> Vec<(String, Relaunch, u64)> {
            t.into_iter()
                .map(|t| (t.name, t.relaunch, t.timeout.as_secs()))
                .collect()
        };
        assert_eq!(
            brief(touched(&ws.plan, steps)),
            [
                ("api".to_string(), Relaunch::Restart, 60),
                ("web".to_string(), Relaunch::Rebuild, 180),
                ("cron".to_string(), Relaunch::Restart, 60),
            ]
        );
        assert_eq!(
            brief(touched(&ws.plan, &steps[2..])),
            [("cron".to_string(), Relaunch::Restart, 60)]
        );
    }

    #[test]
    fn an_undo_gives_a_service_the_operations_timeout_or_five_minutes_for_old_records() {
        let old: ServiceRecord =
            serde_json::from_value(serde_json::json!({"name": "web", "state": "running", "relaunch": "rebuild"}))
                .unwrap();
        assert_eq!(old.timeout(), super::super::undo::SERVICE_TIMEOUT);
        let dir = tempfile::tempdir().unwrap();
        let ws = workspace(dir.path());
        let recorded = snapshot(&ws, &touched(&ws.plan, &ws.plan.rollback)).unwrap();
        let web = recorded.services.iter().find(|r| r.name == "web").unwrap();
        assert_eq!(web.timeout(), Duration::from_secs(180));
        let json = serde_json::to_value(web).unwrap();
        assert_eq!(json["timeout_ms"], 180_000);
    }

    #[test]
    fn a_snapshot_says_running_stopped_or_unknown_and_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspace(dir.path());
        let op = ws.oplog.begin("rollback", &serde_json::json!({}), 1).unwrap();
        let all = touched(&ws.plan, &ws.plan.rollback);
        let first = ensure_recorded(&ws, op, &all).unwrap();
        let states: Vec<Was> = first.services.iter().map(|r| r.state).collect();
        // api never started (no pid file); web has no status command; cron's says stopped.
        assert_eq!(states, [Was::Stopped, Was::Unknown, Was::Stopped]);
        // Recorded once: a resumed operation keeps what it found first.
        set_degraded(&ws, op, &["cron".to_string()], true).unwrap();
        assert_eq!(ensure_recorded(&ws, op, &all).unwrap(), first);
        assert_eq!(recorded(&ws, op).unwrap(), Some(first));
    }

    #[test]
    fn degraded_mode_follows_the_latest_record() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspace(dir.path());
        let op = ws.oplog.begin("rollback", &serde_json::json!({}), 1).unwrap();
        assert_eq!(degraded_now(&ws).unwrap(), None);
        set_degraded(&ws, op, &["cron".to_string()], false).unwrap();
        let d = degraded_now(&ws).unwrap().unwrap();
        assert_eq!((d.services, d.op), (vec!["cron".to_string()], op));
        // Unchanged: no new event unless asked for.
        set_degraded(&ws, op, &["cron".to_string()], false).unwrap();
        assert_eq!(ws.oplog.events_of(op, "degraded").unwrap().len(), 1);
        // Cleared, at the same millisecond: the later record wins.
        let undo = ws.oplog.begin("undo", &serde_json::json!({}), 2).unwrap();
        set_degraded(&ws, undo, &[], false).unwrap();
        assert_eq!(degraded_now(&ws).unwrap(), None);
        ws.clock.advance(Duration::from_secs(1));
        set_degraded(&ws, undo, &["api".to_string(), "cron".to_string()], false).unwrap();
        assert_eq!(degraded_now(&ws).unwrap().unwrap().services, ["api", "cron"]);
    }
}
