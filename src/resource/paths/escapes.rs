//! Crafted manifests that try to make a restore write outside its root or
//! through a symlink. Each must be refused before anything is written, and a
//! sentinel directory beside the root must stay byte for byte as it was.

use std::os::unix::fs::symlink;

use super::tests::{Fixture, snapshot};
use super::*;

fn e(path: &str, kind: Kind) -> Entry {
    Entry {
        path: path.into(),
        kind,
        mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
        size: 6,
        mtime_ns: 1_600_000_000_000_000_000,
        ino: 1,
        hash: (kind == Kind::File).then(|| Hash::of(b"PWNED\n")),
        target: (kind == Kind::Symlink).then(|| "../sentinel".to_string()),
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

    fn sentinel(&self) -> BTreeMap<String, tests::Node> {
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

    fn crafted(&self, state_path: &str, root: &str, entries: Vec<Entry>) -> PathState {
        let m = Manifest {
            version: 1,
            root: root.into(),
            entries,
        };
        self.raw(state_path, &m.encode())
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
    let cases: Vec<(&str, PathState)> = vec![
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
            "unknown format version",
            a.raw("a", br#"{"version":2,"root":"a","entries":[]}"#),
        ),
        ("not JSON", a.raw("a", b"\x00\x01 definitely not a manifest")),
        (
            "object that is missing",
            PathState {
                path: "a".into(),
                manifest: Hash::of(b"never stored"),
                files: 0,
                bytes: 0,
            },
        ),
    ];
    assert!(cases.len() >= 20);
    for (what, st) in &cases {
        a.refused(what, st);
    }
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
