//! Signed archives: each cluster has an Ed25519 signing key, and every archive carries
//! `manifest.sig`, a signature over the bytes of `manifest.json` as stored (which pins the
//! SHA-256 of every other file of the archive, the encrypted DDL of an encrypted one included).
//! `manifest.sha256` only detects damage (anyone can recompute it); the signature says who
//! wrote the manifest. Plain Rust: key and signature formats, signing, checking.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{BackupError, Result};

/// The signature of `manifest.json`, next to it in the archive.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// What is signed is this prefix followed by the manifest's bytes, so that a signature made
/// by the key can never be taken for one over anything else.
pub const CONTEXT: &[u8] = b"pg_backup manifest signature v1\n";
const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";
const SIG_HEADER: &str = "pg_backup signature v1";
/// The first release that signs its archives: earlier ones (0.1.0, 0.2.0) wrote none.
pub const FIRST_SIGNING_RELEASE: (u32, u32, u32) = (0, 3, 0);

/// A public key: `ed25519:<base64 of its 32 bytes>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey> {
        let bad = || {
            BackupError::invalid("not an Ed25519 public key of pg_backup").with_hint(
                "Pass the public_key that SELECT * FROM backup.signing_key() shows on the server that wrote the archives: 'ed25519:' followed by 44 characters of base64.",
            )
        };
        let b64 = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
        let bytes: [u8; 32] = B64
            .decode(b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(bad)?;
        // A point that is not on the curve (or a weak one) is no key.
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        if key.is_weak() {
            return Err(bad());
        }
        Ok(PublicKey(key))
    }

    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }

    /// 16 hex digits: the start of the SHA-256 of the key's bytes. Names the key in
    /// `manifest.sig`, messages and `backup.trusted_keys`; checking always uses the key.
    pub fn key_id(&self) -> String {
        super::manifest::hex(&Sha256::digest(self.0.as_bytes())[..8])
    }
}

/// The secret key of a cluster (its 32-byte seed).
pub struct SecretKey(SigningKey);

impl SecretKey {
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The key file's contents.
    pub fn to_file_text(&self) -> String {
        format!(
            "# pg_backup signing key (Ed25519, secret): archives signed with it are trusted.\n\
             # Public half: {}\n{SECRET_PREFIX}{}\n",
            self.public().to_text(),
            B64.encode(self.0.to_bytes())
        )
    }

    /// Read a key file's contents (comment lines start with #).
    pub fn parse_file(text: &str) -> Result<SecretKey> {
        let seed: Option<[u8; 32]> = text
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(SECRET_PREFIX))
            .and_then(|b64| B64.decode(b64).ok())
            .and_then(|v| v.try_into().ok());
        seed.map(SecretKey::from_seed).ok_or_else(|| {
            BackupError::corrupt("the signing key file does not hold an Ed25519 secret key")
        })
    }

    /// The contents of `manifest.sig` for the manifest bytes `manifest`.
    pub fn sign(&self, manifest: &[u8]) -> String {
        let sig = self.0.sign(&message(manifest));
        format!(
            "{SIG_HEADER}\nalgorithm: ed25519\nkey-id: {}\nsignature: {}\n",
            self.public().key_id(),
            B64.encode(sig.to_bytes())
        )
    }
}

fn message(manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + manifest.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(manifest);
    m
}

/// A parsed `manifest.sig`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureFile {
    pub key_id: String,
    signature: [u8; 64],
}

impl SignatureFile {
    pub fn parse(bytes: &[u8]) -> std::result::Result<SignatureFile, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "manifest.sig is not text")?;
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(SIG_HEADER) {
            return Err("manifest.sig is not a pg_backup signature".into());
        }
        let (mut algorithm, mut key_id, mut signature) = (None, None, None);
        for line in lines.map(str::trim).filter(|l| !l.is_empty()) {
            let Some((k, v)) = line.split_once(':') else {
                return Err("manifest.sig has a line that is not \"name: value\"".into());
            };
            match k.trim() {
                "algorithm" => algorithm = Some(v.trim()),
                "key-id" => key_id = Some(v.trim()),
                "signature" => signature = Some(v.trim()),
                _ => {}
            }
        }
        if algorithm != Some("ed25519") {
            return Err("manifest.sig names no algorithm this pg_backup knows (ed25519)".into());
        }
        let key_id = key_id
            .filter(|k| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or("manifest.sig has no valid key-id")?
            .to_ascii_lowercase();
        let signature: [u8; 64] = signature
            .and_then(|s| B64.decode(s).ok())
            .and_then(|v| v.try_into().ok())
            .ok_or("manifest.sig has no valid signature")?;
        Ok(SignatureFile { key_id, signature })
    }
}

/// A key archives may be signed with: the cluster's own, or one a superuser trusted.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// `this server` for the cluster's own key, else the name given to trust_key().
    pub name: String,
    pub key: PublicKey,
}

/// What a manifest's signature says.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Signed by this trusted key (its name and key id).
    Trusted { name: String, key_id: String },
    /// No `manifest.sig`.
    Unsigned,
    /// A `manifest.sig` that is not one.
    Malformed(String),
    /// Signed by a key that is not trusted here.
    UnknownKey(String),
    /// Names a trusted key, but the signature does not match the manifest (it was changed
    /// after it was signed).
    Mismatch { name: String, key_id: String },
}

