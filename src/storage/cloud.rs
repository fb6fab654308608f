//! `s3://`, `gs://` and `az://` targets through Apache Arrow's `object_store` crate (S3 and
//! S3-compatible servers, Google Cloud Storage, Azure Blob). `object_store` is async: its
//! futures run on a tokio runtime whose threads are pg_backup helper threads (every signal
//! blocked, never a call into PostgreSQL). The calling thread (the backend or a drain thread)
//! only waits on a channel, in slices of [`POLL`], checking the cancel flag between them, so a
//! cancel is seen within a fraction of a second even while a part is on the wire.
//!
//! Objects keep the layout of the hand-written S3 client this replaces: `<prefix><key>`, keys
//! `<backup_id>/<archive path>`, so archives written by 0.2.0 stay readable.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
};

use super::store::{Failure, Object, ObjectWriter, Store, StoreError, StoreResult};

/// How often a waiting thread looks at the cancel flag.
const POLL: Duration = Duration::from_millis(100);
/// How long a writer dropped unfinished waits for its multipart upload to be aborted (the
/// abort goes on in the background after that).
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// The runtime of this process's storage work: built once, on a helper thread, so that its
/// worker threads inherit a fully blocked signal mask and PostgreSQL's handlers always run on
/// the backend's thread. Never dropped.
fn runtime() -> StoreResult<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    let r = RT.get_or_init(|| {
        let built = super::threads::spawn("pg_backup rt", || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(4)
                .thread_name("pg_backup io")
                .enable_all()
                .build()
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "the runtime's thread panicked".to_string())?;
        built.map_err(|e| e.to_string())
    });
    r.as_ref().map_err(|e| {
        StoreError::new(
            Failure::Other,
            format!("could not start the storage runtime: {e}"),
        )
    })
}

fn cancelled() -> StoreError {
    StoreError::new(Failure::Cancelled, "cancelled")
}

/// A future running on the runtime, and the channel its result comes back on.
struct Pending<T> {
    rx: Receiver<StoreResult<T>>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn<T, F>(fut: F) -> StoreResult<Pending<T>>
where
    T: Send + 'static,
    F: std::future::Future<Output = StoreResult<T>> + Send + 'static,
{
    let rt = runtime()?;
    let (tx, rx) = sync_channel(1);
    let task = rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    Ok(Pending { rx, task })
}

impl<T> Pending<T> {
    /// Wait for the result; on cancel, stop the future (dropping it closes its connection).
    fn wait(self, cancel: Option<&AtomicBool>) -> StoreResult<T> {
        self.wait_until(cancel, None)
    }

    fn wait_until(self, cancel: Option<&AtomicBool>, limit: Option<Instant>) -> StoreResult<T> {
        let stop = || cancel.is_some_and(|c| c.load(Ordering::Relaxed)) || stop_requested();
        loop {
            match self.rx.recv_timeout(POLL) {
                // A call that failed because it was stopped is a cancel, not a storage error.
                Ok(Err(_)) if stop() => {
                    raise_pending_interrupt();
                    return Err(cancelled());
                }
                Ok(r) => return r,
                Err(RecvTimeoutError::Timeout) => {
                    if stop() {
                        self.task.abort();
                        raise_pending_interrupt();
                        return Err(cancelled());
                    }
                    if limit.is_some_and(|l| Instant::now() >= l) {
                        return Err(StoreError::new(Failure::Broken, "timed out"));
                    }
                }
                // The task ended without sending: it panicked (tokio caught it).
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(StoreError::new(
                        Failure::Other,
                        "the storage task failed unexpectedly",
                    ))
                }
            }
        }
    }
}

/// PostgreSQL was asked to cancel the statement or end the process: every wait here polls it,
/// so a cancel, statement_timeout or pg_terminate_backend stops a storage call within
/// [`POLL`], whatever the call's own timeouts, on the backend's thread and on the helper
/// threads that drain COPY into an upload (the backend may be blocked writing into their full
/// pipe, and could not set their cancel flag). The backend's next interrupt check raises it.
fn stop_requested() -> bool {
    crate::signals::stop_asked()
}

/// On the backend's thread, raise a pending cancel or termination PostgreSQL's way (its own
/// error, which clears the flag, so that the caller's error path can still record what
/// happened); the runtime's task was stopped first. Elsewhere, nothing: the caller returns
/// [`cancelled`].
fn raise_pending_interrupt() {
    #[cfg(not(test))]
    if crate::signals::cancel_requested() {
        crate::copy::check_for_interrupts();
    }
}

