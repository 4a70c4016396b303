use std::collections::HashMap;

use super::*;
use crate::haproxy::EntryKind;

fn config(vars: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.entry("HLE_SYSLOG_UDP_ADDR".into())
        .or_insert_with(|| "127.0.0.1:0".into());
    Config::from_env(&env).unwrap()
}

fn record(status: &'static str, state: &'static str, ta: u64) -> LogRecord<'static> {
    LogRecord {
        status_code: status,
        termination_state: state,
        session: Some(ta),
        ..LogRecord::empty(EntryKind::Http)
    }
}

/// The exposition of the forwarding metrics, as name{labels} → value.
fn scrape(registry: &Registry) -> HashMap<String, f64> {
    let mut values = HashMap::new();
    for family in registry.gather() {
        for metric in family.get_metric() {
            let labels: Vec<String> = metric
                .get_label()
                .iter()
                .map(|l| format!("{}={}", l.name(), l.value()))
                .collect();
            let value = match family.get_field_type() {
                prometheus::proto::MetricType::GAUGE => metric.get_gauge().get_value(),
                _ => metric.get_counter().get_value(),
            };
            values.insert(format!("{}{{{}}}", family.name(), labels.join(",")), value);
        }
    }
    values
}

fn value(values: &HashMap<String, f64>, name: &str, labels: &str) -> f64 {
    let key = format!("haproxy_log_exporter_{name}{{{labels}}}");
    *values.get(&key).unwrap_or_else(|| panic!("no {key}"))
}

/// given = forwarded + dropped + sampled out + queued, at this scrape.
fn assert_adds_up(values: &HashMap<String, f64>, sink: &str) -> f64 {
    let s = format!("sink={sink}");
    let dropped: f64 = DropReason::ALL
        .iter()
        .map(|r| {
            value(
                values,
                "forward_dropped_lines_total",
                &format!("reason={},{s}", r.name()),
            )
        })
        .sum();
    let given = value(values, "forward_given_lines_total", &s);
    let parts = value(values, "forwarded_lines_total", &s)
        + dropped
        + value(values, "forward_sampled_out_lines_total", &s)
        + value(values, "forward_queue_lines", &s);
    assert_eq!(given, parts, "{sink}: {values:?}");
    given
}

#[test]
fn no_sink_no_forwarders() {
    let registry = Registry::new();
    assert!(Forwarders::new(&config(&[]), &registry).unwrap().is_none());
}

#[test]
fn errors_and_slow_lines_always_the_rest_at_the_rate() {
    let sampler = Sampler::new(Sampling {
        rate: 0.25,
        slow: Duration::from_millis(500),
    });
    let ordinary = record("200", "--", 10);
    let kept = (0..1000).filter(|_| sampler.keep(&ordinary)).count();
    assert_eq!(kept, 250);
    for essential in [
        record("503", "--", 1),
        record("-1", "--", 1),
        record("200", "CD", 1),
        record("200", "--", 500),
        record("", "sC", 1),
    ] {
        assert!((0..10).all(|_| sampler.keep(&essential)), "{essential:?}");
    }
    // tcplog lines end normally with `--`.
    let tcp = LogRecord {
        termination_state: "--",
        session: Some(1),
        ..LogRecord::empty(EntryKind::Tcp)
    };
    assert!(!is_essential(&tcp, 500));
}

#[test]
fn sampled_lines_are_counted_per_sink() {
    let registry = Registry::new();
    let config = config(&[
        ("HLE_FORWARD_STDOUT", "raw"),
        ("HLE_FORWARD_SYSLOG_ADDR", "udp://127.0.0.1:9"),
        ("HLE_FORWARD_SAMPLE_RATE", "0.5"),
    ]);
    let forward = Forwarders::new(&config, &registry).unwrap().unwrap();
    let ordinary = record("200", "--", 1);
    for _ in 0..10 {
        forward.give(b"line", forward.keep(&ordinary));
    }
    forward.give(b"error", forward.keep(&record("500", "--", 1)));
    let values = scrape(&registry);
    for sink in ["stdout", "syslog"] {
        assert_eq!(assert_adds_up(&values, sink), 11.0);
        assert_eq!(
            value(
                &values,
                "forward_sampled_out_lines_total",
                &format!("sink={sink}")
            ),
            5.0
        );
        assert_eq!(
            value(&values, "forward_queue_lines", &format!("sink={sink}")),
            6.0
        );
    }
}

