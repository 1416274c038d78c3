//! The starter plan behind `backout init`: what a project directory holds
//! ([`detect`]) and a commented `backout.toml` written from it ([`render`]).
//!
//! Detection only reads files; it never runs a command. What the plan schema can
//! express becomes real config; what it cannot express yet (paths, command
//! capture, compose services, databases) is written as comments, so a person sees
//! what was found and the file still validates.

use std::fmt::Write as _;
use std::path::Path;

/// Compose file names, in the order `docker compose` prefers them.
const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Python project files, most useful for a restore first.
const PYTHON_FILES: &[&str] = &["requirements.txt", "pyproject.toml"];

/// Directories never searched for a virtualenv: big, and never holding one.
const SKIP_DIRS: &[&str] = &[".git", "node_modules", "target", ".backout"];

/// The URL the commented-out health sections use when none was given.
const PLACEHOLDER_URL: &str = "http://127.0.0.1:8000/health";

/// What `backout init` found in a project directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detected {
    /// `.git` exists (a directory, or a file for worktrees and submodules).
    pub git: bool,
    /// The Python project file, e.g. `requirements.txt` or `pyproject.toml`.
    pub python: Option<String>,
    /// `package.json` exists.
    pub node: bool,
    /// `Cargo.toml` exists.
    pub cargo: bool,
    /// The compose file, e.g. `compose.yaml`.
    pub compose_file: Option<String>,
    /// Top-level service names in the compose file, in file order.
    pub compose_services: Vec<String>,
    /// A directory holding `pyvenv.cfg`, relative to the root with `/`
    /// separators, at most two levels down: `.venv`, `venv`, `api/venv`.
    pub venv: Option<String>,
    /// The directory's name: the plan's default name.
    pub name: String,
}

/// Looks at `root` and reports what kind of project it is.
pub fn detect(root: &Path) -> Detected {
    let exists = |name: &str| fs_err::symlink_metadata(root.join(name)).is_ok();
    let is_file = |name: &str| root.join(name).is_file();
    let compose_file = COMPOSE_FILES.iter().find(|f| is_file(f)).map(|f| f.to_string());
    let compose_services = compose_file
        .as_ref()
        .and_then(|f| fs_err::read_to_string(root.join(f)).ok())
        .map(|text| compose_services(&text))
        .unwrap_or_default();
    Detected {
        git: exists(".git"),
        python: PYTHON_FILES.iter().find(|f| is_file(f)).map(|f| f.to_string()),
        node: is_file("package.json"),
        cargo: is_file("Cargo.toml"),
        compose_file,
        compose_services,
        venv: find_venv(root),
        name: dir_name(root),
    }
}

fn dir_name(root: &Path) -> String {
    let named = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    named(root)
        .or_else(|| fs_err::canonicalize(root).ok().and_then(|p| named(&p)))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "project".to_string())
}

/// Sorted names of the subdirectories of `dir` worth searching.
fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !SKIP_DIRS.contains(&n.as_str()))
        .collect();
    names.sort();
    names
}

/// The shallowest directory holding `pyvenv.cfg`; ties go to the first by name.
fn find_venv(root: &Path) -> Option<String> {
    let has_cfg = |rel: &str| root.join(rel).join("pyvenv.cfg").is_file();
    let top = subdirs(root);
    if let Some(v) = top.iter().find(|d| has_cfg(d)) {
        return Some(v.clone());
    }
    top.iter().find_map(|d| {
        subdirs(&root.join(d))
            .into_iter()
            .map(|sub| format!("{d}/{sub}"))
            .find(|rel| has_cfg(rel))
    })
}

/// The keys of the top-level `services:` mapping of a compose file.
///
/// A line-based reading, not a YAML parser: it takes the keys at the first
/// indentation level under `services:`, skipping blank and comment lines, and
/// stops at the next top-level key.
pub fn compose_services(text: &str) -> Vec<String> {
    let mut services = Vec::new();
    let mut inside = false;
    let mut level = None;
    for line in text.lines() {
        let line = line.trim_start_matches('\u{feff}');
        let content = strip_comment(line).trim_end();
        if content.trim().is_empty() {
            continue;
        }
        let indent = content.len() - content.trim_start().len();
        if indent == 0 {
            inside = mapping_key(content).is_some_and(|k| k == "services") && content.trim_end().ends_with(':');
            level = None;
            continue;
        }
        if !inside {
            continue;
        }
        let level = *level.get_or_insert(indent);
        if indent == level
            && let Some(key) = mapping_key(content.trim_start())
        {
            services.push(key);
        }
    }
    services
}

