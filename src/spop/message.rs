//! The contract between the shipped engine file (`deploy/spoe/spoe.conf`) and the agent:
//! which messages it reads and what their arguments mean. docs/spoe.md is
//! the manual.
//!
//! - `hle-request` (sent at `on-frontend-http-request`): `path` (required) and `method`.
//!   Its ACK sets `txn.<var-prefix>.route` to the path as the `http_request_path` label
//!   would read it (`HLE_PATH_*`).
//! - `hle-response` (sent by `http-response send-spoe-group`): `status` (required),
//!   `frontend`, `backend`, `server`, `method`, `path`, `client_ip`, `client_port`, the
//!   timers `request_wait` (`%TR`), `queued` (`%Tw`), `connect` (`%Tc`) and `response`
//!   (`%Tr`) in milliseconds, and any label of `HLE_CUSTOM_LABELS` by its name. It becomes
//!   the same `LogRecord` as a log line. An argument that is absent or NULL is empty (a
//!   timer: not observed); other argument names are skipped.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use super::frame::{Message, Value};
use crate::haproxy::{EntryKind, LogRecord, MAX_CUSTOM_LABELS};

/// The message whose ACK carries the route.
pub const REQUEST_MESSAGE: &[u8] = b"hle-request";
/// The message that becomes a `LogRecord`.
pub const RESPONSE_MESSAGE: &[u8] = b"hle-response";
/// The variable the ACK of `hle-request` sets, in the transaction scope; HAProxy puts the
/// agent's `var-prefix` before it (`txn.hle.route`).
pub const ROUTE_VAR: &[u8] = b"route";

/// The `reason` label values of rejected messages.
pub const REJECT_REASONS: &[&str] = &[
    MISSING_STATUS,
    INVALID_STATUS,
    MISSING_PATH,
    INVALID_TIMER,
    NOT_UTF8,
    MALFORMED,
];
const MISSING_STATUS: &str = "missing_status";
const INVALID_STATUS: &str = "invalid_status";
const MISSING_PATH: &str = "missing_path";
const INVALID_TIMER: &str = "invalid_timer";
const NOT_UTF8: &str = "not_utf8";
/// The NOTIFY payload could not be read from this message on.
pub const MALFORMED: &str = "malformed";

/// The `reason` label values of ignored messages.
pub const IGNORE_REASONS: &[&str] = &[UNKNOWN_MESSAGE, METRICS_OFF];
/// A message of another name (another agent's messages sent to us).
pub const UNKNOWN_MESSAGE: &str = "unknown_message";
/// A response message while `HLE_SPOE_METRICS=false`.
pub const METRICS_OFF: &str = "metrics_off";

/// A text argument before it is placed: borrowed from the frame, or a number or address
/// to be written out.
#[derive(Debug, Clone, Copy)]
enum Text<'a> {
    Str(&'a str),
    Int(i64),
    Ip(std::net::IpAddr),
}

/// Where a text ended up: in the frame, or in the scratch buffer.
#[derive(Debug, Clone)]
enum Placed<'a> {
    Frame(&'a str),
    Scratch(Range<usize>),
}

/// The text of a value; `None` for NULL (HAProxy's "sample not available").
fn text(value: Value<'_>) -> Result<Option<Text<'_>>, &'static str> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::String(s) | Value::Binary(s) => {
            Text::Str(std::str::from_utf8(s).map_err(|_| NOT_UTF8)?)
        }
        Value::Bool(b) => Text::Str(if b { "true" } else { "false" }),
        Value::Int32(_) | Value::Uint32(_) | Value::Int64(_) | Value::Uint64(_) => {
            match value.integer() {
                Some(n) => Text::Int(n),
                None => Text::Str(""),
            }
        }
        Value::Ipv4(ip) => Text::Ip(ip.into()),
        Value::Ipv6(ip) => Text::Ip(ip.into()),
    }))
}

/// A timer in milliseconds; `None` when absent, NULL or negative (`-1`).
fn timer(value: Value<'_>) -> Result<Option<u64>, &'static str> {
    if value == Value::Null {
        return Ok(None);
    }
    let n = value.integer().ok_or(INVALID_TIMER)?;
    Ok(u64::try_from(n).ok())
}

/// The path of a request message, for its route; the reason when there is none.
pub fn request_path<'a>(message: &Message<'a>) -> Result<&'a str, &'static str> {
    let path = message
        .args()
        .find(|(name, _)| *name == b"path")
        .map(|(_, value)| value);
    match path.map(text).transpose()?.flatten() {
        Some(Text::Str(path)) if !path.is_empty() => Ok(path),
        _ => Err(MISSING_PATH),
    }
}

