//! SPOP frames and their payloads (HAProxy's SPOE.txt, section 3): the frame types, the
//! typed data, the "peers" varints, and reading and writing the three payload shapes
//! (KV-LIST, LIST-OF-MESSAGES, LIST-OF-ACTIONS). Reading borrows from the frame; nothing
//! read is trusted: every length is checked against what is left before it is used.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};

/// The smallest `max-frame-size` the protocol allows.
pub const MIN_FRAME_SIZE: u32 = 256;

/// FIN: the last (or only) fragment of a payload.
pub const FLAG_FIN: u32 = 1;
/// ABORT: the fragmented payload is abandoned.
pub const FLAG_ABORT: u32 = 2;

/// A frame's type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// A fragment after the first one.
    Unset,
    HaproxyHello,
    HaproxyDisconnect,
    Notify,
    AgentHello,
    AgentDisconnect,
    Ack,
    /// Any other value: skipped, as the protocol allows.
    Unknown(u8),
}

impl FrameType {
    pub fn from_byte(b: u8) -> FrameType {
        match b {
            0 => FrameType::Unset,
            1 => FrameType::HaproxyHello,
            2 => FrameType::HaproxyDisconnect,
            3 => FrameType::Notify,
            101 => FrameType::AgentHello,
            102 => FrameType::AgentDisconnect,
            103 => FrameType::Ack,
            other => FrameType::Unknown(other),
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            FrameType::Unset => 0,
            FrameType::HaproxyHello => 1,
            FrameType::HaproxyDisconnect => 2,
            FrameType::Notify => 3,
            FrameType::AgentHello => 101,
            FrameType::AgentDisconnect => 102,
            FrameType::Ack => 103,
            FrameType::Unknown(b) => b,
        }
    }

    /// The `type` label of the frame counters.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Unset => "unset",
            FrameType::HaproxyHello => "haproxy_hello",
            FrameType::HaproxyDisconnect => "haproxy_disconnect",
            FrameType::Notify => "notify",
            FrameType::AgentHello => "agent_hello",
            FrameType::AgentDisconnect => "agent_disconnect",
            FrameType::Ack => "ack",
            FrameType::Unknown(_) => "unknown",
        }
    }
}

/// The status codes of a DISCONNECT frame (section 3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Normal,
    Io,
    Timeout,
    TooBig,
    Invalid,
    NoVersion,
    NoFrameSize,
    NoCapabilities,
    BadVersion,
    BadFrameSize,
    FragmentationUnsupported,
    Interlaced,
    FrameIdNotFound,
    Resource,
    Unknown,
}

impl Status {
    pub const ALL: [Status; 15] = [
        Status::Normal,
        Status::Io,
        Status::Timeout,
        Status::TooBig,
        Status::Invalid,
        Status::NoVersion,
        Status::NoFrameSize,
        Status::NoCapabilities,
        Status::BadVersion,
        Status::BadFrameSize,
        Status::FragmentationUnsupported,
        Status::Interlaced,
        Status::FrameIdNotFound,
        Status::Resource,
        Status::Unknown,
    ];

    pub fn code(self) -> u32 {
        match self {
            Status::Normal => 0,
            Status::Io => 1,
            Status::Timeout => 2,
            Status::TooBig => 3,
            Status::Invalid => 4,
            Status::NoVersion => 5,
            Status::NoFrameSize => 6,
            Status::NoCapabilities => 7,
            Status::BadVersion => 8,
            Status::BadFrameSize => 9,
            Status::FragmentationUnsupported => 10,
            Status::Interlaced => 11,
            Status::FrameIdNotFound => 12,
            Status::Resource => 13,
            Status::Unknown => 99,
        }
    }

    /// The known status with this code; `None` for codes the protocol does not define.
    pub fn from_code(code: u64) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|s| u64::from(s.code()) == code)
    }

    /// The protocol's description, sent as the DISCONNECT frame's message.
    pub fn message(self) -> &'static str {
        match self {
            Status::Normal => "normal",
            Status::Io => "I/O error",
            Status::Timeout => "a timeout occurred",
            Status::TooBig => "frame is too big",
            Status::Invalid => "invalid frame received",
            Status::NoVersion => "version value not found",
            Status::NoFrameSize => "max-frame-size value not found",
            Status::NoCapabilities => "capabilities value not found",
            Status::BadVersion => "unsupported version",
            Status::BadFrameSize => "max-frame-size too big or too small",
            Status::FragmentationUnsupported => "payload fragmentation is not supported",
            Status::Interlaced => "invalid interlaced frames",
            Status::FrameIdNotFound => "frame-id not found",
            Status::Resource => "resource allocation error",
            Status::Unknown => "an unknown error occurred",
        }
    }
}

