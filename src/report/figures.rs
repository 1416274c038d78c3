//! The figures of an incident — time to detect, time to recover, the
//! objectives — computed once, for the Markdown and HTML reports and for the
//! console (`watch`, `deploy`, `rollback`, the demo), so they never disagree.
//!
//! With a deploy marker every figure counts from the deploy: the outage a
//! bad deploy causes begins then, whether or not a probe sampled it. Without
//! one (a rollback by hand, an older report) detection counts from the first
//! bad sample and recovery from the verdict. "met" is only ever said of a
//! recovery that happened and was verified.

use super::{Incident, ms};

/// One figure: what is measured, between which moments, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// `time to detect`, `recovery-time objective`, ...
    pub name: String,
    /// `deploy → verdict`; empty when the name says it all.
    pub span: String,
    /// `3.1s`, `30s (met)`, `not recovered (rollback FAILED)`.
    pub value: String,
}

impl Incident {
    /// Whether the system is back: the rollback ran, a probe saw it healthy,
    /// and every verification check passed.
    pub fn recovered(&self) -> bool {
        self.verified() && self.rollback.healthy_at.is_some()
    }

    /// From the deploy (else the first bad sample) to the verdict.
    pub fn time_to_detect_ms(&self) -> Option<i64> {
        let from = self.deploy_at.or(self.first_bad_at)?;
        Some(self.verdict_at - from)
    }

    /// From the deploy (else the verdict) to healthy again; `None` unless recovered.
    pub fn time_to_recover_ms(&self) -> Option<i64> {
        let healthy = self.rollback.healthy_at.filter(|_| self.recovered())?;
        Some(healthy - self.deploy_at.unwrap_or(self.verdict_at))
    }

    /// From the verdict to healthy again: the rollback's part of the recovery.
    pub fn rollback_to_healthy_ms(&self) -> Option<i64> {
        let healthy = self.rollback.healthy_at.filter(|_| self.recovered())?;
        Some(healthy - self.verdict_at)
    }

    /// Whether recovery met the objective: `None` without an objective, or
    /// when the system did not recover.
    pub fn within_rto(&self) -> Option<bool> {
        Some(self.time_to_recover_ms()? as u64 <= self.rto_ms?)
    }

    /// Why the system is not recovered, for "not recovered (...)".
    fn not_recovered_why(&self) -> &'static str {
        if !self.rollback.ok {
            "rollback FAILED"
        } else if !self.verified() {
            "verification FAILED"
        } else {
            "never seen healthy"
        }
    }

    /// The objective's value: `5m (met)`, `5m (MISSED)`, `5m (not recovered: ...)`.
    pub fn rto_text(&self) -> Option<String> {
        let rto = ms(self.rto_ms? as i64);
        Some(match self.within_rto() {
            Some(true) => format!("{rto} (met)"),
            Some(false) => format!("{rto} (MISSED)"),
            None => format!("{rto} (not recovered: {})", self.not_recovered_why()),
        })
    }

    /// The level target's value: met or missed only for a recovery; a failed
    /// rollback did not reach its target at all, and one whose checks failed
    /// only took its time.
    pub fn level_target_text(&self) -> Option<String> {
        let t = &self.rollback.timing;
        let target = ms(t.target_ms? as i64);
        let took = ms(t.total_ms as i64);
        Some(match (self.rollback.ok, self.recovered(), t.within_target) {
            (false, _, _) => format!("{target} (not reached: the rollback FAILED after {took})"),
            (true, false, _) => format!(
                "{target} (not recovered: {}; the rollback took {took})",
                self.not_recovered_why()
            ),
            (true, true, Some(true)) => format!("{target} (met: the rollback took {took})"),
            (true, true, _) => format!("{target} (MISSED: the rollback took {took})"),
        })
    }

    /// The header of the timeline's offsets.
    pub fn since(&self) -> &'static str {
        if self.deploy_at.is_some() {
            "since deploy"
        } else if self.first_bad_at.is_some() {
            "since first bad sample"
        } else {
            "since verdict"
        }
    }
}

