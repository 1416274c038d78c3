//! SQLite: captured with the online backup API, restored with it too.
//!
//! Capture copies every page in one backup step under a read transaction, so the
//! copy is one consistent state even while the application writes (in WAL mode
//! writers carry on meanwhile; in rollback-journal mode they wait a moment). The
//! copy is switched to `journal_mode=DELETE` so the dump is one self-contained
//! file.
//!
//! Restore writes the dump's pages into the live file through the backup API,
//! under SQLite's own locking, instead of replacing the file: connections the
//! application holds open see the restored content on their next read (a file
//! renamed over theirs would leave them reading the old inode).

pub mod export;
pub mod measure;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{DbError, DbSnapshot, RestorePlan, RestoreReport, finish_file, human_bytes};
use crate::plan::{Database, DbKind, DbLocation};

fn live_path(db: &Database) -> Result<&Path, DbError> {
    match &db.location {
        DbLocation::Path(p) => Ok(p),
        DbLocation::Url(_) => Err(DbError::Location {
            name: db.name.clone(),
            message: "a SQLite database needs a path".into(),
        }),
    }
}

fn sql(path: &Path, action: &'static str) -> impl FnOnce(rusqlite::Error) -> DbError + use<> {
    let path = path.to_path_buf();
    move |source| DbError::Sqlite { action, path, source }
}

fn open(path: &Path, flags: OpenFlags) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(path, flags).map_err(sql(path, "open it"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql(path, "set a busy timeout"))?;
    Ok(conn)
}

fn read_only(path: &Path) -> Result<Connection, DbError> {
    open(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
}

/// Tables in the database, SQLite's own excluded.
fn count_tables(conn: &Connection, path: &Path) -> Result<u64, DbError> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(sql(path, "list its tables"))
}

