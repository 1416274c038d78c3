//! Validation of `[capture]`. Paths a checkpoint stores must be plain relative
//! paths that stay inside the plan root and out of `.backout/`.
//!
//! `[capture] databases` and `[capture] commands`: the databases a checkpoint
//! dumps and the custom state it saves with a command, validated into
//! [`Database`] and [`CaptureCommand`].
//!
//! ```toml
//! [capture]
//! databases = [
//!   { name = "main", kind = "postgres", url = "${DATABASE_URL}" },
//!   { name = "local", kind = "sqlite", path = "app.db" },
//!   { name = "cache", kind = "redis", url = "redis://127.0.0.1:6379/0" },
//! ]
//! commands = [
//!   { name = "packages", save = "pip freeze", restore = "pip install --force-reinstall -r {file}" },
//! ]
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::raw::{self, S};
use super::{Capture, Command, Text, Validator, diag, url_has_password};
use crate::store::manifest::check_rel_path;

/// How long a database dump or restore may take when the plan does not say.
pub const DEFAULT_DB_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a save or restore command may take when the plan does not say.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// What a restore command writes to mean "the saved output".
pub const FILE_PLACEHOLDER: &str = "{file}";

const KINDS: &[&str] = &["sqlite", "postgres", "redis"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbKind {
    Sqlite,
    Postgres,
    Redis,
}

impl std::fmt::Display for DbKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbKind::Sqlite => "sqlite",
            DbKind::Postgres => "postgres",
            DbKind::Redis => "redis",
        })
    }
}

/// Where a database lives.
#[derive(Debug, Clone)]
pub enum DbLocation {
    /// A SQLite file, resolved against the plan's directory.
    Path(PathBuf),
    /// A server URL (`postgres://`, `redis://`), possibly from `${ENV}`.
    Url(Text),
}

/// A database a checkpoint dumps and a restore puts back.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub kind: DbKind,
    pub location: DbLocation,
    /// For each dump, check and restore.
    pub timeout: Duration,
}

impl Serialize for Database {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        // The URL as written: `${DATABASE_URL}` stays a reference.
        let (path, url) = match &self.location {
            DbLocation::Path(p) => (Some(p), None),
            DbLocation::Url(u) => (None, Some(&u.shown)),
        };
        serde_json::json!({
            "name": self.name,
            "kind": self.kind,
            "path": path,
            "url": url,
            "timeout_ms": self.timeout.as_millis() as u64,
        })
        .serialize(s)
    }
}

/// Custom state: `save`'s stdout is kept as a file; `restore` runs with
/// `{file}` replaced by that file's path.
#[derive(Debug, Clone)]
pub struct CaptureCommand {
    pub name: String,
    pub save: Command,
    pub restore: Command,
    pub cwd: PathBuf,
    /// For each of save and restore.
    pub timeout: Duration,
}

impl CaptureCommand {
    /// The restore command as people read it, `{file}` unquoted.
    pub fn restore_shown(&self) -> String {
        self.restore
            .shown()
            .replace(&format!("'{FILE_PLACEHOLDER}'"), FILE_PLACEHOLDER)
    }
}

impl Serialize for CaptureCommand {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        serde_json::json!({
            "name": self.name,
            "save": self.save.shown(),
            "restore": self.restore_shown(),
            "cwd": self.cwd,
            "timeout_ms": self.timeout.as_millis() as u64,
        })
        .serialize(s)
    }
}