/// Every figure of `i`, in the order people read them.
pub fn figures(i: &Incident) -> Vec<Figure> {
    let fig = |name: &str, span: &str, value: String| Figure {
        name: name.into(),
        span: span.into(),
        value,
    };
    let mut out = Vec::new();
    let deployed = i.deploy_at.is_some();
    if let Some(t) = i.time_to_detect_ms() {
        let span = if deployed {
            "deploy → verdict"
        } else {
            "first bad sample → verdict"
        };
        out.push(fig("time to detect", span, ms(t)));
    }
    if let (Some(d), Some(f)) = (i.deploy_at, i.first_bad_at) {
        out.push(fig("first bad sample", "", format!("{} after the deploy", ms(f - d))));
    }
    let span = if deployed {
        "deploy → healthy again"
    } else {
        "verdict → healthy again"
    };
    match i.time_to_recover_ms() {
        Some(t) => out.push(fig("time to recover", span, ms(t))),
        None => out.push(fig(
            "time to recover",
            "",
            format!("not recovered ({})", i.not_recovered_why()),
        )),
    }
    if deployed && let Some(t) = i.rollback_to_healthy_ms() {
        out.push(fig("rollback", "verdict → healthy again", ms(t)));
    }
    if !deployed && let (Some(f), Some(h)) = (i.first_bad_at, i.rollback.healthy_at.filter(|_| i.recovered())) {
        out.push(fig("impact", "first bad sample → healthy again", ms(h - f)));
    }
    if let Some(v) = i.rto_text() {
        out.push(fig("recovery-time objective", "", v));
    }
    if let Some(v) = i.level_target_text() {
        out.push(fig(&format!("level target ({})", i.rollback.label), "", v));
    }
    out
}

/// What did not happen and why, one sentence each: the steps a failed step
/// left unrun, and verification that did not run. Empty when all ran.
pub fn not_run(i: &Incident) -> Vec<String> {
    let mut out = Vec::new();
    let failed = i.rollback.steps.iter().find(|s| !s.ok);
    if !i.rollback.not_run.is_empty() {
        let first = i.rollback.steps.len() + 1;
        let names: Vec<String> = i
            .rollback
            .not_run
            .iter()
            .enumerate()
            .map(|(n, s)| format!("{}. {s}", first + n))
            .collect();
        out.push(format!("steps not run: {}", names.join(", ")));
    }
    if i.verification.is_empty() {
        match failed {
            Some(f) if i.planned_checks > 0 => out.push(format!(
                "verification not run: the rollback failed at step {} ({}), so none of the plan's {} check(s) ran",
                f.seq, f.name, i.planned_checks
            )),
            Some(f) => out.push(format!(
                "verification not run: the rollback failed at step {} ({})",
                f.seq, f.name
            )),
            None if i.planned_checks == 0 => {
                out.push("no checks in the plan ([verify]): the recovery is not proven".into())
            }
            None => {}
        }
    }
    for (n, rb) in i.earlier_rollbacks.iter().enumerate() {
        let at = rb
            .steps
            .iter()
            .find(|s| !s.ok)
            .map_or(String::new(), |s| format!(" at step {} ({})", s.seq, s.name));
        out.push(format!(
            "attempt {} of this incident: rollback ({}) to {} FAILED{at}",
            n + 1,
            rb.label,
            rb.checkpoint
        ));
    }
    out
}

/// The figures as the console prints them, one line each:
/// `time to detect:  3.1s (deploy → verdict)`.
pub fn console_lines(i: &Incident) -> Vec<String> {
    let figs = figures(i);
    // Aligned on the usual names; a long level name does not push them all right.
    let width = figs.iter().map(|f| f.name.len()).max().unwrap_or(0).min(23) + 1;
    figs.iter()
        .map(|f| {
            let span = if f.span.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.span)
            };
            format!("{:<width$} {}{span}", format!("{}:", f.name), f.value)
        })
        .collect()
}

