//! The onward syslog sink (`HLE_FORWARD_SYSLOG_ADDR`): each line, with the header the
//! target asks for, over UDP (one datagram each, cut to a size limit as RFC 5426
//! allows) or TCP (octet counting or newlines, RFC 6587).
//!
//! TCP: a connection attempt has a timeout; a failed one is retried after a capped
//! exponential backoff with jitter, the host name resolved again each time, and lines
//! wait in the queue meanwhile. Nothing is sent twice on purpose. A TCP sender cannot
//! know which bytes the receiver read before its connection broke, so a line counts as
//! forwarded once written and the connection was still up a second later (or closed
//! cleanly by the receiver at shutdown); the lines written in that last second when it
//! breaks are counted as `connection_lost`: possibly lost, never silently.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ForwardFraming, SyslogTarget, SyslogTransport};
use crate::forward::counters::{DropReason, SinkCounters};
use crate::forward::queue::Queue;
use crate::forward::rewrite::Rewriter;

/// Lines taken from the queue at a time.
const BATCH: usize = 512;
/// How long a written line waits before it counts as delivered (see the module's notes).
pub const CONFIRM_AFTER: Duration = Duration::from_secs(1);
/// How often a quiet connection is checked and written lines confirmed.
const TICK: Duration = Duration::from_millis(200);
/// The first wait after a failed connection attempt; it doubles up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A UDP target's name is resolved again this often.
const UDP_RESOLVE_EVERY: Duration = Duration::from_secs(60);

pub async fn run(
    target: SyslogTarget,
    queue: Arc<Queue>,
    counters: Arc<SinkCounters>,
    abandon: CancellationToken,
) {
    let rewriter = Rewriter::new(target.format);
    let mut sink = Sink {
        target,
        rewriter,
        queue,
        counters,
        abandon,
        batch: Vec::with_capacity(BATCH),
        out: Vec::with_capacity(64 * 1024),
    };
    match sink.target.transport {
        SyslogTransport::Udp => sink.udp().await,
        SyslogTransport::Tcp => sink.tcp().await,
    }
}

struct Sink {
    target: SyslogTarget,
    rewriter: Rewriter,
    queue: Arc<Queue>,
    counters: Arc<SinkCounters>,
    abandon: CancellationToken,
    /// Lines taken from the queue and not yet written.
    batch: Vec<Bytes>,
    out: Vec<u8>,
}

/// How a connection ended.
enum End {
    /// The queue is closed and everything was delivered.
    Done,
    /// The connection broke; reconnect.
    Broken,
    /// The shutdown grace ran out.
    Abandoned,
}

impl Sink {
    fn finished(&self) -> bool {
        self.batch.is_empty() && self.queue.is_closed() && self.queue.len().0 == 0
    }

    async fn tcp(&mut self) {
        let mut backoff = Backoff::new(self.target.reconnect_max_delay);
        let mut was_connected = false;
        loop {
            if self.finished() || self.abandon.is_cancelled() {
                return;
            }
            let stream = match self.connect().await {
                Ok(stream) => stream,
                Err(err) => {
                    self.counters.set_connected(false);
                    let delay = backoff.next();
                    if was_connected || backoff.attempts == 1 {
                        tracing::warn!(target = %self.target.authority(), error = %err, "forwarding: cannot connect to the syslog server; lines wait in the queue");
                    } else {
                        tracing::debug!(target = %self.target.authority(), error = %err, retry_in = ?delay, "forwarding: cannot connect");
                    }
                    was_connected = false;
                    tokio::select! {
                        _ = self.abandon.cancelled() => return,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            backoff.reset();
            was_connected = true;
            self.counters.set_connected(true);
            tracing::info!(target = %self.target.authority(), "forwarding: connected to the syslog server");
            match self.deliver(stream).await {
                End::Done | End::Abandoned => return,
                End::Broken => {
                    self.counters.set_connected(false);
                    tracing::warn!(target = %self.target.authority(), "forwarding: the connection to the syslog server broke; reconnecting");
                }
            }
        }
    }

    /// Resolves the host again and tries each address in turn.
    async fn connect(&self) -> std::io::Result<TcpStream> {
        let addrs = self.resolve().await?;
        let mut last = std::io::Error::other("the name has no address");
        for addr in addrs {
            match tokio::time::timeout(self.target.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(stream)) => {
                    let keepalive = socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(60))
                        .with_interval(Duration::from_secs(10));
                    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                    return Ok(stream);
                }
                Ok(Err(err)) => last = err,
                Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
            }
        }
        Err(last)
    }

    async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let addrs = tokio::net::lookup_host((self.target.host.as_str(), self.target.port)).await?;
        Ok(addrs.collect())
    }

