//! The compiler and matcher against real lines: HAProxy's built-in formats compiled from
//! their strings must read the captures exactly as the hand-written parser does, and the
//! operators' own formats (custom, JSON) must give the fields their lines carry.

use proptest::prelude::*;

use super::*;
use crate::haproxy::{parse, Entry};
use crate::syslog;

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

fn message(line: &[u8]) -> &[u8] {
    syslog::split(line).message
}

fn extract<'a>(format: &Format, line: &'a [u8]) -> Result<LogRecord<'a>, Mismatch> {
    format.extract(message(line))
}

#[test]
fn built_in_formats_compile() {
    for (name, _) in BUILT_IN {
        let format = Format::named_or_compiled(name).unwrap();
        assert_eq!(format.source, *name);
    }
}

#[test]
fn compiled_httplog_and_tcplog_agree_with_the_hand_written_parser() {
    let captures: [(&str, &[u8]); 4] = [
        (
            "httplog",
            include_bytes!("../../../tests/fixtures/haproxy/h_edge.log"),
        ),
        (
            "httplog",
            include_bytes!("../../../tests/fixtures/haproxy/a_rfc3164.log"),
        ),
        (
            "httplog",
            include_bytes!("../../../tests/fixtures/haproxy/b_rfc5424_sd.log"),
        ),
        (
            "tcplog",
            include_bytes!("../../../tests/fixtures/haproxy/d_tcplog.log"),
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
    let httplog: &[u8] = include_bytes!("../../../tests/fixtures/haproxy/a_rfc3164.log");
    let clf_lines: &[u8] = include_bytes!("../../../tests/fixtures/haproxy/c_clf.log");
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
    let data: &[u8] = include_bytes!("../../../tests/fixtures/haproxy/e_custom.log");
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
    let data: &[u8] = include_bytes!("../../../tests/fixtures/haproxy/e_json.log");
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
    let httplog: &[u8] = include_bytes!("../../../tests/fixtures/haproxy/h_edge.log");
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

#[test]
fn compile_errors_point_at_the_column() {
    let cases = [
        ("%ci %Xyz", 5, "unknown log-format alias %Xyz"),
        ("%ci %", 4, "% must be followed by"),
        ("\"%ci %cp", 0, "this \" is never closed"),
        ("%ci%cp", 3, "two fields with nothing between them"),
        ("%ci %[var(txn.x)", 5, "this %[ is never closed"),
        ("%{+Z}ci", 2, "unknown flag"),
        ("", 0, "the format is empty"),
    ];
    for (format, column, message) in cases {
        let err = compile(format).unwrap_err();
        assert!(err.message.contains(message), "{format:?}: {err}");
        assert_eq!(err.column, column, "{format:?}: {err}");
        let shown = err.to_string();
        let caret_line = shown.lines().last().unwrap();
        assert_eq!(caret_line.find('^'), Some(4 + column), "{shown}");
    }
}

#[test]
fn haproxy_quoting_is_undone() {
    let plain = compile("%ci %ST").unwrap();
    let shape = |f: &Format| -> Vec<String> {
        f.tokens
            .iter()
            .map(|t| match t {
                Token::Literal { text, .. } => String::from_utf8_lossy(text).into_owned(),
                Token::Separator { .. } => " ".to_string(),
                Token::Field(field) => format!("{}{}", field.text, field.quoted),
            })
            .collect()
    };
    for written in [
        r#"log-format "%ci %ST""#,
        r"%ci\ %ST",
        r#"'%ci %ST'"#,
        r#""%ci"' %ST'"#,
    ] {
        let format = compile(written).unwrap();
        assert_eq!(shape(&format), shape(&plain), "{written}");
    }
    let escaped = compile(r#""\"%ci\" %ST""#).unwrap();
    assert!(escaped.extract(b"\"1.2.3.4\" 200").is_ok());
}

/// Aliases whose values the generator below can write, with a value generator each.
fn alias_value() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,8}".prop_map(|v| ("b", v)),
        "[a-z][a-z0-9_]{0,8}".prop_map(|v| ("s", v)),
        "[a-z][a-z0-9_]{0,8}".prop_map(|v| ("f", v)),
        (100u16..600).prop_map(|v| ("ST", v.to_string())),
        (0u64..1_000_000).prop_map(|v| ("B", v.to_string())),
        (0u64..100_000).prop_map(|v| ("TR", v.to_string())),
        (0u64..100_000).prop_map(|v| ("Tr", v.to_string())),
        (0u64..100_000).prop_map(|v| ("Ta", v.to_string())),
        "(GET|POST|PUT|HEAD)".prop_map(|v| ("HM", v)),
        "/[a-z0-9/]{0,12}".prop_map(|v| ("HPO", v)),
        "[0-9a-f]{1,8}".prop_map(|v| ("ID", v)),
        // A sample's value may hold spaces.
        "[a-z]{1,4}( [a-z]{1,4}){0,2}".prop_map(|v| ("[var(txn.v)]", v)),
        // In quotes, HAProxy 2.6 does not escape quotes or backslashes.
        "[a-z\\\\ ]{0,4}(\"[a-z][a-z\\\\ ]{0,3}){0,2}".prop_map(|v| ("{+Q}[var(txn.q)]", v)),
        // One quoted value per capture: `a" "b` between the outer quotes.
        proptest::collection::vec("[a-z.:]{1,8}", 1..4).prop_map(|v| ("{+Q}hrl", v.join("\" \""))),
    ]
}

proptest! {
    /// A format of random aliases and literals, rendered with random values, reads back
    /// those values.
    #[test]
    fn rendered_lines_read_back(
        // Separators use no character the values can contain.
        fields in proptest::collection::vec((alias_value(), "[ =,;|\\[\\]]{1,3}"), 1..8),
    ) {
        // `%ID` may hold spaces too: next to a sample with spaces, the line is ambiguous.
        let has = |a: &str| fields.iter().any(|((alias, _), _)| *alias == a);
        let ambiguous = has("ID") && has("[var(txn.v)]");
        let mut format = String::new();
        let mut line = String::new();
        let mut seen = std::collections::HashSet::new();
        for ((alias, value), sep) in &fields {
            if !seen.insert(*alias) || (ambiguous && *alias == "ID") {
                continue;
            }
            // The separator must not occur in the values it follows.
            let sep = if sep.chars().all(|c| c == ' ') { " ".to_string() } else { format!("{}#", sep.trim()) };
            format.push_str(&format!("%{alias}{sep}"));
            let value = if alias.starts_with("{+Q}") { format!("\"{value}\"") } else { value.clone() };
            line.push_str(&format!("{value}{}", if sep == " " { " " } else { &sep }));
        }
        let format_text = format.trim_end().to_string();
        let mut compiled = compile(&format_text).unwrap();
        let custom: Vec<String> = fields
            .iter()
            .map(|((alias, _), _)| *alias)
            .filter(|alias| alias.contains('['))
            .chain(fields.iter().map(|((alias, _), _)| *alias).filter(|a| *a == "{+Q}hrl"))
            .map(|alias| format!("%{alias}"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let custom: Vec<&str> = custom.iter().map(String::as_str).collect();
        compiled.bind_custom(&custom);
        let line = line.trim_end();
        let r = compiled.extract(line.as_bytes()).map_err(|e| TestCaseError::fail(format!("{format_text:?} / {line:?}: {e:?}")))?;
        let mut checked = std::collections::HashSet::new();
        for ((alias, value), _) in &fields {
            if !checked.insert(*alias) {
                continue; // only the first of a repeated alias is in the format
            }
            let got = match *alias {
                "b" => r.backend_name.to_string(),
                "s" => r.server_name.to_string(),
                "f" => r.frontend_name.to_string(),
                "ST" => r.status_code.to_string(),
                "B" => r.bytes_read.to_string(),
                "TR" => r.request_wait.map_or("-".into(), |v| v.to_string()),
                "Tr" => r.response.map_or("-".into(), |v| v.to_string()),
                "Ta" => r.session.map_or("-".into(), |v| v.to_string()),
                "HM" => r.http_request_method.to_string(),
                "HPO" => r.http_request_path.to_string(),
                other => match custom.iter().position(|c| c[1..] == *other) {
                    Some(slot) => r.custom[slot].to_string(),
                    None => continue,
                },
            };
            prop_assert_eq!(&got, value, "{} in {:?} / {:?}", alias, format_text, line);
        }
    }

    #[test]
    fn compiling_anything_never_panics(format in "[%{}\\[\\]()a-zA-Z+\\-Q\"' \\\\x0-9]{0,40}") {
        if let Ok(compiled) = compile(&format) {
            let _ = compiled.extract(format.as_bytes());
        }
    }

    #[test]
    fn matching_anything_never_panics(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        for (name, _) in BUILT_IN {
            let format = Format::named_or_compiled(name).unwrap();
            let _ = format.extract(&line);
        }
    }
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

/// What the `w_*` captures are compared on: status, bytes, backend and server; method
/// and path.
type Traffic = ((String, u64, String, String), (String, String));

fn traffic(r: LogRecord<'_>) -> Traffic {
    let values = (
        r.status_code.to_string(),
        r.bytes_read,
        r.backend_name.to_string(),
        r.server_name.to_string(),
    );
    let request = (
        r.http_request_method.to_string(),
        r.http_request_path.into_owned(),
    );
    (values, request)
}

/// The `w_*` captures: one traffic mix that HAProxy 2.6 logged in formats operators use.
/// Each reads back what the hand-written parser reads from the same traffic in httplog:
/// statuses, bytes, backends and servers, and methods and paths where the format has
/// them. (The traffic is the same, the order of its lines not quite.)
#[test]
fn formats_in_the_wild_read_the_same_traffic() {
    let reference: &[u8] = include_bytes!("../../../tests/fixtures/haproxy/w_httplog.log");
    let mut want: Vec<Traffic> = lines(reference)
        .map(|line| {
            let Ok(Entry::Traffic(r)) = parse(message(line)) else {
                panic!("{}", String::from_utf8_lossy(line));
            };
            traffic(r)
        })
        .collect();
    want.sort();
    assert_eq!(want.len(), 17);

    let mut names: Vec<String> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".log").map(str::to_string))
        .filter(|n| n.starts_with("w_") && n != "w_httplog")
        .collect();
    names.sort();
    assert_eq!(names.len(), 15, "{names:?}");
    for name in names {
        let (format, log) = capture_in_its_format(&name);
        let mut got: Vec<Traffic> = lines(&log)
            .map(|line| {
                let r = format
                    .extract(message(line))
                    .unwrap_or_else(|e| panic!("{name}: {e:?}: {}", String::from_utf8_lossy(line)));
                assert!(!r.truncated, "{name}: {}", String::from_utf8_lossy(line));
                traffic(r)
            })
            .collect();
        got.sort();
        let values = |v: &[Traffic]| {
            let mut values: Vec<_> = v.iter().map(|(values, _)| values.clone()).collect();
            values.sort();
            values
        };
        assert_eq!(values(&got), values(&want), "{name}");
        // The Kubernetes ingress format logs `base` (host and path) instead of a path.
        if got.iter().any(|(_, (_, path))| !path.is_empty()) {
            assert_eq!(got, want, "{name}");
        }
    }
}

/// Values HAProxy writes as they are: a quoted sample may hold quotes and end in a
/// backslash; a capture list has one quoted value per capture, a block none when
/// nothing was captured.
#[test]
fn custom_labels_from_formats_in_the_wild() {
    let values = |name: &str, fields: &[&str]| -> Vec<Vec<String>> {
        let (mut format, log) = capture_in_its_format(name);
        assert!(format.bind_custom(fields).iter().all(|&found| found));
        let mut values: Vec<Vec<String>> = lines(&log)
            .map(|line| {
                let r = format.extract(message(line)).unwrap();
                r.custom[..fields.len()]
                    .iter()
                    .map(|v| v.to_string())
                    .collect()
            })
            .collect();
        values.sort();
        values.dedup();
        values
    };
    let agents = values("w_sample_captures", &["%{+Q}[capture.req.hdr(1)]"]);
    assert!(agents.contains(&vec![
        r#"Mozilla/5.0 (X11; Linux) "quoted" back\\slash}"#.to_string()
    ]));
    assert!(agents.contains(&vec![r"Agent\".to_string()]));
    assert!(agents.contains(&vec!["curl/7.88.1".to_string()]));

    // Two request captures (Host, User-Agent) and one response capture (Content-Type).
    let clf = values("w_clf", &["%hrl#0", "%hrl#1", "%hsl#0"]);
    assert!(clf.contains(&vec![
        "127.0.0.1:8080".to_string(),
        "curl/7.88.1".to_string(),
        "text/plain".to_string()
    ]));
    assert!(clf.contains(&vec!["".to_string(), "".to_string(), "".to_string()]));

    let hosts = values("w_quoted_captures", &["%{+Q}hr#0"]);
    assert!(hosts.contains(&vec!["127.0.0.1:8080".to_string()]));
    assert!(hosts.contains(&vec!["[::1]:8080".to_string()]));
}

/// Where HAProxy writes an empty value it still writes the separator after it; only the
/// capture aliases write nothing at all when nothing was captured.
#[test]
fn empty_values_keep_their_separator_captures_do_not() {
    let parts = compile("%ST %HM %HPO %HQ %HV %B").unwrap();
    let r = parts.extract(b"200 GET /a  HTTP/1.1 12").unwrap();
    assert_eq!((r.http_request_path.as_ref(), r.bytes_read), ("/a", 12));
    let captures = compile("%ST %{+Q}hr %{+Q}hs %{+Q}r %B").unwrap();
    let r = captures.extract(br#"400 "<BADREQ>" 0"#).unwrap();
    assert_eq!((r.status_code, r.bytes_read), ("400", 0));
    let r = captures
        .extract(br#"200 "{a}" "{b}" "GET / HTTP/1.1" 5"#)
        .unwrap();
    assert_eq!((r.http_request_method, r.bytes_read), ("GET", 5));
}

/// An address ends where the address ends, even in a line without spaces.
#[test]
fn addresses_in_lines_without_spaces() {
    let format = compile(r#"'{"c":"%ci:%cp","r":"%r","s":%ST}'"#).unwrap();
    for (line, ip) in [
        (
            r#"{"c":"10.0.0.1:5","r":"GET /a:b HTTP/1.1","s":200}"#,
            "10.0.0.1",
        ),
        (
            r#"{"c":"2001:db8::1:443","r":"GET / HTTP/1.1","s":200}"#,
            "2001:db8::1",
        ),
    ] {
        let r = format.extract(line.as_bytes()).unwrap();
        assert_eq!(r.client_ip, ip);
    }
}

/// However a line is made, trying the places a field may end is bounded.
#[test]
fn ambiguous_lines_are_bounded() {
    let format = compile("%[a] %[b] %[c] %[d] %ST x").unwrap();
    let line = "a ".repeat(2000);
    let err = format.extract(line.as_bytes()).unwrap_err();
    assert!(err.reason.starts_with("format_mismatch"), "{err:?}");
}

/// `%{+X}o` logs addresses in hexadecimal; `client_ip` is the address, as without it.
#[test]
fn hexadecimal_addresses_are_decoded() {
    let (format, log) = capture_in_its_format("w_hex");
    let mut clients: Vec<String> = lines(&log)
        .map(|line| {
            format
                .extract(message(line))
                .unwrap()
                .client_ip
                .into_owned()
        })
        .collect();
    clients.sort();
    clients.dedup();
    assert_eq!(clients, ["127.0.0.1", "::1"]);
    // Without +X the same digits are taken as they are.
    let plain = compile("%ci:%cp %ST").unwrap();
    assert_eq!(
        plain.extract(b"7F000001:E878 200").unwrap().client_ip,
        "7F000001"
    );
    let hex = compile("%{+X}ci:%cp %ST").unwrap();
    assert_eq!(hex.extract(b"unix:1 200").unwrap().client_ip, "unix");
}

/// A header that is not UTF-8 (a Latin-1 User-Agent) does not cost the line: the label
/// keeps the value up to its first byte that is not UTF-8.
#[test]
fn custom_labels_that_are_not_utf8_are_cut_not_rejected() {
    let mut format = compile("%ST %{+Q}[capture.req.hdr(1)] %{+Q}r").unwrap();
    format.bind_custom(&["%{+Q}[capture.req.hdr(1)]"]);
    let r = format
        .extract(b"200 \"caf\xe9 agent\" \"GET / HTTP/1.1\"")
        .unwrap();
    assert_eq!((r.status_code, r.custom[0]), ("200", "caf"));
}

/// A sample's value may hold any number of spaces: its end is the space after which the
/// line goes on as the format does, not one of a few hundred tries.
#[test]
fn a_sample_with_many_spaces_is_read_whole() {
    let mut format =
        compile("%ST ua=%[capture.req.hdr(1)] route=%[var(txn.route)] uid=%ID").unwrap();
    format.bind_custom(&["%[capture.req.hdr(1)]", "%[var(txn.route)]"]);
    let agent = format!("a{}", " a".repeat(400));
    let line = format!("200 ua={agent} route=api uid=7F01");
    let r = format.extract(line.as_bytes()).unwrap();
    assert_eq!((r.custom[0], r.custom[1]), (agent.as_str(), "api"));
}

/// HAProxy's `len` cuts at any byte: inside a field the format follows with a space (the
/// line then ends on an unclosed value), and the field's custom label keeps what is left.
#[test]
fn a_line_cut_inside_an_unquoted_field_is_counted() {
    let mut format = compile("%ST %B path=%HP ua=%[capture.req.hdr(1)] uid=%ID").unwrap();
    format.bind_custom(&["%[capture.req.hdr(1)]"]);
    let r = format.extract(b"200 83 path=/long/pppp").unwrap();
    assert!(r.truncated);
    assert_eq!(
        (r.status_code, r.http_request_path.as_ref()),
        ("200", "/long/pppp")
    );
    let r = format.extract(b"200 83 path=/a ua=LLLL").unwrap();
    assert!(r.truncated);
    assert_eq!(r.custom[0], "LLLL");
    // Cut inside a sample whose value holds spaces: it runs to the end.
    let r = format.extract(b"200 83 path=/a ua=a\" b a\" b a").unwrap();
    assert!(r.truncated);
    assert_eq!(r.custom[0], "a\" b a\" b a");
    // Before the status, a cut line is not counted.
    assert!(compile("%HP %ST").unwrap().extract(b"/long/pp").is_err());
}
