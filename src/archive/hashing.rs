//! A reader that hashes (SHA-256) and counts the bytes of an archive file as they are read,
//! so a file is checked in the same pass that decompresses or loads it.

use std::io::Read;

use sha2::{Digest, Sha256};

pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Read what is left (a decompressor may stop before the end, e.g. before trailing
    /// garbage), then return the file's SHA-256 in hex and its size.
    pub fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((super::manifest::hex(&self.hasher.finalize()), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_everything_even_what_was_not_read() {
        let mut r = HashingReader::new(&b"abcdef"[..]);
        let mut first = [0u8; 3];
        r.read_exact(&mut first).unwrap();
        let (hex, bytes) = r.finish().unwrap();
        assert_eq!(bytes, 6);
        assert_eq!(hex, crate::archive::manifest::sha256_hex(b"abcdef"));
    }
}
