//! The `resource = [...]` rollback step: restoring checkpoint resources other
//! than git (files, venvs, databases, command-captured state) from the store.
//!
//! The restore runs as an operation of its own (kind `restore`), with its own
//! journal and its own safety checkpoint of exactly the resources it replaces,
//! so `backout undo` and `backout show` treat it like any other restore.

use crate::oplog::CheckpointRow;
use crate::resource;
use crate::resource::discard::Discard;
use crate::workspace::Workspace;

/// Restores the named resources of `checkpoint`; returns what was restored,
/// and what that discarded of what was written since the checkpoint.
pub fn restore_checkpoint_resources(
    ws: &Workspace,
    checkpoint: &CheckpointRow,
    names: &[String],
) -> anyhow::Result<(String, Vec<Discard>)> {
    let cp = resource::checkpoint_name(checkpoint.id);
    let op = ws.oplog.begin(
        "restore",
        &serde_json::json!({ "checkpoint": cp, "only": names, "from": "rollback step" }),
        ws.now_ms(),
    )?;
    match resource::restore(ws, Some(op), checkpoint, names, false, &()) {
        Ok(out) => {
            ws.oplog.finish(op, "ok", None, ws.now_ms())?;
            let mut lines = vec![format!(
                "restored {} from {cp} (op-{op}; state before it in {})",
                out.resources.join(", "),
                out.safety_checkpoint.as_deref().unwrap_or("-")
            )];
            lines.extend(
                out.changes
                    .iter()
                    .take(20)
                    .map(|c| format!("  {} {}: {}", c.action, c.resource, c.what)),
            );
            if out.changes.len() > 20 {
                lines.push(format!("  ... {} more changes", out.changes.len() - 20));
            }
            lines.extend(out.warnings.iter().map(|w| format!("  warning: {w}")));
            lines.extend(out.discarded.iter().map(|d| format!("  {}", d.sentence())));
            Ok((lines.join("\n"), out.discarded))
        }
        Err(e) => {
            let outcome = resource::takeback::outcome_of(&e);
            ws.oplog.finish(op, outcome, Some(&format!("{e:#}")), ws.now_ms())?;
            Err(e)
        }
    }
}

/// What the `resource` steps among `steps` would discard of what was written
/// since `checkpoint` (a dry run of each restore: reads only), for the
/// rollback's dry run and its confirmation. A restore that cannot be planned
/// says why in place of its measure.
pub fn would_discard(ws: &Workspace, checkpoint: &CheckpointRow, steps: &[crate::plan::Step]) -> Vec<Discard> {
    let cp = resource::checkpoint_name(checkpoint.id);
    let mut out = Vec::new();
    for s in steps {
        let crate::plan::StepKind::RestoreResource { names } = &s.kind else {
            continue;
        };
        match resource::restore(ws, None, checkpoint, names, true, &()) {
            Ok(o) => out.extend(o.discarded),
            Err(e) => out.extend(names.iter().map(|n| {
                let mut d = Discard::new(n, "row", &cp);
                d.unmeasured = Some(format!("{e:#}"));
                d
            })),
        }
    }
    out
}
