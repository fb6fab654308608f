//! Webhooks: `backup.add_webhook(name, url, events, secret, replace)` and
//! `backup.drop_webhook(name)`, superuser only (checked on the calling role, as add_storage
//! and trust_key are). What operators may see (name, scheme://host:port, events, whether a
//! secret is set) is in `backup.webhook_targets` (the view `backup.webhooks`); the URL, whose
//! path and query often are the credential (Slack's, Teams'), and the signing secret are in
//! `backup.webhook_secrets`, which only the extension owner reads.

use pgrx::prelude::*;

use super::EventKind;
use crate::error::{BackupError, Result};
use crate::text;

/// Longest URL accepted.
const URL_MAX: usize = 2048;
/// Longest signing secret accepted.
const SECRET_MAX: usize = 1024;

pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BackupError::invalid(format!(
            "invalid webhook name \"{}\"",
            name.escape_debug()
        ))
        .with_hint(
            "Use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit).",
        ))
    }
}

/// Check a webhook URL; returns what may be shown of it: `scheme://host[:port]`. Only
/// http:// and https://, with a host, without user:password (put a token in the path or use
/// `secret`) and without a fragment. The URL itself never appears in an error.
pub fn check_url(url: &str) -> Result<String> {
    let bad = |why: &str| {
        BackupError::invalid(format!("invalid webhook URL: {why}"))
            .with_hint("Pass an http:// or https:// URL, e.g. https://hooks.slack.com/services/...")
    };
    if url.len() > URL_MAX {
        return Err(bad(&format!("longer than {URL_MAX} bytes")));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("it holds spaces or control characters"));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// are supported"));
    }
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return Err(bad("it has no host"));
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "user:password@ is not supported (use the secret, or a token in the path)",
        ));
    }
    if parsed.fragment().is_some() {
        return Err(bad("it has a #fragment"));
    }
    Ok(match parsed.port() {
        Some(p) => format!("{}://{host}:{p}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    })
}

/// The `events` filter: NULL means every event (also those of later releases); otherwise a
/// non-empty list of known event names.
pub fn check_events(events: Option<Vec<String>>) -> Result<Option<Vec<String>>> {
    let Some(list) = events else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(BackupError::invalid("events must name at least one event")
            .with_hint("Leave events out (NULL) for every event."));
    }
    let mut out: Vec<String> = Vec::new();
    for e in list {
        if EventKind::parse(&e).is_none() {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(
                BackupError::invalid(format!("unknown event \"{}\"", e.escape_debug()))
                    .with_hint(format!("Events are: {}.", known.join(", "))),
            );
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(Some(out))
}

/// What `add_webhook(..., secret)` does to the signing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChange {
    /// `secret` left out (NULL): a new webhook has none; a replaced one keeps its own.
    Keep,
    /// `secret => ''`: deliveries are no longer signed.
    Remove,
    /// A new secret.
    Set(String),
}

fn check_secret(secret: Option<String>) -> Result<SecretChange> {
    match secret {
        None => Ok(SecretChange::Keep),
        Some(s) if s.is_empty() => Ok(SecretChange::Remove),
        Some(s) if s.len() > SECRET_MAX => Err(BackupError::invalid(format!(
            "a webhook secret is 1 to {SECRET_MAX} bytes"
        ))
        .with_hint("Leave it NULL for unsigned deliveries (or to keep the secret of a webhook you replace); pass '' to remove a secret.")),
        Some(s) => Ok(SecretChange::Set(s)),
    }
}

/// The role that called (the current user at the call), not the extension owner the call
/// runs as.
fn caller_is_superuser() -> bool {
    // SAFETY: reads the backend-local session user id (set at connection).
    let caller = crate::security::caller_oid().unwrap_or(unsafe { pg_sys::GetOuterUserId() });
    // SAFETY: a syscache lookup of a role by oid, inside the call's transaction.
    unsafe { pg_sys::superuser_arg(caller) }
}

fn require_superuser(what: &str) -> Result<()> {
    if caller_is_superuser() {
        Ok(())
    } else {
        Err(BackupError::denied(format!("only a superuser may {what}")).with_hint(
            "Webhooks hold URLs and secrets; a superuser manages them, backup operators see backup.webhooks and backup.webhook_deliveries.",
        ))
    }
}

pub struct WebhookArgs {
    pub name: String,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub secret: Option<String>,
    pub replace: bool,
}

/// `backup.add_webhook(...)`.
pub fn add(a: WebhookArgs, created_by: &str) -> Result<()> {
    require_superuser("add a webhook")?;
    validate_name(&a.name)?;
    let endpoint = check_url(&a.url)?;
    let events = check_events(a.events)?;
    let secret = check_secret(a.secret)?;
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM backup.webhook_targets WHERE name = $1)",
        &[text::arg(a.name.as_str())],
    )?
    .unwrap_or(false);
    if exists && !a.replace {
        return Err(
            BackupError::exists(format!("webhook \"{}\" already exists", a.name)).with_hint(
                "Pass replace => true to change it, or drop it with backup.drop_webhook().",
            ),
        );
    }
    text::run_with_args(
        "INSERT INTO backup.webhook_targets (name, endpoint, events, created_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET endpoint = EXCLUDED.endpoint, events = EXCLUDED.events,
           created_by = EXCLUDED.created_by, created_at = now()",
        &[
            text::arg(a.name.as_str()),
            text::arg(endpoint),
            match &events {
                Some(v) => text::args(v),
                None => Option::<Vec<String>>::None.into(),
            },
            text::arg(created_by),
        ],
    )?;
    // replace => true without a secret keeps the one the webhook has (secret => '' removes it).
    let (new_secret, keep) = match secret {
        SecretChange::Keep => (None, true),
        SecretChange::Remove => (None, false),
        SecretChange::Set(s) => (Some(s), false),
    };
    text::run_with_args(
        "INSERT INTO backup.webhook_secrets AS s (name, url, secret) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url,
           secret = CASE WHEN $4 THEN s.secret ELSE EXCLUDED.secret END",
        &[
            text::arg(a.name.as_str()),
            text::arg(a.url),
            new_secret.map(text::Text).into(),
            keep.into(),
        ],
    )?;
    Ok(())
}

