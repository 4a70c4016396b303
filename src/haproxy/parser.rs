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
use super::uri::{path_of, path_of_target};
use crate::scan::{is_status, memchr, memchr_long, utf8_prefix};

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
    let Some(client_end) = traffic_start(message) else {
        return classify_notice(message).map(Entry::Notice);
    };
    parse_traffic(message, client_end)
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
    traffic_start(message).is_some()
}

/// Where the first field of a traffic entry ends (see [`looks_like_traffic`]).
fn traffic_start(message: &[u8]) -> Option<usize> {
    let space = memchr(b' ', message)?;
    (memchr(b':', &message[..space]).is_some()
        && message.get(space + 1) == Some(&b'[')
        && message.get(space + 2).is_some_and(u8::is_ascii_digit))
    .then_some(space)
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

/// A position in the text of a traffic line, read field by field: each field is
/// checked (and its numbers decoded) as it is scanned, in one pass over its bytes, with
/// the semantics of splitting the line at its spaces first.
struct Walk<'a> {
    line: &'a str,
    bytes: &'a [u8],
    /// The start of the next field; past the end when none is left.
    pos: usize,
}

/// Whether `b` is printable ASCII (`is_ascii_graphic`); false for a space.
#[inline(always)]
fn is_graphic(b: u8) -> bool {
    b.wrapping_sub(0x21) < 0x5e
}

impl<'a> Walk<'a> {
    #[inline(always)]
    fn text(&self, start: usize, end: usize) -> &'a str {
        self.line
            .get(..end)
            .and_then(|s| s.get(start..))
            .unwrap_or_default()
    }

    /// Whether `at` is where a field ends: a space or the end of the line.
    #[inline(always)]
    fn ends_field(&self, at: usize) -> bool {
        matches!(self.bytes.get(at), None | Some(b' '))
    }

    /// Moves past the field that ends at `end`, and the space after it.
    #[inline(always)]
    fn finish(&mut self, end: usize) {
        self.pos = end + 1;
    }

    /// The next field, as `Fields::next` gives it: its bounds.
    #[inline(always)]
    fn field(&mut self, err: ParseError) -> Result<(usize, usize), ParseError> {
        let start = self.pos;
        let rest = self.bytes.get(start..).unwrap_or_default();
        let len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        if len == 0 {
            return Err(err);
        }
        self.finish(start + len);
        Ok((start, start + len))
    }

    /// The next field, which must be printable ASCII: its bounds.
    #[inline(always)]
    fn graphic_field(&mut self, err: ParseError) -> Result<(usize, usize), ParseError> {
        let start = self.pos;
        let rest = self.bytes.get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| !is_graphic(b))
            .unwrap_or(rest.len());
        if len == 0 || !self.ends_field(start + len) {
            return Err(err);
        }
        self.finish(start + len);
        Ok((start, start + len))
    }

    /// Decimal digits from `at` (at most 19, so they fit a `u64`): the value and where
    /// they end. `None` without a digit.
    #[inline(always)]
    fn digits(&self, at: usize) -> Option<(u64, usize)> {
        let rest = self.bytes.get(at..).unwrap_or_default();
        let mut value = 0u64;
        let mut len = 0;
        for &b in rest {
            let digit = b.wrapping_sub(b'0');
            if digit >= 10 {
                break;
            }
            value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
            len += 1;
        }
        (1..=19).contains(&len).then_some((value, at + len))
    }

    /// A number with an optional `+` (logasap, redispatch) from `at`.
    #[inline(always)]
    fn plus_digits(&self, at: usize) -> Option<(u64, usize)> {
        let at = at + usize::from(self.bytes.get(at) == Some(&b'+'));
        self.digits(at)
    }

    /// A timer from `at`: `-1`, or a number with an optional `+`.
    #[inline(always)]
    fn timer(&self, at: usize) -> Option<(Timer, usize)> {
        if self.bytes.get(at) == Some(&b'-') {
            return (self.bytes.get(at + 1) == Some(&b'1')).then_some((None, at + 2));
        }
        self.plus_digits(at).map(|(v, end)| (Some(v), end))
    }

    /// `count` numbers with an optional `+`, separated by `/`, as a whole field.
    #[inline(always)]
    fn slashed_numbers(
        &mut self,
        count: usize,
        err: ParseError,
    ) -> Result<(usize, usize), ParseError> {
        let start = self.pos;
        let mut at = start;
        for i in 0..count {
            if i > 0 {
                if self.bytes.get(at) != Some(&b'/') {
                    return Err(err);
                }
                at += 1;
            }
            at = self.plus_digits(at).ok_or(err)?.1;
        }
        if !self.ends_field(at) {
            return Err(err);
        }
        self.finish(at);
        Ok((start, at))
    }

    /// Whether no field is left.
    #[inline(always)]
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

