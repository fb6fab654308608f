//! An archive of an older PostgreSQL major version, restored on a newer one (issue 19): the
//! SQL the older server wrote, adapted where the newer one no longer takes it, the way a newer
//! pg_dump adapts what it reads from an older server. Keyed on the archive's major version
//! (`version::check`) and on what this server knows; applied to the TOC as soon as the archive
//! is opened, so that every check of a statement (restore/statements.rs) sees the adapted text
//! and nothing else.
//!
//! Settings this server no longer has, stored in a function's or procedure's `SET` clauses
//! (`pg_get_functiondef`'s ` SET name TO value` lines) and in the database's own settings
//! (`ALTER DATABASE ... SET` / `ALTER ROLE ... IN DATABASE ... SET`): a setting renamed since
//! ([`RENAMED`], e.g. `force_parallel_mode` → `debug_parallel_query` in 16) takes its new
//! name; one this server does not know at all (e.g. `vacuum_defer_cleanup_age`, removed in 16)
//! is left out, and the restore says so (a WARNING and the history row's notes). pg_dump |
//! pg_restore of a newer version carries such a clause unchanged, and the newer server refuses
//! the whole statement ("unrecognized configuration parameter"): the function, and what
//! depends on it, is not restored. Custom settings (`name.with.a.dot`) are never touched.

use crate::archive::kind::EntryKind;
use crate::archive::toc::TocEntry;

/// Settings renamed by a PostgreSQL release: (old name, the major version that renamed it,
/// new name).
pub const RENAMED: &[(&str, u32, &str)] = &[("force_parallel_mode", 16, "debug_parallel_query")];

/// What this server knows of a setting name (a core setting or a loaded module's).
pub trait Settings {
    fn known(&self, name: &str) -> bool;
}

impl<F: Fn(&str) -> bool> Settings for F {
    fn known(&self, name: &str) -> bool {
        self(name)
    }
}

/// What became of one setting of the archive.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Kept,
    Renamed(&'static str),
    Dropped,
}

fn fate(name: &str, archive_major: u32, server_major: u32, settings: &dyn Settings) -> Fate {
    // A custom setting (a module's, or a placeholder) is whatever the archive says.
    if name.contains('.') {
        return Fate::Kept;
    }
    let renamed = RENAMED
        .iter()
        .find(|(old, at, _)| *old == name && archive_major < *at && *at <= server_major)
        .map(|(_, _, new)| *new);
    match renamed {
        Some(new) if settings.known(new) => Fate::Renamed(new),
        _ if settings.known(name) => Fate::Kept,
        _ => Fate::Dropped,
    }
}

/// Adapt the TOC of an archive written on `archive_major` for this server
/// (`server_major`); the notes say what was changed, one per setting (nothing when the
/// versions are the same).
pub fn adapt(
    toc: &mut [TocEntry],
    archive_major: u32,
    server_major: u32,
    settings: &dyn Settings,
) -> Vec<String> {
    let mut notes = Vec::new();
    if archive_major >= server_major {
        return notes;
    }
    for e in toc.iter_mut() {
        let adapted = match e.kind {
            EntryKind::Function | EntryKind::Procedure => {
                function_settings(&e.sql, archive_major, server_major, settings)
            }
            EntryKind::Database => database_settings(&e.sql, archive_major, server_major, settings),
            _ => None,
        };
        if let Some((sql, changes)) = adapted {
            let what = e.object();
            for (name, f) in changes {
                notes.push(match f {
                    Fate::Renamed(new) => format!(
                        "{what}: setting {name} (PostgreSQL {archive_major}) is restored as {new}, its name since PostgreSQL {}",
                        RENAMED.iter().find(|r| r.0 == name).map_or(0, |r| r.1)
                    ),
                    _ => format!(
                        "{what}: setting {name} of PostgreSQL {archive_major} is left out: PostgreSQL {server_major} does not have it"
                    ),
                });
            }
            e.sql = sql;
        }
    }
    notes
}

