//! TCP syslog source: HAProxy's `ring` keeps one long-lived connection per server line.
//! A listener task accepts (up to a cap) and a task per connection reads frames.
//!
//! At shutdown nothing the kernel has acknowledged is lost: connections still waiting in
//! the accept queue are taken and the listener closes; then every connection sends its
//! FIN, and reads until the peer closes or goes quiet, so that what its kernel had
//! received is read and counted and the socket closes without a reset where the peer
//! lets it.
//!
//! Next to a busy load balancer the listener guards itself: senders outside
//! `HLE_SYSLOG_ALLOWED_SOURCES` are closed unread, TCP keepalive ends connections whose
//! peer vanished, and the unfinished frames of all connections share one memory budget
//! (`codec::budget`).
//!
//! With `HLE_SYSLOG_TLS_CONFIG_FILE` every connection speaks TLS (RFC 5425): the
//! handshake runs in the connection's task, and a failed one closes the connection unread
//! (counted); the frames inside are read as over plain TCP, and the FIN at shutdown is
//! preceded by TLS's close_notify.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus::IntCounter;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, FramedParts, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{Budget, Frame, Framing, SyslogCodec};
use crate::config::AllowList;
use crate::metrics::{RateLimit, Transport, INCOMPLETE_FRAME, TCP_BUFFER_BUDGET};
use crate::pipeline::Pipeline;
use crate::web::TlsEndpoint;

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct TcpSettings {
    pub max_connections: usize,
    pub max_line_bytes: usize,
    /// Close a connection that sent nothing for this long; `None` never does.
    pub idle_timeout: Option<Duration>,
    pub framing: Framing,
    /// Bytes of unfinished frames all connections may hold together.
    pub buffer_budget_bytes: usize,
    /// Who may connect.
    pub allowed_sources: AllowList,
    /// TLS (RFC 5425) every connection must speak; `None`: plain TCP.
    pub tls: Option<Arc<TlsEndpoint>>,
}

/// TCP keepalive of accepted connections (syslog and SPOE): the first probe after a
/// minute without traffic, then one every 10 s; after 6 unanswered the kernel closes the
/// connection. A peer that vanished without a FIN or RST (a node powered off, state lost
/// in a firewall) is noticed within two minutes rather than at the idle timeout (never,
/// for SPOE, whose connections idle between bursts).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 6;

/// Warnings an outside party can cause at will are let through once a second each.
const WARN_INTERVAL: Duration = Duration::from_secs(1);
static ACCEPT_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(WARN_INTERVAL));
static STILL_SENDING_LOG: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(WARN_INTERVAL));

/// Read buffer per connection; HAProxy's ring writes in bursts of many lines.
const READ_CAPACITY: usize = 64 * 1024;

/// At shutdown, a connection is closed once its peer has been quiet this long.
const SHUTDOWN_QUIET: Duration = Duration::from_millis(300);

/// At shutdown, a connection whose peer goes on sending is read at most this long.
const SHUTDOWN_READ_LIMIT: Duration = Duration::from_secs(5);

/// Binds the syslog TCP listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections until `shutdown`; connection tasks join `tracker`.
///
/// At shutdown the listener closes before any connection is told to finish: a ring's
/// HAProxy reconnects within a millisecond of our FIN, and a connection completed in the
/// accept queue of a listener that then closes is reset, with the lines HAProxy had
/// already taken out of its ring for it. With the listener closed first, its reconnection
/// is refused and those lines wait in the ring for the next exporter.
pub async fn serve(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    settings: TcpSettings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let budget = Budget::new(
        settings.buffer_budget_bytes,
        pipeline.selfmon().tcp_buffered_bytes(),
    );
    let settings = Arc::new(settings);
    // Cancelled once the listener is closed (or should this task end otherwise): then the
    // connections send their FIN.
    let finish = CancellationToken::new();
    let finish_on_exit = finish.clone().drop_guard();
    let start = |stream: TcpStream, peer: SocketAddr| {
        if !settings.allowed_sources.allows(peer.ip()) {
            pipeline.selfmon().sender_refused("tcp", peer);
            return;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            pipeline
                .selfmon()
                .connection_refused(peer, settings.max_connections);
            return;
        };
        let (pipeline, settings, budget) = (pipeline.clone(), settings.clone(), budget.clone());
        let finish = finish.clone();
        tracker.spawn(async move {
            pipeline.selfmon().connection_opened();
            match &settings.tls {
                None => handle(stream, peer, &pipeline, &settings, &budget, finish).await,
                // The handshake runs in the connection's task, never in the accept loop.
                // Until it completes nothing can have been sent, so shutdown drops it.
                Some(tls) => {
                    let handshake = tokio::select! {
                        biased;
                        _ = finish.cancelled() => None,
                        tls = tls.handshake(stream) => tls,
                    };
                    match handshake {
                        Some(stream) => {
                            handle(stream, peer, &pipeline, &settings, &budget, finish).await
                        }
                        None => tracing::debug!(%peer, "tcp connection closed: no TLS"),
                    }
                }
            }
            pipeline.selfmon().connection_closed();
            drop(permit);
        });
    };
    while let Some((stream, peer)) = accept(&listener, &shutdown, "tcp").await {
        start(stream, peer);
    }
    // Connections the kernel has completed but we have not accepted may hold acknowledged
    // lines too: take them before the listener closes, asking the kernel itself (tokio's
    // readiness may not have heard of them yet).
    match listener.into_std() {
        Ok(listener) => {
            take_accept_queue(&listener, &start);
            // Closed here, before any connection sends its FIN.
            drop(listener);
        }
        Err(err) => tracing::debug!(error = %err, "tcp accept queue not taken at shutdown"),
    }
    drop(finish_on_exit);
}

