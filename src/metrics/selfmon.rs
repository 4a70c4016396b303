//! The exporter's own metrics (`haproxy_log_exporter_*`): what it received, counted,
//! rejected and ignored, so that received = counted + rejected + ignored can be checked.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::haproxy::{ConnectionLine, IGNORE_REASONS, REJECT_REASONS};

/// Where a line came from; the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Unix,
    /// Lines read from files or standard input by `haproxy-log-exporter replay`.
    Replay,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Unix,
        Transport::Replay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
            Transport::Replay => "replay",
        }
    }
}

/// Rejection reasons that come from framing rather than from the entry parser.
pub const OVERSIZE_FRAME: &str = "oversize_frame";
pub const INCOMPLETE_FRAME: &str = "incomplete_frame";
/// A partial frame dropped with its connection: `HLE_TCP_BUFFER_BUDGET_BYTES` was spent.
pub const TCP_BUFFER_BUDGET: &str = "tcp_buffer_budget";

/// Who a sender outside the allow-list tried to reach: the `listener` label.
pub const REFUSED_LISTENERS: [&str; 3] = ["udp", "tcp", "spoe"];

/// The self-metrics, registered once and shared by every source.
pub struct SelfMetrics {
    received: [IntCounter; Transport::ALL.len()],
    counted: IntCounter,
    rejected: IntCounterVec,
    ignored: IntCounterVec,
    oversize: [IntCounter; Transport::ALL.len()],
    tcp_connections: IntGauge,
    tcp_connections_refused: IntCounter,
    tcp_connections_cut: IntCounter,
    tcp_buffered_bytes: IntGauge,
    received_bytes: [IntCounter; Transport::ALL.len()],
    senders_refused: IntCounterVec,
    reject_log: RateLimit,
    refused_log: RateLimit,
    sender_log: RateLimit,
    cut_log: RateLimit,
    /// Frontends already told they have no log format.
    told_no_log_format: Mutex<HashSet<Vec<u8>>>,
}

/// At most this many frontends are told, one by one, that they have no log format: the
/// names come from the lines, which anyone who can send one may forge.
const MAX_TOLD_FRONTENDS: usize = 64;

