//! `backout replay`: the plan's rules (or an edited plan's) over samples that
//! past watches and baselines recorded, with a planted regression.

use backout::oplog::{Oplog, SampleRow};
use backout::redact::Redactor;
use backout::watch::BaselineStats;

use crate::Project;

const PLAN: &str = "[plan]\nname = \"r\"\nrto = \"5m\"\n[[probe]]\nname = \"api\"\nevery = \"250ms\"\ntimeout = \"1s\"\nhttp = { url = \"http://127.0.0.1:9/\" }\n[[rule]]\nname = \"errors\"\nwhen = \"api.error_rate > 5% over 30s\"\n[[rule]]\nname = \"slow\"\nwhen = \"api.latency.p50 > baseline + 25% (sequential) over 30s\"\nthen = \"investigate\"\n";

const T0: i64 = 1_700_000_000_000;

/// `n` samples every 250ms from `start`: failed where `failed(i)`, latency
/// 20ms (or `slow` ms where `is_slow(i)`).
fn samples(start: i64, n: i64, failed: impl Fn(i64) -> bool, slow: impl Fn(i64) -> bool) -> Vec<SampleRow> {
    (0..n)
        .map(|i| SampleRow {
            probe: "api".into(),
            at: start + i * 250,
            ok: !failed(i),
            latency_ms: Some(if slow(i) { 45.0 } else { 18.0 + (i % 5) as f64 }),
            status: Some(if failed(i) { 500 } else { 200 }),
            ..Default::default()
        })
        .collect()
}

fn op(log: &Oplog, kind: &str, rows: &[SampleRow], outcome: &str) -> i64 {
    let start = rows[0].at;
    let end = rows[rows.len() - 1].at + 250;
    let op = log
        .begin(kind, &serde_json::json!({ "deploy_at": start }), start)
        .unwrap();
    log.insert_samples(op, rows).unwrap();
    if kind == "baseline" {
        let stats = BaselineStats::from_samples(rows);
        log.save_baseline(op, "api", end, &serde_json::to_value(&stats).unwrap())
            .unwrap();
    }
    log.finish(op, outcome, None, end).unwrap();
    op
}

#[test]
fn replay_finds_the_planted_regression_and_no_false_verdict() {
    let p = Project::new();
    p.file("backout.toml", PLAN);
    p.run(&["log"]).success();
    let log = Oplog::open(&p.path().join(".backout/state.db"), Redactor::new()).unwrap();
    // A minute of baseline, 1 failure in 100.
    op(&log, "baseline", &samples(T0, 240, |i| i % 100 == 50, |_| false), "ok");
    // A healthy watch whose very first probe failed (issue 17/18's false
    // rollback at the start of a watch).
    let healthy = op(
        &log,
        "watch",
        &samples(T0 + 70_000, 1200, |i| i == 0 || i % 100 == 50, |_| false),
        "time_up",
    );
    // A watch with a planted regression at +60s: a third of requests fail, and
    // every answer is slow.
    let bad = op(
        &log,
        "watch",
        &samples(T0 + 400_000, 480, |i| i >= 240 && i % 3 == 0, |i| i >= 240),
        "rollback_triggered",
    );
    drop(log);

    let r = p.run(&["replay", "--json", "--incident", &format!("op-{bad}@+60s")]);
    r.success();
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    let errors = &v["rules"][0];
    assert_eq!(errors["rule"], "errors");
    assert_eq!(errors["false_verdicts"], 0, "{v:#}");
    assert_eq!(errors["false_rollbacks_at_start"], 0, "{v:#}");
    assert_eq!(
        (errors["incidents"].as_u64(), errors["detected"].as_u64()),
        (Some(1), Some(1))
    );
    // 7 failures of 120 are needed; one in three fail: about 21 samples (5s).
    let delay = errors["median_delay_ms"].as_i64().unwrap();
    assert!((3_000..=8_000).contains(&delay), "{delay}");
    let slow = &v["rules"][1];
    assert_eq!(slow["false_verdicts"], 0, "{v:#}");
    assert_eq!(slow["detected"], 1, "{v:#}");
    assert!(slow["median_delay_ms"].as_i64().unwrap() <= 5_000, "{v:#}");
    let ops = v["ops"].as_array().unwrap();
    let h = ops.iter().find(|o| o["op"] == healthy).unwrap();
    assert_eq!(h["label"]["kind"], "healthy");
    assert!(
        h["changes"][0]["explanation"]
            .as_str()
            .unwrap()
            .contains("window filling: 1 of 120 samples so far (1 failed)"),
        "{h:#}"
    );

    // An edited rule, tried on the same history: any failure over 30s.
    p.file(
        "edited.toml",
        &PLAN.replace("api.error_rate > 5% over 30s", "api.error_rate > 0% over 30s"),
    );
    let r = p.run(&[
        "replay",
        "--json",
        "--rules",
        "edited.toml",
        "--incident",
        &format!("op-{bad}@+60s"),
    ]);
    r.success();
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert!(v["rules"][0]["false_verdicts"].as_u64().unwrap() >= 1, "{v:#}");
    assert!(
        v["rules"][0]["false_rollbacks_at_start"].as_u64().unwrap() >= 1,
        "{v:#}"
    );

    // In text: each verdict with its time, then the table.
    let t = p.run(&["replay", "--incident", &format!("op-{bad}@+60s")]);
    t.success();
    let out = t.stdout();
    assert!(out.contains(&format!("op-{bad} watch")), "{out}");
    assert!(out.contains("errors: detected "), "{out}");
    assert!(out.contains("false verdicts"), "{out}");
}
