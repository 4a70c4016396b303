//! The catalogue of traffic metrics: each one's name, help text, source in the log
//! record, default labels and buckets (the metrics table of docs/metrics.md lists them).

use super::labels::Label;
use crate::haproxy::{EntryKind, LogRecord, Timer};

/// Every metric's name starts with this.
pub const NAMESPACE: &str = "haproxy_log";

/// Default buckets for the timer histograms, in seconds. HAProxy measures in milliseconds,
/// so the first bucket is 1 ms; the last ones catch slow uploads and long sessions.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Default buckets for the queue length histograms.
pub const QUEUE_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];

// The labels of each metric when the operator chooses none: what the shipped dashboard
// and alert rules read (the Helm chart keeps them; tests/readme.rs checks that it does).
// `status_class` costs no series beside `status_code`; `http_request_path`, on the one
// histogram the dashboard shows by path, is normalised and capped (see "Cardinality").

/// The two request counters.
const REQUEST_LABELS: &[Label] = &[
    Label::StatusCode,
    Label::StatusClass,
    Label::BackendName,
    Label::ServerName,
];
/// The abort counters.
const ABORT_LABELS: &[Label] = &[
    Label::BackendName,
    Label::ServerName,
    Label::TerminationState,
];
/// `Tr`, by path: which requests are slow.
const RESPONSE_LABELS: &[Label] = &[
    Label::BackendName,
    Label::ServerName,
    Label::HttpRequestPath,
];
/// `Tw`: queues are a backend's.
const QUEUED_LABELS: &[Label] = &[Label::BackendName];
/// `Tc`: connecting is a server's.
const CONNECT_LABELS: &[Label] = &[Label::BackendName, Label::ServerName];

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
}

/// Which HAProxy timer a metric reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerField {
    RequestWait,
    Queued,
    Connect,
    Response,
    Session,
}

impl TimerField {
    pub(super) fn get(self, record: &LogRecord<'_>) -> Timer {
        match self {
            TimerField::RequestWait => record.request_wait,
            TimerField::Queued => record.queued,
            TimerField::Connect => record.connect,
            TimerField::Response => record.response,
            TimerField::Session => record.session,
        }
    }

    /// tcplog has no request and no response phase: a missing timer there is no abort.
    pub(super) fn applies_to(self, kind: EntryKind) -> bool {
        kind == EntryKind::Http || !matches!(self, TimerField::RequestWait | TimerField::Response)
    }
}

/// What a metric measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One per counted line.
    Requests,
    /// `%B`.
    BytesRead,
    /// A timer's value in seconds; not observed when HAProxy logged `-1`.
    Timer(TimerField),
    /// One per line where this timer is `-1`.
    Abort(TimerField),
    /// `%sq`.
    ServerQueue,
    /// `%bq`.
    BackendQueue,
}

/// The definition of one traffic metric.
#[derive(Debug)]
pub struct MetricDef {
    /// The name without the namespace, as used in `HLE_ENABLED_METRICS` and, upper-cased,
    /// in `HLE_<METRIC>_LABELS` and `HLE_<METRIC>_BUCKETS`.
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub default_labels: &'static [Label],
    pub default_buckets: &'static [f64],
    pub source: Source,
}

/// Names are unique, so a metric is its name.
impl PartialEq for MetricDef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl MetricDef {
    /// The full name in the exposition.
    pub fn full_name(&self) -> String {
        format!("{NAMESPACE}_{}", self.name)
    }

    /// The metric with this name (with or without the namespace).
    pub fn by_name(name: &str) -> Option<&'static MetricDef> {
        let short = name
            .strip_prefix(NAMESPACE)
            .and_then(|n| n.strip_prefix('_'))
            .unwrap_or(name);
        METRICS.iter().find(|m| m.name == short)
    }

    /// The environment variable prefix for this metric, e.g. `HLE_REQUESTS_TOTAL`.
    pub fn env_prefix(&self) -> String {
        format!("HLE_{}", self.name.to_ascii_uppercase())
    }
}

