//! The rule grammar: thresholds written the way the seeds write them.
//!
//! ```text
//! rule      := metric [op threshold] [over window] [for DURATION]
//! metric    := PROBE "." FIELD ["." AGG]        health.error_rate, api.latency.p95, api.up
//! op        := > | >= | < | <= | == | !=
//! threshold := VALUE | baseline [(+|-) VALUE] | baseline * NUMBER
//! VALUE     := NUMBER [% | ms | s | m | h | KB | MB | GB ...]
//! window    := DURATION | N samples
//! ```
//!
//! `api.up` alone means `api.up == 1`. Errors carry the byte span of the token
//! inside the rule text, so the plan error can put its caret under it.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::Serialize;

use super::units::{self, Percent};

/// What a probe measures that a rule can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// 1 when the latest sample succeeded, else 0.
    Up,
    /// Share of failed samples in the window.
    ErrorRate,
    /// Response time in milliseconds.
    Latency,
    /// Last HTTP status code.
    Status,
    /// Response size in bytes.
    Size,
    /// Failed samples in a row, counted back from the latest.
    ConsecutiveFailures,
    /// Log lines matched in the window (the sum of every sample's new matches).
    Count,
    /// Log lines matched per second over the window.
    Rate,
    /// Resident memory of a process and its children, in bytes.
    Rss,
    /// CPU use of a process and its children, as a share of one core (`80%`).
    Cpu,
    /// Open file descriptors of a process and its children.
    Fds,
    /// The probe's number: parsed from a command's output, or a Prometheus result.
    Value,
    /// A command probe's exit code.
    ExitCode,
}

impl Field {
    pub const NAMES: &'static [&'static str] = &[
        "up",
        "error_rate",
        "latency",
        "status",
        "size",
        "consecutive_failures",
        "count",
        "rate",
        "rss",
        "cpu",
        "fds",
        "value",
        "exit_code",
    ];

    fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "up" => Field::Up,
            "error_rate" => Field::ErrorRate,
            "latency" => Field::Latency,
            "status" => Field::Status,
            "size" => Field::Size,
            "consecutive_failures" => Field::ConsecutiveFailures,
            "count" => Field::Count,
            "rate" => Field::Rate,
            "rss" => Field::Rss,
            "cpu" => Field::Cpu,
            "fds" => Field::Fds,
            "value" => Field::Value,
            "exit_code" => Field::ExitCode,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Up => "up",
            Field::ErrorRate => "error_rate",
            Field::Latency => "latency",
            Field::Status => "status",
            Field::Size => "size",
            Field::ConsecutiveFailures => "consecutive_failures",
            Field::Count => "count",
            Field::Rate => "rate",
            Field::Rss => "rss",
            Field::Cpu => "cpu",
            Field::Fds => "fds",
            Field::Value => "value",
            Field::ExitCode => "exit_code",
        }
    }

    /// The kind of value the field holds, which decides the units a threshold may use.
    fn kind(self) -> ValueKind {
        match self {
            Field::ErrorRate | Field::Cpu => ValueKind::Ratio,
            Field::Latency => ValueKind::Millis,
            Field::Size | Field::Rss => ValueKind::Bytes,
            Field::Rate => ValueKind::PerSecond,
            Field::Up
            | Field::Status
            | Field::ConsecutiveFailures
            | Field::Count
            | Field::Fds
            | Field::Value
            | Field::ExitCode => ValueKind::Number,
        }
    }

    /// Whether the field is a share written as a percentage (`error_rate`, `cpu`),
    /// whose baseline-relative amounts may be percentage points (`+ 2pp`).
    pub fn is_ratio(self) -> bool {
        self.kind() == ValueKind::Ratio
    }

    /// Whether a healthy baseline of this field is often exactly 0 (no errors, no
    /// matches): then a relative threshold (`baseline + 50%`) is 0 too, and any
    /// single event trips it.
    pub fn baseline_can_be_zero(self) -> bool {
        matches!(
            self,
            Field::ErrorRate | Field::Count | Field::Rate | Field::Cpu | Field::ExitCode | Field::ConsecutiveFailures
        )
    }

    /// Whether every value of the field is ≥ 0, so a mean over part of a window
    /// bounds the whole window's mean from below.
    pub fn non_negative(self) -> bool {
        matches!(
            self,
            Field::Latency | Field::Size | Field::Rss | Field::Cpu | Field::Fds | Field::Count | Field::Rate
        )
    }

    /// An absolute amount of this field written back in the rule's units: `2pp`
    /// for rates, `50ms`, `1MB`, a number.
    pub fn format_amount(self, v: f64) -> String {
        match self.kind() {
            ValueKind::Ratio => format!("{}pp", units::trim_float((v * 1e6).round() / 1e4)),
            _ => format_value(self, v),
        }
    }

    /// Whether an aggregation suffix (`.p95`) makes sense for this field.
    pub fn aggregates(self) -> bool {
        matches!(
            self,
            Field::Latency | Field::Size | Field::Rss | Field::Cpu | Field::Fds | Field::Value
        )
    }

    /// The key of this field in a sample's named numbers ([`crate::oplog::SampleRow::fields`]),
    /// for the fields stored there.
    pub fn key(self) -> Option<&'static str> {
        match self {
            Field::Count | Field::Rate => Some("count"),
            Field::Rss => Some("rss"),
            Field::Cpu => Some("cpu"),
            Field::Fds => Some("fds"),
            Field::ExitCode => Some("exit_code"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Ratio,
    Millis,
    Bytes,
    /// Events per second; thresholds may say `/s`, `/m` or `/h`.
    PerSecond,
    Number,
}

/// How samples in the window fold into one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    Last,
    Mean,
    Min,
    Max,
    P50,
    P90,
    P95,
    P99,
}