/// The next connection of `listener`, with TCP keepalive on; `None` at `shutdown`. A
/// failed accept (usually out of file descriptors) is logged (at most once a second) and
/// retried after a pause that doubles up to a second, for the descriptors to be released.
pub(crate) async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => {
                keepalive(&accepted.0, accepted.1, what);
                return Some(accepted);
            }
            Err(err) => {
                if let Some(suppressed) = ACCEPT_LOG.allow() {
                    tracing::warn!(error = %err, suppressed, "{what} accept failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Turns on TCP keepalive ([`KEEPALIVE_IDLE`]); a socket that refuses it is served anyway.
fn keepalive(stream: &TcpStream, peer: SocketAddr, what: &str) {
    let params = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(err) = SockRef::from(stream).set_tcp_keepalive(&params) {
        tracing::debug!(%peer, error = %err, "{what} keepalive not set");
    }
}

/// Accepts what waits in `listener`'s accept queue, until it is empty.
fn take_accept_queue(listener: &std::net::TcpListener, start: &impl Fn(TcpStream, SocketAddr)) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream));
                match stream {
                    Ok(stream) => {
                        keepalive(&stream, peer, "tcp");
                        start(stream, peer)
                    }
                    Err(err) => {
                        tracing::debug!(%peer, error = %err, "tcp accept failed at shutdown")
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionAborted => {}
            Err(err) => {
                if err.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::debug!(error = %err, "tcp accept failed at shutdown");
                }
                break;
            }
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The peer closed it: the codec has already been flushed.
    Closed,
    Error,
    Idle,
    Shutdown,
    /// Cut for the buffer budget.
    OverBudget,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            End::Closed => "closed by peer",
            End::Error => "error",
            End::Idle => "idle timeout",
            End::Shutdown => "shutdown",
            End::OverBudget => "buffer budget",
        }
    }
}

/// The stream, with the time its last byte arrived (the idle timeout counts from there,
/// not from the last complete frame) and the bytes read, counted as they come.
struct Timed<S> {
    inner: S,
    last_byte: Instant,
    bytes: u64,
    received_bytes: IntCounter,
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.last_byte = Instant::now();
            self.bytes += read as u64;
            self.received_bytes.inc_by(read as u64);
        }
        polled
    }
}

/// One connection's frames, counted as they go to the pipeline.
struct Connection<'a> {
    pipeline: &'a Pipeline,
    peer: SocketAddr,
    frames: u64,
}

impl Connection<'_> {
    /// Hands a frame on; `false` when it was the last: the budget cut the connection.
    fn frame(&mut self, frame: Frame) -> bool {
        self.frames += 1;
        let selfmon = self.pipeline.selfmon();
        match frame {
            Frame::Line(line) => self.pipeline.process(Transport::Tcp, &line),
            Frame::Oversize(len) => selfmon.oversize(Transport::Tcp, len),
            Frame::Incomplete(len) => {
                selfmon.unreadable_frame(Transport::Tcp, INCOMPLETE_FRAME, len)
            }
            Frame::OverBudget(len) => {
                selfmon.unreadable_frame(Transport::Tcp, TCP_BUFFER_BUDGET, len);
                selfmon.connection_cut(self.peer, len);
                return false;
            }
        }
        true
    }
}

