//! The default rollback target: the newest checkpoint known to be good, never
//! the state being rolled back, never one that would take back the last
//! rollback.
//!
//! The rule, from the operation log alone:
//!
//! - A **change** begins when someone declares the state before it: a deploy
//!   marker ([`crate::deploy`]: `backout deploy`, `deploy --mark`, the first
//!   phase of `backout run`), or a checkpoint taken with `backout checkpoint`
//!   ("the checkpoint before the change"). It ends when a watch succeeds,
//!   when `backout run` verified a phase with its checks, at a rollback or a
//!   restore, or at the next declaration. While a deploy marker's
//!   change is open, a `backout checkpoint` is part of it, not a declaration,
//!   and `backout run` applies its phases as part of it too.
//! - **Never a target:** a safety checkpoint (taken by a rollback, restore,
//!   undo or redo of the state it replaced); a checkpoint taken while a change
//!   was open (it holds the changed state), unless a watch succeeded or verify
//!   passed at it since; a checkpoint a later rollback or restore went back past
//!   (between its target and itself: the state it took back — aiming there
//!   would take the rollback back).
//! - **Known good:** a deploy marker's checkpoint, and a checkpoint at which a
//!   watch succeeded or verify passed (`good` events, recorded by
//!   [`record_good`]).
//! - The target is the **newest** checkpoint left. When it is not known good
//!   (a `backout checkpoint` nothing vouched for), the choice says so.
//!
//! Logs written before markers existed have no `deploy` or `good` events: their
//! checkpoints by `backout checkpoint` are declarations, and the rule above
//! still holds.

use serde::Serialize;

use crate::deploy::{self, Marker};
use crate::oplog::{CheckpointRow, OpId, OperationRow, Oplog, OplogError};
use crate::resource::checkpoint_name;

/// The event kind of a checkpoint vouched for.
pub const GOOD: &str = "good";
/// The event kind of a phase `backout run` applied and verified with its
/// checks: the change it is part of ends there.
pub const PHASE_VERIFIED: &str = "phase_verified";

/// Operation kinds whose checkpoints are safety checkpoints.
const SAFETY_KINDS: &[&str] = &["rollback", "restore", "undo", "redo"];

/// The checkpoint a rollback goes to, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    #[serde(skip)]
    pub row: CheckpointRow,
    /// `cp-N`.
    pub checkpoint: String,
    /// "taken before the deploy of 2026-01-02 14:02:11 (op-12)".
    pub why: String,
    pub known_good: bool,
    /// What the user should know about this choice.
    pub warnings: Vec<String>,
    /// The project is at this checkpoint already: the last change was a
    /// rollback or restore to it. Says which.
    pub already_there: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no complete checkpoint yet; run `backout checkpoint` (or `backout deploy`) before the change")]
    NoCheckpoint,
    #[error(
        "no checkpoint is a safe rollback target: {reasons}\n  = hint: choose one with --to cp-N if you know it is good (`backout checkpoints` lists them); next time deploy with `backout deploy` so the state before the change is recorded"
    )]
    NoneSafe { reasons: String },
    #[error(transparent)]
    Oplog(#[from] OplogError),
}

/// Why a checkpoint is, or is not, a default target.
#[derive(Debug, Clone, PartialEq)]
enum Class {
    /// A safety checkpoint of the operation `op` of `kind`.
    Safety { kind: String, op: OpId },
    /// A later rollback (or restore) `op` went back past it, to `to`.
    RolledBackOver { kind: String, op: OpId, to: i64 },
    /// Taken while the change declared by window `w` was open.
    During { w: usize },
    /// The checkpoint of marker `m`.
    Marker { m: usize },
    /// Vouched for by good event `g`.
    Good { g: usize },
    /// Taken with `backout checkpoint` (or by an older backout's `run`).
    Declared,
}

/// A checkpoint vouched for.
#[derive(Debug, Clone)]
struct Good {
    op: OpId,
    at: i64,
    checkpoint_id: i64,
    reason: String,
}

/// A change: from its declaration to what ended it.
#[derive(Debug, Clone)]
struct Window {
    /// The checkpoint of the state before the change, when one was declared.
    decl: Option<i64>,
    open: Key,
    marker: Option<usize>,
    close: Option<(Key, String)>,
    /// Why the change is known bad: a rollback verdict nobody acted on, a
    /// deploy command that failed. A deploy on top of it does not end it.
    condemned: Option<String>,
    /// Markers of deploys made on top of it once condemned (a fix forward):
    /// their checkpoints hold its broken state.
    later: Vec<usize>,
}