/// Receive from a runtime task's channel on a thread outside the runtime, polling
/// [`stop_requested`] every [`POLL`]. None: the task ended.
fn recv_polling<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> StoreResult<Option<T>> {
    let rt = runtime()?;
    loop {
        match rt.block_on(async { tokio::time::timeout(POLL, rx.recv()).await }) {
            Ok(v) => return Ok(v),
            Err(_) if stop_requested() => {
                raise_pending_interrupt();
                return Err(cancelled());
            }
            Err(_)
                if DEADLINE
                    .with(|d| d.get())
                    .is_some_and(|l| Instant::now() >= l) =>
            {
                return Err(StoreError::new(Failure::Broken, "timed out"))
            }
            Err(_) => {}
        }
    }
}

thread_local! {
    /// The time by which every storage call of this thread gives up ([`within`]).
    static DEADLINE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Run `f` with every storage call in it bounded to `limit` in all (each gives up with a
/// "timed out" error then): for cleanup after a failure or a cancel, which must not wait for
/// a storage server that no longer answers (what it leaves never looks complete).
pub fn within<R>(limit: Duration, f: impl FnOnce() -> R) -> R {
    /// Puts the thread's deadline back however `f` ends (a PostgreSQL error unwinds).
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DEADLINE.with(|d| d.replace(Some(Instant::now() + limit))));
    f()
}

fn block<T, F>(fut: F, cancel: Option<&AtomicBool>) -> StoreResult<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = StoreResult<T>> + Send + 'static,
{
    spawn(fut)?.wait_until(cancel, DEADLINE.with(|d| d.get()))
}

/// The HTTP client of every object store: reqwest, as object_store builds it, with what
/// `ClientOptions` cannot say: redirects are never followed (a 3xx is an error: a redirect
/// would carry the request's credentials, an S3 session token or an Azure SAS in the URL, to
/// another host, and let an endpoint make the server fetch any URL), no Referer header, and
/// a read timeout (a server that stops sending is given up after `read_timeout` of silence,
/// while a long download that keeps flowing is not cut by the total `timeout`).
#[derive(Debug, Clone)]
pub struct Connector {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub read_timeout: Duration,
}

impl object_store::client::HttpConnector for Connector {
    fn connect(
        &self,
        options: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        // object_store asks for a client with its own options for instance metadata and token
        // endpoints (plain http on a link-local address): honour their allow_http.
        let allow_http = options
            .get_config_value(&object_store::ClientConfigKey::AllowHttp)
            .as_deref()
            == Some("true");
        let client = reqwest::Client::builder()
            .user_agent(concat!("pg_backup/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .read_timeout(self.read_timeout)
            .https_only(!allow_http)
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "HTTP client",
                source: Box::new(e),
            })?;
        Ok(object_store::client::HttpClient::new(client))
    }
}

/// How an `object_store` error looks to the classifier (kept apart so it is unit-tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    NotFound,
    Denied,
    Unauthenticated,
    Precondition,
    Other,
}

/// What the transport said, when the request never got an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// No connection (refused, DNS, connect timeout, TLS handshake).
    Connect,
    /// The connection broke or timed out after it was made.
    Broken,
}

/// What an operation was about: a listing of the bucket (a 404 there means no bucket) or
/// one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Bucket,
    Object,
}

/// The HTTP status in object_store's error text ("... status code: 404 Not Found ...").
fn status_in(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text[at..].get(..3)?.parse().ok()
}

