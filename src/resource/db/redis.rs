//! Redis (being written).
use std::path::Path;
use std::time::Duration;

use super::{DbError, DbSnapshot, RestorePlan, RestoreReport};
use crate::plan::Database;

pub async fn capture(db: &Database, _d: &Path) -> Result<DbSnapshot, DbError> {
    Err(DbError::Location { name: db.name.clone(), message: "todo".into() })
}
pub async fn verify(s: &DbSnapshot, _d: &Path, _t: Duration) -> Result<(), DbError> {
    Err(DbError::Location { name: s.name.clone(), message: "todo".into() })
}
pub async fn plan_restore(db: &Database, _s: &DbSnapshot, _d: &Path) -> Result<RestorePlan, DbError> {
    Err(DbError::Location { name: db.name.clone(), message: "todo".into() })
}
pub async fn restore(db: &Database, _s: &DbSnapshot, _d: &Path) -> Result<RestoreReport, DbError> {
    Err(DbError::Location { name: db.name.clone(), message: "todo".into() })
}
