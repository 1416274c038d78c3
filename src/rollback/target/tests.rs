//! The default-target rule on operation logs written by hand, one per story.

use super::*;
use crate::deploy::MarkedBy;
use crate::redact::Redactor;

/// An operation log with a clock that moves 10 ms per call.
struct Log {
    log: Oplog,
    now: std::cell::Cell<i64>,
    _dir: tempfile::TempDir,
}

impl Log {
    fn new() -> Log {
        let dir = tempfile::tempdir().unwrap();
        Log {
            log: Oplog::open(&dir.path().join("state.db"), Redactor::new()).unwrap(),
            now: std::cell::Cell::new(1_000),
            _dir: dir,
        }
    }

    fn tick(&self) -> i64 {
        self.now.set(self.now.get() + 10);
        self.now.get()
    }

    fn op(&self, kind: &str, args: serde_json::Value, outcome: &str) -> OpId {
        let op = self.log.begin(kind, &args, self.tick()).unwrap();
        self.log.finish(op, outcome, None, self.tick()).unwrap();
        op
    }

    fn cp_in(&self, op: OpId, label: Option<&str>, phase: Option<&str>) -> i64 {
        let id = self.log.insert_checkpoint(op, self.tick(), label, phase).unwrap();
        self.log.complete_checkpoint(id, &serde_json::json!({})).unwrap();
        id
    }

    /// `backout checkpoint`.
    fn checkpoint(&self) -> i64 {
        let op = self
            .log
            .begin("checkpoint", &serde_json::json!({}), self.tick())
            .unwrap();
        let id = self.cp_in(op, None, None);
        self.log.finish(op, "ok", None, self.tick()).unwrap();
        id
    }

    /// `backout deploy -- CMD`: its checkpoint, then the marker.
    fn deploy(&self) -> i64 {
        let op = self.log.begin("deploy", &serde_json::json!({}), self.tick()).unwrap();
        let id = self.cp_in(op, Some("before deploy"), None);
        let mut m = Marker::new(op, self.tick(), Some(id), MarkedBy::Deploy);
        m.command = Some("./deploy.sh".into());
        deploy::record(&self.log, &m).unwrap();
        self.log.finish(op, "ok", None, self.tick()).unwrap();
        id
    }

    /// `backout run --phase NAME` as apply_phase and cli/run do it.
    fn run_phase(&self, name: &str) -> i64 {
        let op = self
            .log
            .begin("apply", &serde_json::json!({ "phase": name }), self.tick())
            .unwrap();
        let id = self.cp_in(op, Some(&format!("before phase {name}")), Some(name));
        if let Some(before) = phase_marker_checkpoint(&self.log, id).unwrap() {
            let mut m = Marker::new(op, self.tick(), Some(before), MarkedBy::Phase);
            m.phase = Some(name.into());
            deploy::record(&self.log, &m).unwrap();
        }
        self.log.finish(op, "ok", None, self.tick()).unwrap();
        id
    }

    /// `backout run --phase NAME` whose checks passed.
    fn run_verified_phase(&self, name: &str) -> i64 {
        let id = self.run_phase(name);
        let op = self.log.checkpoint(id).unwrap().unwrap().op_id;
        self.log
            .event(op, self.tick(), PHASE_VERIFIED, &serde_json::json!({ "phase": name }))
            .unwrap();
        id
    }

    /// A full rollback to `to`, with its safety checkpoint.
    fn rollback(&self, to: i64, outcome: &str) -> OpId {
        let args = serde_json::json!({ "checkpoint": checkpoint_name(to), "checkpoint_id": to, "selection": { "level": "full" } });
        let op = self.log.begin("rollback", &args, self.tick()).unwrap();
        self.cp_in(op, Some("before rollback"), None);
        self.log.finish(op, outcome, None, self.tick()).unwrap();
        op
    }

    fn watch(&self, outcome: &str) -> OpId {
        self.op("watch", serde_json::json!({}), outcome)
    }

    fn verify_passed(&self) -> Option<i64> {
        let op = self.log.begin("verify", &serde_json::json!({}), self.tick()).unwrap();
        let good = record_good(&self.log, op, self.tick(), "verify passed").unwrap();
        self.log.finish(op, "ok", None, self.tick()).unwrap();
        good
    }

