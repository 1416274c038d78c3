//! Verification: the plan's `[verify]` checks, run after every rollback and by
//! `backout verify`, each with pass/fail and the evidence, then optionally
//! "stable for D": every probe healthy, continuously, for that long.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exec::{self, Invocation};
use crate::plan::{Check, CheckKind, HttpProbe, Probe, units};
use crate::workspace::Workspace;

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// What was seen: a status and body excerpt, an exit code and output tail...
    pub evidence: String,
    pub duration_ms: u64,
}

/// Runs every check of the plan, in order.
pub async fn run_checks(ws: &Workspace, mut on: impl FnMut(&CheckResult)) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for c in &ws.plan.verify.checks {
        let t = Instant::now();
        let (passed, evidence) = run_check(ws, c).await;
        let r = CheckResult {
            name: c.name.clone(),
            passed,
            evidence,
            duration_ms: t.elapsed().as_millis() as u64,
        };
        on(&r);
        out.push(r);
    }
    out
}

async fn run_check(ws: &Workspace, c: &Check) -> (bool, String) {
    match &c.kind {
        CheckKind::Http { url, status, json } => {
            let h = HttpProbe {
                url: url.clone(),
                method: "GET".into(),
                status: status.clone(),
                headers: Vec::new(),
                body: None,
                json: json.clone(),
                body_match: None,
            };
            let s = crate::probe::http::sample(&h, c.timeout).await;
            let lat = s.latency_ms.map_or(String::new(), |l| format!(" in {l:.0}ms"));
            match (s.ok, s.status, s.error) {
                (true, Some(code), _) => (true, format!("status {code}{lat}")),
                (_, _, Some(e)) => (false, e),
                _ => (false, "no response".into()),
            }
        }
        CheckKind::Run { command, exit_code } => {
            let inv = Invocation {
                argv: command.resolved(),
                cwd: ws.root().to_path_buf(),
                env: Vec::new(),
                timeout: c.timeout,
            };
            match exec::run(&inv).await {
                Ok(o) => {
                    let tail = exec::tail_lines(&o.output, 5);
                    let passed = !o.timed_out && o.exit_code == Some(*exit_code);
                    (
                        passed,
                        format!("{}{}{tail}", o.describe(), if tail.is_empty() { "" } else { ": " }),
                    )
                }
                Err(e) => (false, format!("{e:#}")),
            }
        }
        CheckKind::File {
            path,
            contains,
            not_contains,
        } => match fs_err::read_to_string(path) {
            Err(e) => (false, e.to_string()),
            Ok(text) => {
                if let Some(want) = contains
                    && !text.contains(want.as_str())
                {
                    return (false, format!("{} does not contain {want:?}", path.display()));
                }
                if let Some(bad) = not_contains
                    && let Some(line) = text.lines().position(|l| l.contains(bad.as_str()))
                {
                    return (false, format!("{}:{} contains {bad:?}", path.display(), line + 1));
                }
                let mut seen = Vec::new();
                if let Some(want) = contains {
                    seen.push(format!("contains {want:?}"));
                }
                if let Some(bad) = not_contains {
                    seen.push(format!("does not contain {bad:?}"));
                }
                (true, seen.join(", "))
            }
        },
        CheckKind::Probe { probe } => match ws.plan.probe(probe) {
            Some(p) => {
                let s = crate::probe::sample(p, &ws.clock).await;
                (
                    s.ok,
                    s.error.unwrap_or_else(|| {
                        format!(
                            "healthy{}",
                            s.status.map_or(String::new(), |c| format!(" (status {c})"))
                        )
                    }),
                )
            }
            None => (false, format!("no probe named {probe:?}")),
        },
    }
}

/// Samples every probe for `d`; passes only if every sample is healthy.
pub async fn stable_for(ws: &Workspace, d: Duration, mut progress: impl FnMut(Duration)) -> CheckResult {
    let t = Instant::now();
    let name = format!("stable for {}", units::format_duration(d));
    let probes: Vec<Probe> = ws.plan.probes.clone();
    let mut rx = crate::watch::sampler::start(probes, ws.clock.clone());
    let until = tokio::time::Instant::now() + d;
    let mut n = 0;
    while let Ok(Some(s)) = tokio::time::timeout_at(until, rx.recv()).await {
        n += 1;
        progress(t.elapsed());
        if !s.ok {
            let why = s.error.unwrap_or_default();
            return CheckResult {
                name,
                passed: false,
                evidence: format!(
                    "{} failed after {}: {why}",
                    s.probe,
                    units::format_duration(Duration::from_millis(t.elapsed().as_millis() as u64))
                ),
                duration_ms: t.elapsed().as_millis() as u64,
            };
        }
    }
    let passed = n > 0;
    CheckResult {
        name,
        passed,
        evidence: if passed {
            format!("{n} samples, all healthy")
        } else {
            "no probe sampled".into()
        },
        duration_ms: t.elapsed().as_millis() as u64,
    }
}

/// What a probe measures (a URL for HTTP probes), for messages.
pub fn probe_url(p: &Probe) -> String {
    p.kind.target()
}
