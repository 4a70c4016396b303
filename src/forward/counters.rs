//! What each sink did with the lines given to it, as self-metrics. For each sink, at
//! every scrape: given = forwarded + dropped + sampled out + queued, where queued is
//! everything given and not yet finished (waiting, being written, or written to TCP and
//! not yet confirmed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Why a line given to a sink was not delivered; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The sink's queue held `HLE_FORWARD_BUFFER_LINES` lines or `_BYTES` bytes.
    QueueFull,
    /// Written to a connection (or output) that then failed, or sent and refused.
    ConnectionLost,
    /// Still queued when the shutdown grace ran out.
    Shutdown,
    /// Longer than the whole queue may hold.
    Oversize,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::ConnectionLost,
        DropReason::Shutdown,
        DropReason::Oversize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ConnectionLost => "connection_lost",
            DropReason::Shutdown => "shutdown",
            DropReason::Oversize => "oversize",
        }
    }
}

/// The counters of one sink.
pub struct SinkCounters {
    pub name: &'static str,
    given: IntCounter,
    forwarded: IntCounter,
    sampled_out: IntCounter,
    dropped: [IntCounter; DropReason::ALL.len()],
    queued: IntGauge,
    queued_bytes: IntGauge,
    connected: IntGauge,
    truncated: IntCounter,
    /// Set once shutdown has counted what was left; a sink finishing a line after that
    /// counts nothing more (the line is already counted as dropped at shutdown).
    closed: AtomicBool,
    /// Held by whoever finishes lines, and by the shutdown count.
    finishing: Mutex<()>,
    queue_len: Box<dyn Fn() -> (usize, usize) + Send + Sync>,
}

impl SinkCounters {
    /// A line was given to the sink.
    pub fn given(&self) {
        self.given.inc();
    }

    /// A line given was left out by sampling.
    pub fn sampled_out(&self) {
        self.sampled_out.inc();
    }

    /// Lines given that were refused on the way into the queue.
    pub fn refused(&self, reason: DropReason) {
        self.dropped[reason as usize].inc();
    }

    /// `n` lines delivered.
    pub fn forwarded(&self, n: usize) {
        self.finish(|c| c.forwarded.inc_by(n as u64));
    }

    /// `n` lines taken from the queue and lost.
    pub fn lost(&self, n: usize, reason: DropReason) {
        self.finish(|c| c.dropped[reason as usize].inc_by(n as u64));
    }

    fn finish(&self, count: impl FnOnce(&Self)) {
        let _held = self
            .finishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.closed.load(Ordering::SeqCst) {
            count(self);
        }
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    /// A datagram was cut to the size limit (and sent).
    pub fn truncated(&self) {
        self.truncated.inc();
    }

    /// Shutdown: everything given and not finished is dropped; from now on the sink
    /// counts nothing more it finishes. Returns how many lines that was.
    pub fn close(&self) -> u64 {
        let _held = self
            .finishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::SeqCst);
        let left = self.pending();
        self.dropped[DropReason::Shutdown as usize].inc_by(left);
        left
    }

    /// Given and not yet finished. The finished counts are read first: a line finished
    /// was given before, so this is never negative.
    pub fn pending(&self) -> u64 {
        let finished = self.forwarded.get()
            + self.sampled_out.get()
            + self.dropped.iter().map(IntCounter::get).sum::<u64>();
        self.given.get().saturating_sub(finished)
    }

    /// The counts, for tests and the summary: (given, forwarded, dropped, sampled out).
    pub fn snapshot(&self) -> SinkSnapshot {
        let forwarded = self.forwarded.get();
        let sampled_out = self.sampled_out.get();
        let dropped = DropReason::ALL.map(|r| self.dropped[r as usize].get());
        SinkSnapshot {
            sink: self.name,
            given: self.given.get(),
            forwarded,
            dropped,
            sampled_out,
        }
    }
}

/// One sink's counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkSnapshot {
    pub sink: &'static str,
    pub given: u64,
    pub forwarded: u64,
    /// By [`DropReason`], in the order of `DropReason::ALL`.
    pub dropped: [u64; DropReason::ALL.len()],
    pub sampled_out: u64,
}

