//! Probes: one health measurement of the system, taken as a timestamped
//! [`SampleRow`]. Each probe kind lives in its own file.

pub mod compose;
pub mod http;

use crate::context::Clock;
use crate::oplog::SampleRow;
use crate::plan::{Probe, ProbeKind};

/// Takes one sample of `probe` now.
#[tracing::instrument(skip_all, fields(probe = %probe.name))]
pub async fn sample(probe: &Probe, clock: &Clock) -> SampleRow {
    let at = clock.now_ms();
    let mut s = match &probe.kind {
        ProbeKind::Http(h) => http::sample(h, probe.timeout).await,
        ProbeKind::Compose { service, control } => compose::sample(service, control, probe.timeout).await,
    };
    s.probe = probe.name.clone();
    s.at = at;
    s
}
