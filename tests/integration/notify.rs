//! Webhook notifications against a local HTTP receiver, through the library.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use backout::context::{Clock, Env};
use backout::incident::{self, Trigger};
use backout::plan::Plan;
use backout::redact::Redactor;
use backout::workspace::Workspace;

/// A receiver answering each request with the next status from `statuses`
/// (the last one repeats); keeps every body. `hang` accepts and never answers.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

fn receiver(statuses: Vec<u16>, hang: bool) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let b = bodies.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { break };
            if hang {
                held.push(conn);
                continue;
            }
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            b.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(200);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    Receiver { port, bodies }
}

fn project(notify: &str) -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(p)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    git(&["init", "-q"]);
    std::fs::write(p.join("a.txt"), "a\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "a"]);
    let plan = format!(
        "[plan]\nname = \"n\"\nrto = \"1m\"\n[capture]\ngit = true\n[rollback]\nsteps = [{{ git = \"revert\" }}]\n{notify}"
    );
    std::fs::write(p.join("backout.toml"), &plan).unwrap();
    let env = Env::from_pairs([("HOOK_TOKEN", "tok-s3cret")]);
    let plan = Plan::load(&p.join("backout.toml"), &env).unwrap();
    let ws = Workspace::open(plan, Clock::system(), Redactor::new()).unwrap();
    (dir, ws)
}

fn verdict() -> backout::watch::Verdict {
    backout::watch::Verdict {
        outcome: backout::watch::Outcome::Rollback,
        rule: "errors".into(),
        when: "api.error_rate > 5%".into(),
        probe: "api".into(),
        value: Some(0.5),
        threshold: Some(0.05),
        baseline: None,
        window: "the latest 3 samples".into(),
        samples: 3,
        failed_samples: 2,
        first_sample_at: None,
        last_sample_at: None,
        window_samples: Some(3),
        window_full: true,
        test: None,
        explanation: "errors: ROLLBACK: api.error_rate is 50% > 5%".into(),
    }
}

async fn respond(ws: &Workspace, root: &Path) -> backout::report::Incident {
    let op = ws.oplog.begin("watch", &serde_json::json!({}), ws.now_ms()).unwrap();
    let cp = backout::resource::checkpoint(ws, op, None, None).unwrap();
    std::fs::write(root.join("a.txt"), "b\n").unwrap();
    let t = Trigger {
        watch_op: op,
        verdict: verdict(),
        verdict_at: ws.now_ms(),
        first_bad_at: None,
        deploy: None,
        watch_started_at: None,
    };
    incident::respond(ws, t, &cp, |_| {}).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_json_webhooks_get_every_event_with_retries() {
    let slack = receiver(vec![500, 200], false);
    let json = receiver(vec![200], false);
    let (dir, ws) = project(&format!(
        "[[notify]]\nwebhook = \"http://127.0.0.1:{}/hook?t=${{HOOK_TOKEN}}\"\nformat = \"slack\"\n[[notify]]\nwebhook = \"http://127.0.0.1:{}/${{HOOK_TOKEN}}\"\nformat = \"json\"\nmin-severity = \"critical\"\n",
        slack.port, json.port
    ));
    let incident = respond(&ws, dir.path()).await;
    assert!(incident.rollback.ok);
    let slack_bodies = slack.bodies.lock().unwrap().clone();
    // In order: trigger (a 500, then retried), rollback start, rollback end, verification.
    assert_eq!(slack_bodies.len(), 5, "{slack_bodies:#?}");
    assert_eq!(slack_bodies[0], slack_bodies[1], "a retry resends the same payload");
    assert!(
        slack_bodies[0].contains("\"text\":\":rotating_light: *backout · n* (inc-1): errors: ROLLBACK"),
        "{}",
        slack_bodies[0]
    );
    assert!(slack_bodies[2].contains("rolling back to cp-1"), "{}", slack_bodies[2]);
    assert!(
        slack_bodies[3].contains("rolled back to cp-1 in"),
        "{}",
        slack_bodies[3]
    );
    assert!(slack_bodies[4].contains("no [verify] checks"), "{}", slack_bodies[4]);
    // The JSON hook only wants critical events: trigger and rollback start.
    let json_bodies = json.bodies.lock().unwrap().clone();
    let events: Vec<String> = json_bodies
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(events, ["trigger", "rollback_start"]);
    // Deliveries are recorded, and the webhook secret is not.
    let deliveries = ws.oplog.events_of_kind("notification").unwrap();
    assert_eq!(deliveries.len(), 6);
    assert!(deliveries.iter().all(|d| d.detail["ok"] == true));
    assert!(deliveries.iter().any(|d| d.detail["attempts"] == 2));
    let text = serde_json::to_string(&deliveries.iter().map(|d| &d.detail).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("tok-s3cret"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_hanging_webhook_never_blocks_or_fails_the_rollback() {
    let dead = receiver(vec![503], false);
    let hung = receiver(vec![], true);
    let (dir, ws) = project(&format!(
        "[[notify]]\nwebhook = \"http://127.0.0.1:{}/\"\n[[notify]]\nwebhook = \"http://127.0.0.1:{}/\"\n",
        dead.port, hung.port
    ));
    let incident = respond(&ws, dir.path()).await;
    assert!(incident.rollback.ok, "the rollback itself succeeded");
    // The reverted file is back: the webhooks did not stop the steps.
    assert!(incident.rollback.steps.iter().all(|s| s.ok));
    // Every delivery is recorded as failed: the 503 one after 3 attempts, the
    // hanging one abandoned when the response ended.
    let deliveries = ws.oplog.events_of_kind("notification").unwrap();
    assert_eq!(deliveries.len(), 8, "{deliveries:#?}");
    assert!(deliveries.iter().all(|d| d.detail["ok"] == false), "{deliveries:#?}");
    let dead_url = format!("http://127.0.0.1:{}/", dead.port);
    let dead_ones: Vec<_> = deliveries
        .iter()
        .filter(|d| d.detail["webhook"] == dead_url.as_str())
        .collect();
    assert_eq!(dead_ones.len(), 4);
    assert!(
        dead_ones
            .iter()
            .all(|d| d.detail["attempts"] == 3 && d.detail["status"] == 503),
        "{dead_ones:#?}"
    );
    assert!(
        deliveries
            .iter()
            .any(|d| d.detail["error"].as_str().unwrap_or("").contains("abandoned"))
    );
}

#[test]
fn a_failed_review_is_told_to_the_webhook() {
    let hook = receiver(vec![200], false);
    let p = crate::Project::new();
    p.file(
        "backout.toml",
        &format!(
            "[plan]\nname = \"r\"\nrto = \"1m\"\n[[probe]]\nname = \"api\"\nevery = \"100ms\"\ntimeout = \"200ms\"\nhttp = {{ url = \"http://127.0.0.1:{}/\" }}\n[[review]]\nname = \"first look\"\nat = \"500ms\"\nexpect = [\"api.up\"]\nthen = \"investigate\"\n[[notify]]\nwebhook = \"http://127.0.0.1:{}/\"\nformat = \"json\"\non = [\"review_failed\"]\n",
            crate::closed_port(),
            hook.port
        ),
    );
    p.run(&["watch", "--for", "2s"]);
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let v: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(v["event"], "review_failed");
    assert_eq!(v["severity"], "warning");
    assert_eq!(v["message"], "review first look failed: api.up");
}
