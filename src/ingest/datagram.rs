//! Datagram sources: UDP (`log <addr>`) and a unix datagram socket (`log /path/to/sock`,
//! e.g. in a volume shared by HAProxy's container and ours). HAProxy sends one line per
//! datagram, ending in `\n`.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge};
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

/// Sets the UDP socket's receive buffer (`HLE_UDP_RECV_BUFFER_BYTES`). The kernel caps
/// the request at `net.core.rmem_max`: that is a warning when the operator asked for the
/// size, and worth a note when it is the default. Returns what the kernel reports: on
/// Linux twice the usable size, the other half being its bookkeeping.
pub fn set_recv_buffer(
    socket: &UdpSocket,
    bytes: Option<usize>,
    explicit: bool,
) -> io::Result<usize> {
    let socket = socket2::SockRef::from(socket);
    if let Some(requested) = bytes {
        socket.set_recv_buffer_size(requested)?;
    }
    let reported = socket.recv_buffer_size()?;
    let granted = reported / 2;
    if let Some(requested) = bytes.filter(|&requested| granted < requested) {
        let hint = "raise net.core.rmem_max to get it; bursts beyond the buffer are dropped \
                    and counted in haproxy_log_exporter_udp_receive_drops_total";
        if explicit {
            tracing::warn!(
                requested,
                granted,
                "the kernel granted a smaller UDP receive buffer than HLE_UDP_RECV_BUFFER_BYTES; {hint}"
            );
        } else {
            tracing::info!(
                requested,
                granted,
                "the kernel granted a smaller UDP receive buffer than the default request; {hint}"
            );
        }
    }
    Ok(reported)
}

/// `haproxy_log_exporter_udp_receive_drops_total` and `..._udp_receive_buffer_bytes`:
/// the kernel's own counts for our UDP socket, read from `/proc/net/udp` and
/// `/proc/net/udp6` at each scrape (the `drops` column: datagrams the kernel discarded
/// because the socket's receive buffer was full, the count `SO_RXQ_OVFL` reports).
pub struct UdpKernelStats {
    inode: u64,
    drops: IntCounter,
    buffer: IntGauge,
    /// The kernel's count at the last scrape, to advance the counter by the difference.
    seen: Mutex<u64>,
}

impl UdpKernelStats {
    /// Stats of `socket`, whose receive buffer the kernel reported as `buffer_bytes`.
    pub fn new(socket: &UdpSocket, buffer_bytes: usize) -> Result<Self, prometheus::Error> {
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .map(|meta| meta.ino())
            .unwrap_or(0);
        let drops = IntCounter::new(
            "haproxy_log_exporter_udp_receive_drops_total",
            "Datagrams the kernel dropped for the syslog UDP socket because its receive buffer was full.",
        )?;
        let buffer = IntGauge::new(
            "haproxy_log_exporter_udp_receive_buffer_bytes",
            "Receive buffer of the syslog UDP socket as the kernel reports it (SO_RCVBUF; on Linux twice the usable size).",
        )?;
        buffer.set(i64::try_from(buffer_bytes).unwrap_or(i64::MAX));
        Ok(UdpKernelStats {
            inode,
            drops,
            buffer,
            seen: Mutex::new(0),
        })
    }
}

impl Collector for UdpKernelStats {
    fn desc(&self) -> Vec<&Desc> {
        self.drops
            .desc()
            .into_iter()
            .chain(self.buffer.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let table = ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter(|_| self.inode != 0)
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .find_map(|table| socket_drops(&table, self.inode));
        if let Some(now) = table {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            self.drops.inc_by(now.saturating_sub(*seen));
            *seen = now.max(*seen);
        }
        let mut families = self.drops.collect();
        families.extend(self.buffer.collect());
        families
    }
}

/// The `drops` column (the last) of the row of `/proc/net/udp{,6}` whose inode (the
/// tenth column) is `inode`.
fn socket_drops(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|row| {
        let columns: Vec<&str> = row.split_whitespace().collect();
        let row_inode: u64 = columns.get(9)?.parse().ok()?;
        (row_inode == inode).then(|| columns.last()?.parse().ok())?
    })
}
