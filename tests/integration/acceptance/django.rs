//! A Django 4.2 project as `django-admin startproject` makes it, on
//! PostgreSQL, served by gunicorn (a master and two workers) started by hand.
//! The deploy is made by hand too, as many teams do: `backout deploy --mark`,
//! then people sign up, then the release — a commit that turns DEBUG off
//! without setting ALLOWED_HOSTS (every request answers 400) and installs
//! `django.contrib.sites` (a schema change, migrated in) — and a `kill -HUP`
//! of the gunicorn master. `backout watch --auto-rollback` sees the 400s and
//! rolls back: the commit reverted, the database restored to its checkpoint
//! (the sites table gone — and the two accounts created since, which backout
//! counts, says are kept in its safety checkpoint, and gives back with
//! `backout export`), gunicorn stopped and started under backout, verified by
//! Django's own `check` and `migrate --check`.

use super::{ByHand, backout, figures, service, sh, status, venv};

fn plan(port: u16) -> String {
    format!(
        r#"[plan]
name = "mysite"
rto = "2m"

[capture]
git = true
databases = [{{ name = "main", kind = "postgres", url = "${{DATABASE_URL}}" }}]

[[service]]
name = "web"
start = ["venv/bin/gunicorn", "mysite.wsgi", "--bind", "127.0.0.1:{port}", "--workers", "2"]
ready = "login"

[[probe]]
name = "login"
http = {{ url = "http://127.0.0.1:{port}/admin/login/", status = 200 }}
every = "250ms"
timeout = "2s"

[[rule]]
name = "errors"
when = "login.consecutive_failures >= 4"
then = "rollback"

[rollback]
steps = [
  {{ git = "revert" }},
  {{ resource = ["main"] }},
  {{ service = "web", action = "restart" }},
  {{ wait = "login", timeout = "30s" }},
]

[verify]
checks = [
  {{ http = "http://127.0.0.1:{port}/admin/login/", status = 200 }},
  {{ run = "venv/bin/python manage.py check" }},
  {{ run = "venv/bin/python manage.py migrate --check" }},
]
"#
    )
}

/// The settings' database, from the environment, as people write it.
const DATABASES: &str = r#"DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["DB_NAME"],
        "USER": os.environ["DB_USER"],
        "PASSWORD": os.environ["DB_PASSWORD"],
        "HOST": os.environ["DB_HOST"],
        "PORT": os.environ["DB_PORT"],
    }
}
"#;

fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-XAtqc", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn usernames(url: &str) -> String {
    psql(url, "SELECT string_agg(username, ',' ORDER BY id) FROM auth_user")
}

