//! The one place that writes to the terminal. Data goes to stdout (as text, or
//! JSON with `--json`); progress, warnings and errors go to stderr. Everything is
//! passed through the [`Redactor`] first, and colour follows `NO_COLOR` and
//! whether stderr is a terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};

use crate::redact::Redactor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone)]
pub struct Printer {
    json: bool,
    verbosity: Verbosity,
    color: bool,
    redactor: Redactor,
}

impl Printer {
    pub fn new(json: bool, verbosity: Verbosity, no_color: bool, redactor: Redactor) -> Self {
        let color = !no_color && std::io::stderr().is_terminal();
        Printer {
            json,
            verbosity,
            color,
            redactor,
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Whether progress may redraw lines (a terminal, not quiet, not JSON).
    pub fn interactive(&self) -> bool {
        self.verbosity != Verbosity::Quiet && std::io::stderr().is_terminal()
    }

    /// A line of data on stdout (human mode only).
    pub fn out(&self, line: impl AsRef<str>) {
        if self.json {
            return;
        }
        let text = self.redactor.redact(line.as_ref()).into_owned();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }

    /// A JSON document on stdout (JSON mode only).
    pub fn data(&self, value: &impl serde::Serialize) {
        if !self.json {
            return;
        }
        let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.redactor.redact_json(&mut v);
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    }

    /// One JSON value on one line (for streams such as `watch --json`).
    pub fn json_line(&self, value: &impl serde::Serialize) {
        let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.redactor.redact_json(&mut v);
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", serde_json::to_string(&v).unwrap_or_default());
        let _ = stdout.flush();
    }

    /// Progress on stderr; hidden with `--quiet`.
    pub fn status(&self, line: impl AsRef<str>) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        let text = self.redactor.redact(line.as_ref()).into_owned();
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// Redraws a block of lines on stderr in place: moves up over the `previous`
    /// lines drawn last time and clears them first. For live views on a terminal.
    pub fn redraw(&self, previous: usize, lines: &[String]) {
        let mut err = std::io::stderr().lock();
        let mut buf = String::new();
        if previous > 0 {
            buf.push_str(&format!("\x1b[{previous}F"));
        }
        for l in lines {
            buf.push_str("\x1b[2K");
            buf.push_str(&self.redactor.redact(l));
            buf.push('\n');
        }
        // The block shrank: clear what is left below it.
        buf.push_str("\x1b[J");
        let _ = err.write_all(buf.as_bytes());
        let _ = err.flush();
    }

    pub fn warn(&self, line: impl AsRef<str>) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        let text = self.redactor.redact(line.as_ref()).into_owned();
        let _ = writeln!(std::io::stderr().lock(), "{} {text}", self.yellow("warning:"));
    }

    /// Errors are always shown, even with `--quiet`.
    pub fn error(&self, line: impl AsRef<str>) {
        let text = self.redactor.redact(line.as_ref()).into_owned();
        let _ = writeln!(std::io::stderr().lock(), "{} {text}", self.red("error:"));
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}
