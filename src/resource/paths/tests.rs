//! Round trips: restore(checkpoint(tree)) == tree, byte for byte and mode for
//! mode, for hand-picked and random trees and edits.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, lchown, symlink};
use std::path::Path;

use proptest::prelude::*;

use super::*;

/// Everything restore promises to put back about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Dir {
        mode: u32,
        mtime: i64,
        owner: (u32, u32),
    },
    File {
        mode: u32,
        mtime: i64,
        owner: (u32, u32),
        data: Vec<u8>,
    },
    Link {
        target: Vec<u8>,
        mtime: i64,
        owner: (u32, u32),
    },
    Fifo {
        mode: u32,
        mtime: i64,
        owner: (u32, u32),
    },
    Dev {
        block: bool,
        rdev: u64,
        mode: u32,
        mtime: i64,
        owner: (u32, u32),
    },
    Socket,
}

/// The tree under `root/rel`, read with plain std calls (not the code under
/// test), keyed by path bytes.
pub(super) fn snapshot(root: &Path, rel: &str) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let top = root.join(rel);
    if std::fs::symlink_metadata(&top).is_err() {
        return out;
    }
    for e in walkdir::WalkDir::new(&top) {
        let e = e.unwrap();
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        let key = e.path().strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
        let mode = md.mode() & 0o7777;
        let owner = (md.uid(), md.gid());
        let ft = md.file_type();
        let node = if ft.is_symlink() {
            Node::Link {
                target: std::fs::read_link(e.path()).unwrap().as_os_str().as_bytes().to_vec(),
                mtime,
                owner,
            }
        } else if ft.is_dir() {
            Node::Dir { mode, mtime, owner }
        } else if ft.is_fifo() {
            Node::Fifo { mode, mtime, owner }
        } else if ft.is_char_device() || ft.is_block_device() {
            Node::Dev {
                block: ft.is_block_device(),
                rdev: md.rdev(),
                mode,
                mtime,
                owner,
            }
        } else if ft.is_socket() {
            Node::Socket
        } else {
            Node::File {
                mode,
                mtime,
                owner,
                data: std::fs::read(e.path()).unwrap(),
            }
        };
        out.insert(key, node);
    }
    out
}

