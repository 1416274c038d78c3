//! Queries over recorded history: the samples each past watch and baseline
//! stored, which baseline was current at a given time, and which watches were
//! healthy — for baselines taken from history and for `backout replay`.

use rusqlite::{OptionalExtension, params};

use super::{OpId, Oplog, OplogError, SampleRow};

/// Outcomes of a watch that ended without calling for a rollback.
const HEALTHY_OUTCOMES: &str = "'success', 'time_up'";

fn sample_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SampleRow> {
    Ok(SampleRow {
        probe: r.get(0)?,
        at: r.get(1)?,
        ok: r.get(2)?,
        latency_ms: r.get(3)?,
        status: r.get(4)?,
        size: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
        error: r.get(6)?,
        value: r.get(7)?,
        fields: r
            .get::<_, Option<String>>(8)?
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default(),
    })
}

impl Oplog {
    /// The samples operation `op` stored (of `probe`, or every probe), oldest first.
    pub fn samples_of(&self, op: OpId, probe: Option<&str>) -> Result<Vec<SampleRow>, OplogError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT probe, at, ok, latency_ms, status, size, error, value, fields FROM samples
                 WHERE op_id = ?1 AND (?2 IS NULL OR probe = ?2) ORDER BY at, id",
            )
            .map_err(self.q())?;
        let rows = stmt.query_map(params![op, probe], sample_from_row).map_err(self.q())?;
        rows.collect::<Result<_, _>>().map_err(self.q())
    }

    /// The baseline of `probe` that was the latest at time `at`: the operation
    /// that measured it, when, and its statistics.
    pub fn baseline_at(&self, probe: &str, at: i64) -> Result<Option<(OpId, i64, serde_json::Value)>, OplogError> {
        let row: Option<(OpId, i64, String)> = self
            .conn
            .query_row(
                "SELECT op_id, measured_at, stats FROM baselines WHERE probe = ?1 AND measured_at <= ?2
                 ORDER BY measured_at DESC, id DESC LIMIT 1",
                params![probe, at],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.q())?;
        Ok(row.and_then(|(op, at, s)| Some((op, at, serde_json::from_str(&s).ok()?))))
    }

    /// The last `n` watches that ended by `before` without calling for a
    /// rollback or an investigation, newest first.
    pub fn healthy_watches(&self, before: i64, n: usize) -> Result<Vec<OpId>, OplogError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id FROM operations o WHERE kind = 'watch' AND ended_at IS NOT NULL AND ended_at <= ?1
                 AND outcome IN ({HEALTHY_OUTCOMES})
                 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.op_id = o.id AND e.kind IN ('verdict', 'investigate'))
                 ORDER BY ended_at DESC, id DESC LIMIT ?2"
            ))
            .map_err(self.q())?;
        let rows = stmt
            .query_map(params![before, n.min(i64::MAX as usize) as i64], |r| r.get(0))
            .map_err(self.q())?;
        rows.collect::<Result<_, _>>().map_err(self.q())
    }
}
