//! The parsers as they were before they were made faster: the reference the property
//! tests hold the current ones to. Kept as they were, apart from what moving them here
//! took; not used outside the tests.
#![allow(dead_code)]

/// `syslog::split`, returning the priority and the message.
pub mod syslog {
    use super::scan::memchr;

    /// Splits one frame (without its trailing newline) into header and message.
    ///
    /// Never fails: a line with no recognisable header is taken as a bare message, which is
    /// how HAProxy's `raw` format looks.
    pub fn split(line: &[u8]) -> (Option<u8>, &[u8]) {
        let (priority, rest) = match parse_pri(line) {
            Some((pri, rest)) => (Some(pri), rest),
            None => (None, line),
        };
        let message = if priority.is_some() && rest.starts_with(b"1 ") {
            rfc5424_message(&rest[2..]).unwrap_or_else(|| loose_message(line, rest))
        } else if let Some(after) = skip_bsd_timestamp(rest) {
            // RFC 3164: the tag (`haproxy[123]:`) is mandatory, the hostname optional. A
            // relay that reads an RFC 5424 line as BSD syslog keeps that whole header as its
            // message, behind its own timestamp and hostname: `1` is no tag.
            strip_host_and_tag(after, false)
                .or_else(|| nested_rfc5424(after))
                .unwrap_or(after)
        } else if let Some(after) = skip_iso_timestamp(rest) {
            // HAProxy's `iso`/`timed` formats have no tag, but daemons writing files do.
            strip_host_and_tag(after, true).unwrap_or(after)
        } else {
            rest
        };
        (priority, message_start(message))
    }

