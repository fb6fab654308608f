//! Signed archives, from the test's side (issue 17): sign an archive again with the cluster's
//! own key after a test changed it, as only someone who can read the server's data directory
//! could. Tests use it to get past the signature check on purpose (an archive with a crafted
//! TOC, a damaged file), so that what they test is the check that comes after it. The format
//! is written here independently of the extension's code (src/archive/signature.rs), so the
//! two also check each other.
#![allow(dead_code)]

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

/// The key file in a data directory.
pub const KEY_FILE: &str = "pg_backup_signing.key";
/// What is signed: this prefix, then the bytes of manifest.json.
const CONTEXT: &[u8] = b"pg_backup manifest signature v1\n";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cluster's signing key (it exists once the server took a backup or ran
/// backup.signing_key()).
pub fn cluster_key(data_dir: &Path) -> SigningKey {
    let path = data_dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (take a backup or SELECT backup.signing_key() first)",
            path.display()
        )
    });
    let b64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ed25519-secret:"))
        .expect("an ed25519-secret: line");
    let seed: [u8; 32] = B64.decode(b64).unwrap().try_into().unwrap();
    SigningKey::from_bytes(&seed)
}

/// `ed25519:<base64>`, as backup.signing_key() shows it.
pub fn public_key_text(key: &SigningKey) -> String {
    format!("ed25519:{}", B64.encode(key.verifying_key().as_bytes()))
}

/// The key id: 16 hex digits of the SHA-256 of the public key.
pub fn key_id(key: &SigningKey) -> String {
    sha256_hex(key.verifying_key().as_bytes())[..16].to_string()
}

/// Write `manifest.sha256` and `manifest.sig` of the archive in `archive_dir` for its
/// manifest.json as it is now, signed with `key`.
pub fn sign_with(archive_dir: &Path, key: &SigningKey) {
    let json = std::fs::read(archive_dir.join("manifest.json")).unwrap();
    std::fs::write(
        archive_dir.join("manifest.sha256"),
        format!("{}  manifest.json\n", sha256_hex(&json)),
    )
    .unwrap();
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(&json);
    let sig = key.sign(&message);
    std::fs::write(
        archive_dir.join("manifest.sig"),
        format!(
            "pg_backup signature v1\nalgorithm: ed25519\nkey-id: {}\nsignature: {}\n",
            key_id(key),
            B64.encode(sig.to_bytes())
        ),
    )
    .unwrap();
}

/// Sign the archive in `archive_dir` (a local folder or a file:// target's) again with the
/// key of the cluster whose data directory is `data_dir`, after a test changed its manifest:
/// its checksum is recomputed too. The archive then passes the signature check as if that
/// server had written it.
pub fn resign(archive_dir: &Path, data_dir: &Path) {
    sign_with(archive_dir, &cluster_key(data_dir));
}
