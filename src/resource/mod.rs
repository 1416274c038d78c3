//! Resources a checkpoint captures, and the checkpoint itself: a restore point
//! recorded in the operation log, marked complete only after every resource is
//! captured and verified, so an interrupted capture is never offered for restore.
//!
//! # Adding a kind of resource
//!
//! A kind lives in its own module (like [`git`] and [`paths`]) and plugs in at
//! four places, each a few lines here:
//!
//! 1. a [`Spec`] variant: what the plan (or a held checkpoint) asks to capture,
//!    and its arm in [`plan_specs`] and [`Spec::name`];
//! 2. a field of [`Resources`] for the captured state (serde, `#[serde(default)]`
//!    so older checkpoints still load);
//! 3. an arm in `capture_one`: capture into that field, return a [`Summary`];
//! 4. an implementation of [`Held`] for the captured state, listed in
//!    [`Resources::held`]: `verify`, `plan_restore` (the dry run, which must
//!    check everything it will need), and through [`PlannedRestore`] /
//!    [`PreparedRestore`] the two stages of a real restore — `prepare` (stage
//!    and check, nothing visible changes) and `commit` (apply).
//!
//! [`restore`] then does the rest for every kind: `--only`, the dry run, the
//! safety checkpoint of the same resources, a journaled step per resource,
//! and, if one fails, putting back what it changed ([`takeback`]).

pub mod command;
pub mod db;
pub mod discard;
pub mod dumps;
pub mod export;
pub mod gc;
pub mod git;
pub mod paths;
pub mod retention;
pub mod takeback;
pub mod tar;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::oplog::{CheckpointRow, OpId};
use crate::store::manifest::{Known, Manifest, ManifestError};
use crate::store::{Batch, Hash, Progress, Store};
use crate::workspace::Workspace;

/// Everything one checkpoint holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    pub git: Option<git::GitState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<paths::PathState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<dumps::DbState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<dumps::CommandState>,
    /// One line per resource: what was captured and how big it is.
    #[serde(default)]
    pub summary: Vec<Summary>,
    /// When this checkpoint's objects were all stored ([`Store::seal_now`]
    /// right after they were committed): the next capture of its paths trusts
    /// the objects in store directories unchanged since, instead of listing
    /// the store (see [`crate::store::Batch::stored_since`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_ns: Option<i64>,
}

/// What capturing one resource took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub kind: String,
    pub files: u64,
    /// Size of what was captured.
    pub bytes: u64,
    /// Compressed bytes this capture added to the store (the rest was already there).
    pub stored: u64,
    /// What was left out, and why (sockets, which belong to a running program).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A resource to capture: named by the plan, or by a checkpoint being restored
/// (whose safety checkpoint captures the same resources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Git,
    /// A path relative to the plan root, without a trailing `/`.
    Path(String),
    /// A database of `[capture] databases`, by name.
    Database(String),
    /// A command-captured resource of `[capture] commands`, by name.
    Command(String),
}

impl Spec {
    /// The name `--only` and listings use: `git`, or the path.
    pub fn name(&self) -> String {
        match self {
            Spec::Git => "git".into(),
            Spec::Path(p) | Spec::Database(p) | Spec::Command(p) => p.clone(),
        }
    }
}

/// What the plan's `[capture]` names, in order.
pub fn plan_specs(plan: &crate::plan::Plan) -> Vec<Spec> {
    let mut v = Vec::new();
    if plan.capture.git {
        v.push(Spec::Git);
    }
    v.extend(plan.capture.paths.iter().map(|p| Spec::Path(p.clone())));
    v.extend(plan.capture.databases.iter().map(|d| Spec::Database(d.name.clone())));
    v.extend(plan.capture.commands.iter().map(|c| Spec::Command(c.name.clone())));
    v
}

impl Resources {
    pub fn from_row(row: &CheckpointRow) -> Resources {
        Self::try_from_row(row).unwrap_or_default()
    }

