use anyhow::Context as _;
use clap::Args;

use super::{Ctx, when};
use crate::error::{CommandError, ExitCode};
use crate::report::ms;

/// Show one operation (op-N), checkpoint (cp-N) or incident (inc-N) in full
///
/// An operation with its journaled steps and timeline events; a checkpoint with
/// its time, label and what it holds (each resource, its size, what
/// `backout export` gets out of it); an incident with its verdict, recovery
/// times and report files. `--json` prints the records in full.
///
/// Example: backout show op-12
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// op-N, cp-N or inc-N
    id: String,
}

pub fn run(ctx: &Ctx, args: ShowArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let p = &ctx.printer;
    let bad = || {
        CommandError::usage(anyhow::anyhow!(
            "{:?} is not an id\n  = hint: ids look like op-12, cp-3 or inc-1",
            args.id
        ))
    };
    let (kind, num) = args.id.split_once('-').ok_or_else(bad)?;
    let num: i64 = num.parse().map_err(|_| bad())?;
    match kind {
        "op" => {
            let o = ws
                .oplog
                .operation(num)?
                .with_context(|| format!("no operation {}", args.id))
                .map_err(CommandError::usage)?;
            let steps = ws.oplog.steps(num)?;
            let events = ws.oplog.events_of_op(num)?;
            p.data(&serde_json::json!({ "operation": o, "steps": steps, "events": events }));
            let took = o
                .ended_at
                .map_or("unfinished (interrupted or running)".into(), |e| ms(e - o.started_at));
            p.out(format!(
                "{} {}: {} ({took})",
                args.id,
                o.kind,
                o.outcome.as_deref().unwrap_or("-")
            ));
            p.out(format!("  started {}", when(o.started_at)));
            p.out(format!("  arguments {}", o.args));
            if let Some(e) = &o.error {
                p.out(format!("  error {e}"));
            }
            for s in &steps {
                let d = s.ended_at.map_or("unfinished".into(), |e| ms(e - s.started_at));
                p.out(format!(
                    "  step {}. {} [{}] {d}",
                    s.seq,
                    s.name,
                    s.outcome.as_deref().unwrap_or("unfinished")
                ));
                if let Some(c) = &s.command {
                    p.out(format!("     $ {c}"));
                }
                if let Some(c) = s.exit_code {
                    p.out(format!("     exit code {c}"));
                }
            }
            for e in &events {
                p.out(format!("  {} {} {}", when(e.at), e.kind, e.detail));
            }
        }
        "cp" => {
            let c = ws
                .oplog
                .checkpoint(num)?
                .with_context(|| format!("no checkpoint {}", args.id))
                .map_err(CommandError::usage)?;
            p.data(&c);
            for line in checkpoint_lines(&args.id, &c) {
                p.out(line);
            }
        }
        "inc" => {
            let row = ws
                .oplog
                .incidents()?
                .into_iter()
                .find(|i| i.id == num)
                .with_context(|| format!("no incident {}", args.id))
                .map_err(CommandError::usage)?;
            let i = crate::report::load(&ws, &args.id)?;
            let dir = crate::report::report_dir(&ws, &args.id);
            p.data(&serde_json::json!({ "incident": row, "time_to_detect_ms": i.time_to_detect_ms(), "time_to_recover_ms": i.time_to_recover_ms(), "verified": i.verified(), "report_dir": dir }));
            p.out(format!(
                "{} {}: {}",
                args.id,
                when(row.opened_at),
                i.verdict.explanation
            ));
            if let Some(t) = i.time_to_detect_ms() {
                p.out(format!("  time to detect {}", ms(t)));
            }
            if let Some(t) = i.time_to_recover_ms() {
                p.out(format!("  time to recover {}", ms(t)));
            }
            p.out(format!(
                "  {}",
                if i.verified() {
                    "recovered and verified"
                } else {
                    "NOT verified"
                }
            ));
            for f in ["report.md", "report.html", "report.json"] {
                p.out(format!("  {}", dir.join(f).display()));
            }
        }
        _ => return Err(bad()),
    }
    Ok(ExitCode::Ok)
}

/// A checkpoint for people: when, label and phase, then one line per resource.
fn checkpoint_lines(id: &str, c: &crate::oplog::CheckpointRow) -> Vec<String> {
    use crate::output::bytes;
    let res = crate::resource::Resources::from_row(c);
    let mut out = vec![format!(
        "{id}  {}  {}",
        when(c.created_at),
        if c.complete {
            "complete"
        } else {
            "INCOMPLETE: its capture was interrupted; never used for restore"
        }
    )];
    out.push(format!("  label     {}", c.label.as_deref().unwrap_or("-")));
    if let Some(ph) = &c.phase {
        out.push(format!("  phase     {ph}"));
    }
    out.push(format!("  taken by  op-{}", c.op_id));
    out.push(format!("  size      {}", bytes(res.bytes())));
    let held = res.held();
    if held.is_empty() {
        out.push("  holds nothing".into());
        return out;
    }
    out.push("  resources".into());
    let width = held.iter().map(|h| h.name().chars().count()).max().unwrap_or(0);
    let summary = |name: &str| res.summary.iter().find(|s| s.name == name);
    for h in &held {
        let name = h.name();
        let what = if let Some(g) = res.git.as_ref().filter(|_| name == "git") {
            format!(
                "git: {} at {}{}",
                g.branch.as_deref().unwrap_or("detached HEAD"),
                g.head.as_deref().map_or("no commit", |h| &h[..h.len().min(12)]),
                summary(&name).map_or(String::new(), |s| format!(", {} files in the working tree", s.files))
            )
        } else if let Some(d) = res.databases.iter().find(|d| d.snapshot.name == name) {
            let s = &d.snapshot;
            let what = match (s.tables, s.keys) {
                (Some(t), _) => format!("{t} table{}", if t == 1 { "" } else { "s" }),
                (None, Some(k)) => format!("{k} key{}", if k == 1 { "" } else { "s" }),
                _ => "empty".into(),
            };
            format!(
                "database ({} {}): {what}, dump {}",
                s.kind,
                s.server_version,
                bytes(s.file.size)
            )
        } else if let Some(cmd) = res.commands.iter().find(|c| c.snapshot.name == name) {
            format!(
                "command `{}`: output {}",
                cmd.snapshot.save,
                bytes(cmd.snapshot.file.size)
            )
        } else {
            match summary(&name) {
                Some(s) => format!(
                    "path: {} file{}, {}",
                    s.files,
                    if s.files == 1 { "" } else { "s" },
                    bytes(s.bytes)
                ),
                None => "path".into(),
            }
        };
        out.push(format!("    {name:<width$}  {what}"));
        for w in summary(&name).map(|s| s.warnings.as_slice()).unwrap_or_default() {
            out.push(format!("    {:<width$}  warning: {w}", ""));
        }
    }
    if c.complete {
        out.push(format!("  get one out: backout export {id} RESOURCE -o FILE"));
    }
    out
}