    /// The message without what relays put before it: the message's own leading space
    /// (rsyslog's RFC 5424 template writes `SD SP MSG` where MSG already starts with one)
    /// and the UTF-8 byte order mark RFC 5424 allows. An HAProxy entry never starts with a
    /// space.
    fn message_start(message: &[u8]) -> &[u8] {
        let message = trim_spaces(message);
        match message.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) => trim_spaces(rest),
            None => message,
        }
    }

    fn trim_spaces(bytes: &[u8]) -> &[u8] {
        let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
        &bytes[start..]
    }

    /// `[HOST SP] 1 SP TIMESTAMP ...`, an RFC 5424 header (without its PRI) after a BSD
    /// timestamp: what syslog-ng's default source makes of an RFC 5424 line.
    fn nested_rfc5424(after_timestamp: &[u8]) -> Option<&[u8]> {
        fn inner(rest: &[u8]) -> Option<&[u8]> {
            rest.strip_prefix(b"1 ")
                .filter(|ts| skip_iso_timestamp(ts).is_some())
                .and_then(rfc5424_message)
        }
        inner(after_timestamp).or_else(|| {
            let host_end = memchr(b' ', after_timestamp)?;
            inner(&after_timestamp[host_end + 1..])
        })
    }

    /// `<N>` with N in 0..=191 (RFC 5424 PRIVAL).
    fn parse_pri(line: &[u8]) -> Option<(u8, &[u8])> {
        if line.first() != Some(&b'<') {
            return None;
        }
        let close = line.iter().take(5).position(|&b| b == b'>')?;
        let digits = &line[1..close];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = digits
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        let value = u8::try_from(value).ok().filter(|v| *v <= 191)?;
        Some((value, &line[close + 1..]))
    }

    /// After `<PRI>1 `: TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP MSG].
    fn rfc5424_message(rest: &[u8]) -> Option<&[u8]> {
        let (relayed, message) = rfc5424_fields(rest)?;
        if relayed {
            // syslog-ng's `syslog()` destination, given the BSD reading of an RFC 5424 line
            // (see `nested_rfc5424`), writes `1 TS HOST 1 - - - TS HOST APP PROCID ...`: the
            // first header's APP-NAME is the inner version, the message the inner header.
            if let Some(inner) = skip_iso_timestamp(message).and_then(|_| rfc5424_fields(message)) {
                return Some(inner.1);
            }
        }
        Some(message)
    }

    /// The message after an RFC 5424 header (from TIMESTAMP on), and whether the header is
    /// `TS HOST 1 - - -`, the shape of an RFC 5424 header relayed inside another one.
    fn rfc5424_fields(rest: &[u8]) -> Option<(bool, &[u8])> {
        let mut rest = rest;
        let mut fields: [&[u8]; 5] = [b""; 5];
        for field in &mut fields {
            let space = memchr(b' ', rest)?;
            if space == 0 {
                return None;
            }
            *field = &rest[..space];
            rest = &rest[space + 1..];
        }
        let after_sd = skip_structured_data(rest)?;
        let relayed = fields[2] == b"1"
            && fields[3] == b"-"
            && fields[4] == b"-"
            && rest.first() == Some(&b'-');
        Some((
            relayed,
            match after_sd.first() {
                Some(b' ') => &after_sd[1..],
                _ => after_sd,
            },
        ))
    }

    /// STRUCTURED-DATA is `-` or one or more `[id param="value"...]` elements, where a value
    /// may contain `\]`, `\"` and `\\`.
    fn skip_structured_data(rest: &[u8]) -> Option<&[u8]> {
        if let Some(after) = rest.strip_prefix(b"-") {
            return Some(after);
        }
        let mut i = 0;
        while rest.get(i) == Some(&b'[') {
            let mut in_value = false;
            i += 1;
            loop {
                match *rest.get(i)? {
                    b'\\' if in_value => i += 1,
                    b'"' => in_value = !in_value,
                    b']' if !in_value => break,
                    _ => {}
                }
                i += 1;
            }
            i += 1;
        }
        (i > 0).then(|| &rest[i..])
    }

    /// `Mmm dd hh:mm:ss ` (the day space-padded) → what follows.
    fn skip_bsd_timestamp(rest: &[u8]) -> Option<&[u8]> {
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let head = rest.get(..16)?;
        let month_ok = MONTHS.iter().any(|m| head[..3] == m[..]);
        let day_ok = head[3] == b' '
            && (head[4] == b' ' || head[4].is_ascii_digit())
            && head[5].is_ascii_digit()
            && head[6] == b' ';
        let time_ok = is_clock(&head[7..15]) && head[15] == b' ';
        (month_ok && day_ok && time_ok).then(|| &rest[16..])
    }

    /// `hh:mm:ss`
    fn is_clock(t: &[u8]) -> bool {
        t.len() == 8
            && t[2] == b':'
            && t[5] == b':'
            && [0, 1, 3, 4, 6, 7].iter().all(|&i| t[i].is_ascii_digit())
    }

    /// `YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm) ` → what follows.
    fn skip_iso_timestamp(rest: &[u8]) -> Option<&[u8]> {
        let head = rest.get(..19)?;
        let date_ok = head[..4].iter().all(u8::is_ascii_digit)
            && head[4] == b'-'
            && head[7] == b'-'
            && head[10] == b'T'
            && is_clock(&head[11..19]);
        if !date_ok {
            return None;
        }
        let space = memchr(b' ', rest)?;
        Some(&rest[space + 1..])
    }

    /// Strips `[HOST SP] TAG SP` where TAG is `name[pid]:` or (unless `pid_required`) `name:`.
    fn strip_host_and_tag(rest: &[u8], pid_required: bool) -> Option<&[u8]> {
        let first_end = memchr(b' ', rest)?;
        if is_tag(&rest[..first_end], pid_required) {
            return Some(&rest[first_end + 1..]);
        }
        let after_host = &rest[first_end + 1..];
        let second_end = memchr(b' ', after_host).unwrap_or(after_host.len());
        if is_tag(&after_host[..second_end], pid_required) {
            return Some(after_host.get(second_end + 1..).unwrap_or_default());
        }
        None
    }

    /// `haproxy[123]:` or `haproxy:` (a syslog TAG is at most 32 alphanumerics, RFC 3164 says;
    /// real tags also use `-`, `_`, `.` and `/`). rsyslog writes the tag of an RFC 5424 line
    /// it relays as `APP-NAME[PROCID]`, without the colon: with a pid, the colon is optional.
    fn is_tag(token: &[u8], pid_required: bool) -> bool {
        let (body, colon) = match token.strip_suffix(b":") {
            Some(body) => (body, true),
            None => (token, false),
        };
        let (name, pid) = match body.strip_suffix(b"]") {
            Some(inner) => match memchr(b'[', inner) {
                Some(open) => (&inner[..open], Some(&inner[open + 1..])),
                None => return false,
            },
            None => (body, None),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 48
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        let pid_ok = match pid {
            Some(pid) => !pid.is_empty() && pid.iter().all(u8::is_ascii_digit),
            None => colon && !pid_required,
        };
        name_ok && pid_ok
    }

    /// The general parser, for a `<PRI>` line whose timestamp the fast path does not know.
    /// `rest` is what follows the PRI, returned unchanged when the line is not UTF-8 or the
    /// parser finds no message.
    fn loose_message<'a>(line: &'a [u8], rest: &'a [u8]) -> &'a [u8] {
        let Ok(text) = std::str::from_utf8(line) else {
            return rest;
        };
        let parsed = syslog_loose::parse_message(text, syslog_loose::Variant::Either);
        if parsed.msg.is_empty() {
            return rest;
        }
        // `msg` borrows from `text`; find where it starts to hand back bytes of `line`.
        let offset = parsed.msg.as_ptr() as usize - text.as_ptr() as usize;
        line.get(offset..offset + parsed.msg.len()).unwrap_or(rest)
    }
}

