//! Table-driven parser tests over real lines captured from HAProxy 2.6
//! (`tests/fixtures/haproxy/*.log`: one datagram a line; `*.tcp`: a ring's TCP stream).

use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

use super::{parse, Entry, LogRecord};
use crate::ingest::codec::{Frame, SyslogCodec};
use crate::syslog;

mod formats;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../../tests/fixtures/haproxy/", $name)).as_slice(),
        )
    };
}

/// A capture's name and bytes.
type Fixture = (&'static str, &'static [u8]);

/// Datagram captures in every header format HAProxy 2.6 sends, and syslog-file style.
const HEADER_VARIANTS: &[Fixture] = &[
    fixture!("a_default.log"),
    fixture!("a_rfc3164.log"),
    fixture!("a_rfc3164_host.log"),
    fixture!("b_rfc5424.log"),
    fixture!("b_rfc5424_host.log"),
    fixture!("b_rfc5424_sd.log"),
    fixture!("g_iso.log"),
    fixture!("g_priority.log"),
    fixture!("g_raw.log"),
    fixture!("g_short.log"),
    fixture!("g_timed.log"),
];

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

fn record(line: &[u8]) -> LogRecord<'_> {
    match parse(syslog::split(line).message) {
        Ok(Entry::Traffic(record)) => record,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
    }
}

/// One line per record, so a table row is easy to read and to diff.
fn render(r: &LogRecord<'_>) -> String {
    let t = |t: Option<u64>| t.map_or("-".to_string(), |v| v.to_string());
    format!(
        "{:?} {} {} {} {}/{} {}/{}/{}/{}/{} {} {} {} {}/{} {} {:?}{}",
        r.kind,
        r.client_ip,
        r.client_port,
        r.frontend_name,
        r.backend_name,
        r.server_name,
        t(r.request_wait),
        t(r.queued),
        t(r.connect),
        t(r.response),
        t(r.session),
        r.status_code,
        r.bytes_read,
        r.termination_state,
        r.server_queue,
        r.backend_queue,
        r.http_request_method,
        r.http_request_path,
        if r.truncated { " truncated" } else { "" },
    )
}

/// Real lines from `h_edge.log` (picked by a piece of each) and their records.
const EDGE: &[(&str, &str)] = &[
    (
        "/slow?ms=1500 ",
        r#"Http 127.0.0.1 35066 fe_http be_app/app1 0/0/0/-/502 504 198 sH 0/0 GET "/slow""#,
    ),
    (
        "be_down/dead1",
        r#"Http 127.0.0.1 35082 fe_http be_down/dead1 0/0/-/-/3006 503 217 SC 0/0 GET "/down""#,
    ),
    (
        "46632",
        r#"Http 127.0.0.1 46632 fe_http fe_http/<NOSRV> -/-/-/-/0 400 0 CR 0/0  """#,
    ),
    (
        "46648",
        r#"Http 127.0.0.1 46648 fe_http fe_http/<NOSRV> -/-/-/-/1000 408 0 cR 0/0  """#,
    ),
    (
        "/big ",
        r#"Http 127.0.0.1 46564 fe_abort be_pysrv/py1 0/0/0/0/514 200 3309532 CD 0/0 GET "/big""#,
    ),
    (
        "47598",
        r#"Http 127.0.0.1 47598 fe_asap be_app/app1 0/0/0/301/301 200 73 -- 0/0 GET "/slow""#,
    ),
    (
        "h2path",
        r#"Http 127.0.0.1 50978 fe_h2 be_app/app1 0/0/0/0/0 200 73 -- 0/0 GET "/h2path""#,
    ),
    (
        "/a#22b",
        r#"Http 127.0.0.1 46692 fe_http be_app/app1 0/0/0/0/0 200 73 -- 0/0 GET "/a\"b""#,
    ),
    (
        "/c{d}",
        r#"Http 127.0.0.1 46702 fe_http be_app/app1 0/0/0/0/0 200 73 -- 0/0 GET "/c{d}|e^f""#,
    ),
    (
        "/we%22ird",
        r#"Http 127.0.0.1 46742 fe_http be_app/app1 0/0/0/0/0 200 73 -- 0/0 GET "/we%22ird\\path""#,
    ),
    (
        "/tab%09x",
        r#"Http 127.0.0.1 46724 fe_http be_app/app1 0/0/0/0/0 200 73 -- 0/0 GET "/tab%09x""#,
    ),
];

