//! haproxy-log-exporter: HAProxy's log stream in, Prometheus metrics out.
//!
//! One pipeline, one direction:
//!
//! ```text
//! ingest::{datagram,unix,tcp,replay} → ingest::codec → syslog → haproxy (parser or
//!     format → LogRecord) → pipeline → metrics (aggregator → store, selfmon)
//!     → http (/metrics, written by metrics::exposition)
//! ```
//!
//! The layout table of docs/development.md names the room for each part.
//!
//! `Server::bind` binds every socket (after the configuration was validated), and
//! `Server::run` serves until the shutdown future resolves. Tests start the daemon the
//! same way as `main`, on port 0.

#![forbid(unsafe_code)]

pub mod check;
pub mod config;
pub mod error;
pub mod forward;
pub mod haproxy;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
mod scan;
pub mod shutdown;
pub mod spop;
pub mod syslog;
pub mod telemetry;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, ConfigError};
pub use error::Error;

use ingest::datagram::DatagramSocket;
use ingest::tcp::TcpSettings;
use pipeline::Pipeline;

/// How long shutdown waits for connections to finish before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The exporter with every socket bound, ready to run.
pub struct Server {
    config: Config,
    udp: Option<(UdpSocket, Option<ingest::datagram::Batching>)>,
    /// The syslog TCP listener, and its TLS (`HLE_SYSLOG_TLS_CONFIG_FILE`) if any.
    tcp: Option<(TcpListener, Option<Arc<web::TlsEndpoint>>)>,
    unix: Option<std::os::unix::net::UnixDatagram>,
    unix_file: Option<ingest::unix::SocketFile>,
    web: TcpListener,
    spoe: Option<(TcpListener, Arc<spop::Agent>)>,
    /// TLS and basic auth of the HTTP endpoint (`HLE_WEB_CONFIG_FILE`).
    web_security: Option<Arc<web::Security>>,
    pipeline: Arc<Pipeline>,
    http_counters: http::HttpCounters,
    registry: Registry,
}

impl Server {
    /// Registers the metrics and binds the listeners.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let pipeline = Arc::new(Pipeline::from_config(&config, &registry)?);
        let http_counters = http::HttpCounters::new(&registry)?;

        let udp = match config.syslog_udp_addr {
            Some(addr) => {
                let (socket, buffer) = ingest::datagram::bind_udp(
                    addr,
                    config.udp_recv_buffer_bytes,
                    config.udp_recv_buffer_explicit,
                )
                .await
                .map_err(bind_error("HLE_SYSLOG_UDP_ADDR", addr))?;
                registry.register(Box::new(metrics::UdpKernelStats::new(&socket, buffer)?))?;
                Some((socket, ingest::datagram::Batching::for_udp_buffer(buffer)))
            }
            None => None,
        };
        let tcp = match config.syslog_tcp_addr {
            Some(addr) => {
                let listener = ingest::tcp::bind(addr)
                    .await
                    .map_err(bind_error("HLE_SYSLOG_TCP_ADDR", addr))?;
                let tls = match &config.syslog_tls_config {
                    Some(file) => {
                        Some(Arc::new(web::TlsEndpoint::syslog(file.clone(), &registry)?))
                    }
                    None => None,
                };
                Some((listener, tls))
            }
            None => None,
        };
        let spoe = match &config.spoe {
            Some(spoe) => {
                let listener = TcpListener::bind(spoe.addr)
                    .await
                    .map_err(bind_error("HLE_SPOE_ADDR", spoe.addr))?;
                let counters = spop::counters::SpopCounters::new(&registry)?;
                let agent = spop::Agent::new(
                    pipeline.clone(),
                    counters,
                    spoe,
                    config.custom_labels.clone(),
                );
                Some((listener, Arc::new(agent)))
            }
            None => None,
        };
        let web_security = match &config.web_config {
            Some(web_config) => Some(Arc::new(web::Security::new(web_config.clone(), &registry)?)),
            None => None,
        };
        let addr = config.web_listen_addr;
        let web = TcpListener::bind(addr)
            .await
            .map_err(bind_error("HLE_WEB_LISTEN_ADDR", addr))?;
        // Last, so that a failed start leaves no socket file behind.
        let (unix, unix_file) = match &config.syslog_unix_path {
            Some(path) => {
                let (socket, file) = ingest::unix::bind(path, config.syslog_unix_mode)?;
                (Some(socket), Some(file))
            }
            None => (None, None),
        };
        Ok(Server {
            config,
            udp,
            tcp,
            unix,
            unix_file,
            web,
            spoe,
            web_security,
            pipeline,
            http_counters,
            registry,
        })
    }

    /// The bound UDP syslog address, if enabled.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|(s, _)| s.local_addr().ok())
    }

    /// The bound TCP syslog address, if enabled.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|(s, _)| s.local_addr().ok())
    }

    /// The registry of the self-metrics (a shared handle), so tests can read it after
    /// `run` has returned.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// The pipeline every source feeds; its `exposition` is what `/metrics` serves.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.clone()
    }

    /// The bound SPOE agent address, if enabled.
    pub fn spoe_addr(&self) -> Option<SocketAddr> {
        self.spoe.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The bound unix socket's path, if enabled.
    pub fn unix_path(&self) -> Option<&Path> {
        self.config.syslog_unix_path.as_deref()
    }

    /// The bound HTTP address.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then stops accepting, counts every complete
    /// frame already read, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let token = CancellationToken::new();
        // The datagram sources are threads: should this future be dropped instead of
        // finishing (a runtime shut down under it), they must stop too.
        let _stop_sources = token.clone().drop_guard();
        let tracker = TaskTracker::new();
        self.log_listening();
        let Server {
            config,
            udp,
            tcp,
            unix,
            unix_file,
            web,
            spoe,
            web_security,
            pipeline,
            http_counters,
            registry: _,
        } = self;
        if let Some(forward) = pipeline.forwarders() {
            forward.start();
        }
        spawn_sources(&config, &pipeline, (udp, unix, tcp), &token, &tracker);
        let spoe_agent = spoe.as_ref().map(|(_, agent)| agent.clone());
        if let (Some((listener, agent)), Some(settings)) = (spoe, &config.spoe) {
            tracker.spawn(spop::serve(
                listener,
                agent,
                settings.max_connections,
                settings.allowed_sources.clone(),
                token.clone(),
                tracker.clone(),
            ));
        }
        tracker.spawn(pipeline::expire_idle_series(
            pipeline.clone(),
            token.clone(),
        ));
        tracker.spawn(pipeline::warn_when_nothing_is_counted(
            pipeline.clone(),
            metrics::NOTHING_COUNTED_PERIOD,
            token.clone(),
        ));
        let state = Arc::new(http::State::new(
            pipeline.clone(),
            config.web_telemetry_path.clone(),
            config.web.clone(),
            http_counters,
            web_security,
        ));
        tracker.spawn(http::serve(
            web,
            state.clone(),
            token.clone(),
            tracker.clone(),
        ));
        state.ready.store(true, Ordering::Relaxed);

        shutdown.await;
        state.ready.store(false, Ordering::Relaxed);
        token.cancel();
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close in time");
        }
        if let Some(file) = &unix_file {
            file.remove_if_ours();
        }
        let forwarded = match pipeline.forwarders() {
            Some(forward) => forward.finish(config.forward.shutdown_grace).await,
            None => Vec::new(),
        };
        log_summary(&pipeline, &forwarded, spoe_agent.as_deref());
        Ok(())
    }

    fn log_listening(&self) {
        let show =
            |addr: Option<SocketAddr>| addr.map_or("disabled".to_string(), |a| a.to_string());
        tracing::info!(
            udp = %show(self.udp_addr()),
            tcp = %show(self.tcp_addr()),
            tcp_tls = self.tcp.as_ref().is_some_and(|(_, tls)| tls.is_some()),
            unix = %self.unix_path().map_or("disabled".into(), |p| p.display().to_string()),
            spoe = %show(self.spoe_addr()),
            web = %show(self.web_addr()),
            metrics = self.config.metrics.len(),
            "listening"
        );
    }
}