const fn counter(
    name: &'static str,
    help: &'static str,
    default_labels: &'static [Label],
    source: Source,
) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Counter,
        help,
        default_labels,
        default_buckets: &[],
        source,
    }
}

const fn histogram(
    name: &'static str,
    help: &'static str,
    default_labels: &'static [Label],
    default_buckets: &'static [f64],
    source: Source,
) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Histogram,
        help,
        default_labels,
        default_buckets,
        source,
    }
}

/// Every traffic metric the exporter can produce.
pub static METRICS: [MetricDef; 13] = [
    counter(
        "requests_total",
        "Traffic log lines counted: HTTP requests (option httplog) and TCP sessions (option tcplog).",
        REQUEST_LABELS,
        Source::Requests,
    ),
    counter(
        "bytes_read_total",
        "Bytes sent to the client (HAProxy %B, bytes_read).",
        REQUEST_LABELS,
        Source::BytesRead,
    ),
    histogram(
        "request_wait_seconds",
        "Time to receive the full HTTP request from the client (HAProxy timer TR, Tq before 1.7), in seconds.",
        &[],
        SECONDS_BUCKETS,
        Source::Timer(TimerField::RequestWait),
    ),
    histogram(
        "request_queued_seconds",
        "Time spent waiting in queues for a connection slot (HAProxy timer Tw), in seconds.",
        QUEUED_LABELS,
        SECONDS_BUCKETS,
        Source::Timer(TimerField::Queued),
    ),
    histogram(
        "server_tcp_connection_establish_seconds",
        "Time to establish the TCP connection to the server (HAProxy timer Tc), in seconds.",
        CONNECT_LABELS,
        SECONDS_BUCKETS,
        Source::Timer(TimerField::Connect),
    ),
    histogram(
        "response_processing_seconds",
        "Time for the server to send the full response headers (HAProxy timer Tr), in seconds.",
        RESPONSE_LABELS,
        SECONDS_BUCKETS,
        Source::Timer(TimerField::Response),
    ),
    histogram(
        "session_duration_seconds",
        "Total active time of the request or session (HAProxy timer Ta in httplog, Tt in tcplog and before 1.7), in seconds.",
        &[],
        SECONDS_BUCKETS,
        Source::Timer(TimerField::Session),
    ),
    counter(
        "request_abort_total",
        "Requests aborted before the full request was received (HAProxy timer TR/Tq is -1).",
        ABORT_LABELS,
        Source::Abort(TimerField::RequestWait),
    ),
    counter(
        "request_pre_queue_abort_total",
        "Requests or sessions aborted before leaving the queue (HAProxy timer Tw is -1).",
        ABORT_LABELS,
        Source::Abort(TimerField::Queued),
    ),
    counter(
        "request_pre_server_connection_abort_total",
        "Requests or sessions aborted before a connection to a server was established (HAProxy timer Tc is -1).",
        ABORT_LABELS,
        Source::Abort(TimerField::Connect),
    ),
    counter(
        "request_response_abort_total",
        "Requests aborted before the server's full response headers were received (HAProxy timer Tr is -1).",
        ABORT_LABELS,
        Source::Abort(TimerField::Response),
    ),
    histogram(
        "backend_queue_length",
        "Requests or sessions already in the backend's queue when this one was queued (HAProxy %bq).",
        &[],
        QUEUE_BUCKETS,
        Source::BackendQueue,
    ),
    histogram(
        "server_queue_length",
        "Requests or sessions already in the server's queue when this one was queued (HAProxy %sq).",
        &[],
        QUEUE_BUCKETS,
        Source::ServerQueue,
    ),
];

/// The operator's choices for one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricConfig {
    pub def: &'static MetricDef,
    pub labels: Vec<Label>,
    /// Empty for counters.
    pub buckets: Vec<f64>,
}