    /// Writes lines to `stream` until it breaks, the queue is closed and empty, or the
    /// grace runs out.
    async fn deliver(&mut self, stream: TcpStream) -> End {
        let (mut reader, mut writer) = stream.into_split();
        let mut unconfirmed: VecDeque<(Instant, usize)> = VecDeque::new();
        let mut scratch = [0u8; 512];
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            if self.batch.is_empty() {
                tokio::select! {
                    n = self.queue.take_async(&mut self.batch, BATCH) => {
                        if n == 0 {
                            break self.close(&mut writer, &mut reader, &mut unconfirmed).await;
                        }
                    }
                    read = reader.read(&mut scratch) => {
                        // A syslog server sends nothing: this is its close (or reset).
                        if !matches!(read, Ok(n) if n > 0) {
                            break End::Broken;
                        }
                    }
                    _ = ticks.tick() => {}
                    _ = self.abandon.cancelled() => return End::Abandoned,
                }
            }
            self.confirm(&mut unconfirmed, Instant::now() - CONFIRM_AFTER);
            if self.batch.is_empty() {
                continue;
            }
            self.encode_batch();
            // Until the batch is written whole: what the server sends meanwhile is
            // ignored (dropping the write for it would leave the batch cut short,
            // yet counted), its close or reset ends the connection.
            let write = writer.write_all(&self.out);
            tokio::pin!(write);
            let written = loop {
                tokio::select! {
                    result = &mut write => break result.is_ok(),
                    read = reader.read(&mut scratch) => if !matches!(read, Ok(n) if n > 0) {
                        break false;
                    },
                    _ = self.abandon.cancelled() => return End::Abandoned,
                }
            };
            let n = std::mem::take(&mut self.batch).len();
            if written {
                unconfirmed.push_back((Instant::now(), n));
            } else {
                // Part of it may have reached the server.
                self.counters.lost(n, DropReason::ConnectionLost);
                break End::Broken;
            }
        };
        if matches!(end, End::Broken) {
            let lost: usize = unconfirmed.iter().map(|(_, n)| n).sum();
            self.counters.lost(lost, DropReason::ConnectionLost);
        }
        end
    }

    /// Counts as forwarded the lines written before `before` on a connection still up.
    fn confirm(&self, unconfirmed: &mut VecDeque<(Instant, usize)>, before: Instant) {
        let mut n = 0;
        while let Some(&(at, lines)) = unconfirmed.front() {
            if at > before {
                break;
            }
            n += lines;
            unconfirmed.pop_front();
        }
        if n > 0 {
            self.counters.forwarded(n);
        }
    }

    /// The queue is closed and empty: half-close, and wait for the server to close its
    /// side, which it does after reading everything.
    async fn close(
        &mut self,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        reader: &mut tokio::net::tcp::OwnedReadHalf,
        unconfirmed: &mut VecDeque<(Instant, usize)>,
    ) -> End {
        if writer.shutdown().await.is_err() {
            return End::Broken;
        }
        let mut scratch = [0u8; 512];
        loop {
            tokio::select! {
                read = reader.read(&mut scratch) => match read {
                    Ok(0) => {
                        self.confirm(unconfirmed, Instant::now());
                        return End::Done;
                    }
                    Ok(_) => {}
                    Err(_) => return End::Broken,
                },
                _ = self.abandon.cancelled() => return End::Abandoned,
            }
        }
    }

    /// The batch, rewritten and framed, into `out`.
    fn encode_batch(&mut self) {
        self.out.clear();
        for frame in &self.batch {
            match self.target.framing {
                ForwardFraming::OctetCount => {
                    let start = self.out.len();
                    self.rewriter.write(frame, &mut self.out);
                    let len = (self.out.len() - start).to_string();
                    // The count goes before the message: insert it.
                    self.out
                        .splice(start..start, len.bytes().chain(std::iter::once(b' ')));
                }
                ForwardFraming::Lf => {
                    let start = self.out.len();
                    self.rewriter.write(frame, &mut self.out);
                    for b in &mut self.out[start..] {
                        if *b == b'\n' {
                            *b = b' ';
                        }
                    }
                    self.out.push(b'\n');
                }
            }
        }
    }

    async fn udp(&mut self) {
        let mut socket: Option<(UdpSocket, Instant)> = None;
        let mut failing = false;
        // Nothing refused yet: a quiet sink is not a disconnected one.
        self.counters.set_connected(true);
        loop {
            self.batch.clear();
            tokio::select! {
                n = self.queue.take_async(&mut self.batch, BATCH) => if n == 0 { return },
                _ = self.abandon.cancelled() => return,
            }
            let (mut sent, mut lost) = (0, 0);
            let batch = std::mem::take(&mut self.batch);
            for frame in &batch {
                if socket
                    .as_ref()
                    .is_none_or(|(_, at)| at.elapsed() >= UDP_RESOLVE_EVERY)
                {
                    socket = match self.udp_socket().await {
                        Ok(s) => Some((s, Instant::now())),
                        Err(err) => {
                            if !failing {
                                tracing::warn!(target = %self.target.authority(), error = %err, "forwarding: cannot reach the syslog server");
                            }
                            failing = true;
                            None
                        }
                    };
                }
                let Some((udp, _)) = &socket else {
                    lost += 1;
                    continue;
                };
                self.out.clear();
                self.rewriter.write(frame, &mut self.out);
                if self.out.len() > self.target.udp_max_bytes {
                    let cut = utf8_boundary(&self.out, self.target.udp_max_bytes);
                    self.out.truncate(cut);
                    self.counters.truncated();
                }
                match udp.send(&self.out).await {
                    Ok(_) => {
                        sent += 1;
                        if failing {
                            failing = false;
                            tracing::info!(target = %self.target.authority(), "forwarding: the syslog server takes datagrams again");
                        }
                    }
                    Err(err) => {
                        lost += 1;
                        if !failing {
                            tracing::warn!(target = %self.target.authority(), error = %err, "forwarding: a datagram to the syslog server was refused");
                        }
                        failing = true;
                        // Resolve again before the next one.
                        socket = None;
                    }
                }
            }
            self.batch = batch;
            self.counters.set_connected(!failing);
            if sent > 0 {
                self.counters.forwarded(sent);
            }
            if lost > 0 {
                self.counters.lost(lost, DropReason::ConnectionLost);
            }
        }
    }

    /// A UDP socket connected to the target's first address, so that the kernel reports
    /// a refusing port.
    async fn udp_socket(&self) -> std::io::Result<UdpSocket> {
        let addr = self
            .resolve()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| std::io::Error::other("the name has no address"))?;
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        Ok(socket)
    }
}

