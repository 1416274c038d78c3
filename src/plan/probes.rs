//! The probe kinds beyond HTTP — tcp, command, log, process, prometheus — as
//! validated plan values, and the validation that builds them from the raw
//! `[[probe]]` tables.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::PathBuf;

use super::raw::{self, S};
use super::{Command, ProbeKind, Text, Validator};

/// `tcp = { address = "127.0.0.1:5432" }`: up when a connection opens; its
/// latency is the connect time.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    /// `host:port`.
    pub address: String,
}

/// `command = { run = "..." }`: healthy when it exits with `exit_code` (and its
/// output matches `output_match`); `number` picks the probe's value out of stdout.
#[derive(Debug, Clone)]
pub struct CommandProbe {
    pub command: Command,
    pub cwd: PathBuf,
    pub exit_code: i32,
    pub output_match: Option<regex::Regex>,
    pub number: Option<regex::Regex>,
}

/// `log = { path = "...", patterns = [...] }`: counts new lines matching any
/// pattern, reading only what was appended since the last sample.
#[derive(Debug, Clone)]
pub struct LogProbe {
    pub path: PathBuf,
    /// The patterns as written, in order; per-pattern counts are keyed by them.
    pub patterns: Vec<String>,
}

/// How a process probe finds its process.
#[derive(Debug, Clone)]
pub enum ProcessTarget {
    Pid(i32),
    /// A file holding the pid (first word); the form backout's own services use
    /// is `PID START_TIME`, and the start time is checked when present.
    Pidfile(PathBuf),
    /// A process service of the plan, through its pid file.
    Service {
        name: String,
        pidfile: PathBuf,
    },
    /// The oldest process whose command line matches.
    Cmdline(regex::Regex),
}

/// `process = { service = "api" }`: RSS, CPU and open files of a process.
#[derive(Debug, Clone)]
pub struct ProcessProbe {
    pub target: ProcessTarget,
    /// Include descendants in RSS, CPU and open files.
    pub children: bool,
}

/// `prometheus = { url = "...", query = "..." }`: an instant query.
#[derive(Debug, Clone)]
pub struct PrometheusProbe {
    /// The server's base URL, e.g. `http://127.0.0.1:9090`.
    pub url: Text,
    pub query: String,
}

impl ProbeKind {
    /// The TCP port the probe reaches on this machine (an http URL or tcp
    /// address whose host is loopback, `localhost` or `0.0.0.0`).
    pub fn local_port(&self) -> Option<u16> {
        match self {
            ProbeKind::Http(h) => {
                let url = reqwest::Url::parse(&h.url.value).ok()?;
                super::services::local_port_of(url.host_str()?, url.port_or_known_default())
            }
            ProbeKind::Tcp(t) => {
                let (host, port) = t.address.rsplit_once(':')?;
                super::services::local_port_of(host, port.parse().ok())
            }
            _ => None,
        }
    }

    /// What the probe measures, for listings: a URL, an address, a command, a path.
    pub fn target(&self) -> String {
        match self {
            ProbeKind::Http(h) => h.url.shown.clone(),
            ProbeKind::Tcp(t) => format!("tcp://{}", t.address),
            ProbeKind::Command(c) => c.command.shown(),
            ProbeKind::Log(l) => l.path.display().to_string(),
            ProbeKind::Process(p) => match &p.target {
                ProcessTarget::Pid(pid) => format!("pid {pid}"),
                ProcessTarget::Pidfile(f) => format!("pidfile {}", f.display()),
                ProcessTarget::Service { name, .. } => format!("service {name}"),
                ProcessTarget::Cmdline(re) => format!("cmdline /{}/", re.as_str()),
            },
            ProbeKind::Prometheus(p) => format!("{} query {}", p.url.shown, p.query),
            ProbeKind::Compose { service, .. } => format!("compose service {service}"),
        }
    }

