//! Journal queries the rollback executor needs to resume: durable writes, steps
//! re-begun after an interruption, an operation's events and checkpoints, and
//! the interrupted operations themselves.

use rusqlite::{OptionalExtension, params};

use super::{CheckpointRow, EventRow, OpId, OperationRow, Oplog, OplogError, kinds_in};

impl Oplog {
    /// Makes every later commit durable before it returns (`synchronous = FULL`):
    /// a journal entry that a kill -9 or a power cut could lose is worthless.
    pub fn set_durable(&self) -> Result<(), OplogError> {
        self.conn.execute_batch("PRAGMA synchronous = FULL;").map_err(self.q())
    }

    /// Journals a step before it runs, again: a step interrupted by a crash is
    /// started anew on resume, keeping its row (`UNIQUE (op_id, seq)`).
    pub fn step_rebegin(
        &self,
        op: OpId,
        seq: i64,
        name: &str,
        command: Option<&str>,
        now: i64,
    ) -> Result<(), OplogError> {
        self.conn
            .execute(
                "INSERT INTO steps (op_id, seq, name, command, started_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (op_id, seq) DO UPDATE SET name = excluded.name, command = excluded.command,
                   started_at = excluded.started_at, ended_at = NULL, outcome = NULL, exit_code = NULL, output = NULL",
                params![op, seq, self.red(name), command.map(|c| self.red(c)), now],
            )
            .map_err(self.q())?;
        Ok(())
    }

    /// Events of one operation of one kind, oldest first.
    pub fn events_of(&self, op: OpId, kind: &str) -> Result<Vec<EventRow>, OplogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT op_id, at, kind, detail FROM events WHERE op_id = ?1 AND kind = ?2 ORDER BY id")
            .map_err(self.q())?;
        let rows = stmt
            .query_map(params![op, kind], EventRow::from_row)
            .map_err(self.q())?;
        rows.collect::<Result<_, _>>().map_err(self.q())
    }

    /// The newest event of one of `kinds`, by time and then by insertion.
    pub fn latest_event_of(&self, kinds: &[&str]) -> Result<Option<EventRow>, OplogError> {
        let list = kinds_in(kinds);
        self.conn
            .query_row(
                &format!("SELECT op_id, at, kind, detail FROM events WHERE kind IN ({list}) ORDER BY at DESC, id DESC LIMIT 1"),
                [],
                EventRow::from_row,
            )
            .optional()
            .map_err(self.q())
    }

    /// The complete checkpoint an operation took with `label`, if any.
    pub fn checkpoint_of(&self, op: OpId, label: &str) -> Result<Option<CheckpointRow>, OplogError> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM checkpoints WHERE op_id = ?1 AND label = ?2 AND complete = 1 ORDER BY id DESC LIMIT 1",
                params![op, label],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.q())?;
        match id {
            Some(id) => self.checkpoint(id),
            None => Ok(None),
        }
    }

    /// One operation by id.
    pub fn operation(&self, id: OpId) -> Result<Option<OperationRow>, OplogError> {
        Ok(self.operations_where("id = ?1", params![id], 1)?.into_iter().next())
    }

    /// The newest operation of one of `kinds` that never finished (killed).
    pub fn interrupted(&self, kinds: &[&str]) -> Result<Option<OperationRow>, OplogError> {
        let list = kinds_in(kinds);
        Ok(self
            .operations_where(&format!("ended_at IS NULL AND kind IN ({list})"), params![], 1)?
            .into_iter()
            .next())
    }

    /// Every operation of one of `kinds` that never finished, newest first.
    pub fn all_interrupted(&self, kinds: &[&str]) -> Result<Vec<OperationRow>, OplogError> {
        let list = kinds_in(kinds);
        self.operations_where(&format!("ended_at IS NULL AND kind IN ({list})"), params![], 1000)
    }

    /// Operations begun after `op`, oldest first.
    pub fn operations_after(&self, op: OpId) -> Result<Vec<OperationRow>, OplogError> {
        let mut v = self.operations_where("id > ?1", params![op], 1000)?;
        v.reverse();
        Ok(v)
    }

    /// Finished operations of `kinds`, newest first.
    pub fn finished(&self, kinds: &[&str], limit: usize) -> Result<Vec<OperationRow>, OplogError> {
        let list = kinds_in(kinds);
        self.operations_where(&format!("ended_at IS NOT NULL AND kind IN ({list})"), params![], limit)
    }

    pub(super) fn operations_where(
        &self,
        cond: &str,
        p: impl rusqlite::Params,
        limit: usize,
    ) -> Result<Vec<OperationRow>, OplogError> {
        let sql = format!(
            "SELECT id, kind, args, started_at, ended_at, outcome, error FROM operations WHERE {cond} ORDER BY id DESC LIMIT {limit}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.q())?;
        let rows = stmt.query_map(p, Self::operation_from_row).map_err(self.q())?;
        rows.collect::<Result<_, _>>().map_err(self.q())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Redactor;

    #[test]
    fn an_interrupted_step_begins_again_in_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let log = Oplog::open(&dir.path().join("state.db"), Redactor::new()).unwrap();
        log.set_durable().unwrap();
        let op = log.begin("rollback", &serde_json::json!({}), 1).unwrap();
        log.step_begin(op, 1, "git revert", None, 2).unwrap();
        assert_eq!(log.interrupted(&["rollback"]).unwrap().unwrap().id, op);
        log.step_rebegin(op, 1, "git revert", Some("git revert"), 3).unwrap();
        log.step_end(op, 1, "ok", Some(0), "", 4).unwrap();
        let steps = log.steps(op).unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].started_at, 3);
        assert_eq!(steps[0].outcome.as_deref(), Some("ok"));
        log.finish(op, "ok", None, 5).unwrap();
        assert!(log.interrupted(&["rollback"]).unwrap().is_none());
        assert_eq!(log.finished(&["rollback"], 5).unwrap()[0].id, op);
    }
}
