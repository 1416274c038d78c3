//! The paths resource: directories and files under the plan root (`api/venv`,
//! `config/`, `requirements.txt`) captured into the object store as manifests,
//! and put back exactly.
//!
//! Capture never follows a symlink and is incremental: a file whose size, mtime
//! and inode match the previous capture keeps its hash without being read. The
//! walk runs on several threads and works relative to directory descriptors
//! (`openat`/`fstatat` of one name each), so a large tree costs one `getdents`
//! per directory and one `stat` per entry, without path lookups.
//!
//! Names are bytes: a name that is not UTF-8 is captured and restored as it is.
//! Besides files, directories and symlinks, FIFOs and device nodes are recorded
//! and recreated (device nodes only by root); sockets belong to a running
//! program and are skipped with a warning at capture and left alone on restore.
//! Owners are recorded; a restore run as root puts them back, otherwise it
//! leaves them and says so.
//!
//! Restore has three stages, so that nothing is written unless everything can be:
//! [`plan`] validates the manifest and compares it with what is on disk (this is
//! `--dry-run`); [`Planned::prepare`] decompresses and checks every object it will
//! need into a staging directory; [`Prepared::commit`] removes what the checkpoint
//! did not have and renames the staged files into place. Every write goes through
//! directory file descriptors opened with `O_NOFOLLOW` from the plan root, so a
//! symlink on disk is never followed and nothing lands outside the root.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Timespec, Timestamps};
use serde::{Deserialize, Serialize};

