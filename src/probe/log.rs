//! The log probe: counts lines matching any of its patterns among the lines
//! appended since the last sample, with a per-pattern count.
//!
//! Only new bytes are read. A cursor (device, inode, offset) is kept between
//! samples and persisted, so a resumed watch continues where it stopped:
//! - rotation (the path now names another file): the rest of the old file is
//!   read through the handle still open on it, then the new file from its start;
//! - truncation (same file, shorter than the offset): read again from the start;
//! - deletion: the sample fails; a file recreated later is read from its start.
//!
//! The first sample without a cursor starts at the end: lines written before the
//! watch began are not news. Matching runs one combined regex over whole buffers
//! (its literal prefilter skips most bytes), and only lines that match are split
//! out and checked against each pattern.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use regex::bytes::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use crate::oplog::SampleRow;
use crate::plan::LogProbe;

/// Read size: small enough that what was just read is still in the CPU cache when
/// the regex scans it (ripgrep reads 64 KiB at a time for the same reason).
const CHUNK: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot read the log {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the log {path} does not exist")]
    Missing { path: PathBuf },
}

/// Where the last sample stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// One probe's reading state, kept across samples.
#[derive(Debug, Default)]
pub struct LogState {
    cursor: Option<Cursor>,
    /// Whether a sample ran (or a cursor was loaded): after that, a file with no
    /// cursor is new and read from its start.
    started: bool,
    /// The file the cursor points into, kept open so a rotated file's last lines
    /// are still readable.
    file: Option<File>,
    matcher: Option<Matcher>,
    /// Where the cursor is persisted, when it is.
    cursor_path: Option<PathBuf>,
}

impl LogState {
    /// A state whose cursor lives in `path` (loaded now, saved after each sample).
    pub fn persisted(path: PathBuf) -> Self {
        let cursor = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok());
        LogState {
            started: cursor.is_some(),
            cursor,
            cursor_path: Some(path),
            ..Default::default()
        }
    }

    pub fn cursor(&self) -> Option<Cursor> {
        self.cursor
    }
}

#[derive(Debug)]
struct Matcher {
    any: Regex,
    set: RegexSet,
}

impl Matcher {
    fn new(patterns: &[String]) -> Result<Matcher, regex::Error> {
        let any = patterns
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        Ok(Matcher {
            any: regex::bytes::RegexBuilder::new(&any).multi_line(true).build()?,
            set: regex::bytes::RegexSetBuilder::new(patterns).multi_line(true).build()?,
        })
    }
}

/// Matching lines found in a stretch of log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Lines matching any pattern.
    pub lines: u64,
    /// Lines matching each pattern, in the plan's order.
    pub per_pattern: Vec<u64>,
    pub bytes: u64,
}

/// Takes one sample: reads what was appended since the last one.
pub async fn sample(l: &LogProbe, state: &mut LogState) -> SampleRow {
    let probe = l.clone();
    let mut owned = std::mem::take(state);
    let started = std::time::Instant::now();
    // File reads block: keep them off the runtime's workers.
    let (result, back) = tokio::task::spawn_blocking(move || {
        let r = scan(&probe, &mut owned);
        (r, owned)
    })
    .await
    .unwrap_or_else(|e| {
        (
            Err(LogError::Read {
                path: l.path.clone(),
                source: std::io::Error::other(e.to_string()),
            }),
            LogState::default(),
        )
    });
    *state = back;
    if let (Some(path), Some(c)) = (&state.cursor_path, state.cursor) {
        // Best effort: a lost cursor only means the next watch starts at the end.
        let _ = save_cursor(path, c);
    }
    let mut row = SampleRow {
        latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
        ..Default::default()
    };
    match result {
        Ok(c) => {
            row.ok = true;
            row.fields.insert("count".into(), c.lines as f64);
            row.fields.insert("bytes".into(), c.bytes as f64);
            if l.patterns.len() > 1 {
                for (p, n) in l.patterns.iter().zip(&c.per_pattern) {
                    row.fields.insert(format!("count:{p}"), *n as f64);
                }
            }
        }
        Err(e) => row.error = Some(format!("{:#}", anyhow::Error::new(e))),
    }
    row
}

fn save_cursor(path: &Path, c: Cursor) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::service::write_atomic(path, &serde_json::to_vec(&c).unwrap_or_default())
}

