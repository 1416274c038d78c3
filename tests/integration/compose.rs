//! Compose services for real: a two-service compose project built locally from
//! the `backout-test-busybox` image (FROM scratch, built by ./scripts/test; no
//! registry is reachable), driven once by the standalone `docker-compose` (v1)
//! and once by the `docker compose` plugin (v2 and later; ./scripts/test
//! installs it in target/docker-config). One service is rolled back while the
//! other keeps serving, one is stopped for degraded mode, each undone and redone
//! (services back to their state from before, rebuilt onto the restored code),
//! then the whole project is rolled back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::closed_port;
use crate::resume::{backout, sh};

/// Which compose a run uses: the program, and the `DOCKER_CONFIG` that holds
/// (or, for the standalone one, hides) the plugin, for the tests' own commands
/// and for backout alike.
struct Compose {
    program: &'static str,
    docker_config: PathBuf,
    _empty: Option<tempfile::TempDir>,
}

impl Compose {
    fn standalone() -> Compose {
        let empty = tempfile::tempdir().unwrap();
        Compose {
            program: "docker-compose",
            docker_config: empty.path().to_path_buf(),
            _empty: Some(empty),
        }
    }

    /// The plugin from `BACKOUT_TEST_DOCKER_CONFIG` (set by ./scripts/test), else
    /// the one docker finds by itself; `None` (a failure under CI) without one.
    #[allow(clippy::print_stderr)]
    fn plugin() -> Option<Compose> {
        let config = std::env::var("BACKOUT_TEST_DOCKER_CONFIG")
            .ok()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".docker"));
        let works = std::process::Command::new("docker")
            .args(["compose", "version"])
            .env("DOCKER_CONFIG", &config)
            .output()
            .is_ok_and(|o| o.status.success());
        if !works {
            let how = "./scripts/test installs it in target/docker-config and exports BACKOUT_TEST_DOCKER_CONFIG";
            assert!(
                std::env::var("CI").map_or(true, |v| v.is_empty()),
                "the docker compose plugin is missing under CI: {how}"
            );
            eprintln!("skipped: the docker compose plugin is missing ({how})");
            return None;
        }
        Some(Compose {
            program: "docker compose",
            docker_config: config,
            _empty: None,
        })
    }

    /// `compose -p PROJECT ARGS` in `dir`, with its output.
    fn run(&self, dir: &Path, project: &str, args: &str) -> String {
        sh(
            dir,
            &format!(
                "DOCKER_CONFIG='{}' {} -p {project} {args} 2>&1",
                self.docker_config.display(),
                self.program
            ),
        )
    }

    fn backout(&self, dir: &Path, args: &[&str]) -> String {
        let out = backout(dir, args)
            .env("DOCKER_CONFIG", &self.docker_config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "backout {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The services degraded mode stopped, as `backout status` reports them.
    fn degraded(&self, dir: &Path) -> Option<serde_json::Value> {
        let j: serde_json::Value = serde_json::from_str(&self.backout(dir, &["status", "--json"])).unwrap();
        j.get("degraded").map(|d| d["services"].clone())
    }

    fn container(&self, dir: &Path, project: &str, svc: &str) -> String {
        self.run(dir, project, &format!("ps -q {svc}")).trim().to_string()
    }
}

/// Takes the compose project down (containers and the images it built) however
/// the test ends.
struct Down<'a>(&'a Compose, PathBuf, String);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "{prog} -p {0} down --rmi local -v -t 1; docker image prune -f --filter label=backout.test.project={0}",
                    self.2,
                    prog = self.0.program
                ),
            ])
            .env("DOCKER_CONFIG", &self.0.docker_config)
            .current_dir(&self.1)
            .output();
    }
}

fn get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .next()
        .is_some_and(|l| l.starts_with("HTTP/1.") && l.contains(" 200"))
        .then(|| body.rsplit("\r\n\r\n").next().unwrap_or("").trim().to_string())
}