use crate::store::manifest::{Entry, Kind, Known, Manifest, ManifestError, RACY_NS, check_rel_path, show};
use crate::store::{Batch, Hash, Progress, Store, StoreError, parallel_ahead};

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
    #[error("{path} is of a kind of file backout does not know (mode {mode:o}); it cannot be captured")]
    Special { path: PathBuf, mode: u32 },
    #[error(
        "cannot recreate the device node {path}: creating device nodes needs root; nothing was written\n  = hint: run the restore as root, or restore the other resources with --only"
    )]
    DeviceNeedsRoot { path: String },
    #[error(
        "the checkpoint's record names {path:?}, inside backout's own state directory ({dir}); backout never restores over its store and log, so nothing was written\n  = hint: the record in .backout/state.db was edited or damaged; restore the other resources with --only"
    )]
    StateDir { path: String, dir: &'static str },
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

/// `root/rel` as a path, whatever bytes `rel` holds.
fn under(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
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

/// One capture of a path.
#[derive(Debug)]
pub struct Captured {
    pub state: PathState,
    pub manifest: Manifest,
    /// What [`Manifest::validate`] found of it, for the checkpoint's verification.
    pub valid: Result<(), ManifestError>,
    /// Sockets found and skipped (a running program's, not state to put back).
    pub skipped: Vec<String>,
}

/// The same path's manifest in the last checkpoint, whose unchanged files keep
/// their hashes without being read.
#[derive(Clone, Copy)]
pub enum Previous<'a> {
    None,
    Loaded(&'a Manifest),
    /// Loaded on another thread while the tree is walked. `files`, the count
    /// the checkpoint recorded, says whether many hashes will be reused (then
    /// the store is listed meanwhile too, see [`Batch::stored_many`]), unless
    /// the checkpoint was `sealed` (then see [`Batch::stored_since`]).
    Lazy {
        files: u64,
        sealed: Option<i64>,
        load: &'a (dyn Fn() -> Option<Known> + Sync),
    },
}

impl<'a> From<Option<&'a Manifest>> for Previous<'a> {
    fn from(m: Option<&'a Manifest>) -> Previous<'a> {
        m.map_or(Previous::None, Previous::Loaded)
    }
}

/// Capture a path that the plan names `rel` (validated by the plan: relative,
/// inside the root).
pub fn capture(
    root: &Path,
    rel: &str,
    prev: Previous<'_>,
    batch: &Batch<'_>,
    progress: &dyn Progress,
) -> Result<Captured, PathsError> {
    let t = std::time::Instant::now();
    let scan = scan(root, rel, prev, Some(batch), &|_| true, progress)?;
    let m = scan.manifest;
    // The files' new objects are written: their sync runs while the manifest
    // is encoded and written (~13 ms for the bench tree's 26,000 entries).
    batch.sync_ahead();
    // Validated on the other core while it is encoded and stored: the
    // checkpoint's verification needs both, and validating the bench tree's
    // 26,000 entries takes ~3 ms.
    let (hash, valid) = std::thread::scope(|s| {
        let valid = s.spawn(|| m.validate());
        let hash = m.store(batch);
        (hash, valid.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    let hash = hash?;
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
    Ok(Captured {
        state,
        manifest: m,
        valid,
        skipped: scan.sockets.iter().map(|p| show(p).into_owned()).collect(),
    })
}

fn mtime_ns(st: &rustix::fs::Stat) -> i64 {
    st.st_mtime
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_mtime_nsec as i64)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the directory that holds `rel`, one component at a time from the plan
/// root, never through a symlink. `None` when one of them does not exist or is
/// not a directory (so neither does `rel`).
fn open_parent(root: &Path, rel: &str) -> Result<Option<OwnedFd>, PathsError> {
    let mut fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(rio("open", root))?;
    let comps: Vec<&str> = rel.split('/').collect();
    for (i, c) in comps[..comps.len() - 1].iter().enumerate() {
        fd = match rustix::fs::openat(&fd, *c, DIR_FLAGS, Mode::empty()) {
            Ok(f) => f,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => {
                return Err(PathsError::ThroughSymlink {
                    path: rel.to_string(),
                    link: comps[..=i].join("/"),
                });
            }
            Err(e) => return Err(rio("open", root.join(comps[..=i].join("/")))(e)),
        };
    }
    Ok(Some(fd))
}

/// A walk of one captured path, and its result.
struct Scan {
    manifest: Manifest,
    /// Sockets skipped (capture only; a scan for restore lists them as entries).
    sockets: Vec<Vec<u8>>,
}

/// A directory waiting to be read: `name` in `parent`, at `path` from the plan root.
struct Job {
    parent: Arc<OwnedFd>,
    name: CString,
    path: Vec<u8>,
}

/// The `getdents` buffer of each walker thread: large enough for most
/// directories in one call (`Dir`'s grows from 768 bytes, a dozen names).
const DENTS_BUF: usize = 64 << 10;

struct Walker<'a> {
    root: &'a Path,
    /// Files with an mtime from here on are [`Entry::recent`].
    recent_from: i64,
    batch: Option<&'a Batch<'a>>,
    progress: &'a dyn Progress,
    /// How many entries the walk will likely find (the previous capture's
    /// count), 0 when unknown.
    expect: usize,
    /// Files changed from here on (their ctime) are likely to be read: a
    /// capture stores them while the walk goes on (see [`Walker::defer`]).
    /// Only a capture knows the previous checkpoint's seal; `i64::MAX` else.
    changed_from: i64,
    /// How many files the walk stored.
    stored_now: AtomicU64,
    /// Changed files waiting for the storers, while the walk's run.
    changed: Mutex<Changes>,
    changed_wake: Condvar,
}

/// Files the walk found changed (see [`Walker::changed_from`]), each opened
/// and its read-ahead started, for the storers that run beside the walk.
#[derive(Default)]
struct Changes {
    /// Taken only while storers run (see [`Walker::walk`]).
    open: bool,
    files: std::collections::VecDeque<ChangedFile>,
}

struct ChangedFile {
    fd: OwnedFd,
    /// What the walk saw: the file is stored only if it is still that file.
    ino: u64,
    size: i64,
    mtime_ns: i64,
    path: Vec<u8>,
}

/// At most this many changed files wait, each holding a file descriptor;
/// past it, walkers store what they find themselves.
const CHANGED_WAITING: usize = 256;

/// Threads that store the changed files the walk finds.
const STORERS: usize = 2;

/// A file a storer stored: its path, hash and size.
type Stored = (Vec<u8>, Hash, u64);

/// What one worker of the walk found, and its `getdents` buffer.
#[derive(Default)]
struct Found {
    entries: Vec<Entry>,
    sockets: Vec<Vec<u8>>,
    buf: Vec<std::mem::MaybeUninit<u8>>,
    /// The names of the directory being read.
    names: Vec<u8>,
}

impl Walker<'_> {
    /// Looks at `name` in `dir` without following it and records it in
    /// `found`. True when it is a directory to read; false when it is not, or
    /// vanished meanwhile, or is a socket (skipped by a capture).
    /// `name` is a C string so that the system calls take it as it is,
    /// without a copy (26,000 of them on the bench tree).
    fn visit(&self, dir: BorrowedFd<'_>, name: &CStr, path: Vec<u8>, found: &mut Found) -> Result<bool, PathsError> {
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(rio("inspect", under(self.root, &path))(e)),
        };
        let mut e = Entry {
            path,
            kind: Kind::File,
            mode: st.st_mode & 0o7777,
            owner: Some((st.st_uid, st.st_gid)),
            size: 0,
            mtime_ns: mtime_ns(&st),
            ino: st.st_ino,
            hash: None,
            target: None,
            rdev: 0,
            recent: false,
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        match ft {
            FileType::RegularFile => {
                e.size = st.st_size as u64;
                e.recent = e.mtime_ns >= self.recent_from;
                let ctime_ns = st
                    .st_ctime
                    .saturating_mul(1_000_000_000)
                    .saturating_add(st.st_ctime_nsec as i64);
                if let Some(b) = self.batch
                    && ctime_ns >= self.changed_from
                    && !self.defer(dir, name, &st, &e.path)
                    && let Some((h, n)) = store_now(dir, name, &st, b, || under(self.root, &e.path))
                {
                    e.hash = Some(h);
                    e.size = n;
                    self.stored_now.fetch_add(1, Ordering::Relaxed);
                }
            }
            FileType::Directory => e.kind = Kind::Dir,
            FileType::Symlink => {
                let t = match rustix::fs::readlinkat(dir, name, Vec::new()) {
                    Ok(t) => t.into_bytes(),
                    Err(rustix::io::Errno::NOENT) => return Ok(false),
                    Err(err) => return Err(rio("read the link", under(self.root, &e.path))(err)),
                };
                e.kind = Kind::Symlink;
                e.size = t.len() as u64;
                e.target = Some(t);
            }
            FileType::Fifo => e.kind = Kind::Fifo,
            FileType::CharacterDevice | FileType::BlockDevice => {
                e.kind = match ft {
                    FileType::CharacterDevice => Kind::CharDevice,
                    _ => Kind::BlockDevice,
                };
                e.rdev = st.st_rdev;
            }
            FileType::Socket if self.batch.is_some() => {
                found.sockets.push(e.path);
                return Ok(false);
            }
            FileType::Socket => e.kind = Kind::Socket,
            FileType::Unknown => {
                return Err(PathsError::Special {
                    path: under(self.root, &e.path),
                    mode: st.st_mode,
                });
            }
        }
        let is_dir = e.kind == Kind::Dir;
        found.entries.push(e);
        Ok(is_dir)
    }

    /// Hands changed file `name` in `dir` to the storers: opened, its
    /// read-ahead started, so the walk goes on while the disk reads it. False
    /// when no storer takes it (none run, too many wait, or it cannot be
    /// opened): then the walker stores it itself ([`store_now`]).
    ///
    /// A walker that stored the file itself waited for the disk, with the
    /// directory it was reading half done: on the bench tree, where the VM's
    /// host had reclaimed the page cache of most of the 234 changed files
    /// (150-700 reads from the disk per incremental checkpoint), handing
    /// them over took the checkpoint from a median 103.3 to 96.0 ms
    /// (`bench/incremental --rounds 14`).
    fn defer(&self, dir: BorrowedFd<'_>, name: &CStr, st: &rustix::fs::Stat, path: &[u8]) -> bool {
        {
            let c = self.changed.lock().expect("poisoned");
            if !c.open || c.files.len() >= CHANGED_WAITING {
                return false;
            }
        }
        let Ok(fd) = rustix::fs::openat(dir, name, AHEAD_FLAGS, Mode::empty()) else {
            return false;
        };
        let _ = rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::WillNeed);
        self.changed.lock().expect("poisoned").files.push_back(ChangedFile {
            fd,
            ino: st.st_ino,
            size: st.st_size,
            mtime_ns: mtime_ns(st),
            path: path.to_vec(),
        });
        self.changed_wake.notify_one();
        true
    }

    /// Stores the changed files handed over by [`Walker::defer`] until the
    /// walk ends and none is left; their paths, hashes and sizes. One that
    /// is no longer the file the walk saw, or fails, is left to be read
    /// after the walk like any file whose hash is unknown (which reports
    /// what went wrong).
    fn store_changed(&self, batch: &Batch<'_>) -> Vec<Stored> {
        let mut out = Vec::new();
        loop {
            let f = {
                let mut c = self.changed.lock().expect("poisoned");
                loop {
                    if let Some(f) = c.files.pop_front() {
                        break f;
                    }
                    if !c.open {
                        return out;
                    }
                    c = self.changed_wake.wait(c).expect("poisoned");
                }
            };
            let Ok(now) = rustix::fs::fstat(&f.fd) else { continue };
            if (now.st_ino, now.st_size, mtime_ns(&now)) != (f.ino, f.size, f.mtime_ns) {
                continue;
            }
            if let Ok((h, n)) = batch.put_file(&mut File::from(f.fd), &under(self.root, &f.path), f.size as u64) {
                self.stored_now.fetch_add(1, Ordering::Relaxed);
                out.push((f.path, h, n));
            }
        }
    }

    /// Reads one directory: every entry in it is visited, subdirectories
    /// become jobs in `subs`.
    fn read_dir(&self, job: Job, found: &mut Found, subs: &mut Vec<Job>) -> Result<(), PathsError> {
        let shown = || under(self.root, &job.path);
        let fd = match rustix::fs::openat(&*job.parent, job.name.as_c_str(), DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            // Removed since it was seen: as if it had been empty.
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(rio("open", shown())(e)),
        };
        if found.buf.is_empty() {
            found.buf.resize(DENTS_BUF, std::mem::MaybeUninit::uninit());
        }
        // The names, each with its NUL, one after the other in a buffer the
        // thread keeps: no allocation per name.
        let mut names = std::mem::take(&mut found.names);
        names.clear();
        let mut count = 0u64;
        let mut dents = rustix::fs::RawDir::new(&fd, &mut found.buf);
        while let Some(ent) = dents.next() {
            let ent = ent.map_err(rio("list", shown()))?;
            let n = ent.file_name();
            if n != c"." && n != c".." {
                names.extend_from_slice(n.to_bytes_with_nul());
                count += 1;
            }
        }
        let dir = Arc::new(fd);
        let fd = dir.as_fd();
        for n in names.split_inclusive(|&b| b == 0) {
            let n = CStr::from_bytes_with_nul(n).expect("one NUL, at the end");
            let name = n.to_bytes();
            let mut path = Vec::with_capacity(job.path.len() + 1 + name.len());
            path.extend_from_slice(&job.path);
            path.push(b'/');
            path.extend_from_slice(name);
            if self.visit(fd, n, path, found)? {
                let path = found.entries.last().expect("just visited").path.clone();
                subs.push(Job {
                    parent: dir.clone(),
                    name: n.to_owned(),
                    path,
                });
            }
        }
        found.names = names;
        self.progress.advance(count, 0);
        Ok(())
    }

    /// Reads `first` and every directory under it, on several threads.
    fn walk(&self, first: Job, found: &mut Found) -> Result<(), PathsError> {
        struct Queue {
            jobs: Vec<Job>,
            busy: usize,
            failed: Option<PathsError>,
        }
        let queue = Mutex::new(Queue {
            jobs: vec![first],
            busy: 0,
            failed: None,
        });
        let wake = Condvar::new();
        // More threads than cores: a walk waits on the disk for directory
        // blocks and inodes not in the cache, and others run meanwhile.
        let threads = (crate::store::cores() * 4).clamp(4, 16);
        let work = || {
            let mut mine = Found::default();
            // Room for all: one thread may find most of them. What is never
            // filled is never touched, so costs no memory; growing by
            // doubling cost the walk ~4% of its CPU in copies.
            mine.entries.reserve(self.expect);
            let mut subs = Vec::new();
            loop {
                let job = {
                    let mut q = queue.lock().expect("poisoned");
                    loop {
                        if q.failed.is_some() {
                            return mine;
                        }
                        if let Some(j) = q.jobs.pop() {
                            q.busy += 1;
                            break j;
                        }
                        if q.busy == 0 {
                            return mine;
                        }
                        q = wake.wait(q).expect("poisoned");
                    }
                };
                let r = self.read_dir(job, &mut mine, &mut subs);
                let mut q = queue.lock().expect("poisoned");
                q.busy -= 1;
                let added = subs.len();
                match r {
                    Ok(()) => q.jobs.append(&mut subs),
                    Err(e) => {
                        subs.clear();
                        q.failed.get_or_insert(e);
                    }
                }
                // Waiting threads wake for new jobs, one each, or all to end.
                let end = q.failed.is_some() || (q.busy == 0 && q.jobs.is_empty());
                drop(q);
                if end || added >= threads {
                    wake.notify_all();
                } else {
                    for _ in 0..added {
                        wake.notify_one();
                    }
                }
            }
        };
        // Each thread sorts what it found, on its own core while the others
        // finish, and the sorted runs are merged: sorting the bench tree's
        // 26,000 entries at the end took 3.3 ms on one core.
        let work = || {
            let mut mine = work();
            mine.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
            mine
        };
        if self.batch.is_some() && self.changed_from != i64::MAX {
            self.changed.lock().expect("poisoned").open = true;
        }
        let (results, stored): (Vec<Found>, Vec<Vec<Stored>>) = std::thread::scope(|s| {
            let storers: Vec<_> = match self.batch {
                Some(b) if self.changed.lock().expect("poisoned").open => {
                    (0..STORERS).map(|_| s.spawn(|| self.store_changed(b))).collect()
                }
                _ => Vec::new(),
            };
            let others: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
            let mut all = vec![work()];
            all.extend(
                others
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
            );
            self.changed.lock().expect("poisoned").open = false;
            self.changed_wake.notify_all();
            let stored = storers
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect();
            (all, stored)
        });
        if let Some(e) = queue.into_inner().expect("poisoned").failed {
            return Err(e);
        }
        // What the walk stored is made durable and named while its results
        // are merged and the manifest is made.
        if let Some(b) = self.batch {
            b.sync_ahead();
        }
        let mut runs = vec![std::mem::take(&mut found.entries)];
        for r in results {
            runs.push(r.entries);
            found.sockets.extend(r.sockets);
        }
        found.entries = merge_sorted(runs);
        // The storers' hashes, each found by bisection: a few hundred among
        // the bench tree's 26,000 entries, where a merge of the two compared
        // every entry (~1 ms).
        for (p, h, n) in stored.into_iter().flatten() {
            if let Ok(i) = found.entries.binary_search_by(|e| e.path.as_slice().cmp(&p)) {
                found.entries[i].hash = Some(h);
                found.entries[i].size = n;
            }
        }
        Ok(())
    }
}

/// Merges runs of entries, each sorted by path, into one sorted by path, in
/// one allocation for all of them (the bench tree's 26,000 entries are ~4 MB).
fn merge_sorted(runs: Vec<Vec<Entry>>) -> Vec<Entry> {
    type Run = std::vec::IntoIter<Entry>;
    let mut out = Vec::with_capacity(runs.iter().map(Vec::len).sum());
    let mut runs: Vec<Run> = runs.into_iter().filter(|r| !r.is_empty()).map(Vec::into_iter).collect();
    // A binary heap of run indices by their next path, kept by hand so that
    // the paths are compared in place.
    fn head(runs: &[Run], i: usize) -> &[u8] {
        &runs[i].as_slice()[0].path
    }
    fn sift_down(heap: &mut [usize], runs: &[Run], mut at: usize) {
        loop {
            let (l, r) = (2 * at + 1, 2 * at + 2);
            let mut least = at;
            if l < heap.len() && head(runs, heap[l]) < head(runs, heap[least]) {
                least = l;
            }
            if r < heap.len() && head(runs, heap[r]) < head(runs, heap[least]) {
                least = r;
            }
            if least == at {
                return;
            }
            heap.swap(at, least);
            at = least;
        }
    }
    let mut heap: Vec<usize> = (0..runs.len()).collect();
    for at in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, &runs, at);
    }
    while let Some(&i) = heap.first() {
        // Each worker reads whole directories, so its run holds stretches of
        // paths no other run interleaves (a directory's entries, ~20 in the
        // bench tree): everything run `i` holds below the least of the other
        // runs' heads comes next, at one comparison each instead of a
        // sift-down's eight (16 runs).
        let bound = match heap.len() {
            1 => None,
            2 => Some(heap[1]),
            _ if head(&runs, heap[1]) < head(&runs, heap[2]) => Some(heap[1]),
            _ => Some(heap[2]),
        };
        loop {
            out.push(runs[i].next().expect("a run in the heap has entries"));
            if runs[i].as_slice().is_empty() || bound.is_some_and(|b| head(&runs, b) < head(&runs, i)) {
                break;
            }
        }
        if runs[i].as_slice().is_empty() {
            let last = heap.pop().expect("not empty");
            if heap.is_empty() {
                break;
            }
            heap[0] = last;
        }
        sift_down(&mut heap, &runs, 0);
    }
    out
}

