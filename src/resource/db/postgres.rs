//! PostgreSQL: `pg_dump --format=custom` to capture, `pg_restore --list` to
//! verify, and a restore that runs in one transaction.
//!
//! The client tools come from the machine (`pg_dump`, `pg_restore`, `psql` on
//! PATH). The URL they get carries no password: it travels in `PGPASSWORD`, so it
//! is never in an argument list (visible to every user in `/proc`), and every
//! error shows the URL with its password masked and tool output scrubbed of it.
//!
//! # Restore
//!
//! `pg_restore --clean --if-exists` turns the dump into SQL that drops and
//! recreates each object it holds; `psql --single-transaction` runs that SQL
//! after dropping the tables the checkpoint does not know (created after it: a
//! table left behind with a foreign key into a restored one would make the
//! drop fail). All of it commits together or not at all.
//!
//! Connections that the application holds open are handled this way: a
//! session that holds locks in the database (a transaction in progress, idle or
//! not) would block the `DROP`s, so it is terminated with
//! `pg_terminate_backend` first, and each termination is reported as a step.
//! Idle sessions hold no locks: they stay connected and see the restored rows
//! on their next query. The restore's transaction first locks every table
//! (`ACCESS EXCLUSIVE`), waiting at most a tenth of the database's `timeout`
//! (between 1s and 10s), so a session that takes a lock in between makes it fail
//! cleanly (nothing changed) rather than hang; it is then retried once after
//! terminating the new lock holders.
//! Terminating another role's sessions needs superuser or `pg_signal_backend`;
//! without it the lock timeout says which sessions are in the way.

pub mod copy;
pub mod export;
pub mod measure;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::{DbError, DbSnapshot, RestorePlan, RestoreReport, ServerUrl, finish_file, human_bytes, run_tool};
use crate::plan::{Database, DbKind};

