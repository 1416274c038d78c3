//! `backout export`: any resource of any checkpoint out to a side file, to
//! salvage what a restore discarded (its safety checkpoint holds it) or to look
//! at what a checkpoint holds. Nothing in the project or the store changes.
//!
//! | resource | formats (default first) |
//! |---|---|
//! | SQLite | `sql` (`.dump`-style), `sqlite` (the database file); with `--table`: `sql` (INSERTs), `csv` |
//! | PostgreSQL | `sql` (plain, from `pg_restore`), `dump` (custom format); with `--table`: `sql`, `csv` |
//! | Redis | `rdb` (the snapshot), `text` (`redis-cli` commands, one per key) |
//! | path | `tar`, `dir` (the tree under a directory) |
//! | git | `tar` (the captured working tree, `git archive`) |
//! | command | `raw` (the saved output) |
//!
//! A file is written beside its destination and moved into place when whole;
//! an existing file is never replaced without `force`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::db::{self, RowFormat};
use super::tar::{Header, Member, TarWriter};
use super::{Resources, checkpoint_name, dumps, paths};
use crate::oplog::CheckpointRow;
use crate::plan::DbKind;
use crate::store::Store;
use crate::store::manifest::{Kind, Manifest};
use crate::workspace::Workspace;

/// How a resource is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Sql,
    Csv,
    Sqlite,
    Dump,
    Rdb,
    Text,
    Tar,
    Dir,
    Raw,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Sql => "sql",
            Format::Csv => "csv",
            Format::Sqlite => "sqlite",
            Format::Dump => "dump",
            Format::Rdb => "rdb",
            Format::Text => "text",
            Format::Tar => "tar",
            Format::Dir => "dir",
            Format::Raw => "raw",
        }
    }
}

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct Request {
    pub resource: String,
    pub output: PathBuf,
    pub format: Option<Format>,
    /// One table's rows only (databases).
    pub table: Option<String>,
    /// Replace what is at `output`.
    pub force: bool,
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub checkpoint: String,
    pub resource: String,
    /// `database (sqlite)`, `path`, `git`, `command`.
    pub kind: String,
    pub format: Format,
    pub output: PathBuf,
    pub bytes: u64,
    /// Rows (SQL and CSV), keys (Redis text) or entries (paths) written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("checkpoint {checkpoint} holds no resource named {name:?}; it holds: {held}")]
    NoSuchResource {
        checkpoint: String,
        name: String,
        held: String,
    },
    #[error(
        "{} already exists; backout export never replaces a file\n  = hint: choose another -o, or pass --force to replace it",
        .0.display()
    )]
    Exists(PathBuf),
    #[error("{resource} is {kind}: it exports as {allowed}, not {format}\n  = hint: pass --format {first}")]
    BadFormat {
        resource: String,
        kind: String,
        format: &'static str,
        allowed: String,
        first: &'static str,
    },
    #[error("--table picks one table of a SQLite or PostgreSQL database; {resource} is {kind}")]
    TableNotDatabase { resource: String, kind: String },
    #[error("{resource}: {message}\n  = hint: `backout show {checkpoint}` lists what it holds")]
    NoSuchTable {
        checkpoint: String,
        resource: String,
        message: String,
    },
}

fn check_format(resource: &str, kind: &str, wanted: Option<Format>, allowed: &[Format]) -> Result<Format, ExportError> {
    let f = wanted.unwrap_or(allowed[0]);
    if allowed.contains(&f) {
        return Ok(f);
    }
    Err(ExportError::BadFormat {
        resource: resource.into(),
        kind: kind.into(),
        format: f.name(),
        allowed: allowed.iter().map(|f| f.name()).collect::<Vec<_>>().join(", "),
        first: allowed[0].name(),
    })
}

/// A file being written beside its destination, moved into place by `finish`.
struct Output {
    tmp: PathBuf,
    dest: PathBuf,
    force: bool,
}

