//! Integration tests: the real binary on temporary projects.

mod acceptance;
mod canary;
mod capture;
mod cli;
mod compose;
mod dataloss;
mod demo;
mod deploy;
mod dumps;
mod engine;
mod example_dependency_upgrade;
mod example_microservices;
mod examples;
mod failures;
mod notify;
mod replay;
mod report;
mod restore;
mod resume;
mod retention;
mod service_identity;
mod services;
mod store;
mod systemd;
mod venv;
mod verify;
mod watch;
mod watching;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary project directory with helpers to write files and run backout.
pub struct Project {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Project {
    #[allow(clippy::new_without_default)] // a fresh temporary directory is not a "default"
    pub fn new() -> Self {
        Project {
            dir: tempfile::tempdir().expect("tempdir"),
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("BACKOUT_LOG");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().expect("run backout"))
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_backout"))
}

/// A finished run with assertions that print its output on failure.
pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    #[track_caller]
    pub fn success(&self) -> &Self {
        self.code_is(0)
    }
    #[track_caller]
    pub fn code_is(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// A loopback port nobody listens on (bound, then released).
/// The step names of a `--json` rollback, undo or redo report.
/// Every file under `dir`, at any depth.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn step_names(j: &serde_json::Value) -> Vec<String> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test server's URL from `var` (exported by `scripts/services start`), or
/// `None` with the reason printed when it is unset outside CI. Under CI a
/// missing server fails the test: nothing is skipped silently there.
#[allow(clippy::print_stderr)]
pub fn server_url(var: &str) -> Option<String> {
    if let Ok(url) = std::env::var(var)
        && !url.is_empty()
    {
        return Some(url);
    }
    let how = "run ./scripts/test, or `eval \"$(scripts/services start)\"` before cargo test";
    assert!(
        std::env::var("CI").map_or(true, |v| v.is_empty()),
        "{var} is not set under CI: {how}"
    );
    eprintln!("skipped: {var} is not set ({how})");
    None
}
