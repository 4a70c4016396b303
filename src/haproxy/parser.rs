//! The built-in parser of HAProxy's entries, and of the notices it writes besides.
//!
//! Hand-written and zero-copy, in the manner of httparse: one pass over the bytes, fields
//! borrowed from the input, no regex and no allocation (except to decode a `#XX` escape in
//! a request path). It recognises `option httplog` (including the pre-1.7 timer layout,
//! which has the same shape) and `option tcplog` without configuration:
//!
//! ```text
//! httplog: %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r
//! tcplog:  %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
//! ```

use std::borrow::Cow;

use super::record::{EntryKind, LogRecord, Timer};
use super::uri::path_of;
use crate::scan::{is_status, memchr, memchr_long, number, plus, utf8_prefix};

/// Why a line that looked like a traffic log could not be counted. `Copy`, and its reason
/// is the `reason` label of `haproxy_log_exporter_lines_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub struct ParseError(&'static str);

impl ParseError {
    pub(crate) const fn new(reason: &'static str) -> Self {
        ParseError(reason)
    }

    /// A short snake_case reason, used as a label value.
    pub fn reason(&self) -> &'static str {
        self.0
    }

    /// The line is HAProxy's connection line of a frontend without a log format.
    pub fn is_no_log_format(&self) -> bool {
        *self == NO_LOG_FORMAT
    }
}

/// What a message turned out to be.
// Boxing the record would allocate for every line; an `Entry` only lives on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A traffic log entry, to be counted.
    Traffic(LogRecord<'a>),
    /// An HAProxy notice (proxy started, server down, SPOE event ...), to be ignored. The
    /// string is the `reason` label of `haproxy_log_exporter_lines_ignored_total`.
    Notice(&'static str),
}

/// Every reason a line can be rejected for, so the self-metric can show them all at zero.
pub const REJECT_REASONS: &[&str] = &[
    EMPTY.0,
    UNRECOGNIZED.0,
    BAD_CLIENT.0,
    BAD_ACCEPT_DATE.0,
    BAD_FRONTEND.0,
    BAD_BACKEND_SERVER.0,
    BAD_TIMERS.0,
    BAD_STATUS.0,
    BAD_BYTES.0,
    BAD_TERMINATION_STATE.0,
    BAD_CONNECTIONS.0,
    BAD_QUEUES.0,
    BAD_CAPTURE.0,
    BAD_REQUEST_LINE.0,
    TRAILING_DATA.0,
    NO_LOG_FORMAT.0,
];

/// Every reason a line can be ignored for.
pub const IGNORE_REASONS: &[&str] = &[
    PROXY_EVENT,
    SERVER_EVENT,
    SPOE_EVENT,
    CONNECTION_ERROR,
    OTHER_NOTICE,
];

const EMPTY: ParseError = ParseError("empty_line");
const UNRECOGNIZED: ParseError = ParseError("unrecognized_format");
const BAD_CLIENT: ParseError = ParseError("bad_client_address");
const BAD_ACCEPT_DATE: ParseError = ParseError("bad_accept_date");
const BAD_FRONTEND: ParseError = ParseError("bad_frontend_name");
const BAD_BACKEND_SERVER: ParseError = ParseError("bad_backend_server");
const BAD_TIMERS: ParseError = ParseError("bad_timers");
const BAD_STATUS: ParseError = ParseError("bad_status_code");
const BAD_BYTES: ParseError = ParseError("bad_bytes_read");
const BAD_TERMINATION_STATE: ParseError = ParseError("bad_termination_state");
const BAD_CONNECTIONS: ParseError = ParseError("bad_connection_counts");
const BAD_QUEUES: ParseError = ParseError("bad_queue_lengths");
const BAD_CAPTURE: ParseError = ParseError("bad_capture");
const BAD_REQUEST_LINE: ParseError = ParseError("bad_request_line");
const TRAILING_DATA: ParseError = ParseError("trailing_data");
/// HAProxy's line for a connection to a frontend with a `log` target but no log format
/// (see [`ConnectionLine`]). Nothing in it can be counted, and each connection writes one,
/// so the operator must hear about it: rejected, not ignored as a notice.
const NO_LOG_FORMAT: ParseError = ParseError("no_log_format");

const PROXY_EVENT: &str = "proxy_event";
const SERVER_EVENT: &str = "server_event";
const SPOE_EVENT: &str = "spoe_event";
const OTHER_NOTICE: &str = "other_notice";
/// `ADDR:PORT [date] frontend/bind: Connection closed during SSL handshake` and the other
/// connection errors HAProxy logs before any request (its `error-log-format`).
const CONNECTION_ERROR: &str = "connection_error";

/// Parses the message part of a syslog line.
pub fn parse(message: &[u8]) -> Result<Entry<'_>, ParseError> {
    if message.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(EMPTY);
    }
    if !looks_like_traffic(message) {
        return classify_notice(message).map(Entry::Notice);
    }
    if is_connection_error(message) {
        return Ok(Entry::Notice(CONNECTION_ERROR));
    }
    parse_traffic(message).map(Entry::Traffic)
}

