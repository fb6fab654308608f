//! A real PostgreSQL 15 for end-to-end tests: its own data directory, port and socket
//! directory, `shared_preload_libraries = 'pg_backup'`, driven from outside as users would.
//! Besides starting one, it can crash it (kill -9 of a backend, an immediate stop), restart it,
//! and make a hot standby of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

pub mod signing;
pub use signing::resign;

/// A PostgreSQL program of $PG_CONFIG's installation (the one `make test` installed the
/// extension into).
pub fn bin(program: &str) -> String {
    static BINDIR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let pg_config = std::env::var("PG_CONFIG")
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into());
        let out = Command::new(&pg_config)
            .arg("--bindir")
            .output()
            .unwrap_or_else(|e| panic!("{pg_config}: {e}"));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    });
    format!("{}/{program}", *BINDIR)
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
}

static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

fn next_port() -> u16 {
    // Sockets live in each server's own directory, so ports only need to differ within a run.
    let n = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    20000 + ((std::process::id() % 2000) * 10) as u16 + n % 10
}

impl Server {
    /// A new cluster with database `app` holding the extension. `extra_conf` comes last in
    /// postgresql.auto.conf, so it overrides the defaults here.
    pub fn start(extra_conf: &str) -> Server {
        let s = Server::init(extra_conf);
        s.pg_ctl_start();
        s.connect("postgres")
            .batch_execute("CREATE DATABASE app")
            .unwrap();
        s.connect("app")
            .batch_execute("CREATE EXTENSION pg_backup")
            .unwrap();
        s
    }

    fn init(extra_conf: &str) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("pg_backup_e2e")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let socket = dir.path().to_path_buf();
        let port = next_port();
        run(Command::new(bin("initdb"))
            .args(["-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
            .arg(&data));
        let conf = format!(
            "port = {port}\nunix_socket_directories = '{}'\nlisten_addresses = ''\n\
             shared_preload_libraries = 'pg_backup'\nfsync = off\nmax_worker_processes = 16\n{extra_conf}\n",
            socket.display()
        );
        std::fs::write(data.join("postgresql.auto.conf"), conf).unwrap();
        Server {
            dir,
            data,
            socket,
            port,
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// A new cluster as `start` makes it, its server started with `env` in its environment
    /// (e.g. RUST_BACKTRACE=1, to show that no backtrace reaches a client even then).
    pub fn start_with_env(extra_conf: &str, env: &[(&str, &str)]) -> Server {
        let s = Server::init(extra_conf);
        s.pg_ctl_start_with(env);
        s.connect("postgres")
            .batch_execute("CREATE DATABASE app")
            .unwrap();
        s.connect("app")
            .batch_execute("CREATE EXTENSION pg_backup")
            .unwrap();
        s
    }

    pub fn pg_ctl_start(&self) {
        self.pg_ctl_start_with(&[]);
    }

    fn pg_ctl_start_with(&self, env: &[(&str, &str)]) {
        // The server's environment is the test's choice only: none of the RUST_* variables
        // of the shell that runs the tests.
        run(Command::new(bin("pg_ctl"))
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .envs(env.iter().copied())
            .args(["-w", "-t", "120", "-l"])
            .arg(self.log())
            .arg("-D")
            .arg(&self.data)
            .arg("start"));
    }

    pub fn stop(&self, mode: &str) {
        run(Command::new(bin("pg_ctl"))
            .args(["-w", "-m", mode, "-D"])
            .arg(&self.data)
            .arg("stop"));
    }

    /// After a kill -9 of a backend the postmaster restarts everything by itself: wait until
    /// it has (its log says it reinitialized; until then the old processes may still accept a
    /// connection that the restart then resets), then until connections are accepted again.
    pub fn wait_ready(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .contains("terminated; reinitializing")
        {
            assert!(Instant::now() < deadline, "the server did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
        loop {
            if let Ok(mut c) = Client::connect(&self.conn_str("postgres", None), NoTls) {
                if c.simple_query("SELECT 1").is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the server did not come back");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn conn_str(&self, db: &str, user: Option<&str>) -> String {
        let me = std::env::var("USER").unwrap_or_else(|_| "pgtest".into());
        format!(
            "host={} port={} dbname={db} user={}",
            self.socket.display(),
            self.port,
            user.unwrap_or(&me)
        )
    }

    pub fn connect(&self, db: &str) -> Client {
        Client::connect(&self.conn_str(db, None), NoTls).unwrap()
    }

    pub fn connect_as(&self, db: &str, user: &str) -> Client {
        Client::connect(&self.conn_str(db, Some(user)), NoTls).unwrap()
    }

    pub fn backup_dir(&self) -> PathBuf {
        self.data.join("pg_backup")
    }

    /// A hot standby of this server (streaming replication), started.
    pub fn standby(&self) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("pg_backup_standby")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let socket = dir.path().to_path_buf();
        let port = next_port();
        run(Command::new(bin("pg_basebackup"))
            .args(["-R", "-X", "stream", "-c", "fast", "-h"])
            .arg(&self.socket)
            .args(["-p", &self.port.to_string(), "-D"])
            .arg(&data));
        let mut conf = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
        conf.push_str(&format!(
            "port = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n",
            socket.display()
        ));
        std::fs::write(data.join("postgresql.auto.conf"), conf).unwrap();
        let s = Server {
            dir,
            data,
            socket,
            port,
        };
        s.pg_ctl_start();
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(bin("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
    }
}

pub fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}

pub fn hint(e: &postgres::Error) -> Option<String> {
    e.as_db_error().and_then(|d| d.hint()).map(str::to_string)
}

pub fn message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// The one bigint `sql` returns.
pub fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// The one text `sql` returns.
pub fn text(c: &mut Client, sql: &str) -> String {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// Poll `sql` (one bigint) until it reaches `want`, for at most `secs` seconds.
pub fn wait_for(c: &mut Client, sql: &str, want: i64, secs: u64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = count(c, sql);
        if n >= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A backup taken with `options` (SQL named arguments); its id.
pub fn create(c: &mut Client, options: &str) -> String {
    c.query_one(
        &format!("SELECT backup_id FROM backup.create({options})"),
        &[],
    )
    .unwrap()
    .get(0)
}

/// A new database `db` with pg_backup, knowing the archives of the directory.
pub fn fresh_database(s: &Server, db: &str, create_options: &str) -> Client {
    s.connect("postgres")
        .batch_execute(&format!("CREATE DATABASE {db} {create_options}"))
        .unwrap();
    let mut c = s.connect(db);
    c.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    c
}

/// Send a signal to a process of the server (the test runs as the server's user).
pub fn kill(pid: i32, signal: i32) {
    // SAFETY: a plain syscall.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
}

/// Wait until a running backup with `label` has a row; its id and pid.
pub fn wait_running(c: &mut Client, label: &str, secs: u64) -> (String, i32) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let rows = c
            .query(
                "SELECT id, pid FROM backup.backups WHERE label = $1 AND status = 'running'",
                &[&label],
            )
            .unwrap();
        if let Some(r) = rows.first() {
            return (r.get(0), r.get(1));
        }
        assert!(Instant::now() < deadline, "backup {label} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
