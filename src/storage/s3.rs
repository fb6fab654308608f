//! A small S3 client: the seven calls pg_backup needs (PutObject, the three multipart calls,
//! GetObject, ListObjectsV2, DeleteObject), signed with SigV4, over a blocking HTTP client.
//! Blocking on purpose: it runs on helper threads (or briefly on the backend) and needs no
//! async runtime inside a PostgreSQL backend. See README, "Off-site copies", for why not a
//! full SDK.
//!
//! Every request has connect/read/write timeouts; transient failures (connection errors,
//! 5xx, 429, SlowDown, RequestTimeout) are retried with exponential backoff and jitter. Every
//! part carries Content-MD5 and a signed SHA-256 of its payload, so a part damaged on the way
//! is refused by the server instead of stored.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256};

use super::sigv4::{self, Credentials, EMPTY_SHA256};
use super::store::{Failure, Object, ObjectWriter, Store, StoreError, StoreResult};
use super::xml;
use crate::archive::manifest::hex;

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: usize = 5 << 20;
pub const DEFAULT_PART_SIZE: usize = 16 << 20;
pub const DEFAULT_RETRIES: u32 = 4;

#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
    /// `scheme://host[:port]`, without a path.
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
    pub credentials: Credentials,
    pub part_size: usize,
    pub retries: u32,
    pub timeout: Duration,
}

struct Inner {
    cfg: S3Config,
    agent: ureq::Agent,
    scheme: String,
    /// The Host header for every request (bucket included for virtual-hosted style).
    host: String,
}

/// An S3-compatible bucket (cheap to clone: shared inside).
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

impl S3Store {
    pub fn new(cfg: S3Config) -> StoreResult<S3Store> {
        let url = url::Url::parse(&cfg.endpoint).map_err(|e| {
            StoreError::new(
                Failure::Other,
                format!("invalid endpoint \"{}\": {e}", cfg.endpoint),
            )
        })?;
        let host_only = url
            .host_str()
            .ok_or_else(|| StoreError::new(Failure::Other, "endpoint has no host"))?;
        let host_port = match url.port() {
            Some(p) => format!("{host_only}:{p}"),
            None => host_only.to_string(),
        };
        let host = if cfg.path_style {
            host_port
        } else {
            format!("{}.{host_port}", cfg.bucket)
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10).min(cfg.timeout))
            .timeout_read(cfg.timeout)
            .timeout_write(cfg.timeout)
            .redirects(0)
            .user_agent(concat!("pg_backup/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(S3Store {
            inner: Arc::new(Inner {
                scheme: url.scheme().to_string(),
                host,
                agent,
                cfg,
            }),
        })
    }
}

/// A request's outcome when the server answered with an error status.
fn classify_status(status: u16, body: &str) -> (Failure, bool, String) {
    let code = xml::first(body, "Code").unwrap_or_default();
    let message = xml::first(body, "Message").unwrap_or_default();
    let text = if code.is_empty() {
        format!("HTTP {status}")
    } else if message.is_empty() {
        format!("{code} (HTTP {status})")
    } else {
        format!("{code}: {message} (HTTP {status})")
    };
    let retry = status >= 500
        || status == 429
        || matches!(
            code.as_str(),
            "RequestTimeout" | "SlowDown" | "InternalError"
        );
    let failure = match (status, code.as_str()) {
        (
            _,
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired",
        ) => Failure::Credentials,
        (_, "NoSuchBucket") => Failure::NoBucket,
        (_, "NoSuchKey") => Failure::NotFound,
        (403, _) => Failure::Denied,
        (404, _) => Failure::NotFound,
        (401, _) => Failure::Credentials,
        _ if retry => Failure::Broken,
        _ => Failure::Other,
    };
    (failure, retry, text)
}

fn backoff(attempt: u32, cancel: Option<&AtomicBool>) -> StoreResult<()> {
    let base = 200u64 << attempt.min(5);
    // Jitter without a random crate: the clock's nanoseconds.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let total = (base + nanos % (base / 2 + 1)).min(5000);
    let mut slept = 0;
    while slept < total {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(StoreError::new(Failure::Cancelled, "cancelled"));
        }
        std::thread::sleep(Duration::from_millis(50));
        slept += 50;
    }
    Ok(())
}

