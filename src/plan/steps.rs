//! Validation of one rollback (or apply) step: exactly one kind per step, every
//! name it refers to defined, every value parsed.

use std::collections::BTreeSet;
use std::time::Duration;

use super::raw::{self, S};
use super::{ServiceAction, Step, StepKind, Validator, unknown_hint};

const STEP_KINDS: &str = "git, service, wait, run, restore, resource or degraded";

impl Validator<'_> {
    pub(super) fn step(
        &mut self,
        s: &S<raw::RawStep>,
        probes: &BTreeSet<String>,
        services: &BTreeSet<String>,
    ) -> Option<Step> {
        let r = s.get_ref();
        let set = [
            r.git.is_some(),
            r.service.is_some(),
            r.wait.is_some(),
            r.run.is_some(),
            r.restore.is_some(),
            r.resource.is_some(),
            r.degraded.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            self.error(
                s.span(),
                format!("a rollback step needs exactly one of {STEP_KINDS}"),
                "for example { git = \"revert\" }, { service = \"api\", action = \"restart\" }, { wait = \"health\" } or { run = \"make migrate-down\" }",
            );
            return None;
        }
        let timeout = self.opt_duration(&r.timeout, Duration::from_secs(60));
        let (kind, default_name) = if let Some(g) = &r.git {
            self.git_step(g, r)?
        } else if let Some(svc) = &r.service {
            let action = match r.action.as_ref().map(|a| a.get_ref().as_str()) {
                Some("start") => ServiceAction::Start,
                Some("stop") => ServiceAction::Stop,
                Some("restart") | None => ServiceAction::Restart,
                Some("rebuild") => ServiceAction::Rebuild,
                Some("down") => ServiceAction::Down,
                Some(other) => {
                    self.error(
                        r.action.as_ref().map_or(s.span(), |a| a.span()),
                        format!("unknown service action {other:?}"),
                        "action = \"start\", \"stop\", \"restart\", \"rebuild\" (rebuild the image and recreate) or \"down\"",
                    );
                    return None;
                }
            };
            let service = if svc.get_ref() == "all" {
                None
            } else {
                self.service_ref(svc, services);
                Some(svc.get_ref().clone())
            };
            let label = format!("{} {}", serde_json::to_value(action).ok()?.as_str()?, svc.get_ref());
            (StepKind::Service { service, action }, label)
        } else if let Some(w) = &r.wait {
            self.probe_ref(w, probes);
            (
                StepKind::Wait {
                    probe: w.get_ref().clone(),
                },
                format!("wait for {}", w.get_ref()),
            )
        } else if let Some(paths) = &r.restore {
            if paths.get_ref().is_empty() {
                self.error(
                    paths.span(),
                    "restore names no paths",
                    "restore = [\"src/app.py\"], from = \"HEAD~1\"",
                );
            }
            for p in paths.get_ref() {
                if p.starts_with('/') || p.split('/').any(|c| c == "..") {
                    self.error(
                        paths.span(),
                        format!("restore path {p:?} leaves the project"),
                        "paths are relative to the directory holding backout.toml, without ..",
                    );
                }
            }
            let Some(from) = &r.from else {
                self.error(
                    paths.span(),
                    "restore needs from: a git revision or \"checkpoint\"",
                    "from = \"HEAD~1\" (git checkout HEAD~1 -- paths) or from = \"checkpoint\"",
                );
                return None;
            };
            let rev = match from.get_ref().as_str() {
                "checkpoint" => None,
                r if r.is_empty() || r.starts_with('-') => {
                    self.error(
                        from.span(),
                        format!("{r:?} is not a git revision"),
                        "from = \"HEAD~1\", a commit hash, a tag, or \"checkpoint\"",
                    );
                    return None;
                }
                r => Some(r.to_string()),
            };
            let label = format!("restore {} from {}", paths.get_ref().join(", "), from.get_ref());
            (
                StepKind::RestorePaths {
                    paths: paths.get_ref().clone(),
                    rev,
                },
                label,
            )
        } else if let Some(names) = &r.resource {
            if names.get_ref().is_empty() {
                self.error(
                    names.span(),
                    "resource names nothing to restore",
                    "resource = [\"venv\"]",
                );
            }
            let label = format!("restore resource {}", names.get_ref().join(", "));
            (
                StepKind::RestoreResource {
                    names: names.get_ref().clone(),
                },
                label,
            )
        } else if let Some(names) = &r.degraded {
            if names.get_ref().is_empty() {
                self.error(
                    names.span(),
                    "degraded names no service to stop",
                    "degraded = [\"ticker-metadata\"] stops it and keeps the rest running",
                );
            }
            for n in names.get_ref() {
                if !services.contains(n) {
                    let known: Vec<&str> = services.iter().map(String::as_str).collect();
                    let hint = unknown_hint("service", n, &known);
                    self.error(names.span(), format!("no service named {n:?}"), hint);
                }
            }
            let label = format!("degraded: stop {}", names.get_ref().join(", "));
            (
                StepKind::Degraded {
                    services: names.get_ref().clone(),
                },
                label,
            )
        } else {
            let run = r.run.as_ref()?;
            let command = self.command(run, r.shell.as_ref().is_some_and(|s| *s.get_ref()));
            let cwd = r
                .cwd
                .as_ref()
                .map_or(self.root.to_path_buf(), |c| self.root.join(c.get_ref()));
            let retries = match &r.retries {
                Some(n) if (0..=100).contains(n.get_ref()) => *n.get_ref() as u32,
                Some(n) => {
                    self.error(
                        n.span(),
                        format!("retries = {} is out of range", n.get_ref()),
                        "retries counts extra attempts after a failure: 0 to 100",
                    );
                    0
                }
                None => 0,
            };
            let retry_delay = self.opt_duration(&r.retry_delay, Duration::from_secs(1));
            let env = r.env.iter().map(|(k, v)| (k.clone(), self.text(v))).collect();
            let label = command.shown();
            (
                StepKind::Run {
                    command,
                    cwd,
                    env,
                    retries,
                    retry_delay,
                },
                label,
            )
        };
        self.reject_foreign_keys(s, &kind);
        Some(Step {
            name: r.name.as_ref().map_or(default_name, |n| n.get_ref().clone()),
            kind,
            timeout,
        })
    }

    fn git_step(&mut self, g: &S<String>, r: &raw::RawStep) -> Option<(StepKind, String)> {
        match g.get_ref().as_str() {
            "revert" => Some((StepKind::GitRevert, "git revert".to_string())),
            "reset" => {
                if let Some(to) = &r.to
                    && to.get_ref() != "checkpoint"
                {
                    self.error(
                        to.span(),
                        format!("git reset to {:?} is not supported", to.get_ref()),
                        "to = \"checkpoint\": HEAD goes back to the checkpoint's commit (after a safety checkpoint of everything it discards); for other revisions use restore = [...], from = REV",
                    );
                    return None;
                }
                Some((StepKind::GitReset, "git reset --hard to the checkpoint".to_string()))
            }
            "push" => {
                let remote = r.remote.as_ref().map_or("origin".to_string(), |r| r.get_ref().clone());
                let refspec = r.refspec.as_ref().map(|r| r.get_ref().clone());
                let force = r.force.as_ref().is_some_and(|f| *f.get_ref());
                let label = format!(
                    "git push {remote}{}",
                    refspec.as_deref().map_or(String::new(), |r| format!(" {r}"))
                );
                Some((StepKind::GitPush { remote, refspec, force }, label))
            }
            other => {
                self.error(
                    g.span(),
                    format!("unknown git step {other:?}"),
                    "git = \"revert\" (new commits undoing those since the checkpoint), \"reset\" (back to the checkpoint's commit) or \"push\"",
                );
                None
            }
        }
    }

    pub(super) fn service_ref(&mut self, svc: &S<String>, services: &BTreeSet<String>) {
        if !services.contains(svc.get_ref()) {
            let known: Vec<&str> = services.iter().map(String::as_str).collect();
            let hint = unknown_hint("service", svc.get_ref(), &known);
            self.error(svc.span(), format!("no service named {:?}", svc.get_ref()), hint);
        }
    }

    /// Keys that belong to another step kind are errors, not silently ignored.
    fn reject_foreign_keys(&mut self, s: &S<raw::RawStep>, kind: &StepKind) {
        let r = s.get_ref();
        let is_run = matches!(kind, StepKind::Run { .. });
        let is_git = matches!(
            kind,
            StepKind::GitReset | StepKind::GitPush { .. } | StepKind::GitRevert
        );
        let mut bad: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
        if !is_run {
            if let Some(x) = &r.retries {
                bad.push(("retries", x.span()));
            }
            if let Some(x) = &r.shell {
                bad.push(("shell", x.span()));
            }
            if let Some(x) = &r.cwd {
                bad.push(("cwd", x.span()));
            }
            if let Some(x) = &r.retry_delay {
                bad.push(("retry-delay", x.span()));
            }
            if let Some((_, v)) = r.env.iter().next() {
                bad.push(("env", v.span()));
            }
        }
        if !matches!(kind, StepKind::Service { .. })
            && let Some(x) = &r.action
        {
            bad.push(("action", x.span()));
        }
        if !matches!(kind, StepKind::RestorePaths { .. })
            && let Some(x) = &r.from
        {
            bad.push(("from", x.span()));
        }
        if !is_git {
            for (k, x) in [("to", &r.to), ("remote", &r.remote), ("refspec", &r.refspec)] {
                if let Some(x) = x {
                    bad.push((k, x.span()));
                }
            }
        }
        for (key, span) in bad {
            self.error(
                span,
                format!("`{key}` does not apply to a step of this kind"),
                "each step does one thing; move this key to the step it belongs to",
            );
        }
    }
}
