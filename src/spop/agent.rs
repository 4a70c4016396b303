//! One SPOE connection from HAProxy: the HELLO handshake, then NOTIFY frames answered with
//! ACKs until either side disconnects.
//!
//! An ACK never waits for metric work: the frames already in the read buffer are all
//! answered and the ACKs flushed before any of their messages is counted. HAProxy holds
//! the request for as long as the ACK takes (up to its `timeout processing`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::codec::{SpopCodec, SpopError};
use super::counters::{Sender, SpopCounters};
use super::frame::{
    kv_items, messages, Action, Frame, FrameType, Scope, Status, Value, FLAG_FIN, MIN_FRAME_SIZE,
};
use super::message::{
    request_path, response_record, Scratch, MALFORMED, METRICS_OFF, REQUEST_MESSAGE,
    RESPONSE_MESSAGE, ROUTE_VAR, UNKNOWN_MESSAGE,
};
use crate::config::SpoeConfig;
use crate::metrics::RateLimit;
use crate::pipeline::Pipeline;

/// The SPOP version the agent speaks.
pub const VERSION: &str = "2.0";

/// The capabilities the agent takes when HAProxy offers them. Not `fragmentation`: a
/// fragmented frame is refused with status 10.
const CAPABILITIES: [&str; 2] = ["pipelining", "async"];

/// The variable an ACK without a route unsets: a name no configuration registers.
const NOOP_VAR: &[u8] = b"noop";

/// HAProxy sends its HELLO as soon as it connects; a connection silent for this long is
/// closed.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection shares.
pub struct Agent {
    pipeline: Arc<Pipeline>,
    counters: SpopCounters,
    max_frame_size: u32,
    metrics: bool,
    custom_labels: Vec<&'static str>,
    warn_log: RateLimit,
}

/// What the HELLO handshake agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub max_frame_size: u32,
    /// The capabilities both sides take, comma-separated.
    pub capabilities: String,
    pub healthcheck: bool,
}

/// Reads HAPROXY-HELLO's KV-LIST and agrees on a version, a frame size (the smaller of
/// both) and the capabilities; the status to disconnect with when they cannot agree.
pub fn negotiate(payload: &[u8], ours: u32) -> Result<Hello, Status> {
    let (mut versions, mut frame_size, mut capabilities, mut healthcheck) =
        (None, None, None, false);
    for item in kv_items(payload) {
        let (name, value) = item.map_err(|_| Status::Invalid)?;
        match (name, value) {
            (b"supported-versions", Value::String(s)) => versions = Some(s),
            (b"max-frame-size", v) => frame_size = Some(v.integer().ok_or(Status::Invalid)?),
            (b"capabilities", Value::String(s)) => capabilities = Some(s),
            (b"healthcheck", Value::Bool(b)) => healthcheck = b,
            _ => {}
        }
    }
    let versions = versions.ok_or(Status::NoVersion)?;
    let frame_size = frame_size.ok_or(Status::NoFrameSize)?;
    let capabilities = capabilities.ok_or(Status::NoCapabilities)?;
    // "2.0, 1.5": a major version announced means all its minor versions.
    let speaks_2 = versions
        .split(|&b| b == b',')
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .any(|v| v.split('.').next() == Some("2"));
    if !speaks_2 {
        return Err(Status::BadVersion);
    }
    let frame_size = u32::try_from(frame_size).map_err(|_| Status::BadFrameSize)?;
    if frame_size < MIN_FRAME_SIZE {
        return Err(Status::BadFrameSize);
    }
    let offered: Vec<String> = capabilities
        .split(|&b| b == b',')
        .map(|c| String::from_utf8_lossy(c).trim().to_string())
        .collect();
    let taken: Vec<&str> = CAPABILITIES
        .into_iter()
        .filter(|c| offered.iter().any(|o| o == c))
        .collect();
    Ok(Hello {
        max_frame_size: frame_size.min(ours),
        capabilities: taken.join(","),
        healthcheck,
    })
}

