//! The compiler and matcher against real lines: HAProxy's built-in formats compiled from
//! their strings must read the captures exactly as the hand-written parser does, and the
//! operators' own formats (custom, JSON) must give the fields their lines carry.

use super::*;
use crate::haproxy::{parse, Entry};
use crate::syslog;

mod compile;
mod fields;
mod wild;

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

fn message(line: &[u8]) -> &[u8] {
    syslog::split(line).message
}

fn extract<'a>(format: &Format, line: &'a [u8]) -> Result<LogRecord<'a>, Mismatch> {
    format.extract(message(line))
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/haproxy");

/// A capture of `tests/fixtures/haproxy` (`name` without extension): the log-format of
/// its configuration, compiled as written after `log-format`, and its lines.
fn capture_in_its_format(name: &str) -> (Format, Vec<u8>) {
    let cfg = std::fs::read_to_string(format!("{FIXTURES}/{name}.cfg")).unwrap();
    let written = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("log-format "))
        .unwrap();
    let log = std::fs::read(format!("{FIXTURES}/{name}.log")).unwrap();
    (compile(written).unwrap(), log)
}

#[test]
fn compiled_httplog_and_tcplog_agree_with_the_hand_written_parser() {
    let captures: [(&str, &[u8]); 4] = [
        (
            "httplog",
            include_bytes!("../../../../tests/fixtures/haproxy/h_edge.log"),
        ),
        (
            "httplog",
            include_bytes!("../../../../tests/fixtures/haproxy/a_rfc3164.log"),
        ),
        (
            "httplog",
            include_bytes!("../../../../tests/fixtures/haproxy/b_rfc5424_sd.log"),
        ),
        (
            "tcplog",
            include_bytes!("../../../../tests/fixtures/haproxy/d_tcplog.log"),
        ),
    ];
    let mut compared = 0;
    for (name, data) in captures {
        let format = Format::named_or_compiled(name).unwrap();
        for line in lines(data) {
            let Ok(Entry::Traffic(want)) = parse(message(line)) else {
                panic!("fixture line not counted by the parser");
            };
            if want.truncated {
                continue; // a cut line cannot match the whole format
            }
            let got = extract(&format, line).unwrap_or_else(|e| {
                panic!(
                    "{name}: {e:?} at {:?}",
                    String::from_utf8_lossy(&message(line)[e.offset..])
                )
            });
            // What only the forwarders' JSON reads, formats give in part.
            let want = LogRecord {
                connection_counts: "",
                captures: "",
                ..want
            };
            assert_eq!(got, want, "{name}: {}", String::from_utf8_lossy(line));
            compared += 1;
        }
    }
    assert_eq!(compared, 22 + 15 + 15 + 5);
}

