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
}

/// Names of the top-level tables, for "did you mean" hints.
pub const TOP_LEVEL: &[&str] = &[
    "plan", "capture", "baseline", "service", "probe", "rule", "success", "rollback", "verify",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMeta {
    pub name: S<String>,
    pub description: Option<S<String>>,
    /// Recovery-time objective, e.g. `"5m"`.
    pub rto: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCapture {
    pub git: Option<S<bool>>,
    /// Directories and files under the plan root, e.g. `["api/venv", "config/"]`.
    pub paths: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBaseline {
    /// How long `backout baseline` samples by default.
    #[serde(rename = "for")]
    pub duration: Option<S<String>>,
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
