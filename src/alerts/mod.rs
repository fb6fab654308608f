//! Events and alerts (issue 21): what happened to backups, schedules and drills, told to
//! whoever listens. Every event goes out as a NOTIFY on channel `backup_events` with a JSON
//! payload; webhooks and the outbox are built on the same [`emit`].
//!
//! This is the shared entry point of the modules that raise events (the scheduler, drills,
//! the overdue check). Its contract: `emit` never fails the caller's work; it reports a
//! problem as a WARNING and goes on.

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

/// Raise `event` in the current transaction: a NOTIFY on `backup_events` (delivered when the
/// transaction commits). Never fails the caller: a problem is a WARNING.
pub fn emit(event: &Event) {
    let at = chrono::Utc::now().to_rfc3339();
    let payload = event.payload(&at).to_string();
    if let Err(e) = pgrx::Spi::run_with_args(
        "SELECT pg_catalog.pg_notify('backup_events', $1)",
        &[crate::text::arg(payload)],
    ) {
        pgrx::warning!(
            "pg_backup: could not raise event {}: {e}",
            event.kind.as_str()
        );
    }
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
}