#[test]
fn edge_cases_from_real_lines() {
    let (_, data) = fixture!("h_edge.log");
    for (pick, want) in EDGE {
        let mut matching = lines(data).filter(|l| contains(l, pick.as_bytes()));
        let line = matching
            .next()
            .unwrap_or_else(|| panic!("no line with {pick:?}"));
        assert!(matching.next().is_none(), "{pick:?} picks several lines");
        assert_eq!(render(&record(line)), *want, "{pick:?}");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn tcplog_lines() {
    let (_, data) = fixture!("d_tcplog.log");
    let got: Vec<String> = lines(data).map(|l| render(&record(l))).collect();
    assert_eq!(got.len(), 5);
    assert_eq!(
        got[4],
        r#"Tcp 127.0.0.1 43128 fe_tcp be_app_tcp/app1 -/1/0/-/503  66 -- 0/0  """#
    );
    assert_eq!(record(lines(data).next().unwrap()).status_class(), "");
}

#[test]
fn every_line_of_every_capture_is_counted() {
    let others = [
        (fixture!("h_edge.log"), 23),
        (fixture!("d_tcplog.log"), 5),
        (fixture!("k_unix.log"), 15),
        (fixture!("x_single_digit_day_faketime.log"), 2),
        (fixture!("i_len.log"), 2),
        (fixture!("i_len_5424.log"), 2),
        (fixture!("i_ringmaxlen_legacy.log"), 2),
    ];
    let variants = HEADER_VARIANTS.iter().map(|f| (*f, 15));
    for ((name, data), want) in others.into_iter().chain(variants) {
        assert_eq!(lines(data).map(record).count(), want, "{name}");
    }
}

#[test]
fn all_header_formats_give_the_same_records() {
    // The captures replay the same traffic; only ports, dates and headers differ.
    let key = |r: LogRecord<'_>| {
        format!(
            "{} {}/{} {} {} {} {}",
            r.frontend_name,
            r.backend_name,
            r.server_name,
            r.status_code,
            r.bytes_read,
            r.http_request_method,
            r.http_request_path
        )
    };
    let reference: Vec<String> = lines(HEADER_VARIANTS[0].1)
        .map(|l| key(record(l)))
        .collect();
    for (name, data) in HEADER_VARIANTS {
        let got: Vec<String> = lines(data).map(|l| key(record(l))).collect();
        assert_eq!(got, reference, "{name}");
    }
}

#[test]
fn lines_cut_by_len_are_counted_with_the_path_that_is_there() {
    for (name, data) in [fixture!("i_len.log"), fixture!("i_len_5424.log")] {
        let cut = lines(data).last().unwrap();
        let r = record(cut);
        assert!(r.truncated, "{name}");
        assert_eq!(r.http_request_method, "GET");
        assert!(r.http_request_path.starts_with("/long/bbbb"), "{name}");
        assert_eq!(r.status_code, "200");
    }
}

#[test]
fn ring_streams_in_both_framings() {
    let cases: &[(Fixture, usize, usize)] = &[
        (fixture!("f_ring_legacy.tcp"), 15, 0),
        (fixture!("f_ring_octet.tcp"), 15, 0),
        (fixture!("f_ring_5424_octet.tcp"), 15, 0),
        (fixture!("i_ringmaxlen.tcp"), 2, 1),
        (fixture!("i_ringmaxlen_legacy.tcp"), 2, 1),
    ];
    for ((name, data), want, want_truncated) in cases {
        let mut codec = SyslogCodec::new(65536, crate::ingest::codec::Framing::Auto);
        let mut buf = BytesMut::from(*data);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
            frames.push(frame);
        }
        let records: Vec<LogRecord<'_>> = frames
            .iter()
            .map(|f| match f {
                Frame::Line(line) => record(line),
                other => panic!("{name}: {other:?}"),
            })
            .collect();
        assert_eq!(records.len(), *want, "{name}");
        let truncated = records.iter().filter(|r| r.truncated).count();
        assert_eq!(truncated, *want_truncated, "{name}");
    }
}

#[test]
fn formats_not_yet_supported_are_rejected_not_ignored() {
    for (name, data) in [fixture!("c_clf.log"), fixture!("e_json.log")] {
        for line in lines(data) {
            let got = parse(syslog::split(line).message);
            assert_eq!(got.unwrap_err().reason(), "unrecognized_format", "{name}");
        }
    }
}

