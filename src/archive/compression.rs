//! The `compression` option: `zstd` (level 3), `zstd:1`..`zstd:19`, `gzip` (level from
//! backup.compression_level), `gzip:1`..`gzip:9`, `none`; and the one place that turns a
//! compression into a stream encoder (writing) or decoder (verify, restore).

use std::io::{Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::error::{BackupError, Result};

/// zstd's own default level: about gzip:1's speed with a better ratio than gzip:6.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip(u32),
    Zstd(i32),
}

impl Compression {
    /// `gzip_level` is backup.compression_level, used by a bare `gzip`.
    pub fn parse(text: &str, gzip_level: u32) -> Result<Compression> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || {
            BackupError::invalid(format!("invalid compression \"{}\"", text.escape_debug()))
                .with_hint(
                    "Use 'zstd', 'zstd:1' .. 'zstd:19', 'gzip', 'gzip:1' .. 'gzip:9' or 'none'.",
                )
        };
        let (method, level) = match t.split_once(':') {
            Some((m, l)) => (m, Some(l.parse::<i64>().map_err(|_| bad())?)),
            None => (t.as_str(), None),
        };
        match (method, level) {
            ("none", None) => Ok(Compression::None),
            ("gzip", None) => Ok(Compression::Gzip(gzip_level.clamp(1, 9))),
            ("gzip", Some(n @ 1..=9)) => Ok(Compression::Gzip(n as u32)),
            ("zstd", None) => Ok(Compression::Zstd(ZSTD_DEFAULT_LEVEL)),
            ("zstd", Some(n @ 1..=19)) => Ok(Compression::Zstd(n as i32)),
            _ => Err(bad()),
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip(_) => ".gz",
            Compression::Zstd(_) => ".zst",
        }
    }

    /// As recorded in the manifest and the catalog: `zstd:N`, `gzip:N` or `none`.
    pub fn name(self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Gzip(n) => format!("gzip:{n}"),
            Compression::Zstd(n) => format!("zstd:{n}"),
        }
    }

    /// Read back what `name()` wrote.
    pub fn from_name(name: &str) -> Result<Compression> {
        Compression::parse(name, 6)
    }

    /// A writer that compresses into `sink`; `finish()` ends the stream and returns the sink.
    pub fn encoder<W: Write>(self, sink: W) -> std::io::Result<Encoder<'static, W>> {
        Ok(match self {
            Compression::None => Encoder::Plain(sink),
            Compression::Gzip(level) => {
                Encoder::Gzip(GzEncoder::new(sink, flate2::Compression::new(level)))
            }
            Compression::Zstd(level) => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(sink, level)?)
            }
        })
    }

    /// A reader of the decompressed bytes of `source`.
    pub fn decoder<'a, R: Read + 'a>(self, source: R) -> std::io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(source),
            // Multi-member: `cat a.gz b.gz` is one valid stream, as gunzip reads it.
            Compression::Gzip(_) => Box::new(MultiGzDecoder::new(source)),
            Compression::Zstd(_) => Box::new(zstd::stream::read::Decoder::new(source)?),
        })
    }
}

/// In a manifest (and create()'s options as recorded): the text `name()` writes, read back
/// with `from_name` (an unknown compression is an error naming it).
impl serde::Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Compression::from_name(&text).map_err(|_| {
            serde::de::Error::custom(format!(
                "unknown compression \"{}\" (pg_backup writes zstd:N, gzip:N or none)",
                text.escape_debug()
            ))
        })
    }
}

/// Encoders for many files one after the other (a backup's drain queue): zstd's context,
/// megabytes of window and match tables, is allocated once and only reset for each file, so
/// a backup of thousands of small tables does not allocate and clear it thousands of times.
pub struct Compressor {
    compression: Compression,
    zstd: Option<zstd::zstd_safe::CCtx<'static>>,
}

