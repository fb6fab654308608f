//! Webhooks (issue 21): add and drop, superuser only. See alerts::webhooks.

use pgrx::prelude::*;

use super::{enter, names, required, text, writes};
use crate::alerts::webhooks::{self, WebhookArgs};
use crate::error::OrRaise;
use crate::text::Text;

/// Post events to `url` (http:// or https://): every event, or those named in `events`;
/// signed with HMAC-SHA256 when `secret` is given. Superuser only.
#[pg_extern]
fn add_webhook(
    name: Option<Text>,
    url: Option<Text>,
    events: default!(Option<Vec<Option<Text>>>, "NULL"),
    secret: default!(Option<Text>, "NULL"),
    replace: default!(Option<bool>, false),
) -> bool {
    let name = required(text(name), "name", "Name the webhook, e.g. 'slack'.");
    let url = required(
        text(url),
        "url",
        "Pass the http:// or https:// URL to post events to.",
    );
    let replace = required(replace, "replace", "Pass true or false (the default).");
    let events = names(events, "events");
    writes("backup.add_webhook()");
    let caller = enter();
    webhooks::add(
        WebhookArgs {
            name,
            url,
            events,
            secret: text(secret),
            replace,
        },
        &caller.role,
    )
    .or_raise();
    true
}

/// Stop posting to the webhook `name` (its pending deliveries go with it). Superuser only.
#[pg_extern]
fn drop_webhook(name: Option<Text>, if_exists: default!(Option<bool>, false)) -> bool {
    let name = required(
        text(name),
        "name",
        "Pass a name from SELECT name FROM backup.webhooks;",
    );
    let if_exists = required(if_exists, "if_exists", "Pass true or false (the default).");
    writes("backup.drop_webhook()");
    let _caller = enter();
    webhooks::drop(&name, if_exists).or_raise()
}
