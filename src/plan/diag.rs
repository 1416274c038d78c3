//! Plan errors that point at the exact place in `backout.toml`: file, line,
//! column, the line itself with a caret under the bad value, and a hint.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a plan file, located by byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The text of the offending line.
    pub source_line: String,
    /// Caret width, in characters, at least 1.
    pub width: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl PlanError {
    /// Locates `span` (byte offsets into `source`) and builds the error.
    pub fn at(file: &Path, source: &str, span: Range<usize>, message: impl Into<String>, hint: Option<String>) -> Self {
        // A span from a computed offset may fall inside a character: widen it
        // to whole characters rather than slice one apart.
        let mut start = span.start.min(source.len());
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = span.end.clamp(start, source.len());
        while !source.is_char_boundary(end) {
            end += 1;
        }
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..].find('\n').map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let source_line = source[line_start..line_end].trim_end_matches('\r').to_string();
        let width = source[start..end.min(line_end)].chars().count().max(1);
        PlanError {
            file: file.to_path_buf(),
            line,
            column,
            source_line,
            width,
            message: message.into(),
            hint,
        }
    }

    /// An error about the file as a whole (no location inside it).
    pub fn whole_file(file: &Path, message: impl Into<String>, hint: Option<String>) -> Self {
        PlanError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            source_line: String::new(),
            width: 0,
            message: message.into(),
            hint,
        }
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        // The gutter is as wide as the line number, so `|` and `= hint` line up.
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        if self.line == 0 {
            write!(f, "  --> {}", self.file.display())?;
        } else {
            writeln!(f, "{pad}--> {}:{}:{}", self.file.display(), self.line, self.column)?;
            writeln!(f, "{pad} |")?;
            writeln!(f, "{num} | {}", self.source_line)?;
            let lead: String = self
                .source_line
                .chars()
                .take(self.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "{pad} | {lead}{}", "^".repeat(self.width))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n{pad} = hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanError {}

/// Every problem found in one plan, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanErrors(pub Vec<PlanError>);

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n\n{} problems in the plan", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanErrors {}

/// The closest of `candidates` to `word`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let normalized = word.replace('_', "-").to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&normalized, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_the_value() {
        let src = "[plan]\nname = \"x\"\nrto = \"5 minutes\"\n";
        let start = src.find("\"5 minutes\"").unwrap();
        let e = PlanError::at(
            Path::new("backout.toml"),
            src,
            start..start + 11,
            "expected a duration like 30s or 5m, found \"5 minutes\"",
            Some("write 5m".into()),
        );
        assert_eq!((e.line, e.column, e.width), (3, 7, 11));
        assert_eq!(
            e.to_string(),
            "expected a duration like 30s or 5m, found \"5 minutes\"\n \
             --> backout.toml:3:7\n  |\n3 | rto = \"5 minutes\"\n  |       ^^^^^^^^^^^\n  = hint: write 5m"
        );
    }

    /// Offsets inside a character are widened to it, never a panic.
    #[test]
    fn a_span_inside_a_character_covers_the_character() {
        let src = "name = \"café\"\n";
        let e_acute = src.find('é').unwrap();
        for span in [e_acute + 1..e_acute + 1, e_acute + 1..e_acute + 2, e_acute..e_acute + 1] {
            let e = PlanError::at(Path::new("p.toml"), src, span.clone(), "m", None);
            assert_eq!((e.line, e.column, e.width), (1, 12, 1), "{span:?}");
        }
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            did_you_mean("stable_for", &["stable-for", "checks"]),
            Some("stable-for")
        );
        assert_eq!(did_you_mean("evrey", &["every", "timeout"]), Some("every"));
        assert_eq!(did_you_mean("zzzzzz", &["every", "timeout"]), None);
    }
}
