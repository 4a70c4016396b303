//! Datagram sources: UDP (`log <addr>`) and a unix datagram socket (`log /path/to/sock`,
//! e.g. in a volume shared by HAProxy's container and ours). HAProxy sends one line per
//! datagram, ending in `\n`. A UDP datagram from outside `HLE_SYSLOG_ALLOWED_SOURCES` is
//! dropped unread: not received, but counted in `senders_refused_total`.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use std::os::unix::net::UnixDatagram;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::config::AllowList;
use crate::metrics::Transport;
use crate::pipeline::Pipeline;

/// The largest UDP payload (65535 minus the IPv4 and UDP headers), rounded up: no UDP
/// datagram fills a buffer of this size.
const UDP_BUFFER_MAX: usize = 64 * 1024;

/// Room in the receive buffer after `HLE_MAX_LINE_BYTES` for the `\n`, `\r` or NUL a
/// datagram ends with. A datagram that fills the buffer is longer than any line accepted
/// (its rest was cut by the kernel), so it is counted as oversize without its length.
const TERMINATOR_ROOM: usize = 8;

/// At shutdown, how many datagrams already queued in the socket are still counted.
const DRAIN_LIMIT: usize = 1_000_000;

/// A bound datagram socket of either kind.
pub enum DatagramSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

/// The receive buffer for lines of up to `max_line_bytes`.
fn buffer_len(transport: Transport, max_line_bytes: usize) -> usize {
    let len = max_line_bytes.saturating_add(TERMINATOR_ROOM);
    match transport {
        Transport::Udp => len.min(UDP_BUFFER_MAX),
        _ => len,
    }
}

/// The same socket taken out of tokio's reactor, read by a thread of its own.
enum StdSocket {
    Udp(std::net::UdpSocket),
    Unix(std::os::unix::net::UnixDatagram),
}

impl DatagramSocket {
    fn transport(&self) -> Transport {
        match self {
            DatagramSocket::Udp(_) => Transport::Udp,
            DatagramSocket::Unix(_) => Transport::Unix,
        }
    }

    fn into_std(self) -> io::Result<StdSocket> {
        Ok(match self {
            DatagramSocket::Udp(socket) => StdSocket::Udp(socket.into_std()?),
            DatagramSocket::Unix(socket) => StdSocket::Unix(socket),
        })
    }
}

