//! Incident reports: what triggered, the timeline, the commands run with exit
//! codes and durations, the validation results, the recovery time against the
//! objective and the diagnostics; written as Markdown, self-contained HTML with
//! SVG charts ([`html`], [`chart`]) and JSON to `.backout/reports/inc-N/`.

pub mod chart;
pub mod figures;
pub mod html;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use crate::oplog::SampleRow;
use crate::plan::units;
use crate::redact::Redacted;
use crate::rollback::RollbackReport;
use crate::verify::CheckResult;
use crate::watch::{BaselineStats, Verdict};
use crate::workspace::Workspace;

/// One item of the diagnostic bundle captured before the rollback.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Diagnostic {
    pub name: String,
    /// Bounded and redacted.
    pub content: String,
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TimelineEntry {
    pub at: i64,
    pub what: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Incident {
    pub id: String,
    pub plan: String,
    pub verdict: Verdict,
    /// When the change began: the deploy marker's time, when there is one.
    pub deploy_at: Option<i64>,
    /// The deploy marker the figures count from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<crate::deploy::Marker>,
    /// When the watch that reached the verdict began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_started_at: Option<i64>,
    pub first_bad_at: Option<i64>,
    pub verdict_at: i64,
    pub rollback: RollbackReport,
    /// Rollbacks of this incident that failed before `rollback`, oldest first:
    /// a rollback run after a failed one continues the same incident.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_rollbacks: Vec<RollbackReport>,
    pub verification: Vec<CheckResult>,
    /// How many checks the plan has for this rollback (its level's and
    /// `[verify]`'s), run or not.
    #[serde(default)]
    pub planned_checks: usize,
    pub rto_ms: Option<u64>,
    pub timeline: Vec<TimelineEntry>,
    /// Each probe's baseline, for the charts' bands.
    #[serde(default)]
    pub baselines: BTreeMap<String, BaselineStats>,
    /// Latency thresholds of the rules, drawn on the charts.
    #[serde(default)]
    pub limits: Vec<chart::Limit>,
    /// Samples around the incident, for the charts.
    #[serde(default)]
    pub samples: Vec<SampleRow>,
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
    /// Filled in by people (`backout report --edit`).
    #[serde(default)]
    pub root_cause: Option<String>,
    #[serde(default)]
    pub lessons: Option<String>,
}

impl Incident {
    pub fn verified(&self) -> bool {
        self.rollback.ok && self.verification.iter().all(|c| c.passed)
    }
}

/// Builds the timeline from the incident's moments, in time order.
pub fn timeline(i: &Incident) -> Vec<TimelineEntry> {
    let mut t = Vec::new();
    match (&i.deploy, i.deploy_at) {
        (Some(m), _) => {
            t.push(TimelineEntry {
                at: m.at,
                what: m.timeline_line(),
            });
            if let Some(end) = m.command_ended_at {
                let how = match (m.command_ok, m.exit_code) {
                    (Some(true), _) => "ok".to_string(),
                    (_, Some(c)) => format!("FAILED, exit code {c}"),
                    _ => "FAILED".into(),
                };
                t.push(TimelineEntry {
                    at: end,
                    what: format!("deploy command ended ({how})"),
                });
            }
        }
        (None, Some(d)) => t.push(TimelineEntry {
            at: d,
            what: "deploy".into(),
        }),
        (None, None) => {}
    }
    if let Some(w) = i.watch_started_at {
        t.push(TimelineEntry {
            at: w,
            what: "watch start".into(),
        });
    }
    if let Some(f) = i.first_bad_at {
        t.push(TimelineEntry {
            at: f,
            what: "first bad sample".into(),
        });
    }
    t.push(TimelineEntry {
        at: i.verdict_at,
        what: format!("verdict: {}", i.verdict.explanation),
    });
    for (n, rb) in i.earlier_rollbacks.iter().enumerate() {
        rollback_entries(&mut t, rb, &format!("rollback (attempt {})", n + 1));
    }
    let name = if i.earlier_rollbacks.is_empty() {
        "rollback".to_string()
    } else {
        format!("rollback (attempt {})", i.earlier_rollbacks.len() + 1)
    };
    rollback_entries(&mut t, &i.rollback, &name);
    if let Some(h) = i.rollback.healthy_at {
        t.push(TimelineEntry {
            at: h,
            what: "healthy again".into(),
        });
    }
    t.sort_by_key(|e| e.at);
    t
}

/// A rollback's start, steps and end, as timeline entries named `name`.
fn rollback_entries(t: &mut Vec<TimelineEntry>, rb: &RollbackReport, name: &str) {
    t.push(TimelineEntry {
        at: rb.started_at,
        what: format!("{name} start"),
    });
    for s in &rb.steps {
        t.push(TimelineEntry {
            at: s.started_at,
            what: format!(
                "step {}: {} ({}, {}ms)",
                s.seq,
                s.name,
                if s.ok { "ok" } else { "FAILED" },
                s.duration_ms
            ),
        });
    }
    t.push(TimelineEntry {
        at: rb.ended_at,
        what: format!("{name} end ({})", if rb.ok { "ok" } else { "failed" }),
    });
}

/// The verdict's value, threshold and baseline in the rule's unit (`30%`, `43ms`).
pub fn verdict_values(v: &Verdict) -> [String; 3] {
    let field = crate::plan::rule::parse_condition(&v.when).ok().map(|c| c.metric.field);
    let f = |x: Option<f64>| match (x, field) {
        (None, _) => "-".to_string(),
        (Some(x), Some(field)) => crate::plan::rule::format_value(field, x),
        (Some(x), None) => units::trim_float(x),
    };
    [f(v.value), f(v.threshold), f(v.baseline)]
}

pub fn ms(v: i64) -> String {
    units::format_duration(std::time::Duration::from_millis(v.max(0) as u64))
}

fn clock(at: i64) -> String {
    Timestamp::from_millisecond(at).map_or_else(|_| at.to_string(), |t| t.strftime("%H:%M:%S%.3f").to_string())
}

fn offset(at: i64, from: i64) -> String {
    let d = at - from;
    format!("{}{}", if d < 0 { "-" } else { "+" }, ms(d.abs()))
}

/// The report as Markdown, mirroring the seeds' rollback report templates.
pub fn markdown(i: &Incident) -> String {
    let mut md = String::new();
    let start = i.deploy_at.or(i.first_bad_at).unwrap_or(i.verdict_at);
    let date = Timestamp::from_millisecond(i.verdict_at)
        .map_or(String::new(), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string());
    let _ = writeln!(md, "# Incident {}: {}\n", i.id, i.plan);
    let _ = writeln!(md, "## Summary\n");
    let v = &i.verdict;
    let _ = writeln!(md, "- **When:** {date}");
    let _ = writeln!(md, "- **Trigger:** rule `{}`: `{}`", v.rule, v.when);
    let _ = writeln!(md, "- **Verdict:** {}", v.explanation);
    let _ = writeln!(
        md,
        "- **Rolled back to:** checkpoint {} (safety checkpoint before rollback: {})",
        i.rollback.checkpoint,
        i.rollback.safety_checkpoint.as_deref().unwrap_or("none")
    );
    let _ = writeln!(
        md,
        "- **Outcome:** {}",
        if i.verified() {
            "recovered and verified"
        } else if i.rollback.ok {
            "rolled back, verification FAILED"
        } else {
            "rollback FAILED"
        }
    );
    let _ = writeln!(md, "\n## Recovery time\n");
    let _ = writeln!(md, "| measure | value |\n|---|---|");
    for f in figures::figures(i) {
        let name = if f.span.is_empty() {
            f.name
        } else {
            format!("{} ({})", f.name, f.span)
        };
        let _ = writeln!(md, "| {name} | {} |", f.value);
    }
    let _ = writeln!(md, "\n## Timeline\n");
    let _ = writeln!(md, "| time | {} | event |\n|---|---|---|", i.since());
    for e in &i.timeline {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            clock(e.at),
            offset(e.at, start),
            e.what.replace('|', "\\|")
        );
    }
    let _ = writeln!(md, "\n## Rule\n");
    let _ = writeln!(
        md,
        "| rule | window | samples | failed | value | threshold | baseline |\n|---|---|---|---|---|---|---|"
    );
    let [value, threshold, baseline] = verdict_values(v);
    let _ = writeln!(
        md,
        "| `{}` | {} | {} | {} | {} | {} | {} |",
        v.when, v.window, v.samples, v.failed_samples, value, threshold, baseline
    );
    let _ = writeln!(md, "\n## Commands executed\n");
    let _ = writeln!(md, "| # | step | command | result | duration |\n|---|---|---|---|---|");
    for s in &i.rollback.steps {
        let result = match (s.ok, s.exit_code) {
            (true, _) => "ok".to_string(),
            (false, Some(c)) => format!("FAILED (exit {c})"),
            (false, None) => "FAILED".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | `{}` | {result} | {}ms |",
            s.seq,
            s.name,
            s.command.as_deref().unwrap_or("-"),
            s.duration_ms
        );
    }
    let first = i.rollback.steps.len() + 1;
    for (n, name) in i.rollback.not_run.iter().enumerate() {
        let _ = writeln!(md, "| {} | {name} | - | not run | - |", first + n);
    }
    for s in i.rollback.steps.iter().filter(|s| !s.output.trim().is_empty()) {
        let _ = writeln!(
            md,
            "\n<details><summary>step {} output</summary>\n\n```\n{}\n```\n</details>",
            s.seq,
            s.output.trim()
        );
    }
    if let Some(lines) = discarded_lines(&i.rollback) {
        let _ = writeln!(md, "\n## Data discarded\n");
        for l in lines {
            let _ = writeln!(md, "- {}", l.replace('|', "\\|"));
        }
    }
    let _ = writeln!(md, "\n## Validation\n");
    for line in figures::not_run(i) {
        let _ = writeln!(md, "- {line}");
    }
    for c in &i.verification {
        let _ = writeln!(
            md,
            "- [{}] {}: {} ({}ms)",
            if c.passed { "x" } else { " " },
            c.name,
            c.evidence,
            c.duration_ms
        );
    }
    if !i.diagnostics.is_empty() {
        let _ = writeln!(md, "\n## Diagnostics (captured before the rollback)\n");
        for d in &i.diagnostics {
            let _ = writeln!(
                md,
                "<details><summary>{}</summary>\n\n```\n{}\n```\n</details>\n",
                d.name,
                d.content.trim_end()
            );
        }
    }
    let fill = |s: &Option<String>| {
        s.clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "_To be filled in (`backout report --edit`)._".into())
    };
    let _ = writeln!(
        md,
        "\n## Root cause\n\n{}\n\n## Lessons learned\n\n{}",
        fill(&i.root_cause),
        fill(&i.lessons)
    );
    md
}

