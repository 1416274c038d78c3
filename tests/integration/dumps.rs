//! Databases and command-captured state through `checkpoint`, `restore`,
//! `fsck` and the rollback `resource` step: dumps kept in the store.

use crate::Project;

fn sqlite(path: &std::path::Path, sql: &str) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(sql).unwrap();
    conn.query_row(
        "SELECT group_concat(name, ',') FROM (SELECT name FROM items ORDER BY id)",
        [],
        |r| r.get::<_, Option<String>>(0),
    )
    .unwrap()
    .unwrap_or_default()
}

/// A project whose plan captures SQLite database `app.db` (table `items`,
/// holding `rows`) as `main` and `state.txt` ("v1") through a command as
/// `state`; its rollback restores both. The project and the database's path.
fn sqlite_and_state(rows: &str) -> (Project, std::path::PathBuf) {
    let p = Project::new();
    let db = p.path().join("app.db");
    sqlite(
        &db,
        &format!("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items (name) VALUES {rows};"),
    );
    p.file("state.txt", "v1\n");
    p.file(
        "backout.toml",
        r#"[plan]
name = "dumps"
rto = "1m"
[capture]
databases = [{ name = "main", kind = "sqlite", path = "app.db" }]
commands = [{ name = "state", save = ["cat", "state.txt"], restore = ["cp", "{file}", "state.txt"] }]
[rollback]
steps = [{ resource = ["main", "state"] }]
"#,
    );
    (p, db)
}

/// The hash of checkpoint `cp`'s dump of its first database, and the file
/// that holds it in the store.
fn dump_of(p: &Project, cp: &str) -> (String, std::path::PathBuf) {
    let shown: serde_json::Value = serde_json::from_str(&p.run(&["show", cp, "--json"]).stdout()).unwrap();
    let object = shown["resources"]["databases"][0]["object"]
        .as_str()
        .unwrap()
        .to_string();
    let file = crate::walk(&p.path().join(".backout/objects"))
        .into_iter()
        .find(|f| f.file_name().unwrap().to_string_lossy().contains(&object[2..]))
        .expect("the dump object");
    (object, file)
}