    /// The checkpoint's record, or why it cannot be read (written by a newer
    /// backout, or edited by hand): for gc and fsck, which must not take an
    /// unreadable record for an empty one.
    pub fn try_from_row(row: &CheckpointRow) -> Result<Resources, serde_json::Error> {
        serde_json::from_value(row.resources.clone())
    }

    /// Every resource this checkpoint holds, ready to verify or restore.
    pub fn held(&self) -> Vec<&dyn Held> {
        let mut v: Vec<&dyn Held> = Vec::new();
        if let Some(g) = &self.git {
            v.push(g);
        }
        v.extend(self.paths.iter().map(|p| p as &dyn Held));
        v.extend(self.databases.iter().map(|d| d as &dyn Held));
        v.extend(self.commands.iter().map(|c| c as &dyn Held));
        v
    }

    /// The objects this checkpoint holds whole, outside any manifest: each
    /// database's dump and each command's saved output, with the resource's
    /// name and what the object is (`database dump`, `command output`).
    pub fn objects(&self) -> impl Iterator<Item = (&str, Hash, &'static str)> {
        let dumps = self
            .databases
            .iter()
            .map(|d| (d.snapshot.name.as_str(), d.object, "database dump"));
        let outputs = self
            .commands
            .iter()
            .map(|c| (c.snapshot.name.as_str(), c.object, "command output"));
        dumps.chain(outputs)
    }

    /// Total captured bytes.
    pub fn bytes(&self) -> u64 {
        self.summary.iter().map(|s| s.bytes).sum()
    }
}

/// What a resource handler gets: where things are, and where to report progress.
pub struct Cx<'a> {
    pub root: &'a Path,
    /// The plan: databases and commands are restored with its connection and commands.
    pub plan: &'a crate::plan::Plan,
    pub store: &'a Store,
    /// A scratch directory on the same file system as the root, for staging.
    pub scratch: PathBuf,
    /// Checkpoints, newest first: earlier captures to reuse hashes from.
    pub history: &'a [Resources],
    pub progress: &'a dyn Progress,
    /// The manifests this checkpoint just captured, by hash, kept for
    /// [`Held::verify`] so it need not decode them again.
    pub captured: std::sync::Mutex<std::collections::HashMap<Hash, JustCaptured>>,
}

/// A manifest this checkpoint just captured, and what validating it found
/// (while it was stored, see [`paths::capture`]).
pub struct JustCaptured {
    pub manifest: Manifest,
    pub valid: Result<(), ManifestError>,
}

impl Cx<'_> {
    /// Where the latest manifest of `path` is, for incremental capture and
    /// quick compare, and the seal of the checkpoint that holds it.
    fn previous(&self, path: &str) -> Option<(&paths::PathState, Option<i64>)> {
        self.history
            .iter()
            .find_map(|r| r.paths.iter().find(|p| p.path == path).map(|p| (p, r.sealed_ns)))
    }

    fn previous_state(&self, path: &str) -> Option<&paths::PathState> {
        self.previous(path).map(|(p, _)| p)
    }

    /// The latest manifest of `path`, for incremental capture and quick compare.
    fn previous_manifest(&self, path: &str) -> Option<Manifest> {
        Manifest::load(self.store, self.previous_state(path)?.manifest).ok()
    }
}

/// One change a restore makes (or would make, with `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeLine {
    pub resource: String,
    /// `add`, `change`, `meta`, `remove`, `index`, `move` (files and git);
    /// `run` (a command's restore); for a database, the verb of what its
    /// tool will do: `replace`, `drop`, `terminate`, `write`, `delete`.
    pub action: String,
    pub what: String,
}