impl Validator<'_> {
    /// Validates `databases` and `commands` of a `[capture]` table into `capture`.
    pub(super) fn capture_databases_and_commands(&mut self, raw: &raw::RawCapture, capture: &mut Capture) {
        // One namespace for both: `backout restore --only NAME` picks by it.
        let mut names = BTreeSet::new();
        capture.databases = raw
            .databases
            .iter()
            .filter_map(|d| self.database(d, &mut names))
            .collect();
        capture.commands = raw
            .commands
            .iter()
            .map(|c| self.capture_command(c, &mut names))
            .collect();
    }

    fn database(&mut self, d: &S<raw::RawDatabase>, names: &mut BTreeSet<String>) -> Option<Database> {
        let r = d.get_ref();
        let name = self.name(&r.name, "captured resource", names);
        let timeout = self.opt_duration(&r.timeout, DEFAULT_DB_TIMEOUT);
        let kind = match r.kind.get_ref().as_str() {
            "sqlite" => DbKind::Sqlite,
            "postgres" | "postgresql" => DbKind::Postgres,
            "redis" => DbKind::Redis,
            other => {
                let hint = match diag::did_you_mean(other, KINDS) {
                    Some(s) => format!("did you mean {s:?}? kinds: sqlite, postgres, redis"),
                    None => "kind = \"sqlite\" (with path), \"postgres\" or \"redis\" (with url)".into(),
                };
                self.error(r.kind.span(), format!("unknown database kind {other:?}"), hint);
                return None;
            }
        };
        let location = match kind {
            DbKind::Sqlite => {
                if let Some(u) = &r.url {
                    self.error(
                        u.span(),
                        format!("database {name:?} is SQLite: it takes a path, not a url"),
                        "write path = \"app.db\" (relative to backout.toml)",
                    );
                }
                let Some(p) = &r.path else {
                    self.error(
                        d.span(),
                        format!("database {name:?} (sqlite) needs a path"),
                        "add path = \"app.db\" (relative to backout.toml)",
                    );
                    return None;
                };
                if p.get_ref().is_empty() {
                    self.error(p.span(), "the path is empty", "write the SQLite file, like \"app.db\"");
                }
                DbLocation::Path(self.root.join(p.get_ref()))
            }
            DbKind::Postgres | DbKind::Redis => {
                let example = if kind == DbKind::Postgres {
                    "url = \"${DATABASE_URL}\" or \"postgres://app@127.0.0.1:5432/app\""
                } else {
                    "url = \"${REDIS_URL}\" or \"redis://127.0.0.1:6379/0\""
                };
                if let Some(p) = &r.path {
                    self.error(
                        p.span(),
                        format!("database {name:?} is {kind}: it takes a url, not a path"),
                        example,
                    );
                }
                let Some(u) = &r.url else {
                    self.error(d.span(), format!("database {name:?} ({kind}) needs a url"), example);
                    return None;
                };
                let url = self.text(u);
                self.database_url(u, &url, &name, kind, example);
                DbLocation::Url(url)
            }
        };
        Some(Database {
            name,
            kind,
            location,
            timeout,
        })
    }

    /// Checks a database URL's scheme; its password becomes a secret, and a
    /// password written in the plan itself draws a warning.
    fn database_url(&mut self, raw: &S<String>, url: &Text, name: &str, kind: DbKind, example: &str) {
        let schemes: &[&str] = match kind {
            DbKind::Postgres => &["postgres", "postgresql"],
            _ => &["redis"],
        };
        // Show what was written, never the resolved value: it may hold a password.
        let shown = &url.shown;
        let parsed = match reqwest::Url::parse(&url.value) {
            Ok(u) => u,
            Err(_) => {
                self.error(raw.span(), format!("{shown:?} is not a URL"), example);
                return;
            }
        };
        if parsed.scheme() == "rediss" {
            self.error(
                raw.span(),
                format!("database {name:?}: TLS Redis URLs (rediss://) are not supported"),
                "reach the server over a local tunnel and use redis://",
            );
            return;
        }
        if !schemes.contains(&parsed.scheme()) {
            self.error(
                raw.span(),
                format!(
                    "database {name:?} ({kind}) needs a {}:// URL, found {shown:?}",
                    schemes[0]
                ),
                example,
            );
            return;
        }
        let query_password = parsed
            .query_pairs()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.into_owned());
        let password = parsed.password().map(percent_decode).or(query_password);
        if let Some(pw) = password {
            self.secrets.push(pw);
            if !url.has_secret() && url_has_password(&url.value) {
                self.warn(
                    &raw.span(),
                    format!(
                        "database {name:?}: the URL holds a password in clear text; write it as ${{ENV}} so it stays secret"
                    ),
                );
            }
        }
    }

    fn capture_command(&mut self, c: &S<raw::RawCaptureCommand>, names: &mut BTreeSet<String>) -> CaptureCommand {
        let r = c.get_ref();
        let name = self.name(&r.name, "captured resource", names);
        let shell = r.shell.as_ref().is_some_and(|s| *s.get_ref());
        let save = self.command(&r.save, shell);
        let restore = self.command(&r.restore, shell);
        if !restore.argv.iter().any(|a| a.value.contains(FILE_PLACEHOLDER)) {
            self.warn(
                &r.restore.span(),
                format!(
                    "command {name:?}: restore never mentions {FILE_PLACEHOLDER}, so it cannot read what save captured"
                ),
            );
        }
        let cwd = r
            .cwd
            .as_ref()
            .map_or(self.root.to_path_buf(), |d| self.root.join(d.get_ref()));
        CaptureCommand {
            name,
            save,
            restore,
            cwd,
            timeout: self.opt_duration(&r.timeout, DEFAULT_COMMAND_TIMEOUT),
        }
    }
}

