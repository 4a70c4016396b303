//! The SPOE agent's self-metrics: connections, frames by type, messages by outcome, ACK
//! latency and disconnects by status code. For messages: received = counted + routed +
//! rejected + ignored once the messages in flight are counted; a message is counted as
//! received after its outcome, and the message counters are one collector that reads
//! received first, so a scrape never shows a message received without its outcome.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::frame::{FrameType, Status};

const PREFIX: &str = "haproxy_log_exporter_spoe";

/// Buckets of the ACK latency: an ACK takes microseconds; HAProxy's `timeout processing`
/// is typically tens of milliseconds.
const ACK_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
];

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Haproxy,
    Agent,
}

/// The SPOE counters, registered once.
pub struct SpopCounters {
    connections_open: IntGauge,
    connections: IntCounter,
    connections_refused: IntCounter,
    frames_received: IntCounterVec,
    frames_sent: IntCounterVec,
    /// The series of the frames of every transaction, looked up once.
    notify_received: IntCounter,
    ack_sent: IntCounter,
    messages: MessageCounters,
    ack_seconds: Histogram,
    disconnects: IntCounterVec,
}

/// The counts of messages, for tests and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageSnapshot {
    pub received: u64,
    pub counted: u64,
    pub routed: u64,
    pub rejected: u64,
    pub ignored: u64,
}

