//! Events and alerts (issue 21): what happened to backups, schedules and drills, told to
//! whoever listens. Every event goes out as a NOTIFY on channel `backup_events` with a JSON
//! payload; webhooks and the outbox are built on the same [`emit`].
//!
//! This is the shared entry point of the modules that raise events (the scheduler, drills,
//! the overdue check). Its contract: `emit` never fails the caller's work; it reports a
//! problem as a WARNING and goes on.
//!
//! Details are a JSON object; `emit` adds `event`, `at`, `id` (the outbox row) and `database`.
//! The names the human summary of webhooks (`http::summary`) reads: `backup_id`, `schedule`,
//! `error` (cut to its first line and [`ERROR_MAX`] characters, and reduced to its SQLSTATE
//! when it may quote row values: see [`error_fields`]; a `sqlstate` is added from its
//! `(SQLSTATE xxxxx)`), `bytes`, `duration_seconds`. Backup events are raised by the trigger
//! in `backups`; overdue schedules and drills call `emit` themselves.

pub mod backups;
pub mod http;
pub mod sender;
pub mod webhooks;

use serde_json::{json, Value};

/// What an event is about. Its name in payloads and in `events` filters is
/// [`EventKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    BackupSucceeded,
    BackupFailed,
    ScheduleOverdue,
    DrillSucceeded,
    DrillFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::BackupSucceeded,
        EventKind::BackupFailed,
        EventKind::ScheduleOverdue,
        EventKind::DrillSucceeded,
        EventKind::DrillFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BackupSucceeded => "backup_succeeded",
            EventKind::BackupFailed => "backup_failed",
            EventKind::ScheduleOverdue => "schedule_overdue",
            EventKind::DrillSucceeded => "drill_succeeded",
            EventKind::DrillFailed => "drill_failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One event: its kind and what it says (backup id, schedule, database, error, ...).
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub details: Value,
}

impl Event {
    pub fn new(kind: EventKind, details: Value) -> Event {
        Event { kind, details }
    }

    /// The JSON payload: `{"event": kind, "at": ..., ...details}`.
    pub fn payload(&self, at: &str) -> Value {
        let mut v = json!({ "event": self.kind.as_str(), "at": at });
        if let (Some(out), Some(d)) = (v.as_object_mut(), self.details.as_object()) {
            for (k, x) in d {
                out.entry(k.clone()).or_insert_with(|| x.clone());
            }
        }
        v
    }
}

/// NOTIFY refuses payloads of 8000 bytes or more; ours stay below this.
pub const NOTIFY_MAX: usize = 7900;
/// Error text in a payload is cut to this many characters.
pub const ERROR_MAX: usize = 1000;

/// Cut `s` to at most `max` characters, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The payload as NOTIFY text (ASCII JSON, so any database encoding carries it) below
/// [`NOTIFY_MAX`] bytes: long strings are cut, then, if still too long, every string but the
/// event's name, time and ids.
pub fn notify_text(payload: &Value) -> String {
    let text = crate::text::ascii_json(payload);
    if text.len() <= NOTIFY_MAX {
        return text;
    }
    let mut v = payload.clone();
    for limit in [200, 40] {
        if let Some(o) = v.as_object_mut() {
            for (k, x) in o.iter_mut() {
                if matches!(k.as_str(), "event" | "at" | "id") {
                    continue;
                }
                match x {
                    Value::String(s) => *s = truncate(s, limit),
                    Value::Array(_) | Value::Object(_) => *x = Value::String("(omitted)".into()),
                    _ => {}
                }
            }
        }
        let text = crate::text::ascii_json(&v);
        if text.len() <= NOTIFY_MAX {
            return text;
        }
    }
    let keep = |k: &str| payload.get(k).cloned().unwrap_or(Value::Null);
    crate::text::ascii_json(&json!({
        "event": keep("event"), "at": keep("at"), "id": keep("id"), "truncated": true,
    }))
}

/// The error text an event carries: its first line, cut to [`ERROR_MAX`] characters, and for
/// the errors whose message may quote row values or text written by user code (data
/// exceptions, integrity violations, RAISE in PL/pgSQL, external routines) only the SQLSTATE.
/// Returns `(error, sqlstate)`.
pub fn error_fields(error: &str) -> (String, Option<String>) {
    let sqlstate = sqlstate_in(error);
    let risky = sqlstate.as_deref().is_some_and(|c| {
        let class = &c[..2];
        (class == "22" && !matches!(c, "22023" | "22004" | "22021"))
            || matches!(class, "23" | "P0" | "38" | "39" | "2F")
            || c == "XX000"
    });
    if risky {
        let code = sqlstate.clone().unwrap_or_default();
        return (
            format!("error with SQLSTATE {code} (its message is in backup.backups.error)"),
            sqlstate,
        );
    }
    let first = error.lines().next().unwrap_or_default();
    (truncate(first, ERROR_MAX), sqlstate)
}