pub(super) struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let store = Store::open(&dir.path().join("objects")).unwrap();
        Fixture { dir, store }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn capture_all(&self, rel: &str, prev: Option<&Manifest>) -> Captured {
        self.capture_sealed(rel, prev, None)
    }

    /// [`Fixture::capture_all`] after a checkpoint `sealed` at that time.
    pub fn capture_sealed(&self, rel: &str, prev: Option<&Manifest>, sealed: Option<i64>) -> Captured {
        let b = self.store.batch();
        // As checkpoints do: the previous manifest read from the store while
        // the tree is walked.
        let load = || prev.map(|m| Known::load(&self.store, Hash::of(&m.encode())).unwrap());
        let prev = match prev {
            Some(m) => Previous::Lazy {
                files: m.entries.len() as u64,
                sealed,
                load: &load,
            },
            None => Previous::None,
        };
        let c = capture(&self.root(), rel, prev, &b, &()).unwrap();
        b.commit().unwrap();
        c
    }

    pub fn capture(&self, rel: &str, prev: Option<&Manifest>) -> (PathState, Manifest) {
        let c = self.capture_all(rel, prev);
        (c.state, c.manifest)
    }

    pub fn restore(&self, state: &PathState) -> Result<Vec<Change>, PathsError> {
        let p = plan(&self.store, &self.root(), state, None, &())?;
        let staged = p.prepare(&self.store, &self.dir.path().join("scratch"), &())?;
        staged.commit(&())
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_venv_like_tree_comes_back_exactly() {
    let f = Fixture::new();
    let r = f.root();
    write(&r, "venv/bin/python3", b"#!/bin/sh\nexec python\n", 0o755);
    write(&r, "venv/lib/site/pkg/__init__.py", b"", 0o644);
    write(&r, "venv/lib/site/pkg/data.bin", &[0, 159, 146, 150, 255, 0, 1], 0o600);
    write(&r, "venv/lib/site/pkg/копия.py", b"x = 1\n", 0o644);
    write(&r, "venv/lib/site/pkg/dup.py", b"x = 1\n", 0o644);
    std::fs::create_dir_all(r.join("venv/empty")).unwrap();
    symlink("python3", r.join("venv/bin/python")).unwrap();
    symlink("/usr/bin/env", r.join("venv/bin/abs")).unwrap();
    symlink("../../nowhere", r.join("venv/bin/dangling")).unwrap();
    let before = snapshot(&r, "venv");
    let (state, m) = f.capture("venv", None);
    assert_eq!(state.files, 5);
    // Same content once in the store: 4 distinct contents + the manifest.
    assert_eq!(f.store.list().unwrap().len(), 5, "{:?}", m.entries);

    std::fs::write(r.join("venv/bin/python3"), b"changed").unwrap();
    std::fs::set_permissions(
        r.join("venv/lib/site/pkg/data.bin"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    std::fs::remove_dir_all(r.join("venv/lib/site")).unwrap();
    std::fs::remove_file(r.join("venv/bin/python")).unwrap();
    std::fs::create_dir(r.join("venv/bin/python")).unwrap();
    write(&r, "venv/bin/python/inside", b"in the way", 0o644);
    std::fs::remove_dir(r.join("venv/empty")).unwrap();
    symlink("/", r.join("venv/empty")).unwrap();
    write(&r, "venv/new-file", b"not in the checkpoint", 0o644);

    let changes = f.restore(&state).unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.action == Action::Remove && c.path == b"venv/new-file")
    );
    assert_eq!(snapshot(&r, "venv"), before);
    let again = plan(&f.store, &r, &state, None, &()).unwrap();
    assert!(again.is_noop(), "{:?}", again.changes);
}

#[test]
fn a_path_that_did_not_exist_is_removed_and_a_single_file_works() {
    let f = Fixture::new();
    let r = f.root();
    let (absent, _) = f.capture("gone/deeper", None);
    write(&r, "requirements.txt", b"flask==2.3.3\n", 0o644);
    let (req, _) = f.capture("requirements.txt", None);
    write(&r, "gone/deeper/x", b"x", 0o644);
    std::fs::write(r.join("requirements.txt"), b"flask==3.0\n").unwrap();
    f.restore(&absent).unwrap();
    assert!(!r.join("gone/deeper").exists());
    assert!(r.join("gone").is_dir(), "only the captured path is removed");
    let before = std::fs::read(r.join("requirements.txt")).unwrap();
    assert_eq!(before, b"flask==3.0\n");
    f.restore(&req).unwrap();
    assert_eq!(std::fs::read(r.join("requirements.txt")).unwrap(), b"flask==2.3.3\n");
    std::fs::remove_file(r.join("requirements.txt")).unwrap();
    f.restore(&req).unwrap();
    assert_eq!(std::fs::read(r.join("requirements.txt")).unwrap(), b"flask==2.3.3\n");
}

/// Regression (issue 17): a package and its dist-info added since the
/// checkpoint. `pkg-1.0.dist-info` sorts between `pkg` and `pkg/__init__.py`,
/// and the removals were grouped by the last removed entry only: `pkg/` was
/// removed whole, then its `__init__.py` once more on its own, whose
/// directory could not be opened any more ("cannot open d/pkg"), in the
/// middle of the commit.
#[test]
fn a_package_added_beside_its_dist_info_is_removed_whole() {
    let f = Fixture::new();
    let r = f.root();
    write(&r, "d/pkg_x/kept.py", b"kept", 0o644);
    let before = snapshot(&r, "d");
    let (st, _) = f.capture("d", None);
    write(&r, "d/pkg/__init__.py", b"", 0o644);
    write(&r, "d/pkg/sub/deep/mod.py", b"x = 1\n", 0o644);
    write(&r, "d/pkg-1.0.dist-info/METADATA", b"Name: pkg\n", 0o644);
    write(&r, "d/pkg-1.0.dist-info/RECORD", b"", 0o644);
    write(&r, "d/pkg.py", b"", 0o644);
    write(&r, "d/pkg_x/added.py", b"", 0o644);
    write(&r, "d/pkg0/__init__.py", b"", 0o644);
    let changes = f.restore(&st).unwrap();
    assert_eq!(snapshot(&r, "d"), before);
    let removed: Vec<(String, u64)> = changes
        .iter()
        .filter(|c| c.action == Action::Remove)
        .map(|c| (show(&c.path).into_owned(), c.inside))
        .collect();
    assert_eq!(
        removed,
        [
            ("d/pkg".to_string(), 4),
            ("d/pkg-1.0.dist-info".to_string(), 2),
            ("d/pkg.py".to_string(), 0),
            ("d/pkg0".to_string(), 1),
            ("d/pkg_x/added.py".to_string(), 0),
        ],
        "one removal per top-most entry, counting what it holds"
    );
}

/// Capture trusts size + mtime + inode: a file rewritten in place with the
/// same size and its mtime put back is not re-read (this is what makes the
/// incremental capture cheap), while any other change is. Except when the
/// mtime is within [`RACY_NS`] of the previous capture: the file may have been
/// rewritten within one timestamp tick, so it is read again (git's "racily
/// clean" rule).
/// Files changed since the previous checkpoint's seal are stored while the
/// walk goes on; the checkpoint is the same as one that reads them after.
#[test]
fn files_changed_since_the_seal_are_stored_during_the_walk_with_the_same_result() {
    let f = Fixture::new();
    let r = f.root();
    // More changed files than wait for the storers at once (256): walkers
    // store the rest themselves.
    for i in 0..1200 {
        write(
            &r,
            &format!("t/d{}/f{i}", i % 5),
            format!("content {i}").as_bytes(),
            0o644,
        );
    }
    write(&r, "t/big", &vec![7u8; (5 << 20) + 3], 0o600);
    std::os::unix::fs::symlink("f0", r.join("t/d0/link")).unwrap();
    let (_, m1) = f.capture("t", None);
    for i in (0..1200).step_by(3) {
        std::fs::write(r.join(format!("t/d{}/f{i}", i % 5)), format!("changed {i}")).unwrap();
    }
    std::fs::write(r.join("t/big"), vec![9u8; 5 << 20]).unwrap();
    // Sealed long ago: every file counts as changed since, and is stored
    // while the walk goes on.
    let during = f.capture_sealed("t", Some(&m1), Some(0));
    // Not sealed: the changed ones are read after the walk.
    let after = f.capture_sealed("t", Some(&m1), None);
    // Which files count as just written depends on when each capture began.
    let settled = |m: &Manifest| {
        let mut m = m.clone();
        m.entries.iter_mut().for_each(|e| e.recent = false);
        m
    };
    assert_eq!(settled(&during.manifest), settled(&after.manifest));
    for e in during.manifest.entries.iter().filter(|e| e.kind == Kind::File) {
        let data = std::fs::read(under(&r, &e.path)).unwrap();
        assert_eq!(e.hash, Some(Hash::of(&data)), "{}", show(&e.path));
        assert_eq!(e.size, data.len() as u64);
        assert_eq!(f.store.read(e.hash.unwrap()).unwrap(), data, "stored");
    }
    let before = snapshot(&r, "t");
    std::fs::remove_dir_all(r.join("t")).unwrap();
    f.restore(&during.state).unwrap();
    assert_eq!(snapshot(&r, "t"), before);
}

/// A rewrite that keeps size and mtime is invisible to the stat comparison
/// (as for git and rsync), but it changes the ctime: after a seal, the
/// file is read during the walk, and what was read stands.
#[test]
fn a_rewrite_that_keeps_size_and_mtime_is_caught_by_its_ctime_after_a_seal() {
    let f = Fixture::new();
    let r = f.root();
    write(&r, "d/kept", b"aaaa", 0o644);
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let file = std::fs::File::options().write(true).open(r.join("d/kept")).unwrap();
    file.set_modified(an_hour_ago).unwrap();
    let (_, m1) = f.capture("d", None);
    let sealed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    std::io::Write::write_all(&mut &file, b"zzzz").unwrap();
    file.set_modified(an_hour_ago).unwrap();
    let hash = |m: &Manifest| m.entries.iter().find(|e| e.path == b"d/kept").unwrap().hash;
    let unsealed = f.capture_sealed("d", Some(&m1), None);
    assert_eq!(
        hash(&unsealed.manifest),
        hash(&m1),
        "without a seal: trusted by its stat"
    );
    let after_seal = f.capture_sealed("d", Some(&m1), Some(sealed));
    assert_eq!(
        hash(&after_seal.manifest),
        Some(Hash::of(b"zzzz")),
        "read, and what was read kept"
    );
}

#[test]
fn sorted_runs_merge_into_one_sorted_list() {
    let entry = |p: &str| Entry {
        path: p.as_bytes().to_vec(),
        kind: Kind::File,
        mode: 0o644,
        owner: None,
        size: 0,
        mtime_ns: 0,
        ino: 0,
        hash: None,
        target: None,
        rdev: 0,
        recent: false,
    };
    let assert_merges = |lists: Vec<Vec<Entry>>, mut all: Vec<String>, what: &str| {
        all.sort();
        let merged: Vec<String> = merge_sorted(lists)
            .into_iter()
            .map(|e| String::from_utf8(e.path).unwrap())
            .collect();
        assert_eq!(merged, all, "{what}");
    };
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for runs in [0, 1, 2, 3, 8, 9] {
        let mut all = Vec::new();
        let lists: Vec<Vec<Entry>> = (0..runs)
            .map(|_| {
                let n = next() % 50;
                let mut l: Vec<Entry> = (0..n)
                    .map(|_| {
                        let p = format!(
                            "r/{:x}{}",
                            next() % 4096,
                            ["", ".py", "/x", "-a"][(next() % 4) as usize]
                        );
                        all.push(p.clone());
                        entry(&p)
                    })
                    .collect();
                l.sort_unstable_by(|a, b| a.path.cmp(&b.path));
                l
            })
            .collect();
        assert_merges(lists, all, &format!("{runs} runs"));
    }
    // As a walk deals them: each run holds whole directories, so the merge
    // takes long stretches from one run (and `d7` and `d7.py` interleave).
    for runs in [2usize, 3, 16] {
        let mut all = Vec::new();
        let mut lists: Vec<Vec<Entry>> = vec![Vec::new(); runs];
        for d in 0..40 {
            let run = (next() % runs as u64) as usize;
            for f in 0..next() % 30 {
                for p in [format!("r/d{d}/f{f}"), format!("r/d{d}.py")] {
                    if !all.contains(&p) {
                        lists[run].push(entry(&p));
                        all.push(p);
                    }
                }
            }
        }
        for l in &mut lists {
            l.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        }
        assert_merges(lists, all, &format!("{runs} runs of whole directories"));
    }
}

#[test]
fn unchanged_files_are_not_read_again() {
    use crate::store::manifest::RACY_NS;
    let f = Fixture::new();
    let r = f.root();
    write(&r, "d/same", b"aaaa", 0o644);
    write(&r, "d/touched", b"bbbb", 0o644);
    write(&r, "d/racy", b"rrrr", 0o644);
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for n in ["d/same", "d/touched"] {
        let file = std::fs::File::options().write(true).open(r.join(n)).unwrap();
        file.set_modified(an_hour_ago).unwrap();
    }
    let (_, m1) = f.capture("d", None);
    let rewrite = |n: &str, data: &[u8]| {
        let mtime = std::fs::metadata(r.join(n)).unwrap().modified().unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(r.join(n)).unwrap();
        std::io::Write::write_all(&mut &file, data).unwrap();
        file.set_modified(mtime).unwrap();
    };
    rewrite("d/same", b"zzzz");
    rewrite("d/racy", b"RRRR");
    std::fs::write(r.join("d/touched"), b"cccc").unwrap();
    let (_, m2) = f.capture("d", Some(&m1));
    let hash = |m: &Manifest, p: &str| m.entries.iter().find(|e| e.path == p.as_bytes()).unwrap().hash;
    assert_eq!(hash(&m2, "d/same"), hash(&m1, "d/same"), "reused without reading");
    assert_eq!(hash(&m2, "d/touched"), Some(Hash::of(b"cccc")));
    let recent = |m: &Manifest, p: &str| m.entries.iter().find(|e| e.path == p.as_bytes()).unwrap().recent;
    assert!(
        recent(&m1, "d/racy") && !recent(&m1, "d/same"),
        "written just before the capture"
    );
    assert_eq!(hash(&m2, "d/racy"), Some(Hash::of(b"RRRR")), "racy: read again");
    let (_, m3) = f.capture("d", None);
    assert_eq!(hash(&m3, "d/same"), Some(Hash::of(b"zzzz")), "a full capture reads it");
    // A tree left alone captures to the same manifest: stored once.
    let later = std::time::SystemTime::now() - std::time::Duration::from_secs(RACY_NS as u64 / 1_000_000_000 + 1);
    for n in ["d/same", "d/touched", "d/racy"] {
        std::fs::File::options()
            .write(true)
            .open(r.join(n))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    let (s4, m4) = f.capture("d", Some(&m3));
    let (s5, _) = f.capture("d", Some(&m4));
    assert_eq!(s4.manifest, s5.manifest);
}

#[test]
fn restore_refuses_a_damaged_checkpoint_before_writing() {
    let f = Fixture::new();
    let r = f.root();
    for i in 0..20 {
        write(&r, &format!("t/f{i:02}"), format!("content {i}").as_bytes(), 0o644);
    }
    let (state, m) = f.capture("t", None);
    for i in 0..20 {
        std::fs::write(r.join(format!("t/f{i:02}")), format!("edited {i}")).unwrap();
    }
    write(&r, "t/extra", b"extra", 0o644);
    let edited = snapshot(&r, "t");
    let victim = m.entries.iter().find(|e| e.path == b"t/f17").unwrap().hash.unwrap();
    let obj = f.store.path_of(victim);
    let pristine = std::fs::read(&obj).unwrap();

    let mut flipped = pristine.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let damages: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("bit flip", Some(flipped)),
        ("truncated", Some(pristine[..pristine.len() - 3].to_vec())),
        ("emptied", Some(Vec::new())),
        ("deleted", None),
    ];
    for (what, bytes) in damages {
        match &bytes {
            Some(b) => std::fs::write(&obj, b).unwrap(),
            None => std::fs::remove_file(&obj).unwrap(),
        }
        let err = f.restore(&state).unwrap_err();
        assert!(
            matches!(
                err,
                PathsError::Store(StoreError::Corrupt { .. } | StoreError::Missing { .. })
            ),
            "{what}: {err}"
        );
        assert_eq!(snapshot(&r, "t"), edited, "{what}: nothing was written");
        std::fs::write(&obj, &pristine).unwrap();
    }
    // The manifest itself.
    let mobj = f.store.path_of(state.manifest);
    let mpristine = std::fs::read(&mobj).unwrap();
    std::fs::write(&mobj, &mpristine[..mpristine.len() / 2]).unwrap();
    assert!(f.restore(&state).is_err());
    std::fs::remove_file(&mobj).unwrap();
    assert!(f.restore(&state).is_err());
    assert_eq!(snapshot(&r, "t"), edited);
    std::fs::write(&mobj, &mpristine).unwrap();
    f.restore(&state).unwrap();
    assert_eq!(std::fs::read(r.join("t/f17")).unwrap(), b"content 17");
}

// --- property test ----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Spec {
    File(Vec<u8>, u32),
    Link(Vec<u8>),
    Dir,
    Fifo(u32),
}