/// The failure a user should hear. An error without an HTTP answer is never "not found":
/// an unreachable server is 08001, a broken transfer 08006.
pub(crate) fn classify(
    variant: Variant,
    transport: Option<Transport>,
    text: &str,
    op: Op,
) -> Failure {
    match transport {
        Some(Transport::Connect) => return Failure::Unreachable,
        Some(Transport::Broken) => return Failure::Broken,
        None => {}
    }
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&[
        "NoSuchBucket",
        "ContainerNotFound",
        "The specified bucket does not exist",
        "The specified container does not exist",
    ]) {
        return Failure::NoBucket;
    }
    if has(&[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthenticationFailed",
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
        "invalid_grant",
        "Invalid Credentials",
        // Azurite's answer to a wrong account key.
        "Server failed to authenticate the request",
    ]) {
        return Failure::Credentials;
    }
    if has(&["NoSuchKey", "BlobNotFound"]) {
        return Failure::NotFound;
    }
    let status = status_in(text);
    match variant {
        Variant::NotFound => match op {
            Op::Bucket => Failure::NoBucket,
            Op::Object => Failure::NotFound,
        },
        Variant::Unauthenticated => Failure::Credentials,
        Variant::Denied => Failure::Denied,
        // The object changed while being read (If-Match): the transfer cannot go on.
        Variant::Precondition => Failure::Broken,
        Variant::Other => match status {
            Some(s) if s >= 500 || s == 429 || s == 408 => Failure::Broken,
            Some(401) => Failure::Credentials,
            Some(403) => Failure::Denied,
            _ if text.contains("after ") && text.contains(" retries") => Failure::Broken,
            _ => Failure::Other,
        },
    }
}

/// Remove what must never reach a message: query strings of URLs (an Azure SAS token rides
/// there) and any secret value; and keep it short.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("http") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let end = from
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(from.len());
        let url = &from[..end];
        out.push_str(url.split('?').next().unwrap_or(url));
        rest = &from[end..];
    }
    out.push_str(rest);
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), "[redacted]");
    }
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > 600 {
        let cut: String = out.chars().take(600).collect();
        format!("{cut}...")
    } else {
        out
    }
}

/// One store behind `s3://`, `gs://` or `az://`.
pub struct CloudStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// For messages and history rows: `s3://bucket/prefix/` (no secrets).
    pub(crate) url: String,
    /// The key prefix inside the bucket, empty or ending in `/`.
    pub(crate) prefix: String,
    pub(crate) part_size: usize,
    pub(crate) retries: u32,
    /// Secret values to scrub from any message.
    pub(crate) secrets: Arc<Vec<String>>,
}

struct Ctx {
    store: Arc<dyn ObjectStore>,
    secrets: Arc<Vec<String>>,
}

impl Ctx {
    fn error(&self, what: &str, e: object_store::Error, op: Op) -> StoreError {
        let variant = match &e {
            object_store::Error::NotFound { .. } => Variant::NotFound,
            object_store::Error::PermissionDenied { .. } => Variant::Denied,
            object_store::Error::Unauthenticated { .. } => Variant::Unauthenticated,
            object_store::Error::Precondition { .. } => Variant::Precondition,
            _ => Variant::Other,
        };
        let mut transport = None;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(h) = s.downcast_ref::<object_store::client::HttpError>() {
                use object_store::client::HttpErrorKind as K;
                transport = Some(match h.kind() {
                    K::Connect => Transport::Connect,
                    _ => Transport::Broken,
                });
                // The innermost transport error decides (a connect error wrapped in a
                // request error is still a connect error).
                if transport == Some(Transport::Connect) {
                    break;
                }
            }
            source = s.source();
        }
        let text = e.to_string();
        let failure = classify(variant, transport, &text, op);
        StoreError::new(failure, format!("{what}: {}", redact(&text, &self.secrets)))
    }
}

/// A listing's error: a key the client cannot represent is named as such (it fails the
/// listing's page: object_store parses every key of it).
fn list_error(ctx: &Ctx, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::InvalidPath { source } => StoreError::new(
            Failure::BadKey,
            redact(
                &format!("listing: an object's key cannot be read: {source}"),
                &ctx.secrets,
            ),
        ),
        e => ctx.error("listing", e, Op::Bucket),
    }
}

impl CloudStore {
    /// object_store lists by whole path segments: the folder to list for keys that start with
    /// `prefix` (relative to the store's prefix), and the full prefix for messages.
    fn folder_of(&self, prefix: &str) -> StoreResult<(Option<Path>, String)> {
        let full = format!("{}{prefix}", self.prefix);
        let folder = match full.rfind('/') {
            Some(i) => &full[..i],
            None => "",
        };
        let folder = if folder.is_empty() {
            None
        } else {
            Some(Path::parse(folder).map_err(|e| {
                StoreError::new(Failure::Other, format!("invalid prefix \"{folder}\": {e}"))
            })?)
        };
        Ok((folder, full))
    }

    fn ctx(&self) -> Arc<Ctx> {
        Arc::new(Ctx {
            store: self.store.clone(),
            secrets: self.secrets.clone(),
        })
    }