/// How a connection ended, for the counters and the log.
enum End {
    /// HAProxy closed the connection (a FIN or a reset) without a DISCONNECT frame.
    Closed,
    /// HAProxy sent HAPROXY-DISCONNECT with this status code; we answered.
    ByHaproxy(Option<u64>),
    /// We sent AGENT-DISCONNECT with this status.
    ByAgent(Status),
    /// A health check, answered and closed.
    HealthCheck,
    /// Writing failed: nothing more can be sent.
    WriteFailed,
}

/// Why a NOTIFY frame got no ACK.
enum Unanswered {
    /// Its payload could not be read.
    Malformed,
    /// The ACK could not be written.
    WriteFailed,
}

type Reader = FramedRead<OwnedReadHalf, SpopCodec>;
type Writer = FramedWrite<OwnedWriteHalf, SpopCodec>;

impl Agent {
    pub fn new(
        pipeline: Arc<Pipeline>,
        counters: SpopCounters,
        config: &SpoeConfig,
        custom_labels: Vec<&'static str>,
    ) -> Agent {
        Agent {
            pipeline,
            counters,
            max_frame_size: config.max_frame_size,
            metrics: config.metrics,
            custom_labels,
            warn_log: RateLimit::new(Duration::from_secs(1)),
        }
    }

