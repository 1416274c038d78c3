//! The secrets canary: one secret planted everywhere it can enter (headers, URL
//! userinfo and query, a service's environment, command output in plain,
//! URL-encoded and base64 forms, error messages, an HTTP response body, an
//! installed package's metadata, a webhook URL); every sink is then searched
//! for it: terminal output of every command (with debug logs), every file under
//! `.backout/` (the operation log, reports and their diagnostics, service
//! files), and every body a real local webhook receiver got, in both payload
//! formats, for every notification event, after checks of every kind ran.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::{Project, closed_port};

const SECRET: &str = "c@nary:S3cr/t+9f2";

fn forms() -> Vec<String> {
    let b64 = {
        let out = std::process::Command::new("sh")
            .args(["-c", "printf %s \"$0\" | base64", SECRET])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_end_matches('=')
            .to_string()
    };
    let url: String = SECRET
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![SECRET.to_string(), url, b64]
}

/// One request the local receiver got.
#[derive(Debug, Clone)]
struct Request {
    line: String,
    body: String,
}

/// A local HTTP server on 127.0.0.1: answers `GET /json` with a JSON body that
/// holds the secret (for an `http` check to quote back), anything else with
/// 200 and no body; keeps every request.
fn receiver() -> (u16, Arc<Mutex<Vec<Request>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let answer = if first.starts_with("GET /json") {
                serde_json::json!({ "status": SECRET }).to_string()
            } else {
                String::new()
            };
            g.lock().unwrap().push(Request {
                line: first.trim().to_string(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (port, got)
}

#[test]
fn a_planted_secret_reaches_no_sink_in_any_form() {
    let (hook_port, received) = receiver();
    let app_port = closed_port();
    // In URLs a password is written URL-encoded, as users do.
    let p = Project::new()
        .env("CANARY", SECRET)
        .env("CANARY_URL", &forms()[1])
        .env("BACKOUT_LOG", "debug")
        // Where pip finds the package whose version is the secret.
        .env("PYTHONPATH", "site");
    p.git(&["init", "-q"]);
    p.file("app.toml", "version = \"1.0.0\"\n");
    p.file(".gitignore", ".backout/\n");
    p.file("creds.txt", &format!("token = {SECRET}\n"));
    p.file(
        "site/canarypkg-1.0.dist-info/METADATA",
        &format!("Metadata-Version: 2.1\nName: canarypkg\nVersion: {SECRET}\n"),
    );
    let echo_all = r#"["sh", "-c", "echo plain=$0; printf %s \"$0\" | base64; python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=\"\"))' \"$0\"; echo token=$TOKEN; exit 3", "${CANARY}"]"#;
    // The rollback's first step fails loudly the first time only, so one
    // incident's rollback fails and the next one's succeeds and verifies.
    let echo_once = r#"["sh", "-c", "echo plain=$0; printf %s \"$0\" | base64; if [ -e fail-once ]; then rm fail-once; exit 3; fi", "${CANARY}"]"#;
    p.file(
        "backout.toml",
        &format!(
            r#"[plan]
name = "canary"
rto = "1m"
[capture]
git = true
[baseline]
for = "300ms"
[[service]]
name = "app"
start = ["{bin}", "demo-app", "--config", "app.toml", "--port", "{app_port}"]
env = {{ TOKEN = "${{CANARY}}" }}
ready = "api"
[[probe]]
name = "api"
every = "100ms"
timeout = "300ms"
http = {{ url = "http://user:${{CANARY_URL}}@127.0.0.1:{app_port}/health?key=${{CANARY_URL}}", headers = {{ Authorization = "Bearer ${{CANARY}}", Cookie = "s=${{CANARY}}" }} }}
[[probe]]
name = "leaky"
every = "1s"
timeout = "2s"
command = {{ run = ["sh", "-c", "echo leaked $0; exit 1", "${{CANARY}}"] }}
[[rule]]
when = "api.consecutive_failures >= 2"
[[review]]
name = "at-once"
at = "0s"
expect = ["api.up"]
[rollback]
steps = [{{ run = {echo_once}, name = "echo" }}, {{ service = "app", action = "restart" }}]
[verify]
checks = [
  {{ run = {echo_all} }},
  {{ http = "http://u:${{CANARY_URL}}@127.0.0.1:{closed}/" }},
  {{ http = "http://127.0.0.1:{hook_port}/json?k=${{CANARY_URL}}", json = {{ status = "ok" }} }},
  {{ file = "creds.txt", contains = "no such line" }},
  {{ package = "canarypkg", version = "1.0" }},
  {{ probe = "leaky" }},
]
[diagnostics]
commands = [{echo_all}]
[[notify]]
webhook = "http://127.0.0.1:{hook_port}/hook/${{CANARY_URL}}"
format = "json"
[[notify]]
webhook = "http://127.0.0.1:{hook_port}/slack/${{CANARY_URL}}"
format = "slack"
"#,
            bin = crate::bin().display(),
            closed = closed_port(),
        ),
    );
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "v1"]);

    let mut terminal = String::new();
    let mut run = |args: &[&str]| {
        let r = p.run(args);
        terminal.push_str(&r.stdout());
        terminal.push_str(&r.stderr());
        r
    };
    run(&["check"]);
    run(&["check", "--json"]);
    run(&["checkpoint", "-v"]);
    run(&["baseline", "-v"]);
    // The service is down (never started): the watch decides to roll back; the
    // rollback's first step fails loudly with the secret in its output.
    p.file("fail-once", "");
    let w = run(&["watch", "--auto-rollback", "--for", "30s", "-vv"]);
    assert_ne!(w.code(), 0, "the planted rollback step fails");
    // Again: this time the rollback succeeds, and every check runs after it.
    run(&["watch", "--auto-rollback", "--for", "30s", "-vv"]);
    run(&["watch", "--json", "--for", "1s"]);
    run(&["verify", "-v"]);
    run(&["verify", "--json"]);
    run(&["log", "--steps"]);
    run(&["log", "--json", "--steps"]);
    run(&["report"]);
    run(&["report", "--format", "html"]);
    run(&["report", "--json"]);
    run(&["show", "inc-1"]);
    run(&["show", "inc-2"]);
    run(&["show", "op-5"]);
    run(&["runbook"]);
    run(&["rollback", "--dry-run"]);
    let _ = std::process::Command::new("sh")
        .args(["-c", "kill $(cut -d' ' -f1 .backout/run/app.pid) 2>/dev/null"])
        .current_dir(p.path())
        .status();

    // The secret did flow: masks are there, and the commands really echoed it.
    assert!(terminal.contains("********"), "nothing was masked?\n{terminal}");
    assert!(
        terminal.contains("plain=********"),
        "the planted command output is missing:\n{terminal}"
    );
    let requests = received.lock().unwrap().clone();
    let hooks: Vec<&Request> = requests.iter().filter(|r| r.line.starts_with("POST")).collect();
    let json_events: Vec<serde_json::Value> = hooks
        .iter()
        .filter(|r| r.line.starts_with("POST /hook/"))
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let kinds: std::collections::BTreeSet<&str> = json_events.iter().filter_map(|e| e["event"].as_str()).collect();
    for kind in [
        "trigger",
        "rollback_start",
        "rollback_end",
        "verification",
        "review_failed",
    ] {
        assert!(kinds.contains(kind), "no {kind} event reached the webhook: {kinds:?}");
    }
    let slack = hooks.iter().filter(|r| r.line.starts_with("POST /slack/")).count();
    assert_eq!(slack, json_events.len(), "both webhooks get every event");
    // Every kind of check ran after the second rollback, each with the secret
    // in what it saw (masked now), and the webhook was told.
    let verification = json_events
        .iter()
        .find(|e| e["event"] == "verification")
        .unwrap()
        .to_string();
    for seen in [
        "plain=********",                                  // run: the command's output
        r#"JSON status is \"********\", expected \"ok\""#, // http: the response body
        "creds.txt does not contain",                      // file: its evidence quotes only the plan's words
        "canarypkg ******** installed, expected 1.0",      // package: pip's metadata
        "leaked ********",                                 // probe: a command probe's output
    ] {
        assert!(verification.contains(seen), "{seen:?} is not in {verification}");
    }

    let mut files = Vec::new();
    collect(&p.path().join(".backout"), &mut files);
    for form in forms() {
        assert!(!terminal.contains(&form), "{form:?} reached the terminal:\n{terminal}");
        // (A webhook's own URL is the receiver's business: only bodies are checked.)
        for r in &hooks {
            assert!(!r.body.contains(&form), "{form:?} reached a webhook body:\n{}", r.body);
        }
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                "{form:?} found in {}",
                f.display()
            );
        }
    }
}

fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}