/// Names as Linux has them: bytes. Some are not UTF-8 (Latin-1, lone
/// continuation bytes, invalid lead bytes), some look like escapes.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        &b"a"[..],
        b"b",
        b"bin",
        "é".as_bytes(),
        "日本語".as_bytes(),
        b"with space",
        b"x.py",
        b"-dash",
        b".hidden",
        "Ω".as_bytes(),
        b"caf\xe9",
        b"\xff\xfe",
        b"a\x80b",
        b"\\xe9",
        b"tab\there",
        b"new\nline",
        // Siblings that sort between a directory and its children, and after them.
        b"pkg",
        b"pkg-1.0.dist-info",
        b"pkg.py",
        b"pkg_x",
        b"pkg0",
    ])
    .prop_map(<[u8]>::to_vec)
}

fn rel_path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(name(), 1..4).prop_map(|v| v.join(&b'/'))
}

/// Owners to give entries (as root): root, a user, nobody.
fn owner() -> impl Strategy<Value = (u32, u32)> {
    prop::sample::select(vec![(0u32, 0u32), (1000, 1000), (65534, 65534), (1000, 0)])
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        4 => (prop::collection::vec(any::<u8>(), 0..300), prop::sample::select(vec![0o644u32, 0o755, 0o600, 0o700, 0o444, 0o4755, 0o2750])).prop_map(|(d, m)| Spec::File(d, m)),
        1 => (0usize..3, name()).prop_map(|(up, n)| Spec::Link([b"../".repeat(up), n].concat())),
        1 => Just(Spec::Dir),
        1 => prop::sample::select(vec![0o644u32, 0o600, 0o620]).prop_map(Spec::Fifo),
    ]
}

