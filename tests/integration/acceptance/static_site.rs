//! A small site served by CPython's own `python3 -m http.server --directory
//! site`, started by hand. The change: a "redesign" commit that moves the
//! pages to `public/` — the server still runs and answers, with 404s.
//! `backout deploy -- git merge` restarts it onto that, the watch sees the
//! 404s and rolls back with `git revert` (history kept); undo and redo then
//! alternate between the two.

use super::{ByHand, backout, figures, service, sh, status};

fn plan(port: u16) -> String {
    format!(
        r#"[plan]
name = "site"
rto = "1m"

[capture]
git = true

[[service]]
name = "site"
start = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "site"]
ready = "home"

[[probe]]
name = "home"
http = {{ url = "http://127.0.0.1:{port}/", status = 200, match = "Welcome" }}
every = "250ms"
timeout = "2s"

[[probe]]
name = "about"
http = {{ url = "http://127.0.0.1:{port}/about.html", status = 200 }}
every = "250ms"
timeout = "2s"

[[rule]]
name = "home-gone"
when = "home.consecutive_failures >= 4"
then = "rollback"

[rollback]
steps = [
  {{ git = "revert" }},
  {{ service = "site", action = "restart" }},
  {{ wait = "home", timeout = "20s" }},
]

[verify]
checks = [
  {{ http = "http://127.0.0.1:{port}/", status = 200 }},
  {{ http = "http://127.0.0.1:{port}/about.html", status = 200 }},
  {{ file = "site/index.html", contains = "Welcome" }},
]
"#
    )
}

#[test]
fn a_site_served_by_python_http_server_is_rolled_back_from_a_bad_commit() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let port = crate::closed_port();
    std::fs::create_dir_all(p.join("site")).unwrap();
    std::fs::write(
        p.join("site/index.html"),
        "<h1>Welcome</h1><a href=about.html>about</a>\n",
    )
    .unwrap();
    std::fs::write(p.join("site/about.html"), "<p>About us</p>\n").unwrap();
    std::fs::write(p.join("backout.toml"), plan(port)).unwrap();
    sh(p, "git init -q -b main && git add -A && git commit -qm site");
    sh(
        p,
        "git checkout -qb redesign && git mv site public && git commit -qm 'redesign: pages in public/' && git checkout -q main",
    );
    backout(p, &[], &["check"]).expect(0, "check");
    let port_s = port.to_string();
    let mut hand = ByHand::start(
        p,
        &[
            "python3",
            "-m",
            "http.server",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--directory",
            "site",
        ],
        port,
    );

    let r = backout(
        p,
        &[],
        &[
            "deploy",
            "--label",
            "redesign",
            "--restart",
            "site",
            "--auto-rollback",
            "--for",
            "1m",
            "--",
            "git",
            "merge",
            "-q",
            "--ff-only",
            "redesign",
        ],
    );
    let all = r.all();
    r.expect(6, "rolled back and recovered");
    assert!(all.contains("home-gone: ROLLBACK"), "{all}");
    assert!(all.contains("started outside backout"), "{all}");
    assert!(!hand.alive());
    assert_eq!(status(port, "/about.html"), Some(200));
    assert!(p.join("site/index.html").exists() && !p.join("public").exists());
    let log = sh(p, "git log --format=%s");
    assert!(
        log.starts_with("Revert \"redesign: pages in public/\"\nredesign"),
        "history kept: {log}"
    );
    assert_eq!(service(p, &[], "site")["serving"], "ours");
    figures(p, "http.server", "inc-1");

    let u = backout(p, &[], &["undo"]);
    u.expect(0, "undo");
    assert!(u.all().contains("not healthy in the state put back"), "{}", u.all());
    assert_eq!(status(port, "/about.html"), Some(404));
    backout(p, &[], &["redo"]).expect(0, "redo");
    assert_eq!(status(port, "/about.html"), Some(200));
    backout(p, &[], &["service", "stop"]).expect(0, "stop");
}
