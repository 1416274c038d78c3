//! The plan file exactly as written: serde types that mirror `backout.toml`.
//!
//! Unknown keys are errors (`deny_unknown_fields`): in a rollback plan a silently
//! ignored typo is a safety bug. Values stay strings here, with their spans, so
//! validation (`plan::validate`) can point at the exact text when it rejects one.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPlan {
    pub plan: S<RawMeta>,
    pub capture: Option<S<RawCapture>>,
    pub baseline: Option<S<RawBaseline>>,
    #[serde(default, rename = "service")]
    pub services: Vec<S<RawService>>,
    #[serde(default, rename = "probe")]
    pub probes: Vec<S<RawProbe>>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<S<RawRule>>,
    pub success: Option<S<RawSuccess>>,
    pub rollback: Option<S<RawRollback>>,
    pub verify: Option<S<RawVerify>>,
    #[serde(default, rename = "review")]
    pub reviews: Vec<S<RawReview>>,
    pub decision: Option<S<RawDecision>>,
}

/// Names of the top-level tables, for "did you mean" hints.
pub const TOP_LEVEL: &[&str] = &[
    "plan", "capture", "baseline", "service", "probe", "rule", "success", "rollback", "verify", "review", "decision",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMeta {
    pub name: S<String>,
    pub description: Option<S<String>>,
    /// Recovery-time objective, e.g. `"5m"`.
    pub rto: Option<S<String>>,
    /// Divides watch durations (intervals, windows, holds, review offsets) for
    /// rehearsals and tests: `60` runs an hour's schedule in a minute.
    pub time_scale: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCapture {
    pub git: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBaseline {
    /// How long `backout baseline` samples by default.
    #[serde(rename = "for")]
    pub duration: Option<S<String>>,
    /// `backout checkpoint` also measures a baseline.
    pub on_checkpoint: Option<S<bool>>,
}

/// A command: one string (split like a shell would, but run without one unless
/// `shell = true`) or an argument list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCommand {
    Line(String),
    Argv(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawService {
    pub name: S<String>,
    pub kind: Option<S<String>>,
    pub start: Option<S<RawCommand>>,
    pub cwd: Option<S<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, S<String>>,
    /// The probe that says the service is ready after a start.
    pub ready: Option<S<String>>,
    pub ready_timeout: Option<S<String>>,
    pub stop_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProbe {
    pub name: S<String>,
    pub every: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub http: Option<S<RawHttp>>,
    pub tcp: Option<S<RawTcp>>,
    pub command: Option<S<RawCommandProbe>>,
    pub log: Option<S<RawLog>>,
    pub process: Option<S<RawProcess>>,
    pub prometheus: Option<S<RawPrometheus>>,
}

/// `tcp = { address = "127.0.0.1:5432" }`: up when a connection opens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTcp {
    pub address: S<String>,
}

/// `command = { run = "...", exit-code = 0, match = "REGEX", number = "REGEX" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCommandProbe {
    pub run: S<RawCommand>,
    pub shell: Option<S<bool>>,
    pub cwd: Option<S<String>>,
    /// The exit code that means healthy (default 0).
    pub exit_code: Option<S<i64>>,
    /// A regex stdout must match.
    #[serde(rename = "match")]
    pub output_match: Option<S<String>>,
    /// A regex whose first group (or whole match) is the probe's number.
    pub number: Option<S<String>>,
}

/// `log = { path = "logs/app.log", patterns = ["ERROR", "CRITICAL"] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLog {
    pub path: S<String>,
    pub pattern: Option<S<String>>,
    pub patterns: Option<S<Vec<S<String>>>>,
}

/// `process = { service = "api" }` (or `pid`, `pidfile`, `cmdline`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProcess {
    pub pid: Option<S<i64>>,
    pub pidfile: Option<S<String>>,
    pub service: Option<S<String>>,
    /// A regex matched against each process's command line.
    pub cmdline: Option<S<String>>,
    /// Count the process's descendants too (default true).
    pub children: Option<S<bool>>,
}

/// `prometheus = { url = "http://127.0.0.1:9090", query = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPrometheus {
    pub url: S<String>,
    pub query: S<String>,
}

/// Expected HTTP status: `200`, `"2xx"` or `[200, 201]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStatus {
    Code(i64),
    Class(String),
    List(Vec<i64>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHttp {
    pub url: S<String>,
    pub method: Option<S<String>>,
    pub status: Option<S<RawStatus>>,
    #[serde(default)]
    pub headers: BTreeMap<String, S<String>>,
    pub body: Option<S<String>>,
    /// Expected JSON fields in the response body, compared by value.
    pub json: Option<S<toml::Table>>,
    /// A regex the response body must match.
    #[serde(rename = "match")]
    pub body_match: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRule {
    pub name: Option<S<String>>,
    pub when: S<String>,
    pub then: Option<S<String>>,
    pub min_samples: Option<S<i64>>,
    pub no_data: Option<S<String>>,
    /// `critical`, `major` or `minor`: the `[decision]` matrix picks the action.
    pub severity: Option<S<String>>,
}

/// A scheduled review: at an offset from the deploy, a checklist of expectations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawReview {
    pub name: Option<S<String>>,
    pub at: S<String>,
    pub expect: Vec<S<String>>,
    /// What a failed review calls for: `investigate` (default) or `rollback`.
    pub then: Option<S<String>>,
}

/// The decision matrix: severity × share of probes affected → action and time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDecision {
    #[serde(default)]
    pub matrix: Vec<S<RawDecisionRow>>,
    /// The action when no row matches (default `rollback`: if in doubt, roll back).
    pub otherwise: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDecisionRow {
    pub severity: S<String>,
    /// `any`, `all`, or a share like `>25%` / `>=50%`.
    pub share: Option<S<String>>,
    pub then: S<String>,
    /// How long the situation may last before the action is taken.
    pub within: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSuccess {
    pub when: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRollback {
    pub steps: Vec<S<RawStep>>,
}

/// One rollback step; exactly one of `git`, `service`, `wait` or `run` is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStep {
    pub name: Option<S<String>>,
    /// `"revert"`: revert every commit made since the checkpoint, history kept.
    pub git: Option<S<String>>,
    pub service: Option<S<String>>,
    pub action: Option<S<String>>,
    /// A probe to wait for until it is healthy.
    pub wait: Option<S<String>>,
    pub run: Option<S<RawCommand>>,
    pub shell: Option<S<bool>>,
    pub cwd: Option<S<String>>,
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawVerify {
    #[serde(default)]
    pub checks: Vec<S<RawCheck>>,
    pub stable_for: Option<S<String>>,
}

/// One verification check; exactly one of `http`, `run`, `file` or `probe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCheck {
    pub name: Option<S<String>>,
    pub http: Option<S<String>>,
    pub status: Option<S<RawStatus>>,
    pub json: Option<S<toml::Table>>,
    pub run: Option<S<RawCommand>>,
    pub shell: Option<S<bool>>,
    pub exit_code: Option<S<i64>>,
    pub file: Option<S<String>>,
    pub contains: Option<S<String>>,
    pub not_contains: Option<S<String>>,
    pub probe: Option<S<String>>,
    pub timeout: Option<S<String>>,
}