fn at(top: &Path, rel: &[u8]) -> PathBuf {
    top.join(OsStr::from_bytes(rel))
}

/// Applies `ops` under `top`, skipping any whose parent is not a directory.
/// As root, each entry also gets its owner (before its mode, as chown clears
/// the set-id bits).
fn build(top: &Path, ops: &[(Vec<u8>, Spec, (u32, u32))], replace: bool) {
    for (rel, s, (uid, gid)) in ops {
        let p = at(top, rel);
        let parent_ok = p
            .ancestors()
            .skip(1)
            .take_while(|a| *a != top)
            .all(|a| std::fs::symlink_metadata(a).map(|m| m.is_dir()).unwrap_or(true));
        if !parent_ok {
            continue;
        }
        if std::fs::symlink_metadata(&p).is_ok() {
            if !replace {
                continue;
            }
            match std::fs::symlink_metadata(&p).unwrap().is_dir() {
                true => std::fs::remove_dir_all(&p).unwrap(),
                false => std::fs::remove_file(&p).unwrap(),
            }
        }
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let own = |p: &Path| {
            if is_root() {
                lchown(p, Some(*uid), Some(*gid)).unwrap();
            }
        };
        match s {
            Spec::File(d, m) => {
                std::fs::write(&p, d).unwrap();
                own(&p);
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*m)).unwrap();
            }
            Spec::Link(t) => {
                symlink(OsStr::from_bytes(t), &p).unwrap();
                own(&p);
            }
            Spec::Dir => {
                std::fs::create_dir_all(&p).unwrap();
                own(&p);
            }
            Spec::Fifo(m) => {
                rustix::fs::mknodat(rustix::fs::CWD, &p, FileType::Fifo, Mode::from_raw_mode(*m), 0).unwrap();
                own(&p);
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*m)).unwrap();
            }
        }
    }
}