impl SpopCounters {
    pub fn new(registry: &Registry) -> Result<SpopCounters, prometheus::Error> {
        let name = |n: &str| format!("{PREFIX}_{n}");
        let frames_received = IntCounterVec::new(
            Opts::new(
                name("frames_received_total"),
                "SPOP frames received, by type.",
            ),
            &["type"],
        )?;
        let frames_sent = IntCounterVec::new(
            Opts::new(name("frames_sent_total"), "SPOP frames sent, by type."),
            &["type"],
        )?;
        let counters = SpopCounters {
            notify_received: frames_received.with_label_values(&[FrameType::Notify.name()]),
            ack_sent: frames_sent.with_label_values(&[FrameType::Ack.name()]),
            connections_open: IntGauge::new(
                name("connections_open"),
                "SPOE connections from HAProxy open now.",
            )?,
            connections: IntCounter::new(
                name("connections_total"),
                "SPOE connections from HAProxy accepted.",
            )?,
            connections_refused: IntCounter::new(
                name("connections_refused_total"),
                "SPOE connections closed at once because HLE_SPOE_MAX_CONNECTIONS were open.",
            )?,
            frames_received,
            frames_sent,
            messages: MessageCounters {
            received: IntCounter::new(
                name("messages_received_total"),
                "SPOE messages received: counted + routed + rejected + ignored.",
            )?,
            counted: IntCounter::new(
                name("messages_counted_total"),
                "SPOE response messages that fed the traffic metrics.",
            )?,
            routed: IntCounter::new(
                name("messages_routed_total"),
                "SPOE request messages answered with the route variable.",
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    name("messages_rejected_total"),
                    "SPOE messages that lacked an argument or carried one that could not be read, by reason.",
                ),
                &["reason"],
            )?,
            ignored: IntCounterVec::new(
                Opts::new(
                    name("messages_ignored_total"),
                    "SPOE messages read and deliberately not used, by reason.",
                ),
                &["reason"],
            )?,
            },
            ack_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    name("ack_duration_seconds"),
                    "Time from reading a NOTIFY frame to writing its ACK, in seconds.",
                )
                .buckets(ACK_BUCKETS.to_vec()),
            )?,
            disconnects: IntCounterVec::new(
                Opts::new(
                    name("disconnects_total"),
                    "SPOE connections ended, by who sent the DISCONNECT frame (sender) and its status code (none: closed without one).",
                ),
                &["sender", "status_code"],
            )?,
        };
        registry.register(Box::new(counters.connections_open.clone()))?;
        registry.register(Box::new(counters.connections.clone()))?;
        registry.register(Box::new(counters.connections_refused.clone()))?;
        registry.register(Box::new(counters.frames_received.clone()))?;
        registry.register(Box::new(counters.frames_sent.clone()))?;
        registry.register(Box::new(counters.messages.clone()))?;
        registry.register(Box::new(counters.ack_seconds.clone()))?;
        registry.register(Box::new(counters.disconnects.clone()))?;
        // Series that exist from the start, so that rate() and alerts see the first one.
        for t in [
            FrameType::HaproxyHello,
            FrameType::Notify,
            FrameType::HaproxyDisconnect,
        ] {
            counters.frames_received.with_label_values(&[t.name()]);
        }
        for t in [
            FrameType::AgentHello,
            FrameType::Ack,
            FrameType::AgentDisconnect,
        ] {
            counters.frames_sent.with_label_values(&[t.name()]);
        }
        Ok(counters)
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
        self.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn frame_received(&self, frame_type: FrameType) {
        match frame_type {
            FrameType::Notify => self.notify_received.inc(),
            other => self
                .frames_received
                .with_label_values(&[other.name()])
                .inc(),
        }
    }

    pub fn frame_sent(&self, frame_type: FrameType) {
        match frame_type {
            FrameType::Ack => self.ack_sent.inc(),
            other => self.frames_sent.with_label_values(&[other.name()]).inc(),
        }
    }

    /// A response message fed the metrics.
    pub fn counted(&self) {
        self.messages.counted.inc();
        self.messages.received.inc();
    }

    /// A request message was answered with its route.
    pub fn routed(&self) {
        self.messages.routed.inc();
        self.messages.received.inc();
    }

    pub fn rejected(&self, reason: &'static str) {
        self.messages.rejected.with_label_values(&[reason]).inc();
        self.messages.received.inc();
    }

    pub fn ignored(&self, reason: &'static str) {
        self.messages.ignored.with_label_values(&[reason]).inc();
        self.messages.received.inc();
    }

    pub fn ack_written(&self, seconds: f64) {
        self.ack_seconds.observe(seconds);
    }

    /// A connection ended with a DISCONNECT frame from `sender` (`None`: closed without).
    pub fn disconnected(&self, sender: Sender, status: Option<u64>) {
        let sender = match sender {
            Sender::Haproxy => "haproxy",
            Sender::Agent => "agent",
        };
        let code;
        let status = match status {
            None => "none",
            Some(c) if Status::from_code(c).is_some() => {
                code = c.to_string();
                code.as_str()
            }
            Some(_) => "other",
        };
        self.disconnects.with_label_values(&[sender, status]).inc();
    }

    pub fn messages(&self) -> MessageSnapshot {
        let m = &self.messages;
        // Received first: it is counted after each outcome.
        let received = m.received.get();
        let sum = |v: &IntCounterVec, reasons: &[&str]| -> u64 {
            reasons
                .iter()
                .map(|r| v.get_metric_with_label_values(&[r]).map_or(0, |c| c.get()))
                .sum()
        };
        MessageSnapshot {
            received,
            counted: m.counted.get(),
            routed: m.routed.get(),
            rejected: sum(&m.rejected, super::message::REJECT_REASONS),
            ignored: sum(&m.ignored, super::message::IGNORE_REASONS),
        }
    }
}

/// The message counters as one collector, read received first.
#[derive(Clone)]
struct MessageCounters {
    received: IntCounter,
    counted: IntCounter,
    routed: IntCounter,
    rejected: IntCounterVec,
    ignored: IntCounterVec,
}

impl prometheus::core::Collector for MessageCounters {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs = self.received.desc();
        descs.extend(self.counted.desc());
        descs.extend(self.routed.desc());
        descs.extend(self.rejected.desc());
        descs.extend(self.ignored.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.received.collect();
        families.extend(self.counted.collect());
        families.extend(self.routed.collect());
        families.extend(self.rejected.collect());
        families.extend(self.ignored.collect());
        families
    }
}
