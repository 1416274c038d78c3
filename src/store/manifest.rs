//! Manifests: what one captured path held — every file, directory, symlink,
//! FIFO and device node under it with its mode, owner, size, mtime and inode,
//! and the object holding each file's content or each symlink's target. A
//! manifest is stored as an object and named by its hash.
//!
//! # Format
//!
//! Names are bytes, as Linux has them: a name need not be UTF-8.
//!
//! * **Version 2** (written since names became bytes and owners, FIFOs and
//!   device nodes were recorded): a compact binary encoding. It starts with
//!   [`MAGIC`] and the version as a varint, then the root and the entries
//!   sorted by path bytes, each path written as the length it shares with the
//!   previous one plus the rest. Integers are LEB128 varints (the mtime
//!   zigzag-encoded), hashes their 32 raw bytes. It is about a third of the
//!   JSON's size and reads and writes an order of magnitude faster, which is
//!   most of what an incremental checkpoint of a large tree costs beyond the walk.
//! * **Version 1** (JSON, names as UTF-8 strings, no owners, no special files)
//!   is still read, so every existing checkpoint stays restorable; its entries
//!   carry no owner, and a restore leaves their ownership as it is.
//!
//! [`Manifest::validate`] is the gate in front of every restore: a manifest that
//! could make a restore write outside its root — `..`, an absolute path, a file
//! under a symlink, one name twice — is rejected before anything is written.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{Batch, Hash, Store, StoreError};

/// The format version written in every new manifest.
pub const VERSION: u32 = 2;

/// How a version-2 manifest starts: never valid JSON or text.
pub const MAGIC: &[u8] = b"\0backout manifest\0";

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
    Fifo,
    #[serde(rename = "chardev")]
    CharDevice,
    #[serde(rename = "blockdev")]
    BlockDevice,
    /// A socket seen on disk. Never captured (a socket is a running program's
    /// endpoint, not state to put back), so never in a stored manifest.
    Socket,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Symlink => 2,
            Kind::Fifo => 3,
            Kind::CharDevice => 4,
            Kind::BlockDevice => 5,
            Kind::Socket => 6,
        }
    }

    fn from_code(c: u8) -> Option<Kind> {
        Some(match c {
            0 => Kind::File,
            1 => Kind::Dir,
            2 => Kind::Symlink,
            3 => Kind::Fifo,
            4 => Kind::CharDevice,
            5 => Kind::BlockDevice,
            _ => return None,
        })
    }

    /// A device node, which only root can create.
    pub fn is_device(self) -> bool {
        matches!(self, Kind::CharDevice | Kind::BlockDevice)
    }

    /// Nodes restored by creating them afresh (no content, no children).
    pub fn is_node(self) -> bool {
        matches!(self, Kind::Fifo | Kind::CharDevice | Kind::BlockDevice)
    }
}

/// One file, directory, symlink, FIFO or device node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the plan root, `/`-separated, as bytes.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner and group; `None` in version-1 manifests, which did not record them.
    pub owner: Option<(u32, u32)>,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Inode at capture, so the next capture can reuse the hash of an unchanged file.
    pub ino: u64,
    /// The content's object (files only).
    pub hash: Option<Hash>,
    /// The link target (symlinks only).
    pub target: Option<Vec<u8>>,
    /// The device number (device nodes only).
    pub rdev: u64,
    /// A file modified within [`RACY_NS`] before its capture started: it may
    /// have been written again within the same timestamp tick, unseen, so the
    /// next capture reads it again rather than trusting its size, mtime and
    /// inode (git's "racily clean" entries). Only for files; a tree left alone
    /// for a few seconds has none, and captures to the same manifest.
    pub recent: bool,
}

impl Entry {
    /// The path for messages: as is when UTF-8, else with `\xNN` escapes.
    pub fn shown(&self) -> Cow<'_, str> {
        show(&self.path)
    }
}

/// Bytes of a name for messages: as is when UTF-8, else every byte that is not
/// part of a UTF-8 character written `\xNN`.
pub fn show(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let mut out = String::with_capacity(b.len() + 8);
            for chunk in b.utf8_chunks() {
                out.push_str(chunk.valid());
                for x in chunk.invalid() {
                    out.push_str(&format!("\\x{x:02x}"));
                }
            }
            Cow::Owned(out)
        }
    }
}