/// A frame as it travels: the payload is not read until asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub frame_type: FrameType,
    pub flags: u32,
    pub stream_id: u64,
    pub frame_id: u64,
    pub payload: Bytes,
}

impl Frame {
    /// A frame of one piece (FIN set).
    pub fn new(frame_type: FrameType, stream_id: u64, frame_id: u64, payload: Bytes) -> Frame {
        Frame {
            frame_type,
            flags: FLAG_FIN,
            stream_id,
            frame_id,
            payload,
        }
    }

    /// Bytes of the frame after its 4-byte length.
    pub fn encoded_len(&self) -> usize {
        1 + 4 + varint_len(self.stream_id) + varint_len(self.frame_id) + self.payload.len()
    }

    /// AGENT-HELLO: the version, the frame size and the capabilities the agent takes.
    pub fn agent_hello(version: &str, max_frame_size: u32, capabilities: &str) -> Frame {
        let payload = kv_payload(&[
            ("version", Value::String(version.as_bytes())),
            ("max-frame-size", Value::Uint32(max_frame_size)),
            ("capabilities", Value::String(capabilities.as_bytes())),
        ]);
        Frame::new(FrameType::AgentHello, 0, 0, payload)
    }

    /// AGENT-DISCONNECT with a status and its message.
    pub fn agent_disconnect(status: Status, message: &str) -> Frame {
        Frame::new(
            FrameType::AgentDisconnect,
            0,
            0,
            disconnect_payload(status, message),
        )
    }

    /// HAPROXY-DISCONNECT (for tests and load generators playing HAProxy).
    pub fn haproxy_disconnect(status: Status, message: &str) -> Frame {
        Frame::new(
            FrameType::HaproxyDisconnect,
            0,
            0,
            disconnect_payload(status, message),
        )
    }

