//! Pipeline stage 2: framing a syslog TCP stream.
//!
//! HAProxy's `ring` sends either newline-terminated lines (`log-proto legacy`, the default,
//! RFC 6587 "non-transparent framing") or octet-counted frames (`log-proto octet-count`,
//! `LEN SP MSG`, no terminator). The framing is detected at the start of every frame: a
//! frame that starts with a non-zero digit run followed by a space is octet-counted.
//!
//! Problems are reported as items, never as decoder errors, because `FramedRead` ends the
//! stream after the first `Err` (tokio-rs/tokio#3976): one oversize frame must not cost the
//! rest of the connection.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// One item of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its terminator or trailing `\r`.
    Line(BytesMut),
    /// A frame longer than the maximum, of at least this many bytes, is being discarded.
    Oversize(usize),
    /// The stream ended inside an octet-counted frame, after this many of its bytes.
    Incomplete(usize),
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
}

/// Decodes both syslog TCP framings, detected per frame. Frames longer than `max_len`
/// bytes are discarded (reported once as `Frame::Oversize`) and decoding goes on.
#[derive(Debug)]
pub struct SyslogCodec {
    max_len: usize,
    state: State,
}

/// The most digits an octet count may have (RFC 6587 has no limit; 9 digits is 1 GB).
const MAX_LEN_DIGITS: usize = 9;

impl SyslogCodec {
    pub fn new(max_len: usize) -> Self {
        SyslogCodec {
            max_len,
            state: State::Start,
        }
    }
}

