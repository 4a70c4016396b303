//! The syslog header: strips whatever header HAProxy (or a syslog daemon writing
//! HAProxy's lines to a file) put in front of the log entry, and borrows the entry
//! itself, without allocating. For operators: docs/log-formats.md and
//! docs/relays.md.
//!
//! HAProxy 2.6 sends these shapes (the `format` keyword of a `log` line or a `ring`):
//!
//! | format     | shape                                                             |
//! |------------|-------------------------------------------------------------------|
//! | (default)  | `<134>Nov 25 02:09:39 haproxy[1440]: MSG` ("local": no hostname)  |
//! | `rfc3164`  | `<134>Nov 25 02:09:45 localhost haproxy[1721]: MSG`               |
//! | `rfc5424`  | `<134>1 2026-11-25T02:09:56.857871+00:00 - haproxy 2246 - - MSG`  |
//! | `priority` | `<134>MSG`                                                        |
//! | `short`    | `<6>MSG`                                                          |
//! | `timed`    | `<6>2026-11-25T02:11:16.586437+00:00 MSG`                         |
//! | `iso`      | `2026-11-25T02:11:10.724450+00:00 MSG`                            |
//! | `raw`      | `MSG`                                                             |
//!
//! and syslog daemons write `Dec  9 12:00:03 host haproxy[123]: MSG` to files. Each shape
//! is recognised by a hand-written fast path; a `<PRI>` line with a timestamp the fast path
//! does not know falls back to `syslog_loose`, the general (and much slower) parser.

use crate::scan::memchr;

/// A syslog line split into its header fields and the HAProxy message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syslog<'a> {
    /// The `<PRI>` value, if the line had one.
    pub priority: Option<u8>,
    /// The message after the header: an HAProxy log entry or notice.
    pub message: &'a [u8],
}

/// Splits one frame (without its trailing newline) into header and message.
///
/// Never fails: a line with no recognisable header is taken as a bare message, which is
/// how HAProxy's `raw` format looks.
pub fn split(line: &[u8]) -> Syslog<'_> {
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
    Syslog {
        priority,
        message: message_start(message),
    }
}

/// A line's header fields, for writing the line again with another header (the
/// forwarders). Slower than [`split`], and off the counting path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub priority: Option<u8>,
    pub timestamp: Timestamp<'a>,
    pub host: Option<&'a [u8]>,
    /// APP-NAME, or the TAG's name.
    pub app: Option<&'a [u8]>,
    /// PROCID, or the pid in the TAG.
    pub pid: Option<&'a [u8]>,
    /// What [`split`] gives.
    pub message: &'a [u8],
}

