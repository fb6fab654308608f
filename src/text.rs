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

use crate::encoding::{converted, database_encoding};
pub use crate::encoding::{server_bytes_or_escaped, try_to_utf8};

/// Text read from or given to the database, held as UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

fn is_utf8_database() -> bool {
    database_encoding() == pg_sys::pg_enc::PG_UTF8 as i32
}

/// The error for text of the database that is not valid UTF-8, where no object can be named.
pub fn not_utf8() -> crate::error::BackupError {
    crate::error::BackupError::not_utf8(
        "the database holds a name or text that is not valid UTF-8, which pg_backup cannot read",
    )
    .with_hint(
        "A database in SQL_ASCII must hold UTF-8 text in its names and definitions for pg_backup: \
         rename the object (ALTER ... RENAME TO) or leave its schema out of the backup.",
    )
}

/// Bytes that are not UTF-8, shown readably: the UTF-8 parts as they are, every other byte as
/// `\xNN`, quoted.
pub fn shown_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out.push('"');
    out
}

/// The database's bytes as UTF-8 (see [`try_to_utf8`]); bytes that are not are an error
/// (22021, with a HINT).
pub fn to_utf8(bytes: &[u8]) -> String {
    match try_to_utf8(bytes) {
        Some(s) => s,
        None => not_utf8().raise(),
    }
}

/// Text read as the raw bytes the database holds (in its encoding), for a name that may not
/// convert: see [`try_to_utf8`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    pub fn utf8(&self) -> Option<String> {
        try_to_utf8(&self.0)
    }
}

impl FromDatum for Raw {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Raw> {
        if is_null || datum.is_null() {
            return None;
        }
        // SAFETY: a text-like varlena, as for pgrx's own String.
        unsafe {
            let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            let bytes = pgrx::varlena::varlena_to_byte_slice(v).to_vec();
            if v != datum.cast_mut_ptr() {
                pg_sys::pfree(v.cast());
            }
            Some(Raw(bytes))
        }
    }
}

impl IntoDatum for Raw {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        // SAFETY: the pointer and length are those of a live Vec, and
        // cstring_to_text_with_len copies exactly that many bytes (no NUL needed) into a new
        // palloc'd text in the current memory context.
        let t = unsafe {
            pg_sys::cstring_to_text_with_len(self.0.as_ptr().cast(), self.0.len() as i32)
        };
        Some(pg_sys::Datum::from(t))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::TEXTOID
    }
}

/// The name of the current database, as pg_backup records it (manifest, schedules): the bytes
/// of pg_database.datname as UTF-8 when they are (a database created from a UTF-8 client,
/// whatever its own encoding: pg_database is shared by every database of the cluster, and
/// PostgreSQL stores a name as the creating session's bytes), else converted from this
/// database's encoding. Never raises.
pub fn current_database() -> String {
    // SAFETY: MyDatabaseId is set in a connected backend; the name is palloc'd (or NULL).
    let raw = unsafe {
        let p = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if p.is_null() {
            return String::new();
        }
        let v = CStr::from_ptr(p).to_bytes().to_vec();
        pg_sys::pfree(p.cast());
        v
    };
    database_name(&raw)
}

/// A datname's bytes as pg_backup names the database (see [`current_database`]).
pub fn database_name(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => try_to_utf8(raw).unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned()),
    }
}

/// Whether `name` (as a manifest or a schedule records it) names the current database; also
/// the spelling earlier releases recorded (the datname's bytes read in this database's
/// encoding).
pub fn is_current_database(name: &str) -> bool {
    if name == current_database() {
        return true;
    }
    // SAFETY: as in `current_database`.
    let raw = unsafe {
        let p = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if p.is_null() {
            return false;
        }
        let v = CStr::from_ptr(p).to_bytes().to_vec();
        pg_sys::pfree(p.cast());
        v
    };
    try_to_utf8(&raw).as_deref() == Some(name)
}

