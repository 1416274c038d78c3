//! The compose probe: a compose service's container is running, and `healthy`
//! when its image has a HEALTHCHECK (`starting` and `unhealthy` are failures).

use std::time::{Duration, Instant};

use crate::oplog::SampleRow;
use crate::plan::{Service, ServiceControl, ServiceKind};

/// Asks docker about the service's container, within `timeout`.
pub async fn sample(service: &str, control: &ServiceControl, timeout: Duration) -> SampleRow {
    let svc = Service {
        name: service.to_string(),
        kind: ServiceKind::Compose,
        start: crate::plan::Command {
            argv: Vec::new(),
            shell: false,
        },
        cwd: std::path::PathBuf::from("."),
        env: Vec::new(),
        ready: None,
        ready_timeout: timeout,
        port: None,
        stop_timeout: timeout,
        control: control.clone(),
    };
    let started = Instant::now();
    let asked = tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || crate::service::control::compose_service_state(&svc)),
    )
    .await;
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let (ok, error) = match asked {
        Err(_) => (false, Some(format!("docker did not answer within {timeout:?}"))),
        Ok(Err(e)) => (false, Some(e.to_string())),
        Ok(Ok(Err(e))) => (false, Some(e)),
        Ok(Ok(Ok(None))) => (false, Some(format!("compose service {service} has no container"))),
        Ok(Ok(Ok(Some(c)))) => match (c.running, c.health.as_deref()) {
            (true, None | Some("healthy")) => (true, None),
            (true, Some(h)) => (false, Some(format!("container {} is {h}", &c.id[..c.id.len().min(12)]))),
            (false, _) => (
                false,
                Some(format!("container {} is {}", &c.id[..c.id.len().min(12)], c.status)),
            ),
        },
    };
    SampleRow {
        probe: String::new(),
        at: 0,
        ok,
        latency_ms,
        status: None,
        size: None,
        error,
        ..SampleRow::default()
    }
}
