//! Listing and dropping checkpoints (for `backout checkpoints` and `backout gc`).

use rusqlite::params;

use super::{CheckpointRow, Oplog, OplogError};

impl Oplog {
    /// Every checkpoint, complete or not, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<CheckpointRow>, OplogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, op_id, created_at, label, phase, complete, resources FROM checkpoints ORDER BY id")
            .map_err(self.q())?;
        let rows = stmt.query_map([], Self::checkpoint_from_row).map_err(self.q())?;
        rows.collect::<Result<_, _>>().map_err(self.q())
    }

    /// Removes a checkpoint's row (its objects are gc's business).
    pub fn delete_checkpoint(&self, id: i64) -> Result<(), OplogError> {
        self.conn
            .execute("DELETE FROM checkpoints WHERE id = ?1", params![id])
            .map_err(self.q())?;
        Ok(())
    }
}