impl Agg {
    pub const NAMES: &'static [&'static str] = &["last", "mean", "min", "max", "p50", "median", "p90", "p95", "p99"];

    fn parse(s: &str) -> Option<Agg> {
        Some(match s {
            "last" => Agg::Last,
            "mean" | "avg" => Agg::Mean,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "p50" | "median" => Agg::P50,
            "p90" => Agg::P90,
            "p95" => Agg::P95,
            "p99" => Agg::P99,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Agg::Last => "last",
            Agg::Mean => "mean",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::P50 => "p50",
            Agg::P90 => "p90",
            Agg::P95 => "p95",
            Agg::P99 => "p99",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub probe: String,
    pub field: Field,
    pub agg: Agg,
    /// `[ERROR]` after a log probe's count or rate: one pattern's matches;
    /// `[job="api"]` after a Prometheus value: the series with those labels.
    pub selector: Option<String>,
    /// Span of the probe name inside the rule text, to report unknown probes.
    #[serde(skip)]
    pub probe_span: Range<usize>,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.probe, self.field.name())?;
        if let Some(s) = &self.selector {
            write!(f, "[{s}]")?;
        }
        if self.field.aggregates() {
            write!(f, ".{}", self.agg.name())?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        const EPS: f64 = 1e-9;
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold - EPS,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold + EPS,
            Op::Eq => (value - threshold).abs() <= EPS,
            Op::Ne => (value - threshold).abs() > EPS,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// A threshold in the metric's canonical unit (ms, bytes, a 0..1 ratio, a count).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Threshold {
    Absolute {
        value: f64,
    },
    /// `baseline`, `baseline + 25%`, `baseline - 10ms`, `baseline * 2`.
    Baseline {
        delta: Delta,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Delta {
    None,
    Percent(f64),
    Absolute(f64),
    Factor(f64),
}

impl Delta {
    /// The threshold this delta gives from a measured baseline value.
    pub fn apply(&self, baseline: f64) -> f64 {
        match self {
            Delta::None => baseline,
            Delta::Percent(p) => baseline * (1.0 + p / 100.0),
            Delta::Absolute(a) => baseline + a,
            Delta::Factor(f) => baseline * f,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Window {
    /// The latest N samples.
    Samples(usize),
    /// Samples taken in the last duration.
    #[serde(serialize_with = "ser_duration")]
    Duration(Duration),
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&units::format_duration(*d))
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Samples(1) => write!(f, "the latest sample"),
            Window::Samples(n) => write!(f, "the latest {n} samples"),
            Window::Duration(d) => write!(f, "{}", units::format_duration(*d)),
        }
    }
}

/// A parsed condition: `metric op threshold over window for hold`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    pub metric: Metric,
    pub op: Op,
    pub threshold: Threshold,
    /// `None` when the rule gave no `over`: the default window applies.
    pub window: Option<Window>,
    /// `for D`: the condition must hold continuously for D.
    #[serde(serialize_with = "ser_opt_duration")]
    pub hold: Option<Duration>,
    /// `(mann-whitney, 98%)` or `(sequential, 99%)` after a baseline threshold: a
    /// statistical comparison with the baseline's samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<StatTest>,
}

/// A statistical comparison with the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StatTest {
    pub kind: TestKind,
    /// 0.98 for `98%`.
    pub confidence: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestKind {
    /// Kayenta's judge: a one-sided Mann–Whitney U test of the window against
    /// the baseline, with an effect size (the threshold) to exceed.
    MannWhitney,
    /// A sequential e-detector of the share of samples beyond the threshold:
    /// anytime-valid, its false alarms bounded however long it watches.
    Sequential,
}

impl TestKind {
    pub fn name(self) -> &'static str {
        match self {
            TestKind::MannWhitney => "mann-whitney",
            TestKind::Sequential => "sequential",
        }
    }

    /// The confidence a test has when the rule does not give one.
    pub fn default_confidence(self) -> f64 {
        match self {
            TestKind::MannWhitney => 0.98,
            TestKind::Sequential => 0.99,
        }
    }
}

impl fmt::Display for StatTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.kind.name(), Percent(self.confidence * 100.0))
    }
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&units::format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// A rule-text error, located by byte span inside the text.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub span: Range<usize>,
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone)]
struct Token<'a> {
    text: &'a str,
    span: Range<usize>,
}

