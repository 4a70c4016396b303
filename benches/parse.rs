//! Bench, pipeline stage 4: the HAProxy entry parser, per log format, on messages whose
//! syslog header was already removed. The parser is built from `HLE_LOG_FORMAT`
//! exactly as the exporter builds it: the built-in parser for `httplog` (which also reads
//! the tcplog lines mixed in), compiled formats for the others. Throughput is in lines.
//!
//! `cargo bench --bench parse`

mod support;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use haproxy_log_exporter::haproxy::Entry;
use haproxy_log_exporter::syslog;

use support::corpus::{Header, Layout};

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let n = support::sized(support::STAGE_LINES);
    group.throughput(Throughput::Elements(n as u64));
    for (layout, name) in Layout::ALL {
        let config = support::config(&[("HLE_LOG_FORMAT", layout.log_format_env())]);
        let lines = support::lines_with(Header::Raw, layout, n);
        let messages: Vec<&[u8]> = lines.iter().map(|l| syslog::split(l).message).collect();
        for message in &messages {
            match config.parser.parse(message) {
                Ok(Entry::Traffic(_)) => {}
                other => panic!(
                    "{name}: {:?} is not counted: {other:?}",
                    String::from_utf8_lossy(message)
                ),
            }
        }
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut counted = 0usize;
                for message in &messages {
                    if let Ok(Entry::Traffic(record)) = config.parser.parse(black_box(message)) {
                        counted += record.status_code.len();
                    }
                }
                counted
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