/// Reads the new lines of `l`'s file and counts matches.
pub fn scan(l: &LogProbe, state: &mut LogState) -> Result<Counts, LogError> {
    let read_err = |source| LogError::Read {
        path: l.path.clone(),
        source,
    };
    if state.matcher.is_none() {
        let m = Matcher::new(&l.patterns).map_err(|e| read_err(std::io::Error::other(e.to_string())))?;
        state.matcher = Some(m);
    }
    let mut counts = Counts {
        per_pattern: vec![0; l.patterns.len()],
        ..Default::default()
    };
    let meta = match std::fs::metadata(&l.path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Deleted: finish the old file through its handle, then wait for a new one.
            drain_old(state, &mut counts).map_err(read_err)?;
            state.cursor = None;
            state.file = None;
            state.started = true;
            return Err(LogError::Missing { path: l.path.clone() });
        }
        Err(e) => return Err(read_err(e)),
    };
    let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
    let offset = match state.cursor {
        None if !state.started => {
            state.started = true;
            state.cursor = Some(Cursor { dev, ino, offset: len });
            state.file = File::open(&l.path).ok();
            return Ok(counts);
        }
        None => 0,
        Some(c) if (c.dev, c.ino) != (dev, ino) => {
            drain_old(state, &mut counts).map_err(read_err)?;
            0
        }
        Some(c) if len < c.offset => 0,
        Some(c) => c.offset,
    };
    state.started = true;
    let same_file = state.cursor.is_some_and(|c| (c.dev, c.ino) == (dev, ino));
    let mut file = match state.file.take().filter(|_| same_file) {
        Some(f) => f,
        None => File::open(&l.path).map_err(read_err)?,
    };
    // The path may have been swapped between stat and open: trust the handle.
    let fmeta = file.metadata().map_err(read_err)?;
    let offset = if (fmeta.dev(), fmeta.ino()) == (dev, ino) {
        offset
    } else {
        0
    };
    let read = read_lines(
        &mut file,
        offset,
        false,
        state.matcher.as_ref().expect("built above"),
        &mut counts,
    )
    .map_err(read_err)?;
    state.cursor = Some(Cursor {
        dev: fmeta.dev(),
        ino: fmeta.ino(),
        offset: offset + read,
    });
    state.file = Some(file);
    Ok(counts)
}

/// Reads the rest of the file the cursor points into (rotated away or deleted),
/// its last line counted even without a newline: nothing more will be written
/// to it that the probe would see.
fn drain_old(state: &mut LogState, counts: &mut Counts) -> std::io::Result<()> {
    if let (Some(mut f), Some(c)) = (state.file.take(), state.cursor)
        && f.metadata().is_ok_and(|m| (m.dev(), m.ino()) == (c.dev, c.ino))
    {
        let m = state.matcher.as_ref().expect("built before any read");
        read_lines(&mut f, c.offset, true, m, counts)?;
    }
    Ok(())
}