fn tokenize(src: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if matches!(c, b'<' | b'>' | b'=' | b'!') {
            while i < bytes.len() && matches!(bytes[i], b'<' | b'>' | b'=' | b'!') {
                i += 1;
            }
        } else if matches!(c, b'+' | b'-' | b'*' | b'(' | b')' | b',') {
            i += 1;
        } else {
            // A word runs to whitespace or an operator; `-` ends it only after a
            // non-alphanumeric, so `p95-x` stays one word but `5% -` does not.
            // A `[selector]` is part of the word, whatever it holds.
            let ends_word = |i: usize| {
                bytes[i].is_ascii_whitespace()
                    || matches!(bytes[i], b'<' | b'>' | b'=' | b'!' | b'+' | b'*' | b'(' | b')' | b',')
                    || (bytes[i] == b'-' && i > start && !bytes[i - 1].is_ascii_alphanumeric())
            };
            let mut depth = 0usize;
            while i < bytes.len() && (depth > 0 || !ends_word(i)) {
                match bytes[i] {
                    b'[' => depth += 1,
                    b']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                i += 1;
            }
        }
        out.push(Token {
            text: &src[start..i],
            span: start..i,
        });
    }
    out
}

fn err(span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) -> RuleError {
    RuleError {
        span,
        message: message.into(),
        hint: hint.into(),
    }
}

const RULE_HINT: &str = "rules read like `api.error_rate > 5% over 5m` or `api.latency.p95 > baseline + 25%`";

/// Parses a rule condition such as `api.error_rate > 5% over 5m`.
pub fn parse_condition(src: &str) -> Result<Condition, RuleError> {
    let tokens = tokenize(src);
    let mut pos = 0;
    let Some(first) = tokens.first() else {
        return Err(err(0..src.len(), "the rule is empty", RULE_HINT));
    };
    let metric = parse_metric(first)?;
    pos += 1;

    let (op, threshold) = match tokens.get(pos) {
        Some(t) if t.text.starts_with(['<', '>', '=', '!']) => {
            let op = match t.text {
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                "<=" => Op::Le,
                "==" => Op::Eq,
                "!=" => Op::Ne,
                "=" => {
                    return Err(err(
                        t.span.clone(),
                        "`=` is not a comparison",
                        "write `==` to compare for equality",
                    ));
                }
                other => {
                    return Err(err(
                        t.span.clone(),
                        format!("unknown comparison `{other}`"),
                        "use one of >, >=, <, <=, ==, !=",
                    ));
                }
            };
            pos += 1;
            let (threshold, used) = parse_threshold(&tokens[pos..], &metric, t.span.end)?;
            pos += used;
            (op, threshold)
        }
        _ if metric.field == Field::Up => (Op::Eq, Threshold::Absolute { value: 1.0 }),
        Some(t) => {
            return Err(err(
                t.span.clone(),
                format!("expected a comparison after `{}`, found `{}`", first.text, t.text),
                "use one of >, >=, <, <=, ==, !=",
            ));
        }
        None => {
            return Err(err(
                src.len()..src.len(),
                format!("`{}` needs a comparison and a threshold", first.text),
                RULE_HINT,
            ));
        }
    };

    let mut test = None;
    if tokens.get(pos).is_some_and(|t| t.text == "(") {
        let (t, used) = parse_test(&tokens[pos..], &metric, op, &threshold)?;
        test = Some(t);
        pos += used;
    }
    let mut window = None;
    let mut hold = None;
    while let Some(t) = tokens.get(pos) {
        match t.text {
            "over" => {
                let Some(v) = tokens.get(pos + 1) else {
                    return Err(err(
                        t.span.clone(),
                        "`over` needs a window",
                        "write `over 5m` or `over 10 samples`",
                    ));
                };
                if let Some(unit) = tokens.get(pos + 2).filter(|u| matches!(u.text, "samples" | "sample")) {
                    let n: usize = v.text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        if v.text.bytes().all(|b| b.is_ascii_digit()) && v.text.bytes().any(|b| b != b'0') {
                            err(
                                v.span.clone(),
                                format!("{} samples is too many for a window", v.text),
                                units::MAX_SAMPLES_HINT,
                            )
                        } else {
                            err(
                                v.span.clone(),
                                format!("expected a number of samples, found `{}`", v.text),
                                "write `over 10 samples`",
                            )
                        }
                    })?;
                    if n > units::MAX_SAMPLES {
                        return Err(err(
                            v.span.clone(),
                            format!("{n} samples is too many for a window"),
                            units::MAX_SAMPLES_HINT,
                        ));
                    }
                    let _ = unit;
                    window = Some(Window::Samples(n));
                    pos += 3;
                } else {
                    let d = units::parse_duration(v.text).map_err(|e| {
                        let hint = if e.hint == units::MAX_DURATION_HINT {
                            e.hint
                        } else {
                            "write `over 5m` or `over 10 samples`"
                        };
                        duration_error(src, &tokens, pos + 1, e.message, hint)
                    })?;
                    window = Some(Window::Duration(d));
                    pos += 2;
                }
            }
            "for" => {
                let Some(v) = tokens.get(pos + 1) else {
                    return Err(err(t.span.clone(), "`for` needs a duration", "write `for 2h`"));
                };
                let d = units::parse_duration(v.text)
                    .map_err(|e| duration_error(src, &tokens, pos + 1, e.message, e.hint))?;
                hold = Some(d);
                pos += 2;
            }
            other => {
                return Err(err(
                    t.span.clone(),
                    format!("unexpected `{other}` in the rule"),
                    "after the threshold only `over WINDOW` and `for DURATION` may follow",
                ));
            }
        }
    }
    Ok(Condition {
        metric,
        op,
        threshold,
        window,
        hold,
        test,
    })
}

