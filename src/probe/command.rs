//! The command probe: runs a command in its own process group with the probe's
//! timeout (see [`crate::exec`]); healthy on the expected exit code and, when the
//! plan asks, an output match. `number` picks the probe's value out of the output.

use std::time::Duration;

use crate::exec::{self, Invocation};
use crate::oplog::SampleRow;
use crate::plan::CommandProbe;

pub async fn sample(c: &CommandProbe, timeout: Duration) -> SampleRow {
    let inv = Invocation {
        argv: c.command.resolved(),
        cwd: c.cwd.clone(),
        env: Vec::new(),
        timeout,
    };
    let mut row = SampleRow::default();
    let out = match exec::run(&inv).await {
        Ok(o) => o,
        Err(e) => {
            row.error = Some(format!("`{}`: {e}", c.command.shown()));
            return row;
        }
    };
    row.latency_ms = Some(out.duration.as_secs_f64() * 1000.0);
    if let Some(code) = out.exit_code {
        row.fields.insert("exit_code".into(), f64::from(code));
    }
    if let Some(re) = &c.number {
        row.value = parse_number(re, &out.output);
    }
    row.error = if out.timed_out || out.exit_code != Some(c.exit_code) {
        Some(format!(
            "`{}`: {}, expected exit code {}{}",
            c.command.shown(),
            out.describe(),
            c.exit_code,
            last_line(&out.output)
        ))
    } else if let Some(re) = c.output_match.as_ref().filter(|re| !re.is_match(&out.output)) {
        Some(format!(
            "`{}`: output does not match /{}/{}",
            c.command.shown(),
            re.as_str(),
            last_line(&out.output)
        ))
    } else if let (Some(re), None) = (&c.number, row.value) {
        Some(format!(
            "`{}`: no number matching /{}/ in the output{}",
            c.command.shown(),
            re.as_str(),
            last_line(&out.output)
        ))
    } else {
        None
    };
    row.ok = row.error.is_none();
    row
}

/// The first match's first group (or the whole match), as a number.
pub fn parse_number(re: &regex::Regex, output: &str) -> Option<f64> {
    let caps = re.captures(output)?;
    let m = caps.get(1).or_else(|| caps.get(0))?;
    m.as_str().trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn last_line(output: &str) -> String {
    let tail = exec::tail_lines(output, 1);
    if tail.is_empty() {
        String::new()
    } else {
        format!(" (last line: {})", tail.chars().take(200).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Command, Text};

    fn probe(line: &str) -> CommandProbe {
        CommandProbe {
            command: Command {
                argv: vec![Text::plain(line)],
                shell: true,
            },
            cwd: std::env::temp_dir(),
            exit_code: 0,
            output_match: None,
            number: None,
        }
    }

    #[tokio::test]
    async fn exit_code_match_and_number() {
        let mut c = probe("echo 'queue depth: 42'; exit 0");
        c.number = Some(regex::Regex::new(r"depth: (\d+)").unwrap());
        c.output_match = Some(regex::Regex::new("queue").unwrap());
        let s = sample(&c, Duration::from_secs(5)).await;
        assert!(s.ok, "{s:?}");
        assert_eq!(s.value, Some(42.0));
        assert_eq!(s.fields["exit_code"], 0.0);

        let s = sample(&probe("echo boom; exit 3"), Duration::from_secs(5)).await;
        assert!(!s.ok);
        assert_eq!(s.fields["exit_code"], 3.0);
        assert!(s.error.as_deref().unwrap().contains("exit code 3"), "{s:?}");
        assert!(s.error.as_deref().unwrap().contains("boom"), "{s:?}");

        let mut c = probe("echo garbage");
        c.number = Some(regex::Regex::new(r"(\d+\.?\d*)").unwrap());
        let s = sample(&c, Duration::from_secs(5)).await;
        assert!(!s.ok);
        assert!(s.error.unwrap().contains("no number"));
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_the_timeout() {
        let s = sample(&probe("sleep 300"), Duration::from_millis(300)).await;
        assert!(!s.ok);
        assert!(s.error.as_deref().unwrap().contains("timed out"), "{s:?}");
        assert!(s.latency_ms.unwrap() < 10_000.0);
    }

    #[tokio::test]
    async fn a_missing_program_fails_the_sample() {
        let c = CommandProbe {
            command: Command {
                argv: vec![Text::plain("no-such-program-xyz")],
                shell: false,
            },
            ..probe("")
        };
        let s = sample(&c, Duration::from_secs(1)).await;
        assert!(!s.ok);
        assert!(s.error.unwrap().contains("no-such-program-xyz"));
    }
}