/// `backup.drop_webhook(name)`: the webhook and its deliveries go.
pub fn drop(name: &str, if_exists: bool) -> Result<bool> {
    require_superuser("drop a webhook")?;
    validate_name(name)?;
    let gone = Spi::get_one_with_args::<bool>(
        "WITH d AS (DELETE FROM backup.webhook_targets WHERE name = $1 RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM d)",
        &[text::arg(name)],
    )?
    .unwrap_or(false);
    if !gone && !if_exists {
        return Err(
            BackupError::unknown(format!("webhook \"{name}\" does not exist"))
                .with_hint("See SELECT name FROM backup.webhooks;"),
        );
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_path_or_query() {
        assert_eq!(
            check_url("https://hooks.slack.com/services/T0/B0/XXXX").unwrap(),
            "https://hooks.slack.com"
        );
        assert_eq!(
            check_url("http://127.0.0.1:8080/hook?token=abc").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "not a url",
            "http://",
            "https://example.com/a b",
            "https://example.com/#frag",
            "javascript:alert(1)",
            "",
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(
                !e.to_string().contains("pw@"),
                "the URL is not repeated in an error: {e}"
            );
        }
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn events_are_known_names_or_all() {
        assert_eq!(check_events(None).unwrap(), None);
        assert_eq!(
            check_events(Some(vec!["backup_failed".into(), "backup_failed".into()])).unwrap(),
            Some(vec!["backup_failed".to_string()])
        );
        assert!(check_events(Some(vec![])).is_err());
        assert!(check_events(Some(vec!["backup_exploded".into()])).is_err());
    }

    #[test]
    fn a_secret_left_out_is_kept_and_an_empty_one_removes_it() {
        assert_eq!(check_secret(None).unwrap(), SecretChange::Keep);
        assert_eq!(
            check_secret(Some(String::new())).unwrap(),
            SecretChange::Remove
        );
        assert_eq!(
            check_secret(Some("k".into())).unwrap(),
            SecretChange::Set("k".into())
        );
        assert!(check_secret(Some("k".repeat(SECRET_MAX + 1))).is_err());
    }
}
