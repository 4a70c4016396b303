//! Securing the HTTP endpoint: `HLE_WEB_CONFIG_FILE`, a file in the web configuration
//! format of the Prometheus Go exporters (exporter-toolkit's `--web.config.file`). TLS
//! (with client certificates), basic auth and extra response headers, in front of every
//! route, the probes included, as exporter-toolkit does.
//!
//! `file` reads the YAML, `tls` builds the rustls configuration, `auth` checks
//! credentials. The file (and the certificates it names) is checked again when a
//! connection arrives, at most once a second, by a `stat`: a change is loaded for the
//! connections after it; a change that does not load keeps the last good configuration.
//!
//! The syslog TCP listener takes a file in the same format (`HLE_SYSLOG_TLS_CONFIG_FILE`,
//! RFC 5425), of which only `tls_server_config` applies: a [`TlsEndpoint`] of its own,
//! loaded, reloaded and handshaken by the same code, with its own counters.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

mod auth;
mod file;
mod tls;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The file is looked at (a `stat` of it and of the certificates) at most this often.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The listener a configuration file secures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The HTTP endpoint (`HLE_WEB_CONFIG_FILE`): every section.
    Web,
    /// The syslog TCP listener (`HLE_SYSLOG_TLS_CONFIG_FILE`): `tls_server_config` only,
    /// and required.
    Syslog,
}

impl Listener {
    /// The variable that names the listener's file.
    pub fn variable(self) -> &'static str {
        match self {
            Listener::Web => "HLE_WEB_CONFIG_FILE",
            Listener::Syslog => "HLE_SYSLOG_TLS_CONFIG_FILE",
        }
    }

    /// What the handshake offers by ALPN.
    fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            // We serve HTTP/1.1 only (`http2` is read and ignored).
            Listener::Web => &[b"http/1.1"],
            // RFC 5425 names no ALPN protocol: a client's offer goes unanswered.
            Listener::Syslog => &[],
        }
    }
}

/// A loaded, valid web configuration file.
#[derive(Clone)]
pub struct WebConfig {
    listener: Listener,
    path: PathBuf,
    loaded: Arc<Loaded>,
}

/// What one version of the file gives.
struct Loaded {
    /// The file's text, which tells two versions apart.
    source: String,
    tls: Option<Arc<ServerConfig>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// User → bcrypt hash; empty: no authentication.
    users: BTreeMap<String, String>,
    /// The file and the files it names, and their stamps when read.
    watched: Vec<PathBuf>,
    stamps: Vec<Stamp>,
}

/// What a `stat` tells of a file: a change of any of these is a new version (a
/// Kubernetes Secret volume swaps a symlink, which changes the inode).
type Stamp = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

impl WebConfig {
    /// Reads and checks the file; every problem is listed.
    pub fn load(path: &Path) -> Result<WebConfig, Vec<String>> {
        WebConfig::load_for(Listener::Web, path)
    }

    /// Reads and checks the file for `listener`; every problem is listed.
    pub fn load_for(listener: Listener, path: &Path) -> Result<WebConfig, Vec<String>> {
        let loaded = load(listener, path)?;
        Ok(WebConfig {
            listener,
            path: path.to_path_buf(),
            loaded: Arc::new(loaded),
        })
    }

    /// Whether the endpoint speaks TLS.
    pub fn tls(&self) -> bool {
        self.loaded.tls.is_some()
    }
}

/// The problems the reading of a configuration file's text finds (its YAML, keys and
/// values; not the files it names): what the fuzz target drives.
pub fn text_problems(text: &str) -> Vec<String> {
    file::read(text).1
}

fn load(listener: Listener, path: &Path) -> Result<Loaded, Vec<String>> {
    let file_stamp = stamp(path);
    let source = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let (settings, mut problems) = file::read(&source);
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut watched = vec![path.to_path_buf()];
    let mut stamps = vec![file_stamp];
    let tls = settings.tls.as_ref().and_then(|t| {
        for file in tls::files(t, dir) {
            stamps.push(stamp(&file));
            watched.push(file);
        }
        tls::server_config(t, dir, listener.alpn(), &mut problems)
    });
    if listener == Listener::Syslog {
        for section in &settings.http_sections {
            problems.push(format!("{section}: not used for syslog"));
        }
        if settings.tls.is_none() {
            problems.push(
                "tls_server_config: missing (a certificate and key); without it, leave the variable empty for plain TCP"
                    .into(),
            );
        }
    }
    let headers = settings
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let parsed = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            );
            match parsed {
                (Ok(name), Ok(value)) => Some((name, value)),
                _ => {
                    problems.push(format!(
                        "http_server_config.headers.{name}: not a valid header value"
                    ));
                    None
                }
            }
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Loaded {
        source,
        tls,
        headers,
        users: settings.users,
        watched,
        stamps,
    })
}