/// The timeline as the console prints it: `+3.1s     verdict: ...`.
pub fn timeline_lines(i: &Incident) -> Vec<String> {
    let start = i.deploy_at.or(i.first_bad_at).unwrap_or(i.verdict_at);
    i.timeline
        .iter()
        .map(|e| {
            let d = e.at - start;
            let off = format!("{}{}", if d < 0 { "-" } else { "+" }, ms(d.abs()));
            format!("{off:<9} {}", e.what)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An incident: deployed at `deploy`, first bad sample at 1_300, verdict
    /// at 2_000, healthy again at 2_500 (when the rollback went well).
    fn incident(deploy: Option<i64>, rollback_ok: bool, check_passed: bool) -> Incident {
        serde_json::from_value(serde_json::json!({
            "id": "inc-1", "plan": "p",
            "verdict": {
                "outcome": "rollback", "rule": "errors", "when": "api.error_rate > 5%", "probe": "api",
                "value": 0.5, "threshold": 0.05, "baseline": null, "window": "2s", "samples": 10,
                "failed_samples": 5, "first_sample_at": null, "last_sample_at": null, "explanation": "x",
            },
            "deploy_at": deploy, "first_bad_at": 1_300, "verdict_at": 2_000,
            "rollback": {
                "op": 3, "checkpoint": "cp-1", "selection": { "level": "full" }, "label": "full",
                "safety_checkpoint": "cp-2", "safety_checkpoint_ms": 5, "steps": [],
                "started_at": 2_000, "ended_at": 2_500,
                "healthy_at": if rollback_ok { Some(2_500) } else { None },
                "ok": rollback_ok, "resumed": false, "degraded": [], "abandoned": [],
                "timing": { "total_ms": 500, "safety_checkpoint_ms": 5, "rto_ms": 60_000, "target_ms": 10_000,
                            "within_rto": true, "within_target": true },
            },
            "verification": [{ "name": "api", "passed": check_passed, "evidence": "", "duration_ms": 1 }],
            "rto_ms": 60_000, "timeline": [],
        }))
        .unwrap()
    }

    fn value(i: &Incident, name: &str) -> String {
        figures(i)
            .into_iter()
            .find(|f| f.name.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {:?}", figures(i)))
            .value
    }

    #[test]
    fn with_a_deploy_every_figure_counts_from_it() {
        let i = incident(Some(1_000), true, true);
        assert_eq!(i.time_to_detect_ms(), Some(1_000));
        assert_eq!(i.time_to_recover_ms(), Some(1_500));
        assert_eq!(i.rollback_to_healthy_ms(), Some(500));
        assert_eq!(value(&i, "first bad sample"), "300ms after the deploy");
        assert_eq!(value(&i, "recovery-time objective"), "1m (met)");
        assert!(figures(&i).iter().all(|f| f.name != "impact"));
        assert_eq!(i.since(), "since deploy");
    }

    #[test]
    fn without_a_deploy_detection_counts_from_the_first_bad_sample() {
        let i = incident(None, true, true);
        assert_eq!(i.time_to_detect_ms(), Some(700));
        assert_eq!(i.time_to_recover_ms(), Some(500));
        assert_eq!(value(&i, "impact"), "1.2s");
        assert_eq!(i.since(), "since first bad sample");
    }

    /// The issue saw "RTO 5m: met" on the console beside "not recovered".
    #[test]
    fn met_is_never_said_of_a_recovery_that_did_not_happen() {
        for (ok, passed, why) in [(true, false, "verification FAILED"), (false, true, "rollback FAILED")] {
            let i = incident(Some(1_000), ok, passed);
            assert_eq!(i.within_rto(), None);
            assert_eq!(i.time_to_recover_ms(), None);
            assert_eq!(value(&i, "time to recover"), format!("not recovered ({why})"));
            assert_eq!(
                value(&i, "recovery-time objective"),
                format!("1m (not recovered: {why})")
            );
            for line in console_lines(&i) {
                assert!(!line.contains("met") || line.contains("not"), "{line}");
            }
        }
        let failed = incident(Some(1_000), false, true);
        assert_eq!(
            value(&failed, "level target"),
            "10s (not reached: the rollback FAILED after 500ms)"
        );
    }
}
