//! Restoring checkpoint resources other than git (files, venvs, databases) from
//! the content-addressed store.
//!
//! The store, path capture and `backout restore` are built separately; this is
//! the one seam where the `resource = [...]` step (and `restore = [...], from =
//! "checkpoint"` for paths git does not track) reaches them. Until the store is
//! wired in, the step fails with [`ResourceRestoreError::StoreUnavailable`],
//! before it changes anything.

use crate::oplog::CheckpointRow;
use crate::workspace::Workspace;

#[derive(Debug, thiserror::Error)]
pub enum ResourceRestoreError {
    #[error(
        "cannot restore {names} from checkpoint cp-{checkpoint}: restoring files, venvs and databases needs the checkpoint store, which this build of backout does not include yet; nothing was changed\n  = hint: for files tracked by git use restore = [...], from = \"checkpoint\" or a git revision"
    )]
    StoreUnavailable { names: String, checkpoint: i64 },
}

/// Restores the named resources of `checkpoint`; returns what was restored.
pub fn restore_checkpoint_resources(
    _ws: &Workspace,
    checkpoint: &CheckpointRow,
    names: &[String],
) -> Result<String, ResourceRestoreError> {
    Err(ResourceRestoreError::StoreUnavailable {
        names: names.join(", "),
        checkpoint: checkpoint.id,
    })
}