impl Output {
    fn start(dest: &Path, force: bool) -> anyhow::Result<Output> {
        if !force && std::fs::symlink_metadata(dest).is_ok() {
            return Err(ExportError::Exists(dest.to_path_buf()).into());
        }
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Output {
            tmp: dir.join(format!(".{name}.backout-export-{}", std::process::id())),
            dest: dest.to_path_buf(),
            force,
        })
    }

    fn file(&self) -> anyhow::Result<std::io::BufWriter<fs_err::File>> {
        Ok(std::io::BufWriter::new(fs_err::File::create(&self.tmp)?))
    }

    /// Makes the file durable and moves it into place; returns its size.
    fn finish(self) -> anyhow::Result<u64> {
        let f = fs_err::File::open(&self.tmp)?;
        f.sync_all()?;
        let size = f.metadata()?.len();
        if self.force {
            fs_err::rename(&self.tmp, &self.dest)?;
        } else {
            // A link fails if something appeared there meanwhile: never replaced.
            match std::fs::hard_link(&self.tmp, &self.dest) {
                Ok(()) => fs_err::remove_file(&self.tmp)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(ExportError::Exists(self.dest.clone()).into());
                }
                Err(e) => return Err(e).with_context(|| format!("writing {}", self.dest.display())),
            }
        }
        Ok(size)
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Exports one resource of checkpoint `cp` as `req` asks.
pub async fn export(ws: &Workspace, cp: &CheckpointRow, req: &Request) -> anyhow::Result<Exported> {
    let cp_name = checkpoint_name(cp.id);
    let res = Resources::from_row(cp);
    let store = ws.store()?;
    let scratch = ws.state_dir.join("tmp").join(format!("export-{}", std::process::id()));
    let _gone = super::RemoveOnDrop(&scratch);
    let mut out = Exported {
        checkpoint: cp_name.clone(),
        resource: req.resource.clone(),
        kind: String::new(),
        format: Format::Raw,
        output: req.output.clone(),
        bytes: 0,
        items: None,
        table: req.table.clone(),
    };
    let not_db = |kind: &str| -> anyhow::Result<()> {
        match &req.table {
            Some(_) => Err(ExportError::TableNotDatabase {
                resource: req.resource.clone(),
                kind: kind.into(),
            }
            .into()),
            None => Ok(()),
        }
    };
    if let Some(d) = res.databases.iter().find(|d| d.snapshot.name == req.resource) {
        out.kind = format!("database ({})", d.snapshot.kind);
        fs_err::create_dir_all(&scratch)?;
        let dump = take(&store, d.object, &scratch, &d.snapshot.file.name)?;
        let timeout = ws
            .plan
            .capture
            .databases
            .iter()
            .find(|p| p.name == req.resource)
            .map_or(std::time::Duration::from_secs(60), |p| p.timeout);
        db::verify(&d.snapshot, &scratch, timeout).await?;
        database(d, &dump, req, &mut out, timeout, &cp_name).await?;
    } else if let Some(p) = res.paths.iter().find(|p| p.path == req.resource) {
        out.kind = "path".into();
        not_db("a path")?;
        path(&store, p, req, &mut out)?;
    } else if let Some(c) = res.commands.iter().find(|c| c.snapshot.name == req.resource) {
        out.kind = "command".into();
        not_db("command-captured state")?;
        out.format = check_format(&req.resource, "command-captured state", req.format, &[Format::Raw])?;
        let o = Output::start(&req.output, req.force)?;
        let mut f = o.file()?;
        store.read_into(c.object, &mut f)?;
        f.flush()?;
        drop(f);
        out.bytes = o.finish()?;
    } else if let (Some(g), "git") = (&res.git, req.resource.as_str()) {
        out.kind = "git".into();
        not_db("git")?;
        out.format = check_format("git", "git", req.format, &[Format::Tar])?;
        let o = Output::start(&req.output, req.force)?;
        let tmp = o.tmp.display().to_string();
        super::git::git(&g.toplevel, &["archive", "--format=tar", "-o", &tmp, &g.commit], &[])?;
        out.bytes = o.finish()?;
    } else {
        return Err(ExportError::NoSuchResource {
            checkpoint: cp_name,
            name: req.resource.clone(),
            held: res.held().iter().map(|h| h.name()).collect::<Vec<_>>().join(", "),
        }
        .into());
    }
    Ok(out)
}

