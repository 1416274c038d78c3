//! Waiting for a service to be healthy again, without being fooled and
//! without hammering it: the probe is sampled with a back-off up to its own
//! interval; a healthy answer counts only when the service's instance is the
//! one listening on its port (a copy started by hand answering on the old code
//! is not recovery); and the wait fails at once, with how the instance ended
//! and the end of its log, when the process it waits for has died.

use std::time::{Duration, Instant};

use super::identity::{self, Serving};
use super::{ServiceFiles, procs};
use crate::context::Clock;
use crate::plan::{Probe, Service, ServiceKind, units};

/// The first pause between two samples; each failed sample doubles it, up to
/// the probe's interval (at most [`MAX_PAUSE`]).
pub const FIRST_PAUSE: Duration = Duration::from_millis(20);
/// The longest pause between two samples of a wait, whatever the probe's interval.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A service whose instance a wait checks besides the probe.
pub struct Watched<'a> {
    pub svc: &'a Service,
    pub files: ServiceFiles,
}

/// How a wait ended.
#[derive(Debug, Clone)]
pub struct Waited {
    pub ok: bool,
    /// Not healthy, but known: the instance answered unhealthily
    /// [`SETTLED_AFTER`] times in a row, or died ([`observe`] only).
    pub settled: bool,
    pub tries: u32,
    /// What it saw: "health healthy after 3 tries", or why it failed, with the
    /// last probe result and the end of the service's log.
    pub message: String,
}

/// The services behind `probe`, those whose `ready` it is or whose port it
/// reaches, with their run files.
pub fn watched<'a>(services: &'a [Service], probe: &Probe, run_dir: &std::path::Path) -> Vec<Watched<'a>> {
    let port = probe.kind.local_port();
    services
        .iter()
        .filter(|s| s.ready.as_deref() == Some(probe.name.as_str()) || (port.is_some() && s.port == port))
        .map(|svc| Watched {
            svc,
            files: ServiceFiles::new(run_dir, &svc.name),
        })
        .collect()
}

/// How many unhealthy answers in a row tell [`observe`] the health of a
/// service that is up: it answers, and what it answers is not healthy.
pub const SETTLED_AFTER: u32 = 3;

/// Samples `probe` until it is healthy and every process service in `watched`
/// with a port is served by its own instance, or `timeout` passes, or a
/// watched instance dies.
pub async fn until_healthy(probe: &Probe, clock: &Clock, timeout: Duration, watched: &[Watched<'_>]) -> Waited {
    sample_until(probe, clock, timeout, watched, false).await
}

/// Finds out how healthy the services behind `probe` are, without requiring
/// them to be: what undo does after putting back a state that may be the
/// broken one a rollback was for. Like [`until_healthy`], but it also ends
/// (`settled`) once the service answers unhealthily [`SETTLED_AFTER`] times in
/// a row — an answer, not a refused connection: it is up, and that is its health.
pub async fn observe(probe: &Probe, clock: &Clock, timeout: Duration, watched: &[Watched<'_>]) -> Waited {
    sample_until(probe, clock, timeout, watched, true).await
}

async fn sample_until(
    probe: &Probe,
    clock: &Clock,
    timeout: Duration,
    watched: &[Watched<'_>],
    settle: bool,
) -> Waited {
    let until = Instant::now() + timeout;
    let cap = probe.every.clamp(Duration::from_millis(1), MAX_PAUSE);
    let mut pause = FIRST_PAUSE.min(cap);
    // The instances that are to come up: those recorded when the wait begins.
    let instances: Vec<Option<i32>> = watched
        .iter()
        .map(|w| match w.svc.kind {
            ServiceKind::Process => super::instance(&w.files).map(|i| i.pid),
            _ => None,
        })
        .collect();
    let mut tries = 0;
    let mut unhealthy_answers = 0;
    loop {
        tries += 1;
        for (w, pid) in watched.iter().zip(&instances) {
            if let Some(pid) = pid
                && let Err(e) = identity::check_alive(w.svc, &w.files, *pid)
            {
                return Waited {
                    ok: false,
                    settled: settle,
                    tries,
                    message: format!("{} cannot become healthy: {e}", probe.name),
                };
            }
        }
        let s = crate::probe::sample(probe, clock).await;
        let last = if s.ok {
            let not_ours = watched
                .iter()
                .map(|w| (w, identity::serving(w.svc, &w.files)))
                .find(|(_, serving)| !matches!(serving, Serving::Ours { .. } | Serving::Unknown));
            match not_ours {
                None => {
                    return Waited {
                        ok: true,
                        settled: true,
                        tries,
                        message: format!("{} healthy after {tries} tries", probe.name),
                    };
                }
                Some((w, serving)) => format!("it answers, but {}", serving.describe(&w.svc.name)),
            }
        } else {
            // An answer (a status, a command's exit) rather than no connection.
            let answered = (s.status.is_some() || s.value.is_some() || s.fields.contains_key("exit_code"))
                && watched.iter().all(|w| {
                    matches!(
                        identity::serving(w.svc, &w.files),
                        Serving::Ours { .. } | Serving::Unknown
                    )
                });
            unhealthy_answers = if answered { unhealthy_answers + 1 } else { 0 };
            s.error.unwrap_or_else(|| "unhealthy".into())
        };
        if settle && unhealthy_answers >= SETTLED_AFTER {
            return Waited {
                ok: false,
                settled: true,
                tries,
                message: format!("{} is up and unhealthy: {last}", probe.name),
            };
        }
        if Instant::now() >= until {
            let mut message = format!(
                "{} not healthy after {tries} tries in {}; last: {last}",
                probe.name,
                units::format_duration(timeout)
            );
            for w in watched {
                let tail = procs::log_tail(&w.files.log, 8);
                if !tail.trim().is_empty() && w.svc.kind == ServiceKind::Process {
                    message.push_str(&format!("\nthe last lines of {}:", w.files.log.display()));
                    for l in tail.lines() {
                        message.push_str(&format!("\n  | {l}"));
                    }
                }
            }
            return Waited {
                ok: false,
                settled: false,
                tries,
                message,
            };
        }
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(cap);
    }
}
