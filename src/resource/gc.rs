//! Dropping old checkpoints and the objects only they used (`backout gc`), and
//! checking what the remaining ones rely on (`backout fsck`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::{Resources, checkpoint_name, git, retention};
use crate::store::fsck::{Damage, FsckReport, ObjectReference, Problem, Reference};
use crate::store::{Hash, Progress, Store};
use crate::workspace::Workspace;

/// Which checkpoints to drop. A complete checkpoint is dropped only when every
/// given rule says so; the newest complete one is always kept.
#[derive(Debug, Clone, Default)]
pub struct GcRules {
    /// Keep the newest N complete checkpoints.
    pub keep: Option<usize>,
    /// Keep checkpoints younger than this.
    pub older_than: Option<Duration>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dropped: Vec<String>,
    /// Safety checkpoints dropped by the plan's `[store]` retention: past
    /// `keep-safety` (and `keep-safety-for`), or to fit `max-size`.
    pub pruned: Vec<String>,
    /// Interrupted captures removed (never restorable).
    pub incomplete: Vec<String>,
    pub kept: Vec<String>,
    pub objects_removed: usize,
    pub bytes_freed: u64,
    pub tmp_files_removed: usize,
    /// Why the store is still over `[store] max-size`, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Drops checkpoints by `rules` and safety checkpoints by the plan's `[store]`
/// retention (see [`super::retention`]), then every object no remaining
/// checkpoint uses. Keeps the safety checkpoints the next `backout undo` and
/// `backout redo` put back. Refuses (removing nothing) while a rollback,
/// undo, redo or restore a crash interrupted waits to be resumed or taken
/// back, or if a remaining checkpoint or its manifest cannot be read, since
/// its objects could not be told apart from garbage.
pub fn gc(ws: &Workspace, rules: &GcRules) -> anyhow::Result<GcReport> {
    // A rollback, undo or redo a kill interrupted resumes from its
    // checkpoints; a restore is taken back from its safety checkpoint.
    if let Some(op) = super::takeback::pending(ws)? {
        let next = if op.kind == "restore" {
            "`backout restore` or `backout undo` takes it back".to_string()
        } else {
            format!("finish it first (`backout {}`)", op.kind)
        };
        anyhow::bail!(
            "op-{} is a {} a crash interrupted; gc could drop the checkpoints it needs, so it removed nothing\n  = hint: {next}, then run gc again",
            op.id,
            op.kind,
        );
    }
    let needed = retention::needed(ws)?;
    let store = ws.store()?;
    let now = ws.now_ms();
    let all = ws.oplog.checkpoints()?;
    let complete: Vec<_> = all.iter().filter(|c| c.complete).collect();
    let mut report = GcReport::default();
    let mut drop_ids = HashSet::new();
    for (rank, c) in complete.iter().rev().enumerate() {
        let by_count = rules.keep.is_some_and(|n| rank >= n);
        let by_age = rules
            .older_than
            .is_some_and(|d| now.saturating_sub(c.created_at) > crate::context::millis(d));
        let asked = rules.keep.is_some() || rules.older_than.is_some();
        let drop = asked
            && rank > 0
            && !needed.contains(&c.id)
            && (rules.keep.is_none() || by_count)
            && (rules.older_than.is_none() || by_age);
        if drop {
            drop_ids.insert(c.id);
            report.dropped.push(checkpoint_name(c.id));
        }
    }
    report.dropped.reverse();
    let mut objects = HashMap::new();
    let sel = retention::select(ws, &ws.plan.store, &store, &drop_ids, &mut objects)
        .context("gc stopped before removing anything")?;
    for id in sel.by_count.iter().chain(&sel.by_budget) {
        drop_ids.insert(*id);
    }
    let mut pruned: Vec<i64> = sel.by_count.iter().chain(&sel.by_budget).copied().collect();
    pruned.sort_unstable();
    report.pruned = pruned.into_iter().map(checkpoint_name).collect();
    report.warning = sel.over_budget;
    report.kept = complete
        .iter()
        .filter(|c| !drop_ids.contains(&c.id))
        .map(|c| checkpoint_name(c.id))
        .collect();
    for c in all.iter().filter(|c| !c.complete) {
        drop_ids.insert(c.id);
        report.incomplete.push(checkpoint_name(c.id));
    }
    let (removed, freed) = sweep(ws, &store, &drop_ids, &mut objects)?;
    report.objects_removed = removed;
    report.bytes_freed = freed;
    report.tmp_files_removed = store.clean_tmp()?;
    // Staging left by a restore that was killed.
    if let Ok(rd) = std::fs::read_dir(ws.state_dir.join("tmp")) {
        for e in rd.flatten() {
            let _ = std::fs::remove_dir_all(e.path());
            report.tmp_files_removed += 1;
        }
    }
    Ok(report)
}

/// Drops the checkpoints in `drop` (their records and git pins), then every
/// object no remaining complete checkpoint holds; returns how many objects
/// were removed and the bytes freed. What the remaining ones hold is read
/// first (`objects` caches it): if one cannot be read, nothing is removed.
pub(super) fn sweep(
    ws: &Workspace,
    store: &Store,
    drop: &HashSet<i64>,
    objects: &mut HashMap<i64, Vec<Hash>>,
) -> anyhow::Result<(usize, u64)> {
    let all = ws.oplog.checkpoints()?;
    let mut live: HashSet<Hash> = HashSet::new();
    for c in all.iter().filter(|c| c.complete && !drop.contains(&c.id)) {
        match objects.get(&c.id) {
            Some(v) => live.extend(v.iter().copied()),
            None => {
                let v = retention::objects_of(store, c).context("gc stopped before removing anything")?;
                live.extend(v.iter().copied());
                objects.insert(c.id, v);
            }
        }
    }
    for c in all.iter().filter(|c| drop.contains(&c.id)) {
        if let Some(g) = Resources::from_row(c).git {
            let _ = git::git(&g.toplevel, &["update-ref", "-d", &g.pin], &[]);
        }
        ws.oplog.delete_checkpoint(c.id)?;
    }
    let (mut removed, mut freed) = (0, 0);
    for h in store.list()? {
        if !live.contains(&h) {
            freed += store.remove(h)?;
            removed += 1;
        }
    }
    Ok((removed, freed))
}

/// Checks the store and what every checkpoint relies on, git pins included.
pub fn fsck(ws: &Workspace, progress: &dyn Progress) -> anyhow::Result<FsckReport> {
    let store = ws.store()?;
    let mut refs = Vec::new();
    let mut objects = Vec::new();
    let mut git_damage = Vec::new();
    let mut unreadable = Vec::new();
    for c in ws.oplog.checkpoints()?.iter().filter(|c| c.complete) {
        let name = checkpoint_name(c.id);
        let res = match Resources::try_from_row(c) {
            Ok(res) => res,
            Err(e) => {
                unreadable.push(Damage {
                    object: name.clone(),
                    problem: Problem::Invalid,
                    role: "checkpoint record",
                    detail: format!("its record in the operation log cannot be read: {e}"),
                    checkpoints: [name].into(),
                    paths: Default::default(),
                });
                continue;
            }
        };
        for p in res
            .paths
            .iter()
            .filter(|p| p.path.split('/').next() == Some(crate::workspace::STATE_DIR))
        {
            unreadable.push(Damage {
                object: name.clone(),
                problem: Problem::Invalid,
                role: "checkpoint record",
                detail: format!(
                    "its record names {:?}, inside backout's own state directory; restore refuses it",
                    p.path
                ),
                checkpoints: [name.clone()].into(),
                paths: Default::default(),
            });
        }
        for p in &res.paths {
            refs.push(Reference {
                checkpoint: name.clone(),
                resource: p.path.clone(),
                manifest: p.manifest,
            });
        }
        objects.extend(res.objects().map(|(resource, object, role)| ObjectReference {
            checkpoint: name.clone(),
            resource: resource.to_string(),
            object,
            role,
        }));
        if let Some(g) = &res.git
            && let Err(e) = git::verify(g)
        {
            git_damage.push((name, g.commit.clone(), e.to_string()));
        }
    }
    let total = store.list()?.len() as u64;
    progress.begin("checking objects", total, 0);
    let mut report = crate::store::fsck::fsck(&store, &refs, &objects, &|n| progress.advance(n, 0))?;
    progress.end();
    report.damaged.extend(unreadable);
    for (cp, commit, detail) in git_damage {
        report.damaged.push(Damage {
            object: commit,
            problem: Problem::Missing,
            role: "git",
            detail,
            checkpoints: [cp].into(),
            paths: Default::default(),
        });
    }
    Ok(report)
}
