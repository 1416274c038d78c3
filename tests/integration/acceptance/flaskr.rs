//! Flaskr, the Flask tutorial's blog (Flask 2.2.2's sdist, `examples/tutorial`),
//! in a venv with its SQLite database in `instance/`, started with `flask run`
//! as the tutorial says. The change: add Flask-WTF to requirements.txt and
//! rebuild the venv from it, as a fresh server or an image build does — which
//! brings the unpinned Werkzeug at 3.0, whose `werkzeug.urls` lost
//! `url_quote`: Flask 2.2.2 no longer imports (September 2023, for many). `backout deploy --restart flaskr` restarts it onto that,
//! sees it die, and rolls back: the commit reverted, the venv restored (the two
//! new packages discarded, and said so), the app restarted and verified by its
//! own test suite. The posts written before the deploy are all still there.

use std::path::Path;

use super::{ByHand, backout, fetched, figures, installed, service, sh, status, venv, wheels};

fn plan(port: u16) -> String {
    format!(
        r#"[plan]
name = "flaskr"
rto = "2m"

[capture]
git = true
paths = ["venv"]
databases = [{{ name = "blog", kind = "sqlite", path = "instance/flaskr.sqlite" }}]

[[service]]
name = "flaskr"
start = ["venv/bin/flask", "--app", "flaskr", "run", "--port", "{port}"]
ready = "home"

[[probe]]
name = "home"
http = {{ url = "http://127.0.0.1:{port}/", status = 200 }}
every = "250ms"
timeout = "2s"

[[rule]]
name = "down"
when = "home.consecutive_failures >= 4"
then = "rollback"

[rollback]
steps = [
  {{ git = "revert" }},
  {{ resource = ["venv"] }},
  {{ service = "flaskr", action = "restart" }},
  {{ wait = "home", timeout = "30s" }},
]

[verify]
checks = [
  {{ http = "http://127.0.0.1:{port}/auth/login", status = 200 }},
  {{ run = "venv/bin/python -m pytest -q -p no:cacheprovider tests", timeout = "2m" }},
]
"#
    )
}

/// The posts in the blog's database, as (author, title).
fn posts(dir: &Path) -> Vec<(String, String)> {
    let out = sh(
        dir,
        "python3 -c \"import sqlite3; c = sqlite3.connect('instance/flaskr.sqlite'); \
         [print(u + '|' + t) for u, t in c.execute('SELECT username, title FROM post JOIN user ON user.id = author_id ORDER BY post.id')]\"",
    );
    out.lines()
        .filter_map(|l| l.split_once('|').map(|(a, b)| (a.to_string(), b.to_string())))
        .collect()
}