/// A captured resource as a checkpoint holds it.
pub trait Held {
    fn name(&self) -> String;
    fn spec(&self) -> Spec;
    /// Checks, right after capture (once `batch` is committed), that
    /// everything it names is stored.
    fn verify(&self, cx: &Cx<'_>, batch: &Batch<'_>) -> anyhow::Result<()>;
    /// The dry run: what restoring would change. Must read and check all it
    /// relies on, so a damaged checkpoint fails here, before any write.
    fn plan_restore<'a>(&'a self, cx: &Cx<'_>) -> anyhow::Result<Box<dyn PlannedRestore + 'a>>;
}

pub trait PlannedRestore {
    fn changes(&self) -> Vec<ChangeLine>;
    /// What the restore discards of what was written since the checkpoint
    /// (measured while planning; `None` for kinds that do not hold user data).
    fn discard(&self) -> Option<discard::Discard> {
        None
    }
    /// What the restore will not put back, and why.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// Stages and checks everything; nothing the user sees changes.
    fn prepare<'a>(self: Box<Self>, cx: &Cx<'_>) -> anyhow::Result<Box<dyn PreparedRestore + 'a>>
    where
        Self: 'a;
}

pub trait PreparedRestore {
    /// Applies the restore.
    fn commit(self: Box<Self>, cx: &Cx<'_>) -> anyhow::Result<()>;
}

/// Captures one resource into `into`.
fn capture_one(
    spec: &Spec,
    cx: &Cx<'_>,
    name: &str,
    batch: &Batch<'_>,
    into: &mut Resources,
) -> anyhow::Result<Summary> {
    match spec {
        Spec::Git => {
            let state = git::capture(cx.root, name)?;
            let files = git::git(&state.toplevel, &["ls-tree", "-r", "--name-only", &state.commit], &[])?
                .lines()
                .count() as u64;
            into.git = Some(state);
            Ok(Summary {
                name: spec.name(),
                kind: "git".into(),
                files,
                ..Summary::default()
            })
        }
        Spec::Path(p) => {
            let before = batch.stored_bytes();
            let load = || Known::load(cx.store, cx.previous_state(p)?.manifest).ok();
            let prev = match cx.previous(p) {
                Some((st, sealed)) => paths::Previous::Lazy {
                    files: st.files,
                    sealed,
                    load: &load,
                },
                None => paths::Previous::None,
            };
            let c = paths::capture(cx.root, p, prev, batch, cx.progress).with_context(|| format!("capturing {p}"))?;
            let mut warnings = Vec::new();
            if let Some(first) = c.skipped.first() {
                let n = c.skipped.len();
                let listed: Vec<&str> = c.skipped.iter().take(5).map(String::as_str).collect();
                warnings.push(format!(
                    "{p}: {n} socket{} skipped (a running program's, not state to restore): {}{}",
                    if n == 1 { "" } else { "s" },
                    listed.join(", "),
                    if n > listed.len() { ", …" } else { "" }
                ));
                tracing::debug!(first, "sockets skipped");
            }
            let s = Summary {
                name: p.clone(),
                kind: "path".into(),
                files: c.state.files,
                bytes: c.state.bytes,
                stored: batch.stored_bytes() - before,
                warnings,
            };
            cx.captured.lock().expect("poisoned").insert(
                c.state.manifest,
                JustCaptured {
                    manifest: c.manifest,
                    valid: c.valid,
                },
            );
            into.paths.push(c.state);
            Ok(s)
        }
        Spec::Database(n) => {
            let db = dumps::database(cx.plan, n)?;
            let (state, s) = dumps::capture_db(db, cx, batch).with_context(|| format!("capturing database {n}"))?;
            into.databases.push(state);
            Ok(s)
        }
        Spec::Command(n) => {
            let c = dumps::capture_command(cx.plan, n)?;
            let (state, s) = dumps::capture_cmd(c, cx, batch).with_context(|| format!("capturing {n}"))?;
            into.commands.push(state);
            Ok(s)
        }
    }
}

/// A checkpoint's display id.
pub fn checkpoint_name(id: i64) -> String {
    format!("cp-{id}")
}

/// Parses `cp-3` or `3`.
pub fn parse_checkpoint_name(s: &str) -> Option<i64> {
    s.strip_prefix("cp-").unwrap_or(s).parse().ok()
}

/// Resources of every complete checkpoint, newest first.
fn history(ws: &Workspace) -> anyhow::Result<Vec<Resources>> {
    Ok(ws
        .oplog
        .checkpoints()?
        .iter()
        .rev()
        .filter(|c| c.complete)
        .map(Resources::from_row)
        .collect())
}

/// Captures every resource the plan names as a new checkpoint under `op`.
pub fn checkpoint(ws: &Workspace, op: OpId, label: Option<&str>, phase: Option<&str>) -> anyhow::Result<CheckpointRow> {
    checkpoint_of(ws, op, label, phase, &plan_specs(&ws.plan), &())
}

/// Captures `specs` as a new checkpoint under `op`: written incomplete first,
/// marked complete only once every resource is captured, durable and verified.
pub fn checkpoint_of(
    ws: &Workspace,
    op: OpId,
    label: Option<&str>,
    phase: Option<&str>,
    specs: &[Spec],
    progress: &dyn Progress,
) -> anyhow::Result<CheckpointRow> {
    let id = ws.oplog.insert_checkpoint(op, ws.now_ms(), label, phase)?;
    let name = checkpoint_name(id);
    let store = ws.store()?;
    let history = history(ws)?;
    let cx = Cx {
        root: ws.root(),
        plan: &ws.plan,
        store: &store,
        scratch: ws.state_dir.join("tmp"),
        history: &history,
        progress,
        captured: Default::default(),
    };
    let mut res = Resources::default();
    let batch = store.batch();
    let t = std::time::Instant::now();
    for spec in specs {
        let s = capture_one(spec, &cx, &name, &batch, &mut res)?;
        tracing::debug!(resource = s.name, ms = t.elapsed().as_millis() as u64, "captured");
        res.summary.push(s);
    }
    // Verified while the objects' names are made durable: complete needs both.
    let (_, verified) = batch
        .commit_then(|| -> anyhow::Result<()> {
            for h in res.held() {
                h.verify(&cx, &batch)
                    .with_context(|| format!("verifying {}", h.name()))?;
            }
            Ok(())
        })
        .context("writing the captured objects")?;
    verified?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "objects durable and verified");
    // Sealed once verified, so the milliseconds the verification takes
    // separate the seal from the commit's last renames: a directory renamed
    // into within a clock tick of the seal counts as changed next time.
    res.sealed_ns = store.seal_now();
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

/// What a restore did, or with `dry_run` would do.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub checkpoint: String,
    pub dry_run: bool,
    pub resources: Vec<String>,
    /// The checkpoint of the state before the restore, which undoes it.
    pub safety_checkpoint: Option<String>,
    pub changes: Vec<ChangeLine>,
    /// What the restore does not put back, and why (owners when not root).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Per database and path: what was written since the checkpoint and is
    /// discarded, and the safety checkpoint that keeps it.
    pub discarded: Vec<discard::Discard>,
    /// Safety checkpoints `[store]` dropped once it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<retention::Pruned>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("checkpoint {0} does not exist")]
    NoSuchCheckpoint(String),
    #[error("checkpoint {0} is incomplete (its capture was interrupted) and cannot be restored")]
    Incomplete(String),
    #[error("checkpoint {checkpoint} holds no resource named {name:?}; it holds: {held}")]
    NoSuchResource {
        checkpoint: String,
        name: String,
        held: String,
    },
}