/// How long the restore waits for a lock before giving up (and retrying once):
/// a tenth of the database's timeout, between 1s and 10s.
fn lock_timeout(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// The dump's file name for database `name`.
pub fn dump_name(name: &str) -> String {
    format!("{name}.pgdump")
}

fn env(url: &ServerUrl) -> Vec<(String, String)> {
    let mut env = vec![
        ("PGCONNECT_TIMEOUT".to_string(), "10".to_string()),
        ("PGAPPNAME".to_string(), "backout".to_string()),
    ];
    if let Some(pw) = &url.password {
        env.push(("PGPASSWORD".to_string(), pw.clone()));
    }
    env
}

fn dbname_arg(url: &ServerUrl) -> String {
    format!("--dbname={}", url.bare)
}

/// Runs one SQL statement with psql; rows come back tab-separated.
async fn psql(url: &ServerUrl, sql: &str, timeout: Duration, cwd: &Path) -> Result<Vec<Vec<String>>, DbError> {
    let argv = [
        "psql",
        "-X",
        "-q",
        "-At",
        "-F",
        "\t",
        "-v",
        "ON_ERROR_STOP=1",
        "--no-password",
    ]
    .into_iter()
    .map(String::from)
    .chain([dbname_arg(url), "-c".into(), sql.into()])
    .collect();
    let out = run_tool(argv, env(url), cwd, timeout, Some(url), &url.shown()).await?;
    Ok(out
        .output
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// What `pg_restore --list` says about a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toc {
    pub server_version: String,
    /// `(schema, table)` of every table in the dump.
    pub tables: BTreeSet<(String, String)>,
}

/// Parses `pg_restore --list` output.
pub fn parse_toc(text: &str) -> Toc {
    let mut server_version = String::new();
    let mut tables = BTreeSet::new();
    for line in text.lines() {
        if let Some(v) = line.split("Dumped from database version:").nth(1) {
            server_version = v.trim().to_string();
            continue;
        }
        if line.starts_with(';') {
            continue;
        }
        // `217; 1259 16390 TABLE public items owner`
        let Some((_, rest)) = line.split_once("; ") else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        if w.len() >= 6 && w[2] == "TABLE" && w[3] != "DATA" {
            tables.insert((w[3].to_string(), w[4..w.len() - 1].join(" ")));
        }
    }
    Toc { server_version, tables }
}

async fn list(path: &Path, timeout: Duration, name: &str) -> Result<Toc, DbError> {
    let argv = vec!["pg_restore".into(), "--list".into(), path.display().to_string()];
    let dir = path.parent().unwrap_or(Path::new("."));
    match run_tool(argv, Vec::new(), dir, timeout, None, &path.display().to_string()).await {
        Ok(out) => Ok(parse_toc(&out.output)),
        Err(DbError::Tool { output, .. }) => Err(DbError::Corrupt {
            name: name.to_string(),
            path: path.to_path_buf(),
            reason: format!("pg_restore cannot read it: {output}"),
        }),
        Err(e) => Err(e),
    }
}

/// Dumps the database into `dest_dir/<name>.pgdump`.
pub async fn capture(db: &Database, dest_dir: &Path) -> Result<DbSnapshot, DbError> {
    let url = ServerUrl::parse(db)?;
    let name = dump_name(&db.name);
    let tmp = dest_dir.join(format!("{name}.partial"));
    let argv = vec![
        "pg_dump".into(),
        "--format=custom".into(),
        "--no-password".into(),
        "--lock-wait-timeout=60000".into(),
        format!("--file={}", tmp.display()),
        dbname_arg(&url),
    ];
    if let Err(e) = run_tool(argv, env(&url), dest_dir, db.timeout, Some(&url), &url.shown()).await {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let file = finish_file(&tmp, dest_dir, &name)?;
    let toc = list(&dest_dir.join(&name), db.timeout, &db.name).await?;
    Ok(DbSnapshot {
        name: db.name.clone(),
        kind: DbKind::Postgres,
        file,
        server_version: toc.server_version,
        tables: Some(toc.tables.len() as u64),
        keys: None,
    })
}

/// Checks the dump's hash, that `pg_restore --list` reads it, and its tables.
pub async fn verify(snap: &DbSnapshot, dir: &Path, timeout: Duration) -> Result<(), DbError> {
    verified_toc(snap, dir, timeout).await.map(|_| ())
}

async fn verified_toc(snap: &DbSnapshot, dir: &Path, timeout: Duration) -> Result<Toc, DbError> {
    let path = snap.file.check(dir, &snap.name)?;
    let toc = list(&path, timeout, &snap.name).await?;
    if Some(toc.tables.len() as u64) != snap.tables {
        return Err(DbError::Corrupt {
            name: snap.name.clone(),
            path,
            reason: format!(
                "it lists {} tables where the capture recorded {}",
                toc.tables.len(),
                snap.tables.unwrap_or(0)
            ),
        });
    }
    Ok(toc)
}

/// Tables in the live database, extension members and system schemas left out.
async fn live_tables(url: &ServerUrl, timeout: Duration, cwd: &Path) -> Result<BTreeSet<(String, String)>, DbError> {
    let rows = psql(
        url,
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')",
        timeout,
        cwd,
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter(|r| r.len() == 2)
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect())
}

/// A session of another client holding locks in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Locker {
    pid: String,
    app: String,
    state: String,
}

async fn lockers(url: &ServerUrl, timeout: Duration, cwd: &Path) -> Result<Vec<Locker>, DbError> {
    let rows = psql(
        url,
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, '') FROM pg_stat_activity a \
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
         AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'relation' \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) ORDER BY a.pid",
        timeout,
        cwd,
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter(|r| r.len() == 3)
        .map(|r| Locker {
            pid: r[0].clone(),
            app: r[1].clone(),
            state: r[2].clone(),
        })
        .collect())
}

fn describe(l: &Locker) -> String {
    let app = if l.app.is_empty() {
        "no application name"
    } else {
        &l.app
    };
    format!("pid {} ({app}, {})", l.pid, l.state)
}