/// `\n` ends a line; some senders end frames with NUL instead.
fn is_terminator(b: u8) -> bool {
    b == b'\n' || b == b'\0'
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

impl Decoder for SyslogCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            match self.state {
                State::Start => {
                    // Stray terminators between frames (a CRLF, a newline after an
                    // octet-counted frame) are framing noise, not empty lines.
                    let skip = buf
                        .iter()
                        .position(|&b| !(is_terminator(b) || b == b'\r'))
                        .unwrap_or(buf.len());
                    buf.advance(skip);
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let digits = buf
                        .iter()
                        .take(MAX_LEN_DIGITS + 1)
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    if digits == buf.len() && digits <= MAX_LEN_DIGITS {
                        // Only digits so far: wait to see what follows them.
                        return Ok(None);
                    }
                    let octet_counted = digits > 0
                        && digits <= MAX_LEN_DIGITS
                        && buf[0] != b'0'
                        && buf[digits] == b' ';
                    if !octet_counted {
                        self.state = State::Newline { scanned: 0 };
                        continue;
                    }
                    let len = buf[..digits]
                        .iter()
                        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
                    buf.advance(digits + 1);
                    if len > self.max_len {
                        self.state = State::DiscardOctets { remaining: len };
                        return Ok(Some(Frame::Oversize(len)));
                    }
                    self.state = State::Octets { len };
                }
                State::Octets { len } => {
                    if buf.len() < len {
                        buf.reserve(len - buf.len());
                        return Ok(None);
                    }
                    self.state = State::Start;
                    let line = trim_cr(buf.split_to(len));
                    if !line.is_empty() {
                        return Ok(Some(Frame::Line(line)));
                    }
                }
                State::DiscardOctets { remaining } => {
                    let n = remaining.min(buf.len());
                    buf.advance(n);
                    if n < remaining {
                        self.state = State::DiscardOctets {
                            remaining: remaining - n,
                        };
                        return Ok(None);
                    }
                    self.state = State::Start;
                }
                State::Newline { scanned } => {
                    match buf[scanned..].iter().position(|&b| is_terminator(b)) {
                        Some(offset) => {
                            let line = buf.split_to(scanned + offset);
                            buf.advance(1);
                            self.state = State::Start;
                            let line = trim_cr(line);
                            if line.len() > self.max_len {
                                return Ok(Some(Frame::Oversize(line.len())));
                            }
                            if !line.is_empty() {
                                return Ok(Some(Frame::Line(line)));
                            }
                        }
                        None if buf.len() > self.max_len => {
                            let seen = buf.len();
                            buf.clear();
                            self.state = State::DiscardLine;
                            return Ok(Some(Frame::Oversize(seen)));
                        }
                        None => {
                            self.state = State::Newline { scanned: buf.len() };
                            return Ok(None);
                        }
                    }
                }
                State::DiscardLine => match buf.iter().position(|&b| is_terminator(b)) {
                    Some(end) => {
                        buf.advance(end + 1);
                        self.state = State::Start;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                },
            }
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
            // A last line without its newline is still a whole line.
            State::Start | State::Newline { .. } if !rest.is_empty() => {
                Some(Frame::Line(trim_cr(rest)))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` in pieces cut at `cuts` and collects every item, EOF included.
    fn decode_all(max_len: usize, input: &[u8], cuts: &[usize]) -> Vec<Frame> {
        let mut codec = SyslogCodec::new(max_len);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            buf.extend_from_slice(&input[start..cut]);
            start = cut;
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
            frames.push(frame);
        }
        frames
    }

    fn line(s: &str) -> Frame {
        Frame::Line(BytesMut::from(s))
    }

    const MIXED: &[u8] =
        b"<134>first line\r\n11 <134>second12 <134>third\n\n\0<6>fourth\n5 fifth\n";

    fn mixed_expected() -> Vec<Frame> {
        vec![
            line("<134>first line"),
            line("<134>second"),
            line("<134>third"),
            line("<6>fourth"),
            line("fifth"),
        ]
    }

    #[test]
    fn both_framings_are_detected_per_frame() {
        assert_eq!(decode_all(1024, MIXED, &[]), mixed_expected());
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        for cut in 0..=MIXED.len() {
            assert_eq!(
                decode_all(1024, MIXED, &[cut]),
                mixed_expected(),
                "cut at {cut}"
            );
        }
        for a in 0..=MIXED.len() {
            for b in a..=MIXED.len() {
                assert_eq!(
                    decode_all(1024, MIXED, &[a, b]),
                    mixed_expected(),
                    "cuts {a},{b}"
                );
            }
        }
    }

    #[test]
    fn oversize_newline_frame_is_skipped_across_reads() {
        let long = "x".repeat(50);
        let input = format!("ok1\n{long}\nok2\n");
        for cut in 0..=input.len() {
            let frames = decode_all(20, input.as_bytes(), &[cut]);
            assert_eq!(frames.len(), 3, "cut at {cut}: {frames:?}");
            assert_eq!(frames[0], line("ok1"));
            assert!(
                matches!(frames[1], Frame::Oversize(n) if n > 20),
                "cut at {cut}"
            );
            assert_eq!(frames[2], line("ok2"));
        }
    }

    #[test]
    fn oversize_octet_frame_is_skipped_across_reads() {
        let long = "y".repeat(50);
        let input = format!("3 ok150 {long}3 ok2");
        for cut in 0..=input.len() {
            let frames = decode_all(20, input.as_bytes(), &[cut]);
            assert_eq!(
                frames,
                vec![line("ok1"), Frame::Oversize(50), line("ok2")],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn line_of_exactly_max_len_is_kept() {
        let exact = "z".repeat(20);
        let frames = decode_all(20, format!("{exact}\n").as_bytes(), &[]);
        assert_eq!(frames, vec![line(&exact)]);
        let frames = decode_all(20, format!("{exact}\r\n").as_bytes(), &[]);
        assert_eq!(frames, vec![line(&exact)]);
    }

    #[test]
    fn end_of_stream() {
        assert_eq!(
            decode_all(100, b"no newline", &[]),
            vec![line("no newline")]
        );
        assert_eq!(decode_all(100, b"42", &[]), vec![line("42")]);
        assert_eq!(decode_all(100, b"10 abc", &[]), vec![Frame::Incomplete(3)]);
        assert_eq!(decode_all(100, b"\n\r\n\0", &[]), vec![]);
    }

    #[test]
    fn leading_zero_or_long_digit_runs_are_newline_framed() {
        assert_eq!(decode_all(100, b"0 x\n", &[]), vec![line("0 x")]);
        assert_eq!(
            decode_all(100, b"1234567890 x\n", &[]),
            vec![line("1234567890 x")]
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_never_yields_long_lines(
            input in proptest::collection::vec(any::<u8>(), 0..512),
            cut in 0usize..512,
            max_len in 1usize..64,
        ) {
            let cut = cut.min(input.len());
            for frame in decode_all(max_len, &input, &[cut]) {
                if let Frame::Line(l) = frame {
                    prop_assert!(l.len() <= max_len);
                    prop_assert!(!l.is_empty());
                }
            }
        }

        #[test]
        fn octet_counted_frames_round_trip(
            messages in proptest::collection::vec("[ -~]{1,40}", 1..8),
            cut in 0usize..400,
        ) {
            let mut input = Vec::new();
            for m in &messages {
                input.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
            }
            let cut = cut.min(input.len());
            let want: Vec<Frame> = messages
                .iter()
                .map(|m| m.trim_end_matches(['\r']))
                .filter(|m| !m.is_empty())
                .map(line)
                .collect();
            prop_assert_eq!(decode_all(1024, &input, &[cut]), want);
        }
    }
}
