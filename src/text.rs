//! Text between Rust and the database. Rust strings are UTF-8; a database's text is in the
//! database's encoding (LATIN1, WIN1252, EUC_JP...). pgrx reads text as if it were UTF-8 and
//! fails on anything else, and passes Rust strings to the server as they are, so that in a
//! LATIN1 database a table named `crème` could be neither backed up nor restored.
//!
//! pg_backup converts at the boundary instead: what it reads from the catalogs (names,
//! definitions, comments, labels) becomes UTF-8 ([`Text`]), which is also what the archive's
//! manifest and TOC hold; every statement and text argument it hands the server is converted
//! to the database's encoding ([`run`], [`Text`] as an argument). Row data does not pass
//! through here: COPY converts it (restore/data.rs).

use std::borrow::Cow;
use std::ffi::{CStr, CString};

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Text read from or given to the database, held as UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

fn database_encoding() -> i32 {
    // SAFETY: reads a global set at backend start.
    unsafe { pg_sys::GetDatabaseEncoding() }
}

fn is_utf8_database() -> bool {
    database_encoding() == pg_sys::pg_enc::PG_UTF8 as i32
}

/// The result of one of PostgreSQL's conversion functions, which return their input pointer
/// when there was nothing to convert and a NUL-terminated palloc'd copy otherwise.
///
/// # Safety
/// `p` is what such a function returned for `input`.
unsafe fn converted(p: *const std::ffi::c_char, input: &[u8]) -> Cow<'_, [u8]> {
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

/// The database's bytes as UTF-8. A database in SQL_ASCII has no encoding to convert from:
/// its bytes must already be UTF-8, and bytes that are not are an error (22021).
pub fn to_utf8(bytes: &[u8]) -> String {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return unsafe { String::from_utf8_unchecked(bytes.to_vec()) };
    }
    let converted: Vec<u8> = if is_utf8_database() {
        bytes.to_vec()
    } else {
        // SAFETY: a valid slice, given back as `converted` expects.
        unsafe {
            let p = pg_sys::pg_server_to_any(
                bytes.as_ptr().cast(),
                bytes.len() as i32,
                pg_sys::pg_enc::PG_UTF8 as i32,
            );
            converted(p, bytes).into_owned()
        }
    };
    match String::from_utf8(converted) {
        Ok(s) => s,
        Err(_) => crate::error::BackupError::from_worker(
            "22021",
            "the database holds text that is not valid in its encoding".into(),
            Some(
                "A database in SQL_ASCII must hold UTF-8 text for pg_backup to read its names and definitions."
                    .into(),
            ),
        )
        .raise(),
    }
}

/// UTF-8 text in the database's encoding, for the server to read. A character the database's
/// encoding has no equivalent for is an error (22P05, PostgreSQL's own message).
pub fn to_server(s: &str) -> Cow<'_, [u8]> {
    if s.is_ascii() || is_utf8_database() {
        return Cow::Borrowed(s.as_bytes());
    }
    // SAFETY: a valid slice, given back as `converted` expects.
    unsafe {
        let p = pg_sys::pg_any_to_server(
            s.as_ptr().cast(),
            s.len() as i32,
            pg_sys::pg_enc::PG_UTF8 as i32,
        );
        converted(p, s.as_bytes())
    }
}

/// A statement in the database's encoding.
pub fn statement(sql: &str) -> CString {
    CString::new(to_server(sql).into_owned()).expect("a statement holds no NUL byte")
}

/// `Spi::run` for a statement that may hold non-ASCII names or literals.
pub fn run(sql: &str) -> Result<(), pgrx::spi::Error> {
    run_with_args(sql, &[])
}

/// `Spi::run_with_args` for a statement that may hold non-ASCII names or literals.
pub fn run_with_args(sql: &str, args: &[DatumWithOid<'_>]) -> Result<(), pgrx::spi::Error> {
    if sql.is_ascii() || is_utf8_database() {
        return Spi::run_with_args(sql, args);
    }
    let stmt = statement(sql);
    Spi::connect_mut(|c| c.update(stmt.as_c_str(), None, args).map(|_| ()))
}

impl FromDatum for Text {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Text> {
        if is_null || datum.is_null() {
            return None;
        }
        // SAFETY: a text-like varlena, as for pgrx's own String.
        unsafe {
            let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            let s = to_utf8(pgrx::varlena::varlena_to_byte_slice(v));
            if v != datum.cast_mut_ptr() {
                pg_sys::pfree(v.cast());
            }
            Some(Text(s))
        }
    }
}

// SAFETY: the element of a text[] is a text varlena, read as `from_polymorphic_datum` does.
unsafe impl pgrx::datum::UnboxDatum for Text {
    type As<'src> = Text;
    unsafe fn unbox<'src>(datum: pgrx::datum::Datum<'src>) -> Text
    where
        Self: 'src,
    {
        // SAFETY: a non-null text datum of an array.
        unsafe { Text::from_polymorphic_datum(datum.sans_lifetime(), false, pg_sys::TEXTOID) }
            .unwrap_or_default()
    }
}

impl IntoDatum for Text {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let bytes = to_server(&self.0);
        // SAFETY: copies the bytes into a palloc'd text.
        let t =
            unsafe { pg_sys::cstring_to_text_with_len(bytes.as_ptr().cast(), bytes.len() as i32) };
        Some(pg_sys::Datum::from(t))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::TEXTOID
    }
}