    fn target(&self) -> Target {
        default_target(&self.log).unwrap()
    }
}

#[test]
fn no_checkpoint_at_all_says_how_to_make_one() {
    let l = Log::new();
    assert!(matches!(default_target(&l.log), Err(TargetError::NoCheckpoint)));
}

/// A log from before markers: checkpoints by `backout checkpoint` only. The
/// newest is the target, with a warning that nothing vouches for it.
#[test]
fn an_older_log_targets_its_newest_checkpoint_and_says_it_is_not_known_good() {
    let l = Log::new();
    l.checkpoint();
    let two = l.checkpoint();
    let t = l.target();
    assert_eq!(t.row.id, two);
    assert!(!t.known_good);
    assert!(t.why.contains("taken by `backout checkpoint`"), "{}", t.why);
    assert!(t.warnings[0].contains("not known to be good"), "{:?}", t.warnings);
}

#[test]
fn a_deploy_targets_its_checkpoint_and_not_one_taken_during_it() {
    let l = Log::new();
    l.checkpoint();
    let before = l.deploy();
    // Taken by hand while the deploy is open: it holds the deployed state.
    let during = l.checkpoint();
    let t = l.target();
    assert_eq!(t.row.id, before);
    assert!(t.known_good);
    assert!(t.why.contains("taken before the deploy of"), "{}", t.why);
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains(&format!("cp-{during} was taken during the deploy"))),
        "{:?}",
        t.warnings
    );
    assert_eq!(open_deploy(&l.log).unwrap().unwrap().checkpoint_id, Some(before));
}

/// The story: a checkpoint, a change made by hand, then `backout run
/// --phase restart`, whose checkpoint holds the broken state. The change
/// began at the checkpoint taken by hand: that is the target.
#[test]
fn a_phase_run_after_a_checkpoint_goes_back_to_that_checkpoint() {
    let l = Log::new();
    let declared = l.checkpoint();
    let phase_cp = l.run_phase("restart");
    let m = open_deploy(&l.log).unwrap().expect("the phase run is the deploy");
    assert_eq!(m.checkpoint_id, Some(declared));
    let t = l.target();
    assert_eq!(t.row.id, declared, "{t:?}");
    assert!(t.known_good);
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains(&format!("cp-{phase_cp} was taken during"))),
        "{:?}",
        t.warnings
    );
}

/// `backout run` with nothing declared: the first phase's checkpoint is the
/// state before the change, the later phases' are part of it.
#[test]
fn a_multi_phase_run_goes_back_to_before_its_first_phase() {
    let l = Log::new();
    let first = l.run_phase("one");
    l.run_phase("two");
    assert_eq!(l.target().row.id, first);
    // A watch that succeeded ends that change: the next run starts a new one.
    l.watch("success");
    let third = l.run_phase("three");
    assert_eq!(l.target().row.id, third);
    // A phase verified by its checks ends its change, as a watch does: the
    // next phase is a change of its own.
    let l = Log::new();
    l.run_verified_phase("one");
    let two = l.run_verified_phase("two");
    assert_eq!(l.target().row.id, two);
}

/// After a rollback to cp-1, a checkpoint taken between the deploy and the
/// rollback (cp-2) holds the state rolled back: aiming there would revert
/// the revert. The rollback's own safety checkpoint never counts either.
#[test]
fn after_a_rollback_the_state_it_took_back_is_never_the_target() {
    let l = Log::new();
    let good = l.checkpoint();
    let bad = l.checkpoint(); // the broken state, taken by hand after the change
    let rb = l.rollback(good, "ok");
    let t = l.target();
    assert_eq!(t.row.id, good, "{t:?}");
    let already = t.already_there.expect("the rollback already returned there");
    assert!(
        already.contains(&format!("rollback op-{rb} already returned")),
        "{already}"
    );
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains(&format!("cp-{bad} holds the state rollback op-{rb} took back"))),
        "{:?}",
        t.warnings
    );
    // The verify after it vouches for the target.
    assert_eq!(l.verify_passed(), Some(good));
    let t = l.target();
    assert!(t.known_good);
    assert!(t.why.contains("verify passed at it"), "{}", t.why);
}