/// Walks `root/rel` into a manifest. With a batch, new content is stored; without
/// one, files are hashed only when `want_hash` says so (else their hash is `None`).
fn scan(
    root: &Path,
    rel: &str,
    prev: Previous<'_>,
    batch: Option<&Batch<'_>>,
    want_hash: &(dyn Fn(&Entry) -> bool + Sync),
    progress: &dyn Progress,
) -> Result<Scan, PathsError> {
    let t = std::time::Instant::now();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let Some(parent) = open_parent(root, rel)? else {
        return Ok(Scan {
            manifest: Manifest::new(rel, Vec::new()),
            sockets: Vec::new(),
        });
    };
    let parent = Arc::new(parent);
    let walker = Walker {
        root,
        recent_from: started.saturating_sub(RACY_NS),
        batch,
        progress,
        expect: match prev {
            Previous::Lazy { files, .. } => files as usize + files as usize / 8,
            Previous::Loaded(m) => m.entries.len(),
            Previous::None => 0,
        },
        // Changed since shortly before the previous capture was sealed: a
        // hint only (whether a file is read is decided by comparing it with
        // the previous manifest), which starts the disk reading files the
        // page cache lost while the tree is still walked.
        changed_from: match prev {
            Previous::Lazy { sealed: Some(at), .. } => at.saturating_sub(RACY_NS),
            _ => i64::MAX,
        },
        stored_now: AtomicU64::new(0),
        changed: Mutex::default(),
        changed_wake: Condvar::new(),
    };
    let name = CString::new(rel.rsplit('/').next().expect("split yields one"))
        .expect("the plan checked its paths: no NUL byte");
    let mut found = Found::default();
    progress.begin(&format!("scanning {rel}"), 0, 0);
    // On a thread while the tree is walked; the walk's objects are named
    // only once it is done (see `Batch::look_at_fans`).
    if let (Previous::Lazy { sealed: Some(at), .. }, Some(b)) = (prev, batch) {
        b.look_at_fans(at);
    }
    // While the tree is walked: the previous manifest is read, and the store
    // listed if many of its hashes will be looked up.
    let (walked, loaded) = std::thread::scope(|s| {
        let loader = match prev {
            Previous::Lazy { load, .. } => Some(s.spawn(load)),
            _ => None,
        };
        if let (
            Previous::Lazy {
                files, sealed: None, ..
            },
            Some(b),
        ) = (prev, batch)
            && files as usize >= crate::store::LIST_FROM
        {
            s.spawn(|| b.list_store());
        }
        let walked = (|| {
            if walker.visit(parent.as_fd(), &name, rel.as_bytes().to_vec(), &mut found)? {
                walker.walk(
                    Job {
                        parent: parent.clone(),
                        name: name.clone(),
                        path: rel.as_bytes().to_vec(),
                    },
                    &mut found,
                )?;
            }
            Ok::<(), PathsError>(())
        })();
        let loaded = loader.and_then(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        (walked, loaded)
    });
    walked?;
    progress.end();
    let Found {
        entries, mut sockets, ..
    } = found;
    let mut m = Manifest::sorted(rel, entries);
    match (prev, &loaded) {
        (Previous::Loaded(p), _) => reuse(&mut m, &Known::of(p), None, batch),
        (Previous::Lazy { sealed, .. }, Some(p)) => reuse(&mut m, p, sealed, batch),
        _ => {}
    }
    sockets.sort_unstable();
    let walked = t.elapsed();
    let mut to_read: Vec<usize> = m
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == Kind::File && e.hash.is_none() && (batch.is_some() || want_hash(e)))
        .map(|(i, _)| i)
        .collect();
    // Largest first: a large file is hashed and compressed on one thread, so
    // started last (in path order the bench tree's 8 MB files come last) it
    // ran alone after the small ones. With one 8 MB file among 234 changed,
    // reading and storing them took a median 112 ms in path order, 79 ms
    // largest first (4 runs each, load average ~5).
    to_read.sort_by_key(|&i| std::cmp::Reverse(m.entries[i].size));
    let files = to_read.len() as u64;
    let bytes: u64 = to_read.iter().map(|&i| m.entries[i].size).sum();
    tracing::debug!(
        path = rel,
        entries = m.entries.len(),
        to_read = files,
        stored_while_walking = walker.stored_now.load(Ordering::Relaxed),
        bytes,
        ms = walked.as_millis() as u64,
        "walked"
    );
    if files > 0 {
        progress.begin(&format!("reading {rel}"), files, bytes);
    }
    let entries = &m.entries;
    let results = parallel_ahead(
        &to_read,
        READ_AHEAD,
        |&i| read_ahead(&under(root, &entries[i].path)),
        |&i| {
            let e = &entries[i];
            let r = read_one(&under(root, &e.path), e.size, batch);
            progress.advance(1, e.size);
            r
        },
    );
    if files > 0 {
        progress.end();
    }
    tracing::debug!(path = rel, files, bytes, ms = t.elapsed().as_millis() as u64, "read");
    for (&i, r) in to_read.iter().zip(results) {
        let (h, n) = r?;
        m.entries[i].hash = Some(h);
        m.entries[i].size = n;
    }
    Ok(Scan { manifest: m, sockets })
}