fn ops() -> impl Strategy<Value = Vec<(Vec<u8>, Spec, (u32, u32))>> {
    prop::collection::vec((rel_path(), spec(), owner()), 0..25)
}

type Ops = Vec<(Vec<u8>, Spec, (u32, u32))>;

/// Names of packages as site-packages holds them. Each sorts beside the
/// others in the ways that matter: `pkg-1.0.dist-info` and `pkg.py` sort
/// between the directory `pkg` and its children (`-` and `.` come before
/// `/`), `pkg_x` and `pkg0` after them.
fn package_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "pkg",
        "pkg_x",
        "pkg0",
        "pkg-extra",
        "annotated_types",
        "pydantic",
        "pydantic_core",
    ])
}

/// A package as pip installs it: `NAME/` with modules and subpackages up to
/// six levels deep, `NAME-VERSION.dist-info/` beside it, sometimes a
/// top-level `NAME.py` too.
fn package() -> impl Strategy<Value = Ops> {
    let module = (
        prop::collection::vec(
            prop::sample::select(vec!["sub", "_impl", "v1", "deep", "x-y", "x.y"]),
            0..6,
        ),
        prop::sample::select(vec!["__init__.py", "mod.py", "data.json", "_c.so", "py.typed"]),
        prop::collection::vec(any::<u8>(), 0..200),
    );
    (
        package_name(),
        prop::sample::select(vec!["1.0", "1.10.2", "2.0"]),
        prop::collection::vec(module, 1..10),
        any::<bool>(),
        owner(),
    )
        .prop_map(|(name, version, modules, single, owner)| {
            let mut out: Ops = Vec::new();
            let mut add = |p: String, s: Spec| out.push((p.into_bytes(), s, owner));
            add(format!("{name}/__init__.py"), Spec::File(b"".to_vec(), 0o644));
            for (dirs, file, data) in modules {
                let mut p = vec![name.to_string()];
                p.extend(dirs.iter().map(|d| d.to_string()));
                p.push(file.to_string());
                add(p.join("/"), Spec::File(data, 0o644));
            }
            let info = format!("{name}-{version}.dist-info");
            add(
                format!("{info}/METADATA"),
                Spec::File(format!("Name: {name}\nVersion: {version}\n").into_bytes(), 0o644),
            );
            add(format!("{info}/RECORD"), Spec::File(b"...".to_vec(), 0o644));
            if single {
                add(format!("{name}.py"), Spec::File(b"import sys\n".to_vec(), 0o644));
            }
            out
        })
}

