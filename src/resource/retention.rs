//! Which safety checkpoints are kept (`[store]` in the plan).
//!
//! Every rollback, restore, undo and redo takes a safety checkpoint of what
//! it is about to change; nothing else ever dropped them, so fifty restores
//! of a 57 MiB tree that changed each time grew the store to 3 GB. After
//! every operation that takes one (and in `backout gc`), the newest
//! `keep-safety` stay, with those younger than `keep-safety-for`; the rest
//! are dropped. Then, with a `max-size`, older safety checkpoints go while
//! the store is larger than that. Never dropped, whatever the rules: the
//! safety checkpoints the next `backout undo` and `backout redo` put back,
//! the newest checkpoint, and checkpoints no operation took for its own
//! safety (`backout checkpoint`, phases): those only `backout gc --keep`
//! drops. Nothing is pruned while an interrupted rollback, undo, redo or
//! restore waits to be resumed or taken back.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{Resources, checkpoint_name, gc};
use crate::oplog::{CheckpointRow, OperationRow};
use crate::plan::store::StoreRules;
use crate::store::manifest::{Kind, Manifest};
use crate::store::{Hash, Store};
use crate::workspace::Workspace;

/// Whether `c` is the safety checkpoint operation `op` took of the state it
/// was about to change (the one `backout undo` puts back).
pub fn is_safety(c: &CheckpointRow, op: &OperationRow) -> bool {
    let want = match (op.kind.as_str(), op.args["checkpoint"].as_str()) {
        ("restore", Some(cp)) => super::takeback::safety_label(cp),
        ("rollback" | "undo" | "redo", _) => format!("before {}", op.kind),
        _ => return false,
    };
    c.op_id == op.id && c.label.as_deref() == Some(want.as_str())
}

/// The safety checkpoints the next `backout undo` and `backout redo` put back.
pub fn needed(ws: &Workspace) -> anyhow::Result<HashSet<i64>> {
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
    Ok(needed)
}

/// The safety checkpoints to drop, and why.
#[derive(Debug, Default)]
pub struct Selected {
    /// Past `keep-safety` and older than `keep-safety-for`.
    pub by_count: Vec<i64>,
    /// Dropped to bring the store under `max-size`.
    pub by_budget: Vec<i64>,
    /// What the store holds once they are gone (known with a budget only).
    pub store_bytes: Option<u64>,
    /// Why the store stays over its budget, if it does.
    pub over_budget: Option<String>,
}

/// Every object a checkpoint holds: manifests, the files they name, dumps
/// and command outputs. An unreadable record or manifest is an error: its
/// objects could not be told from garbage.
pub fn objects_of(store: &Store, c: &CheckpointRow) -> anyhow::Result<Vec<Hash>> {
    let name = checkpoint_name(c.id);
    let res = Resources::try_from_row(c).map_err(|e| anyhow::anyhow!("the record of {name} cannot be read: {e}"))?;
    let mut out: Vec<Hash> = res.objects().map(|(_, h, _)| h).collect();
    for p in &res.paths {
        let m = Manifest::load(store, p.manifest)
            .map_err(|e| anyhow::anyhow!("{} of {name} cannot be read ({e}); run `backout fsck`", p.path))?;
        out.push(p.manifest);
        out.extend(m.entries.iter().filter(|e| e.kind == Kind::File).filter_map(|e| e.hash));
    }
    Ok(out)
}

/// Chooses the safety checkpoints `rules` drop among the complete ones not in
/// `dropping` (already chosen by `gc`'s own rules). `objects` caches each
/// checkpoint's objects, for the sweep that follows.
pub fn select(
    ws: &Workspace,
    rules: &StoreRules,
    store: &Store,
    dropping: &HashSet<i64>,
    objects: &mut HashMap<i64, Vec<Hash>>,
) -> anyhow::Result<Selected> {
    let mut out = Selected::default();
    let now = ws.now_ms();
    let complete: Vec<CheckpointRow> = ws
        .oplog
        .checkpoints()?
        .into_iter()
        .filter(|c| c.complete && !dropping.contains(&c.id))
        .collect();
    let Some(newest) = complete.iter().map(|c| c.id).max() else {
        return Ok(out);
    };
    let needed = needed(ws)?;
    let mut ops: HashMap<i64, Option<OperationRow>> = HashMap::new();
    let mut safety: Vec<&CheckpointRow> = Vec::new();
    for c in complete.iter().rev() {
        let op = match ops.get(&c.op_id) {
            Some(op) => op.clone(),
            None => {
                let op = ws.oplog.operation(c.op_id)?;
                ops.insert(c.op_id, op.clone());
                op
            }
        };
        if op.is_some_and(|op| is_safety(c, &op)) {
            safety.push(c);
        }
    }
    // Newest first.
    let droppable = |c: &CheckpointRow| c.id != newest && !needed.contains(&c.id);
    let young = |c: &CheckpointRow| {
        rules
            .keep_safety_for
            .is_some_and(|d| now - c.created_at < d.as_millis() as i64)
    };
    for (rank, c) in safety.iter().enumerate() {
        if rank >= rules.keep_safety && !young(c) && droppable(c) {
            out.by_count.push(c.id);
        }
    }
    let Some(max) = rules.max_size else {
        return Ok(out);
    };
    // Most of the time the whole store, garbage included, fits: nothing to read.
    let total: u64 = store.sizes(&store.list()?).iter().sum();
    if total <= max {
        out.store_bytes = Some(total);
        return Ok(out);
    }
    // How many kept checkpoints hold each object, and each object's size.
    let mut holders: HashMap<Hash, u32> = HashMap::new();
    for c in complete.iter().filter(|c| !out.by_count.contains(&c.id)) {
        let objs = cached(store, c, objects)?;
        for h in objs.iter().collect::<HashSet<_>>() {
            *holders.entry(*h).or_default() += 1;
        }
    }
    let live: Vec<Hash> = holders.keys().copied().collect();
    let size: HashMap<Hash, u64> = live.iter().copied().zip(store.sizes(&live)).collect();
    let mut bytes: u64 = size.values().sum();
    for c in safety.iter().rev() {
        if bytes <= max {
            break;
        }
        if out.by_count.contains(&c.id) || !droppable(c) {
            continue;
        }
        for h in cached(store, c, objects)?.iter().collect::<HashSet<_>>() {
            if let Some(n) = holders.get_mut(h) {
                *n -= 1;
                if *n == 0 {
                    bytes -= size.get(h).copied().unwrap_or(0);
                }
            }
        }
        out.by_budget.push(c.id);
    }
    out.store_bytes = Some(bytes);
    if bytes > max {
        out.over_budget = Some(format!(
            "the store holds {} after pruning, over [store] max-size = {}: what is left is what undo and redo need, the newest checkpoint, and checkpoints taken by `backout checkpoint` or a phase (`backout gc --keep N` drops those)",
            crate::output::bytes(bytes),
            rules.max_size_text.clone().unwrap_or_else(|| crate::output::bytes(max))
        ));
    }
    Ok(out)
}