mod scan {
    /// Position of the first `needle` byte in a field of a few bytes.
    #[inline]
    pub(super) fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
        // Fields are a few bytes long: a plain loop beats a vectorised search's set-up. With
        // the `memchr` crate's search here, `cargo bench --bench parse` took 4% longer on
        // tcplog lines and 7% on the custom format, whose fields are all short.
        haystack.iter().position(|&b| b == needle)
    }

    /// Position of the first `needle` byte in a long stretch of a line (a request line, a
    /// block of captures): there the vectorised search of the `memchr` crate is faster
    /// (httplog lines 5% faster in `cargo bench --bench parse`).
    #[inline]
    pub(super) fn memchr_long(needle: u8, haystack: &[u8]) -> Option<usize> {
        memchr::memchr(needle, haystack)
    }

    /// `bytes` up to the first byte that is not UTF-8. HAProxy writes what a client sent
    /// as it is (a Latin-1 header), or cuts a line at any byte: a line or a label value with
    /// such a byte is read as if it ended there.
    pub(super) fn utf8_prefix(bytes: &[u8]) -> &str {
        match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default(),
        }
    }

    /// A decimal number of at most 19 digits (so it fits a `u64`).
    pub(super) fn number(field: &[u8]) -> Option<u64> {
        if field.is_empty() || field.len() > 19 {
            return None;
        }
        field.iter().try_fold(0u64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
        })
    }

    /// Drops the `+` that logasap (and redispatch, on `%rc`) put before a value.
    pub(super) fn plus(field: &[u8]) -> &[u8] {
        field.strip_prefix(b"+").unwrap_or(field)
    }

    /// `%ST`: three digits, or `-1` when the client left before any response.
    pub(super) fn is_status(field: &[u8]) -> bool {
        field == b"-1" || (field.len() == 3 && field.iter().all(u8::is_ascii_digit))
    }
}

mod uri {
    use std::borrow::Cow;

    use super::scan::memchr;