/// What the rollback's restores discarded of what was written since the
/// checkpoint, one sentence per database or path; `None` when no step restored
/// any (a restore that discarded nothing says so).
pub fn discarded_lines(rb: &RollbackReport) -> Option<Vec<String>> {
    let all: Vec<&crate::resource::discard::Discard> = rb.steps.iter().flat_map(|s| &s.discarded).collect();
    if all.is_empty() {
        return None;
    }
    Some(all.iter().map(|d| d.sentence()).collect())
}

/// Where an incident's report files live.
pub fn report_dir(ws: &Workspace, id: &str) -> PathBuf {
    ws.state_dir.join("reports").join(id)
}

/// Reads an incident back from its `report.json`.
pub fn load(ws: &Workspace, id: &str) -> anyhow::Result<Incident> {
    let path = report_dir(ws, id).join("report.json");
    let text = fs_err::read_to_string(&path)?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not a backout report: {e}", path.display()))
}

/// Writes `report.md`, `report.html` and `report.json` to
/// `.backout/reports/<id>/`; returns the Markdown path.
pub fn write(ws: &Workspace, i: &Incident) -> anyhow::Result<PathBuf> {
    let dir = report_dir(ws, &i.id);
    fs_err::create_dir_all(&dir)?;
    // The one writer of report files (diagnostics are part of each): only
    // redacted text reaches it.
    let put = |name: &str, text: Redacted<String>| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        crate::service::write_atomic(&path, text.as_str().as_bytes())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        Ok(path)
    };
    let md = put("report.md", ws.redactor.text(&markdown(i)))?;
    put("report.html", ws.redactor.text(&html::render(i)))?;
    let mut json = serde_json::to_value(i)?;
    // The figures as the Markdown and the console give them, for scripts.
    json["figures"] = serde_json::json!({
        "recovered": i.recovered(),
        "time_to_detect_ms": i.time_to_detect_ms(),
        "time_to_recover_ms": i.time_to_recover_ms(),
        "rollback_to_healthy_ms": i.rollback_to_healthy_ms(),
        "rto_ms": i.rto_ms,
        "within_rto": i.within_rto(),
    });
    put("report.json", ws.redactor.json(json).to_text(true))?;
    Ok(md)
}

/// The path of one format of a written report.
pub fn path_of(md: &Path, format: &str) -> PathBuf {
    md.with_file_name(format!("report.{format}"))
}
