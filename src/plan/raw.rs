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
    pub diagnostics: Option<S<RawDiagnostics>>,
    pub redact: Option<S<RawRedact>>,
    #[serde(default)]
    pub notify: Vec<S<RawNotify>>,
    #[serde(default, rename = "phase")]
    pub phases: Vec<S<RawPhase>>,
    #[serde(default, rename = "component")]
    pub components: Vec<S<RawComponent>>,
    #[serde(default, rename = "review")]
    pub reviews: Vec<S<RawReview>>,
    pub decision: Option<S<RawDecision>>,
    pub store: Option<S<RawStore>>,
}

/// Names of the top-level tables, for "did you mean" hints.
pub const TOP_LEVEL: &[&str] = &[
    "plan",
    "capture",
    "baseline",
    "service",
    "probe",
    "rule",
    "success",
    "rollback",
    "verify",
    "diagnostics",
    "notify",
    "redact",
    "phase",
    "component",
    "review",
    "decision",
    "store",
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
    /// Directories and files under the plan root, e.g. `["api/venv", "config/"]`.
    pub paths: Option<Vec<S<String>>>,
    #[serde(default)]
    pub databases: Vec<S<RawDatabase>>,
    #[serde(default)]
    pub commands: Vec<S<RawCaptureCommand>>,
}

/// A database a checkpoint dumps: `path` for SQLite, `url` for PostgreSQL and Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDatabase {
    pub name: S<String>,
    pub kind: S<String>,
    pub path: Option<S<String>>,
    pub url: Option<S<String>>,
    pub timeout: Option<S<String>>,
}