/// What one captured path held. No entries: the path did not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The captured path, relative to the plan root.
    pub root: Vec<u8>,
    pub entries: Vec<Entry>,
}

/// How close to the start of a capture a file's mtime must be for the file to
/// count as [`Entry::recent`]: generous for coarse timestamps (FAT: 2 s).
pub const RACY_NS: i64 = 2_000_000_000;

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
    pub fn new(root: impl Into<Vec<u8>>, mut entries: Vec<Entry>) -> Manifest {
        entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        Manifest {
            root: root.into(),
            entries,
        }
    }

    /// A manifest of `entries` already sorted by path, as a walk's merge
    /// leaves them: not sorted again (checked in debug builds). A name that
    /// a listing gave twice (a rename while it was read) stays twice: a
    /// capture's manifest is refused for it by [`Manifest::validate`].
    pub fn sorted(root: impl Into<Vec<u8>>, entries: Vec<Entry>) -> Manifest {
        debug_assert!(entries.is_sorted_by(|a, b| a.path <= b.path), "entries sorted by path");
        Manifest {
            root: root.into(),
            entries,
        }
    }

    /// The current (version 2) encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 72);
        out.extend_from_slice(MAGIC);
        put_uvar(&mut out, VERSION as u64);
        put_bytes(&mut out, &self.root);
        put_uvar(&mut out, self.entries.len() as u64);
        let mut prev: &[u8] = &[];
        for e in &self.entries {
            out.push(e.kind.code() | if e.recent && e.kind == Kind::File { RECENT } else { 0 });
            let shared = shared_prefix(prev, &e.path);
            put_uvar(&mut out, shared as u64);
            put_bytes(&mut out, &e.path[shared..]);
            prev = &e.path;
            put_uvar(&mut out, e.mode as u64);
            let (uid, gid) = e.owner.unwrap_or((0, 0));
            put_uvar(&mut out, uid as u64);
            put_uvar(&mut out, gid as u64);
            put_uvar(&mut out, e.size);
            put_uvar(&mut out, zigzag(e.mtime_ns));
            put_uvar(&mut out, e.ino);
            match e.kind {
                Kind::File => out.extend_from_slice(&e.hash.unwrap_or(Hash([0; 32])).0),
                Kind::Symlink => put_bytes(&mut out, e.target.as_deref().unwrap_or_default()),
                Kind::CharDevice | Kind::BlockDevice => put_uvar(&mut out, e.rdev),
                _ => {}
            }
        }
        out
    }

    /// Reads either format (without validating).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        if let Some(rest) = bytes.strip_prefix(MAGIC) {
            return decode_v2(rest);
        }
        if bytes.first() == Some(&b'{') {
            return v1::decode(bytes);
        }
        Err("neither a version-1 (JSON) nor a version-2 manifest".into())
    }

    /// Stores the manifest; returns its name.
    pub fn store(&self, batch: &Batch<'_>) -> Result<Hash, StoreError> {
        batch.put_manifest(&self.encode())
    }

    /// Reads (checking its hash) and validates manifest `hash`.
    pub fn load(store: &Store, hash: Hash) -> Result<Manifest, ManifestError> {
        let t = std::time::Instant::now();
        let bytes = store.read(hash)?;
        let read = t.elapsed();
        let m = Manifest::decode(&bytes).map_err(|reason| ManifestError::Malformed { hash, reason })?;
        let decoded = t.elapsed();
        m.validate()?;
        tracing::debug!(
            bytes = bytes.len(),
            entries = m.entries.len(),
            read_us = read.as_micros() as u64,
            decode_us = (decoded - read).as_micros() as u64,
            validate_us = (t.elapsed() - decoded).as_micros() as u64,
            "manifest loaded"
        );
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
        let bad = |path: &[u8], reason: &str| ManifestError::Unsafe {
            root: show(&self.root).into_owned(),
            path: show(path).into_owned(),
            reason: reason.to_string(),
        };
        let root = self.root.as_slice();
        check_rel_path(root).map_err(|r| bad(root, &format!("(the root) {r}")))?;
        let mut prev: Option<&[u8]> = None;
        // The parent found last: siblings share it.
        let mut last_parent: Option<usize> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let p = e.path.as_slice();
            if let Some(q) = prev
                && q >= p
            {
                check_rel_path(p).map_err(|r| bad(p, &r))?;
                return Err(bad(p, "is listed twice or out of order"));
            }
            prev = Some(p);
            if p != root {
                let Some(rest) = p.strip_prefix(root).and_then(|r| r.strip_prefix(b"/")) else {
                    check_rel_path(p).map_err(|r| bad(p, &r))?;
                    return Err(bad(p, &format!("is outside the captured path {:?}", show(root))));
                };
                let (parent, name) = match rest.iter().rposition(|&b| b == b'/') {
                    Some(i) => (&p[..root.len() + 1 + i], &rest[i + 1..]),
                    None => (root, rest),
                };
                // The parent is an earlier entry, so its path was checked: only
                // the last name and the length are left to check here.
                check_name(name, p.len()).map_err(|r| bad(p, &r))?;
                // Entries before this one are in order (checked), so the
                // parent, which sorts before its children, is found by bisection.
                let before = &self.entries[..i];
                let found = match last_parent {
                    Some(j) if before[j].path == parent => Some(j),
                    _ => before.binary_search_by(|x| x.path.as_slice().cmp(parent)).ok(),
                };
                last_parent = found.or(last_parent);
                match found.map(|j| before[j].kind) {
                    Some(Kind::Dir) => {}
                    Some(_) => {
                        return Err(bad(
                            p,
                            &format!("lies under {:?}, which is not a directory", show(parent)),
                        ));
                    }
                    None => {
                        check_rel_path(p).map_err(|r| bad(p, &r))?;
                        return Err(bad(p, &format!("has no parent directory entry {:?}", show(parent))));
                    }
                }
            }
            match e.kind {
                Kind::File if e.hash.is_none() => return Err(bad(p, "is a file without an object")),
                Kind::Symlink => {
                    let t = e.target.as_deref().unwrap_or_default();
                    if t.is_empty() || t.contains(&0) || t.len() > PATH_MAX {
                        return Err(bad(p, "is a symlink without a valid target"));
                    }
                }
                Kind::Socket => return Err(bad(p, "is a socket, which is never captured")),
                _ => {}
            }
            if e.mode & !0o7777 != 0 {
                return Err(bad(p, &format!("has mode {:o} with more than permission bits", e.mode)));
            }
        }
        Ok(())
    }
}