/// The last `SQLSTATE XXXXX` that `error` mentions (how pg_backup records failures).
fn sqlstate_in(error: &str) -> Option<String> {
    let idx = error.rfind("SQLSTATE ")?;
    let code: String = error[idx + 9..].chars().take(5).collect();
    (code.len() == 5
        && code
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()))
    .then_some(code)
}

/// Raise `event` in the current transaction: a row of `backup.events` (the outbox), a row of
/// `backup.webhook_queue` per webhook that wants it, and a NOTIFY on `backup_events`, all of
/// which take effect when the transaction commits; after the commit, a background worker
/// posts the webhooks. Never fails the caller: a problem is a WARNING. Nothing on a hot
/// standby (it can neither write nor NOTIFY).
pub fn emit(event: &Event) {
    if crate::catalog::autonomous::in_recovery() {
        return;
    }
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut payload = event.payload(&at);
    payload["database"] = Value::String(crate::text::current_database());
    // Whoever raised it: error text is cut and kept free of row values, with its SQLSTATE.
    if let Some(e) = payload
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        let (error, sqlstate) = error_fields(&e);
        payload["error"] = Value::String(error);
        if payload.get("sqlstate").is_none_or(Value::is_null) {
            payload["sqlstate"] = sqlstate.map(Value::String).unwrap_or(Value::Null);
        }
    }
    let done = crate::subtransaction::run_result(|| record(event, &at, &payload));
    let queued = match done {
        Ok(Ok((id, queued))) => {
            payload["id"] = json!(id);
            queued
        }
        Ok(Err(e)) => {
            pgrx::warning!(
                "pg_backup: could not record event {}: {e}",
                event.kind.as_str()
            );
            0
        }
        Err(caught) => {
            pgrx::warning!(
                "pg_backup: could not record event {}: {}",
                event.kind.as_str(),
                crate::subtransaction::message(&caught)
            );
            0
        }
    };
    notify(event.kind, &payload);
    if queued > 0 {
        sender::start_after_commit();
    }
}

/// Above this fraction of PostgreSQL's NOTIFY queue in use (`pg_notification_queue_usage()`)
/// an event sends no NOTIFY. A NOTIFY is queued when its transaction commits, so a full queue
/// fails that COMMIT (a backup's end included), and no subtransaction around `pg_notify` can
/// catch it; a listener that stays in a transaction, or stops reading, fills the queue.
pub const NOTIFY_QUEUE_MAX_USAGE: f64 = 0.5;

/// Whether an event may be sent as a NOTIFY with the queue at `usage` (0 to 1).
pub fn notify_fits(usage: f64) -> bool {
    usage <= NOTIFY_QUEUE_MAX_USAGE
}

/// The NOTIFY of an event, unless the queue is filling up (then a WARNING: the outbox row and
/// the webhooks still go out).
fn notify(kind: EventKind, payload: &Value) {
    let usage = crate::subtransaction::run_result(|| {
        pgrx::Spi::get_one::<f64>("SELECT pg_catalog.pg_notification_queue_usage()")
    });
    match usage {
        Ok(Ok(Some(u))) if !notify_fits(u) => {
            pgrx::warning!(
                "pg_backup: event {} not sent as NOTIFY: the NOTIFY queue is {:.0}% full",
                kind.as_str(),
                u * 100.0
            );
            return;
        }
        Ok(Ok(Some(_))) => {}
        _ => {
            pgrx::warning!(
                "pg_backup: event {} not sent as NOTIFY: cannot read the NOTIFY queue's usage",
                kind.as_str()
            );
            return;
        }
    }
    let notified = crate::subtransaction::run_result(|| {
        pgrx::Spi::run_with_args(
            "SELECT pg_catalog.pg_notify('backup_events', $1)",
            &[crate::text::arg(notify_text(payload))],
        )
    });
    if !matches!(notified, Ok(Ok(()))) {
        pgrx::warning!("pg_backup: could not raise event {}", kind.as_str());
    }
}