/// State captured by a command's stdout and put back by another command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCaptureCommand {
    pub name: S<String>,
    pub save: S<RawCommand>,
    pub restore: S<RawCommand>,
    pub shell: Option<S<bool>>,
    pub cwd: Option<S<String>>,
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBaseline {
    /// How long `backout baseline` samples by default.
    #[serde(rename = "for")]
    pub duration: Option<S<String>>,
    /// `backout checkpoint` also measures a baseline.
    pub on_checkpoint: Option<S<bool>>,
    /// Add the samples of the last N healthy watches to the baseline.
    pub history: Option<S<i64>>,
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
    /// The TCP port it listens on (default: its `ready` probe's, when local).
    pub port: Option<S<i64>>,
    pub ready_timeout: Option<S<String>>,
    pub stop_timeout: Option<S<String>>,
    /// kind = "command": how to stop it and ask whether it runs.
    pub stop: Option<S<RawCommand>>,
    pub status: Option<S<RawCommand>>,
    /// kind = "compose": the project directory, compose file, project name and
    /// the service's name in the compose file (default: `name`).
    pub project_dir: Option<S<String>>,
    pub compose_file: Option<S<String>>,
    pub project: Option<S<String>>,
    pub compose_service: Option<S<String>>,
    /// kind = "systemd": the unit (default: `<name>.service`), and `--user`.
    pub unit: Option<S<String>>,
    pub user: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProbe {
    pub name: S<String>,
    pub every: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub http: Option<S<RawHttp>>,
    /// A compose service's container: running, and healthy when it has a HEALTHCHECK.
    pub compose: Option<S<String>>,
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
    /// A regex whose first group (or whole match) in the body is the probe's number.
    pub number: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRule {
    pub name: Option<S<String>>,
    pub when: S<String>,
    pub then: Option<S<String>>,
    pub min_samples: Option<S<i64>>,
    pub no_data: Option<S<String>>,
    /// How long a tripped rule's condition must stay false before it is ok again.
    pub clear_after: Option<S<String>>,
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
/// `[store]`: how many safety checkpoints are kept, and the store's budget.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStore {
    /// The newest N safety checkpoints are always kept.
    pub keep_safety: Option<S<i64>>,
    /// Safety checkpoints younger than this are kept too, e.g. `"7d"`.
    pub keep_safety_for: Option<S<String>>,
    /// Older safety checkpoints are dropped while the store is larger, e.g. `"2GB"`.
    pub max_size: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDecision {
    #[serde(default)]
    pub matrix: Vec<S<RawDecisionRow>>,
    /// The action when no row matches (default `rollback`: if in doubt, roll back).
    pub otherwise: Option<S<String>>,
    /// The probes a share is counted over (seed 004's "endpoints"); default all.
    #[serde(default)]
    pub probes: Vec<S<String>>,
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
    /// Level 1 target: how long the full rollback may take (e.g. "5m").
    pub target: Option<S<String>>,
    /// Checks proper to a level-1 rollback, run before `[verify]`'s.
    #[serde(default)]
    pub verify: Vec<S<RawCheck>>,
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
    /// `git = "reset"`: where to (`"checkpoint"`, the default).
    pub to: Option<S<String>>,
    /// `git = "push"`: remote, refspec, and whether to force (with lease).
    pub remote: Option<S<String>>,
    pub refspec: Option<S<String>>,
    pub force: Option<S<bool>>,
    /// Paths to restore, `from` a git revision or `"checkpoint"`.
    pub restore: Option<S<Vec<String>>>,
    pub from: Option<S<String>>,
    /// Restore checkpoint resources by name (files, venv, database).
    pub resource: Option<S<Vec<String>>>,
    /// Services to stop for degraded mode; the rest keep running.
    pub degraded: Option<S<Vec<String>>>,
    /// `run`: extra attempts after a failure, the pause between, environment.
    pub retries: Option<S<i64>>,
    pub retry_delay: Option<S<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, S<String>>,
}

/// `[[phase]]`: one stage of the change, its verification and its rollback options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPhase {
    pub name: S<String>,
    pub description: Option<S<String>>,
    #[serde(default)]
    pub apply: Vec<S<RawStep>>,
    #[serde(default)]
    pub verify: Vec<S<RawCheck>>,
    #[serde(default)]
    pub rollback: Vec<S<RawOption>>,
    /// Level 2 target: how long rolling back this phase may take.
    pub target: Option<S<String>>,
}

/// One named way to roll a phase back ("A: direct fix", "B: full revert").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOption {
    pub name: S<String>,
    pub description: Option<S<String>>,
    /// Estimated time, e.g. "2m".
    pub time: Option<S<String>>,
    /// "low", "medium" or "high".
    pub risk: Option<S<String>>,
    pub steps: Vec<S<RawStep>>,
    pub default: Option<S<bool>>,
    /// Checks proper to this option, run before `[verify]`'s after it.
    #[serde(default)]
    pub verify: Vec<S<RawCheck>>,
}

/// `[[component]]`: a named set of paths and services rolled back on their own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawComponent {
    pub name: S<String>,
    #[serde(default)]
    pub paths: Vec<S<String>>,
    #[serde(default)]
    pub services: Vec<S<String>>,
    /// Explicit steps; without them: restore the paths from the checkpoint's
    /// HEAD, restart the services, wait for their ready probes.
    pub steps: Option<Vec<S<RawStep>>>,
    /// Level 3 target.
    pub target: Option<S<String>>,
    /// Checks proper to this component's rollback, run before `[verify]`'s.
    #[serde(default)]
    pub verify: Vec<S<RawCheck>>,
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
    /// With `file`: a regex; with `count`, the number of matching lines.
    pub matches: Option<S<String>>,
    pub count: Option<S<i64>>,
    /// With `http`: the slowest acceptable response.
    pub max_latency: Option<S<String>>,
    /// With `run`: a regex the output must match.
    pub output: Option<S<String>>,
    /// An installed Python package (`flask`), with `version` and `python`.
    pub package: Option<S<String>>,
    pub version: Option<S<String>>,
    /// The interpreter whose pip answers (a venv's `venv/bin/python`); default `python3`.
    pub python: Option<S<String>>,
    pub probe: Option<S<String>>,
    pub timeout: Option<S<String>>,
}

/// What to capture into an incident before any rollback step runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDiagnostics {
    /// Log files whose last lines are kept.
    #[serde(default)]
    pub logs: Vec<S<String>>,
    /// Commands whose output is kept (e.g. `pip list`, `docker compose ps`).
    #[serde(default)]
    pub commands: Vec<S<RawCommand>>,
    /// How many lines of each log; default 100.
    pub lines: Option<S<i64>>,
}

/// A webhook told about incidents: `[[notify]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNotify {
    pub webhook: S<String>,
    /// `"slack"` (incoming-webhook payload) or `"json"` (generic).
    pub format: Option<S<String>>,
    /// Events to send; default all.
    pub on: Option<S<Vec<String>>>,
    /// `"info"`, `"warning"` or `"critical"`; default `"info"`.
    pub min_severity: Option<S<String>>,
}

/// Extra text to mask everywhere: `[redact] patterns = ["sk_live_[0-9a-zA-Z]+"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRedact {
    #[serde(default)]
    pub patterns: Vec<S<String>>,
}
