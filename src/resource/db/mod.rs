//! Database resources: a checkpoint dumps each database the plan's
//! `[capture] databases` names into one file, hashes it, and records what it
//! holds (tables or keys) so the dump can be verified before any restore.
//!
//! | kind | capture | verify | restore |
//! |---|---|---|---|
//! | [`sqlite`] | online backup API (consistent while the app writes) | `PRAGMA integrity_check` | backup API into the live file |
//! | [`postgres`] | `pg_dump --format=custom` | `pg_restore --list` | `pg_restore --clean --if-exists --single-transaction` |
//! | [`redis`] | `redis-cli --rdb` (the server's own RDB snapshot) | `redis-check-rdb` | every key replayed with `RESTORE ... REPLACE` |
//!
//! Every restore verifies the dump first (hash, then the kind's own check), so a
//! corrupt dump is refused before anything is touched. Taking the safety
//! checkpoint of the current state before a restore is the caller's job.
//!
//! Connection URLs are shown with their password masked ([`ServerUrl`]); the
//! password reaches the client tools only through their environment
//! (`PGPASSWORD`, `REDISCLI_AUTH`), never their arguments, and any tool output
//! that ends up in an error is scrubbed of it.

pub mod postgres;
pub mod redis;
pub mod rows;
pub mod sqlite;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exec::{self, ExecError, Invocation, Outcome};
use crate::plan::{Database, DbKind, DbLocation};
use crate::redact::MASK;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SQLite database {path}: cannot {action}")]
    Sqlite {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("SQLite database {path}: {message}")]
    SqliteBusy { path: PathBuf, message: String },
    #[error("cannot run `{program}`; is it installed and on PATH?")]
    Spawn {
        program: String,
        #[source]
        source: ExecError,
    },
    #[error("`{program}` failed for {target} ({how}): {output}")]
    Tool {
        program: String,
        /// The URL (password masked) or path the tool worked on.
        target: String,
        how: String,
        /// The last lines of its output, password scrubbed.
        output: String,
    },
    #[error("database {name:?}: the dump {path} is corrupt: {reason}")]
    Corrupt {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("Redis at {target}: {message}")]
    Redis { target: String, message: String },
    #[error("database {name:?} is {expected} but the checkpoint holds a {found} dump")]
    KindMismatch {
        name: String,
        expected: DbKind,
        found: DbKind,
    },
    #[error("database {name:?}: {message}")]
    Location { name: String, message: String },
}

/// One dump file of a snapshot, with its size and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFile {
    /// The file name inside the snapshot's directory.
    pub name: String,
    pub size: u64,
    /// BLAKE3 of the whole file, hex.
    pub blake3: String,
}

impl DumpFile {
    /// Hashes `dir/name`.
    pub fn of(dir: &Path, name: &str) -> Result<DumpFile, DbError> {
        let path = dir.join(name);
        let (size, blake3) = hash_file(&path)?;
        Ok(DumpFile {
            name: name.to_string(),
            size,
            blake3,
        })
    }

    /// Checks that `dir/name` still has this size and hash.
    pub fn check(&self, dir: &Path, owner: &str) -> Result<PathBuf, DbError> {
        let path = dir.join(&self.name);
        let corrupt = |reason: String| DbError::Corrupt {
            name: owner.to_string(),
            path: path.clone(),
            reason,
        };
        let (size, hash) = match hash_file(&path) {
            Ok(x) => x,
            Err(DbError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt("the file is missing".into()));
            }
            Err(e) => return Err(e),
        };
        if size != self.size {
            return Err(corrupt(format!("{size} bytes where {} were written", self.size)));
        }
        if hash != self.blake3 {
            return Err(corrupt(format!(
                "its BLAKE3 hash is {} where {} was recorded",
                short(&hash),
                short(&self.blake3)
            )));
        }
        Ok(path)
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

/// Size and BLAKE3 hash (hex) of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String), DbError> {
    let io = |source| DbError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(io)?;
    Ok((hasher.count(), hasher.finalize().to_hex().to_string()))
}

