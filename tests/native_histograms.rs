//! Native histograms and exemplars end to end: the exporter with
//! `HLE_NATIVE_HISTOGRAMS=on` and `HLE_EXEMPLAR_LABEL=trace_id`, fed by a real HAProxy
//! 2.6, scraped in the protobuf format by a real Prometheus 2.42 (Debian package
//! `prometheus`, `--enable-feature=native-histograms,exemplar-storage`).
//!
//! `native_histograms` re-executes this test binary under `unshare -n` (fixed loopback
//! ports inside a private network namespace) to run `native_histograms_inner`, which:
//!
//! 1. starts the exporter with a custom log-format whose `%[capture.req.hdr(0)]` (HAProxy
//!    captures the client's `traceparent` header) is the custom label `trace_id`, the
//!    exemplar label; `haproxy_log_response_processing_seconds` keeps its default labels,
//!    `http_request_path` among them. Then a small HTTP server of its own that answers
//!    each request after the delay the request asks for (`x-delay-us`), HAProxy from
//!    `tests/fixtures/native/haproxy.cfg.in` in front of it, logging over UDP to the
//!    exporter and, as a copy, to the test, and Prometheus scraping the exporter every
//!    second;
//! 2. sends one warm-up request per path and waits until Prometheus has the native
//!    series (so that the rate below sees every later request: a rate takes its
//!    increase from the first sample of a series), then [`PER_PATH`] requests per path
//!    with delays spread evenly, `/fast` 5-15 ms and `/slow` 100-300 ms, each with a
//!    `traceparent` of its own, and waits until Prometheus has scraped them all;
//! 3. checks, through Prometheus' HTTP API:
//!    - `histogram_quantile(0.95, sum by (http_request_path)
//!      (rate(haproxy_log_response_processing_seconds[1m])))`, per path, against the
//!      95th percentile of the response times HAProxy logged for those requests: within
//!      one native bucket, a factor of 2^(2^-schema) either way, the schema derived from
//!      the bucket factor as the exporter derives it (1.1: schema 3, 1.0905), and the
//!      bucket bounds Prometheus returns must have that ratio. Against the delays the
//!      test made (the true quantile of what was sent), within the same factor plus
//!      HAProxy's rounding to the millisecond and [`OVERHEAD_MS`] of time the delay
//!      server and HAProxy add;
//!    - the series are native: `histogram_count(...)` per path is the number of requests
//!      sent, and `haproxy_log_response_processing_seconds_bucket` (and `_count`,
//!      `_sum`) have no series. Prometheus 2.42 ingests only the native histogram when a
//!      protobuf scrape carries one (the classic buckets too only from 2.45 on, with
//!      `scrape_classic_histograms`);
//!    - `/api/v1/query_exemplars`: for the histogram, exemplars of the native series,
//!      under the histogram's own name (`haproxy_log_response_processing_seconds`), at
//!      least one per path; Prometheus 2.42 takes a native histogram's exemplar from the
//!      classic buckets of the protobuf message (the first bucket that has one, per
//!      scrape), since it does not read the native histogram's own exemplars. Every
//!      exemplar's trace id is one the test sent, and its value is the response time
//!      HAProxy logged for that request. For `haproxy_log_requests_total` too (trace
//!      ids the test sent);
//!    - every latency query of the dashboard (deploy/grafana/haproxy-log-exporter.json)
//!      returns data from these native series alone (classic buckets are not stored).
//!
//! `classic_exposition_unchanged` (its own namespace; no HAProxy or Prometheus) checks
//! that without `HLE_NATIVE_HISTOGRAMS` (and with `off`) the exposition is the text
//! format, byte for byte the same whatever the `Accept` header asks for, and that `on`
//! serves the protobuf format to a scraper that asks for it and the same text to every
//! other (OpenMetrics is offered only with an exemplar label); `Vary` names `Accept` only
//! with `on`, when there is a choice.
//!
//! Without `unshare`, `haproxy` or `prometheus` the test prints a skip message, or fails
//! when `CI=true`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::haproxy::{
    inner_may_run, raw_exchange, render_haproxy_cfg, scrape, status_of, stop_exporter, Inner,
    EXPORTER_UDP, EXPORTER_WEB, IO_TIMEOUT, M_COUNTED, M_IGNORED, M_RECEIVED, M_REJECTED,
};
use support::json::{parse_json, url_encode, Json};
use support::{
    find_program, http_get, parse_http_response, run_in_private_netns, tail_file, wait_until,
    Checks, ChildGuard, HttpResponse, NetnsRun,
};

const OUTER_TEST: &str = "native_histograms";
const INNER_TEST: &str = "native_histograms_inner";
const WORK_DIR_PREFIX: &str = "hle-native";
/// The whole inner run must finish within this time (it takes about 20 s).
const INNER_RUN_LIMIT: Duration = Duration::from_secs(120);

const PORT_MAIN: u16 = 8080;
const PORT_DELAY: u16 = 8091;
/// Where HAProxy sends the copy of its log lines that the test reads.
const COPY_LOG_ADDR: &str = "127.0.0.1:5150";
const PROMETHEUS_ADDR: &str = "127.0.0.1:9090";
const JOB: &str = "haproxy-log-exporter";
const HAPROXY_CFG_TEMPLATE: &str = include_str!("fixtures/native/haproxy.cfg.in");
const DASHBOARD_FILE: &str = "deploy/grafana/haproxy-log-exporter.json";
const RULES_FILE: &str = "deploy/prometheus/haproxy-log-exporter.rules.yml";

/// HAProxy's `option httplog` without the cookies and header captures, and with the
/// captured `traceparent` in `tp=`. The exporter is given the same format.
const LOG_FORMAT: &str = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc \
                          %ac/%fc/%bc/%sc/%rc %sq/%bq tp=%[capture.req.hdr(0)] %{+Q}r";
const CUSTOM_LABELS: &str = "trace_id=%[capture.req.hdr(0)]";
const EXEMPLAR_LABEL: &str = "trace_id";
/// `HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR`, as the test sets it (the default).
const BUCKET_FACTOR: f64 = 1.1;

const M_RESPONSE: &str = "haproxy_log_response_processing_seconds";
const M_REQUESTS: &str = "haproxy_log_requests_total";