    fn path(&self, key: &str) -> StoreResult<Path> {
        let full = format!("{}{key}", self.prefix);
        Path::parse(&full).map_err(|e| {
            StoreError::new(
                Failure::Other,
                format!("invalid object key \"{}\": {e}", full.escape_debug()),
            )
        })
    }
}

impl Store for CloudStore {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn create(&self, key: &str, cancel: Arc<AtomicBool>) -> StoreResult<Box<dyn ObjectWriter>> {
        Ok(Box::new(CloudWriter {
            ctx: self.ctx(),
            path: self.path(key)?,
            key: key.to_string(),
            part_size: self.part_size,
            buf: Vec::new(),
            upload: None,
            in_flight: None,
            parts: 0,
            cancel,
        }))
    }

    fn get(&self, key: &str) -> StoreResult<Box<dyn Read + Send>> {
        let mut r = CloudReader {
            ctx: self.ctx(),
            path: self.path(key)?,
            key: key.to_string(),
            offset: 0,
            etag: None,
            rx: None,
            chunk: Bytes::new(),
            retries: self.retries,
            done: false,
            size: None,
            pending: None,
        };
        // Open now, so that a missing object is an error here, not at the first read.
        r.open()?;
        Ok(Box::new(r))
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<Object>> {
        let (folder, full) = self.folder_of(prefix)?;
        let ctx = self.ctx();
        let strip = self.prefix.clone();
        let want = prefix.to_string();
        let mut out = block(
            async move {
                let mut stream = ctx.store.list(folder.as_ref());
                let mut out = Vec::new();
                while let Some(item) = stream.next().await {
                    let m = item.map_err(|e| list_error(&ctx, e))?;
                    let loc = m.location.to_string();
                    let Some(rel) = loc.strip_prefix(&strip) else {
                        continue;
                    };
                    if !rel.starts_with(&want) {
                        continue;
                    }
                    if out.len() >= super::store::MAX_OBJECTS {
                        return Err(StoreError::new(
                            Failure::TooMany,
                            format!(
                                "listing {full}: more than {} objects",
                                super::store::MAX_OBJECTS
                            ),
                        ));
                    }
                    out.push(Object {
                        key: rel.to_string(),
                        size: m.size,
                    });
                }
                Ok(out)
            },
            None,
        )?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn folders(&self) -> StoreResult<Vec<super::store::Folder>> {
        let (folder, _) = self.folder_of("")?;
        let ctx = self.ctx();
        let strip = self.prefix.clone();
        block(
            async move {
                let mut stream = ctx.store.list(folder.as_ref());
                let mut folders = std::collections::BTreeMap::new();
                while let Some(item) = stream.next().await {
                    let m = item.map_err(|e| list_error(&ctx, e))?;
                    let loc = m.location.to_string();
                    if let Some(rel) = loc.strip_prefix(&strip) {
                        super::store::count_into(&mut folders, rel, m.size)?;
                    }
                }
                Ok(folders.into_values().collect())
            },
            None,
        )
    }

    fn exists(&self, key: &str) -> StoreResult<bool> {
        let path = self.path(key)?;
        let ctx = self.ctx();
        block(
            async move {
                match ctx.store.head(&path).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(ctx.error(&format!("reading {path}"), e, Op::Object)),
                }
            },
            None,
        )
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        let ctx = self.ctx();
        block(
            async move {
                match ctx.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(ctx.error(&format!("deleting {path}"), e, Op::Object)),
                }
            },
            None,
        )
    }

    fn put(&self, key: &str, bytes: &[u8]) -> StoreResult<()> {
        let path = self.path(key)?;
        let ctx = self.ctx();
        let payload = PutPayload::from(Bytes::copy_from_slice(bytes));
        block(
            async move {
                ctx.store
                    .put(&path, payload)
                    .await
                    .map(|_| ())
                    .map_err(|e| ctx.error(&format!("writing {path}"), e, Op::Object))
            },
            None,
        )
    }

    fn check(&self) -> StoreResult<()> {
        let folder = self.prefix.trim_end_matches('/').to_string();
        let ctx = self.ctx();
        block(
            async move {
                let folder = (!folder.is_empty()).then(|| Path::from_iter(folder.split('/')));
                let mut stream = ctx.store.list(folder.as_ref());
                match stream.next().await {
                    None | Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(ctx.error("listing", e, Op::Bucket)),
                }
            },
            None,
        )
    }
}