/// Reused between messages: the numbers and addresses written out for a record.
#[derive(Debug, Default)]
pub struct Scratch {
    buf: String,
}

/// The arguments of a response message, by meaning.
#[derive(Default)]
struct Args<'a> {
    status: Option<Text<'a>>,
    frontend: Option<Text<'a>>,
    backend: Option<Text<'a>>,
    server: Option<Text<'a>>,
    method: Option<Text<'a>>,
    path: Option<Text<'a>>,
    client_ip: Option<Text<'a>>,
    client_port: Option<Text<'a>>,
    request_wait: Option<u64>,
    queued: Option<u64>,
    connect: Option<u64>,
    response: Option<u64>,
    custom: [Option<Text<'a>>; MAX_CUSTOM_LABELS],
}

/// Reads a response message into a record, as a log line would have given it; the reason
/// when it cannot be. `custom_labels` are the names of `HLE_CUSTOM_LABELS`, by slot.
pub fn response_record<'a>(
    message: &Message<'a>,
    custom_labels: &[&str],
    scratch: &'a mut Scratch,
) -> Result<LogRecord<'a>, &'static str> {
    let mut args = Args::default();
    for (name, value) in message.args() {
        let slot = match name {
            b"status" => &mut args.status,
            b"frontend" => &mut args.frontend,
            b"backend" => &mut args.backend,
            b"server" => &mut args.server,
            b"method" => &mut args.method,
            b"path" => &mut args.path,
            b"client_ip" => &mut args.client_ip,
            b"client_port" => &mut args.client_port,
            b"request_wait" => {
                args.request_wait = timer(value)?;
                continue;
            }
            b"queued" => {
                args.queued = timer(value)?;
                continue;
            }
            b"connect" => {
                args.connect = timer(value)?;
                continue;
            }
            b"response" => {
                args.response = timer(value)?;
                continue;
            }
            other => match custom_labels.iter().position(|l| l.as_bytes() == other) {
                Some(i) if i < MAX_CUSTOM_LABELS => &mut args.custom[i],
                _ => continue,
            },
        };
        *slot = text(value)?;
    }
    let status = match args.status {
        None => return Err(MISSING_STATUS),
        Some(Text::Int(n)) => Text::Int(n),
        Some(Text::Str(s)) if s.parse::<i64>().is_ok() => Text::Str(s),
        Some(_) => return Err(INVALID_STATUS),
    };

    let buf = &mut scratch.buf;
    buf.clear();
    let mut place = |t: Option<Text<'a>>| -> Placed<'a> {
        match t {
            None => Placed::Frame(""),
            Some(Text::Str(s)) => Placed::Frame(s),
            Some(Text::Int(n)) => {
                let start = buf.len();
                // Writing to a String cannot fail.
                let _ = write!(buf, "{n}");
                Placed::Scratch(start..buf.len())
            }
            Some(Text::Ip(ip)) => {
                let start = buf.len();
                let _ = write!(buf, "{ip}");
                Placed::Scratch(start..buf.len())
            }
        }
    };
    let status = place(Some(status));
    let frontend = place(args.frontend);
    let backend = place(args.backend);
    let server = place(args.server);
    let method = place(args.method);
    let path = place(args.path);
    let client_ip = place(args.client_ip);
    let client_port = place(args.client_port);
    let custom = args.custom.map(&mut place);

    let buf: &'a str = buf.as_str();
    let get = |p: &Placed<'a>| -> &'a str {
        match p {
            Placed::Frame(s) => s,
            Placed::Scratch(range) => buf.get(range.clone()).unwrap_or_default(),
        }
    };
    let mut record = LogRecord {
        status_code: get(&status),
        frontend_name: get(&frontend),
        backend_name: get(&backend),
        server_name: get(&server),
        http_request_method: get(&method),
        http_request_path: Cow::Borrowed(get(&path)),
        client_ip: Cow::Borrowed(get(&client_ip)),
        client_port: get(&client_port),
        request_wait: args.request_wait,
        queued: args.queued,
        connect: args.connect,
        response: args.response,
        missing_timer_is_abort: false,
        ..LogRecord::empty(EntryKind::Http)
    };
    for (value, placed) in record.custom.iter_mut().zip(&custom) {
        *value = get(placed);
    }
    Ok(record)
}