    /// What the probe does, and what healthy means: `("GET http://...", "status 2xx")`.
    pub fn describe(&self) -> (String, String) {
        match self {
            ProbeKind::Http(h) => {
                let mut expect = vec![format!("status {}", h.status)];
                expect.extend(h.json.iter().map(|(k, v)| format!("{k} = {v}")));
                if let Some(re) = &h.body_match {
                    expect.push(format!("body ~ /{}/", re.as_str()));
                }
                if let Some(re) = &h.number {
                    expect.push(format!("a number in /{}/", re.as_str()));
                }
                (format!("{} {}", h.method, h.url), expect.join(", "))
            }
            ProbeKind::Tcp(t) => (format!("connect to {}", t.address), "it accepts".into()),
            ProbeKind::Compose { service, .. } => (
                format!("the container of compose service {service}"),
                "running, and healthy when it has a HEALTHCHECK".into(),
            ),
            ProbeKind::Command(c) => {
                let mut healthy = format!("exit code {}", c.exit_code);
                if let Some(re) = &c.output_match {
                    healthy.push_str(&format!(", output ~ /{}/", re.as_str()));
                }
                if let Some(re) = &c.number {
                    healthy.push_str(&format!(", a number in /{}/", re.as_str()));
                }
                (format!("run `{}`", c.command.shown()), healthy)
            }
            ProbeKind::Log(l) => (
                format!(
                    "count new lines of {} matching {}",
                    l.path.display(),
                    l.patterns
                        .iter()
                        .map(|p| format!("/{p}/"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
                "the file can be read".into(),
            ),
            ProbeKind::Process(p) => (
                format!(
                    "RSS, CPU and open files of {}{}",
                    self.target(),
                    if p.children { " and its children" } else { "" }
                ),
                "the process runs".into(),
            ),
            ProbeKind::Prometheus(p) => (
                format!("query {} at {}", p.query, p.url.shown),
                "the server answers with a number".into(),
            ),
        }
    }
}

/// The probe kinds a `[[probe]]` table may name, for messages.
pub const KINDS: &str = "http, tcp, command, log, process or prometheus";

/// Compiled regexes by pattern, shared by every plan this process validates.
/// Compiling a plan's regexes was most of validating it (5 ms of a 9 KB
/// example, in a release build); a process that validates plans again and
/// again (the test suite, the plan fuzzer) compiles each pattern once. A
/// `Regex` is immutable and cheap to clone, so sharing changes nothing else.
fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    /// Enough for every pattern of every example plan, many times over.
    const MAX: usize = 1024;
    static CACHE: LazyLock<Mutex<HashMap<String, regex::Regex>>> = LazyLock::new(Default::default);
    if let Some(re) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        return Ok(re.clone());
    }
    let re = regex::Regex::new(pattern)?;
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= MAX {
        cache.clear();
    }
    cache.insert(pattern.to_string(), re.clone());
    Ok(re)
}

impl Validator<'_> {
    /// How many kinds `r` names; more than one is an error reported here.
    pub(super) fn probe_kind_count(&mut self, r: &raw::RawProbe, name: &str, span: Range<usize>) -> usize {
        let n = [
            r.http.is_some(),
            r.tcp.is_some(),
            r.command.is_some(),
            r.log.is_some(),
            r.process.is_some(),
            r.prometheus.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n > 1 {
            self.error(
                span,
                format!("probe {name:?} names {n} kinds of measurement"),
                format!("a probe measures one thing: keep one of {KINDS}, and make another probe for the rest"),
            );
        }
        n
    }

    /// The probe kind of `r` when it is not HTTP.
    pub(super) fn other_probe_kind(&mut self, r: &raw::RawProbe, name: &str) -> Option<ProbeKind> {
        if let Some(t) = &r.tcp {
            let a = &t.get_ref().address;
            let ok = a
                .get_ref()
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                self.error(
                    a.span(),
                    format!("{:?} is not a host:port address", a.get_ref()),
                    "write address = \"127.0.0.1:5432\"",
                );
            }
            return Some(ProbeKind::Tcp(TcpProbe {
                address: a.get_ref().clone(),
            }));
        }
        if let Some(c) = &r.command {
            let c = c.get_ref();
            let shell = c.shell.as_ref().is_some_and(|s| *s.get_ref());
            let command = self.command(&c.run, shell);
            let cwd = c
                .cwd
                .as_ref()
                .map_or(self.root.to_path_buf(), |d| self.root.join(d.get_ref()));
            let exit_code = match &c.exit_code {
                Some(e) if (0..=255).contains(e.get_ref()) => *e.get_ref() as i32,
                Some(e) => {
                    self.error(
                        e.span(),
                        format!("exit code {} is out of range", e.get_ref()),
                        "exit codes run from 0 to 255",
                    );
                    0
                }
                None => 0,
            };
            let output_match = c.output_match.as_ref().and_then(|m| self.regex(m, "the output match"));
            let number = c.number.as_ref().and_then(|m| self.regex(m, "`number`"));
            return Some(ProbeKind::Command(CommandProbe {
                command,
                cwd,
                exit_code,
                output_match,
                number,
            }));
        }
        if let Some(l) = &r.log {
            let l = l.get_ref();
            let mut patterns: Vec<&S<String>> = l.pattern.iter().collect();
            if let Some(ps) = &l.patterns {
                patterns.extend(ps.get_ref().iter());
            }
            if patterns.is_empty() {
                self.error(
                    l.path.span(),
                    format!("log probe {name:?} has no pattern"),
                    "add pattern = \"ERROR\" or patterns = [\"ERROR\", \"CRITICAL\"]",
                );
            }
            for p in &patterns {
                self.regex(p, "a log pattern");
            }
            return Some(ProbeKind::Log(LogProbe {
                path: self.root.join(l.path.get_ref()),
                patterns: patterns.iter().map(|p| p.get_ref().clone()).collect(),
            }));
        }
        if let Some(p) = &r.process {
            let span = p.span();
            let p = p.get_ref();
            let set = [
                p.pid.is_some(),
                p.pidfile.is_some(),
                p.service.is_some(),
                p.cmdline.is_some(),
            ];
            if set.iter().filter(|b| **b).count() != 1 {
                self.error(
                    span,
                    format!("process probe {name:?} needs exactly one of pid, pidfile, service or cmdline"),
                    "write process = { service = \"api\" } or process = { cmdline = \"gunicorn.*app:app\" }",
                );
            }
            let target = if let Some(pid) = &p.pid {
                if *pid.get_ref() <= 0 || *pid.get_ref() > i64::from(i32::MAX) {
                    self.error(
                        pid.span(),
                        format!("{} is not a process id", pid.get_ref()),
                        "a pid is a positive number",
                    );
                }
                ProcessTarget::Pid(*pid.get_ref() as i32)
            } else if let Some(f) = &p.pidfile {
                ProcessTarget::Pidfile(self.root.join(f.get_ref()))
            } else if let Some(s) = &p.service {
                ProcessTarget::Service {
                    name: s.get_ref().clone(),
                    pidfile: self
                        .root
                        .join(crate::workspace::STATE_DIR)
                        .join("run")
                        .join(format!("{}.pid", s.get_ref())),
                }
            } else if let Some(c) = &p.cmdline {
                ProcessTarget::Cmdline(
                    self.regex(c, "`cmdline`")
                        .unwrap_or_else(|| regex::Regex::new("$^").expect("static")),
                )
            } else {
                ProcessTarget::Pid(0)
            };
            return Some(ProbeKind::Process(ProcessProbe {
                target,
                children: p.children.as_ref().is_none_or(|c| *c.get_ref()),
            }));
        }
        if let Some(p) = &r.prometheus {
            let p = p.get_ref();
            let (url, _) = self.http_url(&p.url, "write the server's base URL, like http://127.0.0.1:9090");
            if p.query.get_ref().trim().is_empty() {
                self.error(
                    p.query.span(),
                    "the query is empty",
                    "write a PromQL expression, like query = \"up\"",
                );
            }
            return Some(ProbeKind::Prometheus(PrometheusProbe {
                url,
                query: p.query.get_ref().clone(),
            }));
        }
        None
    }

