//! The exporter's own metrics (`haproxy_log_exporter_*`): what it received, counted,
//! rejected and ignored, so that received = counted + rejected + ignored can be checked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::haproxy::{IGNORE_REASONS, REJECT_REASONS};

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

/// The self-metrics, registered once and shared by every source.
pub struct SelfMetrics {
    received: [IntCounter; Transport::ALL.len()],
    counted: IntCounter,
    rejected: IntCounterVec,
    ignored: IntCounterVec,
    oversize: [IntCounter; Transport::ALL.len()],
    pub tcp_connections: IntGauge,
    pub tcp_connections_refused: IntCounter,
    reject_log: RateLimit,
}

impl SelfMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let name = |n: &str| format!("haproxy_log_exporter_{n}");
        let received = IntCounterVec::new(
            Opts::new(
                name("lines_received_total"),
                "Log lines (frames) received, by transport.",
            ),
            &["transport"],
        )?;
        let counted = IntCounter::new(
            name("lines_counted_total"),
            "Traffic log lines parsed and counted in the haproxy_log_* metrics.",
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                name("lines_rejected_total"),
                "Lines that could not be counted, by reason.",
            ),
            &["reason"],
        )?;
        let ignored = IntCounterVec::new(
            Opts::new(
                name("lines_ignored_total"),
                "Lines that are not traffic logs (HAProxy notices), by reason.",
            ),
            &["reason"],
        )?;
        let oversize = IntCounterVec::new(
            Opts::new(
                name("oversize_frames_total"),
                "Frames longer than HLE_MAX_LINE_BYTES, discarded (also counted as rejected).",
            ),
            &["transport"],
        )?;
        let tcp_connections =
            IntGauge::new(name("tcp_connections"), "Open syslog TCP connections.")?;
        let tcp_connections_refused = IntCounter::new(
            name("tcp_connections_refused_total"),
            "Syslog TCP connections closed at once because HLE_TCP_MAX_CONNECTIONS were open.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                name("build_info"),
                "A metric with a constant '1' value labeled by the exporter's version.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        // Every known label value starts at zero, so rate() and alerts see the series
        // before the first problem.
        for reason in REJECT_REASONS
            .iter()
            .chain(&[OVERSIZE_FRAME, INCOMPLETE_FRAME])
        {
            rejected.with_label_values(&[reason]);
        }
        for reason in IGNORE_REASONS {
            ignored.with_label_values(&[reason]);
        }
        let by_transport =
            |vec: &IntCounterVec| Transport::ALL.map(|t| vec.with_label_values(&[t.name()]));

        for collector in [
            Box::new(received.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(counted.clone()),
            Box::new(rejected.clone()),
            Box::new(ignored.clone()),
            Box::new(oversize.clone()),
            Box::new(tcp_connections.clone()),
            Box::new(tcp_connections_refused.clone()),
            Box::new(build_info),
        ] {
            registry.register(collector)?;
        }
        Ok(SelfMetrics {
            received: by_transport(&received),
            counted,
            rejected,
            ignored,
            oversize: by_transport(&oversize),
            tcp_connections,
            tcp_connections_refused,
            reject_log: RateLimit::new(Duration::from_secs(1)),
        })
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
                sample = %sample,
                "line rejected"
            );
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

/// Lets one event through per interval and counts the ones it held back.
struct RateLimit {
    start: Instant,
    interval_ms: u64,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    fn new(interval: Duration) -> Self {
        RateLimit {
            start: Instant::now(),
            interval_ms: interval.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(number held back since the last one let through)` if this one may pass.
    fn allow(&self) -> Option<u64> {
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
