//! The plan: `backout.toml` parsed into raw serde types ([`raw`]), then validated
//! into the typed [`Plan`] that everything downstream uses. Durations, sizes,
//! percentages, rules and `${ENV}` secrets are parsed once, here, and every
//! problem is reported with file, line, column, a caret and a hint ([`diag`]).

mod capture;
pub mod diag;
#[cfg(test)]
mod error_snapshots;
pub mod evidence;
#[cfg(test)]
mod fuzz_tests;
pub mod incident;
mod phases;
mod probes;
pub mod raw;
pub mod rule;
mod schedule;
pub mod secret;
mod services;
pub mod starter;
mod steps;
pub mod store;
pub mod units;
mod verify;

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::context::Env;
pub use capture::{CaptureCommand, Database, DbKind, DbLocation, FILE_PLACEHOLDER, percent_decode};
pub use diag::{PlanError, PlanErrors};
pub use phases::{Component, Phase, Risk, RollbackOption};
pub use probes::{CommandProbe, LogProbe, ProcessProbe, ProcessTarget, PrometheusProbe, TcpProbe};
use raw::S;
pub use rule::Condition;
pub use schedule::{Decision, DecisionRow, Review, Severity, Share};
pub use secret::Text;
pub use services::ServiceControl;

/// The file name `backout` looks for, upward from the current directory.
pub const PLAN_FILE: &str = "backout.toml";

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file.
    pub path: PathBuf,
    /// The directory holding the plan: the project it protects.
    pub root: PathBuf,
    pub name: String,
    pub description: Option<String>,
    /// Recovery-time objective.
    pub rto: Option<Duration>,
    pub capture: Capture,
    /// How long `backout baseline` samples when not told.
    pub baseline_for: Duration,
    pub services: Vec<Service>,
    pub probes: Vec<Probe>,
    pub rules: Vec<Rule>,
    /// Conditions that, all holding, end a watch as a success.
    pub success: Vec<Criterion>,
    /// The full rollback, in order.
    pub rollback: Vec<Step>,
    /// Level 1 target: how long the full rollback may take.
    pub rollback_target: Option<Duration>,
    /// Checks proper to a level-1 rollback (`[rollback] verify`), run before `[verify]`'s.
    pub rollback_verify: Vec<Check>,
    /// `[[phase]]`s in order, each with its rollback options.
    pub phases: Vec<Phase>,
    /// `[[component]]`s: the unit of a level-3 rollback.
    pub components: Vec<Component>,
    pub verify: Verify,
    /// What an incident captures before the first rollback step.
    pub diagnostics: incident::Diagnostics,
    /// Webhooks told about incidents.
    pub notify: Vec<incident::Notify>,
    /// `backout checkpoint` also measures a baseline.
    pub baseline_on_checkpoint: bool,
    /// `[baseline] history`: the baseline also holds the samples of the last N
    /// healthy watches (0: only the latest `backout baseline`).
    pub baseline_history: usize,
    /// Scheduled reviews, by offset from the deploy.
    pub reviews: Vec<Review>,
    /// Severity × share of probes affected → action.
    pub decision: Decision,
    /// Watch durations were divided by this (1: real time).
    pub time_scale: f64,
    /// Values that came from `${ENV}`, header credentials and URL passwords: never shown anywhere.
    pub secrets: Vec<String>,
    /// `[redact] patterns`: more text masked everywhere.
    pub redact_patterns: Vec<regex::Regex>,
    /// Things that are allowed but probably wrong.
    pub warnings: Vec<PlanWarning>,
    /// `[store]`: which safety checkpoints are kept, and the store's budget.
    pub store: store::StoreRules,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanWarning {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Capture {
    /// HEAD, branch and the whole working tree, untracked files included.
    pub git: bool,
    /// Paths under the root, relative, without a trailing `/` (validated in `plan/capture.rs`).
    pub paths: Vec<String>,
    /// Databases dumped by each checkpoint.
    pub databases: Vec<Database>,
    /// Custom state saved by a command's output.
    pub commands: Vec<CaptureCommand>,
}

/// A command to run: an argument list, or a line for `sh -c` when `shell` is set.
#[derive(Debug, Clone)]
pub struct Command {
    pub argv: Vec<Text>,
    pub shell: bool,
}

impl Command {
    /// The command as people read it (secrets stay `${VAR}`).
    pub fn shown(&self) -> String {
        if self.shell {
            return self.argv.first().map(|t| t.shown.clone()).unwrap_or_default();
        }
        self.argv
            .iter()
            .map(|a| quote_arg(&a.shown))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Program and arguments to execute.
    pub fn resolved(&self) -> Vec<String> {
        if self.shell {
            let line = self.argv.first().map(|t| t.value.clone()).unwrap_or_default();
            return vec!["sh".into(), "-c".into(), line];
        }
        self.argv.iter().map(|a| a.value.clone()).collect()
    }
}

fn quote_arg(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// backout starts the process itself and keeps its pid.
    Process,
    /// A service of a docker compose project.
    Compose,
    /// A systemd unit, driven through systemctl.
    Systemd,
    /// Start, stop and status commands given in the plan.
    Command,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub kind: ServiceKind,
    pub start: Command,
    pub cwd: PathBuf,
    pub env: Vec<(String, Text)>,
    pub ready: Option<String>,
    pub ready_timeout: Duration,
    /// The TCP port the service listens on: `port`, or its `ready` probe's
    /// when that probe targets this machine. backout checks who holds it.
    pub port: Option<u16>,
    pub stop_timeout: Duration,
    /// How a non-process service is driven.
    pub control: ServiceControl,
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub every: Duration,
    pub timeout: Duration,
    pub kind: ProbeKind,
}

#[derive(Debug, Clone)]
pub enum ProbeKind {
    Http(HttpProbe),
    /// The container of a compose service: running, and `healthy` when it has a
    /// HEALTHCHECK. `control` is filled from the `[[service]]` it names.
    Compose {
        service: String,
        control: ServiceControl,
    },
    Tcp(TcpProbe),
    Command(CommandProbe),
    Log(LogProbe),
    Process(ProcessProbe),
    Prometheus(PrometheusProbe),
}

#[derive(Debug, Clone)]
pub struct HttpProbe {
    pub url: Text,
    pub method: String,
    pub status: StatusSpec,
    pub headers: Vec<(String, Text)>,
    pub body: Option<Text>,
    /// Expected JSON fields (dotted paths) and their values.
    pub json: Vec<(String, serde_json::Value)>,
    pub body_match: Option<regex::Regex>,
    /// Picks the probe's `value` out of the body (a pool's saturation in a
    /// metrics document, a queue's depth).
    pub number: Option<regex::Regex>,
}

/// Which HTTP statuses count as healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusSpec {
    Codes(Vec<u16>),
    /// `2xx` is `Class(2)`.
    Class(u16),
}

impl StatusSpec {
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            StatusSpec::Codes(c) => c.contains(&status),
            StatusSpec::Class(k) => status / 100 == *k,
        }
    }
}

