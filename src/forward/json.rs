//! A received line as one JSON object: the parsed fields under OpenTelemetry semantic
//! convention names where one exists, `haproxy.*` names for the rest, flat dotted keys.
//! Lines that are not traffic (notices) and rejected lines get what is known about them.
//! docs/forwarding.md lists every key.

use std::io::Write;

use crate::forward::clock::Clock;
use crate::haproxy::{Entry, EntryKind, LogRecord, Parser, Timer};
use crate::scan::number;
use crate::syslog::{self, Timestamp};

/// The syslog severities, by number.
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The keys a custom label may not take: those written for every traffic line.
const FIXED_KEYS: &[&str] = &[
    "frontend",
    "backend",
    "server",
    "mode",
    "request_wait_seconds",
    "queued_seconds",
    "server_connect_seconds",
    "response_seconds",
    "session_seconds",
    "bytes_read",
    "termination_state",
    "server_queue",
    "backend_queue",
    "active_connections",
    "frontend_connections",
    "backend_connections",
    "server_connections",
    "retries",
    "redispatched",
    "captures",
    "truncated",
    "outcome",
    "reason",
];

/// Writes lines as JSON, as the pipeline reads them.
pub struct JsonWriter {
    parser: Parser,
    /// The keys of the custom labels, by slot: `haproxy.NAME`, or `haproxy.custom.NAME`
    /// for a name that is one of the fixed keys.
    custom_keys: Vec<String>,
    clock: Clock,
}

impl JsonWriter {
    pub fn new(parser: Parser, custom_labels: &[&str]) -> Self {
        let custom_keys = custom_labels
            .iter()
            .map(|name| match FIXED_KEYS.contains(name) {
                true => format!("haproxy.custom.{name}"),
                false => format!("haproxy.{name}"),
            })
            .collect();
        JsonWriter {
            parser,
            custom_keys,
            clock: Clock::default(),
        }
    }

    /// For tests: a clock that does not move.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Appends the object for `frame` and a newline to `out`.
    pub fn write(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let header = syslog::header(frame);
        let entry = self.parser.parse(header.message);
        let mut object = Object::new(out);

        object.key("timestamp");
        let accept_date = match &entry {
            Ok(Entry::Traffic(record)) => record.accept_date,
            _ => "",
        };
        let ts_start = object.out.len();
        object.out.push(b'"');
        let mut written = self
            .clock
            .accept_date_to_rfc3339(accept_date.as_bytes(), object.out);
        if !written {
            written = match header.timestamp {
                Timestamp::Iso(ts) if ts.is_ascii() => {
                    object.out.extend_from_slice(ts);
                    true
                }
                Timestamp::Bsd(ts) => self.clock.bsd_to_rfc3339(ts, object.out),
                _ => false,
            };
        }
        if !written {
            object.out.truncate(ts_start + 1);
            self.clock.now_rfc3339(object.out);
        }
        object.out.push(b'"');

        if let Some(priority) = header.priority {
            object.string("severity", SEVERITIES[usize::from(priority & 7)]);
        }
        if let Some(host) = header.host {
            object.string("host.name", &String::from_utf8_lossy(host));
        }
        if let Some(app) = header.app {
            object.string("service.name", &String::from_utf8_lossy(app));
        }
        if let Some(pid) = header.pid.and_then(number) {
            object.number("process.pid", pid);
        }
        match &entry {
            Ok(Entry::Traffic(record)) => {
                object.string("haproxy.outcome", "counted");
                self.traffic(&mut object, record);
            }
            Ok(Entry::Notice(reason)) => {
                object.string("haproxy.outcome", "ignored");
                object.string("haproxy.reason", reason);
            }
            Err(err) => {
                object.string("haproxy.outcome", "rejected");
                object.string("haproxy.reason", err.reason());
            }
        }
        object.string("message", &String::from_utf8_lossy(header.message));
        object.close();
    }

