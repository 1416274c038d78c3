//! Nothing discarded silently: a restore or rollback counts what was written
//! since the checkpoint (rows per table, Redis keys, files), says it in the dry
//! run, on the console, in --json, in the operation log and in the report,
//! names the safety checkpoint that keeps it, and `backout export` of that
//! checkpoint gives those rows back.

use std::collections::BTreeSet;
use std::path::Path;

use crate::Project;

fn sqlite(path: &Path, sql: &str) {
    rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

fn json(r: &crate::Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout()).unwrap_or_else(|e| panic!("{e}: {}", r.stdout()))
}

/// The lines of a file exported by `backout export`, as a set.
fn lines(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A project capturing SQLite `app.db` as `main` (users and posts) and the
/// directory `uploads`; its rollback restores both.
fn app() -> (Project, std::path::PathBuf) {
    let p = Project::new();
    let db = p.path().join("app.db");
    sqlite(
        &db,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); \
         CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER, body TEXT); \
         CREATE TABLE visits (page TEXT); \
         INSERT INTO users (name) VALUES ('ada'), ('bob'); \
         INSERT INTO posts (user_id, body) VALUES (1, 'first'), (2, 'second'); \
         INSERT INTO visits VALUES ('/'), ('/');",
    );
    p.file("uploads/kept.txt", "kept\n");
    p.file("uploads/edited.txt", "v1\n");
    p.file("uploads/removed.txt", "old\n");
    p.file(
        "backout.toml",
        r#"[plan]
name = "dataloss"
[capture]
paths = ["uploads"]
databases = [{ name = "main", kind = "sqlite", path = "app.db" }]
[rollback]
steps = [{ resource = ["main", "uploads"] }]
"#,
    );
    (p, db)
}

