//! The paths resource: directories and files under the plan root (`api/venv`,
//! `config/`, `requirements.txt`) captured into the object store as manifests,
//! and put back exactly.
//!
//! Capture never follows a symlink and is incremental: a file whose size, mtime
//! and inode match the previous capture keeps its hash without being read.
//!
//! Restore has three stages, so that nothing is written unless everything can be:
//! [`plan`] validates the manifest and compares it with what is on disk (this is
//! `--dry-run`); [`Planned::prepare`] decompresses and checks every object it will
//! need into a staging directory; [`Prepared::commit`] removes what the checkpoint
//! did not have and renames the staged files into place. Every write goes through
//! directory file descriptors opened with `O_NOFOLLOW` from the plan root, so a
//! symlink on disk is never followed and nothing lands outside the root.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use serde::{Deserialize, Serialize};

use crate::store::manifest::{Entry, Kind, Manifest, ManifestError, check_rel_path};
use crate::store::{Batch, Hash, Progress, Store, StoreError, parallel};

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} goes through the symlink {link}; backout captures and restores only inside the plan root, without following symlinks"
    )]
    ThroughSymlink { path: String, link: String },
    #[error("{path} is not a regular file, directory or symlink (a socket, FIFO or device); it cannot be captured")]
    Special { path: PathBuf },
    #[error("{path:?} has a name that is not UTF-8; it cannot be captured")]
    NotUtf8 { path: PathBuf },
    #[error("the manifest is for {found:?}, but the checkpoint names it as {expected:?}")]
    WrongRoot { expected: String, found: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PathsError {
    let path = path.into();
    move |source| PathsError::Io { op, path, source }
}

fn rio(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(rustix::io::Errno) -> PathsError {
    let f = io(op, path);
    move |e| f(e.into())
}

/// What a checkpoint holds of one captured path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathState {
    /// Relative to the plan root, as the plan names it (without a trailing `/`).
    pub path: String,
    pub manifest: Hash,
    pub files: u64,
    pub bytes: u64,
}

/// Capture a path that the plan names `rel` (validated by the plan: relative,
/// inside the root). `prev` is the same path's manifest in the last checkpoint.
pub fn capture(
    root: &Path,
    rel: &str,
    prev: Option<&Manifest>,
    batch: &Batch<'_>,
    progress: &dyn Progress,
) -> Result<(PathState, Manifest), PathsError> {
    let t = std::time::Instant::now();
    let m = scan(root, rel, prev, Some(batch), &|_| true, progress)?;
    let hash = m.store(batch)?;
    tracing::debug!(
        path = rel,
        entries = m.entries.len(),
        ms = t.elapsed().as_millis() as u64,
        "scanned and stored"
    );
    let state = PathState {
        path: rel.to_string(),
        manifest: hash,
        files: m.entries.iter().filter(|e| e.kind == Kind::File).count() as u64,
        bytes: m.bytes(),
    };
    Ok((state, m))
}

fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec())
}

/// Checks that every directory above `rel` is a real directory; returns false
/// when one does not exist (so neither does `rel`).
fn check_parents(root: &Path, rel: &str) -> Result<bool, PathsError> {
    let comps: Vec<&str> = rel.split('/').collect();
    let mut p = root.to_path_buf();
    for (i, c) in comps[..comps.len() - 1].iter().enumerate() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(PathsError::ThroughSymlink {
                    path: rel.to_string(),
                    link: comps[..=i].join("/"),
                });
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("inspect", &p)(e)),
        }
    }
    Ok(true)
}

