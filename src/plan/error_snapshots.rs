//! Snapshots of the exact text of plan errors, as a user sees them: the
//! message, `backout.toml:LINE:COL`, the line with a caret under the bad value,
//! and the hint. Each test starts from [`VALID`], makes one mistake, and pins
//! the whole report, so a regression in a caret or a hint shows up in review.

use std::path::Path;

use crate::context::Env;
use crate::plan::Plan;

/// A complete plan that validates; every test breaks it in one place.
const VALID: &str = r#"[plan]
name = "api"
rto = "5m"

[capture]
git = true

[[service]]
name = "api"
start = "python app.py --port 8000"
ready = "health"

[[probe]]
name = "health"
every = "1s"
timeout = "500ms"
http = { url = "http://127.0.0.1:8000/health", status = 200, headers = { Authorization = "Bearer ${TOKEN}" } }

[[rule]]
name = "errors"
when = "health.error_rate > 5% over 30s"
then = "rollback"

[success]
when = ["health.error_rate == 0 for 1m"]

[rollback]
steps = [{ git = "revert" }, { service = "api", action = "restart" }, { wait = "health", timeout = "30s" }]

[verify]
checks = [{ http = "http://127.0.0.1:8000/health", status = 200 }]
stable-for = "10s"
"#;

fn parse(src: &str) -> Result<Plan, crate::plan::PlanErrors> {
    Plan::parse(Path::new("backout.toml"), src, &Env::from_pairs([("TOKEN", "hunter2")]))
}

/// [`VALID`] with `from` (which must occur exactly once) replaced by `to`.
fn broken(from: &str, to: &str) -> String {
    assert_eq!(VALID.matches(from).count(), 1, "{from:?} must occur once in VALID");
    VALID.replace(from, to)
}