/// Check `manifest` (the bytes of manifest.json as stored) against `sig` (manifest.sig, if
/// there is one) and the trusted keys.
pub fn check(manifest: &[u8], sig: Option<&[u8]>, trusted: &[TrustedKey]) -> Verdict {
    let Some(sig) = sig else {
        return Verdict::Unsigned;
    };
    let parsed = match SignatureFile::parse(sig) {
        Ok(p) => p,
        Err(e) => return Verdict::Malformed(e),
    };
    let signature = Signature::from_bytes(&parsed.signature);
    let candidates: Vec<&TrustedKey> = trusted
        .iter()
        .filter(|t| t.key.key_id() == parsed.key_id)
        .collect();
    let Some(first) = candidates.first() else {
        return Verdict::UnknownKey(parsed.key_id);
    };
    let msg = message(manifest);
    match candidates
        .iter()
        .find(|t| t.key.0.verify_strict(&msg, &signature).is_ok())
    {
        Some(t) => Verdict::Trusted {
            name: t.name.clone(),
            key_id: parsed.key_id,
        },
        None => Verdict::Mismatch {
            name: first.name.clone(),
            key_id: parsed.key_id,
        },
    }
}

/// Whether an archive that says it was written by pg_backup `version` predates signatures
/// (0.1.0 and 0.2.0 wrote none). Anything unreadable does not.
pub fn predates_signatures(version: &str) -> bool {
    let mut parts = version.trim().splitn(3, '.').map(|p| {
        p.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("")
            .parse::<u32>()
    });
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => (a, b, c) < FIRST_SIGNING_RELEASE,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    fn trusted(k: &SecretKey, name: &str) -> TrustedKey {
        TrustedKey {
            name: name.into(),
            key: k.public(),
        }
    }

    #[test]
    fn a_signed_manifest_verifies_with_its_key_only() {
        let k = key(1);
        let sig = k.sign(b"{\"a\": 1}\n");
        let mine = [trusted(&k, "this server")];
        assert_eq!(
            check(b"{\"a\": 1}\n", Some(sig.as_bytes()), &mine),
            Verdict::Trusted {
                name: "this server".into(),
                key_id: k.public().key_id()
            }
        );
        // One byte changed after signing.
        assert!(matches!(
            check(b"{\"a\": 2}\n", Some(sig.as_bytes()), &mine),
            Verdict::Mismatch { .. }
        ));
        // Another key.
        let other = [trusted(&key(2), "other")];
        assert_eq!(
            check(b"{\"a\": 1}\n", Some(sig.as_bytes()), &other),
            Verdict::UnknownKey(k.public().key_id())
        );
        assert_eq!(check(b"x", None, &mine), Verdict::Unsigned);
    }

    #[test]
    fn a_signature_naming_a_trusted_key_id_made_with_another_key_is_a_mismatch() {
        let (k, forger) = (key(1), key(3));
        let forged = forger
            .sign(b"m")
            .replace(&forger.public().key_id(), &k.public().key_id());
        assert!(matches!(
            check(b"m", Some(forged.as_bytes()), &[trusted(&k, "this server")]),
            Verdict::Mismatch { .. }
        ));
    }

    #[test]
    fn garbage_signatures_are_malformed() {
        let mine = [trusted(&key(1), "this server")];
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"pg_backup signature v1\nalgorithm: rsa\nkey-id: 0011223344556677\nsignature: AAAA\n",
            b"pg_backup signature v1\nalgorithm: ed25519\nkey-id: zz\nsignature: AAAA\n",
            b"pg_backup signature v1\nalgorithm: ed25519\nkey-id: 0011223344556677\nsignature: AAAA\n",
            b"something else\n",
        ] {
            assert!(
                matches!(check(b"m", Some(bad), &mine), Verdict::Malformed(_)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_round_trip_through_their_texts() {
        let k = key(7);
        let back = SecretKey::parse_file(&k.to_file_text()).unwrap();
        assert_eq!(back.public(), k.public());
        let text = k.public().to_text();
        assert!(
            text.starts_with("ed25519:") && text.len() == 8 + 44,
            "{text}"
        );
        assert_eq!(PublicKey::parse(&text).unwrap(), k.public());
        assert_eq!(
            PublicKey::parse(&format!("  {text}\n")).unwrap(),
            k.public()
        );
        assert_eq!(k.public().key_id().len(), 16);
        for bad in ["", "ed25519:", "ed25519:AAAA", "rsa:abc", &text[8..]] {
            assert_eq!(
                PublicKey::parse(bad).unwrap_err().sqlstate(),
                "22023",
                "{bad}"
            );
        }
        // The identity point is a weak key: refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = format!("ed25519:{}", B64.encode(identity));
        assert!(PublicKey::parse(&weak).is_err());
        assert!(SecretKey::parse_file("# nothing\n").is_err());
    }

    #[test]
    fn only_releases_before_0_3_0_predate_signatures() {
        for v in ["0.1.0", "0.2.0", "0.2.9", "0.1.0-beta"] {
            assert!(predates_signatures(v), "{v}");
        }
        for v in ["0.3.0", "0.3.1", "1.0.0", "", "x", "0.2", "garbage.1.2"] {
            assert!(!predates_signatures(v), "{v}");
        }
    }
}
