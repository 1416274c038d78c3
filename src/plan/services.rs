//! Validation of a service's kind and how it is driven: `process` (backout starts
//! it), `compose` (a service of a compose project), `systemd` (a unit), `command`
//! (start, stop and status commands given).

use std::path::PathBuf;

use super::raw::{self, S};
use super::{Command, ServiceKind, Validator};

/// How a service that backout does not spawn itself is driven.
#[derive(Debug, Clone)]
pub enum ServiceControl {
    /// backout spawns `start` and keeps the pid.
    Process,
    Compose {
        /// The directory compose runs in (holds the compose file).
        project_dir: PathBuf,
        /// `-f FILE`, when not the default `docker-compose.yml` / `compose.yaml`.
        file: Option<PathBuf>,
        /// `-p NAME`, when given.
        project: Option<String>,
        /// The service's name in the compose file.
        service: String,
    },
    Systemd {
        unit: String,
        /// `systemctl --user`.
        user: bool,
    },
    Command {
        stop: Command,
        /// Exit code 0 means running; without it, the service's state is unknown.
        status: Option<Command>,
    },
}

impl Validator<'_> {
    pub(super) fn service_control(&mut self, s: &S<raw::RawService>, name: &str) -> (ServiceKind, ServiceControl) {
        let r = s.get_ref();
        let kind_span = r.kind.as_ref().map_or(s.span(), |k| k.span());
        let kind = match r.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("process") => ServiceKind::Process,
            Some("compose") => ServiceKind::Compose,
            Some("systemd") => ServiceKind::Systemd,
            Some("command") => ServiceKind::Command,
            Some(other) => {
                self.error(
                    kind_span,
                    format!("unknown service kind {other:?}"),
                    "kind = \"process\" (backout starts it), \"compose\", \"systemd\" or \"command\"",
                );
                return (ServiceKind::Process, ServiceControl::Process);
            }
        };
        // Keys of another kind are mistakes: say so rather than ignore them.
        let compose_keys = [
            ("project-dir", r.project_dir.as_ref().map(|x| x.span())),
            ("compose-file", r.compose_file.as_ref().map(|x| x.span())),
            ("project", r.project.as_ref().map(|x| x.span())),
            ("compose-service", r.compose_service.as_ref().map(|x| x.span())),
        ];
        let systemd_keys = [
            ("unit", r.unit.as_ref().map(|x| x.span())),
            ("user", r.user.as_ref().map(|x| x.span())),
        ];
        let command_keys = [
            ("stop", r.stop.as_ref().map(|x| x.span())),
            ("status", r.status.as_ref().map(|x| x.span())),
        ];
        let mut foreign: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
        let mut reject = |keys: &[(&'static str, Option<std::ops::Range<usize>>)]| {
            for (k, sp) in keys {
                if let Some(sp) = sp {
                    foreign.push((k, sp.clone()));
                }
            }
        };
        if kind != ServiceKind::Compose {
            reject(&compose_keys);
        }
        if kind != ServiceKind::Systemd {
            reject(&systemd_keys);
        }
        if kind != ServiceKind::Command {
            reject(&command_keys);
        }
        if !matches!(kind, ServiceKind::Process | ServiceKind::Command)
            && let Some(st) = &r.start
        {
            foreign.push(("start", st.span()));
        }
        for (k, sp) in foreign {
            self.error(
                sp,
                format!("`{k}` does not apply to a {kind:?} service").to_lowercase(),
                "compose services take project-dir, compose-file, project, compose-service; systemd: unit, user; command: start, stop, status",
            );
        }
        let control = match kind {
            ServiceKind::Process => ServiceControl::Process,
            ServiceKind::Compose => ServiceControl::Compose {
                project_dir: r
                    .project_dir
                    .as_ref()
                    .map_or(self.root.to_path_buf(), |d| self.root.join(d.get_ref())),
                file: r.compose_file.as_ref().map(|f| PathBuf::from(f.get_ref())),
                project: r.project.as_ref().map(|p| p.get_ref().clone()),
                service: r
                    .compose_service
                    .as_ref()
                    .map_or(name.to_string(), |c| c.get_ref().clone()),
            },
            ServiceKind::Systemd => ServiceControl::Systemd {
                unit: r
                    .unit
                    .as_ref()
                    .map_or(format!("{name}.service"), |u| u.get_ref().clone()),
                user: r.user.as_ref().is_some_and(|u| *u.get_ref()),
            },
            ServiceKind::Command => {
                let stop = match &r.stop {
                    Some(c) => self.command(c, false),
                    None => {
                        self.error(
                            r.name.span(),
                            format!("command service {name:?} has no stop command"),
                            "add stop = \"...\": backout must be able to stop what it restarts",
                        );
                        Command {
                            argv: Vec::new(),
                            shell: false,
                        }
                    }
                };
                ServiceControl::Command {
                    stop,
                    status: r.status.as_ref().map(|c| self.command(c, false)),
                }
            }
        };
        (kind, control)
    }
}

impl Validator<'_> {
    /// A compose probe measures a `[[service]]` of kind compose: it gets that
    /// service's project here, once services are validated.
    pub(super) fn link_compose_probes(
        &mut self,
        raw: &[S<raw::RawProbe>],
        mut probes: Vec<super::Probe>,
        services: &[super::Service],
    ) -> Vec<super::Probe> {
        for (p, r) in probes.iter_mut().zip(raw) {
            if let (Some(c), Some(_)) = (&r.get_ref().compose, &r.get_ref().http) {
                self.error(
                    c.span(),
                    format!("probe {:?} has both http and compose", p.name),
                    "a probe measures one thing: split it into two probes",
                );
            }
            let super::ProbeKind::Compose { service, control } = &mut p.kind else {
                continue;
            };
            let span = r.get_ref().compose.as_ref().map_or(r.span(), |c| c.span());
            match services.iter().find(|s| s.name == *service) {
                Some(s) if s.kind == ServiceKind::Compose => *control = s.control.clone(),
                Some(s) => self.error(
                    span,
                    format!("service {:?} is a {:?} service, not compose", s.name, s.kind).to_lowercase(),
                    "a compose probe measures a [[service]] with kind = \"compose\"",
                ),
                None => {
                    let known: Vec<&str> = services
                        .iter()
                        .filter(|s| s.kind == ServiceKind::Compose)
                        .map(|s| s.name.as_str())
                        .collect();
                    let hint = super::unknown_hint("compose service", service, &known);
                    self.error(span, format!("no service named {service:?}"), hint);
                }
            }
        }
        probes
    }
}

/// A process service without `port` listens where its `ready` probe looks,
/// when that probe targets this machine (an http URL or tcp address on
/// loopback, `localhost` or `0.0.0.0`).
pub(super) fn ports_from_ready_probes(
    mut services: Vec<super::Service>,
    probes: &[super::Probe],
) -> Vec<super::Service> {
    for s in services.iter_mut().filter(|s| s.port.is_none()) {
        s.port = s
            .ready
            .as_deref()
            .and_then(|r| probes.iter().find(|p| p.name == r))
            .and_then(|p| p.kind.local_port());
    }
    services
}

/// The port of a `host:port` or URL when the host is this machine.
pub fn local_port_of(host: &str, port: Option<u16>) -> Option<u16> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if local { port } else { None }
}