/// A real line with its client, frontend or layout changed as HAProxy writes them for
/// IPv6 clients, TLS frontends, redispatches and the pre-1.7 layout.
#[test]
fn derived_lines() {
    let cases: &[(&str, &str)] = &[
        (
            r#"<134>Nov 25 02:09:39 haproxy[1440]: ::1:47056 [25/Nov/2026:02:09:39.343] fe_http be_app/app1 0/0/0/0/0 200 73 - - ---- 3/1/0/0/0 0/0 "GET /index.html?user=alice&x=1 HTTP/1.1""#,
            r#"Http ::1 47056 fe_http be_app/app1 0/0/0/0/0 200 73 -- 0/0 GET "/index.html""#,
        ),
        (
            r#"<134>Nov 25 02:09:39 haproxy[1440]: 2001:db8::7:443 [25/Nov/2026:02:09:39.343] fe_https~ be_app/app1 1/2/3/4/10 302 0 - - --NI 3/1/0/0/+1 4/7 "POST /login HTTP/1.1""#,
            r#"Http 2001:db8::7 443 fe_https be_app/app1 1/2/3/4/10 302 0 -- 4/7 POST "/login""#,
        ),
        (
            r#"Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1""#,
            r#"Http 10.0.1.2 33317 http-in static/srv1 10/0/30/69/109 200 2750 -- 0/0 GET "/index.html""#,
        ),
        (
            r#"<134>1 2026-11-25T02:09:56+00:00 - haproxy 2246 - - 127.0.0.1:57376 [25/Nov/2026:02:09:56.857] fe_http be_app/<NOSRV> 0/-1/-1/-1/2 -1 0 - - CC-- 3/1/0/0/0 0/0 "GET / HTTP/1.1""#,
            r#"Http 127.0.0.1 57376 fe_http be_app/<NOSRV> 0/-/-/-/2 -1 0 CC 0/0 GET "/""#,
        ),
        (
            r#"<134>Nov 25 02:09:39 haproxy[1440]: 127.0.0.1:47056 [25/Nov/2026:02:09:39.343] fe_http be_app/app1 0/0/0/0/0 200 73 - - ---- 3/1/0/0/0 0/0 "GET"#,
            r#"Http 127.0.0.1 47056 fe_http be_app/app1 0/0/0/0/0 200 73 -- 0/0  "" truncated"#,
        ),
        (
            r#"<134>Nov 25 02:09:39 haproxy[1440]: 127.0.0.1:47056 [25/Nov/2026:02:09:39.343] fe_http be_app/app1 0/0/0/0/0 200 73 - - ---- 3/1/0/0/0 0/0 {www.exa"#,
            r#"Http 127.0.0.1 47056 fe_http be_app/app1 0/0/0/0/0 200 73 -- 0/0  "" truncated"#,
        ),
    ];
    for (line, want) in cases {
        let r = record(line.as_bytes());
        assert_eq!(render(&r), *want, "{line}");
    }
    assert_eq!(record(cases[3].0.as_bytes()).status_class(), "other");
    assert_eq!(record(cases[1].0.as_bytes()).status_class(), "3xx");
}