/// Drops a `#` comment: one at the start of the line or after whitespace
/// (YAML's rule), outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev_space => return &line[..i],
            None => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// The key of a `key:` or `key: value` line, unquoted; `None` for anything else
/// (list items, plain scalars).
fn mapping_key(s: &str) -> Option<String> {
    if s.starts_with('-') {
        return None;
    }
    let (key, rest) = if let Some(q @ ('"' | '\'')) = s.chars().next() {
        let end = s[1..].find(q)? + 1;
        (&s[1..end], &s[end + 1..])
    } else {
        let colon = s.find(": ").or_else(|| s.strip_suffix(':').map(|k| k.len()))?;
        (&s[..colon], &s[colon..])
    };
    let key = key.trim();
    (rest.starts_with(':') && !key.is_empty()).then(|| key.to_string())
}

/// A TOML string literal for `s`.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `s` made safe to sit inside a `#` comment: one line, no control characters.
fn comment_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Compose service names that look like a database, by common image names.
fn looks_like_database(service: &str) -> bool {
    let s = service.to_ascii_lowercase();
    ["postgres", "mysql", "mariadb", "redis", "mongo", "sqlite", "database"]
        .iter()
        .any(|d| s.contains(d))
        || matches!(s.as_str(), "db" | "pg")
        || s.ends_with("-db")
        || s.ends_with("_db")
}

/// Writes the comment lines in `lines`, each prefixed by `# `.
fn comments(out: &mut String, lines: &[&str]) {
    for l in lines {
        if l.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {l}");
        }
    }
}

/// The commented starter `backout.toml` for a project, with real health
/// sections when `health` (a URL) is given and commented-out ones otherwise.
pub fn render(d: &Detected, health: Option<&str>) -> String {
    let mut out = String::new();
    header(&mut out, d);
    plan_section(&mut out, d);
    capture_section(&mut out, d);
    services_section(&mut out, d);
    health_sections(&mut out, health);
    rollback_section(&mut out, d, health.is_some());
    verify_section(&mut out, health);
    out
}

fn header(out: &mut String, d: &Detected) {
    let _ = writeln!(out, "# backout.toml: the rollback plan for {}.", comment_text(&d.name));
    comments(
        out,
        &[
            "Written by `backout init` from what it found here. Read it, adjust it, commit it",
            "with the project it protects. Unknown keys are errors, so a typo never goes unnoticed.",
            "",
            "Found here:",
        ],
    );
    let mut found = Vec::new();
    if d.git {
        found.push("a git repository (.git)".to_string());
    }
    if let Some(p) = &d.python {
        found.push(format!("a Python project ({p})"));
    }
    if let Some(v) = &d.venv {
        found.push(format!("a virtualenv at {v}"));
    }
    if d.node {
        found.push("a Node project (package.json)".to_string());
    }
    if d.cargo {
        found.push("a Rust project (Cargo.toml)".to_string());
    }
    if let Some(f) = &d.compose_file {
        let services = if d.compose_services.is_empty() {
            "no services found".to_string()
        } else {
            format!("services {}", d.compose_services.join(", "))
        };
        found.push(format!("a compose file {f} ({services})"));
    }
    if found.is_empty() {
        found.push("nothing backout recognises yet".to_string());
    }
    for f in found {
        let _ = writeln!(out, "#   - {}", comment_text(&f));
    }
    out.push('\n');
}

fn plan_section(out: &mut String, d: &Detected) {
    comments(out, &["What this plan protects, and how fast a recovery must be."]);
    out.push_str("[plan]\n");
    let _ = writeln!(out, "name = {}", toml_str(&d.name));
    out.push_str("rto = \"5m\" # recovery-time objective: each rollback is measured against it\n\n");
}

