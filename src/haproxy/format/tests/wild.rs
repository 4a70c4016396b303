//! The `w_*` captures: one traffic mix that HAProxy 2.6 logged in the formats operators
//! use, each read in its own format.

use super::*;

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
    let reference: &[u8] = include_bytes!("../../../../tests/fixtures/haproxy/w_httplog.log");
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