/// Gives each file of `m` that `prev` has with the same size, mtime and inode
/// (and not [`Entry::recent`]) the hash `prev` recorded, so it is not read.
/// Both are sorted by path: one merge, no lookups. With a batch, a hash is
/// reused only if its object is still stored: a damaged store heals on the
/// next capture. `sealed` is the seal of the checkpoint `prev` is from, if
/// it has one.
fn reuse(m: &mut Manifest, prev: &Known, sealed: Option<i64>, batch: Option<&Batch<'_>>) {
    let mut reused = Vec::new();
    let mut old = prev.files().peekable();
    for (i, e) in m.entries.iter_mut().enumerate() {
        // Most files are where they were: the same path next, found at one
        // comparison instead of two.
        let same = match old.next_if(|(p, _)| *p == e.path.as_slice()) {
            Some(next) => Some(next),
            None => {
                while old.next_if(|(p, _)| *p < e.path.as_slice()).is_some() {}
                old.next_if(|(p, _)| *p == e.path.as_slice())
            }
        };
        let Some((_, p)) = same else {
            continue;
        };
        // A hash known already was read from the file during the walk: it
        // stands, even where size, mtime and inode would let `prev`'s stand
        // for it (a rewrite that kept them changed the ctime).
        if e.kind == Kind::File
            && e.hash.is_none()
            && p.size == e.size
            && p.mtime_ns == e.mtime_ns
            && p.ino == e.ino
            && !p.recent
        {
            e.hash = Some(p.hash);
            reused.push(i);
        }
    }
    if let Some(b) = batch {
        let hashes: Vec<Hash> = reused.iter().filter_map(|&i| m.entries[i].hash).collect();
        let stored = match sealed {
            Some(at) => b.stored_since(&hashes, at),
            None => b.stored_many(&hashes),
        };
        for (i, stored) in reused.into_iter().zip(stored) {
            if !stored {
                m.entries[i].hash = None;
            }
        }
    }
}