#[test]
fn notices_are_ignored_and_garbage_rejected() {
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("<133>Nov 25 02:09:39 haproxy[1]: Proxy fe_http started.", Ok("proxy_event")),
        ("<133>Nov 25 02:09:39 haproxy[1]: Stopping frontend fe_http in 0 ms.", Ok("proxy_event")),
        ("<129>Nov 25 02:09:39 haproxy[1]: Server be_app/app1 is DOWN, reason: Layer4 connection problem.", Ok("server_event")),
        ("<128>Nov 25 02:09:39 haproxy[1]: backend be_app has no server available!", Ok("server_event")),
        ("<134>Nov 25 02:09:39 haproxy[1]: SPOE: [agent-on-http-req] <EVENT:on-frontend-http-request> sid=1", Ok("spoe_event")),
        ("<133>Nov 25 02:09:39 haproxy[1]: Loading success.", Ok("other_notice")),
        ("<134>Nov 25 02:09:39 haproxy[1]: Connect from 127.0.0.1:34140 to 127.0.0.1:31080 (fe_main/HTTP)", Err("no_log_format")),
        ("<134>Nov 25 02:09:39 haproxy[1]: Connect from ::1:34140 to ::1:31080 (fe/TCP)", Err("no_log_format")),
        ("<134>Nov 25 02:09:39 haproxy[1]: Connect from unknown source to listener 3 (fe_main/HTTP)", Err("no_log_format")),
        ("<134>Nov 25 02:09:39 haproxy[1]: Connect to unix:1 (fe_unix/TCP)", Err("no_log_format")),
        ("<134>Nov 25 02:09:39 haproxy[1]: Connect from 127.0.0.1:1 to 127.0.0.1:2 (fe_main/SPOP)", Ok("other_notice")),
        ("<134>Nov 25 02:09:39 haproxy[1]: Connect from 127.0.0.1:1 to 127.0.0.1:2 (/HTTP)", Ok("other_notice")),
        ("<134>Nov 25 03:20:46 haproxy[1]: 127.0.0.1:55104 [25/Nov/2026:03:20:46.637] fe_tls/1: Connection closed during SSL handshake", Ok("connection_error")),
        ("<134>Nov 25 03:20:46 haproxy[1]: ::1:55104 [25/Nov/2026:03:20:46.637] fe_tls/1: SSL handshake failure", Ok("connection_error")),
        ("<134>Nov 25 02:09:39 haproxy[1]: ", Err("empty_line")),
        ("", Err("empty_line")),
        ("\u{1}\u{2}binary", Err("unrecognized_format")),
        ("<134>Nov 25 02:09:39 haproxy[1]: 127.0.0.1:1 [25/Nov/2026:02:09:39.343] fe", Err("bad_backend_server")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0 12 -- 1/1/1/1/0 0/0 extra", Err("trailing_data")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0/0 12 -- 1/1/1/1/0 0/0", Err("bad_timers")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0/0/x 200 12 - - ---- 1/1/1/1/0 0/0 \"GET / HTTP/1.1\"", Err("bad_timers")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0/0/0 2000 12 - - ---- 1/1/1/1/0 0/0 \"GET / HTTP/1.1\"", Err("bad_status_code")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0/0/0 200 -5 - - ---- 1/1/1/1/0 0/0 \"GET / HTTP/1.1\"", Err("bad_bytes_read")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0/0/0 200 5 - - --- 1/1/1/1/0 0/0 \"GET / HTTP/1.1\"", Err("bad_termination_state")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0/0/0 200 5 - - ---- 1/1/1/0 0/0 \"GET / HTTP/1.1\"", Err("bad_connection_counts")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0/0/0 200 5 - - ---- 1/1/1/1/0 00 \"GET / HTTP/1.1\"", Err("bad_queue_lengths")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0/0/0 200 5 - - ---- 1/1/1/1/0 0/0 GET", Err("bad_request_line")),
        ("127.0.0.1:1 [2] fe be/s 0/0/0/0/0 200 5 - - ---- 1/1/1/1/0 0/0 \"GET / HTTP/1.1\" x", Err("trailing_data")),
    ];
    for (line, want) in cases {
        let got = parse(syslog::split(line.as_bytes()).message);
        let got = match got {
            Ok(Entry::Notice(reason)) => Ok(reason),
            Ok(Entry::Traffic(r)) => panic!("{line:?} counted: {}", render(&r)),
            Err(e) => Err(e.reason()),
        };
        assert_eq!(got, *want, "{line:?}");
    }
}

#[test]
fn every_reason_is_listed() {
    use super::{IGNORE_REASONS, REJECT_REASONS};
    let mut all: Vec<&str> = REJECT_REASONS
        .iter()
        .chain(IGNORE_REASONS)
        .copied()
        .collect();
    let before = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), before, "a reason is listed twice");
    assert!(REJECT_REASONS.contains(&"bad_timers"));
}

proptest! {
    #[test]
    fn no_input_panics(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(syslog::split(&input).message);
    }

    /// Mutations of a real line: every prefix, and single-byte changes anywhere.
    #[test]
    fn mutated_real_lines_do_not_panic(pos in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
        let (_, data) = fixture!("h_edge.log");
        for line in lines(data).take(8) {
            let mut line = line.to_vec();
            let p = pos % line.len();
            line[p] = byte;
            line.truncate(cut.max(1).min(line.len()));
            if let Ok(Entry::Traffic(r)) = parse(syslog::split(&line).message) {
                prop_assert!(!r.frontend_name.is_empty());
            }
        }
    }
}