/// Restores `cp` (only the resources named in `only`, if any). The whole
/// restore is planned and every object it needs is checked before anything is
/// written; then a safety checkpoint of the same resources is taken under
/// `op`, and each resource is restored as a journaled step.
pub fn restore(
    ws: &Workspace,
    op: Option<OpId>,
    cp: &CheckpointRow,
    only: &[String],
    dry_run: bool,
    progress: &dyn Progress,
) -> anyhow::Result<RestoreOutcome> {
    let cp_name = checkpoint_name(cp.id);
    if !cp.complete {
        return Err(RestoreError::Incomplete(cp_name).into());
    }
    let res = Resources::from_row(cp);
    let all = res.held();
    for n in only {
        if !all.iter().any(|h| h.name() == *n) {
            return Err(RestoreError::NoSuchResource {
                checkpoint: cp_name,
                name: n.clone(),
                held: all.iter().map(|h| h.name()).collect::<Vec<_>>().join(", "),
            }
            .into());
        }
    }
    let chosen: Vec<&dyn Held> = all
        .into_iter()
        .filter(|h| only.is_empty() || only.contains(&h.name()))
        .collect();
    let store = ws.store()?;
    let history = history(ws)?;
    let cx = Cx {
        root: ws.root(),
        plan: &ws.plan,
        store: &store,
        scratch: ws.state_dir.join("tmp").join(format!("restore-{}", std::process::id())),
        history: &history,
        progress,
        captured: Default::default(),
    };
    // The staged objects go however the restore ends: a dry run, a refusal
    // (a damaged object), a failure or success.
    let _staged = RemoveOnDrop(&cx.scratch);
    let mut planned = Vec::new();
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    let mut discarded = Vec::new();
    for h in &chosen {
        let p = h
            .plan_restore(&cx)
            .with_context(|| format!("cannot restore {} from {cp_name}", h.name()))?;
        changes.extend(p.changes());
        warnings.extend(p.warnings());
        if let Some(mut d) = p.discard() {
            d.since = cp_name.clone();
            d.counts.retain(|c| !c.is_empty());
            discarded.push(d);
        }
        planned.push(p);
    }
    let mut outcome = RestoreOutcome {
        checkpoint: cp_name.clone(),
        dry_run,
        resources: chosen.iter().map(|h| h.name()).collect(),
        safety_checkpoint: None,
        changes,
        warnings,
        discarded,
        pruned: None,
    };
    let Some(op) = op.filter(|_| !dry_run) else {
        return Ok(outcome);
    };
    let t = std::time::Instant::now();
    let mut prepared = Vec::new();
    for (h, p) in chosen.iter().zip(planned) {
        prepared.push(
            p.prepare(&cx)
                .with_context(|| format!("cannot restore {} from {cp_name}", h.name()))?,
        );
    }
    let specs: Vec<Spec> = chosen.iter().map(|h| h.spec()).collect();
    let label = takeback::safety_label(&cp_name);
    let safety = checkpoint_of(ws, op, Some(&label), None, &specs, progress)
        .context("taking the safety checkpoint; nothing was restored")?;
    outcome.safety_checkpoint = Some(checkpoint_name(safety.id));
    for d in &mut outcome.discarded {
        d.kept_in = Some(checkpoint_name(safety.id));
    }
    // Logged before anything is written: what this restore is about to discard.
    if !outcome.discarded.is_empty() {
        ws.oplog.event(
            op,
            ws.now_ms(),
            "discarded",
            &serde_json::json!({
                "checkpoint": cp_name,
                "safety_checkpoint": checkpoint_name(safety.id),
                "discarded": outcome.discarded,
                "summary": outcome.discarded.iter().map(discard::Discard::sentence).collect::<Vec<_>>(),
            }),
        )?;
    }
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "staged, safety checkpoint taken");
    commit_all(ws, op, &cx, &chosen, prepared, &cp_name, &safety)?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "committed");
    Ok(outcome)
}

