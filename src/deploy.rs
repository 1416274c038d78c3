//! Deploy markers: the moment a change began and the checkpoint of the state
//! before it. `backout deploy` records one before it runs the deploy command,
//! `backout deploy --mark` for a deploy made by other means, and `backout run`
//! for the first phase of a change. `watch` measures every figure from the
//! latest open marker, and the default rollback target starts from its
//! checkpoint ([`crate::rollback::target`]).
//!
//! A marker is a `deploy` event in the operation log, under the operation that
//! recorded it; what the deploy command did is a `deploy_command` event of the
//! same operation.

use serde::{Deserialize, Serialize};

use crate::oplog::{EventRow, OpId, Oplog, OplogError};

/// The event kind of a marker.
pub const MARKER: &str = "deploy";
/// The event kind of a finished deploy command.
pub const COMMAND_END: &str = "deploy_command";

/// What recorded a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MarkedBy {
    /// `backout deploy -- CMD`.
    Deploy,
    /// `backout deploy --mark`: the user deploys by other means.
    Mark,
    /// `backout run`: the first phase of a change.
    Phase,
    /// `backout demo`.
    Demo,
    /// A marker written by an older backout, with no checkpoint.
    #[default]
    #[serde(other)]
    Unknown,
}

/// One deploy marker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// The operation that recorded it (`op-N`).
    #[serde(default)]
    pub op: OpId,
    /// When the deploy began.
    #[serde(default)]
    pub at: i64,
    /// The checkpoint of the state before the deploy: the default rollback target.
    #[serde(default)]
    pub checkpoint_id: Option<i64>,
    #[serde(default)]
    pub by: MarkedBy,
    #[serde(default)]
    pub label: Option<String>,
    /// The deploy command, as a person would type it.
    #[serde(default)]
    pub command: Option<String>,
    /// The phase `backout run` applied.
    #[serde(default)]
    pub phase: Option<String>,
    /// When the deploy command ended, and how.
    #[serde(default)]
    pub command_ended_at: Option<i64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub command_ok: Option<bool>,
}

impl Marker {
    /// When the deploy was done — its command, or its phase's apply, ended —
    /// which is what a monitoring plan's reviews (`+30m`, `+2h`) count from;
    /// the marker's own time when that is not recorded. Figures count from
    /// the marker itself: the outage begins with the deploy.
    pub fn reviews_from(&self) -> i64 {
        self.command_ended_at.unwrap_or(self.at)
    }

    /// A new marker, not yet recorded.
    pub fn new(op: OpId, at: i64, checkpoint_id: Option<i64>, by: MarkedBy) -> Marker {
        Marker {
            op,
            at,
            checkpoint_id,
            by,
            label: None,
            command: None,
            phase: None,
            command_ended_at: None,
            exit_code: None,
            command_ok: None,
        }
    }

    /// `cp-N`, when the marker names a checkpoint.
    pub fn checkpoint(&self) -> Option<String> {
        self.checkpoint_id.map(crate::resource::checkpoint_name)
    }

    /// What was deployed, in a few words: `./deploy.sh`, `phase migrate`,
    /// the label, or `deploy`.
    pub fn what(&self) -> String {
        let base = match (&self.command, &self.phase) {
            (Some(c), _) => format!("`{c}`"),
            (None, Some(p)) => format!("phase {p}"),
            (None, None) if self.by == MarkedBy::Mark => "marked, deployed by other means".into(),
            (None, None) => "deploy".into(),
        };
        match &self.label {
            Some(l) => format!("{l}: {base}"),
            None => base,
        }
    }

    /// The timeline's line for the marker.
    pub fn timeline_line(&self) -> String {
        let before = self
            .checkpoint()
            .map_or(String::new(), |cp| format!("; the state before it: {cp}"));
        format!("deploy of {} (op-{}{before})", self.what(), self.op)
    }

    fn from_event(e: &EventRow) -> Marker {
        let mut m: Marker = serde_json::from_value(e.detail.clone())
            .unwrap_or_else(|_| Marker::new(e.op_id, e.at, None, MarkedBy::Unknown));
        m.op = e.op_id;
        m.at = e.at;
        m
    }
}