/// What a message that is not a traffic line is: `Ok` with the ignore reason of an HAProxy
/// notice, `Err` with the reject reason of a line HAProxy writes for a cause of its own (a
/// connection line); `None` when it is neither.
pub(crate) fn notice(message: &[u8]) -> Option<Result<&'static str, ParseError>> {
    if message.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    if looks_like_traffic(message) {
        return is_connection_error(message).then_some(Ok(CONNECTION_ERROR));
    }
    match classify_notice(message) {
        Err(UNRECOGNIZED) => None,
        classified => Some(classified),
    }
}

/// The line HAProxy writes at each connection to a frontend that has a `log` target but
/// no log format (no `option httplog`, `option tcplog` or `log-format`):
///
/// ```text
/// Connect from 127.0.0.1:34140 to 127.0.0.1:31080 (fe_main/HTTP)
/// Connect from unknown source to listener 1 (fe_main/TCP)
/// Connect to unix:1 (fe_main/HTTP)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLine<'a> {
    /// The frontend's name, as in the line.
    pub frontend: &'a [u8],
    /// The frontend's mode is `http`; otherwise `tcp`.
    pub http: bool,
}

impl<'a> ConnectionLine<'a> {
    /// The connection line `message` is, if it is one.
    pub fn parse(message: &'a [u8]) -> Option<Self> {
        let rest = message.strip_prefix(b"Connect ")?;
        let inner = rest.trim_ascii_end().strip_suffix(b")")?;
        let open = inner.iter().rposition(|&b| b == b'(')?;
        let group = &inner[open + 1..];
        let slash = group.iter().rposition(|&b| b == b'/')?;
        let (frontend, mode) = (&group[..slash], &group[slash + 1..]);
        let http = match mode {
            b"HTTP" => true,
            b"TCP" => false,
            _ => return None,
        };
        (!frontend.is_empty()).then_some(ConnectionLine { frontend, http })
    }

    /// What the frontend needs for its lines to be counted.
    pub fn fix(&self) -> &'static str {
        if self.http {
            "option httplog"
        } else {
            "option tcplog"
        }
    }
}

/// After the client and the accept date, a connection error has `frontend/bind:` where a
/// traffic line has its frontend name.
fn is_connection_error(message: &[u8]) -> bool {
    let mut fields = message.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let third = fields.nth(2).unwrap_or_default();
    third.ends_with(b":") && memchr(b'/', third).is_some()
}

/// A traffic entry starts with `ADDRESS:PORT [` and a digit (the accept date). Checked
/// before anything else so a notice is never reported as a malformed entry.
fn looks_like_traffic(message: &[u8]) -> bool {
    let Some(space) = memchr(b' ', message) else {
        return false;
    };
    memchr(b':', &message[..space]).is_some()
        && message.get(space + 1) == Some(&b'[')
        && message.get(space + 2).is_some_and(u8::is_ascii_digit)
}

