//! Framing a syslog TCP stream into lines.
//!
//! HAProxy's `ring` sends either newline-terminated lines (`log-proto legacy`, the default,
//! RFC 6587 "non-transparent framing") or octet-counted frames (`log-proto octet-count`,
//! `LEN SP MSG`, no terminator); so do rsyslog and syslog-ng. A connection keeps one
//! framing, so it is decided once per connection (`HLE_SYSLOG_TCP_FRAMING=auto`): octet
//! counting when the first frame starts with a count, a space and `<` (a syslog
//! priority), newline framing otherwise. Deciding per frame would read a newline-framed
//! line that happens to start with a number and a space (`200 73 ...`, a custom format
//! starting with `%ST`) as a count, and lose the lines the count swallows.
//!
//! On an octet-counted connection a frame that does not start with a count is read up
//! to the next newline, as rsyslog does: one bad frame never costs the frames after it.
//!
//! Problems are reported as items, never as decoder errors, because `FramedRead` ends the
//! stream after the first `Err` (tokio-rs/tokio#3976): one oversize frame must not cost the
//! rest of the connection.
//!
//! A codec given an [`Account`] of the shared [`Budget`] records what its buffer holds
//! each time it has taken every complete frame out (all that is left is the start of the
//! next one); when the budget refuses, the frame is dropped as `Frame::OverBudget` and
//! the codec reads nothing more: the connection is to be closed.

pub mod budget;

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use budget::Account;
pub use budget::Budget;

pub use crate::config::Framing;

/// One item of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its terminator or trailing `\r`.
    Line(BytesMut),
    /// A frame longer than the maximum, of at least this many bytes, is being discarded.
    Oversize(usize),
    /// The stream ended inside a frame, after this many of its bytes.
    Incomplete(usize),
    /// The frame of this many bytes so far was dropped because the connections' buffer
    /// budget would not hold it; the codec yields nothing more.
    OverBudget(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames: the framing of the next one is not known yet.
    Start,
    /// Inside a newline-terminated frame; `scanned` bytes hold no terminator.
    Newline { scanned: usize },
    /// Inside an octet-counted frame of `len` bytes (its prefix already consumed).
    Octets { len: usize },
    /// Skipping the rest of an oversize newline-terminated frame.
    DiscardLine,
    /// Skipping the `remaining` bytes of an oversize octet-counted frame.
    DiscardOctets { remaining: usize },
    /// Cut for the budget: everything further is dropped unread.
    Cut,
}

/// Decodes the syslog TCP framings of one connection. Frames longer than `max_len` bytes
/// (line ending excluded) are discarded (reported once as `Frame::Oversize`) and decoding
/// goes on.
#[derive(Debug)]
pub struct SyslogCodec {
    max_len: usize,
    /// Whether frames are octet-counted; `None` until an `auto` connection's first frame.
    octets: Option<bool>,
    state: State,
    /// What this connection holds of the shared budget, if it has one.
    account: Option<Account>,
}

/// The most digits an octet count may have (RFC 6587 has no limit; 9 digits is 1 GB).
const MAX_LEN_DIGITS: usize = 9;

/// Room reserved at once for the rest of an octet-counted frame; a larger frame's buffer
/// grows as its bytes arrive. A count is only a claim: reserving all of it for every
/// connection that sends one would allocate `HLE_MAX_LINE_BYTES` each before a byte
/// of the frame came.
const RESERVE_AHEAD: usize = 1 << 20;

impl SyslogCodec {
    pub fn new(max_len: usize, framing: Framing) -> Self {
        SyslogCodec {
            max_len,
            octets: match framing {
                Framing::Auto => None,
                Framing::OctetCount => Some(true),
                Framing::Lf => Some(false),
            },
            state: State::Start,
            account: None,
        }
    }

    /// The codec with its connection's account of the shared budget.
    pub fn with_budget(mut self, account: Account) -> Self {
        self.account = Some(account);
        self
    }

    /// This connection's account, if the codec has one.
    pub fn account(&self) -> Option<&Account> {
        self.account.as_ref()
    }

