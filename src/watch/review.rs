//! Scheduled reviews (seed 003's checkpoints at +30m, +2h, +4h): at its offset
//! from the deploy, each review's expectations are read over their windows and
//! the review passes only if every one holds. Results go to the operation log
//! with the deploy time, so a resumed watch knows which reviews are done.

use std::collections::BTreeSet;

use serde::Serialize;

use super::verdict::Evaluator;
use crate::plan::{Action, Plan, Review, rule};

/// One review's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewResult {
    pub name: String,
    /// The review's offset from the deploy (after the plan's time scale).
    pub offset_ms: u64,
    pub deploy_at: i64,
    pub due_at: i64,
    pub evaluated_at: i64,
    pub passed: bool,
    /// What a failure calls for: `rollback` or `investigate`.
    pub action: Action,
    pub expectations: Vec<Expectation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expectation {
    pub text: String,
    /// `None`: not enough data to say, which fails the review.
    pub holds: Option<bool>,
    pub value: Option<f64>,
    pub explanation: String,
}

/// The reviews due at `now` that are not in `done`, earliest first.
pub fn due<'a>(plan: &'a Plan, deploy_at: i64, done: &BTreeSet<String>, now: i64) -> Vec<&'a Review> {
    plan.reviews
        .iter()
        .filter(|r| !done.contains(&r.name) && deploy_at.saturating_add(crate::context::millis(r.at)) <= now)
        .collect()
}

/// Reads every expectation of `review` now.
pub fn evaluate(review: &Review, eval: &Evaluator, deploy_at: i64, now: i64) -> ReviewResult {
    let expectations: Vec<Expectation> = review
        .expect
        .iter()
        .map(|c| {
            let r = eval.check(&c.condition, now);
            let field = c.condition.metric.field;
            let explanation = match (r.holds, r.value) {
                (Some(h), Some(v)) => format!(
                    "{}: {} is {}, expected {} {} over {} ({} samples)",
                    if h { "ok" } else { "FAILED" },
                    c.condition.metric,
                    rule::format_value(field, v),
                    c.condition.op.symbol(),
                    r.threshold.map_or("?".into(), |t| rule::format_value(field, t)),
                    super::describe_window(&c.condition),
                    r.samples
                ),
                _ => format!(
                    "UNKNOWN: {} ({})",
                    c.text,
                    r.missing.clone().unwrap_or_else(|| "no data".into())
                ),
            };
            Expectation {
                text: c.text.clone(),
                holds: r.holds,
                value: r.value,
                explanation,
            }
        })
        .collect();
    ReviewResult {
        name: review.name.clone(),
        offset_ms: review.at.as_millis() as u64,
        deploy_at,
        due_at: deploy_at.saturating_add(crate::context::millis(review.at)),
        evaluated_at: now,
        passed: expectations.iter().all(|e| e.holds == Some(true)),
        action: review.action,
        expectations,
    }
}

impl ReviewResult {
    /// One line for people.
    pub fn summary(&self) -> String {
        let failed: Vec<&str> = self
            .expectations
            .iter()
            .filter(|e| e.holds != Some(true))
            .map(|e| e.text.as_str())
            .collect();
        if self.passed {
            format!(
                "review {}: passed ({} expectation(s) held)",
                self.name,
                self.expectations.len()
            )
        } else {
            format!(
                "review {}: FAILED ({} of {}: {}) → {}",
                self.name,
                failed.len(),
                self.expectations.len(),
                failed.join("; "),
                match self.action {
                    Action::Rollback => "rollback",
                    Action::Investigate => "investigate",
                }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Clock, Env};
    use crate::oplog::SampleRow;
    use std::collections::HashMap;
    use std::path::Path;
    use std::time::Duration;

    fn plan() -> Plan {
        let src = r#"
[plan]
name = "t"
rto = "1m"
[[probe]]
name = "health"
every = "1m"
timeout = "2s"
http = { url = "http://127.0.0.1:1/" }
[[probe]]
name = "errors"
every = "1m"
timeout = "2s"
log = { path = "app.log", pattern = "ERROR" }
[[review]]
at = "30m"
expect = ["health.up", "errors.count == 0 over 30m"]
[[review]]
at = "2h"
expect = ["health.up"]
then = "rollback"
"#;
        Plan::parse(Path::new("/p/backout.toml"), src, &Env::default()).unwrap()
    }

    fn sample(probe: &str, at: i64, ok: bool, count: Option<f64>) -> SampleRow {
        SampleRow {
            probe: probe.into(),
            at,
            ok,
            fields: count.map(|c| [("count".to_string(), c)].into()).unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Two hours of a watch on a fixed clock, a minute at a time: no sleeping.
    #[test]
    fn reviews_fall_due_on_the_clock_and_judge_their_windows() {
        let plan = plan();
        let clock = Clock::fixed(jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let deploy = clock.now_ms();
        let mut eval = Evaluator::new(&plan, HashMap::new());
        let mut done = BTreeSet::new();
        let mut results = Vec::new();
        for minute in 1..=120 {
            clock.advance(Duration::from_secs(60));
            let now = clock.now_ms();
            eval.push(sample("health", now, true, None));
            // One error at minute 40: after the first review's window, inside the second's.
            eval.push(sample("errors", now, true, Some(if minute == 40 { 1.0 } else { 0.0 })));
            for r in due(&plan, deploy, &done, now) {
                let res = evaluate(r, &eval, deploy, now);
                done.insert(res.name.clone());
                results.push((minute, res));
            }
        }
        assert_eq!(results.len(), 2);
        let (at, first) = &results[0];
        assert_eq!(*at, 30);
        assert!(first.passed, "{first:?}");
        assert_eq!(first.due_at, deploy + 30 * 60_000);
        assert!(
            first.expectations[1].explanation.contains("errors.count is 0"),
            "{first:?}"
        );
        let (at, second) = &results[1];
        assert_eq!(*at, 120);
        assert!(second.passed);
        assert!(
            due(&plan, deploy, &done, clock.now_ms()).is_empty(),
            "each review runs once"
        );
    }

    #[test]
    fn a_failed_or_unknown_expectation_fails_the_review() {
        let plan = plan();
        let mut eval = Evaluator::new(&plan, HashMap::new());
        let r = evaluate(&plan.reviews[0], &eval, 0, 1_800_000);
        assert!(!r.passed);
        assert!(r.expectations[0].explanation.starts_with("UNKNOWN"), "{r:?}");
        eval.push(sample("health", 1_700_000, true, None));
        eval.push(sample("errors", 1_700_000, true, Some(3.0)));
        let r = evaluate(&plan.reviews[0], &eval, 0, 1_800_000);
        assert!(!r.passed);
        assert_eq!(r.expectations[0].holds, Some(true));
        assert!(
            r.summary()
                .contains("FAILED (1 of 2: errors.count == 0 over 30m) → investigate"),
            "{}",
            r.summary()
        );
    }
}