/// The full error report for `src`, which must not validate.
fn report(src: &str) -> String {
    match parse(src) {
        Ok(_) => panic!("the plan should not validate:\n{src}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_base_plan_is_valid() {
    let plan = parse(VALID).unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
}

#[test]
fn toml_syntax_error() {
    insta::assert_snapshot!(report(&broken("name = \"api\"\nrto", "name = \"api\nrto")));
}

#[test]
fn unknown_top_level_table() {
    insta::assert_snapshot!(report(&broken("[[probe]]", "[[probes]]")));
}

#[test]
fn unknown_key_in_probe() {
    insta::assert_snapshot!(report(&broken("every = \"1s\"", "evrey = \"1s\"")));
}

#[test]
fn snake_case_key_in_verify() {
    insta::assert_snapshot!(report(&broken("stable-for", "stable_for")));
}

#[test]
fn missing_required_field() {
    insta::assert_snapshot!(report(&broken("[[probe]]\nname = \"health\"\n", "[[probe]]\n")));
}

#[test]
fn bad_duration() {
    insta::assert_snapshot!(report(&broken("rto = \"5m\"", "rto = \"5 minutes\"")));
}

#[test]
fn bad_duration_in_rule_window() {
    insta::assert_snapshot!(report(&broken("over 30s", "over 5 minutes")));
}

#[test]
fn unknown_field_in_rule_metric() {
    insta::assert_snapshot!(report(&broken("health.error_rate > 5%", "health.eror_rate > 5%")));
}

#[test]
fn rule_names_unknown_probe() {
    insta::assert_snapshot!(report(&broken("health.error_rate > 5%", "helth.error_rate > 5%")));
}

#[test]
fn percentage_without_percent_sign() {
    insta::assert_snapshot!(report(&broken("error_rate > 5%", "error_rate > 5")));
}

#[test]
fn unknown_action() {
    insta::assert_snapshot!(report(&broken("then = \"rollback\"", "then = \"panic\"")));
}

#[test]
fn missing_env_var() {
    insta::assert_snapshot!(report(&broken("Bearer ${TOKEN}", "Bearer ${NOPE}")));
}

#[test]
fn bad_http_status_class() {
    insta::assert_snapshot!(report(&broken("status = 200, headers", "status = \"6xx\", headers")));
}

#[test]
fn rollback_step_with_two_kinds() {
    insta::assert_snapshot!(report(&broken(
        "{ git = \"revert\" }",
        "{ git = \"revert\", wait = \"health\" }"
    )));
}

#[test]
fn invalid_regex_in_match() {
    insta::assert_snapshot!(report(&broken(
        "status = 200, headers",
        "status = 200, match = \"ok(\", headers"
    )));
}

#[test]
fn two_errors_in_file_order() {
    let src = broken("every = \"1s\"", "every = \"1 sec\"").replace("then = \"rollback\"", "then = \"panic\"");
    insta::assert_snapshot!(report(&src));
}

// Regression tests for fixes made while reviewing the snapshots above.

/// The caret used to cover the whole command string, not the reference.
#[test]
fn missing_env_var_in_command() {
    insta::assert_snapshot!(report(&broken("--port 8000\"", "--token ${NOPE}\"")));
}

/// The caret used to sit under the `$` only (the span ended before it started).
#[test]
fn unclosed_env_reference() {
    insta::assert_snapshot!(report(&broken("Bearer ${TOKEN}", "Bearer ${TOKEN")));
}

/// `for 2 hours` used to say it found "2", with the caret under the number only.
#[test]
fn bad_duration_in_rule_hold() {
    insta::assert_snapshot!(report(&broken("== 0 for 1m", "== 0 for 2 hours")));
}

/// Used to say "did not match any variant of untagged enum RawCommand".
#[test]
fn command_of_the_wrong_type() {
    insta::assert_snapshot!(report(&broken("start = \"python app.py --port 8000\"", "start = 5")));
}

/// Used to hint "add `plan = ...` to this table" with no table in sight.
#[test]
fn missing_plan_table() {
    insta::assert_snapshot!(report(&broken("[plan]\nname = \"api\"\nrto = \"5m\"\n", "")));
}

/// A level's own checks (`[rollback] verify`) are validated like `[verify]`'s:
/// a typo in a key is an error there too.
#[test]
fn unknown_key_in_a_level_check() {
    insta::assert_snapshot!(report(&broken(
        "{ wait = \"health\", timeout = \"30s\" }]\n",
        "{ wait = \"health\", timeout = \"30s\" }]\nverify = [{ file = \"app.py\", contain = \"fixed\" }]\n"
    )));
}

/// ...and a check naming a probe the plan does not have.
#[test]
fn level_check_names_unknown_probe() {
    insta::assert_snapshot!(report(&broken(
        "{ wait = \"health\", timeout = \"30s\" }]\n",
        "{ wait = \"health\", timeout = \"30s\" }]\nverify = [{ probe = \"helth\" }]\n"
    )));
}

// Out-of-range values (issue 17): each used to panic (exit 101) or wrap silently.

/// Used to panic converting the seconds to a duration.
#[test]
fn duration_too_long() {
    insta::assert_snapshot!(report(&broken("rto = \"5m\"", "rto = \"18446744073709551616s\"")));
}

/// Each part fits; the sum used to overflow.
#[test]
fn duration_sum_too_long() {
    insta::assert_snapshot!(report(&broken(
        "timeout = \"30s\"",
        "timeout = \"5000000000000000000s5000000000000000000s\""
    )));
}

#[test]
fn rule_window_too_long() {
    insta::assert_snapshot!(report(&broken("over 30s", "over 1000000h")));
}

#[test]
fn rule_window_of_too_many_samples() {
    insta::assert_snapshot!(report(&broken("over 30s", "over 99999999999999999999 samples")));
}

#[test]
fn min_samples_too_many() {
    insta::assert_snapshot!(report(&broken(
        "then = \"rollback\"\n",
        "then = \"rollback\"\nmin-samples = 4294967297\n"
    )));
}

#[test]
fn latency_threshold_too_long() {
    insta::assert_snapshot!(report(&broken("health.error_rate > 5%", "health.latency > 200000000h")));
}

#[test]
fn size_threshold_too_large() {
    insta::assert_snapshot!(report(&broken("health.error_rate > 5%", "health.size > 2000TiB")));
}

#[test]
fn threshold_not_finite() {
    insta::assert_snapshot!(report(&broken("health.error_rate > 5%", "health.status > inf")));
}

/// Used to be taken modulo 2^32: 4294967296 meant exit code 0.
#[test]
fn check_exit_code_out_of_range() {
    insta::assert_snapshot!(report(&broken(
        "checks = [{ http",
        "checks = [{ run = \"pytest -q\", exit-code = 4294967296 }, { http"
    )));
}

#[test]
fn time_scale_too_fast() {
    insta::assert_snapshot!(report(&broken("rto = \"5m\"", "rto = \"5m\"\ntime-scale = 1e300")));
}

#[test]
fn integer_too_large_for_toml() {
    insta::assert_snapshot!(report(&broken(
        "then = \"rollback\"\n",
        "then = \"rollback\"\nmin-samples = 18446744073709551616\n"
    )));
}

/// Used to say "stream did not contain valid UTF-8" with no line or column.
#[test]
fn plan_not_utf8() {
    let mut bytes = VALID.as_bytes().to_vec();
    let at = VALID.find("\"api\"\nrto").unwrap() + 3;
    bytes.insert(at, 0xE9); // "apié" in Latin-1
    let e = crate::plan::utf8(Path::new("backout.toml"), bytes).unwrap_err();
    insta::assert_snapshot!(e.to_string());
}
