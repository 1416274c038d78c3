//! The diagnostic bundle an incident captures when a rollback verdict fires,
//! before any rollback step changes the evidence: the last lines of service and
//! plan-named logs, service status, recent probe samples, git state, and the
//! output of plan-named commands. Every item is bounded and redacted.

use std::time::Duration;

use crate::exec::{self, Invocation};
use crate::redact::Redactor;
use crate::report::Diagnostic;
use crate::service::{self, ServiceFiles};
use crate::workspace::Workspace;

/// The most one item keeps.
pub const ITEM_LIMIT: usize = 16 * 1024;
/// The most the whole bundle keeps.
pub const TOTAL_LIMIT: usize = 256 * 1024;

/// Captures the bundle now.
pub async fn capture(ws: &Workspace) -> Vec<Diagnostic> {
    let d = &ws.plan.diagnostics;
    let mut out = Vec::new();
    if let Ok(run_dir) = ws.run_dir() {
        let mut status = String::new();
        for svc in &ws.plan.services {
            let files = ServiceFiles::new(&run_dir, &svc.name);
            status.push_str(&format!("{}: {}\n", svc.name, service::status(svc, &files)));
            let serving = service::identity::serving(svc, &files);
            if serving != service::identity::Serving::Unknown {
                status.push_str(&format!("  {}\n", serving.describe(&svc.name)));
            }
            if let Ok(text) = std::fs::read(&files.log) {
                out.push(item(
                    &ws.redactor,
                    format!("log of service {}", svc.name),
                    tail(&String::from_utf8_lossy(&text), d.lines),
                ));
            }
        }
        if !status.is_empty() {
            out.push(item(&ws.redactor, "service status".into(), status));
        }
    }
    for path in &d.logs {
        let content = match std::fs::read(path) {
            Ok(b) => tail(&String::from_utf8_lossy(&b), d.lines),
            Err(e) => format!("cannot read {}: {e}", path.display()),
        };
        out.push(item(
            &ws.redactor,
            format!("log {}", path.strip_prefix(ws.root()).unwrap_or(path).display()),
            content,
        ));
    }
    let since = ws.now_ms() - 60_000;
    if let Ok(samples) = ws.oplog.samples_between(since, ws.now_ms()) {
        let mut lines: Vec<String> = samples
            .iter()
            .rev()
            .take(40)
            .map(|s| {
                format!(
                    "{} {} {} {}",
                    s.at,
                    s.probe,
                    if s.ok { "ok" } else { "FAILED" },
                    s.error.as_deref().unwrap_or(if s.ok { "" } else { "failed" })
                )
            })
            .collect();
        lines.reverse();
        out.push(item(&ws.redactor, "recent probe samples".into(), lines.join("\n")));
    }
    if ws.plan.capture.git {
        for (name, args) in [
            ("git status", &["status", "--short", "--branch"][..]),
            ("git log", &["log", "--oneline", "-5"]),
        ] {
            let text = crate::resource::git::git(ws.root(), args, &[]).unwrap_or_else(|e| e.to_string());
            out.push(item(&ws.redactor, name.into(), text));
        }
    }
    for c in &d.commands {
        let inv = Invocation {
            argv: c.resolved(),
            cwd: ws.root().to_path_buf(),
            env: Vec::new(),
            timeout: Duration::from_secs(10),
        };
        let content = match exec::run(&inv).await {
            Ok(o) => format!("{}\n({})", o.output.trim_end(), o.describe()),
            Err(e) => format!("{e:#}"),
        };
        out.push(item(&ws.redactor, c.shown(), content));
    }
    // Bound the whole bundle.
    let mut total = 0;
    out.retain(|d| {
        total += d.content.len();
        total <= TOTAL_LIMIT
    });
    out
}

/// One item, redacted before it is cut to size: a secret that straddled the
/// cut would otherwise leave its tail behind.
fn item(r: &Redactor, name: String, content: String) -> Diagnostic {
    let name = r.text(&name).into_inner();
    let content = r.text(&content).into_inner();
    let content = if content.len() > ITEM_LIMIT {
        let mut cut = content.len() - ITEM_LIMIT;
        while !content.is_char_boundary(cut) {
            cut += 1;
        }
        format!("[... {cut} bytes cut ...]\n{}", &content[cut..])
    } else {
        content
    };
    Diagnostic { name, content }
}

fn tail(text: &str, lines: usize) -> String {
    exec::tail_lines(text, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_bounded_keeping_the_end() {
        let big = "x".repeat(ITEM_LIMIT * 2) + "THE END";
        let d = item(&Redactor::new(), "big".into(), big);
        assert!(d.content.len() < ITEM_LIMIT + 64);
        assert!(d.content.ends_with("THE END"));
        assert!(d.content.starts_with("[... "));
    }
}