/// Reads frames until the peer closes, the connection idles out, the budget cuts it, or
/// `shutdown`; then counts what is left, a frame cut short as `incomplete_frame` (or as
/// `tcp_buffer_budget`).
async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    pipeline: &Pipeline,
    settings: &TcpSettings,
    budget: &Arc<Budget>,
    shutdown: CancellationToken,
) {
    tracing::debug!(%peer, "tcp connection opened");
    let codec =
        SyslogCodec::new(settings.max_line_bytes, settings.framing).with_budget(budget.account());
    let stream = Timed {
        inner: stream,
        last_byte: Instant::now(),
        bytes: 0,
        received_bytes: pipeline.selfmon().received_bytes_counter(Transport::Tcp),
    };
    let mut frames = FramedRead::with_capacity(stream, codec, READ_CAPACITY);
    let mut conn = Connection {
        pipeline,
        peer,
        frames: 0,
    };
    // One timer for the whole connection, moved forward lazily: arming a timer per read
    // would cost more than parsing the frames.
    let idle = settings
        .idle_timeout
        .unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let deadline = tokio::time::sleep_until(frames.get_ref().last_byte + idle);
    tokio::pin!(deadline);
    // Another connection took the budget over while within its share: this one looks
    // whether it holds more than its own.
    let pressed = budget.pressed();
    tokio::pin!(pressed);
    let mut end = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Shutdown,
            next = frames.next() => match next {
                Some(Ok(frame)) => if !conn.frame(frame) {
                    break End::OverBudget;
                },
                Some(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "tcp read failed");
                    break End::Error;
                }
                None => break End::Closed,
            },
            _ = &mut pressed => {
                if frames.decoder().account().is_some_and(|a| a.over_share()) {
                    break End::OverBudget;
                }
                pressed.set(budget.pressed());
            }
            _ = &mut deadline => {
                let last_byte = frames.get_ref().last_byte;
                if last_byte.elapsed() >= idle {
                    break End::Idle;
                }
                deadline.as_mut().reset(last_byte + idle);
            }
        }
    };
    if end == End::Shutdown {
        end = read_to_quiet(&mut frames, &mut conn).await;
    }
    // Complete frames already read but not yet yielded are counted before the socket is
    // closed; then the frame the connection was cut inside of, unless the peer closed
    // it (at its end of stream `FramedRead` has flushed the codec).
    let bytes = frames.get_ref().bytes;
    let FramedParts {
        mut codec,
        mut read_buf,
        ..
    } = frames.into_parts();
    while let Ok(Some(frame)) = codec.decode(&mut read_buf) {
        conn.frame(frame);
    }
    let rest = match end {
        End::Closed => None,
        // Cut by the pressure of the others (a refused frame was counted already, and
        // the codec yields nothing more).
        End::OverBudget => codec.shed(&mut read_buf),
        End::Error | End::Idle | End::Shutdown => codec.cut(&mut read_buf),
    };
    if let Some(frame) = rest {
        conn.frame(frame);
    }
    tracing::debug!(%peer, reason = end.reason(), bytes, lines = conn.frames, "tcp connection closed");
}