struct Call<'a> {
    method: &'a str,
    /// Key relative to the bucket (prefix included), or None for the bucket itself.
    key: Option<&'a str>,
    query: &'a [(&'a str, &'a str)],
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl Inner {
    fn path(&self, key: Option<&str>) -> String {
        let key = key.map(|k| sigv4::uri_encode(k, true)).unwrap_or_default();
        if self.cfg.path_style {
            format!("/{}/{key}", sigv4::uri_encode(&self.cfg.bucket, false))
        } else {
            format!("/{key}")
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.cfg.prefix)
    }

    /// One signed request, retried on transient failures. Returns the response (2xx/3xx).
    fn send(&self, call: &Call, cancel: Option<&AtomicBool>) -> StoreResult<ureq::Response> {
        let payload_sha = if call.body.is_empty() {
            EMPTY_SHA256.to_string()
        } else {
            hex(&Sha256::digest(call.body))
        };
        let path = self.path(call.key);
        let query = sigv4::canonical_query(call.query);
        let url = if query.is_empty() {
            format!("{}://{}{path}", self.scheme, self.host)
        } else {
            format!("{}://{}{path}?{query}", self.scheme, self.host)
        };
        let mut last: Option<StoreError> = None;
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                backoff(attempt - 1, cancel)?;
            }
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(StoreError::new(Failure::Cancelled, "cancelled"));
            }
            let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let mut headers = call.headers.clone();
            headers.push(("host".into(), self.host.clone()));
            headers.push(("x-amz-date".into(), amz_date.clone()));
            headers.push(("x-amz-content-sha256".into(), payload_sha.clone()));
            if let Some(t) = &self.cfg.credentials.session_token {
                headers.push(("x-amz-security-token".into(), t.clone()));
            }
            let auth = sigv4::authorization(
                &sigv4::Request {
                    method: call.method,
                    path: &path,
                    query: &query,
                    headers: &headers,
                    payload_sha256: &payload_sha,
                },
                &self.cfg.credentials,
                &self.cfg.region,
                &amz_date,
            );
            let mut req = self.agent.request(call.method, &url);
            for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
                req = req.set(k, v);
            }
            req = req.set("authorization", &auth);
            let result = if call.body.is_empty() && matches!(call.method, "GET" | "HEAD" | "DELETE")
            {
                req.call()
            } else {
                req.send_bytes(call.body)
            };
            let what = format!("{} {}", call.method, call.key.unwrap_or(&self.cfg.bucket));
            match result {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(status, resp)) => {
                    let mut body = String::new();
                    let _ = resp.into_reader().take(64 << 10).read_to_string(&mut body);
                    let (failure, retry, text) = classify_status(status, &body);
                    let err = StoreError::new(failure, format!("{what}: {text}"));
                    if !retry {
                        return Err(err);
                    }
                    last = Some(err);
                }
                Err(ureq::Error::Transport(t)) => {
                    let failure = match t.kind() {
                        ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => {
                            Failure::Unreachable
                        }
                        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                            return Err(StoreError::new(Failure::Other, format!("{what}: {t}")))
                        }
                        _ => Failure::Broken,
                    };
                    let endpoint = format!("{}://{}", self.scheme, self.host);
                    last = Some(StoreError::new(
                        failure,
                        format!("{what} at {endpoint}: {}", transport_text(&t)),
                    ));
                }
            }
        }
        let mut err = last.expect("at least one attempt");
        err.message = format!("{} (after {} attempts)", err.message, self.cfg.retries + 1);
        Err(err)
    }

    fn put_object(&self, key: &str, body: &[u8], cancel: Option<&AtomicBool>) -> StoreResult<()> {
        let full = self.full_key(key);
        self.send(
            &Call {
                method: "PUT",
                key: Some(&full),
                query: &[],
                headers: vec![("content-md5".into(), content_md5(body))],
                body,
            },
            cancel,
        )?;
        Ok(())
    }
}