    /// An ACK of one NOTIFY frame, carrying `actions`.
    pub fn ack(stream_id: u64, frame_id: u64, actions: &[Action<'_>]) -> Frame {
        let mut buf = BytesMut::new();
        for action in actions {
            action.write(&mut buf);
        }
        Frame::new(FrameType::Ack, stream_id, frame_id, buf.freeze())
    }

    /// A NOTIFY frame of `messages`, each a name and its arguments (for tests and load
    /// generators playing HAProxy).
    pub fn notify(
        stream_id: u64,
        frame_id: u64,
        messages: &[(&str, &[(&str, Value<'_>)])],
    ) -> Frame {
        let mut buf = BytesMut::new();
        for (name, args) in messages {
            put_string(&mut buf, name.as_bytes());
            buf.put_u8(u8::try_from(args.len()).unwrap_or(u8::MAX));
            for (key, value) in args.iter().take(usize::from(u8::MAX)) {
                put_string(&mut buf, key.as_bytes());
                value.write(&mut buf);
            }
        }
        Frame::new(FrameType::Notify, stream_id, frame_id, buf.freeze())
    }
}

fn disconnect_payload(status: Status, message: &str) -> Bytes {
    kv_payload(&[
        ("status-code", Value::Uint32(status.code())),
        ("message", Value::String(message.as_bytes())),
    ])
}

/// A KV-LIST payload.
pub fn kv_payload(items: &[(&str, Value<'_>)]) -> Bytes {
    let mut buf = BytesMut::new();
    for (key, value) in items {
        put_string(&mut buf, key.as_bytes());
        value.write(&mut buf);
    }
    buf.freeze()
}

/// One typed value (section 3.1), strings and binaries borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int32(i32),
    Uint32(u32),
    Int64(i64),
    Uint64(u64),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    String(&'a [u8]),
    Binary(&'a [u8]),
}

impl Value<'_> {
    /// The value as an integer, when it is one (or a string of decimal digits with an
    /// optional `-`, as `set-var-fmt` writes a number).
    pub fn integer(&self) -> Option<i64> {
        match *self {
            Value::Int32(v) => Some(i64::from(v)),
            Value::Uint32(v) => Some(i64::from(v)),
            Value::Int64(v) => Some(v),
            Value::Uint64(v) => i64::try_from(v).ok(),
            Value::String(s) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    fn write(&self, buf: &mut BytesMut) {
        match *self {
            Value::Null => buf.put_u8(0),
            Value::Bool(b) => buf.put_u8(1 | (u8::from(b) << 4)),
            // Signed integers travel as their two's complement bit pattern.
            Value::Int32(v) => {
                buf.put_u8(2);
                put_varint(buf, u64::from(v as u32));
            }
            Value::Uint32(v) => {
                buf.put_u8(3);
                put_varint(buf, u64::from(v));
            }
            Value::Int64(v) => {
                buf.put_u8(4);
                put_varint(buf, v as u64);
            }
            Value::Uint64(v) => {
                buf.put_u8(5);
                put_varint(buf, v);
            }
            Value::Ipv4(ip) => {
                buf.put_u8(6);
                buf.put_slice(&ip.octets());
            }
            Value::Ipv6(ip) => {
                buf.put_u8(7);
                buf.put_slice(&ip.octets());
            }
            Value::String(s) => {
                buf.put_u8(8);
                put_bytes(buf, s);
            }
            Value::Binary(s) => {
                buf.put_u8(9);
                put_bytes(buf, s);
            }
        }
    }
}

/// A variable's scope in a set-var or unset-var action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Process,
    Session,
    Transaction,
    Request,
    Response,
}

impl Scope {
    fn byte(self) -> u8 {
        match self {
            Scope::Process => 0,
            Scope::Session => 1,
            Scope::Transaction => 2,
            Scope::Request => 3,
            Scope::Response => 4,
        }
    }

    fn from_byte(b: u8) -> Option<Scope> {
        Some(match b {
            0 => Scope::Process,
            1 => Scope::Session,
            2 => Scope::Transaction,
            3 => Scope::Request,
            4 => Scope::Response,
            _ => return None,
        })
    }
}

/// One action of an ACK (section 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    SetVar {
        scope: Scope,
        name: &'a [u8],
        value: Value<'a>,
    },
    UnsetVar {
        scope: Scope,
        name: &'a [u8],
    },
}

impl Action<'_> {
    fn write(&self, buf: &mut BytesMut) {
        match *self {
            Action::SetVar { scope, name, value } => {
                buf.put_slice(&[1, 3, scope.byte()]);
                put_string(buf, name);
                value.write(buf);
            }
            Action::UnsetVar { scope, name } => {
                buf.put_slice(&[2, 2, scope.byte()]);
                put_string(buf, name);
            }
        }
    }
}

/// Why a payload could not be read; the frame it came in is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The most bytes a varint of a `u64` takes (4 bits, then 7 per byte).
const MAX_VARINT_BYTES: usize = 10;

/// Bytes `put_varint` writes for `v`.
pub fn varint_len(mut v: u64) -> usize {
    if v < 240 {
        return 1;
    }
    let mut len = 2;
    v = (v - 240) >> 4;
    while v >= 128 {
        v = (v - 128) >> 7;
        len += 1;
    }
    len
}

/// Writes `v` in HAProxy's "peers" varint encoding: below 240 one byte; else the low 4
/// bits with the top four set, then 7 bits per byte, the high bit saying more follows.
pub fn put_varint(buf: &mut BytesMut, mut v: u64) {
    if v < 240 {
        buf.put_u8(v as u8);
        return;
    }
    buf.put_u8((v as u8) | 0xf0);
    v = (v - 240) >> 4;
    while v >= 128 {
        buf.put_u8((v as u8) | 0x80);
        v = (v - 128) >> 7;
    }
    buf.put_u8(v as u8);
}

fn put_bytes(buf: &mut BytesMut, s: &[u8]) {
    put_varint(buf, s.len() as u64);
    buf.put_slice(s);
}

fn put_string(buf: &mut BytesMut, s: &[u8]) {
    put_bytes(buf, s);
}

/// Reads a payload from the front.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// What is left to read.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.rest.split_first().ok_or(Malformed("truncated"))?;
        self.rest = rest;
        Ok(b)
    }

    pub fn u32_be(&mut self) -> Result<u32, Malformed> {
        let bytes = self.take(4)?;
        let mut word = [0; 4];
        word.copy_from_slice(bytes);
        Ok(u32::from_be_bytes(word))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.rest.len() {
            return Err(Malformed("truncated"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    /// A varint; one that does not fit 64 bits is malformed.
    pub fn varint(&mut self) -> Result<u64, Malformed> {
        let first = self.u8()?;
        if first < 240 {
            return Ok(u64::from(first));
        }
        let mut value = u64::from(first);
        let mut shift = 4u32;
        for _ in 1..MAX_VARINT_BYTES {
            let b = self.u8()?;
            let part = u64::from(b)
                .checked_shl(shift)
                .filter(|p| p >> shift == u64::from(b))
                .ok_or(Malformed("varint overflow"))?;
            value = value
                .checked_add(part)
                .ok_or(Malformed("varint overflow"))?;
            if b < 128 {
                return Ok(value);
            }
            shift += 7;
        }
        Err(Malformed("varint too long"))
    }

    /// A length-prefixed string or binary.
    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| Malformed("truncated"))?;
        self.take(len)
    }

    /// One typed value.
    pub fn value(&mut self) -> Result<Value<'a>, Malformed> {
        let tag = self.u8()?;
        Ok(match tag & 0x0f {
            0 => Value::Null,
            1 => Value::Bool(tag & 0x10 != 0),
            // The varint holds the bit pattern; values beyond 32 bits are malformed.
            2 => Value::Int32(self.u32_varint()? as i32),
            3 => Value::Uint32(self.u32_varint()?),
            4 => Value::Int64(self.varint()? as i64),
            5 => Value::Uint64(self.varint()?),
            6 => {
                let mut octets = [0; 4];
                octets.copy_from_slice(self.take(4)?);
                Value::Ipv4(Ipv4Addr::from(octets))
            }
            7 => {
                let mut octets = [0; 16];
                octets.copy_from_slice(self.take(16)?);
                Value::Ipv6(Ipv6Addr::from(octets))
            }
            8 => Value::String(self.bytes()?),
            9 => Value::Binary(self.bytes()?),
            _ => return Err(Malformed("unknown data type")),
        })
    }

    fn u32_varint(&mut self) -> Result<u32, Malformed> {
        let v = self.varint()?;
        // HAProxy encodes a negative 32-bit integer sign-extended to 64 bits.
        u32::try_from(v)
            .ok()
            .or_else(|| i32::try_from(v as i64).ok().map(|i| i as u32))
            .ok_or(Malformed("32-bit value out of range"))
    }

    /// One KV-LIST item: a name and its value.
    pub fn kv(&mut self) -> Result<(&'a [u8], Value<'a>), Malformed> {
        Ok((self.bytes()?, self.value()?))
    }
}

/// The items of a KV-LIST payload, in order; stops at the first malformed item.
pub fn kv_items(payload: &[u8]) -> impl Iterator<Item = Result<(&[u8], Value<'_>), Malformed>> {
    read_all(payload, Reader::kv)
}

/// Reads `payload` item after item with `read` until it ends or an item is malformed
/// (that error is the last item).
fn read_all<'a, T, F: FnMut(&mut Reader<'a>) -> Result<T, Malformed>>(
    payload: &'a [u8],
    mut read: F,
) -> impl Iterator<Item = Result<T, Malformed>> + use<'a, T, F> {
    let mut reader = Reader::new(payload);
    let mut failed = false;
    std::iter::from_fn(move || {
        if reader.is_empty() || failed {
            return None;
        }
        let item = read(&mut reader);
        failed = item.is_err();
        Some(item)
    })
}

/// One message of a NOTIFY frame: its name and its arguments, read on demand.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub name: &'a [u8],
    count: u8,
    args: &'a [u8],
}

impl<'a> Message<'a> {
    /// The arguments, in the order HAProxy sent them (an unnamed argument has an empty
    /// name). They were checked when the message was read, so none fails here.
    pub fn args(&self) -> impl Iterator<Item = (&'a [u8], Value<'a>)> {
        let mut reader = Reader::new(self.args);
        (0..self.count).map_while(move |_| reader.kv().ok())
    }