/// How many files ahead of the readers the kernel is asked to read. The bench
/// tree's incremental checkpoint found 143 of its 234 changed files partly
/// out of the page cache (the virtual machine's host reclaims idle pages):
/// read one at a time by two threads, they took 15-35 ms.
const READ_AHEAD: usize = 128;

const AHEAD_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC);

/// Asks the kernel to read file `p` into the page cache, without waiting.
/// Failures are left to the read that follows.
fn read_ahead(p: &Path) {
    if let Ok(fd) = rustix::fs::open(p, AHEAD_FLAGS, Mode::empty()) {
        let _ = rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::WillNeed);
    }
}

/// Stores `name` in `dir` on the walker's own thread, if it is still the file
/// the walk saw in `st` (same inode, size and mtime); its hash and size.
/// `None` on any failure: then it is read after the walk like any other
/// file whose hash is unknown, and that read reports what went wrong. For a
/// changed file no storer took (see [`Walker::defer`]).
///
/// A file changed since the previous capture was sealed is almost always one
/// to read. Read during the walk, its disk reads and its hashing overlap the
/// walk's system calls instead of following them: on the bench tree (234
/// changed files, many partly out of the page cache) the walk and the reads
/// took 66-86 ms one after the other, 60-65 ms together; the whole
/// incremental checkpoint went from a median 98.3 to 94.5 ms
/// (`bench/incremental`, 12 rounds, on a day the machine was slower than the
/// README's figures).
fn store_now(
    dir: BorrowedFd<'_>,
    name: &CStr,
    st: &rustix::fs::Stat,
    batch: &Batch<'_>,
    shown: impl FnOnce() -> PathBuf,
) -> Option<(Hash, u64)> {
    let fd = rustix::fs::openat(dir, name, AHEAD_FLAGS, Mode::empty()).ok()?;
    let now = rustix::fs::fstat(&fd).ok()?;
    if (now.st_ino, now.st_size, mtime_ns(&now)) != (st.st_ino, st.st_size, mtime_ns(st)) {
        return None;
    }
    batch.put_file(&mut File::from(fd), &shown(), st.st_size as u64).ok()
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
    /// On disk with other content, kind, link target or device; would be replaced.
    Change,
    /// Same content; mode, owner or mtime would be put back.
    Meta,
    /// On disk but not in the checkpoint; would be removed (with everything under it).
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: Action,
    #[serde(serialize_with = "shown")]
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Entries under a removed directory, counted with it.
    #[serde(skip_serializing_if = "is_zero")]
    pub inside: u64,
}

