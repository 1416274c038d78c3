//! Test servers: the URLs `scripts/services start` exports, a fresh PostgreSQL
//! database per test, and helpers that talk to the servers the way an
//! application would.
//!
//! Under `CI` a missing server is a failure; locally the test says why it
//! skips, so nothing is skipped silently.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::plan::{Database, DbKind, DbLocation, Text};

/// The URL in `var`, or `None` (with the reason printed) when it is unset
/// outside CI. Panics under CI.
#[allow(clippy::print_stderr)] // a skipped test says so
pub fn server_url(var: &str) -> Option<String> {
    if let Ok(url) = std::env::var(var)
        && !url.is_empty()
    {
        return Some(url);
    }
    let how = "run ./scripts/test, or `eval \"$(scripts/services start)\"` before cargo test";
    if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
        panic!("{var} is not set under CI: {how}");
    }
    eprintln!("skipped: {var} is not set ({how})");
    None
}

/// A database spec for a server URL.
pub fn spec(name: &str, kind: DbKind, url: &str) -> Database {
    Database {
        name: name.into(),
        kind,
        location: DbLocation::Url(Text {
            shown: format!("${{{}_URL}}", name.to_uppercase()),
            value: url.into(),
        }),
        timeout: Duration::from_secs(60),
    }
}

/// The password inside a URL, for canary checks.
pub fn password_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .expect("the test server URL holds a password")
}

/// Watches every process's arguments (`/proc/*/cmdline`, readable by any user)
/// for a secret until [`ArgvWatch::finish`].
pub struct ArgvWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl ArgvWatch {
    pub fn start(secret: &str) -> ArgvWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (stop, secret) = (stop.clone(), secret.to_string());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for p in std::fs::read_dir("/proc").unwrap().flatten() {
                        if let Ok(cmdline) = std::fs::read(p.path().join("cmdline"))
                            && String::from_utf8_lossy(&cmdline).contains(&secret)
                        {
                            seen.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                seen
            })
        };
        ArgvWatch { stop, thread }
    }

    /// The argument lists that held the secret.
    pub fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A database of its own for one test, dropped at the end.
pub struct PgDb {
    admin: String,
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub fn create(admin: &str) -> PgDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("bt_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        psql(admin, &format!("CREATE DATABASE {name}"));
        let mut u = reqwest::Url::parse(admin).unwrap();
        u.set_path(&format!("/{name}"));
        PgDb {
            admin: admin.into(),
            name,
            url: u.to_string(),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql_result(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql_cmd(url: &str) -> Command {
    let mut u = reqwest::Url::parse(url).unwrap();
    let pw = u.password().unwrap_or_default().to_string();
    let _ = u.set_password(None);
    let mut c = Command::new("psql");
    c.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", u.as_str()])
        .env("PGPASSWORD", pw);
    c
}

pub fn psql_result(url: &str, sql: &str) -> Result<String, String> {
    let out = psql_cmd(url).args(["-c", sql]).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs SQL as a client would; panics on failure.
#[track_caller]
pub fn psql(url: &str, sql: &str) -> String {
    psql_result(url, sql).unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
}

/// A psql session that stays connected: an application holding a connection.
pub struct PgSession {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl PgSession {
    pub fn open(url: &str) -> PgSession {
        use std::process::Stdio;
        let mut child = psql_cmd(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut s = PgSession { child, stdin, out };
        assert_eq!(s.query("SELECT 'ready'"), "ready");
        s
    }

    /// Runs one statement that returns one line (or none: then an empty string).
    pub fn query(&mut self, sql: &str) -> String {
        use std::io::{BufRead, Write};
        // A marker line ends each answer, so reads never wait for more.
        writeln!(self.stdin, "{sql};\nSELECT '--end--';").unwrap();
        self.stdin.flush().unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.out.read_line(&mut line).unwrap();
            assert!(n > 0, "the session ended (was it terminated?) while running {sql:?}");
            let line = line.trim_end().to_string();
            if line == "--end--" {
                break;
            }
            lines.push(line);
        }
        lines.join("\n")
    }

    /// Whether the server ended this session.
    pub fn is_terminated(&mut self) -> bool {
        use std::io::Write;
        let _ = writeln!(self.stdin, "SELECT 1;");
        let _ = self.stdin.flush();
        self.child.wait_timeout_or_kill(Duration::from_secs(5))
    }
}

trait WaitTimeout {
    fn wait_timeout_or_kill(&mut self, d: Duration) -> bool;
}

impl WaitTimeout for std::process::Child {
    fn wait_timeout_or_kill(&mut self, d: Duration) -> bool {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.kill();
        let _ = self.wait();
        false
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL of the test Redis server with logical database `db` selected.
pub fn redis_db_url(base: &str, db: u32) -> String {
    let mut u = reqwest::Url::parse(base).unwrap();
    u.set_path(&format!("/{db}"));
    u.to_string()
}