/// Makes `tmp` durable and moves it to `dir/name`: fsync the file, rename,
/// fsync the directory. Returns the finished file's record.
pub fn finish_file(tmp: &Path, dir: &Path, name: &str) -> Result<DumpFile, DbError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| DbError::Io { action, path, source }
    };
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", tmp))?;
    let dest = dir.join(name);
    std::fs::rename(tmp, &dest).map_err(io("move a finished dump to", &dest))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the directory", dir))?;
    DumpFile::of(dir, name)
}

/// What a checkpoint holds of one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbSnapshot {
    pub name: String,
    pub kind: DbKind,
    pub file: DumpFile,
    /// The version of the server (or SQLite library) that wrote the dump.
    pub server_version: String,
    /// Tables in the dump (SQLite, PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<u64>,
    /// Keys in the dump (Redis), all logical databases together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
}

impl DbSnapshot {
    /// One line for listings: `main (postgres 15.18): 3 tables, 12.0 kB`.
    pub fn describe(&self) -> String {
        let what = match (self.tables, self.keys) {
            (Some(t), _) => format!("{t} table{}", plural(t)),
            (None, Some(k)) => format!("{k} key{}", plural(k)),
            (None, None) => "empty".into(),
        };
        format!(
            "{} ({} {}): {what}, {}",
            self.name,
            self.kind,
            self.server_version,
            human_bytes(self.file.size)
        )
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `12.0 kB`, `3.4 MB`.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// What a restore would do, for `--dry-run` and for the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorePlan {
    pub name: String,
    pub kind: DbKind,
    /// The path, or the URL with its password masked.
    pub target: String,
    /// One line per change, in the order the restore makes them.
    pub actions: Vec<String>,
}

/// What a restore did beyond replacing the data, to record as steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub name: String,
    pub steps: Vec<String>,
}

/// Dumps `db` into `dest_dir` (which must exist) and describes the dump.
pub async fn capture(db: &Database, dest_dir: &Path) -> Result<DbSnapshot, DbError> {
    match db.kind {
        DbKind::Sqlite => {
            let (db, dir) = (db.clone(), dest_dir.to_path_buf());
            blocking(move || sqlite::capture(&db, &dir)).await
        }
        DbKind::Postgres => postgres::capture(db, dest_dir).await,
        DbKind::Redis => redis::capture(db, dest_dir).await,
    }
}

/// Checks the dump in `dir`: its hash, then that the kind's own tool reads it
/// and finds what the capture recorded.
pub async fn verify(snap: &DbSnapshot, dir: &Path, timeout: Duration) -> Result<(), DbError> {
    match snap.kind {
        DbKind::Sqlite => {
            let (snap, dir) = (snap.clone(), dir.to_path_buf());
            blocking(move || sqlite::verify(&snap, &dir)).await
        }
        DbKind::Postgres => postgres::verify(snap, dir, timeout).await,
        DbKind::Redis => redis::verify(snap, dir, timeout).await,
    }
}

/// Verifies the dump and describes what restoring it into `db` would replace,
/// touching nothing.
pub async fn plan_restore(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<RestorePlan, DbError> {
    same_kind(db, snap)?;
    match db.kind {
        DbKind::Sqlite => {
            let (db, snap, dir) = (db.clone(), snap.clone(), dir.to_path_buf());
            blocking(move || sqlite::plan_restore(&db, &snap, &dir)).await
        }
        DbKind::Postgres => postgres::plan_restore(db, snap, dir).await,
        DbKind::Redis => redis::plan_restore(db, snap, dir).await,
    }
}

/// What restoring a dump would discard of what was written since it was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measured {
    /// Per table (per logical database for Redis).
    pub counts: Vec<crate::resource::discard::Count>,
    pub schema: Vec<crate::resource::discard::SchemaChange>,
}

/// How `backout export --table` writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// `INSERT INTO table (columns) VALUES (...);`, one per row.
    Sql,
    /// A header line of column names, then one line per row.
    Csv,
}

