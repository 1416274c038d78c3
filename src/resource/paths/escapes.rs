//! Crafted manifests that try to make a restore write outside its root or
//! through a symlink. Each must be refused before anything is written, and a
//! sentinel directory beside the root must stay byte for byte as it was. Each
//! is tried in the current binary encoding and, where it can be written in it,
//! in the version-1 JSON that older stores hold.

use std::os::unix::fs::symlink;

use super::tests::{Fixture, snapshot};
use super::*;

fn e(path: impl Into<Vec<u8>>, kind: Kind) -> Entry {
    Entry {
        path: path.into(),
        kind,
        mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
        owner: None,
        size: 6,
        mtime_ns: 1_600_000_000_000_000_000,
        ino: 1,
        hash: (kind == Kind::File).then(|| Hash::of(b"PWNED\n")),
        target: (kind == Kind::Symlink).then(|| b"../sentinel".to_vec()),
        rdev: 0,
        recent: false,
    }
}

fn file(p: &str) -> Entry {
    e(p, Kind::File)
}
fn dir(p: &str) -> Entry {
    e(p, Kind::Dir)
}
fn link(p: &str, target: &str) -> Entry {
    Entry {
        target: Some(target.into()),
        ..e(p, Kind::Symlink)
    }
}
fn bytes_file(p: &[u8]) -> Entry {
    e(p, Kind::File)
}

struct Arena {
    f: Fixture,
}

impl Arena {
    fn new() -> Arena {
        let f = Fixture::new();
        let s = f.dir.path().join("sentinel");
        std::fs::create_dir(&s).unwrap();
        std::fs::write(s.join("keep"), b"precious\n").unwrap();
        std::fs::create_dir(s.join("sub")).unwrap();
        // The content every crafted file entry points at is really stored.
        let b = f.store.batch();
        b.put(b"PWNED\n").unwrap();
        b.commit().unwrap();
        Arena { f }
    }

    fn sentinel(&self) -> BTreeMap<Vec<u8>, tests::Node> {
        snapshot(self.f.dir.path(), "sentinel")
    }

    /// Stores `bytes` as a manifest object, bypassing every check.
    fn raw(&self, state_path: &str, bytes: &[u8]) -> PathState {
        let b = self.f.store.batch();
        let h = b.put(bytes).unwrap();
        b.commit().unwrap();
        PathState {
            path: state_path.into(),
            manifest: h,
            files: 0,
            bytes: 0,
        }
    }

    /// The manifest in every encoding that can hold it: version 2 always,
    /// version 1 when every name is UTF-8 and every entry a file, directory or
    /// symlink.
    fn crafted(&self, state_path: &str, root: &str, entries: Vec<Entry>) -> Vec<PathState> {
        let m = Manifest {
            root: root.into(),
            entries,
        };
        let mut v = vec![self.raw(state_path, &m.encode())];
        let v1_can = m.entries.iter().all(|e| {
            std::str::from_utf8(&e.path).is_ok()
                && e.target.as_deref().is_none_or(|t| std::str::from_utf8(t).is_ok())
                && matches!(e.kind, Kind::File | Kind::Dir | Kind::Symlink)
        });
        if v1_can {
            v.push(self.raw(state_path, &crate::store::manifest::encode_v1(&m)));
        }
        v
    }

    /// Tries the restore; it must fail, and neither the root nor the sentinel change.
    #[track_caller]
    fn refused(&self, what: &str, st: &PathState) {
        let sentinel = self.sentinel();
        let root = snapshot(self.f.dir.path(), "root");
        let r = self.f.restore(st);
        assert!(r.is_err(), "{what}: restore should have been refused, did {r:?}");
        assert_eq!(self.sentinel(), sentinel, "{what}: sentinel changed");
        assert_eq!(
            snapshot(self.f.dir.path(), "root"),
            root,
            "{what}: something was written"
        );
    }
}

use std::collections::BTreeMap;

use super::tests;