    /// The pipeline whose metrics the messages feed.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    pub fn counters(&self) -> &SpopCounters {
        &self.counters
    }

    /// Serves one connection until HAProxy or `shutdown` ends it.
    pub async fn connection(&self, stream: TcpStream, shutdown: CancellationToken) {
        let peer = stream.peer_addr().ok();
        let _ = stream.set_nodelay(true);
        self.counters.connection_opened();
        let (rd, wr) = stream.into_split();
        let codec = SpopCodec::new(self.max_frame_size);
        let mut reader = FramedRead::new(rd, codec.clone());
        let mut writer = FramedWrite::new(wr, codec);
        let end = self.serve(&mut reader, &mut writer, &shutdown).await;
        match end {
            End::Closed => self.counters.disconnected(Sender::Haproxy, None),
            End::ByHaproxy(code) => self.counters.disconnected(Sender::Haproxy, code),
            End::ByAgent(status) => {
                self.counters
                    .disconnected(Sender::Agent, Some(u64::from(status.code())));
                if status != Status::Normal {
                    if let Some(suppressed) = self.warn_log.allow() {
                        tracing::warn!(
                            peer = ?peer,
                            status_code = status.code(),
                            reason = status.message(),
                            suppressed,
                            "spoe connection closed"
                        );
                    }
                }
            }
            End::HealthCheck | End::WriteFailed => {}
        }
        // Dropping the halves closes the socket; HAProxy closes its side after a
        // DISCONNECT.
        self.counters.connection_closed();
    }

    async fn serve(
        &self,
        reader: &mut Reader,
        writer: &mut Writer,
        shutdown: &CancellationToken,
    ) -> End {
        let hello = tokio::select! {
            _ = shutdown.cancelled() => return End::Closed,
            next = tokio::time::timeout(HELLO_TIMEOUT, reader.next()) => match next {
                Err(_) => return self.disconnect(writer, Status::Timeout, "no HAPROXY-HELLO").await,
                Ok(next) => next,
            },
        };
        let hello = match hello {
            None => return End::Closed,
            Some(Err(err)) => return self.failed(writer, err).await,
            Some(Ok(frame)) => frame,
        };
        self.counters.frame_received(hello.frame_type);
        if hello.frame_type != FrameType::HaproxyHello {
            return self
                .disconnect(writer, Status::Invalid, "expected HAPROXY-HELLO")
                .await;
        }
        if hello.flags & FLAG_FIN == 0 {
            return self
                .disconnect(
                    writer,
                    Status::FragmentationUnsupported,
                    Status::FragmentationUnsupported.message(),
                )
                .await;
        }
        let agreed = match negotiate(&hello.payload, self.max_frame_size) {
            Ok(agreed) => agreed,
            Err(status) => return self.disconnect(writer, status, status.message()).await,
        };
        let reply = Frame::agent_hello(VERSION, agreed.max_frame_size, &agreed.capabilities);
        if writer.send(reply).await.is_err() {
            return End::WriteFailed;
        }
        self.counters.frame_sent(FrameType::AgentHello);
        if agreed.healthcheck {
            return End::HealthCheck;
        }
        reader
            .decoder_mut()
            .set_max_frame_size(agreed.max_frame_size);
        writer
            .encoder_mut()
            .set_max_frame_size(agreed.max_frame_size);
        self.notifications(reader, writer, shutdown).await
    }

    /// After the handshake: every NOTIFY answered, until a DISCONNECT, a close or an
    /// invalid frame.
    async fn notifications(
        &self,
        reader: &mut Reader,
        writer: &mut Writer,
        shutdown: &CancellationToken,
    ) -> End {
        let mut answered: Vec<(Frame, Instant)> = Vec::new();
        let mut scratch = Scratch::default();
        // Made once: a waiter registered anew for every frame costs.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let end = loop {
            let next = tokio::select! {
                biased;
                _ = &mut cancelled => {
                    // The NOTIFY frames that can be read without waiting are answered
                    // (with the DISCONNECT); HAProxy sends nothing more on a connection
                    // once it has that.
                    while let Some(Some(Ok(frame))) = reader.next().now_or_never() {
                        self.counters.frame_received(frame.frame_type);
                        if frame.frame_type != FrameType::Notify || frame.flags & FLAG_FIN == 0 {
                            continue;
                        }
                        if let Err(Unanswered::WriteFailed) =
                            self.answer(writer, frame, Instant::now(), &mut answered).await
                        {
                            break;
                        }
                    }
                    break self.disconnect(writer, Status::Normal, "agent is stopping").await;
                }
                next = reader.next() => next,
            };
            let frame = match next {
                None => break End::Closed,
                Some(Err(err)) => break self.failed(writer, err).await,
                Some(Ok(frame)) => frame,
            };
            let read_at = Instant::now();
            self.counters.frame_received(frame.frame_type);
            match frame.frame_type {
                FrameType::Notify if frame.flags & FLAG_FIN == 0 => {
                    let status = Status::FragmentationUnsupported;
                    break self.disconnect(writer, status, status.message()).await;
                }
                FrameType::Notify => {
                    match self.answer(writer, frame, read_at, &mut answered).await {
                        Ok(()) => {}
                        Err(Unanswered::Malformed) => {
                            self.counters.rejected(MALFORMED);
                            break self
                                .disconnect(writer, Status::Invalid, "malformed NOTIFY payload")
                                .await;
                        }
                        Err(Unanswered::WriteFailed) => break End::WriteFailed,
                    }
                }
                FrameType::HaproxyDisconnect => {
                    let code = kv_items(&frame.payload)
                        .filter_map(Result::ok)
                        .find(|(name, _)| *name == b"status-code")
                        .and_then(|(_, v)| v.integer())
                        .and_then(|c| u64::try_from(c).ok());
                    let reply = Frame::agent_disconnect(Status::Normal, "bye");
                    if writer.send(reply).await.is_ok() {
                        self.counters.frame_sent(FrameType::AgentDisconnect);
                    }
                    break End::ByHaproxy(code);
                }
                // A fragment: we never announce `fragmentation`.
                FrameType::Unset => {
                    let status = Status::FragmentationUnsupported;
                    break self.disconnect(writer, status, status.message()).await;
                }
                FrameType::HaproxyHello
                | FrameType::AgentHello
                | FrameType::AgentDisconnect
                | FrameType::Ack => {
                    break self
                        .disconnect(writer, Status::Invalid, "unexpected frame type")
                        .await;
                }
                // The protocol lets unknown frames be skipped.
                FrameType::Unknown(_) => {}
            }
            // Once no whole frame is left to read without waiting, the ACKs go out; only
            // then are their messages counted.
            if !answered.is_empty() && !reader.decoder().has_frame(reader.read_buffer()) {
                if writer.flush().await.is_err() {
                    break End::WriteFailed;
                }
                self.count_answered(&mut answered, &mut scratch);
            }
        };
        // What was answered describes responses HAProxy served, whether or not the last
        // ACKs reached it.
        self.count_answered(&mut answered, &mut scratch);
        end
    }

    /// Queues the ACK of a NOTIFY frame and keeps the frame, read at `read_at`, for its
    /// messages to be counted once the ACK is written.
    async fn answer(
        &self,
        writer: &mut Writer,
        frame: Frame,
        read_at: Instant,
        answered: &mut Vec<(Frame, Instant)>,
    ) -> Result<(), Unanswered> {
        let ack = self.ack(&frame).ok_or(Unanswered::Malformed)?;
        writer
            .feed(ack)
            .await
            .map_err(|_| Unanswered::WriteFailed)?;
        self.counters.frame_sent(FrameType::Ack);
        answered.push((frame, read_at));
        Ok(())
    }

    /// The ACK of a NOTIFY frame: the route of each request message; `None` when the
    /// payload is malformed.
    fn ack(&self, frame: &Frame) -> Option<Frame> {
        let mut routes = Vec::new();
        for message in messages(&frame.payload) {
            let message = message.ok()?;
            if message.name == REQUEST_MESSAGE {
                if let Ok(path) = request_path(&message) {
                    routes.push(self.pipeline.normalise_path(path));
                }
            }
        }
        let mut actions: Vec<Action<'_>> = routes
            .iter()
            .map(|route| Action::SetVar {
                scope: Scope::Transaction,
                name: ROUTE_VAR,
                value: Value::String(route.as_bytes()),
            })
            .collect();
        // HAProxy 3.1 holds an empty ACK until `timeout processing` (fixed in 3.2); it
        // ignores a variable it does not know.
        if actions.is_empty() {
            actions.push(Action::UnsetVar {
                scope: Scope::Transaction,
                name: NOOP_VAR,
            });
        }
        Some(Frame::ack(frame.stream_id, frame.frame_id, &actions))
    }

    /// Counts the messages of the frames whose ACKs were written, and feeds the metrics.
    fn count_answered(&self, answered: &mut Vec<(Frame, Instant)>, scratch: &mut Scratch) {
        let now = Instant::now();
        for (frame, read_at) in answered.drain(..) {
            self.counters
                .ack_written(now.duration_since(read_at).as_secs_f64());
            // Checked whole when the ACK was made.
            for message in messages(&frame.payload).filter_map(Result::ok) {
                self.count(&message, scratch);
            }
        }
    }

    fn count(&self, message: &super::frame::Message<'_>, scratch: &mut Scratch) {
        if message.name == REQUEST_MESSAGE {
            match request_path(message) {
                Ok(_) => self.counters.routed(),
                Err(reason) => self.reject(message, reason),
            }
        } else if message.name == RESPONSE_MESSAGE {
            if !self.metrics {
                self.counters.ignored(METRICS_OFF);
                return;
            }
            match response_record(message, &self.custom_labels, scratch) {
                Ok(record) => {
                    self.pipeline.observe(&record);
                    self.counters.counted();
                }
                Err(reason) => self.reject(message, reason),
            }
        } else {
            self.counters.ignored(UNKNOWN_MESSAGE);
        }
    }

    fn reject(&self, message: &super::frame::Message<'_>, reason: &'static str) {
        self.counters.rejected(reason);
        if let Some(suppressed) = self.warn_log.allow() {
            tracing::warn!(
                message = %String::from_utf8_lossy(message.name).escape_debug(),
                reason,
                suppressed,
                "spoe message rejected"
            );
        }
    }

    /// Sends AGENT-DISCONNECT with `status`; the connection then closes.
    async fn disconnect(&self, writer: &mut Writer, status: Status, message: &str) -> End {
        if writer
            .send(Frame::agent_disconnect(status, message))
            .await
            .is_ok()
        {
            self.counters.frame_sent(FrameType::AgentDisconnect);
        }
        End::ByAgent(status)
    }

    /// A decoding error: disconnect with its status; an I/O error (a reset among them,
    /// which HAProxy 3.1 and later may use to close) is a close.
    async fn failed(&self, writer: &mut Writer, err: SpopError) -> End {
        match err {
            SpopError::Io(_) => End::Closed,
            SpopError::Protocol { status, reason } => self.disconnect(writer, status, reason).await,
        }
    }
}
