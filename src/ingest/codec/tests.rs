//! The codec split at every byte, both framings, limits and cut streams.

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

const MIXED: &[u8] = b"<134>first line\r\n11 <134>second12 <134>third\n\n\0<6>fourth\n5 fifth\n";

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

/// A codec whose budget refuses what its buffer holds drops that frame, once, and reads
/// nothing more; complete frames before it are still yielded.
#[test]
fn a_frame_over_the_budget_is_dropped_and_the_codec_stops() {
    for framing in [Framing::Lf, Framing::OctetCount] {
        let budget = Budget::new(100, prometheus::IntGauge::new("held", "held").unwrap());
        let mut codec = SyslogCodec::new(1000, framing).with_budget(budget.account());
        let mut buf = BytesMut::from(&b"<134>a\n"[..]);
        if framing == Framing::OctetCount {
            buf = BytesMut::from(&b"6 <134>a500 <134>"[..]);
        }
        let first = codec.decode(&mut buf).unwrap();
        assert_eq!(first, Some(line("<134>a")), "{framing:?}");
        assert_eq!(codec.decode(&mut buf).unwrap(), None, "{framing:?}");
        assert_eq!(budget.held(), buf.len(), "{framing:?}");
        buf.extend_from_slice(&[b'x'; 150]);
        let held = buf.len();
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::OverBudget(held)),
            "{framing:?}"
        );
        assert_eq!(budget.held(), 0);
        buf.extend_from_slice(b"more\n<134>b\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), None, "{framing:?}");
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None, "{framing:?}");
        assert_eq!(codec.cut(&mut buf), None, "{framing:?}");
        drop(codec);
        assert_eq!(budget.held(), 0);
    }
}