/// HAProxy's notices are English sentences ("Proxy fe started.", "Server be/s1 is DOWN,
/// ...", "SPOE: [agent] ..."). Anything else is a line in a format we do not know, which the
/// operator must hear about, so it is rejected rather than ignored.
fn classify_notice(message: &[u8]) -> Result<&'static str, ParseError> {
    const PREFIXES: &[(&[u8], &str)] = &[
        (b"Proxy ", PROXY_EVENT),
        (b"Stopping ", PROXY_EVENT),
        (b"Pausing ", PROXY_EVENT),
        (b"Resuming ", PROXY_EVENT),
        (b"Server ", SERVER_EVENT),
        (b"backend ", SERVER_EVENT),
        (b"Backend ", SERVER_EVENT),
        (b"Health check ", SERVER_EVENT),
        (b"Agent check ", SERVER_EVENT),
        (b"SPOE", SPOE_EVENT),
    ];
    if let Some((_, reason)) = PREFIXES.iter().find(|(p, _)| message.starts_with(p)) {
        return Ok(reason);
    }
    if ConnectionLine::parse(message).is_some() {
        return Err(NO_LOG_FORMAT);
    }
    // Other sentences from HAProxy start with a capital letter and a lower-case word.
    match message {
        [first, second, ..] if first.is_ascii_uppercase() && second.is_ascii_lowercase() => {
            Ok(OTHER_NOTICE)
        }
        _ => Err(UNRECOGNIZED),
    }
}

/// A cursor over space-separated fields.
struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Fields<'a> {
    /// The next field up to a space (or the end), consuming that space.
    fn next(&mut self, err: ParseError) -> Result<&'a str, ParseError> {
        if self.rest.is_empty() {
            return Err(err);
        }
        let end = memchr(b' ', self.rest.as_bytes()).unwrap_or(self.rest.len());
        // `end` is at an ASCII space or the end, so both slices are on char boundaries.
        let field = self.rest.get(..end).unwrap_or_default();
        self.rest = self.rest.get(end + 1..).unwrap_or_default();
        if field.is_empty() {
            return Err(err);
        }
        Ok(field)
    }

    /// Like `next`, but `None` at the end of the line (a line cut by HAProxy's `len`).
    fn next_opt(&mut self, err: ParseError) -> Result<Option<&'a str>, ParseError> {
        if self.rest.is_empty() {
            Ok(None)
        } else {
            self.next(err).map(Some)
        }
    }
}

/// Splits `field` at the byte position `at` (of an ASCII byte), leaving that byte out.
fn split_at_ascii(field: &str, at: usize) -> (&str, &str) {
    (
        field.get(..at).unwrap_or_default(),
        field.get(at + 1..).unwrap_or_default(),
    )
}

