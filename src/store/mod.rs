//! The content-addressed object store, `.backout/objects/`.
//!
//! An object is named by the BLAKE3 hash of its content and stored zstd-compressed
//! at `objects/<first 2 hex>/<other 62 hex>`. The same content is stored once,
//! whichever file, path or checkpoint it came from. Manifests ([`manifest`]) are
//! objects too. Every read decompresses and re-hashes, so a damaged object is
//! detected before anything is restored from it.
//!
//! Writes go through a [`Batch`]: each new object is written to a temporary file
//! under `objects/tmp/`; [`Batch::commit`] makes all of them durable (fsync, or
//! one `syncfs` for many), renames each into place and makes the renames durable
//! (fsync of the directories, or a second `syncfs`). [`Batch::sync_ahead`] does
//! the first sync and the renames early, on another thread, for what is
//! written so far.
//! That is "temp file → fsync → rename → fsync the directory" with the fsyncs
//! batched, so a process killed at any moment leaves only stray temporary files
//! (removed by `backout gc`), never a named object with the wrong content.

pub mod fsck;
pub mod manifest;

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// zstd level: 1 is several times faster than the default 3 for a few percent
/// of size, and checkpoints sit on the path of a deploy.
const LEVEL: i32 = 1;

/// zstd level of manifests (see [`Batch::put_manifest`]).
const MANIFEST_LEVEL: i32 = -5;

/// Up to this many new objects, each (and each directory it is renamed into)
/// is fsynced; above it, one `syncfs` before and one after the renames.
const FEW: usize = 16;

thread_local! {
    /// zstd contexts reused across the many small objects one thread handles.
    static CCTX: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
    /// A `getdents` buffer for listing fan-out directories.
    static DENTS: std::cell::RefCell<Vec<std::mem::MaybeUninit<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// From this many hashes to look up, [`Batch::stored_many`] lists the store.
pub const LIST_FROM: usize = 1024;

/// A directory counts as unchanged since a seal only if its ctime is this
/// much older: file systems whose timestamps step by up to a millisecond
/// cannot stamp a change after the seal below it.
const SEAL_MARGIN_NS: i64 = 1_000_000;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The store's clock marker: touched to read the time of the store's own file
/// system (see [`Store::seal_now`]).
const SEAL_MARKER: &str = "seal";

/// Files up to this size are read, hashed and compressed in memory.
const SMALL: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("object {hash} is missing from {dir}")]
    Missing { hash: Hash, dir: PathBuf },
    #[error("object {hash} is corrupt ({path}): {reason}")]
    Corrupt { hash: Hash, path: PathBuf, reason: String },
}

impl StoreError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
        let path = path.to_path_buf();
        move |source| StoreError::Io { op, path, source }
    }
}

