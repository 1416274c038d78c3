//! `backout undo` and `backout redo`. Every rollback (and restore) is an
//! operation that took a safety checkpoint before its first step; undo puts the
//! project back exactly as that checkpoint holds it (git — HEAD, branch, index,
//! work tree, untracked files — and every captured path, database and
//! command-captured resource), then brings every service the operation touched
//! back to the state it recorded before its first step ([`super::services`]):
//! running ones restarted (rebuilt when the rollback rebuilt them) so they run
//! the restored code, and waited for when they have a readiness probe; stopped
//! ones stopped; degraded mode as it was. The undo is itself an operation with
//! its own safety checkpoint and its own record of those services, which is
//! what redo puts back. Each part is a journaled step: an undo or redo killed
//! midway is finished by the next `undo`/`redo`, from its journal, without
//! repeating the steps it completed; one that failed can simply be run again.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::StepReport;
use super::services::{self, ServicesBefore, Was};
use crate::oplog::{CheckpointRow, OpId, OperationRow};
use crate::plan::{Probe, Service, ServiceAction};
use crate::resource::{self, Resources, git};
use crate::service::control;
use crate::workspace::Workspace;

/// Operations that undo can take back.
pub const UNDOABLE: &[&str] = &["rollback", "restore", "redo"];

/// How long an undo gives one service action when the operation's record does
/// not say (records written before timeouts were kept).
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("nothing to undo: no finished rollback or restore that is not undone already")]
    NothingToUndo,
    #[error("nothing to redo: no undo since the last rollback")]
    NothingToRedo,
    #[error("op-{op} is a rollback a crash interrupted; finish it first\n  = hint: backout rollback --resume")]
    RollbackInterrupted { op: OpId },
    #[error(
        "op-{op} kept no safety checkpoint to go back to\n  = hint: `backout log` lists the operations and their checkpoints"
    )]
    NoSafetyCheckpoint { op: OpId },
    #[error("putting back cp-{checkpoint} failed")]
    Git {
        checkpoint: i64,
        #[source]
        source: git::GitError,
    },
    #[error("cannot remove {path}")]
    Remove {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{kind} op-{op}: step {seq} ({name}) failed: {output}\n  = hint: the steps before it took effect (`backout show op-{op}`); fix the cause and run `backout {kind}` again"
    )]
    StepFailed {
        kind: String,
        op: OpId,
        seq: i64,
        name: String,
        output: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct UndoReport {
    pub op: OpId,
    /// "undo" or "redo".
    pub kind: String,
    /// The operation taken back (undo) or reapplied (redo).
    pub target_op: OpId,
    /// The checkpoint the project now matches.
    pub restored: String,
    /// Taken first, so this can be taken back too.
    pub safety_checkpoint: String,
    /// Putting the checkpoint back, then each service brought back.
    pub steps: Vec<StepReport>,
    /// Services left as they are, and why.
    pub notes: Vec<String>,
    /// The degraded mode now in force (empty: none), when the target recorded one.
    pub degraded: Option<Vec<String>>,
    pub duration_ms: u64,
    pub resumed: bool,
    /// Safety checkpoints `[store]` dropped once it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<resource::retention::Pruned>,
}

/// The safety checkpoint an operation took before its first step.
pub fn safety_of(ws: &Workspace, op: &OperationRow) -> anyhow::Result<Option<CheckpointRow>> {
    let label = match (op.kind.as_str(), op.args["checkpoint"].as_str()) {
        // A restore labels it with the checkpoint it restores.
        ("restore", Some(cp)) => resource::takeback::safety_label(cp),
        (kind, _) => format!("before {kind}"),
    };
    Ok(ws.oplog.checkpoint_of(op.id, &label)?)
}

/// A restore run as a step of a rollback is part of that rollback: undoing the
/// rollback (from the safety checkpoint it took before all its steps) takes it back.
fn is_nested(op: &OperationRow) -> bool {
    op.kind == "restore" && op.args["from"].as_str() == Some("rollback step")
}

/// The operation `backout undo` would take back now: the newest rollback,
/// restore or redo not undone yet.
pub fn undo_target(ws: &Workspace) -> anyhow::Result<Option<OperationRow>> {
    // An undo that failed took nothing back for good: its target can be undone again.
    let undone: BTreeSet<i64> = ws
        .oplog
        .finished(&["undo"], 1000)?
        .iter()
        .filter(|u| u.outcome.as_deref() == Some("ok"))
        .filter_map(|u| u.args["undoes"].as_i64())
        .collect();
    Ok(ws
        .oplog
        .finished(UNDOABLE, 1000)?
        .into_iter()
        .find(|o| !undone.contains(&o.id) && !is_nested(o) && !changed_nothing(o)))
}

/// A restore that failed and was taken back whole changed nothing: there is
/// nothing to undo, and it does not end what redo can reapply.
fn changed_nothing(op: &OperationRow) -> bool {
    op.outcome.as_deref() == Some(resource::takeback::TAKEN_BACK)
}

/// The undo `backout redo` would reapply now: the newest one not redone,
/// if nothing was rolled back or restored since.
pub fn redo_target(ws: &Workspace) -> anyhow::Result<Option<OperationRow>> {
    let redone: BTreeSet<i64> = ws
        .oplog
        .finished(&["redo"], 1000)?
        .iter()
        .filter(|u| u.outcome.as_deref() == Some("ok"))
        .filter_map(|u| u.args["redoes"].as_i64())
        .collect();
    let newest_change = ws
        .oplog
        .finished(&["rollback", "restore"], 1000)?
        .into_iter()
        .find(|o| !changed_nothing(o))
        .map(|o| o.id);
    Ok(ws
        .oplog
        .finished(&["undo"], 1000)?
        .into_iter()
        .filter(|o| o.outcome.as_deref() == Some("ok"))
        .find(|o| !redone.contains(&o.id))
        .filter(|o| newest_change.is_none_or(|c| o.id > c)))
}

/// Undoes the newest rollback, restore or redo not undone yet.
pub async fn undo(ws: &Workspace) -> anyhow::Result<UndoReport> {
    take_back_or_redo(ws, "undo", undo_target, UndoError::NothingToUndo).await
}

/// Reapplies what the newest undo took back, if nothing was rolled back since.
pub async fn redo(ws: &Workspace) -> anyhow::Result<UndoReport> {
    take_back_or_redo(ws, "redo", redo_target, UndoError::NothingToRedo).await
}

/// `undo` or `redo` (`kind`): puts back the safety checkpoint of the
/// operation `target` names, after finishing one a crash interrupted.
async fn take_back_or_redo(
    ws: &Workspace,
    kind: &str,
    target: fn(&Workspace) -> anyhow::Result<Option<OperationRow>>,
    none: UndoError,
) -> anyhow::Result<UndoReport> {
    refuse_if_rollback_interrupted(ws)?;
    if let Some(r) = finish_interrupted(ws).await? {
        return Ok(r);
    }
    let target = target(ws)?.ok_or(none)?;
    let cp = safety_of(ws, &target)?.ok_or(UndoError::NoSafetyCheckpoint { op: target.id })?;
    let key = if kind == "undo" { "undoes" } else { "redoes" };
    let args = serde_json::json!({ key: target.id, "checkpoint_id": cp.id });
    perform(ws, kind, target.id, &cp, &args, None).await
}

/// Undoing around a half-done rollback would mix two states.
fn refuse_if_rollback_interrupted(ws: &Workspace) -> anyhow::Result<()> {
    match ws.oplog.interrupted(&["rollback"])? {
        Some(op) => Err(UndoError::RollbackInterrupted { op: op.id }.into()),
        None => Ok(()),
    }
}

/// An undo or redo killed midway is finished before anything else.
async fn finish_interrupted(ws: &Workspace) -> anyhow::Result<Option<UndoReport>> {
    let Some(op) = ws.oplog.interrupted(&["undo", "redo"])? else {
        return Ok(None);
    };
    let target = op.args["undoes"].as_i64().or(op.args["redoes"].as_i64()).unwrap_or(-1);
    let cp_id = op.args["checkpoint_id"].as_i64().unwrap_or(-1);
    let cp = ws
        .oplog
        .checkpoint(cp_id)?
        .filter(|c| c.complete)
        .ok_or(super::RollbackError::CheckpointGone {
            op: op.id,
            checkpoint: cp_id,
        })?;
    let kind = op.kind.clone();
    let args = op.args.clone();
    Ok(Some(perform(ws, &kind, target, &cp, &args, Some(op)).await?))
}

/// One step of an undo or redo.
enum Action<'a> {
    /// Git, paths, databases and command-captured state from the checkpoint.
    PutBack,
    /// The service, the action, and how long it may take.
    Service(&'a Service, ServiceAction, Duration),
    /// How healthy the service is once restarted: waited for, not required
    /// (the state put back may be the broken one a rollback was for).
    Health(&'a Probe, Duration),
}

struct Planned<'a> {
    name: String,
    command: Option<String>,
    action: Action<'a>,
}

/// The steps that bring back what `wanted` recorded: the checkpoint first, then
/// stopped services stopped, then running ones relaunched and waited for.
fn plan_steps<'a>(
    ws: &'a Workspace,
    cp: &CheckpointRow,
    target_op: OpId,
    wanted: Option<&ServicesBefore>,
) -> (Vec<Planned<'a>>, Vec<String>) {
    let mut steps = vec![Planned {
        name: format!("put back {}", resource::checkpoint_name(cp.id)),
        command: None,
        action: Action::PutBack,
    }];
    let mut notes = Vec::new();
    let Some(wanted) = wanted else {
        return (steps, notes);
    };
    let known = |name: &str, notes: &mut Vec<String>| {
        let svc = ws.plan.service(name);
        if svc.is_none() {
            notes.push(format!("{name}: no longer a service of the plan; left as it is"));
        }
        svc
    };
    for r in wanted.services.iter().filter(|r| r.state == Was::Stopped) {
        if let Some(svc) = known(&r.name, &mut notes) {
            steps.push(Planned {
                name: format!("stop {}", r.name),
                command: Some(control::describe(svc, ServiceAction::Stop)),
                action: Action::Service(svc, ServiceAction::Stop, r.timeout()),
            });
        }
    }
    for r in &wanted.services {
        match r.state {
            Was::Stopped => {}
            Was::Unknown => notes.push(format!(
                "{}: its state before op-{target_op} is unknown (no status command, or its manager did not answer); left as it is",
                r.name
            )),
            Was::Running => {
                let Some(svc) = known(&r.name, &mut notes) else {
                    continue;
                };
                let action = r.relaunch.action();
                let verb = serde_json::to_value(action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                steps.push(Planned {
                    name: format!("{verb} {}", r.name),
                    command: Some(control::describe(svc, action)),
                    action: Action::Service(svc, action, r.timeout()),
                });
                if let Some(probe) = svc.ready.as_deref().and_then(|p| ws.plan.probe(p)) {
                    steps.push(Planned {
                        name: format!("wait for {}", probe.name),
                        command: None,
                        action: Action::Health(probe, svc.ready_timeout),
                    });
                }
            }
        }
    }
    (steps, notes)
}

async fn perform(
    ws: &Workspace,
    kind: &str,
    target_op: OpId,
    cp: &CheckpointRow,
    args: &serde_json::Value,
    resume: Option<OperationRow>,
) -> anyhow::Result<UndoReport> {
    ws.oplog.set_durable()?;
    let t = Instant::now();
    let resumed = resume.is_some();
    let op = match &resume {
        Some(o) => o.id,
        None => ws.oplog.begin(kind, args, ws.now_ms())?,
    };
    let label = format!("before {kind}");
    let safety = match ws.oplog.checkpoint_of(op, &label)? {
        Some(s) => s,
        None => resource::checkpoint(ws, op, Some(&label), None)?,
    };
    let run_dir = ws.run_dir()?;
    let mut notes = crate::service::reap_interrupted_starts(&ws.plan, &run_dir);
    // What the target found before it began, and, recorded before this changes
    // anything, the same services as they are now: what undoing this brings back.
    let wanted = services::recorded(ws, target_op)?;
    if let Some(w) = &wanted {
        let same: Vec<_> = w
            .services
            .iter()
            .map(|r| services::Touched {
                name: r.name.clone(),
                relaunch: r.relaunch,
                timeout: r.timeout(),
            })
            .collect();
        services::ensure_recorded(ws, op, &same)?;
    }
    let (planned, more) = plan_steps(ws, cp, target_op, wanted.as_ref());
    notes.extend(more);
    let journal: HashMap<i64, Option<String>> = ws.oplog.steps(op)?.into_iter().map(|r| (r.seq, r.outcome)).collect();
    let mut steps = Vec::new();
    let mut failed = None;
    for (i, p) in planned.iter().enumerate() {
        let seq = i as i64 + 1;
        let at = ws.now_ms();
        match journal.get(&seq) {
            Some(Some(o)) if o == "ok" => {
                steps.push(StepReport {
                    seq,
                    name: p.name.clone(),
                    command: p.command.clone(),
                    ok: true,
                    exit_code: Some(0),
                    output: "done before the interruption; not run again".into(),
                    started_at: at,
                    duration_ms: 0,
                    already_done: true,
                    discarded: Vec::new(),
                    notes: Vec::new(),
                });
                continue;
            }
            Some(_) => ws.oplog.step_rebegin(op, seq, &p.name, p.command.as_deref(), at)?,
            None => ws.oplog.step_begin(op, seq, &p.name, p.command.as_deref(), at)?,
        }
        let st = Instant::now();
        let (ok, output) = match &p.action {
            Action::PutBack => match put_back_all(ws, cp, &safety, resumed || journal.contains_key(&seq)) {
                Ok(out) => (true, out),
                Err(e) => (false, format!("{e:#}")),
            },
            // The ready probe is a step of its own here (a wait), so the restart itself does not wait.
            Action::Service(svc, action, timeout) => {
                match control::act(svc, *action, &run_dir, *timeout, None, &ws.clock).await {
                    Ok(acted) => {
                        notes.extend(acted.notes);
                        (true, acted.text)
                    }
                    Err(e) => (false, format!("{e:#}")),
                }
            }
            Action::Health(probe, timeout) => {
                let watched = crate::service::ready::watched(&ws.plan.services, probe, &run_dir);
                let w = crate::service::ready::observe(probe, &ws.clock, *timeout, &watched).await;
                if !w.ok {
                    notes.push(format!(
                        "not healthy in the state put back (as it was before op-{target_op}): {}",
                        w.message
                    ));
                }
                // Its health is reported, not required: this is the state asked for.
                (true, w.message)
            }
        };
        let output = crate::exec::tail_lines(&output, 40);
        let outcome = if ok { "ok" } else { "failed" };
        ws.oplog
            .step_end(op, seq, outcome, ok.then_some(0), &output, ws.now_ms())?;
        steps.push(StepReport {
            seq,
            name: p.name.clone(),
            command: p.command.clone(),
            ok,
            exit_code: ok.then_some(0),
            output: output.clone(),
            started_at: at,
            duration_ms: st.elapsed().as_millis() as u64,
            already_done: false,
            discarded: Vec::new(),
            notes: Vec::new(),
        });
        if !ok {
            failed = Some(UndoError::StepFailed {
                kind: kind.to_string(),
                op,
                seq,
                name: p.name.clone(),
                output,
            });
            break;
        }
    }
    let mut degraded = None;
    if failed.is_none()
        && let Some(w) = &wanted
    {
        services::set_degraded(ws, op, &w.degraded, false)?;
        degraded = Some(w.degraded.clone());
    }
    let error = failed.as_ref().map(|e| e.to_string());
    let outcome = if failed.is_none() { "ok" } else { "failed" };
    ws.oplog.finish(op, outcome, error.as_deref(), ws.now_ms())?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok(UndoReport {
        op,
        kind: kind.to_string(),
        target_op,
        restored: resource::checkpoint_name(cp.id),
        safety_checkpoint: resource::checkpoint_name(safety.id),
        steps,
        notes,
        degraded,
        duration_ms: t.elapsed().as_millis() as u64,
        resumed,
        pruned: resource::retention::after_operation(ws),
    })
}

/// Puts back everything `cp` holds: git first (it removes untracked files the
/// checkpoint did not have), then paths, databases and command-captured state.
/// What this discards of what was written since is said after what it put
/// back, with `safety` (taken first) keeping it.
fn put_back_all(
    ws: &Workspace,
    cp: &CheckpointRow,
    safety: &CheckpointRow,
    after_crash: bool,
) -> anyhow::Result<String> {
    let mut done = Vec::new();
    if let Some(state) = Resources::from_row(cp).git {
        git::check_repository(&state, ws.root()).map_err(|source| UndoError::Git {
            checkpoint: cp.id,
            source,
        })?;
        put_back(&state, after_crash).map_err(|source| match source {
            PutBackError::Git(source) => UndoError::Git {
                checkpoint: cp.id,
                source,
            },
            PutBackError::Remove(path, source) => UndoError::Remove { path, source },
        })?;
        done.push("git".to_string());
    }
    let (names, discarded) = resource::restore_all_but_git(ws, cp)?;
    done.extend(names);
    let mut out = format!(
        "{} as {} holds them",
        if done.is_empty() {
            "nothing to put back".to_string()
        } else {
            done.join(", ")
        },
        resource::checkpoint_name(cp.id)
    );
    for mut d in discarded {
        d.kept_in = Some(resource::checkpoint_name(safety.id));
        out.push_str(&format!("\n{}", d.sentence()));
    }
    Ok(out)
}

enum PutBackError {
    Git(git::GitError),
    Remove(std::path::PathBuf, std::io::Error),
}

impl From<git::GitError> for PutBackError {
    fn from(e: git::GitError) -> Self {
        PutBackError::Git(e)
    }
}

/// Makes the repository exactly what `state` captured: HEAD and its branch, the
/// index, the work tree, and untracked (not ignored) files. Idempotent.
fn put_back(state: &git::GitState, after_crash: bool) -> Result<(), PutBackError> {
    let dir = &state.toplevel;
    let g = |args: &[&str]| git::git(dir, args, &[]);
    if after_crash {
        let git_dir = g(&["rev-parse", "--absolute-git-dir"])?;
        let lock = Path::new(&git_dir).join("index.lock");
        if lock.exists() {
            std::fs::remove_file(&lock).map_err(|e| PutBackError::Remove(lock.clone(), e))?;
        }
    }
    match (&state.branch, &state.head) {
        (Some(branch), Some(head)) => {
            g(&["update-ref", branch, head])?;
            g(&["symbolic-ref", "HEAD", branch])?;
        }
        (Some(branch), None) => {
            g(&["symbolic-ref", "HEAD", branch])?;
            let _ = g(&["update-ref", "-d", branch]);
        }
        (None, Some(head)) => {
            g(&["update-ref", "--no-deref", "HEAD", head])?;
        }
        (None, None) => {}
    }
    // Untracked files now are in the safety checkpoint just taken; those the
    // captured state holds come back from it below.
    let untracked = g(&["ls-files", "-z", "--others", "--exclude-standard"])?;
    for rel in untracked.split('\0').filter(|s| !s.is_empty()) {
        let p = dir.join(rel);
        // Never follows a symlink: remove_file removes the link itself.
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PutBackError::Remove(p, e)),
        }
    }
    // Index and work tree become the captured work tree, then the index alone
    // goes back to what was staged, so staged vs unstaged is exact too.
    g(&["read-tree", "--reset", "-u", &state.commit])?;
    g(&["read-tree", &state.index_tree])?;
    Ok(())
}