impl Compressor {
    pub fn new(compression: Compression) -> std::io::Result<Compressor> {
        let zstd = match compression {
            Compression::Zstd(level) => {
                let mut cx = zstd::zstd_safe::CCtx::create();
                cx.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(level))
                    .map_err(|code| {
                        std::io::Error::other(zstd::zstd_safe::get_error_name(code).to_string())
                    })?;
                Some(cx)
            }
            _ => None,
        };
        Ok(Compressor { compression, zstd })
    }

    /// Like `Compression::encoder`: the same stream, from the reused context. Each encoder
    /// starts a new frame (the context's session is reset, its parameters kept).
    pub fn encoder<W: Write>(&mut self, sink: W) -> std::io::Result<Encoder<'_, W>> {
        match (&mut self.zstd, self.compression) {
            (Some(cx), _) => Ok(Encoder::Zstd(zstd::stream::write::Encoder::with_context(
                sink, cx,
            ))),
            (None, c) => c.encoder(sink),
        }
    }
}

/// A compressing writer (see `Compression::encoder`).
pub enum Encoder<'a, W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'a, W>),
}

impl<W: Write> Encoder<'_, W> {
    /// Write the stream's trailer and hand back the sink (not flushed: the caller owns it).
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(Compression::parse("gzip", 3).unwrap(), Compression::Gzip(3));
        assert_eq!(
            Compression::parse("GZIP:9", 3).unwrap(),
            Compression::Gzip(9)
        );
        assert_eq!(Compression::parse("none", 3).unwrap(), Compression::None);
        assert_eq!(
            Compression::parse("zstd", 3).unwrap(),
            Compression::Zstd(ZSTD_DEFAULT_LEVEL)
        );
        assert_eq!(
            Compression::parse(" Zstd:19 ", 3).unwrap(),
            Compression::Zstd(19)
        );
        for bad in [
            "gzip:0", "gzip:10", "zstd:0", "zstd:20", "zstd:-1", "lz4", "", "gzip:", "zstd:x",
            "none:1",
        ] {
            assert_eq!(
                Compression::parse(bad, 3).unwrap_err().sqlstate(),
                "22023",
                "{bad}"
            );
        }
        for c in [
            Compression::None,
            Compression::Gzip(4),
            Compression::Zstd(1),
            Compression::Zstd(19),
        ] {
            assert_eq!(Compression::from_name(&c.name()).unwrap(), c);
        }
    }

    #[test]
    fn every_compression_round_trips() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{i}\trow {}\n", i % 97).into_bytes())
            .collect();
        for c in [
            Compression::None,
            Compression::Gzip(1),
            Compression::Zstd(3),
        ] {
            let mut e = c.encoder(Vec::new()).unwrap();
            e.write_all(&text).unwrap();
            let packed = e.finish().unwrap();
            if c != Compression::None {
                assert!(packed.len() < text.len() / 2, "{c:?} compresses");
            }
            let mut back = Vec::new();
            c.decoder(&packed[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, text, "{c:?}");
        }
    }

    #[test]
    fn a_reused_compressor_writes_independent_streams() {
        for c in [
            Compression::None,
            Compression::Gzip(1),
            Compression::Zstd(3),
            Compression::Zstd(19),
        ] {
            let mut cx = Compressor::new(c).unwrap();
            // A stream left unfinished (a failed file) leaves nothing in the next one.
            {
                let mut e = cx.encoder(Vec::new()).unwrap();
                e.write_all(&[9u8; 300_000]).unwrap();
            }
            for i in 0..3u32 {
                let text: Vec<u8> = (0..20_000 * (i + 1))
                    .flat_map(|n| format!("{n}\t{i}\n").into_bytes())
                    .collect();
                let mut e = cx.encoder(Vec::new()).unwrap();
                e.write_all(&text).unwrap();
                let packed = e.finish().unwrap();
                let mut back = Vec::new();
                c.decoder(&packed[..])
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, text, "{c:?} stream {i}");
            }
        }
    }

    #[test]
    fn a_truncated_stream_is_an_error() {
        for c in [Compression::Gzip(1), Compression::Zstd(3)] {
            let mut e = c.encoder(Vec::new()).unwrap();
            e.write_all(&[7u8; 100_000]).unwrap();
            let packed = e.finish().unwrap();
            let cut = &packed[..packed.len() - 4];
            let mut back = Vec::new();
            assert!(
                c.decoder(cut).unwrap().read_to_end(&mut back).is_err(),
                "{c:?}"
            );
        }
    }
}
