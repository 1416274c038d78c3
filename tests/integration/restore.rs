//! `backout restore` is all or nothing, and never touches backout's own store.
//!
//! A restore that fails partway (a real failure: a directory nobody may
//! write in, made so with the immutable flag as root or without write
//! permission otherwise) puts back everything it had changed; one killed
//! (SIGKILL) while it writes is taken back by the next command. A record in
//! state.db edited to name `.backout`, a path outside the project or another
//! repository is refused before anything is written.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Project;

const PLAN: &str = r#"
[plan]
name = "restore"

[capture]
git = true
paths = ["d", "e"]
"#;

/// Path → kind, mode, mtime, content.
pub type Tree = BTreeMap<String, (String, u32, i64, Vec<u8>)>;

/// Every entry under `rels` of `root`: kind, mode, mtime and content (or
/// link target), read with std calls. Directory mtimes included: a restore
/// puts them back too.
pub fn snapshot(root: &Path, rels: &[&str]) -> Tree {
    let mut out = BTreeMap::new();
    for rel in rels {
        let top = root.join(rel);
        if std::fs::symlink_metadata(&top).is_err() {
            continue;
        }
        for e in walkdir::WalkDir::new(&top) {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let key = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let (kind, data) = if md.file_type().is_symlink() {
                (
                    "link",
                    std::fs::read_link(e.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                        .into_bytes(),
                )
            } else if md.is_dir() {
                ("dir", Vec::new())
            } else {
                ("file", std::fs::read(e.path()).unwrap())
            };
            out.insert(
                key,
                (
                    kind.to_string(),
                    md.mode() & 0o7777,
                    md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                    data,
                ),
            );
        }
    }
    out
}

/// The paths where `a` and `b` differ (at most 10), to show instead of two
/// whole trees.
pub fn differences(a: &Tree, b: &Tree) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .take(10)
        .map(|k| match (a.get(k), b.get(k)) {
            (Some(_), None) => format!("{k}: only in the first"),
            (None, Some(_)) => format!("{k}: only in the second"),
            (Some(x), Some(y)) => format!("{k}: {:?} vs {:?}", (&x.0, x.1, x.2), (&y.0, y.1, y.2)),
            (None, None) => unreachable!(),
        })
        .collect()
}

/// A directory nothing can be written in or removed from, until dropped:
/// immutable (`chattr +i`) as root, whom permissions do not stop; without
/// write permission otherwise.
pub struct Unwritable(PathBuf);

impl Unwritable {
    pub fn new(dir: &Path) -> Unwritable {
        set_unwritable(dir, true);
        // The failure is real: writing there fails, for this user too.
        assert!(
            std::fs::write(dir.join(".probe"), b"").is_err(),
            "{} is still writable",
            dir.display()
        );
        Unwritable(dir.to_path_buf())
    }
}

fn set_unwritable(dir: &Path, on: bool) {
    if rustix::process::geteuid().is_root() {
        let f = std::fs::File::open(dir).unwrap();
        let flags = rustix::fs::ioctl_getflags(&f).unwrap();
        let flags = if on {
            flags | rustix::fs::IFlags::IMMUTABLE
        } else {
            flags - rustix::fs::IFlags::IMMUTABLE
        };
        rustix::fs::ioctl_setflags(&f, flags)
            .unwrap_or_else(|e| panic!("cannot set the immutable flag on {}: {e}", dir.display()));
    } else {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        let mode = if on { mode & !0o222 } else { mode | 0o200 };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        set_unwritable(&self.0, false);
    }
}

/// The project's state a restore changes: git's HEAD, index, status and
/// work tree (content: git does not keep mtimes), and the two captured
/// trees (everything).
fn state(p: &Project) -> (String, Tree) {
    let git = [
        p.git(&["log", "--format=%H %s", "-1"]),
        p.git(&["status", "--porcelain"]),
        p.git(&["ls-files", "-s"]),
        std::fs::read_to_string(p.path().join("app.txt")).unwrap(),
    ]
    .join("\n");
    (git, snapshot(p.path(), &["d", "e"]))
}

/// A project at cp-1 with git and two paths, then changed the way an
/// upgrade changes a venv: a package and its dist-info added, files
/// rewritten, a commit made.
fn changed_project() -> (Project, (String, Tree)) {
    let p = Project::new();
    p.file("backout.toml", PLAN)
        .file(".gitignore", "d/\ne/\n")
        .file("app.txt", "version 1\n")
        .file("d/pkg_x/kept.py", "kept\n")
        .file("d/a.txt", "one\n")
        .file("e/a/x", "one\n")
        .file("e/lock/keep", "keep\n");
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "one"]);
    p.run(&["checkpoint"]).success();
    let at_cp1 = state(&p);
    p.file("app.txt", "version 2\n");
    p.git(&["commit", "-qam", "two"]);
    p.file("d/pkg/__init__.py", "")
        .file("d/pkg-1.0.dist-info/METADATA", "Name: pkg\n")
        .file("d/a.txt", "two\n")
        .file("e/a/x", "two\n")
        .file("e/aa-new", "new\n");
    (p, at_cp1)
}