/// Removes a staging directory when dropped.
pub(crate) struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}

/// Puts back every resource `cp` holds except git, planned, staged and checked
/// before anything is written, with no safety checkpoint or journal of its own:
/// for undo and redo, which took their safety checkpoint first and journal this
/// as their step (git they put back themselves). Idempotent. Returns the names
/// of the resources restored, and what that discarded of what was written
/// since `cp` (measured before writing).
pub fn restore_all_but_git(ws: &Workspace, cp: &CheckpointRow) -> anyhow::Result<(Vec<String>, Vec<discard::Discard>)> {
    takeback::put_back(ws, cp, &|h| h.spec() != Spec::Git, "undo", &())
}

/// Restores each prepared resource as one journaled step of `op`. If one
/// fails, what the restore changed is put back from `safety` (see
/// [`takeback`]): a restore never leaves a resource half restored.
fn commit_all(
    ws: &Workspace,
    op: OpId,
    cx: &Cx<'_>,
    chosen: &[&dyn Held],
    prepared: Vec<Box<dyn PreparedRestore + '_>>,
    cp_name: &str,
    safety: &CheckpointRow,
) -> anyhow::Result<()> {
    // Each step's begin is durable before the step writes: a restore killed
    // while it writes is taken back by the next command (see `takeback`).
    ws.oplog.set_durable()?;
    for (i, (h, p)) in chosen.iter().zip(prepared).enumerate() {
        let seq = i as i64 + 1;
        let step = format!("restore {}", h.name());
        ws.oplog.step_begin(op, seq, &step, None, ws.now_ms())?;
        match p.commit(cx) {
            Ok(()) => ws.oplog.step_end(op, seq, "ok", None, "", ws.now_ms())?,
            Err(e) => {
                ws.oplog
                    .step_end(op, seq, "failed", None, &format!("{e:#}"), ws.now_ms())?;
                let begun: Vec<String> = chosen[..=i].iter().map(|h| h.name()).collect();
                let seq = chosen.len() as i64 + 1;
                let err = takeback::after_failure(ws, op, seq, cp_name, safety, &h.name(), &begun, e, cx.progress)?;
                return Err(err.into());
            }
        }
    }
    Ok(())
}