/// The quantile the test checks.
const Q: f64 = 0.95;
/// Requests per path after the warm-up; Q times it is not a whole number, so that
/// Prometheus' rank never sits exactly on a bucket's cumulative count (where rounding
/// in `rate` could pick either bucket).
const PER_PATH: u32 = 90;
/// The paths and the spread of their delays, in microseconds (lowest, highest).
const PATHS: [(&str, u64, u64); 2] = [("/fast", 5_000, 15_000), ("/slow", 100_000, 300_000)];
/// Requests in flight at once.
const CLIENTS: usize = 12;
/// What the delay server and HAProxy may add to a delay, in milliseconds, in the
/// check against the delays sent (the check against what HAProxy logged has no slack).
const OVERHEAD_MS: f64 = 3.0;
/// Any single response time HAProxy logs may exceed its delay by this much before the
/// harness counts it as broken (a loaded machine).
const HARNESS_MAX_OVERHEAD_MS: u64 = 50;

/// Prometheus 2.42's `Accept` header without the native-histograms feature, and with it.
const ACCEPT_PROMETHEUS: &str = "application/openmetrics-text;version=1.0.0,\
     application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const ACCEPT_PROMETHEUS_PROTOBUF: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,\
     application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,\
     text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const ACCEPT_PROTOBUF: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";
const ACCEPT_OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";
/// What the exporter has always answered.
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4";
const CONTENT_TYPE_PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

// ---------------------------------------------------------------------------
// Outer tests: re-execute this binary in a private network namespace
// ---------------------------------------------------------------------------

#[test]
fn native_histograms() {
    run_in_private_netns(&NetnsRun {
        outer: OUTER_TEST,
        inner: INNER_TEST,
        tools: &[
            ("ip", "iproute2"),
            ("haproxy", "haproxy"),
            ("prometheus", "prometheus"),
        ],
        work_dir_prefix: WORK_DIR_PREFIX,
        limit: INNER_RUN_LIMIT,
    });
}

#[test]
#[ignore = "inner half of native_histograms: runs only inside its private network namespace"]
fn native_histograms_inner() {
    if inner_may_run(INNER_TEST, OUTER_TEST) {
        run_native();
    }
}

#[test]
fn classic_exposition_unchanged() {
    run_in_private_netns(&NetnsRun {
        outer: "classic_exposition_unchanged",
        inner: "classic_exposition_unchanged_inner",
        tools: &[("ip", "iproute2")],
        work_dir_prefix: "hle-native-off",
        limit: Duration::from_secs(60),
    });
}

#[test]
#[ignore = "inner half of classic_exposition_unchanged: runs only inside its private network namespace"]
fn classic_exposition_unchanged_inner() {
    if inner_may_run(
        "classic_exposition_unchanged_inner",
        "classic_exposition_unchanged",
    ) {
        run_classic();
    }
}

// ---------------------------------------------------------------------------
// The traffic
// ---------------------------------------------------------------------------

/// One request: its path, the delay the server waits before it answers, its trace id.
#[derive(Debug, Clone)]
struct Req {
    path: &'static str,
    delay_us: u64,
    trace_id: String,
}

impl Req {
    fn bytes(&self) -> Vec<u8> {
        // The span id varies too, so that only the trace id part is what the exporter
        // keeps.
        let span = self.delay_us ^ 0x5ca1_ab1e_0000_0000;
        format!(
            "GET {} HTTP/1.1\r\nHost: e2e.test\r\nUser-Agent: e2e\r\n\
             traceparent: 00-{}-{span:016x}-01\r\nx-delay-us: {}\r\nConnection: close\r\n\r\n",
            self.path, self.trace_id, self.delay_us
        )
        .into_bytes()
    }
}

fn trace_id(path_index: usize, n: u32) -> String {
    format!(
        "{:016x}{:016x}",
        0x4bf9_2f35_77b3_4da6_u64 + path_index as u64,
        u64::from(n) + 1
    )
}

/// The warm-up request of each path: the middle of its spread.
fn warm_up() -> Vec<Req> {
    PATHS
        .iter()
        .enumerate()
        .map(|(p, &(path, lo, hi))| Req {
            path,
            delay_us: (lo + hi) / 2,
            trace_id: trace_id(p, PER_PATH + 1000),
        })
        .collect()
}

/// [`PER_PATH`] requests per path, delays spread evenly over the path's range, the
/// paths interleaved and each path's delays in a scrambled order.
fn traffic() -> Vec<Req> {
    let mut out = Vec::new();
    for i in 0..PER_PATH {
        // 37 and PER_PATH have no common divisor: a permutation of 0..PER_PATH.
        let k = (i * 37) % PER_PATH;
        for (p, &(path, lo, hi)) in PATHS.iter().enumerate() {
            out.push(Req {
                path,
                delay_us: lo + (hi - lo) * u64::from(k) / u64::from(PER_PATH - 1),
                trace_id: trace_id(p, k),
            });
        }
    }
    out
}

/// Sends every request, [`CLIENTS`] at a time; each must get a 200.
fn send_all(checks: &mut Checks, reqs: &[Req]) {
    let queue = Arc::new(Mutex::new(reqs.to_vec()));
    let addr = SocketAddr::from(([127, 0, 0, 1], PORT_MAIN));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some(req) = next else { break };
                    let got = raw_exchange(addr, &req.bytes()).and_then(|r| status_of(&r));
                    if !matches!(got, Ok(200)) {
                        failures.push(format!(
                            "harness: GET {} (delay {} us) answered {got:?}, expected 200",
                            req.path, req.delay_us
                        ));
                    }
                }
                failures
            })
        })
        .collect();
    for w in workers {
        let failures = w
            .join()
            .unwrap_or_else(|_| vec!["a client panicked".into()]);
        checks.check(failures.is_empty(), || failures.join("; "));
    }
}

/// An HTTP server that answers each request after the delay its `x-delay-us` header
/// asks for; a thread per connection. Stops accepting when dropped.
struct DelayServer {
    stop: Arc<AtomicBool>,
    port: u16,
}

impl DelayServer {
    fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the delay server");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                std::thread::spawn(move || serve_delayed(conn));
            }
        });
        Self { stop, port }
    }
}

fn serve_delayed(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let delay_us: u64 = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("x-delay-us")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    std::thread::sleep(Duration::from_micros(delay_us));
    let _ = conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
          Content-Length: 2\r\nConnection: close\r\n\r\nok",
    );
}

impl Drop for DelayServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// What HAProxy logged for one request, from the copy of its log.
#[derive(Debug, Clone)]
struct Logged {
    path: String,
    /// `Tr`, in milliseconds.
    tr_ms: u64,
}