fn capture_section(out: &mut String, d: &Detected) {
    comments(
        out,
        &["What a checkpoint saves before the change, so a rollback can restore it."],
    );
    out.push_str("[capture]\n");
    if d.git {
        out.push_str("git = true # HEAD, the branch, uncommitted and untracked work\n");
    } else {
        comments(
            out,
            &["No git repository here: run `git init` and set git = true to capture the code."],
        );
        out.push_str("git = false\n");
    }
    if let Some(v) = &d.venv {
        let v = comment_text(v);
        comments(
            out,
            &[
                &format!("Detected a virtualenv at {v}. Path capture arrives with [capture] paths; until then"),
                "a rollback does not restore it: rebuild it with a { run = \"...\" } rollback step.",
            ],
        );
    }
    match d.python.as_deref() {
        Some("requirements.txt") => comments(
            out,
            &[
                "Detected requirements.txt. Capturing installed packages (pip freeze) arrives",
                "with [capture] commands; until then add a rollback step after the git revert:",
                "{ run = \"pip install -r requirements.txt\" }.",
            ],
        ),
        Some(p) => {
            let p = comment_text(p);
            comments(
                out,
                &[
                    &format!("Detected {p}. Capturing installed packages arrives with [capture] commands;"),
                    "until then add { run = \"pip install .\" } (or your tool's sync) to the rollback steps.",
                ],
            );
        }
        None => {}
    }
    if d.node {
        comments(
            out,
            &[
                "Detected package.json. node_modules is not captured: path capture arrives",
                "with [capture] paths; until then add { run = \"npm ci\" } to the rollback steps.",
            ],
        );
    }
    if d.cargo {
        comments(
            out,
            &[
                "Detected Cargo.toml. git capture restores the source; rebuild after a rollback with",
                "{ run = \"cargo build --release\" } in the rollback steps.",
            ],
        );
    }
    let databases: Vec<String> = d
        .compose_services
        .iter()
        .filter(|s| looks_like_database(s))
        .map(|s| comment_text(s))
        .collect();
    if !databases.is_empty() {
        let (noun, verb) = match databases.len() {
            1 => ("service", "looks"),
            _ => ("services", "look"),
        };
        let list = databases.join(", ");
        comments(
            out,
            &[
                &format!("Compose {noun} {list} {verb} like a database. Database capture arrives"),
                "with [capture] databases; until then take a dump yourself before the change.",
            ],
        );
    }
    out.push('\n');
}

fn services_section(out: &mut String, d: &Detected) {
    comments(
        out,
        &[
            "Services backout starts, stops and restarts itself (kind = \"process\"). For example:",
            "",
            "[[service]]",
            "name = \"api\"",
            "start = \"python app.py --port 8000\"",
            "ready = \"health\" # the probe that says it is up after a start",
        ],
    );
    if let Some(f) = &d.compose_file {
        let f = comment_text(f);
        let first = d
            .compose_services
            .first()
            .map_or("web".to_string(), |s| comment_text(s));
        comments(
            out,
            &[
                "",
                &format!("{f} services arrive with kind = \"compose\"; until then restart them with"),
                &format!("a rollback step like {{ run = \"docker compose restart {first}\" }}."),
            ],
        );
    }
    out.push('\n');
}

/// Probe, baseline, rules and success: real with a health URL, else commented out.
fn health_sections(out: &mut String, health: Option<&str>) {
    let url = toml_str(health.unwrap_or(PLACEHOLDER_URL));
    let body = format!(
        r#"# How health is measured: one request every 2s; a non-2xx answer or one slower
# than 2s is a failure. Rules below refer to it as `health`.
[[probe]]
name = "health"
every = "2s"
timeout = "2s"
http = {{ url = {url}, status = "2xx" }}

# How long `backout baseline` samples the probes before a change to learn "normal"
# (30 samples, enough for the statistical rules below), and the samples of the
# last 5 healthy watches added to it: a minute alone is a noisy reference.
[baseline]
for = "1m"
history = 5

# When to act. then = "rollback" rolls back; then = "investigate" only alerts.
# The statistical rules compare every sample with the baseline's: a sequential
# test catches a rise in failures or in the median latency as soon as the
# evidence is there, with few false alarms however long the watch lasts.
[[rule]]
name = "errors"
when = "health.error_rate > baseline (sequential) over 1m"
then = "rollback"

[[rule]]
name = "slow"
when = "health.latency.p50 > baseline + 25% (sequential) over 1m"
then = "investigate"

# Needs no baseline: the endpoint down for 10s.
[[rule]]
name = "down"
when = "health.consecutive_failures >= 5"
then = "rollback"

# When the change counts as a success: every condition holds.
[success]
when = ["health.error_rate == 0 for 10m"]
"#
    );
    if health.is_some() {
        out.push_str(&body);
    } else {
        comments(
            out,
            &[
                "No health URL given. Uncomment the sections below and set the URL, or run",
                "`backout init --health URL` to write them for you.",
                "",
            ],
        );
        // Prose gets a second `#`, so toggling the comment on the whole block in an
        // editor leaves it a comment.
        for line in body.lines() {
            if line.is_empty() {
                out.push('\n');
            } else if line.starts_with('#') {
                let _ = writeln!(out, "#{line}");
            } else {
                let _ = writeln!(out, "# {line}");
            }
        }
    }
    out.push('\n');
}

