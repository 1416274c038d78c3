//! Resources a checkpoint captures, and the checkpoint itself: a restore point
//! recorded in the operation log, marked complete only after every resource is
//! captured and verified, so an interrupted capture is never offered for restore.

pub mod command;
pub mod db;
pub mod git;

use serde::{Deserialize, Serialize};

use crate::oplog::{CheckpointRow, OpId};
use crate::workspace::Workspace;

/// Everything one checkpoint holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    pub git: Option<git::GitState>,
}

impl Resources {
    pub fn from_row(row: &CheckpointRow) -> Resources {
        serde_json::from_value(row.resources.clone()).unwrap_or_default()
    }
}

/// A checkpoint's display id.
pub fn checkpoint_name(id: i64) -> String {
    format!("cp-{id}")
}

/// Captures every resource the plan names as a new checkpoint under `op`.
pub fn checkpoint(ws: &Workspace, op: OpId, label: Option<&str>, phase: Option<&str>) -> anyhow::Result<CheckpointRow> {
    let id = ws.oplog.insert_checkpoint(op, ws.now_ms(), label, phase)?;
    let name = checkpoint_name(id);
    let mut res = Resources::default();
    if ws.plan.capture.git {
        let state = git::capture(ws.root(), &name)?;
        git::verify(&state)?;
        res.git = Some(state);
    }
    let value = serde_json::to_value(&res)?;
    ws.oplog.complete_checkpoint(id, &value)?;
    ws.oplog.event(
        op,
        ws.now_ms(),
        "checkpoint",
        &serde_json::json!({ "checkpoint": name, "label": label }),
    )?;
    Ok(ws.oplog.checkpoint(id)?.expect("the checkpoint was just written"))
}