/// A setting name as `quote_identifier` wrote it (GUC names are plain identifiers; a custom
/// one with a dot comes quoted, and is kept as it is anyway).
fn plain_name(s: &str) -> Option<(&str, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

/// `pg_get_functiondef`'s text: its header lines (after the first, each starts with a space;
/// the body starts with `AS `, `BEGIN ATOMIC` or `RETURN`) may hold ` SET name TO value`.
fn function_settings(
    sql: &str,
    archive_major: u32,
    server_major: u32,
    settings: &dyn Settings,
) -> Option<(String, Vec<(String, Fate)>)> {
    let mut in_header = true;
    let mut first = true;
    rewrite_settings(sql, archive_major, server_major, settings, |line| {
        if !first && !line.starts_with(' ') {
            in_header = false;
        }
        first = false;
        (in_header && line.starts_with(" SET ")).then_some(" SET ".len())
    })
}

/// The database entry (collect/database.rs): one statement a line, each a `DO` block that runs
/// `ALTER DATABASE %I SET name TO ...` or `ALTER ROLE r IN DATABASE %I SET name TO ...` (or a
/// COMMENT). A line of a setting this server does not have is left out.
fn database_settings(
    sql: &str,
    archive_major: u32,
    server_major: u32,
    settings: &dyn Settings,
) -> Option<(String, Vec<(String, Fate)>)> {
    rewrite_settings(sql, archive_major, server_major, settings, |line| {
        line.find("('ALTER DATABASE %I SET ")
            .map(|i| i + "('ALTER DATABASE %I SET ".len())
            .or_else(|| {
                line.starts_with("DO ")
                    .then(|| line.find(" IN DATABASE %I SET "))
                    .flatten()
                    .map(|i| i + " IN DATABASE %I SET ".len())
            })
    })
}

/// `sql` line by line: where `name_at` finds a setting's name (`name TO value` from that
/// byte on), a renamed setting takes its new name and a line of one this server does not
/// have is left out. None when nothing changed.
fn rewrite_settings(
    sql: &str,
    archive_major: u32,
    server_major: u32,
    settings: &dyn Settings,
    mut name_at: impl FnMut(&str) -> Option<usize>,
) -> Option<(String, Vec<(String, Fate)>)> {
    let mut out: Vec<String> = Vec::new();
    let mut changes = Vec::new();
    for line in sql.split('\n') {
        let set =
            name_at(line).and_then(|at| plain_name(&line[at..]).map(|(n, rest)| (at, n, rest)));
        if let Some((at, name, rest)) = set.filter(|(_, _, rest)| rest.starts_with(" TO ")) {
            match fate(name, archive_major, server_major, settings) {
                Fate::Kept => {}
                Fate::Renamed(new) => {
                    out.push(format!("{}{new}{rest}", &line[..at]));
                    changes.push((name.to_string(), Fate::Renamed(new)));
                    continue;
                }
                Fate::Dropped => {
                    changes.push((name.to_string(), Fate::Dropped));
                    continue;
                }
            }
        }
        out.push(line.to_string());
    }
    (!changes.is_empty()).then(|| (out.join("\n"), changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings of PostgreSQL 18 (as far as these tests go).
    fn pg18(name: &str) -> bool {
        [
            "debug_parallel_query",
            "work_mem",
            "search_path",
            "statement_timeout",
        ]
        .contains(&name)
    }

    fn entry(kind: EntryKind, sql: &str) -> TocEntry {
        let mut e = crate::archive::manifest::sample().toc.remove(0);
        e.kind = kind;
        e.name = "f()".into();
        e.sql = sql.into();
        e
    }

    const FUNCTION: &str = "CREATE OR REPLACE FUNCTION public.f()\n RETURNS integer\n LANGUAGE plpgsql\n SET force_parallel_mode TO 'on'\n SET vacuum_defer_cleanup_age TO '5'\n SET work_mem TO '64MB'\n SET \"my.setting\" TO 'x'\nAS $function$\nBEGIN\n SET vacuum_defer_cleanup_age TO 1;\n RETURN 1;\nEND\n$function$\n;";

    #[test]
    fn settings_a_newer_server_renamed_or_removed_are_adapted_in_functions() {
        let mut toc = vec![entry(EntryKind::Function, FUNCTION)];
        let notes = adapt(&mut toc, 15, 18, &pg18);
        assert_eq!(
            toc[0].sql,
            "CREATE OR REPLACE FUNCTION public.f()\n RETURNS integer\n LANGUAGE plpgsql\n SET debug_parallel_query TO 'on'\n SET work_mem TO '64MB'\n SET \"my.setting\" TO 'x'\nAS $function$\nBEGIN\n SET vacuum_defer_cleanup_age TO 1;\n RETURN 1;\nEND\n$function$\n;",
            "the body is never touched"
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("force_parallel_mode") && notes[0].contains("debug_parallel_query")
        );
        assert!(notes[1].contains("vacuum_defer_cleanup_age") && notes[1].contains("left out"));
    }

    #[test]
    fn nothing_changes_on_the_same_major_version_or_for_known_settings() {
        let mut toc = vec![entry(EntryKind::Function, FUNCTION)];
        assert!(adapt(&mut toc, 18, 18, &pg18).is_empty());
        // An archive of 16 or later never had force_parallel_mode: no rename, only unknown.
        let notes = adapt(&mut toc, 16, 18, &|n: &str| {
            n != "vacuum_defer_cleanup_age" && n != "force_parallel_mode"
        });
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes.iter().all(|n| n.contains("left out")), "{notes:?}");
        assert!(!toc[0].sql.contains("debug_parallel_query"));
        let mut toc = vec![entry(EntryKind::Function, FUNCTION)];
        assert!(adapt(&mut toc, 15, 18, &|_: &str| true)
            .iter()
            .all(|n| n.contains("force_parallel_mode")));
        assert!(toc[0].sql.contains("vacuum_defer_cleanup_age TO '5'"));
        // Other kinds are not read.
        let mut toc = vec![entry(EntryKind::View, FUNCTION)];
        assert!(adapt(&mut toc, 15, 18, &pg18).is_empty());
        assert_eq!(toc[0].sql, FUNCTION);
    }

    #[test]
    fn database_settings_a_newer_server_does_not_have_are_left_out() {
        let sql = [
            "DO $_$BEGIN EXECUTE pg_catalog.format('COMMENT ON DATABASE %I IS ''SET x TO y''', pg_catalog.current_database()); END$_$ LANGUAGE plpgsql;",
            "DO $_$BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET vacuum_defer_cleanup_age TO ''5''', pg_catalog.current_database()); END$_$ LANGUAGE plpgsql;",
            "DO $_$BEGIN EXECUTE pg_catalog.format('ALTER ROLE alice IN DATABASE %I SET force_parallel_mode TO ''on''', pg_catalog.current_database()); END$_$ LANGUAGE plpgsql;",
            "DO $_$BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET work_mem TO ''8MB''', pg_catalog.current_database()); END$_$ LANGUAGE plpgsql;",
        ]
        .join("\n");
        let mut toc = vec![entry(EntryKind::Database, &sql)];
        let notes = adapt(&mut toc, 15, 18, &pg18);
        let lines: Vec<&str> = toc[0].sql.lines().collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains("COMMENT ON DATABASE"));
        assert!(lines[1].contains("IN DATABASE %I SET debug_parallel_query TO ''on''"));
        assert!(lines[2].contains("SET work_mem"));
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}