/// At shutdown: sends our FIN (a ring's HAProxy closes its end on it, keeping unsent
/// lines for the next connection), then reads until the peer closes, is quiet for
/// [`SHUTDOWN_QUIET`], or [`SHUTDOWN_READ_LIMIT`] has passed.
async fn read_to_quiet<S: AsyncRead + AsyncWrite + Unpin>(
    frames: &mut FramedRead<Timed<S>, SyslogCodec>,
    conn: &mut Connection<'_>,
) -> End {
    let peer = conn.peer;
    if let Err(err) = frames.get_mut().inner.shutdown().await {
        tracing::debug!(%peer, error = %err, "tcp shutdown failed");
    }
    let since = Instant::now();
    let limit = since + SHUTDOWN_READ_LIMIT;
    loop {
        // Looked at on every turn: a timer in the `select!` would not be, as long as the
        // peer keeps the socket readable (tokio's budget lets a task's first branch use
        // it all, and a timer polled without budget stays pending).
        if Instant::now() >= limit {
            if let Some(suppressed) = STILL_SENDING_LOG.allow() {
                tracing::warn!(%peer, suppressed, "tcp connection still sending at shutdown: closed");
            }
            return End::Shutdown;
        }
        // The peer has a moment to answer our FIN however long it was quiet before.
        let last = frames.get_ref().last_byte.max(since);
        let quiet = tokio::time::sleep_until((last + SHUTDOWN_QUIET).min(limit));
        tokio::select! {
            biased;
            next = frames.next() => match next {
                Some(Ok(frame)) => if !conn.frame(frame) {
                    return End::OverBudget;
                },
                Some(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "tcp read failed");
                    return End::Error;
                }
                None => return End::Closed,
            },
            _ = quiet => {
                if Instant::now() < limit {
                    return End::Shutdown;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_budget() -> Arc<Budget> {
        Budget::new(1 << 20, prometheus::IntGauge::new("held", "held").unwrap())
    }

    /// Hands over all its bytes in the first read and cancels `shutdown` in that same
    /// read, so shutdown arrives while complete frames wait in the read buffer.
    struct ReadThenShutdown {
        data: Option<&'static [u8]>,
        shutdown: CancellationToken,
    }

    impl AsyncWrite for ReadThenShutdown {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for ReadThenShutdown {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            match self.data.take() {
                Some(data) => {
                    buf.put_slice(data);
                    self.shutdown.cancel();
                    Poll::Ready(Ok(()))
                }
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn shutdown_counts_every_complete_frame_already_read() {
        let data = include_bytes!("../../tests/fixtures/haproxy/f_ring_octet.tcp");
        let registry = prometheus::Registry::new();
        let pipeline = Pipeline::new(&[], &registry).unwrap();
        let shutdown = CancellationToken::new();
        let stream = ReadThenShutdown {
            data: Some(data),
            shutdown: shutdown.clone(),
        };
        let settings = TcpSettings {
            max_connections: 1,
            max_line_bytes: 65536,
            idle_timeout: None,
            framing: Framing::Auto,
            buffer_budget_bytes: 1 << 20,
            allowed_sources: AllowList::default(),
            tls: None,
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let budget = test_budget();
        handle(stream, peer, &pipeline, &settings, &budget, shutdown).await;
        let counted = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "haproxy_log_exporter_lines_counted_total")
            .map(|f| f.get_metric()[0].get_counter().get_value());
        assert_eq!(counted, Some(15.0));
    }

    /// A connection with a 300 s idle timeout, handled until it closes; the task returns
    /// how long it was open.
    fn idle_connection(
        pipeline: Arc<Pipeline>,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<Duration>) {
        let settings = TcpSettings {
            max_connections: 1,
            max_line_bytes: 65536,
            idle_timeout: Some(Duration::from_secs(300)),
            framing: Framing::Auto,
            buffer_budget_bytes: 1 << 20,
            allowed_sources: AllowList::default(),
            tls: None,
        };
        let (client, server) = tokio::io::duplex(1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let start = Instant::now();
        let task = tokio::spawn(async move {
            let budget = test_budget();
            let shutdown = CancellationToken::new();
            handle(server, peer, &pipeline, &settings, &budget, shutdown).await;
            start.elapsed()
        });
        (client, task)
    }

    #[tokio::test(start_paused = true)]
    async fn silent_connections_close_after_the_idle_timeout() {
        let registry = prometheus::Registry::new();
        let pipeline = Arc::new(Pipeline::new(&[], &registry).unwrap());
        // The client sends one line, then nothing: the connection stays open 300 s after
        // that line, not after the connection opened.
        let (mut client, task) = idle_connection(pipeline);
        tokio::time::sleep(Duration::from_secs(100)).await;
        tokio::io::AsyncWriteExt::write_all(&mut client, b"<134>x\n")
            .await
            .unwrap();
        let open_for = task.await.unwrap();
        assert!(open_for >= Duration::from_secs(400), "{open_for:?}");
        assert!(open_for < Duration::from_secs(401), "{open_for:?}");
        drop(client);
    }

    /// A slow sender's line in pieces keeps the connection open: the idle timeout counts
    /// from the last byte. The line it was cut inside of counts as `incomplete_frame`.
    #[tokio::test(start_paused = true)]
    async fn the_idle_timeout_counts_from_the_last_byte() {
        let registry = prometheus::Registry::new();
        let pipeline = Arc::new(Pipeline::new(&[], &registry).unwrap());
        let (mut client, task) = idle_connection(pipeline);
        for piece in [b"<134>a ".as_slice(), b"slow ", b"line"] {
            tokio::time::sleep(Duration::from_secs(200)).await;
            tokio::io::AsyncWriteExt::write_all(&mut client, piece)
                .await
                .unwrap();
        }
        let open_for = task.await.unwrap();
        assert!(open_for >= Duration::from_secs(900), "{open_for:?}");
        assert!(open_for < Duration::from_secs(901), "{open_for:?}");
        let rejected = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "haproxy_log_exporter_lines_rejected_total")
            .and_then(|f| {
                f.get_metric()
                    .iter()
                    .find(|m| m.get_label()[0].value() == INCOMPLETE_FRAME)
                    .map(|m| m.get_counter().get_value())
            });
        assert_eq!(rejected, Some(1.0));
        drop(client);
    }
}