/// Removals as an upgrade does them: whole packages (the directory, its
/// dist-info, its module) or random paths.
fn removal() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![
        rel_path().prop_map(|p| vec![p]),
        (package_name(), prop::sample::select(vec!["1.0", "1.10.2", "2.0"])).prop_map(|(n, v)| vec![
            n.as_bytes().to_vec(),
            format!("{n}-{v}.dist-info").into_bytes(),
            format!("{n}.py").into_bytes(),
        ]),
    ]
}

/// Checkpoint `tree`, apply the edits, then restore the checkpoint, the
/// edited tree's checkpoint, and the first again into nothing: each time
/// the disk must be exactly what was captured.
fn round_trip(
    tree: &Ops,
    edits: &Ops,
    removals: &[Vec<u8>],
    chowns: &[(Vec<u8>, (u32, u32))],
) -> Result<(), TestCaseError> {
    let f = Fixture::new();
    let top = f.root().join("tree");
    std::fs::create_dir(&top).unwrap();
    build(&top, tree, false);
    let before = snapshot(&f.root(), "tree");
    let (state, m) = f.capture("tree", None);

    build(&top, edits, true);
    for r in removals {
        let p = at(&top, r);
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if m.is_dir() {
                std::fs::remove_dir_all(&p).unwrap()
            } else {
                std::fs::remove_file(&p).unwrap()
            }
        }
    }
    if is_root() {
        for (r, (u, g)) in chowns {
            let _ = lchown(at(&top, r), Some(*u), Some(*g));
        }
    }
    // An incremental capture of the edited tree reads back what it holds.
    let edited = snapshot(&f.root(), "tree");
    let (state2, _) = f.capture("tree", Some(&m));
    let r = f.restore(&state);
    prop_assert!(r.is_ok(), "restoring the checkpoint: {}", r.unwrap_err());
    prop_assert_eq!(snapshot(&f.root(), "tree"), before.clone());
    let r = f.restore(&state2);
    prop_assert!(r.is_ok(), "restoring the edited tree: {}", r.unwrap_err());
    prop_assert_eq!(snapshot(&f.root(), "tree"), edited);
    // And from nothing at all.
    std::fs::remove_dir_all(&top).unwrap();
    f.restore(&state).unwrap();
    prop_assert_eq!(snapshot(&f.root(), "tree"), snapshot_of_state(&f, &state));
    prop_assert_eq!(snapshot_of_state(&f, &state), before);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// restore(checkpoint(tree)) == tree: bytes, modes, mtimes, symlink
    /// targets, FIFOs, names that are not UTF-8, and (as root) owners.
    #[test]
    fn restore_of_a_checkpoint_gives_back_the_tree(
        tree in ops(),
        edits in prop::collection::vec((rel_path(), spec(), owner()), 0..12),
        removals in prop::collection::vec(rel_path(), 0..4),
        chowns in prop::collection::vec((rel_path(), owner()), 0..4),
    ) {
        round_trip(&tree, &edits, &removals, &chowns)?;
    }
}

proptest! {
    // Each case writes a few hundred entries and syncs four captures: ~0.4 s
    // on a shared two-core machine.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The same for what upgrades do to site-packages: whole packages
    /// added, replaced by another version and removed, deep trees, and
    /// sibling names that sort between a directory and its children.
    #[test]
    fn restore_after_an_upgrade_gives_back_the_packages(
        installed in prop::collection::vec(package(), 0..5),
        loose in ops(),
        upgrade in prop::collection::vec(package(), 0..5),
        edits in prop::collection::vec((rel_path(), spec(), owner()), 0..6),
        removals in prop::collection::vec(removal(), 0..4),
    ) {
        let tree: Ops = installed.into_iter().flatten().chain(loose).collect();
        let edits: Ops = upgrade.into_iter().flatten().chain(edits).collect();
        let removals: Vec<Vec<u8>> = removals.into_iter().flatten().collect();
        round_trip(&tree, &edits, &removals, &[])?;
    }
}

/// What the manifest says, as a snapshot (to compare a restore into nothing).
fn snapshot_of_state(f: &Fixture, state: &PathState) -> BTreeMap<Vec<u8>, Node> {
    let m = Manifest::load(&f.store, state.manifest).unwrap();
    m.entries
        .iter()
        .map(|e| {
            let owner = e.owner.unwrap();
            let n = match e.kind {
                Kind::Dir => Node::Dir {
                    mode: e.mode,
                    mtime: e.mtime_ns,
                    owner,
                },
                Kind::File => Node::File {
                    mode: e.mode,
                    mtime: e.mtime_ns,
                    owner,
                    data: f.store.read(e.hash.unwrap()).unwrap(),
                },
                Kind::Symlink => Node::Link {
                    target: e.target.clone().unwrap(),
                    mtime: e.mtime_ns,
                    owner,
                },
                Kind::Fifo => Node::Fifo {
                    mode: e.mode,
                    mtime: e.mtime_ns,
                    owner,
                },
                Kind::CharDevice | Kind::BlockDevice => Node::Dev {
                    block: e.kind == Kind::BlockDevice,
                    rdev: e.rdev,
                    mode: e.mode,
                    mtime: e.mtime_ns,
                    owner,
                },
                Kind::Socket => Node::Socket,
            };
            (e.path.clone(), n)
        })
        .collect()
}