fn cached<'a>(
    store: &Store,
    c: &CheckpointRow,
    objects: &'a mut HashMap<i64, Vec<Hash>>,
) -> anyhow::Result<&'a Vec<Hash>> {
    Ok(match objects.entry(c.id) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(objects_of(store, c)?),
    })
}

/// What pruning after an operation did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Pruned {
    /// Safety checkpoints dropped past `keep-safety` (and `keep-safety-for`).
    pub dropped: Vec<String>,
    /// Safety checkpoints dropped to bring the store under `max-size`.
    pub over_budget_dropped: Vec<String>,
    pub objects_removed: usize,
    pub bytes_freed: u64,
    /// The store's size afterwards, when `[store] max-size` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_bytes: Option<u64>,
    /// Why the store is still over its budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The rules applied, to say why.
    #[serde(skip)]
    pub rules: StoreRules,
}

impl Pruned {
    /// Lines for the console: what was dropped and freed, and any warning.
    pub fn lines(&self) -> Vec<String> {
        let rules = &self.rules;
        let mut out = Vec::new();
        if !self.dropped.is_empty() {
            out.push(format!(
                "pruned {} safety checkpoint(s) past [store] keep-safety = {}{}: {}",
                self.dropped.len(),
                rules.keep_safety,
                match rules.keep_safety_for {
                    Some(d) => format!(" and older than {}", crate::plan::units::format_duration(d)),
                    None => String::new(),
                },
                self.dropped.join(", ")
            ));
        }
        if !self.over_budget_dropped.is_empty() {
            out.push(format!(
                "pruned {} older safety checkpoint(s) to keep the store under [store] max-size = {}: {}",
                self.over_budget_dropped.len(),
                rules.max_size_text.as_deref().unwrap_or_default(),
                self.over_budget_dropped.join(", ")
            ));
        }
        if self.objects_removed > 0 {
            out.push(format!(
                "removed {} object(s), {} freed{}",
                self.objects_removed,
                crate::output::bytes(self.bytes_freed),
                match self.store_bytes {
                    Some(b) => format!("; the store holds {}", crate::output::bytes(b)),
                    None => String::new(),
                }
            ));
        }
        out
    }
}

/// Applies `[store]` after an operation that took a safety checkpoint (with
/// the lock held, the operation finished). `None` when nothing was dropped
/// and nothing needs saying. A failure is reported in the result, not
/// raised: the operation itself succeeded.
pub fn after_operation(ws: &Workspace) -> Option<Pruned> {
    match prune(ws) {
        Ok(p) => p,
        Err(e) => Some(Pruned {
            warning: Some(format!("pruning safety checkpoints failed, nothing was dropped: {e:#}")),
            ..Pruned::default()
        }),
    }
}

fn prune(ws: &Workspace) -> anyhow::Result<Option<Pruned>> {
    if super::takeback::pending(ws)?.is_some() {
        return Ok(None);
    }
    let store = ws.store()?;
    let mut objects = HashMap::new();
    let sel = select(ws, &ws.plan.store, &store, &HashSet::new(), &mut objects)?;
    let mut p = Pruned {
        dropped: sel.by_count.iter().map(|&id| checkpoint_name(id)).collect(),
        over_budget_dropped: sel.by_budget.iter().map(|&id| checkpoint_name(id)).collect(),
        store_bytes: sel.store_bytes,
        warning: sel.over_budget,
        rules: ws.plan.store.clone(),
        ..Pruned::default()
    };
    let drop: HashSet<i64> = sel.by_count.iter().chain(&sel.by_budget).copied().collect();
    if drop.is_empty() {
        return Ok(p.warning.is_some().then_some(p));
    }
    let (objects_removed, bytes_freed) = gc::sweep(ws, &store, &drop, &mut objects)?;
    p.objects_removed = objects_removed;
    p.bytes_freed = bytes_freed;
    Ok(Some(p))
}