#[test]
fn a_full_queue_drops_the_newest_and_says_why() {
    let registry = Registry::new();
    let config = config(&[
        ("HLE_FORWARD_STDOUT", "json"),
        ("HLE_FORWARD_BUFFER_LINES", "3"),
        ("HLE_FORWARD_BUFFER_BYTES", "1024"),
    ]);
    let forward = Forwarders::new(&config, &registry).unwrap().unwrap();
    for _ in 0..5 {
        forward.give(b"a line", true);
    }
    forward.give(&[b'x'; 2000], true);
    let values = scrape(&registry);
    assert_eq!(assert_adds_up(&values, "stdout"), 6.0);
    let dropped = |reason: &str| {
        value(
            &values,
            "forward_dropped_lines_total",
            &format!("reason={reason},sink=stdout"),
        )
    };
    assert_eq!(dropped("queue_full"), 2.0);
    assert_eq!(dropped("oversize"), 1.0);
    assert_eq!(value(&values, "forward_queue_lines", "sink=stdout"), 3.0);
    assert_eq!(value(&values, "forward_queue_bytes", "sink=stdout"), 18.0);
}

#[tokio::test]
async fn shutdown_counts_what_no_worker_delivered() {
    let registry = Registry::new();
    // Nothing listens on the discard port: TCP connections are refused, lines wait.
    let config = config(&[
        ("HLE_FORWARD_SYSLOG_ADDR", "tcp://127.0.0.1:9"),
        ("HLE_FORWARD_RECONNECT_MAX_DELAY", "100ms"),
    ]);
    let forward = Forwarders::new(&config, &registry).unwrap().unwrap();
    forward.start();
    for _ in 0..7 {
        forward.give(b"<134>line", true);
    }
    let snapshots = forward.finish(Duration::from_millis(300)).await;
    assert_eq!(snapshots.len(), 1);
    let sink = snapshots[0];
    assert_eq!((sink.given, sink.forwarded), (7, 0));
    assert_eq!(sink.dropped[DropReason::Shutdown as usize], 7);
    // Given after shutdown: dropped at once, still adding up.
    forward.give(b"late", true);
    let values = scrape(&registry);
    assert_eq!(assert_adds_up(&values, "syslog"), 8.0);
    assert_eq!(value(&values, "forward_queue_lines", "sink=syslog"), 0.0);
    assert_eq!(value(&values, "forward_connected", "sink=syslog"), 0.0);
}

#[test]
fn raw_lines_are_the_messages_one_a_line() {
    let mut encoder = stdout::Encoder::Raw;
    let mut out = Vec::new();
    encoder.write(b"<134>Nov 25 02:09:39 haproxy[1440]: a message", &mut out);
    encoder.write(
        b"<134>1 2026-11-25T02:09:56Z - haproxy 1 - - two\nlines",
        &mut out,
    );
    assert_eq!(out, b"a message\ntwo lines\n");
}

/// An output that fails every write.
struct Broken;

impl std::io::Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn stdout_delivers_or_counts_each_line() {
    let registry = Registry::new();
    let mut metrics = counters::ForwardMetrics::new().unwrap();
    let queue = Arc::new(Queue::new(100, 1 << 20));
    let len = queue.clone();
    let counters = metrics.sink("stdout", Box::new(move || len.len()));
    metrics.register(&registry).unwrap();
    let give = |line: &'static [u8]| {
        counters.given();
        queue.push(Bytes::from_static(line)).unwrap();
    };
    give(b"<134>one");
    give(b"<134>two");
    queue.close();
    let mut written = Vec::new();
    stdout::run(&queue, &counters, stdout::Encoder::Raw, &mut written);
    assert_eq!(written, b"one\ntwo\n");
    let queue = Arc::new(Queue::new(100, 1 << 20));
    counters.given();
    queue.push(Bytes::from_static(b"three")).unwrap();
    queue.close();
    stdout::run(&queue, &counters, stdout::Encoder::Raw, &mut Broken);
    let values = scrape(&registry);
    assert_eq!(assert_adds_up(&values, "stdout"), 3.0);
    assert_eq!(value(&values, "forwarded_lines_total", "sink=stdout"), 2.0);
    assert_eq!(
        value(
            &values,
            "forward_dropped_lines_total",
            "reason=connection_lost,sink=stdout"
        ),
        1.0
    );
    assert_eq!(value(&values, "forward_connected", "sink=stdout"), 0.0);
}