/// Regression: walkdir follows a root symlink unless told not to, which made a
/// captured path that is a symlink record (and restore compare) its target's content.
#[test]
fn a_captured_path_that_is_a_symlink_is_captured_as_one() {
    let f = Fixture::new();
    let outside = f.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"not ours").unwrap();
    symlink(&outside, f.root().join("venv")).unwrap();
    let (st, m) = f.capture("venv", None);
    assert_eq!(m.entries.len(), 1);
    assert_eq!(m.entries[0].kind, Kind::Symlink);
    assert_eq!(st.files, 0);
}

/// Regression: the temporary name beside a symlink was cut at 255 bytes, which
/// panicked inside a multi-byte character for long unicode names.
#[test]
fn long_unicode_names_round_trip() {
    let f = Fixture::new();
    let r = f.root();
    let long = "é".repeat(127); // 254 bytes
    write(&r, &format!("d/{long}"), b"file", 0o644);
    symlink(&long, r.join("d").join(format!("{}x", "ü".repeat(126)))).unwrap();
    let before = snapshot(&r, "d");
    let (st, _) = f.capture("d", None);
    std::fs::remove_dir_all(r.join("d")).unwrap();
    f.restore(&st).unwrap();
    assert_eq!(snapshot(&r, "d"), before);
}

/// Names are bytes: a name that is not UTF-8 (file, directory, symlink and
/// its target) is captured and restored as it is, and shown escaped.
#[test]
fn names_that_are_not_utf8_round_trip() {
    let f = Fixture::new();
    let r = f.root();
    let d = r.join("d");
    std::fs::create_dir_all(d.join(OsStr::from_bytes(b"dir-\xff"))).unwrap();
    std::fs::write(d.join(OsStr::from_bytes(b"caf\xe9.txt")), b"latin-1").unwrap();
    std::fs::write(d.join(OsStr::from_bytes(b"dir-\xff/in\x80side")), b"inner").unwrap();
    symlink(
        OsStr::from_bytes(b"caf\xe9.txt"),
        d.join(OsStr::from_bytes(b"link-\xfe")),
    )
    .unwrap();
    let before = snapshot(&r, "d");
    let (st, m) = f.capture("d", None);
    assert_eq!(st.files, 2);
    assert_eq!(m.entries.len(), 5);
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join(OsStr::from_bytes(b"other-\xe9")), b"not in the checkpoint").unwrap();
    let changes = f.restore(&st).unwrap();
    assert_eq!(snapshot(&r, "d"), before);
    let shown: Vec<String> = changes.iter().map(|c| show(&c.path).into_owned()).collect();
    assert!(shown.contains(&"d/caf\\xe9.txt".to_string()), "{shown:?}");
    assert!(shown.contains(&"d/other-\\xe9".to_string()), "{shown:?}");
}

/// FIFOs are recreated with their mode, owner and mtime; a capture never
/// opens them (it would block).
#[test]
fn fifos_are_recreated() {
    let f = Fixture::new();
    let r = f.root();
    std::fs::create_dir(r.join("run")).unwrap();
    let p = r.join("run/queue");
    rustix::fs::mknodat(rustix::fs::CWD, &p, FileType::Fifo, Mode::from_raw_mode(0o640), 0).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o620)).unwrap();
    let before = snapshot(&r, "run");
    let (st, m) = f.capture("run", None);
    assert_eq!(m.entries[1].kind, Kind::Fifo);
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, b"a file in the FIFO's place").unwrap();
    f.restore(&st).unwrap();
    assert_eq!(snapshot(&r, "run"), before);
    std::fs::remove_dir_all(r.join("run")).unwrap();
    f.restore(&st).unwrap();
    assert_eq!(snapshot(&r, "run"), before);
}

/// Sockets belong to a running program: a capture skips and lists them, a
/// restore leaves one alone (the program still listens on it) unless the
/// checkpoint has something else at its path.
#[test]
fn sockets_are_skipped_and_left_alone() {
    let f = Fixture::new();
    let r = f.root();
    std::fs::create_dir(r.join("app")).unwrap();
    std::fs::write(r.join("app/config"), b"port = 1\n").unwrap();
    let _listening = std::os::unix::net::UnixListener::bind(r.join("app/app.sock")).unwrap();
    let c = f.capture_all("app", None);
    assert_eq!(c.skipped, ["app/app.sock"]);
    assert!(c.manifest.entries.iter().all(|e| e.path != b"app/app.sock"));
    std::fs::write(r.join("app/config"), b"port = 2\n").unwrap();
    let changes = f.restore(&c.state).unwrap();
    assert!(changes.iter().all(|c| c.path != b"app/app.sock"), "{changes:?}");
    assert_eq!(std::fs::read(r.join("app/config")).unwrap(), b"port = 1\n");
    assert!(
        std::fs::symlink_metadata(r.join("app/app.sock"))
            .unwrap()
            .file_type()
            .is_socket(),
        "the socket is still there"
    );
    // A checkpoint with a file where a socket now is: the file wins.
    std::fs::write(r.join("app/slot"), b"file").unwrap();
    let (st, _) = f.capture("app", None);
    std::fs::remove_file(r.join("app/slot")).unwrap();
    let _other = std::os::unix::net::UnixListener::bind(r.join("app/slot")).unwrap();
    f.restore(&st).unwrap();
    assert_eq!(std::fs::read(r.join("app/slot")).unwrap(), b"file");
}