const TEST_HINT: &str =
    "write `(mann-whitney)`, `(mann-whitney, 98%)`, `(sequential)` or `(sequential, 99%)` after a baseline threshold";

/// Parses `(mann-whitney, 98%)` at `tokens[0] == "("`; returns it and how many
/// tokens it used.
fn parse_test(
    tokens: &[Token<'_>],
    metric: &Metric,
    op: Op,
    threshold: &Threshold,
) -> Result<(StatTest, usize), RuleError> {
    let open = &tokens[0];
    let Some(name) = tokens.get(1) else {
        return Err(err(open.span.clone(), "`(` needs a test name", TEST_HINT));
    };
    let kind = match name.text {
        "mann-whitney" | "mannwhitney" | "mwu" => TestKind::MannWhitney,
        "sequential" => TestKind::Sequential,
        other => {
            return Err(err(
                name.span.clone(),
                format!("unknown statistical test `{other}`"),
                TEST_HINT,
            ));
        }
    };
    let mut used = 2;
    let mut confidence = kind.default_confidence();
    if tokens.get(used).is_some_and(|t| t.text == ",") {
        let Some(c) = tokens.get(used + 1) else {
            return Err(err(
                tokens[used].span.clone(),
                "missing a confidence after `,`",
                TEST_HINT,
            ));
        };
        confidence = units::parse_percent(c.text)
            .ok()
            .map(|p| p.fraction())
            .filter(|f| *f >= 0.5 && *f < 1.0)
            .ok_or_else(|| {
                err(
                    c.span.clone(),
                    format!("expected a confidence like 98%, found `{}`", c.text),
                    "a confidence is at least 50% and below 100%: 98%, 99%, 99.9%",
                )
            })?;
        used += 2;
    }
    let Some(close) = tokens.get(used).filter(|t| t.text == ")") else {
        let at = tokens
            .get(used)
            .map_or(name.span.end..name.span.end, |t| t.span.clone());
        return Err(err(at, "expected `)` to close the test", TEST_HINT));
    };
    used += 1;
    let span = open.span.start..close.span.end;
    if !matches!(threshold, Threshold::Baseline { .. }) {
        return Err(err(
            span,
            "a statistical test compares with the baseline",
            format!(
                "write `{metric} {} baseline + 25% {}` (any baseline amount, or none)",
                op.symbol(),
                StatTest { kind, confidence }
            ),
        ));
    }
    if !matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le) {
        return Err(err(
            span,
            format!("a statistical test asks whether {metric} rose or fell"),
            "use >, >=, < or <=",
        ));
    }
    let field_ok = matches!(
        metric.field,
        Field::ErrorRate | Field::Latency | Field::Size | Field::Rss | Field::Cpu | Field::Fds | Field::Value
    );
    if !field_ok {
        return Err(err(
            span,
            format!(
                "`{}` cannot be tested against the baseline's samples",
                metric.field.name()
            ),
            "statistical tests apply to error_rate, latency, size, rss, cpu, fds and value",
        ));
    }
    if metric.field == Field::ErrorRate && matches!(op, Op::Lt | Op::Le) {
        return Err(err(
            span,
            "a statistical test of error_rate asks whether it rose",
            "write `api.error_rate > baseline (sequential)`",
        ));
    }
    if matches!(metric.agg, Agg::Last | Agg::Min | Agg::Max) && metric.field != Field::ErrorRate {
        return Err(err(
            span,
            format!(
                "a statistical test compares distributions, not the {} value",
                metric.agg.name()
            ),
            format!(
                "write `{}.{}.p50` (a median) or `.p95`, or `.mean`",
                metric.probe,
                metric.field.name()
            ),
        ));
    }
    Ok((StatTest { kind, confidence }, used))
}

