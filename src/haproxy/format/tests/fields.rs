//! Where fields end: empty values, addresses, samples with spaces, cut lines, and
//! random formats rendered and read back.

use proptest::prelude::*;

use super::*;

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
    fn matching_anything_never_panics(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        for (name, _) in BUILT_IN {
            let format = Format::named_or_compiled(name).unwrap();
            let _ = format.extract(&line);
        }
    }
}
