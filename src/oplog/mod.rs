//! The operation log, `.backout/state.db`: every command that changed something,
//! the steps it ran (the journal), timeline events, probe samples, baselines,
//! checkpoints and incidents. SQLite in WAL mode; migrations are append-only and
//! tracked by `PRAGMA user_version`. Every text written here goes through the
//! redactor first, so no secret reaches the database.

mod checkpoints;
mod history;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::redact::{Redacted, Redactor};

mod journal;

/// Append-only: never edit a shipped migration, add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE operations (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        args TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        outcome TEXT,
        error TEXT
    );
    CREATE TABLE steps (
        id INTEGER PRIMARY KEY,
        op_id INTEGER NOT NULL REFERENCES operations(id),
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        command TEXT,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        exit_code INTEGER,
        outcome TEXT,
        output TEXT,
        UNIQUE (op_id, seq)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        op_id INTEGER NOT NULL REFERENCES operations(id),
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        op_id INTEGER NOT NULL REFERENCES operations(id),
        probe TEXT NOT NULL,
        at INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        latency_ms REAL,
        status INTEGER,
        size INTEGER,
        error TEXT
    );
    CREATE INDEX samples_by_op_probe ON samples (op_id, probe, at);
    CREATE TABLE baselines (
        id INTEGER PRIMARY KEY,
        op_id INTEGER NOT NULL REFERENCES operations(id),
        probe TEXT NOT NULL,
        measured_at INTEGER NOT NULL,
        stats TEXT NOT NULL
    );
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        op_id INTEGER NOT NULL REFERENCES operations(id),
        created_at INTEGER NOT NULL,
        label TEXT,
        phase TEXT,
        complete INTEGER NOT NULL DEFAULT 0,
        resources TEXT NOT NULL
    );
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        op_id INTEGER NOT NULL REFERENCES operations(id),
        opened_at INTEGER NOT NULL,
        verdict TEXT NOT NULL,
        report TEXT
    );",
    // 2: probes beyond HTTP measure numbers: one headline `value` (a parsed
    // command output, a Prometheus result) and named `fields` as JSON (rss, cpu,
    // fds, match counts, one value per Prometheus label set).
    "ALTER TABLE samples ADD COLUMN value REAL;
    ALTER TABLE samples ADD COLUMN fields TEXT;",
];

