//! Encryption of archive files with age (X25519 recipients): the server needs only the public
//! recipients (`age1...`) to write a backup; the secret identity (`AGE-SECRET-KEY-1...`) is
//! needed only to restore or to look inside. Files are standard age files: `age -d -i key.txt`
//! or `rage -d -i key.txt` decrypts them. Plain Rust, unit-tested without a server.

use std::io::{Read, Write};
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{BackupError, Result};

/// The suffix of encrypted archive files (`data/00001.copy.gz.age`).
pub const SUFFIX: &str = ".age";

#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
    texts: Vec<String>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.texts).finish()
    }
}

impl Recipients {
    /// Parse `age1...` public keys; an empty list is None (no encryption).
    pub fn parse(list: &[String]) -> Result<Option<Recipients>> {
        let mut keys = Vec::new();
        let mut texts = Vec::new();
        for text in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if text.starts_with("AGE-SECRET-KEY-") {
                return Err(BackupError::invalid(
                    "encrypt_to takes public keys (age1...), not a secret key",
                )
                .with_hint("Derive the public key with age-keygen -y key.txt; keep the secret key off the server."));
            }
            let key = age::x25519::Recipient::from_str(text).map_err(|e| {
                BackupError::invalid(format!(
                    "invalid age recipient \"{}\": {e}",
                    text.escape_debug()
                ))
                .with_hint("Use an X25519 public key as printed by age-keygen: age1 followed by 58 characters.")
            })?;
            keys.push(key);
            texts.push(text.to_string());
        }
        Ok((!keys.is_empty()).then_some(Recipients { keys, texts }))
    }

    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// Wrap `out`: what is written is encrypted to every recipient; `finish()` writes the
    /// final chunk and returns `out`.
    pub fn encrypt<W: Write>(&self, out: W) -> std::io::Result<age::stream::StreamWriter<W>> {
        let encryptor =
            age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        encryptor.wrap_output(out)
    }
}

/// Secret keys that can decrypt a backup.
#[derive(Clone)]
pub struct Identities {
    keys: Arc<Vec<age::x25519::Identity>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} keys)", self.keys.len())
    }
}

impl Identities {
    /// Parse the text of an age identity file (or a single key): one `AGE-SECRET-KEY-1...`
    /// per line, `#` comments and blank lines ignored. Error messages never echo a key.
    pub fn parse(text: &str) -> Result<Identities> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = age::x25519::Identity::from_str(line).map_err(|_| {
                BackupError::invalid(format!("line {} is not an age secret key", i + 1))
                    .with_hint("An identity is AGE-SECRET-KEY-1 followed by 58 characters, as written by age-keygen.")
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(BackupError::invalid("no age secret key given")
                .with_hint("Pass identity => 'AGE-SECRET-KEY-1...' or set backup.identity_file."));
        }
        Ok(Identities {
            keys: Arc::new(keys),
        })
    }

    pub fn from_file(path: &std::path::Path) -> Result<Identities> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BackupError::io("read identity file", path, e))?;
        Identities::parse(&text)
    }

    /// Decrypt the age file read from `input`. Errors say which of the three it is: not an
    /// age file or damaged header (XX001), no key matches (28000), or (later, while reading)
    /// a chunk that fails authentication (XX001 via `describe_read_error`).
    pub fn decrypt<R: Read>(&self, input: R, what: &str) -> Result<age::stream::StreamReader<R>> {
        let d = age::Decryptor::new(input).map_err(|e| decrypt_error(e, what))?;
        d.decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(|e| decrypt_error(e, what))
    }
}

fn decrypt_error(e: age::DecryptError, what: &str) -> BackupError {
    match e {
        age::DecryptError::NoMatchingKeys => BackupError::Storage {
            message: format!("{what} is encrypted to other keys: none of the given identities can decrypt it"),
            hint: Some("Use the secret key that matches one of the backup's recipients (see manifest.json, \"encryption\").".into()),
            sqlstate: "28000",
        },
        age::DecryptError::Io(io) => BackupError::corrupt(format!("{what}: cannot read the age header: {io}")),
        other => BackupError::corrupt(format!("{what} is damaged or not an age file: {other}"))
            .with_hint("The file was changed after the backup was taken; verify it with backup.verify()."),
    }
}

/// The text for an error met while reading decrypted data: age reports a chunk that fails
/// authentication (a flipped byte, a truncation) as InvalidData.
pub fn describe_read_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::InvalidData || e.kind() == std::io::ErrorKind::UnexpectedEof
    {
        format!("decryption failed, the file was tampered with or truncated: {e}")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn keypair() -> (String, String) {
        let id = age::x25519::Identity::generate();
        (
            id.to_public().to_string(),
            id.to_string().expose_secret().to_string(),
        )
    }

    #[test]
    fn round_trip_wrong_key_and_tampering() {
        let (public, secret) = keypair();
        let r = Recipients::parse(&[public]).unwrap().unwrap();
        let mut w = r.encrypt(Vec::new()).unwrap();
        let plain = b"secret row values ".repeat(10_000);
        w.write_all(&plain).unwrap();
        let sealed = w.finish().unwrap();
        assert!(!sealed.windows(18).any(|x| x == b"secret row values "));

        let ids = Identities::parse(&format!("# key\n{secret}\n")).unwrap();
        let mut out = Vec::new();
        ids.decrypt(&sealed[..], "f")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);

        let (_, other) = keypair();
        let wrong = Identities::parse(&other).unwrap();
        match wrong.decrypt(&sealed[..], "f") {
            Err(e) => assert_eq!(e.sqlstate(), "28000"),
            Ok(_) => panic!("wrong key decrypted"),
        }

        let mut bad = sealed.clone();
        let i = bad.len() - 100;
        bad[i] ^= 1;
        let err = ids
            .decrypt(&bad[..], "f")
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(describe_read_error(&err).contains("tampered"), "{err}");
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let (_, secret) = keypair();
        let e = Recipients::parse(std::slice::from_ref(&secret)).unwrap_err();
        assert_eq!(e.sqlstate(), "22023");
        assert!(!e.to_string().contains(&secret[20..]));
        assert!(Recipients::parse(&["age1nope".into()]).is_err());
        assert!(Recipients::parse(&[]).unwrap().is_none());
        let e = Identities::parse("AGE-SECRET-KEY-1NOTAKEY").unwrap_err();
        assert!(!e.to_string().contains("NOTAKEY"));
        assert!(Identities::parse("# only a comment\n").is_err());
    }
}
