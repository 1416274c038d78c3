//! A restore is all or nothing: it reaches the checkpoint's exact state, or
//! the project is put back as it was before it.
//!
//! Planning and staging check everything a restore needs before it writes,
//! but a commit can still fail halfway (a directory it cannot write in, a
//! file it cannot remove, a database that went away). Then every resource
//! it had begun to change is put back from the safety checkpoint it took
//! first, as a journaled step of the same operation (`after_failure`).
//! A restore killed while it wrote leaves its operation unfinished; the
//! next `backout restore`, `undo` or `redo` takes it back the same way
//! before doing anything else ([`take_back_interrupted`]).

use anyhow::Context as _;
use serde::Serialize;

use super::{Cx, Held, RemoveOnDrop, Resources, checkpoint_name, history};
use crate::oplog::{CheckpointRow, OpId, OperationRow};
use crate::store::Progress;
use crate::workspace::Workspace;

/// The outcome of a restore operation that failed (or was killed) and whose
/// changes were all put back: it changed nothing, so `backout undo` passes
/// over it.
pub const TAKEN_BACK: &str = "taken back";

/// Operations after which an interrupted restore is still the last change
/// to the project: they capture, measure or check, but write nothing a
/// restore wrote (a watch that rolls back does so as a `rollback` of its own).
const READ_ONLY: &[&str] = &["checkpoint", "gc", "baseline", "verify", "init", "watch"];

/// The label of the safety checkpoint a restore of `cp_name` takes.
pub fn safety_label(cp_name: &str) -> String {
    format!("before restore of {cp_name}")
}

#[derive(Debug, thiserror::Error)]
pub enum TakeBackError {
    #[error(
        "restoring {resource} from {checkpoint} failed: {cause}\n  the restore was taken back: {} as {safety} holds them, as before the restore\n  = hint: fix the cause, then run the restore again",
        are(.put_back)
    )]
    TakenBack {
        resource: String,
        checkpoint: String,
        safety: String,
        put_back: Vec<String>,
        cause: String,
    },
    #[error(
        "restoring {resource} from {checkpoint} failed: {cause}\n  putting back the state from before the restore failed too: {back}\n  = hint: fix the cause, then `backout undo` puts back {safety}, the state from before the restore"
    )]
    PutBackFailed {
        resource: String,
        checkpoint: String,
        safety: String,
        cause: String,
        back: String,
    },
    #[error(
        "op-{op}, a restore of {checkpoint} killed while it wrote, could not be taken back: {cause}\n  = hint: fix the cause and run the command again; {safety} holds the state from before that restore"
    )]
    Interrupted {
        op: OpId,
        checkpoint: String,
        safety: String,
        cause: String,
    },
}

/// `a, b are` / `a is`.
fn are(names: &[String]) -> String {
    match names {
        [one] => format!("{one} is"),
        _ => format!("{} are", names.join(", ")),
    }
}

/// Puts back the resources of `cp` that `keep` picks, git first: all planned,
/// staged and checked before anything is written, with no safety checkpoint
/// or journal of its own (the caller journals it). Idempotent. Returns the
/// names of the resources put back. `tag` names the staging directory.
pub(super) fn put_back(
    ws: &Workspace,
    cp: &CheckpointRow,
    keep: &dyn Fn(&dyn Held) -> bool,
    tag: &str,
    progress: &dyn Progress,
) -> anyhow::Result<(Vec<String>, Vec<super::discard::Discard>)> {
    let cp_name = checkpoint_name(cp.id);
    let res = Resources::from_row(cp);
    let chosen: Vec<&dyn Held> = res.held().into_iter().filter(|h| keep(*h)).collect();
    if chosen.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let store = ws.store()?;
    let history = history(ws)?;
    let cx = Cx {
        root: ws.root(),
        plan: &ws.plan,
        store: &store,
        scratch: ws.state_dir.join("tmp").join(format!("{tag}-{}", std::process::id())),
        history: &history,
        progress,
        captured: Default::default(),
    };
    let _staged = RemoveOnDrop(&cx.scratch);
    let mut prepared = Vec::new();
    // What putting back discards of what was written since `cp`, measured before writing.
    let mut discarded = Vec::new();
    for h in &chosen {
        let p = h
            .plan_restore(&cx)
            .with_context(|| format!("cannot restore {} from {cp_name}", h.name()))?;
        if let Some(mut d) = p.discard() {
            d.since = cp_name.clone();
            d.counts.retain(|c| !c.is_empty());
            discarded.push(d);
        }
        prepared.push(
            p.prepare(&cx)
                .with_context(|| format!("cannot restore {} from {cp_name}", h.name()))?,
        );
    }
    for (h, p) in chosen.iter().zip(prepared) {
        p.commit(&cx)
            .with_context(|| format!("restoring {} from {cp_name}", h.name()))?;
    }
    Ok((chosen.iter().map(|h| h.name()).collect(), discarded))
}