/// Buffers one part; full parts go out as a multipart upload, one in flight while the next
/// fills; `finish` completes it (an object smaller than a part is one PUT). Dropped or failed
/// before `finish` succeeds, it aborts the upload, so no object is left behind.
struct CloudWriter {
    ctx: Arc<Ctx>,
    path: Path,
    key: String,
    part_size: usize,
    buf: Vec<u8>,
    upload: Option<Arc<tokio::sync::Mutex<Box<dyn MultipartUpload>>>>,
    in_flight: Option<Pending<()>>,
    parts: u32,
    cancel: Arc<AtomicBool>,
}

impl CloudWriter {
    /// Parts grow after every thousand, so the 10,000-part limit of S3 is never reached.
    fn size(&self) -> usize {
        self.part_size * (1 + self.parts as usize / 1000)
    }

    fn wait_in_flight(&mut self) -> StoreResult<()> {
        match self.in_flight.take() {
            Some(p) => p.wait(Some(&self.cancel)),
            None => Ok(()),
        }
    }

    fn send_part(&mut self, part: Vec<u8>) -> StoreResult<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        if self.upload.is_none() {
            let ctx = self.ctx.clone();
            let path = self.path.clone();
            let up = block(
                async move {
                    ctx.store.put_multipart(&path).await.map_err(|e| {
                        ctx.error(&format!("starting upload of {path}"), e, Op::Object)
                    })
                },
                Some(&self.cancel),
            )?;
            self.upload = Some(Arc::new(tokio::sync::Mutex::new(up)));
        }
        self.wait_in_flight()?;
        let upload = self.upload.as_ref().expect("started");
        let fut = {
            let mut guard = upload.try_lock().map_err(|_| {
                StoreError::new(Failure::Other, "the upload is busy (internal error)")
            })?;
            guard.put_part(PutPayload::from(Bytes::from(part)))
        };
        self.parts += 1;
        let ctx = self.ctx.clone();
        let what = format!("uploading part {} of {}", self.parts, self.path);
        self.in_flight = Some(spawn(async move {
            fut.await.map_err(|e| ctx.error(&what, e, Op::Object))
        })?);
        Ok(())
    }

    fn complete(&mut self) -> StoreResult<()> {
        self.wait_in_flight()?;
        let upload = self.upload.clone().expect("started");
        let ctx = self.ctx.clone();
        let what = format!("completing upload of {}", self.path);
        block(
            async move {
                let mut up = upload.lock().await;
                up.complete()
                    .await
                    .map(|_| ())
                    .map_err(|e| ctx.error(&what, e, Op::Object))
            },
            Some(&self.cancel),
        )?;
        self.upload = None;
        Ok(())
    }

    /// Stop the part in flight and abort the upload (waits a little; the abort goes on in
    /// the background if the server is slow).
    fn abort(&mut self) {
        if let Some(p) = self.in_flight.take() {
            p.task.abort();
        }
        let Some(upload) = self.upload.take() else {
            return;
        };
        let Ok(p) = spawn(async move {
            let mut up = upload.lock().await;
            let _ = up.abort().await;
            Ok(())
        }) else {
            return;
        };
        let _ = p.wait_until(None, Some(Instant::now() + ABORT_WAIT));
    }

    fn fail<T>(&mut self, e: StoreError) -> StoreResult<T> {
        self.abort();
        Err(e)
    }
}

