//! One HAProxy traffic log entry, borrowed from the frame: what the parsers fill in and
//! the metrics read.

use std::borrow::Cow;

/// Which of HAProxy's built-in layouts an entry was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `option httplog`: five timers (`TR/Tw/Tc/Tr/Ta`, or `Tq/Tw/Tc/Tr/Tt` before 1.7).
    Http,
    /// `option tcplog`: three timers (`Tw/Tc/Tt`), no status and no request.
    Tcp,
}

/// How many fields of a log-format can be labels (`HLE_CUSTOM_LABELS`).
pub const MAX_CUSTOM_LABELS: usize = 8;

/// A timer in milliseconds; `None` where HAProxy logged `-1` (the phase never completed).
pub type Timer = Option<u64>;

/// One traffic log entry. Every string borrows from the received line, except a request
/// path with `#XX` escapes, which is decoded into an owned string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord<'a> {
    pub kind: EntryKind,
    /// `%ci`: an IPv4 or IPv6 address (or `unix`), without brackets; decoded into an
    /// owned string where HAProxy logged it in hexadecimal (`%{+X}ci`).
    pub client_ip: Cow<'a, str>,
    /// `%cp`
    pub client_port: &'a str,
    /// `%ft` without the `~` HAProxy appends for TLS listeners, so it equals `%f`.
    pub frontend_name: &'a str,
    /// `%b`
    pub backend_name: &'a str,
    /// `%s`, `<NOSRV>` when no server was reached.
    pub server_name: &'a str,
    /// `TR` (`Tq` before 1.7): time to receive the full request. HTTP only.
    pub request_wait: Timer,
    /// `Tw`: time spent in queues.
    pub queued: Timer,
    /// `Tc`: time to establish the TCP connection to the server.
    pub connect: Timer,
    /// `Tr`: server response time (headers). HTTP only.
    pub response: Timer,
    /// `Ta` (httplog) or `Tt` (tcplog and the pre-1.7 layout): the whole session.
    pub session: Timer,
    /// `%ST` as written (`200`, `-1`); empty for tcplog.
    pub status_code: &'a str,
    /// `%B` without logasap's `+`.
    pub bytes_read: u64,
    /// The first two characters of `%tsc`/`%ts`: termination cause and session state.
    pub termination_state: &'a str,
    /// `%sq`
    pub server_queue: u64,
    /// `%bq`
    pub backend_queue: u64,
    /// Method from the request line; empty for `<BADREQ>` and tcplog.
    pub http_request_method: &'a str,
    /// Path from the request line: no scheme, authority or query string.
    pub http_request_path: Cow<'a, str>,
    /// `%tr`/`%t` as written (`25/Nov/2026:02:09:39.343`): the built-in formats only.
    pub accept_date: &'a str,
    /// The request line as written (`GET /a?b HTTP/1.1`): httplog and `%r`.
    pub request_line: &'a str,
    /// httplog's capture blocks as written (`{a|b} {c}`), empty without captures.
    pub captures: &'a str,
    /// `%ac/%fc/%bc/%sc/%rc` as written: the built-in formats only.
    pub connection_counts: &'a str,
    /// The line ended inside the request line (HAProxy's `len` or a ring's `maxlen`).
    pub truncated: bool,
    /// Whether a timer that is `None` was logged as `-1` (an abort, counted by the abort
    /// counters): true for log lines; false for a transaction an SPOE message reported,
    /// where a timer the message did not carry is unknown.
    pub missing_timer_is_abort: bool,
    /// Values of the fields chosen by `HLE_CUSTOM_LABELS`, by slot; empty when the
    /// format that matched has no such field.
    pub custom: [&'a str; MAX_CUSTOM_LABELS],
}

impl LogRecord<'_> {
    /// A record with every field empty, for a parser to fill in.
    pub fn empty(kind: EntryKind) -> Self {
        LogRecord {
            kind,
            client_ip: Cow::Borrowed(""),
            client_port: "",
            frontend_name: "",
            backend_name: "",
            server_name: "",
            request_wait: None,
            queued: None,
            connect: None,
            response: None,
            session: None,
            status_code: "",
            bytes_read: 0,
            termination_state: "",
            server_queue: 0,
            backend_queue: 0,
            http_request_method: "",
            http_request_path: Cow::Borrowed(""),
            accept_date: "",
            request_line: "",
            captures: "",
            connection_counts: "",
            truncated: false,
            missing_timer_is_abort: true,
            custom: [""; MAX_CUSTOM_LABELS],
        }
    }

    /// HAProxy's own class for a status: `1xx`..`5xx`, or `other` (which includes `-1`),
    /// as in the `code` label of its built-in Prometheus exporter. Empty where there is no
    /// status, as `status_code` is: tcplog, and a log-format without `%ST`.
    pub fn status_class(&self) -> &'static str {
        match self.status_code.as_bytes() {
            [] => "",
            [b'1', _, _] => "1xx",
            [b'2', _, _] => "2xx",
            [b'3', _, _] => "3xx",
            [b'4', _, _] => "4xx",
            [b'5', _, _] => "5xx",
            _ => "other",
        }
    }
}