    /// Drops the frame begun in `buf` for the budget (`Frame::OverBudget`, unless nothing
    /// was begun), frees the buffer, and reads nothing more. Call after `decode` has
    /// returned every complete frame.
    pub fn shed(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        let state = std::mem::replace(&mut self.state, State::Cut);
        let len = buf.len();
        *buf = BytesMut::new();
        if let Some(account) = &mut self.account {
            // Giving back never fails.
            let _ = account.hold(0);
        }
        (state != State::Cut && len > 0).then_some(Frame::OverBudget(len))
    }

    /// The frame the stream was cut inside of, when the connection is closed by us (at
    /// shutdown, or after the idle timeout) rather than by the peer: the bytes of a frame
    /// begun and not finished. Call after `decode` has returned every complete frame.
    pub fn cut(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        let state = std::mem::replace(&mut self.state, State::Start);
        let rest = buf.split();
        let begun = rest.iter().any(|&b| !(is_terminator(b) || b == b'\r'));
        match state {
            State::Octets { .. } => Some(Frame::Incomplete(rest.len())),
            State::Start | State::Newline { .. } if begun => Some(Frame::Incomplete(rest.len())),
            _ => None,
        }
    }

    /// Records what `buf` holds in the account; a refusal sheds it.
    fn account_for(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        let refused = self
            .account
            .as_mut()
            .is_some_and(|account| account.hold(buf.len()).is_err());
        if refused {
            self.shed(buf)
        } else {
            None
        }
    }
}

/// `\n` ends a line; some senders end frames with NUL instead.
fn is_terminator(b: u8) -> bool {
    b == b'\n' || b == b'\0'
}

/// The first terminator in `bytes`, found with memchr: many bytes at a time.
fn find_terminator(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\0', bytes)
}

fn trim_cr(mut line: BytesMut) -> BytesMut {
    while line
        .last()
        .is_some_and(|&b| b == b'\r' || b == b'\n' || b == b'\0')
    {
        line.truncate(line.len() - 1);
    }
    line
}

/// The length that counts against the limit: without the line ending (a terminator, and
/// the CR of a CRLF), so that a line of exactly the limit is kept however its CR and LF
/// are split between reads.
fn content_len(bytes: &[u8]) -> usize {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes).len()
}

/// What the start of a frame says about octet counting.
enum Prefix {
    /// `LEN SP` with this many digits, followed by `<` (`Some(true)`) or something else.
    Count { digits: usize, priority: bool },
    /// Not a count.
    NoCount,
    /// Too few bytes to tell.
    Unknown,
}