impl ObjectWriter for CloudWriter {
    fn write_all(&mut self, mut data: &[u8]) -> StoreResult<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return self.fail(cancelled());
        }
        while !data.is_empty() {
            let size = self.size();
            if self.buf.capacity() < size {
                self.buf.reserve_exact(size - self.buf.len());
            }
            let take = (size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == size {
                let part = std::mem::replace(&mut self.buf, Vec::with_capacity(size));
                if let Err(e) = self.send_part(part) {
                    return self.fail(e);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> StoreResult<()> {
        if self.upload.is_none() {
            let body = PutPayload::from(Bytes::from(std::mem::take(&mut self.buf)));
            let ctx = self.ctx.clone();
            let path = self.path.clone();
            return block(
                async move {
                    ctx.store
                        .put(&path, body)
                        .await
                        .map(|_| ())
                        .map_err(|e| ctx.error(&format!("writing {path}"), e, Op::Object))
                },
                Some(&self.cancel),
            );
        }
        if !self.buf.is_empty() {
            let part = std::mem::take(&mut self.buf);
            if let Err(e) = self.send_part(part) {
                return self.fail(e);
            }
        }
        match self.complete() {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = StoreError::new(e.failure, format!("{} ({})", e.message, self.key));
                self.fail(e)
            }
        }
    }
}

impl Drop for CloudWriter {
    fn drop(&mut self) {
        self.abort();
    }
}

/// What the reading task sends: the first answer (its ETag), then the bytes.
enum Chunk {
    Opened(Option<String>, u64),
    Data(Bytes),
    End,
}

/// A GET that survives a broken connection: it reopens at the offset reached (a range), with
/// If-Match on the first answer's ETag so that it never stitches two versions together.
struct CloudReader {
    ctx: Arc<Ctx>,
    path: Path,
    key: String,
    offset: u64,
    etag: Option<String>,
    rx: Option<tokio::sync::mpsc::Receiver<StoreResult<Chunk>>>,
    chunk: Bytes,
    retries: u32,
    /// The whole object was read.
    done: bool,
    /// The object's size, from the first answer.
    size: Option<u64>,
    /// A message taken off the channel while filling a buffer, for the next call.
    pending: Option<StoreResult<Chunk>>,
}

impl CloudReader {
    fn open(&mut self) -> StoreResult<()> {
        let rt = runtime()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<StoreResult<Chunk>>(32);
        let ctx = self.ctx.clone();
        let path = self.path.clone();
        let options = GetOptions {
            range: (self.offset > 0).then_some(GetRange::Offset(self.offset)),
            if_match: self.etag.clone(),
            ..Default::default()
        };
        rt.spawn(async move {
            let result = match ctx.store.get_opts(&path, options).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx
                        .send(Err(ctx.error(&format!("reading {path}"), e, Op::Object)))
                        .await;
                    return;
                }
            };
            if tx
                .send(Ok(Chunk::Opened(
                    result.meta.e_tag.clone(),
                    result.meta.size,
                )))
                .await
                .is_err()
            {
                return;
            }
            let mut stream = result.into_stream();
            while let Some(item) = stream.next().await {
                let msg = item
                    .map(Chunk::Data)
                    .map_err(|e| ctx.error(&format!("reading {path}"), e, Op::Object));
                let stop = msg.is_err();
                // The reader went away: stop reading (dropping the stream closes it).
                if tx.send(msg).await.is_err() || stop {
                    return;
                }
            }
            let _ = tx.send(Ok(Chunk::End)).await;
        });
        match recv_polling(&mut rx)? {
            Some(Ok(Chunk::Opened(etag, size))) => {
                if self.etag.is_none() {
                    self.etag = etag;
                }
                self.size = Some(size);
                self.rx = Some(rx);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            _ => Err(StoreError::new(
                Failure::Other,
                format!("reading {}: the storage task failed unexpectedly", self.key),
            )),
        }
    }
}

impl Read for CloudReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut failures = 0u32;
        loop {
            if !self.chunk.is_empty() {
                let mut n = self.chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&self.chunk.split_to(n));
                // Fill the rest of `buf` with what has already arrived (never waiting): the
                // network hands over small chunks, the caller reads in large buffers.
                while n < buf.len() && self.chunk.is_empty() {
                    match self.rx.as_mut().map(|rx| rx.try_recv()) {
                        Some(Ok(Ok(Chunk::Data(b)))) => {
                            let m = b.len().min(buf.len() - n);
                            buf[n..n + m].copy_from_slice(&b[..m]);
                            self.chunk = b.slice(m..);
                            n += m;
                        }
                        Some(Ok(Ok(Chunk::End))) => {
                            self.done = true;
                            self.rx = None;
                        }
                        // An error: the next call handles it.
                        Some(Ok(other)) => {
                            self.pending = Some(other);
                            break;
                        }
                        // Nothing yet, or the task ended: the next call sees it.
                        _ => break,
                    }
                }
                self.offset += n as u64;
                return Ok(n);
            }

            if self.done || (self.rx.is_none() && self.size.is_some_and(|s| self.offset >= s)) {
                return Ok(0);
            }
            if self.rx.is_none() && self.pending.is_none() {
                if let Err(e) = self.open() {
                    failures += 1;
                    if failures > self.retries
                        || !matches!(e.failure, Failure::Broken | Failure::Unreachable)
                    {
                        return Err(e.io());
                    }
                    std::thread::sleep(Duration::from_millis(200 << failures.min(5)));
                    continue;
                }
            }
            let msg = match self.pending.take() {
                Some(m) => Some(m),
                None => recv_polling(self.rx.as_mut().expect("open")).map_err(StoreError::io)?,
            };
            match msg {
                Some(Ok(Chunk::Data(b))) => self.chunk = b,
                Some(Ok(Chunk::End)) => {
                    self.done = true;
                    self.rx = None;
                    return Ok(0);
                }
                Some(Ok(Chunk::Opened(..))) => {}
                Some(Err(e)) => {
                    self.rx = None;
                    failures += 1;
                    if failures > self.retries || e.failure != Failure::Broken {
                        return Err(e.io());
                    }
                }
                None => {
                    self.rx = None;
                    failures += 1;
                    if failures > self.retries {
                        return Err(StoreError::new(
                            Failure::Broken,
                            format!("reading {}: the transfer stopped", self.key),
                        )
                        .io());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let c = |v, t, text: &str, op| classify(v, t, text, op);
        // No HTTP answer: never "not found", whatever the operation.
        for op in [Op::Bucket, Op::Object] {
            for v in [Variant::NotFound, Variant::Other] {
                assert_eq!(c(v, Some(Transport::Connect), "", op), Failure::Unreachable);
                assert_eq!(c(v, Some(Transport::Broken), "", op), Failure::Broken);
            }
        }
        let s3 = |code: &str, status: &str| {
            format!("Error performing GET http://h/b in 3ms - Server returned non-2xx status code: {status}: <Error><Code>{code}</Code></Error>")
        };
        assert_eq!(
            c(
                Variant::NotFound,
                None,
                &s3("NoSuchBucket", "404 Not Found"),
                Op::Object
            ),
            Failure::NoBucket
        );
        assert_eq!(
            c(
                Variant::NotFound,
                None,
                &s3("NoSuchKey", "404 Not Found"),
                Op::Object
            ),
            Failure::NotFound
        );
        assert_eq!(
            c(
                Variant::NotFound,
                None,
                "Server returned non-2xx status code: 404 Not Found: ",
                Op::Bucket
            ),
            Failure::NoBucket
        );
        assert_eq!(
            c(
                Variant::NotFound,
                None,
                "Server returned non-2xx status code: 404 Not Found: ",
                Op::Object
            ),
            Failure::NotFound
        );
        assert_eq!(
            c(
                Variant::Denied,
                None,
                &s3("InvalidAccessKeyId", "403 Forbidden"),
                Op::Bucket
            ),
            Failure::Credentials
        );
        assert_eq!(
            c(
                Variant::Denied,
                None,
                &s3("SignatureDoesNotMatch", "403 Forbidden"),
                Op::Object
            ),
            Failure::Credentials
        );
        assert_eq!(
            c(
                Variant::Denied,
                None,
                &s3("AccessDenied", "403 Forbidden"),
                Op::Object
            ),
            Failure::Denied
        );
        assert_eq!(
            c(Variant::Unauthenticated, None, "401", Op::Object),
            Failure::Credentials
        );
        // Azure and GCS spellings.
        assert_eq!(
            c(
                Variant::NotFound,
                None,
                "<Code>ContainerNotFound</Code>",
                Op::Object
            ),
            Failure::NoBucket
        );
        assert_eq!(
            c(
                Variant::Denied,
                None,
                "<Code>AuthenticationFailed</Code>",
                Op::Bucket
            ),
            Failure::Credentials
        );
        assert_eq!(
            c(
                Variant::NotFound,
                None,
                "<Code>BlobNotFound</Code>",
                Op::Object
            ),
            Failure::NotFound
        );
        assert_eq!(
            c(
                Variant::NotFound,
                None,
                "The specified bucket does not exist.",
                Op::Object
            ),
            Failure::NoBucket
        );
        // Server trouble after the retries: broken, not "other".
        assert_eq!(
            c(
                Variant::Other,
                None,
                &s3("SlowDown", "503 Service Unavailable"),
                Op::Object
            ),
            Failure::Broken
        );
        assert_eq!(
            c(
                Variant::Other,
                None,
                "status code: 429 Too Many Requests",
                Op::Object
            ),
            Failure::Broken
        );
        assert_eq!(
            c(Variant::Precondition, None, "412", Op::Object),
            Failure::Broken
        );
        assert_eq!(
            c(
                Variant::Other,
                None,
                "status code: 400 Bad Request: <Code>InvalidArgument</Code>",
                Op::Object
            ),
            Failure::Other
        );
    }

    #[test]
    fn messages_carry_no_secrets() {
        let t = "Error performing GET https://acct.blob.core.windows.net/c/k?sv=2020&sig=SECRETSIG in 1s - AKIDSECRET bad";
        let r = redact(t, &["AKIDSECRET".to_string()]);
        assert!(!r.contains("SECRETSIG") && !r.contains("AKIDSECRET"), "{r}");
        assert!(r.contains("https://acct.blob.core.windows.net/c/k"), "{r}");
        assert!(redact(&"x".repeat(5000), &[]).len() < 700);
    }

    #[test]
    fn statuses_are_read_from_the_text() {
        assert_eq!(
            status_in("Server returned non-2xx status code: 503 Service Unavailable: x"),
            Some(503)
        );
        assert_eq!(status_in("nothing"), None);
    }

    /// A loopback server on a port of its own: each connection's request is read, then
    /// `answer` is written (None: the connection is held open, never answered). Returns the
    /// port and a counter of connections.
    fn loopback(answer: Option<String>) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut c in l.incoming().flatten() {
                seen.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 65536];
                let _ = c.set_read_timeout(Some(Duration::from_millis(300)));
                let _ = c.read(&mut buf);
                match &answer {
                    Some(a) => {
                        let _ = c.write_all(a.as_bytes());
                    }
                    None => held.push(c),
                }
            }
        });
        (port, count)
    }

    fn s3_store(port: u16) -> Arc<dyn Store> {
        crate::storage::targets::build(
            "s3://bkt/p",
            &serde_json::json!({"endpoint": format!("http://127.0.0.1:{port}"), "allow_http": true,
                "retries": 0, "timeout_seconds": 2}),
            &serde_json::json!({"access_key_id": "AKIAEXAMPLE", "secret_access_key": "SECRETKEYXYZ",
                "session_token": "SESSIONTOKENSECRET"}),
        )
        .map_err(|e| e.to_string())
        .unwrap()
    }

    #[test]
    fn redirects_are_never_followed() {
        let (other, reached) = loopback(Some(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        ));
        let (port, _) = loopback(Some(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{other}/bkt/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )));
        let store = s3_store(port);
        assert!(store.list("").is_err());
        assert!(store.get("a/manifest.json").is_err());
        assert!(store.put("a/manifest.json", b"{}").is_err());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(reached.load(Ordering::SeqCst), 0, "a redirect was followed");
    }

    #[test]
    fn cleanup_waits_for_a_silent_server_no_longer_than_its_limit() {
        let (port, _) = loopback(None);
        let store = s3_store(port);
        let t0 = Instant::now();
        let r = within(Duration::from_secs(1), || store.list("x/"));
        let e = r.expect_err("a server that never answers");
        assert_eq!(e.failure, Failure::Broken, "{e}");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        // A read: the same bound.
        let t0 = Instant::now();
        assert!(within(Duration::from_secs(1), || store.get("x/manifest.json")).is_err());
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }

    #[test]
    fn a_listing_counts_folders_not_objects() {
        let mut folders = std::collections::BTreeMap::new();
        crate::storage::store::count_into(&mut folders, "a/manifest.json", 10).unwrap();
        crate::storage::store::count_into(&mut folders, "a/data/00001.copy", 5).unwrap();
        crate::storage::store::count_into(&mut folders, "loose", 5).unwrap();
        let a = &folders["a"];
        assert_eq!((a.objects, a.bytes, a.has_manifest), (2, 15, true));
        assert_eq!(folders.len(), 1);
        for i in 0..crate::storage::store::MAX_FOLDERS - 1 {
            crate::storage::store::count_into(&mut folders, &format!("f{i}/x"), 1).unwrap();
        }
        let e = crate::storage::store::count_into(&mut folders, "one-more/x", 1).unwrap_err();
        assert_eq!(e.sqlstate(), "54000");
    }
}