#[test]
fn a_sqlite_database_and_command_state_round_trip_through_the_store() {
    let (p, db) = sqlite_and_state("('a'), ('b')");
    p.git(&["init", "-q"]);
    let r = p.run(&["checkpoint"]);
    r.success();
    assert!(r.stdout().contains("main: 1 file, "), "{}", r.stdout());
    let list = p.run(&["checkpoints", "--json"]);
    list.success();
    let listed: serde_json::Value = serde_json::from_str(&list.stdout()).unwrap();
    assert_eq!(listed[0]["resources"], serde_json::json!(["main", "state"]), "{listed}");

    // The change: rows deleted and added, the state file edited.
    assert_eq!(
        sqlite(
            &db,
            "DELETE FROM items WHERE name = 'a'; INSERT INTO items (name) VALUES ('z');"
        ),
        "b,z"
    );
    p.file("state.txt", "v2\n");

    let dry = p.run(&["restore", "cp-1", "--dry-run"]);
    dry.success();
    // The line names the verb once, then what it replaces with what; not the
    // staging file, which is gone once the dry run ends.
    let line = dry
        .stdout()
        .lines()
        .find(|l| l.starts_with("* main: "))
        .unwrap_or_else(|| panic!("no line for main: {}", dry.stdout()))
        .to_string();
    let live = db.display().to_string();
    assert!(
        line.starts_with(&format!(
            "* main: replace its 1 table(s) in {live} with the checkpoint's 1 table(s) ("
        )),
        "{line}"
    );
    assert!(!line.contains(".backout"), "{line}");
    let staged: Vec<_> = std::fs::read_dir(p.path().join(".backout/tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "the dry run left its staged dump: {staged:?}");
    let json = p.run(&["--json", "restore", "cp-1", "--dry-run"]);
    json.success();
    let out: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    let main: Vec<_> = out["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["resource"] == "main")
        .collect();
    assert_eq!(main.len(), 1, "{out}");
    assert_eq!(main[0]["action"], "replace", "{out}");
    assert!(
        main[0]["what"].as_str().unwrap().starts_with("its 1 table(s) in "),
        "{out}"
    );
    assert!(
        dry.stdout().contains("cp "),
        "the command it would run is shown: {}",
        dry.stdout()
    );
    assert_eq!(sqlite(&db, "SELECT 1;"), "b,z", "a dry run changes nothing");

    p.run(&["restore", "cp-1", "--only", "main"]).success();
    assert_eq!(sqlite(&db, "SELECT 1;"), "a,b", "the rows are back");
    assert_eq!(
        std::fs::read_to_string(p.path().join("state.txt")).unwrap(),
        "v2\n",
        "--only left the rest"
    );

    // The rollback step restores both; fsck checks the dumps with the rest.
    sqlite(&db, "DELETE FROM items;");
    let rb = p.run(&["rollback", "--yes", "--to", "cp-1"]);
    rb.success();
    assert_eq!(sqlite(&db, "SELECT 1;"), "a,b");
    assert_eq!(std::fs::read_to_string(p.path().join("state.txt")).unwrap(), "v1\n");
    p.run(&["fsck"]).success();

    // A damaged dump is found by fsck, and restore refuses it before writing.
    let (object, file) = dump_of(&p, "cp-1");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&file, bytes).unwrap();
    sqlite(&db, "DELETE FROM items;");
    let fsck = p.run(&["fsck"]);
    fsck.code_is(5);
    let out = fsck.stdout();
    assert!(
        out.contains(&format!("corrupt database dump {}: affects cp-1", &object[..12])),
        "{out}"
    );
    assert!(out.contains("database dump of main: "), "what it is, then why: {out}");
    let r = p.run(&["restore", "cp-1", "--only", "main"]);
    assert_ne!(r.code(), 0, "{}", r.stdout());
    assert_eq!(sqlite(&db, "SELECT 1;"), "", "nothing was written");
}

/// gc keeps the dumps and saved outputs of the checkpoints it keeps (no
/// manifest names them), removes the ones only a dropped checkpoint used, and
/// fsck reports a kept checkpoint's dump that has gone missing.
#[test]
fn gc_keeps_the_dumps_of_kept_checkpoints_and_fsck_misses_none() {
    let (p, db) = sqlite_and_state("('a')");
    p.run(&["checkpoint"]).success();
    sqlite(&db, "INSERT INTO items (name) VALUES ('b');");
    p.run(&["checkpoint"]).success();

    // cp-1 goes, and with it its dump, the one object only it used (the
    // saved output is the same in both).
    let gc = p.run(&["gc", "--keep", "1", "--json"]);
    gc.success();
    let report: serde_json::Value = serde_json::from_str(&gc.stdout()).unwrap();
    assert_eq!(report["dropped"], serde_json::json!(["cp-1"]), "{report}");
    assert_eq!(report["objects_removed"], 1, "{report}");
    let fsck = p.run(&["fsck"]);
    fsck.success();

    // cp-2 still restores both.
    sqlite(&db, "DELETE FROM items;");
    p.file("state.txt", "v2\n");
    p.run(&["restore", "cp-2"]).success();
    assert_eq!(sqlite(&db, "SELECT 1;"), "a,b");
    assert_eq!(std::fs::read_to_string(p.path().join("state.txt")).unwrap(), "v1\n");

    // Its dump deleted behind backout's back: fsck names it and the
    // checkpoint, and restore refuses before writing anything.
    let (object, file) = dump_of(&p, "cp-2");
    std::fs::remove_file(file).unwrap();
    let fsck = p.run(&["fsck"]);
    fsck.code_is(5);
    let out = fsck.stdout();
    assert!(
        out.contains(&format!("missing database dump {}: affects cp-2", &object[..12])),
        "{out}"
    );
    assert!(out.contains("database dump of main"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&p.run(&["fsck", "--json"]).stdout()).unwrap();
    assert_eq!(json["affected_checkpoints"], serde_json::json!(["cp-2"]), "{json}");
    sqlite(&db, "DELETE FROM items;");
    let r = p.run(&["restore", "cp-2", "--only", "main"]);
    assert_ne!(r.code(), 0, "{}", r.stdout());
    assert_eq!(sqlite(&db, "SELECT 1;"), "", "nothing was written");
}

#[test]
fn a_postgres_database_comes_back_through_checkpoint_and_restore() {
    let Some(url) = crate::server_url("BACKOUT_TEST_PG_URL") else {
        return;
    };
    let psql_at = |url: &str, sql: &str| {
        let out = std::process::Command::new("psql")
            .args([url, "-XAtqc", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // A database of its own on the test server.
    let name = format!("dumps_it_{}", std::process::id());
    psql_at(&url, &format!("DROP DATABASE IF EXISTS {name}"));
    psql_at(&url, &format!("CREATE DATABASE {name}"));
    let base = url.rsplit_once('/').unwrap().0.to_string();
    let url = format!("{base}/{name}");
    let p = Project::new().env("DATABASE_URL", &url);
    let psql = |sql: &str| psql_at(&url, sql);
    let table = "items";
    psql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v text); INSERT INTO {table} VALUES ('kept');"
    ));
    p.file(
        "backout.toml",
        "[plan]\nname = \"pg\"\n[capture]\ndatabases = [{ name = \"main\", kind = \"postgres\", url = \"${DATABASE_URL}\" }]\n[rollback]\nsteps = [{ resource = [\"main\"] }]\n",
    );
    let r = p.run(&["checkpoint"]);
    r.success();
    psql(&format!("DELETE FROM {table}; INSERT INTO {table} VALUES ('changed');"));
    let r = p.run(&["restore", "cp-1"]);
    r.success();
    assert_eq!(psql(&format!("SELECT string_agg(v, ',') FROM {table}")), "kept");
    // And through the rollback engine's resource step, while a client stays connected.
    let mut client = std::process::Command::new("psql")
        .args([url.as_str(), "-Xq"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    psql(&format!(
        "INSERT INTO {table} VALUES ('added later'); CREATE TABLE later (x int);"
    ));
    let rb = p.run(&["rollback", "--yes", "--to", "cp-1"]);
    rb.success();
    assert_eq!(psql(&format!("SELECT string_agg(v, ',') FROM {table}")), "kept");
    assert_eq!(
        psql("SELECT count(*) FROM pg_tables WHERE tablename = 'later'"),
        "0",
        "a table made after the checkpoint is gone"
    );
    let _ = client.kill();
    let _ = client.wait();
    psql_at(
        &format!("{base}/postgres"),
        &format!("DROP DATABASE {name} WITH (FORCE)"),
    );
    // The password never reached the terminal.
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(!r.stdout().contains(password) && !r.stderr().contains(password));
}
