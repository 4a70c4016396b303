//! HTTP, the end of the pipeline: the Prometheus exposition, `/-/healthy`, `/-/ready` and a
//! small index page, on hyper 1 (HTTP/1.1), bounded so that scrapers and stray clients
//! cannot take what the receivers need.
//!
//! This module accepts connections, up to `HLE_WEB_MAX_CONNECTIONS`; `connection` serves
//! one (any I/O: after accept comes the TLS handshake of `HLE_WEB_CONFIG_FILE`, if any), `respond` answers a
//! request, `scrape` makes concurrent scrapes share one rendering, and `counters` holds
//! the self-metrics.

mod connection;
pub mod counters;
mod negotiate;
mod respond;
mod scrape;
mod slots;

use negotiate::Offered;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebConfig;
use crate::pipeline::Pipeline;
pub use counters::HttpCounters;
use scrape::Exposition;
use slots::{Admission, Slot, Slots};

/// What the handlers need.
pub struct State {
    pub telemetry_path: String,
    /// True once every listener is bound and served, false again when shutting down.
    pub ready: AtomicBool,
    limits: WebConfig,
    counters: HttpCounters,
    exposition: Arc<Exposition>,
    /// The formats offered beside text, fixed by the configuration.
    offered: Offered,
    /// TLS and basic auth (`HLE_WEB_CONFIG_FILE`), if configured.
    security: Option<Arc<crate::web::Security>>,
}

impl State {
    pub fn new(
        pipeline: Arc<Pipeline>,
        telemetry_path: String,
        limits: WebConfig,
        counters: HttpCounters,
        security: Option<Arc<crate::web::Security>>,
    ) -> State {
        let (protobuf, openmetrics) = pipeline.offers();
        State {
            security,
            offered: Offered {
                protobuf,
                openmetrics,
            },
            telemetry_path,
            ready: false.into(),
            exposition: Arc::new(Exposition::new(
                pipeline,
                limits.scrape_cache_ttl,
                counters.clone(),
            )),
            limits,
            counters,
        }
    }
}

/// Accepts until `shutdown`; each connection is served in a task of `tracker`. At most
/// `HLE_WEB_MAX_CONNECTIONS` are open, so that HTTP clients never hold more descriptors
/// than that (the syslog listeners need theirs): beyond it a new connection takes the
/// slot of the oldest idle one, which is closed, or, when every open one is answering a
/// request, is closed at once. Both are counted.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Slots::new(state.limits.max_connections);
    while let Some((stream, peer)) = crate::ingest::tcp::accept(&listener, &shutdown, "http").await
    {
        let slot = match slots.admit().await {
            Admission::Admitted(slot) => slot,
            Admission::Evicted(slot) => {
                state.counters.connection_evicted();
                tracing::debug!(%peer, max = state.limits.max_connections, "http connection admitted in the place of an idle one");
                slot
            }
            Admission::Refused => {
                state.counters.connection_refused();
                tracing::debug!(%peer, max = state.limits.max_connections, "http connection refused: every open one is busy");
                continue;
            }
        };
        tracker.spawn(accepted(
            stream,
            peer,
            slot,
            state.clone(),
            shutdown.clone(),
        ));
    }
}

/// One accepted connection, counted while open, closed early if a newer one takes its slot.
async fn accepted(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    state.counters.connection_opened();
    // After the TLS handshake, when the endpoint speaks TLS.
    let handshake = crate::web::accept(state.security.as_deref(), stream);
    let stream = tokio::select! {
        stream = handshake => stream,
        _ = slot.evicted.cancelled() => None,
    };
    if let Some(stream) = stream {
        connection::serve_connection(TokioIo::new(stream), peer, &slot, state.clone(), shutdown)
            .await;
    }
    state.counters.connection_closed();
    drop(slot);
}
