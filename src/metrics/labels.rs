//! The label vocabulary: what an operator may put in `HLE_<METRIC>_LABELS`, and how each
//! label's value is taken from a `LogRecord`.

use crate::haproxy::{LogRecord, MAX_CUSTOM_LABELS};

/// One label an operator can choose for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    StatusCode,
    StatusClass,
    FrontendName,
    BackendName,
    ServerName,
    HttpRequestPath,
    HttpRequestMethod,
    ClientIp,
    ClientPort,
    TerminationState,
    /// A field of the operator's log-format (`HLE_CUSTOM_LABELS`), by its slot in the
    /// record and the name the operator gave it.
    Custom {
        slot: usize,
        name: &'static str,
    },
}

/// The most labels a metric can have: every built-in one and every custom one.
pub const MAX_LABELS: usize = Label::ALL.len() + MAX_CUSTOM_LABELS;

impl Label {
    /// Every built-in label, in the order docs/metrics.md lists them.
    pub const ALL: [Label; 10] = [
        Label::StatusCode,
        Label::StatusClass,
        Label::FrontendName,
        Label::BackendName,
        Label::ServerName,
        Label::HttpRequestPath,
        Label::HttpRequestMethod,
        Label::ClientIp,
        Label::ClientPort,
        Label::TerminationState,
    ];

    /// The label name in the exposition and in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Label::StatusCode => "status_code",
            Label::StatusClass => "status_class",
            Label::FrontendName => "frontend_name",
            Label::BackendName => "backend_name",
            Label::ServerName => "server_name",
            Label::HttpRequestPath => "http_request_path",
            Label::HttpRequestMethod => "http_request_method",
            Label::ClientIp => "client_ip",
            Label::ClientPort => "client_port",
            Label::TerminationState => "termination_state",
            Label::Custom { name, .. } => name,
        }
    }

    /// The built-in label with this name, if there is one.
    pub fn from_name(name: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.name() == name)
    }

    /// This label's value in `record`, borrowed from it.
    pub fn value<'r>(self, record: &'r LogRecord<'_>) -> &'r str {
        match self {
            Label::StatusCode => record.status_code,
            Label::StatusClass => record.status_class(),
            Label::FrontendName => record.frontend_name,
            Label::BackendName => record.backend_name,
            Label::ServerName => record.server_name,
            Label::HttpRequestPath => &record.http_request_path,
            Label::HttpRequestMethod => record.http_request_method,
            Label::ClientIp => &record.client_ip,
            Label::ClientPort => record.client_port,
            Label::TerminationState => record.termination_state,
            Label::Custom { slot, .. } => record.custom.get(slot).copied().unwrap_or_default(),
        }
    }

    /// The comma-separated list of every label name, for error messages and `--help`.
    pub fn all_names() -> String {
        Label::ALL.map(Label::name).join(",")
    }
}