/// Whether a database that accepts connections is named `name` (as pg_backup names it, see
/// [`current_database`]). Compared in Rust: in SQL, the name's bytes can only be read through
/// a conversion (textsend converts to the client's encoding).
pub fn database_exists(name: &str) -> Result<bool, pgrx::spi::Error> {
    let oids: Vec<pg_sys::Oid> = Spi::connect(|c| {
        c.select(
            "SELECT oid FROM pg_catalog.pg_database WHERE datallowconn",
            None,
            &[],
        )?
        .map(|r| {
            r.get::<pg_sys::Oid>(1)
                .map(|o| o.unwrap_or(pg_sys::InvalidOid))
        })
        .collect::<Result<Vec<_>, _>>()
    })?;
    let here = server_bytes_or_escaped(name);
    Ok(oids.into_iter().any(|oid| {
        // SAFETY: a syscache lookup; the name is palloc'd (or NULL).
        let raw = unsafe {
            let p = pg_sys::get_database_name(oid);
            if p.is_null() {
                return false;
            }
            let v = CStr::from_ptr(p).to_bytes().to_vec();
            pg_sys::pfree(p.cast());
            v
        };
        database_name(&raw) == name || raw == here
    }))
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
        // SAFETY: pgrx unboxes only the non-null elements of an array whose element type is
        // text (the SQL type of Text), which is what from_polymorphic_datum reads.
        unsafe { Text::from_polymorphic_datum(datum.sans_lifetime(), false, pg_sys::TEXTOID) }
            .unwrap_or_default()
    }
}

impl IntoDatum for Text {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let bytes = to_server(&self.0);
        // SAFETY: the pointer and length are those of `bytes`, alive for the call, which
        // copies exactly that many bytes into a new palloc'd text.
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
/// may hold non-ASCII names. (Read-only lookups: `query::one`, which converts too.)
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

/// jsonb read as UTF-8: pgrx's JsonB reads jsonb_out's text (in the database's encoding) as
/// UTF-8 and panics on anything else.
impl FromDatum for Json {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Json> {
        if is_null || datum.is_null() {
            return None;
        }
        // SAFETY: a jsonb datum; jsonb_out returns a palloc'd NUL-terminated string.
        let text = unsafe {
            let out =
                pgrx::fcinfo::direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(datum)])?;
            let p = out.cast_mut_ptr::<std::ffi::c_char>();
            let text = to_utf8(CStr::from_ptr(p).to_bytes());
            pg_sys::pfree(p.cast());
            text
        };
        Some(Json(
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        ))
    }
}

pgrx::impl_sql_translatable!(Json, "jsonb");

/// `$t` as an argument and a result of a SQL function, as pgrx does for String: read and
/// returned through its `FromDatum` / `IntoDatum` (Text and Json convert the encoding there).
macro_rules! argument_and_result {
    ($t:ty) => {
        // SAFETY: an argument of the SQL type `$t` maps to, read by `FromDatum`.
        unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for $t {
            unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
                let index = arg.index();
                // SAFETY: the caller of unbox_arg_unchecked guarantees that `arg` is an
                // argument of this function of the SQL type `$t` maps to, which FromDatum reads;
                // a NULL is refused with a panic (an ERROR), never read.
                unsafe { arg.unbox_arg_using_from_datum() }
                    .unwrap_or_else(|| panic!("argument {index} must not be null"))
            }

            unsafe fn unbox_nullable_arg(
                arg: pgrx::callconv::Arg<'_, 'fcx>,
            ) -> pgrx::nullable::Nullable<Self> {
                // SAFETY: as in unbox_arg_unchecked: an argument of `$t`'s SQL type; NULL
                // comes back as Null, never read.
                unsafe { arg.unbox_arg_using_from_datum() }.into()
            }
        }

        // SAFETY: returns the datum `IntoDatum` made.
        unsafe impl pgrx::callconv::BoxRet for $t {
            unsafe fn box_into<'fcx>(
                self,
                fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
            ) -> pgrx::datum::Datum<'fcx> {
                match self.into_datum() {
                    // SAFETY: `d` is a datum of the function's declared result type (`$t`'s
                    // SQL type), palloc'd in the caller's memory context by IntoDatum.
                    Some(d) => unsafe { fcinfo.return_raw_datum(d) },
                    None => fcinfo.return_null(),
                }
            }
        }
    };
}

argument_and_result!(Json);
argument_and_result!(Text);

#[cfg(test)]
mod tests {
    use super::{ascii_json, shown_bytes};

    #[test]
    fn bytes_that_are_not_utf8_are_shown_readably() {
        assert_eq!(shown_bytes(b"bad\xff"), "\"bad\\xFF\"");
        assert_eq!(shown_bytes("grün\n".as_bytes()), "\"grün\\n\"");
        assert_eq!(shown_bytes(b"\xc3x"), "\"\\xC3x\"");
    }

    #[test]
    fn json_text_is_ascii_with_escapes() {
        let v = serde_json::json!({"label": "été 😀", "n": 1});
        let s = ascii_json(&v);
        assert!(s.is_ascii(), "{s}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
    }
}