impl StdSocket {
    /// A datagram's length and, for UDP, its sender.
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<SocketAddr>)> {
        match self {
            StdSocket::Udp(socket) => socket.recv_from(buf).map(|(len, from)| (len, Some(from))),
            StdSocket::Unix(socket) => socket.recv(buf).map(|len| (len, None)),
        }
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            StdSocket::Udp(socket) => socket.set_nonblocking(nonblocking),
            StdSocket::Unix(socket) => socket.set_nonblocking(nonblocking),
        }
    }

    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            StdSocket::Udp(socket) => socket.set_read_timeout(Some(timeout)),
            StdSocket::Unix(socket) => socket.set_read_timeout(Some(timeout)),
        }
    }

    /// Calls `each` for every datagram already queued, at most `limit`, without waiting
    /// (UDP: through `recvmmsg`, many at a time). Returns how many there were.
    fn read_queued(&self, reader: &mut Reader, limit: usize, mut each: impl Each) -> usize {
        let mut read = 0;
        while read < limit {
            let got = match (self, reader.multi.as_mut()) {
                (StdSocket::Udp(socket), Some(multi)) => {
                    multi.read(socket.as_raw_fd(), limit - read, &mut each)
                }
                _ => self.recv(&mut reader.buf).map(|(len, from)| {
                    each(&reader.buf[..len], from);
                    (1, false)
                }),
            };
            match got {
                Ok((n, more)) => {
                    read += n;
                    if !more {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                // Errors of a connectionless socket concern one datagram, not the socket.
                Err(err) => {
                    tracing::debug!(error = %err, "receive failed");
                    read += 1;
                }
            }
        }
        read
    }
}

/// Datagrams taken from a UDP socket by one `recvmmsg`: at 30k lines/s, a 1 ms pause
/// queues about 30.
const RECV_BATCH: usize = 32;

/// The receive buffers of a datagram source: one, and for UDP those of `recvmmsg`.
struct Reader {
    buf: Vec<u8>,
    multi: Option<MultiBuffers>,
}

impl Reader {
    fn new(socket: &StdSocket, buffer: usize) -> Reader {
        Reader {
            buf: vec![0u8; buffer],
            multi: matches!(socket, StdSocket::Udp(_)).then(|| MultiBuffers::new(buffer)),
        }
    }
}

/// [`RECV_BATCH`] buffers of `len` bytes, end to end, and their message headers.
struct MultiBuffers {
    headers: MultiHeaders<SockaddrStorage>,
    data: Vec<u8>,
    len: usize,
    /// Length and sender of each datagram of the last `recvmmsg`.
    got: Vec<(usize, Option<SocketAddr>)>,
}

impl MultiBuffers {
    fn new(len: usize) -> MultiBuffers {
        let len = len.max(1);
        MultiBuffers {
            headers: MultiHeaders::preallocate(RECV_BATCH, None),
            data: vec![0u8; len * RECV_BATCH],
            len,
            got: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// One `recvmmsg` of at most `max` datagrams, without waiting; `each` is called for
    /// every one. Returns how many, and whether more may be queued (all asked for came).
    fn read(&mut self, fd: i32, max: usize, each: &mut impl Each) -> io::Result<(usize, bool)> {
        let want = max.clamp(1, RECV_BATCH);
        self.got.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
                .data
                .chunks_mut(self.len)
                .take(want)
                .map(|chunk| [IoSliceMut::new(chunk)])
                .collect();
            let results = recvmmsg(
                fd,
                &mut self.headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for msg in results {
                self.got
                    .push((msg.bytes, msg.address.and_then(|a| socket_addr(&a))));
            }
        }
        for (i, &(len, from)) in self.got.iter().enumerate() {
            let start = i * self.len;
            if let Some(datagram) = self.data.get(start..start + len.min(self.len)) {
                each(datagram, from);
            }
        }
        Ok((self.got.len(), self.got.len() == want))
    }
}

/// The sender of a UDP datagram.
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// What is done with each datagram and its sender.
trait Each: FnMut(&[u8], Option<SocketAddr>) {}
impl<F: FnMut(&[u8], Option<SocketAddr>)> Each for F {}

/// Waking up once per datagram costs more CPU than parsing it: at 30k lines/s, sent one
/// at a time as HAProxy does, most of the exporter's time went to `epoll_wait` and
/// context switches. So a UDP source that found a datagram pauses a moment and lets the
/// kernel queue the next ones, then reads them in one go; a pause that brings none
/// returns to waiting. The pause is taken only while what piles up in one stays well
/// inside the socket's receive buffer, measured after each pause: a busy socket is read
/// as datagrams come, and pausing is tried again a little later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pause: Duration,
    /// Datagrams queued during one pause from which on the socket counts as busy.
    busy_batch: usize,
}

/// The kernel's memory per queued datagram (`truesize`) for a log line of a few hundred
/// bytes, rounded up: 832 bytes for a 161-byte line on loopback.
const QUEUED_DATAGRAM_BYTES: usize = 1024;

/// How long a busy socket is read without pauses before one is tried again.
const BUSY_RETRY: Duration = Duration::from_millis(100);

/// Datagrams read in one go before shutdown is looked at again.
const MAX_BATCH: usize = 4096;

/// How often a waiting source looks at shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

impl Batching {
    /// Batching for a UDP socket whose receive buffer the kernel reports as `reported`
    /// bytes (on Linux twice the usable size). `None` when the buffer is too small to
    /// absorb a pause. A unix socket never batches: its queue holds only
    /// `net.unix.max_dgram_qlen` (10) datagrams, and HAProxy drops lines when it is full.
    pub fn for_udp_buffer(reported: usize) -> Option<Batching> {
        // A pause may pile up at most a quarter of the buffer.
        let busy_batch = reported / 2 / QUEUED_DATAGRAM_BYTES / 4;
        (busy_batch >= 32).then_some(Batching {
            pause: Duration::from_millis(1),
            busy_batch,
        })
    }
}

/// Receives until `shutdown`, then counts what the kernel has already queued for us. The
/// socket is read by a blocking thread of its own: pausing on purpose, as [`Batching`]
/// does, only saves wake-ups outside tokio's reactor, which wakes at every datagram of a
/// socket registered with it.
pub async fn serve(
    socket: DatagramSocket,
    pipeline: Arc<Pipeline>,
    max_line_bytes: usize,
    batching: Option<Batching>,
    allowed: AllowList,
    shutdown: CancellationToken,
) {
    let transport = socket.transport();
    let source = socket.into_std().and_then(|socket| {
        socket.set_read_timeout(SHUTDOWN_POLL)?;
        Ok(socket)
    });
    let socket = match source {
        Ok(socket) => socket,
        Err(err) => {
            tracing::error!(error = %err, transport = transport.name(), "cannot read the socket");
            return;
        }
    };
    let buffer = buffer_len(transport, max_line_bytes);
    let each = move |d: &[u8], from: Option<SocketAddr>| {
        if let Some(from) = from.filter(|from| !allowed.allows(from.ip())) {
            pipeline.selfmon().sender_refused("udp", from);
            return;
        }
        pipeline.selfmon().received_bytes(transport, d.len());
        datagram(&pipeline, transport, d, buffer, max_line_bytes)
    };
    let receive = move || receive(&socket, buffer, batching, &shutdown, each);
    match tokio::task::spawn_blocking(receive).await {
        Ok(Ok(drained)) => tracing::debug!(
            drained,
            transport = transport.name(),
            "datagram source stopped"
        ),
        Ok(Err(err)) => {
            tracing::error!(error = %err, transport = transport.name(), "datagram source failed")
        }
        Err(err) => {
            tracing::error!(error = %err, transport = transport.name(), "datagram source failed")
        }
    }
}

/// The receive loop of [`serve`], into a buffer of `buffer` bytes; returns how many
/// datagrams were still queued at shutdown.
fn receive(
    socket: &StdSocket,
    buffer: usize,
    batching: Option<Batching>,
    shutdown: &CancellationToken,
    mut each: impl Each,
) -> io::Result<usize> {
    let mut reader = Reader::new(socket, buffer);
    let mut busy_until: Option<Instant> = None;
    socket.set_nonblocking(false)?;
    while !shutdown.is_cancelled() {
        match socket.recv(&mut reader.buf) {
            Ok((len, from)) => each(&reader.buf[..len], from),
            // The read timeout: time to look at shutdown.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(err) => {
                tracing::debug!(error = %err, "receive failed");
                continue;
            }
        }
        let Some(batching) = batching else { continue };
        if busy_until.is_some_and(|until| Instant::now() < until) {
            continue;
        }
        socket.set_nonblocking(true)?;
        let mut paused = false;
        while !shutdown.is_cancelled() {
            let read = socket.read_queued(&mut reader, MAX_BATCH, &mut each);
            if read == MAX_BATCH {
                continue;
            }
            if paused && read == 0 {
                break;
            }
            if paused && read >= batching.busy_batch {
                busy_until = Some(Instant::now() + BUSY_RETRY);
                break;
            }
            std::thread::sleep(batching.pause);
            paused = true;
        }
        socket.set_nonblocking(false)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.read_queued(&mut reader, DRAIN_LIMIT, each))
}

/// One datagram as read into a buffer of `buffer` bytes.
fn datagram(
    pipeline: &Pipeline,
    transport: Transport,
    datagram: &[u8],
    buffer: usize,
    max_line_bytes: usize,
) {
    if datagram.len() >= buffer {
        pipeline.selfmon().oversize_cut(transport, datagram.len());
        return;
    }
    let end = datagram
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | b'\0'))
        .map_or(0, |last| last + 1);
    pipeline.process_bounded(transport, &datagram[..end], max_line_bytes);
}