impl Validator<'_> {
    /// `[capture] paths`, normalised (`config/` → `config`), each checked.
    pub(super) fn capture_paths(&mut self, paths: &Option<Vec<S<String>>>) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for p in paths.iter().flatten() {
            let raw = p.get_ref().as_str();
            let norm = raw.trim_end_matches('/').trim_start_matches("./");
            let problem = if raw.starts_with('/') {
                Some("an absolute path")
            } else if norm.split('/').any(|c| c == "..") {
                Some("a path that leaves the plan root through `..`")
            } else if norm.split('/').next() == Some(crate::workspace::STATE_DIR) {
                Some("backout's own state directory")
            } else if check_rel_path(norm.as_bytes()).is_err() {
                Some("not a plain relative path")
            } else {
                None
            };
            if let Some(what) = problem {
                self.error(
                    p.span(),
                    format!("capture path {raw:?} is {what}"),
                    "write a path relative to the directory holding backout.toml, e.g. \"api/venv\" or \"config/\"",
                );
                continue;
            }
            if !seen.insert(norm.to_string()) {
                self.error(
                    p.span(),
                    format!("capture path {raw:?} is listed twice"),
                    "list each path once",
                );
                continue;
            }
            out.push(norm.to_string());
        }
        // A path inside another would be captured (and restored) twice.
        for a in &out {
            if let Some(b) = out.iter().find(|b| a.starts_with(&format!("{b}/")))
                && let Some(p) = paths.iter().flatten().find(|p| p.get_ref().trim_end_matches('/') == a)
            {
                self.error(
                    p.span(),
                    format!("capture path {a:?} is inside {b:?}, which is captured already"),
                    "keep only the outer path",
                );
            }
        }
        out
    }
}