#[test]
fn a_restore_counts_the_rows_and_files_it_discards_and_the_safety_checkpoint_gives_them_back() {
    let (p, db) = app();
    p.run(&["checkpoint"]).success();
    // Written after the checkpoint: a user and two posts (the issue's case),
    // a post edited, one deleted, a duplicate row gone from a table with no key;
    // a file added, one edited, one removed.
    sqlite(
        &db,
        "INSERT INTO users (name) VALUES ('carol'); \
         INSERT INTO posts (user_id, body) VALUES (3, 'hello'), (3, 'again'); \
         UPDATE posts SET body = 'first, edited' WHERE id = 1; DELETE FROM posts WHERE id = 2; \
         DELETE FROM visits WHERE rowid = 1; INSERT INTO visits VALUES ('/new');",
    );
    p.file("uploads/new.bin", "0123456789");
    p.file("uploads/edited.txt", "v2 longer\n");
    std::fs::remove_file(p.path().join("uploads/removed.txt")).unwrap();

    let dry = p.run(&["restore", "cp-1", "--dry-run"]);
    dry.success();
    let out = dry.stdout();
    assert!(
        out.contains(
            "main: discards 2 rows added to posts, 1 row changed in posts, 1 row deleted from posts (put back), \
             1 row added to users, 1 row added to visits, 1 row deleted from visits (put back) since cp-1 \
             (a safety checkpoint taken before the restore will keep it)"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "uploads: discards 1 file added (10 B), 1 file changed (10 B), 1 file deleted (put back) since cp-1"
        ),
        "{out}"
    );
    let j = json(&p.run(&["--json", "restore", "cp-1", "--dry-run"]));
    let main = j["discarded"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["resource"] == "main")
        .unwrap();
    assert_eq!(
        main["counts"],
        serde_json::json!([
            { "within": "posts", "added": 2, "changed": 1, "deleted": 1 },
            { "within": "users", "added": 1, "changed": 0, "deleted": 0 },
            { "within": "visits", "added": 1, "changed": 0, "deleted": 1 },
        ]),
        "{j}"
    );

    // The real restore says the same, naming the safety checkpoint.
    let r = p.run(&["--json", "restore", "cp-1"]);
    r.success();
    let j = json(&r);
    let safety = j["safety_checkpoint"].as_str().unwrap().to_string();
    assert_eq!(safety, "cp-2");
    for d in j["discarded"].as_array().unwrap() {
        assert_eq!(d["kept_in"], "cp-2", "{j}");
    }
    // ... and the operation log holds it as an event.
    let log = json(&p.run(&["--json", "show", "op-2"]));
    let ev = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "discarded")
        .unwrap_or_else(|| panic!("no discarded event: {log}"));
    let summary = ev["detail"]["summary"].to_string();
    assert!(
        summary.contains("1 row added to users") && summary.contains("backout export cp-2 main -o main-cp-2.sql"),
        "{summary}"
    );

    // The safety checkpoint holds exactly the rows the restore took away:
    // its posts and users minus the checkpoint's are those written since.
    let dir = tempfile::tempdir().unwrap();
    let get = |cp: &str, table: &str| {
        let out = dir.path().join(format!("{cp}-{table}.csv"));
        p.run(&[
            "export",
            cp,
            "main",
            "--table",
            table,
            "--format",
            "csv",
            "-o",
            out.to_str().unwrap(),
        ])
        .success();
        lines(&out)
    };
    let since = |table: &str| -> Vec<String> { get("cp-2", table).difference(&get("cp-1", table)).cloned().collect() };
    assert_eq!(since("users"), ["3,carol"]);
    assert_eq!(since("posts"), ["1,1,\"first, edited\"", "3,3,hello", "4,3,again"]);
    // As SQL the whole database loads back into the state before the restore.
    let sql = dir.path().join("main.sql");
    p.run(&["export", "cp-2", "main", "-o", sql.to_str().unwrap()])
        .success();
    let back = rusqlite::Connection::open_in_memory().unwrap();
    back.execute_batch(&std::fs::read_to_string(&sql).unwrap()).unwrap();
    let names: String = back
        .query_row(
            "SELECT group_concat(name, ',') FROM (SELECT name FROM users ORDER BY id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(names, "ada,bob,carol");
    // An export never replaces a file without --force.
    let again = p.run(&["export", "cp-2", "main", "-o", sql.to_str().unwrap()]);
    again.code_is(2);
    assert!(
        again.stderr().contains("already exists") && again.stderr().contains("--force"),
        "{}",
        again.stderr()
    );
    p.run(&["export", "cp-2", "main", "-o", sql.to_str().unwrap(), "--force"])
        .success();

    // The files too: the archive of the safety checkpoint holds the new and edited ones.
    let tar = dir.path().join("uploads.tar");
    p.run(&["export", "cp-2", "uploads", "-o", tar.to_str().unwrap()])
        .success();
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let t = std::process::Command::new("tar")
        .args(["-xf", tar.to_str().unwrap(), "-C", x.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    assert_eq!(
        std::fs::read_to_string(x.join("uploads/new.bin")).unwrap(),
        "0123456789"
    );
    assert_eq!(
        std::fs::read_to_string(x.join("uploads/edited.txt")).unwrap(),
        "v2 longer\n"
    );
    assert!(!x.join("uploads/removed.txt").exists());

    // Restoring again discards nothing, and says so.
    let r = p.run(&["restore", "cp-1", "--dry-run"]);
    assert!(
        r.stdout().contains("main: nothing written since cp-1 is discarded"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout().contains("uploads: nothing written since cp-1 is discarded"),
        "{}",
        r.stdout()
    );

    // `show` describes a checkpoint for people; --json keeps the record.
    let s = p.run(&["show", "cp-2"]);
    s.success();
    assert!(
        s.stdout().contains("label     before restore of cp-1"),
        "{}",
        s.stdout()
    );
    assert!(s.stdout().contains("main     database (sqlite "), "{}", s.stdout());
    assert!(!s.stdout().contains("\"manifest\""), "no raw JSON: {}", s.stdout());
}

#[test]
fn a_rollback_says_what_it_discards_before_asking_on_the_console_and_in_the_report() {
    let (p, db) = app();
    p.run(&["checkpoint"]).success();
    sqlite(
        &db,
        "INSERT INTO users (name) VALUES ('late'); INSERT INTO posts (user_id, body) VALUES (3, 'a'), (3, 'b');",
    );
    let expected = "main: discards 2 rows added to posts, 1 row added to users since cp-1";

    let dry = p.run(&["rollback", "--dry-run", "--to", "cp-1"]);
    dry.success();
    assert!(dry.stdout().contains(expected), "{}", dry.stdout());
    assert!(
        dry.stdout()
            .contains("uploads: nothing written since cp-1 is discarded"),
        "{}",
        dry.stdout()
    );
    let j = json(&p.run(&["--json", "rollback", "--dry-run", "--to", "cp-1"]));
    let main = j["discarded"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["resource"] == "main")
        .unwrap();
    assert_eq!(main["counts"][0]["added"], 2, "{j}");

    let rb = p.run(&["rollback", "--yes", "--to", "cp-1"]);
    rb.success();
    // The step's restore took its own safety checkpoint after the rollback's (cp-2).
    let console = format!("{expected} (kept in safety checkpoint cp-3: `backout export cp-3 main -o main-cp-3.sql`)");
    assert!(rb.stderr().contains(&console), "{}", rb.stderr());
    let report = std::fs::read_to_string(p.path().join(".backout/reports/inc-1/report.md")).unwrap();
    let section = report
        .split("## Data discarded")
        .nth(1)
        .expect("a Data discarded section");
    assert!(section.contains(&console), "{report}");
    let html = std::fs::read_to_string(p.path().join(".backout/reports/inc-1/report.html")).unwrap();
    assert!(html.contains("<h2>Data discarded</h2>"), "{html}");
    // The rows the rollback discarded come back out of cp-3.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("posts.sql");
    p.run(&[
        "export",
        "cp-3",
        "main",
        "--table",
        "posts",
        "-o",
        out.to_str().unwrap(),
    ])
    .success();
    let inserts = std::fs::read_to_string(&out).unwrap();
    assert!(
        inserts.contains("VALUES(3,3,'a');") && inserts.contains("VALUES(4,3,'b');"),
        "{inserts}"
    );
}

fn psql_at(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-XAtqc", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_postgres_restore_counts_rows_per_table_and_export_returns_them() {
    let Some(admin) = crate::server_url("BACKOUT_TEST_PG_URL") else {
        return;
    };
    let name = format!("dataloss_it_{}", std::process::id());
    psql_at(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
    psql_at(&admin, &format!("CREATE DATABASE {name}"));
    let base = admin.rsplit_once('/').unwrap().0.to_string();
    let url = format!("{base}/{name}");
    let psql = |sql: &str| psql_at(&url, sql);
    psql(
        "CREATE TABLE users (id serial PRIMARY KEY, name text, joined timestamptz DEFAULT now()); \
         CREATE TABLE posts (id serial PRIMARY KEY, user_id int REFERENCES users, body text, score float8); \
         CREATE TABLE tags (tag text); \
         INSERT INTO users (name) VALUES ('ada'), ('bob'); \
         INSERT INTO posts (user_id, body, score) VALUES (1, 'first', 0.1), (2, E'tab\\there', 1e300); \
         INSERT INTO tags VALUES ('x'), ('x');",
    );
    let p = Project::new().env("DATABASE_URL", &url);
    p.file(
        "backout.toml",
        "[plan]\nname = \"pg\"\n[capture]\ndatabases = [{ name = \"main\", kind = \"postgres\", url = \"${DATABASE_URL}\" }]\n",
    );
    p.run(&["checkpoint"]).success();
    psql(
        "INSERT INTO users (name) VALUES ('carol'); \
         INSERT INTO posts (user_id, body) VALUES (3, 'hello'), (3, 'it''s me'); \
         UPDATE posts SET score = 0.2 WHERE id = 1; DELETE FROM tags WHERE ctid = (SELECT min(ctid) FROM tags); \
         ALTER TABLE users ADD COLUMN email text; CREATE TABLE audit (x int); INSERT INTO audit VALUES (1);",
    );
    let dry = p.run(&["restore", "cp-1", "--dry-run"]);
    dry.success();
    assert!(
        dry.stdout().contains(
            "main: discards 1 row added to public.audit, 2 rows added to public.posts, 1 row changed in public.posts, \
             1 row deleted from public.tags (put back), 1 row added to public.users, \
             table public.audit added, column public.users.email added since cp-1"
        ),
        "{}",
        dry.stdout()
    );
    let r = p.run(&["--json", "restore", "cp-1"]);
    r.success();
    let j = json(&r);
    assert_eq!(j["safety_checkpoint"], "cp-2");
    assert_eq!(psql("SELECT count(*) FROM users"), "2", "restored");

    // cp-2 gives the rows back: INSERTs that load into the restored table.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("users.sql");
    p.run(&[
        "export",
        "cp-2",
        "main",
        "--table",
        "users",
        "-o",
        out.to_str().unwrap(),
    ])
    .success();
    let inserts = std::fs::read_to_string(&out).unwrap();
    let carol: Vec<&str> = inserts.lines().filter(|l| l.contains("'carol'")).collect();
    assert_eq!(carol.len(), 1, "{inserts}");
    // The checkpoint has no email column; salvage the row without it.
    psql(&carol[0].replace(", email)", ")").replace(", NULL);", ");"));
    assert_eq!(
        psql("SELECT string_agg(name, ',' ORDER BY id) FROM users"),
        "ada,bob,carol"
    );
    let csv = dir.path().join("posts.csv");
    p.run(&[
        "export",
        "cp-2",
        "main",
        "--table",
        "public.posts",
        "--format",
        "csv",
        "-o",
        csv.to_str().unwrap(),
    ])
    .success();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("id,user_id,body,score\n"), "{text}");
    assert!(
        text.contains("4,3,it's me,\n") && text.contains("2,2,tab\there,1e+300\n"),
        "{text}"
    );
    // The whole database as plain SQL.
    let all = dir.path().join("all.sql");
    p.run(&["export", "cp-2", "main", "-o", all.to_str().unwrap()])
        .success();
    assert!(
        std::fs::read_to_string(&all)
            .unwrap()
            .contains("CREATE TABLE public.audit")
    );

    psql_at(&admin, &format!("DROP DATABASE {name} WITH (FORCE)"));
}

#[test]
fn a_redis_restore_counts_keys_and_export_lists_them() {
    let Some(base) = crate::server_url("BACKOUT_TEST_REDIS_URL") else {
        return;
    };
    let url = format!("{base}/9");
    let u = reqwest::Url::parse(&url).unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-h",
                u.host_str().unwrap(),
                "-p",
                &u.port().unwrap().to_string(),
                "-n",
                "9",
                "--no-auth-warning",
            ])
            .env("REDISCLI_AUTH", u.password().unwrap())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    cli(&["FLUSHDB"]);
    cli(&["SET", "greeting", "hello"]);
    cli(&["HSET", "user:1", "name", "ada"]);
    cli(&["RPUSH", "queue", "a", "b"]);
    let p = Project::new().env("CACHE_URL", &url);
    p.file(
        "backout.toml",
        "[plan]\nname = \"r\"\n[capture]\ndatabases = [{ name = \"cache\", kind = \"redis\", url = \"${CACHE_URL}\" }]\n",
    );
    p.run(&["checkpoint"]).success();
    cli(&["SET", "session:9", "new"]);
    cli(&["HSET", "user:1", "name", "ada lovelace"]);
    cli(&["DEL", "queue"]);
    cli(&["SET", "greeting", "hello"]);
    let r = p.run(&["restore", "cp-1"]);
    r.success();
    assert!(
        r.stdout().contains(
            "cache: discards 1 key added to database 9, 1 key changed in database 9, 1 key deleted from database 9 (put back) since cp-1 (kept in safety checkpoint cp-2"
        ),
        "{}",
        r.stdout()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cache.txt");
    p.run(&[
        "export",
        "cp-2",
        "cache",
        "--format",
        "text",
        "-o",
        out.to_str().unwrap(),
    ])
    .success();
    let all = std::fs::read_to_string(&out).unwrap();
    // The snapshot holds every database of the server: other tests use others.
    let listing = all
        .split("SELECT ")
        .find(|part| part.starts_with("9\n"))
        .unwrap_or_else(|| panic!("no database 9 in {all}"));
    assert!(listing.contains("SET \"session:9\" \"new\""), "{listing}");
    assert!(
        listing.contains("HSET \"user:1\" \"name\" \"ada lovelace\""),
        "{listing}"
    );
    assert!(!listing.contains("queue"), "{listing}");
}
