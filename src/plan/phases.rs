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
    /// Checks proper to this option, run before the plan's `[verify]` checks.
    pub verify: Vec<Check>,
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
    /// Checks proper to this component's rollback, run before `[verify]`'s.
    pub verify: Vec<Check>,
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
            if let Some(d) = &ro.default
                && *d.get_ref()
            {
                defaults.push((options.len(), d.span()));
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
                verify: ro.verify.iter().filter_map(|c| self.check(c, probes)).collect(),
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
                verify: r.verify.iter().filter_map(|c| self.check(c, probes)).collect(),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::context::Env;
    use crate::plan::{Plan, PlanErrors, ServiceAction, ServiceControl, ServiceKind, StepKind};

    fn parse(src: &str) -> Result<Plan, PlanErrors> {
        Plan::parse(Path::new("backout.toml"), src, &Env::from_pairs([("TOKEN", "t")]))
    }

    fn errors(src: &str) -> String {
        parse(src).expect_err("the plan must be rejected").to_string()
    }

    const SEED: &str = r#"
[plan]
name = "market-data"
rto = "5m"
[capture]
git = true

[[service]]
name = "ticker-metadata"
kind = "compose"
project-dir = "deploy"
compose-file = "docker-compose.prod.yml"
[[service]]
name = "gateway"
kind = "systemd"
unit = "api-gateway.service"
[[service]]
name = "worker"
kind = "command"
start = "supervisorctl start worker"
stop = "supervisorctl stop worker"
status = "supervisorctl status worker"

[rollback]
target = "5m"
steps = [{ git = "reset", to = "checkpoint" }, { service = "all", action = "restart" }]

[[phase]]
name = "ticker-metadata-service"
target = "15m"
apply = [{ service = "ticker-metadata", action = "rebuild" }]
verify = [{ http = "http://127.0.0.1:8000/api/v1/ticker/AAPL/metadata", status = 200 }]
rollback = [
  { name = "A: direct fix", description = "one line", time = "30s", risk = "low", steps = [{ run = "sed -i s/x/y/ app.py" }] },
  { name = "B: full revert", time = "2m", risk = "high", default = true, steps = [{ git = "revert" }, { git = "push", remote = "origin", refspec = "main" }] },
  { name = "C: degraded", risk = "medium", steps = [{ degraded = ["ticker-metadata"] }] },
]

[[component]]
name = "mexc"
paths = ["src/exchanges/integrations/mexc/"]
services = ["worker"]
target = "30m"
"#;

    #[test]
    fn a_seed_style_plan_with_phases_options_components_and_services_validates() {
        let plan = parse(SEED).unwrap();
        assert_eq!(plan.rollback_target, Some(std::time::Duration::from_secs(300)));
        let phase = plan.phase("ticker-metadata-service").unwrap();
        assert_eq!(phase.options.len(), 3);
        assert_eq!(phase.default().unwrap().name, "B: full revert");
        assert_eq!(phase.option("A: direct fix").unwrap().risk, Some(super::Risk::Low));
        assert!(matches!(
            phase.apply[0].kind,
            StepKind::Service {
                action: ServiceAction::Rebuild,
                ..
            }
        ));
        let ticker = plan.service("ticker-metadata").unwrap();
        assert_eq!(ticker.kind, ServiceKind::Compose);
        match &ticker.control {
            ServiceControl::Compose {
                project_dir, service, ..
            } => {
                assert!(project_dir.ends_with("deploy"));
                assert_eq!(service, "ticker-metadata");
            }
            other => panic!("{other:?}"),
        }
        // A component without steps restores its paths and restarts its services.
        let mexc = plan.component("mexc").unwrap();
        assert!(matches!(&mexc.steps[0].kind, StepKind::RestorePaths { rev: None, .. }));
        assert!(matches!(&mexc.steps[1].kind, StepKind::Service { .. }));
    }

    #[test]
    fn two_default_options_are_an_error_at_the_second() {
        let src = SEED.replace(
            "{ name = \"C: degraded\", risk = \"medium\",",
            "{ name = \"C: degraded\", risk = \"medium\", default = true,",
        );
        let e = errors(&src);
        assert!(e.contains("has more than one default option"), "{e}");
        assert!(e.contains("backout.toml:36:54"), "{e}");
        assert!(e.contains("mark exactly one option default = true"), "{e}");
    }

    #[test]
    fn bad_values_are_named_with_a_hint() {
        let e = errors(&SEED.replace("risk = \"low\"", "risk = \"tiny\""));
        assert!(
            e.contains("unknown risk \"tiny\"") && e.contains("\"low\", \"medium\" or \"high\""),
            "{e}"
        );
        let e = errors(&SEED.replace("kind = \"systemd\"", "kind = \"upstart\""));
        assert!(e.contains("unknown service kind \"upstart\""), "{e}");
        let e = errors(&SEED.replace("unit = \"api-gateway.service\"", "stop = \"x\""));
        assert!(e.contains("`stop` does not apply to a systemd service"), "{e}");
        let e = errors(&SEED.replace("degraded = [\"ticker-metadata\"]", "degraded = [\"ticker\"]"));
        assert!(e.contains("no service named \"ticker\""), "{e}");
        let e = errors(&SEED.replace(
            "{ git = \"reset\", to = \"checkpoint\" }",
            "{ git = \"reset\", to = \"HEAD~2\" }",
        ));
        assert!(e.contains("git reset to \"HEAD~2\" is not supported"), "{e}");
        let e = errors(&SEED.replace(
            "{ git = \"reset\", to = \"checkpoint\" }",
            "{ restore = [\"../etc\"], from = \"HEAD\" }",
        ));
        assert!(e.contains("leaves the project"), "{e}");
        let e = errors(&SEED.replace(
            "{ git = \"reset\", to = \"checkpoint\" }",
            "{ git = \"revert\", retries = 2 }",
        ));
        assert!(e.contains("`retries` does not apply to a step of this kind"), "{e}");
        let e = errors(&SEED.replace(
            "paths = [\"src/exchanges/integrations/mexc/\"]\nservices = [\"worker\"]",
            "",
        ));
        assert!(
            e.contains("component \"mexc\" names no paths, services or steps"),
            "{e}"
        );
    }

    #[test]
    fn a_compose_probe_names_a_compose_service() {
        let with = |svc: &str| format!("{SEED}\n[[probe]]\nname = \"up\"\ncompose = \"{svc}\"\ntimeout = \"2s\"\n");
        let plan = parse(&with("ticker-metadata")).unwrap();
        match &plan.probe("up").unwrap().kind {
            crate::plan::ProbeKind::Compose { service, control } => {
                assert_eq!(service, "ticker-metadata");
                assert!(matches!(control, ServiceControl::Compose { .. }));
            }
            other => panic!("{other:?}"),
        }
        let e = errors(&with("gateway"));
        assert!(
            e.contains("service \"gateway\" is a systemd service, not compose"),
            "{e}"
        );
        let e = errors(&with("tickr"));
        assert!(e.contains("no service named \"tickr\""), "{e}");
    }

    /// Seed 002's validations differ by level: each level's own checks are
    /// kept with it, and a rollback at that level runs them (before `[verify]`).
    #[test]
    fn each_level_keeps_its_own_checks() {
        use crate::rollback::select::{Request, Selection, level_checks, select};
        let src = SEED
            .replace(
                "steps = [{ git = \"reset\", to = \"checkpoint\" }, { service = \"all\", action = \"restart\" }]",
                "steps = [{ git = \"reset\", to = \"checkpoint\" }]\nverify = [{ name = \"lazy init back\", file = \"rest_base.py\", contains = \"Optional[RestManager]\" }]",
            )
            .replace(
                "steps = [{ degraded = [\"ticker-metadata\"] }] }",
                "steps = [{ degraded = [\"ticker-metadata\"] }], verify = [{ http = \"http://127.0.0.1:8000/health\" }, { run = \"true\" }] }",
            )
            .replace("target = \"30m\"", "target = \"30m\"\nverify = [{ name = \"mexc imports\", run = \"python -c 'import mexc'\" }]");
        let plan = parse(&src).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.rollback_verify.len(), 1);
        assert_eq!(plan.rollback_verify[0].name, "lazy init back");
        let phase = plan.phase("ticker-metadata-service").unwrap();
        assert_eq!(phase.option("C: degraded").unwrap().verify.len(), 2);
        assert!(phase.option("A: direct fix").unwrap().verify.is_empty());
        assert_eq!(plan.component("mexc").unwrap().verify[0].name, "mexc imports");

        let names = |req: Request| -> Vec<String> {
            select(&plan, &req)
                .unwrap()
                .checks
                .into_iter()
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(names(Request::default()), ["lazy init back"]);
        let c = Request {
            phase: Some("ticker-metadata-service".into()),
            option: Some("C: degraded".into()),
            component: None,
        };
        assert_eq!(names(c).len(), 2);
        let default = Request {
            phase: Some("ticker-metadata-service".into()),
            ..Request::default()
        };
        assert!(names(default).is_empty(), "option B has none of its own");
        let mexc = Request {
            component: Some("mexc".into()),
            ..Request::default()
        };
        assert_eq!(names(mexc), ["mexc imports"]);
        // A recorded selection the plan no longer has: no level checks.
        let gone = Selection::Component {
            component: "gone".into(),
        };
        assert!(level_checks(&plan, &gone).is_empty());
    }

    #[test]
    fn several_options_need_a_default() {
        let e = errors(&SEED.replace(", default = true", ""));
        assert!(e.contains("has 3 rollback options and none is the default"), "{e}");
    }
}
