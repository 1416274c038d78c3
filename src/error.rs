//! The top-level error and the exit codes it maps to.

use std::fmt;

/// Exit codes, documented in the README and in `backout --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    /// The command ran and failed (a check failed, a step failed, an I/O error).
    Failure = 1,
    /// Bad usage or a bad plan: nothing was done.
    Usage = 2,
    /// Another backout command holds the lock.
    Locked = 3,
    /// A watch reached a rollback verdict and did not roll back itself.
    RollbackTriggered = 4,
    /// `fsck` found missing or corrupt objects, or a restore refused a damaged
    /// checkpoint (or one whose record names the store or leaves the project).
    Damaged = 5,
    /// A watch or deploy rolled back, and the recovery was verified.
    RolledBack = 6,
    /// A watch or deploy rolled back, and the rollback failed or the recovery
    /// was not verified.
    NotRecovered = 7,
}

/// An error with the exit code it should end the process with.
#[derive(Debug)]
pub struct CommandError {
    pub code: ExitCode,
    pub error: anyhow::Error,
}

impl CommandError {
    pub fn usage(e: impl Into<anyhow::Error>) -> Self {
        CommandError {
            code: ExitCode::Usage,
            error: e.into(),
        }
    }

    pub fn failure(e: impl Into<anyhow::Error>) -> Self {
        CommandError {
            code: ExitCode::Failure,
            error: e.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for CommandError {
    fn from(e: E) -> Self {
        let error: anyhow::Error = e.into();
        let code = if error
            .downcast_ref::<crate::lock::LockError>()
            .is_some_and(|l| matches!(l, crate::lock::LockError::Held { .. }))
        {
            ExitCode::Locked
        } else if error.downcast_ref::<crate::plan::PlanErrors>().is_some()
            || error.downcast_ref::<crate::plan::PlanLoadError>().is_some()
        {
            ExitCode::Usage
        } else if is_damage(&error) {
            ExitCode::Damaged
        } else {
            ExitCode::Failure
        };
        CommandError { code, error }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// Whether `e` is about a missing, corrupt or unsafe stored object.
fn is_damage(e: &anyhow::Error) -> bool {
    use crate::resource::paths::PathsError;
    use crate::store::StoreError;
    use crate::store::manifest::ManifestError;
    let store = |s: &StoreError| matches!(s, StoreError::Missing { .. } | StoreError::Corrupt { .. });
    let manifest = |m: &ManifestError| match m {
        ManifestError::Store(s) => store(s),
        _ => true,
    };
    e.chain().any(|c| {
        c.downcast_ref::<StoreError>().is_some_and(store)
            || c.downcast_ref::<ManifestError>().is_some_and(manifest)
            || c.downcast_ref::<PathsError>().is_some_and(|p| match p {
                PathsError::Store(s) => store(s),
                PathsError::Manifest(m) => manifest(m),
                // A record edited to name the store: damaged, whatever it holds.
                PathsError::StateDir { .. } => true,
                _ => false,
            })
            || c.downcast_ref::<crate::resource::git::GitError>()
                .is_some_and(|g| matches!(g, crate::resource::git::GitError::OtherRepository { .. }))
    })
}
