//! Verification: the plan's `[verify]` checks, run after every rollback and by
//! `backout verify`, each with pass/fail and the evidence, then optionally
//! "stable for D": every probe healthy, continuously, for that long.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exec::{self, Invocation};
use crate::plan::{Check, CheckKind, HttpProbe, Probe, units};
use crate::workspace::Workspace;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// What was seen: a status and body excerpt, an exit code and output tail...
    pub evidence: String,
    pub duration_ms: u64,
}

/// Runs every check of the plan, in order.
pub async fn run_checks(ws: &Workspace, on: impl FnMut(&CheckResult)) -> Vec<CheckResult> {
    run_list(ws, &ws.plan.verify.checks, on).await
}

/// One check per process service with a port (except those in `skip`, which
/// degraded mode stopped): the instance backout started or adopted is the one
/// listening there. Anything else answering the plan's checks on that port —
/// an old copy started by hand, still running the broken code — would make
/// them pass for the wrong process.
pub fn serving(ws: &Workspace, skip: &[String], mut on: impl FnMut(&CheckResult)) -> Vec<CheckResult> {
    let Ok(run_dir) = ws.run_dir() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for svc in ws.plan.services.iter().filter(|s| !skip.contains(&s.name)) {
        let t = Instant::now();
        let files = crate::service::ServiceFiles::new(&run_dir, &svc.name);
        let serving = crate::service::identity::serving(svc, &files);
        if serving == crate::service::identity::Serving::Unknown {
            continue;
        }
        let mut evidence = serving.describe(&svc.name);
        if !serving.is_ours() {
            evidence.push_str(&format!(
                "\n  = hint: `backout service status {0}` shows who; `backout service restart {0}` puts backout's instance there",
                svc.name
            ));
        }
        let r = CheckResult {
            name: format!("{} serves port {}", svc.name, svc.port.unwrap_or_default()),
            passed: serving.is_ours(),
            evidence,
            duration_ms: t.elapsed().as_millis() as u64,
        };
        on(&r);
        out.push(r);
    }
    out
}

/// Runs the given checks (a phase's `verify`), in order.
pub async fn run_list(ws: &Workspace, checks: &[Check], mut on: impl FnMut(&CheckResult)) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for c in checks {
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
        CheckKind::Http {
            url,
            status,
            json,
            max_latency,
        } => {
            let h = HttpProbe {
                url: url.clone(),
                method: "GET".into(),
                status: status.clone(),
                headers: Vec::new(),
                body: None,
                json: json.clone(),
                body_match: None,
                number: None,
            };
            let s = crate::probe::http::sample(&h, c.timeout).await;
            let lat = s.latency_ms.unwrap_or_default();
            match (s.ok, s.status, s.error) {
                (true, Some(code), _) => match max_latency {
                    Some(max) if lat > max.as_secs_f64() * 1000.0 => (
                        false,
                        format!(
                            "status {code} but in {lat:.0}ms, slower than {}",
                            units::format_duration(*max)
                        ),
                    ),
                    _ => (true, format!("status {code} in {lat:.0}ms")),
                },
                (_, _, Some(e)) => (false, e),
                _ => (false, "no response".into()),
            }
        }
        CheckKind::Run {
            command,
            exit_code,
            output,
        } => {
            let inv = Invocation {
                argv: command.resolved(),
                cwd: ws.root().to_path_buf(),
                env: Vec::new(),
                timeout: c.timeout,
            };
            match exec::run(&inv).await {
                Ok(o) => {
                    // The last lines carry test runners' summaries (pytest's "3 passed").
                    let tail = exec::tail_lines(&o.output, 5);
                    let sep = if tail.is_empty() { "" } else { ": " };
                    if o.timed_out || o.exit_code != Some(*exit_code) {
                        return (
                            false,
                            format!("{}, expected exit code {exit_code}{sep}{tail}", o.describe()),
                        );
                    }
                    if let Some(re) = output
                        && !re.is_match(&o.output)
                    {
                        return (false, format!("output does not match /{}/{sep}{tail}", re.as_str()));
                    }
                    (true, format!("{}{sep}{tail}", o.describe()))
                }
                Err(e) => (false, format!("{e:#}")),
            }
        }
        CheckKind::File {
            path,
            contains,
            not_contains,
            matches,
        } => {
            let shown = path.strip_prefix(ws.root()).unwrap_or(path).display().to_string();
            match fs_err::read_to_string(path) {
                Err(e) => (false, e.to_string()),
                Ok(text) => file_check(
                    &shown,
                    &text,
                    contains.as_deref(),
                    not_contains.as_deref(),
                    matches.as_ref(),
                ),
            }
        }
        CheckKind::Package { name, version, python } => {
            let inv = Invocation {
                argv: vec![
                    python.display().to_string(),
                    "-m".into(),
                    "pip".into(),
                    "show".into(),
                    name.clone(),
                ],
                cwd: ws.root().to_path_buf(),
                env: vec![("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into())],
                timeout: c.timeout,
            };
            match exec::run(&inv).await {
                Ok(o) if o.success() => {
                    match o.output.lines().find_map(|l| l.strip_prefix("Version:")).map(str::trim) {
                        Some(v) if v == version => (true, format!("{name} {v} installed ({})", python.display())),
                        Some(v) => (
                            false,
                            format!("{name} {v} installed, expected {version} ({})", python.display()),
                        ),
                        None => (false, format!("pip show {name} printed no version")),
                    }
                }
                Ok(o) => (
                    false,
                    format!("{name} is not installed for {} ({})", python.display(), o.describe()),
                ),
                Err(e) => (false, format!("{e:#}")),
            }
        }
        CheckKind::Probe { probe } => match ws.plan.probe(probe) {
            Some(p) => {
                let s = crate::probe::sample(p, &ws.clock).await;
                let status = s.status.map_or(String::new(), |c| format!(" (status {c})"));
                (s.ok, s.error.unwrap_or_else(|| format!("healthy{status}")))
            }
            None => (false, format!("no probe named {probe:?}")),
        },
    }
}

/// The seeds' `grep` checks: contains, does not contain, N lines match.
pub fn file_check(
    shown: &str,
    text: &str,
    contains: Option<&str>,
    not_contains: Option<&str>,
    matches: Option<&(regex::Regex, Option<usize>)>,
) -> (bool, String) {
    let mut seen = Vec::new();
    if let Some(want) = contains {
        if !text.contains(want) {
            return (false, format!("{shown} does not contain {want:?}"));
        }
        seen.push(format!("contains {want:?}"));
    }
    if let Some(bad) = not_contains {
        if let Some(line) = text.lines().position(|l| l.contains(bad)) {
            return (false, format!("{shown}:{} contains {bad:?}", line + 1));
        }
        seen.push(format!("does not contain {bad:?}"));
    }
    if let Some((re, count)) = matches {
        let hits: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| re.is_match(l))
            .map(|(i, _)| i + 1)
            .collect();
        // " (lines 1, 3)", nothing when no line matched (an expected count of 0).
        let lines = if hits.is_empty() {
            String::new()
        } else {
            let more = if hits.len() > 10 { ", ..." } else { "" };
            let shown: Vec<_> = hits.iter().take(10).map(usize::to_string).collect();
            format!(" (lines {}{more})", shown.join(", "))
        };
        match count {
            Some(n) if hits.len() != *n => {
                return (
                    false,
                    format!(
                        "{shown}: {} line(s) match /{}/, expected {n}{lines}",
                        hits.len(),
                        re.as_str()
                    ),
                );
            }
            None if hits.is_empty() => return (false, format!("{shown}: no line matches /{}/", re.as_str())),
            _ => seen.push(format!("{} line(s) match /{}/{lines}", hits.len(), re.as_str())),
        }
    }
    (true, seen.join(", "))
}