/// Walks `root/rel` into a manifest. With a batch, new content is stored; without
/// one, files are hashed only when `want_hash` says so (else their hash is `None`).
fn scan(
    root: &Path,
    rel: &str,
    prev: Option<&Manifest>,
    batch: Option<&Batch<'_>>,
    want_hash: &(dyn Fn(&Entry) -> bool + Sync),
    progress: &dyn Progress,
) -> Result<Manifest, PathsError> {
    if !check_parents(root, rel)? {
        return Ok(Manifest::new(rel, Vec::new()));
    }
    let top = root.join(rel);
    match std::fs::symlink_metadata(&top) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::new(rel, Vec::new())),
        Err(e) => return Err(io("inspect", &top)(e)),
        Ok(_) => {}
    }
    let known: HashMap<&str, &Entry> = prev
        .map(|m| m.entries.iter().map(|e| (e.path.as_str(), e)).collect())
        .unwrap_or_default();
    let mut entries = Vec::new();
    let mut to_read = Vec::new();
    for item in walkdir::WalkDir::new(&top).follow_links(false).follow_root_links(false) {
        let item = item.map_err(|e| {
            let p = e.path().unwrap_or(&top).to_path_buf();
            io("read", p)(e.into())
        })?;
        let sub = item.path().strip_prefix(&top).expect("walkdir stays under its root");
        let path = if sub.as_os_str().is_empty() {
            rel.to_string()
        } else {
            let s = sub.to_str().ok_or_else(|| PathsError::NotUtf8 {
                path: item.path().to_path_buf(),
            })?;
            format!("{rel}/{s}")
        };
        let md = item.metadata().map_err(|e| io("inspect", item.path())(e.into()))?;
        let ft = md.file_type();
        let mut e = Entry {
            path,
            kind: Kind::File,
            mode: md.mode() & 0o7777,
            size: 0,
            mtime_ns: mtime_ns(&md),
            ino: md.ino(),
            hash: None,
            target: None,
        };
        if ft.is_dir() {
            e.kind = Kind::Dir;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(item.path()).map_err(io("read the link", item.path()))?;
            let t = t.to_str().ok_or_else(|| PathsError::NotUtf8 {
                path: item.path().to_path_buf(),
            })?;
            e.kind = Kind::Symlink;
            e.size = t.len() as u64;
            e.target = Some(t.to_string());
        } else if ft.is_file() {
            e.size = md.len();
            let reuse = known
                .get(e.path.as_str())
                .filter(|p| p.kind == Kind::File && p.size == e.size && p.mtime_ns == e.mtime_ns && p.ino == e.ino);
            e.hash = reuse.and_then(|p| p.hash);
            if let (Some(h), Some(b)) = (e.hash, batch)
                && !b.stored_before(h)
            {
                e.hash = None;
            }
            if e.hash.is_none() && (batch.is_some() || want_hash(&e)) {
                to_read.push(entries.len());
            }
        } else {
            return Err(PathsError::Special {
                path: item.path().to_path_buf(),
            });
        }
        entries.push(e);
    }
    let files = to_read.len() as u64;
    let bytes: u64 = to_read.iter().map(|&i| entries[i].size).sum();
    tracing::debug!(path = rel, entries = entries.len(), to_read = files, bytes, "walked");
    progress.begin(&format!("reading {rel}"), files, bytes);
    let results = parallel(&to_read, |&i| {
        let e = &entries[i];
        let p = root.join(&e.path);
        let r = read_one(&p, e.size, batch);
        progress.advance(1, e.size);
        r
    });
    progress.end();
    for (&i, r) in to_read.iter().zip(results) {
        let (h, n) = r?;
        entries[i].hash = Some(h);
        entries[i].size = n;
    }
    Ok(Manifest::new(rel, entries))
}

/// Hashes (and with a batch, stores) one file, opened without following a symlink.
fn read_one(p: &Path, size: u64, batch: Option<&Batch<'_>>) -> Result<(Hash, u64), PathsError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(p)
        .map_err(io("open", p))?;
    match batch {
        Some(b) => Ok(b.put_file(&mut f, p, size)?),
        None => {
            let mut h = blake3::Hasher::new();
            let n = std::io::copy(&mut f, &mut h).map_err(io("read", p))?;
            Ok((Hash(*h.finalize().as_bytes()), n))
        }
    }
}

/// What restoring a path would do to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Not on disk now; would be created.
    Add,
    /// On disk with other content, kind or link target; would be replaced.
    Change,
    /// Same content; mode or mtime would be put back.
    Meta,
    /// On disk but not in the checkpoint; would be removed (with everything under it).
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: Action,
    pub path: String,
    pub kind: Kind,
    /// Entries under a removed directory, counted with it.
    #[serde(skip_serializing_if = "is_zero")]
    pub inside: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A restore of one path, computed and checked but not started.
#[derive(Debug)]
pub struct Planned {
    root: PathBuf,
    target: Manifest,
    /// The disk as the plan saw it (file hashes only where they were needed).
    current: Manifest,
    pub changes: Vec<Change>,
}