#[test]
fn flaskr_broken_by_a_werkzeug_3_upgrade_is_rolled_back_and_no_post_is_lost() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = crate::closed_port();
    let sdist = fetched("Flask-2.2.2.tar.gz");
    sh(
        p,
        &format!(
            "tar -xzf '{}' --strip-components=3 Flask-2.2.2/examples/tutorial",
            sdist.display()
        ),
    );
    // What the project pinned when it was written: Flask, not Werkzeug.
    std::fs::write(p.join("requirements.txt"), "flask==2.2.2\n").unwrap();
    venv(p, &["-r", "requirements.txt", "werkzeug==2.2.3", "pytest==8.3.3"]);
    sh(p, "venv/bin/flask --app flaskr init-db");
    std::fs::write(p.join("backout.toml"), plan(port)).unwrap();
    sh(
        p,
        "git init -q -b main && git add -A && git commit -qm 'flaskr, as the tutorial leaves it'",
    );
    // The change, on a branch: one more extension.
    sh(
        p,
        "git checkout -qb forms && echo flask-wtf >> requirements.txt && git commit -qam 'add Flask-WTF' && git checkout -q main",
    );
    backout(p, &[], &["check"]).expect(0, "check");

    // Started by hand, as the tutorial says.
    let port_s = port.to_string();
    let mut hand = ByHand::start(
        p,
        &["venv/bin/flask", "--app", "flaskr", "run", "--port", &port_s],
        port,
    );
    // People use it: an account, a login, a post.
    let jar = p.join("cookies.txt");
    let base = format!("http://127.0.0.1:{port}");
    sh(
        p,
        &format!(
            "curl -sf -o /dev/null -d username=ada -d password=lovelace {base}/auth/register && \
             curl -sf -o /dev/null -c {jar} -d username=ada -d password=lovelace {base}/auth/login && \
             curl -sf -o /dev/null -b {jar} -d title=first -d body=hello {base}/create",
            jar = jar.display()
        ),
    );
    assert_eq!(posts(p), [("ada".to_string(), "first".to_string())]);

    // The deploy rebuilds the venv from requirements.txt, as a fresh server or
    // an image build does: the newest Werkzeug comes with it.
    let deploy = format!(
        "git merge -q --ff-only forms && rm -rf venv && python3 -m venv venv && \
         venv/bin/pip install -q --no-index --find-links {} -r requirements.txt",
        wheels().display()
    );
    // People keep writing while the deploy runs: a post made after its
    // checkpoint, during the baseline, before the deploy command.
    let writer = {
        let (jar, base) = (jar.clone(), base.clone());
        let dir = p.to_path_buf();
        std::thread::spawn(move || {
            let started = (0..3000).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                sh(
                    &dir,
                    "python3 -c \"import sqlite3; print(sqlite3.connect('.backout/state.db').execute('SELECT count(*) FROM checkpoints WHERE complete = 1').fetchone()[0])\" 2>/dev/null || echo 0",
                )
                    .trim()
                    .parse::<i64>()
                    .unwrap_or(0)
                    >= 1
            });
            assert!(started, "the deploy's checkpoint never came");
            sh(
                &dir,
                &format!(
                    "curl -sf -o /dev/null -b {jar} -d title=during -d body=deploy {base}/create",
                    jar = jar.display()
                ),
            );
        })
    };
    let r = backout(
        p,
        &[],
        &[
            "deploy",
            "--label",
            "forms",
            "--restart",
            "flaskr",
            "--auto-rollback",
            "--for",
            "1m",
            "--",
            "sh",
            "-ec",
            &deploy,
        ],
    );
    writer.join().unwrap();
    let all = r.all();
    r.expect(6, "the deploy is rolled back and recovered");
    for want in [
        "ImportError: cannot import name 'url_quote'",
        "started outside backout",
        "venv: discards",
        "[pass] flaskr serves port",
        "passed",
    ] {
        assert!(all.contains(want), "{want:?} in\n{all}");
    }
    assert!(
        !hand.alive(),
        "the instance started by hand was stopped by the deploy's restart"
    );
    // Code, versions, data and process, as before the deploy.
    assert_eq!(
        std::fs::read_to_string(p.join("requirements.txt")).unwrap(),
        "flask==2.2.2\n"
    );
    assert!(sh(p, "git log -1 --format=%s").starts_with("Revert"));
    assert_eq!(installed(p, "werkzeug").as_deref(), Some("2.2.3"));
    assert_eq!(installed(p, "flask-wtf"), None, "the new package is gone");
    let kept = [
        ("ada".to_string(), "first".to_string()),
        ("ada".to_string(), "during".to_string()),
    ];
    assert_eq!(posts(p), kept, "no post lost, not even one written during the deploy");
    assert_eq!(status(port, "/"), Some(200));
    assert_eq!(service(p, &[], "flaskr")["serving"], "ours");
    let (detect, recover) = figures(p, "flaskr", "inc-1");
    assert!(detect <= recover, "{detect} {recover}");

    // Undo: the upgraded venv and the merge come back; the app did not run
    // then (it could not start), so it does not run now.
    let u = backout(p, &[], &["undo"]);
    u.expect(0, "undo");
    assert_eq!(installed(p, "werkzeug").as_deref(), Some("3.0.6"));
    assert_eq!(installed(p, "flask-wtf").as_deref(), Some("1.2.1"));
    assert_eq!(installed(p, "pytest"), None, "the rebuilt venv, exactly");
    assert_eq!(status(port, "/"), None, "{}", u.all());
    // Redo: the rollback again, the app back up.
    backout(p, &[], &["redo"]).expect(0, "redo");
    assert_eq!(installed(p, "werkzeug").as_deref(), Some("2.2.3"));
    assert_eq!(status(port, "/"), Some(200));
    assert_eq!(posts(p), kept);
    backout(p, &[], &["service", "stop"]).expect(0, "stop");
}