/// The outbox rows of one event; returns its id and how many deliveries were queued. A
/// webhook without its row of `backup.webhook_secrets` (no URL: `webhook_targets` is in a
/// pg_dump, `webhook_secrets` is not) gets its delivery failed at once, with
/// [`sender::NO_URL`] as the error, rather than one that would wait forever. Events older than `backup.events_keep_days` go (a few at a time), unless a delivery is pending.
fn record(event: &Event, at: &str, payload: &Value) -> Result<(i64, i64), pgrx::spi::Error> {
    let row = pgrx::Spi::get_two_with_args::<i64, i64>(
        "WITH e AS (
           INSERT INTO backup.events (event, at, payload) VALUES ($1, $2::timestamptz, $3)
           RETURNING id),
         q AS (
           INSERT INTO backup.webhook_queue (webhook, event_id, status, error, finished_at)
           SELECT t.name, e.id,
                  CASE WHEN s.name IS NULL THEN 'failed' ELSE 'pending' END,
                  CASE WHEN s.name IS NULL THEN $4 END,
                  CASE WHEN s.name IS NULL THEN now() END
           FROM backup.webhook_targets t CROSS JOIN e
           LEFT JOIN backup.webhook_secrets s ON s.name = t.name
           WHERE t.events IS NULL OR $1 = ANY (t.events)
           RETURNING status)
         SELECT e.id, (SELECT count(*) FROM q WHERE status = 'pending') FROM e",
        &[
            crate::text::arg(event.kind.as_str()),
            crate::text::arg(at),
            crate::text::Json(payload.clone()).into(),
            crate::text::arg(sender::NO_URL),
        ],
    )?;
    pgrx::Spi::run_with_args(
        "DELETE FROM backup.events WHERE id IN (
           SELECT e.id FROM backup.events e
           WHERE e.at < now() - make_interval(days => $1)
             AND NOT EXISTS (SELECT 1 FROM backup.webhook_queue q
                             WHERE q.event_id = e.id AND q.status = 'pending')
           ORDER BY e.at LIMIT 100)",
        &[crate::guc::events_keep_days().into()],
    )?;
    Ok((row.0.unwrap_or_default(), row.1.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_payload_keeps_its_own_keys() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        let e = Event::new(
            EventKind::BackupFailed,
            json!({"backup_id": "x", "event": "forged"}),
        );
        let p = e.payload("2026-01-01T00:00:00Z");
        assert_eq!(p["event"], "backup_failed");
        assert_eq!(p["backup_id"], "x");
    }

    #[test]
    fn notify_payloads_stay_below_the_limit_of_notify() {
        let small = json!({"event": "backup_failed", "at": "t", "id": 3, "error": "é"});
        let text = notify_text(&small);
        assert!(text.is_ascii());
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"], "é");
        let big = json!({"event": "backup_failed", "at": "t", "id": 4,
                         "error": "x".repeat(20_000), "label": "é".repeat(5000)});
        let text = notify_text(&big);
        assert!(text.len() <= NOTIFY_MAX, "{}", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event"], "backup_failed");
        assert_eq!(v["id"], 4);
        let many: serde_json::Map<String, Value> = (0..2000)
            .map(|i| (format!("k{i}"), Value::String("v".repeat(10))))
            .chain([
                ("event".to_string(), json!("backup_failed")),
                ("id".into(), json!(5)),
            ])
            .collect();
        let text = notify_text(&Value::Object(many));
        assert!(text.len() <= NOTIFY_MAX);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["id"], 5);
    }

    #[test]
    fn no_notify_once_the_queue_is_half_full() {
        assert!(notify_fits(0.0));
        assert!(notify_fits(NOTIFY_QUEUE_MAX_USAGE));
        assert!(!notify_fits(0.51));
        assert!(!notify_fits(1.0));
    }

    #[test]
    fn event_errors_keep_the_sqlstate_and_drop_what_may_quote_rows() {
        let (e, code) = error_fields("could not write file \"x\": No space left (SQLSTATE 53100)");
        assert_eq!(code.as_deref(), Some("53100"));
        assert!(e.contains("No space left"));
        let (e, code) =
            error_fields("invalid input syntax for type integer: \"TOPSECRET-1\" (SQLSTATE 22P02)");
        assert_eq!(code.as_deref(), Some("22P02"));
        assert!(!e.contains("TOPSECRET"), "{e}");
        let (e, _) = error_fields("boom: NEW.secret=hunter2 (SQLSTATE P0001)");
        assert!(!e.contains("hunter2"));
        let (e, code) = error_fields(&format!("{}\nsecond line", "y".repeat(5000)));
        assert_eq!(code, None);
        assert_eq!(e.chars().count(), ERROR_MAX);
        assert!(!e.contains("second line"));
    }
}
