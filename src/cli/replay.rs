use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::oplog::OpId;
use crate::watch::replay::{self, Label};

/// Run the plan's rules again over the samples past watches and baselines recorded
///
/// Each recorded watch and baseline is replayed from its first sample, against
/// the baseline that was current when it began, as a live watch would have
/// judged it. Prints the verdicts the rules would have given and when, then per
/// rule: false verdicts per hour on the healthy stretches, false rollbacks (and
/// how many at the start of a watch), and the detection delay on incidents. A
/// watch that recorded a rollback verdict counts as an incident that began at
/// its deploy; every other one as healthy (--incident and --healthy say
/// otherwise). Changes nothing.
///
/// Example: backout replay --rules backout.edited.toml --incident op-12@+90s
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Use the rules of this plan file (an edited copy) instead of the plan's
    #[arg(long, value_name = "PATH")]
    rules: Option<PathBuf>,
    /// Replay only these operations (op-N; repeat)
    #[arg(long = "op", value_name = "OP")]
    ops: Vec<String>,
    /// Only operations started within this long (e.g. 24h, 7d)
    #[arg(long, value_name = "DURATION", value_parser = super::baseline::parse_duration)]
    since: Option<Duration>,
    /// This operation was an incident that began at OFFSET after its start
    /// [default OFFSET: its deploy time] (op-N or op-N@+90s; repeat)
    #[arg(long = "incident", value_name = "OP[@OFFSET]")]
    incidents: Vec<String>,
    /// This operation was healthy, whatever it recorded (op-N; repeat)
    #[arg(long = "healthy", value_name = "OP")]
    healthy: Vec<String>,
    /// Print every change of verdict, not only the verdicts
    #[arg(long)]
    all: bool,
}

fn op_id(s: &str) -> Result<OpId, CommandError> {
    s.trim_start_matches("op-").parse().map_err(|_| {
        CommandError::usage(anyhow::anyhow!(
            "{s:?} is not an operation id\n  = hint: operation ids look like op-12 (see `backout log`)"
        ))
    })
}

pub fn run(ctx: &Ctx, args: ReplayArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let plan = match &args.rules {
        Some(path) => {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                ctx.cwd.join(path)
            };
            crate::plan::Plan::load(&path, &ctx.env)?
        }
        None => ws.plan.clone(),
    };
    let mut onsets: HashMap<OpId, Option<Duration>> = HashMap::new();
    for i in &args.incidents {
        let (op, offset) = match i.split_once('@') {
            Some((op, off)) => (
                op,
                Some(
                    super::baseline::parse_duration(off.trim_start_matches('+'))
                        .map_err(|e| CommandError::usage(anyhow::anyhow!("--incident {i}: {e}")))?,
                ),
            ),
            None => (i.as_str(), None),
        };
        onsets.insert(op_id(op)?, offset);
    }
    let healthy: Vec<OpId> = args.healthy.iter().map(|h| op_id(h)).collect::<Result<_, _>>()?;
    let only: Vec<OpId> = args.ops.iter().map(|o| op_id(o)).collect::<Result<_, _>>()?;
    let since = args.since.map_or(i64::MIN, |d| ws.now_ms() - d.as_millis() as i64);
    let mut ops = Vec::new();
    for kind in ["watch", "baseline"] {
        ops.extend(ws.oplog.operations_since(Some(kind), since, usize::MAX)?);
    }
    ops.retain(|o| only.is_empty() || only.contains(&o.id));
    ops.sort_by_key(|o| o.started_at);
    let mut labelled = Vec::new();
    for o in ops {
        let label = match onsets.get(&o.id) {
            Some(Some(off)) => Label::Incident {
                onset: o.started_at + off.as_millis() as i64,
            },
            Some(None) => Label::Incident {
                onset: o.args["deploy_at"].as_i64().unwrap_or(o.started_at),
            },
            None if healthy.contains(&o.id) => Label::Healthy,
            None => replay::default_label(&ws.oplog, &o)?,
        };
        labelled.push((o, label));
    }
    let r = replay::replay(&ws.oplog, &plan, &labelled)?;
    let p = &ctx.printer;
    p.data(&r);
    if p.json() {
        return Ok(ExitCode::Ok);
    }
    let d = |v: i64| crate::report::ms(v);
    p.status(format!(
        "replayed {} operation(s) with the rules of {}: {} of healthy samples",
        r.ops.len(),
        super::rel(&plan.path, &ctx.cwd),
        d(r.healthy_ms)
    ));
    for o in &r.ops {
        let span = match (o.first_sample_at, o.last_sample_at) {
            (Some(a), Some(b)) => d(b - a),
            _ => "-".into(),
        };
        let what = match o.label {
            Label::Healthy => "healthy".to_string(),
            Label::Incident { onset } => format!("incident from +{}", d(onset - o.first_sample_at.unwrap_or(onset))),
        };
        p.out(format!(
            "op-{} {} {} ({span}, {} samples): {what}",
            o.op,
            o.kind,
            super::when(o.started_at),
            o.samples
        ));
        for c in &o.changes {
            let verdict = matches!(
                c.outcome,
                crate::watch::Outcome::Investigate | crate::watch::Outcome::Rollback
            );
            if !args.all && !verdict {
                continue;
            }
            let tag = if c.false_verdict { " [false]" } else { "" };
            p.out(format!("  +{:<8} {}{tag}", d(c.offset_ms), c.explanation));
        }
        for (rule, delay) in &o.detected {
            p.out(match delay {
                Some(ms) => format!("  {rule}: detected {} after the onset", d(*ms)),
                None => format!("  {rule}: not detected"),
            });
        }
    }
    p.out(String::new());
    p.out(p.bold(&format!(
        "{:<16} {:>15} {:>10} {:>18} {:>16}",
        "rule", "false verdicts", "per hour", "false rollbacks", "detected"
    )));
    for s in &r.rules {
        let delay = match (s.median_delay_ms, s.max_delay_ms) {
            (Some(m), Some(x)) => format!(" (median {}, max {})", d(m), d(x)),
            _ => String::new(),
        };
        p.out(format!(
            "{:<16} {:>15} {:>10.2} {:>18} {:>16}{delay}",
            s.rule,
            s.false_verdicts,
            s.false_per_hour,
            format!("{} ({} at start)", s.false_rollbacks, s.false_rollbacks_at_start),
            format!("{} of {}", s.detected, s.incidents),
        ));
    }
    Ok(ExitCode::Ok)
}
