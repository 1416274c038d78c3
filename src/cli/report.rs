use std::io::IsTerminal;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::report;

/// Show an incident report, open it, or fill in its root cause and lessons
///
/// Every incident's report is written to .backout/reports/inc-N/ as Markdown,
/// self-contained HTML with SVG charts, and JSON. With no INCIDENT, the latest.
///
/// Example: backout report inc-3 --format html --open
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The incident (inc-N) [default: the latest]
    incident: Option<String>,
    /// What to print
    #[arg(long, value_enum, default_value_t = Format::Md)]
    format: Format,
    /// Open the HTML report in a browser (xdg-open)
    #[arg(long)]
    open: bool,
    /// Write the root cause and lessons learned in $EDITOR; the text is kept in the log
    #[arg(long)]
    edit: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Md,
    Html,
    Json,
}

pub fn run(ctx: &Ctx, args: ReportArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let incidents = ws.oplog.incidents()?;
    let row = match &args.incident {
        None => incidents
            .first()
            .context("no incident yet: reports are written when a rollback verdict fires")
            .map_err(CommandError::usage)?,
        Some(name) => {
            let id: i64 = name
                .trim_start_matches("inc-")
                .parse()
                .map_err(|_| CommandError::usage(anyhow::anyhow!("{name:?} is not an incident id\n  = hint: incident ids look like inc-3; `backout log --kind watch` lists them")))?;
            incidents
                .iter()
                .find(|i| i.id == id)
                .with_context(|| format!("no incident {name}"))
                .map_err(CommandError::usage)?
        }
    };
    let id = format!("inc-{}", row.id);
    let mut incident = report::load(&ws, &id)?;

    if args.edit {
        let _lock = ws.lock("report --edit")?;
        let editor = ctx
            .env
            .var("VISUAL")
            .or(ctx.env.var("EDITOR"))
            .unwrap_or("vi")
            .to_string();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .suffix(".md")
            .tempfile()
            .context("creating the file to edit")?;
        let template = format!(
            "# Incident {id}: {}. Lines starting with # are ignored.\n# {}\n\n## Root cause\n\n{}\n\n## Lessons learned\n\n{}\n",
            incident.plan,
            incident.verdict.explanation,
            incident.root_cause.as_deref().unwrap_or(""),
            incident.lessons.as_deref().unwrap_or("")
        );
        fs_err::write(tmp.path(), template)?;
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(tmp.path())
            .status()
            .with_context(|| format!("running the editor {editor:?}"))?;
        if !status.success() {
            return Err(CommandError::failure(anyhow::anyhow!(
                "the editor {editor:?} failed ({status}); nothing was saved"
            )));
        }
        let text = fs_err::read_to_string(tmp.path())?;
        let (root_cause, lessons) = parse_edit(&text);
        ws.oplog.event(
            row.op_id,
            ws.now_ms(),
            "report_edit",
            &serde_json::json!({ "incident": id, "root_cause": root_cause, "lessons": lessons }),
        )?;
        incident.root_cause = Some(root_cause);
        incident.lessons = Some(lessons);
        let path = report::write(&ws, &incident)?;
        ctx.printer
            .status(format!("saved; report rewritten: {}", path.display()));
        return Ok(ExitCode::Ok);
    }

    let dir = report::report_dir(&ws, &id);
    if args.open {
        let html = dir.join("report.html");
        let opened = std::io::stdout().is_terminal()
            && std::process::Command::new("xdg-open")
                .arg(&html)
                .status()
                .is_ok_and(|s| s.success());
        if !opened {
            ctx.printer.out(html.display().to_string());
        }
        return Ok(ExitCode::Ok);
    }
    let file = dir.join(match args.format {
        Format::Md => "report.md",
        Format::Html => "report.html",
        Format::Json => "report.json",
    });
    let text = fs_err::read_to_string(&file)?;
    // Printed as data in every mode: the report is what was asked for.
    if ctx.printer.json() {
        let v: serde_json::Value =
            serde_json::from_str(&fs_err::read_to_string(dir.join("report.json"))?).map_err(CommandError::failure)?;
        ctx.printer.data(&v);
    } else {
        ctx.printer.out(text.trim_end());
    }
    Ok(ExitCode::Ok)
}

/// Splits an edited file into (root cause, lessons learned).
fn parse_edit(text: &str) -> (String, String) {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("# ") && *l != "#")
        .map(|l| format!("{l}\n"))
        .collect();
    let after = |heading: &str| body.split_once(heading).map(|(_, rest)| rest.to_string());
    let cause_and_rest = after("## Root cause").unwrap_or_default();
    let (cause, lessons) = match cause_and_rest.split_once("## Lessons learned") {
        Some((c, l)) => (c.to_string(), l.to_string()),
        None => (cause_and_rest, after("## Lessons learned").unwrap_or_default()),
    };
    (cause.trim().to_string(), lessons.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_edit;

    #[test]
    fn edits_split_into_sections() {
        let t = "# Incident inc-1\n\n## Root cause\n\nThe cache\nwas cold.\n\n## Lessons learned\n\nCanary first.\n";
        assert_eq!(parse_edit(t), ("The cache\nwas cold.".into(), "Canary first.".into()));
        assert_eq!(parse_edit("nothing"), (String::new(), String::new()));
    }
}