fn rollback_section(out: &mut String, d: &Detected, health: bool) {
    comments(out, &["How to roll back, step by step, in order."]);
    match (d.git, health) {
        (true, true) => {
            comments(
                out,
                &["Revert the change's commits (history kept), then wait until healthy."],
            );
            out.push_str("[rollback]\nsteps = [{ git = \"revert\" }, { wait = \"health\" }]\n");
        }
        (true, false) => {
            comments(
                out,
                &["Revert the change's commits (history kept); add { wait = \"health\" } with the probe."],
            );
            out.push_str("[rollback]\nsteps = [{ git = \"revert\" }]\n");
        }
        (false, _) => {
            comments(
                out,
                &[
                    "Without git there is nothing backout can revert yet; say how to undo a change:",
                    "[rollback]",
                    "steps = [{ run = \"./deploy.sh previous\" }, { wait = \"health\" }]",
                ],
            );
        }
    }
    out.push('\n');
}

fn verify_section(out: &mut String, health: Option<&str>) {
    comments(
        out,
        &["What proves the recovery worked, and for how long it must hold."],
    );
    match health {
        Some(url) => {
            let _ = writeln!(
                out,
                "[verify]\nchecks = [{{ http = {}, status = \"2xx\" }}]\nstable-for = \"1m\"",
                toml_str(url)
            );
        }
        None => {
            comments(
                out,
                &[
                    "[verify]",
                    &format!("checks = [{{ http = \"{PLACEHOLDER_URL}\", status = \"2xx\" }}]"),
                    "stable-for = \"1m\"",
                ],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Env;
    use crate::plan::{Plan, ProbeKind};

    fn parse(text: &str) -> Plan {
        match Plan::parse(Path::new("backout.toml"), text, &Env::default()) {
            Ok(p) => p,
            Err(e) => panic!("starter plan does not validate:\n{e}\n---\n{text}"),
        }
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    }

    const COMPOSE: &str = "\
# the stack
version: \"3.8\"

services:
  # the API
  web:
    image: example/web
    ports:
      - \"8000:8000\"   # host:container

  \"worker\":   # quoted key
    command: celery worker
    environment:
      services: not-a-service
# a comment at column 0 inside the mapping

  db:
    image: postgres:16
volumes:
  data: {}
";

    fn everything() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir(root.join(".git")).unwrap();
        write(root, "requirements.txt", "flask\n");
        write(root, "package.json", "{}\n");
        write(root, "Cargo.toml", "[package]\n");
        write(root, "docker-compose.yml", COMPOSE);
        write(root, ".venv/pyvenv.cfg", "home = /usr/bin\n");
        dir
    }

    #[test]
    fn an_empty_dir_has_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = detect(dir.path());
        assert_eq!(
            d,
            Detected {
                name: dir.path().file_name().unwrap().to_string_lossy().into_owned(),
                ..Detected::default()
            }
        );
    }

    #[test]
    fn detects_each_kind_of_file() {
        let dir = everything();
        let d = detect(dir.path());
        assert!(d.git);
        assert_eq!(d.python.as_deref(), Some("requirements.txt"));
        assert!(d.node);
        assert!(d.cargo);
        assert_eq!(d.compose_file.as_deref(), Some("docker-compose.yml"));
        assert_eq!(d.compose_services, ["web", "worker", "db"]);
        assert_eq!(d.venv.as_deref(), Some(".venv"));
    }

    #[test]
    fn detects_pyproject() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pyproject.toml", "[project]\n");
        assert_eq!(detect(dir.path()).python.as_deref(), Some("pyproject.toml"));
    }

    #[test]
    fn git_may_be_a_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".git", "gitdir: ../.git/worktrees/x\n");
        assert!(detect(dir.path()).git);
    }

    #[test]
    fn finds_a_venv_two_levels_down_but_not_three() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a/b/c/pyvenv.cfg", "");
        write(dir.path(), "node_modules/venv/pyvenv.cfg", "");
        assert_eq!(detect(dir.path()).venv, None);
        write(dir.path(), "api/venv/pyvenv.cfg", "");
        assert_eq!(detect(dir.path()).venv.as_deref(), Some("api/venv"));
        write(dir.path(), "venv/pyvenv.cfg", "");
        assert_eq!(detect(dir.path()).venv.as_deref(), Some("venv"));
    }

    #[test]
    fn compose_yaml_variants() {
        for name in COMPOSE_FILES {
            let dir = tempfile::tempdir().unwrap();
            write(
                dir.path(),
                name,
                "services:\n    a:\n        image: x\n    b: {image: y}\n",
            );
            let d = detect(dir.path());
            assert_eq!(d.compose_file.as_deref(), Some(*name));
            assert_eq!(d.compose_services, ["a", "b"]);
        }
    }

    #[test]
    fn compose_without_services() {
        assert!(compose_services("version: '3'\nvolumes:\n  data:\n").is_empty());
        assert!(compose_services("services: {}\n").is_empty());
        assert!(compose_services("").is_empty());
    }

    #[test]
    fn renders_a_valid_plan_for_an_empty_dir() {
        let d = detect(tempfile::tempdir().unwrap().path());
        for health in [None, Some("http://127.0.0.1:9000/healthz")] {
            let plan = parse(&render(&d, health));
            assert_eq!(plan.name, d.name);
            assert!(!plan.capture.git);
            assert!(plan.rollback.is_empty());
            assert_eq!(plan.probes.len(), usize::from(health.is_some()));
            assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        }
    }

    #[test]
    fn renders_a_valid_plan_for_everything() {
        let dir = everything();
        let d = detect(dir.path());
        let text = render(&d, None);
        let plan = parse(&text);
        assert!(plan.capture.git);
        assert!(plan.probes.is_empty() && plan.rules.is_empty() && plan.success.is_empty());
        assert_eq!(plan.rollback.len(), 1);
        assert!(plan.verify.checks.is_empty());
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        for found in [
            ".venv",
            "requirements.txt",
            "package.json",
            "Cargo.toml",
            "web, worker, db",
        ] {
            assert!(text.contains(found), "{found} not mentioned:\n{text}");
        }
        // Unsupported things are comments only.
        assert!(text.lines().filter(|l| l.contains("venv")).all(|l| l.starts_with('#')));
        assert!(text.contains("Compose service db looks like a database"), "{text}");
    }

    #[test]
    fn renders_health_sections_from_the_url() {
        let dir = everything();
        let d = detect(dir.path());
        let url = "http://127.0.0.1:8080/status?full=1";
        let plan = parse(&render(&d, Some(url)));
        assert_eq!(plan.probes.len(), 1);
        let probe = &plan.probes[0];
        assert_eq!(probe.name, "health");
        let ProbeKind::Http(http) = &probe.kind else {
            panic!("the starter's health probe is HTTP")
        };
        assert_eq!(http.url.value, url);
        assert_eq!(plan.rules.len(), 3);
        assert_eq!(plan.success.len(), 1);
        assert_eq!(plan.rollback.len(), 2);
        assert_eq!(plan.verify.checks.len(), 1);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    /// Uncomments every commented-out line of config (`# [table]`, `# key = ...`),
    /// leaving prose alone.
    fn uncomment(text: &str) -> String {
        let is_config = |rest: &str| {
            rest.starts_with('[')
                || rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        };
        text.lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if is_config(rest) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_commented_out_sections_are_valid_once_uncommented() {
        let with_git = everything();
        let without_git = tempfile::tempdir().unwrap();
        for dir in [with_git.path(), without_git.path()] {
            let text = uncomment(&render(&detect(dir), None));
            let plan = parse(&text);
            assert_eq!(plan.probes.len(), 1, "{text}");
            assert_eq!(plan.services.len(), 1, "{text}");
            assert_eq!(plan.rules.len(), 3, "{text}");
            assert_eq!(plan.success.len(), 1, "{text}");
            assert_eq!(plan.rollback.len(), 2 - usize::from(with_git.path() == dir), "{text}");
            assert_eq!(plan.verify.checks.len(), 1, "{text}");
        }
    }

    #[test]
    fn odd_names_stay_valid() {
        let d = Detected {
            name: "we\"ird\nname".into(),
            compose_file: Some("compose.yaml".into()),
            compose_services: vec!["a\nb".into()],
            ..Detected::default()
        };
        let plan = parse(&render(&d, Some("http://h/x?q=\"1\"")));
        assert_eq!(plan.name, "we\"ird\nname");
    }
}