fn prefix(buf: &[u8]) -> Prefix {
    let digits = buf
        .iter()
        .take(MAX_LEN_DIGITS + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == buf.len() && digits <= MAX_LEN_DIGITS {
        // Only digits so far: wait to see what follows them.
        return Prefix::Unknown;
    }
    if digits == 0 || digits > MAX_LEN_DIGITS || buf[0] == b'0' || buf[digits] != b' ' {
        return Prefix::NoCount;
    }
    match buf.get(digits + 1) {
        None => Prefix::Unknown,
        Some(&next) => Prefix::Count {
            digits,
            priority: next == b'<',
        },
    }
}

/// What one state of the decoder did with the buffer.
enum Step {
    /// Moved to another state: go on.
    Continue,
    /// Done for now: a frame, or `None` when more bytes are needed.
    Yield(Option<Frame>),
}

impl SyslogCodec {
    /// Between frames: skips framing noise and tells what the next frame is.
    fn start(&mut self, buf: &mut BytesMut) -> Step {
        // Stray terminators between frames (a CRLF, a newline after an octet-counted
        // frame) are framing noise, not empty lines.
        let skip = buf
            .iter()
            .position(|&b| !(is_terminator(b) || b == b'\r'))
            .unwrap_or(buf.len());
        buf.advance(skip);
        if buf.is_empty() {
            return Step::Yield(None);
        }
        if self.octets == Some(false) {
            self.state = State::Newline { scanned: 0 };
            return Step::Continue;
        }
        let digits = match (prefix(buf), self.octets) {
            (Prefix::Unknown, _) => return Step::Yield(None),
            (Prefix::Count { digits, priority }, None) => {
                // An `auto` connection's first frame decides.
                self.octets = Some(priority);
                if !priority {
                    return Step::Continue;
                }
                digits
            }
            (Prefix::Count { digits, .. }, Some(_)) => digits,
            (Prefix::NoCount, octets) => {
                self.octets = Some(octets.unwrap_or(false));
                self.state = State::Newline { scanned: 0 };
                return Step::Continue;
            }
        };
        let len = buf[..digits]
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        buf.advance(digits + 1);
        // The count includes any line ending; `octet_frame` checks the content.
        if len > self.max_len.saturating_add(2) {
            self.state = State::DiscardOctets { remaining: len };
            return Step::Yield(Some(Frame::Oversize(len)));
        }
        self.state = State::Octets { len };
        Step::Continue
    }

    /// Inside an octet-counted frame of `len` bytes.
    fn octet_frame(&mut self, buf: &mut BytesMut, len: usize) -> Step {
        if buf.len() < len {
            buf.reserve((len - buf.len()).min(RESERVE_AHEAD));
            return Step::Yield(None);
        }
        self.state = State::Start;
        let frame = buf.split_to(len);
        if content_len(&frame) > self.max_len {
            return Step::Yield(Some(Frame::Oversize(len)));
        }
        let line = trim_cr(frame);
        if line.is_empty() {
            return Step::Continue;
        }
        Step::Yield(Some(Frame::Line(line)))
    }

    /// Skipping what is left of an oversize octet-counted frame.
    fn discard_octets(&mut self, buf: &mut BytesMut, remaining: usize) -> Step {
        let n = remaining.min(buf.len());
        buf.advance(n);
        if n < remaining {
            self.state = State::DiscardOctets {
                remaining: remaining - n,
            };
            return Step::Yield(None);
        }
        self.state = State::Start;
        Step::Continue
    }

    /// Inside a newline-terminated frame whose first `scanned` bytes hold no terminator.
    fn newline(&mut self, buf: &mut BytesMut, scanned: usize) -> Step {
        match find_terminator(&buf[scanned..]) {
            Some(offset) => {
                let line = buf.split_to(scanned + offset);
                buf.advance(1);
                self.state = State::Start;
                let len = content_len(&line);
                if len > self.max_len {
                    return Step::Yield(Some(Frame::Oversize(len)));
                }
                let line = trim_cr(line);
                if line.is_empty() {
                    return Step::Continue;
                }
                Step::Yield(Some(Frame::Line(line)))
            }
            None if content_len(buf) > self.max_len => {
                let seen = buf.len();
                buf.clear();
                self.state = State::DiscardLine;
                Step::Yield(Some(Frame::Oversize(seen)))
            }
            None => {
                self.state = State::Newline { scanned: buf.len() };
                Step::Yield(None)
            }
        }
    }

    /// Skipping the rest of an oversize newline-terminated frame.
    fn discard_line(&mut self, buf: &mut BytesMut) -> Step {
        match find_terminator(buf) {
            Some(end) => {
                buf.advance(end + 1);
                self.state = State::Start;
                Step::Continue
            }
            None => {
                buf.clear();
                Step::Yield(None)
            }
        }
    }
}

impl Decoder for SyslogCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        let frame = loop {
            let step = match self.state {
                State::Start => self.start(buf),
                State::Octets { len } => self.octet_frame(buf, len),
                State::DiscardOctets { remaining } => self.discard_octets(buf, remaining),
                State::Newline { scanned } => self.newline(buf, scanned),
                State::DiscardLine => self.discard_line(buf),
                State::Cut => {
                    buf.clear();
                    return Ok(None);
                }
            };
            if let Step::Yield(frame) = step {
                break frame;
            }
        };
        match frame {
            // More frames may follow in `buf`: only what was given back is recorded.
            Some(frame) => {
                if let Some(account) = self.account.as_mut().filter(|a| buf.len() < a.held()) {
                    let _ = account.hold(buf.len());
                }
                Ok(Some(frame))
            }
            // Every complete frame is out: `buf` holds the start of the next one.
            None => Ok(self.account_for(buf)),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // What is left is the start of a frame that will never be finished.
        let state = std::mem::replace(&mut self.state, State::Start);
        let rest = buf.split();
        Ok(match state {
            State::Octets { .. } => Some(Frame::Incomplete(rest.len())),
            // A last line without its newline, the peer having closed the connection, is
            // still a whole line.
            State::Start | State::Newline { .. } if !rest.is_empty() => {
                Some(Frame::Line(trim_cr(rest)))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests;
