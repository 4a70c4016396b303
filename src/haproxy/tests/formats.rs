//! `Parser` with several formats: which one reads a line, which reason a line that none
//! reads gets, and HAProxy's own lines, whatever the formats.

use crate::haproxy::Entry;

#[test]
fn connection_errors_are_notices_for_compiled_formats_too() {
    use crate::haproxy::format::Format;
    use crate::haproxy::{LineFormat, Parser};
    let parser = Parser::new(vec![LineFormat::Compiled(
        Format::named_or_compiled("httpslog").unwrap(),
    )]);
    let line = b"127.0.0.1:55104 [25/Nov/2026:03:20:46.637] fe_tls/1: Connection closed during SSL handshake";
    assert_eq!(parser.parse(line), Ok(Entry::Notice("connection_error")));
}

#[test]
fn the_reason_comes_from_the_format_that_matched_furthest() {
    use crate::haproxy::format::Format;
    use crate::haproxy::{LineFormat, Parser};
    let compiled = |name| LineFormat::Compiled(Format::named_or_compiled(name).unwrap());
    let httpslog_line = br#"127.0.0.1:5 [x] fe be/s 0/0/0/1/1 200 73 - - ---- 1/1/1/1/0 0/0 "GET / HTTP/1.1" 0/-/-/-/0 sni/TLSv1.3/X extra"#;
    for formats in [
        vec![compiled("clf"), compiled("httpslog")],
        vec![compiled("httpslog"), compiled("clf")],
    ] {
        let reason = Parser::new(formats)
            .parse(httpslog_line)
            .unwrap_err()
            .reason();
        assert_eq!(reason, "trailing_data");
    }
    let clf_line = br#"127.0.0.1 - - [25/Nov/2026:02:10:08 +0000] "GET / HTTP/1.1" 2000 73"#;
    let parser = Parser::new(vec![LineFormat::BuiltIn, compiled("clf")]);
    let reason = parser.parse(clf_line).unwrap_err().reason();
    assert!(reason.starts_with("format_mismatch_at_%ST"), "{reason}");
}

/// A cut match in one format gives way to a whole match in a later one.
#[test]
fn whole_matches_win_over_cut_ones() {
    use crate::haproxy::format::Format;
    use crate::haproxy::{LineFormat, Parser};
    let custom = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq host=%hr route=%[var(txn.route)] %{+Q}r";
    let mut custom = Format::named_or_compiled(custom).unwrap();
    custom.bind_custom(&["%[var(txn.route)]"]);
    let parser = Parser::new(vec![
        LineFormat::Compiled(Format::named_or_compiled("httpslog").unwrap()),
        LineFormat::BuiltIn,
        LineFormat::Compiled(custom),
    ]);
    let line = br#"127.0.0.1:5 [x] fe be/s 0/0/0/1/1 200 73 ---- 1/1/1/1/0 0/0 host={www.e2e.test} route=api "GET /x HTTP/1.1""#;
    match parser.parse(line) {
        Ok(Entry::Traffic(r)) => {
            assert_eq!(
                (r.custom[0], r.termination_state, r.truncated),
                ("api", "--", false)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connection_lines_are_rejected_for_every_format_and_name_the_fix() {
    use crate::haproxy::format::Format;
    use crate::haproxy::{ConnectionLine, LineFormat, Parser};
    let line = b"Connect from 127.0.0.1:34140 to 127.0.0.1:31080 (fe.main-1/HTTP)";
    for parser in [
        Parser::default(),
        Parser::new(vec![LineFormat::Compiled(
            Format::named_or_compiled("clf").unwrap(),
        )]),
    ] {
        assert_eq!(
            parser.parse(line).map_err(|e| e.reason()),
            Err("no_log_format")
        );
    }
    let http = ConnectionLine::parse(line).unwrap();
    assert_eq!(
        (http.frontend, http.fix()),
        (&b"fe.main-1"[..], "option httplog")
    );
    let tcp = ConnectionLine::parse(b"Connect to unix:1 (fe/TCP) ").unwrap();
    assert_eq!((tcp.frontend, tcp.fix()), (&b"fe"[..], "option tcplog"));
    assert_eq!(
        ConnectionLine::parse(b"Connect from a to b (fe/HTTP) x"),
        None
    );
}

/// A log-format without `%ST` has no status: its lines get an empty `status_class`, as
/// `status_code` is empty, not `other` (which is a status HAProxy logged, such as `-1`).
#[test]
fn a_format_without_a_status_has_an_empty_status_class() {
    use crate::haproxy::format::Format;
    use crate::haproxy::{LineFormat, Parser};
    let without_status = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %B %tsc %{+Q}r";
    let parser = Parser::new(vec![LineFormat::Compiled(
        Format::named_or_compiled(without_status).unwrap(),
    )]);
    let line =
        br#"127.0.0.1:5 [25/Nov/2026:02:09:39.343] fe be/s 0/0/0/1/1 73 ---- "GET / HTTP/1.1""#;
    match parser.parse(line) {
        Ok(Entry::Traffic(r)) => assert_eq!((r.status_code, r.status_class()), ("", "")),
        other => panic!("{other:?}"),
    }
    let with_status = br#"127.0.0.1:5 [25/Nov/2026:02:09:39.343] fe be/s 0/0/0/1/-1 -1 0 - - CR-- 1/1/0/0/0 0/0 "<BADREQ>""#;
    match Parser::default().parse(with_status) {
        Ok(Entry::Traffic(r)) => assert_eq!((r.status_code, r.status_class()), ("-1", "other")),
        other => panic!("{other:?}"),
    }
}