/// Takes object `hash` out of the store as `dir/name` (its hash checked).
fn take(store: &Store, hash: crate::store::Hash, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let mut f = fs_err::File::create(&path)?;
    store
        .read_into(hash, &mut f)
        .with_context(|| format!("reading the stored dump {}", hash.short()))?;
    Ok(path)
}

async fn database(
    d: &dumps::DbState,
    dump: &Path,
    req: &Request,
    out: &mut Exported,
    timeout: std::time::Duration,
    cp_name: &str,
) -> anyhow::Result<()> {
    let kind = out.kind.clone();
    let name = &req.resource;
    let o = Output::start(&req.output, req.force)?;
    match (d.snapshot.kind, &req.table) {
        (DbKind::Redis, Some(_)) => {
            return Err(ExportError::TableNotDatabase {
                resource: name.clone(),
                kind: "a Redis database (keys, not tables)".into(),
            }
            .into());
        }
        (DbKind::Redis, None) => {
            out.format = check_format(name, &kind, req.format, &[Format::Rdb, Format::Text, Format::Dump])?;
            if out.format == Format::Text {
                let mut f = o.file()?;
                out.items = Some(db::redis::contents::listing(dump, timeout, &mut f).await?);
                f.flush()?;
            } else {
                fs_err::copy(dump, &o.tmp)?;
            }
        }
        (_, Some(table)) => {
            out.format = check_format(
                name,
                &format!("{kind}, one table"),
                req.format,
                &[Format::Sql, Format::Csv],
            )?;
            let rows = if out.format == Format::Csv {
                RowFormat::Csv
            } else {
                RowFormat::Sql
            };
            let no_table = |message: String| ExportError::NoSuchTable {
                checkpoint: cp_name.into(),
                resource: name.clone(),
                message,
            };
            let mut f = o.file()?;
            out.items = Some(if d.snapshot.kind == DbKind::Sqlite {
                let tables = db::sqlite::export::table_names(dump)?;
                if !tables.contains(table) {
                    return Err(no_table(format!(
                        "the dump holds no table {table:?}; it holds: {}",
                        tables.join(", ")
                    ))
                    .into());
                }
                db::sqlite::export::table_rows(dump, table, rows, &mut f)?
            } else {
                let t = db::postgres::export::resolve(dump, table, timeout, name)
                    .await
                    .map_err(no_table)?;
                db::postgres::export::table_rows(dump, &t, rows, timeout, &mut f).await?
            });
            f.flush()?;
        }
        (DbKind::Sqlite, None) => {
            out.format = check_format(name, &kind, req.format, &[Format::Sql, Format::Sqlite, Format::Dump])?;
            if out.format == Format::Sql {
                let mut f = o.file()?;
                out.items = Some(db::sqlite::export::dump_sql(dump, &mut f)?);
                f.flush()?;
            } else {
                fs_err::copy(dump, &o.tmp)?;
            }
        }
        (DbKind::Postgres, None) => {
            out.format = check_format(name, &kind, req.format, &[Format::Sql, Format::Dump])?;
            if out.format == Format::Sql {
                db::postgres::export::sql(dump, &o.tmp, timeout).await?;
            } else {
                fs_err::copy(dump, &o.tmp)?;
            }
        }
    }
    out.bytes = o.finish()?;
    Ok(())
}

fn member(kind: Kind) -> Option<Member> {
    Some(match kind {
        Kind::File => Member::File,
        Kind::Dir => Member::Dir,
        Kind::Symlink => Member::Symlink,
        Kind::Fifo => Member::Fifo,
        Kind::CharDevice => Member::CharDevice,
        Kind::BlockDevice => Member::BlockDevice,
        Kind::Socket => return None,
    })
}