/// A real failure in the middle of the commit: git and `d` are restored,
/// `e` half (a file removed), when `e/lock` refuses the next write. The
/// restore must put all of it back as the safety checkpoint holds it.
#[test]
fn a_restore_that_fails_partway_is_taken_back_whole() {
    for (what, prepare) in [
        (
            "a file it cannot remove",
            (|p: &Project| {
                p.file("e/lock/new", "added since\n");
            }) as fn(&Project),
        ),
        ("a file it cannot write back", |p: &Project| {
            std::fs::remove_file(p.path().join("e/lock/keep")).unwrap()
        }),
    ] {
        let (p, at_cp1) = changed_project();
        prepare(&p);
        let before = state(&p);
        let lock = Unwritable::new(&p.path().join("e/lock"));
        let r = p.run(&["restore", "cp-1"]);
        r.code_is(1);
        let err = r.stderr();
        assert!(err.contains("restoring e from cp-1 failed"), "{what}: {err}");
        assert!(
            err.contains("the restore was taken back: git, d, e are as cp-2 holds them"),
            "{what}: {err}"
        );
        assert_eq!(
            state(&p),
            before,
            "{what}: the project is exactly as before the restore"
        );
        // It changed nothing, so there is nothing to undo.
        let r = p.run(&["undo"]);
        assert!(r.stderr().contains("nothing to undo"), "{what}: {}", r.stderr());
        assert_eq!(state(&p), before, "{what}");

        drop(lock);
        p.run(&["restore", "cp-1"]).success();
        assert_eq!(
            state(&p),
            at_cp1,
            "{what}: once it can, the restore reaches cp-1 exactly"
        );
        p.run(&["undo"]).success();
        assert_eq!(state(&p), before, "{what}: and undo takes it back");
    }
}

/// Killed (SIGKILL) after each of its 5 changes, the restore leaves a half
/// tree; the next `restore` or `undo` takes it back first, so the project
/// never stays half restored.
#[test]
fn a_restore_killed_while_it_writes_is_taken_back_by_the_next_command() {
    let (p, at_cp1) = changed_project();
    let before = state(&p);
    for n in 1..=5 {
        let r = p
            .cmd(&["restore", "cp-1"])
            .env("BACKOUT_TEST_CRASH_AT", format!("restoring:{n}"))
            .output()
            .unwrap();
        assert_eq!(r.status.code(), None, "killed after {n} changes");
        assert_ne!(state(&p), before, "killed after {n} changes: half written");
        assert_ne!(state(&p), at_cp1, "killed after {n} changes: half written");
        if n % 2 == 1 {
            let r = p.run(&["undo"]);
            r.success();
            assert!(
                r.stderr().contains("killed while it wrote, was taken back first"),
                "{n}: {}",
                r.stderr()
            );
            assert_eq!(state(&p), before, "{n}: undo took the killed restore back");
        } else {
            let r = p.run(&["restore", "cp-1"]);
            r.success();
            assert!(
                r.stderr().contains("killed while it wrote, was taken back first"),
                "{n}: {}",
                r.stderr()
            );
            assert_eq!(state(&p), at_cp1, "{n}: then restored");
            p.run(&["undo"]).success();
            assert_eq!(state(&p), before, "{n}: and undone");
        }
    }
    let log = p.run(&["log", "--json"]);
    assert!(log.stdout().contains("taken back"), "{}", log.stdout());

    // Killed, then gc waits: it would drop the checkpoint that takes it back.
    let r = p
        .cmd(&["restore", "cp-1"])
        .env("BACKOUT_TEST_CRASH_AT", "restoring:2")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), None);
    let r = p.run(&["gc"]);
    r.code_is(1);
    assert!(
        r.stderr().contains("`backout restore` or `backout undo` takes it back"),
        "{}",
        r.stderr()
    );
    // Then another operation changed the project (a rollback, recorded as
    // one): the killed restore is only closed, since putting it back would
    // undo that rollback.
    let db = rusqlite::Connection::open(p.path().join(".backout/state.db")).unwrap();
    db.execute(
        "INSERT INTO operations (kind, args, started_at, ended_at, outcome) VALUES ('rollback', '{}', 1, 2, 'ok')",
        [],
    )
    .unwrap();
    let half = state(&p);
    let r = p.run(&["restore", "cp-1", "--dry-run"]);
    r.success();
    assert_eq!(state(&p), half, "a dry run takes nothing back");
    let r = p.run(&["restore", "cp-1"]);
    r.success();
    assert!(
        r.stderr().contains(&format!(
            "killed while it wrote, then rollback op-{} changed the project",
            db.last_insert_rowid()
        )),
        "{}",
        r.stderr()
    );
    assert_eq!(state(&p), at_cp1);
    p.run(&["gc"]).success();
}