/// Runs the deploy command of `m` (recorded under `m.op`) in `cwd`, handing
/// its output to `on_output` as it comes, and records how it ended — in the
/// log and in `m`. `BACKOUT_DEPLOY_CHECKPOINT` tells it the checkpoint of the
/// state before it.
pub async fn run_command(
    log: &Oplog,
    clock: &crate::context::Clock,
    m: &mut Marker,
    argv: &[String],
    cwd: &std::path::Path,
    timeout: std::time::Duration,
    on_output: impl FnMut(&[u8]),
) -> anyhow::Result<crate::exec::Outcome> {
    let inv = crate::exec::Invocation {
        argv: argv.to_vec(),
        cwd: cwd.to_path_buf(),
        env: m
            .checkpoint()
            .map(|cp| vec![("BACKOUT_DEPLOY_CHECKPOINT".to_string(), cp)])
            .unwrap_or_default(),
        timeout,
    };
    let out = crate::exec::run_streamed(&inv, on_output).await?;
    let at = clock.now_ms();
    record_command_end(
        log,
        m.op,
        at,
        out.exit_code,
        out.success(),
        &crate::exec::tail_lines(&out.output, 20),
    )?;
    m.command_ended_at = Some(at);
    m.exit_code = out.exit_code;
    m.command_ok = Some(out.success());
    Ok(out)
}

/// A deploy command that failed, as the rollback verdict it is.
pub fn command_failed(m: &Marker, how: &str) -> crate::watch::Verdict {
    crate::watch::Verdict {
        outcome: crate::watch::Outcome::Rollback,
        rule: "deploy command".into(),
        when: format!("{} succeeds", m.command.as_deref().unwrap_or("the deploy command")),
        probe: String::new(),
        value: m.exit_code.map(f64::from),
        threshold: None,
        baseline: None,
        window: String::new(),
        samples: 0,
        failed_samples: 0,
        first_sample_at: None,
        last_sample_at: None,
        window_samples: None,
        window_full: true,
        test: None,
        explanation: format!(
            "deploy command: ROLLBACK: `{}` failed ({how})",
            m.command.as_deref().unwrap_or("?")
        ),
    }
}

/// Records `m` in the operation log.
pub fn record(log: &Oplog, m: &Marker) -> Result<(), OplogError> {
    let mut detail = serde_json::to_value(m).unwrap_or_default();
    if let Some(o) = detail.as_object_mut() {
        o.remove("op");
        o.remove("at");
        if let Some(cp) = m.checkpoint() {
            o.insert("checkpoint".into(), cp.into());
        }
    }
    log.event(m.op, m.at, MARKER, &detail)
}

/// Records how the deploy command of the marker recorded under `op` ended.
pub fn record_command_end(
    log: &Oplog,
    op: OpId,
    at: i64,
    exit_code: Option<i32>,
    ok: bool,
    output_tail: &str,
) -> Result<(), OplogError> {
    log.event(
        op,
        at,
        COMMAND_END,
        &serde_json::json!({ "exit_code": exit_code, "ok": ok, "output_tail": output_tail }),
    )
}

/// Every marker, oldest first, each with its command's outcome when known.
pub fn all(log: &Oplog) -> Result<Vec<Marker>, OplogError> {
    let ends = log.events_of_kind(COMMAND_END)?;
    let mut out = Vec::new();
    for e in log.events_of_kind(MARKER)? {
        let mut m = Marker::from_event(&e);
        if let Some(end) = ends.iter().find(|x| x.op_id == m.op) {
            m.command_ended_at = Some(end.at);
            m.exit_code = end.detail["exit_code"].as_i64().map(|c| c as i32);
            m.command_ok = end.detail["ok"].as_bool();
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Redactor;

    #[test]
    fn a_marker_round_trips_through_the_log_with_its_command_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let log = Oplog::open(&dir.path().join("state.db"), Redactor::new()).unwrap();
        let op = log.begin("deploy", &serde_json::json!({}), 10).unwrap();
        let mut m = Marker::new(op, 20, Some(3), MarkedBy::Deploy);
        m.command = Some("./deploy.sh v2".into());
        m.label = Some("v2".into());
        record(&log, &m).unwrap();
        record_command_end(&log, op, 25, Some(3), false, "boom").unwrap();
        let got = all(&log).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].checkpoint().as_deref(), Some("cp-3"));
        assert_eq!((got[0].op, got[0].at), (op, 20));
        assert_eq!((got[0].exit_code, got[0].command_ok), (Some(3), Some(false)));
        assert_eq!(got[0].command_ended_at, Some(25));
        assert_eq!(got[0].what(), "v2: `./deploy.sh v2`");
    }

    /// The demo of an older backout wrote `deploy` events with a commit and a
    /// version, and no checkpoint: they still read as markers.
    #[test]
    fn an_older_deploy_event_reads_as_a_marker_without_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log = Oplog::open(&dir.path().join("state.db"), Redactor::new()).unwrap();
        let op = log.begin("watch", &serde_json::json!({}), 10).unwrap();
        log.event(
            op,
            11,
            MARKER,
            &serde_json::json!({ "commit": "abc", "version": "1.1.0" }),
        )
        .unwrap();
        let got = all(&log).unwrap();
        assert_eq!(got[0].checkpoint_id, None);
        assert_eq!(got[0].by, MarkedBy::Unknown);
        assert_eq!(got[0].at, 11);
    }
}