    /// Checks that process probes name services the plan defines.
    pub(super) fn probe_service_refs(&mut self, probes: &[S<raw::RawProbe>], services: &BTreeSet<String>) {
        for p in probes {
            if let Some(s) = p.get_ref().process.as_ref().and_then(|p| p.get_ref().service.as_ref())
                && !services.contains(s.get_ref())
            {
                let known: Vec<&str> = services.iter().map(String::as_str).collect();
                let hint = super::unknown_hint("service", s.get_ref(), &known);
                self.error(s.span(), format!("no service named {:?}", s.get_ref()), hint);
            }
        }
    }

    /// Compiles a regex, reporting a located error when it is invalid.
    pub(super) fn regex(&mut self, s: &S<String>, what: &str) -> Option<regex::Regex> {
        match compile_regex(s.get_ref()) {
            Ok(re) => Some(re),
            Err(e) => {
                self.error(
                    s.span(),
                    format!(
                        "invalid regex: {}",
                        e.to_string()
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim()
                            .trim_start_matches("error: ")
                    ),
                    format!("{what} is a regular expression (Rust regex syntax)"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::context::Env;
    use crate::plan::{Plan, ProbeKind};
    use std::path::Path;

    fn parse(probes: &str) -> Result<Plan, String> {
        let src =
            format!("[plan]\nname = \"t\"\nrto = \"1m\"\n[[service]]\nname = \"api\"\nstart = \"sleep 100\"\n{probes}");
        Plan::parse(Path::new("/p/backout.toml"), &src, &Env::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_validates() {
        let plan = parse(
            r#"
[[probe]]
name = "db"
timeout = "1s"
tcp = { address = "127.0.0.1:5432" }
[[probe]]
name = "queue"
timeout = "1s"
command = { run = "redis-cli llen jobs", number = "(\\d+)" }
[[probe]]
name = "errors"
timeout = "1s"
log = { path = "logs/app.log", patterns = ["ERROR", "CRITICAL"] }
[[probe]]
name = "mem"
timeout = "1s"
process = { service = "api" }
[[probe]]
name = "q"
timeout = "1s"
prometheus = { url = "http://127.0.0.1:9090", query = "sum(rate(http_requests_total[1m]))" }
[[rule]]
when = "errors.count > 0 over 5m"
[[rule]]
when = "mem.rss > baseline + 30%"
[[rule]]
when = "q.value > 0.5"
[[rule]]
when = "errors.rate > 10/m over 5m"
[[rule]]
when = "mem.cpu.p95 > 80%"
"#,
        )
        .unwrap();
        assert!(matches!(plan.probes[0].kind, ProbeKind::Tcp(_)));
        let ProbeKind::Log(l) = &plan.probes[2].kind else {
            panic!()
        };
        assert_eq!(l.path, Path::new("/p/logs/app.log"));
        assert_eq!(l.patterns, ["ERROR", "CRITICAL"]);
        let ProbeKind::Process(p) = &plan.probes[3].kind else {
            panic!()
        };
        assert!(p.children);
        assert!(
            matches!(&p.target, crate::plan::ProcessTarget::Service { pidfile, .. } if pidfile.ends_with(".backout/run/api.pid"))
        );
        let rate = &plan.rules[3].condition.threshold;
        assert_eq!(rate, &crate::plan::rule::Threshold::Absolute { value: 10.0 / 60.0 });
        assert_eq!(
            plan.rules[4].condition.threshold,
            crate::plan::rule::Threshold::Absolute { value: 0.8 }
        );
    }

    #[test]
    fn bad_probe_tables_are_located_errors() {
        let e = parse("[[probe]]\nname = \"db\"\ntcp = { address = \"localhost\" }\n").unwrap_err();
        assert!(e.contains("not a host:port"), "{e}");
        let e = parse("[[probe]]\nname = \"m\"\nprocess = { service = \"apx\" }\n").unwrap_err();
        assert!(e.contains("no service named \"apx\"") && e.contains("api"), "{e}");
        let e = parse("[[probe]]\nname = \"m\"\nprocess = { pid = 1, cmdline = \"x\" }\n").unwrap_err();
        assert!(e.contains("exactly one of pid"), "{e}");
        let e = parse("[[probe]]\nname = \"l\"\nlog = { path = \"a.log\", pattern = \"(\" }\n").unwrap_err();
        assert!(e.contains("invalid regex"), "{e}");
        let e =
            parse("[[probe]]\nname = \"x\"\ntcp = { address = \"h:1\" }\nlog = { path = \"a\", pattern = \"E\" }\n")
                .unwrap_err();
        assert!(e.contains("2 kinds"), "{e}");
        let e = parse(
            "[[probe]]\nname = \"l\"\nlog = { path = \"a\", pattern = \"E\" }\n[[rule]]\nwhen = \"l.rate > 5/d\"\n",
        )
        .unwrap_err();
        assert!(e.contains("is a rate"), "{e}");
    }
}
