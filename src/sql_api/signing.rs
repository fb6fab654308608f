//! Signed archives (issue 17): the cluster's public key, and the keys of other servers a
//! superuser trusts. See security::signing.

use pgrx::prelude::*;

use super::{enter, required, writes};
use crate::error::OrRaise;
use crate::security::signing;
use crate::text::Text;

/// The public half of this cluster's signing key (made on first use) and its key id: what
/// another server needs to trust this one's archives (`backup.trust_key` there). The secret
/// half never leaves the data directory.
#[pg_extern]
fn signing_key() -> TableIterator<'static, (name!(public_key, String), name!(key_id, String))> {
    let key = signing::load_or_create().or_raise().public();
    TableIterator::once((key.to_text(), key.key_id()))
}

/// Trust archives signed by `public_key` (another server's `backup.signing_key()`), under
/// `name`. Superuser only. Returns the key id.
#[pg_extern]
fn trust_key(name: Option<Text>, public_key: Option<Text>) -> String {
    let name: String = required(name, "name", "Name the key, e.g. 'old-prod'.").into();
    let public_key: String = required(
        public_key,
        "public_key",
        "Pass the public_key of SELECT * FROM backup.signing_key() on the server that wrote the archives.",
    )
    .into();
    writes("backup.trust_key()");
    let caller = enter();
    signing::trust_key(caller.oid, &name, &public_key).or_raise()
}

/// Stop trusting the key named `name`. Superuser only. This server's own key is always trusted.
#[pg_extern]
fn untrust_key(name: Option<Text>) -> bool {
    let name: String = required(
        name,
        "name",
        "Pass a name from SELECT name FROM backup.trusted_keys;",
    )
    .into();
    writes("backup.untrust_key()");
    let caller = enter();
    signing::untrust_key(caller.oid, &name).or_raise()
}