fn shown<S: serde::Serializer>(p: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&show(p))
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whether this process may give files away (`lchown` to any owner): root.
fn can_chown() -> bool {
    rustix::process::geteuid().is_root()
}

/// A restore of one path, computed and checked but not started.
#[derive(Debug)]
pub struct Planned {
    root: PathBuf,
    target: Manifest,
    /// The disk as the plan saw it (file hashes only where they were needed).
    current: Manifest,
    /// Whether owners are put back (running as root).
    own: bool,
    pub changes: Vec<Change>,
    /// What the restore cannot put back, said before it starts.
    pub warnings: Vec<String>,
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
    plan_as(store, root, state, prev, progress, can_chown())
}

/// [`plan`], putting owners back (and creating device nodes) only when `own`.
fn plan_as(
    store: &Store,
    root: &Path,
    state: &PathState,
    prev: Option<&Manifest>,
    progress: &dyn Progress,
    own: bool,
) -> Result<Planned, PathsError> {
    check_rel_path(state.path.as_bytes()).map_err(|reason| ManifestError::Unsafe {
        root: state.path.clone(),
        path: state.path.clone(),
        reason,
    })?;
    // The plan refuses such a path; the record could still name one.
    if state.path.split('/').next() == Some(crate::workspace::STATE_DIR) {
        return Err(PathsError::StateDir {
            path: state.path.clone(),
            dir: crate::workspace::STATE_DIR,
        });
    }
    let target = Manifest::load(store, state.manifest)?;
    if target.root != state.path.as_bytes() {
        return Err(PathsError::WrongRoot {
            expected: state.path.clone(),
            found: show(&target.root).into_owned(),
        });
    }
    let wanted: HashMap<&[u8], &Entry> = target.entries.iter().map(|e| (e.path.as_slice(), e)).collect();
    let want_hash = |e: &Entry| {
        wanted
            .get(e.path.as_slice())
            .is_some_and(|t| t.kind == Kind::File && t.size == e.size)
    };
    let current = scan(root, &state.path, prev.into(), None, &want_hash, progress)?.manifest;
    let changes = diff(&current, &target, own);
    let mut warnings = Vec::new();
    if !own {
        let written: BTreeSet<&[u8]> = changes
            .iter()
            .filter(|c| c.action != Action::Remove)
            .map(|c| c.path.as_slice())
            .collect();
        let me = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        let mut others = target
            .entries
            .iter()
            .filter(|e| written.contains(e.path.as_slice()) && e.owner.is_some_and(|o| o != me));
        if let Some(first) = others.next() {
            let n = 1 + others.count();
            let (u, g) = first.owner.expect("filtered");
            warnings.push(format!(
                "{}: owners not restored for {n} entr{} (e.g. {} was {u}:{g}); only root can give files away, so they will belong to {}:{}",
                state.path,
                if n == 1 { "y" } else { "ies" },
                first.shown(),
                me.0,
                me.1
            ));
        }
        if let Some(dev) = target
            .entries
            .iter()
            .find(|e| e.kind.is_device() && written.contains(e.path.as_slice()))
        {
            return Err(PathsError::DeviceNeedsRoot {
                path: dev.shown().into_owned(),
            });
        }
    }
    Ok(Planned {
        root: root.to_path_buf(),
        target,
        current,
        own,
        changes,
        warnings,
    })
}

/// The changes that turn `current` into `target`. Owners count only when
/// the restore puts them back (`own`). A socket on disk is left alone unless
/// the checkpoint has something else at its path.
fn diff(current: &Manifest, target: &Manifest, own: bool) -> Vec<Change> {
    let now: HashMap<&[u8], &Entry> = current.entries.iter().map(|e| (e.path.as_slice(), e)).collect();
    let want: HashMap<&[u8], &Entry> = target.entries.iter().map(|e| (e.path.as_slice(), e)).collect();
    let mut out: Vec<Change> = Vec::new();
    // Removals: top-most only, each with what it holds. A directory's
    // entries do not follow it as one run in path order: `pkg-1.0.dist-info`
    // and `pkg.py` sort between `pkg` and `pkg/__init__.py` (`-` and `.` come
    // before `/`). So each entry looks for a removed ancestor among all of
    // its ancestors, each seen before it (a parent sorts before its children).
    let mut removed: HashMap<&[u8], usize> = HashMap::new();
    for e in &current.entries {
        let gone = match want.get(e.path.as_slice()) {
            None => e.kind != Kind::Socket,
            Some(t) => t.kind != e.kind,
        };
        if !gone {
            continue;
        }
        if !removed.is_empty()
            && let Some(&i) = ancestors(&e.path).find_map(|a| removed.get(a))
        {
            out[i].inside += 1;
            continue;
        }
        if e.kind == Kind::Dir {
            removed.insert(&e.path, out.len());
        }
        // A kind change is removed here and re-created below as a change.
        out.push(Change {
            action: Action::Remove,
            path: e.path.clone(),
            kind: e.kind,
            inside: 0,
        });
    }
    for t in &target.entries {
        let action = match now.get(t.path.as_slice()) {
            None => Action::Add,
            Some(c) if c.kind != t.kind => Action::Change,
            Some(c) => {
                let owner = own && t.owner.is_some() && c.owner != t.owner;
                match t.kind {
                    Kind::File if c.hash != t.hash => Action::Change,
                    Kind::Symlink if c.target != t.target => Action::Change,
                    Kind::CharDevice | Kind::BlockDevice if c.rdev != t.rdev => Action::Change,
                    Kind::Dir if c.mode != t.mode || owner => Action::Meta,
                    Kind::Dir => continue,
                    _ if c.mode != t.mode || c.mtime_ns != t.mtime_ns || owner => Action::Meta,
                    _ => continue,
                }
            }
        };
        out.push(Change {
            action,
            path: t.path.clone(),
            kind: t.kind,
            inside: 0,
        });
    }
    out
}

