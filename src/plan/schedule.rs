//! The watch's schedule and judgement beyond single rules: scheduled reviews
//! (`[[review]]`, seed 003's +30m / +2h / +4h checkpoints), the decision matrix
//! (`[decision]`, seed 004's severity × share of probes affected), rule
//! severities, and the plan's time scale for rehearsals.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::raw::{self, S};
use super::rule::Window;
use super::{Action, Criterion, Plan, Probe, Validator, units};

/// A scheduled review: at `at` after the deploy, every expectation must hold.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub name: String,
    #[serde(serialize_with = "ser_ms")]
    pub at: Duration,
    pub expect: Vec<Criterion>,
    /// What a failed review calls for.
    pub action: Action,
}

/// How bad a tripped rule is, as seed 004 sorts issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub const NAMES: &'static [&'static str] = &["critical", "major", "minor"];

    fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "critical" => Severity::Critical,
            "major" => Severity::Major,
            "minor" => Severity::Minor,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
        }
    }
}

/// Which share of the plan's probes must be affected for a row to apply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Share {
    Any,
    All,
    /// More than this fraction.
    Above(f64),
    /// At least this fraction.
    AtLeast(f64),
}

impl Share {
    pub fn matches(self, affected: usize, total: usize) -> bool {
        let f = if total == 0 {
            0.0
        } else {
            affected as f64 / total as f64
        };
        match self {
            Share::Any => affected > 0,
            Share::All => total > 0 && affected == total,
            Share::Above(x) => f > x + 1e-9,
            Share::AtLeast(x) => f >= x - 1e-9,
        }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Share::Any => f.write_str("any"),
            Share::All => f.write_str("all"),
            Share::Above(x) => write!(f, ">{}%", units::trim_float(x * 100.0)),
            Share::AtLeast(x) => write!(f, ">={}%", units::trim_float(x * 100.0)),
        }
    }
}

/// One row of the decision matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRow {
    pub severity: Severity,
    pub share: Share,
    pub action: Action,
    /// How long the situation may last before the action is taken.
    #[serde(serialize_with = "ser_ms")]
    pub within: Duration,
}

/// The decision matrix: rows read top to bottom, the first that matches decides;
/// when none does, `otherwise` ("if in doubt, roll back").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub matrix: Vec<DecisionRow>,
    pub otherwise: Action,
    /// The probes a share is counted over (`share = ">25%"` of these), so a
    /// log or process probe does not dilute seed 004's "share of endpoints";
    /// empty: every probe of the plan.
    pub probes: Vec<String>,
}

