use clap::Args;
use serde_json::json;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::plan::rule::format_threshold;
use crate::plan::{Action, CheckKind, Plan, Rule, StepKind, evidence, units};
use crate::watch;

/// Validate the plan and print a summary to review
///
/// Shows what a checkpoint captures, each service, each probe with its interval
/// and timeout, each rule with the time it needs to detect a total failure, the
/// recovery-time objective, and warnings. Changes nothing.
///
/// Example: backout check --plan deploy/backout.toml
#[derive(Debug, Args)]
pub struct CheckArgs {}

pub fn run(ctx: &Ctx, _args: CheckArgs) -> Result<ExitCode, CommandError> {
    let plan = ctx.load_plan()?;
    summarize(&ctx.printer, &plan, &super::rel(&plan.path, &ctx.cwd));
    Ok(ExitCode::Ok)
}

/// Prints the summary of a valid plan (JSON or text), its warnings named
/// after `file`. Also driven by the plan fuzz test: no plan that validates
/// may make it panic.
pub fn summarize(p: &crate::output::Printer, plan: &crate::plan::Plan, file: &str) {
    let d = |v: std::time::Duration| units::format_duration(v);

    let rules: Vec<serde_json::Value> = plan
        .rules
        .iter()
        .map(|r| {
            let detect = watch::detect_times(plan, r);
            let every = plan.probe(&r.condition.metric.probe).map(|p| p.every);
            json!({
                "name": r.name, "when": r.text, "then": r.action,
                "min_samples": every.map(|e| evidence::min_samples(r, e)),
                "min_samples_set": r.min_samples.is_some(),
                "window_samples": every.map(|e| evidence::capacity(&r.condition, e)),
                "no_data": r.no_data, "severity": r.severity,
                "detect_samples": detect.fresh.map(|d| d.0),
                "detect_ms": detect.fresh.map(|d| d.1.as_millis() as u64),
                "detect_full_window_samples": detect.full.map(|d| d.0),
                "detect_full_window_ms": detect.full.map(|d| d.1.as_millis() as u64),
            })
        })
        .collect();
    p.data(&json!({
        "plan": plan.name,
        "file": plan.path,
        "rto_ms": plan.rto.map(|r| r.as_millis() as u64),
        "capture": plan.capture,
        "services": plan.services.iter().map(|s| json!({"name": s.name, "kind": s.kind, "start": s.start.shown(), "ready": s.ready})).collect::<Vec<_>>(),
        "probes": plan.probes.iter().map(|pr| json!({"name": pr.name, "every_ms": pr.every.as_millis() as u64, "timeout_ms": pr.timeout.as_millis() as u64, "target": crate::verify::probe_url(pr)})).collect::<Vec<_>>(),
        "rules": rules,
        "success": plan.success.iter().map(|c| &c.text).collect::<Vec<_>>(),
        "reviews": plan.reviews.iter().map(|r| json!({"name": r.name, "at_ms": r.at.as_millis() as u64, "expect": r.expect.iter().map(|e| &e.text).collect::<Vec<_>>(), "then": r.action})).collect::<Vec<_>>(),
        "decision": plan.decision,
        "time_scale": plan.time_scale,
        "rollback": plan.rollback.iter().map(|s| &s.name).collect::<Vec<_>>(),
        "verify": plan.verify.checks.iter().map(|c| &c.name).collect::<Vec<_>>(),
        "rollback_verify": plan.rollback_verify.iter().map(|c| &c.name).collect::<Vec<_>>(),
        "stable_for_ms": plan.verify.stable_for.map(|s| s.as_millis() as u64),
        "warnings": plan.warnings.iter().map(|w| json!({"line": w.line, "message": w.message})).collect::<Vec<_>>(),
    }));
    if p.json() {
        return;
    }

    p.out(format!("{} {} ({file}) is valid", p.bold("plan"), plan.name));
    if let Some(desc) = &plan.description {
        p.out(format!("  {desc}"));
    }
    p.out(match plan.rto {
        Some(r) => format!("  recovery-time objective: {}", d(r)),
        None => "  recovery-time objective: none".into(),
    });

    p.out(format!("\n{}", p.bold("checkpoint captures")));
    if plan.capture.git {
        p.out("  git: HEAD, branch, upstream, and the working tree (staged, unstaged, untracked)");
    }
    for db in &plan.capture.databases {
        let at = match &db.location {
            crate::plan::DbLocation::Path(path) => path.display().to_string(),
            crate::plan::DbLocation::Url(url) => url.shown.clone(),
        };
        p.out(format!("  database {} ({}): {at}", db.name, db.kind));
    }
    for c in &plan.capture.commands {
        p.out(format!(
            "  command {}: `{}`, restored by `{}`",
            c.name,
            c.save.shown(),
            c.restore_shown()
        ));
    }
    if !plan.capture.git && plan.capture.databases.is_empty() && plan.capture.commands.is_empty() {
        p.out("  nothing: add [capture] git = true");
    }

    if !plan.services.is_empty() {
        p.out(format!("\n{}", p.bold("services")));
        for s in &plan.services {
            let ready = s
                .ready
                .as_ref()
                .map_or(String::new(), |r| format!(", ready when {r} is healthy"));
            let how = match &s.control {
                crate::plan::ServiceControl::Process => format!("process `{}`", s.start.shown()),
                crate::plan::ServiceControl::Compose {
                    service, project_dir, ..
                } => {
                    format!("compose service {service} in {}", super::rel(project_dir, &plan.root))
                }
                crate::plan::ServiceControl::Systemd { unit, user } => {
                    format!("systemd unit {unit}{}", if *user { " (--user)" } else { "" })
                }
                crate::plan::ServiceControl::Command { stop, .. } => {
                    format!("command: start `{}`, stop `{}`", s.start.shown(), stop.shown())
                }
            };
            p.out(format!("  {}: {how}{ready}", s.name));
        }
    }

    p.out(format!("\n{}", p.bold("probes")));
    if plan.probes.is_empty() {
        p.out("  none: a watch has nothing to measure");
    }
    for pr in &plan.probes {
        let (what, healthy) = pr.kind.describe();
        p.out(format!(
            "  {}: {what} every {}, timeout {}; healthy when {healthy}",
            pr.name,
            d(pr.every),
            d(pr.timeout),
        ));
    }

    p.out(format!("\n{}", p.bold("rules")));
    if plan.rules.is_empty() {
        p.out("  none: a watch will never roll back");
    }
    for r in &plan.rules {
        let action = match (r.severity, r.action) {
            (Some(s), _) => format!("{} (the [decision] matrix decides)", s.name()),
            (None, Action::Rollback) => "rollback".into(),
            (None, Action::Investigate) => "investigate".into(),
        };
        let detect = detect_phrase(plan, r);
        let c = &r.condition;
        let window = watch::over_phrase(c);
        let hold = c.hold.map_or(String::new(), |h| format!(" for {}", d(h)));
        let test = c.test.map_or(String::new(), |t| format!(" {t}"));
        p.out(format!(
            "  {} → {action}: {} {} {}{test}{window}{hold}; {detect}",
            r.name,
            c.metric,
            c.op.symbol(),
            format_threshold(c.metric.field, &c.threshold),
        ));
    }
    if !plan.success.is_empty() {
        p.out(format!("\n{}", p.bold("success when")));
        for s in &plan.success {
            p.out(format!("  {}", s.text));
        }
    }
    if !plan.reviews.is_empty() {
        p.out(format!("\n{}", p.bold("reviews")));
        for r in &plan.reviews {
            let then = match r.action {
                Action::Rollback => "rollback",
                Action::Investigate => "investigate",
            };
            let expect: Vec<&str> = r.expect.iter().map(|e| e.text.as_str()).collect();
            p.out(format!(
                "  {} at +{}: expect {}; if not, {then}",
                r.name,
                d(r.at),
                expect.join(", ")
            ));
        }
    }
    if plan.time_scale != 1.0 {
        p.out(format!(
            "\n{}",
            p.yellow(&format!(
                "time-scale {}: watch durations above are divided by it (a rehearsal)",
                crate::plan::units::trim_float(plan.time_scale)
            ))
        ));
    }

    p.out(format!("\n{}", p.bold("rollback")));
    if plan.rollback.is_empty() {
        p.out("  no steps: add [rollback] steps = [...]");
    }
    for (i, s) in plan.rollback.iter().enumerate() {
        let extra = match &s.kind {
            StepKind::Wait { .. } | StepKind::Run { .. } => format!(" (timeout {})", d(s.timeout)),
            _ => String::new(),
        };
        p.out(format!("  {}. {}{extra}", i + 1, s.name));
    }
    if !plan.rollback_verify.is_empty() {
        p.out(format!("  then {} check(s) of its own", plan.rollback_verify.len()));
    }

    for ph in &plan.phases {
        p.out(format!(
            "\n{} {} ({} apply step(s), {} check(s))",
            p.bold("phase"),
            ph.name,
            ph.apply.len(),
            ph.verify.len()
        ));
        for (i, o) in ph.options.iter().enumerate() {
            let mut facts = Vec::new();
            if let Some(t) = o.estimate {
                facts.push(format!("~{}", d(t)));
            }
            if let Some(r) = o.risk {
                facts.push(format!("{r:?} risk").to_lowercase());
            }
            if i == ph.default_option {
                facts.push("default".into());
            }
            let checks = if o.verify.is_empty() {
                String::new()
            } else {
                format!(", {} check(s)", o.verify.len())
            };
            p.out(format!(
                "  option {:?}: {} step(s){checks} [{}]",
                o.name,
                o.steps.len(),
                facts.join(", ")
            ));
        }
    }
    for c in &plan.components {
        p.out(format!(
            "\n{} {}: paths {}; services {}; {} step(s); {} check(s)",
            p.bold("component"),
            c.name,
            if c.paths.is_empty() {
                "-".into()
            } else {
                c.paths.join(", ")
            },
            if c.services.is_empty() {
                "-".into()
            } else {
                c.services.join(", ")
            },
            c.steps.len(),
            c.verify.len()
        ));
    }

    p.out(format!("\n{}", p.bold("verify")));
    for c in &plan.verify.checks {
        let what = match &c.kind {
            CheckKind::Http { status, json, .. } => {
                let mut e = vec![format!("status {status}")];
                e.extend(json.iter().map(|(k, v)| format!("{k} = {v}")));
                format!("{} ({})", c.name, e.join(", "))
            }
            _ => c.name.clone(),
        };
        p.out(format!("  {what}"));
    }
    if let Some(s) = plan.verify.stable_for {
        p.out(format!("  stable for {}", d(s)));
    }
    if plan.verify.checks.is_empty() && plan.verify.stable_for.is_none() {
        p.out("  no checks: recovery will not be proven");
    }

    if !plan.warnings.is_empty() {
        p.out("");
        for w in &plan.warnings {
            p.warn(format!("{file}:{}: {}", w.line, w.message));
        }
    }
}