/// Copies every page from `from` to `to`, retrying while locked, until `timeout`.
fn copy_pages(from: &Connection, to: &mut Connection, path: &Path, timeout: Duration) -> Result<(), DbError> {
    let backup = Backup::new(from, to).map_err(sql(path, "start a backup"))?;
    let deadline = crate::context::deadline(timeout);
    loop {
        // -1: all pages in one step, so the copy is a single consistent state.
        match backup.step(-1).map_err(sql(path, "copy its pages"))? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked => {
                if Instant::now() >= deadline {
                    return Err(DbError::SqliteBusy {
                        path: path.to_path_buf(),
                        message: format!("still locked by another connection after {}s", timeout.as_secs()),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The dump's file name for database `name`.
pub fn dump_name(name: &str) -> String {
    format!("{name}.sqlite")
}

/// Backs up the live database into `dest_dir/<name>.sqlite`.
pub fn capture(db: &Database, dest_dir: &Path) -> Result<DbSnapshot, DbError> {
    let live = live_path(db)?;
    if !live.is_file() {
        return Err(DbError::Io {
            action: "back up",
            path: live.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such SQLite file"),
        });
    }
    let src = read_only(live)?;
    let name = dump_name(&db.name);
    let tmp = dest_dir.join(format!("{name}.partial"));
    let _ = std::fs::remove_file(&tmp);
    let copied = copy_to(&src, &tmp, db);
    if copied.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let tables = copied?;
    let file = finish_file(&tmp, dest_dir, &name)?;
    Ok(DbSnapshot {
        name: db.name.clone(),
        kind: DbKind::Sqlite,
        file,
        server_version: rusqlite::version().to_string(),
        tables: Some(tables),
        keys: None,
    })
}

/// Backs `src` up into a new file `tmp`; returns its table count.
fn copy_to(src: &Connection, tmp: &Path, db: &Database) -> Result<u64, DbError> {
    let live = live_path(db)?;
    {
        let mut dst = open(
            tmp,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        copy_pages(src, &mut dst, live, db.timeout)?;
        // A WAL source's header says WAL; the dump is one plain file.
        dst.pragma_update(None, "journal_mode", "DELETE")
            .map_err(sql(tmp, "leave WAL mode"))?;
        dst.close().map_err(|(_, e)| sql(tmp, "close it")(e))?;
    }
    count_tables(&read_only(tmp)?, tmp)
}

/// Checks the dump's hash, that SQLite finds it intact, and its table count.
pub fn verify(snap: &DbSnapshot, dir: &Path) -> Result<(), DbError> {
    let path = snap.file.check(dir, &snap.name)?;
    let corrupt = |reason: String| DbError::Corrupt {
        name: snap.name.clone(),
        path: path.clone(),
        reason,
    };
    let conn = read_only(&path).map_err(|e| corrupt(format!("SQLite cannot open it: {e}")))?;
    let check: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(|e| corrupt(format!("integrity check failed: {e}")))?;
    if check != ["ok"] {
        return Err(corrupt(format!("integrity check: {}", check.join("; "))));
    }
    let tables = count_tables(&conn, &path)?;
    if Some(tables) != snap.tables {
        return Err(corrupt(format!(
            "it holds {tables} tables where the capture recorded {}",
            snap.tables.unwrap_or(0)
        )));
    }
    Ok(())
}

/// Verifies the dump and says what restoring it would replace.
pub fn plan_restore(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<RestorePlan, DbError> {
    verify(snap, dir)?;
    let live = live_path(db)?;
    let now = if live.is_file() {
        let n = count_tables(&read_only(live)?, live)?;
        format!("its {n} table(s)")
    } else {
        "nothing (the file does not exist yet)".to_string()
    };
    Ok(RestorePlan {
        name: db.name.clone(),
        kind: DbKind::Sqlite,
        target: live.display().to_string(),
        actions: vec![format!(
            "replace {now} in {} with the checkpoint's {} table(s) ({}), in place, through SQLite's backup API",
            live.display(),
            snap.tables.unwrap_or(0),
            human_bytes(snap.file.size),
        )],
    })
}

/// Verifies the dump, then copies it into the live database in place.
pub fn restore(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<RestoreReport, DbError> {
    verify(snap, dir)?;
    let live = live_path(db)?;
    let dump: PathBuf = dir.join(&snap.file.name);
    let src = read_only(&dump)?;
    let mut dst = open(
        live,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    copy_pages(&src, &mut dst, live, db.timeout)?;
    Ok(RestoreReport {
        name: db.name.clone(),
        steps: vec![format!(
            "copied {} table(s) into {} through the backup API",
            snap.tables.unwrap_or(0),
            live.display()
        )],
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn db(path: &Path) -> Database {
        Database {
            name: "local".into(),
            kind: DbKind::Sqlite,
            location: DbLocation::Path(path.to_path_buf()),
            timeout: Duration::from_secs(10),
        }
    }

    fn rows(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT v FROM t ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn app_db(dir: &Path, wal: bool) -> (PathBuf, Connection) {
        let path = dir.join("app.db");
        let conn = Connection::open(&path).unwrap();
        if wal {
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        }
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a'), ('b');")
            .unwrap();
        (path, conn)
    }

    #[test]
    fn capture_then_restore_puts_rows_back_while_the_app_is_connected() {
        for wal in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = tempfile::tempdir().unwrap();
            let (path, app) = app_db(dir.path(), wal);
            let snap = capture(&db(&path), store.path()).unwrap();
            assert_eq!(snap.tables, Some(1));
            assert_eq!(snap.file.name, "local.sqlite");
            verify(&snap, store.path()).unwrap();
            // The dump is one self-contained file.
            assert!(!store.path().join("local.sqlite-wal").exists());

            // The app changes things after the checkpoint, and stays connected.
            app.execute_batch("DELETE FROM t WHERE v = 'a'; INSERT INTO t (v) VALUES ('z'); CREATE TABLE later (x);")
                .unwrap();
            assert_eq!(rows(&app), ["b", "z"]);
            let plan = plan_restore(&db(&path), &snap, store.path()).unwrap();
            assert!(plan.actions[0].contains("its 2 table(s)"), "{plan:?}");

            restore(&db(&path), &snap, store.path()).unwrap();
            // The app's open connection sees the restored content.
            assert_eq!(rows(&app), ["a", "b"], "wal={wal}");
            let tables: i64 = app
                .query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'later'", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(tables, 0);
            let jm: String = app.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
            assert_eq!(jm, if wal { "wal" } else { "delete" });
        }
    }

    #[test]
    fn restore_waits_for_an_open_read_transaction_then_lands() {
        for wal in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = tempfile::tempdir().unwrap();
            let (path, app) = app_db(dir.path(), wal);
            let snap = capture(&db(&path), store.path()).unwrap();
            app.execute("INSERT INTO t (v) VALUES ('after')", []).unwrap();
            // The app sits inside a read transaction while the restore starts.
            app.execute_batch("BEGIN").unwrap();
            assert_eq!(rows(&app), ["a", "b", "after"]);
            let restorer = {
                let (path, dir) = (path.clone(), store.path().to_path_buf());
                let snap = snap.clone();
                std::thread::spawn(move || restore(&db(&path), &snap, &dir))
            };
            std::thread::sleep(Duration::from_millis(300));
            // Inside its transaction the app still reads one consistent state.
            assert_eq!(rows(&app), ["a", "b", "after"], "wal={wal}");
            app.execute_batch("COMMIT").unwrap();
            restorer.join().unwrap().unwrap();
            assert_eq!(rows(&app), ["a", "b"], "wal={wal}");
        }
    }

    #[test]
    fn capture_is_consistent_while_the_app_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let (path, app) = app_db(dir.path(), true);
        // Every transaction moves 1 from one row to another: the sum never changes.
        app.execute_batch(
            "CREATE TABLE acct (id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO acct (n) VALUES (1000), (1000);",
        )
        .unwrap();
        drop(app);
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let writer = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                let conn = Connection::open(&path).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    conn.execute_batch(
                        "BEGIN IMMEDIATE; UPDATE acct SET n = n - 1 WHERE id = 1; UPDATE acct SET n = n + 1 WHERE id = 2; INSERT INTO t (v) VALUES (hex(randomblob(200))); COMMIT;",
                    )
                    .unwrap();
                    n += 1;
                    if n == 1 {
                        let _ = started_tx.send(());
                    }
                }
                n
            })
        };
        // Captures start only once the app really is writing (a loaded machine may
        // otherwise schedule the writer after all five captures).
        started_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer never wrote");
        for i in 0..5 {
            let d = store.path().join(i.to_string());
            std::fs::create_dir(&d).unwrap();
            let snap = capture(&db(&path), &d).unwrap();
            verify(&snap, &d).unwrap();
            let copy = Connection::open(d.join(&snap.file.name)).unwrap();
            let sum: i64 = copy.query_row("SELECT sum(n) FROM acct", [], |r| r.get(0)).unwrap();
            assert_eq!(sum, 2000);
        }
        stop.store(true, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
    }

    #[test]
    fn a_corrupted_dump_is_refused_before_restore() {
        let dir = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let (path, app) = app_db(dir.path(), false);
        let snap = capture(&db(&path), store.path()).unwrap();
        app.execute("INSERT INTO t (v) VALUES ('after')", []).unwrap();
        let dump = store.path().join(&snap.file.name);
        let mut bytes = std::fs::read(&dump).unwrap();
        let n = bytes.len();
        bytes[n - 100] ^= 0xff;
        std::fs::write(&dump, bytes).unwrap();
        let e = plan_restore(&db(&path), &snap, store.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        let e = restore(&db(&path), &snap, store.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        // Nothing was touched.
        assert_eq!(rows(&app), ["a", "b", "after"]);
    }

    #[test]
    fn a_damaged_file_with_a_matching_record_fails_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let (path, _app) = app_db(dir.path(), false);
        let mut snap = capture(&db(&path), store.path()).unwrap();
        let dump = store.path().join(&snap.file.name);
        let mut bytes = std::fs::read(&dump).unwrap();
        // Smash the second page (the table's b-tree) and re-record the hash, as if
        // the damage happened before hashing.
        for b in &mut bytes[4096..4200] {
            *b = 0x55;
        }
        std::fs::write(&dump, &bytes).unwrap();
        snap.file = super::super::DumpFile::of(store.path(), &snap.file.name).unwrap();
        let e = verify(&snap, store.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
    }

    #[test]
    fn a_missing_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = capture(&db(&dir.path().join("nope.db")), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.db"), "{e}");
    }
}
