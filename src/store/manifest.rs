//! Manifests: what one captured path held — every file, directory and symlink
//! under it with its mode, size, mtime and inode, and the object holding each
//! file's content or each symlink's target. A manifest is stored as an object
//! (compact JSON, entries sorted by path) and named by its hash.
//!
//! [`Manifest::validate`] is the gate in front of every restore: a manifest that
//! could make a restore write outside its root — `..`, an absolute path, a file
//! under a symlink, one name twice — is rejected before anything is written.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Batch, Hash, Store, StoreError};

/// The format version written in every manifest.
pub const VERSION: u32 = 1;

/// Longest name of one path component, as on Linux file systems.
const NAME_MAX: usize = 255;
/// Longest path inside the root.
const PATH_MAX: usize = 4095;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// One file, directory or symlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the plan root, `/`-separated.
    pub path: String,
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Inode at capture, so the next capture can reuse the hash of an unchanged file.
    pub ino: u64,
    /// The content's object (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<Hash>,
    /// The link target (symlinks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What one captured path held. No entries: the path did not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The captured path, relative to the plan root.
    pub root: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("manifest {hash} is not a valid manifest: {reason}")]
    Malformed { hash: Hash, reason: String },
    #[error("manifest for {root:?} rejected, nothing was written: entry {path:?} {reason}")]
    Unsafe { root: String, path: String, reason: String },
}

impl Manifest {
    pub fn new(root: &str, mut entries: Vec<Entry>) -> Manifest {
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        Manifest {
            version: VERSION,
            root: root.to_string(),
            entries,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    /// Stores the manifest; returns its name.
    pub fn store(&self, batch: &Batch<'_>) -> Result<Hash, StoreError> {
        batch.put(&self.encode())
    }

    /// Reads (checking its hash) and validates manifest `hash`.
    pub fn load(store: &Store, hash: Hash) -> Result<Manifest, ManifestError> {
        let bytes = store.read(hash)?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| ManifestError::Malformed {
            hash,
            reason: e.to_string(),
        })?;
        if m.version != VERSION {
            return Err(ManifestError::Malformed {
                hash,
                reason: format!("format version {} (this backout reads {VERSION})", m.version),
            });
        }
        m.validate()?;
        Ok(m)
    }

    /// Total bytes of the files.
    pub fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| e.size)
            .sum()
    }

    /// Checks that restoring this manifest can only write inside its root: every
    /// path is relative, made of plain names, under `root`, listed once, in
    /// order, and every parent is a directory of the manifest (so nothing is
    /// written through a symlink).
    pub fn validate(&self) -> Result<(), ManifestError> {
        let bad = |path: &str, reason: &str| ManifestError::Unsafe {
            root: self.root.clone(),
            path: path.to_string(),
            reason: reason.to_string(),
        };
        check_rel_path(&self.root).map_err(|r| bad(&self.root, &format!("(the root) {r}")))?;
        let mut kinds: HashMap<&str, Kind> = HashMap::new();
        let mut prev: Option<&str> = None;
        for e in &self.entries {
            let p = e.path.as_str();
            check_rel_path(p).map_err(|r| bad(p, &r))?;
            if let Some(q) = prev
                && q.as_bytes() >= p.as_bytes()
            {
                return Err(bad(p, "is listed twice or out of order"));
            }
            prev = Some(p);
            if p != self.root {
                let Some(rest) = p.strip_prefix(&self.root).and_then(|r| r.strip_prefix('/')) else {
                    return Err(bad(p, &format!("is outside the captured path {:?}", self.root)));
                };
                let parent = match rest.rfind('/') {
                    Some(i) => &p[..self.root.len() + 1 + i],
                    None => self.root.as_str(),
                };
                match kinds.get(parent) {
                    Some(Kind::Dir) => {}
                    Some(_) => return Err(bad(p, &format!("lies under {parent:?}, which is not a directory"))),
                    None => return Err(bad(p, &format!("has no parent directory entry {parent:?}"))),
                }
            }
            match e.kind {
                Kind::File if e.hash.is_none() => return Err(bad(p, "is a file without an object")),
                Kind::Symlink => {
                    let t = e.target.as_deref().unwrap_or("");
                    if t.is_empty() || t.contains('\0') {
                        return Err(bad(p, "is a symlink without a valid target"));
                    }
                }
                _ => {}
            }
            if e.mode & !0o7777 != 0 {
                return Err(bad(p, &format!("has mode {:o} with more than permission bits", e.mode)));
            }
            kinds.insert(p, e.kind);
        }
        Ok(())
    }
}

/// Why `p` is not a plain relative path of names, if it is not.
pub fn check_rel_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("is empty".into());
    }
    if p.starts_with('/') {
        return Err("is absolute".into());
    }
    if p.len() > PATH_MAX {
        return Err(format!("is longer than {PATH_MAX} bytes"));
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    for c in p.split('/') {
        match c {
            "" => return Err("has an empty component".into()),
            "." | ".." => return Err(format!("has a {c:?} component")),
            _ if c.len() > NAME_MAX => return Err(format!("has a name longer than {NAME_MAX} bytes")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            mode: 0o644,
            size: data.len() as u64,
            mtime_ns: 1_700_000_000_000_000_000,
            ino: 42,
            hash: Some(Hash::of(data)),
            target: None,
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            kind: Kind::Dir,
            mode: 0o755,
            size: 0,
            hash: None,
            ..file(path, b"")
        }
    }

    /// Manifests already stored must keep their names: this pins the encoding.
    #[test]
    fn manifest_encoding_is_pinned() {
        let link = Entry {
            kind: Kind::Symlink,
            mode: 0o777,
            size: 5,
            hash: None,
            target: Some("b.txt".into()),
            ..file("cfg/link", b"")
        };
        let m = Manifest::new("cfg", vec![file("cfg/b.txt", b"hello"), link, dir("cfg")]);
        assert_eq!(
            String::from_utf8(m.encode()).unwrap(),
            r#"{"version":1,"root":"cfg","entries":[{"path":"cfg","kind":"dir","mode":493,"size":0,"mtime_ns":1700000000000000000,"ino":42},{"path":"cfg/b.txt","kind":"file","mode":420,"size":5,"mtime_ns":1700000000000000000,"ino":42,"hash":"ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"},{"path":"cfg/link","kind":"symlink","mode":511,"size":5,"mtime_ns":1700000000000000000,"ino":42,"target":"b.txt"}]}"#
        );
        assert_eq!(
            Hash::of(&m.encode()).to_hex(),
            "1d47e06efbfb5e52cf9abb2b21cf9e5188f319f91899efc425e3eabf15470957"
        );
        m.validate().unwrap();
    }

    #[test]
    fn sorting_puts_parents_first() {
        let m = Manifest::new("a", vec![dir("a/b"), file("a/b-c", b""), file("a/b/c", b""), dir("a")]);
        let order: Vec<_> = m.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(order, ["a", "a/b", "a/b-c", "a/b/c"]);
        m.validate().unwrap();
    }
}
