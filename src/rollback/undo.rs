//! `backout undo` and `backout redo`. Every rollback (and restore) is an
//! operation that took a safety checkpoint before its first step; undo puts the
//! repository back exactly as that checkpoint holds it (HEAD, branch, index,
//! work tree, untracked files), and is itself an operation with its own safety
//! checkpoint, which is what redo puts back. An undo or redo killed midway is
//! finished by the next `undo`/`redo`, from its own journal.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::oplog::{CheckpointRow, OpId, OperationRow};
use crate::resource::{self, Resources, git};
use crate::workspace::Workspace;

/// Operations that undo can take back.
pub const UNDOABLE: &[&str] = &["rollback", "restore", "redo"];

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
    #[error("cp-{checkpoint} holds no git state to put back (the plan did not capture git)")]
    NoGitState { checkpoint: i64 },
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
}

#[derive(Debug, Clone, Serialize)]
pub struct UndoReport {
    pub op: OpId,
    /// "undo" or "redo".
    pub kind: String,
    /// The operation taken back (undo) or reapplied (redo).
    pub target_op: OpId,
    /// The checkpoint the repository now matches.
    pub restored: String,
    /// Taken first, so this can be taken back too.
    pub safety_checkpoint: String,
    pub duration_ms: u64,
    pub resumed: bool,
}

/// The safety checkpoint an operation took before its first step.
pub fn safety_of(ws: &Workspace, op: &OperationRow) -> anyhow::Result<Option<CheckpointRow>> {
    Ok(ws.oplog.checkpoint_of(op.id, &format!("before {}", op.kind))?)
}

/// Undoes the newest rollback, restore or redo not undone yet.
pub fn undo(ws: &Workspace) -> anyhow::Result<UndoReport> {
    refuse_if_rollback_interrupted(ws)?;
    if let Some(r) = finish_interrupted(ws)? {
        return Ok(r);
    }
    let undone: BTreeSet<i64> = ws
        .oplog
        .finished(&["undo"], 1000)?
        .iter()
        .filter_map(|u| u.args["undoes"].as_i64())
        .collect();
    let target = ws
        .oplog
        .finished(UNDOABLE, 1000)?
        .into_iter()
        .find(|o| !undone.contains(&o.id))
        .ok_or(UndoError::NothingToUndo)?;
    let cp = safety_of(ws, &target)?.ok_or(UndoError::NoSafetyCheckpoint { op: target.id })?;
    let args = serde_json::json!({ "undoes": target.id, "checkpoint_id": cp.id });
    perform(ws, "undo", target.id, &cp, &args, None)
}

/// Reapplies what the newest undo took back, if nothing was rolled back since.
pub fn redo(ws: &Workspace) -> anyhow::Result<UndoReport> {
    refuse_if_rollback_interrupted(ws)?;
    if let Some(r) = finish_interrupted(ws)? {
        return Ok(r);
    }
    let redone: BTreeSet<i64> = ws
        .oplog
        .finished(&["redo"], 1000)?
        .iter()
        .filter_map(|u| u.args["redoes"].as_i64())
        .collect();
    let newest_change = ws.oplog.finished(&["rollback", "restore"], 1)?.first().map(|o| o.id);
    let target = ws
        .oplog
        .finished(&["undo"], 1000)?
        .into_iter()
        .find(|o| !redone.contains(&o.id))
        .filter(|o| newest_change.is_none_or(|c| o.id > c))
        .ok_or(UndoError::NothingToRedo)?;
    let cp = safety_of(ws, &target)?.ok_or(UndoError::NoSafetyCheckpoint { op: target.id })?;
    let args = serde_json::json!({ "redoes": target.id, "checkpoint_id": cp.id });
    perform(ws, "redo", target.id, &cp, &args, None)
}

/// Undoing around a half-done rollback would mix two states.
fn refuse_if_rollback_interrupted(ws: &Workspace) -> anyhow::Result<()> {
    match ws.oplog.interrupted(&["rollback"])? {
        Some(op) => Err(UndoError::RollbackInterrupted { op: op.id }.into()),
        None => Ok(()),
    }
}

/// An undo or redo killed midway is finished before anything else.
fn finish_interrupted(ws: &Workspace) -> anyhow::Result<Option<UndoReport>> {
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
    Ok(Some(perform(ws, &kind, target, &cp, &args, Some(op))?))
}

fn perform(
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
    let state = Resources::from_row(cp)
        .git
        .ok_or(UndoError::NoGitState { checkpoint: cp.id })?;
    let name = format!("put back {}", resource::checkpoint_name(cp.id));
    let steps = ws.oplog.steps(op)?;
    if steps.is_empty() {
        ws.oplog.step_begin(op, 1, &name, None, ws.now_ms())?;
    } else {
        ws.oplog.step_rebegin(op, 1, &name, None, ws.now_ms())?;
    }
    let result = put_back(&state, resumed).map_err(|source| match source {
        PutBackError::Git(source) => UndoError::Git {
            checkpoint: cp.id,
            source,
        },
        PutBackError::Remove(path, source) => UndoError::Remove { path, source },
    });
    let (outcome, output) = match &result {
        Ok(()) => (
            "ok",
            format!("the repository matches {}", resource::checkpoint_name(cp.id)),
        ),
        Err(e) => ("failed", format!("{e:#}")),
    };
    ws.oplog.step_end(op, 1, outcome, None, &output, ws.now_ms())?;
    ws.oplog.finish(
        op,
        outcome,
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
        ws.now_ms(),
    )?;
    result?;
    Ok(UndoReport {
        op,
        kind: kind.to_string(),
        target_op,
        restored: resource::checkpoint_name(cp.id),
        safety_checkpoint: resource::checkpoint_name(safety.id),
        duration_ms: t.elapsed().as_millis() as u64,
        resumed,
    })
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
