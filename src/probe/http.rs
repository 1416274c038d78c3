//! The HTTP probe: status, JSON fields and body match, with latency and size,
//! and a number read out of the body (`number`) as the probe's value.
//! Bodies are read up to [`BODY_LIMIT`] so a huge response cannot exhaust memory.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::oplog::SampleRow;
use crate::plan::HttpProbe;

pub const BODY_LIMIT: usize = 1024 * 1024;

/// One client for every probe: connection reuse keeps probes cheap.
pub fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::limited(5))
                .user_agent(concat!("backout/", env!("CARGO_PKG_VERSION")))
        };
        // A machine without CA certificates (a minimal container) makes the
        // platform verifier fail to build: plain http probes must work there
        // all the same, and https ones fail on the certificate, saying so.
        builder().build().unwrap_or_else(|e| {
            tracing::warn!("no system CA certificates ({e}); https probes will fail to verify");
            builder()
                .tls_certs_only([])
                .build()
                .expect("a client without trusted roots is static and valid")
        })
    })
}

/// Sends the request and judges the response.
pub async fn sample(h: &HttpProbe, timeout: Duration) -> SampleRow {
    let method = reqwest::Method::from_bytes(h.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut req = client().request(method, &h.url.value).timeout(timeout);
    for (k, v) in &h.headers {
        req = req.header(k, &v.value);
    }
    if let Some(body) = &h.body {
        req = req.body(body.value.clone());
    }
    let started = Instant::now();
    let mut row = SampleRow::default();
    let result = tokio::time::timeout(timeout, async {
        let mut resp = req.send().await?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = resp.chunk().await? {
            let room = BODY_LIMIT - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                truncated = true;
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, body, truncated))
    })
    .await;
    row.latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    match result {
        Err(_) => {
            row.error = Some(format!(
                "timed out: no complete response within {}",
                crate::plan::units::format_duration(timeout)
            ));
        }
        Ok(Err(e)) => {
            row.error = Some(describe(&e));
        }
        Ok(Ok((status, body, truncated))) => {
            row.status = Some(status);
            row.size = Some(body.len() as u64);
            row.error = judge(h, status, &body, truncated);
            if let Some(re) = &h.number {
                row.value = super::command::parse_number(re, &String::from_utf8_lossy(&body));
                if row.error.is_none() && row.value.is_none() {
                    row.error = Some(format!("no number matching /{}/ in the body", re.as_str()));
                }
            }
            row.ok = row.error.is_none();
        }
    }
    row
}

/// Why the response is unhealthy, or `None` when it is healthy.
pub fn judge(h: &HttpProbe, status: u16, body: &[u8], truncated: bool) -> Option<String> {
    if !h.status.accepts(status) {
        return Some(format!("status {status}, expected {}", h.status));
    }
    if !h.json.is_empty() {
        if truncated {
            return Some(format!("body larger than {BODY_LIMIT} bytes; cannot check JSON"));
        }
        let v: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Some(format!("body is not JSON: {e}")),
        };
        for (path, want) in &h.json {
            let got = path.split('.').try_fold(&v, |v, k| v.get(k));
            if !json_matches(got, want) {
                let got = got.map_or("nothing".to_string(), |g| g.to_string());
                return Some(format!("JSON {path} is {got}, expected {want}"));
            }
        }
    }
    if let Some(re) = &h.body_match
        && !re.is_match(&String::from_utf8_lossy(body))
    {
        return Some(format!("body does not match /{}/", re.as_str()));
    }
    None
}

fn json_matches(got: Option<&serde_json::Value>, want: &serde_json::Value) -> bool {
    match (got, want) {
        (Some(g), w) if g == w => true,
        // TOML integers and JSON floats compare by value.
        (Some(serde_json::Value::Number(g)), serde_json::Value::Number(w)) => g.as_f64() == w.as_f64(),
        _ => false,
    }
}

pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_redirect() {
        "too many redirects".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{StatusSpec, Text};

    fn probe() -> HttpProbe {
        HttpProbe {
            url: Text::plain("http://127.0.0.1:1/"),
            method: "GET".into(),
            status: StatusSpec::Codes(vec![200]),
            headers: vec![],
            body: None,
            json: vec![
                ("status".into(), serde_json::json!("healthy")),
                ("db.up".into(), serde_json::json!(1)),
            ],
            body_match: Some(regex::Regex::new("healthy").unwrap()),
            number: None,
        }
    }

    #[test]
    fn judges_status_json_and_body() {
        let h = probe();
        assert_eq!(judge(&h, 200, br#"{"status":"healthy","db":{"up":1.0}}"#, false), None);
        assert!(judge(&h, 500, b"", false).unwrap().contains("status 500"));
        assert!(judge(&h, 200, b"<html>", false).unwrap().contains("not JSON"));
        assert!(
            judge(&h, 200, br#"{"status":"degraded","db":{"up":1}}"#, false)
                .unwrap()
                .contains("JSON status")
        );
        assert!(
            judge(&h, 200, br#"{"status":"healthy"}"#, true)
                .unwrap()
                .contains("larger")
        );
    }

    /// A number read out of a metrics document is the sample's value; a body
    /// without it fails the sample.
    #[tokio::test]
    async fn number_reads_the_value_out_of_the_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _serve = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let bodies = [r#"{"db_pool": {"saturation_percent": 92.5}}"#, r#"{"db_pool": {}}"#];
            for body in bodies {
                let (mut c, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                c.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let mut h = probe();
        h.url = Text::plain(format!("http://{addr}/api/metrics"));
        h.json.clear();
        h.body_match = None;
        h.number = Some(regex::Regex::new(r#""saturation_percent": ([0-9.]+)"#).unwrap());
        let s = sample(&h, Duration::from_secs(5)).await;
        assert!(s.ok, "{s:?}");
        assert_eq!(s.value, Some(92.5));
        let s = sample(&h, Duration::from_secs(5)).await;
        assert!(!s.ok);
        assert_eq!(s.value, None);
        assert!(
            s.error.unwrap().contains("no number matching"),
            "a body without the number fails"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failed_sample_not_an_error() {
        let s = sample(&probe(), Duration::from_secs(2)).await;
        assert!(!s.ok);
        assert!(s.error.unwrap().contains("connection failed"));
    }

    #[tokio::test]
    async fn a_hanging_target_times_out_on_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accept and never answer.
        let _hold = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        });
        let mut h = probe();
        h.url = Text::plain(format!("http://{addr}/"));
        let s = sample(&h, Duration::from_millis(200)).await;
        assert!(!s.ok);
        assert!(s.latency_ms.unwrap() < 2000.0);
    }
}