/// Binds the UDP syslog socket with its receive buffer; returns the buffer's size as
/// the kernel reports it.
pub async fn bind_udp(
    addr: std::net::SocketAddr,
    buffer_bytes: Option<usize>,
    explicit: bool,
) -> io::Result<(UdpSocket, usize)> {
    let socket = UdpSocket::bind(addr).await?;
    let buffer = set_recv_buffer(&socket, buffer_bytes, explicit)?;
    Ok((socket, buffer))
}

/// Sets the UDP socket's receive buffer (`HLE_UDP_RECV_BUFFER_BYTES`). The kernel caps
/// the request at `net.core.rmem_max`: that is a warning when the operator asked for the
/// size, and worth a note when it is the default. Returns what the kernel reports: on
/// Linux twice the usable size, the other half being its bookkeeping.
fn set_recv_buffer(socket: &UdpSocket, bytes: Option<usize>, explicit: bool) -> io::Result<usize> {
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    use std::sync::Mutex;

    use super::*;
    use crate::metrics::socket_drops;

    #[test]
    fn batching_only_where_the_buffer_absorbs_a_pause() {
        // The kernel reports twice the usable size.
        let four_mib = Batching::for_udp_buffer(2 * 4 * 1024 * 1024).unwrap();
        assert_eq!(four_mib.busy_batch, 1024);
        assert_eq!(
            Batching::for_udp_buffer(2 * 212_992).unwrap().busy_batch,
            52
        );
        assert_eq!(
            Batching::for_udp_buffer(2 * 128 * 1024),
            Some(Batching {
                pause: Duration::from_millis(1),
                busy_batch: 32,
            })
        );
        assert_eq!(Batching::for_udp_buffer(2 * 128 * 1024 - 2), None);
    }

    /// Every datagram the kernel kept is read exactly once, through pauses, busy periods
    /// (a tiny `busy_batch`), full batches and the drain at shutdown. Under load the
    /// kernel may drop some (a default receive buffer): they are read from
    /// /proc/net/udp while the socket is still open, as a closed socket's line is gone
    /// and its drops with it.
    #[test]
    fn the_batching_reader_reads_every_datagram_once() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", receiver.as_raw_fd()))
            .unwrap()
            .ino();
        let socket = StdSocket::Udp(receiver);
        socket.set_read_timeout(SHUTDOWN_POLL).unwrap();
        let batching = Batching {
            pause: Duration::from_millis(1),
            busy_batch: 8,
        };
        let shutdown = CancellationToken::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (shutdown, seen) = (shutdown.clone(), seen.clone());
            std::thread::spawn(move || {
                let result = receive(&socket, 64, Some(batching), &shutdown, |d, _| {
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(d).into_owned())
                });
                // The socket is handed back: its drops are only in /proc/net/udp while
                // it is open.
                (result, socket)
            })
        };

        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 3000;
        for i in 0..sent {
            sender.send_to(format!("{i}").as_bytes(), to).unwrap();
            // Bursts of varied sizes with gaps, so each path of the reader runs.
            if i % 97 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        let drops = || {
            ["/proc/net/udp", "/proc/net/udp6"]
                .iter()
                .filter_map(|path| std::fs::read_to_string(path).ok())
                .find_map(|table| socket_drops(&table, inode))
                .unwrap_or(0) as usize
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() + drops() < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        shutdown.cancel();
        let (result, _socket) = reader.join().unwrap();
        result.unwrap();

        let seen = seen.lock().unwrap();
        let mut unique: Vec<usize> = seen.iter().map(|s| s.parse().unwrap()).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "a datagram was read twice");
        assert_eq!(seen.len() + drops(), sent);
    }
}