/// Collects the copy of HAProxy's log lines, by trace id, until dropped.
struct LogCopy {
    lines: Arc<Mutex<BTreeMap<String, Logged>>>,
    unreadable: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl LogCopy {
    fn start() -> Self {
        let sock = UdpSocket::bind(COPY_LOG_ADDR).expect("bind the log copy's UDP socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
        let copy = LogCopy {
            lines: Arc::default(),
            unreadable: Arc::default(),
            stop: Arc::default(),
        };
        let (lines, unreadable, stop) = (
            Arc::clone(&copy.lines),
            Arc::clone(&copy.unreadable),
            Arc::clone(&copy.stop),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                match read_logged(&line) {
                    Some((id, logged)) => {
                        lines.lock().unwrap().insert(id, logged);
                    }
                    None => unreadable.lock().unwrap().push(line),
                }
            }
        });
        copy
    }

    fn snapshot(&self) -> BTreeMap<String, Logged> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for LogCopy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The trace id, path and `Tr` of a line in [`LOG_FORMAT`].
fn read_logged(line: &str) -> Option<(String, Logged)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with("be_delay/"))?;
    let tr_ms = words.get(at + 1)?.split('/').nth(3)?.parse().ok()?;
    let tp = words.iter().find_map(|w| w.strip_prefix("tp="))?;
    let id = tp.get(3..35)?.to_string();
    let method = words.iter().position(|w| *w == "\"GET")?;
    let path = words.get(method + 1)?.to_string();
    Some((id, Logged { path, tr_ms }))
}

// ---------------------------------------------------------------------------
// The inner run with HAProxy and Prometheus
// ---------------------------------------------------------------------------

/// The native histogram schema for a bucket factor, as client_golang (and the exporter)
/// pick it: the lowest resolution whose buckets are no wider than the factor.
fn schema_for(factor: f64) -> i32 {
    let floor = factor.log2().log2().floor();
    (-floor).clamp(-4.0, 8.0) as i32
}

/// How much wider than its lower bound a bucket of `schema` is: 2^(2^-schema).
fn bucket_width(schema: i32) -> f64 {
    2f64.powf(2f64.powi(-schema))
}

