//! Cardinality control end to end: more distinct label sets than the series cap, through
//! the live TCP listener and through `replay`, and idle series expiring (paused time).

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use haproxy_log_exporter::metrics::OVERFLOW;
use haproxy_log_exporter::pipeline::{self, Pipeline};
use haproxy_log_exporter::{Config, Server};
use prometheus::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use support::{
    http_get_async, parse_exposition, promtool_check_metrics, wait_until_async, Samples,
};

const WAIT: Duration = Duration::from_secs(10);
const REQUESTS: &str = "haproxy_log_requests_total";
const RESPONSE_COUNT: &str = "haproxy_log_response_processing_seconds_count";
const SERIES: &str = "haproxy_log_exporter_series";
const OVERFLOWED: &str = "haproxy_log_exporter_series_overflow_total";

const CAP: usize = 50;

/// The configuration of the cap test: per-path and per-client series, a small cap.
fn cap_vars() -> Vec<(&'static str, String)> {
    vec![
        ("HLE_MAX_SERIES_PER_METRIC", CAP.to_string()),
        (
            "HLE_REQUESTS_TOTAL_LABELS",
            "http_request_path,client_ip".into(),
        ),
        (
            "HLE_RESPONSE_PROCESSING_SECONDS_LABELS",
            "http_request_path".into(),
        ),
        (
            "HLE_ENABLED_METRICS",
            "requests_total,response_processing_seconds".into(),
        ),
    ]
}

