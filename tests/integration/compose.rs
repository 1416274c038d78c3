//! Compose services for real: a two-service compose project built locally from
//! the `backout-test-busybox` image (FROM scratch, built by ./scripts/test; no
//! registry is reachable). One service is rolled back while the other keeps
//! serving, one is stopped for degraded mode, each undone and redone (services
//! back to their state from before, rebuilt onto the restored code), then the
//! whole project is rolled back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::closed_port;
use crate::resume::{backout, sh};

/// Takes the compose project down (containers and the images it built) however
/// the test ends.
struct Down(PathBuf, String);

impl Drop for Down {
    fn drop(&mut self) {
        let prog = if std::process::Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            "docker compose"
        } else {
            "docker-compose"
        };
        let _ = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "{prog} -p {0} down --rmi local -v -t 1; docker image prune -f --filter label=backout.test.project={0}",
                    self.1
                ),
            ])
            .current_dir(&self.0)
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

fn container(dir: &Path, project: &str, svc: &str) -> String {
    let prog = if sh(dir, "docker compose version >/dev/null 2>&1 && echo plugin || true").contains("plugin") {
        "docker compose"
    } else {
        "docker-compose"
    };
    sh(dir, &format!("{prog} -p {project} ps -q {svc}")).trim().to_string()
}

/// The services degraded mode stopped, as `backout status` reports them.
fn degraded(dir: &Path) -> Option<serde_json::Value> {
    let j: serde_json::Value = serde_json::from_str(&ok(dir, &["status", "--json"])).unwrap();
    j.get("degraded").map(|d| d["services"].clone())
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = backout(dir, args).output().unwrap();
    assert!(
        out.status.success(),
        "backout {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn compose_roll_back_one_service_degrade_one_then_the_whole_project() {
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
    let project = format!("backouttest{}", std::process::id());
    let _down = Down(p.to_path_buf(), project.clone());
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
    sh(
        p,
        &format!(
            "(docker compose version >/dev/null 2>&1 && docker compose -p {project} up -d --build -q 2>&1) || docker-compose -p {project} up -d --build 2>&1"
        ),
    );
    wait_for(web, "web v1");
    wait_for(api, "api v1");
    ok(p, &["checkpoint"]);

    // Deploy web v2.
    std::fs::write(p.join("web/index.html"), "web v2\n").unwrap();
    sh(p, "git commit -qam 'web v2'");
    ok(
        p,
        &["rollback", "--phase", "web-v2", "--option", "C: degraded", "--yes"],
    );
    assert_eq!(get(web), None, "degraded: web is stopped");
    assert_eq!(get(api).as_deref(), Some("api v1"), "degraded: api keeps serving");
    assert_eq!(degraded(p), Some(serde_json::json!(["web"])));
    // Undo starts web again (it ran before the rollback) and clears degraded
    // mode; redo stops it again. api is never touched.
    let api_id = container(p, &project, "api");
    let undo = ok(p, &["undo", "--json"]);
    assert!(undo.contains("\"restart web\""), "{undo}");
    // v2 was committed but never built: web comes back on the image it ran.
    wait_for(web, "web v1");
    assert_eq!(degraded(p), None);
    ok(p, &["redo"]);
    assert_eq!(get(web), None, "redo: web is stopped again");
    assert_eq!(degraded(p), Some(serde_json::json!(["web"])));
    assert_eq!(container(p, &project, "api"), api_id, "api's container was not touched");
    sh(p, "git reset -q --hard HEAD");

    // Roll back web alone while api is polled the whole time.
    let api_before = container(p, &project, "api");
    sh(
        p,
        &format!(
            "(docker compose version >/dev/null 2>&1 && docker compose -p {project} up -d --build web 2>&1) || docker-compose -p {project} up -d --build web 2>&1"
        ),
    );
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
    let out = ok(p, &["rollback", "--phase", "web-v2", "--yes", "--json"]);
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
        container(p, &project, "api"),
        api_before,
        "api's container was not touched"
    );
    assert!(polls.load(Ordering::Relaxed) > 5);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "api failed while web rolled back");
    // The rollback restored web/ and rebuilt web: undo puts web/ back and
    // rebuilds it onto that code (a restart would keep the rolled-back image),
    // waiting for its probe; redo rebuilds it onto the rolled-back code again.
    let j: serde_json::Value = serde_json::from_str(&ok(p, &["undo", "--json"])).unwrap();
    let names: Vec<&str> = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[1..], ["rebuild web", "wait for web"], "{j}");
    assert_eq!(get(web).as_deref(), Some("web v2"), "web runs the restored code");
    ok(p, &["redo"]);
    assert_eq!(get(web).as_deref(), Some("web v1"));
    assert_eq!(
        container(p, &project, "api"),
        api_before,
        "api's container was not touched"
    );

    // Full rollback of the project: both services changed, both back.
    sh(p, "git checkout -q -- . && git clean -qfd");
    std::fs::write(p.join("web/index.html"), "web v3\n").unwrap();
    std::fs::write(p.join("api/index.html"), "api v3\n").unwrap();
    sh(p, "git commit -qam v3");
    sh(
        p,
        &format!(
            "(docker compose version >/dev/null 2>&1 && docker compose -p {project} up -d --build 2>&1) || docker-compose -p {project} up -d --build 2>&1"
        ),
    );
    wait_for(web, "web v3");
    wait_for(api, "api v3");
    let out = ok(p, &["rollback", "--yes", "--to", "cp-1"]);
    assert!(out.contains("RTO 2m: met"), "{out}");
    assert_eq!(get(web).as_deref(), Some("web v1"));
    assert_eq!(get(api).as_deref(), Some("api v1"));
}
