//! The one place that writes to the terminal. Data goes to stdout (as text, or
//! JSON with `--json`); progress, warnings and errors go to stderr. Everything is
//! passed through the [`Redactor`] first, and colour follows `NO_COLOR` and
//! whether stderr is a terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use crate::redact::{Redacted, Redactor};

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
    /// Where the lines go: the terminal, or a buffer (tests).
    captured: Option<Arc<Mutex<String>>>,
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Out,
    Err,
}

impl Printer {
    pub fn new(json: bool, verbosity: Verbosity, no_color: bool, redactor: Redactor) -> Self {
        let color = !no_color && std::io::stderr().is_terminal();
        Printer {
            json,
            verbosity,
            color,
            redactor,
            captured: None,
        }
    }

    /// A printer that writes stdout's and stderr's lines into a buffer, read
    /// with [`Printer::captured`]: for tests of what a command prints.
    pub fn capturing(json: bool, redactor: Redactor) -> Self {
        Printer {
            json,
            verbosity: Verbosity::Normal,
            color: false,
            redactor,
            captured: Some(Arc::default()),
        }
    }

    /// What a [`Printer::capturing`] printer has printed so far.
    pub fn captured(&self) -> String {
        self.captured
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    pub fn json(&self) -> bool {
        self.json
    }

    pub fn verbose(&self) -> bool {
        self.verbosity == Verbosity::Verbose
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Whether progress may redraw lines (a terminal, not quiet, not JSON).
    pub fn interactive(&self) -> bool {
        self.captured.is_none() && self.verbosity != Verbosity::Quiet && std::io::stderr().is_terminal()
    }

    /// The one place bytes reach the terminal: only redacted text gets here,
    /// written whole (with its newline, if `newline`) under one lock.
    fn emit(&self, stream: Stream, text: Redacted<String>, newline: bool, flush: bool) {
        let end = if newline { "\n" } else { "" };
        if let Some(buf) = &self.captured {
            let mut buf = buf.lock().unwrap_or_else(|e| e.into_inner());
            buf.push_str(text.as_str());
            buf.push_str(end);
            return;
        }
        fn put(mut w: impl Write, text: &str, end: &str, flush: bool) -> std::io::Result<()> {
            w.write_all(text.as_bytes())?;
            w.write_all(end.as_bytes())?;
            if flush { w.flush() } else { Ok(()) }
        }
        let _ = match stream {
            Stream::Out => put(std::io::stdout().lock(), text.as_str(), end, flush),
            Stream::Err => put(std::io::stderr().lock(), text.as_str(), end, flush),
        };
    }

    /// `line` and a newline, redacted, on `stream`.
    fn line(&self, stream: Stream, line: &str) {
        self.emit(stream, self.redactor.text(line), true, false);
    }

    /// A line of data on stdout (human mode only).
    pub fn out(&self, line: impl AsRef<str>) {
        if self.json {
            return;
        }
        self.line(Stream::Out, line.as_ref());
    }

    /// A JSON document on stdout (JSON mode only).
    pub fn data(&self, value: &impl serde::Serialize) {
        if !self.json {
            return;
        }
        self.emit(Stream::Out, self.redactor.value(value).to_text(true), true, false);
    }

    /// One JSON value on one line (for streams such as `watch --json`).
    pub fn json_line(&self, value: &impl serde::Serialize) {
        self.emit(Stream::Out, self.redactor.value(value).to_text(false), true, true);
    }

    /// Progress on stderr; hidden with `--quiet`.
    pub fn status(&self, line: impl AsRef<str>) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        self.line(Stream::Err, line.as_ref());
    }

    /// Redraws a block of lines on stderr in place: moves up over the `previous`
    /// lines drawn last time and clears them first. For live views on a terminal.
    pub fn redraw(&self, previous: usize, lines: &[String]) {
        let mut buf = String::new();
        if previous > 0 {
            buf.push_str(&format!("\x1b[{previous}F"));
        }
        for l in lines {
            // Each line on its own: after the escape code's `K`, a line's
            // first word has no word boundary for a pattern to match.
            buf.push_str("\x1b[2K");
            buf.push_str(&self.redactor.redact(l));
            buf.push('\n');
        }
        // The block shrank: clear what is left below it.
        buf.push_str("\x1b[J");
        self.emit(Stream::Err, self.redactor.text(&buf), false, true);
    }

    pub fn warn(&self, line: impl AsRef<str>) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        self.line(Stream::Err, &format!("{} {}", self.yellow("warning:"), line.as_ref()));
    }

