//! Dropping old checkpoints and the objects only they used (`backout gc`), and
//! checking what the remaining ones rely on (`backout fsck`).

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::{Resources, checkpoint_name, git};
use crate::store::fsck::{Damage, FsckReport, ObjectReference, Problem, Reference};
use crate::store::manifest::{Kind, Manifest};
use crate::store::{Hash, Progress};
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
    /// Interrupted captures removed (never restorable).
    pub incomplete: Vec<String>,
    pub kept: Vec<String>,
    pub objects_removed: usize,
    pub bytes_freed: u64,
    pub tmp_files_removed: usize,
}

/// Drops checkpoints by `rules`, then every object no remaining checkpoint uses.
/// Keeps the safety checkpoints the next `backout undo` and `backout redo`
/// put back. Refuses (removing nothing) while a rollback, undo or redo a
/// crash interrupted waits to be resumed, or if a remaining checkpoint or its
/// manifest cannot be read, since its objects could not be told apart from
/// garbage.
pub fn gc(ws: &Workspace, rules: &GcRules) -> anyhow::Result<GcReport> {
    // A rollback, undo or redo a kill interrupted resumes from its checkpoints.
    if let Some(op) = ws.oplog.interrupted(&["rollback", "undo", "redo"])? {
        anyhow::bail!(
            "op-{} is a {} a crash interrupted; gc could drop the checkpoints it resumes from, so it removed nothing\n  = hint: finish it first (`backout {}`), then run gc again",
            op.id,
            op.kind,
            op.kind
        );
    }
    // What the next `backout undo` and `backout redo` put back.
    let mut needed = HashSet::new();
    for op in [
        crate::rollback::undo::undo_target(ws)?,
        crate::rollback::undo::redo_target(ws)?,
    ]
    .into_iter()
    .flatten()
    {
        if let Some(cp) = crate::rollback::undo::safety_of(ws, &op)? {
            needed.insert(cp.id);
        }
    }
    let store = ws.store()?;
    let now = ws.now_ms();
    let all = ws.oplog.checkpoints()?;
    let complete: Vec<_> = all.iter().filter(|c| c.complete).collect();
    let mut report = GcReport::default();
    let mut drop_ids = Vec::new();
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
            drop_ids.push(c.id);
            report.dropped.push(checkpoint_name(c.id));
        } else {
            report.kept.push(checkpoint_name(c.id));
        }
    }
    report.kept.reverse();
    report.dropped.reverse();
    for c in all.iter().filter(|c| !c.complete) {
        drop_ids.push(c.id);
        report.incomplete.push(checkpoint_name(c.id));
    }

    // Everything the kept checkpoints use, read before anything is removed.
    let mut live: HashSet<Hash> = HashSet::new();
    for c in complete.iter().filter(|c| !drop_ids.contains(&c.id)) {
        let res = Resources::try_from_row(c).with_context(|| {
            format!(
                "gc stopped before removing anything: the record of {} cannot be read",
                checkpoint_name(c.id)
            )
        })?;
        // Its database dumps and commands' outputs, which no manifest names.
        live.extend(res.objects().map(|(_, object, _)| object));
        for p in res.paths {
            let m = Manifest::load(&store, p.manifest).with_context(|| {
                format!(
                    "gc stopped before removing anything: {} of {} cannot be read; run `backout fsck`",
                    p.path,
                    checkpoint_name(c.id)
                )
            })?;
            live.insert(p.manifest);
            live.extend(m.entries.iter().filter(|e| e.kind == Kind::File).filter_map(|e| e.hash));
        }
    }
    for c in all.iter().filter(|c| drop_ids.contains(&c.id)) {
        if let Some(g) = Resources::from_row(c).git {
            let _ = git::git(&g.toplevel, &["update-ref", "-d", &g.pin], &[]);
        }
        ws.oplog.delete_checkpoint(c.id)?;
    }
    for h in store.list()? {
        if !live.contains(&h) {
            report.bytes_freed += store.remove(h)?;
            report.objects_removed += 1;
        }
    }
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
