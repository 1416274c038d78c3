//! Which steps a rollback runs: the level (full, one phase with one of its
//! options, one component), its target time, and what the plan estimates.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::{Check, Plan, Step};

/// The level of a rollback, as recorded in the operation log (so `--resume`
/// rebuilds exactly the same steps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "level", rename_all = "snake_case")]
pub enum Selection {
    /// Level 1: the plan's `[rollback] steps`.
    Full,
    /// Level 2: one phase, with one of its named options.
    Phase { phase: String, option: String },
    /// Level 3: one component.
    Component { component: String },
}

/// A selection resolved against the plan.
#[derive(Debug, Clone)]
pub struct Selected {
    pub selection: Selection,
    /// "full", "phase ticker (B: full revert)", "component mexc".
    pub label: String,
    pub steps: Vec<Step>,
    /// The level's target time, when the plan sets one.
    pub target: Option<Duration>,
    /// The option's own estimate, when it has one.
    pub estimate: Option<Duration>,
    /// The level's own checks (`[rollback] verify`, the option's or the
    /// component's `verify`), run before the plan's `[verify]` checks.
    pub checks: Vec<Check>,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no phase named {name:?} in the plan\n  = hint: phases: {known}")]
    UnknownPhase { name: String, known: String },
    #[error("phase {phase:?} has no option named {name:?}\n  = hint: its options: {known}")]
    UnknownOption { phase: String, name: String, known: String },
    #[error(
        "phase {phase:?} has no rollback options\n  = hint: add rollback = [{{ name = \"revert\", steps = [...], default = true }}] to the phase"
    )]
    NoOptions { phase: String },
    #[error("no component named {name:?} in the plan\n  = hint: components: {known}")]
    UnknownComponent { name: String, known: String },
    #[error("--option chooses among a phase's rollback options: pass --phase NAME with it")]
    OptionWithoutPhase,
    #[error("the {label} rollback has no steps\n  = hint: add [rollback] steps = [...] to the plan")]
    NoSteps { label: String },
}

fn known(names: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = names.collect();
    if v.is_empty() { "(none)".into() } else { v.join(", ") }
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub phase: Option<String>,
    pub option: Option<String>,
    pub component: Option<String>,
}

/// Resolves a request (or a recorded selection) against the plan.
pub fn select(plan: &Plan, req: &Request) -> Result<Selected, SelectError> {
    let sel = if let Some(phase) = &req.phase {
        let p = plan.phase(phase).ok_or_else(|| SelectError::UnknownPhase {
            name: phase.clone(),
            known: known(plan.phases.iter().map(|p| p.name.clone())),
        })?;
        let option = match &req.option {
            Some(o) => p.option(o).ok_or_else(|| SelectError::UnknownOption {
                phase: phase.clone(),
                name: o.clone(),
                known: known(p.options.iter().map(|o| format!("{:?}", o.name))),
            })?,
            None => p
                .default()
                .ok_or_else(|| SelectError::NoOptions { phase: phase.clone() })?,
        };
        Selection::Phase {
            phase: phase.clone(),
            option: option.name.clone(),
        }
    } else if req.option.is_some() {
        return Err(SelectError::OptionWithoutPhase);
    } else if let Some(c) = &req.component {
        Selection::Component { component: c.clone() }
    } else {
        Selection::Full
    };
    resolve(plan, &sel)
}

/// The steps of a recorded selection, as the plan defines them now.
pub fn resolve(plan: &Plan, sel: &Selection) -> Result<Selected, SelectError> {
    let selected = match sel {
        Selection::Full => Selected {
            selection: sel.clone(),
            label: "full".into(),
            steps: plan.rollback.clone(),
            target: plan.rollback_target,
            estimate: None,
            checks: plan.rollback_verify.clone(),
        },
        Selection::Phase { phase, option } => {
            let p = plan.phase(phase).ok_or_else(|| SelectError::UnknownPhase {
                name: phase.clone(),
                known: known(plan.phases.iter().map(|p| p.name.clone())),
            })?;
            let o = p.option(option).ok_or_else(|| SelectError::UnknownOption {
                phase: phase.clone(),
                name: option.clone(),
                known: known(p.options.iter().map(|o| format!("{:?}", o.name))),
            })?;
            Selected {
                selection: sel.clone(),
                label: format!("phase {phase} ({option})"),
                steps: o.steps.clone(),
                target: p.target,
                estimate: o.estimate,
                checks: o.verify.clone(),
            }
        }
        Selection::Component { component } => {
            let c = plan.component(component).ok_or_else(|| SelectError::UnknownComponent {
                name: component.clone(),
                known: known(plan.components.iter().map(|c| c.name.clone())),
            })?;
            Selected {
                selection: sel.clone(),
                label: format!("component {component}"),
                steps: c.steps.clone(),
                target: c.target,
                estimate: None,
                checks: c.verify.clone(),
            }
        }
    };
    if selected.steps.is_empty() {
        return Err(SelectError::NoSteps { label: selected.label });
    }
    Ok(selected)
}

