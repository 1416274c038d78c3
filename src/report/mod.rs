//! Incident reports: what triggered, the timeline, the commands run with exit
//! codes and durations, the validation results and the recovery time against the
//! objective; written as Markdown and JSON to `.backout/reports/inc-N/`.

use std::fmt::Write as _;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use crate::oplog::SampleRow;
use crate::plan::units;
use crate::rollback::RollbackReport;
use crate::verify::CheckResult;
use crate::watch::Verdict;
use crate::workspace::Workspace;

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub at: i64,
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: String,
    pub plan: String,
    pub verdict: Verdict,
    pub deploy_at: Option<i64>,
    pub first_bad_at: Option<i64>,
    pub verdict_at: i64,
    pub rollback: RollbackReport,
    pub verification: Vec<CheckResult>,
    pub rto_ms: Option<u64>,
    pub timeline: Vec<TimelineEntry>,
    /// Samples from the deploy to the end, for charts.
    #[serde(skip)]
    pub samples: Vec<SampleRow>,
}

impl Incident {
    /// From the first bad sample to the verdict.
    pub fn time_to_detect_ms(&self) -> Option<i64> {
        self.first_bad_at.map(|f| self.verdict_at - f)
    }

    /// From the verdict to healthy again: what the rollback took.
    pub fn time_to_recover_ms(&self) -> Option<i64> {
        self.rollback.healthy_at.map(|h| h - self.verdict_at)
    }

    pub fn verified(&self) -> bool {
        self.rollback.ok && self.verification.iter().all(|c| c.passed)
    }

    /// Whether recovery met the objective (`None` without an objective or recovery).
    pub fn within_rto(&self) -> Option<bool> {
        Some(self.time_to_recover_ms()? as u64 <= self.rto_ms?)
    }
}

/// Builds the timeline from the incident's moments, in time order.
pub fn timeline(i: &Incident) -> Vec<TimelineEntry> {
    let mut t = Vec::new();
    if let Some(d) = i.deploy_at {
        t.push(TimelineEntry {
            at: d,
            what: "deploy".into(),
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
    t.push(TimelineEntry {
        at: i.rollback.started_at,
        what: "rollback start".into(),
    });
    for s in &i.rollback.steps {
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
        at: i.rollback.ended_at,
        what: format!("rollback end ({})", if i.rollback.ok { "ok" } else { "failed" }),
    });
    if let Some(h) = i.rollback.healthy_at {
        t.push(TimelineEntry {
            at: h,
            what: "healthy again".into(),
        });
    }
    t.sort_by_key(|e| e.at);
    t
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
    if let Some(t) = i.time_to_detect_ms() {
        let _ = writeln!(md, "| time to detect (first bad sample → verdict) | {} |", ms(t));
    }
    if let Some(t) = i.time_to_recover_ms() {
        let _ = writeln!(md, "| time to recover (verdict → healthy) | {} |", ms(t));
    }
    if let (Some(f), Some(h)) = (i.first_bad_at, i.rollback.healthy_at) {
        let _ = writeln!(md, "| impact (first bad sample → healthy) | {} |", ms(h - f));
    }
    if let Some(rto) = i.rto_ms {
        let verdict = match i.within_rto() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not recovered",
        };
        let _ = writeln!(md, "| recovery-time objective | {} ({verdict}) |", ms(rto as i64));
    }
    let _ = writeln!(md, "\n## Timeline\n");
    let _ = writeln!(md, "| time | since deploy | event |\n|---|---|---|");
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
    let f = |x: Option<f64>| x.map_or("-".into(), units::trim_float);
    let _ = writeln!(
        md,
        "| `{}` | {} | {} | {} | {} | {} | {} |",
        v.when,
        v.window,
        v.samples,
        v.failed_samples,
        f(v.value),
        f(v.threshold),
        f(v.baseline)
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
    for s in i.rollback.steps.iter().filter(|s| !s.output.trim().is_empty()) {
        let _ = writeln!(
            md,
            "\n<details><summary>step {} output</summary>\n\n```\n{}\n```\n</details>",
            s.seq,
            s.output.trim()
        );
    }
    let _ = writeln!(md, "\n## Validation\n");
    if i.verification.is_empty() {
        let _ = writeln!(md, "No `[verify]` checks in the plan.");
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
    let _ = writeln!(
        md,
        "\n## Root cause\n\n_To be filled in._\n\n## Lessons learned\n\n_To be filled in._"
    );
    md
}

/// Writes `report.md` and `report.json` to `.backout/reports/<id>/`; returns the Markdown path.
pub fn write(ws: &Workspace, i: &Incident) -> anyhow::Result<PathBuf> {
    let dir = ws.state_dir.join("reports").join(&i.id);
    fs_err::create_dir_all(&dir)?;
    let md = ws.redactor.redact(&markdown(i)).into_owned();
    let path = dir.join("report.md");
    crate::service::write_atomic(&path, md.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    let mut json = serde_json::to_value(i)?;
    ws.redactor.redact_json(&mut json);
    let jpath = dir.join("report.json");
    crate::service::write_atomic(&jpath, serde_json::to_string_pretty(&json)?.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", jpath.display()))?;
    Ok(path)
}
