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

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// One item of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its terminator or trailing `\r`.
    Line(BytesMut),
    /// A frame longer than the maximum, of at least this many bytes, is being discarded.
    Oversize(usize),
    /// The stream ended inside a frame, after this many of its bytes.
    Incomplete(usize),
}

/// `HLE_SYSLOG_TCP_FRAMING`: how a TCP connection's frames are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Decided by each connection's first frame.
    Auto,
    /// RFC 6587 octet counting (`LEN SP MSG`), for every connection.
    OctetCount,
    /// Newline-terminated lines, for every connection; a leading number is data.
    Lf,
}

impl Framing {
    /// The variable's values, as written in the configuration.
    pub const NAMES: [(&'static str, Framing); 3] = [
        ("auto", Framing::Auto),
        ("octet-count", Framing::OctetCount),
        ("lf", Framing::Lf),
    ];
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

/// Decodes the syslog TCP framings of one connection. Frames longer than `max_len` bytes
/// (line ending excluded) are discarded (reported once as `Frame::Oversize`) and decoding
/// goes on.
#[derive(Debug)]
pub struct SyslogCodec {
    max_len: usize,
    /// Whether frames are octet-counted; `None` until an `auto` connection's first frame.
    octets: Option<bool>,
    state: State,
}

/// The most digits an octet count may have (RFC 6587 has no limit; 9 digits is 1 GB).
const MAX_LEN_DIGITS: usize = 9;

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
        }
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
                    if self.octets == Some(false) {
                        self.state = State::Newline { scanned: 0 };
                        continue;
                    }
                    let digits = match (prefix(buf), self.octets) {
                        (Prefix::Unknown, _) => return Ok(None),
                        (Prefix::Count { digits, priority }, None) => {
                            // An `auto` connection's first frame decides.
                            self.octets = Some(priority);
                            if !priority {
                                continue;
                            }
                            digits
                        }
                        (Prefix::Count { digits, .. }, Some(_)) => digits,
                        (Prefix::NoCount, octets) => {
                            self.octets = Some(octets.unwrap_or(false));
                            self.state = State::Newline { scanned: 0 };
                            continue;
                        }
                    };
                    let len = buf[..digits]
                        .iter()
                        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
                    buf.advance(digits + 1);
                    // The count includes any line ending; `Octets` checks the content.
                    if len > self.max_len.saturating_add(2) {
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
                    let frame = buf.split_to(len);
                    if content_len(&frame) > self.max_len {
                        return Ok(Some(Frame::Oversize(len)));
                    }
                    let line = trim_cr(frame);
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
                            let len = content_len(&line);
                            if len > self.max_len {
                                return Ok(Some(Frame::Oversize(len)));
                            }
                            let line = trim_cr(line);
                            if !line.is_empty() {
                                return Ok(Some(Frame::Line(line)));
                            }
                        }
                        None if content_len(buf) > self.max_len => {
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` in pieces cut at `cuts` and collects every item, EOF included, on
    /// an `auto` connection.
    fn decode_all(max_len: usize, input: &[u8], cuts: &[usize]) -> Vec<Frame> {
        decode_with(Framing::Auto, max_len, input, cuts)
    }

    fn decode_with(framing: Framing, max_len: usize, input: &[u8], cuts: &[usize]) -> Vec<Frame> {
        let mut codec = SyslogCodec::new(max_len, framing);
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

    /// On an octet-counted connection, a frame without a count is read as a line.
    #[test]
    fn octet_counting_reads_a_frame_without_count_as_a_line() {
        let octets = decode_with(Framing::OctetCount, 1024, MIXED, &[]);
        assert_eq!(octets, mixed_expected());
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        for cut in 0..=MIXED.len() {
            assert_eq!(
                decode_with(Framing::OctetCount, 1024, MIXED, &[cut]),
                mixed_expected(),
                "cut at {cut}"
            );
        }
        for a in 0..=MIXED.len() {
            for b in a..=MIXED.len() {
                assert_eq!(
                    decode_with(Framing::OctetCount, 1024, MIXED, &[a, b]),
                    mixed_expected(),
                    "cuts {a},{b}"
                );
            }
        }
    }

    /// The first frame decides for the whole connection, however the bytes arrive.
    #[test]
    fn auto_decides_once_per_connection() {
        let octets = b"10 <134>first11 <134>second3 abc";
        let lf = b"<134>first\n12 <134>second\n";
        let counted_lf = b"200 73 127.0.0.1:1 GET\n4096 oops\n5 <134>x\n";
        let cases: [(&[u8], Vec<Frame>); 3] = [
            (
                octets,
                vec![line("<134>first"), line("<134>second"), line("abc")],
            ),
            (lf, vec![line("<134>first"), line("12 <134>second")]),
            (
                counted_lf,
                vec![
                    line("200 73 127.0.0.1:1 GET"),
                    line("4096 oops"),
                    line("5 <134>x"),
                ],
            ),
        ];
        for (input, want) in cases {
            for cut in 0..=input.len() {
                assert_eq!(decode_all(1024, input, &[cut]), want, "cut at {cut}");
            }
        }
    }

    #[test]
    fn fixed_framings_ignore_what_the_first_frame_looks_like() {
        let input = b"200 73 127.0.0.1:1 GET\n4096 oops\n";
        assert_eq!(
            decode_with(Framing::Lf, 1024, input, &[]),
            vec![line("200 73 127.0.0.1:1 GET"), line("4096 oops")]
        );
        // Counted as it says, as octet counting asks: `200 ` takes 200 bytes.
        assert_eq!(
            decode_with(Framing::OctetCount, 1024, b"5 hello6 world!", &[]),
            vec![line("hello"), line("world!")]
        );
        assert_eq!(
            decode_with(Framing::Lf, 1024, b"11 <134>first\n", &[]),
            vec![line("11 <134>first")]
        );
    }

    /// A connection cut by us: the frame begun is incomplete, complete ones are not.
    #[test]
    fn a_cut_connection_reports_its_partial_frame() {
        let cases: [(Framing, &[u8], Option<Frame>); 6] = [
            (
                Framing::Auto,
                b"<134>a\n<134>par",
                Some(Frame::Incomplete(8)),
            ),
            (Framing::Auto, b"<134>a\n", None),
            (Framing::Auto, b"<134>a\r\n\r", None),
            (
                Framing::OctetCount,
                b"6 <134>a10 <134>",
                Some(Frame::Incomplete(5)),
            ),
            (
                Framing::OctetCount,
                b"6 <134>a10",
                Some(Frame::Incomplete(2)),
            ),
            (Framing::Lf, b"<134>a\nxyz", Some(Frame::Incomplete(3))),
        ];
        for (framing, input, want) in cases {
            let mut codec = SyslogCodec::new(1024, framing);
            let mut buf = BytesMut::from(input);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                assert_eq!(frame, line("<134>a"));
            }
            assert_eq!(codec.cut(&mut buf), want, "{framing:?} {input:?}");
        }
    }

    /// The CR of a CRLF never counts against the limit, whether or not CR and LF arrive
    /// in the same read.
    #[test]
    fn crlf_at_the_limit_is_kept_at_every_split() {
        let exact = "z".repeat(20);
        let newline = format!("<1>a\r\n{exact}\r\n<1>b\r\n");
        let octets = format!("6 <1>a\r\n22 {exact}\r\n6 <1>b\r\n");
        for input in [newline, octets] {
            for cut in 0..=input.len() {
                assert_eq!(
                    decode_all(20, input.as_bytes(), &[cut]),
                    vec![line("<1>a"), line(&exact), line("<1>b")],
                    "{input:?} cut at {cut}"
                );
            }
        }
        let over = format!("<1>a\r\n{exact}z\r\n<1>b\r\n");
        for cut in 0..=over.len() {
            let frames = decode_all(20, over.as_bytes(), &[cut]);
            assert_eq!(frames.len(), 3, "cut at {cut}: {frames:?}");
            assert!(
                matches!(frames[1], Frame::Oversize(n) if n >= 21),
                "cut at {cut}"
            );
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
            let frames = decode_with(Framing::OctetCount, 20, input.as_bytes(), &[cut]);
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
        assert_eq!(decode_all(100, b"10 <bc", &[]), vec![Frame::Incomplete(3)]);
        assert_eq!(decode_all(100, b"10 abc", &[]), vec![line("10 abc")]);
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
            let frames = Framing::NAMES
                .iter()
                .flat_map(|&(_, framing)| decode_with(framing, max_len, &input, &[cut]));
            for frame in frames {
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
            let framing = if messages[0].starts_with('<') { Framing::Auto } else { Framing::OctetCount };
            let want: Vec<Frame> = messages
                .iter()
                .map(|m| m.trim_end_matches(['\r']))
                .filter(|m| !m.is_empty())
                .map(line)
                .collect();
            prop_assert_eq!(decode_with(framing, 1024, &input, &[cut]), want);
        }
    }
}
