//! Values into the record: the fields metrics use, custom labels and captures.

use std::borrow::Cow;

use super::{Field, FieldKind, Format};
use crate::haproxy::record::{LogRecord, Timer};
use crate::haproxy::uri::request_path;
use crate::scan::{is_status, number, plus, split_on, utf8_prefix};

/// Fills the custom label slots that field number `number` feeds with its `value`.
#[inline(always)]
pub(super) fn custom_labels<'a>(
    format: &Format,
    field: &Field,
    number: usize,
    value: &'a [u8],
    record: &mut LogRecord<'a>,
) {
    if format.custom.is_empty() {
        return;
    }
    for custom in format.custom.iter().filter(|c| c.field == number) {
        let value = match custom.capture {
            Some(n) => capture(field, value, n),
            None => value,
        };
        record.custom[custom.slot] = utf8_prefix(value);
    }
}

/// The `n`-th value of a capture block `{a|b|c}` or of a capture list (`a" "b` quoted,
/// `a b` not); empty if there is none.
fn capture<'v>(field: &Field, value: &'v [u8], n: usize) -> &'v [u8] {
    if field.kind == FieldKind::CaptureList {
        let values = match field.quoted {
            true => split_on(value, b"\" \"").nth(n),
            false => value.split(|&b| b == b' ').nth(n),
        };
        return values.unwrap_or_default();
    }
    let inner = value
        .strip_prefix(b"{")
        .and_then(|b| b.strip_suffix(b"}"))
        .unwrap_or(value);
    inner.split(|&b| b == b'|').nth(n).unwrap_or_default()
}

/// Puts a field's value into the record; `None` if it is malformed.
pub(super) fn store<'a>(
    field: &Field,
    value: &'a [u8],
    record: &mut LogRecord<'a>,
    path_seen: &mut bool,
    format: &Format,
) -> Option<()> {
    match field.kind {
        FieldKind::ClientIp => {
            record.client_ip = match hex_address(field, value) {
                Some(decoded) => Cow::Owned(decoded),
                None => Cow::Borrowed(text(value)?),
            }
        }
        FieldKind::ClientPort => record.client_port = text(value)?,
        FieldKind::FrontendTransport | FieldKind::Frontend => {
            record.frontend_name = text(value.strip_suffix(b"~").unwrap_or(value))?
        }
        FieldKind::Backend => record.backend_name = text(value)?,
        FieldKind::Server => record.server_name = text(value)?,
        FieldKind::RequestWait
        | FieldKind::TotalRequestWait
        | FieldKind::Queued
        | FieldKind::Connect
        | FieldKind::Response
        | FieldKind::Active
        | FieldKind::Total => {
            if let Some(slot) = timer_slot(format, field.kind, record) {
                *slot = timer(value)?;
            }
        }
        FieldKind::Status => {
            if !is_status(value) {
                return None;
            }
            record.status_code = text(value)?;
        }
        FieldKind::Bytes => record.bytes_read = number(plus(value))?,
        FieldKind::TerminationState => {
            if value.len() < 2 {
                return None;
            }
            record.termination_state = text(&value[..2])?;
        }
        FieldKind::ServerQueue => record.server_queue = number(value)?,
        FieldKind::BackendQueue => record.backend_queue = number(value)?,
        FieldKind::RequestLine | FieldKind::Method | FieldKind::Uri | FieldKind::PathOnly => {
            request(field.kind, value, record, path_seen, format)?
        }
        FieldKind::AcceptDate => record.accept_date = text(value)?,
        FieldKind::Count => {
            number(plus(value))?;
        }
        FieldKind::Captures
        | FieldKind::CaptureList
        | FieldKind::ZonedDate
        | FieldKind::Other
        | FieldKind::Sample => {}
    }
    Some(())
}

/// The record's timer a timer field of `kind` gives; `None` for `%Tq` beside `%TR` and
/// `%Tt` beside `%Ta`, which give none.
fn timer_slot<'r>(
    format: &Format,
    kind: FieldKind,
    record: &'r mut LogRecord<'_>,
) -> Option<&'r mut Timer> {
    match kind {
        FieldKind::RequestWait | FieldKind::TotalRequestWait => {
            (kind == format.request_wait).then_some(&mut record.request_wait)
        }
        FieldKind::Queued => Some(&mut record.queued),
        FieldKind::Connect => Some(&mut record.connect),
        FieldKind::Response => Some(&mut record.response),
        FieldKind::Active | FieldKind::Total => {
            (kind == format.session).then_some(&mut record.session)
        }
        _ => None,
    }
}

/// A timer as in the built-in parser, plus an absent value (`-` or nothing) in a
/// custom format.
fn timer(value: &[u8]) -> Option<Timer> {
    match plus(value) {
        b"-1" | b"" | b"-" => Some(None),
        v => number(v).map(Some),
    }
}

/// The method and path from `%r`, `%HM`, `%HU`, `%HP` or `%HPO` (a field of `kind`);
/// the path from `%r` only where no other field gave it.
fn request<'a>(
    kind: FieldKind,
    value: &'a [u8],
    record: &mut LogRecord<'a>,
    path_seen: &mut bool,
    format: &Format,
) -> Option<()> {
    if kind == FieldKind::RequestLine {
        record.request_line = text(value)?;
    }
    let absent = value == b"<BADREQ>" || (kind != FieldKind::RequestLine && value == b"-");
    if absent {
        return Some(());
    }
    match kind {
        FieldKind::RequestLine => {
            let mut parts = value.split(|&b| b == b' ');
            record.http_request_method = text(parts.next().unwrap_or_default())?;
            if !*path_seen {
                record.http_request_path = request_path(parts.next().unwrap_or_default());
            }
        }
        FieldKind::Method => record.http_request_method = text(value)?,
        _ => {
            if Some(kind) == format.path {
                record.http_request_path = request_path(value);
                *path_seen = true;
            }
        }
    }
    Some(())
}

/// An address HAProxy logged in hexadecimal (`+X`): 8 digits for IPv4, 32 for IPv6.
fn hex_address(field: &Field, value: &[u8]) -> Option<String> {
    if !field.hex {
        return None;
    }
    let digits = std::str::from_utf8(value).ok()?;
    match digits.len() {
        8 => u32::from_str_radix(digits, 16)
            .ok()
            .map(|ip| std::net::Ipv4Addr::from(ip).to_string()),
        32 => u128::from_str_radix(digits, 16)
            .ok()
            .map(|ip| std::net::Ipv6Addr::from(ip).to_string()),
        _ => None,
    }
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok()
}
