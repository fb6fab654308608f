//! Tests that run inside a pgrx-managed PostgreSQL 15 (`cargo pgrx test`).

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn extension_is_installed() {
        let n = Spi::get_one::<i64>("SELECT count(*) FROM backup.backups").unwrap();
        assert_eq!(n, Some(0));
    }
}