// --- git ----------------------------------------------------------------------

impl Held for git::GitState {
    fn name(&self) -> String {
        "git".into()
    }
    fn spec(&self) -> Spec {
        Spec::Git
    }
    fn verify(&self, _cx: &Cx<'_>, _batch: &Batch<'_>) -> anyhow::Result<()> {
        Ok(git::verify(self)?)
    }
    fn plan_restore<'a>(&'a self, cx: &Cx<'_>) -> anyhow::Result<Box<dyn PlannedRestore + 'a>> {
        git::check_repository(self, cx.root)?;
        let changes = git::plan_restore(self)?;
        Ok(Box::new(GitRestore { state: self, changes }))
    }
}

struct GitRestore<'a> {
    state: &'a git::GitState,
    changes: Vec<git::GitChange>,
}

impl PlannedRestore for GitRestore<'_> {
    fn changes(&self) -> Vec<ChangeLine> {
        self.changes
            .iter()
            .map(|c| ChangeLine {
                resource: "git".into(),
                action: c.action.into(),
                what: c.what.clone(),
            })
            .collect()
    }
    fn prepare<'b>(self: Box<Self>, _cx: &Cx<'_>) -> anyhow::Result<Box<dyn PreparedRestore + 'b>>
    where
        Self: 'b,
    {
        git::verify(self.state)?;
        Ok(self)
    }
}

impl PreparedRestore for GitRestore<'_> {
    fn commit(self: Box<Self>, _cx: &Cx<'_>) -> anyhow::Result<()> {
        Ok(git::restore(self.state)?)
    }
}

// --- paths --------------------------------------------------------------------