impl std::fmt::Display for StatusSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusSpec::Codes(c) => {
                let s: Vec<String> = c.iter().map(u16::to_string).collect();
                f.write_str(&s.join(" or "))
            }
            StatusSpec::Class(k) => write!(f, "{k}xx"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Rollback,
    Investigate,
}

/// What a rule decides when it has fewer samples than it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    Inconclusive,
    Rollback,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub name: String,
    /// The condition as written.
    pub text: String,
    pub condition: Condition,
    pub action: Action,
    /// `min-samples` as the plan sets it; `None`: derived from the window and
    /// the threshold ([`evidence::min_samples`]).
    pub min_samples: Option<usize>,
    pub no_data: NoData,
    /// `clear-after` as the plan sets it; `None`: [`evidence::clear_after`].
    pub clear_after: Option<Duration>,
    /// Set: the `[decision]` matrix picks the action instead of `action`.
    pub severity: Option<Severity>,
    #[serde(skip)]
    pub line: usize,
}

/// The window a rule uses when its text gives no `over`.
pub const DEFAULT_WINDOW_SAMPLES: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Criterion {
    pub text: String,
    pub condition: Condition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAction {
    Start,
    Stop,
    Restart,
    /// Rebuild the image and recreate the container (compose); a restart elsewhere.
    Rebuild,
    /// Stop and remove (compose `down` / `rm -sf`); a stop elsewhere.
    Down,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    /// Revert every commit made since the checkpoint, newest first, history kept.
    GitRevert,
    /// Act on one service, or on all of them when `service` is `None`.
    Service {
        service: Option<String>,
        action: ServiceAction,
    },
    /// Wait until a probe is healthy.
    Wait { probe: String },
    Run {
        command: Command,
        cwd: PathBuf,
        env: Vec<(String, Text)>,
        /// Extra attempts after a failure, `retry_delay` apart.
        retries: u32,
        retry_delay: Duration,
    },
    /// `git reset --hard` to the checkpoint's HEAD (after the safety checkpoint).
    GitReset,
    /// `git push` to a remote (for git-push deploys).
    GitPush {
        remote: String,
        refspec: Option<String>,
        force: bool,
    },
    /// Put paths back as they are in a git revision; `rev` `None` means the
    /// checkpoint's captured working tree.
    RestorePaths { paths: Vec<String>, rev: Option<String> },
    /// Restore checkpoint resources (files, venv, database) from the store.
    RestoreResource { names: Vec<String> },
    /// Stop these services, keep the rest, record that the system is degraded.
    Degraded { services: Vec<String> },
}

#[derive(Debug, Clone, Default)]
pub struct Verify {
    pub checks: Vec<Check>,
    pub stable_for: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    Http {
        url: Text,
        status: StatusSpec,
        json: Vec<(String, serde_json::Value)>,
        /// The response must come within this.
        max_latency: Option<Duration>,
    },
    Run {
        command: Command,
        exit_code: i32,
        /// A regex the output must match.
        output: Option<regex::Regex>,
    },
    File {
        path: PathBuf,
        contains: Option<String>,
        not_contains: Option<String>,
        /// A regex, and how many matching lines there must be (at least one when `None`).
        matches: Option<(regex::Regex, Option<usize>)>,
    },
    /// An installed package's version, asked of a Python interpreter's pip.
    Package {
        name: String,
        version: String,
        python: PathBuf,
    },
    Probe {
        probe: String,
    },
}

impl Plan {
    /// Reads and validates the plan at `path`.
    pub fn load(path: &Path, env: &Env) -> Result<Plan, PlanLoadError> {
        let bytes = fs_err::read(path).map_err(PlanLoadError::Read)?;
        let source = utf8(path, bytes).map_err(|e| PlanLoadError::Invalid(PlanErrors(vec![e])))?;
        Plan::parse(path, &source, env).map_err(PlanLoadError::Invalid)
    }

    /// Validates `source` as the plan file `path`.
    pub fn parse(path: &Path, source: &str, env: &Env) -> Result<Plan, PlanErrors> {
        let raw: raw::RawPlan = toml::from_str(source).map_err(|e| PlanErrors(vec![toml_error(path, source, &e)]))?;
        let root = path
            .parent()
            .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut v = Validator {
            path,
            source,
            env,
            root: &root,
            errors: Vec::new(),
            secrets: Vec::new(),
            warnings: Vec::new(),
        };
        let plan = v.plan(raw);
        if !v.errors.is_empty() {
            v.errors.sort_by_key(|e| (e.line, e.column));
            return Err(PlanErrors(v.errors));
        }
        let mut plan = plan.expect("a plan without errors is complete");
        let mut seen = BTreeSet::new();
        plan.secrets = v
            .secrets
            .into_iter()
            .filter(|s| !s.is_empty() && seen.insert(s.clone()))
            .collect();
        plan.warnings = v.warnings;
        plan.warnings.sort_by_key(|w| w.line);
        Ok(plan)
    }

    pub fn probe(&self, name: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Finds `backout.toml` in `start` or the nearest directory above it.
    pub fn find(start: &Path) -> Option<PathBuf> {
        start.ancestors().map(|d| d.join(PLAN_FILE)).find(|p| p.is_file())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanLoadError {
    #[error(transparent)]
    Read(std::io::Error),
    #[error("{0}")]
    Invalid(PlanErrors),
}

/// A hint for a TOML syntax error, by what its message is about.
fn syntax_hint(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("duplicate") {
        "each key and each [table] appears once; a list of tables is written [[table]]"
    } else if m.contains("string") || m.contains("escape") {
        "close each string on its line: \"text\" or 'text' (\"\"\"...\"\"\" for several lines)"
    } else if m.contains("inline table") {
        "an inline table { a = 1, b = 2 } stays on one line, with commas between its keys"
    } else if m.contains("array") {
        "a list is written [a, b, c]"
    } else if m.contains("table") || m.contains("header") {
        "a table header is [name] or [[name]], alone on its line"
    } else if m.contains("integer") || m.contains("float") || m.contains("number") || m.contains("out of range") {
        "integers are whole numbers between -9223372036854775808 and 9223372036854775807; durations and sizes are strings like \"30s\" or \"500MB\""
    } else {
        "the plan is TOML: `key = value` lines under [table] headers; see docs/plan.md"
    }
}

/// The plan's text, or an error pointing at its first byte that is not UTF-8.
pub fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, PlanError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        // The replacement character stands where the bad byte was: the text
        // before it is unchanged, so the offset still points at it.
        let shown = String::from_utf8_lossy(bytes);
        let run = e.utf8_error().error_len().unwrap_or(bytes.len() - at);
        let mark = '\u{FFFD}'.len_utf8();
        let hex: Vec<String> = bytes[at..at + run].iter().map(|b| format!("0x{b:02X}")).collect();
        let what = if run == 1 { "byte" } else { "bytes" };
        PlanError::at(
            path,
            &shown,
            at..at + mark,
            format!("the plan is not valid UTF-8: found {what} {} here", hex.join(" ")),
            Some(
                "save the plan as UTF-8 text (a Latin-1 or UTF-16 editor setting, or a binary file, does this)".into(),
            ),
        )
    })
}

fn toml_error(path: &Path, source: &str, e: &toml::de::Error) -> PlanError {
    let mut message = e.message().trim().to_string();
    let span = e.span().unwrap_or(0..0);
    let hint;
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = message
            .split("expected ")
            .nth(1)
            .map(|s| {
                s.split(['`', ','])
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != "one of" && *s != "or")
                    .collect()
            })
            .unwrap_or_default();
        let known = if expected.is_empty() {
            raw::TOP_LEVEL.to_vec()
        } else {
            expected
        };
        hint = match diag::did_you_mean(field, &known) {
            Some(s) => format!("did you mean `{s}`? unknown keys are errors, so a typo never goes unnoticed"),
            None => format!("known keys here: {}", known.join(", ")),
        };
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        hint = if span == (0..0) && raw::TOP_LEVEL.contains(&field) {
            // Missing from the file itself: there is no "this table" to point at.
            format!("add a [{field}] table to the file")
        } else {
            format!("add `{field} = ...` to this table")
        };
    } else if message.contains("did not match any variant") {
        // Name what was expected, not the internal serde type (`RawCommand`).
        let (what, how) = if message.contains("RawStatus") {
            ("an HTTP status", "write 200, \"2xx\" or [200, 201]")
        } else {
            (
                "a command",
                "write a string (\"pytest -q\") or a list of strings ([\"pytest\", \"-q\"])",
            )
        };
        message = format!("expected {what}");
        hint = how.into();
    } else if let Some(n) = message
        .strip_prefix("invalid type: integer `")
        .and_then(|r| r.split_once("` as i128"))
        .map(|(n, _)| n.to_string())
    {
        // An integer past i64: toml hands it over as an i128 no field accepts.
        message = format!("the number {n} is out of range");
        hint = "whole numbers in a plan lie between -9223372036854775808 and 9223372036854775807, and most keys take far less (see docs/plan.md)".into();
    } else if message.contains("invalid type") {
        hint = "check the value's type: strings need quotes, lists use [ ], tables use { }".into();
    } else {
        hint = syntax_hint(&message).into();
    }
    // Only a table missing from the file has nowhere to point; any other
    // error at offset 0 is about the first character.
    if span.is_empty() && span.start == 0 && !source.is_empty() && message.starts_with("missing field") {
        return PlanError::whole_file(path, message, Some(hint));
    }
    PlanError::at(path, source, span, message, Some(hint))
}