impl SelfMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let lines = LineCounters::new()?;
        let tcp_connections = IntGauge::new(
            "haproxy_log_exporter_tcp_connections",
            "Open syslog TCP connections.",
        )?;
        let tcp_connections_refused = IntCounter::new(
            "haproxy_log_exporter_tcp_connections_refused_total",
            "Syslog TCP connections closed at once because HLE_TCP_MAX_CONNECTIONS were open.",
        )?;
        let tcp_connections_cut = IntCounter::new(
            "haproxy_log_exporter_tcp_connections_cut_total",
            "Syslog TCP connections closed because their unfinished frame would have taken more than their share of HLE_TCP_BUFFER_BUDGET_BYTES.",
        )?;
        let tcp_buffered_bytes = IntGauge::new(
            "haproxy_log_exporter_tcp_buffered_bytes",
            "Bytes of unfinished frames the syslog TCP connections hold now (bounded by HLE_TCP_BUFFER_BUDGET_BYTES).",
        )?;
        let received_bytes = IntCounterVec::new(
            Opts::new(
                "haproxy_log_exporter_received_bytes_total",
                "Bytes read from the syslog sockets, by transport (framing included; senders refused by the allow-list not).",
            ),
            &["transport"],
        )?;
        let senders_refused = IntCounterVec::new(
            Opts::new(
                "haproxy_log_exporter_senders_refused_total",
                "Datagrams (udp) and connections (tcp, spoe) from addresses outside the allowed sources, dropped unread.",
            ),
            &["listener"],
        )?;
        for listener in REFUSED_LISTENERS {
            senders_refused.with_label_values(&[listener]);
        }
        let build_info = IntGaugeVec::new(
            Opts::new(
                "haproxy_log_exporter_build_info",
                "A metric with a constant '1' value labeled by the exporter's version.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let by_transport =
            |vec: &IntCounterVec| Transport::ALL.map(|t| vec.with_label_values(&[t.name()]));
        let metrics = SelfMetrics {
            received: by_transport(&lines.received),
            counted: lines.counted.clone(),
            rejected: lines.rejected.clone(),
            ignored: lines.ignored.clone(),
            oversize: by_transport(&lines.oversize),
            tcp_connections: tcp_connections.clone(),
            tcp_connections_refused: tcp_connections_refused.clone(),
            tcp_connections_cut: tcp_connections_cut.clone(),
            tcp_buffered_bytes: tcp_buffered_bytes.clone(),
            received_bytes: by_transport(&received_bytes),
            senders_refused: senders_refused.clone(),
            reject_log: RateLimit::new(Duration::from_secs(1)),
            refused_log: RateLimit::new(Duration::from_secs(1)),
            sender_log: RateLimit::new(Duration::from_secs(1)),
            cut_log: RateLimit::new(Duration::from_secs(1)),
            told_no_log_format: Mutex::new(HashSet::new()),
        };
        for collector in [
            Box::new(lines) as Box<dyn prometheus::core::Collector>,
            Box::new(tcp_connections),
            Box::new(tcp_connections_refused),
            Box::new(tcp_connections_cut),
            Box::new(tcp_buffered_bytes),
            Box::new(received_bytes),
            Box::new(senders_refused),
            Box::new(build_info),
        ] {
            registry.register(collector)?;
        }
        Ok(metrics)
    }

    /// A TCP connection was accepted and is read.
    pub fn connection_opened(&self) {
        self.tcp_connections.inc();
    }

    /// A TCP connection that was read is closed.
    pub fn connection_closed(&self) {
        self.tcp_connections.dec();
    }

    /// A TCP connection was closed at once: `HLE_TCP_MAX_CONNECTIONS` were open. Logged
    /// at most once a second: anyone who can connect can make many.
    pub fn connection_refused(&self, peer: SocketAddr, max: usize) {
        self.tcp_connections_refused.inc();
        if let Some(suppressed) = self.refused_log.allow() {
            tracing::warn!(%peer, max, suppressed, "tcp connection refused: too many open");
        }
    }

    /// A TCP connection was closed for the buffer budget, holding `held` bytes of an
    /// unfinished frame (counted as rejected apart, by `unreadable_frame`).
    pub fn connection_cut(&self, peer: SocketAddr, held: usize) {
        self.tcp_connections_cut.inc();
        if let Some(suppressed) = self.cut_log.allow() {
            tracing::warn!(
                %peer,
                held,
                suppressed,
                "tcp connection closed: its unfinished frame would take more than its share of HLE_TCP_BUFFER_BUDGET_BYTES"
            );
        }
    }

    /// The gauge of bytes the TCP connections hold, kept by the buffer budget.
    pub fn tcp_buffered_bytes(&self) -> IntGauge {
        self.tcp_buffered_bytes.clone()
    }

    /// `bytes` were read from a socket of `transport`.
    pub fn received_bytes(&self, transport: Transport, bytes: usize) {
        self.received_bytes[transport as usize].inc_by(bytes as u64);
    }

    /// The counter of bytes read over `transport`, for a reader that counts each read.
    pub fn received_bytes_counter(&self, transport: Transport) -> IntCounter {
        self.received_bytes[transport as usize].clone()
    }

    /// A datagram or connection from `peer`, outside the allowed sources, was dropped
    /// unread: it is not received. `listener` is one of [`REFUSED_LISTENERS`].
    pub fn sender_refused(&self, listener: &'static str, peer: SocketAddr) {
        self.senders_refused.with_label_values(&[listener]).inc();
        if let Some(suppressed) = self.sender_log.allow() {
            tracing::warn!(
                %peer,
                listener,
                suppressed,
                "sender refused: not in the allowed sources"
            );
        }
    }

    pub fn received(&self, transport: Transport) {
        self.received[transport as usize].inc();
    }

    pub fn counted(&self) {
        self.counted.inc();
    }

    pub fn ignored(&self, reason: &str) {
        self.ignored.with_label_values(&[reason]).inc();
    }

    /// Counts a rejected line and logs it, at most once a second, with a sample of it.
    pub fn rejected(&self, transport: Transport, reason: &str, line: &[u8]) {
        self.rejected.with_label_values(&[reason]).inc();
        if let Some(suppressed) = self.reject_log.allow() {
            const SAMPLE: usize = 256;
            let sample = String::from_utf8_lossy(&line[..line.len().min(SAMPLE)]);
            tracing::warn!(
                transport = transport.name(),
                reason,
                len = line.len(),
                suppressed,
                sample = %sample.escape_debug(),
                "line rejected"
            );
        }
    }

    /// Says, once per frontend, how to make the lines of a frontend without a log format
    /// countable. The line itself is counted as rejected by [`SelfMetrics::rejected`].
    pub fn no_log_format(&self, line: &ConnectionLine<'_>) {
        {
            let mut told = self
                .told_no_log_format
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Looked up before it is copied: every line of such a frontend comes here.
            if told.contains(line.frontend) || told.len() >= MAX_TOLD_FRONTENDS {
                return;
            }
            told.insert(line.frontend.to_vec());
        }
        let frontend = String::from_utf8_lossy(line.frontend);
        let fix = line.fix();
        tracing::warn!(
            frontend = %frontend.escape_debug(),
            fix,
            "HAProxy logs only \"Connect from\" lines for frontend {}: it has no log format; \
             add `{fix}` to that frontend (or to its defaults section), or a log-format the \
             exporter reads (HLE_LOG_FORMAT); until then its lines are rejected as no_log_format",
            frontend.escape_debug()
        );
    }

    /// The counts so far, for [`CountingWatch`].
    pub fn snapshot(&self) -> Snapshot {
        let by_reason = |vec: &IntCounterVec| {
            let mut counts = Vec::new();
            for family in prometheus::core::Collector::collect(vec) {
                for metric in family.get_metric() {
                    let reason = metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == "reason")
                        .map(|l| l.value().to_string())
                        .unwrap_or_default();
                    counts.push((reason, metric.get_counter().get_value() as u64));
                }
            }
            counts
        };
        Snapshot {
            received: self.received.iter().map(IntCounter::get).sum(),
            counted: self.counted.get(),
            rejected: by_reason(&self.rejected),
            ignored: by_reason(&self.ignored),
        }
    }

    /// Counts a frame discarded for its length, as received and rejected.
    pub fn oversize(&self, transport: Transport, len: usize) {
        self.oversize[transport as usize].inc();
        self.unreadable_frame(transport, OVERSIZE_FRAME, len);
    }

    /// Counts a datagram that filled the receive buffer, `at_least` bytes: the kernel
    /// cut the rest, so its length is unknown.
    pub fn oversize_cut(&self, transport: Transport, at_least: usize) {
        self.oversize[transport as usize].inc();
        let sample = format!("<{at_least} bytes or more>");
        self.rejected(transport, OVERSIZE_FRAME, sample.as_bytes());
        self.received(transport);
    }

    /// Counts a frame that never became a line (too long, or cut by the end of the
    /// stream) as received and rejected; only its length is shown in the log.
    pub fn unreadable_frame(&self, transport: Transport, reason: &str, len: usize) {
        self.rejected(transport, reason, format!("<{len} bytes>").as_bytes());
        self.received(transport);
    }
}