impl Held for paths::PathState {
    fn name(&self) -> String {
        self.path.clone()
    }
    fn spec(&self) -> Spec {
        Spec::Path(self.path.clone())
    }
    /// The manifest is read back (its hash checked) and validated; every
    /// object it names must be one the batch found stored or wrote and named.
    /// The batch knows both, so nothing is listed or re-read: an incremental
    /// checkpoint of a large tree checks a few hundred new objects, not all.
    fn verify(&self, cx: &Cx<'_>, batch: &Batch<'_>) -> anyhow::Result<()> {
        let kept = cx.captured.lock().expect("poisoned").remove(&self.manifest);
        let m = match kept {
            // Just captured: its object is read back and its hash checked
            // (so it holds exactly what was encoded), and the manifest in
            // memory was validated while it was stored. Decoding 26,000
            // entries again took ~10% of an incremental checkpoint's CPU on
            // the bench tree.
            Some(JustCaptured { manifest: m, valid }) => {
                cx.store.verify(self.manifest)?;
                valid?;
                // The encoding's round trip, checked in full where it is cheap.
                #[cfg(debug_assertions)]
                assert_eq!(
                    Manifest::load(cx.store, self.manifest)?,
                    m,
                    "the manifest decodes as captured"
                );
                m
            }
            None => Manifest::load(cx.store, self.manifest)?,
        };
        let hashes = m.entries.iter().enumerate().filter_map(|(i, e)| Some((i, e.hash?)));
        if let Some((i, h)) = batch.first_missing(hashes) {
            anyhow::bail!(
                "the object {} of {} is not in the store",
                h.short(),
                m.entries[i].shown()
            );
        }
        // Freed on a thread of its own, off the checkpoint's path: freeing
        // the bench tree's 26,000 entries one by one took ~1.7 ms. Without a
        // thread (none could be made), `spawn` drops it here.
        let _ = std::thread::Builder::new().spawn(move || drop(m));
        Ok(())
    }
    fn plan_restore<'a>(&'a self, cx: &Cx<'_>) -> anyhow::Result<Box<dyn PlannedRestore + 'a>> {
        let prev = cx.previous_manifest(&self.path);
        let planned = paths::plan(cx.store, cx.root, self, prev.as_ref(), cx.progress)?;
        Ok(Box::new(PathRestore {
            name: self.path.clone(),
            planned,
        }))
    }
}

struct PathRestore {
    name: String,
    planned: paths::Planned,
}

fn path_lines(name: &str, changes: &[paths::Change]) -> Vec<ChangeLine> {
    changes
        .iter()
        // A kind change shows once, as a change.
        .filter(|c| {
            c.action != paths::Action::Remove
                || !changes
                    .iter()
                    .any(|o| o.path == c.path && o.action == paths::Action::Change)
        })
        .map(|c| {
            let mut what = crate::store::manifest::show(&c.path).into_owned();
            if c.kind == crate::store::manifest::Kind::Dir {
                what.push('/');
            }
            if c.inside > 0 {
                what.push_str(&format!(" ({} entries inside)", c.inside));
            }
            ChangeLine {
                resource: name.to_string(),
                action: serde_json::to_value(c.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                what,
            }
        })
        .collect()
}

impl PlannedRestore for PathRestore {
    fn changes(&self) -> Vec<ChangeLine> {
        path_lines(&self.name, &self.planned.changes)
    }
    fn warnings(&self) -> Vec<String> {
        self.planned.warnings.clone()
    }
    fn discard(&self) -> Option<discard::Discard> {
        let mut d = discard::Discard::new(&self.name, "file", "");
        d.counts.push(self.planned.discarded());
        Some(d)
    }
    fn prepare<'b>(self: Box<Self>, cx: &Cx<'_>) -> anyhow::Result<Box<dyn PreparedRestore + 'b>>
    where
        Self: 'b,
    {
        let staging = cx.scratch.join(self.name.replace('/', "%"));
        let prepared = self.planned.prepare(cx.store, &staging, cx.progress)?;
        Ok(Box::new(PathPrepared(prepared)))
    }
}

struct PathPrepared(paths::Prepared);

impl PreparedRestore for PathPrepared {
    fn commit(self: Box<Self>, cx: &Cx<'_>) -> anyhow::Result<()> {
        self.0.commit(cx.progress)?;
        Ok(())
    }
}