/// The error for a bad duration at `tokens[at]`. `5 minutes` is two tokens: the
/// caret and the message cover the whole phrase, not just the number.
fn duration_error(src: &str, tokens: &[Token<'_>], at: usize, message: String, hint: &str) -> RuleError {
    let v = &tokens[at];
    let unit = tokens
        .get(at + 1)
        .filter(|u| u.text.chars().all(|c| c.is_ascii_alphabetic()) && !matches!(u.text, "over" | "for"));
    match unit {
        Some(u) => err(
            v.span.start..u.span.end,
            format!(
                "expected a duration like 30s or 5m, found {:?}",
                &src[v.span.start..u.span.end]
            ),
            hint,
        ),
        None => err(v.span.clone(), message, hint),
    }
}

fn parse_metric(t: &Token<'_>) -> Result<Metric, RuleError> {
    // `errors.count[ERROR]`, `q.value[job="api"]`: the selector ends the field.
    let (text, selector) = match t.text.find('[') {
        Some(open) => {
            let Some(inner) = t.text[open + 1..].strip_suffix(']') else {
                return Err(err(
                    t.span.start + open..t.span.end,
                    "unclosed `[` in the metric",
                    "a selector reads `errors.count[ERROR]` or `q.value[job=\"api\"]`",
                ));
            };
            if inner.trim().is_empty() {
                return Err(err(
                    t.span.start + open..t.span.end,
                    "empty selector",
                    "name a log pattern or label pairs inside [ ]",
                ));
            }
            (&t.text[..open], Some(inner.trim().to_string()))
        }
        None => (t.text, None),
    };
    let t = &Token {
        text,
        span: t.span.start..t.span.start + text.len(),
    };
    let parts: Vec<&str> = t.text.split('.').collect();
    let metric_hint = format!(
        "a metric is PROBE.FIELD[.AGG]; fields: {}; aggregations: {}",
        Field::NAMES.join(", "),
        Agg::NAMES.join(", ")
    );
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
        return Err(err(
            t.span.clone(),
            format!("expected a metric like `api.error_rate`, found `{}`", t.text),
            metric_hint,
        ));
    }
    let probe_span = t.span.start..t.span.start + parts[0].len();
    let field_start = probe_span.end + 1;
    let field_span = field_start..field_start + parts[1].len();
    let field = Field::parse(parts[1]).ok_or_else(|| {
        let hint = match super::diag::did_you_mean(parts[1], Field::NAMES) {
            Some(s) => format!("did you mean `{s}`? fields: {}", Field::NAMES.join(", ")),
            None => format!("fields: {}", Field::NAMES.join(", ")),
        };
        err(field_span.clone(), format!("unknown field `{}`", parts[1]), hint)
    })?;
    let agg = match parts.get(2) {
        None => match field {
            Field::Latency | Field::Size => Agg::Mean,
            _ => Agg::Last,
        },
        Some(a) => {
            let agg_start = field_span.end + 1;
            let agg_span = agg_start..agg_start + a.len();
            if !field.aggregates() {
                return Err(err(
                    agg_span,
                    format!("`{}` takes no aggregation", field.name()),
                    "aggregations apply to latency, size, rss, cpu, fds and value",
                ));
            }
            Agg::parse(a).ok_or_else(|| {
                err(
                    agg_span,
                    format!("unknown aggregation `{a}`"),
                    format!("aggregations: {}", Agg::NAMES.join(", ")),
                )
            })?
        }
    };
    if selector.is_some() && !matches!(field, Field::Count | Field::Rate | Field::Value) {
        return Err(err(
            t.span.clone(),
            format!("`{}` takes no [selector]", field.name()),
            "selectors pick one log pattern (count, rate) or one Prometheus series (value)",
        ));
    }
    Ok(Metric {
        probe: parts[0].to_string(),
        field,
        selector: selector.clone(),
        agg,
        probe_span,
    })
}

/// Parses the threshold; returns it and how many tokens it used.
fn parse_threshold(tokens: &[Token<'_>], metric: &Metric, after: usize) -> Result<(Threshold, usize), RuleError> {
    let Some(t) = tokens.first() else {
        return Err(err(after..after, "missing threshold", RULE_HINT));
    };
    if t.text == "baseline" {
        let delta_hint = "write `baseline + 25%` (relative), `baseline + 2pp` (percentage points), `baseline - 10ms` or `baseline * 2`";
        return match tokens.get(1).map(|t| t.text) {
            Some("+") | Some("-") => {
                let sign = if tokens[1].text == "-" { -1.0 } else { 1.0 };
                let v = tokens
                    .get(2)
                    .ok_or_else(|| err(tokens[1].span.clone(), "missing value after the sign", delta_hint))?;
                let delta = if let Some(p) = v.text.strip_suffix("pp") {
                    // Percentage points: `baseline + 2pp` is 1% → 3%, whatever the baseline.
                    if metric.field.kind() != ValueKind::Ratio {
                        return Err(err(
                            v.span.clone(),
                            format!("`pp` (percentage points) is for rates, not `{}`", metric.field.name()),
                            format!(
                                "percentage points apply to error_rate and cpu; for {} write an amount in its unit or a relative `+ 25%`",
                                metric.field.name()
                            ),
                        ));
                    }
                    let p: f64 = p
                        .parse()
                        .ok()
                        .filter(|p: &f64| p.is_finite() && *p >= 0.0)
                        .ok_or_else(|| {
                            err(
                                v.span.clone(),
                                format!("expected percentage points like `2pp`, found `{}`", v.text),
                                delta_hint,
                            )
                        })?;
                    Delta::Absolute(sign * p / 100.0)
                } else if let Some(p) = v.text.strip_suffix('%') {
                    let p: f64 = p.parse().map_err(|_| {
                        err(
                            v.span.clone(),
                            format!("expected a percentage, found `{}`", v.text),
                            delta_hint,
                        )
                    })?;
                    Delta::Percent(sign * finite(p, v)?)
                } else if metric.field.kind() == ValueKind::Ratio {
                    // A bare number on a rate is ambiguous: say both readings.
                    return Err(err(
                        v.span.clone(),
                        format!(
                            "`baseline {} {}` does not say whether {} is percentage points or a share of the baseline",
                            tokens[1].text, v.text, v.text
                        ),
                        format!(
                            "write `baseline + 2pp` for 2 percentage points above the baseline (1% → 3%), or `baseline + 50%` for half as much again (1% → 1.5%); {} is a rate",
                            metric.field.name()
                        ),
                    ));
                } else {
                    Delta::Absolute(sign * parse_value(v, metric.field.kind(), metric)?)
                };
                Ok((Threshold::Baseline { delta }, 3))
            }
            Some("*") => {
                let v = tokens
                    .get(2)
                    .ok_or_else(|| err(tokens[1].span.clone(), "missing factor after `*`", delta_hint))?;
                let f: f64 = v.text.parse().map_err(|_| {
                    err(
                        v.span.clone(),
                        format!("expected a number, found `{}`", v.text),
                        delta_hint,
                    )
                })?;
                Ok((
                    Threshold::Baseline {
                        delta: Delta::Factor(finite(f, v)?),
                    },
                    3,
                ))
            }
            _ => Ok((Threshold::Baseline { delta: Delta::None }, 1)),
        };
    }
    let value = parse_value(t, metric.field.kind(), metric)?;
    Ok((Threshold::Absolute { value }, 1))
}

/// `v`, written at `t`, if it is an ordinary number: `inf`, `NaN` and a
/// number too long for a float compare with nothing sensibly.
fn finite(v: f64, t: &Token<'_>) -> Result<f64, RuleError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(err(
            t.span.clone(),
            format!("`{}` is not a finite number", t.text),
            units::FINITE_HINT,
        ))
    }
}