/// `%XX` sequences decoded: URL passwords are written encoded, used decoded.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::context::Env;
    use crate::plan::{Plan, PlanErrors};

    use super::*;

    fn parse(capture: &str) -> Result<Plan, PlanErrors> {
        let src = format!("[plan]\nname = \"t\"\nrto = \"5m\"\n\n[capture]\n{capture}");
        Plan::parse(
            Path::new("/p/backout.toml"),
            &src,
            &Env::from_pairs([("DATABASE_URL", "postgres://app:s%40cret@db:5432/app")]),
        )
    }

    fn error(capture: &str) -> String {
        parse(capture).unwrap_err().to_string()
    }

    #[test]
    fn every_kind_and_a_command_validate() {
        let plan = parse(
            r#"databases = [
  { name = "main", kind = "postgres", url = "${DATABASE_URL}" },
  { name = "local", kind = "sqlite", path = "data/app.db", timeout = "30s" },
  { name = "cache", kind = "redis", url = "redis://127.0.0.1:6379/2" },
]
commands = [{ name = "packages", save = "pip freeze", restore = "pip install --force-reinstall -r {file}" }]
"#,
        )
        .unwrap();
        let dbs = &plan.capture.databases;
        assert_eq!(dbs.len(), 3);
        assert_eq!(dbs[0].kind, DbKind::Postgres);
        let DbLocation::Url(u) = &dbs[0].location else { panic!() };
        assert_eq!(u.shown, "${DATABASE_URL}");
        let DbLocation::Path(p) = &dbs[1].location else {
            panic!()
        };
        assert_eq!(p, Path::new("/p/data/app.db"));
        assert_eq!(dbs[1].timeout, Duration::from_secs(30));
        assert_eq!(dbs[2].timeout, DEFAULT_DB_TIMEOUT);
        // The URL and the decoded password inside it are both secrets.
        assert!(plan.secrets.contains(&"s@cret".to_string()), "{:?}", plan.secrets);
        let c = &plan.capture.commands[0];
        assert_eq!(c.save.resolved(), vec!["pip", "freeze"]);
        assert_eq!(c.cwd, Path::new("/p"));
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        let json = serde_json::to_value(&plan.capture).unwrap();
        assert_eq!(json["databases"][0]["url"], "${DATABASE_URL}");
        assert!(!json.to_string().contains("s%40cret"));
    }

    #[test]
    fn unknown_kind_is_located_with_a_suggestion() {
        let e = error("databases = [{ name = \"main\", kind = \"postgress\", url = \"postgres://h/db\" }]\n");
        assert!(e.contains("backout.toml:6:"), "{e}");
        assert!(e.contains("unknown database kind \"postgress\""), "{e}");
        assert!(e.contains("did you mean \"postgres\"?"), "{e}");
    }

    #[test]
    fn missing_url_or_path_is_an_error() {
        let e = error("databases = [{ name = \"main\", kind = \"postgres\", path = \"x\" }]\n");
        assert!(e.contains("takes a url, not a path"), "{e}");
        assert!(e.contains("needs a url"), "{e}");
        let e = error("databases = [{ name = \"local\", kind = \"sqlite\" }]\n");
        assert!(e.contains("database \"local\" (sqlite) needs a path"), "{e}");
    }

    #[test]
    fn wrong_scheme_and_tls_redis_are_errors() {
        let e = error("databases = [{ name = \"c\", kind = \"redis\", url = \"postgres://h/db\" }]\n");
        assert!(e.contains("needs a redis:// URL"), "{e}");
        let e = error("databases = [{ name = \"c\", kind = \"redis\", url = \"rediss://h:6380\" }]\n");
        assert!(e.contains("rediss://"), "{e}");
        let e = error("databases = [{ name = \"c\", kind = \"postgres\", url = \"not a url\" }]\n");
        assert!(e.contains("is not a URL"), "{e}");
    }

    #[test]
    fn duplicate_names_across_databases_and_commands() {
        let e = error(
            "databases = [{ name = \"x\", kind = \"sqlite\", path = \"a.db\" }]\ncommands = [{ name = \"x\", save = \"true\", restore = \"cat {file}\" }]\n",
        );
        assert!(e.contains("backout.toml:7:"), "{e}");
        assert!(e.contains("already defined"), "{e}");
    }

    #[test]
    fn clear_text_password_is_a_warning_and_a_secret() {
        let plan =
            parse("databases = [{ name = \"m\", kind = \"postgres\", url = \"postgres://app:hunter22@h/db\" }]\n")
                .unwrap();
        assert_eq!(plan.warnings.len(), 1);
        assert!(plan.warnings[0].message.contains("clear text"), "{:?}", plan.warnings);
        assert_eq!(plan.warnings[0].line, 6);
        assert!(plan.secrets.contains(&"hunter22".to_string()));
    }

    #[test]
    fn restore_without_file_placeholder_is_a_warning() {
        let plan =
            parse("commands = [{ name = \"p\", save = \"pip freeze\", restore = \"pip install -r req.txt\" }]\n")
                .unwrap();
        assert!(plan.warnings[0].message.contains("{file}"), "{:?}", plan.warnings);
    }

    #[test]
    fn unknown_key_in_a_database_is_an_error() {
        let e = error("databases = [{ name = \"m\", kind = \"sqlite\", file = \"a.db\" }]\n");
        assert!(e.contains("unknown field `file`"), "{e}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("s%40cret%2"), "s@cret%2");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