/// The `q` quantile of `values` by nearest rank: the ceil(q·n)-th smallest. Prometheus
/// interpolates inside the bucket that holds that value (its rank, q·n, is first reached
/// there), so the estimate and this value share a bucket.
fn nearest_rank(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn run_native() {
    let inner = Inner::new(WORK_DIR_PREFIX);
    let mut checks = Checks::default();
    let started_ms = now_ms();

    let factor = BUCKET_FACTOR.to_string();
    let env = [
        ("HLE_NATIVE_HISTOGRAMS", "on"),
        ("HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR", factor.as_str()),
        ("HLE_EXEMPLAR_LABEL", EXEMPLAR_LABEL),
        ("HLE_LOG_FORMAT", LOG_FORMAT),
        ("HLE_CUSTOM_LABELS", CUSTOM_LABELS),
    ];
    for (k, v) in &env {
        println!("  {k}={v}");
    }
    let _exporter = inner.start_exporter(&env, " with native histograms and exemplars");

    let _delay = DelayServer::start(PORT_DELAY);
    let copy = LogCopy::start();
    let cfg = render_haproxy_cfg(
        HAPROXY_CFG_TEMPLATE,
        &[
            ("@PORT_MAIN@", &PORT_MAIN.to_string()),
            ("@PORT_DELAY@", &PORT_DELAY.to_string()),
            ("@COPY_LOG_ADDR@", COPY_LOG_ADDR),
            ("@LOG_FORMAT@", LOG_FORMAT),
        ],
    );
    let (_haproxy, _) = inner.start_haproxy(&cfg);

    let prometheus_log = inner.dir.join("prometheus.log");
    let _prometheus = start_prometheus(&inner, &prometheus_log);
    let fail_with_logs = |msg: String| -> ! {
        panic!(
            "{msg}\n\nexporter log (tail):\n{}\n\nPrometheus log (tail):\n{}\n\nHAProxy log (tail):\n{}",
            inner.exporter_log_tail(),
            tail_file(&prometheus_log, 30),
            tail_file(&inner.haproxy_log, 20)
        )
    };

    // --- warm-up: one request per path, until Prometheus has the native series ----
    let warm = warm_up();
    send_all(&mut checks, &warm);
    let count_by_path = |want: f64| {
        move || {
            let got = prom_query(&format!(
                "sum by (http_request_path) (histogram_count({M_RESPONSE}))"
            ))
            .ok()?;
            let all = PATHS.iter().all(|(path, ..)| {
                got.iter()
                    .any(|s| s.label("http_request_path") == Some(path) && s.float() == Some(want))
            });
            (all && got.len() == PATHS.len()).then_some(got)
        }
    };
    wait_until(Duration::from_secs(20), count_by_path(1.0)).unwrap_or_else(|t| {
        fail_with_logs(format!(
            "Prometheus has no native histogram with one observation per path: {t}; \
             histogram_count: {}; {M_RESPONSE}_count: {}",
            describe(&prom_query(&format!("histogram_count({M_RESPONSE})"))),
            describe(&prom_query(&format!("{M_RESPONSE}_count")))
        ))
    });
    inner.step("Prometheus has the native series of both paths (the warm-up requests)");

    // --- the traffic ------------------------------------------------------------------
    let reqs = traffic();
    send_all(&mut checks, &reqs);
    inner.step(&format!("sent {} requests", reqs.len()));
    let per_path = f64::from(PER_PATH + 1);
    wait_until(Duration::from_secs(20), count_by_path(per_path)).unwrap_or_else(|t| {
        fail_with_logs(format!(
            "Prometheus' native histograms did not reach {per_path} observations per path: \
             {t}; histogram_count: {}",
            describe(&prom_query(&format!(
                "sum by (http_request_path) (histogram_count({M_RESPONSE}))"
            )))
        ))
    });
    inner.step("Prometheus scraped every request");
    let total = reqs.len() + warm.len();
    let logged = wait_until(Duration::from_secs(10), || {
        let l = copy.snapshot();
        (l.len() >= total).then_some(l)
    })
    .unwrap_or_else(|t| {
        fail_with_logs(format!(
            "the copy of HAProxy's log has {} of {total} lines after {t}; unreadable: {:?}",
            copy.snapshot().len(),
            copy.unreadable
                .lock()
                .unwrap()
                .iter()
                .take(3)
                .collect::<Vec<_>>()
        ))
    });

    // --- what HAProxy logged against what was sent -------------------------------------
    let sent: BTreeMap<&str, &Req> = reqs
        .iter()
        .chain(&warm)
        .map(|r| (r.trace_id.as_str(), r))
        .collect();
    checks.eq_f64(
        "harness: distinct trace ids sent",
        sent.len() as f64,
        total as f64,
    );
    for (id, req) in &sent {
        let got = logged.get(*id);
        let delay_ms = req.delay_us / 1000;
        checks.check(
            got.is_some_and(|l| {
                l.path == req.path
                    && l.tr_ms + 1 >= delay_ms
                    && l.tr_ms <= delay_ms + HARNESS_MAX_OVERHEAD_MS
            }),
            || {
                format!(
                    "harness: HAProxy logged {got:?} for {} (delay {} us, trace id {id})",
                    req.path, req.delay_us
                )
            },
        );
    }

    // --- counts ------------------------------------------------------------------------
    let (_, exp) = scrape(EXPORTER_WEB).unwrap_or_else(|e| fail_with_logs(e));
    checks.eq_f64(
        "exporter: lines counted (one per request)",
        exp.sum(M_COUNTED, &[]),
        total as f64,
    );
    checks.eq_f64("exporter: lines rejected", exp.sum(M_REJECTED, &[]), 0.0);
    let counted = prom_query(&format!("sum(histogram_count({M_RESPONSE}))"));
    checks.check(
        matches!(&counted, Ok(s) if s.len() == 1 && s[0].float() == Some(total as f64)),
        || {
            format!(
                "sum(histogram_count({M_RESPONSE})): {}, want {total}",
                describe(&counted)
            )
        },
    );
    let requests = prom_query(&format!("sum({M_REQUESTS})"));
    checks.check(
        matches!(&requests, Ok(s) if s.len() == 1 && s[0].float() == Some(total as f64)),
        || format!("sum({M_REQUESTS}): {}, want {total}", describe(&requests)),
    );

    // --- native series only ------------------------------------------------------------
    for suffix in ["_bucket", "_count", "_sum"] {
        let q = format!("{M_RESPONSE}{suffix}");
        let got = prom_query(&q);
        println!("  {q}: {}", describe(&got));
        checks.check(matches!(&got, Ok(s) if s.is_empty()), || {
            format!(
                "{q}: {}; Prometheus 2.42 stores only the native histogram of a protobuf scrape",
                describe(&got)
            )
        });
    }

    // --- the schema, from the bucket bounds --------------------------------------------
    let schema = schema_for(BUCKET_FACTOR);
    let width = bucket_width(schema);
    let hist = prom_query(M_RESPONSE).unwrap_or_else(|e| fail_with_logs(e));
    checks.eq_f64(
        "native series (one per path)",
        hist.len() as f64,
        PATHS.len() as f64,
    );
    for s in &hist {
        let Some(h) = s.histogram() else {
            checks.check(false, || {
                format!("{M_RESPONSE}: not a native histogram: {s}")
            });
            continue;
        };
        for b in h.buckets.iter().filter(|b| b.lower > 0.0) {
            let ratio = b.upper / b.lower;
            checks.check((ratio / width - 1.0).abs() < 1e-9, || {
                format!(
                    "{M_RESPONSE}{{{}}}: bucket ({}, {}] is {ratio} wide, want {width} \
                     (schema {schema} from the bucket factor {BUCKET_FACTOR})",
                    s.labels_text(),
                    b.lower,
                    b.upper
                )
            });
        }
    }
    println!("  schema {schema}: each native bucket is a factor {width:.4} wide");

    // --- the 95th percentile per path ---------------------------------------------------
    let expr =
        format!("histogram_quantile({Q}, sum by (http_request_path) (rate({M_RESPONSE}[1m])))");
    let estimates = prom_query(&expr).unwrap_or_else(|e| fail_with_logs(format!("{expr}: {e}")));
    for (path, ..) in PATHS {
        let main: Vec<&Req> = reqs.iter().filter(|r| r.path == path).collect();
        let delays: Vec<f64> = main.iter().map(|r| r.delay_us as f64 / 1e6).collect();
        let logged_s: Vec<f64> = main
            .iter()
            .filter_map(|r| logged.get(&r.trace_id))
            .map(|l| l.tr_ms as f64 / 1e3)
            .collect();
        let true_sent = nearest_rank(&delays, Q);
        let true_logged = nearest_rank(&logged_s, Q);
        let got = estimates
            .iter()
            .find(|s| s.label("http_request_path") == Some(path))
            .and_then(PromSample::float);
        println!(
            "  p95 of {path}: Prometheus {got:?}; logged by HAProxy {true_logged}; sent {true_sent}"
        );
        let Some(got) = got else {
            checks.check(false, || {
                format!("{expr}: no sample for {path}: {}", summary(&estimates))
            });
            continue;
        };
        let slack = 1e-9;
        checks.check(
            got >= true_logged / width * (1.0 - slack)
                && got <= true_logged * width * (1.0 + slack),
            || {
                format!(
                    "p95 of {path}: Prometheus says {got}, HAProxy's logged times give \
                     {true_logged}: more than one native bucket (a factor {width:.4}) apart"
                )
            },
        );
        let ms = 1e-3;
        let (lo, hi) = (
            true_sent / width - ms,
            (true_sent + ms + OVERHEAD_MS * ms) * width,
        );
        checks.check(got >= lo && got <= hi, || {
            format!(
                "p95 of {path}: Prometheus says {got}, outside [{lo}, {hi}] around the true \
                 {true_sent} of the delays sent (a factor {width:.4}, 1 ms of rounding and \
                 {OVERHEAD_MS} ms of overhead)"
            )
        });
    }

    // --- exemplars ----------------------------------------------------------------------
    let ended_ms = now_ms() + 1000;
    let check_exemplars = |checks: &mut Checks, query: &str| -> Vec<ExemplarSeries> {
        let got = prom_exemplars(query);
        match got {
            Ok(series) => {
                for s in &series {
                    for e in &s.exemplars {
                        let id = e.labels.get(EXEMPLAR_LABEL).cloned().unwrap_or_default();
                        let req = sent.get(id.as_str());
                        checks.check(req.is_some(), || {
                            format!(
                                "{query}: exemplar {e:?} of {:?}: not a trace id sent",
                                s.labels
                            )
                        });
                        checks.check(
                            e.timestamp_ms >= started_ms && e.timestamp_ms <= ended_ms,
                            || format!("{query}: exemplar {e:?}: its time is outside the test's"),
                        );
                    }
                }
                series
            }
            Err(e) => {
                checks.check(false, || format!("query_exemplars {query}: {e}"));
                Vec::new()
            }
        }
    };
    // Prometheus 2.42 files a native histogram's exemplars under the histogram's name;
    // the _bucket name has none (no classic series are stored).
    let native = check_exemplars(&mut checks, M_RESPONSE);
    let bucket_name = format!("{M_RESPONSE}_bucket");
    let classic = prom_exemplars(&bucket_name);
    println!(
        "  exemplars of {M_RESPONSE}: {}\n  exemplars of {bucket_name}: {:?}",
        describe_exemplars(&native),
        classic.as_ref().map(|s| describe_exemplars(s))
    );
    for (path, ..) in PATHS {
        let of_path: Vec<&Exemplar> = native
            .iter()
            .filter(|s| s.labels.get("http_request_path").map(String::as_str) == Some(path))
            .flat_map(|s| &s.exemplars)
            .collect();
        checks.check(!of_path.is_empty(), || {
            format!("query_exemplars {M_RESPONSE}: no exemplar for {path}")
        });
        for e in of_path {
            let id = e
                .labels
                .get(EXEMPLAR_LABEL)
                .map(String::as_str)
                .unwrap_or_default();
            let Some(l) = logged.get(id) else { continue };
            let want = l.tr_ms as f64 / 1e3;
            checks.check(l.path == path && (e.value - want).abs() < 1e-9, || {
                format!(
                    "exemplar {e:?} of {path}: HAProxy logged {l:?} for its trace id, so its \
                     value should be {want}"
                )
            });
        }
    }
    let counters = check_exemplars(&mut checks, M_REQUESTS);
    println!(
        "  exemplars of {M_REQUESTS}: {}",
        describe_exemplars(&counters)
    );
    checks.check(counters.iter().any(|s| !s.exemplars.is_empty()), || {
        format!("query_exemplars {M_REQUESTS}: no exemplar")
    });

    // --- the dashboard's latency queries and the latency alert on native series alone ---
    check_dashboard_latency(&mut checks);
    check_latency_alert(&mut checks);
    inner.step("evaluated the dashboard's latency queries and the latency alert");

    if !checks.failures.is_empty() {
        fail_with_logs(format!(
            "{} of {} checks failed:\n  - {}",
            checks.failures.len(),
            checks.failures.len() + checks.passed,
            checks.failures.join("\n  - ")
        ));
    }
    inner.step(&format!("all {} checks passed", checks.passed));
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every dashboard query on a histogram's quantile: with only native series stored, each
/// must return a finite sample (the response time's a non-zero one; the queue and
/// connect times are all 0 here).
fn check_dashboard_latency(checks: &mut Checks) {
    let text = std::fs::read_to_string(repo_file(DASHBOARD_FILE))
        .unwrap_or_else(|e| panic!("read {DASHBOARD_FILE}: {e}"));
    let dash = parse_json(&text).unwrap_or_else(|e| panic!("{DASHBOARD_FILE}: {e}"));
    let mut exprs = Vec::new();
    collect_exprs(
        dash.get("panels").map(Json::items).unwrap_or_default(),
        &mut exprs,
    );
    let latency: Vec<&(String, String)> = exprs
        .iter()
        .filter(|(_, e)| e.contains("histogram_quantile"))
        .collect();
    checks.check(latency.len() >= 6, || {
        format!(
            "{DASHBOARD_FILE}: only {} histogram_quantile queries",
            latency.len()
        )
    });
    for (panel, expr) in latency {
        let e = substitute(expr);
        let got = prom_query(&e);
        println!("  panel {panel:?}: {}", describe(&got));
        let finite: Vec<f64> = got
            .as_ref()
            .map(|s| {
                s.iter()
                    .filter_map(PromSample::float)
                    .filter(|v| v.is_finite())
                    .collect()
            })
            .unwrap_or_default();
        let want_nonzero = e.contains(M_RESPONSE);
        checks.check(
            !finite.is_empty() && (!want_nonzero || finite.iter().any(|v| *v > 0.0)),
            || {
                format!(
                    "panel {panel:?}: {} from native histograms alone\n    {e}",
                    describe(&got)
                )
            },
        );
    }
}

/// The response time alert of deploy/prometheus/haproxy-log-exporter.rules.yml, with its
/// threshold at 0 s (the traffic's p95 is far below the default second) and its window
/// at a minute: it must fire for be_delay from the native series alone.
fn check_latency_alert(checks: &mut Checks) {
    let text = std::fs::read_to_string(repo_file(RULES_FILE))
        .unwrap_or_else(|e| panic!("read {RULES_FILE}: {e}"));
    let expr: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("alert: HAProxyLogBackendResponseTimeHigh"))
        .skip(2)
        .take_while(|l| !l.trim_start().starts_with("for:"))
        .collect();
    let expr = expr.join("\n");
    let lowered = expr.replace(") > 1\n", ") > 0\n").replace("[5m]", "[1m]");
    checks.check(lowered != expr && expr.contains(M_RESPONSE), || {
        format!("{RULES_FILE}: HAProxyLogBackendResponseTimeHigh is not as expected:\n{expr}")
    });
    let got = prom_query(&lowered);
    println!(
        "  alert HAProxyLogBackendResponseTimeHigh (threshold 0): {}",
        describe(&got)
    );
    checks.check(
        matches!(&got, Ok(s) if s.iter().any(|s| s.label("backend_name") == Some("be_delay"))),
        || {
            format!(
                "the latency alert does not fire on native histograms: {}\n{lowered}",
                describe(&got)
            )
        },
    );
}

/// Grafana's variables: every `$name` as `.*` (each has "All"), the intervals as a minute.
fn substitute(expr: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1m")
        .replace("$__interval", "15s");
    while let Some(at) = out.find('$') {
        let rest = &out[at + 1..];
        let (name_len, braces) = if let Some(r) = rest.strip_prefix('{') {
            (r.find('}').map_or(r.len(), |n| n + 2), true)
        } else {
            (
                rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len()),
                false,
            )
        };
        let _ = braces;
        out.replace_range(at..at + 1 + name_len, ".*");
    }
    out
}