/// Reads and validates the checkpoint's manifest and compares it with the disk.
/// `prev` (the path's latest manifest) lets unchanged files skip hashing.
pub fn plan(
    store: &Store,
    root: &Path,
    state: &PathState,
    prev: Option<&Manifest>,
    progress: &dyn Progress,
) -> Result<Planned, PathsError> {
    check_rel_path(&state.path).map_err(|reason| ManifestError::Unsafe {
        root: state.path.clone(),
        path: state.path.clone(),
        reason,
    })?;
    let target = Manifest::load(store, state.manifest)?;
    if target.root != state.path {
        return Err(PathsError::WrongRoot {
            expected: state.path.clone(),
            found: target.root,
        });
    }
    let wanted: HashMap<&str, &Entry> = target.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let want_hash = |e: &Entry| {
        wanted
            .get(e.path.as_str())
            .is_some_and(|t| t.kind == Kind::File && t.size == e.size)
    };
    let current = scan(root, &state.path, prev, None, &want_hash, progress)?;
    let changes = diff(&current, &target);
    Ok(Planned {
        root: root.to_path_buf(),
        target,
        current,
        changes,
    })
}

/// The changes that turn `current` into `target`.
fn diff(current: &Manifest, target: &Manifest) -> Vec<Change> {
    let now: HashMap<&str, &Entry> = current.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let want: HashMap<&str, &Entry> = target.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = Vec::new();
    // Removals: top-most only, each with what it holds.
    let mut removed: Vec<&str> = Vec::new();
    for e in &current.entries {
        let gone = want.get(e.path.as_str()).is_none_or(|t| t.kind != e.kind);
        if !gone {
            continue;
        }
        if let Some(top) = removed.last()
            && e.path.starts_with(top)
            && e.path.as_bytes().get(top.len()) == Some(&b'/')
        {
            if let Some(c) = out.iter_mut().rev().find(|c: &&mut Change| c.path == *top) {
                c.inside += 1;
            }
            continue;
        }
        removed.push(&e.path);
        // A kind change is removed here and re-created below as a change.
        out.push(Change {
            action: Action::Remove,
            path: e.path.clone(),
            kind: e.kind,
            inside: 0,
        });
    }
    for t in &target.entries {
        let action = match now.get(t.path.as_str()) {
            None => Action::Add,
            Some(c) if c.kind != t.kind => Action::Change,
            Some(c) => match t.kind {
                Kind::File if c.hash != t.hash => Action::Change,
                Kind::Symlink if c.target != t.target => Action::Change,
                Kind::File | Kind::Symlink if c.mode != t.mode || c.mtime_ns != t.mtime_ns => Action::Meta,
                Kind::Dir if c.mode != t.mode => Action::Meta,
                _ => continue,
            },
        };
        // Under a directory that is itself being re-created: counted with it.
        out.push(Change {
            action,
            path: t.path.clone(),
            kind: t.kind,
            inside: 0,
        });
    }
    out
}

impl Planned {
    /// Whether restoring would change nothing (directory mtimes aside).
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }

    /// Decompresses and checks every object the restore needs into `staging`
    /// (a directory on the same file system, created here). Nothing under the
    /// plan root is touched; on error the staging directory is removed.
    pub fn prepare(self, store: &Store, staging: &Path, progress: &dyn Progress) -> Result<Prepared, PathsError> {
        fs_err::create_dir_all(staging).map_err(io("create", staging))?;
        let writes: BTreeSet<&str> = self
            .changes
            .iter()
            .filter(|c| c.action != Action::Remove && c.kind == Kind::File)
            .map(|c| c.path.as_str())
            .collect();
        let jobs: Vec<(usize, &Entry)> = self
            .target
            .entries
            .iter()
            .filter(|e| writes.contains(e.path.as_str()))
            .enumerate()
            .collect();
        let bytes = jobs.iter().map(|(_, e)| e.size).sum();
        progress.begin(&format!("staging {}", self.target.root), jobs.len() as u64, bytes);
        let results = parallel(&jobs, |(i, e)| {
            let r = stage_one(store, &staging.join(i.to_string()), e);
            progress.advance(1, e.size);
            r
        });
        progress.end();
        tracing::debug!(files = jobs.len(), bytes, "staged");
        let mut staged = HashMap::new();
        for ((i, e), r) in jobs.iter().zip(results) {
            if let Err(err) = r {
                let _ = std::fs::remove_dir_all(staging);
                return Err(err);
            }
            staged.insert(e.path.clone(), i.to_string());
        }
        Ok(Prepared {
            planned: self,
            store: store.clone(),
            staging: staging.to_path_buf(),
            staged,
        })
    }
}

