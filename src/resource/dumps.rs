//! Databases and command-captured state in checkpoints: their dump files (made
//! by [`super::db`] and [`super::command`]) are kept as objects in the
//! content-addressed store, so `fsck` checks them, `gc` keeps what checkpoints
//! use, and deduplication spares an unchanged dump.
//!
//! A restore first takes the object out of the store into a scratch directory
//! and has the kind's own tool read it (`pg_restore --list`, `redis-check-rdb`,
//! `PRAGMA integrity_check`): a damaged dump is refused before anything changes.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{Batch, ChangeLine, Cx, Held, PlannedRestore, PreparedRestore, Spec, Summary, command, db};
use crate::plan::{CaptureCommand, Database, Plan};
use crate::store::Hash;

/// What a checkpoint holds of one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbState {
    pub snapshot: db::DbSnapshot,
    /// The dump's object in the store.
    pub object: Hash,
}

/// What a checkpoint holds of one command-captured resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandState {
    pub snapshot: command::CommandSnapshot,
    pub object: Hash,
}

/// Runs an async resource operation from the store's synchronous framework.
fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| h.block_on(f)),
        // No runtime, or a single-threaded one that must not be blocked: run the
        // operation on its own runtime, on its own thread.
        _ => std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds")
                    .block_on(f)
            })
            .join()
            .expect("the resource operation does not panic")
        }),
    }
}

pub(super) fn database<'p>(plan: &'p Plan, name: &str) -> anyhow::Result<&'p Database> {
    plan.capture.databases.iter().find(|d| d.name == name).with_context(|| {
        format!("the plan names no database {name:?} under [capture] databases; restore needs its path or url")
    })
}

pub(super) fn capture_command<'p>(plan: &'p Plan, name: &str) -> anyhow::Result<&'p CaptureCommand> {
    plan.capture.commands.iter().find(|c| c.name == name).with_context(|| {
        format!("the plan names no command {name:?} under [capture] commands; restore needs its restore command")
    })
}

/// A fresh scratch directory for one resource.
fn scratch(cx: &Cx<'_>, what: &str, name: &str) -> anyhow::Result<PathBuf> {
    let dir = cx.scratch.join(format!("{what}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    fs_err::create_dir_all(&dir)?;
    Ok(dir)
}

/// Stores the file `dir/name`; returns its object and size.
fn put(batch: &Batch<'_>, dir: &Path, name: &str) -> anyhow::Result<(Hash, u64)> {
    let path = dir.join(name);
    let mut f = fs_err::File::open(&path)?.into_parts().0;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(batch.put_file(&mut f, &path, size)?)
}

/// Takes object `hash` out of the store as `dir/name`.
fn take(cx: &Cx<'_>, hash: Hash, dir: &Path, name: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut f = fs_err::File::create(&path)?;
    cx.store
        .read_into(hash, &mut f)
        .with_context(|| format!("reading the stored dump {}", hash.short()))?;
    Ok(())
}

/// Moves a finished dump from its scratch `dir` into the store; returns its
/// object and what capturing it took.
fn keep(batch: &Batch<'_>, dir: &Path, file: &str, name: &str, kind: String) -> anyhow::Result<(Hash, Summary)> {
    let before = batch.stored_bytes();
    let (hash, size) = put(batch, dir, file)?;
    let _ = std::fs::remove_dir_all(dir);
    let summary = Summary {
        name: name.to_string(),
        kind,
        files: 1,
        bytes: size,
        stored: batch.stored_bytes() - before,
        warnings: Vec::new(),
    };
    Ok((hash, summary))
}

pub(super) fn capture_db(db: &Database, cx: &Cx<'_>, batch: &Batch<'_>) -> anyhow::Result<(DbState, Summary)> {
    let dir = scratch(cx, "db", &db.name)?;
    let snapshot = block_on(db::capture(db, &dir))?;
    let (object, summary) = keep(
        batch,
        &dir,
        &snapshot.file.name,
        &db.name,
        format!("database ({})", snapshot.kind),
    )?;
    Ok((DbState { snapshot, object }, summary))
}

pub(super) fn capture_cmd(
    c: &CaptureCommand,
    cx: &Cx<'_>,
    batch: &Batch<'_>,
) -> anyhow::Result<(CommandState, Summary)> {
    let dir = scratch(cx, "cmd", &c.name)?;
    let snapshot = block_on(command::capture(c, &dir))?;
    let (object, summary) = keep(batch, &dir, &snapshot.file.name, &c.name, "command".into())?;
    Ok((CommandState { snapshot, object }, summary))
}

fn verify_object(cx: &Cx<'_>, hash: Hash, name: &str) -> anyhow::Result<()> {
    cx.store
        .verify(hash)
        .with_context(|| format!("the stored dump of {name} ({})", hash.short()))?;
    Ok(())
}

impl Held for DbState {
    fn name(&self) -> String {
        self.snapshot.name.clone()
    }
    fn spec(&self) -> Spec {
        Spec::Database(self.snapshot.name.clone())
    }
    fn verify(&self, cx: &Cx<'_>, _batch: &crate::store::Batch<'_>) -> anyhow::Result<()> {
        verify_object(cx, self.object, &self.snapshot.name)
    }
    fn plan_restore<'a>(&'a self, cx: &Cx<'_>) -> anyhow::Result<Box<dyn PlannedRestore + 'a>> {
        let db = database(cx.plan, &self.snapshot.name)?.clone();
        let dir = scratch(cx, "restore-db", &self.snapshot.name)?;
        take(cx, self.object, &dir, &self.snapshot.file.name)?;
        // Reads the dump with the kind's own tool: a damaged one stops here.
        let plan = block_on(db::plan_restore(&db, &self.snapshot, &dir))?;
        // What the restore discards, measured against the verified dump. A
        // measurement that fails does not stop the restore (the safety
        // checkpoint keeps everything), but says so.
        let unit = if db.kind == crate::plan::DbKind::Redis {
            "key"
        } else {
            "row"
        };
        let mut discard = super::discard::Discard::new(&db.name, unit, "");
        let t = std::time::Instant::now();
        let measured = block_on(db::measure(&db, &self.snapshot, &dir));
        tracing::debug!(database = %db.name, ms = t.elapsed().as_millis() as u64, "measured what the restore discards");
        match measured {
            Ok(m) => {
                discard.counts = m.counts;
                discard.schema = m.schema;
            }
            Err(e) => discard.unmeasured = Some(format!("{e:#}")),
        }
        Ok(Box::new(DbRestore {
            state: self,
            db,
            dir,
            actions: plan.actions,
            discard,
        }))
    }
}

struct DbRestore<'a> {
    state: &'a DbState,
    db: Database,
    dir: PathBuf,
    actions: Vec<String>,
    discard: super::discard::Discard,
}

impl<'a> PlannedRestore for DbRestore<'a> {
    fn changes(&self) -> Vec<ChangeLine> {
        self.actions
            .iter()
            .map(|a| {
                // Each sentence starts with its verb ("replace its 2 table(s)
                // ...", "drop 1 table(s) ...", "terminate 1 session(s) ..."):
                // the verb is the action, as `add` or `remove` are for files.
                let (verb, rest) = a.split_once(' ').unwrap_or(("replace", a));
                ChangeLine {
                    resource: self.state.snapshot.name.clone(),
                    action: verb.into(),
                    what: rest.into(),
                }
            })
            .collect()
    }
    fn discard(&self) -> Option<super::discard::Discard> {
        Some(self.discard.clone())
    }
    fn prepare<'b>(self: Box<Self>, _cx: &Cx<'_>) -> anyhow::Result<Box<dyn PreparedRestore + 'b>>
    where
        Self: 'b,
    {
        Ok(self)
    }
}