/// ureq's transport text without its URL (which repeats what we already say).
fn transport_text(t: &ureq::Transport) -> String {
    let mut s = t.kind().to_string();
    if let Some(m) = t.message() {
        s = format!("{s}: {m}");
    }
    if let Some(src) = std::error::Error::source(t) {
        s = format!("{s}: {src}");
    }
    s
}

pub fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

impl Store for S3Store {
    fn url(&self) -> String {
        let c = &self.inner.cfg;
        format!("s3://{}/{}", c.bucket, c.prefix)
    }

    fn create(&self, key: &str, cancel: Arc<AtomicBool>) -> StoreResult<Box<dyn ObjectWriter>> {
        Ok(Box::new(MultipartWriter {
            inner: self.inner.clone(),
            key: self.inner.full_key(key),
            buf: Vec::new(),
            upload: None,
            cancel,
            parts_sent: 0,
        }))
    }

    fn get(&self, key: &str) -> StoreResult<Box<dyn Read + Send>> {
        let mut r = RangeReader {
            inner: self.inner.clone(),
            key: self.inner.full_key(key),
            offset: 0,
            body: None,
            etag: None,
        };
        // Open now, so a missing object is an error here rather than at the first read.
        r.open()?;
        Ok(Box::new(r))
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<Object>> {
        let inner = &self.inner;
        let full_prefix = inner.full_key(prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query: Vec<(&str, &str)> = vec![("list-type", "2"), ("prefix", &full_prefix)];
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let resp = inner.send(
                &Call {
                    method: "GET",
                    key: None,
                    query: &query,
                    headers: vec![],
                    body: &[],
                },
                None,
            )?;
            let mut body = String::new();
            resp.into_reader()
                .take(64 << 20)
                .read_to_string(&mut body)
                .map_err(|e| StoreError::new(Failure::Broken, format!("listing: {e}")))?;
            for c in xml::all(&body, "Contents") {
                let key = xml::first(c, "Key").unwrap_or_default();
                let size = xml::first(c, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if let Some(rel) = key.strip_prefix(&inner.cfg.prefix) {
                    out.push(Object {
                        key: rel.to_string(),
                        size,
                    });
                }
            }
            let truncated = xml::first(&body, "IsTruncated").as_deref() == Some("true");
            token = xml::first(&body, "NextContinuationToken").filter(|t| !t.is_empty());
            if !truncated || token.is_none() {
                return Ok(out);
            }
        }
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        let full = self.inner.full_key(key);
        match self.inner.send(
            &Call {
                method: "DELETE",
                key: Some(&full),
                query: &[],
                headers: vec![],
                body: &[],
            },
            None,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.failure == Failure::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> StoreResult<()> {
        self.inner.put_object(key, bytes, None)
    }

    fn check(&self) -> StoreResult<()> {
        let inner = &self.inner;
        let prefix = inner.cfg.prefix.clone();
        inner.send(
            &Call {
                method: "GET",
                key: None,
                query: &[("list-type", "2"), ("max-keys", "1"), ("prefix", &prefix)],
                headers: vec![],
                body: &[],
            },
            None,
        )?;
        Ok(())
    }
}

/// A GET that survives a broken connection: it reopens at the offset reached (Range), with
/// If-Match on the first response's ETag so that it never stitches two versions together.
struct RangeReader {
    inner: Arc<Inner>,
    key: String,
    offset: u64,
    body: Option<Box<dyn Read + Send>>,
    etag: Option<String>,
}

impl RangeReader {
    fn open(&mut self) -> StoreResult<()> {
        let mut headers = vec![];
        if self.offset > 0 {
            headers.push(("range".to_string(), format!("bytes={}-", self.offset)));
        }
        if let Some(e) = &self.etag {
            headers.push(("if-match".to_string(), e.clone()));
        }
        let resp = self.inner.send(
            &Call {
                method: "GET",
                key: Some(&self.key),
                query: &[],
                headers,
                body: &[],
            },
            None,
        )?;
        if self.etag.is_none() {
            self.etag = resp.header("etag").map(str::to_string);
        }
        let status = resp.status();
        let mut reader: Box<dyn Read + Send> = Box::new(resp.into_reader());
        if self.offset > 0 && status != 206 {
            // The server ignored the range: skip what was already read.
            std::io::copy(&mut (&mut reader).take(self.offset), &mut std::io::sink())
                .map_err(|e| StoreError::new(Failure::Broken, e.to_string()))?;
        }
        self.body = Some(reader);
        Ok(())
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut failures = 0;
        loop {
            if self.body.is_none() {
                self.open().map_err(StoreError::io)?;
            }
            match self.body.as_mut().expect("opened").read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.body = None;
                    failures += 1;
                    if failures > self.inner.cfg.retries {
                        return Err(e);
                    }
                    backoff(failures - 1, None).map_err(StoreError::io)?;
                }
            }
        }
    }
}

/// The part numbers and ETags the uploader thread collected.
type PartsResult = StoreResult<Vec<(u32, String)>>;

struct Upload {
    id: String,
    tx: Option<SyncSender<(u32, Vec<u8>)>>,
    handle: Option<JoinHandle<PartsResult>>,
}

/// Buffers a part, hands full parts to an uploader thread (one part in flight while the next
/// fills), completes the upload on `finish`, aborts it when dropped unfinished. A file
/// smaller than one part is a single PutObject.
struct MultipartWriter {
    inner: Arc<Inner>,
    key: String,
    buf: Vec<u8>,
    upload: Option<Upload>,
    cancel: Arc<AtomicBool>,
    parts_sent: u32,
}

impl MultipartWriter {
    /// Parts grow after every thousand, so S3's limit of 10,000 parts is never reached.
    fn part_size(&self) -> usize {
        self.inner.cfg.part_size * (1 + self.parts_sent as usize / 1000)
    }

    fn start(&mut self) -> StoreResult<()> {
        let resp = self.inner.send(
            &Call {
                method: "POST",
                key: Some(&self.key),
                query: &[("uploads", "")],
                headers: vec![],
                body: &[],
            },
            Some(&self.cancel),
        )?;
        let mut body = String::new();
        resp.into_reader()
            .take(1 << 20)
            .read_to_string(&mut body)
            .map_err(|e| StoreError::new(Failure::Broken, e.to_string()))?;
        let id = xml::first(&body, "UploadId")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                StoreError::new(
                    Failure::Other,
                    format!("no UploadId in the answer to {}", self.key),
                )
            })?;
        let (tx, rx) = sync_channel::<(u32, Vec<u8>)>(1);
        let inner = self.inner.clone();
        let key = self.key.clone();
        let upload_id = id.clone();
        let cancel = self.cancel.clone();
        let handle = super::threads::spawn("pg_backup upload", move || {
            let mut etags = Vec::new();
            for (n, part) in rx {
                let number = n.to_string();
                let resp = inner.send(
                    &Call {
                        method: "PUT",
                        key: Some(&key),
                        query: &[("partNumber", &number), ("uploadId", &upload_id)],
                        headers: vec![("content-md5".into(), content_md5(&part))],
                        body: &part,
                    },
                    Some(&cancel),
                )?;
                let etag = resp.header("etag").unwrap_or_default().to_string();
                etags.push((n, etag));
            }
            Ok(etags)
        })
        .map_err(|e| {
            StoreError::new(
                Failure::Other,
                format!("could not start upload thread: {e}"),
            )
        })?;
        self.upload = Some(Upload {
            id,
            tx: Some(tx),
            handle: Some(handle),
        });
        Ok(())
    }

