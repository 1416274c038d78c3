//! `[capture] databases` and `commands` through the real binary: shown by
//! `check`, secrets kept out, bad entries located.

use super::Project;

const PLAN: &str = r#"[plan]
name = "shop"
rto = "5m"

[capture]
databases = [
  { name = "main", kind = "postgres", url = "${DATABASE_URL}" },
  { name = "local", kind = "sqlite", path = "app.db" },
  { name = "cache", kind = "redis", url = "redis://127.0.0.1:6379/1", timeout = "2m" },
]
commands = [{ name = "packages", save = "pip freeze", restore = "pip install --force-reinstall -r {file}" }]
"#;

#[test]
fn check_lists_databases_and_commands_without_the_url_secret() {
    let p = Project::new().env("DATABASE_URL", "postgres://app:Canary-Pw-7731@db:5432/shop");
    p.file("backout.toml", PLAN);
    let r = p.run(&["check", "--json"]);
    r.success();
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    let dbs = &v["capture"]["databases"];
    assert_eq!(dbs[0]["kind"], "postgres");
    assert_eq!(dbs[0]["url"], "${DATABASE_URL}");
    assert_eq!(dbs[1]["kind"], "sqlite");
    assert!(dbs[1]["path"].as_str().unwrap().ends_with("app.db"));
    assert_eq!(dbs[2]["timeout_ms"], 120_000);
    assert_eq!(v["capture"]["commands"][0]["save"], "pip freeze");
    assert_eq!(
        v["capture"]["commands"][0]["restore"],
        "pip install --force-reinstall -r {file}"
    );
    let human = p.run(&["check"]);
    human.success();
    assert!(
        human.stdout().contains("database main (postgres): ${DATABASE_URL}"),
        "{}",
        human.stdout()
    );
    assert!(
        human
            .stdout()
            .contains("command packages: `pip freeze`, restored by `pip install --force-reinstall -r {file}`"),
        "{}",
        human.stdout()
    );
    for out in [r.stdout(), r.stderr(), human.stdout(), human.stderr()] {
        assert!(!out.contains("Canary-Pw-7731"), "{out}");
    }
}

#[test]
fn an_unknown_database_kind_is_located_with_a_hint() {
    let p = Project::new().env("DATABASE_URL", "postgres://db/shop");
    p.file("backout.toml", &PLAN.replace("kind = \"redis\"", "kind = \"rediss\""));
    let r = p.run(&["check"]);
    r.code_is(2);
    let err = r.stderr();
    assert!(err.contains("unknown database kind \"rediss\""), "{err}");
    assert!(err.contains("backout.toml:9:28"), "{err}");
    assert!(err.contains("did you mean \"redis\"?"), "{err}");
}

#[test]
fn a_clear_text_password_in_a_database_url_is_a_warning_never_echoed() {
    let p = Project::new();
    p.file(
        "backout.toml",
        &PLAN.replace("${DATABASE_URL}", "postgres://app:Canary-Pw-7731@db:5432/shop"),
    );
    let r = p.run(&["check"]);
    r.success();
    let all = format!("{}{}", r.stdout(), r.stderr());
    assert!(all.contains("clear text"), "{all}");
    assert!(!all.contains("Canary-Pw-7731"), "{all}");
}