/// Edits the record of checkpoint `id` in state.db with SQLite.
fn edit_record(p: &Project, id: i64, edit: impl FnOnce(&mut serde_json::Value)) {
    let db = rusqlite::Connection::open(p.path().join(".backout/state.db")).unwrap();
    let text: String = db
        .query_row("SELECT resources FROM checkpoints WHERE id = ?1", [id], |r| r.get(0))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut v);
    db.execute(
        "UPDATE checkpoints SET resources = ?1 WHERE id = ?2",
        rusqlite::params![v.to_string(), id],
    )
    .unwrap();
}

/// Stores a manifest for `root` with no entries (as a capture of a path
/// that does not exist): restoring it removes whatever is at `root`.
fn empty_manifest(p: &Project, root: &str) -> String {
    let store = backout::store::Store::open(&p.path().join(".backout/objects")).unwrap();
    let b = store.batch();
    let h = backout::store::manifest::Manifest::new(root, Vec::new())
        .store(&b)
        .unwrap();
    b.commit().unwrap();
    h.to_hex()
}

/// Regression (issue 17): a checkpoint record edited to name `.backout` as
/// a captured path made restore delete the store, the log and the safety
/// checkpoint it had just taken. Whatever state.db says, restore (and undo,
/// which restores safety checkpoints) refuses a path inside `.backout` or
/// outside the project, and a repository that is not the project's.
#[test]
fn restore_refuses_a_record_that_names_the_store_or_leaves_the_project() {
    let (p, _) = changed_project();
    std::fs::create_dir_all(p.path().join("sentinel")).unwrap();
    std::fs::write(p.path().join("sentinel/keep"), "precious\n").unwrap();
    let store_files = || crate::walk(&p.path().join(".backout")).len();
    let checkpoints = || p.run(&["checkpoints", "--json"]).stdout();
    let before = state(&p);
    let listed = checkpoints();
    for (path, why) in [
        (".backout", "inside backout's own state directory"),
        (".backout/objects", "inside backout's own state directory"),
        ("../sentinel", "\"..\" component"),
    ] {
        let manifest = empty_manifest(&p, path);
        edit_record(&p, 1, |v| {
            v["paths"][0]["path"] = path.into();
            v["paths"][0]["manifest"] = manifest.clone().into();
        });
        let files = store_files();
        for args in [&["restore", "cp-1", "--dry-run"][..], &["restore", "cp-1"]] {
            let r = p.run(args);
            r.code_is(5);
            assert!(r.stderr().contains(why), "{path}, {args:?}: {}", r.stderr());
            assert_eq!(store_files(), files, "{path}, {args:?}: the store is as it was");
            assert_eq!(state(&p), before, "{path}, {args:?}: nothing restored");
            assert_eq!(checkpoints(), listed, "{path}, {args:?}: no safety checkpoint taken");
        }
        // fsck names the damaged record.
        let r = p.run(&["fsck"]);
        r.code_is(5);
        assert!(r.stdout().contains("cp-1"), "{path}: {}", r.stdout());
    }
    assert_eq!(
        std::fs::read_to_string(p.path().join("sentinel/keep")).unwrap(),
        "precious\n"
    );

    // Another repository named as the project's.
    let other = Project::new();
    other.file("x", "theirs\n");
    other.git(&["init", "-q", "-b", "main"]);
    other.git(&["add", "-A"]);
    other.git(&["commit", "-qm", "theirs"]);
    other.file("untracked", "theirs too\n");
    edit_record(&p, 1, |v| {
        v["git"]["toplevel"] = other.path().to_string_lossy().into_owned().into();
    });
    let r = p.run(&["restore", "cp-1", "--only", "git"]);
    r.code_is(5);
    assert!(
        r.stderr().contains("backout restores only the project's own"),
        "{}",
        r.stderr()
    );
    assert!(
        other.path().join("untracked").exists(),
        "the other repository is untouched"
    );

    // A safety checkpoint edited the same way: undo refuses it too.
    let (p, _) = changed_project();
    p.run(&["restore", "cp-1", "--only", "d"]).success();
    let after = state(&p);
    let manifest = empty_manifest(&p, ".backout");
    edit_record(&p, 2, |v| {
        v["paths"][0]["path"] = ".backout".into();
        v["paths"][0]["manifest"] = manifest.clone().into();
    });
    let files = store_files_of(&p);
    let r = p.run(&["undo"]);
    assert_ne!(r.code(), 0);
    assert!(
        r.stderr().contains("inside backout's own state directory"),
        "{}",
        r.stderr()
    );
    assert!(store_files_of(&p) >= files, "the store is still there");
    assert_eq!(state(&p), after);
}

fn store_files_of(p: &Project) -> usize {
    crate::walk(&p.path().join(".backout/objects")).len()
}