fn parse_value(t: &Token<'_>, kind: ValueKind, metric: &Metric) -> Result<f64, RuleError> {
    parse_any_value(t, kind, metric).and_then(|v| finite(v, t))
}

fn parse_any_value(t: &Token<'_>, kind: ValueKind, metric: &Metric) -> Result<f64, RuleError> {
    let s = t.text;
    match kind {
        ValueKind::Ratio => {
            if let Ok(p) = units::parse_percent(s) {
                return Ok(p.fraction());
            }
            if s.parse::<f64>().ok() == Some(0.0) {
                return Ok(0.0);
            }
            Err(err(
                t.span.clone(),
                format!("`{}` is a percentage, found `{s}`", metric.field.name()),
                format!("write it with %, like `{} > 5%`", metric),
            ))
        }
        ValueKind::Millis => units::parse_duration(s).map(|d| d.as_secs_f64() * 1000.0).map_err(|e| {
            if e.hint == units::MAX_DURATION_HINT {
                err(t.span.clone(), e.message, e.hint)
            } else {
                err(
                    t.span.clone(),
                    format!("`{}` is a time, found `{s}`", metric.field.name()),
                    "write it with a unit, like 500ms or 2s",
                )
            }
        }),
        ValueKind::Bytes => units::parse_size(s)
            .map(|b| b as f64)
            .map_err(|e| err(t.span.clone(), e.message, e.hint)),
        ValueKind::PerSecond => {
            let (n, per) = match s.split_once('/') {
                Some((n, "s")) => (n, 1.0),
                Some((n, "m")) => (n, 60.0),
                Some((n, "h")) => (n, 3600.0),
                Some(_) => (s, f64::NAN),
                None => (s, 1.0),
            };
            n.parse::<f64>()
                .ok()
                .filter(|_| !per.is_nan())
                .map(|v| v / per)
                .ok_or_else(|| {
                    err(
                        t.span.clone(),
                        format!("`{}` is a rate, found `{s}`", metric.field.name()),
                        "write events per second, minute or hour: `2/s`, `10/m`, `100/h` (a bare number is per second)",
                    )
                })
        }
        ValueKind::Number => s.parse::<f64>().map_err(|_| {
            err(
                t.span.clone(),
                format!("expected a number, found `{s}`"),
                format!("`{}` is compared with a plain number", metric.field.name()),
            )
        }),
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Absolute { value } => write!(f, "{}", units::trim_float(*value)),
            Threshold::Baseline { delta } => match delta {
                Delta::None => write!(f, "baseline"),
                Delta::Percent(p) if *p >= 0.0 => write!(f, "baseline + {}", Percent(*p)),
                Delta::Percent(p) => write!(f, "baseline - {}", Percent(-p)),
                Delta::Absolute(a) => write!(
                    f,
                    "baseline {} {}",
                    if *a >= 0.0 { "+" } else { "-" },
                    units::trim_float(a.abs())
                ),
                Delta::Factor(x) => write!(f, "baseline * {}", units::trim_float(*x)),
            },
        }
    }
}