/// What rsyslog and syslog-ng forward and write, in each of their stock templates, for
/// each header HAProxy sends (`tests/fixtures/relay/README.md`): every line is read, with
/// the frontend and status HAProxy logged.
#[test]
fn lines_as_relays_pass_them_on() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/relay");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some((stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        let data = std::fs::read(&path).unwrap();
        let frames: Vec<Vec<u8>> = match ext {
            "tcp-octet" | "tcp-lf" => {
                let mut codec = SyslogCodec::new(65536, crate::ingest::codec::Framing::Auto);
                let mut buf = BytesMut::from(data.as_slice());
                let mut frames = Vec::new();
                while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
                    match frame {
                        Frame::Line(line) => frames.push(line.to_vec()),
                        other => panic!("{name}: {other:?}"),
                    }
                }
                frames
            }
            "udp" | "log" => lines(&data).map(<[u8]>::to_vec).collect(),
            _ => continue,
        };
        files += 1;
        let style = stem.rsplit('_').next().unwrap();
        let mut classes = [0; 6];
        let mut tcp = 0;
        for frame in &frames {
            let r = record(frame);
            match r.kind {
                super::EntryKind::Http => {
                    assert_eq!(r.frontend_name, format!("fe_http_{style}"), "{name}");
                    classes[usize::from(r.status_code.as_bytes()[0] - b'0')] += 1;
                }
                _ => {
                    assert_eq!(r.frontend_name, format!("fe_tcp_{style}"), "{name}");
                    tcp += 1;
                }
            }
        }
        assert_eq!((classes, tcp), ([0, 0, 2, 0, 3, 2], 2), "{name}");
    }
    assert_eq!(files, 63);
}

mod reference;

/// Real lines of every kind: the seeds of the mutations the parsers are compared on.
fn seed_lines() -> Vec<&'static [u8]> {
    let captures: [&'static [u8]; 12] = [
        fixture!("h_edge.log").1,
        fixture!("d_tcplog.log").1,
        fixture!("a_default.log").1,
        fixture!("a_rfc3164_host.log").1,
        fixture!("b_rfc5424_sd.log").1,
        fixture!("b_rfc5424_host.log").1,
        fixture!("g_iso.log").1,
        fixture!("g_timed.log").1,
        fixture!("i_len.log").1,
        fixture!("i_len_5424.log").1,
        fixture!("k_unix.log").1,
        fixture!("j_dontlognull.log").1,
    ];
    let mut seeds: Vec<&'static [u8]> = captures.into_iter().flat_map(lines).collect();
    seeds.extend(
        [
            "<134>Nov 25 10:00:02 haproxy[1234]: 10.1.78.174:11964 [25/Nov/2026:10:00:00.000] fe_api be_api/api1 188/0/0/2213/2401 200 2654 - - ---- 1894/1544/78/16/0 0/0 \"GET /api/v2/reports/40595/comments HTTP/1.1\"",
            "<134>Nov 25 10:00:00 haproxy[1234]: 160.102.148.8:45616 [25/Nov/2026:10:00:00.000] fe_https~ be_payments/pay2 0/0/0/3/3 200 487 - - ---- 1829/1277/75/5/0 0/0 {www.example.com|Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox} \"GET https://www.example.com/api/v1/invoices/8919/history HTTP/2.0\"",
            "<134>Nov 25 10:03:07 haproxy[1234]: 10.1.78.174:1202 [25/Nov/2026:10:00:00.002] fe_redis be_redis/redis2 0/0/187370 138 cD 160/127/31/0/0 0/0",
            "<134>1 2026-11-25T10:00:00.006056+00:00 lb1 haproxy 1234 - - 169.29.255.137:30119 [25/Nov/2026:10:00:00.000] fe_https~ be_api/api2 0/0/0/4/6 404 397 - - ---- 1155/436/42/11/0 3/3 {static.example.com|Go-http-client/2.0} \"GET /api/v2/comments/8919 HTTP/1.1\"",
            "<134>Nov 25 10:00:00 lb1 haproxy[1234]: ::1:1 [25/Nov/2026:10:00:00.000] fe be/<NOSRV> -1/-1/-1/-1/+12 -1 +0 - - CR-- 1/1/0/0/+3 0/0 {a} {b} \"POST http://h:80/a#20b?c HTTP/1.1\"",
            "<6>127.0.0.1:1 [25/Nov/2026:03:20:46.637] fe_tls/1: Connection closed during SSL handshake",
            "2026-11-25T02:11:10.724450+00:00 host haproxy[9]: 127.0.0.1:1 [2] fe be/s 0/0/0 12 -- 1/1/1/1/0 0/0",
        ]
        .map(str::as_bytes),
    );
    seeds
}

