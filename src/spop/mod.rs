//! SPOE source: HAProxy's Stream Processing Offload Engine connects to this agent and
//! sends each transaction's fields as typed messages (SPOP 2.0); the agent answers each
//! with an ACK that can set HAProxy variables (the route of the request), and turns the
//! response messages into the same `LogRecord` a log line gives.
//!
//! `frame` holds the frame types and payloads, `codec` the tokio-util framing, `message`
//! the contract with the shipped engine file, `agent` one connection, `counters` the
//! self-metrics. This module accepts connections, up to `HLE_SPOE_MAX_CONNECTIONS`.

pub mod agent;
pub mod codec;
pub mod counters;
pub mod frame;
pub mod message;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::AllowList;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use agent::Agent;

#[cfg(test)]
mod tests;

/// Accepts SPOE connections until `shutdown`; each is served in a task of `tracker` and
/// sends AGENT-DISCONNECT at shutdown. A connection from outside `allowed` is closed
/// unread and counted.
pub async fn serve(
    listener: TcpListener,
    agent: Arc<Agent>,
    max_connections: usize,
    allowed: AllowList,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    while let Some((stream, peer)) = crate::ingest::tcp::accept(&listener, &shutdown, "spoe").await
    {
        if !allowed.allows(peer.ip()) {
            agent.pipeline().selfmon().sender_refused("spoe", peer);
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            agent.counters().connection_refused();
            tracing::debug!(%peer, max = max_connections, "spoe connection refused: too many open");
            continue;
        };
        let (agent, shutdown) = (agent.clone(), shutdown.clone());
        tracker.spawn(async move {
            agent.connection(stream, shutdown).await;
            drop(permit);
        });
    }
}