/// A CSV field (RFC 4180): NULL is an empty field, an empty string `""`.
pub fn csv_field(v: Option<&str>) -> String {
    match v {
        None => String::new(),
        Some(s) if s.is_empty() || s.contains([',', '"', '\n', '\r']) => format!("\"{}\"", s.replace('"', "\"\"")),
        Some(s) => s.to_string(),
    }
}

/// Compares `db` as it is now with the (verified) dump in `dir`: what
/// restoring it would discard. Reads only.
pub async fn measure(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<Measured, DbError> {
    same_kind(db, snap)?;
    match db.kind {
        DbKind::Sqlite => {
            let (db, snap, dir) = (db.clone(), snap.clone(), dir.to_path_buf());
            blocking(move || sqlite::measure::measure(&db, &snap, &dir)).await
        }
        DbKind::Postgres => postgres::measure::measure(db, snap, dir).await,
        DbKind::Redis => redis::contents::measure(db, snap, dir).await,
    }
}

/// Verifies the dump, then puts it back into `db`.
pub async fn restore(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<RestoreReport, DbError> {
    same_kind(db, snap)?;
    match db.kind {
        DbKind::Sqlite => {
            let (db, snap, dir) = (db.clone(), snap.clone(), dir.to_path_buf());
            blocking(move || sqlite::restore(&db, &snap, &dir)).await
        }
        DbKind::Postgres => postgres::restore(db, snap, dir).await,
        DbKind::Redis => redis::restore(db, snap, dir).await,
    }
}

fn same_kind(db: &Database, snap: &DbSnapshot) -> Result<(), DbError> {
    if db.kind != snap.kind {
        return Err(DbError::KindMismatch {
            name: db.name.clone(),
            expected: db.kind,
            found: snap.kind,
        });
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, DbError> + Send + 'static) -> Result<T, DbError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A server URL split so the password never travels with it.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    /// The URL without its password, for the tools' arguments.
    pub bare: reqwest::Url,
    /// The password, percent-decoded.
    pub password: Option<String>,
}

impl ServerUrl {
    pub fn parse(db: &Database) -> Result<ServerUrl, DbError> {
        let DbLocation::Url(text) = &db.location else {
            return Err(DbError::Location {
                name: db.name.clone(),
                message: "needs a url".into(),
            });
        };
        let mut bare = reqwest::Url::parse(&text.value).map_err(|_| DbError::Location {
            name: db.name.clone(),
            // What was written, never the resolved value.
            message: format!("{:?} is not a URL", text.shown),
        })?;
        let mut password = bare.password().map(crate::plan::percent_decode);
        let _ = bare.set_password(None);
        // libpq also reads `?password=`: move it out of the URL too.
        let pairs: Vec<(String, String)> = bare.query_pairs().into_owned().collect();
        if pairs.iter().any(|(k, _)| k == "password") {
            let mut q = bare.query_pairs_mut();
            q.clear();
            for (k, v) in &pairs {
                if k == "password" {
                    password = Some(v.clone());
                } else {
                    q.append_pair(k, v);
                }
            }
            drop(q);
            if bare.query() == Some("") {
                bare.set_query(None);
            }
        }
        Ok(ServerUrl { bare, password })
    }

    /// The URL as shown to people: the password, if any, masked.
    pub fn shown(&self) -> String {
        let mut u = self.bare.clone();
        if self.password.is_some() {
            let _ = u.set_password(Some(MASK));
        }
        u.to_string()
    }

    /// `text` with every form of the password masked.
    pub fn scrub(&self, text: &str) -> String {
        let Some(pw) = self.password.as_deref().filter(|p| !p.is_empty()) else {
            return text.to_string();
        };
        let redactor = crate::redact::Redactor::new();
        redactor.add([pw.to_string()]);
        let mut out = redactor.redact(text).into_owned();
        // The redactor skips very short values; a password is never too short to hide.
        if pw.len() < 3 {
            out = out.replace(pw, MASK);
        }
        out
    }
}

/// Runs a client tool with `env` added, failing with its scrubbed output.
async fn run_tool(
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: &Path,
    timeout: Duration,
    url: Option<&ServerUrl>,
    target: &str,
) -> Result<Outcome, DbError> {
    let program = argv.first().cloned().unwrap_or_default();
    let inv = Invocation {
        argv,
        cwd: cwd.to_path_buf(),
        env,
        timeout,
    };
    let outcome = exec::run(&inv).await.map_err(|source| DbError::Spawn {
        program: program.clone(),
        source,
    })?;
    if !outcome.success() {
        let tail = exec::tail_lines(&outcome.output, 6);
        return Err(DbError::Tool {
            program,
            target: target.to_string(),
            how: outcome.describe(),
            output: url.map_or(tail.clone(), |u| u.scrub(&tail)),
        });
    }
    Ok(outcome)
}

/// Writes `bytes` to `path`, for tests and small files.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DbError> {
    let mut f = std::fs::File::create(path).map_err(|source| DbError::Io {
        action: "create",
        path: path.to_path_buf(),
        source,
    })?;
    f.write_all(bytes).map_err(|source| DbError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Text;

    fn db(url: &str) -> Database {
        Database {
            name: "main".into(),
            kind: DbKind::Postgres,
            location: DbLocation::Url(Text {
                shown: "${DATABASE_URL}".into(),
                value: url.into(),
            }),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_password_leaves_the_url() {
        let u = ServerUrl::parse(&db("postgres://app:p%40ss@db:5432/app?sslmode=disable&password=other")).unwrap();
        assert_eq!(u.password.as_deref(), Some("other"));
        assert_eq!(u.bare.as_str(), "postgres://app@db:5432/app?sslmode=disable");
        assert_eq!(u.shown(), format!("postgres://app:{MASK}@db:5432/app?sslmode=disable"));
        let u = ServerUrl::parse(&db("postgres://app:p%40ss@db/app")).unwrap();
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.bare.as_str(), "postgres://app@db/app");
        assert_eq!(
            u.scrub("auth failed for p@ss and p%40ss"),
            format!("auth failed for {MASK} and {MASK}")
        );
    }

    #[test]
    fn a_bad_url_error_shows_what_was_written() {
        let e = ServerUrl::parse(&db("::secret::")).unwrap_err().to_string();
        assert!(e.contains("${DATABASE_URL}") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn dump_files_detect_changes() {
        let dir = tempfile::tempdir().unwrap();
        write_file(&dir.path().join("x.tmp"), b"hello").unwrap();
        let f = finish_file(&dir.path().join("x.tmp"), dir.path(), "x").unwrap();
        assert_eq!(f.size, 5);
        // Pin the hash format: BLAKE3 of "hello", hex.
        assert_eq!(
            f.blake3,
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        f.check(dir.path(), "main").unwrap();
        write_file(&dir.path().join("x"), b"hellO").unwrap();
        let e = f.check(dir.path(), "main").unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("hash"), "{e}");
        std::fs::remove_file(dir.path().join("x")).unwrap();
        assert!(f.check(dir.path(), "main").unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn the_argv_canary_sees_a_secret_in_arguments() {
        // The canary the database tests rely on is not vacuous.
        let watch = testing::ArgvWatch::start("canary-9d1e-in-argv");
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.3", "canary-9d1e-in-argv"])
            .spawn()
            .unwrap();
        child.wait().unwrap();
        let seen = watch.finish();
        assert!(seen.iter().any(|a| a.contains("sleep 0.3")), "{seen:?}");
    }

    #[test]
    fn a_snapshot_describes_itself_in_one_line() {
        let snap = DbSnapshot {
            name: "main".into(),
            kind: DbKind::Postgres,
            file: DumpFile {
                name: "main.pgdump".into(),
                size: 12_345,
                blake3: "00".into(),
            },
            server_version: "15.18".into(),
            tables: Some(3),
            keys: None,
        };
        assert_eq!(snap.describe(), "main (postgres 15.18): 3 tables, 12.3 kB");
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["kind"], "postgres");
        assert!(json.get("keys").is_none());
        assert_eq!(serde_json::from_value::<DbSnapshot>(json).unwrap(), snap);
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_345), "12.3 kB");
        assert_eq!(human_bytes(3_400_000), "3.4 MB");
    }
}