/// A byte a mutation puts in: one of the separators and the bytes that end fields, or
/// any byte.
fn mutation_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b" /:[]{}\"+-~0191#?<>|.\t\x7f\x80\xc3\xa9\xff\xef\xbb\xbf".to_vec()),
        any::<u8>(),
    ]
}

/// `seed` with each of `edits` applied: (position, 0 replace / 1 insert / 2 delete, byte).
fn mutate(seed: &[u8], edits: &[(usize, u8, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut line = seed.to_vec();
    for &(pos, op, byte) in edits {
        let p = pos % (line.len() + 1);
        match op {
            0 if p < line.len() => line[p] = byte,
            2 if p < line.len() => {
                line.remove(p);
            }
            _ => line.insert(p, byte),
        }
    }
    if let Some(cut) = cut {
        line.truncate(cut % (line.len() + 1));
    }
    line
}

/// The current parsers give what the reference ones give for `line`.
fn assert_same_as_reference(line: &[u8]) -> Result<(), TestCaseError> {
    let split = syslog::split(line);
    let want = reference::syslog::split(line);
    prop_assert_eq!(
        (split.priority, split.message),
        want,
        "{:?}",
        String::from_utf8_lossy(line)
    );
    prop_assert_eq!(
        parse(split.message),
        reference::parse(split.message),
        "{:?}",
        String::from_utf8_lossy(line)
    );
    Ok(())
}

#[test]
fn every_seed_line_is_read_as_the_reference_reads_it() {
    for line in seed_lines() {
        assert_same_as_reference(line).unwrap();
        for end in 0..=line.len() {
            assert_same_as_reference(&line[..end]).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Arbitrary bytes are read as the reference reads them.
    #[test]
    fn arbitrary_bytes_are_read_as_the_reference_reads_them(
        input in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        assert_same_as_reference(&input)?;
    }

    /// Real lines with bytes replaced, put in or taken out, and cut anywhere.
    #[test]
    fn mutated_lines_are_read_as_the_reference_reads_them(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<usize>(), 0u8..3, mutation_byte()), 0..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let seeds = seed_lines();
        let line = mutate(seeds[seed.index(seeds.len())], &edits, cut);
        assert_same_as_reference(&line)?;
    }

    /// Lines made of the pieces HAProxy's lines are made of, in any order.
    #[test]
    fn lines_of_pieces_are_read_as_the_reference_reads_them(
        header in prop::sample::select(vec![
            "", "<134>", "<134>Nov 25 10:00:02 haproxy[1234]: ", "<134>Nov  5 10:00:02 h haproxy[1]: ",
            "<134>1 2026-11-25T10:00:00.006056+00:00 lb1 haproxy 1234 - - ", "<134>1 2026-11-25T10:00:00Z - - - - - ",
            "Dec  9 12:00:03 host haproxy: ", "2026-11-25T02:11:10.724450+00:00 ",
        ]),
        pieces in proptest::collection::vec(prop::sample::select(vec![
            "1.2.3.4:5", "::1:80", "[25/Nov/2026:10:00:00.000]", "[2]", "fe", "fe~", "fe/1:", "be/s",
            "be/<NOSRV>", "0/0/0/0/0", "-1/0/+2/3/4", "0/0/0", "200", "-1", "12", "+12", "-",
            "----", "--", "cD", "1/1/1/1/0", "1/1/1/1/+1", "0/0", "{a|b}", "{x", "}", "\"GET / HTTP/1.1\"",
            "\"GET", "\"<BADREQ>\"", "/p?q", "#41", " ", "\u{e9}", "\u{feff}", "x",
        ]), 0..20),
        separator in prop::sample::select(vec![" ", " ", " ", "", "  "]),
    ) {
        let line = format!("{header}{}", pieces.join(separator));
        assert_same_as_reference(line.as_bytes())?;
    }
}