    fn join(&mut self) -> StoreResult<Vec<(u32, String)>> {
        let up = self.upload.as_mut().expect("started");
        drop(up.tx.take());
        match up.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            _ => Err(StoreError::new(Failure::Other, "upload thread panicked")),
        }
    }

    fn send_part(&mut self, part: Vec<u8>) -> StoreResult<()> {
        if self.upload.is_none() {
            self.start()?;
        }
        self.parts_sent += 1;
        let n = self.parts_sent;
        let up = self.upload.as_ref().expect("started");
        if up.tx.as_ref().expect("open").send((n, part)).is_err() {
            // The uploader stopped: its error says why.
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| StoreError::new(Failure::Other, "upload thread stopped")));
        }
        Ok(())
    }

    fn complete(&mut self) -> StoreResult<()> {
        let etags = self.join()?;
        let id = self.upload.as_ref().expect("started").id.clone();
        let mut body = String::from("<CompleteMultipartUpload>");
        for (n, etag) in &etags {
            body.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                xml::escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let resp = self.inner.send(
            &Call {
                method: "POST",
                key: Some(&self.key),
                query: &[("uploadId", &id)],
                headers: vec![],
                body: body.as_bytes(),
            },
            Some(&self.cancel),
        )?;
        // S3 may answer 200 and still fail: the error is in the body.
        let mut answer = String::new();
        let _ = resp.into_reader().take(1 << 20).read_to_string(&mut answer);
        if answer.contains("<Error>") {
            let (failure, _, text) = classify_status(500, &answer);
            return Err(StoreError::new(
                failure,
                format!("completing {}: {text}", self.key),
            ));
        }
        self.upload = None;
        Ok(())
    }

    fn abort(&mut self) {
        if let Some(mut up) = self.upload.take() {
            drop(up.tx.take());
            if let Some(h) = up.handle.take() {
                let _ = h.join();
            }
            let _ = self.inner.send(
                &Call {
                    method: "DELETE",
                    key: Some(&self.key),
                    query: &[("uploadId", &up.id)],
                    headers: vec![],
                    body: &[],
                },
                None,
            );
        }
    }
}

