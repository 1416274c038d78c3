//! Tests that try to break the HTTP probe with hostile targets: connections
//! reset, garbage instead of HTTP, redirect loops, endless bodies, a TLS server
//! with a certificate nobody trusts. Each must give a failed (or bounded)
//! sample with a reason, never a hang or a crash.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::http::{BODY_LIMIT, sample};
use crate::plan::{HttpProbe, StatusSpec, Text};

fn probe(url: String) -> HttpProbe {
    HttpProbe {
        url: Text::plain(url),
        method: "GET".into(),
        status: StatusSpec::Class(2),
        headers: vec![],
        body: None,
        json: vec![],
        body_match: None,
        number: None,
    }
}

/// Serves every connection with `respond`, forever.
async fn serve<F, Fut>(respond: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = std::sync::Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                // Read the request head before answering.
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                respond(c).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_reset_connection_is_a_failed_sample() {
    let url = serve(|c| async move {
        // Linger 0: close sends RST instead of FIN.
        let _ = c.set_zero_linger();
        drop(c);
    })
    .await;
    let s = sample(&probe(url), Duration::from_secs(5)).await;
    assert!(!s.ok);
    assert!(s.error.is_some(), "{s:?}");
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_failed_sample() {
    let url = serve(|mut c| async move {
        let _ = c.write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n").await;
    })
    .await;
    let s = sample(&probe(url), Duration::from_secs(5)).await;
    assert!(!s.ok);
    assert!(s.error.as_deref().unwrap().contains("request failed"), "{s:?}");
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_limit() {
    let url = serve(|mut c| async move {
        let _ = c
            .write_all(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")
            .await;
    })
    .await;
    let s = sample(&probe(url), Duration::from_secs(5)).await;
    assert!(!s.ok);
    assert!(s.error.as_deref().unwrap().contains("too many redirects"), "{s:?}");
}

#[tokio::test]
async fn an_endless_body_is_read_only_up_to_the_limit() {
    let url = serve(|mut c| async move {
        let _ = c
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            .await;
        let chunk = vec![b'x'; 64 * 1024];
        // Without a length the body ends only when the connection does: never.
        while c.write_all(&chunk).await.is_ok() {}
    })
    .await;
    let s = sample(&probe(url), Duration::from_secs(10)).await;
    assert_eq!(s.size, Some(BODY_LIMIT as u64), "{s:?}");
    assert!(s.ok, "a 200 with no JSON or match to check is healthy: {s:?}");
}

#[tokio::test]
async fn a_server_that_answers_the_head_and_stalls_times_out() {
    let url = serve(|mut c| async move {
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart").await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let s = sample(&probe(url), Duration::from_millis(300)).await;
    assert!(!s.ok);
    assert!(s.error.as_deref().unwrap().contains("timed out"), "{s:?}");
}

/// A real TLS server (`openssl s_server`) with a self-signed certificate: the
/// sample fails with a certificate error, promptly.
#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_failure_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed by scripts/test");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    // A free port: bind, note it, release it for s_server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until it listens (readiness, not a timing assertion).
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = sample(&probe(format!("https://127.0.0.1:{port}/")), Duration::from_secs(5)).await;
    let _ = server.kill().await;
    assert!(!s.ok);
    let e = s.error.unwrap();
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
}
