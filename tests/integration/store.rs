//! Checkpoints of paths and git through the real binary: capture, list,
//! restore (dry run, real, undo), fsck on damage, gc, and kill -9 mid-capture.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::Project;

const PLAN: &str = "[plan]\nname = \"store\"\nrto = \"5m\"\n\n[capture]\ngit = true\npaths = [\"api/venv\", \"config/\", \"requirements.txt\"]\n";

fn project() -> Project {
    let p = Project::new();
    p.git(&["init", "-q", "-b", "main"]);
    p.file("backout.toml", PLAN)
        .file(".gitignore", "api/venv/\n")
        .file("app.py", "print('v1')\n")
        .file("requirements.txt", "flask==2.3.3\n")
        .file("config/app.toml", "mode = \"safe\"\n")
        .file("api/venv/lib/site/flask/__init__.py", "VERSION = '2.3.3'\n")
        .file("api/venv/bin/python", "#!/bin/sh\n");
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "v1"]);
    p
}

fn json(r: &crate::Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("{e}: {}", r.stdout()))
}

#[test]
fn checkpoint_list_dry_run_restore_and_undo() {
    let p = project();
    let r = p.run(&["checkpoint", "--label", "before upgrade"]);
    r.success();
    let out = r.stdout();
    assert!(out.contains("checkpoint cp-1 complete"), "{out}");
    assert!(out.contains("api/venv: 2 files"), "{out}");
    assert!(out.contains("git: main at"), "{out}");

    // The upgrade.
    p.file("api/venv/lib/site/flask/__init__.py", "VERSION = '3.0.0'\n")
        .file("api/venv/lib/site/werkzeug.py", "new dependency\n")
        .file("requirements.txt", "flask==3.0.0\n")
        .file("app.py", "print('v2')\n");
    std::fs::remove_dir_all(p.path().join("config")).unwrap();

    let list = p.run(&["checkpoints", "--json"]);
    list.success();
    let v = json(&list);
    assert_eq!(v[0]["id"], "cp-1");
    assert_eq!(v[0]["label"], "before upgrade");
    assert_eq!(v[0]["complete"], true);
    assert_eq!(
        v[0]["resources"],
        serde_json::json!(["git", "api/venv", "config", "requirements.txt"])
    );

    let dry = p.run(&["restore", "cp-1", "--dry-run"]);
    dry.success();
    let d = dry.stdout();
    for line in [
        "~ api/venv: change api/venv/lib/site/flask/__init__.py",
        "- api/venv: remove api/venv/lib/site/werkzeug.py",
        "+ config: add config/",
        "+ config: add config/app.toml",
        "~ requirements.txt: change requirements.txt",
        "~ git: change app.py",
    ] {
        assert!(d.contains(line), "dry run lacks {line:?}:\n{d}");
    }
    assert_eq!(
        std::fs::read_to_string(p.path().join("app.py")).unwrap(),
        "print('v2')\n",
        "dry run changed nothing"
    );

    let only = p.run(&["restore", "cp-1", "--only", "api/venv", "--only", "config/"]);
    only.success();
    assert!(
        only.stdout()
            .contains("safety checkpoint cp-2 (`backout undo` takes it back)"),
        "{}",
        only.stdout()
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("api/venv/lib/site/flask/__init__.py")).unwrap(),
        "VERSION = '2.3.3'\n"
    );
    assert!(!p.path().join("api/venv/lib/site/werkzeug.py").exists());
    assert!(p.path().join("config/app.toml").is_file());
    assert_eq!(
        std::fs::read_to_string(p.path().join("app.py")).unwrap(),
        "print('v2')\n",
        "--only left git alone"
    );

    // Undo: the safety checkpoint holds what the restore replaced; redo puts
    // the restore back, and undo takes it back again.
    p.run(&["undo"]).success();
    assert!(p.path().join("api/venv/lib/site/werkzeug.py").is_file());
    assert!(!p.path().join("config").exists());
    p.run(&["redo"]).success();
    assert!(!p.path().join("api/venv/lib/site/werkzeug.py").exists());
    assert!(p.path().join("config/app.toml").is_file());
    p.run(&["undo"]).success();
    assert!(p.path().join("api/venv/lib/site/werkzeug.py").is_file());
    assert!(!p.path().join("config").exists());

    // Everything back, git included; the operation is journaled.
    p.run(&["restore", "cp-1"]).success();
    assert_eq!(
        std::fs::read_to_string(p.path().join("app.py")).unwrap(),
        "print('v1')\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("requirements.txt")).unwrap(),
        "flask==2.3.3\n"
    );
    let log = p.run(&["log", "--kind", "restore", "--steps", "--json"]);
    let v = json(&log);
    let steps: Vec<&str> = v[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "restore git",
            "restore api/venv",
            "restore config",
            "restore requirements.txt"
        ]
    );
    assert!(
        p.run(&["restore", "cp-1", "--dry-run"])
            .stdout()
            .contains("would make 0 change(s)")
    );

    // The text listing keeps every column in line, whatever the label's
    // length (the safety checkpoints' "before restore of cp-1" is 22).
    let text = p.run(&["checkpoints"]);
    text.success();
    let out = text.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    let header = lines[0];
    let at = |name: &str| header.find(name).unwrap_or_else(|| panic!("{name} in {header:?}"));
    for line in &lines[1..] {
        // Values start where their header does: the phase "-" sits under PHASE,
        // the resources under RESOURCES.
        assert_eq!(&line[at("PHASE")..at("PHASE") + 2], "- ", "{out}");
        let r = at("RESOURCES");
        assert!(line[r - 2..r] == *"  " && !line[r..].starts_with(' '), "{out}");
    }
    assert!(out.contains("before restore of cp-1"), "{out}");

    let bad = p.run(&["restore", "cp-1", "--only", "nope"]);
    bad.code_is(1);
    assert!(
        bad.stderr().contains("holds: git, api/venv, config, requirements.txt"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn fsck_reports_damage_and_restore_refuses_it() {
    let p = project();
    p.run(&["checkpoint"]).success();
    p.file("config/app.toml", "mode = \"fast\"\n");
    p.run(&["checkpoint"]).success();
    p.run(&["fsck"]).success();

    // Damage the object holding flask's __init__.py (used by both checkpoints).
    let hash = blake3::hash(b"VERSION = '2.3.3'\n").to_hex().to_string();
    let obj = p.path().join(".backout/objects").join(&hash[..2]).join(&hash[2..]);
    let mut bytes = std::fs::read(&obj).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x10;
    std::fs::write(&obj, &bytes).unwrap();
    p.file("api/venv/lib/site/flask/__init__.py", "edited\n");

    let f = p.run(&["fsck"]);
    f.code_is(5);
    let out = f.stdout();
    assert!(out.contains(&format!("corrupt file {}", &hash[..12])), "{out}");
    assert!(out.contains("affects cp-1, cp-2"), "{out}");
    assert!(out.contains("file api/venv/lib/site/flask/__init__.py"), "{out}");

    let r = p.run(&["restore", "cp-1"]);
    r.code_is(5);
    assert!(r.stderr().contains("corrupt"), "{}", r.stderr());
    assert_eq!(
        std::fs::read_to_string(p.path().join("api/venv/lib/site/flask/__init__.py")).unwrap(),
        "edited\n",
        "nothing was written"
    );
    assert_eq!(
        json(&p.run(&["checkpoints", "--json"])).as_array().unwrap().len(),
        2,
        "no safety checkpoint either"
    );

    // A deleted manifest.
    std::fs::remove_file(&obj).unwrap();
    let v = json(&p.run(&["checkpoints", "--json"]));
    assert_eq!(v[0]["complete"], true);
    let f = p.run(&["fsck", "--json"]);
    f.code_is(5);
    let v = json(&f);
    assert_eq!(v["damaged"][0]["problem"], "missing");
    assert_eq!(v["affected_checkpoints"], serde_json::json!(["cp-1", "cp-2"]));
}

/// An incremental checkpoint trusts the previous one's objects only in store
/// directories unchanged since it was sealed: an object deleted behind
/// backout's back is noticed, its file is read again and the object stored
/// again, which heals the older checkpoint too.
#[test]
fn an_object_deleted_behind_backouts_back_is_stored_again_by_the_next_checkpoint() {
    let p = project();
    // Not written within the last 2 s, so the next checkpoint reuses them.
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for f in ["api/venv/lib/site/flask/__init__.py", "api/venv/bin/python"] {
        let file = std::fs::File::options().write(true).open(p.path().join(f)).unwrap();
        file.set_modified(an_hour_ago).unwrap();
    }
    p.run(&["checkpoint"]).success();
    let hash = blake3::hash(b"VERSION = '2.3.3'\n").to_hex().to_string();
    let obj = p.path().join(".backout/objects").join(&hash[..2]).join(&hash[2..]);
    std::fs::remove_file(&obj).unwrap();
    p.run(&["fsck"]).code_is(5);

    p.run(&["checkpoint"]).success();
    assert!(obj.exists(), "the next checkpoint stored it again");
    p.run(&["fsck"]).success();
    p.file("api/venv/lib/site/flask/__init__.py", "edited\n");
    p.run(&["restore", "cp-1", "--only", "api/venv"]).success();
    assert_eq!(
        std::fs::read_to_string(p.path().join("api/venv/lib/site/flask/__init__.py")).unwrap(),
        "VERSION = '2.3.3'\n"
    );
}

#[test]
fn gc_drops_old_checkpoints_and_only_their_objects() {
    let p = project();
    // Files written within 2 s before a capture are marked to be read again
    // next time, which changes their manifest; these are left alone from here
    // on, so every checkpoint must share one manifest for each.
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for f in [
        "requirements.txt",
        "api/venv/lib/site/flask/__init__.py",
        "api/venv/bin/python",
    ] {
        let file = std::fs::File::options().write(true).open(p.path().join(f)).unwrap();
        file.set_modified(an_hour_ago).unwrap();
    }
    for i in 0..4 {
        p.file("config/app.toml", &format!("generation = {i}\n"));
        p.run(&["checkpoint"]).success();
    }
    let r = p.run(&["gc", "--keep", "2", "--json"]);
    r.success();
    let v = json(&r);
    assert_eq!(v["dropped"], serde_json::json!(["cp-1", "cp-2"]));
    assert_eq!(v["kept"], serde_json::json!(["cp-3", "cp-4"]));
    assert_eq!(v["objects_removed"], 4, "two configs, two config manifests");
    p.run(&["fsck"]).success();
    assert!(p.git(&["for-each-ref", "refs/backout/"]).lines().count() == 2);
    p.run(&["restore", "cp-3", "--only", "config"]).success();
    assert_eq!(
        std::fs::read_to_string(p.path().join("config/app.toml")).unwrap(),
        "generation = 2\n"
    );

    // Never the newest complete one, whatever the rules say.
    let r = p.run(&["gc", "--keep", "0", "--older-than", "0s", "--json"]);
    r.success();
    assert_eq!(json(&r)["kept"], serde_json::json!(["cp-5"]));
    p.run(&["fsck"]).success();
    p.run(&["gc", "--older-than", "a week"]).code_is(2);
}

/// gc keeps what `backout undo` needs, removes nothing while an interrupted
/// rollback waits to be resumed, and never takes a checkpoint record it
/// cannot read for an empty one.
#[test]
fn gc_keeps_what_undo_and_resume_need_and_refuses_an_unreadable_record() {
    let p = project();
    p.run(&["checkpoint"]).success();
    p.file("config/app.toml", "mode = \"fast\"\n");
    p.run(&["restore", "cp-1", "--only", "config"]).success(); // safety cp-2
    p.run(&["checkpoint"]).success(); // cp-3
    let r = p.run(&["gc", "--keep", "1", "--json"]);
    r.success();
    let v = json(&r);
    assert_eq!(v["dropped"], serde_json::json!(["cp-1"]), "{v}");
    assert_eq!(
        v["kept"],
        serde_json::json!(["cp-2", "cp-3"]),
        "undo's checkpoint stays: {v}"
    );
    p.run(&["fsck"]).success();
    p.run(&["undo"]).success();
    assert_eq!(
        std::fs::read_to_string(p.path().join("config/app.toml")).unwrap(),
        "mode = \"fast\"\n",
        "undo put back what the restore replaced"
    );

    let db = rusqlite::Connection::open(p.path().join(".backout/state.db")).unwrap();
    let objects = || crate::walk(&p.path().join(".backout/objects")).len();
    let before = objects();

    // A rollback a crash interrupted: gc removes nothing until it is resumed.
    db.execute(
        "INSERT INTO operations (kind, args, started_at) VALUES ('rollback', '{}', 1)",
        [],
    )
    .unwrap();
    let op = db.last_insert_rowid();
    let r = p.run(&["gc", "--keep", "1"]);
    r.code_is(1);
    assert!(
        r.stderr()
            .contains(&format!("op-{op} is a rollback a crash interrupted")),
        "{}",
        r.stderr()
    );
    assert_eq!(objects(), before, "nothing removed");
    assert_eq!(json(&p.run(&["checkpoints", "--json"])).as_array().unwrap().len(), 3);
    db.execute("DELETE FROM operations WHERE id = ?1", [op]).unwrap();

    // A record this backout cannot read is not taken for an empty checkpoint:
    // the newest, cp-4 (undo's safety checkpoint), which gc always keeps.
    db.execute("UPDATE checkpoints SET resources = '{\"paths\": 5}' WHERE id = 4", [])
        .unwrap();
    let r = p.run(&["gc", "--keep", "1"]);
    assert_ne!(r.code(), 0, "{}", r.stdout());
    assert!(
        r.stderr().contains("the record of cp-4 cannot be read"),
        "{}",
        r.stderr()
    );
    assert_eq!(objects(), before, "nothing removed");
    let f = p.run(&["fsck"]);
    f.code_is(5);
    assert!(
        f.stdout().contains("invalid checkpoint record cp-4: affects cp-4"),
        "{}",
        f.stdout()
    );
}

#[test]
fn capture_paths_must_stay_inside_the_root() {
    let p = Project::new();
    p.file(
        "backout.toml",
        "[plan]\nname = \"x\"\nrto = \"5m\"\n\n[capture]\npaths = [\"../elsewhere\", \"/etc\", \"ok/\", \".backout/objects\"]\n",
    );
    let r = p.run(&["check"]);
    r.code_is(2);
    let e = r.stderr();
    assert!(
        e.contains("capture path \"../elsewhere\" is a path that leaves the plan root"),
        "{e}"
    );
    assert!(e.contains("capture path \"/etc\" is an absolute path"), "{e}");
    assert!(e.contains("backout's own state directory"), "{e}");
    assert!(e.contains("backout.toml:6:"), "{e}");
    assert!(e.contains("3 problems in the plan"), "\"ok/\" is fine: {e}");
}

/// A small xorshift, so the kill moments are random but the test is repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_9_during_capture_leaves_a_consistent_store() {
    let p = Project::new();
    p.file(
        "backout.toml",
        "[plan]\nname = \"k\"\nrto = \"5m\"\n\n[capture]\npaths = [\"tree\"]\n",
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for d in 0..20 {
        for f in 0..50 {
            let data: Vec<u8> = (0..2048 + (rng.next() % 6000) as usize)
                .map(|_| rng.next() as u8)
                .collect();
            let path = p.path().join(format!("tree/d{d}/f{f}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
    }
    let t = Instant::now();
    p.run(&["checkpoint"]).success();
    let full = t.elapsed().as_millis() as u64;

    let runs = 50;
    for i in 0..runs {
        // New content each time, so every capture has objects to write.
        for _ in 0..200 {
            let (d, f) = (rng.next() % 20, rng.next() % 50);
            let data: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
            std::fs::write(p.path().join(format!("tree/d{d}/f{f}")), data).unwrap();
        }
        let mut child = p
            .cmd(&["checkpoint", "--label", &format!("run {i}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.next() % (full + 20)));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
    }

    let f = p.run(&["fsck"]);
    f.success();
    assert!(f.stdout().contains("store is clean"), "{}", f.stdout());
    let v = json(&p.run(&["checkpoints", "--json"]));
    let all = v.as_array().unwrap();
    // A kill that lands before the command records its checkpoint (a slow
    // start on a loaded machine) leaves no row at all: at most one per run.
    assert!(
        all.len() <= runs + 1 && all.len() > runs / 2,
        "{} checkpoints",
        all.len()
    );
    let interrupted: Vec<&serde_json::Value> = all.iter().filter(|c| c["complete"] == false).collect();
    assert!(!interrupted.is_empty(), "some capture was interrupted");
    for c in &interrupted {
        assert_eq!(
            c["resources"],
            serde_json::json!([]),
            "an interrupted checkpoint records nothing"
        );
        let r = p.run(&["restore", c["id"].as_str().unwrap(), "--dry-run"]);
        r.code_is(1);
        assert!(r.stderr().contains("is incomplete"), "{}", r.stderr());
    }
    // Every complete one restores; gc clears what the kills left behind.
    let last = all.iter().rev().find(|c| c["complete"] == true).unwrap();
    p.run(&["restore", last["id"].as_str().unwrap()]).success();
    p.run(&["gc"]).success();
    assert_eq!(
        std::fs::read_dir(p.path().join(".backout/objects/tmp"))
            .unwrap()
            .count(),
        0
    );
    p.run(&["fsck"]).success();
}

/// Large captures and restores draw a progress bar with files, bytes and rate
/// on a terminal; never with `--quiet` or `--json`, nor when stderr is not a
/// terminal. The terminal is a pty from `script` (util-linux), when present.
#[test]
#[allow(clippy::print_stderr)]
fn progress_is_drawn_only_on_a_terminal() {
    let p = Project::new();
    p.file(
        "backout.toml",
        "[plan]\nname = \"bar\"\nrto = \"5m\"\n\n[capture]\npaths = [\"data\"]\n",
    );
    // Incompressible, so that reading takes long enough to be drawn.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..300 {
        let text: String = (0..40_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                char::from(b'!' + (x >> 58) as u8)
            })
            .collect();
        p.file(&format!("data/d{}/f{i}.bin", i % 7), &text);
    }
    // Not a terminal: nothing but the result.
    let r = p.run(&["checkpoint"]);
    r.success();
    assert_eq!(r.stderr(), "", "no progress without a terminal");
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped the terminal half: no `script` (util-linux)");
        return;
    }
    let in_pty = |args: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec", &format!("{} {args}", crate::bin().display()), "/dev/null"])
            .current_dir(p.path())
            .env("NO_COLOR", "1")
            .env_remove("BACKOUT_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args}: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::fs::remove_dir_all(p.path().join(".backout")).unwrap();
    let shown = in_pty("checkpoint");
    assert!(shown.contains("scanning data"), "{shown}");
    // Files, bytes and rate: each stage's first frame is always drawn.
    assert!(shown.contains("reading data ["), "{shown}");
    assert!(shown.contains("/300 files, ") && shown.contains(" MiB ("), "{shown}");
    assert!(shown.contains("B/s, "), "a rate: {shown}");
    let quiet = in_pty("--quiet checkpoint");
    assert!(
        !quiet.contains("reading data") && !quiet.contains("scanning"),
        "{quiet}"
    );
    std::fs::remove_dir_all(p.path().join("data")).unwrap();
    let restored = in_pty("restore cp-1");
    assert!(
        restored.contains("staging data [") && restored.contains("/300 files, "),
        "{restored}"
    );
    let json = in_pty("--json restore cp-1");
    assert!(!json.contains("restoring data") && !json.contains("scanning"), "{json}");
}
