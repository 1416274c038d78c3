//! The acceptance suite: backout tried as a new user would, on applications
//! nobody on this project wrote, fetched once from a package registry and
//! cached under `target/` by `./scripts/test` (the sdist, the wheels), started
//! the way their own users start them — by hand, with their own commands —
//! broken the way they really break, with their own test suites as checks:
//!
//! - [`flaskr`]: the Flask tutorial app shipped in Flask 2.2.2's sdist, SQLite,
//!   a venv; broken by adding an extension with `pip install -U -r
//!   requirements.txt`, which also upgrades the unpinned Werkzeug to 3.0 (the
//!   `url_quote` ImportError of September 2023);
//! - [`django`]: a project made by Django 4.2's own `startproject`, on
//!   PostgreSQL, served by gunicorn (a master and two workers, reloaded with
//!   HUP by hand); broken by a commit that turns DEBUG off without
//!   ALLOWED_HOSTS and changes the schema (`django.contrib.sites` migrated in),
//!   with accounts created after the checkpoint;
//! - [`static_site`]: a site served by CPython's own `python3 -m http.server`,
//!   broken by a commit that moves its pages.
//!
//! Each asserts the end state (code, versions, rows, which process serves),
//! what was discarded and where it is kept, every exit code, then undo and
//! redo. With `BACKOUT_ACCEPTANCE_FIGURES=FILE` each appends its time to
//! detect and to recover, counted from the deploy marker, as a JSON line
//! (`bench/acceptance` runs them and prints the medians).

mod django;
mod flaskr;
mod static_site;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::service_identity::ByHand;

/// `target/` of this checkout, where `./scripts/test` caches what the suite fetched.
fn target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

/// The wheel cache (`target/wheels`), holding every package the apps install.
pub fn wheels() -> PathBuf {
    let w = target().join("wheels");
    assert!(
        w.join("pytest-8.3.3-py3-none-any.whl").exists(),
        "no wheels in {}: ./scripts/test downloads them",
        w.display()
    );
    w
}

/// A file `./scripts/test` fetched into `target/acceptance` (an sdist).
pub fn fetched(name: &str) -> PathBuf {
    let f = target().join("acceptance").join(name);
    assert!(f.exists(), "{} is missing: ./scripts/test downloads it", f.display());
    f
}

/// Runs `script` with `sh -e` in `dir`; its stdout, or a panic with its output.
#[track_caller]
pub fn sh(dir: &Path, script: &str) -> String {
    crate::resume::sh(dir, script)
}

/// A venv in `dir/venv` with `packages` installed from the wheel cache only.
pub fn venv(dir: &Path, packages: &[&str]) {
    sh(dir, "python3 -m venv venv");
    let w = wheels();
    let mut c = Command::new(dir.join("venv/bin/pip"));
    c.args(["install", "-q", "--no-index", "--find-links"])
        .arg(&w)
        .args(packages)
        .current_dir(dir)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "pip install {packages:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The version of `package` installed in `dir/venv`, or `None`.
pub fn installed(dir: &Path, package: &str) -> Option<String> {
    let out = Command::new(dir.join("venv/bin/python"))
        .args([
            "-c",
            &format!("import importlib.metadata as m; print(m.version({package:?}))"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The HTTP status of `GET path` on the loopback port, or `None` when nothing answers.
pub fn status(port: u16, path: &str) -> Option<u16> {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-m", "5", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|c| *c != 0)
}

/// A backout command's outcome: exit code, stdout, stderr.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn expect(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "{what}: exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs backout in `dir` with `env`.
pub fn backout(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Ran {
    let mut c = crate::resume::backout(dir, args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The figures of incident `inc` (from its report.json): time to detect and
/// to recover, counted from the deploy marker; appended as a JSON line to
/// `$BACKOUT_ACCEPTANCE_FIGURES` when set.
pub fn figures(dir: &Path, app: &str, inc: &str) -> (u64, u64) {
    let path = dir.join(".backout/reports").join(inc).join("report.json");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let f = &j["figures"];
    let detect = f["time_to_detect_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no time to detect in {j}"));
    let recover = f["time_to_recover_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no time to recover in {j}"));
    if let Ok(out) = std::env::var("BACKOUT_ACCEPTANCE_FIGURES")
        && !out.is_empty()
    {
        use std::io::Write;
        let line = serde_json::json!({ "app": app, "time_to_detect_ms": detect, "time_to_recover_ms": recover });
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(out).unwrap();
        writeln!(f, "{line}").unwrap();
    }
    (detect, recover)
}

/// The `backout service status --json` row of `name`.
pub fn service(dir: &Path, env: &[(&str, &str)], name: &str) -> serde_json::Value {
    let r = backout(dir, env, &["service", "status", name, "--json"]);
    r.expect(0, "service status");
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    j[0].clone()
}