    pub fn arg_count(&self) -> usize {
        usize::from(self.count)
    }
}

/// The messages of a NOTIFY payload. Each is read whole (its arguments checked) before it
/// is returned; the first malformed one ends the list.
pub fn messages(payload: &[u8]) -> impl Iterator<Item = Result<Message<'_>, Malformed>> {
    read_all(payload, read_message)
}

fn read_message<'a>(reader: &mut Reader<'a>) -> Result<Message<'a>, Malformed> {
    let name = reader.bytes()?;
    let count = reader.u8()?;
    let start = reader.rest();
    for _ in 0..count {
        reader.kv()?;
    }
    let used = start.len() - reader.rest().len();
    Ok(Message {
        name,
        count,
        args: &start[..used],
    })
}

/// The actions of an ACK payload (for tests and load generators playing HAProxy).
pub fn actions(payload: &[u8]) -> impl Iterator<Item = Result<Action<'_>, Malformed>> {
    read_all(payload, read_action)
}

fn read_action<'a>(reader: &mut Reader<'a>) -> Result<Action<'a>, Malformed> {
    let kind = reader.u8()?;
    let count = reader.u8()?;
    let scope = Scope::from_byte(reader.u8()?).ok_or(Malformed("unknown variable scope"))?;
    let name = reader.bytes()?;
    match (kind, count) {
        (1, 3) => Ok(Action::SetVar {
            scope,
            name,
            value: reader.value()?,
        }),
        (2, 2) => Ok(Action::UnsetVar { scope, name }),
        _ => Err(Malformed("unknown action")),
    }
}