/// The self-metrics' counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub received: u64,
    pub counted: u64,
    /// By reason.
    pub rejected: Vec<(String, u64)>,
    /// By reason.
    pub ignored: Vec<(String, u64)>,
}

impl Snapshot {
    /// Lines rejected, whatever the reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    /// Lines ignored, whatever the reason.
    pub fn ignored_total(&self) -> u64 {
        self.ignored.iter().map(|(_, n)| n).sum()
    }
}

/// How long an exporter may receive lines and count none before it says so.
pub const NOTHING_COUNTED_PERIOD: Duration = Duration::from_secs(60);

/// Tells when lines arrive but none is counted: an exporter whose every line is rejected
/// or ignored (a frontend without a log format, a wrong `HLE_LOG_FORMAT`, only notices)
/// shows nothing in its traffic metrics, and that must not go unnoticed. Looked at once a
/// period; it speaks once per stretch of periods in which lines came and none was counted
/// (a period without lines does not end the stretch, one with a counted line does).
#[derive(Debug)]
pub struct CountingWatch {
    last: Snapshot,
    told: bool,
}

impl CountingWatch {
    /// Starts from the counts at `start`.
    pub fn new(start: Snapshot) -> Self {
        CountingWatch {
            last: start,
            told: false,
        }
    }