    /// Errors are always shown, even with `--quiet`.
    pub fn error(&self, line: impl AsRef<str>) {
        self.line(Stream::Err, &format!("{} {}", self.red("error:"), line.as_ref()));
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

    /// A progress bar on stderr with files, bytes and rate; hidden unless
    /// stderr is a terminal and neither `--quiet` nor `--json` is given.
    pub fn progress(&self) -> Bar {
        let bar = if self.interactive() && !self.json {
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(bar_style());
        Bar {
            bar,
            files: Default::default(),
            total_files: Default::default(),
            redactor: self.redactor.clone(),
        }
    }
}

/// The `tracing` sink: each formatted log event goes through the redactor on
/// its way to stderr. The redactor is shared, so secrets learnt when the plan
/// loads apply to every later line.
#[derive(Debug, Clone)]
pub struct LogWriter {
    redactor: Redactor,
    /// A buffer instead of stderr (tests).
    captured: Option<Arc<Mutex<String>>>,
}

impl LogWriter {
    pub fn new(redactor: Redactor) -> Self {
        LogWriter {
            redactor,
            captured: None,
        }
    }

    /// A writer into a buffer, read with [`LogWriter::captured`].
    pub fn capturing(redactor: Redactor) -> Self {
        LogWriter {
            redactor,
            captured: Some(Arc::default()),
        }
    }

    pub fn captured(&self) -> String {
        self.captured
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }
}

/// One event's bytes: `tracing`'s formatter writes each event whole, in one
/// `write_all`, so redaction sees complete lines.
#[derive(Debug)]
pub struct LogLine {
    writer: LogWriter,
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let clean = self.writer.redactor.text(&String::from_utf8_lossy(buf));
        match &self.writer.captured {
            Some(c) => c.lock().unwrap_or_else(|e| e.into_inner()).push_str(clean.as_str()),
            None => std::io::stderr().lock().write_all(clean.as_str().as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine { writer: self.clone() }
    }
}

/// Files and bytes against their totals, with the rate and time left.
fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:25}] {msg} files, {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// A stage whose totals are not known yet (a walk): a count and a spinner.
fn count_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{prefix} {spinner} {msg} entries")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
}

/// The progress bar behind [`Printer::progress`].
#[derive(Debug)]
pub struct Bar {
    bar: indicatif::ProgressBar,
    files: std::sync::atomic::AtomicU64,
    total_files: std::sync::atomic::AtomicU64,
    /// Stage names hold paths: redacted like every line.
    redactor: Redactor,
}

impl crate::store::Progress for Bar {
    fn begin(&self, what: &str, files: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.files.store(0, Relaxed);
        self.total_files.store(files, Relaxed);
        // Style, prefix and totals first: the reset draws.
        self.bar.set_style(if files == 0 && bytes == 0 {
            count_style()
        } else {
            bar_style()
        });
        self.bar.set_prefix(self.redactor.text(what).into_inner());
        self.bar.set_message(if files == 0 && bytes == 0 {
            "0".to_string()
        } else {
            format!("0/{files}")
        });
        self.bar.set_length(bytes);
        self.bar.reset();
        // Every stage shows at least once, even right after a burst of
        // updates used up the redraw budget (20 a second).
        self.bar.force_draw();
    }

    fn advance(&self, files: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let done = self.files.fetch_add(files, Relaxed) + files;
        self.bar.inc(bytes);
        match self.total_files.load(Relaxed) {
            0 => self.bar.set_message(done.to_string()),
            total => self.bar.set_message(format!("{done}/{total}")),
        }
    }

    fn end(&self) {
        self.bar.finish_and_clear();
    }
}

/// Bytes as people read them: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log lines go through the same redactor as the terminal, including
    /// secrets it learns after logging was set up (when the plan loads).
    #[test]
    fn log_lines_are_redacted_with_secrets_learnt_later() {
        let r = Redactor::new();
        let w = LogWriter::capturing(r.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(w.clone())
            .with_ansi(false)
            .finish();
        r.add(["hunter2-s3cret".to_string()]);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(url = "https://u:pw1@h/x", "restored with token hunter2-s3cret");
        });
        let log = w.captured();
        assert!(log.contains("restored with token ********"), "{log}");
        assert!(log.contains("https://u:********@h/x"), "{log}");
        assert!(!log.contains("hunter2-s3cret") && !log.contains("pw1"), "{log}");
    }

    #[test]
    fn every_printer_line_is_redacted() {
        let r = Redactor::new();
        r.add(["hunter2-s3cret".to_string()]);
        let p = Printer::capturing(false, r.clone());
        p.out("out hunter2-s3cret");
        p.status("status hunter2-s3cret");
        p.warn("warn hunter2-s3cret");
        p.error("error hunter2-s3cret");
        p.redraw(0, &["Authorization: Bearer abc".to_string()]);
        let j = Printer::capturing(true, r);
        j.data(&serde_json::json!({"hunter2-s3cret": ["hunter2-s3cret"]}));
        j.json_line(&serde_json::json!({"k": "hunter2-s3cret"}));
        let all = p.captured() + &j.captured();
        assert!(!all.contains("hunter2-s3cret") && !all.contains("abc"), "{all}");
        assert_eq!(all.matches("********").count(), 8, "{all}");
    }
}
