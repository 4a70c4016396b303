//! One HTTP connection, over any I/O hyper can drive (a TCP stream, or a TLS stream
//! after its handshake): the limits on request heads, requests and
//! age, and what shutdown does to it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONNECTION};
use hyper::rt::{Read, Write};
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio_util::sync::CancellationToken;

use super::respond::respond;
use super::slots::Slot;
use super::State;
use crate::config::{WebConfig, MIN_HEADER_BYTES};

/// A connection is closed after answering this many requests (Prometheus scrapes a
/// target over one connection; this only bounds what a single client may hold).
const MAX_REQUESTS: usize = 1000;

/// At shutdown, a response still being made or written gets this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// At shutdown, a connection with no response in progress gets this long for hyper to
/// flush what it holds of the last one (its last 16 chunks at most) and close; a request
/// head still coming in is cut off after it.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);

/// A body is handed to hyper in slices of this size (of the one shared copy): hyper
/// queues at most 16 before it asks for more, so a response counts as in progress until
/// all but its last megabyte is queued.
const CHUNK: usize = 64 * 1024;

/// Serves `io` until its client closes it, a limit ends it, a newer connection takes its
/// slot while it is idle, or `shutdown`. At shutdown an
/// idle connection closes at once, one with a request head still coming in after
/// `SHUTDOWN_FLUSH`, and one with a response in progress gets `SHUTDOWN_GRACE`.
pub(super) async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    slot: &Slot,
    state: Arc<State>,
    shutdown: CancellationToken,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let limits = &state.limits;
    let in_progress = slot.busy.clone();
    let requests = Arc::new(AtomicUsize::new(0));
    let service = {
        let (state, in_progress) = (state.clone(), in_progress.clone());
        hyper::service::service_fn(move |req| {
            let busy = InProgress::enter(&in_progress);
            let last = requests.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_REQUESTS;
            let state = state.clone();
            async move {
                let mut response =
                    crate::web::guarded(state.security.as_deref(), &req, respond(&state, &req))
                        .await;
                if last {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response.map(|rest| Tracked { rest, _busy: busy }))
            }
        })
    };
    let conn = builder(limits).serve_connection(io, service);
    tokio::pin!(conn);
    let old = async {
        match limits.max_connection_age {
            Some(age) => tokio::time::sleep(age).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(old);
    let (mut aged, mut evicted) = (false, false);
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            // A newer connection took the slot of this idle one: closed at once, or, had
            // a request come in since, after its response.
            _ = slot.evicted.cancelled(), if !evicted => {
                if in_progress.load(Ordering::Relaxed) == 0 {
                    tracing::debug!(%peer, "idle http connection closed for a new one");
                    return;
                }
                evicted = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut old, if !aged => {
                // The response in progress, if any, is finished; then it closes.
                aged = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = shutdown.cancelled() => {
                // Hyper closes an idle connection here and finishes a response first.
                conn.as_mut().graceful_shutdown();
                let grace = match in_progress.load(Ordering::Relaxed) {
                    0 => SHUTDOWN_FLUSH,
                    _ => SHUTDOWN_GRACE,
                };
                match tokio::time::timeout(grace, conn.as_mut()).await {
                    Ok(result) => break result,
                    Err(_) => {
                        tracing::debug!(%peer, "http response cut off at shutdown");
                        return;
                    }
                }
            }
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "http connection failed");
    }
}

/// HTTP/1.1 with the request limits of `HLE_WEB_*`.
fn builder(limits: &WebConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Also bounds how long an idle keep-alive connection waits for its next request.
        .header_read_timeout(limits.read_header_timeout)
        // Below hyper's minimum it would panic; the configuration refuses such values.
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
        .max_header_size(limits.max_header_bytes)
        // Queued writes: every response keeps the shared exposition instead of copying it
        // into a buffer of its own.
        .writev(true);
    builder
}

/// Counts a response from its request until hyper is done with its body.
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn enter(count: &Arc<AtomicUsize>) -> InProgress {
        count.fetch_add(1, Ordering::Relaxed);
        InProgress(count.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body, in slices of `CHUNK`, that keeps its connection marked busy while
/// hyper takes it.
struct Tracked {
    rest: Bytes,
    _busy: InProgress,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let rest = &mut self.get_mut().rest;
        if rest.is_empty() {
            return Poll::Ready(None);
        }
        let chunk = rest.split_to(rest.len().min(CHUNK));
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}