/// A header's timestamp, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp<'a> {
    Missing,
    /// `Mmm dd hh:mm:ss`
    Bsd(&'a [u8]),
    /// RFC 3339: `YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)`
    Iso(&'a [u8]),
}

/// The header fields of `line`, the outermost header's where a relay nested two.
pub fn header(line: &[u8]) -> Header<'_> {
    let message = split(line).message;
    // `message` borrows from `line`.
    let offset = (message.as_ptr() as usize)
        .saturating_sub(line.as_ptr() as usize)
        .min(line.len());
    let head = &line[..offset];
    let (priority, rest) = match parse_pri(head) {
        Some((pri, rest)) => (Some(pri), rest),
        None => (None, head),
    };
    let mut header = Header {
        priority,
        timestamp: Timestamp::Missing,
        host: None,
        app: None,
        pid: None,
        message,
    };
    let nil = |field: &'_ [u8]| -> bool { field == b"-" || field.is_empty() };
    if let Some(after_version) = rest.strip_prefix(b"1 ").filter(|_| priority.is_some()) {
        let mut fields = after_version.split(|&b| b == b' ');
        let mut next = || fields.next().filter(|f| !nil(f));
        header.timestamp = next().map_or(Timestamp::Missing, Timestamp::Iso);
        header.host = next();
        header.app = next();
        header.pid = next();
        return header;
    }
    let after = if let Some(after) = skip_bsd_timestamp(rest) {
        header.timestamp = Timestamp::Bsd(&rest[..15]);
        after
    } else if let Some(after) = skip_iso_timestamp(rest) {
        header.timestamp = Timestamp::Iso(&rest[..rest.len() - after.len() - 1]);
        after
    } else {
        return header;
    };
    let mut tokens = after.split(|&b| b == b' ').filter(|t| !t.is_empty());
    let first = tokens.next();
    let tag = match first {
        Some(token) if is_tag(token, false) => Some(token),
        Some(host) => {
            header.host = Some(host);
            tokens.next().filter(|t| is_tag(t, false))
        }
        None => None,
    };
    if let Some(tag) = tag {
        let tag = tag.strip_suffix(b":").unwrap_or(tag);
        match tag.strip_suffix(b"]").and_then(|t| {
            let open = memchr(b'[', t)?;
            Some((&t[..open], &t[open + 1..]))
        }) {
            Some((name, pid)) => (header.app, header.pid) = (Some(name), Some(pid)),
            None => header.app = Some(tag),
        }
    }
    header
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

/// `<N>` with N in 0..=191 (RFC 5424 PRIVAL): one to three digits.
pub(crate) fn parse_pri(line: &[u8]) -> Option<(u8, &[u8])> {
    let [b'<', rest @ ..] = line else {
        return None;
    };
    let mut value = 0u16;
    for (i, &b) in rest.iter().enumerate().take(4) {
        match b {
            b'0'..=b'9' => value = value * 10 + u16::from(b - b'0'),
            b'>' if i > 0 => {
                let value = u8::try_from(value).ok().filter(|v| *v <= 191)?;
                return Some((value, &rest[i + 1..]));
            }
            _ => return None,
        }
    }
    None
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
    let relayed =
        fields[2] == b"1" && fields[3] == b"-" && fields[4] == b"-" && rest.first() == Some(&b'-');
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
    let head: &[u8; 16] = rest.get(..16)?.try_into().ok()?;
    // The month as one number: one comparison each instead of one per byte.
    let month = u32::from_be_bytes([0, head[0], head[1], head[2]]);
    let month_ok = matches!(
        &month.to_be_bytes()[1..],
        b"Jan"
            | b"Feb"
            | b"Mar"
            | b"Apr"
            | b"May"
            | b"Jun"
            | b"Jul"
            | b"Aug"
            | b"Sep"
            | b"Oct"
            | b"Nov"
            | b"Dec"
    );
    let day_ok = head[3] == b' '
        && (head[4] == b' ' || head[4].is_ascii_digit())
        && head[5].is_ascii_digit()
        && head[6] == b' ';
    let time_ok = is_clock(&head[7..15]) && head[15] == b' ';
    (month_ok && day_ok && time_ok).then(|| &rest[16..])
}

/// `hh:mm:ss`
fn is_clock(t: &[u8]) -> bool {
    let digit = |b: u8| b.wrapping_sub(b'0') < 10;
    match t {
        [h1, h2, b':', m1, m2, b':', s1, s2] => {
            digit(*h1) & digit(*h2) & digit(*m1) & digit(*m2) & digit(*s1) & digit(*s2)
        }
        _ => false,
    }
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
    let scanned = match tag_token(rest, pid_required) {
        // The first token is a tag; a space must follow it.
        Ok(end) => return rest.get(end + 1..),
        Err(scanned) => scanned,
    };
    let first_end = scanned + memchr(b' ', rest.get(scanned..)?)?;
    let after_host = &rest[first_end + 1..];
    let end = tag_token(after_host, pid_required).ok()?;
    Some(after_host.get(end + 1..).unwrap_or_default())
}

/// Whether the token at the start of `bytes` (up to a space or the end) is a tag (see
/// [`is_tag`]): `Ok` with where the token ends, or `Err` with a position the token's end
/// is not before. One pass, where `is_tag` takes a few.
fn tag_token(bytes: &[u8], pid_required: bool) -> Result<usize, usize> {
    let name = bytes
        .iter()
        .position(|&b| !TAG_NAME[usize::from(b)])
        .unwrap_or(bytes.len());
    if name == 0 || name > 48 {
        return Err(name);
    }
    let token_end = |at: usize| matches!(bytes.get(at), None | Some(b' '));
    match bytes.get(name) {
        Some(b'[') => {
            let pid = bytes.get(name + 1..).unwrap_or_default();
            let digits = pid
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(pid.len());
            let close = name + 1 + digits;
            if digits == 0 || bytes.get(close) != Some(&b']') {
                return Err(close);
            }
            // The colon is optional after a pid.
            match bytes.get(close + 1) {
                None | Some(b' ') => Ok(close + 1),
                Some(b':') if token_end(close + 2) => Ok(close + 2),
                _ => Err(close + 1),
            }
        }
        Some(b':') if !pid_required && token_end(name + 1) => Ok(name + 1),
        _ => Err(name),
    }
}

/// The bytes of a tag's name: alphanumerics, `-`, `_`, `.` and `/`.
const TAG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/');
        b += 1;
    }
    table
};

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

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "127.0.0.1:47056 [25/Nov/2026:02:09:39.343] fe_http be_app/app1 0/0/0/0/0 200 73 - - ---- 3/1/0/0/0 0/0 \"GET / HTTP/1.1\"";

    /// Each header, put before the same entry, gives that entry and the priority.
    fn assert_headers(cases: &[(&str, Option<u8>)]) {
        for (header, priority) in cases {
            let line = format!("{header}{ENTRY}");
            let got = split(line.as_bytes());
            assert_eq!(got.priority, *priority, "{header:?}");
            assert_eq!(
                std::str::from_utf8(got.message).unwrap(),
                ENTRY,
                "{header:?}"
            );
        }
    }

    #[test]
    fn every_header_haproxy_sends() {
        let cases: &[(&str, Option<u8>)] = &[
            ("<134>Nov 25 02:09:39 haproxy[1440]: ", Some(134)),
            ("<134>Nov 25 02:09:45 localhost haproxy[1721]: ", Some(134)),
            ("<134>Jan  5 03:04:06 localhost haproxy[10640]: ", Some(134)),
            ("<134>1 2026-11-25T02:09:56.857871+00:00 - haproxy 2246 - - ", Some(134)),
            ("<134>1 2026-11-25T02:10:02.710821+00:00 vm haproxy 2425 - - ", Some(134)),
            (
                "<134>1 2026-11-25T02:17:00.631616+00:00 - haproxy 10396 - [haproxy@12345 status=\"200\" x=\"a\\]b\\\"\"] ",
                Some(134),
            ),
            (
                "<134>1 2026-11-25T02:17:00+05:30 - haproxy 1 - [a@1 k=\"v\"][b@2] ",
                Some(134),
            ),
            ("<134>", Some(134)),
            ("<6>", Some(6)),
            ("<6>2026-11-25T02:11:16.586437+00:00 ", Some(6)),
            ("2026-11-25T02:11:10.724450+00:00 ", None),
            ("", None),
            ("Dec  9 12:00:03 host haproxy[123]: ", None),
            ("Dec 19 12:00:03 haproxy[123]: ", None),
            ("Dec 19 12:00:03 host haproxy: ", None),
            ("2026-11-25T02:11:10.724450+00:00 host haproxy[9]: ", None),
        ];
        assert_headers(cases);
    }

    /// What rsyslog and syslog-ng make of HAProxy's lines when they relay or store them.
    #[test]
    fn every_header_relays_write() {
        let cases: &[(&str, Option<u8>)] = &[
            // rsyslog RSYSLOG_SyslogProtocol23Format of a BSD line: `SD SP MSG`, where the
            // message keeps its own leading space.
            ("<134>1 2026-12-02T04:29:32+00:00 host haproxy 7657 - -  ", Some(134)),
            // rsyslog RSYSLOG_ForwardFormat and RSYSLOG_FileFormat of an RFC 5424 line:
            // the tag is APP-NAME[PROCID], without a colon.
            ("<134>2026-12-02T04:44:27.662417+00:00 - ingress[18125] ", Some(134)),
            ("2026-12-02T04:44:27.662417+00:00 - ingress[18125] ", None),
            ("2026-12-02T04:44:27.662417+00:00 host haproxy[18125]: ", None),
            ("<134>Dec  2 04:44:27 host ingress[18125] ", Some(134)),
            ("Dec  2 04:44:27 host ingress[18125] ", None),
            // syslog-ng's BSD source given an RFC 5424 line, with and without a hostname.
            (
                "<134>Dec  2 04:44:27 localhost 1 2026-12-02T04:44:27.677196+00:00 - ingress 18125 - - ",
                Some(134),
            ),
            (
                "Dec  2 04:44:27 localhost 1 2026-12-02T04:44:27.677196+00:00 - ingress 18125 - - ",
                None,
            ),
            (
                "<134>Dec  2 04:44:27 1 2026-12-02T04:44:27.677196+00:00 vm ingress 18125 - [a@1 b=\"c\"] ",
                Some(134),
            ),
            // syslog-ng's syslog() destination of that same reading.
            (
                "<134>1 2026-12-02T05:49:40+00:00 localhost 1 - - - 2026-12-02T05:49:40.157899+00:00 - haproxy 9973 - - ",
                Some(134),
            ),
            // RFC 5424's byte order mark before a UTF-8 message.
            ("<134>1 2026-12-02T04:29:32+00:00 host haproxy 7657 - - \u{feff}", Some(134)),
            ("<134>1 2026-12-02T04:29:32+00:00 host haproxy 7657 - - \u{feff} ", Some(134)),
        ];
        assert_headers(cases);
    }

    #[test]
    fn a_tag_without_colon_needs_a_pid() {
        // Without a colon, only `name[digits]` is a tag.
        let got = split(b"2026-12-02T04:44:27+00:00 Proxy fe_http stopped");
        assert_eq!(got.message, b"Proxy fe_http stopped");
        let got = split(b"2026-12-02T04:44:27+00:00 host fe[12] stopped");
        assert_eq!(got.message, b"stopped");
        let got = split(b"2026-12-02T04:44:27+00:00 host fe[http] stopped");
        assert_eq!(got.message, b"host fe[http] stopped");
        let got = split(b"2026-12-02T04:44:27+00:00 host fe[] stopped");
        assert_eq!(got.message, b"host fe[] stopped");
    }

    #[test]
    fn messages_that_look_like_tags_are_kept_after_iso_timestamps() {
        // HAProxy's `iso` format has no tag, so a notice starting with `SPOE:` stays whole.
        let got = split(b"2026-11-25T02:11:10.724450+00:00 SPOE: [agent] <EVENT:on-frontend>");
        assert_eq!(got.message, b"SPOE: [agent] <EVENT:on-frontend>");
    }

    #[test]
    fn priority_out_of_range_is_part_of_the_message() {
        assert_eq!(split(b"<192>x").priority, None);
        assert_eq!(split(b"<192>x").message, b"<192>x");
        assert_eq!(split(b"<>x").message, b"<>x");
        assert_eq!(split(b"<1234>x").message, b"<1234>x");
    }

    #[test]
    fn unknown_timestamps_fall_back_to_the_general_parser() {
        // A year in the BSD timestamp is not one of HAProxy's shapes; syslog_loose knows it.
        let line = format!("<134>Nov 25 2026 02:09:39 myhost haproxy[1]: {ENTRY}");
        let got = split(line.as_bytes());
        assert!(got.message.ends_with(b"\"GET / HTTP/1.1\""));
    }

    /// The fast path agrees with the general parser on the standard formats.
    #[test]
    fn fast_path_matches_syslog_loose() {
        let captures: [&[u8]; 5] = [
            include_bytes!("../tests/fixtures/haproxy/a_rfc3164.log"),
            include_bytes!("../tests/fixtures/haproxy/a_rfc3164_host.log"),
            include_bytes!("../tests/fixtures/haproxy/b_rfc5424.log"),
            include_bytes!("../tests/fixtures/haproxy/b_rfc5424_host.log"),
            include_bytes!("../tests/fixtures/haproxy/b_rfc5424_sd.log"),
        ];
        for capture in captures {
            for line in std::str::from_utf8(capture).unwrap().lines() {
                let loose = syslog_loose::parse_message(line, syslog_loose::Variant::Either);
                let fast = split(line.as_bytes());
                assert_eq!(fast.message, loose.msg.as_bytes(), "{line}");
                assert_eq!(
                    fast.priority.map(|p| p & 7),
                    loose.severity.map(|s| s as u8),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn truncated_headers_do_not_panic() {
        let full = "<134>1 2026-11-25T02:17:00.631616+00:00 - haproxy 10396 - [haproxy@12345 status=\"200\"] msg";
        for end in 0..=full.len() {
            let _ = split(&full.as_bytes()[..end]);
        }
    }
}