/// Orders what happened: time, then operation, then within an operation.
type Key = (i64, OpId, u8);

fn cp_key(c: &CheckpointRow) -> Key {
    (c.created_at, c.op_id, 0)
}

/// What the operation log says about every checkpoint.
struct History {
    cps: Vec<CheckpointRow>,
    ops: Vec<OperationRow>,
    markers: Vec<Marker>,
    good: Vec<Good>,
    /// Phases applied and verified: (operation, when).
    phases_verified: Vec<(OpId, i64)>,
    windows: Vec<Window>,
}

impl History {
    fn load(log: &Oplog) -> Result<History, OplogError> {
        let cps: Vec<CheckpointRow> = log.checkpoints()?.into_iter().filter(|c| c.complete).collect();
        let mut ops = log.operations(None, usize::MAX)?;
        ops.reverse();
        let markers = deploy::all(log)?;
        let good = log
            .events_of_kind(GOOD)?
            .into_iter()
            .filter_map(|e| {
                Some(Good {
                    op: e.op_id,
                    at: e.at,
                    checkpoint_id: e.detail["checkpoint_id"].as_i64()?,
                    reason: e.detail["reason"].as_str().unwrap_or("vouched for").to_string(),
                })
            })
            .collect();
        let phases_verified = log
            .events_of_kind(PHASE_VERIFIED)?
            .into_iter()
            .map(|e| (e.op_id, e.at))
            .collect();
        let mut h = History {
            cps,
            ops,
            markers,
            good,
            phases_verified,
            windows: Vec::new(),
        };
        h.windows = h.windows();
        Ok(h)
    }

    fn op(&self, id: OpId) -> Option<&OperationRow> {
        self.ops.binary_search_by_key(&id, |o| o.id).ok().map(|i| &self.ops[i])
    }

    fn op_kind(&self, id: OpId) -> &str {
        self.op(id).map_or("", |o| o.kind.as_str())
    }

    /// A restore a rollback step ran is part of that rollback.
    fn is_nested_restore(o: &OperationRow) -> bool {
        o.kind == "restore" && o.args["from"].as_str() == Some("rollback step")
    }

    /// Rollbacks, and whole restores by hand, with the checkpoint each went to.
    fn returns(&self) -> impl Iterator<Item = (&OperationRow, i64)> {
        self.ops.iter().filter_map(|o| {
            let whole = o.args["only"].as_array().is_none_or(Vec::is_empty);
            let to = match o.kind.as_str() {
                "rollback" => o.args["checkpoint_id"].as_i64(),
                "restore" if whole && !Self::is_nested_restore(o) => o.args["checkpoint"]
                    .as_str()
                    .and_then(crate::resource::parse_checkpoint_name),
                _ => None,
            }?;
            Some((o, to))
        })
    }

