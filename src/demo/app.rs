//! `backout demo-app`: a small quote service whose behaviour comes from a config
//! file in its repository, so a commit can make it fail: error rate, latency,
//! memory and version. Failures follow an exact, deterministic pattern (with
//! `error-rate = 0.3`, exactly 3 of every 10 requests fail), so the demo
//! succeeds every time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AppConfig {
    pub version: String,
    /// Share of `/api/*` requests answered with 500, from 0 to 1.
    #[serde(default)]
    pub error_rate: f64,
    /// Added to every `/api/*` response.
    #[serde(default)]
    pub latency_ms: u64,
    /// Held in memory for as long as the service runs.
    #[serde(default)]
    pub memory_mb: u64,
}

impl AppConfig {
    pub fn load(path: &Path) -> anyhow::Result<AppConfig> {
        let text = fs_err::read_to_string(path)?;
        let c: AppConfig = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        anyhow::ensure!(
            (0.0..=1.0).contains(&c.error_rate),
            "{}: error-rate must be between 0 and 1",
            path.display()
        );
        Ok(c)
    }

    pub fn to_toml(&self) -> String {
        format!(
            "# The demo service reads this at start.\nversion = \"{}\"\nerror-rate = {}\nlatency-ms = {}\nmemory-mb = {}\n",
            self.version, self.error_rate, self.latency_ms, self.memory_mb
        )
    }
}

struct App {
    config: AppConfig,
    requests: AtomicU64,
    _ballast: Vec<u8>,
}

impl App {
    /// Whether request number `n` fails: exactly `error_rate` of them do.
    fn fails(&self, n: u64) -> bool {
        let r = self.config.error_rate;
        ((n + 1) as f64 * r).floor() > (n as f64 * r).floor()
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: String,
}

async fn health(State(app): State<Arc<App>>) -> Json<Health> {
    Json(Health {
        status: "healthy",
        version: app.config.version.clone(),
    })
}

async fn quote(State(app): State<Arc<App>>) -> (StatusCode, Json<serde_json::Value>) {
    let n = app.requests.fetch_add(1, Ordering::Relaxed);
    if app.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(app.config.latency_ms)).await;
    }
    if app.fails(n) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                serde_json::json!({ "error": "NameError: name 'session' is not defined", "version": app.config.version }),
            ),
        );
    }
    let price = 100.0 + (n % 50) as f64 / 10.0;
    (
        StatusCode::OK,
        Json(serde_json::json!({ "symbol": "ACME", "price": price, "version": app.config.version })),
    )
}

/// Prometheus text exposition: requests to `/api/*` by outcome, and the version.
async fn metrics(State(app): State<Arc<App>>) -> String {
    let n = app.requests.load(Ordering::Relaxed);
    // By construction exactly floor(n × rate) of the first n requests failed.
    let errors = (n as f64 * app.config.error_rate).floor() as u64;
    format!(
        "# HELP backout_demo_requests_total Requests to /api/*, by outcome.\n# TYPE backout_demo_requests_total counter\nbackout_demo_requests_total{{outcome=\"ok\"}} {}\nbackout_demo_requests_total{{outcome=\"error\"}} {errors}\n# HELP backout_demo_info The running version.\n# TYPE backout_demo_info gauge\nbackout_demo_info{{version={:?}}} 1\n",
        n - errors,
        app.config.version
    )
}

/// Serves until SIGTERM or SIGINT.
pub async fn serve(config: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    let config = AppConfig::load(config)?;
    let mut ballast = vec![0u8; (config.memory_mb * 1024 * 1024) as usize];
    // Touch every page so the memory really is resident.
    for i in (0..ballast.len()).step_by(4096) {
        ballast[i] = 1;
    }
    let app = Arc::new(App {
        config,
        requests: AtomicU64::new(0),
        _ballast: ballast,
    });
    let router = axum::Router::new()
        .route("/health", get(health))
        .route("/api/quote", get(quote))
        .route("/metrics", get(metrics))
        .route(
            "/api/version",
            get(|State(app): State<Arc<App>>| async move { app.config.version.clone() }),
        )
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_follow_the_rate_exactly() {
        for (rate, per_100) in [(0.0, 0), (0.3, 30), (0.05, 5), (1.0, 100)] {
            let app = App {
                config: AppConfig {
                    version: "x".into(),
                    error_rate: rate,
                    latency_ms: 0,
                    memory_mb: 0,
                },
                requests: AtomicU64::new(0),
                _ballast: Vec::new(),
            };
            assert_eq!((0..100).filter(|n| app.fails(*n)).count(), per_100, "rate {rate}");
        }
    }

    #[test]
    fn config_round_trips() {
        let c = AppConfig {
            version: "1.1.0".into(),
            error_rate: 0.3,
            latency_ms: 40,
            memory_mb: 0,
        };
        assert_eq!(toml::from_str::<AppConfig>(&c.to_toml()).unwrap(), c);
    }
}