/// A text argument for a statement, converted to the database's encoding.
pub fn arg(s: impl Into<String>) -> DatumWithOid<'static> {
    Text(s.into()).into()
}

/// A text[] argument, each element converted to the database's encoding.
pub fn args(v: &[String]) -> DatumWithOid<'static> {
    v.iter().map(|s| Text(s.clone())).collect::<Vec<_>>().into()
}

/// The first two columns of the first row of a read-only query that may hold non-ASCII names
/// (`None`s when there is no row).
pub fn two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<(Option<A>, Option<B>), pgrx::spi::Error> {
    let stmt = statement(sql);
    Spi::connect(|c| {
        let t = c.select(stmt.as_c_str(), Some(1), args)?;
        if t.is_empty() {
            Ok((None, None))
        } else {
            t.first().get_two::<A, B>()
        }
    })
}

/// UTF-8 text in the encoding named `encoding` (a PostgreSQL encoding name, as a manifest
/// records the backed-up database's), to match bytes that were written in that encoding.
pub fn to_encoding(s: &str, encoding: &str) -> Vec<u8> {
    if s.is_ascii() {
        return s.as_bytes().to_vec();
    }
    let Ok(name) = CString::new(encoding) else {
        return s.as_bytes().to_vec();
    };
    // SAFETY: a NUL-terminated name.
    let target = unsafe { pg_sys::pg_char_to_encoding(name.as_ptr()) };
    if target < 0
        || target == pg_sys::pg_enc::PG_UTF8 as i32
        || target == pg_sys::pg_enc::PG_SQL_ASCII as i32
    {
        return s.as_bytes().to_vec();
    }
    // SAFETY: a valid slice (not written to); the result is the input or a NUL-terminated
    // palloc'd string.
    unsafe {
        let p = pg_sys::pg_do_encoding_conversion(
            s.as_ptr().cast_mut(),
            s.len() as i32,
            pg_sys::pg_enc::PG_UTF8 as i32,
            target,
        );
        converted(p.cast_const().cast(), s.as_bytes()).into_owned()
    }
}

/// The first three columns of the first row of a read-only query (as [`two`]).
#[allow(clippy::type_complexity)]
pub fn three<A, B, C>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<(Option<A>, Option<B>, Option<C>), pgrx::spi::Error>
where
    A: FromDatum + IntoDatum,
    B: FromDatum + IntoDatum,
    C: FromDatum + IntoDatum,
{
    let stmt = statement(sql);
    Spi::connect(|c| {
        let t = c.select(stmt.as_c_str(), Some(1), args)?;
        if t.is_empty() {
            Ok((None, None, None))
        } else {
            t.first().get_three::<A, B, C>()
        }
    })
}

/// The first column of the first row of a statement that may write (e.g. calls setval) and
/// may hold non-ASCII names. (Read-only lookups: `crate::query::one`, which converts too.)
pub fn one_mut<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<T>, pgrx::spi::Error> {
    let stmt = statement(sql);
    Spi::connect_mut(|c| {
        let t = c.update(stmt.as_c_str(), Some(1), args)?;
        if t.is_empty() {
            Ok(None)
        } else {
            t.first().get_one::<T>()
        }
    })
}

// SQL sees `text`, as for String.
pgrx::impl_sql_translatable!(Text, "text");

/// A jsonb argument. pgrx hands jsonb_in UTF-8 text, which a database in another encoding
/// reads as its own; written with every non-ASCII character as a `\uXXXX` escape, the value
/// is ASCII, and jsonb_in turns the escapes into the database's encoding.
pub struct Json(pub serde_json::Value);

/// `value` as JSON text in ASCII (non-ASCII characters, which can only occur inside strings,
/// as `\u` escapes; UTF-16 surrogate pairs above the Basic Multilingual Plane).
pub fn ascii_json(value: &serde_json::Value) -> String {
    let s = value.to_string();
    if s.is_ascii() {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

impl IntoDatum for Json {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let c = CString::new(ascii_json(&self.0)).expect("JSON text holds no NUL byte");
        // SAFETY: jsonb_in reads a NUL-terminated string.
        unsafe {
            pgrx::fcinfo::direct_function_call_as_datum(
                pg_sys::jsonb_in,
                &[Some(pg_sys::Datum::from(c.as_ptr()))],
            )
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// As an argument and a result of a SQL function, as pgrx does for String.
// SAFETY: a text argument is a text varlena, read by `FromDatum`.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for Text {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: as the trait requires.
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(
        arg: pgrx::callconv::Arg<'_, 'fcx>,
    ) -> pgrx::nullable::Nullable<Self> {
        // SAFETY: as the trait requires.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: returns the datum `IntoDatum` made.
unsafe impl pgrx::callconv::BoxRet for Text {
    unsafe fn box_into<'fcx>(
        self,
        fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
    ) -> pgrx::datum::Datum<'fcx> {
        match self.into_datum() {
            // SAFETY: a datum of the function's result type.
            Some(d) => unsafe { fcinfo.return_raw_datum(d) },
            None => fcinfo.return_null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ascii_json;

    #[test]
    fn json_text_is_ascii_with_escapes() {
        let v = serde_json::json!({"label": "été 😀", "n": 1});
        let s = ascii_json(&v);
        assert!(s.is_ascii(), "{s}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
    }
}