/// The fields of an httplog or tcplog line, in order; which of the two it is, the
/// number of timers says. `client_end` is where the first field ends in `message`.
fn parse_traffic(message: &[u8], client_end: usize) -> Result<Entry<'_>, ParseError> {
    let line = utf8_prefix(message);
    let mut w = Walk {
        line,
        bytes: line.as_bytes(),
        pos: 0,
    };
    // A connection error (`frontend/bind:` as the third field) is a notice however the
    // first fields look: an error before the third field is read asks the slow check.
    let connection_error_or = |err: ParseError| {
        if is_connection_error(message) {
            Ok(Entry::Notice(CONNECTION_ERROR))
        } else {
            Err(err)
        }
    };
    // %ci:%cp: the address, which may hold colons (IPv6), and the port. `client_end` is
    // the first space of the message, so of the line unless the line ends before it.
    let client_end = client_end.min(w.bytes.len());
    let client = w.bytes.get(..client_end).unwrap_or_default();
    w.finish(client_end);
    let client_ok = client.iter().all(|&b| is_graphic(b));
    let colon = client.iter().rposition(|&b| b == b':');
    let (client_ip, client_port) = match colon {
        Some(colon) if client_ok && colon > 0 && colon + 1 < client_end => {
            (w.text(0, colon), w.text(colon + 1, client_end))
        }
        _ => return connection_error_or(BAD_CLIENT),
    };
    // [%tr]
    let (date_start, date_end) = match w.field(BAD_ACCEPT_DATE) {
        Ok(date) if date.1 - date.0 >= 3 && w.bytes[date.1 - 1] == b']' => date,
        _ => return connection_error_or(BAD_ACCEPT_DATE),
    };
    // %ft, without the `~` of a TLS listener; or `frontend/bind:` for a connection error.
    let (fe_start, fe_end) = match w.field(BAD_FRONTEND) {
        Ok(frontend) => frontend,
        Err(err) => return connection_error_or(err),
    };
    if fe_end == w.bytes.len() && w.bytes.len() < message.len() {
        // The line ends inside the third field of the message: the field is cut.
        if is_connection_error(message) {
            return Ok(Entry::Notice(CONNECTION_ERROR));
        }
    } else if w.bytes[fe_end - 1] == b':' && memchr(b'/', &w.bytes[fe_start..fe_end]).is_some() {
        return Ok(Entry::Notice(CONNECTION_ERROR));
    }
    let frontend = &w.bytes[fe_start..fe_end];
    if !frontend.iter().all(|&b| is_graphic(b)) {
        return Err(BAD_FRONTEND);
    }
    let frontend_name = w.text(fe_start, fe_end - usize::from(frontend.ends_with(b"~")));
    // %b/%s
    let (be_start, be_end) = w.graphic_field(BAD_BACKEND_SERVER)?;
    let slash = be_start + memchr(b'/', &w.bytes[be_start..be_end]).ok_or(BAD_BACKEND_SERVER)?;
    let backend_name = w.text(be_start, slash);
    let server_name = w.text(slash + 1, be_end);
    // Five timers (httplog, also before 1.7) or three (tcplog), separated by `/`.
    let mut timers = [None; 5];
    let mut count = 0;
    let mut at = w.pos;
    loop {
        let (timer, end) = w.timer(at).ok_or(BAD_TIMERS)?;
        *timers.get_mut(count).ok_or(BAD_TIMERS)? = timer;
        count += 1;
        match w.bytes.get(end) {
            Some(b'/') => at = end + 1,
            None | Some(b' ') => {
                w.finish(end);
                break;
            }
            _ => return Err(BAD_TIMERS),
        }
    }
    let kind = match count {
        5 => EntryKind::Http,
        3 => EntryKind::Tcp,
        _ => return Err(BAD_TIMERS),
    };
    let mut record = LogRecord {
        accept_date: w.text(date_start + 1, date_end - 1),
        client_ip: Cow::Borrowed(client_ip),
        client_port,
        frontend_name,
        backend_name,
        server_name,
        ..LogRecord::empty(kind)
    };
    let termination_len = match kind {
        EntryKind::Http => {
            [
                record.request_wait,
                record.queued,
                record.connect,
                record.response,
                record.session,
            ] = timers;
            // %ST: three digits, or -1.
            let (start, end) = w.field(BAD_STATUS)?;
            let status = &w.bytes[start..end];
            if !is_status(status) {
                return Err(BAD_STATUS);
            }
            record.status_code = w.text(start, end);
            record.bytes_read = bytes_read(&mut w)?;
            // %CC and %CS, the captured cookies; mostly `-`.
            for _ in 0..2 {
                if w.bytes.get(w.pos..w.pos + 2) == Some(b"- ") {
                    w.pos += 2;
                } else {
                    w.field(BAD_TERMINATION_STATE)?;
                }
            }
            4
        }
        EntryKind::Tcp => {
            [record.queued, record.connect, record.session] = [timers[0], timers[1], timers[2]];
            record.bytes_read = bytes_read(&mut w)?;
            2
        }
    };
    // %tsc (4 characters) or %ts (2): the label keeps the first two, the termination
    // cause and the session state; the cookie flags would only multiply series.
    let start = w.pos;
    let state = w.bytes.get(start..start + termination_len);
    if !state.is_some_and(|s| s.iter().all(|&b| is_graphic(b)))
        || !w.ends_field(start + termination_len)
    {
        return Err(BAD_TERMINATION_STATE);
    }
    record.termination_state = w.text(start, start + 2);
    w.finish(start + termination_len);
    // %ac/%fc/%bc/%sc/%rc: five counts; %rc gets a `+` when the session was
    // redispatched. No metric uses them.
    let (start, end) = w.slashed_numbers(5, BAD_CONNECTIONS)?;
    record.connection_counts = w.text(start, end);
    // %sq/%bq
    let start = w.pos;
    let (server, end) = w.digits(start).ok_or(BAD_QUEUES)?;
    if w.bytes.get(end) != Some(&b'/') {
        return Err(BAD_QUEUES);
    }
    let (backend, end) = w.digits(end + 1).ok_or(BAD_QUEUES)?;
    if !w.ends_field(end) {
        return Err(BAD_QUEUES);
    }
    w.finish(end);
    (record.server_queue, record.backend_queue) = (server, backend);
    match kind {
        EntryKind::Tcp => {
            if !w.at_end() {
                return Err(TRAILING_DATA);
            }
        }
        EntryKind::Http => {
            let rest = w.line.get(w.pos..).unwrap_or_default();
            parse_request_tail(rest, &mut record)?;
        }
    }
    Ok(Entry::Traffic(record))
}

/// `%B`, with logasap's `+`.
#[inline(always)]
fn bytes_read(w: &mut Walk<'_>) -> Result<u64, ParseError> {
    let (value, end) = w.plus_digits(w.pos).ok_or(BAD_BYTES)?;
    if !w.ends_field(end) {
        return Err(BAD_BYTES);
    }
    w.finish(end);
    Ok(value)
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
    // The method, printable ASCII, a space and more: the method and the path in one pass.
    let bytes = request.as_bytes();
    let method_end = bytes
        .iter()
        .position(|&b| !is_graphic(b))
        .unwrap_or(bytes.len());
    if method_end > 0 && bytes.get(method_end) == Some(&b' ') && method_end + 1 < bytes.len() {
        let target = request.get(method_end + 1..).unwrap_or_default();
        if target.starts_with(' ') {
            return Err(BAD_REQUEST_LINE);
        }
        record.http_request_method = request.get(..method_end).unwrap_or_default();
        record.http_request_path = path_of_target(target);
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

/// Label values must be text; HAProxy writes these fields in printable ASCII.
fn graphic(field: &str, err: ParseError) -> Result<&str, ParseError> {
    if field.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(field)
    } else {
        Err(err)
    }
}