    /// The counts at the end of a period `period` long: the warning to log, if this
    /// period starts a stretch of lines received and none counted.
    pub fn tick(&mut self, now: Snapshot, period: Duration) -> Option<String> {
        let received = now.received.saturating_sub(self.last.received);
        let counted = now.counted.saturating_sub(self.last.counted);
        let rejected = changes(&self.last.rejected, &now.rejected);
        let ignored = changes(&self.last.ignored, &now.ignored);
        self.last = now;
        if counted > 0 {
            self.told = false;
            return None;
        }
        if received == 0 || self.told {
            return None;
        }
        self.told = true;
        let list = |what: &str, changes: &[(String, u64)]| {
            let items: Vec<String> = changes.iter().map(|(r, n)| format!("{r}={n}")).collect();
            (!items.is_empty()).then(|| format!("{what} {}", items.join(", ")))
        };
        let why: Vec<String> = [list("rejected", &rejected), list("ignored", &ignored)]
            .into_iter()
            .flatten()
            .collect();
        Some(format!(
            "received {received} lines in the last {}s and counted none ({}); \
             haproxy_log_exporter_lines_rejected_total and _ignored_total have the reasons, \
             the \"line rejected\" log lines a sample",
            period.as_secs(),
            why.join("; ")
        ))
    }
}

/// The reasons whose count went up from `before` to `after`, and by how much, largest
/// first.
fn changes(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut changes: Vec<(String, u64)> = after
        .iter()
        .filter_map(|(reason, now)| {
            let was = before
                .iter()
                .find(|(r, _)| r == reason)
                .map_or(0, |(_, n)| *n);
            (*now > was).then(|| (reason.clone(), now - was))
        })
        .collect();
    changes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    changes
}

/// The line counters as one collector, read received first. A line is counted as
/// received after its outcome (and an oversize frame as oversize before that), so a
/// scrape that reads `received` before the rest never shows a line received whose
/// outcome is missing. (Collectors registered apart are read in no fixed order.)
#[derive(Clone)]
struct LineCounters {
    received: IntCounterVec,
    counted: IntCounter,
    rejected: IntCounterVec,
    ignored: IntCounterVec,
    oversize: IntCounterVec,
}

impl LineCounters {
    fn new() -> Result<Self, prometheus::Error> {
        let name = |n: &str| format!("haproxy_log_exporter_{n}");
        let vec = |n: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name(n), help), &[label])
        };
        let lines = LineCounters {
            received: vec(
                "lines_received_total",
                "Log lines (frames) received, by transport.",
                "transport",
            )?,
            counted: IntCounter::new(
                name("lines_counted_total"),
                "Traffic log lines parsed and counted in the haproxy_log_* metrics.",
            )?,
            rejected: vec(
                "lines_rejected_total",
                "Lines that could not be counted, by reason.",
                "reason",
            )?,
            ignored: vec(
                "lines_ignored_total",
                "Lines that are not traffic logs (HAProxy notices), by reason.",
                "reason",
            )?,
            oversize: vec(
                "oversize_frames_total",
                "Frames longer than HLE_MAX_LINE_BYTES, discarded (also counted as rejected).",
                "transport",
            )?,
        };
        // Every known label value starts at zero, so rate() and alerts see the series
        // before the first problem.
        for reason in
            REJECT_REASONS
                .iter()
                .chain(&[OVERSIZE_FRAME, INCOMPLETE_FRAME, TCP_BUFFER_BUDGET])
        {
            lines.rejected.with_label_values(&[reason]);
        }
        for reason in IGNORE_REASONS {
            lines.ignored.with_label_values(&[reason]);
        }
        Ok(lines)
    }
}

impl prometheus::core::Collector for LineCounters {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs = self.received.desc();
        descs.extend(self.counted.desc());
        descs.extend(self.rejected.desc());
        descs.extend(self.ignored.desc());
        descs.extend(self.oversize.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.received.collect();
        families.extend(self.counted.collect());
        families.extend(self.rejected.collect());
        families.extend(self.ignored.collect());
        families.extend(self.oversize.collect());
        families
    }
}

/// Lets one event through per interval and counts the ones it held back.
pub(crate) struct RateLimit {
    start: Instant,
    interval_ms: u64,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub(crate) fn new(interval: Duration) -> Self {
        RateLimit {
            start: Instant::now(),
            interval_ms: interval.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(number held back since the last one let through)` if this one may pass.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.interval_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_through_per_interval() {
        let limit = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.suppressed.load(Ordering::Relaxed), 2);
    }
}
