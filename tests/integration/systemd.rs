//! systemd services for real: a container of the `backout-test-systemd` image
//! (a minimal Debian bookworm, debootstrapped and imported by ./scripts/test,
//! with systemd as PID 1) runs this build of backout (bind-mounted; the image
//! has the same glibc) against a unit serving `backout demo-app`: rollback
//! (restore the config, `systemctl restart`, wait for the readiness probe),
//! degraded mode (`systemctl stop`), and undo and redo bringing the unit back
//! to its state from before each (`systemctl is-active` recorded first).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::bin;
use crate::resume::sh;

const IMAGE: &str = "backout-test-systemd:latest";

const UNIT: &str = "[Unit]
Description=backout test quote service
[Service]
ExecStart=/usr/local/bin/backout demo-app --config /srv/app/live/app.toml --port 8000 --host 0.0.0.0
";

const PLAN: &str = r#"
[plan]
name = "systemd"
[capture]
paths = ["live"]

[[service]]
name = "quotes"
kind = "systemd"
unit = "quotes.service"
ready = "health"
ready-timeout = "10s"

[[probe]]
name = "health"
http = { url = "http://127.0.0.1:8000/health", status = 200 }
every = "100ms"
timeout = "1s"

[rollback]
steps = [
  { resource = ["live"] },
  { service = "quotes", action = "restart" },
  { wait = "health", timeout = "10s" },
]

[[phase]]
name = "deploy"
rollback = [
  { name = "C: degraded", default = true, steps = [{ degraded = ["quotes"] }] },
]
"#;

/// A running container with systemd as PID 1, removed however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