fn qualified(t: &(String, String)) -> String {
    format!("{}.{}", t.0, t.1)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Says what restoring `snap` would replace, touching nothing.
pub async fn plan_restore(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<RestorePlan, DbError> {
    let url = ServerUrl::parse(db)?;
    let toc = verified_toc(snap, dir, db.timeout).await?;
    let live = live_tables(&url, db.timeout, dir).await?;
    let mut actions = Vec::new();
    let lockers = lockers(&url, db.timeout, dir).await?;
    if !lockers.is_empty() {
        let who: Vec<String> = lockers.iter().map(describe).collect();
        actions.push(format!(
            "terminate {} session(s) holding locks in the database: {}",
            lockers.len(),
            who.join(", ")
        ));
    }
    let extra: Vec<String> = live.difference(&toc.tables).map(qualified).collect();
    if !extra.is_empty() {
        actions.push(format!(
            "drop {} table(s) created after the checkpoint: {}",
            extra.len(),
            extra.join(", ")
        ));
    }
    actions.push(format!(
        "replace the database's {} table(s) with the checkpoint's {} ({}, PostgreSQL {}), in one transaction",
        live.len(),
        toc.tables.len(),
        human_bytes(snap.file.size),
        snap.server_version
    ));
    Ok(RestorePlan {
        name: db.name.clone(),
        kind: DbKind::Postgres,
        target: url.shown(),
        actions,
    })
}

/// Verifies the dump, then replaces the database's content with it.
pub async fn restore(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<RestoreReport, DbError> {
    let url = ServerUrl::parse(db)?;
    let toc = verified_toc(snap, dir, db.timeout).await?;
    let dump = dir.join(&snap.file.name);
    // The SQL holds the data: it lives in a private temporary directory.
    let work = tempfile::Builder::new()
        .prefix("backout-pg-restore")
        .tempdir()
        .map_err(|source| DbError::Io {
            action: "create a temporary directory in",
            path: std::env::temp_dir(),
            source,
        })?;
    let script = work.path().join("restore.sql");
    let argv = vec![
        "pg_restore".into(),
        "--clean".into(),
        "--if-exists".into(),
        format!("--file={}", script.display()),
        dump.display().to_string(),
    ];
    run_tool(
        argv,
        Vec::new(),
        work.path(),
        db.timeout,
        None,
        &dump.display().to_string(),
    )
    .await?;

    let mut report = RestoreReport {
        name: db.name.clone(),
        steps: Vec::new(),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        terminate_lockers(&url, db, work.path(), &mut report).await?;
        let live = live_tables(&url, db.timeout, work.path()).await?;
        let extra: Vec<(String, String)> = live.difference(&toc.tables).cloned().collect();
        let pre = work.path().join("pre.sql");
        super::write_file(&pre, prelude(&live, &extra, lock_timeout(db.timeout)).as_bytes())?;
        let argv = vec![
            "psql".into(),
            "-X".into(),
            "-q".into(),
            "--single-transaction".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "--no-password".into(),
            dbname_arg(&url),
            "-f".into(),
            pre.display().to_string(),
            "-f".into(),
            script.display().to_string(),
        ];
        match run_tool(argv, env(&url), work.path(), db.timeout, Some(&url), &url.shown()).await {
            Ok(_) => {
                if !extra.is_empty() {
                    let names: Vec<String> = extra.iter().map(qualified).collect();
                    report.steps.push(format!(
                        "dropped table(s) created after the checkpoint: {}",
                        names.join(", ")
                    ));
                }
                report.steps.push(format!(
                    "restored {} table(s) from {} with pg_restore --clean --if-exists in one transaction",
                    toc.tables.len(),
                    snap.file.name
                ));
                return Ok(report);
            }
            Err(DbError::Tool { output, .. }) if attempt == 1 && output.contains("lock timeout") => {
                report
                    .steps
                    .push("a session took a lock during the restore; nothing was changed; retrying once".into());
            }
            Err(DbError::Tool {
                program,
                target,
                how,
                output,
            }) if output.contains("lock timeout") => {
                let who: Vec<String> = lockers(&url, db.timeout, work.path())
                    .await
                    .unwrap_or_default()
                    .iter()
                    .map(describe)
                    .collect();
                return Err(DbError::Tool {
                    program,
                    target,
                    how,
                    output: format!(
                        "{output}\nnothing was changed; sessions holding locks: {} (stop the application, or let backout's role terminate them: grant pg_signal_backend)",
                        if who.is_empty() {
                            "none now".into()
                        } else {
                            who.join(", ")
                        }
                    ),
                });
            }
            Err(e) => return Err(e),
        }
    }
}

/// The SQL run first in the restore's transaction: take every table's lock,
/// waiting at most `lock_timeout` (the dump's own SQL sets `lock_timeout = 0`, so
/// the locks are taken here, before it runs), then drop the tables the
/// checkpoint does not hold.
fn prelude(live: &BTreeSet<(String, String)>, extra: &[(String, String)], lock_timeout: Duration) -> String {
    let q = |t: &(String, String)| format!("{}.{}", quote_ident(&t.0), quote_ident(&t.1));
    let mut sql = format!("SET lock_timeout = '{}ms';\n", lock_timeout.as_millis());
    if !live.is_empty() {
        let all: Vec<String> = live.iter().map(q).collect();
        sql.push_str(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE;\n", all.join(", ")));
    }
    for t in extra {
        sql.push_str(&format!("DROP TABLE IF EXISTS {} CASCADE;\n", q(t)));
    }
    sql
}

/// Ends the sessions that would block the restore's `DROP`s.
async fn terminate_lockers(
    url: &ServerUrl,
    db: &Database,
    cwd: &Path,
    report: &mut RestoreReport,
) -> Result<(), DbError> {
    for l in lockers(url, db.timeout, cwd).await? {
        let Ok(pid) = l.pid.parse::<i32>() else { continue };
        match psql(
            url,
            &format!("SELECT pg_terminate_backend({pid}, 5000)"),
            db.timeout,
            cwd,
        )
        .await
        {
            Ok(rows) if rows.first().and_then(|r| r.first()).is_some_and(|v| v == "t") => {
                report.steps.push(format!(
                    "terminated session {} holding locks in the database",
                    describe(&l)
                ));
            }
            Ok(_) => report.steps.push(format!("session {} had already ended", describe(&l))),
            Err(e) => report
                .steps
                .push(format!("could not terminate session {}: {e}", describe(&l))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, PgDb, PgSession, psql as sql};
    use super::*;

    fn pg() -> Option<String> {
        testing::server_url("BACKOUT_TEST_PG_URL")
    }

    #[test]
    fn the_table_of_contents_parses() {
        let text = ";\n; Archive created at 2026-01-01\n;     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)\n;\n\
                    215; 1259 16385 TABLE public items app\n216; 1259 16390 TABLE public my table app\n\
                    3345; 0 16385 TABLE DATA public items app\n217; 1259 16391 SEQUENCE public items_id_seq app\n";
        let toc = parse_toc(text);
        assert_eq!(toc.server_version, "15.18 (Debian 15.18-0+deb12u1)");
        let t: Vec<String> = toc.tables.iter().map(qualified).collect();
        assert_eq!(t, ["public.items", "public.my table"]);
    }

    #[test]
    fn the_prelude_locks_everything_then_drops_what_is_new() {
        let t = |s: &str, n: &str| (s.to_string(), n.to_string());
        let live = BTreeSet::from([t("public", "items"), t("public", "we\"ird")]);
        let sql = prelude(&live, &[t("public", "we\"ird")], Duration::from_secs(2));
        assert_eq!(
            sql,
            "SET lock_timeout = '2000ms';\n\
             LOCK TABLE \"public\".\"items\", \"public\".\"we\"\"ird\" IN ACCESS EXCLUSIVE MODE;\n\
             DROP TABLE IF EXISTS \"public\".\"we\"\"ird\" CASCADE;\n"
        );
        assert_eq!(lock_timeout(Duration::from_secs(600)), Duration::from_secs(10));
        assert_eq!(lock_timeout(Duration::from_secs(3)), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn capture_and_restore_while_the_app_is_connected() {
        let Some(admin) = pg() else { return };
        let t = PgDb::create(&admin);
        sql(
            &t.url,
            "CREATE TABLE items (id serial PRIMARY KEY, v text); INSERT INTO items (v) VALUES ('a'), ('b')",
        );
        let spec = testing::spec("main", DbKind::Postgres, &t.url);
        let store = tempfile::tempdir().unwrap();
        let snap = capture(&spec, store.path()).await.unwrap();
        assert_eq!(snap.tables, Some(1));
        assert!(snap.server_version.starts_with(char::is_numeric), "{snap:?}");
        verify(&snap, store.path(), spec.timeout).await.unwrap();

        // After the checkpoint: rows change, a migration adds a table that
        // points into the old one.
        sql(
            &t.url,
            "DELETE FROM items WHERE v = 'a'; INSERT INTO items (v) VALUES ('z'); \
             CREATE TABLE later (id int REFERENCES items(id))",
        );
        // An application connection that stays idle, and one inside a transaction.
        let mut idle = PgSession::open(&t.url);
        let mut busy = PgSession::open(&t.url);
        busy.query("BEGIN");
        assert_eq!(busy.query("SELECT count(*) FROM items"), "2");

        let plan = plan_restore(&spec, &snap, store.path()).await.unwrap();
        let text = plan.actions.join("\n");
        assert!(text.contains("terminate 1 session"), "{text}");
        assert!(text.contains("public.later"), "{text}");

        let report = restore(&spec, &snap, store.path()).await.unwrap();
        let steps = report.steps.join("\n");
        assert!(steps.contains("terminated session"), "{steps}");
        assert!(steps.contains("public.later"), "{steps}");
        // The idle connection stayed connected and sees the restored rows.
        assert_eq!(idle.query("SELECT string_agg(v, ',' ORDER BY id) FROM items"), "a,b");
        assert_eq!(
            idle.query("SELECT count(*) FROM pg_tables WHERE tablename = 'later'"),
            "0"
        );
        // The one whose transaction blocked the restore was ended.
        assert!(busy.is_terminated());
        // The serial continues from the checkpoint's value.
        assert_eq!(sql(&t.url, "INSERT INTO items (v) VALUES ('c') RETURNING id"), "3");
    }

    #[tokio::test]
    async fn a_lock_holder_that_cannot_be_ended_fails_the_restore_and_changes_nothing() {
        let Some(admin) = pg() else { return };
        let t = PgDb::create(&admin);
        sql(
            &t.url,
            "CREATE TABLE items (v text); INSERT INTO items VALUES ('checkpoint')",
        );
        let mut spec = testing::spec("main", DbKind::Postgres, &t.url);
        spec.timeout = Duration::from_secs(20);
        let store = tempfile::tempdir().unwrap();
        let snap = capture(&spec, store.path()).await.unwrap();
        sql(&t.url, "INSERT INTO items VALUES ('after')");
        // A superuser's transaction: backout's ordinary role may not end it.
        let mut su = reqwest::Url::parse(&t.url).unwrap();
        su.set_username("postgres").unwrap();
        let mut holder = PgSession::open(su.as_str());
        holder.query("BEGIN");
        holder.query("SELECT count(*) FROM items");
        let e = restore(&spec, &snap, store.path()).await.unwrap_err().to_string();
        assert!(e.contains("lock timeout") && e.contains("nothing was changed"), "{e}");
        assert!(e.contains("sessions holding locks: pid"), "{e}");
        assert!(!e.contains(&testing::password_of(&admin)), "{e}");
        holder.query("COMMIT");
        assert_eq!(sql(&t.url, "SELECT count(*) FROM items"), "2");
    }

    #[tokio::test]
    async fn a_corrupted_dump_is_refused_before_restore() {
        let Some(admin) = pg() else { return };
        let t = PgDb::create(&admin);
        sql(&t.url, "CREATE TABLE items (v text); INSERT INTO items VALUES ('kept')");
        let spec = testing::spec("main", DbKind::Postgres, &t.url);
        let store = tempfile::tempdir().unwrap();
        let mut snap = capture(&spec, store.path()).await.unwrap();
        sql(&t.url, "INSERT INTO items VALUES ('after')");
        let dump = store.path().join(&snap.file.name);
        let bytes = std::fs::read(&dump).unwrap();
        std::fs::write(&dump, &bytes[..bytes.len() / 2]).unwrap();
        let e = restore(&spec, &snap, store.path()).await.unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        // A dump damaged before it was hashed: pg_restore itself refuses it.
        std::fs::write(&dump, b"PGDMP garbage").unwrap();
        snap.file = super::super::DumpFile::of(store.path(), &snap.file.name).unwrap();
        let e = verify(&snap, store.path(), spec.timeout).await.unwrap_err().to_string();
        assert!(e.contains("pg_restore cannot read it"), "{e}");
        assert_eq!(sql(&t.url, "SELECT count(*) FROM items"), "2");
    }

    #[tokio::test]
    async fn the_password_never_appears_in_arguments_output_or_errors() {
        let Some(admin) = pg() else { return };
        let password = testing::password_of(&admin);
        let t = PgDb::create(&admin);
        sql(&t.url, "CREATE TABLE items (v text)");
        let store = tempfile::tempdir().unwrap();

        // While the tools run, no process on the machine shows the password in its arguments.
        let spec = testing::spec("main", DbKind::Postgres, &t.url);
        let watch = testing::ArgvWatch::start(&password);
        let snap = capture(&spec, store.path()).await.unwrap();
        let plan = plan_restore(&spec, &snap, store.path()).await.unwrap();
        let report = restore(&spec, &snap, store.path()).await.unwrap();
        let leaked = watch.finish();
        assert!(leaked.is_empty(), "the password was in argv: {leaked:?}");
        let everything = format!("{snap:?}{plan:?}{report:?}{}", serde_json::to_string(&plan).unwrap());
        assert!(!everything.contains(&password));
        assert!(plan.target.contains("********"), "{}", plan.target);

        // Errors: a wrong database, a wrong password, an unreachable server.
        let mut bad = reqwest::Url::parse(&t.url).unwrap();
        bad.set_path("/no_such_db");
        let mut wrong_pw = reqwest::Url::parse(&t.url).unwrap();
        wrong_pw.set_password(Some(&format!("{password}x"))).unwrap();
        let mut closed = reqwest::Url::parse(&t.url).unwrap();
        closed.set_port(Some(1)).unwrap();
        for url in [bad, wrong_pw, closed] {
            let spec = testing::spec("main", DbKind::Postgres, url.as_str());
            let e = capture(&spec, store.path()).await.unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(text.contains("pg_dump") && text.contains("********"), "{text}");
            assert!(!text.contains(&password), "{text}");
            let e = restore(&spec, &snap, store.path()).await.unwrap_err();
            assert!(!format!("{e} {e:?}").contains(&password));
        }
    }
}
