//! Checking the store: every object is decompressed and re-hashed, every
//! manifest a checkpoint names is read and validated, and every object a
//! manifest names must be present and intact. Each problem is reported once,
//! with the checkpoints (and files) it affects.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;

use super::manifest::{Kind, Manifest, ManifestError};
use super::{Hash, Store, StoreError, parallel};

/// A manifest some checkpoint relies on.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The checkpoint's name, e.g. `cp-3`.
    pub checkpoint: String,
    /// The resource's name, e.g. `api/venv`.
    pub resource: String,
    pub manifest: Hash,
}

/// An object some checkpoint relies on whole, not through a manifest: a
/// database's dump or a command's saved output.
#[derive(Debug, Clone)]
pub struct ObjectReference {
    /// The checkpoint's name, e.g. `cp-3`.
    pub checkpoint: String,
    /// The resource's name, e.g. `main`.
    pub resource: String,
    pub object: Hash,
    /// What the object is: `database dump` or `command output`.
    pub role: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Problem {
    Missing,
    Corrupt,
    /// Intact bytes, but not a manifest backout can safely restore.
    Invalid,
}

/// One damaged object and what it affects.
#[derive(Debug, Clone, Serialize)]
pub struct Damage {
    /// The object's name (for `git`, the commit).
    pub object: String,
    pub problem: Problem,
    /// `manifest`, `file`, `database dump`, `command output`, `checkpoint
    /// record` (the object is then the checkpoint), or `unreferenced`.
    pub role: &'static str,
    pub detail: String,
    pub checkpoints: BTreeSet<String>,
    /// Files (up to a few) whose content this object is.
    pub paths: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    pub objects: usize,
    pub manifests: usize,
    pub damaged: Vec<Damage>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }

    /// Checkpoints affected by any damage.
    pub fn affected(&self) -> BTreeSet<String> {
        self.damaged
            .iter()
            .flat_map(|d| d.checkpoints.iter().cloned())
            .collect()
    }
}

const PATHS_SHOWN: usize = 5;

/// Checks every object in `store`, everything the manifests in `refs` rely
/// on, and the objects in `objects`. `progress(objects_done)` is called as
/// objects are verified.
pub fn fsck(
    store: &Store,
    refs: &[Reference],
    objects: &[ObjectReference],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FsckReport, StoreError> {
    let all = store.list()?;
    let present: HashSet<Hash> = all.iter().copied().collect();
    let results = parallel(&all, |h| {
        let r = store.verify(*h);
        progress(1);
        r
    });
    let mut damaged: BTreeMap<Hash, Damage> = BTreeMap::new();
    for (h, r) in all.iter().zip(results) {
        match r {
            Ok(_) => {}
            Err(StoreError::Corrupt { reason, .. }) => {
                damaged.insert(*h, damage(*h, Problem::Corrupt, "unreferenced", reason));
            }
            Err(e) => return Err(e),
        }
    }
    let corrupt: HashSet<Hash> = damaged.keys().copied().collect();
    let mut manifests = BTreeMap::<Hash, Vec<&Reference>>::new();
    for r in refs {
        manifests.entry(r.manifest).or_default().push(r);
    }
    for (mh, users) in &manifests {
        let cps: BTreeSet<String> = users.iter().map(|r| r.checkpoint.clone()).collect();
        let mut mark = |h: Hash, problem: Problem, role: &'static str, detail: String, path: Option<&str>| {
            let d = damaged.entry(h).or_insert_with(|| damage(h, problem, role, detail));
            d.role = role;
            d.checkpoints.extend(cps.iter().cloned());
            if let Some(p) = path
                && d.paths.len() < PATHS_SHOWN
            {
                d.paths.insert(p.to_string());
            }
        };
        if !present.contains(mh) {
            mark(
                *mh,
                Problem::Missing,
                "manifest",
                format!("manifest of {}", users[0].resource),
                None,
            );
            continue;
        }
        let m = match Manifest::load(store, *mh) {
            Ok(m) => m,
            Err(ManifestError::Store(StoreError::Corrupt { reason, .. })) => {
                mark(*mh, Problem::Corrupt, "manifest", reason, None);
                continue;
            }
            Err(ManifestError::Store(e)) => return Err(e),
            Err(e) => {
                mark(*mh, Problem::Invalid, "manifest", e.to_string(), None);
                continue;
            }
        };
        for e in m.entries.iter().filter(|e| e.kind == Kind::File) {
            let h = e.hash.expect("validated: files have objects");
            if !present.contains(&h) {
                mark(
                    h,
                    Problem::Missing,
                    "file",
                    "content of a file".into(),
                    Some(&e.shown()),
                );
            } else if corrupt.contains(&h) {
                mark(h, Problem::Corrupt, "file", String::new(), Some(&e.shown()));
            }
        }
    }
    for r in objects {
        let problem = if !present.contains(&r.object) {
            Problem::Missing
        } else if corrupt.contains(&r.object) {
            Problem::Corrupt
        } else {
            continue;
        };
        let whose = format!("{} of {}", r.role, r.resource);
        let d = damaged
            .entry(r.object)
            .or_insert_with(|| damage(r.object, problem, r.role, String::new()));
        if d.role == "unreferenced" || d.detail.is_empty() {
            // The first checkpoint that names it says what it is.
            d.detail = match d.detail.as_str() {
                "" => whose,
                reason => format!("{whose}: {reason}"),
            };
        }
        d.role = r.role;
        d.checkpoints.insert(r.checkpoint.clone());
    }
    Ok(FsckReport {
        objects: all.len(),
        manifests: manifests.len(),
        damaged: damaged.into_values().collect(),
    })
}

fn damage(object: Hash, problem: Problem, role: &'static str, detail: String) -> Damage {
    Damage {
        object: object.to_hex(),
        problem,
        role,
        detail,
        checkpoints: BTreeSet::new(),
        paths: BTreeSet::new(),
    }
}