    fn traffic(&self, object: &mut Object<'_>, record: &LogRecord<'_>) {
        let text = |object: &mut Object<'_>, key: &str, value: &str| {
            if !value.is_empty() {
                object.string(key, value);
            }
        };
        text(object, "client.address", &record.client_ip);
        match number(record.client_port.as_bytes()) {
            Some(port) => object.number("client.port", port),
            None => text(object, "client.port", record.client_port),
        }
        text(object, "http.request.method", record.http_request_method);
        text(object, "url.path", &record.http_request_path);
        let (query, version) = query_and_version(record.request_line);
        text(object, "url.query", query);
        text(object, "network.protocol.version", version);
        if !record.status_code.is_empty() {
            match record.status_code.parse::<i64>() {
                Ok(status) => object.raw("http.response.status_code", &status.to_string()),
                Err(_) => object.string("http.response.status_code", record.status_code),
            }
        }
        text(object, "haproxy.frontend", record.frontend_name);
        text(object, "haproxy.backend", record.backend_name);
        text(object, "haproxy.server", record.server_name);
        object.string(
            "haproxy.mode",
            match record.kind {
                EntryKind::Http => "http",
                EntryKind::Tcp => "tcp",
            },
        );
        if record.kind == EntryKind::Http {
            object.seconds("haproxy.request_wait_seconds", record.request_wait);
        }
        object.seconds("haproxy.queued_seconds", record.queued);
        object.seconds("haproxy.server_connect_seconds", record.connect);
        if record.kind == EntryKind::Http {
            object.seconds("haproxy.response_seconds", record.response);
        }
        object.seconds("haproxy.session_seconds", record.session);
        object.number("haproxy.bytes_read", record.bytes_read);
        text(
            object,
            "haproxy.termination_state",
            record.termination_state,
        );
        object.number("haproxy.server_queue", record.server_queue);
        object.number("haproxy.backend_queue", record.backend_queue);
        let mut counts = record.connection_counts.split('/');
        for key in [
            "haproxy.active_connections",
            "haproxy.frontend_connections",
            "haproxy.backend_connections",
            "haproxy.server_connections",
        ] {
            if let Some(n) = counts.next().and_then(|c| number(c.as_bytes())) {
                object.number(key, n);
            }
        }
        if let Some(retries) = counts.next() {
            let (redispatched, retries) = match retries.strip_prefix('+') {
                Some(n) => (true, n),
                None => (false, retries),
            };
            if let Some(n) = number(retries.as_bytes()) {
                object.number("haproxy.retries", n);
                object.raw(
                    "haproxy.redispatched",
                    if redispatched { "true" } else { "false" },
                );
            }
        }
        text(object, "haproxy.captures", record.captures);
        for (key, value) in self.custom_keys.iter().zip(record.custom) {
            text(object, key, value);
        }
        if record.truncated {
            object.raw("haproxy.truncated", "true");
        }
    }
}

/// The query (after `?`, before any `#`) and the HTTP version number of a request line.
fn query_and_version(request_line: &str) -> (&str, &str) {
    let mut parts = request_line.split(' ');
    let uri = parts.nth(1).unwrap_or_default();
    let query = uri
        .split_once('?')
        .map_or("", |(_, q)| q.split('#').next().unwrap_or_default());
    let version = parts
        .next()
        .and_then(|v| v.strip_prefix("HTTP/"))
        .map_or("", |v| match v {
            "2.0" => "2",
            "3.0" => "3",
            v => v,
        });
    (query, version)
}

/// A JSON object being written: `{"k":v,...}` and a newline.
struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        quoted(key, self.out);
        self.out.push(b':');
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        quoted(value, self.out);
    }

    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.extend_from_slice(value.as_bytes());
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{value}");
    }

    /// A timer in milliseconds as seconds; `null` where HAProxy logged `-1`.
    fn seconds(&mut self, key: &str, timer: Timer) {
        match timer {
            Some(ms) => {
                self.key(key);
                let _ = write!(self.out, "{}.{:03}", ms / 1000, ms % 1000);
            }
            None => self.raw(key, "null"),
        }
    }

    fn close(self) {
        self.out.extend_from_slice(b"}\n");
    }
}

/// `value` as a JSON string.
fn quoted(value: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests;
