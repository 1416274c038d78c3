//! A project under backout: the plan, the state directory `.backout/` beside it,
//! the operation log and the lock.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::context::Clock;
use crate::lock::Lock;
use crate::oplog::Oplog;
use crate::plan::Plan;
use crate::redact::Redactor;

/// The state directory's name, next to `backout.toml`.
pub const STATE_DIR: &str = ".backout";

#[derive(Debug)]
pub struct Workspace {
    pub plan: Plan,
    pub state_dir: PathBuf,
    pub oplog: Oplog,
    pub clock: Clock,
    pub redactor: Redactor,
}

impl Workspace {
    /// Opens the state directory beside the plan, creating it on first use.
    pub fn open(plan: Plan, clock: Clock, redactor: Redactor) -> anyhow::Result<Workspace> {
        redactor.add(plan.secrets.iter().cloned());
        redactor.add_patterns(plan.redact_patterns.iter().cloned());
        let state_dir = plan.root.join(STATE_DIR);
        fs_err::create_dir_all(&state_dir)?;
        // Keep backout's own files out of the user's repository and checkpoints.
        let ignore = state_dir.join(".gitignore");
        if !ignore.exists() {
            fs_err::write(&ignore, "*\n")?;
        }
        let oplog = Oplog::open(&state_dir.join("state.db"), redactor.clone())?;
        Ok(Workspace {
            plan,
            state_dir,
            oplog,
            clock,
            redactor,
        })
    }

    /// Takes the lock every command that changes something must hold.
    pub fn lock(&self, command: &str) -> anyhow::Result<Lock> {
        Ok(Lock::acquire(&self.state_dir.join("lock"), command, self.clock.now())?)
    }

    pub fn root(&self) -> &Path {
        &self.plan.root
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The object store, `.backout/objects/`.
    pub fn store(&self) -> anyhow::Result<crate::store::Store> {
        Ok(crate::store::Store::open(&self.state_dir.join("objects"))?)
    }

    /// Where service logs and pid files live.
    pub fn run_dir(&self) -> anyhow::Result<PathBuf> {
        let d = self.state_dir.join("run");
        fs_err::create_dir_all(&d).context("creating the run directory")?;
        Ok(d)
    }
}