#[test]
fn django_on_postgres_bad_settings_and_schema_change_rolled_back_lost_accounts_counted() {
    let Some(admin) = crate::server_url("BACKOUT_TEST_PG_URL") else {
        return;
    };
    let name = format!("acceptance_django_{}", std::process::id());
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let parsed = reqwest::Url::parse(&url).unwrap();
    let db_port = parsed.port().unwrap_or(5432).to_string();
    let env: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", url.as_str()),
        ("DB_NAME", name.as_str()),
        ("DB_USER", parsed.username()),
        ("DB_PASSWORD", parsed.password().unwrap_or_default()),
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", db_port.as_str()),
    ];
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = crate::closed_port();
    venv(p, &["django==4.2.16", "psycopg2-binary==2.9.10", "gunicorn==23.0.0"]);
    sh(p, "venv/bin/django-admin startproject mysite .");
    let settings = p.join("mysite/settings.py");
    let s = std::fs::read_to_string(&settings).unwrap();
    let start = s.find("DATABASES = {").unwrap();
    let end = start + s[start..].find("\n}\n").unwrap() + 3;
    let s = format!(
        "import os\n{}{DATABASES}{}",
        &s[..start],
        &s[end..].replace("ALLOWED_HOSTS = []", "ALLOWED_HOSTS = [\"127.0.0.1\"]")
    );
    std::fs::write(&settings, &s).unwrap();
    std::fs::write(p.join(".gitignore"), "venv/\n__pycache__/\n").unwrap();
    std::fs::write(p.join("backout.toml"), plan(port)).unwrap();
    let run = |script: &str| {
        let mut c = std::process::Command::new("sh");
        c.args(["-ec", script]).current_dir(p);
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("venv/bin/python manage.py migrate -v0");
    sh(
        p,
        "git init -q -b main && git add -A && git commit -qm 'mysite, as startproject made it, on PostgreSQL'",
    );
    // The release, on a branch: production settings (DEBUG off, ALLOWED_HOSTS
    // forgotten) and the sites framework.
    let release = s
        .replace("DEBUG = True", "DEBUG = False")
        .replace("ALLOWED_HOSTS = [\"127.0.0.1\"]", "ALLOWED_HOSTS = []")
        .replace(
            "    'django.contrib.staticfiles',\n",
            "    'django.contrib.staticfiles',\n    'django.contrib.sites',\n",
        )
        + "\nSITE_ID = 1\n";
    assert!(
        release.contains("django.contrib.sites"),
        "startproject's INSTALLED_APPS changed: fix the test"
    );
    sh(p, "git checkout -qb release");
    std::fs::write(&settings, &release).unwrap();
    sh(
        p,
        "git commit -qam 'production settings; the sites framework' && git checkout -q main",
    );
    backout(p, &env, &["check"]).expect(0, "check");

    // Started by hand, with the environment it needs.
    let bind = format!("127.0.0.1:{port}");
    let mut hand = {
        let mut argv = vec!["env"];
        let pairs: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        argv.extend(pairs.iter().map(String::as_str));
        argv.extend(["venv/bin/gunicorn", "mysite.wsgi", "--bind", &bind, "--workers", "2"]);
        ByHand::start(p, &argv, port)
    };
    assert_eq!(status(port, "/admin/login/"), Some(200));

    backout(p, &env, &["deploy", "--mark", "--label", "release"]).expect(0, "deploy --mark");
    // People sign up after the checkpoint.
    run(
        "venv/bin/python manage.py shell -c \"from django.contrib.auth.models import User; \
         User.objects.create_user('ada', password='x'); User.objects.create_user('bob', password='y')\"",
    );
    assert_eq!(usernames(&url), "ada,bob");
    // The release, by hand: merge, migrate, reload gunicorn.
    run("git merge -q --ff-only release && venv/bin/python manage.py migrate -v0");
    let master = hand.pid();
    sh(p, &format!("kill -HUP {master}"));
    let r = backout(p, &env, &["watch", "--auto-rollback", "--for", "1m"]);
    let all = r.all();
    r.expect(6, "rolled back and recovered");
    for want in [
        "status 400",
        "started outside backout",
        "main: discards",
        "2 rows added to public.auth_user",
        "table public.django_site added since cp-1",
        "backout export cp-",
        "[pass] web serves port",
        "migrate --check",
    ] {
        assert!(all.contains(want), "{want:?} in\n{all}");
    }
    assert!(!hand.alive(), "gunicorn started by hand was stopped");
    assert_eq!(status(port, "/admin/login/"), Some(200));
    assert!(std::fs::read_to_string(&settings).unwrap().contains("DEBUG = True"));
    assert_eq!(
        psql(&url, "SELECT to_regclass('django_site') IS NULL"),
        "t",
        "the schema change is undone"
    );
    assert_eq!(
        usernames(&url),
        "",
        "the accounts made after the checkpoint are discarded"
    );
    assert_eq!(service(p, &env, "web")["serving"], "ours");
    figures(p, "django", "inc-1");

    // They are kept, and can be salvaged.
    let kept = all
        .split("backout export ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the sentence names the checkpoint to export from")
        .to_string();
    backout(
        p,
        &env,
        &["export", &kept, "main", "--table", "auth_user", "-o", "users.sql"],
    )
    .expect(0, "export");
    let users = std::fs::read_to_string(p.join("users.sql")).unwrap();
    assert!(users.contains("'ada'") && users.contains("'bob'"), "{users}");

    // Undo: the release and the accounts come back, served as they were (400s).
    let u = backout(p, &env, &["undo"]);
    u.expect(0, "undo");
    assert!(u.all().contains("not healthy in the state put back"), "{}", u.all());
    assert_eq!(usernames(&url), "ada,bob");
    assert_eq!(status(port, "/admin/login/"), Some(400));
    // Redo: rolled back again.
    backout(p, &env, &["redo"]).expect(0, "redo");
    assert_eq!(status(port, "/admin/login/"), Some(200));
    assert_eq!(usernames(&url), "");
    backout(p, &env, &["service", "stop"]).expect(0, "stop");
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
