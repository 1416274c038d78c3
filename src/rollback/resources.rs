//! The `resource = [...]` rollback step: restoring checkpoint resources other
//! than git (files, venvs, databases, command-captured state) from the store.
//!
//! The restore runs as an operation of its own (kind `restore`), with its own
//! journal and its own safety checkpoint of exactly the resources it replaces,
//! so `backout undo` and `backout show` treat it like any other restore.

use crate::oplog::CheckpointRow;
use crate::resource;
use crate::workspace::Workspace;

/// Restores the named resources of `checkpoint`; returns what was restored.
pub fn restore_checkpoint_resources(
    ws: &Workspace,
    checkpoint: &CheckpointRow,
    names: &[String],
) -> anyhow::Result<String> {
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
            Ok(lines.join("\n"))
        }
        Err(e) => {
            let outcome = resource::takeback::outcome_of(&e);
            ws.oplog.finish(op, outcome, Some(&format!("{e:#}")), ws.now_ms())?;
            Err(e)
        }
    }
}