/// Samples every probe for `d`; passes only if every sample is healthy.
pub async fn stable_for(ws: &Workspace, d: Duration, mut progress: impl FnMut(Duration)) -> CheckResult {
    let t = Instant::now();
    let name = format!("stable for {}", units::format_duration(d));
    let probes: Vec<Probe> = ws.plan.probes.clone();
    let mut rx = crate::watch::sampler::start(probes, ws.clock.clone());
    let until = crate::context::async_deadline(d);
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

#[cfg(test)]
mod tests {
    use super::file_check;

    #[test]
    fn file_checks_like_the_seeds_grep() {
        let text = "a: Optional[RestManager]\nb\nc: Optional[RestManager]\n";
        let re = regex::Regex::new(r"Optional\[RestManager\]").unwrap();
        assert!(file_check("f", text, Some("b"), Some("zzz"), Some(&(re.clone(), Some(2)))).0);
        let (ok, why) = file_check("f", text, None, None, Some(&(re.clone(), Some(3))));
        assert!(!ok);
        assert_eq!(
            why,
            "f: 2 line(s) match /Optional\\[RestManager\\]/, expected 3 (lines 1, 3)"
        );
        let (ok, why) = file_check("f", text, None, Some("b"), None);
        assert!(!ok && why == "f:2 contains \"b\"", "{why}");
        assert!(!file_check("f", text, Some("nope"), None, None).0);
        assert!(!file_check("f", "x", None, None, Some(&(re.clone(), None))).0);
    }

    #[test]
    fn an_expected_count_of_zero_names_no_lines() {
        let re = regex::Regex::new("TODO").unwrap();
        let (ok, why) = file_check("f", "a\nb\n", None, None, Some(&(re.clone(), Some(0))));
        assert!(ok);
        assert_eq!(why, "0 line(s) match /TODO/");
        let many = "TODO\n".repeat(12);
        let (ok, why) = file_check("f", &many, None, None, Some(&(re, Some(0))));
        assert!(!ok);
        assert_eq!(
            why,
            "f: 12 line(s) match /TODO/, expected 0 (lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ...)"
        );
    }
}