impl Container {
    fn start() -> Container {
        let name = format!("backout-systemd-test-{}", std::process::id());
        let bin = bin();
        // systemd needs the cgroup hierarchies (read-only is enough on cgroup v1,
        // where each hierarchy mounted below stays writable), SYS_ADMIN to mount
        // its file systems, and tmpfs for /run and /tmp. No --privileged: it
        // asks for capabilities this machine's docker may not grant.
        let out = Command::new("docker")
            .args([
                "run",
                "-d",
                "--name",
                &name,
                "--cap-add",
                "SYS_ADMIN",
                "--security-opt",
                "seccomp=unconfined",
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:ro",
                "--tmpfs",
                "/run",
                "--tmpfs",
                "/run/lock",
                "--tmpfs",
                "/tmp",
                "-p",
                "127.0.0.1::8000",
                "-v",
                &format!("{}:/usr/local/bin/backout:ro", bin.display()),
                IMAGE,
                "/sbin/init",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker run {IMAGE}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Container(name);
        // Until systemd answers on its bus, systemctl fails: poll.
        let mut state = String::new();
        for _ in 0..300 {
            state = c
                .exec("systemctl is-system-running --wait 2>&1 || true")
                .trim()
                .to_string();
            if matches!(state.as_str(), "running" | "degraded") {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "systemd did not come up in the container: {state}\n{}",
            sh(Path::new("/"), &format!("docker logs {} 2>&1 | tail -20", c.0))
        )
    }

    /// Runs a bash script in the container; its stdout.
    fn exec(&self, script: &str) -> String {
        let out = Command::new("docker")
            .args(["exec", &self.0, "bash", "-ec", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs backout in /srv/app; its stdout (it must succeed).
    fn backout(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(["exec", "-w", "/srv/app", "-e", "NO_COLOR=1", &self.0, "backout"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "backout {args:?} in the container: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.backout(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// The host port docker published for the service's 8000.
    fn port(&self) -> u16 {
        let out = sh(Path::new("/"), &format!("docker port {} 8000/tcp", self.0));
        out.lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no published port: {out}"))
    }

    fn active(&self) -> String {
        self.exec("systemctl is-active quotes.service || true")
            .trim()
            .to_string()
    }

    fn main_pid(&self) -> String {
        self.exec("systemctl show -p MainPID --value quotes.service")
            .trim()
            .to_string()
    }
}

fn version(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /api/version HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .next()
        .is_some_and(|l| l.contains(" 200"))
        .then(|| body.rsplit("\r\n\r\n").next().unwrap_or("").trim().to_string())
}

fn wait_version(port: u16, want: &str) {
    for _ in 0..100 {
        if version(port).as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the unit never served {want:?} (last: {:?})", version(port));
}

fn config(version: &str) -> String {
    format!("version = \"{version}\"\nerror-rate = 0\nlatency-ms = 0\nmemory-mb = 0\n")
}

fn degraded(c: &Container) -> Option<serde_json::Value> {
    c.json(&["status"]).get("degraded").map(|d| d["services"].clone())
}

#[test]
fn a_systemd_unit_is_restarted_stopped_waited_for_and_brought_back_by_undo_and_redo() {
    let image = sh(
        Path::new("/"),
        &format!("docker image inspect -f ok {IMAGE} 2>&1 || true"),
    );
    assert!(
        image.trim() == "ok",
        "the {IMAGE} image is missing: ./scripts/test builds it ({image})"
    );
    let c = Container::start();
    let port = c.port();
    c.exec(&format!(
        "mkdir -p /srv/app/live
         cat > /srv/app/backout.toml <<'EOF'\n{PLAN}EOF
         cat > /srv/app/live/app.toml <<'EOF'\n{}EOF
         cat > /etc/systemd/system/quotes.service <<'EOF'\n{UNIT}EOF
         systemctl daemon-reload
         systemctl start quotes.service",
        config("1.0.0")
    ));
    wait_version(port, "1.0.0");
    c.backout(&["checkpoint"]);

    // The bad deploy, by hand: new config, restart.
    c.exec(&format!(
        "cat > /srv/app/live/app.toml <<'EOF'\n{}EOF
         systemctl restart quotes.service",
        config("1.1.0")
    ));
    wait_version(port, "1.1.0");
    let deployed = c.main_pid();

    let j = c.json(&["rollback", "--yes"]);
    let steps = j["rollback"]["steps"].as_array().unwrap();
    assert_eq!(steps[1]["command"], "systemctl restart quotes.service", "{j}");
    assert!(steps[2]["output"].as_str().unwrap().contains("health healthy"), "{j}");
    assert_eq!(version(port).as_deref(), Some("1.0.0"), "waited for: serving at once");
    let rolled_back = c.main_pid();
    assert_ne!(rolled_back, deployed, "systemd restarted the unit");

    // Undo: the config back, the unit restarted onto it and waited for.
    let j = c.json(&["undo"]);
    assert_eq!(
        crate::step_names(&j),
        ["put back cp-2", "restart quotes", "wait for health"],
        "{j}"
    );
    assert_eq!(version(port).as_deref(), Some("1.1.0"));
    assert_ne!(c.main_pid(), rolled_back);
    c.backout(&["redo"]);
    assert_eq!(version(port).as_deref(), Some("1.0.0"));

    // Degraded mode: `systemctl stop`; undo starts the unit again and clears
    // the record; redo stops it again.
    c.backout(&["rollback", "--phase", "deploy", "--yes"]);
    assert_eq!(c.active(), "inactive");
    assert_eq!(degraded(&c), Some(serde_json::json!(["quotes"])));
    c.backout(&["undo"]);
    assert_eq!(c.active(), "active");
    assert_eq!(version(port).as_deref(), Some("1.0.0"));
    assert_eq!(degraded(&c), None);
    c.backout(&["redo"]);
    assert_eq!(c.active(), "inactive");

    // Stopped before a rollback that restarts it: its undo stops it again.
    c.backout(&["rollback", "--to", "cp-1", "--yes"]);
    assert_eq!(c.active(), "active");
    assert_eq!(degraded(&c), None, "the rollback brought quotes back up");
    let j = c.json(&["undo"]);
    assert_eq!(crate::step_names(&j)[1..], ["stop quotes"], "{j}");
    assert_eq!(c.active(), "inactive");
    assert_eq!(degraded(&c), Some(serde_json::json!(["quotes"])));
}