/// After resource `failed` of a restore of `cp_name` failed to commit with
/// `cause`: puts back `begun` (the resources the restore had begun to
/// change, `failed` included) from `safety`, journaled as step `seq` of
/// `op`. Returns the error the restore ends with: either way, it says what
/// state the project is in.
#[allow(clippy::too_many_arguments)] // one call site, in `commit_all`
pub(super) fn after_failure(
    ws: &Workspace,
    op: OpId,
    seq: i64,
    cp_name: &str,
    safety: &CheckpointRow,
    failed: &str,
    begun: &[String],
    cause: anyhow::Error,
    progress: &dyn Progress,
) -> anyhow::Result<TakeBackError> {
    let safety_name = checkpoint_name(safety.id);
    let step = format!("put back {safety_name}");
    ws.oplog.step_begin(op, seq, &step, None, ws.now_ms())?;
    let back = put_back(ws, safety, &|h| begun.contains(&h.name()), "putback", progress).map(|(names, _)| names);
    let cause = format!("{cause:#}");
    Ok(match back {
        Ok(put_back) => {
            ws.oplog.step_end(
                op,
                seq,
                "ok",
                None,
                &format!("{} as before", put_back.join(", ")),
                ws.now_ms(),
            )?;
            TakeBackError::TakenBack {
                resource: failed.to_string(),
                checkpoint: cp_name.to_string(),
                safety: safety_name,
                put_back,
                cause,
            }
        }
        Err(e) => {
            let back = format!("{e:#}");
            ws.oplog.step_end(op, seq, "failed", None, &back, ws.now_ms())?;
            TakeBackError::PutBackFailed {
                resource: failed.to_string(),
                checkpoint: cp_name.to_string(),
                safety: safety_name,
                cause,
                back,
            }
        }
    })
}

/// The outcome to record for a restore operation that ended with `e`.
pub fn outcome_of(e: &anyhow::Error) -> &'static str {
    match e.downcast_ref::<TakeBackError>() {
        Some(TakeBackError::TakenBack { .. }) => TAKEN_BACK,
        _ => "failed",
    }
}

/// A restore killed while it wrote, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Interrupted {
    pub op: OpId,
    /// The checkpoint it was restoring.
    pub checkpoint: String,
    /// The resources put back as they were before it (empty: it had written
    /// nothing, or the project changed since and it was only closed).
    pub put_back: Vec<String>,
    /// Its safety checkpoint, which holds the state from before it.
    pub safety_checkpoint: Option<String>,
    /// Why it was closed without being taken back, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<String>,
}

