//! The database's encoding, and conversions between it and UTF-8 that never raise: what
//! both `text` (which raises for text that does not convert) and `error` (which converts the
//! messages it reports) need, below both.

use std::borrow::Cow;
use std::ffi::CStr;

use pgrx::pg_sys;

pub(crate) fn database_encoding() -> i32 {
    // SAFETY: reads a global set at backend start.
    unsafe { pg_sys::GetDatabaseEncoding() }
}

/// The result of one of PostgreSQL's conversion functions, which return their input pointer
/// when there was nothing to convert and a NUL-terminated palloc'd copy otherwise.
///
/// # Safety
/// `p` is what such a function returned for `input`.
pub(crate) unsafe fn converted(p: *const std::ffi::c_char, input: &[u8]) -> Cow<'_, [u8]> {
    if p == input.as_ptr().cast() {
        Cow::Borrowed(input)
    } else {
        // SAFETY: a NUL-terminated palloc'd string, freed once copied.
        unsafe {
            let v = CStr::from_ptr(p).to_bytes().to_vec();
            pg_sys::pfree(p.cast_mut().cast());
            Cow::Owned(v)
        }
    }
}

/// The database's bytes as UTF-8, or `None` when they cannot be read as UTF-8 (only a
/// database in SQL_ASCII can hold such bytes: it has no encoding to convert from, so its text
/// must already be UTF-8). Never raises for such bytes, so that a caller can say which object
/// holds them, or leave that object out when the selection does not need it.
pub fn try_to_utf8(bytes: &[u8]) -> Option<String> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Some(unsafe { String::from_utf8_unchecked(bytes.to_vec()) });
    }
    let encoding = database_encoding();
    if encoding == pg_sys::pg_enc::PG_UTF8 as i32 || encoding == pg_sys::pg_enc::PG_SQL_ASCII as i32
    {
        // Checked here: PostgreSQL's own check (pg_server_to_any in SQL_ASCII) raises 22021
        // with no hint and no object named.
        return String::from_utf8(bytes.to_vec()).ok();
    }
    // SAFETY: a valid slice, given back as `converted` expects. Text of a database in a real
    // encoding was checked when it was written, and every encoding converts to UTF-8.
    let converted = unsafe {
        let p = pg_sys::pg_server_to_any(
            bytes.as_ptr().cast(),
            bytes.len() as i32,
            pg_sys::pg_enc::PG_UTF8 as i32,
        );
        converted(p, bytes).into_owned()
    };
    String::from_utf8(converted).ok()
}

/// UTF-8 text as bytes in the database's encoding, never raising: a character the encoding has
/// no equivalent for becomes `\uXXXX`. For error messages and hints, which PostgreSQL sends to
/// the client as text in the database's encoding (pgrx hands it Rust's UTF-8 as it is).
pub fn server_bytes_or_escaped(s: &str) -> Vec<u8> {
    let encoding = database_encoding();
    if s.is_ascii()
        || encoding == pg_sys::pg_enc::PG_UTF8 as i32
        || encoding == pg_sys::pg_enc::PG_SQL_ASCII as i32
    {
        return s.as_bytes().to_vec();
    }
    // Latin-1 is the first 256 code points: no catalog lookup needed.
    if encoding == pg_sys::pg_enc::PG_LATIN1 as i32 {
        return s
            .chars()
            .flat_map(|c| match u8::try_from(u32::from(c)) {
                Ok(b) => vec![b],
                Err(_) => escape(c),
            })
            .collect();
    }
    // SAFETY: reads transaction state; the conversion looks up pg_conversion.
    if !unsafe { pg_sys::IsTransactionState() } {
        return s
            .chars()
            .flat_map(|c| {
                if c.is_ascii() {
                    vec![c as u8]
                } else {
                    escape(c)
                }
            })
            .collect();
    }
    // SAFETY: looks up the default UTF-8 to database-encoding conversion (a syscache read).
    let proc_ =
        unsafe { pg_sys::FindDefaultConversionProc(pg_sys::pg_enc::PG_UTF8 as i32, encoding) };
    let mut out = Vec::with_capacity(s.len() + 8);
    let mut rest = s;
    while !rest.is_empty() {
        let mut src = rest.as_bytes().to_vec();
        let mut dst = vec![0u8; src.len() * 4 + 1];
        let done = if proc_ == pg_sys::InvalidOid {
            0
        } else {
            // SAFETY: buffers of the sizes given (MAX_CONVERSION_GROWTH is 4); noError stops at
            // the first character that does not convert instead of raising.
            unsafe {
                pg_sys::pg_do_encoding_conversion_buf(
                    proc_,
                    pg_sys::pg_enc::PG_UTF8 as i32,
                    encoding,
                    src.as_mut_ptr(),
                    src.len() as i32,
                    dst.as_mut_ptr(),
                    dst.len() as i32,
                    true,
                )
            }
        };
        let mut done = (done.max(0) as usize).min(rest.len());
        while !rest.is_char_boundary(done) {
            done -= 1;
        }
        let written = dst.iter().position(|b| *b == 0).unwrap_or(dst.len());
        out.extend_from_slice(&dst[..written]);
        rest = &rest[done..];
        // The character that did not convert, as an escape.
        if let Some(c) = rest.chars().next() {
            out.extend(escape(c));
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn escape(c: char) -> Vec<u8> {
    if c.is_ascii() {
        return vec![c as u8];
    }
    format!("\\u{:04X}", u32::from(c)).into_bytes()
}