    /// The changes, in order: opened by markers and `backout checkpoint`,
    /// closed by a watch that succeeded, a rollback, a restore or the next one.
    fn windows(&self) -> Vec<Window> {
        enum Item {
            Declared(i64),
            Marker(usize),
            Close(String),
            Condemn(String),
        }
        let mut items: Vec<(Key, Item)> = Vec::new();
        for c in &self.cps {
            if self.op_kind(c.op_id) == "checkpoint" {
                items.push((cp_key(c), Item::Declared(c.id)));
            }
        }
        for (i, m) in self.markers.iter().enumerate() {
            items.push(((m.at, m.op, 1), Item::Marker(i)));
            if let (Some(end), Some(false)) = (m.command_ended_at, m.command_ok) {
                items.push(((end, m.op, 2), Item::Condemn("its deploy command failed".into())));
            }
        }
        for (op, at) in &self.phases_verified {
            items.push((
                (*at, *op, 2),
                Item::Close(format!("op-{op} applied a phase and verified it")),
            ));
        }
        for o in &self.ops {
            match o.kind.as_str() {
                "watch" if o.outcome.as_deref() == Some("success") => {
                    if let Some(end) = o.ended_at {
                        items.push(((end, o.id, 2), Item::Close(format!("the watch op-{} succeeded", o.id))));
                    }
                }
                "watch" if o.outcome.as_deref() == Some("rollback_triggered") => {
                    if let Some(end) = o.ended_at {
                        items.push((
                            (end, o.id, 2),
                            Item::Condemn(format!("the watch op-{} reached a rollback verdict", o.id)),
                        ));
                    }
                }
                "rollback" => items.push(((o.started_at, o.id, 0), Item::Close(format!("rollback op-{}", o.id)))),
                "restore" if !Self::is_nested_restore(o) && o.args["only"].as_array().is_none_or(Vec::is_empty) => {
                    items.push(((o.started_at, o.id, 0), Item::Close(format!("restore op-{}", o.id))))
                }
                _ => {}
            }
        }
        items.sort_by_key(|(k, _)| *k);
        let mut out: Vec<Window> = Vec::new();
        let mut open: Option<usize> = None;
        for (key, item) in items {
            let close = |out: &mut Vec<Window>, open: &mut Option<usize>, why: String| {
                if let Some(w) = open.take() {
                    out[w].close = Some((key, why));
                }
            };
            match item {
                Item::Declared(id) => {
                    // A checkpoint in the middle of a marked deploy is part of it.
                    if open.is_some_and(|w| out[w].marker.is_some()) {
                        continue;
                    }
                    close(&mut out, &mut open, format!("{} was taken", checkpoint_name(id)));
                    out.push(Window {
                        decl: Some(id),
                        open: key,
                        marker: None,
                        close: None,
                        condemned: None,
                        later: Vec::new(),
                    });
                    open = Some(out.len() - 1);
                }
                Item::Marker(i) => {
                    let m = &self.markers[i];
                    // `backout run` after `backout checkpoint`: the same change,
                    // now with its deploy time.
                    if let Some(w) = open
                        && out[w].marker.is_none()
                        && m.checkpoint_id.is_some()
                        && out[w].decl == m.checkpoint_id
                    {
                        out[w].marker = Some(i);
                        continue;
                    }
                    // A deploy on top of one known bad fixes forward: the
                    // state before it is still the broken one.
                    if let Some(w) = open
                        && out[w].marker.is_some()
                        && out[w].condemned.is_some()
                    {
                        out[w].later.push(i);
                        continue;
                    }
                    close(&mut out, &mut open, format!("the deploy op-{}", m.op));
                    out.push(Window {
                        decl: m.checkpoint_id,
                        open: key,
                        marker: Some(i),
                        close: None,
                        condemned: None,
                        later: Vec::new(),
                    });
                    open = Some(out.len() - 1);
                }
                Item::Close(why) => close(&mut out, &mut open, why),
                Item::Condemn(why) => {
                    if let Some(w) = open
                        && out[w].condemned.is_none()
                    {
                        out[w].condemned = Some(why);
                    }
                }
            }
        }
        out
    }

    fn classify(&self, c: &CheckpointRow) -> Class {
        let kind = self.op_kind(c.op_id);
        if SAFETY_KINDS.contains(&kind) {
            return Class::Safety {
                kind: kind.to_string(),
                op: c.op_id,
            };
        }
        let key = cp_key(c);
        if let Some((o, to)) = self
            .returns()
            .find(|(o, to)| c.id > *to && key < (o.started_at, o.id, 0))
        {
            return Class::RolledBackOver {
                kind: o.kind.clone(),
                op: o.id,
                to,
            };
        }
        if let Some(m) = self.markers.iter().rposition(|m| m.checkpoint_id == Some(c.id))
            && !self.windows.iter().any(|w| w.later.contains(&m))
        {
            return Class::Marker { m };
        }
        let good = self.good.iter().rposition(|g| g.checkpoint_id == c.id);
        let during = self.windows.iter().position(|w| {
            w.decl != Some(c.id)
                && key > w.open
                && w.decl.is_none_or(|d| c.id > d)
                && w.close.as_ref().is_none_or(|(k, _)| key < *k)
        });
        match (during, good) {
            // The change still open is what a rollback now takes back: even a
            // checkpoint verify passed at holds its state.
            (Some(w), _) if self.windows[w].close.is_none() => Class::During { w },
            (_, Some(g)) => Class::Good { g },
            (Some(w), None) => Class::During { w },
            (None, None) => Class::Declared,
        }
    }