fn collect_exprs(panels: &[Json], out: &mut Vec<(String, String)>) {
    for panel in panels {
        let title = panel
            .get("title")
            .and_then(Json::as_str)
            .unwrap_or_default();
        for target in panel.get("targets").map(Json::items).unwrap_or_default() {
            if let Some(expr) = target.get("expr").and_then(Json::as_str) {
                out.push((title.to_string(), expr.to_string()));
            }
        }
        collect_exprs(
            panel.get("panels").map(Json::items).unwrap_or_default(),
            out,
        );
    }
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------

fn start_prometheus(inner: &Inner, log: &Path) -> ChildGuard {
    let bin = find_program("prometheus").expect("prometheus (Debian package prometheus)");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [{EXPORTER_WEB:?}]\n"
    );
    let config_path = inner.dir.join("prometheus.yml");
    std::fs::write(&config_path, &config).expect("write prometheus.yml");
    let log_file = std::fs::File::create(log).expect("prometheus log");
    let mut child = ChildGuard::spawn(
        "prometheus",
        Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                inner.dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS_ADDR}"))
            .arg("--enable-feature=native-histograms,exemplar-storage")
            .arg("--log.level=warn")
            .current_dir(&inner.dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log file"))
            .stderr(log_file),
    )
    .expect("spawn prometheus");
    let ready = wait_until(Duration::from_secs(30), || {
        if let Some(st) = child.try_wait() {
            return Some(Err(format!("Prometheus exited early: {st}")));
        }
        match http_get(PROMETHEUS_ADDR, "/-/ready", IO_TIMEOUT) {
            Ok(r) if r.status == 200 => Some(Ok(())),
            _ => None,
        }
    });
    match ready {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}\nPrometheus log:\n{}", tail_file(log, 30)),
        Err(t) => panic!(
            "Prometheus was not ready: {t}\nPrometheus log:\n{}",
            tail_file(log, 30)
        ),
    }
    inner.step("Prometheus ready");
    child
}