/// The fields of an httplog or tcplog line, in order; which of the two it is, the
/// number of timers says. The functions for single fields are inlined, as the parts of
/// this one they were: called, they made the replay of tcplog lines 0.5% slower
/// (callgrind).
fn parse_traffic(message: &[u8]) -> Result<LogRecord<'_>, ParseError> {
    let mut f = Fields {
        rest: utf8_prefix(message),
    };
    let (client_ip, client_port) = client(f.next(BAD_CLIENT)?)?;
    let date = f.next(BAD_ACCEPT_DATE)?;
    if date.len() < 3 || !date.ends_with(']') {
        return Err(BAD_ACCEPT_DATE);
    }
    let frontend = f.next(BAD_FRONTEND)?;
    let frontend_name = graphic(frontend.strip_suffix('~').unwrap_or(frontend), BAD_FRONTEND)?;
    let (backend_name, server_name) = backend_server(f.next(BAD_BACKEND_SERVER)?)?;
    let (kind, timers) = timers(f.next(BAD_TIMERS)?)?;
    let mut record = LogRecord {
        accept_date: date.get(1..date.len() - 1).unwrap_or_default(),
        client_ip: Cow::Borrowed(client_ip),
        client_port,
        frontend_name,
        backend_name,
        server_name,
        ..LogRecord::empty(kind)
    };
    match kind {
        EntryKind::Http => {
            [
                record.request_wait,
                record.queued,
                record.connect,
                record.response,
                record.session,
            ] = timers;
            let status = f.next(BAD_STATUS)?;
            if !is_status(status.as_bytes()) {
                return Err(BAD_STATUS);
            }
            record.status_code = status;
            record.bytes_read = bytes_read(f.next(BAD_BYTES)?)?;
            f.next(BAD_TERMINATION_STATE)?; // %CC: captured request cookie
            f.next(BAD_TERMINATION_STATE)?; // %CS: captured response cookie
            record.termination_state = termination_state(f.next(BAD_TERMINATION_STATE)?, 4)?;
        }
        EntryKind::Tcp => {
            [record.queued, record.connect, record.session] = [timers[0], timers[1], timers[2]];
            record.bytes_read = bytes_read(f.next(BAD_BYTES)?)?;
            record.termination_state = termination_state(f.next(BAD_TERMINATION_STATE)?, 2)?;
        }
    }
    let counts = f.next(BAD_CONNECTIONS)?;
    connection_counts(counts)?;
    record.connection_counts = counts;
    (record.server_queue, record.backend_queue) = queues(f.next(BAD_QUEUES)?)?;
    match kind {
        EntryKind::Tcp => {
            if !f.rest.is_empty() {
                return Err(TRAILING_DATA);
            }
        }
        EntryKind::Http => parse_request_tail(f.rest, &mut record)?,
    }
    Ok(record)
}

/// `%ci:%cp`: the address, which may hold colons (IPv6), and the port.
#[inline(always)]
fn client(field: &str) -> Result<(&str, &str), ParseError> {
    let colon = field.bytes().rposition(|b| b == b':').ok_or(BAD_CLIENT)?;
    let (client_ip, client_port) = split_at_ascii(field, colon);
    let client_ip = graphic(client_ip, BAD_CLIENT)?;
    let client_port = graphic(client_port, BAD_CLIENT)?;
    if client_ip.is_empty() || client_port.is_empty() {
        return Err(BAD_CLIENT);
    }
    Ok((client_ip, client_port))
}

/// `%b/%s`
#[inline(always)]
fn backend_server(field: &str) -> Result<(&str, &str), ParseError> {
    let slash = memchr(b'/', field.as_bytes()).ok_or(BAD_BACKEND_SERVER)?;
    let (backend_name, server_name) = split_at_ascii(field, slash);
    let backend_name = graphic(backend_name, BAD_BACKEND_SERVER)?;
    let server_name = graphic(server_name, BAD_BACKEND_SERVER)?;
    Ok((backend_name, server_name))
}

/// Five timers (httplog, also before 1.7) or three (tcplog), separated by `/`.
#[inline(always)]
fn timers(field: &str) -> Result<(EntryKind, [Timer; 5]), ParseError> {
    let mut timers = [None; 5];
    let mut count = 0;
    for part in field.as_bytes().split(|&b| b == b'/') {
        let slot = timers.get_mut(count).ok_or(BAD_TIMERS)?;
        *slot = timer(part).ok_or(BAD_TIMERS)?;
        count += 1;
    }
    let kind = match count {
        5 => EntryKind::Http,
        3 => EntryKind::Tcp,
        _ => return Err(BAD_TIMERS),
    };
    Ok((kind, timers))
}

/// `%B`, with logasap's `+`.
#[inline(always)]
fn bytes_read(field: &str) -> Result<u64, ParseError> {
    number(plus(field.as_bytes())).ok_or(BAD_BYTES)
}

