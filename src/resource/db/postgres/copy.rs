//! Table data as `pg_dump` and `pg_restore` write it: `COPY s.t (cols) FROM
//! stdin;`, one line per row in COPY's text format (fields separated by tabs,
//! `\N` for NULL, backslash escapes), then `\.`. Read as a stream from the
//! tool's stdout, so a large table never sits in memory; turned into INSERTs
//! or CSV for `backout export --table`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::super::{DbError, ServerUrl};

/// The start of one table's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
}

impl Header {
    /// `schema.table`, quoted where SQL needs it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
    /// `schema.table` as people read it.
    pub fn shown(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// `name`, double-quoted unless it is a plain lower-case identifier.
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Reads one identifier (quoted or not) from the start of `s`; returns it and the rest.
fn ident(s: &str) -> Option<(String, &str)> {
    if let Some(rest) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if rest[i + 1..].starts_with('"') {
                    out.push('"');
                    chars.next();
                } else {
                    return Some((out, &rest[i + 1..]));
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        let end = s.find(['.', ' ', ',', ')', '(']).unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_string(), &s[end..]))
    }
}

/// Parses `COPY schema.table (a, b) FROM stdin;`.
pub fn parse_header(line: &str) -> Option<Header> {
    let rest = line.strip_prefix("COPY ")?.strip_suffix(" FROM stdin;")?;
    let (schema, rest) = ident(rest)?;
    let (table, mut rest) = ident(rest.strip_prefix('.')?)?;
    let mut columns = Vec::new();
    rest = rest.trim_start();
    if let Some(mut list) = rest.strip_prefix('(') {
        loop {
            let (c, r) = ident(list.trim_start())?;
            columns.push(c);
            let r = r.trim_start();
            if let Some(r) = r.strip_prefix(',') {
                list = r;
            } else {
                r.strip_prefix(')')?;
                break;
            }
        }
    }
    Some(Header { schema, table, columns })
}

/// A field's value with COPY's escapes undone; `None` for NULL (`\N`).
pub fn unescape(field: &[u8]) -> Option<Vec<u8>> {
    if field == b"\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i >= field.len() {
            out.push(b);
            continue;
        }
        let e = field[i];
        i += 1;
        match e {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// A value as an SQL string literal (PostgreSQL casts it to the column's type).
pub fn literal(v: Option<&[u8]>) -> String {
    match v {
        None => "NULL".into(),
        Some(b) => format!("'{}'", String::from_utf8_lossy(b).replace('\'', "''")),
    }
}

/// One event of a COPY stream.
pub enum Event<'a> {
    Table(&'a Header),
    /// A row's line (escaped fields, tab-separated, no newline).
    Row(&'a [u8]),
}

/// Runs a client tool whose stdout is COPY blocks and feeds them to `on`,
/// a line at a time; fails with the tool's (scrubbed) stderr.
pub async fn stream(
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: &Path,
    timeout: Duration,
    url: Option<&ServerUrl>,
    target: &str,
    mut on: impl FnMut(Event<'_>) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut child = tokio::process::Command::new(&program)
        .args(&argv[1..])
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| DbError::Spawn {
            program: program.clone(),
            source: crate::exec::ExecError::Spawn {
                program: program.clone(),
                cwd: cwd.to_path_buf(),
                source,
            },
        })?;
    let mut err = child.stderr.take().expect("piped");
    let errors = tokio::spawn(async move {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s).await;
        s
    });
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let failed = |how: String, output: String| DbError::Tool {
        program: program.clone(),
        target: target.to_string(),
        how,
        output: url.map_or(output.clone(), |u| u.scrub(&output)),
    };
    let read = async {
        let mut line = Vec::new();
        let mut header: Option<Header> = None;
        loop {
            line.clear();
            if out
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| failed("read".into(), e.to_string()))?
                == 0
            {
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if header.is_some() {
                if line == b"\\." {
                    header = None;
                } else {
                    on(Event::Row(&line))?;
                }
            } else if line.starts_with(b"COPY ")
                && let Some(h) = parse_header(&String::from_utf8_lossy(&line))
            {
                on(Event::Table(&h))?;
                header = Some(h);
            }
        }
    };
    let outcome: Result<(), DbError> = match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(failed(format!("timed out after {}s", timeout.as_secs()), String::new())),
    };
    if outcome.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await.map_err(|e| failed("wait".into(), e.to_string()))?;
    let stderr = errors.await.unwrap_or_default();
    outcome?;
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        return Err(failed(status.to_string(), crate::exec::tail_lines(&text, 6)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_with_quoted_names() {
        let h = parse_header("COPY public.users (id, name, \"E-mail\", \"we\"\"ird\") FROM stdin;").unwrap();
        assert_eq!(h.schema, "public");
        assert_eq!(h.table, "users");
        assert_eq!(h.columns, ["id", "name", "E-mail", "we\"ird"]);
        let h = parse_header("COPY \"My Schema\".\"T t\"  FROM stdin;").unwrap();
        assert_eq!((h.schema.as_str(), h.table.as_str()), ("My Schema", "T t"));
        assert!(h.columns.is_empty());
        assert_eq!(h.qualified(), "\"My Schema\".\"T t\"");
        assert_eq!(parse_header("SELECT 1;"), None);
    }

    #[test]
    fn fields_unescape() {
        assert_eq!(unescape(b"\\N"), None);
        assert_eq!(unescape(b"a\\tb\\\\c\\nd").unwrap(), b"a\tb\\c\nd");
        assert_eq!(unescape(b"\\101\\x42").unwrap(), b"AB");
        assert_eq!(literal(Some(b"it's")), "'it''s'");
        assert_eq!(literal(None), "NULL");
    }
}