impl PartialEq for WebConfig {
    fn eq(&self, other: &WebConfig) -> bool {
        self.listener == other.listener
            && self.path == other.path
            && self.loaded.source == other.loaded.source
    }
}

// Not derived: the file holds password hashes and may hold a private key.
impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("listener", &self.listener)
            .field("path", &self.path)
            .field("tls", &self.tls())
            .field("users", &self.loaded.users.len())
            .field("headers", &self.loaded.headers.len())
            .finish()
    }
}

/// The self-metrics of one TLS listener's configuration and handshakes.
#[derive(Clone)]
pub struct TlsCounters {
    reloads: IntCounterVec,
    handshake_failures: IntCounter,
}

impl TlsCounters {
    /// Registers the counters of `listener`.
    pub fn new(registry: &Registry, listener: Listener) -> Result<TlsCounters, prometheus::Error> {
        let (reloads_name, reloads_help, failures_name, failures_help) = match listener {
            Listener::Web => (
                "haproxy_log_exporter_web_config_reloads_total",
                "Changes of HLE_WEB_CONFIG_FILE (or of the certificates it names) loaded (success) or refused, the last good configuration kept (failure).",
                "haproxy_log_exporter_web_tls_handshake_failures_total",
                "HTTP connections closed because their TLS handshake failed or timed out.",
            ),
            Listener::Syslog => (
                "haproxy_log_exporter_syslog_tls_config_reloads_total",
                "Changes of HLE_SYSLOG_TLS_CONFIG_FILE (or of the certificates it names) loaded (success) or refused, the last good configuration kept (failure).",
                "haproxy_log_exporter_syslog_tls_handshake_failures_total",
                "Syslog TCP connections closed unread because their TLS handshake failed or timed out.",
            ),
        };
        let reloads = IntCounterVec::new(Opts::new(reloads_name, reloads_help), &["result"])?;
        let handshake_failures = IntCounter::new(failures_name, failures_help)?;
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(handshake_failures.clone()))?;
        Ok(TlsCounters {
            reloads,
            handshake_failures,
        })
    }
}

/// The self-metrics of the HTTP endpoint's security.
#[derive(Clone)]
pub struct WebCounters {
    tls: TlsCounters,
    auth_failures: IntCounter,
}

impl WebCounters {
    /// Registers the counters.
    pub fn new(registry: &Registry) -> Result<WebCounters, prometheus::Error> {
        let tls = TlsCounters::new(registry, Listener::Web)?;
        let auth_failures = IntCounter::new(
            "haproxy_log_exporter_web_auth_failures_total",
            "HTTP requests answered 401 because their basic auth credentials were missing or wrong.",
        )?;
        registry.register(Box::new(auth_failures.clone()))?;
        Ok(WebCounters { tls, auth_failures })
    }
}

/// A configuration file in force, reloaded when its files change, and the TLS handshake
/// it asks for.
pub struct TlsEndpoint {
    listener: Listener,
    path: PathBuf,
    current: Mutex<Current>,
    reloads: IntCounterVec,
    handshake_failures: IntCounter,
}

struct Current {
    loaded: Arc<Loaded>,
    checked: Instant,
    /// The stamps of a version that did not load: not tried again until they change.
    failed: Option<Vec<Stamp>>,
}

// Not derived: what is loaded may hold a private key.
impl fmt::Debug for TlsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsEndpoint")
            .field("listener", &self.listener)
            .field("path", &self.path)
            .finish()
    }
}

impl TlsEndpoint {
    /// The syslog TCP listener's TLS, from the configuration loaded at startup (with
    /// [`Listener::Syslog`]); registers its counters.
    pub fn syslog(
        config: WebConfig,
        registry: &Registry,
    ) -> Result<TlsEndpoint, prometheus::Error> {
        let counters = TlsCounters::new(registry, Listener::Syslog)?;
        tracing::info!(
            file = %config.path.display(),
            "syslog TLS configuration loaded"
        );
        Ok(TlsEndpoint::new(config, counters))
    }

    fn new(config: WebConfig, counters: TlsCounters) -> TlsEndpoint {
        TlsEndpoint {
            listener: config.listener,
            path: config.path,
            current: Mutex::new(Current {
                loaded: config.loaded,
                checked: Instant::now(),
                failed: None,
            }),
            reloads: counters.reloads,
            handshake_failures: counters.handshake_failures,
        }
    }

