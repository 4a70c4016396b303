//! Datagram sources: UDP (`log <addr>`) and a unix datagram socket (`log /path/to/sock`,
//! e.g. in a volume shared by HAProxy's container and ours). HAProxy sends one line per
//! datagram, ending in `\n`.

use std::io;
use std::sync::Arc;

use tokio::net::{UdpSocket, UnixDatagram};
use tokio_util::sync::CancellationToken;

use crate::metrics::Transport;
use crate::pipeline::Pipeline;

/// The largest UDP payload (65535 minus the IPv4 and UDP headers), rounded up.
const DATAGRAM_BUFFER: usize = 64 * 1024;

/// At shutdown, how many datagrams already queued in the socket are still counted.
const DRAIN_LIMIT: usize = 1_000_000;

/// A bound datagram socket of either kind.
pub enum DatagramSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl DatagramSocket {
    fn transport(&self) -> Transport {
        match self {
            DatagramSocket::Udp(_) => Transport::Udp,
            DatagramSocket::Unix(_) => Transport::Unix,
        }
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            DatagramSocket::Udp(socket) => socket.recv(buf).await,
            DatagramSocket::Unix(socket) => socket.recv(buf).await,
        }
    }

    /// Counts what the kernel has already queued. Asked of the kernel directly: tokio's
    /// `try_recv` answers from its cached readiness, which may not have been learned yet.
    fn drain(self, each: impl FnMut(&[u8])) -> usize {
        match self {
            DatagramSocket::Udp(socket) => socket
                .into_std()
                .map_or(0, |socket| drain_with(|buf| socket.recv(buf), each)),
            DatagramSocket::Unix(socket) => socket
                .into_std()
                .map_or(0, |socket| drain_with(|buf| socket.recv(buf), each)),
        }
    }
}

/// Calls `each` for every datagram `recv` returns (the socket is non-blocking) until it
/// has none left.
fn drain_with(
    mut recv: impl FnMut(&mut [u8]) -> io::Result<usize>,
    mut each: impl FnMut(&[u8]),
) -> usize {
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    let mut drained = 0;
    while drained < DRAIN_LIMIT {
        match recv(&mut buf) {
            Ok(len) => each(&buf[..len]),
            Err(_) => break,
        }
        drained += 1;
    }
    drained
}

/// Receives until `shutdown`, then counts what the kernel has already queued for us.
pub async fn serve(
    socket: DatagramSocket,
    pipeline: Arc<Pipeline>,
    max_line_bytes: usize,
    shutdown: CancellationToken,
) {
    let transport = socket.transport();
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            received = socket.recv(&mut buf) => match received {
                Ok(len) => datagram(&pipeline, transport, &buf[..len], max_line_bytes),
                // Errors of a connectionless socket concern one datagram, not the socket.
                Err(err) => tracing::debug!(error = %err, transport = transport.name(), "receive failed"),
            },
        }
    }
    let drained = socket.drain(|d| datagram(&pipeline, transport, d, max_line_bytes));
    tracing::debug!(
        drained,
        transport = transport.name(),
        "datagram source stopped"
    );
}

fn datagram(pipeline: &Pipeline, transport: Transport, datagram: &[u8], max_line_bytes: usize) {
    let end = datagram
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | b'\0'))
        .map_or(0, |last| last + 1);
    pipeline.process_bounded(transport, &datagram[..end], max_line_bytes);
}