/// Formats a value of `field` for people: `12.5%`, `340ms`, `1.2MB`, `3`.
pub fn format_value(field: Field, v: f64) -> String {
    match field.kind() {
        ValueKind::Ratio => format!("{}%", units::trim_float(v * 100.0)),
        ValueKind::Millis => {
            if v >= 1000.0 {
                format!("{}s", units::trim_float(v / 1000.0))
            } else {
                format!("{}ms", units::trim_float((v * 10.0).round() / 10.0))
            }
        }
        ValueKind::Bytes => {
            // One decimal is what a person compares; the JSON keeps the exact value.
            let r = |x: f64| units::trim_float((x * 10.0).round() / 10.0);
            if v >= 1e9 {
                format!("{}GB", r(v / 1e9))
            } else if v >= 1e6 {
                format!("{}MB", r(v / 1e6))
            } else if v >= 1e3 {
                format!("{}KB", r(v / 1e3))
            } else {
                format!("{}B", r(v))
            }
        }
        ValueKind::PerSecond => {
            if v != 0.0 && v < 1.0 {
                format!("{}/m", units::trim_float((v * 60.0 * 100.0).round() / 100.0))
            } else {
                format!("{}/s", units::trim_float((v * 100.0).round() / 100.0))
            }
        }
        ValueKind::Number => units::trim_float(v),
    }
}