/// A BLAKE3 hash: the name of an object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(data: &[u8]) -> Hash {
        Hash(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex digits, for messages.
    pub fn short(self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Hash, String> {
        blake3::Hash::from_hex(s)
            .map(|h| Hash(*h.as_bytes()))
            .map_err(|e| format!("{s:?} is not an object hash: {e}"))
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of object hashes. They are BLAKE3 output, evenly spread already, so
/// the set is keyed by their first 8 bytes instead of SipHash of all 32. An
/// incremental checkpoint of the bench tree builds a set of the store's
/// 24,000 objects and looks up ~49,000 hashes (every reused hash, then every
/// hash of the manifest when it is verified): the lookups were 5% of its CPU
/// samples. Measured alone on the build machine (3 rounds): SipHash 3.6–7.1 ms
/// to build, 3.8–6.7 ms to look up; first bytes 1.4–7.2 ms and 0.5–1.6 ms (a
/// sorted list searched by bisection: 19–55 ms).
pub type Hashes = HashSet<Hash, std::hash::BuildHasherDefault<FirstBytes>>;

/// The [`std::hash::Hasher`] of [`Hashes`]: the first 8 bytes written.
#[derive(Default)]
pub struct FirstBytes(u64);

impl std::hash::Hasher for FirstBytes {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 32]` is written as its length, then its bytes.
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= (*b as u64) << (8 * i);
        }
    }
    fn write_usize(&mut self, _len: usize) {}
}

/// The object store in one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens the store at `dir` (`.backout/objects`), creating it on first use.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fs_err::create_dir_all(dir.join("tmp")).map_err(StoreError::io("creating", dir))?;
        Ok(Store { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where object `hash` lives.
    pub fn path_of(&self, hash: Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    pub fn contains(&self, hash: Hash) -> bool {
        self.path_of(hash).is_file()
    }

    /// Reads object `hash`, checking its content against its name.
    pub fn read(&self, hash: Hash) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.read_into(hash, &mut out)?;
        Ok(out)
    }

    /// Streams object `hash` into `w`, then checks it. On `Err` whatever was
    /// written must be thrown away: the check can only finish at the end.
    pub fn read_into(&self, hash: Hash, w: &mut impl Write) -> Result<u64, StoreError> {
        let path = self.path_of(hash);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    hash,
                    dir: self.dir.clone(),
                });
            }
            Err(e) => return Err(StoreError::io("opening", &path)(e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            hash,
            path: path.clone(),
            reason,
        };
        let check = |got: Hash| {
            if got == hash {
                Ok(())
            } else {
                Err(corrupt(format!("content hashes to {}", got.short())))
            }
        };
        // Small objects (most of a venv) in one piece, with a reused context.
        let len = file.metadata().map_err(StoreError::io("reading", &path))?.len();
        if len <= SMALL {
            let mut packed = Vec::with_capacity(len as usize);
            file.read_to_end(&mut packed)
                .map_err(StoreError::io("reading", &path))?;
            if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(&packed)
                && size <= 8 * SMALL
            {
                let data = DCTX
                    .with(|d| {
                        let mut d = d.borrow_mut();
                        let dctx = match d.as_mut() {
                            Some(c) => c,
                            None => d.insert(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?),
                        };
                        dctx.decompress(&packed, size as usize).map_err(|e| e.to_string())
                    })
                    .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
                check(Hash::of(&data))?;
                w.write_all(&data).map_err(StoreError::io("writing out", &path))?;
                return Ok(data.len() as u64);
            }
            return self.read_stream(hash, &packed[..], w, &corrupt, &check);
        }
        self.read_stream(hash, file, w, &corrupt, &check)
    }

    fn read_stream(
        &self,
        hash: Hash,
        src: impl Read,
        w: &mut impl Write,
        corrupt: &dyn Fn(String) -> StoreError,
        check: &dyn Fn(Hash) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let path = self.path_of(hash);
        let mut dec = zstd::stream::read::Decoder::new(src).map_err(|e| corrupt(e.to_string()))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0u64;
        loop {
            let k = match dec.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(corrupt(format!("cannot decompress: {e}"))),
            };
            hasher.update(&buf[..k]);
            w.write_all(&buf[..k]).map_err(StoreError::io("writing out", &path))?;
            n += k as u64;
        }
        check(Hash(*hasher.finalize().as_bytes()))?;
        Ok(n)
    }

    /// Checks one object without keeping its content.
    pub fn verify(&self, hash: Hash) -> Result<u64, StoreError> {
        self.read_into(hash, &mut std::io::sink())
    }

    /// Every object file in the store (names that are not a hash are skipped),
    /// sorted. The 256 fan-out directories are read on several threads.
    pub fn list(&self) -> Result<Vec<Hash>, StoreError> {
        use rustix::fs::{Mode, OFlags, RawDir};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let top = rustix::fs::open(&self.dir, flags, Mode::empty())
            .map_err(|e| StoreError::io("listing", &self.dir)(e.into()))?;
        let fans: Vec<[u8; 2]> = (0..=255u8)
            .map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]])
            .collect();
        let lists = parallel(&fans, |fan| -> Result<Vec<Hash>, StoreError> {
            let path = || self.dir.join(std::str::from_utf8(fan).expect("hex"));
            let fd = match rustix::fs::openat(&top, &fan[..], flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(Vec::new()),
                Err(e) => return Err(StoreError::io("listing", &path())(e.into())),
            };
            DENTS.with(|buf| {
                let mut buf = buf.borrow_mut();
                if buf.is_empty() {
                    buf.resize(32 << 10, std::mem::MaybeUninit::uninit());
                }
                let mut dir = RawDir::new(&fd, &mut buf[..]);
                let mut out = Vec::new();
                let mut hex = [0u8; 64];
                hex[..2].copy_from_slice(fan);
                while let Some(ent) = dir.next() {
                    let ent = ent.map_err(|e| StoreError::io("listing", &path())(e.into()))?;
                    let name = ent.file_name().to_bytes();
                    if name.len() == 62 {
                        hex[2..].copy_from_slice(name);
                        if let Ok(h) = blake3::Hash::from_hex(hex) {
                            out.push(Hash(*h.as_bytes()));
                        }
                    }
                }
                Ok(out)
            })
        });
        let mut out = Vec::new();
        for l in lists {
            out.extend(l?);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Renames the durable temporary file `from` to object `hash`'s name;
    /// returns the fan-out directory it went into.
    fn name(&self, from: &Path, hash: Hash) -> Result<PathBuf, StoreError> {
        let to = self.path_of(hash);
        let fan = to.parent().expect("objects live in a fan-out directory");
        // The fan-out directory exists but in a young store: try the
        // rename first, rather than a mkdir that fails for most objects.
        match std::fs::rename(from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && from.exists() => {
                fs_err::create_dir_all(fan).map_err(StoreError::io("creating", fan))?;
                fs_err::rename(from, &to).map_err(StoreError::io("renaming into", &to))?;
            }
            Err(e) => return Err(StoreError::io("renaming into", &to)(e)),
        }
        Ok(fan.to_path_buf())
    }

    /// The size on disk of each of `hashes` (0 for one that is gone), looked
    /// up on several threads.
    pub fn sizes(&self, hashes: &[Hash]) -> Vec<u64> {
        parallel(hashes, |h| {
            std::fs::symlink_metadata(self.path_of(*h)).map_or(0, |m| m.len())
        })
    }

    /// Removes object `hash`; used by gc only.
    pub fn remove(&self, hash: Hash) -> Result<u64, StoreError> {
        let path = self.path_of(hash);
        let size = fs_err::metadata(&path).map(|m| m.len()).unwrap_or(0);
        fs_err::remove_file(&path).map_err(StoreError::io("removing", &path))?;
        Ok(size)
    }

    /// Removes temporary files left by interrupted writes; returns how many.
    pub fn clean_tmp(&self) -> Result<usize, StoreError> {
        let tmp = self.dir.join("tmp");
        let mut n = 0;
        for e in fs_err::read_dir(&tmp).map_err(StoreError::io("listing", &tmp))? {
            let e = e.map_err(StoreError::io("listing", &tmp))?;
            fs_err::remove_file(e.path()).map_err(StoreError::io("removing", &e.path()))?;
            n += 1;
        }
        Ok(n)
    }

    /// The time to seal a checkpoint with, once its objects are stored: the
    /// ctime of the store's clock marker, touched now. That is the clock the
    /// file system stamps a changed directory's ctime with (the server's, on
    /// a network file system), so any change to the store after this reads
    /// a ctime at or after it. `None` if the marker cannot be touched (the
    /// next capture then looks every hash up). See [`Batch::stored_since`].
    pub fn seal_now(&self) -> Option<i64> {
        let path = self.dir.join(SEAL_MARKER);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .ok()?;
        let now = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        };
        rustix::fs::futimens(
            &f,
            &rustix::fs::Timestamps {
                last_access: now,
                last_modification: now,
            },
        )
        .ok()?;
        let st = rustix::fs::fstat(&f).ok()?;
        Some(st.st_ctime.saturating_mul(1_000_000_000) + st.st_ctime_nsec as i64)
    }

    /// Which fan-out directories (by first byte) have not changed since `sealed`.
    fn fans_unchanged_since(&self, sealed: i64) -> [bool; 256] {
        let mut out = [false; 256];
        // A clock set back since the seal could stamp a change before it.
        if self.seal_now().is_none_or(|now| now < sealed) {
            return out;
        }
        let Ok(fd) = rustix::fs::open(
            &self.dir,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) else {
            return out;
        };
        for (b, unchanged) in out.iter_mut().enumerate() {
            let name = [HEX[b >> 4], HEX[b & 15]];
            if let Ok(st) = rustix::fs::statat(&fd, &name[..], rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                && rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
            {
                let ctime = st.st_ctime.saturating_mul(1_000_000_000) + st.st_ctime_nsec as i64;
                // A file system that keeps whole seconds (nanoseconds 0) or
                // coarser steps than a millisecond could stamp a later change
                // below the seal: such directories are looked at.
                *unchanged = st.st_ctime_nsec != 0 && ctime < sealed - SEAL_MARGIN_NS;
            }
        }
        out
    }

    /// Starts a set of writes made durable together by [`Batch::commit`].
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            pending: Mutex::new(Vec::new()),
            seen: Mutex::new(Hashes::default()),
            present: Mutex::new(Hashes::default()),
            listing: std::sync::OnceLock::new(),
            written: Mutex::new(Hashes::default()),
            dir_fd: std::sync::OnceLock::new(),
            counter: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            ahead: Mutex::new(None),
            fans: Mutex::new(None),
        }
    }
}

/// A `syncfs` started by [`Batch::sync_ahead`]: it makes durable the objects
/// pending when it began (their writes had all returned), then names them;
/// it returns their hashes.
#[derive(Debug)]
struct Ahead {
    done: std::thread::JoinHandle<Result<Vec<Hash>, StoreError>>,
}

/// Objects written but not yet durable and named.
///
/// The batch also remembers which objects it found already stored and which it
/// wrote, so a checkpoint can check that everything its manifests name is in
/// the store without listing the store (see [`Batch::is_stored`]).
#[derive(Debug)]
pub struct Batch<'s> {
    store: &'s Store,
    pending: Mutex<Vec<(PathBuf, Hash)>>,
    /// Every hash this batch was asked to store or found reusable.
    seen: Mutex<Hashes>,
    /// Hashes found already in the store one by one.
    present: Mutex<Hashes>,
    /// Every object in the store, once many had to be looked up (see
    /// [`Batch::stored_many`]); `None` if the store could not be listed.
    listing: std::sync::OnceLock<Option<Hashes>>,
    /// Hashes this batch wrote and [`Batch::commit`] named.
    written: Mutex<Hashes>,
    /// The store directory, for existence checks relative to it.
    dir_fd: std::sync::OnceLock<Option<std::os::fd::OwnedFd>>,
    counter: AtomicU64,
    stored: AtomicU64,
    /// The sync started ahead of [`Batch::commit`], if any.
    ahead: Mutex<Option<Ahead>>,
    /// The fan-out directories unchanged since a seal (see
    /// [`Batch::look_at_fans`]).
    fans: Mutex<Option<Fans>>,
}

/// A look at the fan-out directories for a seal: under way, or its answer.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "one per batch, never moved in a loop")]
enum Fans {
    Looking(i64, std::thread::JoinHandle<[bool; 256]>),
    Seen(i64, [bool; 256]),
}

impl Batch<'_> {
    pub fn store(&self) -> &Store {
        self.store
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.store.dir.join("tmp").join(format!("{}-{n}", std::process::id()))
    }

    /// Whether object `hash` was named in the store before this batch's commit:
    /// from the store's listing once one was taken ([`Batch::stored_many`]),
    /// else one `stat` relative to the store directory. The caller holds the
    /// lock, so nothing else adds or removes objects meanwhile; this batch's
    /// own objects are named only once durable ([`Batch::sync_ahead`],
    /// [`Batch::commit`]), and are found stored from then on.
    pub fn stored_before(&self, hash: Hash) -> bool {
        if let Some(Some(all)) = self.listing.get() {
            return all.contains(&hash);
        }
        if self.present.lock().expect("poisoned").contains(&hash) {
            return true;
        }
        let fd = self.dir_fd();
        let hex = hash.to_hex();
        let mut rel = [0u8; 65];
        rel[..2].copy_from_slice(&hex.as_bytes()[..2]);
        rel[2] = b'/';
        rel[3..].copy_from_slice(&hex.as_bytes()[2..]);
        let found = match fd {
            Some(fd) => rustix::fs::statat(fd, &rel[..], rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile),
            None => self.store.contains(hash),
        };
        if found {
            self.present.lock().expect("poisoned").insert(hash);
        }
        found
    }

    /// Which of `hashes` are in the store. Many are answered from one listing
    /// of the store (read on several threads, about half a microsecond an
    /// object), a few with a `stat` each (about one and a half): an
    /// incremental capture of a large tree checks every reused hash this way.
    pub fn stored_many(&self, hashes: &[Hash]) -> Vec<bool> {
        if hashes.len() >= LIST_FROM && self.list_store() {
            return hashes.iter().map(|h| self.stored_before(*h)).collect();
        }
        parallel(hashes, |h| self.stored_before(*h))
    }

    /// Which of `hashes` are in the store, where every one of them is named
    /// by a complete checkpoint sealed at `sealed` (see [`Store::seal_now`]).
    ///
    /// That checkpoint found each of its objects stored. One can only have
    /// gone since by its fan-out directory changing, and the kernel stamps a
    /// changed directory's ctime with the time of the change. So the hashes
    /// in a directory whose ctime is still older than the seal are stored,
    /// without a lookup: one `stat` for each of the 256 directories instead of
    /// listing them all (~45 ms of CPU for the bench tree's 24,000 objects,
    /// on the path of every incremental checkpoint). The others are looked
    /// up as by [`Batch::stored_many`].
    pub fn stored_since(&self, hashes: &[Hash], sealed: i64) -> Vec<bool> {
        let unchanged = match self.fans_seen() {
            Some((at, fans)) if at == sealed => fans,
            _ => self.store.fans_unchanged_since(sealed),
        };
        let (kept, rest): (Vec<usize>, Vec<usize>) =
            (0..hashes.len()).partition(|&i| unchanged[hashes[i].0[0] as usize]);
        tracing::debug!(kept = kept.len(), looked_up = rest.len(), "stored since the seal");
        self.present
            .lock()
            .expect("poisoned")
            .extend(kept.iter().map(|&i| hashes[i]));
        let mut out = vec![true; hashes.len()];
        let others: Vec<Hash> = rest.iter().map(|&i| hashes[i]).collect();
        for (i, stored) in rest.into_iter().zip(self.stored_many(&others)) {
            out[i] = stored;
        }
        out
    }

    /// Starts looking, on a thread of its own, at which fan-out directories
    /// have not changed since `sealed`, for [`Batch::stored_since`] to use
    /// later; the batch names none of its objects before the look is done.
    /// Naming one changes its directory's ctime, and every hash in a changed
    /// directory is looked up: looked at after the 234 objects of the bench
    /// tree's incremental checkpoint were named, ~150 of the 256 directories
    /// had changed, and 1,000-6,000 lookups took 5-40 ms.
    pub fn look_at_fans(&self, sealed: i64) {
        let mut fans = self.fans.lock().expect("poisoned");
        if fans.is_none() {
            let store = self.store.clone();
            *fans = Some(Fans::Looking(
                sealed,
                std::thread::spawn(move || store.fans_unchanged_since(sealed)),
            ));
        }
    }

    /// The look [`Batch::look_at_fans`] started, once done: its seal and answer.
    fn fans_seen(&self) -> Option<(i64, [bool; 256])> {
        let mut fans = self.fans.lock().expect("poisoned");
        let (at, seen) = match fans.take()? {
            Fans::Looking(at, h) => (at, h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
            Fans::Seen(at, seen) => (at, seen),
        };
        *fans = Some(Fans::Seen(at, seen));
        Some((at, seen))
    }

    /// The store directory, for lookups relative to it.
    fn dir_fd(&self) -> Option<&std::os::fd::OwnedFd> {
        self.dir_fd
            .get_or_init(|| {
                rustix::fs::open(
                    &self.store.dir,
                    rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .ok()
            })
            .as_ref()
    }

    /// Lists the store once for [`Batch::stored_before`] (a caller that knows
    /// many lookups are coming may start it early, on another thread).
    /// False if the store cannot be listed (each lookup is a `stat` then).
    pub fn list_store(&self) -> bool {
        self.listing
            .get_or_init(|| {
                let t = std::time::Instant::now();
                let l = self.store.list().ok().map(Hashes::from_iter);
                tracing::debug!(
                    objects = l.as_ref().map_or(0, Hashes::len),
                    ms = t.elapsed().as_millis() as u64,
                    "listed the store"
                );
                l
            })
            .is_some()
    }

    /// Whether this batch knows `hash` to be stored: found in the store, or
    /// written and named by [`Batch::commit`]. Anything else is checked on disk.
    pub fn is_stored(&self, hash: Hash) -> bool {
        self.written.lock().expect("poisoned").contains(&hash) || self.stored_before(hash)
    }

    /// The first of `hashes` that [`Batch::is_stored`] would deny, with its
    /// index. The batch's sets are locked once for all of them, not twice
    /// for each: a checkpoint checks every file of its manifests this way
    /// (26,000 on the bench tree, ~2.5 ms one by one).
    pub fn first_missing(&self, hashes: impl Iterator<Item = (usize, Hash)>) -> Option<(usize, Hash)> {
        let mut unknown = Vec::new();
        {
            let written = self.written.lock().expect("poisoned");
            let present = self.present.lock().expect("poisoned");
            let listed = match self.listing.get() {
                Some(Some(all)) => Some(all),
                _ => None,
            };
            for (i, h) in hashes {
                if !(written.contains(&h) || present.contains(&h) || listed.is_some_and(|all| all.contains(&h))) {
                    unknown.push((i, h));
                }
            }
        }
        unknown.into_iter().find(|&(_, h)| !self.stored_before(h))
    }

    /// Claims `hash` for this batch: false when it is already stored or pending.
    fn claim(&self, hash: Hash) -> bool {
        if !self.seen.lock().expect("poisoned").insert(hash) {
            return false;
        }
        !self.stored_before(hash)
    }

    fn write_tmp(&self, hash: Hash, compressed: &[u8]) -> Result<(), StoreError> {
        let tmp = self.tmp_path();
        fs_err::write(&tmp, compressed).map_err(StoreError::io("writing", &tmp))?;
        self.stored.fetch_add(compressed.len() as u64, Ordering::Relaxed);
        self.pending.lock().expect("poisoned").push((tmp, hash));
        Ok(())
    }

    /// Stores a manifest's encoding; returns its hash. A manifest's bytes are
    /// mostly hashes, which do not compress: on the bench tree's (1.49 MB),
    /// zstd's level 1 gives 1.09 MB at 330 MB/s, level -1 the same at 580
    /// MB/s, level -5 (`MANIFEST_LEVEL`) 1.16 MB at 1,000 MB/s (`zstd -b`).
    /// The manifest is compressed after the walk, on the path of every
    /// checkpoint, so the fastest of them that still saves a fifth.
    pub fn put_manifest(&self, data: &[u8]) -> Result<Hash, StoreError> {
        self.put_with(data, |data| zstd::bulk::compress(data, MANIFEST_LEVEL))
    }

    /// Stores `data`; returns its hash.
    pub fn put(&self, data: &[u8]) -> Result<Hash, StoreError> {
        self.put_with(data, |data| {
            CCTX.with(|c| {
                let mut c = c.borrow_mut();
                let cctx = match c.as_mut() {
                    Some(c) => c,
                    None => c.insert(zstd::bulk::Compressor::new(LEVEL)?),
                };
                cctx.compress(data)
            })
        })
    }

    /// Stores `data` compressed by `compress`, unless it is stored already.
    fn put_with(
        &self,
        data: &[u8],
        compress: impl FnOnce(&[u8]) -> std::io::Result<Vec<u8>>,
    ) -> Result<Hash, StoreError> {
        let hash = Hash::of(data);
        if self.claim(hash) {
            let c = compress(data).map_err(StoreError::io("compressing", &self.store.dir))?;
            self.write_tmp(hash, &c)?;
        }
        Ok(hash)
    }

    /// Stores what `file` (at `path`, for messages) holds; returns its hash and size.
    pub fn put_file(&self, file: &mut File, path: &Path, size_hint: u64) -> Result<(Hash, u64), StoreError> {
        if size_hint <= SMALL {
            let mut data = Vec::with_capacity(size_hint as usize);
            file.read_to_end(&mut data).map_err(StoreError::io("reading", path))?;
            let n = data.len() as u64;
            return Ok((self.put(&data)?, n));
        }
        // Large: hash and compress in one pass into a temporary file, then
        // drop it if the content turns out to be stored already.
        let tmp = self.tmp_path();
        let out = File::create(&tmp).map_err(StoreError::io("creating", &tmp))?;
        let mut enc = zstd::stream::write::Encoder::new(out, LEVEL).map_err(StoreError::io("compressing", path))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("reading", path)(e)),
            };
            hasher.update(&buf[..k]);
            enc.write_all(&buf[..k]).map_err(StoreError::io("writing", &tmp))?;
            n += k as u64;
        }
        enc.finish().map_err(StoreError::io("writing", &tmp))?;
        let hash = Hash(*hasher.finalize().as_bytes());
        if self.claim(hash) {
            let len = fs_err::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
            self.stored.fetch_add(len, Ordering::Relaxed);
            self.pending.lock().expect("poisoned").push((tmp, hash));
        } else {
            fs_err::remove_file(&tmp).map_err(StoreError::io("removing", &tmp))?;
        }
        Ok((hash, n))
    }

    /// Compressed bytes this batch added to the store so far.
    pub fn stored_bytes(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Starts making the objects written so far durable, then naming them,
    /// on another thread, while the caller goes on (a capture merges its walk
    /// and encodes and writes its manifest meanwhile). [`Batch::commit`]
    /// waits for it, syncs and names only what came after, and makes all the
    /// names durable. Does nothing for a few objects, which the commit fsyncs
    /// one by one, or once one is started.
    pub fn sync_ahead(&self) {
        let mut ahead = self.ahead.lock().expect("poisoned");
        let mut pending = self.pending.lock().expect("poisoned");
        let covers = pending.len();
        if ahead.is_some() || covers <= FEW {
            return;
        }
        // Every write of these objects has returned (they are pushed once
        // written), so a syncfs that begins after this point makes them
        // durable; only then are they named.
        let objects = std::mem::take(&mut *pending);
        drop(pending);
        // Nothing is named before the fan-out directories were looked at.
        self.fans_seen();
        let store = self.store.clone();
        let done = std::thread::spawn(move || {
            let tmp = store.dir.join("tmp");
            let fd = File::open(&tmp).map_err(StoreError::io("opening", &tmp))?;
            rustix::fs::syncfs(&fd).map_err(|e| StoreError::io("syncing", &tmp)(e.into()))?;
            // One thread: the renames (~5 ms for 234 objects) are off the
            // caller's path, which needs the cores meanwhile.
            for (from, hash) in &objects {
                store.name(from, *hash)?;
            }
            Ok(objects.into_iter().map(|(_, h)| h).collect())
        });
        *ahead = Some(Ahead { done });
    }

    /// Makes every object of the batch durable and visible under its name.
    /// Returns the compressed bytes the batch added. Objects put after a commit
    /// wait for the next one.
    pub fn commit(&self) -> Result<u64, StoreError> {
        self.commit_then(|| ()).map(|(n, ())| n)
    }

    /// [`Batch::commit`], running `meanwhile` once every object is named,
    /// while the sync that makes the names durable is under way: a checkpoint
    /// reads back and checks what it stored meanwhile (4-5 ms of CPU on the
    /// bench tree, where the disk kept the CPU idle before). Returns what
    /// `meanwhile` returned too; the commit has failed if the sync failed.
    pub fn commit_then<T>(&self, meanwhile: impl FnOnce() -> T) -> Result<(u64, T), StoreError> {
        let ahead = self.ahead.lock().expect("poisoned").take();
        let pending = std::mem::take(&mut *self.pending.lock().expect("poisoned"));
        let dir = &self.store.dir;
        let tmp = dir.join("tmp");
        if pending.is_empty() && ahead.is_none() {
            return Ok((self.stored.load(Ordering::Relaxed), meanwhile()));
        }
        // Every temporary file is durable before any is named. A few are
        // fsynced each; many go faster with one syncfs (measured on the bench
        // tree: 234 objects took ~400 ms as fsyncs, ~20 ms as one syncfs). But
        // syncfs also flushes unrelated dirty data, such as a restore's staged
        // files behind its safety checkpoint, so small batches avoid it. This
        // runs while a sync started ahead may still be on: a capture's
        // manifest is made durable meanwhile.
        let tmp_fd = File::open(&tmp).map_err(StoreError::io("opening", &tmp))?;
        if pending.len() <= FEW {
            for (from, _) in &pending {
                File::open(from)
                    .and_then(|f| f.sync_data())
                    .map_err(StoreError::io("syncing", from))?;
            }
        } else {
            rustix::fs::syncfs(&tmp_fd).map_err(|e| StoreError::io("syncing", &tmp)(e.into()))?;
        }
        // What a sync started ahead covered is durable and named, once it ends.
        let named_ahead = match ahead {
            Some(a) => {
                let named = a.done.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
                self.written.lock().expect("poisoned").extend(named.iter().copied());
                named.len()
            }
            None => 0,
        };
        self.fans_seen();
        // On several threads: objects go to 256 directories, each renamed
        // under its own directory's lock (234 renames: ~5 ms on one thread).
        let renamed = parallel(&pending, |(from, hash)| self.store.name(from, *hash));
        let mut fans = std::collections::BTreeSet::new();
        for fan in renamed {
            fans.insert(fan?);
        }
        self.written
            .lock()
            .expect("poisoned")
            .extend(pending.iter().map(|(_, h)| *h));
        // Then the renames: one directory fsync each for a few, else one more syncfs.
        let sync_names = || -> Result<(), StoreError> {
            if pending.len() + named_ahead <= FEW {
                for fan in fans.iter().chain(std::iter::once(dir)) {
                    let d = File::open(fan).map_err(StoreError::io("opening", fan))?;
                    d.sync_all().map_err(StoreError::io("syncing", fan))?;
                }
                Ok(())
            } else {
                rustix::fs::syncfs(&tmp_fd).map_err(|e| StoreError::io("syncing", dir)(e.into()))
            }
        };
        let (synced, out) = std::thread::scope(|s| {
            let sync = s.spawn(sync_names);
            let out = meanwhile();
            (sync.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), out)
        });
        synced?;
        Ok((self.stored.load(Ordering::Relaxed), out))
    }
}

/// Where long captures, restores and checks report how far they are. The CLI
/// draws a progress bar from it; domain code never prints.
pub trait Progress: Sync {
    /// A new stage with its totals (0 when unknown).
    fn begin(&self, _what: &str, _files: u64, _bytes: u64) {}
    fn advance(&self, _files: u64, _bytes: u64) {}
    fn end(&self) {}
}

/// No progress reporting.
impl Progress for () {}

/// The cores this process may use (2 if unknown). Asked once: the standard
/// library reads the cgroup's CPU quota files each time (three `open`s).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Runs `f` on every item using every core (up to 4), keeping the order of results.
pub fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    parallel_ahead(items, 0, |_| {}, f)
}

/// Like [`parallel`], and `ahead` is called on the items in order on one more
/// thread, up to `window` items before the workers take them (not at all with
/// a window of 0). Reading files, `ahead` asks the kernel to start reading one
/// (`posix_fadvise(WILLNEED)`): files whose pages have left the page cache are
/// then read from the disk many at a time, not one per worker.
pub fn parallel_ahead<T: Sync, R: Send>(
    items: &[T],
    window: usize,
    ahead: impl Fn(&T) + Sync,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = cores().clamp(1, 4);
    if items.len() < 2 || threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicU64::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        if window > 0 {
            s.spawn(|| {
                for (i, item) in items.iter().enumerate() {
                    loop {
                        let taken = next.load(Ordering::Relaxed) as usize;
                        if taken >= items.len() {
                            return;
                        }
                        if i < taken + window {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    ahead(item);
                }
            });
        }
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if i >= items.len() {
                            break mine;
                        }
                        mine.push((i, f(&items[i])));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object format is a promise to every existing `.backout/objects`:
    /// these names must never change.
    #[test]
    fn object_names_are_pinned() {
        assert_eq!(
            Hash::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let b = store.batch();
        let h = b.put(b"hello").unwrap();
        b.commit().unwrap();
        assert_eq!(
            h.to_hex(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        let on_disk = store
            .dir()
            .join("ea")
            .join("8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f");
        let raw = std::fs::read(on_disk).unwrap();
        assert_eq!(zstd::decode_all(&raw[..]).unwrap(), b"hello", "a plain zstd frame");
        assert_eq!(store.read(h).unwrap(), b"hello");
    }

    /// What a checkpoint's verification asks: found stored, or written and
    /// named by this batch, or else looked up on disk, in one call.
    #[test]
    fn first_missing_names_the_first_hash_neither_stored_nor_written() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("objects")).unwrap();
        let b = store.batch();
        let old = b.put(b"stored before").unwrap();
        b.commit().unwrap();
        let b = store.batch();
        let new = b.put(b"written by this batch").unwrap();
        b.commit().unwrap();
        let absent = Hash::of(b"never stored");
        let all = [old, new, absent, old];
        assert_eq!(b.first_missing(all.iter().copied().enumerate()), Some((2, absent)));
        assert_eq!(b.first_missing([old, new].into_iter().enumerate()), None);
        // Removed behind the batch's back before it looked: missing.
        let c = store.batch();
        std::fs::remove_file(store.path_of(old)).unwrap();
        assert_eq!(c.first_missing([new, old].into_iter().enumerate()), Some((1, old)));
    }

    #[test]
    fn same_content_is_stored_once() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let b = store.batch();
        let h1 = b.put(b"same").unwrap();
        let h2 = b.put(b"same").unwrap();
        b.commit().unwrap();
        assert_eq!(h1, h2);
        let b = store.batch();
        b.put(b"same").unwrap();
        assert_eq!(b.commit().unwrap(), 0, "already stored: nothing written");
        assert_eq!(store.list().unwrap(), vec![h1]);
    }

    #[test]
    fn large_files_stream_and_dedup() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("objects")).unwrap();
        let data: Vec<u8> = (0..(SMALL as usize + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let src = d.path().join("big");
        std::fs::write(&src, &data).unwrap();
        let b = store.batch();
        let (h, n) = b.put_file(&mut File::open(&src).unwrap(), &src, n_of(&data)).unwrap();
        let (h2, _) = b.put_file(&mut File::open(&src).unwrap(), &src, n_of(&data)).unwrap();
        b.commit().unwrap();
        assert_eq!((h, n), (Hash::of(&data), n_of(&data)));
        assert_eq!(h, h2);
        assert_eq!(store.read(h).unwrap(), data);
        assert_eq!(std::fs::read_dir(store.dir().join("tmp")).unwrap().count(), 0);
    }

    /// Many lookups are answered from one listing, a few with a stat each:
    /// the same answers either way.
    #[test]
    fn stored_many_lists_or_stats() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let b = store.batch();
        let stored: Vec<Hash> = (0..LIST_FROM as u32)
            .map(|i| b.put(&i.to_le_bytes()).unwrap())
            .collect();
        b.commit().unwrap();
        let absent: Vec<Hash> = (0..10u32).map(|i| Hash::of(&((i + 1) << 20).to_le_bytes())).collect();
        let all: Vec<Hash> = stored.iter().chain(&absent).copied().collect();
        let want: Vec<bool> = all.iter().map(|h| stored.contains(h)).collect();
        let few = store.batch();
        assert_eq!(few.stored_many(&all[LIST_FROM - 5..]), want[LIST_FROM - 5..]);
        assert!(few.listing.get().is_none(), "a few: no listing");
        let many = store.batch();
        assert_eq!(many.stored_many(&all), want);
        assert!(
            many.listing
                .get()
                .is_some_and(|l| l.as_ref().unwrap().len() == LIST_FROM)
        );
        assert_eq!(store.list().unwrap().len(), LIST_FROM);
    }

    /// A sync started ahead covers what was written before it; what comes
    /// after (a manifest) is synced by the commit; all of it is named.
    /// A sealed checkpoint's objects are trusted where their directory has
    /// not changed since the seal; one removed behind the batch's back
    /// changes its directory, so it is looked up and found missing.
    #[test]
    fn stored_since_trusts_only_directories_unchanged_since_the_seal() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let before_commit = store.seal_now().unwrap();
        let b = store.batch();
        let objs: Vec<Hash> = (0..64u32).map(|i| b.put(&i.to_le_bytes()).unwrap()).collect();
        b.commit().unwrap();
        let fans: std::collections::BTreeSet<u8> = objs.iter().map(|h| h.0[0]).collect();
        // Past the margin and a clock tick after the commit's renames.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let sealed = store.seal_now().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));

        let unchanged = store.fans_unchanged_since(sealed);
        assert!(
            fans.iter().all(|&f| unchanged[f as usize]),
            "every directory written before the seal"
        );
        let b = store.batch();
        assert_eq!(b.stored_since(&objs, sealed), vec![true; objs.len()]);
        assert!(b.listing.get().is_none() && b.is_stored(objs[0]), "trusted, not listed");

        // Removed after the seal: its directory changed; the others did not.
        let gone = objs[0];
        std::fs::remove_file(store.path_of(gone)).unwrap();
        let unchanged = store.fans_unchanged_since(sealed);
        assert!(!unchanged[gone.0[0] as usize]);
        let others: Vec<u8> = fans.iter().copied().filter(|&f| f != gone.0[0]).collect();
        assert!(others.iter().all(|&f| unchanged[f as usize]));
        let want: Vec<bool> = objs.iter().map(|h| *h != gone).collect();
        assert_eq!(store.batch().stored_since(&objs, sealed), want);

        // A seal from before the commit, or one the clock has not reached
        // yet (set back since), vouches for nothing. (The one before the
        // commit is a real one: a fixed 60 ms before the seal failed once
        // under the full suite, when the 30 ms sleep above took longer.)
        assert!(!store.fans_unchanged_since(before_commit).iter().any(|&u| u));
        assert!(
            !store
                .fans_unchanged_since(store.seal_now().unwrap() + 3_600_000_000_000)
                .iter()
                .any(|&u| u)
        );
    }

    /// A capture names objects of its own before it asks which of the
    /// previous checkpoint's are stored: looked at before, the directories it
    /// wrote into still vouch for what they held at the seal; looked at after,
    /// they do not (and the hashes are looked up: the same answers, slower).
    #[test]
    fn fans_looked_at_before_naming_stay_trusted() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let b = store.batch();
        // Enough that looking them up would list the store.
        let old: Vec<Hash> = (0..LIST_FROM as u32 * 2)
            .map(|i| b.put(&i.to_le_bytes()).unwrap())
            .collect();
        b.commit().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let sealed = store.seal_now().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));

        let b = store.batch();
        b.look_at_fans(sealed);
        // New objects in the same directories as old ones, named ahead.
        let new: Vec<Hash> = (0..4096u32)
            .map(|i| b.put(&((i + 1) << 20).to_le_bytes()).unwrap())
            .collect();
        b.sync_ahead();
        b.ahead.lock().unwrap().take().unwrap().done.join().unwrap().unwrap();
        let touched: std::collections::BTreeSet<u8> = new.iter().map(|h| h.0[0]).collect();
        assert!(
            old.iter().all(|h| touched.contains(&h.0[0])),
            "every old directory written to"
        );
        assert!(
            store.fans_unchanged_since(sealed).iter().all(|&u| !u),
            "looked at now, every directory changed"
        );
        assert_eq!(b.stored_since(&old, sealed), vec![true; old.len()]);
        assert!(b.listing.get().is_none(), "trusted, not looked up");
        let late = store.batch();
        assert_eq!(late.stored_since(&old, sealed), vec![true; old.len()]);
        assert!(late.listing.get().is_some(), "looked up");
    }

    #[test]
    fn sync_ahead_then_commit_names_everything() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let b = store.batch();
        b.sync_ahead();
        assert!(b.ahead.lock().unwrap().is_none(), "nothing pending: no sync");
        let early: Vec<Hash> = (0..FEW as u32 * 2).map(|i| b.put(&i.to_le_bytes()).unwrap()).collect();
        b.sync_ahead();
        assert!(b.ahead.lock().unwrap().is_some());
        assert!(b.pending.lock().unwrap().is_empty(), "the sync ahead took them");
        b.sync_ahead();
        let late = b.put(b"the manifest, written while the sync runs").unwrap();
        b.commit().unwrap();
        assert!(b.ahead.lock().unwrap().is_none());
        for h in early.iter().chain([&late]) {
            assert!(b.is_stored(*h));
            assert!(store.contains(*h));
        }
        assert_eq!(store.list().unwrap().len(), early.len() + 1);
        assert_eq!(std::fs::read_dir(store.dir().join("tmp")).unwrap().count(), 0);
    }

    fn n_of(d: &[u8]) -> u64 {
        d.len() as u64
    }

    #[test]
    fn damage_is_reported_on_read() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let b = store.batch();
        let h = b.put(b"precious content").unwrap();
        b.commit().unwrap();
        let p = store.path_of(h);
        let mut raw = std::fs::read(&p).unwrap();
        let last = raw.len() - 5;
        raw[last] ^= 0x40;
        std::fs::write(&p, &raw).unwrap();
        assert!(matches!(store.read(h), Err(StoreError::Corrupt { .. })));
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(store.read(h), Err(StoreError::Missing { .. })));
    }
}
