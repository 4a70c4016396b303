//! The aggregator: counting, folding into the overflow series, expiry, exposition.

use super::*;
use crate::haproxy::EntryKind;
use crate::metrics::{MetricDef, OVERFLOW};

#[test]
fn thresholds_bucket_a_logged_value_as_its_value_in_base_units() {
    for bound in [
        0.0, 0.001, 0.005, 0.1, 0.3, 0.7, 1.0, 2.5, 1.1, 9.999, 60.0, 1e6,
    ] {
        let t = threshold(bound, 1000.0);
        for raw in [t - 1, t, t + 1].into_iter().filter(|&r| r >= 0) {
            assert_eq!(raw <= t, raw as f64 / 1000.0 <= bound, "{bound} {raw}");
        }
    }
    assert_eq!(threshold(-1.0, 1000.0), -1);
    assert_eq!(threshold(-0.5, 1.0), -1);
    assert_eq!(threshold(0.0, 1.0), 0);
    assert_eq!(threshold(2.5, 1.0), 2);
    assert_eq!(threshold(1e300, 1000.0), 1 << 62);
}

fn config(name: &str, labels: &[Label]) -> MetricConfig {
    let def = MetricDef::by_name(name).unwrap();
    MetricConfig {
        def,
        labels: labels.to_vec(),
        buckets: def.default_buckets.to_vec(),
    }
}

fn record(path: &str, status: &'static str, response_ms: u64) -> LogRecord<'static> {
    let mut record = LogRecord::empty(EntryKind::Http);
    record.status_code = status;
    record.backend_name = "be";
    record.server_name = "s1";
    record.request_wait = Some(0);
    record.queued = Some(0);
    record.connect = Some(0);
    record.response = Some(response_ms);
    record.session = Some(response_ms);
    record.bytes_read = 10;
    record.http_request_path = Cow::Owned(path.to_string());
    record
}

/// `name{labels} value` lines of `metric` (no HELP/TYPE), in exposition order.
fn samples(aggregator: &Aggregator, metric: &str) -> Vec<(String, f64)> {
    let mut text = String::new();
    aggregator.encode(&mut text).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(metric))
        .map(|(series, value)| (series.to_string(), value.parse().unwrap()))
        .collect()
}

fn total(aggregator: &Aggregator, metric: &str) -> f64 {
    samples(aggregator, metric).iter().map(|(_, v)| v).sum()
}

fn gauge(registry: &Registry, name: &str, metric: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| m.get_label().iter().any(|l| l.value() == metric))
        .map(|m| {
            if m.get_gauge().get_value() != 0.0 {
                m.get_gauge().get_value()
            } else {
                m.get_counter().get_value()
            }
        })
        .sum()
}

const REQUESTS: &str = "haproxy_log_requests_total";

