//! The aggregator: counting, folding into the overflow series, expiry, exposition.

use super::*;
use crate::haproxy::EntryKind;
use crate::metrics::exemplar::now_ms;
use crate::metrics::{MetricDef, METRICS, OVERFLOW};

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

fn with_native(mode: NativeMode, exemplar: Option<Label>) -> Cardinality {
    Cardinality {
        native: NativeHistograms {
            mode,
            ..NativeHistograms::default()
        },
        exemplar,
        ..Cardinality::default()
    }
}

const TRACE: Label = Label::Custom {
    slot: 0,
    name: "trace_id",
};

fn traced(path: &str, status: &'static str, ms: u64, trace: &'static str) -> LogRecord<'static> {
    let mut r = record(path, status, ms);
    r.custom[0] = trace;
    r
}

fn text_of(aggregator: &Aggregator) -> String {
    let mut text = String::new();
    aggregator.encode(&mut text).unwrap();
    text
}

fn default_metrics() -> Vec<MetricConfig> {
    METRICS
        .iter()
        .map(|def| MetricConfig {
            def,
            labels: def.default_labels.to_vec(),
            buckets: def.default_buckets.to_vec(),
        })
        .collect()
}

#[test]
fn native_on_and_exemplars_leave_the_text_format_as_it_was() {
    let lines = [
        traced(
            "/a",
            "200",
            3,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        traced("/a", "200", 40, "abc"),
        traced("/b", "503", 20_000, ""),
    ];
    let text = |cardinality: Cardinality| {
        let aggregator =
            Aggregator::with_cardinality(&default_metrics(), cardinality, &Registry::new())
                .unwrap();
        for line in &lines {
            aggregator.observe(line);
        }
        text_of(&aggregator)
    };
    let off = text(Cardinality::default());
    assert!(off.contains("_bucket{"), "{off}");
    assert_eq!(text(with_native(NativeMode::On, None)), off);
    assert_eq!(text(with_native(NativeMode::On, Some(TRACE))), off);
    assert_eq!(text(with_native(NativeMode::Off, Some(TRACE))), off);
}

#[test]
fn native_only_keeps_one_bucket_and_one_series_per_label_set() {
    let registry = Registry::new();
    let cardinality = Cardinality {
        max_series: 3,
        ..with_native(NativeMode::Only, None)
    };
    let metrics = [config(
        "response_processing_seconds",
        &[Label::HttpRequestPath],
    )];
    let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
    for (path, ms) in [("/a", 3), ("/a", 40), ("/b", 20_000), ("/c", 1), ("/d", 2)] {
        aggregator.observe(&record(path, "200", ms));
    }
    let name = "haproxy_log_response_processing_seconds";
    let got: Vec<String> = samples(&aggregator, &format!("{name}_bucket"))
        .into_iter()
        .map(|(s, v)| format!("{s} {v}"))
        .collect();
    // Three label sets fit in three series: two and the overflow one.
    assert_eq!(
        got,
        [
            format!("{name}_bucket{{http_request_path=\"/a\",le=\"+Inf\"}} 2"),
            format!("{name}_bucket{{http_request_path=\"/b\",le=\"+Inf\"}} 1"),
            format!("{name}_bucket{{http_request_path=\"{OVERFLOW}\",le=\"+Inf\"}} 2"),
        ]
    );
    assert_eq!(total(&aggregator, &format!("{name}_count")), 5.0);
    assert_eq!(total(&aggregator, &format!("{name}_sum")), 20.046);
    assert_eq!(gauge(&registry, "haproxy_log_exporter_series", name), 3.0);
}

#[test]
fn native_on_counts_the_native_series_against_the_cap() {
    let registry = Registry::new();
    let metrics = [config(
        "response_processing_seconds",
        &[Label::HttpRequestPath],
    )];
    let buckets = metrics[0].buckets.len();
    // Classic: buckets, +Inf, sum, count; and the native series.
    let per_set = buckets + 3 + 1;
    let cardinality = Cardinality {
        max_series: 2 * per_set,
        ..with_native(NativeMode::On, None)
    };
    let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
    for path in ["/a", "/b", "/c"] {
        aggregator.observe(&record(path, "200", 5));
    }
    let name = "haproxy_log_response_processing_seconds";
    assert_eq!(
        gauge(&registry, "haproxy_log_exporter_series", name),
        (2 * per_set) as f64
    );
}

fn openmetrics_of(aggregator: &Aggregator) -> String {
    let mut text = String::new();
    aggregator.encode_openmetrics(&mut text).unwrap();
    text
}

#[test]
fn exemplars_in_openmetrics_keep_the_latest_observation_of_each_bucket() {
    let metrics = [
        config("requests_total", &[Label::StatusCode]),
        config("response_processing_seconds", &[]),
    ];
    let aggregator = Aggregator::with_cardinality(
        &metrics,
        with_native(NativeMode::Off, Some(TRACE)),
        &Registry::new(),
    )
    .unwrap();
    let before = now_ms();
    aggregator.observe(&traced(
        "/a",
        "200",
        3,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    aggregator.observe(&traced("/a", "200", 4, "second"));
    aggregator.observe(&traced("/a", "200", 40, "slow"));
    aggregator.observe(&traced("/a", "500", 60_000, "-"));
    let after = now_ms();
    let text = openmetrics_of(&aggregator);
    assert!(
        text.contains("# TYPE haproxy_log_requests counter\n"),
        "{text}"
    );
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .to_string()
    };
    // `value # {label} exemplar-value timestamp`, the timestamp in seconds.
    let exemplar = |l: &str| -> Option<(String, f64, f64)> {
        let (_, e) = l.split_once(" # ")?;
        let (labels, rest) = e.split_once("} ")?;
        let (value, at) = rest.split_once(' ')?;
        Some((
            labels.trim_start_matches('{').to_string(),
            value.parse().ok()?,
            at.parse().ok()?,
        ))
    };
    let (labels, value, at) =
        exemplar(&line("haproxy_log_requests_total{status_code=\"200\"} 3")).unwrap();
    assert_eq!((labels.as_str(), value), ("trace_id=\"slow\"", 1.0));
    assert!(at * 1000.0 >= before as f64 - 1.0 && at * 1000.0 <= after as f64 + 1.0);
    // A missing value (`-`) leaves no exemplar.
    assert_eq!(
        exemplar(&line("haproxy_log_requests_total{status_code=\"500\"} 1")),
        None
    );
    let h = "haproxy_log_response_processing_seconds_bucket";
    let (labels, value, _) = exemplar(&line(&format!("{h}{{le=\"0.005\"}} 2"))).unwrap();
    assert_eq!((labels.as_str(), value), ("trace_id=\"second\"", 0.004));
    let (labels, value, _) = exemplar(&line(&format!("{h}{{le=\"0.05\"}} 3"))).unwrap();
    assert_eq!((labels.as_str(), value), ("trace_id=\"slow\"", 0.04));
    assert_eq!(exemplar(&line(&format!("{h}{{le=\"0.001\"}} 0"))), None);
    assert_eq!(exemplar(&line(&format!("{h}{{le=\"+Inf\"}} 4"))), None);
    assert!(text.contains("haproxy_log_response_processing_seconds_count 4\n"));
}

#[test]
fn exemplars_without_classic_buckets_go_on_the_one_bucket() {
    let metrics = [config("response_processing_seconds", &[])];
    let aggregator = Aggregator::with_cardinality(
        &metrics,
        with_native(NativeMode::Only, Some(TRACE)),
        &Registry::new(),
    )
    .unwrap();
    aggregator.observe(&traced("/a", "200", 3, "first"));
    aggregator.observe(&traced("/a", "200", 4000, "latest"));
    let text = openmetrics_of(&aggregator);
    let inf = text
        .lines()
        .find(|l| l.contains("le=\"+Inf\""))
        .unwrap_or_default();
    assert!(
        inf.starts_with("haproxy_log_response_processing_seconds_bucket{le=\"+Inf\"} 2 # {trace_id=\"latest\"} 4.0 "),
        "{text}"
    );
}

fn protobuf_of(aggregator: &Aggregator) -> Vec<crate::metrics::proto::MetricFamily> {
    use prost::Message;
    let mut wire = Vec::new();
    aggregator.encode_protobuf(&mut wire).unwrap();
    let mut rest = wire.as_slice();
    let mut families = Vec::new();
    while !rest.is_empty() {
        families
            .push(crate::metrics::proto::MetricFamily::decode_length_delimited(&mut rest).unwrap());
    }
    // Encoded series by series, the bytes are those of each whole message encoded at once.
    let mut again = Vec::new();
    for family in &families {
        crate::metrics::gathered::write_delimited(family, &mut again);
    }
    assert_eq!(again, wire);
    families
}

fn family<'a>(
    families: &'a [crate::metrics::proto::MetricFamily],
    name: &str,
) -> &'a crate::metrics::proto::MetricFamily {
    families
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

/// The native buckets of a protobuf histogram as (index, count), from its spans and
/// deltas: what Prometheus reads.
fn native_buckets(h: &crate::metrics::proto::Histogram) -> Vec<(i32, i64)> {
    let mut out = Vec::new();
    let mut deltas = h.positive_delta.iter();
    let (mut index, mut count) = (0i32, 0i64);
    // The first span's offset is its first index, a later one's the gap after the
    // previous span: both add to the index after the last bucket.
    for span in &h.positive_span {
        index += span.offset();
        for _ in 0..span.length() {
            count += deltas.next().copied().unwrap();
            out.push((index, count));
            index += 1;
        }
    }
    assert!(deltas.next().is_none(), "more deltas than the spans hold");
    out.retain(|&(_, c)| c != 0);
    out
}

#[test]
fn protobuf_carries_native_buckets_that_place_each_value_by_the_schema() {
    let metrics = [config(
        "response_processing_seconds",
        &[Label::HttpRequestPath],
    )];
    let aggregator = Aggregator::with_cardinality(
        &metrics,
        with_native(NativeMode::On, None),
        &Registry::new(),
    )
    .unwrap();
    let values = [0u64, 1, 3, 3, 40, 41, 1000, 20_000];
    for ms in values {
        aggregator.observe(&record("/a", "200", ms));
    }
    let families = protobuf_of(&aggregator);
    let f = family(&families, "haproxy_log_response_processing_seconds");
    assert_eq!(
        f.r#type,
        Some(crate::metrics::proto::MetricType::Histogram as i32)
    );
    assert_eq!(f.metric.len(), 1);
    let m = &f.metric[0];
    assert_eq!(
        m.label
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect::<Vec<_>>(),
        [("http_request_path", "/a")]
    );
    let h = m.histogram.as_ref().unwrap();
    // The default factor 1.1 is schema 3.
    assert_eq!(h.schema, Some(3));
    assert_eq!(h.sample_count(), values.len() as u64);
    assert!((h.sample_sum() - 21.088).abs() < 1e-9, "{}", h.sample_sum());
    assert_eq!(h.zero_count(), 1);
    assert!(h.zero_threshold() > 0.0);
    // Each value in seconds lies in (2^((k-1)/8), 2^(k/8)] of its bucket k.
    let mut expected: Vec<(i32, i64)> = Vec::new();
    for &ms in values.iter().filter(|&&ms| ms > 0) {
        let v = ms as f64 / 1000.0;
        let k = (v.log2() * 8.0).ceil() as i32;
        let k = if 2f64.powf(f64::from(k) / 8.0) < v {
            k + 1
        } else {
            k
        };
        assert!(2f64.powf(f64::from(k - 1) / 8.0) < v && v <= 2f64.powf(f64::from(k) / 8.0));
        match expected.last_mut() {
            Some((last, count)) if *last == k => *count += 1,
            _ => expected.push((k, 1)),
        }
    }
    assert_eq!(native_buckets(h), expected);
    // `on` keeps the classic buckets, cumulative, as the text format has them.
    let classic: Vec<(f64, u64)> = h
        .bucket
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    assert_eq!(classic.len(), metrics[0].buckets.len());
    let le = |bound: f64| {
        values
            .iter()
            .filter(|&&ms| ms as f64 / 1000.0 <= bound)
            .count() as u64
    };
    for (bound, cumulative) in classic {
        assert_eq!(cumulative, le(bound), "le={bound}");
    }
}

#[test]
fn protobuf_without_classic_buckets_and_with_exemplars() {
    let metrics = [
        config("requests_total", &[Label::StatusCode]),
        config("response_processing_seconds", &[]),
    ];
    let aggregator = Aggregator::with_cardinality(
        &metrics,
        with_native(NativeMode::Only, Some(TRACE)),
        &Registry::new(),
    )
    .unwrap();
    aggregator.observe(&traced(
        "/a",
        "200",
        3,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    aggregator.observe(&traced("/a", "200", 4000, "slow"));
    let families = protobuf_of(&aggregator);
    let counter = &family(&families, "haproxy_log_requests_total").metric[0];
    let c = counter.counter.as_ref().unwrap();
    assert_eq!(c.value(), 2.0);
    let e = c.exemplar.as_ref().unwrap();
    assert_eq!(
        (e.label[0].name(), e.label[0].value(), e.value()),
        ("trace_id", "slow", 1.0)
    );
    let h = family(&families, "haproxy_log_response_processing_seconds").metric[0]
        .histogram
        .as_ref()
        .unwrap();
    assert!(h.bucket.is_empty(), "{:?}", h.bucket);
    assert_eq!(h.sample_count(), 2);
    let mut ids: Vec<(&str, f64)> = h
        .exemplars
        .iter()
        .map(|e| (e.label[0].value(), e.value()))
        .collect();
    ids.sort_by(|a, b| a.1.total_cmp(&b.1));
    // The traceparent is reduced to its trace id.
    assert_eq!(
        ids,
        [("4bf92f3577b34da6a3ce929d0e0e4736", 0.003), ("slow", 4.0)]
    );
    let ts = h.exemplars[0].timestamp.as_ref().unwrap();
    assert!(ts.seconds > 1_600_000_000 && (0..1_000_000_000).contains(&ts.nanos));
}

#[test]
fn protobuf_with_classic_buckets_puts_exemplars_on_them() {
    let metrics = [config("response_processing_seconds", &[])];
    let aggregator = Aggregator::with_cardinality(
        &metrics,
        with_native(NativeMode::On, Some(TRACE)),
        &Registry::new(),
    )
    .unwrap();
    aggregator.observe(&traced("/a", "200", 3, "fast"));
    aggregator.observe(&traced("/a", "200", 4000, "slow"));
    aggregator.observe(&traced("/a", "200", 100_000, "slowest"));
    let families = protobuf_of(&aggregator);
    let h = family(&families, "haproxy_log_response_processing_seconds").metric[0]
        .histogram
        .as_ref()
        .unwrap();
    let with: Vec<(f64, &str)> = h
        .bucket
        .iter()
        .filter_map(|b| Some((b.upper_bound(), b.exemplar.as_ref()?.label[0].value())))
        .collect();
    let bounds = &metrics[0].buckets;
    let first_above = |v: f64| bounds.iter().copied().find(|&b| v <= b).unwrap();
    assert_eq!(
        with,
        [
            (first_above(0.003), "fast"),
            (first_above(4.0), "slow"),
            (f64::INFINITY, "slowest")
        ]
    );
    assert!(h.exemplars.is_empty());
    assert_eq!(h.schema, Some(3));
}

#[test]
fn protobuf_with_native_off_has_no_native_fields() {
    let aggregator =
        Aggregator::with_cardinality(&default_metrics(), Cardinality::default(), &Registry::new())
            .unwrap();
    aggregator.observe(&record("/a", "200", 5));
    let families = protobuf_of(&aggregator);
    let h = family(&families, "haproxy_log_response_processing_seconds").metric[0]
        .histogram
        .as_ref()
        .unwrap();
    assert_eq!(h.schema, None);
    assert!(h.positive_span.is_empty() && h.zero_threshold.is_none());
    assert_eq!(h.sample_count(), 1);
}