fn stage_one(store: &Store, at: &Path, e: &Entry) -> Result<(), PathsError> {
    let mut f = File::create(at).map_err(io("create", at))?;
    store.read_into(e.hash.expect("validated: files have objects"), &mut f)?;
    rustix::fs::fchmod(&f, Mode::from_raw_mode(e.mode)).map_err(rio("set the mode of", at))?;
    rustix::fs::futimens(&f, &times(e.mtime_ns)).map_err(rio("set the mtime of", at))?;
    Ok(())
}

fn times(ns: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// A restore whose content is staged and checked; [`Prepared::commit`] applies it.
#[derive(Debug)]
pub struct Prepared {
    planned: Planned,
    store: Store,
    staging: PathBuf,
    staged: HashMap<String, String>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Directory handles opened from the plan root one component at a time, never
/// through a symlink. Remembers the last directory, since entries come sorted.
struct Dirs {
    root: OwnedFd,
    root_path: PathBuf,
    last: Option<(String, OwnedFd)>,
}

impl Dirs {
    fn open(root: &Path) -> Result<Dirs, PathsError> {
        let fd = rustix::fs::open(root, DIR_FLAGS, Mode::empty()).map_err(rio("open", root))?;
        Ok(Dirs {
            root: fd,
            root_path: root.to_path_buf(),
            last: None,
        })
    }

    /// The directory `rel` ("" is the root), creating missing ones when `create`.
    fn dir(&mut self, rel: &str, create: bool) -> Result<std::os::fd::BorrowedFd<'_>, PathsError> {
        if rel.is_empty() {
            return Ok(self.root.as_fd());
        }
        if self.last.as_ref().is_none_or(|(p, _)| p != rel) {
            let mut fd =
                rustix::fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty()).map_err(rio("open", &self.root_path))?;
            for c in rel.split('/') {
                let here = self.root_path.join(rel);
                let next = match rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty()) {
                    Err(rustix::io::Errno::NOENT) if create => {
                        rustix::fs::mkdirat(&fd, c, Mode::from_raw_mode(0o755)).map_err(rio("create", &here))?;
                        rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty()).map_err(rio("open", &here))?
                    }
                    Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                        return Err(PathsError::ThroughSymlink {
                            path: rel.to_string(),
                            link: c.to_string(),
                        });
                    }
                    r => r.map_err(rio("open", &here))?,
                };
                fd = next;
            }
            self.last = Some((rel.to_string(), fd));
        }
        Ok(self.last.as_ref().expect("just set").1.as_fd())
    }
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// Removes `name` in `dir` and, for a directory, everything in it; never follows a symlink.
fn remove_at(dir: std::os::fd::BorrowedFd<'_>, name: &str, shown: &Path) -> Result<(), PathsError> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        r => r.map_err(rio("inspect", shown))?,
    };
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(rio("remove", shown));
    }
    let sub = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(rio("open", shown))?;
    let names: Vec<String> = {
        let d = rustix::fs::Dir::read_from(&sub).map_err(rio("list", shown))?;
        let mut v = Vec::new();
        for ent in d {
            let ent = ent.map_err(rio("list", shown))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                v.push(String::from_utf8_lossy(n).into_owned());
            }
        }
        v
    };
    for n in names {
        remove_at(sub.as_fd(), &n, &shown.join(&n))?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(rio("remove", shown))
}

impl Prepared {
    pub fn changes(&self) -> &[Change] {
        &self.planned.changes
    }