struct Validator<'a> {
    path: &'a Path,
    source: &'a str,
    env: &'a Env,
    root: &'a Path,
    errors: Vec<PlanError>,
    secrets: Vec<String>,
    warnings: Vec<PlanWarning>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) {
        self.errors
            .push(PlanError::at(self.path, self.source, span, message, Some(hint.into())));
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        self.source[..span.start.min(self.source.len())].matches('\n').count() + 1
    }

    fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let line = self.line_of(span);
        self.warnings.push(PlanWarning {
            line,
            message: message.into(),
        });
    }

    /// Byte offset where the string value at `span` starts inside the source, if
    /// the literal maps one to one onto its value (no escapes).
    fn inner_offset(&self, s: &S<String>) -> Option<usize> {
        let span = s.span();
        let lit = self.source.get(span.clone())?;
        for q in ["\"\"\"", "'''", "\"", "'"] {
            if lit.starts_with(q) && lit.len() >= 2 * q.len() && &lit[q.len()..lit.len() - q.len()] == s.get_ref() {
                return Some(span.start + q.len());
            }
        }
        None
    }

    /// Maps a span inside a string value to a span in the file.
    fn inner_span(&self, s: &S<String>, inner: Range<usize>) -> Range<usize> {
        match self.inner_offset(s) {
            Some(o) => o + inner.start..o + inner.end.max(inner.start + 1),
            None => s.span(),
        }
    }

    fn duration(&mut self, s: &S<String>) -> Option<Duration> {
        match units::parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(s.span(), e.message, e.hint);
                None
            }
        }
    }

    fn port(&mut self, s: &S<i64>) -> Option<u16> {
        match u16::try_from(*s.get_ref()) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.error(
                    s.span(),
                    format!("{} is not a TCP port", s.get_ref()),
                    "a port is a number from 1 to 65535, e.g. port = 8000",
                );
                None
            }
        }
    }

    fn opt_duration(&mut self, s: &Option<S<String>>, default: Duration) -> Duration {
        s.as_ref().and_then(|s| self.duration(s)).unwrap_or(default)
    }

    fn text(&mut self, s: &S<String>) -> Text {
        match secret::interpolate(s.get_ref(), self.env) {
            Ok((t, secrets)) => {
                self.secrets.extend(secrets);
                t
            }
            Err(e) => {
                let span = self.inner_span(s, e.span);
                self.error(span, e.message, e.hint);
                Text::plain(s.get_ref().clone())
            }
        }
    }

    /// An http(s) URL (after `${ENV}`): the text, and whether it is one; a located
    /// error with `hint` when it is not.
    fn http_url(&mut self, s: &S<String>, hint: &str) -> (Text, bool) {
        let url = self.text(s);
        let ok = reqwest::Url::parse(&url.value).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            self.error(s.span(), format!("{:?} is not an http(s) URL", s.get_ref()), hint);
        }
        (url, ok)
    }

    fn name(&mut self, s: &S<String>, what: &str, seen: &mut BTreeSet<String>) -> String {
        let n = s.get_ref();
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            self.error(
                s.span(),
                format!("{what} name {n:?} is not a plain name"),
                "names hold letters, digits, - and _, so rules can refer to them",
            );
        } else if !seen.insert(n.clone()) {
            self.error(
                s.span(),
                format!("a {what} named {n:?} is already defined"),
                format!("give each {what} its own name"),
            );
        }
        n.clone()
    }

    fn command(&mut self, s: &S<raw::RawCommand>, shell: bool) -> Command {
        let span = s.span();
        let words: Vec<String> = match s.get_ref() {
            raw::RawCommand::Line(line) if shell => vec![line.clone()],
            raw::RawCommand::Line(line) => match split_words(line) {
                Some(w) => w,
                None => {
                    self.error(
                        span.clone(),
                        "unbalanced quotes in command",
                        "close every ' and \" you open",
                    );
                    Vec::new()
                }
            },
            raw::RawCommand::Argv(argv) => argv.clone(),
        };
        if words.is_empty() || words[0].is_empty() {
            self.error(
                span.clone(),
                "the command is empty",
                "give the program to run, like \"pytest -q\"",
            );
        }
        let mut argv = Vec::new();
        for w in words {
            match secret::interpolate(&w, self.env) {
                Ok((t, secrets)) => {
                    self.secrets.extend(secrets);
                    argv.push(t);
                }
                Err(e) => {
                    // The word was split out of the string, so its offsets are lost: put
                    // the caret under the reference when it appears once in the command.
                    let bad = &w[e.span.clone()];
                    let at = self
                        .source
                        .get(span.clone())
                        .filter(|lit| lit.matches(bad).count() == 1)
                        .and_then(|lit| lit.find(bad));
                    let caret = at.map_or(span.clone(), |i| span.start + i..span.start + i + bad.len());
                    self.error(caret, e.message, e.hint);
                    argv.push(Text::plain(w));
                }
            }
        }
        Command { argv, shell }
    }

    fn status(&mut self, s: &Option<S<raw::RawStatus>>) -> StatusSpec {
        let Some(s) = s else {
            return StatusSpec::Class(2);
        };
        let bad = |v: &mut Self, what: String| {
            v.error(
                s.span(),
                format!("{what} is not an HTTP status"),
                "write 200, \"2xx\" or [200, 201]",
            );
        };
        match s.get_ref() {
            raw::RawStatus::Code(c) if (100..=599).contains(c) => StatusSpec::Codes(vec![*c as u16]),
            raw::RawStatus::Code(c) => {
                bad(self, c.to_string());
                StatusSpec::Class(2)
            }
            raw::RawStatus::Class(c) => {
                let k = c
                    .strip_suffix("xx")
                    .and_then(|d| d.parse::<u16>().ok())
                    .filter(|d| (1..=5).contains(d));
                match k {
                    Some(k) => StatusSpec::Class(k),
                    None => {
                        bad(self, format!("{c:?}"));
                        StatusSpec::Class(2)
                    }
                }
            }
            raw::RawStatus::List(l) => {
                if l.is_empty() || l.iter().any(|c| !(100..=599).contains(c)) {
                    bad(self, format!("{l:?}"));
                }
                StatusSpec::Codes(l.iter().map(|c| *c as u16).collect())
            }
        }
    }

    fn json_fields(&mut self, t: &Option<S<toml::Table>>) -> Vec<(String, serde_json::Value)> {
        let mut out = Vec::new();
        if let Some(t) = t {
            flatten_json("", t.get_ref(), &mut out);
        }
        out
    }

    fn plan(&mut self, raw: raw::RawPlan) -> Option<Plan> {
        let meta = raw.plan.into_inner();
        let rto = meta.rto.as_ref().and_then(|s| self.duration(s));
        if meta.rto.is_none() {
            self.warnings.push(PlanWarning {
                line: 1,
                message:
                    "no recovery-time objective: add `rto = \"5m\"` under [plan] so rollbacks are measured against it"
                        .into(),
            });
        }
        let mut capture = Capture::default();
        if let Some(c) = &raw.capture {
            capture.git = c.get_ref().git.as_ref().is_some_and(|g| *g.get_ref());
            capture.paths = self.capture_paths(&c.get_ref().paths);
            self.capture_databases_and_commands(c.get_ref(), &mut capture);
        }
        let baseline_for = raw
            .baseline
            .as_ref()
            .map(|b| self.opt_duration(&b.get_ref().duration, Duration::from_secs(30)))
            .unwrap_or(Duration::from_secs(30));
        let baseline_on_checkpoint = raw
            .baseline
            .as_ref()
            .and_then(|b| b.get_ref().on_checkpoint.as_ref())
            .is_some_and(|b| *b.get_ref());
        let baseline_history = match raw.baseline.as_ref().and_then(|b| b.get_ref().history.as_ref()) {
            Some(h) if (0..=1000).contains(h.get_ref()) => *h.get_ref() as usize,
            Some(h) => {
                self.error(
                    h.span(),
                    format!("history must be 0 to 1000 watches, found {}", h.get_ref()),
                    "history = 5 adds the samples of the last 5 healthy watches to the baseline",
                );
                0
            }
            None => 0,
        };
        let time_scale = self.time_scale(meta.time_scale.as_ref());

        let mut probe_names = BTreeSet::new();
        let probes: Vec<Probe> = raw.probes.iter().map(|p| self.probe(p, &mut probe_names)).collect();

        let mut service_names = BTreeSet::new();
        let services: Vec<Service> = raw
            .services
            .iter()
            .map(|s| self.service(s, &mut service_names, &probe_names))
            .collect();
        self.probe_service_refs(&raw.probes, &service_names);

        let probes = self.link_compose_probes(&raw.probes, probes, &services);
        let services = services::ports_from_ready_probes(services, &probes);

        let mut rule_names = BTreeSet::new();
        let rules: Vec<Rule> = raw
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.rule(r, i, &probes, &mut rule_names))
            .collect();
        for r in &rules {
            if let Some(p) = probes.iter().find(|p| p.name == r.condition.metric.probe)
                && let Some(w) = evidence::baseline_warning(r, p.every, baseline_for, baseline_history)
            {
                self.warnings.push(PlanWarning {
                    line: r.line,
                    message: w,
                });
            }
        }
        let success = raw
            .success
            .as_ref()
            .map(|s| {
                s.get_ref()
                    .when
                    .iter()
                    .filter_map(|w| {
                        let condition = self.criterion(w, &probes)?;
                        Some(Criterion {
                            text: w.get_ref().clone(),
                            condition,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();

        let rollback = raw
            .rollback
            .as_ref()
            .map(|r| {
                r.get_ref()
                    .steps
                    .iter()
                    .filter_map(|s| self.step(s, &probe_names, &service_names))
                    .collect()
            })
            .unwrap_or_default();
        let verify = raw
            .verify
            .as_ref()
            .map(|v| self.verify(v.get_ref(), &probe_names))
            .unwrap_or_default();
        let rollback_target = raw
            .rollback
            .as_ref()
            .and_then(|r| r.get_ref().target.as_ref().and_then(|t| self.duration(t)));
        let rollback_verify = raw
            .rollback
            .as_ref()
            .map(|r| {
                r.get_ref()
                    .verify
                    .iter()
                    .filter_map(|c| self.check(c, &probe_names))
                    .collect()
            })
            .unwrap_or_default();
        let phases = self.phases(&raw.phases, &probe_names, &service_names);
        let components = self.components(&raw.components, &probe_names, &service_names, &services);

        let diagnostics = raw
            .diagnostics
            .as_ref()
            .map(|d| self.diagnostics(d.get_ref()))
            .unwrap_or_default();
        let notify = raw.notify.iter().map(|n| self.notify(n)).collect();
        let redact_patterns = raw
            .redact
            .as_ref()
            .map(|r| {
                r.get_ref()
                    .patterns
                    .iter()
                    .filter_map(|p| self.regex(p, "a redact pattern"))
                    .collect()
            })
            .unwrap_or_default();
        let reviews = self.reviews(&raw.reviews, &probes);
        let probe_names: BTreeSet<String> = probes.iter().map(|p| p.name.clone()).collect();
        let decision = self.decision(raw.decision.as_ref(), &probe_names);
        let store = raw.store.as_ref().map(|s| self.store(s)).unwrap_or_default();

        let mut plan = Plan {
            path: self.path.to_path_buf(),
            root: self.root.to_path_buf(),
            name: meta.name.into_inner(),
            description: meta.description.map(S::into_inner),
            rto,
            capture,
            baseline_for,
            services,
            probes,
            rules,
            success,
            rollback,
            rollback_target,
            rollback_verify,
            phases,
            components,
            verify,
            diagnostics,
            notify,
            redact_patterns,
            baseline_on_checkpoint,
            baseline_history,
            reviews,
            decision,
            time_scale,
            secrets: Vec::new(),
            warnings: Vec::new(),
            store,
        };
        plan.scale_time(time_scale);
        Some(plan)
    }

    fn probe(&mut self, p: &S<raw::RawProbe>, names: &mut BTreeSet<String>) -> Probe {
        let r = p.get_ref();
        let name = self.name(&r.name, "probe", names);
        let every = self.opt_duration(&r.every, Duration::from_secs(5));
        if every.is_zero() {
            self.error(
                r.every.as_ref().map_or(p.span(), |e| e.span()),
                "a probe interval must be more than zero",
                "write every = \"1s\" or longer",
            );
        }
        let timeout = match &r.timeout {
            Some(t) => self.duration(t).unwrap_or(every),
            None => {
                self.warn(&r.name.span(), format!("probe {name:?} has no timeout: it gets its interval ({}); set timeout = \"2s\" to say what slow means", units::format_duration(every)));
                every.min(Duration::from_secs(10))
            }
        };
        self.probe_kind_count(r, &name, r.name.span());
        let other = if r.http.is_none() {
            self.other_probe_kind(r, &name)
        } else {
            None
        };
        let kind = match &r.http {
            None if other.is_some() => other.expect("checked"),
            Some(h) => {
                let h = h.get_ref();
                let (url, url_ok) = self.http_url(&h.url, "write a full URL like http://127.0.0.1:8000/health");
                if url_ok && !url.has_secret() && url_has_password(&url.value) {
                    self.warn(&h.url.span(), format!("probe {name:?}: the URL holds a password in clear text; write it as ${{ENV}} so it stays secret"));
                }
                // A password in a URL is a secret however it was written.
                if let Some(pw) = reqwest::Url::parse(&url.value)
                    .ok()
                    .and_then(|u| u.password().map(str::to_string))
                {
                    self.secrets.push(pw);
                }
                let method = h
                    .method
                    .as_ref()
                    .map_or("GET".to_string(), |m| m.get_ref().to_uppercase());
                if !matches!(
                    method.as_str(),
                    "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
                ) {
                    let span = h.method.as_ref().map_or(p.span(), |m| m.span());
                    self.error(
                        span,
                        format!("unknown HTTP method {method:?}"),
                        "use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
                    );
                }
                let status = self.status(&h.status);
                let headers: Vec<(String, Text)> = h
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let t = self.text(v);
                        if looks_secret(k) {
                            // A credential header is a secret however it was written;
                            // so is its token without a `Bearer ` scheme.
                            self.secrets.push(t.value.clone());
                            if let Some((_, token)) = t.value.split_once(' ') {
                                self.secrets.push(token.trim().to_string());
                            }
                        }
                        if !t.has_secret() && looks_secret(k) {
                            self.warn(
                                &v.span(),
                                format!(
                                    "probe {name:?}: header {k} holds a secret in clear text; write it as ${{ENV}}"
                                ),
                            );
                        }
                        (k.clone(), t)
                    })
                    .collect();
                let body = h.body.as_ref().map(|b| self.text(b));
                let json = self.json_fields(&h.json);
                let body_match = h.body_match.as_ref().and_then(|m| self.regex(m, "the body match"));
                let number = h.number.as_ref().and_then(|m| self.regex(m, "`number`"));
                ProbeKind::Http(HttpProbe {
                    url,
                    method,
                    status,
                    headers,
                    body,
                    json,
                    body_match,
                    number,
                })
            }
            None if r.compose.is_some() => ProbeKind::Compose {
                service: r.compose.as_ref().map(|c| c.get_ref().clone()).unwrap_or_default(),
                control: ServiceControl::Process,
            },
            None => {
                self.error(
                    r.name.span(),
                    format!("probe {name:?} does not say what to measure"),
                    format!(
                        "add one of {}, like http = {{ url = \"http://127.0.0.1:8000/health\" }}",
                        probes::KINDS
                    ),
                );
                ProbeKind::Http(HttpProbe {
                    url: Text::plain(""),
                    method: "GET".into(),
                    status: StatusSpec::Class(2),
                    headers: Vec::new(),
                    body: None,
                    json: Vec::new(),
                    body_match: None,
                    number: None,
                })
            }
        };
        Probe {
            name,
            every,
            timeout,
            kind,
        }
    }

    fn service(&mut self, s: &S<raw::RawService>, names: &mut BTreeSet<String>, probes: &BTreeSet<String>) -> Service {
        let r = s.get_ref();
        let name = self.name(&r.name, "service", names);
        let (kind, control) = self.service_control(s, &name);
        let start = match &r.start {
            Some(c) => self.command(c, false),
            None if !matches!(kind, ServiceKind::Process | ServiceKind::Command) => Command {
                argv: Vec::new(),
                shell: false,
            },
            None => {
                self.error(
                    r.name.span(),
                    format!("service {name:?} has no start command"),
                    "add start = [\"python\", \"app.py\"]",
                );
                Command {
                    argv: Vec::new(),
                    shell: false,
                }
            }
        };
        let cwd = r
            .cwd
            .as_ref()
            .map_or(self.root.to_path_buf(), |c| self.root.join(c.get_ref()));
        let env = r.env.iter().map(|(k, v)| (k.clone(), self.text(v))).collect();
        if let Some(ready) = &r.ready {
            self.probe_ref(ready, probes);
        }
        Service {
            name,
            kind,
            start,
            cwd,
            env,
            ready: r.ready.as_ref().map(|r| r.get_ref().clone()),
            ready_timeout: self.opt_duration(&r.ready_timeout, Duration::from_secs(30)),
            port: r.port.as_ref().and_then(|p| self.port(p)),
            stop_timeout: self.opt_duration(&r.stop_timeout, Duration::from_secs(10)),
            control,
        }
    }

    fn probe_ref(&mut self, s: &S<String>, probes: &BTreeSet<String>) {
        if !probes.contains(s.get_ref()) {
            let known: Vec<&str> = probes.iter().map(String::as_str).collect();
            let hint = unknown_hint("probe", s.get_ref(), &known);
            self.error(s.span(), format!("no probe named {:?}", s.get_ref()), hint);
        }
    }

    /// A `[success]` or review condition: read over its window as it is, so
    /// without a statistical test (those need a rule's running history).
    fn criterion(&mut self, w: &S<String>, probes: &[Probe]) -> Option<Condition> {
        let c = self.condition(w, probes)?;
        if let Some(t) = c.test {
            self.error(
                w.span(),
                format!("a statistical test `{t}` belongs in a [[rule]]"),
                "success criteria and reviews compare a window with a threshold, like `api.error_rate == 0 over 5m`",
            );
            return None;
        }
        Some(c)
    }

    fn condition(&mut self, w: &S<String>, probes: &[Probe]) -> Option<Condition> {
        match rule::parse_condition(w.get_ref()) {
            Ok(c) => {
                if probes.iter().all(|p| p.name != c.metric.probe) {
                    let known: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
                    let span = self.inner_span(w, c.metric.probe_span.clone());
                    let hint = unknown_hint("probe", &c.metric.probe, &known);
                    self.error(span, format!("no probe named {:?}", c.metric.probe), hint);
                    return None;
                }
                // A log selector must name one of the probe's patterns, as written.
                if let (
                    Some(sel),
                    Some(Probe {
                        kind: ProbeKind::Log(l),
                        ..
                    }),
                ) = (&c.metric.selector, probes.iter().find(|p| p.name == c.metric.probe))
                    && !l.patterns.contains(sel)
                {
                    let list = l
                        .patterns
                        .iter()
                        .map(|p| format!("[{p}]"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let span = self.inner_span(w, c.metric.probe_span.clone());
                    self.error(
                        span,
                        format!("probe {:?} has no pattern {sel:?}", c.metric.probe),
                        format!("its patterns: {list}"),
                    );
                    return None;
                }
                Some(c)
            }
            Err(e) => {
                let span = self.inner_span(w, e.span);
                self.error(span, e.message, e.hint);
                None
            }
        }
    }

    fn rule(
        &mut self,
        r: &S<raw::RawRule>,
        index: usize,
        probes: &[Probe],
        names: &mut BTreeSet<String>,
    ) -> Option<Rule> {
        let raw = r.get_ref();
        let name = match &raw.name {
            Some(n) => self.name(n, "rule", names),
            None => format!("rule-{}", index + 1),
        };
        let action = match raw.then.as_ref().map(|t| t.get_ref().as_str()) {
            Some("rollback") | None => Action::Rollback,
            Some("investigate") | Some("alert") => Action::Investigate,
            Some(other) => {
                let t = raw.then.as_ref().map_or(r.span(), |t| t.span());
                self.error(
                    t,
                    format!("unknown action {other:?}"),
                    "then = \"rollback\" (act) or \"investigate\" (alert only)",
                );
                Action::Rollback
            }
        };
        let min_samples = match &raw.min_samples {
            Some(m) if (1..=units::MAX_SAMPLES as i64).contains(m.get_ref()) => Some(*m.get_ref() as usize),
            Some(m) if *m.get_ref() < 1 => {
                self.error(
                    m.span(),
                    format!("min-samples must be at least 1, found {}", m.get_ref()),
                    "a verdict needs at least one sample",
                );
                None
            }
            Some(m) => {
                self.error(
                    m.span(),
                    format!("min-samples = {} is too many", m.get_ref()),
                    "min-samples is at most 100000",
                );
                None
            }
            None => None,
        };
        let no_data = match raw.no_data.as_ref().map(|n| n.get_ref().as_str()) {
            None | Some("inconclusive") => NoData::Inconclusive,
            Some("rollback") => NoData::Rollback,
            Some(other) => {
                let span = raw.no_data.as_ref().map_or(r.span(), |n| n.span());
                self.error(
                    span,
                    format!("unknown no-data policy {other:?}"),
                    "no-data = \"inconclusive\" (default: never act on no data) or \"rollback\"",
                );
                NoData::Inconclusive
            }
        };
        let clear_after = raw.clear_after.as_ref().and_then(|c| self.duration(c));
        let severity = self.severity(&raw.severity);
        if let (Some(_), Some(t)) = (severity, &raw.then) {
            self.warn(
                &t.span(),
                format!("rule {name:?} has a severity: the [decision] matrix picks its action, not `then`"),
            );
        }
        let condition = self.condition(&raw.when, probes)?;
        let line = self.line_of(&raw.when.span());
        let rule = Rule {
            name,
            text: raw.when.get_ref().clone(),
            condition,
            action,
            min_samples,
            no_data,
            clear_after,
            severity,
            line,
        };
        if let Some(probe) = probes.iter().find(|p| p.name == rule.condition.metric.probe) {
            for w in evidence::warnings(&rule, &probe.name, probe.every) {
                self.warn(&raw.when.span(), w);
            }
        }
        Some(rule)
    }
}

fn unknown_hint(what: &str, name: &str, known: &[&str]) -> String {
    match diag::did_you_mean(name, known) {
        Some(s) => format!("did you mean {s:?}?"),
        None if known.is_empty() => format!("no {what} is defined; add a [[{what}]] table"),
        None => format!("defined {what}s: {}", known.join(", ")),
    }
}

fn looks_secret(header: &str) -> bool {
    let h = header.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "api-key",
        "apikey",
        "secret",
        "password",
    ]
    .iter()
    .any(|s| h.contains(s))
}

fn url_has_password(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.password().is_some())
}

fn flatten_json(prefix: &str, t: &toml::Table, out: &mut Vec<(String, serde_json::Value)>) {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten_json(&path, inner, out),
            other => out.push((path, serde_json::to_value(other).unwrap_or(serde_json::Value::Null))),
        }
    }
}