/// A native histogram's bucket as Prometheus' API returns it.
#[derive(Debug, Clone)]
struct Bucket {
    lower: f64,
    upper: f64,
}

#[derive(Debug, Clone)]
struct Histogram {
    count: f64,
    buckets: Vec<Bucket>,
}

#[derive(Debug, Clone)]
enum Value {
    Float(f64),
    Histogram(Histogram),
}

/// One sample of an instant vector.
#[derive(Debug, Clone)]
struct PromSample {
    labels: BTreeMap<String, String>,
    value: Value,
}

impl PromSample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    fn float(&self) -> Option<f64> {
        match self.value {
            Value::Float(v) => Some(v),
            Value::Histogram(_) => None,
        }
    }

    fn histogram(&self) -> Option<&Histogram> {
        match &self.value {
            Value::Histogram(h) => Some(h),
            Value::Float(_) => None,
        }
    }

    fn labels_text(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        labels.join(", ")
    }
}

impl std::fmt::Display for PromSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Value::Float(v) => write!(f, "{{{}}} {v}", self.labels_text()),
            Value::Histogram(h) => write!(
                f,
                "{{{}}} histogram of {} in {} buckets",
                self.labels_text(),
                h.count,
                h.buckets.len()
            ),
        }
    }
}

fn prom_get(path: &str) -> Result<Json, String> {
    let r = http_get(PROMETHEUS_ADDR, path, IO_TIMEOUT).map_err(|e| format!("GET {path}: {e}"))?;
    let body = parse_json(&r.text()).map_err(|e| format!("GET {path}: bad JSON: {e}"))?;
    if body.get("status").and_then(Json::as_str) != Some("success") {
        return Err(format!(
            "GET {path}: HTTP {}: {}",
            r.status,
            body.get("error")
                .and_then(Json::as_str)
                .unwrap_or("no error message")
        ));
    }
    Ok(body)
}

fn number(v: Option<&Json>) -> Result<f64, String> {
    match v {
        Some(Json::Str(s)) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            _ => s.parse().map_err(|_| format!("bad number {s:?}")),
        },
        Some(Json::Num(n)) => Ok(*n),
        other => Err(format!("not a number: {other:?}")),
    }
}