/// The longest prefix of at most `max` bytes that does not end inside a UTF-8 sequence.
fn utf8_boundary(bytes: &[u8], max: usize) -> usize {
    let mut cut = max.min(bytes.len());
    // Back up over continuation bytes (at most three) to the start of a character.
    for _ in 0..3 {
        if cut > 0 && cut < bytes.len() && (bytes[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
    }
    cut
}

/// Capped exponential backoff with jitter: 100 ms, 200 ms, ... up to the maximum, each
/// wait between half and all of its step.
struct Backoff {
    max: Duration,
    attempts: u32,
    seed: u64,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            | 1;
        Backoff {
            max,
            attempts: 0,
            seed,
        }
    }

    fn reset(&mut self) {
        self.attempts = 0;
    }

    fn next(&mut self) -> Duration {
        self.attempts += 1;
        let step = FIRST_BACKOFF
            .saturating_mul(1 << (self.attempts - 1).min(20))
            .min(self.max.max(FIRST_BACKOFF));
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let share = 0.5 + (self.seed % 1000) as f64 / 2000.0;
        step.mul_f64(share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(2));
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next()).collect();
        let steps = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (wait, step) in waits.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(
                *wait >= step / 2 && *wait <= step,
                "{wait:?} for a step of {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next() <= FIRST_BACKOFF);
    }

    /// A server that says something while the sink waits to write to it (a full
    /// socket buffer) gets every line, whole, and the sink counts each once.
    #[tokio::test]
    async fn data_from_the_server_does_not_cut_a_write_short() {
        use crate::config::{SyslogFormat, SyslogTarget};
        use crate::forward::counters::ForwardMetrics;

        // A small receive buffer, so that the sink soon waits for room.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let listener = socket.listen(1).unwrap();
        let target = SyslogTarget {
            transport: SyslogTransport::Tcp,
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
            framing: ForwardFraming::Lf,
            format: SyslogFormat::AsReceived,
            udp_max_bytes: 65_507,
            connect_timeout: Duration::from_secs(5),
            reconnect_max_delay: Duration::from_secs(1),
        };
        let lines = 20_000;
        let queue = Arc::new(Queue::new(lines, 1 << 30));
        // 20 MB: more than the kernel's buffers on both sides hold.
        let pad = "x".repeat(1000);
        let want: Vec<String> = (0..lines)
            .map(|i| format!("<134>1 - - - - - - line {i:06} {pad}"))
            .collect();
        for line in &want {
            queue.push(Bytes::from(line.clone())).unwrap();
        }
        queue.close();
        let counters = ForwardMetrics::new()
            .unwrap()
            .sink("syslog", Box::new(|| (0, 0)));
        let sink = tokio::spawn(run(
            target,
            queue,
            counters.clone(),
            CancellationToken::new(),
        ));
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"x").await.unwrap();
        // The sink half-closes once it has written everything.
        let mut received = Vec::new();
        stream.read_to_end(&mut received).await.unwrap();
        drop(stream);
        tokio::time::timeout(Duration::from_secs(10), sink)
            .await
            .unwrap()
            .unwrap();
        let received = String::from_utf8_lossy(&received);
        let got: Vec<&str> = received.lines().collect();
        assert_eq!(got.len(), want.len(), "lines received");
        assert!(
            got.iter().zip(&want).all(|(g, w)| g == w),
            "lines cut or out of order"
        );
        // The lines went into the queue directly, not through `given`.
        assert_eq!(counters.snapshot().forwarded, lines as u64);
    }

    #[test]
    fn cuts_on_character_boundaries() {
        let text = "aé€".as_bytes(); // 1 + 2 + 3 bytes
        assert_eq!(utf8_boundary(text, 6), 6);
        assert_eq!(utf8_boundary(text, 5), 3);
        assert_eq!(utf8_boundary(text, 4), 3);
        assert_eq!(utf8_boundary(text, 2), 1);
        assert_eq!(utf8_boundary(b"abc", 10), 3);
    }
}
