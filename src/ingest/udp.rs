//! UDP syslog source: HAProxy's `log <addr>` sends one line per datagram, ending in `\n`.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::metrics::Transport;
use crate::pipeline::Pipeline;

/// The largest UDP payload (65535 minus the IPv4 and UDP headers), rounded up.
const DATAGRAM_BUFFER: usize = 64 * 1024;

/// At shutdown, how many datagrams already queued in the socket are still counted.
const DRAIN_LIMIT: usize = 1_000_000;

/// Receives until `shutdown`, then counts what the kernel has already queued for us.
pub async fn serve(
    socket: UdpSocket,
    pipeline: Arc<Pipeline>,
    max_line_bytes: usize,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, _peer)) => datagram(&pipeline, &buf[..len], max_line_bytes),
                // Errors of a connectionless socket concern one datagram, not the socket.
                Err(err) => tracing::debug!(error = %err, "udp receive failed"),
            },
        }
    }
    // Whatever the kernel already queued for us is counted too. Asked of the kernel
    // directly: tokio's `try_recv_from` answers from its cached readiness, which may not
    // have been learned yet.
    let mut drained = 0;
    if let Ok(socket) = socket.into_std() {
        while drained < DRAIN_LIMIT {
            match socket.recv_from(&mut buf) {
                Ok((len, _peer)) => datagram(&pipeline, &buf[..len], max_line_bytes),
                Err(_) => break,
            }
            drained += 1;
        }
    }
    tracing::debug!(drained, "udp source stopped");
}

fn datagram(pipeline: &Pipeline, datagram: &[u8], max_line_bytes: usize) {
    let end = datagram
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | b'\0'))
        .map_or(0, |last| last + 1);
    let line = &datagram[..end];
    if line.len() > max_line_bytes {
        pipeline.selfmon().oversize(Transport::Udp, line.len());
    } else {
        pipeline.process(Transport::Udp, line);
    }
}
