//! The one harness of the end-to-end test targets (e2e, restore_safety, storage, fidelity,
//! regression, reliability, upgrade): a real PostgreSQL 15 of their own, driven from outside
//! as users would, and the helpers every target needs.
//!
//! - [`Server`]: its own data directory, socket directory and a port the OS hands out,
//!   `shared_preload_libraries = 'pg_backup'`, database `app` holding the extension. Built by
//!   [`Server::builder`] (extra postgresql.conf lines, environment, initdb locale, the binaries
//!   of another installation); it can be stopped, restarted, crashed, and given a hot standby.
//! - Errors as a client sees them: [`sqlstate`], [`hint`], [`message`], [`describe`], and
//!   [`expect_err`], which asserts a statement's SQLSTATE and returns the error.
//! - Values: [`one`], [`count`], [`text`], [`strings`], polling with [`wait_for`] / [`wait_until`].
//! - pg_backup: [`create`], [`fresh_database`], [`wait_running`]; the operator roles
//!   ([`add_operator`], [`add_operator_in_public`]).
#![allow(dead_code)] // each test target uses its own part of this module

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

pub mod signing;
pub mod stores;
pub mod upgrade;
#[allow(unused_imports)]
pub use signing::resign;

/// The end-to-end tests run only under `make test` (PG_BACKUP_E2E=1, after the extension was
/// installed); `cargo pgrx test` builds every test target too.
pub fn enabled() -> bool {
    let on = std::env::var("PG_BACKUP_E2E").as_deref() == Ok("1");
    if !on {
        eprintln!("skipped: set PG_BACKUP_E2E=1 (make test does) to run the end-to-end tests");
    }
    on
}

/// The bin directory of $PG_CONFIG's installation (the one `make test` installed the extension
/// into), else of the system's PostgreSQL 15.
fn default_bindir() -> PathBuf {
    static BINDIR: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
        let pg_config = std::env::var("PG_CONFIG")
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into());
        let out = Command::new(&pg_config)
            .arg("--bindir")
            .output()
            .unwrap_or_else(|e| panic!("{pg_config}: {e}"));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    });
    BINDIR.clone()
}

/// A PostgreSQL program of $PG_CONFIG's installation.
pub fn bin(program: &str) -> String {
    default_bindir().join(program).display().to_string()
}

/// Run `cmd`, which must succeed; its stdout.
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

/// A port no one listens on now: the OS hands out a free one for 127.0.0.1:0, and it is
/// released at once for the server to take (a rare race with another process is caught by
/// [`Server`]'s start, which then tries another).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bootstrap superuser of the test's cluster: the Unix user running the tests.
pub fn superuser() -> String {
    std::env::var("USER").unwrap_or_else(|_| "pgtest".into())
}

/// How many times a start is tried with a new port when the port turned out taken.
const START_ATTEMPTS: usize = 5;

/// What a [`Server`] is made of; [`Server::builder`].
pub struct ServerBuilder {
    conf: String,
    env: Vec<(String, String)>,
    c_locale: bool,
    initdb_args: Vec<String>,
    bindir: PathBuf,
    app: bool,
}

impl ServerBuilder {
    /// Lines for postgresql.auto.conf; they come last, so they override the defaults.
    pub fn conf(mut self, lines: &str) -> Self {
        self.conf.push_str(lines);
        self.conf.push('\n');
        self
    }

    /// A variable in the server's environment (e.g. RUST_BACKTRACE=1, to show that no
    /// backtrace reaches a client even then). Otherwise the server has none of the RUST_*
    /// variables of the shell running the tests.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// initdb with the locale of the environment (LANG, LC_*), not `--locale=C`.
    pub fn inherit_locale(mut self) -> Self {
        self.c_locale = false;
        self
    }

    /// One more initdb argument (e.g. `--no-data-checksums`, for a cluster that pg_upgrade
    /// fills from an older one initialized without checksums).
    pub fn initdb_arg(mut self, arg: &str) -> Self {
        self.initdb_args.push(arg.into());
        self
    }

    /// The programs (and so the pg_backup build) of another installation.
    pub fn bindir(mut self, dir: PathBuf) -> Self {
        self.bindir = dir;
        self
    }

    /// No database `app`: the cluster as initdb made it.
    pub fn without_app(mut self) -> Self {
        self.app = false;
        self
    }

    /// initdb, start (on a port the OS hands out), and database `app` with pg_backup.
    pub fn start(self) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("pg_backup_e2e")
            .tempdir()
            .unwrap();
        let mut s = Server {
            data: dir.path().join("data"),
            socket: dir.path().to_path_buf(),
            dir,
            port: 0,
            bindir: self.bindir,
        };
        let mut initdb = Command::new(s.bin("initdb"));
        initdb.args(["-A", "trust", "-E", "UTF8"]);
        if self.c_locale {
            initdb.arg("--locale=C");
        }
        initdb.args(&self.initdb_args);
        run(initdb.args(["--no-sync", "-D"]).arg(&s.data));
        let socket = s.socket.display().to_string();
        let extra = self.conf;
        s.launch(&self.env, |port| {
            format!(
                "port = {port}\nunix_socket_directories = '{socket}'\nlisten_addresses = ''\n\
                 shared_preload_libraries = 'pg_backup'\nfsync = off\nmax_worker_processes = 16\n{extra}"
            )
        });
        if self.app {
            s.connect("postgres")
                .batch_execute("CREATE DATABASE app")
                .unwrap();
            s.connect("app")
                .batch_execute("CREATE EXTENSION pg_backup")
                .unwrap();
        }
        s
    }
}

