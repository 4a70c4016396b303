use chrono::DateTime;
use serde_json::Value;

use super::*;
use crate::haproxy::format::Format;
use crate::haproxy::LineFormat;

fn writer(parser: Parser, custom: &[&str]) -> JsonWriter {
    JsonWriter::new(parser, custom).with_clock(Clock::at(
        DateTime::parse_from_rfc3339("2026-11-25T03:00:00+00:00").unwrap(),
    ))
}

fn object(writer: &mut JsonWriter, line: &str) -> serde_json::Map<String, Value> {
    let mut out = Vec::new();
    writer.write(line.as_bytes(), &mut out);
    assert_eq!(out.last(), Some(&b'\n'));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    match serde_json::from_slice(&out).unwrap() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

const HTTP: &str = r#"<134>Nov 25 02:14:20 lb1 haproxy[7666]: 127.0.0.1:47594 [25/Nov/2026:02:14:20.339] fe_asap~ be_app/app1 1/2/3/-1/+1234 503 +73 - - sH-- 4/1/1/1/+2 0/5 {www.example.org|curl-test-agent/} {text/plain} "GET /a/b?c=d&e=f HTTP/2.0""#;

#[test]
fn traffic_fields_under_their_names() {
    let o = object(&mut writer(Parser::default(), &[]), HTTP);
    let expect = |key: &str, value: Value| assert_eq!(o.get(key), Some(&value), "{key}");
    let ts = o["timestamp"].as_str().unwrap();
    assert!(ts.starts_with("2026-11-25T02:14:20.339"), "{ts}");
    assert!(DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    expect("severity", "info".into());
    expect("host.name", "lb1".into());
    expect("service.name", "haproxy".into());
    expect("process.pid", 7666.into());
    expect("haproxy.outcome", "counted".into());
    expect("client.address", "127.0.0.1".into());
    expect("client.port", 47594.into());
    expect("http.request.method", "GET".into());
    expect("url.path", "/a/b".into());
    expect("url.query", "c=d&e=f".into());
    expect("network.protocol.version", "2".into());
    expect("http.response.status_code", 503.into());
    expect("haproxy.frontend", "fe_asap".into());
    expect("haproxy.backend", "be_app".into());
    expect("haproxy.server", "app1".into());
    expect("haproxy.mode", "http".into());
    expect("haproxy.request_wait_seconds", serde_json::json!(0.001));
    expect("haproxy.queued_seconds", serde_json::json!(0.002));
    expect("haproxy.server_connect_seconds", serde_json::json!(0.003));
    expect("haproxy.response_seconds", Value::Null);
    expect("haproxy.session_seconds", serde_json::json!(1.234));
    expect("haproxy.bytes_read", 73.into());
    expect("haproxy.termination_state", "sH".into());
    expect("haproxy.server_queue", 0.into());
    expect("haproxy.backend_queue", 5.into());
    expect("haproxy.active_connections", 4.into());
    expect("haproxy.frontend_connections", 1.into());
    expect("haproxy.backend_connections", 1.into());
    expect("haproxy.server_connections", 1.into());
    expect("haproxy.retries", 2.into());
    expect("haproxy.redispatched", true.into());
    expect(
        "haproxy.captures",
        "{www.example.org|curl-test-agent/} {text/plain}".into(),
    );
    let message = HTTP.split_once("]: ").unwrap().1;
    expect("message", message.into());
}

#[test]
fn tcplog_has_no_http_fields() {
    let line = "<134>Nov 25 02:10:14 localhost haproxy[2866]: 127.0.0.1:43092 [25/Nov/2026:02:10:14.564] fe_tcp be_app_tcp/app1 1/0/0 66 -- 1/1/0/0/0 0/0";
    let o = object(&mut writer(Parser::default(), &[]), line);
    assert_eq!(o["haproxy.mode"], "tcp");
    assert_eq!(o["haproxy.session_seconds"], serde_json::json!(0.0));
    for absent in [
        "http.response.status_code",
        "http.request.method",
        "url.path",
        "haproxy.request_wait_seconds",
        "haproxy.response_seconds",
    ] {
        assert!(!o.contains_key(absent), "{absent}");
    }
}

#[test]
fn notices_and_rejected_lines_say_what_is_known() {
    let mut w = writer(Parser::default(), &[]);
    let notice = object(
        &mut w,
        "<133>Nov 25 02:10:14 haproxy[2866]: Proxy fe_http started.",
    );
    assert_eq!(notice["haproxy.outcome"], "ignored");
    assert_eq!(notice["severity"], "notice");
    assert_eq!(notice["message"], "Proxy fe_http started.");
    assert!(notice["timestamp"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-25T02:10:14"));
    let rejected = object(
        &mut w,
        "<134>1 2026-11-25T02:09:56.857871+00:00 - haproxy 2246 - - 127.0.0.1:1 [x",
    );
    assert_eq!(rejected["haproxy.outcome"], "rejected");
    assert!(rejected["haproxy.reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    assert_eq!(rejected["timestamp"], "2026-11-25T02:09:56.857871+00:00");
    assert!(!rejected.contains_key("host.name"));
    let bare = object(&mut w, "not \"syslog\" at all\u{7}\u{e9}");
    assert_eq!(bare["message"], "not \"syslog\" at all\u{7}\u{e9}");
    assert_eq!(bare["timestamp"], "2026-11-25T03:00:00.000000+00:00");
    assert!(!bare.contains_key("severity"));
}

#[test]
fn bytes_that_are_not_utf8_still_make_json() {
    let mut out = Vec::new();
    writer(Parser::default(), &[]).write(b"<134>\xff\xfe garbage", &mut out);
    let o: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(o["message"], "\u{fffd}\u{fffd} garbage");
}

#[test]
fn custom_labels_and_their_keys() {
    let format = Format::named_or_compiled(
        "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %[var(txn.route)] %ID",
    )
    .unwrap();
    let mut parser = Parser::new(vec![LineFormat::Compiled(format)]);
    let bound = parser.bind_custom(&["%[var(txn.route)]", "%ID"]);
    assert_eq!(bound, [true, true]);
    let mut w = writer(parser, &["route", "frontend"]);
    let o = object(
        &mut w,
        "<134>Nov 25 02:14:20 haproxy[1]: 10.0.0.1:5 [25/Nov/2026:02:14:20.339] fe be/s 0/0/1/2/3 200 10 ---- /users/:id abc-1",
    );
    assert_eq!(o["haproxy.outcome"], "counted");
    assert_eq!(o["haproxy.route"], "/users/:id");
    // A label named like a fixed key goes under haproxy.custom.
    assert_eq!(o["haproxy.custom.frontend"], "abc-1");
    assert_eq!(o["haproxy.frontend"], "fe");
    assert!(o["timestamp"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-25T02:14:20.339"));
}

#[test]
fn query_and_version_of_request_lines() {
    assert_eq!(query_and_version("GET /a?b=1#x HTTP/1.1"), ("b=1", "1.1"));
    assert_eq!(query_and_version("GET /a HTTP/3.0"), ("", "3"));
    assert_eq!(query_and_version("<BADREQ>"), ("", ""));
    assert_eq!(query_and_version("GET /a?"), ("", ""));
}
