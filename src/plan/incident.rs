//! Validation of what feeds incidents: `[diagnostics]` and `[[notify]]`.

use std::path::PathBuf;

use serde::Serialize;

use super::raw::{self, S};
use super::{Command, Text, Validator};

/// What an incident captures before the first rollback step.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub logs: Vec<PathBuf>,
    pub commands: Vec<Command>,
    pub lines: usize,
}

impl Default for Diagnostics {
    fn default() -> Self {
        Diagnostics {
            logs: Vec::new(),
            commands: Vec::new(),
            lines: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFormat {
    Slack,
    Json,
}

/// The events a webhook can be told about.
pub const EVENTS: &[&str] = &[
    "trigger",
    "rollback_start",
    "rollback_end",
    "verification",
    "review_failed",
];

#[derive(Debug, Clone)]
pub struct Notify {
    pub webhook: Text,
    pub format: NotifyFormat,
    pub on: Vec<String>,
    pub min_severity: Severity,
}

impl Validator<'_> {
    pub(super) fn diagnostics(&mut self, d: &raw::RawDiagnostics) -> Diagnostics {
        let lines = match &d.lines {
            Some(l) if (1..=10_000).contains(l.get_ref()) => *l.get_ref() as usize,
            Some(l) => {
                self.error(
                    l.span(),
                    format!("lines must be between 1 and 10000, found {}", l.get_ref()),
                    "the last lines of each log are kept; 100 is plenty",
                );
                100
            }
            None => 100,
        };
        Diagnostics {
            logs: d.logs.iter().map(|l| self.root.join(l.get_ref())).collect(),
            commands: d.commands.iter().map(|c| self.command(c, false)).collect(),
            lines,
        }
    }

    pub(super) fn notify(&mut self, n: &S<raw::RawNotify>) -> Notify {
        let r = n.get_ref();
        let (webhook, webhook_ok) =
            self.http_url(&r.webhook, "write the webhook URL, usually as \"${SLACK_WEBHOOK_URL}\"");
        if webhook_ok && !webhook.has_secret() {
            self.warn(
                &r.webhook.span(),
                "the webhook URL is written in clear text; webhook URLs are credentials: write it as ${ENV}",
            );
        }
        let format = match r.format.as_ref().map(|f| f.get_ref().as_str()) {
            Some("slack") => NotifyFormat::Slack,
            Some("json") => NotifyFormat::Json,
            None if webhook.value.contains("hooks.slack.com") => NotifyFormat::Slack,
            None => NotifyFormat::Json,
            Some(other) => {
                let span = r.format.as_ref().map_or(n.span(), |f| f.span());
                self.error(
                    span,
                    format!("unknown notification format {other:?}"),
                    "format = \"slack\" (incoming webhook) or \"json\" (generic)",
                );
                NotifyFormat::Json
            }
        };
        let on = match &r.on {
            Some(on) => {
                for e in on.get_ref() {
                    if !EVENTS.contains(&e.as_str()) {
                        self.error(
                            on.span(),
                            format!("unknown event {e:?}"),
                            format!("events: {}", EVENTS.join(", ")),
                        );
                    }
                }
                on.get_ref().clone()
            }
            None => EVENTS.iter().map(|e| e.to_string()).collect(),
        };
        let min_severity = match r.min_severity.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("info") => Severity::Info,
            Some("warning") => Severity::Warning,
            Some("critical") => Severity::Critical,
            Some(other) => {
                let span = r.min_severity.as_ref().map_or(n.span(), |s| s.span());
                self.error(
                    span,
                    format!("unknown severity {other:?}"),
                    "min-severity = \"info\", \"warning\" or \"critical\"",
                );
                Severity::Info
            }
        };
        Notify {
            webhook,
            format,
            on,
            min_severity,
        }
    }
}