/// Splits a command line into words the way a POSIX shell would for quotes and
/// backslashes, without expanding anything. `None` when quotes do not balance.
pub fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => cur.push(x),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        x => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Plan, PlanErrors> {
        Plan::parse(Path::new("backout.toml"), src, &Env::from_pairs([("TOKEN", "hunter2")]))
    }

    const GOOD: &str = r#"
[plan]
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
http = { url = "http://127.0.0.1:8000/health", status = 200, headers = { Authorization = "Bearer ${TOKEN}" }, json = { status = "healthy" } }

[[rule]]
when = "health.error_rate > 5% over 30s"
then = "rollback"

[[rule]]
name = "slow"
when = "health.latency.p50 > baseline + 25% over 1m"
then = "investigate"

[success]
when = ["health.error_rate == 0 for 1m"]

[rollback]
steps = [{ git = "revert" }, { service = "api", action = "restart" }, { wait = "health", timeout = "30s" }]

[verify]
checks = [{ http = "http://127.0.0.1:8000/health", status = 200 }, { run = ["true"] }, { file = "app.py", contains = "x" }]
stable-for = "10s"
"#;

    #[test]
    fn a_full_plan_validates() {
        let plan = parse(GOOD).unwrap();
        assert_eq!(plan.name, "api");
        assert_eq!(plan.rto, Some(Duration::from_secs(300)));
        assert!(plan.capture.git);
        assert_eq!(plan.probes[0].every, Duration::from_secs(1));
        assert_eq!(plan.rules.len(), 2);
        assert_eq!(plan.rules[1].action, Action::Investigate);
        assert_eq!(plan.rules[0].name, "rule-1");
        assert_eq!(plan.rollback.len(), 3);
        assert_eq!(plan.verify.checks.len(), 3);
        assert_eq!(plan.secrets, vec!["hunter2".to_string(), "Bearer hunter2".to_string()]);
        assert_eq!(
            plan.services[0].start.resolved(),
            vec!["python", "app.py", "--port", "8000"]
        );
        let ProbeKind::Http(h) = &plan.probes[0].kind else {
            panic!("an HTTP probe")
        };
        assert_eq!(h.headers[0].1.shown, "Bearer ${TOKEN}");
        assert_eq!(h.json, vec![("status".to_string(), serde_json::json!("healthy"))]);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    #[test]
    fn all_errors_are_reported_in_file_order() {
        let src = GOOD
            .replace("\"1s\"", "\"1 sec\"")
            .replace("then = \"investigate\"", "then = \"panic\"");
        let errs = parse(&src).unwrap_err();
        assert_eq!(errs.0.len(), 2, "{errs}");
        assert!(errs.0[0].line < errs.0[1].line);
    }

    #[test]
    fn warnings_for_risky_but_valid_plans() {
        let src = GOOD
            .replace("timeout = \"500ms\"\n", "")
            .replace("over 30s", "over 2s")
            .replace("Bearer ${TOKEN}", "Bearer abc");
        let plan = parse(&src).unwrap();
        let msgs: Vec<&str> = plan.warnings.iter().map(|w| w.message.as_str()).collect();
        assert!(msgs.iter().any(|m| m.contains("no timeout")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("fewer than 3")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("clear text")), "{msgs:?}");
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            split_words("a 'b c' \"d \\\" e\" f\\ g").unwrap(),
            vec!["a", "b c", "d \" e", "f g"]
        );
        assert_eq!(split_words("").unwrap(), Vec::<String>::new());
        assert!(split_words("a 'b").is_none());
    }
}