/// The level's own checks of a recorded selection (none when the plan no
/// longer has it).
pub fn level_checks(plan: &Plan, sel: &Selection) -> Vec<Check> {
    resolve(plan, sel).map(|s| s.checks).unwrap_or_default()
}

impl Selected {
    /// The longest the steps can take: the sum of their timeouts (a `run` step
    /// with retries counts every attempt and the delays between them).
    /// Saturates: each duration of a plan is bounded, their sums are not.
    pub fn worst_case(&self) -> Duration {
        self.steps
            .iter()
            .map(|s| match &s.kind {
                crate::plan::StepKind::Run {
                    retries, retry_delay, ..
                } => s
                    .timeout
                    .saturating_mul(retries.saturating_add(1))
                    .saturating_add(retry_delay.saturating_mul(*retries)),
                _ => s.timeout,
            })
            .fold(Duration::ZERO, Duration::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(steps: &str) -> Plan {
        let src = format!("[plan]\nname = \"x\"\nrto = \"5m\"\n[rollback]\nsteps = [{steps}]\n");
        Plan::parse(
            std::path::Path::new("backout.toml"),
            &src,
            &crate::context::Env::default(),
        )
        .unwrap()
    }

    /// A retry delay falls between attempts: none without retries.
    #[test]
    fn the_worst_case_counts_every_attempt_and_the_delays_between_them() {
        let full = |steps| select(&plan(steps), &Request::default()).unwrap().worst_case();
        assert_eq!(full("{ run = \"true\", timeout = \"10s\" }"), Duration::from_secs(10));
        assert_eq!(
            full(
                "{ run = \"true\", timeout = \"10s\", retries = 2, retry-delay = \"5s\" }, { run = \"true\", timeout = \"1s\" }"
            ),
            Duration::from_secs(30 + 10 + 1)
        );
    }

    /// The longest steps a plan may hold (100 years, 100 retries 100 years
    /// apart): a worst case, not an overflow.
    #[test]
    fn the_worst_case_of_the_longest_steps_allowed() {
        let long = "{ run = \"true\", timeout = \"876000h\", retries = 100, retry-delay = \"876000h\" }";
        let w = select(&plan(&[long; 4].join(", ")), &Request::default())
            .unwrap()
            .worst_case();
        assert_eq!(w, crate::plan::units::MAX_DURATION * 201 * 4);
    }
}

/// A phase applied after another and not rolled back since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaterPhase {
    pub phase: String,
    /// The checkpoint `run` took before applying it.
    pub checkpoint: String,
}

/// The phases applied after the checkpoint `cp` (the one taken
/// before `phase`) that no rollback has taken back since (neither one of that
/// phase nor a full one to a checkpoint before it), oldest first. Their changes
/// may assume the phase's, so rolling back `phase` alone can leave them broken.
pub fn phases_applied_after(
    oplog: &crate::oplog::Oplog,
    phase: &str,
    cp: &crate::oplog::CheckpointRow,
) -> Result<Vec<LaterPhase>, crate::oplog::OplogError> {
    let mut later: Vec<crate::oplog::CheckpointRow> = Vec::new();
    for c in oplog.checkpoints()? {
        // Taken before a phase: by `backout run`, or `checkpoint --phase` by hand.
        match &c.phase {
            Some(q) if c.id > cp.id && c.complete && q != phase => {
                // A phase applied again counts from its latest checkpoint.
                later.retain(|o| o.phase != c.phase);
                later.push(c);
            }
            _ => {}
        }
    }
    let rollbacks: Vec<(i64, Selection, i64)> = oplog
        .operations(Some("rollback"), usize::MAX)?
        .into_iter()
        .filter(|o| o.ended_at.is_some() && o.outcome.as_deref() != Some("abandoned"))
        .filter_map(|o| {
            let sel = serde_json::from_value(o.args.get("selection")?.clone()).ok()?;
            Some((o.started_at, sel, o.args.get("checkpoint_id")?.as_i64()?))
        })
        .collect();
    later.retain(|c| {
        !rollbacks.iter().any(|(at, sel, to)| {
            *at >= c.created_at
                && *to <= c.id
                && match sel {
                    Selection::Full => true,
                    Selection::Phase { phase, .. } => Some(phase) == c.phase.as_ref(),
                    Selection::Component { .. } => false,
                }
        })
    });
    Ok(later
        .into_iter()
        .map(|c| LaterPhase {
            phase: c.phase.unwrap_or_default(),
            checkpoint: crate::resource::checkpoint_name(c.id),
        })
        .collect())
}
