//! TCP syslog source: HAProxy's `ring` keeps one long-lived connection per server line.
//! A listener task accepts (up to a cap) and a task per connection reads frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, FramedParts, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{Frame, SyslogCodec};
use crate::metrics::{Transport, INCOMPLETE_FRAME};
use crate::pipeline::Pipeline;

/// Per-connection settings.
#[derive(Debug, Clone, Copy)]
pub struct TcpSettings {
    pub max_connections: usize,
    pub max_line_bytes: usize,
    /// Close a connection that sent nothing for this long; `None` never does.
    pub idle_timeout: Option<Duration>,
}

/// Read buffer per connection; HAProxy's ring writes in bursts of many lines.
const READ_CAPACITY: usize = 64 * 1024;

/// Accepts connections until `shutdown`; connection tasks join `tracker`.
pub async fn serve(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    settings: TcpSettings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(err) => {
                // Usually out of file descriptors: wait for some to be released.
                tracing::warn!(error = %err, "tcp accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            pipeline.selfmon().tcp_connections_refused.inc();
            tracing::warn!(%peer, max = settings.max_connections, "tcp connection refused: too many open");
            continue;
        };
        let pipeline = pipeline.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            pipeline.selfmon().tcp_connections.inc();
            handle(stream, peer, &pipeline, settings, shutdown).await;
            pipeline.selfmon().tcp_connections.dec();
            drop(permit);
        });
    }
}

/// Reads frames until the peer closes, the connection idles out, or `shutdown`.
async fn handle(
    stream: impl AsyncRead + Unpin,
    peer: SocketAddr,
    pipeline: &Pipeline,
    settings: TcpSettings,
    shutdown: CancellationToken,
) {
    tracing::debug!(%peer, "tcp connection opened");
    let codec = SyslogCodec::new(settings.max_line_bytes);
    let mut frames = FramedRead::with_capacity(stream, codec, READ_CAPACITY);
    // One timer for the whole connection, moved forward lazily: arming a timer per frame
    // would cost more than parsing the frame.
    let idle = settings
        .idle_timeout
        .unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let mut last_frame = Instant::now();
    let deadline = tokio::time::sleep_until(last_frame + idle);
    tokio::pin!(deadline);
    let reason = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break "shutdown",
            next = frames.next() => match next {
                Some(Ok(frame)) => {
                    last_frame = Instant::now();
                    handle_frame(pipeline, frame);
                }
                Some(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "tcp read failed");
                    break "error";
                }
                None => break "closed by peer",
            },
            _ = &mut deadline => {
                if last_frame.elapsed() >= idle {
                    break "idle timeout";
                }
                deadline.as_mut().reset(last_frame + idle);
            }
        }
    };
    // Complete frames already read but not yet yielded are counted before the socket is
    // closed. (At the peer's end of stream `FramedRead` has already flushed the codec.)
    let FramedParts {
        mut codec,
        mut read_buf,
        ..
    } = frames.into_parts();
    while let Ok(Some(frame)) = codec.decode(&mut read_buf) {
        handle_frame(pipeline, frame);
    }
    tracing::debug!(%peer, reason, "tcp connection closed");
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
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Hands over all its bytes in the first read and cancels `shutdown` in that same
    /// read, so shutdown arrives while complete frames wait in the read buffer.
    struct ReadThenShutdown {
        data: Option<&'static [u8]>,
        shutdown: CancellationToken,
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

    #[tokio::test(start_paused = true)]
    async fn silent_connections_close_after_the_idle_timeout() {
        let registry = prometheus::Registry::new();
        let pipeline = Pipeline::new(&[], &registry).unwrap();
        let settings = TcpSettings {
            max_connections: 1,
            max_line_bytes: 65536,
            idle_timeout: Some(Duration::from_secs(300)),
        };
        // The client sends one line, then nothing: the connection stays open 300 s after
        // that line, not after the connection opened.
        let (mut client, server) = tokio::io::duplex(1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let start = Instant::now();
        let task = tokio::spawn(async move {
            handle(server, peer, &pipeline, settings, CancellationToken::new()).await;
            start.elapsed()
        });
        tokio::time::sleep(Duration::from_secs(100)).await;
        tokio::io::AsyncWriteExt::write_all(&mut client, b"<134>x\n")
            .await
            .unwrap();
        let open_for = task.await.unwrap();
        assert!(open_for >= Duration::from_secs(400), "{open_for:?}");
        assert!(open_for < Duration::from_secs(401), "{open_for:?}");
        drop(client);
    }
}