/// How long `r` takes to detect a sustained breach, on a fresh watch and with a
/// full window: `detects a total failure in 7 samples = 1.75s (fresh watch or
/// full window)`.
fn detect_phrase(plan: &Plan, r: &Rule) -> String {
    let t = watch::detect_times(plan, r);
    let what = match r.condition.metric.field {
        crate::plan::rule::Field::ErrorRate
        | crate::plan::rule::Field::Up
        | crate::plan::rule::Field::ConsecutiveFailures
        | crate::plan::rule::Field::Status => "a total failure",
        _ => "answers all beyond the limit",
    };
    let d = |n: usize, t: std::time::Duration| format!("{n} sample(s) = {}", units::format_duration(t));
    let zero = if t.zero_baseline {
        ", assuming a 0% baseline (a higher one needs more)"
    } else {
        ""
    };
    let phrase = match (t.fresh, t.full) {
        (None, None) => match r.condition.threshold {
            crate::plan::rule::Threshold::Baseline { .. } => "how many samples it needs depends on the baseline".into(),
            _ if plan.probe(&r.condition.metric.probe).is_some_and(|p| {
                r.min_samples
                    .is_some_and(|m| m > evidence::capacity(&r.condition, p.every))
            }) =>
            {
                "never decides: its window holds fewer samples than min-samples".into()
            }
            _ => "how soon depends on how far beyond the limit".into(),
        },
        (Some(a), Some(b)) if a == b => format!("detects {what} in {} (fresh watch or full window)", d(a.0, a.1)),
        (Some(a), Some(b)) => format!(
            "detects {what} in {} on a fresh watch, {} with a full window",
            d(a.0, a.1),
            d(b.0, b.1)
        ),
        (Some(a), None) => format!("detects {what} in {} on a fresh watch", d(a.0, a.1)),
        (None, Some(b)) => format!("detects {what} in {} with a full window", d(b.0, b.1)),
    };
    format!("{phrase}{zero}")
}