impl ObjectWriter for MultipartWriter {
    fn write_all(&mut self, mut data: &[u8]) -> StoreResult<()> {
        while !data.is_empty() {
            let size = self.part_size();
            if self.buf.capacity() < size {
                self.buf.reserve_exact(size - self.buf.len());
            }
            let take = (size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == size {
                let part = std::mem::replace(&mut self.buf, Vec::with_capacity(size));
                if let Err(e) = self.send_part(part) {
                    self.abort();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> StoreResult<()> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buf);
            let key = self.key.clone();
            return self
                .inner
                .send(
                    &Call {
                        method: "PUT",
                        key: Some(&key),
                        query: &[],
                        headers: vec![("content-md5".into(), content_md5(&body))],
                        body: &body,
                    },
                    Some(&self.cancel),
                )
                .map(|_| ());
        }
        if !self.buf.is_empty() {
            let part = std::mem::take(&mut self.buf);
            if let Err(e) = self.send_part(part) {
                self.abort();
                return Err(e);
            }
        }
        let r = self.complete();
        if r.is_err() {
            self.abort();
        }
        r
    }
}

impl Drop for MultipartWriter {
    fn drop(&mut self) {
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let body = "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        let (f, retry, text) = classify_status(404, body);
        assert_eq!(f, Failure::NoBucket);
        assert!(!retry);
        assert!(text.contains("NoSuchBucket"), "{text}");
        assert_eq!(
            classify_status(403, "<Error><Code>SignatureDoesNotMatch</Code></Error>").0,
            Failure::Credentials
        );
        assert_eq!(
            classify_status(403, "<Error><Code>AccessDenied</Code></Error>").0,
            Failure::Denied
        );
        let (f, retry, _) = classify_status(503, "<Error><Code>SlowDown</Code></Error>");
        assert_eq!(f, Failure::Broken);
        assert!(retry);
        assert!(classify_status(400, "<Error><Code>RequestTimeout</Code></Error>").1);
    }

    #[test]
    fn content_md5_is_base64_of_the_digest() {
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn an_unreachable_endpoint_fails_as_unreachable() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = S3Store::new(S3Config {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: format!("http://127.0.0.1:{port}"),
            region: "us-east-1".into(),
            path_style: true,
            credentials: Credentials {
                access_key_id: "k".into(),
                secret_access_key: "s".into(),
                session_token: None,
            },
            part_size: MIN_PART_SIZE,
            retries: 1,
            timeout: Duration::from_secs(2),
        })
        .unwrap();
        let e = store.check().unwrap_err();
        assert_eq!(e.failure, Failure::Unreachable, "{e}");
        assert_eq!(e.sqlstate(), "08001");
    }
}
