//! Validation of `[[phase]]` (apply steps, verify checks, named rollback options
//! with time, risk and one default) and `[[component]]` (a named set of paths and
//! services, the unit of a level-3 rollback).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::raw::{self, S};
use super::{Check, Service, ServiceAction, Step, StepKind, Validator};

/// One stage of a change.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub description: Option<String>,
    pub apply: Vec<Step>,
    pub verify: Vec<Check>,
    pub options: Vec<RollbackOption>,
    /// Index into `options` of the one used when none is named.
    pub default_option: usize,
    /// Level 2 target.
    pub target: Option<Duration>,
}

impl Phase {
    pub fn option(&self, name: &str) -> Option<&RollbackOption> {
        self.options.iter().find(|o| o.name == name)
    }

    pub fn default(&self) -> Option<&RollbackOption> {
        self.options.get(self.default_option)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// One named way to roll a phase back.
#[derive(Debug, Clone)]
pub struct RollbackOption {
    pub name: String,
    pub description: Option<String>,
    pub estimate: Option<Duration>,
    pub risk: Option<Risk>,
    pub steps: Vec<Step>,
}

/// A named part of the system rolled back on its own.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub paths: Vec<String>,
    pub services: Vec<String>,
    pub steps: Vec<Step>,
    /// Level 3 target.
    pub target: Option<Duration>,
}

impl Validator<'_> {
    pub(super) fn phases(
        &mut self,
        raw: &[S<raw::RawPhase>],
        probes: &BTreeSet<String>,
        services: &BTreeSet<String>,
    ) -> Vec<Phase> {
        let mut names = BTreeSet::new();
        raw.iter()
            .map(|p| self.phase(p, &mut names, probes, services))
            .collect()
    }

    fn phase(
        &mut self,
        p: &S<raw::RawPhase>,
        names: &mut BTreeSet<String>,
        probes: &BTreeSet<String>,
        services: &BTreeSet<String>,
    ) -> Phase {
        let r = p.get_ref();
        let name = self.name(&r.name, "phase", names);
        let apply = r.apply.iter().filter_map(|s| self.step(s, probes, services)).collect();
        let verify = r.verify.iter().filter_map(|c| self.check(c, probes)).collect();
        let mut option_names = BTreeSet::new();
        let mut options = Vec::new();
        let mut defaults = Vec::new();
        for o in &r.rollback {
            let ro = o.get_ref();
            let oname = ro.name.get_ref().clone();
            if oname.trim().is_empty() {
                self.error(ro.name.span(), "an option needs a name", "name = \"A: direct fix\"");
            } else if !option_names.insert(oname.clone()) {
                self.error(
                    ro.name.span(),
                    format!("phase {name:?} already has an option named {oname:?}"),
                    "give each option its own name",
                );
            }
            if ro.default.as_ref().is_some_and(|d| *d.get_ref()) {
                defaults.push((options.len(), o.span()));
            }
            let risk = ro.risk.as_ref().and_then(|k| match k.get_ref().as_str() {
                "low" => Some(Risk::Low),
                "medium" => Some(Risk::Medium),
                "high" => Some(Risk::High),
                other => {
                    self.error(
                        k.span(),
                        format!("unknown risk {other:?}"),
                        "risk = \"low\", \"medium\" or \"high\"",
                    );
                    None
                }
            });
            if ro.steps.is_empty() {
                self.error(
                    ro.name.span(),
                    format!("option {oname:?} has no steps"),
                    "steps = [{ git = \"revert\" }, { service = \"all\", action = \"restart\" }]",
                );
            }
            options.push(RollbackOption {
                name: oname,
                description: ro.description.as_ref().map(|d| d.get_ref().clone()),
                estimate: ro.time.as_ref().and_then(|t| self.duration(t)),
                risk,
                steps: ro.steps.iter().filter_map(|s| self.step(s, probes, services)).collect(),
            });
        }
        if defaults.len() > 1 {
            self.error(
                defaults[1].1.clone(),
                format!("phase {name:?} has more than one default option"),
                "mark exactly one option default = true",
            );
        }
        if options.len() > 1 && defaults.is_empty() {
            self.error(
                r.name.span(),
                format!(
                    "phase {name:?} has {} rollback options and none is the default",
                    options.len()
                ),
                "mark the one `backout run` uses on a failed verify with default = true",
            );
        }
        if options.is_empty() {
            self.warn(
                &r.name.span(),
                format!("phase {name:?} has no rollback option: a failed verify can only stop"),
            );
        }
        Phase {
            name,
            description: r.description.as_ref().map(|d| d.get_ref().clone()),
            apply,
            verify,
            options,
            default_option: defaults.first().map_or(0, |d| d.0),
            target: r.target.as_ref().and_then(|t| self.duration(t)),
        }
    }

    pub(super) fn components(
        &mut self,
        raw: &[S<raw::RawComponent>],
        probes: &BTreeSet<String>,
        service_names: &BTreeSet<String>,
        services: &[Service],
    ) -> Vec<Component> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for c in raw {
            let r = c.get_ref();
            let name = self.name(&r.name, "component", &mut names);
            if r.paths.is_empty() && r.services.is_empty() && r.steps.is_none() {
                self.error(
                    r.name.span(),
                    format!("component {name:?} names no paths, services or steps"),
                    "paths = [\"src/exchanges/mexc/\"], services = [\"api\"]",
                );
            }
            let mut paths = Vec::new();
            for p in &r.paths {
                let v = p.get_ref();
                if v.starts_with('/') || v.split('/').any(|c| c == "..") || v.is_empty() {
                    self.error(
                        p.span(),
                        format!("component path {v:?} leaves the project"),
                        "paths are relative to the directory holding backout.toml, without ..",
                    );
                }
                paths.push(v.clone());
            }
            for s in &r.services {
                self.service_ref(s, service_names);
            }
            let svc: Vec<String> = r.services.iter().map(|s| s.get_ref().clone()).collect();
            let steps = match &r.steps {
                Some(steps) => steps
                    .iter()
                    .filter_map(|s| self.step(s, probes, service_names))
                    .collect(),
                None => default_component_steps(&paths, &svc, services),
            };
            out.push(Component {
                name,
                paths,
                services: svc,
                steps,
                target: r.target.as_ref().and_then(|t| self.duration(t)),
            });
        }
        out
    }
}

/// Without explicit steps a component rolls back by restoring its paths as the
/// checkpoint captured them, restarting its services and waiting for them.
fn default_component_steps(paths: &[String], names: &[String], services: &[Service]) -> Vec<Step> {
    let mut steps = Vec::new();
    if !paths.is_empty() {
        steps.push(Step {
            name: format!("restore {} from checkpoint", paths.join(", ")),
            kind: StepKind::RestorePaths {
                paths: paths.to_vec(),
                rev: None,
            },
            timeout: Duration::from_secs(60),
        });
    }
    for n in names {
        steps.push(Step {
            name: format!("restart {n}"),
            kind: StepKind::Service {
                service: Some(n.clone()),
                action: ServiceAction::Restart,
            },
            timeout: Duration::from_secs(120),
        });
        if let Some(ready) = services.iter().find(|s| s.name == *n).and_then(|s| s.ready.clone()) {
            let timeout = services
                .iter()
                .find(|s| s.name == *n)
                .map_or(Duration::from_secs(30), |s| s.ready_timeout);
            steps.push(Step {
                name: format!("wait for {ready}"),
                kind: StepKind::Wait { probe: ready },
                timeout,
            });
        }
    }
    steps
}