fn env(vars: &[(&str, String)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// An httplog line for `path` from `client`; `Tr` is `-1` (no response) for every
/// seventh line.
fn line(n: usize, path: &str, client: &str) -> String {
    let tr = if n % 7 == 0 {
        "-1".to_string()
    } else {
        (n % 90).to_string()
    };
    format!(
        "<134>Nov 25 10:00:00 haproxy[1]: {client}:4{n:04} [25/Nov/2026:10:00:00.000] fe be/s1 \
         0/0/1/{tr}/9 200 120 - - ---- 1/1/0/0/0 0/0 \"GET {path}?n={n} HTTP/1.1\"\n"
    )
}

/// Four letters for `n`.
fn word(mut n: usize) -> String {
    let mut w = String::new();
    for _ in 0..4 {
        w.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    w
}

/// 400 lines with distinct paths (letters only, so no template folds them) and clients,
/// then the first 10 again.
fn attack() -> Vec<String> {
    let fresh = (0..400).map(|n| {
        line(
            n,
            &format!("/x/{}", word(n)),
            &format!("10.1.{}.{}", n / 250, n % 250),
        )
    });
    let again = (0..10).map(|n| {
        line(
            n,
            &format!("/x/{}", word(n)),
            &format!("10.1.{}.{}", n / 250, n % 250),
        )
    });
    fresh.chain(again).collect()
}

/// What the traffic implies, whoever counted it.
fn check_capped(samples: &Samples, lines: usize) {
    let counted = samples.sum("haproxy_log_exporter_lines_counted_total", &[]);
    assert_eq!(counted, lines as f64);

    // requests_total: the first CAP - 1 label sets have their own series, every other
    // label set shares the overflow series; nothing is lost.
    let series: Vec<_> = samples.find(REQUESTS, &[]).collect();
    assert_eq!(series.len(), CAP, "series of {REQUESTS}");
    assert_eq!(
        samples.sum(REQUESTS, &[]),
        lines as f64,
        "sum over all series"
    );
    let own = CAP - 1 + 10; // the repeated 10 are among the first CAP - 1
    let folded = (lines - own) as f64;
    let overflow = [("http_request_path", OVERFLOW), ("client_ip", OVERFLOW)];
    assert_eq!(samples.get(REQUESTS, &overflow), Some(folded));
    assert_eq!(
        samples.get(OVERFLOWED, &[("metric", REQUESTS)]),
        Some(folded)
    );
    assert_eq!(
        samples.get(SERIES, &[("metric", REQUESTS)]),
        Some(CAP as f64)
    );
    for s in series.iter().filter(|s| !s.matches(&overflow)) {
        let path = &s.labels["http_request_path"];
        let repeated = (0..10).any(|n| *path == format!("/x/{}", word(n)));
        assert_eq!(s.value, if repeated { 2.0 } else { 1.0 }, "{s}");
    }

    // response_processing_seconds: each label set is 16 series (13 buckets, +Inf, sum
    // and count), so CAP / 16 label sets fit, the overflow one included. A line without
    // a response is not observed, and does not count as sent to the overflow series.
    let label_sets = CAP / 16;
    let metric = "haproxy_log_response_processing_seconds";
    let with_response = |n: &usize| n % 7 != 0;
    let responses = (0..400).chain(0..10).filter(with_response).count() as f64;
    let own_responses = (0..label_sets - 1)
        .chain(0..label_sets - 1)
        .filter(with_response)
        .count() as f64;
    assert_eq!(samples.find(RESPONSE_COUNT, &[]).count(), label_sets);
    assert_eq!(
        samples.get(SERIES, &[("metric", metric)]),
        Some((label_sets * 16) as f64)
    );
    assert_eq!(samples.sum(RESPONSE_COUNT, &[]), responses);
    assert_eq!(
        samples.get(RESPONSE_COUNT, &[("http_request_path", OVERFLOW)]),
        Some(responses - own_responses)
    );
    assert_eq!(
        samples.get(OVERFLOWED, &[("metric", metric)]),
        Some(responses - own_responses)
    );
}

/// The traffic metrics' sample lines, sorted.
fn traffic(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("haproxy_log_") && !l.starts_with("haproxy_log_exporter_"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn label_sets_beyond_the_cap_fold_into_one_series_live_and_in_replay() {
    let mut vars = cap_vars();
    vars.extend([
        ("HLE_SYSLOG_UDP_ADDR", "".to_string()),
        ("HLE_SYSLOG_TCP_ADDR", "127.0.0.1:0".into()),
        ("HLE_WEB_LISTEN_ADDR", "127.0.0.1:0".into()),
    ]);
    let server = Server::bind(Config::from_env(&env(&vars)).unwrap())
        .await
        .unwrap();
    let tcp = server.tcp_addr().unwrap();
    let web = server.web_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(server.run(async move { stopped.cancelled().await }));

    let lines = attack();
    let mut stream = TcpStream::connect(tcp).await.unwrap();
    stream.write_all(lines.concat().as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let text = wait_until_async(WAIT, || async {
        let text = http_get_async(&web, "/metrics", WAIT).await.ok()?.text();
        let samples = parse_exposition(&text).ok()?;
        let counted = samples.sum("haproxy_log_exporter_lines_counted_total", &[]);
        (counted >= lines.len() as f64).then_some(text)
    })
    .await
    .expect("every line counted");
    stop.cancel();
    task.await.unwrap().unwrap();

    check_capped(&parse_exposition(&text).unwrap(), lines.len());
    assert!(promtool_check_metrics(&text).is_passed() || !support::is_ci());

    // The same lines through replay, with the same variables: the same series.
    let mut child = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"))
        .arg("replay")
        .env_clear()
        .envs(env(&cap_vars()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.concat().as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let replayed = String::from_utf8(output.stdout).unwrap();
    check_capped(&parse_exposition(&replayed).unwrap(), lines.len());
    assert_eq!(traffic(&replayed), traffic(&text));
}

/// The live expiry task on a paused clock: a series leaves once it has been idle for
/// the TTL (within two sweep intervals), a busy one stays.
#[tokio::test(start_paused = true)]
async fn idle_series_leave_after_the_ttl() {
    let vars = [
        ("HLE_SERIES_TTL", "60s".to_string()),
        ("HLE_REQUESTS_TOTAL_LABELS", "http_request_path".into()),
        ("HLE_ENABLED_METRICS", "requests_total".into()),
    ];
    let config = Config::from_env(&env(&vars)).unwrap();
    let pipeline = Arc::new(Pipeline::from_config(&config, &Registry::new()).unwrap());
    let interval = pipeline.sweep_interval().unwrap();
    assert_eq!(interval, Duration::from_secs(6));
    let stop = CancellationToken::new();
    let task = tokio::spawn(pipeline::expire_idle_series(pipeline.clone(), stop.clone()));

    let send = |path: &str| {
        let line = line(1, path, "10.0.0.1");
        pipeline.process(
            haproxy_log_exporter::metrics::Transport::Replay,
            line.trim_end().as_bytes(),
        );
    };
    let paths = || -> Vec<String> {
        let samples = parse_exposition(&pipeline.exposition().unwrap()).unwrap();
        samples.label_values(REQUESTS, "http_request_path")
    };
    // Lets the expiry task run at every tick up to `seconds` from now.
    async fn pass(seconds: u64) {
        for _ in 0..seconds {
            tokio::time::advance(Duration::from_secs(1)).await;
            tokio::task::yield_now().await;
        }
    }

    send("/idle");
    send("/busy");
    pass(1).await;
    for _ in 0..10 {
        pass(6).await;
        send("/busy");
    }
    // 61 s: /idle has been idle for a TTL, but not yet for TTL + one interval.
    assert_eq!(paths(), ["/busy", "/idle"]);
    pass(12).await;
    assert_eq!(paths(), ["/busy"], "73 s after its only line");
    let samples = parse_exposition(&pipeline.exposition().unwrap()).unwrap();
    assert_eq!(samples.get(SERIES, &[("metric", REQUESTS)]), Some(1.0));
    assert_eq!(
        samples.get(REQUESTS, &[("http_request_path", "/busy")]),
        Some(11.0)
    );

    // Idle from its last line at 61 s on: there for a TTL, gone within TTL + two intervals.
    pass(48).await;
    assert_eq!(paths(), ["/busy"], "60 s after its last line");
    pass(12).await;
    assert!(paths().is_empty(), "72 s after its last line");
    stop.cancel();
    task.await.unwrap();
}