#[test]
fn crafted_manifests_are_refused_before_writing() {
    let a = Arena::new();
    let long = "n".repeat(256);
    let deep = vec!["d"; 2100].join("/");
    let cases: Vec<(&str, Vec<PathState>)> = vec![
        (
            "dot-dot entry",
            a.crafted("a", "a", vec![dir("a"), file("a/../../sentinel/keep")]),
        ),
        (
            "dot-dot at the start",
            a.crafted("a", "a", vec![dir("a"), file("../sentinel/keep")]),
        ),
        (
            "absolute entry",
            a.crafted("a", "a", vec![dir("a"), file("/tmp/backout-escape")]),
        ),
        (
            "absolute entry into the sentinel",
            a.crafted(
                "a",
                "a",
                vec![
                    dir("a"),
                    file(&format!("{}/keep", a.f.dir.path().join("sentinel").display())),
                ],
            ),
        ),
        (
            "root is dot-dot",
            a.crafted("..", "..", vec![dir(".."), file("../sentinel-new")]),
        ),
        ("root is absolute", a.crafted("/tmp", "/tmp", vec![dir("/tmp")])),
        (
            "state path escapes",
            a.crafted(
                "../sentinel",
                "../sentinel",
                vec![dir("../sentinel"), file("../sentinel/keep")],
            ),
        ),
        (
            "manifest root differs from the checkpoint's",
            a.crafted("a", "sentinel", vec![dir("sentinel"), file("sentinel/keep")]),
        ),
        (
            "symlink then file through it",
            a.crafted(
                "a",
                "a",
                vec![dir("a"), link("a/l", "../../sentinel"), file("a/l/keep")],
            ),
        ),
        (
            "symlink then directory through it",
            a.crafted(
                "a",
                "a",
                vec![
                    dir("a"),
                    link("a/l", "../../sentinel"),
                    dir("a/l/sub"),
                    file("a/l/sub/x"),
                ],
            ),
        ),
        (
            "absolute symlink then file",
            a.crafted(
                "a",
                "a",
                vec![
                    dir("a"),
                    link("a/l", &a.f.dir.path().join("sentinel").display().to_string()),
                    file("a/l/keep"),
                ],
            ),
        ),
        (
            "directory and symlink with one name",
            a.crafted(
                "a",
                "a",
                vec![dir("a"), dir("a/x"), link("a/x", "../../sentinel"), file("a/x/keep")],
            ),
        ),
        (
            "symlink and directory with one name",
            a.crafted(
                "a",
                "a",
                vec![dir("a"), link("a/x", "../../sentinel"), dir("a/x"), file("a/x/keep")],
            ),
        ),
        (
            "one file twice",
            a.crafted("a", "a", vec![dir("a"), file("a/f"), file("a/f")]),
        ),
        (
            "out of order",
            a.crafted("a", "a", vec![dir("a"), file("a/z"), file("a/b")]),
        ),
        (
            "entry outside the captured path",
            a.crafted("a", "a", vec![dir("a"), dir("b"), file("b/f")]),
        ),
        (
            "name-prefix trick",
            a.crafted("a", "a", vec![dir("a"), dir("ab"), file("ab/f")]),
        ),
        (
            "no parent entry",
            a.crafted("a", "a", vec![dir("a"), file("a/missing/f")]),
        ),
        (
            "file under a file",
            a.crafted("a", "a", vec![dir("a"), file("a/f"), file("a/f/g")]),
        ),
        (
            "root is a symlink with children",
            a.crafted("a", "a", vec![link("a", "../sentinel"), file("a/keep")]),
        ),
        (
            "overlong name",
            a.crafted("a", "a", vec![dir("a"), file(&format!("a/{long}"))]),
        ),
        (
            "overlong path",
            a.crafted("a", "a", vec![dir("a"), file(&format!("a/{deep}"))]),
        ),
        (
            "NUL in a name",
            a.crafted("a", "a", vec![dir("a"), file("a/x\0/../../sentinel/keep")]),
        ),
        ("empty component", a.crafted("a", "a", vec![dir("a"), file("a//f")])),
        ("dot component", a.crafted("a", "a", vec![dir("a"), file("a/./f")])),
        ("empty entry path", a.crafted("a", "a", vec![dir("a"), file("")])),
        (
            "file-type bits in the mode",
            a.crafted(
                "a",
                "a",
                vec![
                    dir("a"),
                    Entry {
                        mode: 0o100644,
                        ..file("a/f")
                    },
                ],
            ),
        ),
        (
            "symlink without a target",
            a.crafted(
                "a",
                "a",
                vec![
                    dir("a"),
                    Entry {
                        target: None,
                        ..link("a/l", "x")
                    },
                ],
            ),
        ),
        (
            "file without an object",
            a.crafted(
                "a",
                "a",
                vec![
                    dir("a"),
                    Entry {
                        hash: None,
                        ..file("a/f")
                    },
                ],
            ),
        ),
        (
            "NUL in a name that is not UTF-8",
            a.crafted("a", "a", vec![dir("a"), bytes_file(b"a/\xff\0/../../sentinel/keep")]),
        ),
        (
            "dot-dot after a name that is not UTF-8",
            a.crafted(
                "a",
                "a",
                vec![
                    dir("a"),
                    e(b"a/\xe9", Kind::Dir),
                    bytes_file(b"a/\xe9/../../sentinel/keep"),
                ],
            ),
        ),
        (
            "file under a FIFO",
            a.crafted("a", "a", vec![dir("a"), e("a/p", Kind::Fifo), file("a/p/keep")]),
        ),
        (
            "file under a device node",
            a.crafted("a", "a", vec![dir("a"), e("a/d", Kind::CharDevice), file("a/d/keep")]),
        ),
        (
            "a socket entry",
            a.crafted("a", "a", vec![dir("a"), e("a/s", Kind::Socket)]),
        ),
        (
            "FIFO with file-type bits in the mode",
            a.crafted(
                "a",
                "a",
                vec![
                    dir("a"),
                    Entry {
                        mode: 0o010644,
                        ..e("a/p", Kind::Fifo)
                    },
                ],
            ),
        ),
        (
            "symlink target with a NUL",
            a.crafted("a", "a", vec![dir("a"), link("a/l", "x\0y")]),
        ),
        (
            "JSON of an unknown format version",
            vec![a.raw("a", br#"{"version":2,"root":"a","entries":[]}"#)],
        ),
        (
            "binary of an unknown format version",
            vec![a.raw(
                "a",
                &[crate::store::manifest::MAGIC, &[3u8, 1, b'a', 0, 0][..]].concat(),
            )],
        ),
        (
            "binary cut short",
            vec![a.raw("a", &{
                let mut m = Manifest::new("a", vec![dir("a"), file("a/f")]).encode();
                m.truncate(m.len() - 3);
                m
            })],
        ),
        (
            "binary path sharing more than the previous one",
            vec![a.raw(
                "a",
                &[crate::store::manifest::MAGIC, &[2u8, 1, b'a', 0, 1, 1, 40, 1, b'a'][..]].concat(),
            )],
        ),
        ("not JSON", vec![a.raw("a", b"\x00\x01 definitely not a manifest")]),
        (
            "object that is missing",
            vec![PathState {
                path: "a".into(),
                manifest: Hash::of(b"never stored"),
                files: 0,
                bytes: 0,
            }],
        ),
    ];
    assert!(cases.len() >= 20);
    let mut tried = 0;
    for (what, states) in &cases {
        assert!(!states.is_empty());
        for st in states {
            a.refused(what, st);
            tried += 1;
        }
    }
    assert!(tried >= 60, "{tried} crafted manifests");
}

#[test]
fn symlinks_on_disk_are_never_followed() {
    let a = Arena::new();
    let root = a.f.root();
    let sentinel = a.f.dir.path().join("sentinel");
    // A legitimate checkpoint of a/ with a file and a subdirectory.
    std::fs::create_dir_all(root.join("a/sub")).unwrap();
    std::fs::write(root.join("a/keep"), b"mine\n").unwrap();
    std::fs::write(root.join("a/sub/keep"), b"mine too\n").unwrap();
    let (st, _) = a.f.capture("a", None);
    let (deep, _) = a.f.capture("a/sub", None);
    let before = a.sentinel();

    // The captured directory replaced by a symlink to the sentinel.
    std::fs::remove_dir_all(root.join("a")).unwrap();
    symlink(&sentinel, root.join("a")).unwrap();
    a.f.restore(&st).unwrap();
    assert!(std::fs::symlink_metadata(root.join("a")).unwrap().is_dir());
    assert_eq!(std::fs::read(root.join("a/keep")).unwrap(), b"mine\n");
    assert_eq!(a.sentinel(), before);

    // A subdirectory replaced by a symlink to the sentinel.
    std::fs::remove_dir_all(root.join("a/sub")).unwrap();
    symlink(&sentinel, root.join("a/sub")).unwrap();
    a.f.restore(&st).unwrap();
    assert_eq!(std::fs::read(root.join("a/sub/keep")).unwrap(), b"mine too\n");
    assert_eq!(a.sentinel(), before);

    // A file replaced by a symlink to a sentinel file.
    std::fs::remove_file(root.join("a/keep")).unwrap();
    symlink(sentinel.join("keep"), root.join("a/keep")).unwrap();
    a.f.restore(&st).unwrap();
    assert_eq!(std::fs::read(root.join("a/keep")).unwrap(), b"mine\n");
    assert_eq!(a.sentinel(), before);

    // A parent of the captured path is a symlink: refused, nothing written.
    std::fs::remove_dir_all(root.join("a")).unwrap();
    symlink(&sentinel, root.join("a")).unwrap();
    a.refused("parent of the captured path is a symlink", &deep);
    let err = a.f.restore(&deep).unwrap_err();
    assert!(matches!(err, PathsError::ThroughSymlink { .. }), "{err}");
}