/// The bound sockets, each read until `token` is cancelled.
type Sockets = (
    Option<(UdpSocket, Option<ingest::datagram::Batching>)>,
    Option<std::os::unix::net::UnixDatagram>,
    Option<(TcpListener, Option<Arc<web::TlsEndpoint>>)>,
);

/// Starts a reader for each bound socket.
fn spawn_sources(
    config: &Config,
    pipeline: &Arc<Pipeline>,
    (udp, unix, tcp): Sockets,
    token: &CancellationToken,
    tracker: &TaskTracker,
) {
    let datagram_sockets = [
        udp.map(|(socket, batching)| (DatagramSocket::Udp(socket), batching)),
        unix.map(|socket| (DatagramSocket::Unix(socket), None)),
    ];
    for (socket, batching) in datagram_sockets.into_iter().flatten() {
        tracker.spawn(ingest::datagram::serve(
            socket,
            pipeline.clone(),
            config.max_line_bytes,
            batching,
            config.syslog_allowed_sources.clone(),
            token.clone(),
        ));
    }
    if let Some((listener, tls)) = tcp {
        let settings = TcpSettings {
            max_connections: config.tcp_max_connections,
            max_line_bytes: config.max_line_bytes,
            idle_timeout: config.tcp_idle_timeout,
            framing: config.syslog_tcp_framing,
            buffer_budget_bytes: config.tcp_buffer_budget_bytes,
            allowed_sources: config.syslog_allowed_sources.clone(),
            tls,
        };
        tracker.spawn(ingest::tcp::serve(
            listener,
            pipeline.clone(),
            settings,
            token.clone(),
            tracker.clone(),
        ));
    }
}

/// The last line: what this process counted, for an operator or a test to compare with
/// what was sent.
fn log_summary(
    pipeline: &Pipeline,
    forwarded: &[forward::SinkSnapshot],
    spoe: Option<&spop::Agent>,
) {
    if let Some(agent) = spoe {
        let m = agent.counters().messages();
        tracing::info!(
            messages_received = m.received,
            messages_counted = m.counted,
            messages_routed = m.routed,
            messages_rejected = m.rejected,
            messages_ignored = m.ignored,
            "spoe agent stopped"
        );
    }
    for sink in forwarded {
        tracing::info!(
            sink = sink.sink,
            lines_given = sink.given,
            lines_forwarded = sink.forwarded,
            lines_dropped = sink.dropped_total(),
            lines_sampled_out = sink.sampled_out,
            "forwarding stopped"
        );
    }
    let counts = pipeline.selfmon().snapshot();
    tracing::info!(
        lines_received = counts.received,
        lines_counted = counts.counted,
        lines_rejected = counts.rejected_total(),
        lines_ignored = counts.ignored_total(),
        "stopped"
    );
}

/// A bind error of the listener whose address `var` gives.
fn bind_error(var: &'static str, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Bind { var, addr, source }
}