/// A running PostgreSQL of a test, stopped (immediately) when dropped.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    bindir: PathBuf,
}

impl Server {
    /// initdb `--locale=C` and the defaults; see [`ServerBuilder`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            conf: String::new(),
            env: Vec::new(),
            c_locale: true,
            initdb_args: Vec::new(),
            bindir: default_bindir(),
            app: true,
        }
    }

    /// A new cluster (initdb --locale=C) with database `app` holding the extension.
    /// `extra_conf` comes last in postgresql.auto.conf, so it overrides the defaults.
    pub fn start(extra_conf: &str) -> Server {
        Server::builder().conf(extra_conf).start()
    }

    /// As [`Server::start`], initdb with the locale of the environment.
    pub fn start_in_env_locale(extra_conf: &str) -> Server {
        Server::builder().inherit_locale().conf(extra_conf).start()
    }

    /// As [`Server::start`], the server started with `env` in its environment.
    pub fn start_with_env(extra_conf: &str, env: &[(&str, &str)]) -> Server {
        env.iter()
            .fold(Server::builder().conf(extra_conf), |b, (k, v)| b.env(k, v))
            .start()
    }

    /// Write postgresql.auto.conf (`conf` of a port) and start on a port the OS hands out;
    /// when the start fails because the port was taken meanwhile, again on another.
    fn launch(&mut self, env: &[(String, String)], conf: impl Fn(u16) -> String) {
        for attempt in 1..=START_ATTEMPTS {
            self.port = free_port();
            std::fs::write(self.data.join("postgresql.auto.conf"), conf(self.port)).unwrap();
            let out = self.pg_ctl_start_command(env).output().unwrap();
            if out.status.success() {
                return;
            }
            let log = self.log_text();
            let taken = ["Address already in use", "could not create lock file"]
                .iter()
                .any(|m| log.contains(m));
            assert!(
                taken && attempt < START_ATTEMPTS,
                "pg_ctl start: {}{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The bin directory of this server's installation.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// A program of this server's installation.
    pub fn bin(&self, program: &str) -> PathBuf {
        self.bindir.join(program)
    }

    /// A PostgreSQL client program with this server's socket and port.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin(program));
        c.arg("-h")
            .arg(&self.socket)
            .args(["-p", &self.port.to_string()]);
        c
    }

    /// The server's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn pg_ctl_start_command(&self, env: &[(String, String)]) -> Command {
        // The server's environment is the test's choice only: none of the RUST_* variables
        // of the shell that runs the tests.
        let mut c = Command::new(self.bin("pg_ctl"));
        c.env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["-w", "-t", "120", "-l"])
            .arg(self.log())
            .arg("-D")
            .arg(&self.data)
            .arg("start");
        c
    }

    /// Start again (after [`Server::stop`]), on the same port.
    pub fn pg_ctl_start(&self) {
        run(&mut self.pg_ctl_start_command(&[]));
    }

    /// `pg_ctl stop -m mode`.
    pub fn stop(&self, mode: &str) {
        run(Command::new(self.bin("pg_ctl"))
            .args(["-w", "-m", mode, "-D"])
            .arg(&self.data)
            .arg("stop"));
    }

    /// Stop (fast), switch to the programs of `bindir` (a new package installed over the
    /// old), start again on the same data directory.
    pub fn switch_to(&mut self, bindir: PathBuf) {
        self.stop("fast");
        self.bindir = bindir;
        self.pg_ctl_start();
    }

    /// After a kill -9 of a backend the postmaster restarts everything by itself: wait until
    /// it has (its log says it reinitialized; until then the old processes may still accept a
    /// connection that the restart then resets), then until connections are accepted again.
    pub fn wait_ready(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.log_text().contains("terminated; reinitializing") {
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

    /// A libpq connection string to `db` as `user` (else the bootstrap superuser).
    pub fn conn_str(&self, db: &str, user: Option<&str>) -> String {
        format!(
            "host={} port={} dbname={db} user={}",
            self.socket.display(),
            self.port,
            user.map(str::to_string).unwrap_or_else(superuser)
        )
    }

    /// A session of the bootstrap superuser.
    pub fn connect(&self, db: &str) -> Client {
        Client::connect(&self.conn_str(db, None), NoTls).unwrap()
    }

    /// A session of `user`.
    pub fn connect_as(&self, db: &str, user: &str) -> Client {
        Client::connect(&self.conn_str(db, Some(user)), NoTls).unwrap()
    }

    /// backup.directory's default: `pg_backup` in the data directory.
    pub fn backup_dir(&self) -> PathBuf {
        self.data.join("pg_backup")
    }

    /// An empty database (from template0, as pg_dump's restore instructions say), dropped
    /// first if it exists.
    pub fn create_db(&self, db: &str) {
        let mut c = self.connect("postgres");
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {db} TEMPLATE template0"))
            .unwrap();
    }

    /// `psql -f file` into `db`, stopping at the first error.
    pub fn psql_file(&self, db: &str, file: &Path) {
        run(self
            .client("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f"])
            .arg(file));
    }

    /// A hot standby of this server (streaming replication), started.
    pub fn standby(&self) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("pg_backup_standby")
            .tempdir()
            .unwrap();
        let mut s = Server {
            data: dir.path().join("data"),
            socket: dir.path().to_path_buf(),
            dir,
            port: 0,
            bindir: self.bindir.clone(),
        };
        run(self
            .client("pg_basebackup")
            .args(["-R", "-X", "stream", "-c", "fast", "-D"])
            .arg(&s.data));
        let copied = std::fs::read_to_string(s.data.join("postgresql.auto.conf")).unwrap();
        let socket = s.socket.display().to_string();
        s.launch(&[], |port| {
            format!(
                "{copied}port = {port}\nunix_socket_directories = '{socket}'\nhot_standby = on\n"
            )
        });
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(self.bin("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
    }
}

// ---------------------------------------------------------------------------------------------
// Errors as a client sees them.

/// The error's SQLSTATE (or a text saying there was none, which no assertion accepts).
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

/// An error as psql would show it: SQLSTATE, message, detail, hint and context.
pub fn describe(e: &postgres::Error) -> String {
    use std::fmt::Write as _;
    match e.as_db_error() {
        Some(d) => {
            let mut s = format!("{}: {}", d.code().code(), d.message());
            if let Some(x) = d.detail() {
                let _ = write!(s, " DETAIL: {x}");
            }
            if let Some(x) = d.hint() {
                let _ = write!(s, " HINT: {x}");
            }
            if let Some(x) = d.where_() {
                let _ = write!(s, " CONTEXT: {x}");
            }
            s
        }
        None => e.to_string(),
    }
}

/// `sql` (with `args`) fails with SQLSTATE `state`; the error, for its HINT and message.
pub fn expect_err_with(
    c: &mut impl postgres::GenericClient,
    sql: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
    state: &str,
) -> postgres::Error {
    match c.query(sql, args) {
        Ok(rows) => panic!("{sql}: succeeded ({} rows), expected {state}", rows.len()),
        Err(e) => {
            assert_eq!(sqlstate(&e), state, "{sql}: {}", describe(&e));
            e
        }
    }
}

/// `sql` fails with SQLSTATE `state`; the error, for its HINT and message.
pub fn expect_err(c: &mut impl postgres::GenericClient, sql: &str, state: &str) -> postgres::Error {
    expect_err_with(c, sql, &[], state)
}

// ---------------------------------------------------------------------------------------------
// Values.

/// The one value `sql` returns.
pub fn one<T: for<'a> postgres::types::FromSql<'a>>(c: &mut Client, sql: &str) -> T {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// The one bigint `sql` returns.
pub fn count(c: &mut Client, sql: &str) -> i64 {
    one(c, sql)
}

/// The one text `sql` returns.
pub fn text(c: &mut Client, sql: &str) -> String {
    one(c, sql)
}

/// The first column of every row `sql` returns, as text.
pub fn strings(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
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

/// Poll `sql` (one boolean) until it is true, for at most `secs` seconds; whether it was.
pub fn wait_until(c: &mut Client, sql: &str, secs: u64) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if one::<bool>(c, sql) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

// ---------------------------------------------------------------------------------------------
// pg_backup.

/// A backup taken with `options` (SQL named arguments); its id.
pub fn create(c: &mut Client, options: &str) -> String {
    try_create(c, options).unwrap()
}

/// `backup.create(options)`: its id, or the error.
pub fn try_create(c: &mut Client, options: &str) -> Result<String, postgres::Error> {
    c.query_one(
        &format!("SELECT backup_id FROM backup.create({options})"),
        &[],
    )
    .map(|r| r.get(0))
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

/// A LOGIN role `name` that is a member of backup_operator (roles are the cluster's).
pub fn add_operator(su: &mut Client, name: &str) {
    su.batch_execute(&format!(
        "CREATE ROLE {name} LOGIN; GRANT backup_operator TO {name};"
    ))
    .unwrap();
}

/// [`add_operator`], and `name` may create objects in schema public of `su`'s database.
pub fn add_operator_in_public(su: &mut Client, name: &str) {
    add_operator(su, name);
    su.batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {name};"))
        .unwrap();
}

/// The SHA-256 of `bytes` in lowercase hex, as manifest.json and manifest.sha256 write it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
