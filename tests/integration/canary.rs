//! The secrets canary: one secret planted everywhere it can enter (headers, URL
//! userinfo and query, a service's environment, command output in plain,
//! URL-encoded and base64 forms, error messages, a webhook URL); every sink is
//! then searched for it: terminal output of every command (with debug logs),
//! the operation log, the reports, and what the webhook received.

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

fn receiver() -> (u16, Arc<Mutex<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(String::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut r = BufReader::new(conn.try_clone().unwrap());
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
            g.lock().unwrap().push_str(&String::from_utf8_lossy(&body));
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
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
        .env("BACKOUT_LOG", "debug");
    p.git(&["init", "-q"]);
    p.file("app.toml", "version = \"1.0.0\"\n");
    p.file(".gitignore", ".backout/\n");
    let echo_all = r#"["sh", "-c", "echo plain=$0; printf %s \"$0\" | base64; python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=\"\"))' \"$0\"; echo token=$TOKEN; exit 3", "${CANARY}"]"#;
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
[[rule]]
when = "api.consecutive_failures >= 2"
[rollback]
steps = [{{ run = {echo_all}, name = "echo" }}, {{ service = "app", action = "restart" }}]
[verify]
checks = [{{ run = {echo_all} }}, {{ http = "http://u:${{CANARY_URL}}@127.0.0.1:{closed}/" }}]
[diagnostics]
commands = [{echo_all}]
[[notify]]
webhook = "http://127.0.0.1:{hook_port}/hook/${{CANARY_URL}}"
format = "json"
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
    let w = run(&["watch", "--auto-rollback", "--for", "30s", "-vv"]);
    assert_ne!(w.code(), 0, "the planted rollback step fails");
    run(&["watch", "--json", "--for", "1s"]);
    run(&["verify", "-v"]);
    run(&["verify", "--json"]);
    run(&["log", "--steps"]);
    run(&["log", "--json", "--steps"]);
    run(&["report"]);
    run(&["report", "--format", "html"]);
    run(&["report", "--json"]);
    run(&["show", "inc-1"]);
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
    let hook = received.lock().unwrap().clone();
    assert!(
        hook.contains("\"event\":\"trigger\""),
        "the webhook got nothing: {hook}"
    );

    let mut files = Vec::new();
    collect(&p.path().join(".backout"), &mut files);
    for form in forms() {
        assert!(!terminal.contains(&form), "{form:?} reached the terminal:\n{terminal}");
        // (The webhook's own URL is the receiver's business: only bodies are checked.)
        assert!(!hook.contains(&form), "{form:?} reached the webhook body:\n{hook}");
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
