//! Validation of `[verify]`: the checks that prove a recovery.

use std::collections::BTreeSet;
use std::time::Duration;

use super::raw::{self, S};
use super::{Check, CheckKind, Validator, Verify};

/// The most matching lines a file check may expect: more than any source file holds.
const MAX_LINE_COUNT: i64 = 1_000_000_000;

impl Validator<'_> {
    pub(super) fn verify(&mut self, v: &raw::RawVerify, probes: &BTreeSet<String>) -> Verify {
        let checks = v.checks.iter().filter_map(|c| self.check(c, probes)).collect();
        Verify {
            checks,
            stable_for: v.stable_for.as_ref().and_then(|s| self.duration(s)),
        }
    }

    /// Keys that belong to another kind of check, for a precise error.
    fn stray(&mut self, c: &S<raw::RawCheck>, kind: &str, keys: &[(&str, bool)]) {
        for (key, set) in keys {
            if *set {
                self.error(
                    c.span(),
                    format!("`{key}` does not apply to a {kind} check"),
                    "each check kind takes its own keys; see the plan reference in the README",
                );
            }
        }
    }

    pub(super) fn check(&mut self, c: &S<raw::RawCheck>, probes: &BTreeSet<String>) -> Option<Check> {
        let r = c.get_ref();
        let set = [
            r.http.is_some(),
            r.run.is_some(),
            r.file.is_some(),
            r.package.is_some(),
            r.probe.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            self.error(
                c.span(),
                "a check needs exactly one of http, run, file, package or probe",
                "for example { http = \"http://127.0.0.1:8000/health\", status = 200 } or { run = \"pytest -q\" }",
            );
            return None;
        }
        let timeout = self.opt_duration(&r.timeout, Duration::from_secs(30));
        let (kind, default_name) = if let Some(h) = &r.http {
            self.stray(
                c,
                "http",
                &[
                    ("output", r.output.is_some()),
                    ("matches", r.matches.is_some()),
                    ("exit-code", r.exit_code.is_some()),
                ],
            );
            let url = self.text(h);
            if reqwest::Url::parse(&url.value).is_err() {
                self.error(
                    h.span(),
                    format!("{:?} is not a URL", h.get_ref()),
                    "write a full URL like http://127.0.0.1:8000/health",
                );
            }
            let name = format!("GET {}", url.shown);
            let max_latency = r.max_latency.as_ref().and_then(|m| self.duration(m));
            (
                CheckKind::Http {
                    url,
                    status: self.status(&r.status),
                    json: self.json_fields(&r.json),
                    max_latency,
                },
                name,
            )
        } else if let Some(run) = &r.run {
            self.stray(
                c,
                "run",
                &[
                    ("matches", r.matches.is_some()),
                    ("status", r.status.is_some()),
                    ("max-latency", r.max_latency.is_some()),
                ],
            );
            let command = self.command(run, r.shell.as_ref().is_some_and(|s| *s.get_ref()));
            let name = command.shown();
            let output = r.output.as_ref().and_then(|o| self.regex(o, "the output match"));
            let exit_code = match &r.exit_code {
                Some(e) if (0..=255).contains(e.get_ref()) => *e.get_ref() as i32,
                Some(e) => {
                    self.error(
                        e.span(),
                        format!("exit code {} is out of range", e.get_ref()),
                        "exit codes run from 0 to 255",
                    );
                    0
                }
                None => 0,
            };
            (
                CheckKind::Run {
                    command,
                    exit_code,
                    output,
                },
                name,
            )
        } else if let Some(f) = &r.file {
            self.stray(
                c,
                "file",
                &[("output", r.output.is_some()), ("status", r.status.is_some())],
            );
            if r.contains.is_none() && r.not_contains.is_none() && r.matches.is_none() {
                self.error(
                    f.span(),
                    "a file check needs contains, not-contains or matches",
                    "for example { file = \"app.py\", contains = \"session = get_session()\" }",
                );
            }
            let count = match &r.count {
                Some(n) if (0..=MAX_LINE_COUNT).contains(n.get_ref()) => Some(*n.get_ref() as usize),
                Some(n) => {
                    self.error(
                        n.span(),
                        format!("count must be between 0 and {MAX_LINE_COUNT}, found {}", n.get_ref()),
                        "count is how many lines must match",
                    );
                    None
                }
                None => None,
            };
            if r.count.is_some() && r.matches.is_none() {
                self.error(
                    c.span(),
                    "count needs matches",
                    "for example { file = \"app.py\", matches = \"Optional\\\\[RestManager\\\\]\", count = 6 }",
                );
            }
            let matches = r
                .matches
                .as_ref()
                .and_then(|m| self.regex(m, "`matches`"))
                .map(|re| (re, count));
            let name = format!("file {}", f.get_ref());
            let kind = CheckKind::File {
                path: self.root.join(f.get_ref()),
                contains: r.contains.as_ref().map(|s| s.get_ref().clone()),
                not_contains: r.not_contains.as_ref().map(|s| s.get_ref().clone()),
                matches,
            };
            (kind, name)
        } else if let Some(pkg) = &r.package {
            let Some(version) = &r.version else {
                self.error(
                    pkg.span(),
                    format!("the check of package {:?} needs a version", pkg.get_ref()),
                    "for example { package = \"flask\", version = \"2.3.3\", python = \"venv/bin/python\" }",
                );
                return None;
            };
            let python = r.python.as_ref().map_or("python3".into(), |p| {
                if p.get_ref().contains('/') {
                    self.root.join(p.get_ref())
                } else {
                    p.get_ref().into()
                }
            });
            let name = format!("package {} == {}", pkg.get_ref(), version.get_ref());
            (
                CheckKind::Package {
                    name: pkg.get_ref().clone(),
                    version: version.get_ref().clone(),
                    python,
                },
                name,
            )
        } else {
            let p = r.probe.as_ref()?;
            self.probe_ref(p, probes);
            (
                CheckKind::Probe {
                    probe: p.get_ref().clone(),
                },
                format!("probe {}", p.get_ref()),
            )
        };
        Some(Check {
            name: r.name.as_ref().map_or(default_name, |n| n.get_ref().clone()),
            kind,
            timeout,
        })
    }
}