    /// Applies the restore: removals first, then directories, files and symlinks
    /// in path order, then directory modes and mtimes from the deepest up.
    ///
    /// The disk is compared with the checkpoint once more first, since another
    /// resource restored just before (git, over a tracked directory) may have
    /// changed it since the plan; what the plan did not stage is staged now,
    /// still checked against its hash.
    pub fn commit(self, progress: &dyn Progress) -> Result<Vec<Change>, PathsError> {
        let root = self.planned.root.clone();
        let target = &self.planned.target;
        let wanted: HashMap<&str, &Entry> = target.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let want_hash = |e: &Entry| {
            wanted
                .get(e.path.as_str())
                .is_some_and(|t| t.kind == Kind::File && t.size == e.size)
        };
        let now = scan(&root, &target.root, Some(&self.planned.current), None, &want_hash, &())?;
        let changes = diff(&now, target);
        let mut dirs = Dirs::open(&root)?;
        let staging_fd =
            rustix::fs::open(&self.staging, DIR_FLAGS, Mode::empty()).map_err(rio("open", &self.staging))?;
        progress.begin(&format!("restoring {}", target.root), changes.len() as u64, 0);
        for c in changes.iter().filter(|c| c.action == Action::Remove) {
            let (parent, name) = split(&c.path);
            let d = dirs.dir(parent, false)?;
            remove_at(d, name, &root.join(&c.path))?;
            progress.advance(1, 0);
        }
        dirs.last = None;
        let acting: HashMap<&str, Action> = changes
            .iter()
            .filter(|c| c.action != Action::Remove)
            .map(|c| (c.path.as_str(), c.action))
            .collect();
        let top_parent = split(&target.root).0.to_string();
        for e in &target.entries {
            let Some(&action) = acting.get(e.path.as_str()) else {
                continue;
            };
            let (parent, name) = split(&e.path);
            let shown = root.join(&e.path);
            let create = parent.len() <= top_parent.len();
            let d = dirs.dir(parent, create)?;
            match e.kind {
                Kind::Dir => {
                    if action != Action::Meta {
                        rustix::fs::mkdirat(d, name, Mode::from_raw_mode(0o700)).map_err(rio("create", &shown))?;
                    }
                }
                Kind::File => {
                    let staged = match self.staged.get(&e.path) {
                        Some(s) => s.clone(),
                        None => {
                            let late = format!("late-{}", Hash::of(e.path.as_bytes()));
                            stage_one(&self.store, &self.staging.join(&late), e)?;
                            late
                        }
                    };
                    let staged = &staged;
                    match rustix::fs::renameat(&staging_fd, staged.as_str(), d, name) {
                        Ok(()) => {}
                        Err(rustix::io::Errno::XDEV) => copy_in(&self.staging.join(staged), d, name, e, &shown)?,
                        Err(err) => return Err(rio("write", &shown)(err)),
                    }
                }
                Kind::Symlink => {
                    let tmp = &tmp_name(name);
                    let _ = rustix::fs::unlinkat(d, tmp, AtFlags::empty());
                    let target = e.target.as_deref().expect("validated: symlinks have targets");
                    rustix::fs::symlinkat(target, d, tmp).map_err(rio("create the symlink", &shown))?;
                    let _ = rustix::fs::utimensat(d, tmp, &times(e.mtime_ns), AtFlags::SYMLINK_NOFOLLOW);
                    rustix::fs::renameat(d, tmp, d, name).map_err(rio("write", &shown))?;
                }
            }
            progress.advance(1, e.size);
        }
        // Directories last, deepest first: writing inside one changes its mtime.
        for e in target.entries.iter().rev().filter(|e| e.kind == Kind::Dir) {
            let (parent, name) = split(&e.path);
            let shown = root.join(&e.path);
            let d = dirs.dir(parent, false)?;
            let fd = rustix::fs::openat(d, name, DIR_FLAGS, Mode::empty()).map_err(rio("open", &shown))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(e.mode)).map_err(rio("set the mode of", &shown))?;
            rustix::fs::futimens(&fd, &times(e.mtime_ns)).map_err(rio("set the mtime of", &shown))?;
        }
        progress.end();
        Ok(changes)
    }
}

/// A temporary name beside `name`, short whatever `name`'s length.
fn tmp_name(name: &str) -> String {
    format!(
        ".backout-tmp-{}-{}",
        std::process::id(),
        Hash::of(name.as_bytes()).short()
    )
}

/// Copies a staged file into place when staging is on another file system.
fn copy_in(
    from: &Path,
    dir: std::os::fd::BorrowedFd<'_>,
    name: &str,
    e: &Entry,
    shown: &Path,
) -> Result<(), PathsError> {
    let tmp = &tmp_name(name);
    let fd = rustix::fs::openat(
        dir,
        tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(rio("create", shown))?;
    let mut out = File::from(fd);
    let mut src = File::open(from).map_err(io("open", from))?;
    std::io::copy(&mut src, &mut out).map_err(io("write", shown))?;
    rustix::fs::fchmod(&out, Mode::from_raw_mode(e.mode)).map_err(rio("set the mode of", shown))?;
    rustix::fs::futimens(&out, &times(e.mtime_ns)).map_err(rio("set the mtime of", shown))?;
    rustix::fs::renameat(dir, tmp, dir, name).map_err(rio("write", shown))
}

/// A path from the plan as stored: `config/` → `config`.
pub fn normalize(rel: &str) -> String {
    rel.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod escapes;
#[cfg(test)]
mod tests;