impl PreparedRestore for DbRestore<'_> {
    fn commit(self: Box<Self>, _cx: &Cx<'_>) -> anyhow::Result<()> {
        let report = block_on(db::restore(&self.db, &self.state.snapshot, &self.dir))?;
        for s in &report.steps {
            tracing::info!(database = %self.db.name, "{s}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Held for CommandState {
    fn name(&self) -> String {
        self.snapshot.name.clone()
    }
    fn spec(&self) -> Spec {
        Spec::Command(self.snapshot.name.clone())
    }
    fn verify(&self, cx: &Cx<'_>, _batch: &crate::store::Batch<'_>) -> anyhow::Result<()> {
        verify_object(cx, self.object, &self.snapshot.name)
    }
    fn plan_restore<'a>(&'a self, cx: &Cx<'_>) -> anyhow::Result<Box<dyn PlannedRestore + 'a>> {
        let spec = capture_command(cx.plan, &self.snapshot.name)?.clone();
        let dir = scratch(cx, "restore-cmd", &self.snapshot.name)?;
        take(cx, self.object, &dir, &self.snapshot.file.name)?;
        let plan = command::plan_restore(&spec, &self.snapshot, &dir)?;
        Ok(Box::new(CommandRestore {
            state: self,
            spec,
            dir,
            run: plan.run,
        }))
    }
}

struct CommandRestore<'a> {
    state: &'a CommandState,
    spec: CaptureCommand,
    dir: PathBuf,
    run: String,
}

impl<'a> PlannedRestore for CommandRestore<'a> {
    fn changes(&self) -> Vec<ChangeLine> {
        vec![ChangeLine {
            resource: self.state.snapshot.name.clone(),
            action: "run".into(),
            what: self.run.clone(),
        }]
    }
    fn prepare<'b>(self: Box<Self>, _cx: &Cx<'_>) -> anyhow::Result<Box<dyn PreparedRestore + 'b>>
    where
        Self: 'b,
    {
        Ok(self)
    }
}

impl PreparedRestore for CommandRestore<'_> {
    fn commit(self: Box<Self>, _cx: &Cx<'_>) -> anyhow::Result<()> {
        block_on(command::restore(&self.spec, &self.state.snapshot, &self.dir))?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}
