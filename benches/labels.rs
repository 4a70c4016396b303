//! Bench, between stages 4 and 5: label extraction. For each parsed record, the values of
//! a metric's configured labels are gathered into one key, the way a series is looked up
//! (the path through the configured path rules, `HLE_PATH_*`). Compares the default label
//! set of `haproxy_log_requests_total` with the heavy set (path, method, status,
//! server). Throughput is in lines.
//!
//! `cargo bench --bench labels`

mod support;

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use haproxy_log_exporter::haproxy::{Entry, LogRecord};
use haproxy_log_exporter::metrics::Label;
use haproxy_log_exporter::{syslog, Config};

/// The labels of the first metric whose labels include `with` (or the first metric).
fn labels_of(config: &Config, with: Option<Label>) -> Vec<Label> {
    config
        .metrics
        .iter()
        .find(|m| with.is_none_or(|l| m.labels.contains(&l)))
        .map(|m| m.labels.clone())
        .expect("an enabled metric")
}

fn labels(c: &mut Criterion) {
    let lines = support::lines(support::sized(support::STAGE_LINES));
    let default = support::default_config();
    let records: Vec<LogRecord<'_>> = lines
        .iter()
        .map(
            |line| match default.parser.parse(syslog::split(line).message) {
                Ok(Entry::Traffic(record)) => record,
                other => panic!("not counted: {other:?}"),
            },
        )
        .collect();

    let heavy = support::heavy_config();
    let sets = [
        ("default", labels_of(&default, None), &default),
        (
            "path_method_status_server",
            labels_of(&heavy, Some(Label::HttpRequestPath)),
            &heavy,
        ),
    ];

    let mut group = c.benchmark_group("labels");
    group.throughput(Throughput::Elements(records.len() as u64));
    for (name, labels, config) in &sets {
        let uses_path = labels.contains(&Label::HttpRequestPath);
        let mut key = Vec::with_capacity(256);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut total = 0;
                for record in &records {
                    let record = black_box(record);
                    let path = if uses_path {
                        config.cardinality.path.normalise(&record.http_request_path)
                    } else {
                        Cow::Borrowed("")
                    };
                    key.clear();
                    for &label in labels {
                        let value = match label {
                            Label::HttpRequestPath => &*path,
                            other => other.value(record),
                        };
                        key.extend_from_slice(value.as_bytes());
                        key.push(0xff);
                    }
                    total += key.len();
                }
                total
            })
        });
    }
    // The path rules alone (the built-in templates that turn ids into `:id`).
    group.bench_function("path_normalise", |b| {
        b.iter(|| {
            let mut total = 0;
            for record in &records {
                total += heavy
                    .cardinality
                    .path
                    .normalise(black_box(&record.http_request_path))
                    .len();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, labels);
criterion_main!(benches);