/// The proper ancestors of `path` (`a/b/c` → `a`, `a/b`), from the top down.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(|(i, _)| &path[..i])
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
        let writes: BTreeSet<&[u8]> = self
            .changes
            .iter()
            .filter(|c| c.action != Action::Remove && c.kind == Kind::File)
            .map(|c| c.path.as_slice())
            .collect();
        let jobs: Vec<(usize, &Entry)> = self
            .target
            .entries
            .iter()
            .filter(|e| writes.contains(e.path.as_slice()))
            .enumerate()
            .collect();
        let bytes = jobs.iter().map(|(_, e)| e.size).sum();
        progress.begin(
            &format!("staging {}", show(&self.target.root)),
            jobs.len() as u64,
            bytes,
        );
        let own = self.own;
        // Objects the page cache lost are read ahead as capture reads files.
        let results = parallel_ahead(
            &jobs,
            READ_AHEAD,
            |(_, e)| read_ahead(&store.path_of(e.hash.expect("validated: files have objects"))),
            |(i, e)| {
                let r = stage_one(store, &staging.join(i.to_string()), e, own);
                progress.advance(1, e.size);
                r
            },
        );
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

/// Gives `fd` the entry's owner, when the restore puts owners back. Before the
/// mode: a change of owner clears the set-user-ID and set-group-ID bits.
fn chown_fd(fd: BorrowedFd<'_>, e: &Entry, own: bool, shown: &Path) -> Result<(), PathsError> {
    if let (true, Some((u, g))) = (own, e.owner) {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(u)),
            Some(rustix::fs::Gid::from_raw(g)),
        )
        .map_err(rio("set the owner of", shown))?;
    }
    Ok(())
}

/// The same for `name` in `dir`, without following it (a symlink or a node).
fn chown_at(dir: BorrowedFd<'_>, name: &str, e: &Entry, own: bool, shown: &Path) -> Result<(), PathsError> {
    if let (true, Some((u, g))) = (own, e.owner) {
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(u)),
            Some(rustix::fs::Gid::from_raw(g)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(rio("set the owner of", shown))?;
    }
    Ok(())
}

fn stage_one(store: &Store, at: &Path, e: &Entry, own: bool) -> Result<(), PathsError> {
    let mut f = File::create(at).map_err(io("create", at))?;
    store.read_into(e.hash.expect("validated: files have objects"), &mut f)?;
    chown_fd(f.as_fd(), e, own, at)?;
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
    staged: HashMap<Vec<u8>, String>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

/// Directory handles opened from the plan root one component at a time, never
/// through a symlink. Remembers the last directory, since entries come sorted.
struct Dirs {
    root: OwnedFd,
    root_path: PathBuf,
    last: Option<(Vec<u8>, OwnedFd)>,
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
    fn dir(&mut self, rel: &[u8], create: bool) -> Result<BorrowedFd<'_>, PathsError> {
        if rel.is_empty() {
            return Ok(self.root.as_fd());
        }
        if self.last.as_ref().is_none_or(|(p, _)| p != rel) {
            let mut fd =
                rustix::fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty()).map_err(rio("open", &self.root_path))?;
            for c in rel.split(|&b| b == b'/') {
                let here = under(&self.root_path, rel);
                let next = match rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty()) {
                    Err(rustix::io::Errno::NOENT) if create => {
                        rustix::fs::mkdirat(&fd, c, Mode::from_raw_mode(0o755)).map_err(rio("create", &here))?;
                        rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty()).map_err(rio("open", &here))?
                    }
                    Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                        return Err(PathsError::ThroughSymlink {
                            path: show(rel).into_owned(),
                            link: show(c).into_owned(),
                        });
                    }
                    r => r.map_err(rio("open", &here))?,
                };
                fd = next;
            }
            self.last = Some((rel.to_vec(), fd));
        }
        Ok(self.last.as_ref().expect("just set").1.as_fd())
    }
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Removes `name` in `dir` and, for a directory, everything in it; never follows a symlink.
fn remove_at(dir: BorrowedFd<'_>, name: &[u8], shown: &Path) -> Result<(), PathsError> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        r => r.map_err(rio("inspect", shown))?,
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(rio("remove", shown));
    }
    let sub = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(rio("open", shown))?;
    let names: Vec<Vec<u8>> = {
        let d = Dir::read_from(&sub).map_err(rio("list", shown))?;
        let mut v = Vec::new();
        for ent in d {
            let ent = ent.map_err(rio("list", shown))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                v.push(n.to_vec());
            }
        }
        v
    };
    for n in names {
        remove_at(sub.as_fd(), &n, &shown.join(OsStr::from_bytes(&n)))?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(rio("remove", shown))
}

impl Prepared {
    pub fn changes(&self) -> &[Change] {
        &self.planned.changes
    }

    pub fn warnings(&self) -> &[String] {
        &self.planned.warnings
    }

