//! The TCP probe: up when a connection opens within the timeout; its latency is
//! the connect time. Nothing is sent.

use std::time::{Duration, Instant};

use crate::oplog::SampleRow;
use crate::plan::TcpProbe;

pub async fn sample(t: &TcpProbe, timeout: Duration) -> SampleRow {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&t.address)).await;
    let mut row = SampleRow {
        latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
        ..Default::default()
    };
    match result {
        Ok(Ok(_stream)) => row.ok = true,
        Ok(Err(e)) => row.error = Some(format!("cannot connect to {}: {e}", t.address)),
        Err(_) => {
            row.error = Some(format!(
                "no connection to {} within {}",
                t.address,
                crate::plan::units::format_duration(timeout)
            ))
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn up_when_listening_down_when_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let t = TcpProbe {
            address: address.clone(),
        };
        let s = sample(&t, Duration::from_secs(2)).await;
        assert!(s.ok, "{s:?}");
        assert!(s.latency_ms.is_some());
        drop(listener);
        let s = sample(&t, Duration::from_secs(2)).await;
        assert!(!s.ok);
        assert!(s.error.unwrap().contains(&address));
    }
}