    /// One line on why `c` is or is not a default target.
    fn explain(&self, c: &CheckpointRow, class: &Class) -> String {
        let name = checkpoint_name(c.id);
        match class {
            Class::Safety { kind, op } => {
                format!("{name} is the safety checkpoint {kind} op-{op} took of the state it replaced")
            }
            Class::RolledBackOver { kind, op, to } => format!(
                "{name} holds the state {kind} op-{op} took back (to {}); going there would undo that {kind}",
                checkpoint_name(*to)
            ),
            Class::During { w } => {
                let win = &self.windows[*w];
                let what = match (win.marker, win.decl) {
                    (Some(m), _) => self.deploy_phrase(&self.markers[m]),
                    (None, Some(d)) => format!("the change after {}", checkpoint_name(d)),
                    (None, None) => "a change".into(),
                };
                let bad = win
                    .condemned
                    .as_ref()
                    .map_or(String::new(), |why| format!(", known bad ({why})"));
                format!("{name} was taken during {what}{bad}: it holds the changed state")
            }
            Class::Marker { m } => format!("{name}: taken before {}", self.deploy_phrase(&self.markers[*m])),
            Class::Good { g } => {
                let g = &self.good[*g];
                format!("{name}: {} at it (op-{}, {})", g.reason, g.op, at(g.at))
            }
            Class::Declared => {
                let by = match (self.op_kind(c.op_id), &c.phase) {
                    ("checkpoint", _) => "`backout checkpoint`".to_string(),
                    ("apply", Some(p)) => format!("`backout run` before phase {p}"),
                    (kind, _) => format!("{kind} op-{}", c.op_id),
                };
                format!(
                    "{name}: taken by {by} at {}{}",
                    at(c.created_at),
                    c.label.as_deref().map_or(String::new(), |l| format!(" ({l})"))
                )
            }
        }
    }

    fn deploy_phrase(&self, m: &Marker) -> String {
        format!("the deploy of {} (op-{}: {})", at(m.at), m.op, m.what())
    }

    /// The rollback or restore the project is at `id` from, when it was the
    /// last change: nothing was deployed, applied, restored or undone since.
    fn already_at(&self, id: i64) -> Option<String> {
        let last = self.ops.iter().rev().find(|o| {
            matches!(o.kind.as_str(), "deploy" | "apply" | "rollback" | "undo" | "redo")
                || (o.kind == "restore" && !Self::is_nested_restore(o))
        })?;
        let full = match last.kind.as_str() {
            "rollback" => last.args["selection"]["level"].as_str().is_none_or(|l| l == "full"),
            "restore" => last.args["only"].as_array().is_none_or(Vec::is_empty),
            _ => false,
        };
        let (_, to) = self.returns().find(|(o, _)| o.id == last.id)?;
        (full && to == id && last.outcome.as_deref() == Some("ok")).then(|| {
            format!(
                "{} op-{} already returned the project to {} at {}, and nothing was deployed since",
                last.kind,
                last.id,
                checkpoint_name(id),
                at(last.ended_at.unwrap_or(last.started_at))
            )
        })
    }

    /// The open change, if any: its window.
    fn open_window(&self) -> Option<&Window> {
        self.windows.last().filter(|w| w.close.is_none())
    }
}

/// `2026-01-02 14:02:11` (UTC).
fn at(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
}

/// The default target of a full rollback (no `--to`).
pub fn default_target(log: &Oplog) -> Result<Target, TargetError> {
    let h = History::load(log)?;
    if h.cps.is_empty() {
        return Err(TargetError::NoCheckpoint);
    }
    let mut skipped = Vec::new();
    for c in h.cps.iter().rev() {
        let class = h.classify(c);
        let known_good = match class {
            Class::Marker { .. } | Class::Good { .. } => true,
            Class::Declared => false,
            _ => {
                skipped.push(h.explain(c, &class));
                continue;
            }
        };
        let mut warnings = Vec::new();
        if !known_good {
            warnings.push(format!(
                "{} is not known to be good: no deploy marker, passed watch or passed verify vouches for it",
                checkpoint_name(c.id)
            ));
        }
        // The newest few reasons are enough to see why the newer ones were passed over.
        if !skipped.is_empty() {
            let shown: Vec<&str> = skipped.iter().take(3).map(String::as_str).collect();
            warnings.push(format!(
                "not the newer checkpoint(s): {}{}",
                shown.join("; "),
                if skipped.len() > 3 {
                    format!("; and {} more", skipped.len() - 3)
                } else {
                    String::new()
                }
            ));
        }
        return Ok(Target {
            row: c.clone(),
            checkpoint: checkpoint_name(c.id),
            why: h.explain(c, &class),
            known_good,
            warnings,
            already_there: h.already_at(c.id),
        });
    }
    Err(TargetError::NoneSafe {
        reasons: skipped.into_iter().take(4).collect::<Vec<_>>().join("; "),
    })
}