fn path(store: &Store, p: &paths::PathState, req: &Request, out: &mut Exported) -> anyhow::Result<()> {
    let into_dir = req.output.is_dir() || req.output.as_os_str().to_string_lossy().ends_with('/');
    let default = if into_dir { Format::Dir } else { Format::Tar };
    let allowed = if into_dir {
        [Format::Dir, Format::Tar]
    } else {
        [Format::Tar, Format::Dir]
    };
    out.format = check_format(&req.resource, "a path", req.format.or(Some(default)), &allowed)?;
    let m = Manifest::load(store, p.manifest)?;
    let mut n = 0;
    if out.format == Format::Tar {
        let o = Output::start(&req.output, req.force)?;
        let mut tar = TarWriter::new(o.file()?);
        for e in &m.entries {
            let Some(kind) = member(e.kind) else { continue };
            let dev = (
                rustix::fs::major(e.rdev as rustix::fs::Dev),
                rustix::fs::minor(e.rdev as rustix::fs::Dev),
            );
            let h = Header {
                path: &e.path,
                member: kind,
                mode: e.mode,
                size: e.size,
                mtime: e.mtime_ns.div_euclid(1_000_000_000),
                link: e.target.as_deref(),
                dev,
            };
            match (e.kind, e.hash) {
                (Kind::File, Some(hash)) => {
                    let bytes = store.read(hash)?;
                    tar.append(&h, Some(&mut bytes.as_slice()))
                }
                _ => tar.append(&h, None),
            }
            .with_context(|| format!("writing {}", o.tmp.display()))?;
            n += 1;
        }
        tar.finish()?.flush()?;
        out.bytes = o.finish()?;
    } else {
        out.bytes = into_directory(store, &m, &req.output, req.force)?;
        n = m.entries.len() as u64;
    }
    out.items = Some(n);
    Ok(())
}

/// Writes the tree under `dir` (created if need be), each entry at its path
/// relative to the plan root. Refuses, before writing anything, when any
/// entry's place is taken, unless `force` (then files are replaced).
fn into_directory(store: &Store, m: &Manifest, dir: &Path, force: bool) -> anyhow::Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let place = |p: &[u8]| dir.join(std::ffi::OsStr::from_bytes(p));
    for e in &m.entries {
        let at = place(&e.path);
        // The path is the plan root's relative path, checked when captured;
        // never let it climb out of `dir`.
        if e.path.split(|b| *b == b'/').any(|c| c == b".." || c.is_empty()) {
            anyhow::bail!("the manifest names an unsafe path {}", e.shown());
        }
        if !force && e.kind != Kind::Dir && std::fs::symlink_metadata(&at).is_ok() {
            return Err(ExportError::Exists(at).into());
        }
    }
    let mut bytes = 0;
    let mut dirs = Vec::new();
    for e in &m.entries {
        let at = place(&e.path);
        match e.kind {
            Kind::Dir => {
                fs_err::create_dir_all(&at)?;
                dirs.push((at, e.mode));
            }
            Kind::File => {
                if let Some(parent) = at.parent() {
                    fs_err::create_dir_all(parent)?;
                }
                let _ = std::fs::remove_file(&at);
                let mut f = fs_err::File::create(&at)?;
                if let Some(h) = e.hash {
                    bytes += store.read_into(h, &mut f)?;
                }
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(e.mtime_ns.max(0) as u64);
                let _ = f.file().set_modified(t);
                fs_err::set_permissions(&at, std::os::unix::fs::PermissionsExt::from_mode(e.mode))?;
            }
            Kind::Symlink => {
                if let Some(parent) = at.parent() {
                    fs_err::create_dir_all(parent)?;
                }
                let _ = std::fs::remove_file(&at);
                let target = std::ffi::OsStr::from_bytes(e.target.as_deref().unwrap_or_default());
                fs_err::os::unix::fs::symlink(target, &at)?;
            }
            // Fifos and devices hold no data to salvage.
            _ => {}
        }
    }
    // Modes of directories last: a read-only one would refuse its children.
    for (d, mode) in dirs.iter().rev() {
        fs_err::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(*mode))?;
    }
    Ok(bytes)
}