    /// Applies the restore: removals first, then directories, files, symlinks
    /// and nodes in path order, then directory owners, modes and mtimes from
    /// the deepest up.
    ///
    /// The disk is compared with the checkpoint once more first, since another
    /// resource restored just before (git, over a tracked directory) may have
    /// changed it since the plan; what the plan did not stage is staged now,
    /// still checked against its hash.
    pub fn commit(self, progress: &dyn Progress) -> Result<Vec<Change>, PathsError> {
        let root = self.planned.root.clone();
        let own = self.planned.own;
        let target = &self.planned.target;
        let wanted: HashMap<&[u8], &Entry> = target.entries.iter().map(|e| (e.path.as_slice(), e)).collect();
        let want_hash = |e: &Entry| {
            wanted
                .get(e.path.as_slice())
                .is_some_and(|t| t.kind == Kind::File && t.size == e.size)
        };
        let top =
            std::str::from_utf8(&target.root).expect("the plan's paths are UTF-8, and it was checked against one");
        let now = scan(
            &root,
            top,
            Previous::Loaded(&self.planned.current),
            None,
            &want_hash,
            &(),
        )?
        .manifest;
        let changes = diff(&now, target, own);
        let mut dirs = Dirs::open(&root)?;
        let staging_fd =
            rustix::fs::open(&self.staging, DIR_FLAGS, Mode::empty()).map_err(rio("open", &self.staging))?;
        let acting: HashMap<&[u8], Action> = changes
            .iter()
            .filter(|c| c.action != Action::Remove)
            .map(|c| (c.path.as_slice(), c.action))
            .collect();
        let bytes = target
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File && acting.contains_key(e.path.as_slice()))
            .map(|e| e.size)
            .sum();
        progress.begin(&format!("restoring {top}"), changes.len() as u64, bytes);
        for c in changes.iter().filter(|c| c.action == Action::Remove) {
            let (parent, name) = split(&c.path);
            let d = dirs.dir(parent, false)?;
            remove_at(d, name, &under(&root, &c.path))?;
            progress.advance(1, 0);
        }
        dirs.last = None;
        let top_parent = split(&target.root).0.len();
        for e in &target.entries {
            let Some(&action) = acting.get(e.path.as_slice()) else {
                continue;
            };
            let (parent, name) = split(&e.path);
            let shown = under(&root, &e.path);
            let create = parent.len() <= top_parent;
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
                            let late = format!("late-{}", Hash::of(&e.path));
                            stage_one(&self.store, &self.staging.join(&late), e, own)?;
                            late
                        }
                    };
                    let staged = &staged;
                    match rustix::fs::renameat(&staging_fd, staged.as_str(), d, name) {
                        Ok(()) => {}
                        Err(rustix::io::Errno::XDEV) => copy_in(&self.staging.join(staged), d, name, e, own, &shown)?,
                        Err(err) => return Err(rio("write", &shown)(err)),
                    }
                }
                Kind::Symlink => {
                    let tmp = &tmp_name(name);
                    let _ = rustix::fs::unlinkat(d, tmp, AtFlags::empty());
                    let target = e.target.as_deref().expect("validated: symlinks have targets");
                    rustix::fs::symlinkat(target, d, tmp).map_err(rio("create the symlink", &shown))?;
                    chown_at(d, tmp, e, own, &shown)?;
                    let _ = rustix::fs::utimensat(d, tmp, &times(e.mtime_ns), AtFlags::SYMLINK_NOFOLLOW);
                    rustix::fs::renameat(d, tmp, d, name).map_err(rio("write", &shown))?;
                }
                Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                    let tmp = &tmp_name(name);
                    let _ = rustix::fs::unlinkat(d, tmp, AtFlags::empty());
                    let (ft, what) = match e.kind {
                        Kind::Fifo => (FileType::Fifo, "create the FIFO"),
                        Kind::CharDevice => (FileType::CharacterDevice, "create the device node"),
                        _ => (FileType::BlockDevice, "create the device node"),
                    };
                    rustix::fs::mknodat(d, tmp, ft, Mode::from_raw_mode(e.mode & 0o777), e.rdev)
                        .map_err(rio(what, &shown))?;
                    chown_at(d, tmp, e, own, &shown)?;
                    // The umask applied to mknod; the node was just made in a
                    // directory held open without following symlinks.
                    rustix::fs::chmodat(d, tmp, Mode::from_raw_mode(e.mode), AtFlags::empty())
                        .map_err(rio("set the mode of", &shown))?;
                    let _ = rustix::fs::utimensat(d, tmp, &times(e.mtime_ns), AtFlags::SYMLINK_NOFOLLOW);
                    rustix::fs::renameat(d, tmp, d, name).map_err(rio("write", &shown))?;
                }
                Kind::Socket => unreachable!("validated: manifests hold no sockets"),
            }
            progress.advance(1, if e.kind == Kind::File { e.size } else { 0 });
        }
        // Directories last, deepest first: writing inside one changes its
        // mtime. Only what differs is set, so a directory the restore did
        // not change is not written to (it may be one nobody can write, as
        // when a failed restore is put back).
        for e in target.entries.iter().rev().filter(|e| e.kind == Kind::Dir) {
            let (parent, name) = split(&e.path);
            let shown = under(&root, &e.path);
            let d = dirs.dir(parent, false)?;
            let fd = rustix::fs::openat(d, name, DIR_FLAGS, Mode::empty()).map_err(rio("open", &shown))?;
            let st = rustix::fs::fstat(&fd).map_err(rio("inspect", &shown))?;
            // A change of owner may clear set-id bits: the mode follows it.
            let chown = own && e.owner.is_some_and(|o| o != (st.st_uid, st.st_gid));
            if chown {
                chown_fd(fd.as_fd(), e, own, &shown)?;
            }
            if chown || st.st_mode & 0o7777 != e.mode {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(e.mode)).map_err(rio("set the mode of", &shown))?;
            }
            if mtime_ns(&st) != e.mtime_ns {
                rustix::fs::futimens(&fd, &times(e.mtime_ns)).map_err(rio("set the mtime of", &shown))?;
            }
        }
        progress.end();
        Ok(changes)
    }
}

/// A temporary name beside `name`, short whatever `name`'s length.
fn tmp_name(name: &[u8]) -> String {
    format!(".backout-tmp-{}-{}", std::process::id(), Hash::of(name).short())
}

/// Copies a staged file into place when staging is on another file system.
fn copy_in(
    from: &Path,
    dir: BorrowedFd<'_>,
    name: &[u8],
    e: &Entry,
    own: bool,
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
    chown_fd(out.as_fd(), e, own, shown)?;
    rustix::fs::fchmod(&out, Mode::from_raw_mode(e.mode)).map_err(rio("set the mode of", shown))?;
    rustix::fs::futimens(&out, &times(e.mtime_ns)).map_err(rio("set the mtime of", shown))?;
    rustix::fs::renameat(dir, tmp, dir, name).map_err(rio("write", shown))
}

/// A path from the plan as stored: `config/` → `config`.
pub fn normalize(rel: &str) -> String {
    rel.trim_end_matches('/').to_string()
}

mod discard;
#[cfg(test)]
mod escapes;
#[cfg(test)]
mod tests;
