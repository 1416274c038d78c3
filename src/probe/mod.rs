//! Probes: one health measurement of the system, taken as a timestamped
//! [`SampleRow`]. Each probe kind lives in its own file; probes that need memory
//! between samples (the log probe's cursor, the process probe's CPU ticks) keep
//! it in a [`ProbeState`] owned by whoever samples them repeatedly.

pub mod command;
pub mod compose;
pub mod http;
#[cfg(test)]
mod http_breakage;
pub mod log;
pub mod process;
pub mod prometheus;
pub mod tcp;

use std::path::Path;

use crate::context::Clock;
use crate::oplog::SampleRow;
use crate::plan::{Probe, ProbeKind};

/// What a probe remembers between samples.
#[derive(Debug, Default)]
pub struct ProbeState {
    log: log::LogState,
    cpu: process::CpuState,
}

impl ProbeState {
    /// A state whose log cursor is persisted under `dir` (one file per probe),
    /// so a resumed watch reads on from where the last one stopped.
    pub fn persisted(probe: &Probe, dir: &Path) -> Self {
        ProbeState {
            log: log::LogState::persisted(dir.join(format!("{}.cursor", probe.name))),
            cpu: process::CpuState::default(),
        }
    }
}

/// Takes one sample of `probe` now, with no memory of earlier samples.
pub async fn sample(probe: &Probe, clock: &Clock) -> SampleRow {
    sample_with(probe, clock, &mut ProbeState::default()).await
}

/// Takes one sample of `probe` now, continuing from `state`.
#[tracing::instrument(skip_all, fields(probe = %probe.name))]
pub async fn sample_with(probe: &Probe, clock: &Clock, state: &mut ProbeState) -> SampleRow {
    let at = clock.now_ms();
    let mut s = match &probe.kind {
        ProbeKind::Http(h) => http::sample(h, probe.timeout).await,
        ProbeKind::Compose { service, control } => compose::sample(service, control, probe.timeout).await,
        ProbeKind::Tcp(t) => tcp::sample(t, probe.timeout).await,
        ProbeKind::Command(c) => command::sample(c, probe.timeout).await,
        ProbeKind::Log(l) => log::sample(l, &mut state.log).await,
        ProbeKind::Process(p) => process::sample(p, &mut state.cpu),
        ProbeKind::Prometheus(p) => prometheus::sample(p, probe.timeout).await,
    };
    s.probe = probe.name.clone();
    s.at = at;
    s
}

/// A test's external dependency from the environment: `None` when absent on a
/// developer's machine, a failure when absent under `CI=true` (nothing is
/// skipped silently in CI).
#[cfg(test)]
pub fn test_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{name} is not set: scripts/test starts the server it names")
        }
        _ => None,
    }
}
