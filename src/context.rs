//! What comes from outside the process: environment variables and the clock.
//! Built once by the CLI and passed down, so domain code never reads the process
//! environment itself and tests can fix both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment, read once at start-up.
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// The clock: the system's, or a fixed one a test moves by hand.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    fixed: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Self {
        Clock { fixed: None }
    }

    /// A clock stopped at `start`, moved only by [`Clock::advance`].
    pub fn fixed(start: Timestamp) -> Self {
        Clock {
            fixed: Some(Arc::new(AtomicI64::new(start.as_millisecond()))),
        }
    }

    pub fn now(&self) -> Timestamp {
        match &self.fixed {
            None => Timestamp::now(),
            Some(ms) => Timestamp::from_millisecond(ms.load(Ordering::SeqCst)).unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    pub fn advance(&self, by: std::time::Duration) {
        if let Some(ms) = &self.fixed {
            ms.fetch_add(millis(by), Ordering::SeqCst);
        }
    }
}

/// A duration in milliseconds, for arithmetic on timestamps: saturated, never
/// wrapped (the plan caps durations at 100 years, far from the limit).
pub fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The instant `d` from now. A duration too long for the clock is cut to
/// [`crate::plan::units::MAX_DURATION`]: a deadline never panics.
pub fn deadline(d: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(crate::plan::units::MAX_DURATION))
        .unwrap_or(now)
}

/// [`deadline`] on tokio's clock, for `timeout_at` and `sleep_until`.
pub fn async_deadline(d: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(crate::plan::units::MAX_DURATION))
        .unwrap_or(now)
}