fn labels_of(v: Option<&Json>) -> BTreeMap<String, String> {
    v.map(Json::entries)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Evaluates `expr` now: the samples of the instant vector, floats or native histograms.
fn prom_query(expr: &str) -> Result<Vec<PromSample>, String> {
    let body = prom_get(&format!("/api/v1/query?query={}", url_encode(expr)))?;
    let data = body.get("data").ok_or("no data")?;
    if data.get("resultType").and_then(Json::as_str) != Some("vector") {
        return Err(format!("{expr}: not an instant vector: {data:?}"));
    }
    let mut out = Vec::new();
    for s in data.get("result").map(Json::items).unwrap_or_default() {
        let labels = labels_of(s.get("metric"));
        let value = if let Some(pair) = s.get("value") {
            Value::Float(number(pair.items().get(1))?)
        } else if let Some(pair) = s.get("histogram") {
            let h = pair.items().get(1).ok_or("histogram without a value")?;
            let buckets = h
                .get("buckets")
                .map(Json::items)
                .unwrap_or_default()
                .iter()
                .map(|b| {
                    Ok(Bucket {
                        lower: number(b.items().get(1))?,
                        upper: number(b.items().get(2))?,
                    })
                })
                .collect::<Result<_, String>>()?;
            Value::Histogram(Histogram {
                count: number(h.get("count"))?,
                buckets,
            })
        } else {
            return Err(format!("{expr}: a sample with neither value nor histogram"));
        };
        out.push(PromSample { labels, value });
    }
    Ok(out)
}

/// An exemplar as `/api/v1/query_exemplars` returns it.
#[derive(Debug, Clone)]
struct Exemplar {
    labels: BTreeMap<String, String>,
    value: f64,
    timestamp_ms: i64,
}

#[derive(Debug, Clone)]
struct ExemplarSeries {
    labels: BTreeMap<String, String>,
    exemplars: Vec<Exemplar>,
}

/// The exemplars Prometheus holds for the series of `query`, over all time.
fn prom_exemplars(query: &str) -> Result<Vec<ExemplarSeries>, String> {
    let body = prom_get(&format!(
        "/api/v1/query_exemplars?query={}&start=0&end={}",
        url_encode(query),
        now_ms() / 1000 + 60
    ))?;
    let mut out = Vec::new();
    for s in body.get("data").map(Json::items).unwrap_or_default() {
        let mut exemplars = Vec::new();
        for e in s.get("exemplars").map(Json::items).unwrap_or_default() {
            exemplars.push(Exemplar {
                labels: labels_of(e.get("labels")),
                value: number(e.get("value"))?,
                timestamp_ms: (number(e.get("timestamp"))? * 1000.0).round() as i64,
            });
        }
        out.push(ExemplarSeries {
            labels: labels_of(s.get("seriesLabels")),
            exemplars,
        });
    }
    Ok(out)
}

fn summary(samples: &[PromSample]) -> String {
    let mut lines: Vec<String> = samples.iter().take(6).map(|s| format!("{s}")).collect();
    if samples.len() > 6 {
        lines.push(format!("... {} more", samples.len() - 6));
    }
    lines.join("; ")
}

fn describe(result: &Result<Vec<PromSample>, String>) -> String {
    match result {
        Ok(s) if s.is_empty() => "no data".to_string(),
        Ok(s) => format!("{} series: {}", s.len(), summary(s)),
        Err(e) => format!("error: {e}"),
    }
}

fn describe_exemplars(series: &[ExemplarSeries]) -> String {
    if series.is_empty() {
        return "none".into();
    }
    series
        .iter()
        .map(|s| {
            let ids: Vec<String> = s
                .exemplars
                .iter()
                .map(|e| {
                    format!(
                        "{}={}",
                        e.labels
                            .get(EXEMPLAR_LABEL)
                            .map(String::as_str)
                            .unwrap_or("?"),
                        e.value
                    )
                })
                .collect();
            format!(
                "{{{}}}: {} [{}]",
                s.labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != "__name__"
                        && k.as_str() != "job"
                        && k.as_str() != "instance")
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.exemplars.len(),
                ids.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------
// The classic exposition, unchanged unless asked for
// ---------------------------------------------------------------------------

/// GET `/metrics` from the exporter with these request headers.
fn get_metrics(headers: &[(&str, &str)]) -> Result<HttpResponse, String> {
    let mut s = TcpStream::connect_timeout(
        &EXPORTER_WEB.parse().expect("the exporter's address"),
        IO_TIMEOUT,
    )
    .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut req = format!("GET /metrics HTTP/1.1\r\nHost: {EXPORTER_WEB}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let r = parse_http_response(&raw).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    Ok(r)
}

/// The exposition without the families that change from one scrape or process to the
/// next: the process metrics and the exporter's HTTP counters (scrapes, connections).
fn stable_part(text: &str) -> String {
    let varies =
        |name: &str| name.starts_with("process_") || name.starts_with("haproxy_log_exporter_http_");
    text.lines()
        .filter(|l| {
            let name = match l.strip_prefix("# ") {
                Some(c) => c.split(' ').nth(1).unwrap_or_default(),
                None => l.split(['{', ' ']).next().unwrap_or_default(),
            };
            !varies(name)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The names of the metric families of a delimited protobuf exposition, and whether a
/// histogram of `native_family` carries a native schema (`Histogram.schema`, field 5).
fn protobuf_families(mut body: &[u8], native_family: &str) -> Result<(Vec<String>, bool), String> {
    fn varint(b: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first().ok_or("truncated varint")?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    /// Each field: its number, its value if a varint, its payload if length-delimited.
    type Field<'a> = (u64, u64, &'a [u8]);
    fn fields(mut b: &[u8]) -> Result<Vec<Field<'_>>, String> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b)?;
            let (field, wire) = (key >> 3, key & 7);
            match wire {
                0 => {
                    let v = varint(&mut b)?;
                    out.push((field, v, &b[..0]));
                }
                1 | 5 => {
                    let n = if wire == 1 { 8 } else { 4 };
                    b = b.get(n..).ok_or("truncated fixed field")?;
                }
                2 => {
                    let n = usize::try_from(varint(&mut b)?).map_err(|e| e.to_string())?;
                    let payload = b.get(..n).ok_or("truncated field")?;
                    out.push((field, 0, payload));
                    b = &b[n..];
                }
                _ => return Err(format!("wire type {wire}")),
            }
        }
        Ok(out)
    }
    let mut names = Vec::new();
    let mut native = false;
    while !body.is_empty() {
        let n = usize::try_from(varint(&mut body)?).map_err(|e| e.to_string())?;
        let msg = body.get(..n).ok_or("truncated message")?;
        body = &body[n..];
        let fs = fields(msg)?;
        // MetricFamily: name is field 1, metric field 4; Metric: histogram field 7;
        // Histogram: schema field 5 (sint32), present only in a native histogram.
        let name = fs
            .iter()
            .find(|(f, ..)| *f == 1)
            .map(|(.., p)| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        if name == native_family {
            for (.., metric) in fs.iter().filter(|(f, ..)| *f == 4) {
                for (.., hist) in fields(metric)?.iter().filter(|(f, ..)| *f == 7) {
                    native |= fields(hist)?.iter().any(|(f, ..)| *f == 5);
                }
            }
        }
        names.push(name);
    }
    Ok((names, native))
}

fn run_classic() {
    let inner = Inner::new("hle-native-off");
    let mut checks = Checks::default();
    let lines: Vec<&str> = include_str!("fixtures/haproxy/a_rfc3164.log")
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    let n = lines.len() as f64;
    // A metric whose histogram the lines fill, with a path label (the default).
    let accepts: [(&str, &[(&str, &str)]); 5] = [
        ("no Accept", &[]),
        (
            "Prometheus' default Accept",
            &[("Accept", ACCEPT_PROMETHEUS)],
        ),
        (
            "Prometheus' Accept with protobuf",
            &[("Accept", ACCEPT_PROMETHEUS_PROTOBUF)],
        ),
        ("protobuf", &[("Accept", ACCEPT_PROTOBUF)]),
        ("OpenMetrics", &[("Accept", ACCEPT_OPENMETRICS)]),
    ];
    let mut runs: Vec<(String, String)> = Vec::new();
    for mode in [None, Some("off"), Some("on")] {
        let env: Vec<(&str, &str)> = mode
            .map(|m| ("HLE_NATIVE_HISTOGRAMS", m))
            .into_iter()
            .collect();
        let what = mode.map_or("HLE_NATIVE_HISTOGRAMS unset".to_string(), |m| {
            format!("HLE_NATIVE_HISTOGRAMS={m}")
        });
        let mut exporter = inner.start_exporter(&env, &format!(" with {what}"));
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        for l in &lines {
            sock.send_to(l.as_bytes(), EXPORTER_UDP)
                .expect("send a line");
        }
        let settled = wait_until(Duration::from_secs(10), || {
            let s = scrape(EXPORTER_WEB).ok()?.1;
            let accounted = s.sum(M_COUNTED, &[]) + s.sum(M_REJECTED, &[]) + s.sum(M_IGNORED, &[]);
            (s.sum(M_RECEIVED, &[]) == n && accounted == n).then_some(s)
        });
        checks.check(settled.is_ok(), || {
            format!("{what}: the exporter did not account for the {n} lines sent")
        });
        let mut texts = Vec::new();
        for (name, headers) in accepts {
            let r = match get_metrics(headers) {
                Ok(r) => r,
                Err(e) => {
                    checks.check(false, || format!("{what}, {name}: GET /metrics: {e}"));
                    continue;
                }
            };
            let ct = r.header("content-type").unwrap_or_default().to_string();
            // The answer depends on Accept only when a format besides text is offered.
            let vary = r.header("vary").unwrap_or_default().to_string();
            let want_vary = if mode == Some("on") {
                "Accept, Accept-Encoding"
            } else {
                "Accept-Encoding"
            };
            checks.check(vary == want_vary, || {
                format!("{what}, {name}: Vary {vary:?}, want {want_vary:?}")
            });
            let wants_protobuf = headers
                .iter()
                .any(|(_, v)| v.starts_with("application/vnd.google.protobuf"));
            if mode == Some("on") && wants_protobuf {
                checks.check(ct == CONTENT_TYPE_PROTOBUF, || {
                    format!("{what}, {name}: Content-Type {ct:?}, want {CONTENT_TYPE_PROTOBUF:?}")
                });
                match protobuf_families(&r.body, M_RESPONSE) {
                    Ok((names, native)) => {
                        checks.check(names.iter().any(|f| f == M_RESPONSE) && native, || {
                            format!(
                                "{what}, {name}: the protobuf exposition has no native {M_RESPONSE} \
                                 (families: {names:?}, native: {native})"
                            )
                        });
                    }
                    Err(e) => checks.check(false, || format!("{what}, {name}: bad protobuf: {e}")),
                }
                continue;
            }
            checks.check(ct == CONTENT_TYPE_TEXT, || {
                format!("{what}, {name}: Content-Type {ct:?}, want the text format 0.0.4")
            });
            texts.push((name, stable_part(&r.text())));
        }
        let Some((_, first)) = texts.first().cloned() else {
            checks.check(false, || format!("{what}: no text scrape"));
            continue;
        };
        checks.check(first.contains(&format!("{M_RESPONSE}_bucket{{")), || {
            format!("{what}: the text has no classic buckets of {M_RESPONSE}")
        });
        for (name, text) in &texts[1..] {
            checks.check(*text == first, || {
                format!(
                    "{what}: the text for {name} differs from the one without Accept:\n{}",
                    first_difference(&first, text)
                )
            });
        }
        // With `on` the text differs where it should: haproxy_log_exporter_series counts
        // each native histogram as a series.
        if mode != Some("on") {
            runs.push((what, first));
        }
        stop_exporter(&mut checks, &mut exporter);
    }
    inner.step("scraped the exporter unset, off and on");
    checks.eq_f64("runs compared", runs.len() as f64, 2.0);
    if let Some((base_name, base)) = runs.first() {
        for (what, text) in &runs[1..] {
            checks.check(text == base, || {
                format!(
                    "the text with {what} differs from the one with {base_name}:\n{}",
                    first_difference(base, text)
                )
            });
        }
    }
    if !checks.failures.is_empty() {
        panic!(
            "{} of {} checks failed:\n  - {}\n\nexporter log (tail):\n{}",
            checks.failures.len(),
            checks.failures.len() + checks.passed,
            checks.failures.join("\n  - "),
            inner.exporter_log_tail()
        );
    }
    inner.step(&format!("all {} checks passed", checks.passed));
}

/// The first line where two texts differ, for a failure message.
fn first_difference(a: &str, b: &str) -> String {
    let (mut la, mut lb) = (a.lines(), b.lines());
    for n in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => return "(no line differs)".into(),
            (x, y) if x != y => return format!("line {n}: {x:?}\n   vs {y:?}"),
            _ => {}
        }
    }
    unreachable!()
}

// ---------------------------------------------------------------------------
// Self-checks of the pieces above (no network)
// ---------------------------------------------------------------------------

#[test]
fn schema_and_quantile_helpers() {
    assert_eq!(schema_for(1.1), 3);
    assert_eq!(schema_for(2.0), 0);
    assert_eq!(schema_for(1.0001), 8);
    assert!((bucket_width(3) - 1.0905).abs() < 1e-4);
    let v: Vec<f64> = (1..=90).map(f64::from).collect();
    // ceil(0.95 * 90) = 86.
    assert_eq!(nearest_rank(&v, 0.95), 86.0);
    // The delays of a path are spread from its lowest to its highest value.
    let fast: Vec<u64> = traffic()
        .iter()
        .filter(|r| r.path == "/fast")
        .map(|r| r.delay_us)
        .collect();
    assert_eq!(fast.len(), PER_PATH as usize);
    assert_eq!(fast.iter().min(), Some(&5_000));
    assert_eq!(fast.iter().max(), Some(&15_000));
    let ids: BTreeSet<String> = traffic()
        .into_iter()
        .chain(warm_up())
        .map(|r| r.trace_id)
        .collect();
    assert_eq!(ids.len(), 2 * PER_PATH as usize + PATHS.len());
    assert_eq!(
        substitute("x{a=~\"$job\", b=~\"${backend}\"}[$__rate_interval]"),
        "x{a=~\".*\", b=~\".*\"}[1m]"
    );
}

#[test]
fn reads_the_log_copy() {
    let line = "<134>Dec  3 12:00:00 haproxy[1]: 127.0.0.1:40000 [03/Dec/2026:12:00:00.000] \
                fe_main be_delay/delay1 0/0/0/12/12 200 75 ---- 1/1/0/0/0 0/0 \
                tp=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \"GET /fast HTTP/1.1\"";
    let (id, l) = read_logged(line).unwrap();
    assert_eq!(id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!((l.path.as_str(), l.tr_ms), ("/fast", 12));
}