fn wait_for(port: u16, want: &str) {
    for _ in 0..100 {
        if get(port).as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("127.0.0.1:{port} never served {want:?} (last: {:?})", get(port));
}

#[test]
fn compose_v1_roll_back_one_service_degrade_one_undo_redo_then_the_whole_project() {
    scenario(&Compose::standalone());
}

#[test]
fn compose_plugin_roll_back_one_service_degrade_one_undo_redo_then_the_whole_project() {
    if let Some(c) = Compose::plugin() {
        scenario(&c);
    }
}

fn scenario(c: &Compose) {
    let image = sh(
        Path::new("/"),
        "docker image inspect -f ok backout-test-busybox:latest 2>&1 || true",
    );
    assert!(
        image.trim() == "ok",
        "the backout-test-busybox image is missing: ./scripts/test builds it ({image})"
    );
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let project = format!(
        "backouttest{}{}",
        std::process::id(),
        if c.program == "docker-compose" { "a" } else { "b" }
    );
    let _down = Down(c, p.to_path_buf(), project.clone());
    let (web, api) = (closed_port(), closed_port());
    // Labelled, so the images each rebuild leaves untagged are pruned at the end.
    let dockerfile = format!(
        "FROM backout-test-busybox:latest\nLABEL backout.test.project={project}\nCOPY index.html /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
    );
    for svc in ["web", "api"] {
        std::fs::create_dir_all(p.join(svc)).unwrap();
        std::fs::write(p.join(svc).join("Dockerfile"), &dockerfile).unwrap();
        std::fs::write(p.join(svc).join("index.html"), format!("{svc} v1\n")).unwrap();
    }
    std::fs::write(
        p.join("docker-compose.yml"),
        format!(
            "version: \"2.4\"\nservices:\n  web:\n    build: web\n    ports: [\"127.0.0.1:{web}:8080\"]\n  api:\n    build: api\n    ports: [\"127.0.0.1:{api}:8080\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("backout.toml"),
        format!(
            r#"
[plan]
name = "compose"
rto = "2m"
[capture]
git = true

[[service]]
name = "web"
kind = "compose"
project = "{project}"
ready = "web"
[[service]]
name = "api"
kind = "compose"
project = "{project}"
ready = "api"

[[probe]]
name = "web"
http = {{ url = "http://127.0.0.1:{web}/", status = 200 }}
every = "1s"
timeout = "1s"
[[probe]]
name = "web-container"
compose = "web"
every = "1s"
timeout = "5s"

[[probe]]
name = "api"
http = {{ url = "http://127.0.0.1:{api}/", status = 200 }}
every = "1s"
timeout = "1s"

[rollback]
steps = [
  {{ git = "revert" }},
  {{ service = "all", action = "rebuild", timeout = "2m" }},
  {{ wait = "web", timeout = "30s" }},
  {{ wait = "api", timeout = "30s" }},
]

[[phase]]
name = "web-v2"
rollback = [
  {{ name = "A: rebuild web", default = true, steps = [
    {{ restore = ["web"], from = "checkpoint" }},
    {{ service = "web", action = "rebuild", timeout = "2m" }},
    {{ wait = "web-container", timeout = "30s" }},
    {{ wait = "web", timeout = "30s" }},
  ] }},
  {{ name = "C: degraded", risk = "medium", steps = [{{ degraded = ["web"] }}] }},
]
"#
        ),
    )
    .unwrap();
    sh(p, "git init -q -b main && git add -A && git commit -qm v1");
    c.run(p, &project, "up -d --build");
    wait_for(web, "web v1");
    wait_for(api, "api v1");
    c.backout(p, &["checkpoint"]);

    // Deploy web v2.
    std::fs::write(p.join("web/index.html"), "web v2\n").unwrap();
    sh(p, "git commit -qam 'web v2'");
    c.run(p, &project, "up -d --build web");
    wait_for(web, "web v2");
    let j: serde_json::Value = serde_json::from_str(&c.backout(
        p,
        &[
            "rollback",
            "--phase",
            "web-v2",
            "--option",
            "C: degraded",
            "--yes",
            "--json",
        ],
    ))
    .unwrap();
    let command = j["rollback"]["steps"][0]["command"].as_str().unwrap();
    assert!(
        command.starts_with(&format!("{} ", c.program)),
        "backout drives {}: {command}",
        c.program
    );
    assert_eq!(get(web), None, "degraded: web is stopped");
    assert_eq!(get(api).as_deref(), Some("api v1"), "degraded: api keeps serving");
    assert_eq!(c.degraded(p), Some(serde_json::json!(["web"])));
    // Undo starts web again (it ran before the rollback) and clears degraded
    // mode; redo stops it again. api is never touched.
    let api_id = c.container(p, &project, "api");
    let undo = c.backout(p, &["undo", "--json"]);
    assert!(undo.contains("\"restart web\""), "{undo}");
    wait_for(web, "web v2");
    assert_eq!(c.degraded(p), None);
    c.backout(p, &["redo"]);
    assert_eq!(get(web), None, "redo: web is stopped again");
    assert_eq!(c.degraded(p), Some(serde_json::json!(["web"])));
    assert_eq!(
        c.container(p, &project, "api"),
        api_id,
        "api's container was not touched"
    );

    // Roll back web alone while api is polled the whole time.
    let api_before = c.container(p, &project, "api");
    c.run(p, &project, "up -d web");
    wait_for(web, "web v2");
    let stop = Arc::new(AtomicBool::new(false));
    let (failures, polls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let poller = {
        let (stop, failures, polls) = (stop.clone(), failures.clone(), polls.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if get(api).as_deref() != Some("api v1") {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                polls.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = c.backout(p, &["rollback", "--phase", "web-v2", "--yes", "--json"]);
    stop.store(true, Ordering::Relaxed);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let waited = &j["rollback"]["steps"][2];
    assert_eq!(waited["name"], "wait for web-container", "{waited}");
    assert!(
        waited["output"].as_str().unwrap().contains("web-container healthy"),
        "{waited}"
    );
    poller.join().unwrap();
    assert_eq!(get(web).as_deref(), Some("web v1"));
    assert_eq!(
        c.container(p, &project, "api"),
        api_before,
        "api's container was not touched"
    );
    assert!(polls.load(Ordering::Relaxed) > 5);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "api failed while web rolled back");
    // The rollback restored web/ and rebuilt web: undo puts web/ back and
    // rebuilds it onto that code (a restart would keep the rolled-back image),
    // waiting for its probe; redo rebuilds it onto the rolled-back code again.
    let j: serde_json::Value = serde_json::from_str(&c.backout(p, &["undo", "--json"])).unwrap();
    let names: Vec<&str> = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[1..], ["rebuild web", "wait for web"], "{j}");
    assert_eq!(get(web).as_deref(), Some("web v2"), "web runs the restored code");
    c.backout(p, &["redo"]);
    assert_eq!(get(web).as_deref(), Some("web v1"));
    assert_eq!(
        c.container(p, &project, "api"),
        api_before,
        "api's container was not touched"
    );

    // Full rollback of the project: both services changed, both back.
    sh(p, "git checkout -q -- . && git clean -qfd");
    std::fs::write(p.join("web/index.html"), "web v3\n").unwrap();
    std::fs::write(p.join("api/index.html"), "api v3\n").unwrap();
    sh(p, "git commit -qam v3");
    c.run(p, &project, "up -d --build");
    wait_for(web, "web v3");
    wait_for(api, "api v3");
    let out = c.backout(p, &["rollback", "--yes", "--to", "cp-1"]);
    assert!(out.contains("recovery-time objective: 2m (met)"), "{out}");
    assert_eq!(get(web).as_deref(), Some("web v1"));
    assert_eq!(get(api).as_deref(), Some("api v1"));
}