#[derive(Debug, thiserror::Error)]
pub enum OplogError {
    #[error("cannot open the operation log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the operation log {path} is at schema version {found}, newer than this backout knows ({known}); upgrade backout"
    )]
    TooNew { path: PathBuf, found: i64, known: usize },
    #[error("operation log query failed ({path})")]
    Query {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// An operation's id, shown as `op-N`.
pub type OpId = i64;

#[derive(Debug)]
pub struct Oplog {
    conn: Connection,
    path: PathBuf,
    redactor: Redactor,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperationRow {
    pub id: OpId,
    pub kind: String,
    pub args: serde_json::Value,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub seq: i64,
    pub name: String,
    pub command: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub outcome: Option<String>,
    pub output: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub op_id: OpId,
    pub at: i64,
    pub kind: String,
    pub detail: serde_json::Value,
}

impl EventRow {
    /// A row of `SELECT op_id, at, kind, detail FROM events`.
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
        let detail: String = r.get(3)?;
        Ok(EventRow {
            op_id: r.get(0)?,
            at: r.get(1)?,
            kind: r.get(2)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        })
    }
}

/// `'a','b'` for an SQL `IN (...)` of operation or event kinds — names from
/// the code, never from input; quotes are dropped all the same.
fn kinds_in(kinds: &[&str]) -> String {
    kinds
        .iter()
        .map(|k| format!("'{}'", k.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(",")
}

/// One stored probe sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SampleRow {
    pub probe: String,
    pub at: i64,
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub status: Option<u16>,
    pub size: Option<u64>,
    pub error: Option<String>,
    /// The probe's headline number, when it measures one (command, prometheus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Named numbers (`rss`, `cpu`, `count`, `exit_code`, a label set, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentRow {
    pub id: i64,
    pub op_id: OpId,
    pub opened_at: i64,
    pub verdict: serde_json::Value,
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointRow {
    pub id: i64,
    pub op_id: OpId,
    pub created_at: i64,
    pub label: Option<String>,
    pub phase: Option<String>,
    pub complete: bool,
    pub resources: serde_json::Value,
}

impl Oplog {
    /// Opens (creating and migrating) the log at `path`.
    pub fn open(path: &Path, redactor: Redactor) -> Result<Oplog, OplogError> {
        let open_err = |source| OplogError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(open_err)?;
        let mut log = Oplog {
            conn,
            path: path.to_path_buf(),
            redactor,
        };
        log.migrate()?;
        Ok(log)
    }

    fn q(&self) -> impl Fn(rusqlite::Error) -> OplogError + '_ {
        move |source| OplogError::Query {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), OplogError> {
        let path = self.path.clone();
        let q = |source| OplogError::Query {
            path: path.clone(),
            source,
        };
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(q)?;
        if version as usize > MIGRATIONS.len() {
            return Err(OplogError::TooNew {
                path,
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(q)?;
            tx.execute_batch(sql).map_err(q)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(q)?;
            tx.commit().map_err(q)?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, OplogError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.q())
    }

    /// Text for a column: every text a caller hands in goes through here.
    fn red(&self, s: &str) -> Redacted<String> {
        self.redactor.text(s)
    }

    /// JSON for a column.
    fn red_json(&self, v: &serde_json::Value) -> Redacted<String> {
        self.redactor.json(v.clone()).to_text(false)
    }

    /// Records the start of an operation.
    pub fn begin(&self, kind: &str, args: &serde_json::Value, now: i64) -> Result<OpId, OplogError> {
        self.conn
            .execute(
                "INSERT INTO operations (kind, args, started_at) VALUES (?1, ?2, ?3)",
                params![kind, self.red_json(args), now],
            )
            .map_err(self.q())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how an operation ended.
    pub fn finish(&self, op: OpId, outcome: &str, error: Option<&str>, now: i64) -> Result<(), OplogError> {
        self.conn
            .execute(
                "UPDATE operations SET ended_at = ?1, outcome = ?2, error = ?3 WHERE id = ?4",
                params![now, outcome, error.map(|e| self.red(e)), op],
            )
            .map_err(self.q())?;
        Ok(())
    }

    /// Journals a step before it runs.
    pub fn step_begin(
        &self,
        op: OpId,
        seq: i64,
        name: &str,
        command: Option<&str>,
        now: i64,
    ) -> Result<(), OplogError> {
        self.conn
            .execute(
                "INSERT INTO steps (op_id, seq, name, command, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![op, seq, self.red(name), command.map(|c| self.red(c)), now],
            )
            .map_err(self.q())?;
        Ok(())
    }

    /// Journals how a step ended.
    pub fn step_end(
        &self,
        op: OpId,
        seq: i64,
        outcome: &str,
        exit_code: Option<i32>,
        output: &str,
        now: i64,
    ) -> Result<(), OplogError> {
        self.conn
            .execute(
                "UPDATE steps SET ended_at = ?1, outcome = ?2, exit_code = ?3, output = ?4 WHERE op_id = ?5 AND seq = ?6",
                params![now, outcome, exit_code, self.red(output), op, seq],
            )
            .map_err(self.q())?;
        Ok(())
    }

    pub fn steps(&self, op: OpId) -> Result<Vec<StepRow>, OplogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, name, command, started_at, ended_at, exit_code, outcome, output FROM steps WHERE op_id = ?1 ORDER BY seq")
            .map_err(self.q())?;
        let rows = stmt
            .query_map([op], |r| {
                Ok(StepRow {
                    seq: r.get(0)?,
                    name: r.get(1)?,
                    command: r.get(2)?,
                    started_at: r.get(3)?,
                    ended_at: r.get(4)?,
                    exit_code: r.get(5)?,
                    outcome: r.get(6)?,
                    output: r.get(7)?,
                })
            })
            .map_err(self.q())?;
        rows.collect::<Result<_, _>>().map_err(self.q())
    }

    /// Adds a timeline event (deploy, first bad sample, verdict, ...).
    pub fn event(&self, op: OpId, at: i64, kind: &str, detail: &serde_json::Value) -> Result<(), OplogError> {
        self.conn
            .execute(
                "INSERT INTO events (op_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                params![op, at, kind, self.red_json(detail)],
            )
            .map_err(self.q())?;
        Ok(())
    }

    /// Events matching `filter` (an SQL condition on one parameter), oldest first.
    fn events_where(&self, filter: &str, param: impl rusqlite::ToSql) -> Result<Vec<EventRow>, OplogError> {
        let sql = format!("SELECT op_id, at, kind, detail FROM events WHERE {filter} ORDER BY at, id");
        let mut stmt = self.conn.prepare(&sql).map_err(self.q())?;
        let rows = stmt.query_map([param], EventRow::from_row).map_err(self.q())?;
        rows.collect::<Result<_, _>>().map_err(self.q())
    }

    /// Events at or after `since`, oldest first.
    pub fn events_since(&self, since: i64) -> Result<Vec<EventRow>, OplogError> {
        self.events_where("at >= ?1", since)
    }

    /// Events of one kind, oldest first.
    pub fn events_of_kind(&self, kind: &str) -> Result<Vec<EventRow>, OplogError> {
        self.events_where("kind = ?1", kind)
    }

    /// Events recorded under one operation, oldest first.
    pub fn events_of_op(&self, op: OpId) -> Result<Vec<EventRow>, OplogError> {
        self.events_where("op_id = ?1", op)
    }

    pub fn insert_sample(&self, op: OpId, s: &SampleRow) -> Result<(), OplogError> {
        self.insert_samples(op, std::slice::from_ref(s))
    }

    /// Stores many samples in one transaction: at hundreds of samples a second,
    /// one commit each would cost more than the probes themselves.
    pub fn insert_samples(&self, op: OpId, samples: &[SampleRow]) -> Result<(), OplogError> {
        let tx = self.conn.unchecked_transaction().map_err(self.q())?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO samples (op_id, probe, at, ok, latency_ms, status, size, error, value, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
                .map_err(self.q())?;
            for s in samples {
                let fields =
                    (!s.fields.is_empty()).then(|| self.red(&serde_json::to_string(&s.fields).unwrap_or_default()));
                stmt.execute(params![
                    op,
                    s.probe,
                    s.at,
                    s.ok,
                    s.latency_ms,
                    s.status,
                    s.size.map(|v| v as i64),
                    s.error.as_deref().map(|e| self.red(e)),
                    s.value,
                    fields
                ])
                .map_err(self.q())?;
            }
        }
        tx.commit().map_err(self.q())
    }

    /// Samples of every probe taken in `[from, to]`, oldest first.
    pub fn samples_between(&self, from: i64, to: i64) -> Result<Vec<SampleRow>, OplogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT probe, at, ok, latency_ms, status, size, error, value, fields FROM samples WHERE at >= ?1 AND at <= ?2 ORDER BY at, id")
            .map_err(self.q())?;
        let rows = stmt
            .query_map([from, to], |r| {
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
            })
            .map_err(self.q())?;
        rows.collect::<Result<_, _>>().map_err(self.q())
    }

    pub fn save_baseline(&self, op: OpId, probe: &str, at: i64, stats: &serde_json::Value) -> Result<(), OplogError> {
        self.conn
            .execute(
                "INSERT INTO baselines (op_id, probe, measured_at, stats) VALUES (?1, ?2, ?3, ?4)",
                params![op, probe, at, self.red_json(stats)],
            )
            .map_err(self.q())?;
        Ok(())
    }

    /// The most recent baseline statistics of `probe`.
    pub fn latest_baseline(&self, probe: &str) -> Result<Option<serde_json::Value>, OplogError> {
        let s: Option<String> = self
            .conn
            .query_row(
                "SELECT stats FROM baselines WHERE probe = ?1 ORDER BY measured_at DESC, id DESC LIMIT 1",
                [probe],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.q())?;
        Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Records a checkpoint as incomplete; [`Oplog::complete_checkpoint`] marks it done.
    pub fn insert_checkpoint(
        &self,
        op: OpId,
        at: i64,
        label: Option<&str>,
        phase: Option<&str>,
    ) -> Result<i64, OplogError> {
        self.conn
            .execute(
                "INSERT INTO checkpoints (op_id, created_at, label, phase, resources) VALUES (?1, ?2, ?3, ?4, '{}')",
                params![op, at, label.map(|l| self.red(l)), phase],
            )
            .map_err(self.q())?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn complete_checkpoint(&self, id: i64, resources: &serde_json::Value) -> Result<(), OplogError> {
        self.conn
            .execute(
                "UPDATE checkpoints SET complete = 1, resources = ?1 WHERE id = ?2",
                params![self.red_json(resources), id],
            )
            .map_err(self.q())?;
        Ok(())
    }

    fn checkpoint_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRow> {
        let resources: String = r.get(6)?;
        Ok(CheckpointRow {
            id: r.get(0)?,
            op_id: r.get(1)?,
            created_at: r.get(2)?,
            label: r.get(3)?,
            phase: r.get(4)?,
            complete: r.get(5)?,
            resources: serde_json::from_str(&resources).unwrap_or(serde_json::Value::Null),
        })
    }

    pub fn latest_complete_checkpoint(&self) -> Result<Option<CheckpointRow>, OplogError> {
        self.conn
            .query_row(
                "SELECT id, op_id, created_at, label, phase, complete, resources FROM checkpoints WHERE complete = 1 ORDER BY id DESC LIMIT 1",
                [],
                Self::checkpoint_from_row,
            )
            .optional()
            .map_err(self.q())
    }

    /// The newest complete checkpoint taken for a phase: the one `backout run`
    /// takes before applying it, or `backout checkpoint --phase NAME`.
    pub fn latest_checkpoint_of_phase(&self, phase: &str) -> Result<Option<CheckpointRow>, OplogError> {
        self.conn
            .query_row(
                "SELECT id, op_id, created_at, label, phase, complete, resources FROM checkpoints WHERE complete = 1 AND phase = ?1 ORDER BY id DESC LIMIT 1",
                [phase],
                Self::checkpoint_from_row,
            )
            .optional()
            .map_err(self.q())
    }

    pub fn checkpoint(&self, id: i64) -> Result<Option<CheckpointRow>, OplogError> {
        self.conn
            .query_row(
                "SELECT id, op_id, created_at, label, phase, complete, resources FROM checkpoints WHERE id = ?1",
                [id],
                Self::checkpoint_from_row,
            )
            .optional()
            .map_err(self.q())
    }

    pub fn open_incident(&self, op: OpId, at: i64, verdict: &serde_json::Value) -> Result<i64, OplogError> {
        self.conn
            .execute(
                "INSERT INTO incidents (op_id, opened_at, verdict) VALUES (?1, ?2, ?3)",
                params![op, at, self.red_json(verdict)],
            )
            .map_err(self.q())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Incidents, newest first: (id, op, opened at, report path).
    pub fn incidents(&self) -> Result<Vec<IncidentRow>, OplogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, op_id, opened_at, verdict, report FROM incidents ORDER BY id DESC")
            .map_err(self.q())?;
        let rows = stmt
            .query_map([], |r| {
                let verdict: String = r.get(3)?;
                Ok(IncidentRow {
                    id: r.get(0)?,
                    op_id: r.get(1)?,
                    opened_at: r.get(2)?,
                    verdict: serde_json::from_str(&verdict).unwrap_or(serde_json::Value::Null),
                    report: r.get::<_, Option<String>>(4)?.map(PathBuf::from),
                })
            })
            .map_err(self.q())?;
        rows.collect::<Result<_, _>>().map_err(self.q())
    }

    pub fn set_incident_report(&self, id: i64, report: &Path) -> Result<(), OplogError> {
        self.conn
            .execute(
                "UPDATE incidents SET report = ?1 WHERE id = ?2",
                params![report.display().to_string(), id],
            )
            .map_err(self.q())?;
        Ok(())
    }

    pub(super) fn operation_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OperationRow> {
        let args: String = r.get(2)?;
        Ok(OperationRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            args: serde_json::from_str(&args).unwrap_or(serde_json::Value::Null),
            started_at: r.get(3)?,
            ended_at: r.get(4)?,
            outcome: r.get(5)?,
            error: r.get(6)?,
        })
    }

    /// Operations, newest first, optionally only of one kind.
    pub fn operations(&self, kind: Option<&str>, limit: usize) -> Result<Vec<OperationRow>, OplogError> {
        self.operations_since(kind, i64::MIN, limit)
    }

    /// Operations started at or after `since`, newest first.
    pub fn operations_since(
        &self,
        kind: Option<&str>,
        since: i64,
        limit: usize,
    ) -> Result<Vec<OperationRow>, OplogError> {
        let limit = limit.min(i64::MAX as usize);
        self.operations_where(
            "(?1 IS NULL OR kind = ?1) AND started_at >= ?2",
            params![kind, since],
            limit,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_twice_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = Oplog::open(&path, Redactor::new()).unwrap();
        assert_eq!(log.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let op = log.begin("check", &serde_json::json!({}), 1).unwrap();
        drop(log);
        let log = Oplog::open(&path, Redactor::new()).unwrap();
        assert_eq!(log.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(log.operations(None, 10).unwrap()[0].id, op);
    }

    #[test]
    fn a_first_schema_log_upgrades_and_keeps_its_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO operations (kind, args, started_at) VALUES ('watch', '{}', 1);
             INSERT INTO samples (op_id, probe, at, ok, latency_ms) VALUES (1, 'api', 5, 1, 12.5);",
        )
        .unwrap();
        drop(conn);
        let log = Oplog::open(&path, Redactor::new()).unwrap();
        assert_eq!(log.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let new = SampleRow {
            probe: "mem".into(),
            at: 6,
            ok: true,
            value: Some(0.5),
            fields: BTreeMap::from([("rss".to_string(), 1e6), ("{job=\"api\"}".to_string(), 2.0)]),
            ..Default::default()
        };
        log.insert_samples(1, std::slice::from_ref(&new)).unwrap();
        let rows = log.samples_between(0, 10).unwrap();
        assert_eq!(rows[0].latency_ms, Some(12.5));
        assert_eq!((rows[0].value, rows[0].fields.len()), (None, 0));
        assert_eq!(rows[1], new);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Oplog::open(&path, Redactor::new()),
            Err(OplogError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn secrets_never_reach_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let r = Redactor::new();
        r.add(["hunter2-secret".to_string()]);
        let log = Oplog::open(&path, r).unwrap();
        let op = log
            .begin("watch", &serde_json::json!({"url": "http://u:hunter2-secret@h/"}), 1)
            .unwrap();
        log.step_begin(op, 1, "curl hunter2-secret", Some("curl -H hunter2-secret"), 2)
            .unwrap();
        log.step_end(op, 1, "ok", Some(0), "out hunter2-secret", 3).unwrap();
        log.event(op, 4, "verdict", &serde_json::json!({"x": "hunter2-secret"}))
            .unwrap();
        log.finish(op, "failed", Some("error hunter2-secret"), 5).unwrap();
        drop(log);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        drop(conn);
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(14).any(|w| w == b"hunter2-secret"));
    }
}