/// Counts matching lines from `offset` to the end; returns the bytes consumed
/// (up to the last newline, unless `finish`). One buffer serves the whole read:
/// the unfinished line at its end moves to its front, and it grows only for a
/// line longer than itself.
fn read_lines(f: &mut File, offset: u64, finish: bool, m: &Matcher, counts: &mut Counts) -> std::io::Result<u64> {
    f.seek(SeekFrom::Start(offset))?;
    let mut buf: Vec<u8> = vec![0; CHUNK];
    let mut filled = 0;
    let mut consumed = 0u64;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = read_full(f, &mut buf[filled..])?;
        filled += n;
        let eof = n == 0 || filled < buf.len();
        let end = if eof && finish {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(i) => i + 1,
                None if eof => 0,
                None => continue,
            }
        };
        count_lines(&buf[..end], m, counts);
        counts.bytes += end as u64;
        consumed += end as u64;
        buf.copy_within(end..filled, 0);
        filled -= end;
        if eof {
            return Ok(consumed);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Counts lines of `buf` (whole lines only) that match.
fn count_lines(buf: &[u8], m: &Matcher, counts: &mut Counts) {
    let mut pos = 0;
    while pos < buf.len() {
        let Some(hit) = m.any.find_at(buf, pos) else { break };
        let start = memchr::memrchr(b'\n', &buf[..hit.start()]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &buf[hit.start()..]).map_or(buf.len(), |i| hit.start() + i);
        let line = &buf[start..end];
        counts.lines += 1;
        if counts.per_pattern.len() == 1 {
            counts.per_pattern[0] += 1;
        } else {
            for i in m.set.matches(line).iter() {
                counts.per_pattern[i] += 1;
            }
        }
        pos = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn probe(dir: &Path) -> LogProbe {
        LogProbe {
            path: dir.join("app.log"),
            patterns: vec!["ERROR".into(), "^CRITICAL".into(), r"timed out after \d+s".into()],
        }
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn lines(c: &Counts) -> (u64, Vec<u64>) {
        (c.lines, c.per_pattern.clone())
    }

    #[test]
    fn counts_only_new_lines_and_each_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let l = probe(dir.path());
        append(&l.path, "old ERROR before the watch\n");
        let mut st = LogState::default();
        assert_eq!(
            lines(&scan(&l, &mut st).unwrap()),
            (0, vec![0, 0, 0]),
            "the past is not news"
        );
        append(
            &l.path,
            "ok\nERROR one\nCRITICAL two ERROR\nnot CRITICAL\njob timed out after 30s\n",
        );
        assert_eq!(lines(&scan(&l, &mut st).unwrap()), (3, vec![2, 1, 1]));
        assert_eq!(lines(&scan(&l, &mut st).unwrap()), (0, vec![0, 0, 0]), "nothing new");
        // A line still being written is counted once it is complete.
        append(&l.path, "ERROR half");
        assert_eq!(scan(&l, &mut st).unwrap().lines, 0);
        append(&l.path, " done\n");
        assert_eq!(scan(&l, &mut st).unwrap().lines, 1);
    }

    #[test]
    fn survives_rotation_truncation_and_delete_recreate() {
        let dir = tempfile::tempdir().unwrap();
        let l = probe(dir.path());
        append(&l.path, "start\n");
        let mut st = LogState::default();
        scan(&l, &mut st).unwrap();

        // Rotation: lines written to the old file before the rename still count.
        append(&l.path, "ERROR late in the old file\n");
        std::fs::rename(&l.path, dir.path().join("app.log.1")).unwrap();
        append(&l.path, "ERROR first in the new file\nok\n");
        assert_eq!(scan(&l, &mut st).unwrap().lines, 2);

        // Truncation (copytruncate): read again from the start.
        append(&l.path, "ok\n");
        scan(&l, &mut st).unwrap();
        std::fs::write(&l.path, "ERROR after truncate\n").unwrap();
        assert_eq!(scan(&l, &mut st).unwrap().lines, 1);

        // Deleted: the sample fails, naming the file; recreated: read from its start.
        append(&l.path, "ERROR before delete\n");
        std::fs::remove_file(&l.path).unwrap();
        let e = scan(&l, &mut st).unwrap_err();
        assert!(e.to_string().contains("app.log"), "{e}");
        append(&l.path, "ERROR in the recreated file\nCRITICAL too\n");
        assert_eq!(scan(&l, &mut st).unwrap().lines, 2);
    }

    #[test]
    fn the_lines_of_a_deleted_file_are_counted_before_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let l = probe(dir.path());
        append(&l.path, "start\n");
        let mut st = LogState::default();
        scan(&l, &mut st).unwrap();
        append(&l.path, "ERROR written then deleted\n");
        std::fs::remove_file(&l.path).unwrap();
        // The sample fails (no file) but the cursor's file was drained first.
        assert!(scan(&l, &mut st).is_err());
        assert_eq!(st.cursor(), None);
    }

    #[test]
    fn the_cursor_persists_across_watches() {
        let dir = tempfile::tempdir().unwrap();
        let l = probe(dir.path());
        let cursor = dir.path().join("state/errors.cursor");
        append(&l.path, "ERROR old\n");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut st = LogState::persisted(cursor.clone());
        let s = rt.block_on(sample(&l, &mut st));
        assert_eq!(s.fields["count"], 0.0);
        drop(st);
        // Written while no watch ran: a resumed watch still sees it.
        append(&l.path, "ERROR while stopped\nCRITICAL too\n");
        let mut st = LogState::persisted(cursor);
        let s = rt.block_on(sample(&l, &mut st));
        assert!(s.ok);
        assert_eq!(s.fields["count"], 2.0);
        assert_eq!(s.fields["count:ERROR"], 1.0);
    }

    #[test]
    fn reads_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let l = LogProbe {
            path: dir.path().join("big.log"),
            patterns: vec!["ERROR".into()],
        };
        std::fs::write(&l.path, "").unwrap();
        let mut st = LogState::default();
        scan(&l, &mut st).unwrap();
        let line = "x".repeat(99) + "\n";
        let mut text = String::new();
        for i in 0..100_000 {
            text.push_str(if i % 1000 == 0 {
                "ERROR .......................................................................................\n"
            } else {
                &line
            });
        }
        append(&l.path, &text);
        let c = scan(&l, &mut st).unwrap();
        assert_eq!(c.lines, 100);
        assert_eq!(c.bytes, text.len() as u64);
    }
}
