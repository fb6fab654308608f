//! One webhook delivery over HTTP: the body (the event's fields and a human `text` that Slack
//! and Microsoft Teams incoming webhooks show as is), its HMAC-SHA256 signature, and the POST
//! with timeouts. Plain Rust, run on helper threads of the sender worker: nothing here calls
//! into PostgreSQL.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Header of the signature: `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-PgBackup-Signature";
/// Header of the timestamp the signature covers (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-PgBackup-Timestamp";
pub const EVENT_HEADER: &str = "X-PgBackup-Event";
/// The delivery's id (a retry of the same delivery keeps it: receivers deduplicate on it).
pub const DELIVERY_HEADER: &str = "X-PgBackup-Delivery";

/// A human summary of an event, e.g. `pg_backup: backup 20260101T020000Z-nightly of
/// database "app" (schedule nightly) failed: could not write ... (SQLSTATE 53100)`.
pub fn summary(p: &Value) -> String {
    let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    let db = s("database").unwrap_or_else(|| "?".into());
    let schedule = s("schedule")
        .map(|n| format!(" (schedule {n})"))
        .unwrap_or_default();
    let event = s("event").unwrap_or_default();
    let error = s("error").map(|e| format!(": {e}")).unwrap_or_default();
    match event.as_str() {
        "backup_succeeded" => {
            let id = s("backup_id").unwrap_or_default();
            let size = p
                .get("bytes")
                .and_then(Value::as_i64)
                .map(|b| format!(", {}", pretty_bytes(b)))
                .unwrap_or_default();
            let secs = p
                .get("duration_seconds")
                .and_then(Value::as_f64)
                .map(|d| format!(" in {d:.1} s"))
                .unwrap_or_default();
            format!("pg_backup: backup {id} of database \"{db}\"{schedule} succeeded{secs}{size}")
        }
        "backup_failed" => {
            let id = s("backup_id").unwrap_or_default();
            let retry = if p.get("will_retry").and_then(Value::as_bool) == Some(true) {
                " (it will be tried again)"
            } else {
                ""
            };
            format!("pg_backup: backup {id} of database \"{db}\"{schedule} FAILED{error}{retry}")
        }
        "schedule_overdue" => format!(
            "pg_backup: schedule {} of database \"{db}\" is OVERDUE: no successful backup in the interval its cron implies",
            s("schedule").unwrap_or_default()
        ),
        "drill_succeeded" => format!(
            "pg_backup: restore drill of backup {} (database \"{db}\"){schedule} succeeded",
            s("backup_id").unwrap_or_default()
        ),
        "drill_failed" => format!(
            "pg_backup: restore drill of backup {} (database \"{db}\"){schedule} FAILED{error}",
            s("backup_id").unwrap_or_default()
        ),
        other => format!("pg_backup: {other} in database \"{db}\"{schedule}{error}"),
    }
}

fn pretty_bytes(b: i64) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The body posted: the event's payload with its id, plus `text`.
pub fn body(payload: &Value, event_id: i64) -> Vec<u8> {
    let mut v = payload.clone();
    v["id"] = Value::from(event_id);
    v["text"] = Value::String(summary(&v));
    serde_json::to_vec(&v).expect("JSON serializes")
}

/// `sha256=<hex>` of HMAC-SHA256 keyed with `secret` over `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// One attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivered: bool,
    /// Whether another attempt may succeed (network errors, timeouts, 408, 429, 5xx).
    pub retry: bool,
    pub http_status: Option<i32>,
    /// Why it failed, never with the URL (which may hold a token).
    pub error: Option<String>,
}

impl Attempt {
    pub fn from_status(code: u16) -> Attempt {
        let delivered = (200..300).contains(&code);
        Attempt {
            delivered,
            retry: !delivered && (code == 408 || code == 429 || code >= 500),
            http_status: Some(code as i32),
            error: (!delivered).then(|| format!("HTTP status {code}")),
        }
    }
}

/// What is sent.
#[derive(Debug, Clone)]
pub struct Request {
    pub delivery_id: i64,
    pub url: String,
    pub secret: Option<String>,
    pub event: String,
    pub body: Vec<u8>,
}

/// POST `req`, with `timeout` to connect and again for the whole exchange; no redirects.
pub fn post(req: &Request, timeout: Duration) -> Attempt {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout(timeout)
        .redirects(0)
        .user_agent(concat!("pg_backup/", env!("CARGO_PKG_VERSION")))
        .build();
    let ts = chrono::Utc::now().timestamp();
    let mut r = agent
        .post(&req.url)
        .set("Content-Type", "application/json")
        .set(EVENT_HEADER, &req.event)
        .set(DELIVERY_HEADER, &req.delivery_id.to_string())
        .set(TIMESTAMP_HEADER, &ts.to_string());
    if let Some(secret) = &req.secret {
        r = r.set(
            SIGNATURE_HEADER,
            &signature(secret.as_bytes(), ts, &req.body),
        );
    }
    match r.send_bytes(&req.body) {
        Ok(resp) => Attempt::from_status(resp.status()),
        Err(ureq::Error::Status(code, _)) => Attempt::from_status(code),
        Err(ureq::Error::Transport(t)) => Attempt {
            delivered: false,
            retry: true,
            http_status: None,
            error: Some(transport_error(&t)),
        },
    }
}

/// A transport error without the URL: its kind, and the underlying I/O error if any.
fn transport_error(t: &ureq::Transport) -> String {
    let mut text = t.kind().to_string();
    let mut source = std::error::Error::source(t);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            text = format!("{text}: {}", io_text(io));
            break;
        }
        source = s.source();
    }
    text
}

fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        TimedOut | WouldBlock => "timed out".into(),
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        UnexpectedEof => "connection closed before a response".into(),
        k => format!("{k:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: python3 -c "import hmac,hashlib;
        // print(hmac.new(b'key', b'1700000000.{}', hashlib.sha256).hexdigest())"
        assert_eq!(
            signature(b"key", 1_700_000_000, b"{}"),
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn the_body_has_the_fields_and_a_text() {
        let p = json!({"event": "backup_failed", "at": "t", "backup_id": "b1", "database": "app",
                       "schedule": "nightly", "error": "disk full (SQLSTATE 53100)"});
        let b: Value = serde_json::from_slice(&body(&p, 7)).unwrap();
        assert_eq!(b["id"], 7);
        assert_eq!(b["backup_id"], "b1");
        let text = b["text"].as_str().unwrap();
        assert!(text.contains("b1") && text.contains("FAILED") && text.contains("nightly"));
        assert!(text.contains("53100"));
    }

    #[test]
    fn statuses_decide_delivery_and_retry() {
        assert!(Attempt::from_status(200).delivered);
        assert!(Attempt::from_status(204).delivered);
        assert!(Attempt::from_status(503).retry);
        assert!(Attempt::from_status(429).retry);
        let a = Attempt::from_status(404);
        assert!(!a.delivered && !a.retry);
        assert!(!Attempt::from_status(301).delivered);
    }
}