/// The threshold as people read it, in the metric's unit (`5%`, `baseline + 25%`).
pub fn format_threshold(field: Field, t: &Threshold) -> String {
    match t {
        Threshold::Absolute { value } => format_value(field, *value),
        Threshold::Baseline {
            delta: Delta::Absolute(a),
        } => {
            // Percentage points for rates, so `+ 2pp` never reads as the relative `+ 2%`.
            format!(
                "baseline {} {}",
                if *a >= 0.0 { "+" } else { "-" },
                field.format_amount(a.abs())
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(s: &str) -> Condition {
        parse_condition(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn seed_thresholds_parse() {
        let c = cond("health.error_rate > 5% over 5m");
        assert_eq!(c.metric.probe, "health");
        assert_eq!(c.metric.field, Field::ErrorRate);
        assert_eq!(c.op, Op::Gt);
        assert_eq!(c.threshold, Threshold::Absolute { value: 0.05 });
        assert_eq!(c.window, Some(Window::Duration(Duration::from_secs(300))));

        let c = cond("api.latency.p95 > baseline + 25%");
        assert_eq!(c.metric.agg, Agg::P95);
        assert_eq!(
            c.threshold,
            Threshold::Baseline {
                delta: Delta::Percent(25.0)
            }
        );

        let c = cond("api.error_rate == 0 for 2h");
        assert_eq!(c.hold, Some(Duration::from_secs(7200)));
        assert_eq!(c.op, Op::Eq);

        let c = cond("api.latency > 2s over 10 samples");
        assert_eq!(c.threshold, Threshold::Absolute { value: 2000.0 });
        assert_eq!(c.window, Some(Window::Samples(10)));

        let c = cond("api.up");
        assert_eq!((c.op, c.threshold), (Op::Eq, Threshold::Absolute { value: 1.0 }));

        let c = cond("api.consecutive_failures>=3");
        assert_eq!(c.op, Op::Ge);
        assert_eq!(c.threshold, Threshold::Absolute { value: 3.0 });

        let c = cond("api.latency.p95 > baseline * 2");
        assert_eq!(
            c.threshold,
            Threshold::Baseline {
                delta: Delta::Factor(2.0)
            }
        );
        let c = cond("api.latency.p50 > baseline - 10ms");
        assert_eq!(
            c.threshold,
            Threshold::Baseline {
                delta: Delta::Absolute(-10.0)
            }
        );
    }

    #[test]
    fn baseline_amounts_in_points_and_milliseconds() {
        // Percentage points: 1% → 3%, whatever the baseline; not 1% → 1.02%.
        let c = cond("api.error_rate > baseline + 2pp over 30s");
        assert_eq!(
            c.threshold,
            Threshold::Baseline {
                delta: Delta::Absolute(0.02)
            }
        );
        let Threshold::Baseline { delta } = &c.threshold else {
            unreachable!()
        };
        assert!((delta.apply(0.01) - 0.03).abs() < 1e-12);
        assert!((delta.apply(0.0) - 0.02).abs() < 1e-12);
        assert_eq!(format_threshold(Field::ErrorRate, &c.threshold), "baseline + 2pp");
        // The relative form stays multiplicative and reads as such.
        let c = cond("api.error_rate > baseline + 50%");
        assert_eq!(format_threshold(Field::ErrorRate, &c.threshold), "baseline + 50%");
        // Milliseconds and seconds for latency.
        let c = cond("api.latency.p95 > baseline + 50ms over 30s");
        assert_eq!(
            c.threshold,
            Threshold::Baseline {
                delta: Delta::Absolute(50.0)
            }
        );
        assert_eq!(format_threshold(Field::Latency, &c.threshold), "baseline + 50ms");
        let c = cond("api.latency.p95 > baseline + 1.5s");
        assert_eq!(
            c.threshold,
            Threshold::Baseline {
                delta: Delta::Absolute(1500.0)
            }
        );
        // A bare number on a rate is ambiguous: refused, with both readings.
        let e = parse_condition("api.error_rate > baseline + 0.1").unwrap_err();
        assert_eq!(&"api.error_rate > baseline + 0.1"[e.span.clone()], "0.1");
        assert!(e.hint.contains("2pp") && e.hint.contains("50%"), "{e:?}");
        // Points only on rates.
        let e = parse_condition("api.latency > baseline + 2pp").unwrap_err();
        assert!(e.message.contains("percentage points"), "{e:?}");
    }

    #[test]
    fn statistical_tests_follow_a_baseline_threshold() {
        let c = cond("api.latency.p50 > baseline + 25% (mann-whitney, 98%) over 30s");
        assert_eq!(
            c.test,
            Some(StatTest {
                kind: TestKind::MannWhitney,
                confidence: 0.98
            })
        );
        assert_eq!(c.window, Some(Window::Duration(Duration::from_secs(30))));
        let c = cond("api.error_rate > baseline (sequential)");
        assert_eq!(c.threshold, Threshold::Baseline { delta: Delta::None });
        assert_eq!(
            c.test.map(|t| (t.kind, t.confidence)),
            Some((TestKind::Sequential, 0.99))
        );
        assert_eq!(c.test.unwrap().to_string(), "(sequential, 99%)");
        let c = cond("api.error_rate > baseline + 2pp (sequential, 99.9%) over 1m");
        assert!((c.test.unwrap().confidence - 0.999).abs() < 1e-12);

        let e = parse_condition("api.latency.p95 > 300ms (mann-whitney)").unwrap_err();
        assert!(e.message.contains("compares with the baseline"), "{e:?}");
        let e = parse_condition("api.latency > baseline (t-test)").unwrap_err();
        assert_eq!(&"api.latency > baseline (t-test)"[e.span.clone()], "t-test");
        let e = parse_condition("api.latency > baseline (sequential, 120%)").unwrap_err();
        assert!(e.message.contains("confidence"), "{e:?}");
        let e = parse_condition("api.latency > baseline (sequential").unwrap_err();
        assert!(e.message.contains("`)`"), "{e:?}");
        let e = parse_condition("api.latency.max > baseline (sequential)").unwrap_err();
        assert!(e.hint.contains("p50"), "{e:?}");
        let e = parse_condition("api.status > baseline (mann-whitney)").unwrap_err();
        assert!(e.message.contains("cannot be tested"), "{e:?}");
        // Selectors with commas still read as one metric.
        let c = cond("q.value[job=\"api\",instance=\"a\"] > 0.5");
        assert_eq!(c.metric.selector.as_deref(), Some("job=\"api\",instance=\"a\""));
    }

    #[test]
    fn errors_point_inside_the_rule() {
        let e = parse_condition("api.eror_rate > 5%").unwrap_err();
        assert_eq!(e.span, 4..13);
        assert!(e.hint.contains("error_rate"), "{e:?}");

        let e = parse_condition("api.error_rate > 5 over 5m").unwrap_err();
        assert_eq!(e.span, 17..18);

        let e = parse_condition("api.error_rate > 5% over 5 minutes").unwrap_err();
        assert_eq!(&"api.error_rate > 5% over 5 minutes"[e.span.clone()], "5 minutes");
        let e = parse_condition("api.error_rate > 5% for 2 hours over 5m").unwrap_err();
        assert_eq!(&"api.error_rate > 5% for 2 hours over 5m"[e.span.clone()], "2 hours");
        assert!(e.message.contains("\"2 hours\""), "{e:?}");
        let e = parse_condition("api.error_rate > 5% over 5 for 1m").unwrap_err();
        assert_eq!(&"api.error_rate > 5% over 5 for 1m"[e.span.clone()], "5");

        let e = parse_condition("api.latency.p96 > 1s").unwrap_err();
        assert_eq!(e.span, 12..15);

        let e = parse_condition("api.error_rate = 0").unwrap_err();
        assert!(e.hint.contains("=="));
    }

    #[test]
    fn delta_applies_to_baseline() {
        assert_eq!(Delta::Percent(25.0).apply(100.0), 125.0);
        assert_eq!(Delta::Factor(2.0).apply(100.0), 200.0);
        assert_eq!(Delta::Absolute(-10.0).apply(100.0), 90.0);
    }

    #[test]
    fn values_format_in_their_units() {
        assert_eq!(format_value(Field::ErrorRate, 0.125), "12.5%");
        assert_eq!(format_value(Field::Latency, 340.0), "340ms");
        assert_eq!(format_value(Field::Latency, 2500.0), "2.5s");
        assert_eq!(format_value(Field::Rss, 1_283_088_000.0), "1.3GB");
        assert_eq!(format_value(Field::Rss, 52_428_800.0), "52.4MB");
        assert_eq!(format_value(Field::Cpu, 0.815), "81.5%");
        assert_eq!(format_value(Field::Rate, 0.5), "30/m");
        assert_eq!(format_value(Field::Rate, 12.0), "12/s");
        assert_eq!(
            format_threshold(Field::ErrorRate, &Threshold::Absolute { value: 0.05 }),
            "5%"
        );
    }
}
