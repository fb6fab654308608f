#!/usr/bin/env bash
# make demo: a real backup, verify and restore on a server this script starts.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
DEMO=$here/target/demo
PGDATA_DIR=$DEMO/data SOCK_DIR=$DEMO/sock PGPORT=${DEMO_PORT:-54329}
. "$here/scripts/local-server.sh"
start_server
psql -q -d postgres -c "CREATE DATABASE shop"
psql -q -d shop -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION pg_backup;
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, joined date);
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     customer int REFERENCES customers, total numeric(10,2) CHECK (total >= 0),
                     placed timestamptz DEFAULT now(), items jsonb);
INSERT INTO customers (name, email, joined)
  SELECT 'customer ' || g, 'c' || g || '@example.com', date '2020-01-01' + g % 1500 FROM generate_series(1, 5000) g;
INSERT INTO orders (customer, total, items)
  SELECT g % 5000 + 1, (g % 997) / 3.0, jsonb_build_array(jsonb_build_object('sku', g % 50, 'qty', 1 + g % 4))
  FROM generate_series(1, 50000) g;
CREATE INDEX ON orders (customer);
CREATE VIEW big_spenders AS SELECT customer, sum(total) FROM orders GROUP BY customer HAVING sum(total) > 3000;
SQL
echo "== SELECT * FROM backup.create(label => 'demo');"
psql -d shop -c "SELECT * FROM backup.create(label => 'demo')"
echo "== SELECT * FROM backup.verify();"
psql -d shop -c "SELECT backup_id, file, status, bytes FROM backup.verify()"
echo "== SELECT * FROM backup.backups;"
psql -d shop -x -c "SELECT id, status, kind, compression, table_count, row_count, bytes, finished_at - started_at AS took, path FROM backup.backups"
echo "== restore it into a new database: CREATE EXTENSION pg_backup; SELECT * FROM backup.restore(id);"
psql -q -d postgres -c "CREATE DATABASE shop_copy"
psql -q -d shop_copy -c "CREATE EXTENSION pg_backup"
id=$(psql -Atq -d shop -c "SELECT id FROM backup.backups WHERE label = 'demo'")
psql -d shop_copy -c "SELECT object, kind, action, rows, status FROM backup.restore('$id') WHERE kind IN ('table', 'table_data', 'view')"
psql -d shop_copy -c "SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM big_spenders) AS big_spenders"
echo "== the archive on disk"
find "$PGDATA_DIR/pg_backup" -type f | sed "s|$PGDATA_DIR/||" | sort
cat <<MSG

The demo server is still running. Connect with:
  psql -h $SOCK_DIR -p $PGPORT -d shop
(as root: runuser -u pgtest -- psql -h $SOCK_DIR -p $PGPORT -d shop)
Stop it with:
  $BIN/pg_ctl -D $PGDATA_DIR stop
MSG