/// Device nodes are recorded with their device number and recreated by root;
/// without root a restore that would create one is refused before writing.
#[test]
#[allow(clippy::print_stderr)]
fn device_nodes_are_recreated_by_root_only() {
    if !is_root() {
        eprintln!("skipped: creating device nodes needs root");
        return;
    }
    let f = Fixture::new();
    let r = f.root();
    std::fs::create_dir(r.join("dev")).unwrap();
    let null = rustix::fs::makedev(1, 3);
    let loop0 = rustix::fs::makedev(7, 0);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        null,
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("dev/loop0"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o660),
        loop0,
    )
    .unwrap();
    lchown(r.join("dev/loop0"), Some(0), Some(6)).unwrap();
    std::fs::set_permissions(r.join("dev/null"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = snapshot(&r, "dev");
    let (st, m) = f.capture("dev", None);
    let kinds: Vec<(Kind, u64)> = m.entries.iter().skip(1).map(|e| (e.kind, e.rdev)).collect();
    assert_eq!(kinds, [(Kind::BlockDevice, loop0), (Kind::CharDevice, null)]);
    std::fs::remove_dir_all(r.join("dev")).unwrap();

    // As if not root: refused, nothing written.
    let err = plan_as(&f.store, &r, &st, None, &(), false).unwrap_err();
    assert!(matches!(err, PathsError::DeviceNeedsRoot { .. }), "{err}");
    assert!(err.to_string().contains("dev/loop0"), "{err}");
    assert!(!r.join("dev").exists());

    f.restore(&st).unwrap();
    assert_eq!(snapshot(&r, "dev"), before);
    // Another device number at the same path is a change.
    std::fs::remove_file(r.join("dev/null")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 5),
    )
    .unwrap();
    std::fs::set_permissions(r.join("dev/null"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let changes = f.restore(&st).unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.action == Action::Change && c.path == b"dev/null"),
        "{changes:?}"
    );
    assert_eq!(snapshot(&r, "dev"), before);
}

/// Owners are recorded; root puts them back (before the mode, so set-id bits
/// survive). Without root they are left as they are, with a warning.
#[test]
#[allow(clippy::print_stderr)]
fn owners_are_restored_by_root() {
    if !is_root() {
        eprintln!("skipped: giving files away needs root");
        return;
    }
    let f = Fixture::new();
    let r = f.root();
    write(&r, "srv/app/run.sh", b"#!/bin/sh\n", 0o755);
    write(&r, "srv/app/secret", b"s3cr3t", 0o600);
    write(&r, "srv/app/setuid", b"\x7fELF", 0o4755);
    symlink("run.sh", r.join("srv/app/run")).unwrap();
    for (p, u, g) in [
        ("srv/app", 1000, 1000),
        ("srv/app/run.sh", 1000, 1000),
        ("srv/app/secret", 65534, 1000),
        ("srv/app/setuid", 1000, 0),
        ("srv/app/run", 1000, 100),
    ] {
        lchown(r.join(p), Some(u), Some(g)).unwrap();
    }
    std::fs::set_permissions(r.join("srv/app/setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let before = snapshot(&r, "srv");
    let (st, m) = f.capture("srv", None);
    let secret = m.entries.iter().find(|e| e.path == b"srv/app/secret").unwrap();
    assert_eq!(secret.owner, Some((65534, 1000)));

    // Everything given to root: only the owners differ, each a `meta` change.
    for e in walkdir::WalkDir::new(r.join("srv")) {
        lchown(e.unwrap().path(), Some(0), Some(0)).unwrap();
    }
    std::fs::set_permissions(r.join("srv/app/setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let planned = plan(&f.store, &r, &st, None, &()).unwrap();
    assert!(
        planned.changes.iter().all(|c| c.action == Action::Meta),
        "{:?}",
        planned.changes
    );
    assert_eq!(planned.changes.len(), 5);
    assert!(planned.warnings.is_empty());
    // As if not root: owners are not compared, and what is written says so.
    let as_user = plan_as(&f.store, &r, &st, None, &(), false).unwrap();
    assert!(as_user.is_noop(), "{:?}", as_user.changes);
    std::fs::remove_file(r.join("srv/app/secret")).unwrap();
    let as_user = plan_as(&f.store, &r, &st, None, &(), false).unwrap();
    assert_eq!(as_user.warnings.len(), 1);
    assert!(
        as_user.warnings[0].contains("owners not restored for 1 entry (e.g. srv/app/secret was 65534:1000)"),
        "{:?}",
        as_user.warnings
    );

    f.restore(&st).unwrap();
    assert_eq!(snapshot(&r, "srv"), before);
    assert_eq!(
        std::fs::metadata(r.join("srv/app/setuid")).unwrap().mode() & 0o7777,
        0o4755,
        "the set-user-ID bit survives the change of owner"
    );
    std::fs::remove_dir_all(r.join("srv")).unwrap();
    f.restore(&st).unwrap();
    assert_eq!(snapshot(&r, "srv"), before);
}