    /// [`request_path`] of a URI that is text.
    pub(super) fn path_of(uri: &str) -> Cow<'_, str> {
        let path = without_authority(uri);
        // One pass: up to the query string, noting whether there is an escape to decode.
        let mut escaped = false;
        let mut end = path.len();
        for (i, &b) in path.as_bytes().iter().enumerate() {
            match b {
                b'?' => {
                    end = i;
                    break;
                }
                b'#' => escaped = true,
                _ => {}
            }
        }
        let path = path.get(..end).unwrap_or_default();
        if !escaped {
            return Cow::Borrowed(path);
        }
        Cow::Owned(decode_escapes(path.as_bytes()))
    }

    /// An absolute URI from its path on (`/` if it has none); any other URI as it is.
    fn without_authority(uri: &str) -> &str {
        // Only an absolute URI has a scheme; a path starts with `/`. The scheme is the
        // characters a scheme may have, up to the first `://`.
        if uri.starts_with('/') {
            return uri;
        }
        let scheme_end = uri
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b"+-.".contains(&b)))
            .unwrap_or(uri.len());
        match uri.get(scheme_end..).and_then(|p| p.strip_prefix("://")) {
            Some(authority) => match memchr(b'/', authority.as_bytes()) {
                Some(slash) => authority.get(slash..).unwrap_or("/"),
                None => "/",
            },
            None => uri,
        }
    }

    /// `path` with each `#XX` (two hexadecimal digits) replaced by its byte; a `#` without
    /// them stays. Bytes that do not make UTF-8 become U+FFFD.
    fn decode_escapes(path: &[u8]) -> String {
        let mut decoded = Vec::with_capacity(path.len());
        let mut i = 0;
        while let Some(&b) = path.get(i) {
            if b == b'#' {
                if let Some(byte) = path.get(i + 1..i + 3).and_then(hex_byte) {
                    decoded.push(byte);
                    i += 3;
                    continue;
                }
            }
            decoded.push(b);
            i += 1;
        }
        String::from_utf8_lossy(&decoded).into_owned()
    }

    fn hex_byte(pair: &[u8]) -> Option<u8> {
        let [hi, lo] = pair else {
            return None;
        };
        let hi = char::from(*hi).to_digit(16)?;
        let lo = char::from(*lo).to_digit(16)?;
        u8::try_from(hi * 16 + lo).ok()
    }
}

use std::borrow::Cow;

use self::scan::{is_status, memchr, memchr_long, number, plus, utf8_prefix};
use self::uri::path_of;
use crate::haproxy::{ConnectionLine, Entry, EntryKind, LogRecord, ParseError, Timer};

const EMPTY: ParseError = ParseError::new("empty_line");
const UNRECOGNIZED: ParseError = ParseError::new("unrecognized_format");
const BAD_CLIENT: ParseError = ParseError::new("bad_client_address");
const BAD_ACCEPT_DATE: ParseError = ParseError::new("bad_accept_date");
const BAD_FRONTEND: ParseError = ParseError::new("bad_frontend_name");
const BAD_BACKEND_SERVER: ParseError = ParseError::new("bad_backend_server");
const BAD_TIMERS: ParseError = ParseError::new("bad_timers");
const BAD_STATUS: ParseError = ParseError::new("bad_status_code");
const BAD_BYTES: ParseError = ParseError::new("bad_bytes_read");
const BAD_TERMINATION_STATE: ParseError = ParseError::new("bad_termination_state");
const BAD_CONNECTIONS: ParseError = ParseError::new("bad_connection_counts");
const BAD_QUEUES: ParseError = ParseError::new("bad_queue_lengths");
const BAD_CAPTURE: ParseError = ParseError::new("bad_capture");
const BAD_REQUEST_LINE: ParseError = ParseError::new("bad_request_line");
const TRAILING_DATA: ParseError = ParseError::new("trailing_data");
/// HAProxy's line for a connection to a frontend with a `log` target but no log format
/// (see [`ConnectionLine`]). Nothing in it can be counted, and each connection writes one,
/// so the operator must hear about it: rejected, not ignored as a notice.
const NO_LOG_FORMAT: ParseError = ParseError::new("no_log_format");

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
