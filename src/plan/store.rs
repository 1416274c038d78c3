//! Validation of `[store]`: the retention of safety checkpoints and the
//! store's size budget.

use std::time::Duration;

use serde::Serialize;

use super::raw::{self, S};
use super::{Validator, units};

/// How many safety checkpoints `keep-safety` keeps when the plan does not say.
///
/// Every rollback, restore, undo and redo takes one, and `backout undo` walks
/// back one operation at a time, each from its own: ten is ten undos back,
/// more than a day of trial and error needs. A count, not an age, bounds the
/// store whatever the pace: fifty restores in an hour keep ten.
pub const DEFAULT_KEEP_SAFETY: usize = 10;

/// The largest `keep-safety` accepted.
const MAX_KEEP_SAFETY: i64 = 100_000;

/// What `[store]` says; applied after every operation that takes a safety
/// checkpoint, and by `backout gc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreRules {
    /// The newest N safety checkpoints are kept.
    pub keep_safety: usize,
    /// Safety checkpoints younger than this are kept too.
    pub keep_safety_for: Option<Duration>,
    /// While the store is larger, older safety checkpoints are dropped
    /// (whatever `keep-safety` and `keep-safety-for` say).
    pub max_size: Option<u64>,
    /// `max-size` as written (`"2GB"`), to say it back as the user wrote it.
    pub max_size_text: Option<String>,
}

impl Default for StoreRules {
    fn default() -> Self {
        StoreRules {
            keep_safety: DEFAULT_KEEP_SAFETY,
            keep_safety_for: None,
            max_size: None,
            max_size_text: None,
        }
    }
}

impl Validator<'_> {
    pub(super) fn store(&mut self, r: &S<raw::RawStore>) -> StoreRules {
        let r = r.get_ref();
        let mut out = StoreRules::default();
        if let Some(n) = &r.keep_safety {
            match usize::try_from(*n.get_ref()) {
                Ok(v) if *n.get_ref() <= MAX_KEEP_SAFETY => out.keep_safety = v,
                _ => self.error(
                    n.span(),
                    format!("keep-safety must be between 0 and {MAX_KEEP_SAFETY}, found {}", n.get_ref()),
                    format!(
                        "the newest N safety checkpoints are kept (each is one `backout undo` back); the default is {DEFAULT_KEEP_SAFETY}"
                    ),
                ),
            }
        }
        out.keep_safety_for = r.keep_safety_for.as_ref().and_then(|d| self.duration(d));
        if let Some(m) = &r.max_size {
            match units::parse_size(m.get_ref()) {
                Ok(0) => self.error(
                    m.span(),
                    format!("max-size must be more than 0, found {:?}", m.get_ref()),
                    "the store's budget, e.g. max-size = \"2GB\"; leave it out for no budget",
                ),
                Ok(v) => {
                    out.max_size = Some(v);
                    out.max_size_text = Some(m.get_ref().clone());
                }
                Err(e) => self.error(m.span(), e.message, e.hint),
            }
        }
        out
    }
}