/// The CLF capture replays the traffic of the default one: same records, field by field,
/// except what CLF does not carry (the client port is there; the accept date differs).
#[test]
fn clf_reads_like_httplog() {
    let clf = Format::named_or_compiled("clf").unwrap();
    let httplog: &[u8] = include_bytes!("../../../../tests/fixtures/haproxy/a_rfc3164.log");
    let clf_lines: &[u8] = include_bytes!("../../../../tests/fixtures/haproxy/c_clf.log");
    let key = |r: &LogRecord<'_>| {
        format!(
            "{} {}/{} {:?}/{:?}/{:?}/{:?}/{:?} {} {} {} {} {:?} {}/{}",
            r.frontend_name,
            r.backend_name,
            r.server_name,
            r.request_wait,
            r.queued,
            r.connect,
            r.response,
            r.session,
            r.status_code,
            r.bytes_read,
            r.termination_state,
            r.http_request_method,
            r.http_request_path,
            r.server_queue,
            r.backend_queue,
        )
    };
    let want: Vec<String> = lines(httplog)
        .map(|l| match parse(message(l)) {
            Ok(Entry::Traffic(r)) => key(&r),
            other => panic!("{other:?}"),
        })
        .collect();
    let got: Vec<String> = lines(clf_lines)
        .map(|l| {
            key(&extract(&clf, l)
                .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(l))))
        })
        .collect();
    // The two runs differ only in timings: compare everything but the timers.
    let strip = |k: &String| {
        k.split(' ')
            .filter(|p| !p.starts_with("Some") && !p.contains("None"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        got.iter().map(strip).collect::<Vec<_>>(),
        want.iter().map(strip).collect::<Vec<_>>()
    );
    let first = extract(&clf, lines(clf_lines).next().unwrap()).unwrap();
    assert_eq!(
        (first.client_ip.as_ref(), first.client_port),
        ("127.0.0.1", "47970")
    );
}

const E_CUSTOM: &str = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %U %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq rid=%ID m=%HM hp=%HP hpo=%HPO q=%HQ hu=%HU v=%HV ua=%{+Q}[var(txn.ua)] host=%[capture.req.hdr(0)] hr=%hr Th=%Th Ti=%Ti Tq=%Tq TT=%Tt";

#[test]
fn a_custom_format_with_samples_and_captures() {
    let mut format = compile(&format!("\"{E_CUSTOM}\"")).unwrap();
    let data: &[u8] = include_bytes!("../../../../tests/fixtures/haproxy/e_custom.log");
    let found = format.bind_custom(&[
        "%{+Q}[var(txn.ua)]",
        "%[capture.req.hdr(0)]",
        "%hr#0",
        "%nope",
    ]);
    assert_eq!(found, [true, true, true, false]);
    let mut agents = std::collections::BTreeMap::new();
    for line in lines(data) {
        let r = format
            .extract(message(line))
            .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(line)));
        let custom = r.custom;
        // The Host header from the sample fetch and from the capture block agree.
        assert_eq!(custom[1], custom[2]);
        assert_eq!(r.kind, EntryKind::Http);
        *agents.entry(custom[0].to_string()).or_insert(0) += 1;
        assert!(!custom[1].is_empty(), "{custom:?}");
        assert!(!r.http_request_path.contains('?'));
    }
    // A quoted sample value keeps its spaces; the HTTP/2 request had no User-Agent.
    let agents: Vec<(String, i32)> = agents.into_iter().collect();
    assert_eq!(
        agents,
        [
            ("".to_string(), 1),
            ("Mozilla/5.0 (X11; Linux) test agent".to_string(), 1),
            ("curl/7.88.1".to_string(), 13)
        ]
    );
    let second = extract(&format, lines(data).nth(1).unwrap()).unwrap();
    assert_eq!(second.http_request_path, "/index.html");
    assert_eq!(second.http_request_method, "GET");
    assert_eq!(second.status_code, "200");
    assert_eq!(second.bytes_read, 73);
}

#[test]
fn a_hand_written_json_format() {
    let format = compile(r#"'{"ci":"%ci","cp":%cp,"tr":"%tr","ft":"%ft","b":"%b","s":"%s","TR":%TR,"Tw":%Tw,"Tc":%Tc,"Tr":%Tr,"Ta":%Ta,"ST":%ST,"B":%B,"ts":"%tsc","m":"%HM","u":"%HU","v":"%HV"}'"#).unwrap();
    let data: &[u8] = include_bytes!("../../../../tests/fixtures/haproxy/e_json.log");
    let records: Vec<LogRecord<'_>> = lines(data)
        .map(|l| {
            extract(&format, l).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(l)))
        })
        .collect();
    assert_eq!(records.len(), 15);
    let down = records
        .iter()
        .find(|r| r.backend_name == "be_down")
        .unwrap();
    assert_eq!(
        (down.status_code, down.connect, down.session),
        ("503", None, Some(3005))
    );
    // HAProxy 2.6 does not escape the backslash; the template does not care.
    assert!(records
        .iter()
        .any(|r| r.http_request_path == "/back\\slash"));
    assert!(records
        .iter()
        .any(|r| r.http_request_path == "/h2/path" && r.frontend_name == "fe_h2"));
}

