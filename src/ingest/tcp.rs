//! TCP syslog source: HAProxy's `ring` keeps one long-lived connection per server line.
//! A listener task accepts (up to a cap) and a task per connection reads frames.
//!
//! At shutdown nothing the kernel has acknowledged is lost: connections still waiting in
//! the accept queue are taken and the listener closes; then every connection sends its
//! FIN, and reads until the peer closes or goes quiet, so that what its kernel had
//! received is read and counted and the socket closes without a reset where the peer
//! lets it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, FramedParts, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{Frame, Framing, SyslogCodec};
use crate::metrics::{Transport, INCOMPLETE_FRAME};
use crate::pipeline::Pipeline;

/// Per-connection settings.
#[derive(Debug, Clone, Copy)]
pub struct TcpSettings {
    pub max_connections: usize,
    pub max_line_bytes: usize,
    /// Close a connection that sent nothing for this long; `None` never does.
    pub idle_timeout: Option<Duration>,
    pub framing: Framing,
}

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
    // Cancelled once the listener is closed (or should this task end otherwise): then the
    // connections send their FIN.
    let finish = CancellationToken::new();
    let finish_on_exit = finish.clone().drop_guard();
    let start = |stream: TcpStream, peer: SocketAddr| {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            pipeline.selfmon().connection_refused();
            tracing::warn!(%peer, max = settings.max_connections, "tcp connection refused: too many open");
            return;
        };
        let pipeline = pipeline.clone();
        let finish = finish.clone();
        tracker.spawn(async move {
            pipeline.selfmon().connection_opened();
            handle(stream, peer, &pipeline, settings, finish).await;
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

/// The next connection of `listener`; `None` at `shutdown`. A failed accept (usually
/// out of file descriptors) is logged and retried after a pause that doubles up to a
/// second, for the descriptors to be released.
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
            Ok(accepted) => return Some(accepted),
            Err(err) => {
                tracing::warn!(error = %err, "{what} accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
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
                    Ok(stream) => start(stream, peer),
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
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            End::Closed => "closed by peer",
            End::Error => "error",
            End::Idle => "idle timeout",
            End::Shutdown => "shutdown",
        }
    }
}

/// The stream, with the time its last byte arrived: the idle timeout counts from there,
/// not from the last complete frame.
struct Timed<S> {
    inner: S,
    last_byte: Instant,
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last_byte = Instant::now();
        }
        polled
    }
}

/// Reads frames until the peer closes, the connection idles out, or `shutdown`; then
/// counts what is left, a frame cut short as `incomplete_frame`.
async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    pipeline: &Pipeline,
    settings: TcpSettings,
    shutdown: CancellationToken,
) {
    tracing::debug!(%peer, "tcp connection opened");
    let codec = SyslogCodec::new(settings.max_line_bytes, settings.framing);
    let stream = Timed {
        inner: stream,
        last_byte: Instant::now(),
    };
    let mut frames = FramedRead::with_capacity(stream, codec, READ_CAPACITY);
    // One timer for the whole connection, moved forward lazily: arming a timer per read
    // would cost more than parsing the frames.
    let idle = settings
        .idle_timeout
        .unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let deadline = tokio::time::sleep_until(frames.get_ref().last_byte + idle);
    tokio::pin!(deadline);
    let mut end = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Shutdown,
            next = frames.next() => match next {
                Some(Ok(frame)) => handle_frame(pipeline, frame),
                Some(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "tcp read failed");
                    break End::Error;
                }
                None => break End::Closed,
            },
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
        end = read_to_quiet(&mut frames, peer, pipeline).await;
    }
    // Complete frames already read but not yet yielded are counted before the socket is
    // closed; then the frame the connection was cut inside of, unless the peer closed
    // it (at its end of stream `FramedRead` has flushed the codec).
    let FramedParts {
        mut codec,
        mut read_buf,
        ..
    } = frames.into_parts();
    while let Ok(Some(frame)) = codec.decode(&mut read_buf) {
        handle_frame(pipeline, frame);
    }
    if end != End::Closed {
        if let Some(frame) = codec.cut(&mut read_buf) {
            handle_frame(pipeline, frame);
        }
    }
    tracing::debug!(%peer, reason = end.reason(), "tcp connection closed");
}

/// At shutdown: sends our FIN (a ring's HAProxy closes its end on it, keeping unsent
/// lines for the next connection), then reads until the peer closes, is quiet for
/// [`SHUTDOWN_QUIET`], or [`SHUTDOWN_READ_LIMIT`] has passed.
async fn read_to_quiet<S: AsyncRead + AsyncWrite + Unpin>(
    frames: &mut FramedRead<Timed<S>, SyslogCodec>,
    peer: SocketAddr,
    pipeline: &Pipeline,
) -> End {
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
            tracing::warn!(%peer, "tcp connection still sending at shutdown: closed");
            return End::Shutdown;
        }
        // The peer has a moment to answer our FIN however long it was quiet before.
        let last = frames.get_ref().last_byte.max(since);
        let quiet = tokio::time::sleep_until((last + SHUTDOWN_QUIET).min(limit));
        tokio::select! {
            biased;
            next = frames.next() => match next {
                Some(Ok(frame)) => handle_frame(pipeline, frame),
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

fn handle_frame(pipeline: &Pipeline, frame: Frame) {
    match frame {
        Frame::Line(line) => pipeline.process(Transport::Tcp, &line),
        Frame::Oversize(len) => pipeline.selfmon().oversize(Transport::Tcp, len),
        Frame::Incomplete(len) => {
            pipeline
                .selfmon()
                .unreadable_frame(Transport::Tcp, INCOMPLETE_FRAME, len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        handle(stream, peer, &pipeline, settings, shutdown).await;
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
        };
        let (client, server) = tokio::io::duplex(1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let start = Instant::now();
        let task = tokio::spawn(async move {
            handle(server, peer, &pipeline, settings, CancellationToken::new()).await;
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
