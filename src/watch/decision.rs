//! The decision matrix applied to a round of verdicts: rules with a severity
//! have their action picked by severity × the share of the plan's probes
//! affected, as seed 004 decides ("multiple endpoints failing (>25%)" is a
//! rollback, "single endpoint failures" are not), and when no row matches, the
//! plan's `otherwise` ("if in doubt, roll back").

use std::collections::{BTreeSet, HashMap};

use super::verdict::{Outcome, Verdict};
use crate::plan::{Action, Decision, Rule, Severity, Share};

/// Rewrites the outcome of every tripped rule that has a severity. `since`
/// remembers when each rule's decided action was first called for, for rows
/// with a `within` delay.
pub fn apply(
    decision: &Decision,
    rules: &[Rule],
    total_probes: usize,
    verdicts: &mut [Verdict],
    since: &mut HashMap<String, i64>,
    now: i64,
) {
    let tripped = |v: &Verdict| matches!(v.outcome, Outcome::Rollback | Outcome::Investigate) && v.value.is_some();
    let severity_of: HashMap<&str, Severity> = rules
        .iter()
        .filter_map(|r| Some((r.name.as_str(), r.severity?)))
        .collect();
    // The share is of the decision's probes when it names them, else of all.
    let counted = |probe: &str| decision.probes.is_empty() || decision.probes.iter().any(|p| p == probe);
    let total_probes = if decision.probes.is_empty() {
        total_probes
    } else {
        decision.probes.len()
    };
    // Probes affected at each severity or worse.
    let affected = |s: Severity| -> usize {
        verdicts
            .iter()
            .filter(|v| tripped(v) && counted(&v.probe) && severity_of.get(v.rule.as_str()).is_some_and(|x| *x >= s))
            .map(|v| v.probe.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    };
    let counts: HashMap<Severity, usize> = [Severity::Critical, Severity::Major, Severity::Minor]
        .into_iter()
        .map(|s| (s, affected(s)))
        .collect();
    for v in verdicts.iter_mut() {
        let Some(sev) = severity_of.get(v.rule.as_str()).copied() else {
            continue;
        };
        if !tripped(v) {
            since.remove(&v.rule);
            continue;
        }
        let n = counts[&sev];
        let row = decision
            .matrix
            .iter()
            // `any` holds for this rule's own trip, even on a probe the share
            // is not counted over (a log probe beside the endpoints).
            .find(|r| r.severity == sev && (r.share == Share::Any || r.share.matches(n, total_probes)));
        let (action, within, why) = match row {
            Some(r) => (r.action, r.within, format!("{} × {} of probes", sev.name(), r.share)),
            None => (
                decision.otherwise,
                std::time::Duration::ZERO,
                format!("{}: no matrix row matches, so the plan's otherwise", sev.name()),
            ),
        };
        let first = *since.entry(v.rule.clone()).or_insert(now);
        let waited = now - first;
        let due = waited >= crate::context::millis(within);
        v.outcome = match (action, due) {
            (Action::Rollback, true) => Outcome::Rollback,
            _ => Outcome::Investigate,
        };
        let word = if v.outcome == Outcome::Rollback {
            "ROLLBACK"
        } else {
            "INVESTIGATE"
        };
        // The rule's own word is replaced by the matrix's.
        let rest = v
            .explanation
            .split_once(": ")
            .and_then(|(_, r)| r.split_once(": "))
            .map_or(v.explanation.clone(), |(_, r)| r.to_string());
        let pending = if action == Action::Rollback && !due {
            format!(
                "; rollback in {} unless it clears",
                crate::plan::units::format_duration(
                    within.saturating_sub(std::time::Duration::from_millis(waited as u64))
                )
            )
        } else {
            String::new()
        };
        v.explanation = format!(
            "{}: {word}: {rest} [{why}: {n} of {total_probes} affected{pending}]",
            v.rule
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::verdict::Evaluator;
    use super::*;
    use crate::context::Env;
    use crate::oplog::SampleRow;
    use crate::plan::Plan;
    use std::path::Path;

    fn plan(extra: &str) -> Plan {
        let mut src = String::from("[plan]\nname = \"t\"\nrto = \"1m\"\n");
        for p in ["a", "b", "c", "d"] {
            src.push_str(&format!(
                "[[probe]]\nname = \"{p}\"\nevery = \"1s\"\ntimeout = \"1s\"\nhttp = {{ url = \"http://127.0.0.1:1/{p}\" }}\n[[rule]]\nname = \"{p}-down\"\nwhen = \"{p}.consecutive_failures >= 1\"\nseverity = \"major\"\n"
            ));
        }
        src.push_str("[[rule]]\nname = \"a-crash\"\nwhen = \"a.status == 503\"\nseverity = \"critical\"\n");
        src.push_str(extra);
        Plan::parse(Path::new("/p/backout.toml"), &src, &Env::default()).unwrap()
    }

    fn s(probe: &str, at: i64, status: u16) -> SampleRow {
        SampleRow {
            probe: probe.into(),
            at,
            ok: status == 200,
            status: Some(status),
            ..Default::default()
        }
    }

    fn outcome(vs: &[Verdict], rule: &str) -> Outcome {
        vs.iter().find(|v| v.rule == rule).unwrap().outcome
    }

    #[test]
    fn one_endpoint_failing_is_investigated_more_than_a_quarter_rolls_back() {
        let p = plan("");
        let mut e = Evaluator::new(&p, HashMap::new());
        for x in ["a", "b", "c", "d"] {
            e.push(s(x, 0, 200));
        }
        e.push(s("a", 1000, 500));
        let vs = e.evaluate(1000);
        assert_eq!(outcome(&vs, "a-down"), Outcome::Investigate);
        let v = vs.iter().find(|v| v.rule == "a-down").unwrap();
        assert!(
            v.explanation.contains("[major × any of probes: 1 of 4 affected]"),
            "{}",
            v.explanation
        );
        e.push(s("b", 1000, 500));
        let vs = e.evaluate(1000);
        assert_eq!(outcome(&vs, "a-down"), Outcome::Rollback, "2 of 4 is more than 25%");
        assert_eq!(outcome(&vs, "b-down"), Outcome::Rollback);
        assert_eq!(outcome(&vs, "c-down"), Outcome::Pass);
    }

    #[test]
    fn critical_rolls_back_at_once_and_unmatched_falls_to_otherwise() {
        let p = plan("");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s("a", 0, 503));
        let vs = e.evaluate(0);
        assert_eq!(outcome(&vs, "a-crash"), Outcome::Rollback);

        // A matrix that only knows critical: a major issue is "in doubt".
        let p = plan("[decision]\nmatrix = [{ severity = \"critical\", then = \"rollback\" }]\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s("b", 0, 500));
        let vs = e.evaluate(0);
        assert_eq!(outcome(&vs, "b-down"), Outcome::Rollback);
        assert!(vs.iter().any(|v| v.explanation.contains("no matrix row matches")));
    }

    #[test]
    fn the_share_counts_only_the_decisions_probes() {
        // Seed 004's "share of endpoints": a, b and c are endpoints, d a log.
        let p = plan("[decision]\nprobes = [\"a\", \"b\", \"c\"]\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s("d", 0, 500));
        let vs = e.evaluate(0);
        assert_eq!(
            outcome(&vs, "d-down"),
            Outcome::Investigate,
            "not an endpoint; major × any"
        );
        let v = vs.iter().find(|v| v.rule == "d-down").unwrap();
        assert!(v.explanation.contains("0 of 3 affected"), "{}", v.explanation);
        e.push(s("a", 0, 500));
        let vs = e.evaluate(0);
        assert_eq!(
            outcome(&vs, "a-down"),
            Outcome::Rollback,
            "1 of 3 endpoints is above 25%"
        );
        // Over all four probes, the same two failures are 2 of 4 — and with d
        // healthy, 1 of 4 is not above 25%.
        let p = plan("");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s("a", 0, 500));
        assert_eq!(outcome(&e.evaluate(0), "a-down"), Outcome::Investigate);
    }

    #[test]
    fn decision_probes_must_exist() {
        let src = "[plan]\nname = \"t\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"1s\"\ntimeout = \"1s\"\nhttp = { url = \"http://127.0.0.1:1/\" }\n[decision]\nprobes = [\"api\", \"apx\"]\n";
        let e = Plan::parse(Path::new("/p/backout.toml"), src, &Env::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no probe named \"apx\"") && e.contains("backout.toml:10:18"),
            "{e}"
        );
    }

    #[test]
    fn within_delays_the_action_until_the_situation_lasts() {
        let p = plan("[decision]\nmatrix = [{ severity = \"major\", then = \"rollback\", within = \"5m\" }]\n");
        let mut e = Evaluator::new(&p, HashMap::new());
        e.push(s("b", 0, 500));
        let v = e.evaluate(0).into_iter().find(|v| v.rule == "b-down").unwrap();
        assert_eq!(v.outcome, Outcome::Investigate);
        assert!(
            v.explanation.contains("rollback in 5m unless it clears"),
            "{}",
            v.explanation
        );
        e.push(s("b", 299_000, 500));
        assert_eq!(outcome(&e.evaluate(299_000), "b-down"), Outcome::Investigate);
        e.push(s("b", 300_000, 500));
        assert_eq!(outcome(&e.evaluate(300_000), "b-down"), Outcome::Rollback);
    }
}
