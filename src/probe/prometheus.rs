//! The Prometheus probe: an instant query against a server's HTTP API
//! (`GET /api/v1/query`). A scalar or a one-series vector gives the probe's
//! `value`; with several series each label set gets its own field (`{job="api"}`)
//! and `value` is the largest, so a rule on `value` trips when any series does.
//! A vector with no series is a healthy sample with no value.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::oplog::SampleRow;
use crate::plan::PrometheusProbe;

/// Answers larger than this are refused: an instant query for one number has no
/// business returning megabytes.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Series {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

pub async fn sample(p: &PrometheusProbe, timeout: Duration) -> SampleRow {
    let started = Instant::now();
    let shown = &p.url.shown;
    let mut row = SampleRow::default();
    let mut url = match reqwest::Url::parse(&format!("{}/api/v1/query", p.url.value.trim_end_matches('/'))) {
        Ok(u) => u,
        Err(e) => {
            row.error = Some(format!("Prometheus URL {shown}: {e}"));
            return row;
        }
    };
    url.query_pairs_mut().append_pair("query", &p.query);
    let req = super::http::client().get(url).timeout(timeout);
    let fetched = tokio::time::timeout(timeout, async {
        let mut resp = req.send().await?;
        let status = resp.status().as_u16();
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > BODY_LIMIT {
                return Ok((status, None));
            }
        }
        Ok::<_, reqwest::Error>((status, Some(body)))
    })
    .await;
    row.latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let (status, body) = match fetched {
        Err(_) => {
            row.error = Some(format!(
                "Prometheus at {shown} did not answer within {}",
                crate::plan::units::format_duration(timeout)
            ));
            return row;
        }
        Ok(Err(e)) => {
            row.error = Some(format!("Prometheus at {shown}: {}", super::http::describe(&e)));
            return row;
        }
        Ok(Ok(r)) => r,
    };
    row.status = Some(status);
    let Some(body) = body else {
        row.error = Some(format!("Prometheus at {shown}: answer larger than {BODY_LIMIT} bytes"));
        return row;
    };
    row.size = Some(body.len() as u64);
    match interpret(&body) {
        Ok(series) => {
            row.ok = true;
            if series.len() == 1 {
                row.value = Some(series[0].1);
            } else if !series.is_empty() {
                row.value = series.iter().map(|(_, v)| *v).reduce(f64::max);
                for (labels, v) in series {
                    row.fields.insert(labels, v);
                }
            }
        }
        Err(why) => row.error = Some(format!("Prometheus at {shown} (status {status}): {why}")),
    }
    row
}

/// The numbers in an API answer, each with its label set written `{k="v",...}`.
/// NaN and infinite values are left out: no rule can compare them.
pub fn interpret(body: &[u8]) -> Result<Vec<(String, f64)>, String> {
    let a: Answer = serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(&body[..body.len().min(80)]).into();
        format!("not a Prometheus API answer ({e}): {start:?}")
    })?;
    if a.status != "success" {
        return Err(format!(
            "query failed: {}{}",
            a.error_type.map(|t| format!("{t}: ")).unwrap_or_default(),
            a.error.unwrap_or_else(|| a.status.clone())
        ));
    }
    let data = a.data.ok_or("the answer has no data")?;
    let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
    match data.result_type.as_str() {
        "scalar" => {
            let (_, v): (f64, String) = serde_json::from_value(data.result).map_err(|e| e.to_string())?;
            Ok(num(&v).map(|v| vec![(String::new(), v)]).unwrap_or_default())
        }
        "vector" => {
            let series: Vec<Series> = serde_json::from_value(data.result).map_err(|e| e.to_string())?;
            Ok(series
                .into_iter()
                .filter_map(|s| {
                    let labels = s
                        .metric
                        .iter()
                        .map(|(k, v)| format!("{k}={v:?}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    Some((format!("{{{labels}}}"), num(&s.value.1)?))
                })
                .collect())
        }
        other => Err(format!(
            "the query returned a {other}; use an instant vector or scalar expression"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Text;

    #[test]
    fn reads_scalars_vectors_and_errors() {
        let v = interpret(br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"0.75"]}}"#)
            .unwrap();
        assert_eq!(v, vec![(String::new(), 0.75)]);
        let v = interpret(
            br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"api","instance":"a"},"value":[1,"3"]},
            {"metric":{"job":"api","instance":"b"},"value":[1,"NaN"]},
            {"metric":{"job":"db"},"value":[1,"7.5"]}]}}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            vec![
                (r#"{instance="a",job="api"}"#.to_string(), 3.0),
                (r#"{job="db"}"#.to_string(), 7.5)
            ]
        );
        let e = interpret(br#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#).unwrap_err();
        assert!(e.contains("bad_data: parse error"), "{e}");
        let e = interpret(b"<html>garbage</html>").unwrap_err();
        assert!(e.contains("not a Prometheus API answer"), "{e}");
        let e = interpret(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#).unwrap_err();
        assert!(e.contains("matrix"), "{e}");
    }

    #[tokio::test]
    async fn a_prometheus_that_is_down_fails_the_sample() {
        let p = PrometheusProbe {
            url: Text::plain("http://127.0.0.1:1"),
            query: "up".into(),
        };
        let s = sample(&p, Duration::from_secs(2)).await;
        assert!(!s.ok);
        let e = s.error.unwrap();
        assert!(e.contains("127.0.0.1:1") && e.contains("connection failed"), "{e}");
    }

    /// Against a real Prometheus started by `scripts/test` (BACKOUT_TEST_PROM_URL),
    /// scraping backout's own demo app. Required under CI.
    #[tokio::test]
    async fn queries_a_real_prometheus() {
        let Some(url) = crate::probe::test_env("BACKOUT_TEST_PROM_URL") else {
            return;
        };
        let p = PrometheusProbe {
            url: Text::plain(url.clone()),
            query: "count(up)".into(),
        };
        let s = sample(&p, Duration::from_secs(5)).await;
        assert!(s.ok, "{s:?}");
        assert!(s.value.unwrap() >= 1.0, "{s:?}");
        // One number per label set.
        let p = PrometheusProbe {
            url: Text::plain(url.clone()),
            query: "up".into(),
        };
        let s = sample(&p, Duration::from_secs(5)).await;
        assert!(s.ok, "{s:?}");
        assert!(s.value.is_some());
        // A bad query is a failed sample with Prometheus's own message.
        let p = PrometheusProbe {
            url: Text::plain(url),
            query: "sum(".into(),
        };
        let s = sample(&p, Duration::from_secs(5)).await;
        assert!(!s.ok);
        assert!(s.error.unwrap().contains("bad_data"));
    }
}
