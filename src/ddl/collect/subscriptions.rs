//! Subscriptions, as pg_dump.c's dumpSubscription writes them: created with
//! `connect = false` (no connection to the publisher, no replication slot created, the
//! subscription disabled; the user enables and refreshes it when the publisher side is
//! ready), the slot name they used, and every option that is not the default.
//!
//! The connection string may hold a password: a superuser's secret. Only a whole-database
//! backup taken by a superuser holds subscriptions (pg_subscription's connection strings are
//! for superusers only); another caller's backup leaves them out with a WARNING, as pg_dump
//! does. Restores skip them unless a superuser runs them (restore::policy::superuser_only),
//! and their errors are redacted (the statement holds the secret).

use pgrx::prelude::*;

use super::common::{ident, literal, owner_sql, Collected, Context, Row};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey, Role};
use crate::error::Result;

/// The current database's subscriptions (pg_subscription is a shared catalog).
const IN_THIS_DATABASE: &str =
    "s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())";

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    if !cx.whole_database {
        return Ok(());
    }
    if !cx.superuser {
        let n = Spi::get_one::<i64>(&format!(
            "SELECT pg_catalog.count(*) FROM pg_catalog.pg_subscription s WHERE {IN_THIS_DATABASE}"
        ))?
        .unwrap_or(0);
        if n > 0 {
            pgrx::warning!(
                "pg_backup: {n} subscription(s) not backed up: only a superuser's backup holds subscriptions (their connection strings are superuser secrets)"
            );
        }
        return Ok(());
    }
    let rows = Spi::connect(|client| {
        client
            .select(
                &format!(
                    "SELECT s.tableoid, s.oid, s.subname::pg_catalog.text,
                            pg_catalog.pg_get_userbyid(s.subowner)::pg_catalog.text, s.subconninfo,
                            s.subslotname::pg_catalog.text, s.subsynccommit, s.subpublications,
                            s.subbinary, s.substream, s.subtwophasestate <> 'd', s.subdisableonerr,
                            (SELECT d.description FROM pg_catalog.pg_shdescription d
                             WHERE d.classoid = s.tableoid AND d.objoid = s.oid),
                            (SELECT pg_catalog.array_agg(pg_catalog.format('SECURITY LABEL FOR %I ON SUBSCRIPTION %I IS %L;',
                                                                           l.provider, s.subname, l.label) ORDER BY l.provider)
                             FROM pg_catalog.pg_shseclabel l WHERE l.classoid = s.tableoid AND l.objoid = s.oid)
                     FROM pg_catalog.pg_subscription s WHERE {IN_THIS_DATABASE} ORDER BY s.subname"
                ),
                None,
                &[],
            )?
            .map(|r| {
                let r = Row(&r);
                Ok(Subscription {
                    class: r.oid(1)?,
                    oid: r.oid(2)?,
                    name: r.string(3)?,
                    owner: r.string(4)?,
                    conninfo: r.string(5)?,
                    slot: r.text(6)?,
                    synchronous_commit: r.string(7)?,
                    publications: r.texts(8)?,
                    binary: r.bool(9)?,
                    streaming: r.bool(10)?,
                    two_phase: r.bool(11)?,
                    disable_on_error: r.bool(12)?,
                    comment: r.text(13)?,
                    labels: r.texts(14)?,
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;
    for s in rows {
        let key = ObjKey::new(s.class, s.oid);
        let name = ident(&s.name);
        // Decorations run with their object, in post-data.
        let post = |mut n: Node| {
            n.section = crate::archive::toc::Section::PostData;
            n
        };
        if let Some(c) = &s.comment {
            out.push(post(
                Node::new(
                    key.with(Role::Comment),
                    EntryKind::Comment,
                    None,
                    &format!("SUBSCRIPTION {name}"),
                    format!("COMMENT ON SUBSCRIPTION {name} IS {};", literal(c)),
                )
                .of(key),
            ));
        }
        if !s.labels.is_empty() {
            out.push(post(
                Node::new(
                    key.with(Role::SecurityLabel),
                    EntryKind::SecurityLabel,
                    None,
                    &format!("SUBSCRIPTION {name}"),
                    s.labels.join("\n"),
                )
                .of(key),
            ));
        }
        out.push(
            Node::new(key, EntryKind::Subscription, None, &s.name, s.create_sql()).owned(
                Some(s.owner.clone()),
                Some(owner_sql("SUBSCRIPTION", &name, &s.owner)),
            ),
        );
    }
    Ok(())
}

struct Subscription {
    class: u32,
    oid: u32,
    name: String,
    owner: String,
    conninfo: String,
    slot: Option<String>,
    synchronous_commit: String,
    publications: Vec<String>,
    binary: bool,
    streaming: bool,
    two_phase: bool,
    disable_on_error: bool,
    comment: Option<String>,
    labels: Vec<String>,
}

impl Subscription {
    /// pg_dump's statement, option for option.
    fn create_sql(&self) -> String {
        self.create_sql_quoted(&|s| ident(s), &|s| literal(s))
    }

    /// `create_sql` with the quoting functions given (plain Rust tests have no server).
    fn create_sql_quoted(
        &self,
        ident: &dyn Fn(&str) -> String,
        literal: &dyn Fn(&str) -> String,
    ) -> String {
        let publications: Vec<String> = self.publications.iter().map(|p| ident(p)).collect();
        let mut options = format!(
            "connect = false, slot_name = {}",
            self.slot
                .as_deref()
                .map(literal)
                .unwrap_or_else(|| "NONE".into())
        );
        if self.binary {
            options.push_str(", binary = true");
        }
        if self.streaming {
            options.push_str(", streaming = on");
        }
        if self.two_phase {
            options.push_str(", two_phase = on");
        }
        if self.disable_on_error {
            options.push_str(", disable_on_error = true");
        }
        if self.synchronous_commit != "off" {
            options.push_str(&format!(
                ", synchronous_commit = {}",
                ident(&self.synchronous_commit)
            ));
        }
        format!(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH ({options});",
            ident(&self.name),
            literal(&self.conninfo),
            publications.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Subscription;

    fn sub() -> Subscription {
        Subscription {
            class: 6100,
            oid: 1,
            name: "s".into(),
            owner: "o".into(),
            conninfo: "dbname=x password='it''s'".into(),
            slot: Some("s".into()),
            synchronous_commit: "off".into(),
            publications: vec!["p".into(), "Pub B".into()],
            binary: false,
            streaming: false,
            two_phase: false,
            disable_on_error: false,
            comment: None,
            labels: vec![],
        }
    }

    fn sql(s: &Subscription) -> String {
        let ident = |x: &str| {
            if x.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                x.to_string()
            } else {
                format!("\"{}\"", x.replace('"', "\"\""))
            }
        };
        let literal = |x: &str| format!("'{}'", x.replace('\'', "''"));
        s.create_sql_quoted(&ident, &literal)
    }

    #[test]
    fn defaults_are_left_out_and_the_rest_written_as_pg_dump_does() {
        let s = sub();
        assert_eq!(
            sql(&s),
            "CREATE SUBSCRIPTION s CONNECTION 'dbname=x password=''it''''s''' PUBLICATION p, \"Pub B\" WITH (connect = false, slot_name = 's');"
        );
        let mut all = sub();
        all.slot = None;
        all.binary = true;
        all.streaming = true;
        all.two_phase = true;
        all.disable_on_error = true;
        all.synchronous_commit = "local".into();
        let sql = sql(&all);
        assert!(
            sql.ends_with("slot_name = NONE, binary = true, streaming = on, two_phase = on, disable_on_error = true, synchronous_commit = local);"),
            "{sql}"
        );
        assert!(sql.contains("PUBLICATION p, \"Pub B\" WITH"), "{sql}");
    }
}