    /// The configuration in force, after looking for a change if it is time to.
    fn snapshot(&self) -> Arc<Loaded> {
        // A poisoned lock still holds a whole configuration: use it rather than fail
        // open (no TLS, no authentication) or drop every connection.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.checked.elapsed() >= CHECK_EVERY {
            current.checked = Instant::now();
            self.reload_if_changed(&mut current);
        }
        current.loaded.clone()
    }

    fn reload_if_changed(&self, current: &mut Current) {
        let stamps: Vec<Stamp> = current.loaded.watched.iter().map(|p| stamp(p)).collect();
        if stamps == current.loaded.stamps || current.failed.as_ref() == Some(&stamps) {
            return;
        }
        let var = self.listener.variable();
        let result = load(self.listener, &self.path).and_then(|loaded| {
            if loaded.tls.is_some() != current.loaded.tls.is_some() {
                Err(vec![
                    "TLS cannot be turned on or off while running; restart the exporter".into(),
                ])
            } else {
                Ok(loaded)
            }
        });
        match result {
            Ok(loaded) => {
                current.loaded = Arc::new(loaded);
                current.failed = None;
                self.reloads.with_label_values(&["success"]).inc();
                tracing::info!(file = %self.path.display(), variable = var, "configuration file reloaded");
            }
            Err(problems) => {
                // Logged once per version of the files: not again until they change.
                current.failed = Some(stamps);
                self.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(
                    file = %self.path.display(),
                    variable = var,
                    problems = %problems.join("; "),
                    "configuration file not reloaded; the last good one stays in force"
                );
            }
        }
    }

    /// The TLS handshake of `stream` with the configuration in force, within
    /// [`HANDSHAKE_TIMEOUT`]; `None` when it failed (counted, logged at debug). A
    /// configuration without TLS fails every handshake: the endpoint never falls back to
    /// plain text.
    pub async fn handshake<S>(&self, stream: S) -> Option<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(config) = self.snapshot().tls.clone() else {
            self.handshake_failures.inc();
            tracing::debug!("tls handshake refused: no TLS configuration in force");
            return None;
        };
        let handshake = TlsAcceptor::from(config).accept(stream);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(err)) => {
                self.handshake_failures.inc();
                tracing::debug!(error = %err, listener = ?self.listener, "tls handshake failed");
                None
            }
            Err(_) => {
                self.handshake_failures.inc();
                tracing::debug!(listener = ?self.listener, "tls handshake timed out");
                None
            }
        }
    }
}

/// The web configuration in force: TLS as a [`TlsEndpoint`], and basic auth and headers.
pub struct Security {
    endpoint: TlsEndpoint,
    verifier: auth::Verifier,
    auth_failures: IntCounter,
}

impl Security {
    /// The security of the endpoint, from the configuration loaded at startup.
    pub fn new(config: WebConfig, registry: &Registry) -> Result<Security, prometheus::Error> {
        let counters = WebCounters::new(registry)?;
        tracing::info!(
            file = %config.path.display(),
            tls = config.tls(),
            basic_auth_users = config.loaded.users.len(),
            "web configuration loaded"
        );
        Ok(Security {
            endpoint: TlsEndpoint::new(config, counters.tls),
            verifier: auth::Verifier::new(),
            auth_failures: counters.auth_failures,
        })
    }

    fn snapshot(&self) -> Arc<Loaded> {
        self.endpoint.snapshot()
    }
}

/// A connection as served: plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The accepted connection, after its TLS handshake when the endpoint speaks TLS; `None`
/// when the handshake failed (counted, logged at debug).
pub async fn accept(security: Option<&Security>, stream: TcpStream) -> Option<Stream> {
    let Some(security) = security else {
        return Some(Stream::Plain(stream));
    };
    if security.snapshot().tls.is_none() {
        return Some(Stream::Plain(stream));
    }
    let tls = security.endpoint.handshake(stream).await?;
    Some(Stream::Tls(Box::new(tls)))
}

/// The response to a request: 401 without the right credentials (when users are
/// configured), `respond`'s otherwise; the configured headers on both.
pub async fn guarded<B>(
    security: Option<&Security>,
    req: &Request<B>,
    respond: impl Future<Output = Response<Bytes>>,
) -> Response<Bytes> {
    let Some(security) = security else {
        return respond.await;
    };
    let loaded = security.snapshot();
    let mut response = if loaded.users.is_empty() {
        respond.await
    } else {
        let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
        if security.verifier.allows(&loaded.users, header).await {
            respond.await
        } else {
            security.auth_failures.inc();
            unauthorized()
        }
    };
    for (name, value) in &loaded.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

fn unauthorized() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(b"Unauthorized\n"));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
