//! Bench, pipeline stage 3: the syslog header (`syslog::split`), per header shape HAProxy
//! sends. Throughput is in lines.
//!
//! `cargo bench --bench header`

mod support;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use haproxy_log_exporter::syslog;

use support::corpus::{Header, Layout};

fn header(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    let n = support::sized(support::STAGE_LINES);
    group.throughput(Throughput::Elements(n as u64));
    for (header, name) in Header::ALL {
        let lines = support::lines_with(header, Layout::Httplog, n);
        // Every shape must leave exactly the HAProxy message, or the bench measures a
        // fallback path.
        for line in &lines {
            let message = syslog::split(line).message;
            assert!(
                message.first().is_some_and(u8::is_ascii_digit),
                "{name}: header not stripped from {:?}",
                String::from_utf8_lossy(line)
            );
        }
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut bytes = 0;
                for line in &lines {
                    bytes += syslog::split(black_box(line)).message.len();
                }
                bytes
            })
        });
    }
    group.finish();
}

criterion_group!(benches, header);
criterion_main!(benches);