/// Why `name`, the last component of a path `len` bytes long whose parent is
/// known to be a plain relative path, is not a plain name, if it is not.
fn check_name(name: &[u8], len: usize) -> Result<(), String> {
    match name {
        b"" => Err("has an empty component".into()),
        b"." | b".." => Err(format!("has a {:?} component", show(name))),
        _ if name.contains(&0) => Err("contains a NUL byte".into()),
        _ if name.len() > NAME_MAX => Err(format!("has a name longer than {NAME_MAX} bytes")),
        _ if len > PATH_MAX => Err(format!("is longer than {PATH_MAX} bytes")),
        _ => Ok(()),
    }
}

/// Why `p` is not a plain relative path of names, if it is not.
pub fn check_rel_path(p: &[u8]) -> Result<(), String> {
    if p.is_empty() {
        return Err("is empty".into());
    }
    if p[0] == b'/' {
        return Err("is absolute".into());
    }
    if p.len() > PATH_MAX {
        return Err(format!("is longer than {PATH_MAX} bytes"));
    }
    if p.contains(&0) {
        return Err("contains a NUL byte".into());
    }
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" => return Err("has an empty component".into()),
            b"." | b".." => return Err(format!("has a {:?} component", show(c))),
            _ if c.len() > NAME_MAX => return Err(format!("has a name longer than {NAME_MAX} bytes")),
            _ => {}
        }
    }
    Ok(())
}

// --- version 2: binary --------------------------------------------------------------