/// `%ac/%fc/%bc/%sc/%rc`: five counts; `%rc` gets a `+` when the session was
/// redispatched. No metric uses them.
#[inline(always)]
fn connection_counts(field: &str) -> Result<(), ParseError> {
    let valid_counts = field
        .as_bytes()
        .split(|&b| b == b'/')
        .map(|c| number(plus(c)).is_some())
        .fold((0, true), |(n, ok), valid| (n + 1, ok && valid));
    if valid_counts != (5, true) {
        return Err(BAD_CONNECTIONS);
    }
    Ok(())
}

/// `%sq/%bq`
#[inline(always)]
fn queues(field: &str) -> Result<(u64, u64), ParseError> {
    let queues = field.as_bytes();
    let slash = memchr(b'/', queues).ok_or(BAD_QUEUES)?;
    let server = number(&queues[..slash]).ok_or(BAD_QUEUES)?;
    let backend = number(&queues[slash + 1..]).ok_or(BAD_QUEUES)?;
    Ok((server, backend))
}

/// After `%sq/%bq` in httplog: up to two `{capture}` blocks, then `"request line"`. A line
/// may end anywhere here when HAProxy cut it at `len`; what is there is used.
fn parse_request_tail<'a>(mut rest: &'a str, record: &mut LogRecord<'a>) -> Result<(), ParseError> {
    let tail = rest;
    for _ in 0..2 {
        if !rest.starts_with('{') {
            break;
        }
        // HAProxy escapes `{`, `|`, `}` and `"` inside captures, so the first `}` closes it.
        match memchr_long(b'}', rest.as_bytes()) {
            Some(close) => {
                rest = rest.get(close + 1..).unwrap_or_default();
                rest = rest.strip_prefix(' ').unwrap_or(rest);
            }
            None => {
                record.truncated = true;
                record.captures = tail;
                return Ok(());
            }
        }
    }
    record.captures = tail[..tail.len() - rest.len()].trim_end_matches(' ');
    if rest.is_empty() {
        record.truncated = true;
        return Ok(());
    }
    let Some(request) = rest.strip_prefix('"') else {
        return Err(if rest.starts_with('{') {
            BAD_CAPTURE
        } else {
            BAD_REQUEST_LINE
        });
    };
    let request = match memchr_long(b'"', request.as_bytes()) {
        Some(close) if close + 1 == request.len() => request.get(..close).unwrap_or_default(),
        Some(_) => return Err(TRAILING_DATA),
        None => {
            record.truncated = true;
            request
        }
    };
    record.request_line = request;
    if request == "<BADREQ>" {
        return Ok(());
    }
    let mut parts = Fields { rest: request };
    let Some(method) = parts.next_opt(BAD_REQUEST_LINE)? else {
        return Ok(());
    };
    if record.truncated && parts.rest.is_empty() && !request.ends_with(' ') {
        // Cut inside the method itself: the method is unknown, so is the path.
        return Ok(());
    }
    record.http_request_method = graphic(method, BAD_REQUEST_LINE)?;
    if let Some(uri) = parts.next_opt(BAD_REQUEST_LINE)? {
        record.http_request_path = path_of(uri);
    }
    Ok(())
}

/// `%tsc` (4 characters) or `%ts` (2): the label keeps the first two, the termination
/// cause and the session state; the cookie flags would only multiply series.
fn termination_state(field: &str, len: usize) -> Result<&str, ParseError> {
    if field.len() != len {
        return Err(BAD_TERMINATION_STATE);
    }
    graphic(field, BAD_TERMINATION_STATE)?;
    Ok(field.get(..2).unwrap_or_default())
}

/// A timer: `-1` is `None`; logasap writes `Ta` as `+301`.
fn timer(field: &[u8]) -> Option<Timer> {
    if field == b"-1" {
        return Some(None);
    }
    number(plus(field)).map(Some)
}

/// Label values must be text; HAProxy writes these fields in printable ASCII.
fn graphic(field: &str, err: ParseError) -> Result<&str, ParseError> {
    if field.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(field)
    } else {
        Err(err)
    }
}