#[test]
fn counters_and_histograms_in_text_format() {
    let registry = Registry::new();
    let metrics = [
        config(
            "requests_total",
            &[Label::StatusCode, Label::HttpRequestPath],
        ),
        config("response_processing_seconds", &[Label::ServerName]),
    ];
    let aggregator = Aggregator::new(&metrics, &registry).unwrap();
    aggregator.observe(&record("/a", "200", 3));
    aggregator.observe(&record("/a", "200", 40));
    aggregator.observe(&record("/b\"\\", "503", 20_000));
    let mut text = String::new();
    aggregator.encode(&mut text).unwrap();
    let expected = "\
# HELP haproxy_log_requests_total Traffic log lines counted: HTTP requests (option httplog) and TCP sessions (option tcplog).
# TYPE haproxy_log_requests_total counter
haproxy_log_requests_total{status_code=\"200\",http_request_path=\"/a\"} 2
haproxy_log_requests_total{status_code=\"503\",http_request_path=\"/b\\\"\\\\\"} 1
";
    assert!(text.starts_with(expected), "{text}");
    for line in [
        "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"0.001\"} 0",
        "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"0.005\"} 1",
        "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"0.05\"} 2",
        "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"10\"} 2",
        "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"30\"} 3",
        "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"+Inf\"} 3",
        "haproxy_log_response_processing_seconds_sum{server_name=\"s1\"} 20.043",
        "haproxy_log_response_processing_seconds_count{server_name=\"s1\"} 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
}

#[test]
fn a_timer_logged_as_minus_one_is_not_observed() {
    let registry = Registry::new();
    let metrics = [
        config("response_processing_seconds", &[]),
        config("request_response_abort_total", &[]),
    ];
    let aggregator = Aggregator::new(&metrics, &registry).unwrap();
    let mut aborted = record("/", "-1", 0);
    aborted.response = None;
    aggregator.observe(&aborted);
    aggregator.observe(&record("/", "200", 1));
    assert_eq!(
        total(&aggregator, "haproxy_log_response_processing_seconds_count"),
        1.0
    );
    assert_eq!(
        total(&aggregator, "haproxy_log_request_response_abort_total"),
        1.0
    );
}

#[test]
fn label_sets_beyond_the_cap_fold_into_one_overflow_series() {
    let registry = Registry::new();
    let metrics = [
        config(
            "requests_total",
            &[Label::StatusCode, Label::HttpRequestPath],
        ),
        config(
            "bytes_read_total",
            &[Label::StatusCode, Label::HttpRequestPath],
        ),
        config(
            "request_abort_total",
            &[Label::StatusCode, Label::HttpRequestPath],
        ),
    ];
    let cardinality = Cardinality {
        max_series: 5,
        ..Cardinality::default()
    };
    let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
    // 4 regular series, then everything new folds; a known set keeps its series.
    let paths: Vec<String> = (0..20).map(|i| format!("/p{i}")).collect();
    for path in &paths {
        aggregator.observe(&record(path, "200", 1));
    }
    aggregator.observe(&record("/p0", "200", 1));
    let series = samples(&aggregator, REQUESTS);
    assert_eq!(series.len(), 5, "{series:?}");
    assert_eq!(total(&aggregator, REQUESTS), 21.0);
    assert_eq!(total(&aggregator, "haproxy_log_bytes_read_total"), 210.0);
    let overflow =
        format!("{REQUESTS}{{status_code=\"{OVERFLOW}\",http_request_path=\"{OVERFLOW}\"}}");
    assert!(series.contains(&(overflow, 16.0)), "{series:?}");
    let p0 = format!("{REQUESTS}{{status_code=\"200\",http_request_path=\"/p0\"}}");
    assert!(series.contains(&(p0, 2.0)), "{series:?}");

    let overflow_total = "haproxy_log_exporter_series_overflow_total";
    assert_eq!(gauge(&registry, overflow_total, REQUESTS), 16.0);
    // No line aborted, so none went to the abort counter's overflow series.
    assert_eq!(
        gauge(&registry, overflow_total, "haproxy_log_request_abort_total"),
        0.0
    );
    assert_eq!(
        gauge(&registry, "haproxy_log_exporter_series", REQUESTS),
        5.0
    );
}

#[test]
fn a_cap_of_one_sends_every_label_set_to_the_overflow_series() {
    let registry = Registry::new();
    let metrics = [config("requests_total", &[Label::StatusCode])];
    let cardinality = Cardinality {
        max_series: 1,
        ..Cardinality::default()
    };
    let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
    aggregator.observe(&record("/", "200", 1));
    aggregator.observe(&record("/", "404", 1));
    assert_eq!(
        samples(&aggregator, REQUESTS),
        [(format!("{REQUESTS}{{status_code=\"{OVERFLOW}\"}}"), 2.0)]
    );
}

#[test]
fn path_and_client_ip_rules_apply_before_the_label_set_is_looked_up() {
    let registry = Registry::new();
    let metrics = [config(
        "requests_total",
        &[Label::HttpRequestPath, Label::ClientIp],
    )];
    let cardinality = Cardinality {
        client_ip: ClientIpPrefix::from_settings("24", "128").unwrap(),
        ..Cardinality::default()
    };
    let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
    for (path, ip) in [("/users/1", "10.0.0.1"), ("/users/22", "10.0.0.2")] {
        let mut line = record(path, "200", 1);
        line.client_ip = Cow::Borrowed(ip);
        aggregator.observe(&line);
    }
    assert_eq!(
        samples(&aggregator, REQUESTS),
        [(
            format!("{REQUESTS}{{http_request_path=\"/users/:id\",client_ip=\"10.0.0.0/24\"}}"),
            2.0
        )]
    );
}

#[test]
fn idle_series_expire_after_the_ttl_and_free_their_place() {
    let registry = Registry::new();
    let metrics = [config("requests_total", &[Label::HttpRequestPath])];
    let cardinality = Cardinality {
        max_series: 3,
        ttl: Some(Duration::from_secs(60)),
        ..Cardinality::default()
    };
    let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
    let interval = aggregator.sweep_interval().unwrap();
    assert_eq!(interval, Duration::from_secs(6));
    let start = aggregator.start;
    let at = |secs: u64| start + Duration::from_secs(secs);

    aggregator.observe(&record("/old", "200", 1));
    aggregator.observe(&record("/kept", "200", 1));
    aggregator.observe(&record("/folded", "200", 1));
    assert_eq!(samples(&aggregator, REQUESTS).len(), 3);

    // /kept stays busy; nothing leaves before a TTL has passed.
    for secs in (6..=60).step_by(6) {
        aggregator.sweep(at(secs));
        aggregator.observe(&record("/kept", "200", 1));
    }
    assert_eq!(samples(&aggregator, REQUESTS).len(), 3);
    for secs in (66..=90).step_by(6) {
        aggregator.sweep(at(secs));
        aggregator.observe(&record("/kept", "200", 1));
    }
    let left = samples(&aggregator, REQUESTS);
    assert_eq!(
        left,
        [(format!("{REQUESTS}{{http_request_path=\"/kept\"}}"), 16.0)]
    );
    assert_eq!(
        gauge(&registry, "haproxy_log_exporter_series", REQUESTS),
        1.0
    );
    // The freed places take new label sets again, not the overflow series.
    aggregator.observe(&record("/new", "200", 1));
    assert!(samples(&aggregator, REQUESTS)
        .iter()
        .any(|(s, _)| s.contains("/new")));
}

#[test]
fn removing_series_keeps_every_other_series_and_its_counts() {
    let registry = Registry::new();
    let metrics = [
        config("requests_total", &[Label::HttpRequestPath]),
        config("response_processing_seconds", &[Label::HttpRequestPath]),
    ];
    let cardinality = Cardinality {
        ttl: Some(Duration::from_secs(10)),
        ..Cardinality::default()
    };
    let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
    let start = aggregator.start;
    for i in 0..10 {
        aggregator.observe(&record(&format!("/p{i}"), "200", i));
    }
    aggregator.sweep(start + Duration::from_secs(1));
    // Every odd path stays busy, so the even ones leave from all over the table.
    for secs in 2..=30 {
        for i in (1..10).step_by(2) {
            aggregator.observe(&record(&format!("/p{i}"), "200", i));
        }
        aggregator.sweep(start + Duration::from_secs(secs));
    }
    let left = samples(&aggregator, REQUESTS);
    let expected: Vec<(String, f64)> = (1..10)
        .step_by(2)
        .map(|i| (format!("{REQUESTS}{{http_request_path=\"/p{i}\"}}"), 30.0))
        .collect();
    assert_eq!(left, expected);
    let sums = samples(&aggregator, "haproxy_log_response_processing_seconds_sum");
    for (i, (_, sum)) in (1..10).step_by(2).zip(&sums) {
        assert!((sum - 30.0 * i as f64 / 1000.0).abs() < 1e-9, "{sums:?}");
    }
}