fn put_uvar(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Set in an entry's kind byte when the entry is [`Entry::recent`].
const RECENT: u8 = 0x80;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// How many leading bytes `a` and `b` share: sixteen at a time first, since
/// a path in a large tree shares most of its bytes with the one before
/// (~45 in the bench tree's `venv/lib/python3.11/site-packages/pkg123/mod0/`).
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 16 <= n && a[i..i + 16] == b[i..i + 16] {
        i += 16;
    }
    i + a[i..n].iter().zip(&b[i..n]).take_while(|(x, y)| x == y).count()
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvar(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn uvar(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for (i, &x) in self.b.iter().enumerate().take(10) {
            v |= ((x & 0x7f) as u64) << (7 * i);
            if x & 0x80 == 0 {
                if i == 9 && x > 1 {
                    break;
                }
                self.b = &self.b[i + 1..];
                return Ok(v);
            }
        }
        Err("a number is cut short or too large".into())
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        u32::try_from(self.uvar()?).map_err(|_| format!("{what} out of range"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.b.len() {
            return Err("cut short".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.uvar()?;
        self.take(usize::try_from(n).map_err(|_| "a length out of range".to_string())?)
    }
}

/// One entry of a version-2 manifest as it is read, borrowing its path and
/// target from the reader.
struct Raw<'a> {
    kind: Kind,
    recent: bool,
    path: &'a [u8],
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i64,
    ino: u64,
    hash: Option<Hash>,
    target: Option<&'a [u8]>,
    rdev: u64,
}

/// Reads a version-2 manifest (after [`MAGIC`]): its root, and each entry
/// handed to `each` in order. One reader for both forms it is decoded into,
/// [`Manifest`] and [`Known`].
fn read_v2(b: &[u8], mut each: impl FnMut(u64, Raw<'_>)) -> Result<Vec<u8>, String> {
    let mut r = Reader { b };
    let version = r.uvar()?;
    if version != VERSION as u64 {
        return Err(format!("format version {version} (this backout reads 1 and {VERSION})"));
    }
    let root = r.bytes()?.to_vec();
    let count = r.uvar()?;
    let mut path: Vec<u8> = Vec::new();
    for i in 0..count {
        let at = |e: String| format!("entry {i}: {e}");
        let code = r.take(1).map_err(at)?[0];
        let kind = Kind::from_code(code & !RECENT).ok_or_else(|| at(format!("unknown kind {code}")))?;
        let recent = code & RECENT != 0;
        if recent && kind != Kind::File {
            return Err(at(format!("a {kind:?} marked recent")));
        }
        let shared = r.uvar().map_err(at)?;
        if shared > path.len() as u64 {
            return Err(at("shares more than the previous path".into()));
        }
        let suffix = r.bytes().map_err(at)?;
        path.truncate(shared as usize);
        path.extend_from_slice(suffix);
        let mode = r.u32("mode").map_err(at)?;
        let uid = r.u32("uid").map_err(at)?;
        let gid = r.u32("gid").map_err(at)?;
        let size = r.uvar().map_err(at)?;
        let mtime_ns = unzigzag(r.uvar().map_err(at)?);
        let ino = r.uvar().map_err(at)?;
        let (mut hash, mut target, mut rdev) = (None, None, 0);
        match kind {
            Kind::File => {
                let h: [u8; 32] = r.take(32).map_err(at)?.try_into().expect("32 bytes");
                hash = Some(Hash(h));
            }
            Kind::Symlink => target = Some(r.bytes().map_err(at)?),
            Kind::CharDevice | Kind::BlockDevice => rdev = r.uvar().map_err(at)?,
            _ => {}
        }
        each(
            count,
            Raw {
                kind,
                recent,
                path: &path,
                mode,
                uid,
                gid,
                size,
                mtime_ns,
                ino,
                hash,
                target,
                rdev,
            },
        );
    }
    if !r.b.is_empty() {
        return Err(format!("{} stray bytes after the last entry", r.b.len()));
    }
    Ok(root)
}

fn decode_v2(b: &[u8]) -> Result<Manifest, String> {
    let mut entries = Vec::new();
    let root = read_v2(b, |count, e| {
        if entries.capacity() == 0 {
            // Every entry takes at least 9 bytes: never trust the count for memory.
            entries.reserve((count as usize).min(b.len() / 9));
        }
        entries.push(Entry {
            path: e.path.to_vec(),
            kind: e.kind,
            mode: e.mode,
            owner: Some((e.uid, e.gid)),
            size: e.size,
            mtime_ns: e.mtime_ns,
            ino: e.ino,
            hash: e.hash,
            target: e.target.map(<[u8]>::to_vec),
            rdev: e.rdev,
            recent: e.recent,
        });
    })?;
    Ok(Manifest { root, entries })
}

/// What an incremental capture needs of the previous manifest of a path: each
/// file's path, size, mtime, inode and hash, in path order. Read from a stored
/// manifest without an allocation per entry and without [`Manifest::validate`]
/// (nothing is written from it: a file whose path, size, mtime and inode all
/// match keeps its hash, and the object's presence is checked apart). On the
/// bench tree's 26,000 entries this took a fifth of decoding a [`Manifest`],
/// on a thread that competes with the walk for the CPU.
#[derive(Debug, Default)]
pub struct Known {
    /// Every file's path, one after the other.
    paths: Vec<u8>,
    files: Vec<KnownFile>,
}

/// One file of [`Known`]: its path ends at `end` in the list's path bytes.
#[derive(Debug, Clone, Copy)]
pub struct KnownFile {
    end: usize,
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
    pub recent: bool,
    pub hash: Hash,
}

impl Known {
    /// Reads manifest `hash` (its hash checked) into its files.
    pub fn load(store: &Store, hash: Hash) -> Result<Known, ManifestError> {
        let t = std::time::Instant::now();
        let bytes = store.read(hash)?;
        let read = t.elapsed();
        let malformed = |reason| ManifestError::Malformed { hash, reason };
        let known = match bytes.strip_prefix(MAGIC) {
            Some(rest) => {
                let mut k = Known::default();
                read_v2(rest, |count, e| {
                    if k.files.capacity() == 0 {
                        k.files.reserve((count as usize).min(rest.len() / 9));
                        k.paths.reserve(rest.len());
                    }
                    k.add(e.kind, e.path, e.size, e.mtime_ns, e.ino, e.recent, e.hash);
                })
                .map_err(malformed)?;
                k
            }
            None => Known::of(&Manifest::decode(&bytes).map_err(malformed)?),
        };
        tracing::debug!(
            bytes = bytes.len(),
            files = known.files.len(),
            read_us = read.as_micros() as u64,
            decode_us = (t.elapsed() - read).as_micros() as u64,
            "previous manifest loaded"
        );
        Ok(known)
    }

    /// The files of a manifest in memory.
    pub fn of(m: &Manifest) -> Known {
        let mut k = Known::default();
        for e in &m.entries {
            k.add(e.kind, &e.path, e.size, e.mtime_ns, e.ino, e.recent, e.hash);
        }
        k
    }

    /// Keeps an entry if it is a file with an object.
    #[allow(clippy::too_many_arguments)]
    fn add(&mut self, kind: Kind, path: &[u8], size: u64, mtime_ns: i64, ino: u64, recent: bool, hash: Option<Hash>) {
        if let (Kind::File, Some(hash)) = (kind, hash) {
            self.paths.extend_from_slice(path);
            self.files.push(KnownFile {
                end: self.paths.len(),
                size,
                mtime_ns,
                ino,
                recent,
                hash,
            });
        }
    }

    /// Each file's path and what was known of it, in path order.
    pub fn files(&self) -> impl Iterator<Item = (&[u8], &KnownFile)> {
        let mut start = 0usize;
        self.files.iter().map(move |f| {
            let p = &self.paths[start..f.end];
            start = f.end;
            (p, f)
        })
    }
}

// --- version 1: JSON ----------------------------------------------------------------

/// The JSON of version 1, read so that existing checkpoints stay restorable.
mod v1 {
    use serde::Deserialize;

    use super::{Entry, Hash, Kind, Manifest};

    #[derive(Deserialize)]
    struct M {
        version: u32,
        root: String,
        entries: Vec<E>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum K {
        File,
        Dir,
        Symlink,
    }

    #[derive(Deserialize)]
    struct E {
        path: String,
        kind: K,
        mode: u32,
        size: u64,
        mtime_ns: i64,
        ino: u64,
        #[serde(default)]
        hash: Option<Hash>,
        #[serde(default)]
        target: Option<String>,
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let m: M = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.version != 1 {
            return Err(format!(
                "format version {} in JSON (JSON manifests are version 1)",
                m.version
            ));
        }
        Ok(Manifest {
            root: m.root.into_bytes(),
            entries: m
                .entries
                .into_iter()
                .map(|e| Entry {
                    path: e.path.into_bytes(),
                    kind: match e.kind {
                        K::File => Kind::File,
                        K::Dir => Kind::Dir,
                        K::Symlink => Kind::Symlink,
                    },
                    mode: e.mode,
                    owner: None,
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    ino: e.ino,
                    hash: e.hash,
                    target: e.target.map(String::into_bytes),
                    rdev: 0,
                    recent: false,
                })
                .collect(),
        })
    }

    /// Writes version 1 as backout did before version 2, for tests that check
    /// old manifests still read and still get refused when unsafe.
    #[cfg(test)]
    pub(crate) fn encode(m: &Manifest) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct MOut<'a> {
            version: u32,
            root: &'a str,
            entries: Vec<EOut<'a>>,
        }
        #[derive(serde::Serialize)]
        struct EOut<'a> {
            path: &'a str,
            kind: &'static str,
            mode: u32,
            size: u64,
            mtime_ns: i64,
            ino: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            hash: Option<Hash>,
            #[serde(skip_serializing_if = "Option::is_none")]
            target: Option<&'a str>,
        }
        fn s(b: &[u8]) -> &str {
            std::str::from_utf8(b).expect("version 1 names are UTF-8")
        }
        let out = MOut {
            version: 1,
            root: s(&m.root),
            entries: m
                .entries
                .iter()
                .map(|e| EOut {
                    path: s(&e.path),
                    kind: match e.kind {
                        Kind::File => "file",
                        Kind::Dir => "dir",
                        Kind::Symlink => "symlink",
                        k => panic!("version 1 has no {k:?}"),
                    },
                    mode: e.mode,
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    ino: e.ino,
                    hash: e.hash,
                    target: e.target.as_deref().map(s),
                })
                .collect(),
        };
        serde_json::to_vec(&out).expect("serializes")
    }
}

#[cfg(test)]
pub(crate) use v1::encode as encode_v1;

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            mode: 0o644,
            owner: None,
            size: data.len() as u64,
            mtime_ns: 1_700_000_000_000_000_000,
            ino: 42,
            hash: Some(Hash::of(data)),
            target: None,
            rdev: 0,
            recent: false,
        }
    }

    fn symlink(path: &str, target: &[u8]) -> Entry {
        Entry {
            kind: Kind::Symlink,
            mode: 0o777,
            size: target.len() as u64,
            hash: None,
            target: Some(target.to_vec()),
            ..file(path, b"")
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

    /// Manifests stored by earlier versions must still read, exactly: this is
    /// the version-1 JSON backout wrote, byte for byte, under its pinned name.
    #[test]
    fn version_1_manifests_still_read() {
        let json = r#"{"version":1,"root":"cfg","entries":[{"path":"cfg","kind":"dir","mode":493,"size":0,"mtime_ns":1700000000000000000,"ino":42},{"path":"cfg/b.txt","kind":"file","mode":420,"size":5,"mtime_ns":1700000000000000000,"ino":42,"hash":"ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"},{"path":"cfg/link","kind":"symlink","mode":511,"size":5,"mtime_ns":1700000000000000000,"ino":42,"target":"b.txt"}]}"#;
        assert_eq!(
            Hash::of(json.as_bytes()).to_hex(),
            "1d47e06efbfb5e52cf9abb2b21cf9e5188f319f91899efc425e3eabf15470957"
        );
        let link = symlink("cfg/link", b"b.txt");
        let want = Manifest::new("cfg", vec![file("cfg/b.txt", b"hello"), link, dir("cfg")]);
        let got = Manifest::decode(json.as_bytes()).unwrap();
        assert_eq!(got, want);
        assert!(got.entries.iter().all(|e| e.owner.is_none()), "version 1 has no owners");
        got.validate().unwrap();
        assert_eq!(
            encode_v1(&want),
            json.as_bytes(),
            "the test encoder writes real version 1"
        );
    }

    /// Manifests already stored must keep their names: this pins the version-2
    /// encoding, with a name that is not UTF-8, an owner, a FIFO and a device.
    #[test]
    fn manifest_encoding_is_pinned() {
        let own = |e: Entry| Entry {
            owner: Some((1000, 100)),
            ..e
        };
        let link = symlink("cfg/link", b"b.txt");
        let fifo = Entry {
            kind: Kind::Fifo,
            size: 0,
            hash: None,
            mtime_ns: -1_500_000_000,
            ..file("cfg/pipe", b"")
        };
        let null = Entry {
            kind: Kind::CharDevice,
            mode: 0o666,
            size: 0,
            hash: None,
            rdev: (1 << 8) | 3,
            ..file("cfg/null", b"")
        };
        let latin1 = Entry {
            path: b"cfg/caf\xe9".to_vec(),
            recent: true,
            ..file("", b"hello")
        };
        let m = Manifest::new(
            "cfg",
            vec![
                own(file("cfg/b.txt", b"hello")),
                own(link),
                own(dir("cfg")),
                own(fifo),
                own(null),
                own(latin1),
            ],
        );
        let bytes = m.encode();
        assert!(bytes.starts_with(MAGIC));
        // The version, then the root's length and bytes.
        assert_eq!(bytes[MAGIC.len()..MAGIC.len() + 5], [2, 3, b'c', b'f', b'g']);
        assert_eq!(
            Hash::of(&bytes).to_hex(),
            "c12a5b98c51423ef34c314f52ef58d4789ea6df4c8c84bccd5c263477944a30e",
            "{bytes:?}"
        );
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        m.validate().unwrap();
        let shown: Vec<_> = m.entries.iter().map(|e| e.shown().into_owned()).collect();
        assert_eq!(
            shown,
            ["cfg", "cfg/b.txt", "cfg/caf\\xe9", "cfg/link", "cfg/null", "cfg/pipe"]
        );
    }

    #[test]
    fn every_cut_or_extended_encoding_is_refused() {
        let m = Manifest::new("a", vec![dir("a"), file("a/x", b"1"), file("a/y", b"2")]);
        let bytes = m.encode();
        for n in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Manifest::decode(&long).is_err());
    }

    #[test]
    fn sorting_puts_parents_first() {
        let m = Manifest::new("a", vec![dir("a/b"), file("a/b-c", b""), file("a/b/c", b""), dir("a")]);
        let order: Vec<_> = m.entries.iter().map(|e| e.shown().into_owned()).collect();
        assert_eq!(order, ["a", "a/b", "a/b-c", "a/b/c"]);
        m.validate().unwrap();
    }

    #[test]
    fn shared_prefixes_are_counted_across_the_sixteen_byte_steps() {
        let base: Vec<u8> = (0..40u8).collect();
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 40] {
            for differ_at in 0..=len {
                let a = &base[..len];
                let mut b = a.to_vec();
                if differ_at < len {
                    b[differ_at] ^= 0xff;
                }
                let naive = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
                assert_eq!(shared_prefix(a, &b), naive, "len {len}, differ at {differ_at}");
                assert_eq!(shared_prefix(a, &base), len);
                assert_eq!(shared_prefix(&base, a), len);
            }
        }
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvar(&mut b, v);
            let mut r = Reader { b: &b };
            assert_eq!(r.uvar().unwrap(), v);
            assert!(r.b.is_empty());
        }
        // 11 bytes, or a 10th byte with more than the top bit: too large.
        assert!(Reader { b: &[0xff; 11] }.uvar().is_err());
        let mut b = vec![0xff; 9];
        b.push(0x02);
        assert!(Reader { b: &b }.uvar().is_err());
    }
}