/// What is known about a checkpoint chosen by name (`--to`, or the one
/// before a phase): the same explanation, and a warning when the rule would
/// never have chosen it.
pub fn explain(log: &Oplog, c: &CheckpointRow) -> Result<Target, OplogError> {
    let h = History::load(log)?;
    let class = h.classify(c);
    let why = h.explain(c, &class);
    let (known_good, warnings) = match class {
        Class::Marker { .. } | Class::Good { .. } => (true, Vec::new()),
        Class::Declared => (false, Vec::new()),
        _ => (
            false,
            vec![format!(
                "{why}; rolling back there is what you asked for, not what backout would choose"
            )],
        ),
    };
    Ok(Target {
        row: c.clone(),
        checkpoint: checkpoint_name(c.id),
        why,
        known_good,
        warnings,
        already_there: h.already_at(c.id),
    })
}

/// The checkpoint `backout run` took before `phase`, as the target of that
/// phase's rollback: taken in the middle of a change by design, and what the
/// phase's options are written against, so the rule above does not apply.
pub fn for_phase(log: &Oplog, c: &CheckpointRow, phase: &str) -> Result<Target, OplogError> {
    let h = History::load(log)?;
    let class = h.classify(c);
    Ok(Target {
        row: c.clone(),
        checkpoint: checkpoint_name(c.id),
        why: format!(
            "{}: taken before phase {phase} at {}",
            checkpoint_name(c.id),
            at(c.created_at)
        ),
        known_good: matches!(class, Class::Marker { .. } | Class::Good { .. }),
        warnings: Vec::new(),
        already_there: None,
    })
}

/// The latest marker, when its change is still open: what `watch` measures from.
pub fn open_deploy(log: &Oplog) -> Result<Option<Marker>, OplogError> {
    let h = History::load(log)?;
    Ok(h.open_window()
        .and_then(|w| w.later.last().copied().or(w.marker))
        .map(|m| h.markers[m].clone()))
}

/// How `backout run` marks the phase it is about to apply, given its own
/// checkpoint `own`: `None` when a marked deploy is open (the phase is part
/// of it); otherwise the checkpoint of the state before the change — the one
/// `backout checkpoint` declared, or `own`.
pub fn phase_marker_checkpoint(log: &Oplog, own: i64) -> Result<Option<i64>, OplogError> {
    let h = History::load(log)?;
    Ok(match h.open_window() {
        Some(w) if w.marker.is_some() => None,
        Some(w) => Some(w.decl.unwrap_or(own)),
        None => Some(own),
    })
}

/// Records that the project is good now (a watch succeeded, verify passed),
/// under `op`: a `good` event naming the checkpoint of the current state,
/// when there is one. Returns it.
pub fn record_good(log: &Oplog, op: OpId, at: i64, reason: &str) -> Result<Option<i64>, OplogError> {
    let h = History::load(log)?;
    let current = current_checkpoint(&h);
    if let Some(id) = current {
        log.event(
            op,
            at,
            GOOD,
            &serde_json::json!({ "checkpoint_id": id, "checkpoint": checkpoint_name(id), "reason": reason }),
        )?;
    }
    Ok(current)
}

/// The checkpoint that holds the project as it is now, as far as the log
/// knows: the target of the last change when it was a complete rollback or
/// restore that succeeded, else the newest checkpoint (not a safety one)
/// taken after the last change ended.
fn current_checkpoint(h: &History) -> Option<i64> {
    let last = h.ops.iter().rev().find(|o| {
        matches!(o.kind.as_str(), "deploy" | "apply" | "rollback" | "undo" | "redo")
            || (o.kind == "restore" && !History::is_nested_restore(o))
    });
    if let Some(last) = last
        && let Some(to) = h.already_at_id(last)
    {
        return Some(to);
    }
    let after = last.map_or((i64::MIN, 0, 0), |o| (o.ended_at.unwrap_or(i64::MAX), o.id, 3));
    h.cps
        .iter()
        .rev()
        .find(|c| cp_key(c) > after && !SAFETY_KINDS.contains(&h.op_kind(c.op_id)))
        .map(|c| c.id)
}

impl History {
    /// The checkpoint `last` returned the project to, when it was a complete,
    /// successful rollback or restore.
    fn already_at_id(&self, last: &OperationRow) -> Option<i64> {
        let (_, to) = self.returns().find(|(o, _)| o.id == last.id)?;
        self.already_at(to).map(|_| to)
    }
}

#[cfg(test)]
mod tests;