#[test]
fn lines_that_do_not_match_say_where() {
    let format = compile("%ci:%cp [%tr] %ft %ST rid=%ID").unwrap();
    let ok = format.extract(b"10.0.0.1:5 [x] fe 200 rid=abc");
    assert_eq!(ok.unwrap().status_code, "200");
    let bad = format
        .extract(b"10.0.0.1:5 [x] fe 2000 rid=abc")
        .unwrap_err();
    assert_eq!(bad.reason, "format_mismatch_at_%ST_col_19");
    let bad = format.extract(b"10.0.0.1:5 [x] fe 200 id=abc").unwrap_err();
    assert_eq!(bad.reason, "format_mismatch_at_col_23");
    assert_eq!(bad.offset, 22);
    let bad = format
        .extract(b"10.0.0.1:5 [x] fe 200 rid=abc extra")
        .unwrap_err();
    assert_eq!(bad.reason, "trailing_data");
}

#[test]
fn lines_cut_by_len_are_counted_once_the_status_is_read() {
    let httpslog = Format::named_or_compiled("httpslog").unwrap();
    let full = br#"127.0.0.1:5 [x] fe~ be/s 0/0/0/1/1 200 73 - - ---- 1/1/1/1/0 0/0 "GET /long/aaaa HTTP/1.1" 0/-/-/-/0 sni/TLSv1.3/TLS_AES"#;
    assert!(!httpslog.extract(full).unwrap().truncated);
    // Separators are the spaces outside the quoted request line.
    let in_quotes = |end: usize| full[..end].iter().filter(|&&b| b == b'"').count() % 2 == 1;
    for end in (full.len() - 60)..full.len() {
        if full[end] == b' ' && !in_quotes(end) && full[end - 1] == b'"' {
            // Ending on a closed field, just before a separator: another, shorter format.
            // (Ending after an unquoted field, the line may have been cut inside it.)
            assert!(httpslog.extract(&full[..end]).is_err(), "cut at {end}");
            continue;
        }
        let r = httpslog.extract(&full[..end]).unwrap_or_else(|e| {
            panic!(
                "cut at {end}: {e:?}: {}",
                String::from_utf8_lossy(&full[..end])
            )
        });
        // A cut inside the last field (`%sslc`) cannot be told from a whole line.
        let last_field = full.iter().rposition(|&b| b == b'/').unwrap() + 1;
        assert_eq!(r.truncated, end <= last_field, "cut at {end}");
        assert_eq!((r.status_code, r.bytes_read), ("200", 73));
    }
    let cut_in_uri = &full[..full.iter().position(|&b| b == b'a').unwrap() + 2];
    let r = httpslog.extract(cut_in_uri).unwrap();
    assert_eq!(
        (r.http_request_method, r.http_request_path.as_ref()),
        ("GET", "/long/aa")
    );
    // Before the status, a short line is a bad line, not a cut one.
    let before_status = &full[..full.iter().position(|&b| b == b'2').unwrap()];
    assert!(httpslog.extract(before_status).is_err());
    // CLF writes the status after the request: a line cut in the request is rejected.
    let clf = Format::named_or_compiled("clf").unwrap();
    assert!(clf
        .extract(br#"127.0.0.1 - - [25/Nov/2026:02:10:08 +0000] "GET /long/aa"#)
        .is_err());
}

/// A format is no catch-all for the lines of a shorter one that begins the same way.
#[test]
fn a_longer_format_does_not_take_a_shorter_ones_lines() {
    let httpslog = Format::named_or_compiled("httpslog").unwrap();
    let httplog: &[u8] = include_bytes!("../../../../tests/fixtures/haproxy/h_edge.log");
    for line in lines(httplog) {
        let r = extract(&httpslog, line);
        assert!(
            r.as_ref().map_or(true, |r| r.truncated),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    let whole = lines(httplog).filter(|l| l.ends_with(b"\"")).count();
    let rejected = lines(httplog)
        .filter(|l| extract(&httpslog, l).is_err())
        .count();
    assert!(rejected >= whole, "{rejected} of {whole}");
}

#[test]
fn ipv6_clients_and_empty_fields() {
    let format = compile("%ci:%cp %ft q=%HQ hu=%HU %ST").unwrap();
    let r = format
        .extract(b"2001:db8::1:443 fe~ q= hu=/a?b 204")
        .unwrap();
    assert_eq!(
        (r.client_ip.as_ref(), r.client_port, r.frontend_name),
        ("2001:db8::1", "443", "fe")
    );
    assert_eq!((r.http_request_path.as_ref(), r.status_code), ("/a", "204"));
}
