//! Webhook notifications: Slack-compatible incoming-webhook payloads or a generic
//! JSON payload, sent on trigger, rollback start and end, verification result and
//! review failures, filtered by severity. Delivery runs beside the rollback, with
//! retries and backoff, and never blocks or fails it; every delivery's result is
//! recorded in the operation log. A payload is redacted when it is queued: the
//! queue and the sender carry only [`Redacted`] bodies.

use std::time::Duration;

use serde::Serialize;

use crate::oplog::OpId;
use crate::plan::incident::{Notify, NotifyFormat, Severity};
use crate::redact::{Redacted, Redactor};
use crate::workspace::Workspace;

/// Attempts per delivery, and the first backoff (doubled each retry).
pub const ATTEMPTS: u32 = 3;
pub const BACKOFF: Duration = Duration::from_millis(200);
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// One thing worth telling people.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// One of [`crate::plan::incident::EVENTS`].
    pub event: &'static str,
    pub severity: Severity,
    pub plan: String,
    pub incident: Option<String>,
    pub message: String,
    pub at: i64,
    pub details: serde_json::Value,
}

/// The result of one delivery, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub event: &'static str,
    pub webhook: String,
    pub ok: bool,
    pub attempts: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// The body a webhook receives.
pub fn payload(format: NotifyFormat, e: &Event) -> serde_json::Value {
    match format {
        NotifyFormat::Json => serde_json::to_value(e).unwrap_or_default(),
        NotifyFormat::Slack => {
            let icon = match e.severity {
                Severity::Critical => ":rotating_light:",
                Severity::Warning => ":warning:",
                Severity::Info => ":information_source:",
            };
            let incident = e.incident.as_ref().map_or(String::new(), |i| format!(" ({i})"));
            serde_json::json!({ "text": format!("{icon} *backout · {}*{incident}: {}", e.plan, e.message) })
        }
    }
}

/// Delivers events to the plan's webhooks in the background: one queue per
/// webhook, so each receives its events in order, while the rollback goes on.
#[derive(Debug)]
pub struct Notifier {
    queues: Vec<Queue>,
    redactor: Redactor,
}

#[derive(Debug)]
struct Queue {
    notify: Notify,
    tx: tokio::sync::mpsc::UnboundedSender<(&'static str, Redacted<serde_json::Value>)>,
    sent: Vec<&'static str>,
    worker: tokio::task::JoinHandle<()>,
    done: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
}

impl Notifier {
    /// Starts one delivery worker per webhook of the plan.
    pub fn start(ws: &Workspace) -> Notifier {
        let queues = ws
            .plan
            .notify
            .iter()
            .map(|n| {
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<(&'static str, Redacted<serde_json::Value>)>();
                let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                let (n2, done2) = (n.clone(), done.clone());
                let worker = tokio::spawn(async move {
                    while let Some((event, body)) = rx.recv().await {
                        let d = deliver(&n2, event, body).await;
                        done2.lock().unwrap_or_else(|e| e.into_inner()).push(d);
                    }
                });
                Queue {
                    notify: n.clone(),
                    tx,
                    sent: Vec::new(),
                    worker,
                    done,
                }
            })
            .collect();
        Notifier {
            queues,
            redactor: ws.redactor.clone(),
        }
    }

    /// Queues `e` for every webhook that wants it; returns at once.
    pub fn send(&mut self, e: &Event) {
        for q in &mut self.queues {
            if e.severity >= q.notify.min_severity && q.notify.on.iter().any(|o| o == e.event) {
                let body = self.redactor.json(payload(q.notify.format, e));
                if q.tx.send((e.event, body)).is_ok() {
                    q.sent.push(e.event);
                }
            }
        }
    }

    /// Waits up to `limit` for the queues to drain, then records every delivery
    /// under `op`, and anything still undelivered as abandoned.
    pub async fn finish(self, ws: &Workspace, op: OpId, limit: Duration) -> Vec<Delivery> {
        let until = crate::context::async_deadline(limit);
        let mut out = Vec::new();
        for q in self.queues {
            drop(q.tx);
            let mut worker = q.worker;
            if tokio::time::timeout_at(until, &mut worker).await.is_err() {
                worker.abort();
            }
            let mut done = std::mem::take(&mut *q.done.lock().unwrap_or_else(|e| e.into_inner()));
            for event in q.sent.iter().skip(done.len()) {
                done.push(Delivery {
                    event,
                    webhook: q.notify.webhook.shown.clone(),
                    ok: false,
                    attempts: 0,
                    status: None,
                    error: Some(format!(
                        "still undelivered after {}; abandoned",
                        crate::plan::units::format_duration(limit)
                    )),
                });
            }
            out.extend(done);
        }
        for d in &out {
            let _ = ws.oplog.event(
                op,
                ws.now_ms(),
                "notification",
                &serde_json::to_value(d).unwrap_or_default(),
            );
        }
        out
    }
}

async fn deliver(n: &Notify, event: &'static str, body: Redacted<serde_json::Value>) -> Delivery {
    let client = crate::probe::http::client();
    let mut d = Delivery {
        event,
        webhook: n.webhook.shown.clone(),
        ok: false,
        attempts: 0,
        status: None,
        error: None,
    };
    let mut backoff = BACKOFF;
    for attempt in 1..=ATTEMPTS {
        d.attempts = attempt;
        match client
            .post(&n.webhook.value)
            .json(body.get())
            .timeout(TIMEOUT)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                d.ok = true;
                d.status = Some(r.status().as_u16());
                d.error = None;
                return d;
            }
            Ok(r) => {
                d.status = Some(r.status().as_u16());
                d.error = Some(format!("status {}", r.status().as_u16()));
            }
            Err(e) => {
                d.status = None;
                // Never the URL: it is a credential.
                d.error = Some(if e.is_timeout() {
                    "timed out".into()
                } else if e.is_connect() {
                    "connection failed".into()
                } else {
                    "request failed".into()
                });
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            event: "trigger",
            severity: Severity::Critical,
            plan: "api".into(),
            incident: Some("inc-1".into()),
            message: "api-errors: ROLLBACK".into(),
            at: 1,
            details: serde_json::json!({}),
        }
    }

    #[test]
    fn slack_payload_is_an_incoming_webhook_text() {
        let v = payload(NotifyFormat::Slack, &event());
        assert_eq!(
            v["text"],
            ":rotating_light: *backout · api* (inc-1): api-errors: ROLLBACK"
        );
        let j = payload(NotifyFormat::Json, &event());
        assert_eq!(j["event"], "trigger");
        assert_eq!(j["severity"], "critical");
    }
}