#[test]
fn a_failed_rollback_still_marks_what_it_left_and_is_not_already_there() {
    let l = Log::new();
    let good = l.checkpoint();
    l.checkpoint();
    l.rollback(good, "failed");
    let t = l.target();
    assert_eq!(t.row.id, good);
    assert!(t.already_there.is_none());
}

#[test]
fn with_only_unsafe_checkpoints_it_refuses_and_says_why() {
    // gc dropped every checkpoint but a rollback's safety checkpoint.
    let l = Log::new();
    let op = l.log.begin("rollback", &serde_json::json!({}), l.tick()).unwrap();
    l.cp_in(op, Some("before rollback"), None);
    l.log.finish(op, "failed", None, l.tick()).unwrap();
    match default_target(&l.log) {
        Err(TargetError::NoneSafe { reasons }) => assert!(reasons.contains("safety checkpoint"), "{reasons}"),
        other => panic!("{other:?}"),
    }
}

/// A verify that passed after a deploy was accepted vouches for a checkpoint
/// taken then; one taken while a deploy is still open is not the target even
/// when verify passed at it.
#[test]
fn good_counts_once_the_change_is_over() {
    let l = Log::new();
    let before = l.deploy();
    let during = l.checkpoint();
    assert_eq!(l.verify_passed(), Some(during));
    assert_eq!(l.target().row.id, before, "the deploy is still open");
    l.watch("success");
    assert!(open_deploy(&l.log).unwrap().is_none());
    let t = l.target();
    assert_eq!(t.row.id, during);
    assert!(t.known_good);
}

#[test]
fn a_named_checkpoint_that_the_rule_excludes_is_explained_with_a_warning() {
    let l = Log::new();
    l.deploy();
    let during = l.checkpoint();
    let row = l.log.checkpoint(during).unwrap().unwrap();
    let t = explain(&l.log, &row).unwrap();
    assert!(!t.known_good);
    assert!(t.warnings[0].contains("taken during the deploy"), "{:?}", t.warnings);
}

/// Every operation that replaces the project's state first takes a safety
/// checkpoint of it: none is ever a default target, whatever its label.
#[test]
fn safety_checkpoints_are_never_targets() {
    let l = Log::new();
    let chosen = l.checkpoint();
    for kind in ["rollback", "restore", "undo", "redo"] {
        let op = l.log.begin(kind, &serde_json::json!({}), l.tick()).unwrap();
        l.cp_in(op, Some("a label a user might give"), None);
        l.log.finish(op, "failed", None, l.tick()).unwrap();
        assert_eq!(l.target().row.id, chosen, "{kind}");
    }
}

/// A deploy made on top of one known bad (its watch reached a rollback
/// verdict nobody acted on) fixes forward: its checkpoint holds the broken
/// state, so the target stays the checkpoint before the first; the watch
/// counts from the newer deploy.
#[test]
fn a_deploy_on_top_of_a_known_bad_one_goes_back_before_both() {
    let l = Log::new();
    let first = l.deploy();
    l.watch("rollback_triggered");
    let second = l.deploy();
    let t = l.target();
    assert_eq!(t.row.id, first, "{t:?}");
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains(&format!("cp-{second} was taken during the deploy")) && w.contains("known bad")),
        "{:?}",
        t.warnings
    );
    assert_eq!(open_deploy(&l.log).unwrap().unwrap().checkpoint_id, Some(second));
    // Without the verdict, the newer deploy is accepted as its own change.
    let l = Log::new();
    l.deploy();
    let second = l.deploy();
    assert_eq!(l.target().row.id, second);
}

/// A whole restore by hand takes the state back as a rollback does; one of
/// a single resource (`--only`) does not make later checkpoints the broken
/// state.
#[test]
fn a_whole_restore_counts_as_a_return_and_a_partial_one_does_not() {
    for (only, expect_newer) in [(serde_json::json!([]), false), (serde_json::json!(["config"]), true)] {
        let l = Log::new();
        let first = l.checkpoint();
        let second = l.checkpoint();
        let op = l
            .log
            .begin(
                "restore",
                &serde_json::json!({ "checkpoint": "cp-1", "only": only }),
                l.tick(),
            )
            .unwrap();
        l.cp_in(op, Some("before restore of cp-1"), None);
        l.log.finish(op, "ok", None, l.tick()).unwrap();
        let t = l.target();
        assert_eq!(t.row.id, if expect_newer { second } else { first }, "{only}");
    }
}