impl SinkSnapshot {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Every sink's counters, registered as one collector.
pub struct ForwardMetrics {
    given: IntCounterVec,
    forwarded: IntCounterVec,
    sampled_out: IntCounterVec,
    dropped: IntCounterVec,
    queued: IntGaugeVec,
    queued_bytes: IntGaugeVec,
    connected: IntGaugeVec,
    truncated: IntCounterVec,
    sinks: Vec<std::sync::Arc<SinkCounters>>,
}

fn name(n: &str) -> String {
    format!("haproxy_log_exporter_{n}")
}

impl ForwardMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let counter = |n: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name(n), help), labels)
        };
        let gauge = |n: &str, help: &str| IntGaugeVec::new(Opts::new(name(n), help), &["sink"]);
        Ok(ForwardMetrics {
            given: counter(
                "forward_given_lines_total",
                "Lines given to a forwarding sink: forwarded + dropped + sampled out + queued.",
                &["sink"],
            )?,
            forwarded: counter(
                "forwarded_lines_total",
                "Lines a forwarding sink delivered (written, and for TCP, the connection still up a second later or closed cleanly).",
                &["sink"],
            )?,
            sampled_out: counter(
                "forward_sampled_out_lines_total",
                "Ordinary traffic lines left out by HLE_FORWARD_SAMPLE_RATE.",
                &["sink"],
            )?,
            dropped: counter(
                "forward_dropped_lines_total",
                "Lines a forwarding sink could not deliver, by reason (queue_full, connection_lost: possibly lost with a failed connection or output, shutdown, oversize).",
                &["sink", "reason"],
            )?,
            queued: gauge(
                "forward_queue_lines",
                "Lines given to a forwarding sink and not yet delivered or dropped.",
            )?,
            queued_bytes: gauge(
                "forward_queue_bytes",
                "Bytes waiting in a forwarding sink's queue.",
            )?,
            connected: gauge(
                "forward_connected",
                "1 while a forwarding sink can deliver (TCP connected, last UDP send accepted, standard output writable).",
            )?,
            truncated: counter(
                "forward_truncated_lines_total",
                "Forwarded UDP datagrams cut to HLE_FORWARD_SYSLOG_UDP_MAX_BYTES.",
                &["sink"],
            )?,
            sinks: Vec::new(),
        })
    }

    /// The counters of a new sink, every series at zero.
    pub fn sink(
        &mut self,
        sink: &'static str,
        queue_len: Box<dyn Fn() -> (usize, usize) + Send + Sync>,
    ) -> std::sync::Arc<SinkCounters> {
        let counters = std::sync::Arc::new(SinkCounters {
            name: sink,
            given: self.given.with_label_values(&[sink]),
            forwarded: self.forwarded.with_label_values(&[sink]),
            sampled_out: self.sampled_out.with_label_values(&[sink]),
            dropped: DropReason::ALL.map(|r| self.dropped.with_label_values(&[sink, r.name()])),
            queued: self.queued.with_label_values(&[sink]),
            queued_bytes: self.queued_bytes.with_label_values(&[sink]),
            connected: self.connected.with_label_values(&[sink]),
            truncated: self.truncated.with_label_values(&[sink]),
            closed: AtomicBool::new(false),
            finishing: Mutex::new(()),
            queue_len,
        });
        self.sinks.push(counters.clone());
        counters
    }

    pub fn register(self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self))
    }
}

impl Collector for ForwardMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.forwarded.desc();
        descs.extend(self.dropped.desc());
        descs.extend(self.sampled_out.desc());
        descs.extend(self.queued.desc());
        descs.extend(self.given.desc());
        descs.extend(self.queued_bytes.desc());
        descs.extend(self.connected.desc());
        descs.extend(self.truncated.desc());
        descs
    }

    /// The finished counts are read before the given ones, and the queue gauge is what
    /// lies between, so that every scrape adds up.
    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.forwarded.collect();
        families.extend(self.dropped.collect());
        families.extend(self.sampled_out.collect());
        let finished = self.by_sink(&families);
        let given_families = self.given.collect();
        let given = self.by_sink(&given_families);
        for ((sink, finished), given) in self.sinks.iter().zip(finished).zip(given) {
            sink.queued.set(given.saturating_sub(finished) as i64);
            sink.queued_bytes.set((sink.queue_len)().1 as i64);
        }
        families.extend(self.queued.collect());
        families.extend(given_families);
        families.extend(self.queued_bytes.collect());
        families.extend(self.connected.collect());
        families.extend(self.truncated.collect());
        families
    }
}

impl ForwardMetrics {
    /// The sum of the counters in `families`, for each sink in order.
    fn by_sink(&self, families: &[MetricFamily]) -> Vec<u64> {
        let mut sums = vec![0; self.sinks.len()];
        for metric in families.iter().flat_map(|f| f.get_metric()) {
            let sink = metric
                .get_label()
                .iter()
                .find(|l| l.name() == "sink")
                .map(|l| l.value());
            if let Some(i) = self.sinks.iter().position(|s| Some(s.name) == sink) {
                sums[i] += metric.get_counter().get_value() as u64;
            }
        }
        sums
    }
}
