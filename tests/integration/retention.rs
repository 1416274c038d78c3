//! Safety checkpoints are pruned by `[store]`: many restores of a tree that
//! changes each time keep the store bounded (by count, or by a size budget),
//! the command says what it pruned, and undo still works afterwards.

use crate::Project;

/// 1 MB that does not compress and differs for each `seed`.
fn blob(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..1_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Which blob `data/blob` holds now, without printing a megabyte on failure.
#[track_caller]
fn assert_blob(p: &Project, seed: u64, what: &str) {
    let now = std::fs::read(p.path().join("data/blob")).unwrap();
    let which = (0..=20).find(|&i| blob(i) == now);
    assert_eq!(which, Some(seed), "{what}");
}

fn store_bytes(p: &Project) -> u64 {
    crate::walk(&p.path().join(".backout/objects"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

fn json(r: &crate::Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("{e}: {}", r.stdout()))
}

/// Twenty restores of `data/`, each replacing 1 MB written since: each
/// safety checkpoint holds a new megabyte. Without pruning the store grew by
/// one each time (the 50 restores of 57 MiB reached 3 GB).
fn restores(p: &Project, bound: u64, what: &str) {
    for i in 1..=20u64 {
        std::fs::write(p.path().join("data/blob"), blob(i)).unwrap();
        let r = p.run(&["restore", "cp-1"]);
        r.success();
        assert_blob(p, 0, what);
        let size = store_bytes(p);
        assert!(
            size <= bound,
            "{what}: restore {i}: the store holds {size} bytes, over {bound}"
        );
        if i > 5 {
            assert!(r.stderr().contains("pruned 1 "), "{what}: restore {i}: {}", r.stderr());
        }
    }
}

fn project(store: &str) -> Project {
    let p = Project::new();
    p.file(
        "backout.toml",
        &format!("[plan]\nname = \"retention\"\n\n[capture]\npaths = [\"data\"]\n\n[store]\n{store}\n"),
    );
    std::fs::create_dir(p.path().join("data")).unwrap();
    std::fs::write(p.path().join("data/blob"), blob(0)).unwrap();
    p.run(&["checkpoint"]).success();
    p
}

#[test]
fn many_restores_keep_the_newest_safety_checkpoints_and_undo_still_works() {
    let p = project("keep-safety = 3");
    // cp-1 and three safety checkpoints, a megabyte each, and small manifests.
    restores(&p, 4_100_000, "keep-safety = 3");
    let r = p.run(&["checkpoints", "--json"]);
    let ids: Vec<String> = json(&r)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids.len(), 4, "cp-1 and the newest three safety checkpoints: {ids:?}");
    p.run(&["fsck"]).success();

    // Undo takes back the last restore, from a safety checkpoint that was kept.
    p.run(&["undo"]).success();
    assert_blob(&p, 20, "undo: what the last restore replaced");
    // And the one before, whose safety checkpoint was kept too.
    p.run(&["undo"]).success();
    assert_blob(&p, 19, "a second undo: what the restore before replaced");
    p.run(&["redo"]).success();
    assert_blob(&p, 20, "redo: as before the second undo");

    // gc applies the same rules: with keep-safety = 0 it drops every safety
    // checkpoint but those undo and redo need and the newest.
    let plan = std::fs::read_to_string(p.path().join("backout.toml")).unwrap();
    std::fs::write(
        p.path().join("backout.toml"),
        plan.replace("keep-safety = 3", "keep-safety = 0"),
    )
    .unwrap();
    let r = p.run(&["gc", "--json"]);
    r.success();
    let v = json(&r);
    assert!(!v["pruned"].as_array().unwrap().is_empty(), "{v}");
    p.run(&["undo"]).success();
    assert_blob(&p, 19, "undo after gc takes back the redo");
}

#[test]
fn a_size_budget_bounds_the_store() {
    let p = project("keep-safety = 100\nmax-size = \"3.5MB\"");
    restores(&p, 3_500_000, "max-size = 3.5MB");
    p.run(&["undo"]).success();
    assert_blob(&p, 20, "undo after pruning by size");

    // Over budget with nothing left to drop: said, not silently ignored.
    let plan = std::fs::read_to_string(p.path().join("backout.toml")).unwrap();
    std::fs::write(p.path().join("backout.toml"), plan.replace("3.5MB", "1MB")).unwrap();
    let r = p.run(&["gc"]);
    r.success();
    assert!(r.stderr().contains("over [store] max-size = 1MB"), "{}", r.stderr());
}

#[test]
fn store_keys_are_checked_with_their_location() {
    for (bad, expect) in [
        ("keep-safety = -1", "backout.toml:8:15"),
        ("max-size = \"2 gigs\"", "backout.toml:8:12"),
        ("max-size = \"0B\"", "backout.toml:8:12"),
        ("keep-safety-for = \"soon\"", "backout.toml:8:19"),
        ("max-bytes = \"2GB\"", "backout.toml:8"),
    ] {
        let p = Project::new();
        p.file(
            "backout.toml",
            &format!("[plan]\nname = \"retention\"\n\n[capture]\npaths = [\"data\"]\n\n[store]\n{bad}\n"),
        );
        let r = p.run(&["check"]);
        r.code_is(2);
        assert!(r.stderr().contains(expect), "{bad}: {}", r.stderr());
        assert!(r.stderr().contains("hint"), "{bad}: {}", r.stderr());
    }
}