impl Default for Decision {
    /// Seed 004: critical issues roll back at once; major ones when more than a
    /// quarter of the probes are affected (else investigate); minor ones are
    /// investigated; anything else, roll back.
    fn default() -> Self {
        let row = |severity, share, action, within| DecisionRow {
            severity,
            share,
            action,
            within: Duration::from_secs(within),
        };
        Decision {
            matrix: vec![
                row(Severity::Critical, Share::Any, Action::Rollback, 0),
                row(Severity::Major, Share::Above(0.25), Action::Rollback, 0),
                row(Severity::Major, Share::Any, Action::Investigate, 0),
                row(Severity::Minor, Share::Any, Action::Investigate, 0),
            ],
            otherwise: Action::Rollback,
            probes: Vec::new(),
        }
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Validator<'_> {
    pub(super) fn action(&mut self, s: &S<String>) -> Action {
        match s.get_ref().as_str() {
            "rollback" => Action::Rollback,
            "investigate" | "alert" => Action::Investigate,
            other => {
                self.error(
                    s.span(),
                    format!("unknown action {other:?}"),
                    "write \"rollback\" (act) or \"investigate\" (alert only)",
                );
                Action::Rollback
            }
        }
    }

    pub(super) fn severity(&mut self, s: &Option<S<String>>) -> Option<Severity> {
        let s = s.as_ref()?;
        let sev = Severity::parse(s.get_ref());
        if sev.is_none() {
            self.error(
                s.span(),
                format!("unknown severity {:?}", s.get_ref()),
                format!("severity is one of {}", Severity::NAMES.join(", ")),
            );
        }
        sev
    }

    pub(super) fn reviews(&mut self, raw: &[S<raw::RawReview>], probes: &[Probe]) -> Vec<Review> {
        let mut names = std::collections::BTreeSet::new();
        let mut out: Vec<Review> = Vec::new();
        for r in raw {
            let rr = r.get_ref();
            let Some(at) = self.duration(&rr.at) else { continue };
            let name = match &rr.name {
                Some(n) => n.get_ref().clone(),
                None => format!("+{}", units::format_duration(at)),
            };
            if !names.insert(name.clone()) {
                let span = rr.name.as_ref().map_or(rr.at.span(), |n| n.span());
                self.error(
                    span,
                    format!("a review named {name:?} is already defined"),
                    "give each review its own name or offset",
                );
            }
            if rr.expect.is_empty() {
                self.error(
                    rr.at.span(),
                    format!("review {name:?} expects nothing"),
                    "add expect = [\"health.up\", \"errors.count == 0 over 30m\"]",
                );
            }
            let expect = rr
                .expect
                .iter()
                .filter_map(|w| {
                    Some(Criterion {
                        text: w.get_ref().clone(),
                        condition: self.criterion(w, probes)?,
                    })
                })
                .collect();
            let action = rr.then.as_ref().map_or(Action::Investigate, |t| self.action(t));
            out.push(Review {
                name,
                at,
                expect,
                action,
            });
        }
        out.sort_by_key(|r| r.at);
        out
    }

    pub(super) fn decision(&mut self, raw: Option<&S<raw::RawDecision>>, probes: &BTreeSet<String>) -> Decision {
        let Some(d) = raw else {
            return Decision::default();
        };
        let d = d.get_ref();
        for p in &d.probes {
            self.probe_ref(p, probes);
        }
        let counted: Vec<String> = d.probes.iter().map(|p| p.get_ref().clone()).collect();
        let otherwise = d.otherwise.as_ref().map_or(Action::Rollback, |o| self.action(o));
        let matrix = if d.matrix.is_empty() {
            Decision::default().matrix
        } else {
            d.matrix
                .iter()
                .map(|row| {
                    let r = row.get_ref();
                    DecisionRow {
                        severity: self.severity(&Some(r.severity.clone())).unwrap_or(Severity::Critical),
                        share: r.share.as_ref().map_or(Share::Any, |s| self.share(s)),
                        action: self.action(&r.then),
                        within: self.opt_duration(&r.within, Duration::ZERO),
                    }
                })
                .collect()
        };
        Decision {
            matrix,
            otherwise,
            probes: counted,
        }
    }

    fn share(&mut self, s: &S<String>) -> Share {
        let t = s.get_ref().trim();
        let parsed = match t {
            "any" => Some(Share::Any),
            "all" => Some(Share::All),
            _ => {
                let (ctor, rest): (fn(f64) -> Share, &str) = match t.strip_prefix(">=") {
                    Some(r) => (Share::AtLeast, r),
                    None => (Share::Above, t.strip_prefix('>').unwrap_or("")),
                };
                units::parse_percent(rest.trim()).ok().map(|p| ctor(p.fraction()))
            }
        };
        parsed.unwrap_or_else(|| {
            self.error(
                s.span(),
                format!("{t:?} is not a share of probes"),
                "write \"any\", \"all\", \">25%\" or \">=50%\"",
            );
            Share::Any
        })
    }

    pub(super) fn time_scale(&mut self, s: Option<&S<f64>>) -> f64 {
        match s {
            None => 1.0,
            Some(k) if (1.0..=MAX_TIME_SCALE).contains(k.get_ref()) => *k.get_ref(),
            Some(k) if *k.get_ref() > MAX_TIME_SCALE => {
                self.error(
                    k.span(),
                    format!(
                        "time-scale = {} is too fast",
                        self.source.get(k.span()).unwrap_or_default().trim()
                    ),
                    "time-scale is at most 1000000 (a week of watching in 0.6s)",
                );
                1.0
            }
            Some(k) => {
                self.error(
                    k.span(),
                    format!("time-scale must be 1 or more, found {}", k.get_ref()),
                    "time-scale = 60 runs an hour of watching in a minute; leave it out for real time",
                );
                1.0
            }
        }
    }
}

/// The fastest a rehearsal may run.
pub const MAX_TIME_SCALE: f64 = 1_000_000.0;

impl Plan {
    /// Divides every watch duration by `k`: probe intervals, rule windows and
    /// holds, success holds, review offsets, decision delays and the baseline's
    /// length. Timeouts stay as they are: a target is not faster in a rehearsal.
    pub(super) fn scale_time(&mut self, k: f64) {
        if k == 1.0 {
            return;
        }
        let d = |x: Duration| Duration::from_secs_f64(x.as_secs_f64() / k);
        let cond = |c: &mut super::Condition| {
            if let Some(Window::Duration(w)) = &mut c.window {
                *w = d(*w);
            }
            if let Some(h) = &mut c.hold {
                *h = d(*h);
            }
        };
        for p in &mut self.probes {
            p.every = d(p.every).max(Duration::from_millis(1));
        }
        for r in &mut self.rules {
            cond(&mut r.condition);
            r.clear_after = r.clear_after.map(d);
        }
        for s in &mut self.success {
            cond(&mut s.condition);
        }
        for r in &mut self.reviews {
            r.at = d(r.at);
            for e in &mut r.expect {
                cond(&mut e.condition);
            }
        }
        for row in &mut self.decision.matrix {
            row.within = d(row.within);
        }
        self.baseline_for = d(self.baseline_for);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Env;
    use std::path::Path;

    fn parse(extra: &str) -> Result<Plan, String> {
        let src = format!(
            "[plan]\nname = \"t\"\nrto = \"1m\"\n{extra}\n[[probe]]\nname = \"health\"\nevery = \"10s\"\ntimeout = \"2s\"\nhttp = {{ url = \"http://127.0.0.1:1/\" }}\n[[probe]]\nname = \"errors\"\nevery = \"10s\"\ntimeout = \"2s\"\nlog = {{ path = \"app.log\", pattern = \"ERROR\" }}\n"
        );
        Plan::parse(Path::new("/p/backout.toml"), &src, &Env::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn reviews_sort_by_offset_and_scale_with_the_plan() {
        let p = parse(
            "time-scale = 60\n[[review]]\nat = \"2h\"\nexpect = [\"health.up\"]\nthen = \"rollback\"\n[[review]]\nat = \"30m\"\nexpect = [\"health.up\", \"errors.count == 0 over 30m\"]\n",
        )
        .unwrap();
        assert_eq!(p.reviews[0].name, "+30m");
        assert_eq!(p.reviews[0].at, Duration::from_secs(30));
        assert_eq!(p.reviews[0].action, Action::Investigate);
        assert_eq!(p.reviews[1].at, Duration::from_secs(120));
        assert_eq!(p.reviews[1].action, Action::Rollback);
        assert_eq!(
            p.reviews[0].expect[1].condition.window,
            Some(Window::Duration(Duration::from_secs(30)))
        );
        assert_eq!(p.probes[0].every, Duration::from_secs_f64(10.0 / 60.0));
        assert_eq!(p.probes[0].timeout, Duration::from_secs(2), "timeouts are not scaled");
    }

    #[test]
    fn the_decision_matrix_reads_like_the_seed() {
        let p = parse(
            "[decision]\notherwise = \"investigate\"\nmatrix = [\n  { severity = \"critical\", then = \"rollback\" },\n  { severity = \"major\", share = \">=50%\", then = \"rollback\", within = \"5m\" },\n]\n",
        )
        .unwrap();
        assert_eq!(p.decision.otherwise, Action::Investigate);
        assert_eq!(p.decision.matrix[1].share, Share::AtLeast(0.5));
        assert_eq!(p.decision.matrix[1].within, Duration::from_secs(300));
        assert_eq!(parse("").unwrap().decision, Decision::default());
        assert!(Share::Above(0.25).matches(2, 4));
        assert!(!Share::Above(0.5).matches(2, 4));
        assert!(Share::AtLeast(0.5).matches(2, 4));
        assert!(Share::All.matches(4, 4) && !Share::All.matches(3, 4));
    }

    #[test]
    fn bad_schedule_entries_are_located_errors() {
        let e = parse("time-scale = 0\n").unwrap_err();
        assert!(e.contains("time-scale must be 1 or more"), "{e}");
        let e = parse("[[review]]\nat = \"30 minutes\"\nexpect = [\"health.up\"]\n").unwrap_err();
        assert!(e.contains("30 minutes"), "{e}");
        let e = parse("[[review]]\nat = \"30m\"\nexpect = [\"helth.up\"]\n").unwrap_err();
        assert!(e.contains("no probe named \"helth\""), "{e}");
        let e =
            parse("[decision]\nmatrix = [{ severity = \"huge\", share = \"most\", then = \"panic\" }]\n").unwrap_err();
        assert!(
            e.contains("unknown severity") && e.contains("not a share") && e.contains("unknown action"),
            "{e}"
        );
    }
}
