//! Bench, pipeline stage 5 and the whole pipeline:
//!
//! - `aggregate/*`: `Aggregator::observe` on records parsed beforehand;
//! - `pipeline/*`: `Pipeline::process` on whole syslog lines (header, parser, labels,
//!   aggregation, self-metrics), what a source does for each line;
//! - `exposition/*`: rendering `/metrics` after the corpus went through the pipeline
//!   (default labels, and about 50,000 samples).
//!
//! Each with the default labels and with the heavy set (path, method, status and
//! server on every histogram), built from `HLE_` variables like the exporter's own
//! configuration. Throughput is in lines (samples for the exposition).
//!
//! `cargo bench --bench aggregate`

mod support;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use haproxy_log_exporter::haproxy::{Entry, LogRecord};
use haproxy_log_exporter::metrics::{Aggregator, Transport};
use haproxy_log_exporter::pipeline::Pipeline;
use haproxy_log_exporter::{syslog, Config};
use prometheus::Registry;

fn configs() -> [(&'static str, Config); 2] {
    [
        ("default", support::default_config()),
        ("path_method_status_server", support::heavy_config()),
    ]
}

fn aggregate(c: &mut Criterion) {
    let lines = support::lines(support::sized(support::PIPELINE_LINES));
    let parser = support::default_config().parser;
    let records: Vec<LogRecord<'_>> = lines
        .iter()
        .map(|line| match parser.parse(syslog::split(line).message) {
            Ok(Entry::Traffic(record)) => record,
            other => panic!("not counted: {other:?}"),
        })
        .collect();

    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(20);
    for (name, config) in configs() {
        let aggregator =
            Aggregator::with_cardinality(&config.metrics, config.cardinality, &Registry::new())
                .expect("metrics register");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                for record in &records {
                    aggregator.observe(black_box(record));
                }
            })
        });
    }
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let lines = support::lines(support::sized(support::PIPELINE_LINES));
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(20);
    for (name, config) in configs() {
        let pipeline = Pipeline::from_config(&config, &Registry::new()).expect("metrics register");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                for line in &lines {
                    pipeline.process(Transport::Replay, black_box(line));
                }
            })
        });
    }
    group.finish();
}

/// About 50,000 samples, the issue's `/metrics` size: the heavy label set on
/// `haproxy_log_response_processing_seconds`, capped at 48,000 samples (a histogram's
/// buckets, sum and count each count; the corpus has more label sets than that).
fn exposition_config() -> Config {
    support::config(&[
        (
            "HLE_RESPONSE_PROCESSING_SECONDS_LABELS",
            support::HEAVY_LABELS,
        ),
        ("HLE_MAX_SERIES_PER_METRIC", "48000"),
    ])
}

fn exposition(c: &mut Criterion) {
    let lines = support::lines(support::sized(support::PIPELINE_LINES * 5));
    let mut group = c.benchmark_group("exposition");
    group.sample_size(20);
    for (name, config) in [
        ("default", support::default_config()),
        ("50k_samples", exposition_config()),
    ] {
        let pipeline = Pipeline::from_config(&config, &Registry::new()).expect("metrics register");
        for line in &lines {
            pipeline.process(Transport::Replay, line);
        }
        let text = pipeline.exposition().expect("exposition");
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        eprintln!(
            "exposition/{name}: {samples} samples, {} KiB",
            text.len() >> 10
        );
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| pipeline.exposition().expect("exposition").len())
        });
    }
    group.finish();
}

criterion_group!(benches, aggregate, pipeline, exposition);
criterion_main!(benches);