/// Takes back every `backout restore` a kill interrupted, newest first:
/// each resource it had begun to change is put back from its safety
/// checkpoint, and the operation is closed as [`TAKEN_BACK`]. One that was
/// killed before it wrote anything is closed as well. One that another
/// operation changed the project after (a rollback, say, whose own safety
/// checkpoint holds the state it left) is closed and left as it is: putting
/// it back would undo the later operation. Restores run as a rollback's
/// step are the rollback's to resume and are not touched.
pub fn take_back_interrupted(ws: &Workspace, progress: &dyn Progress) -> anyhow::Result<Vec<Interrupted>> {
    let mut out = Vec::new();
    for op in ws.oplog.all_interrupted(&["restore"])? {
        if is_nested(&op) {
            continue;
        }
        ws.oplog.set_durable()?;
        let cp_name = op.args["checkpoint"].as_str().unwrap_or("?").to_string();
        let safety = ws.oplog.checkpoint_of(op.id, &safety_label(&cp_name))?;
        let steps = ws.oplog.steps(op.id)?;
        let begun: Vec<String> = steps
            .iter()
            .filter_map(|s| s.name.strip_prefix("restore ").map(str::to_string))
            .collect();
        let mut it = Interrupted {
            op: op.id,
            checkpoint: cp_name.clone(),
            put_back: Vec::new(),
            safety_checkpoint: safety.as_ref().map(|s| checkpoint_name(s.id)),
            left: None,
        };
        let later = changed_since(ws, &op)?;
        match (&safety, begun.is_empty(), later) {
            (_, true, _) => {
                ws.oplog
                    .finish(op.id, TAKEN_BACK, Some("killed before it wrote anything"), ws.now_ms())?;
            }
            (_, false, Some(later)) => {
                let why = format!(
                    "killed while it wrote, then {} op-{} changed the project: left as that operation found it (its safety checkpoint holds it)",
                    later.kind, later.id
                );
                ws.oplog.finish(op.id, "abandoned", Some(&why), ws.now_ms())?;
                it.left = Some(why);
            }
            (None, false, None) => {
                // A step begins only after the safety checkpoint is complete.
                let why = "killed while it wrote, and its safety checkpoint is gone".to_string();
                ws.oplog.finish(op.id, "abandoned", Some(&why), ws.now_ms())?;
                it.left = Some(why);
            }
            (Some(safety), false, None) => {
                let seq = steps.iter().map(|s| s.seq).max().unwrap_or(0) + 1;
                let safety_name = checkpoint_name(safety.id);
                ws.oplog
                    .step_begin(op.id, seq, &format!("put back {safety_name}"), None, ws.now_ms())?;
                match put_back(ws, safety, &|h| begun.contains(&h.name()), "putback", progress).map(|(names, _)| names)
                {
                    Ok(names) => {
                        ws.oplog.step_end(
                            op.id,
                            seq,
                            "ok",
                            None,
                            &format!("{} as before", names.join(", ")),
                            ws.now_ms(),
                        )?;
                        ws.oplog.finish(
                            op.id,
                            TAKEN_BACK,
                            Some(&format!("killed while it wrote; put back as {safety_name} holds it")),
                            ws.now_ms(),
                        )?;
                        it.put_back = names;
                    }
                    Err(e) => {
                        let cause = format!("{e:#}");
                        ws.oplog.step_end(op.id, seq, "failed", None, &cause, ws.now_ms())?;
                        return Err(TakeBackError::Interrupted {
                            op: op.id,
                            checkpoint: cp_name,
                            safety: safety_name,
                            cause,
                        }
                        .into());
                    }
                }
            }
        }
        out.push(it);
    }
    Ok(out)
}

/// The newest operation a crash interrupted that still needs its
/// checkpoints: a rollback, undo or redo to resume, or a `backout restore`
/// to take back. A restore run as a rollback's step is left out: resuming
/// the rollback runs the step again, with a safety checkpoint of its own.
pub fn pending(ws: &Workspace) -> anyhow::Result<Option<OperationRow>> {
    let ops = ws.oplog.all_interrupted(&["rollback", "undo", "redo", "restore"])?;
    Ok(ops.into_iter().find(|o| !is_nested(o)))
}

/// A restore run as a step of a rollback.
fn is_nested(op: &OperationRow) -> bool {
    op.kind == "restore" && op.args["from"].as_str() == Some("rollback step")
}

/// The first operation after `op` that may have changed the project.
fn changed_since(ws: &Workspace, op: &OperationRow) -> anyhow::Result<Option<OperationRow>> {
    Ok(ws
        .oplog
        .operations_after(op.id)?
        .into_iter()
        .find(|o| !READ_ONLY.contains(&o.kind.as_str())))
}
