//! Every query of the Grafana dashboard and every alert expression, evaluated
//! by a real Prometheus that scrapes the exporter while a real HAProxy 2.6
//! logs to it.
//!
//! `monitoring_queries` re-executes this test binary under `unshare -n` (a
//! private network namespace: the fixed loopback ports cannot clash with
//! anything on the machine) to run `monitoring_queries_inner`, which:
//!
//! 1. starts the exporter with the label configuration of the Helm chart's
//!    default values (`metrics.labels` in helm/haproxy-log-exporter/values.yaml,
//!    read from the file; empty, so the exporter's defaults, which the dashboard
//!    and the alerts rely on) and a forwarding sink that cannot deliver (TCP to a
//!    port nobody listens on, a queue of one line), a small
//!    HTTP server of its own that answers after more than a second, HAProxy
//!    from `tests/fixtures/monitoring/haproxy.cfg.in`, and Prometheus (Debian
//!    package `prometheus`) scraping the exporter every second with the rule
//!    file deploy/prometheus/haproxy-log-exporter.rules.yml loaded;
//! 2. sends two rounds of traffic: 200, 404 and 500 answers, 503s from a dead
//!    server, slow answers, `<BADREQ>` garbage and empty connections, requests
//!    logged through a ring over TCP, requests to a frontend without a log
//!    format (HAProxy logs `Connect from ...` for each, which the exporter must
//!    reject as `no_log_format`: the only rejected lines, so the rejected-lines
//!    alert must fire for them), and, straight to the exporter's UDP port, an
//!    HAProxy notice it must ignore. The
//!    first round creates every series, the second makes them increase (a
//!    rate needs two samples), and after each the test waits until
//!    Prometheus has scraped what the exporter counted;
//! 3. takes every alert expression from Prometheus' own parse of the rule file
//!    (`/api/v1/rules`) and every query from the dashboard JSON
//!    (deploy/grafana/haproxy-log-exporter.json, which CI keeps equal to the
//!    chart's copy), with Grafana's variables substituted, and evaluates each
//!    through `/api/v1/query`. An alert the traffic can trip must return data
//!    (and the series the traffic implies); for the three alerts whose
//!    threshold this traffic cannot cross, the expression without its final
//!    comparison must return data. A dashboard query must return a finite
//!    non-zero sample, except the few listed in [`ZERO_ALLOWED`] with the
//!    reason; some must have the series the traffic implies. Every rule must
//!    also evaluate without error in Prometheus' rule manager.
//!
//! Without `unshare`, `haproxy` or `prometheus` the test prints a skip message,
//! or fails when `CI=true`.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::haproxy::{
    exchange, get, inner_may_run, render_haproxy_cfg, scrape, Inner, BAD_REQUEST, EXPORTER_UDP,
    EXPORTER_WEB, IO_TIMEOUT, M_COUNTED, M_RECEIVED, M_REJECTED,
};
use support::json::{parse_json, url_encode, Json};
use support::{find_program, http_get, run_in_private_netns, tail_file, wait_until, Checks};
use support::{ChildGuard, NetnsRun};

use haproxy_log_exporter::metrics::{MetricDef, METRICS};

/// Name of the outer test.
const OUTER_TEST: &str = "monitoring_queries";
/// Name of the inner test, run by the outer one inside the namespace.
const INNER_TEST: &str = "monitoring_queries_inner";
/// Prefix of the work directory's name.
const WORK_DIR_PREFIX: &str = "hle-monitoring";
/// The whole inner run must finish within this time.
const INNER_RUN_LIMIT: Duration = Duration::from_secs(240);

const PORT_MAIN: u16 = 8080;
const PORT_RING: u16 = 8081;
const PORT_SLOW: u16 = 8091;
/// fe_nolog: a frontend with a `log` target and no log format.
const PORT_NOLOG: u16 = 8082;
/// Where the exporter forwards the lines to: nobody listens there.
const PORT_FORWARD_DEAD: u16 = 8099;
const PROMETHEUS_ADDR: &str = "127.0.0.1:9090";
/// The scrape job, as the Prometheus configuration below names it.
const JOB: &str = "haproxy-log-exporter";

const RULES_FILE: &str = "deploy/prometheus/haproxy-log-exporter.rules.yml";
const DASHBOARD_FILE: &str = "deploy/grafana/haproxy-log-exporter.json";
const CHART_VALUES_FILE: &str = "helm/haproxy-log-exporter/values.yaml";
const HAPROXY_CFG_TEMPLATE: &str = include_str!("fixtures/monitoring/haproxy.cfg.in");

/// What Grafana puts for `$__rate_interval` with a 15 s scrape interval. The
/// second round of traffic falls within it.
const RATE_INTERVAL: &str = "1m";
/// `$__range`: the dashboard's time range; both rounds fall within it.
const RANGE: &str = "10m";
/// `$__interval`.
const INTERVAL: &str = "15s";

/// How long the slow server waits before it answers: over one second, the
/// default threshold of HAProxyLogBackendResponseTimeHigh, so that its 95th
/// percentile lands in the (1 s, 2.5 s] bucket.
const SLOW_DELAY: Duration = Duration::from_millis(1200);

/// An HAProxy notice (ignored: `proxy_event`).
const IGNORED_LINE: &[u8] = b"<133>Nov 25 04:00:00 haproxy[1]: Proxy fe_main started.";

// ---------------------------------------------------------------------------
// What each alert must show
// ---------------------------------------------------------------------------

/// What an alert expression must return after the traffic.
enum AlertExpectation {
    /// The traffic crosses the threshold: the whole expression returns data,
    /// with a series for each `(label, value)` in `must_have` and none for
    /// those in `must_not_have`.
    Fires {
        must_have: &'static [(&'static str, &'static str)],
        must_not_have: &'static [(&'static str, &'static str)],
    },
    /// This traffic cannot cross the threshold: the expression without its
    /// final comparison must return data, which proves the selector matches
    /// the exporter's series.
    SelectorOnly { why: &'static str },
}

/// Every alert of the rule file, by name. An alert the file has and this list
/// lacks (or the other way round) fails the test.
const ALERTS: &[(&str, AlertExpectation)] = &[
    (
        "HAProxyLogBackend5xxRatioHigh",
        // be_down answers only 503s, be_app 500 for a quarter of its
        // requests; be_slow never fails.
        AlertExpectation::Fires {
            must_have: &[("backend_name", "be_down"), ("backend_name", "be_app")],
            must_not_have: &[("backend_name", "be_slow")],
        },
    ),
    (
        "HAProxyLogBackendResponseTimeHigh",
        // be_slow answers after SLOW_DELAY; be_app at once.
        AlertExpectation::Fires {
            must_have: &[("backend_name", "be_slow")],
            must_not_have: &[("backend_name", "be_app")],
        },
    ),
    (
        "HAProxyLogExporterRejectingLines",
        // HAProxy's `Connect from` lines of fe_nolog, the only rejected lines,
        // are a few per cent of the second round.
        AlertExpectation::Fires {
            must_have: &[("job", JOB)],
            must_not_have: &[],
        },
    ),
    (
        "HAProxyLogExporterUDPDrops",
        AlertExpectation::SelectorOnly {
            why: "the kernel drops datagrams only when the exporter's receive buffer \
                  overflows, which a few hundred lines on loopback never do",
        },
    ),
    (
        "HAProxyLogExporterSeriesOverflow",
        AlertExpectation::SelectorOnly {
            why: "overflow needs HLE_MAX_SERIES_PER_METRIC (10000) label sets of one \
                  metric; the traffic makes a few dozen",
        },
    ),
    (
        "HAProxyLogExporterForwardDropping",
        // The syslog sink never connects and holds one line: every later line is
        // dropped as queue_full; nothing is shut down or too long for the queue.
        AlertExpectation::Fires {
            must_have: &[("sink", "syslog"), ("reason", "queue_full")],
            must_not_have: &[("reason", "shutdown"), ("reason", "oversize")],
        },
    ),
    (
        "HAProxyLogExporterForwardDisconnected",
        // Its connection is refused for the whole test.
        AlertExpectation::Fires {
            must_have: &[("sink", "syslog")],
            must_not_have: &[],
        },
    ),
    (
        "HAProxyLogExporterDown",
        AlertExpectation::SelectorOnly {
            why: "the exporter is up for the whole test: `up` is 1, never 0",
        },
    ),
];

/// Dashboard queries that may return only zeros, by (panel title, refId),
/// and why. Every other query must return a finite non-zero sample.
const ZERO_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "Exporters down",
        "A",
        "every exporter is up: the count is 0 (the `or vector(0)` gives the sample)",
    ),
    (
        "Kernel UDP drops",
        "A",
        "no datagram is dropped on loopback at this rate",
    ),
    (
        "UDP receive drops",
        "A",
        "no datagram is dropped on loopback at this rate",
    ),
    (
        "Series per metric",
        "B",
        "no metric reaches HLE_MAX_SERIES_PER_METRIC, so the overflow rate is 0",
    ),
    (
        "CPU",
        "A",
        "the kernel counts CPU time in 10 ms ticks; a minute of this light load may \
         take less than one",
    ),
];

/// A series a dashboard query must return: (panel title, refId, label,
/// value, the least value the sample may have).
const DASHBOARD_MUST_HAVE: &[(&str, &str, &str, &str, f64)] = &[
    (
        "Requests per second by status code",
        "A",
        "status_code",
        "200",
        0.0,
    ),
    (
        "Requests per second by status code",
        "A",
        "status_code",
        "404",
        0.0,
    ),
    (
        "Requests per second by status code",
        "A",
        "status_code",
        "500",
        0.0,
    ),
    (
        "Requests per second by status code",
        "A",
        "status_code",
        "503",
        0.0,
    ),
    (
        "Requests per second by status code",
        "A",
        "status_code",
        "400",
        0.0,
    ),
    ("5xx ratio by backend", "A", "backend_name", "be_down", 1.0),
    ("5xx ratio by backend", "A", "backend_name", "be_app", 0.05),
    (
        "Response time by path: p50, p95, p99",
        "B",
        "http_request_path",
        "/slow",
        1.0,
    ),
    (
        "Response time by server: p50, p95, p99",
        "B",
        "server_name",
        "slow1",
        1.0,
    ),
    (
        "Aborts by termination state",
        "A",
        "termination_state",
        "CR",
        0.0,
    ),
    (
        "Aborts by termination state",
        "C",
        "termination_state",
        "SC",
        0.0,
    ),
    ("Log lines per second", "A", "transport", "udp", 0.0),
    ("Log lines per second", "A", "transport", "tcp", 0.0),
    ("Log lines per second", "C", "reason", "no_log_format", 0.0),
    ("Log lines per second", "D", "reason", "proxy_event", 0.0),
];

// ---------------------------------------------------------------------------
// Outer test: re-executes this binary in a private network namespace
// ---------------------------------------------------------------------------

#[test]
fn monitoring_queries() {
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

// ---------------------------------------------------------------------------
// Inner test: everything on loopback inside the namespace
// ---------------------------------------------------------------------------

#[test]
#[ignore = "inner half of monitoring_queries: runs only inside its private network namespace"]
fn monitoring_queries_inner() {
    if inner_may_run(INNER_TEST, OUTER_TEST) {
        run_inside_private_netns();
    }
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read_repo_file(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// One round of traffic.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// 200 from be_app, over four paths.
    ok: u32,
    /// 404 from be_app.
    missing: u32,
    /// 500 from be_app.
    err: u32,
    /// 503 from be_down (connection refused: SC--).
    down: u32,
    /// Garbage: 400 `<BADREQ>` PR--.
    badreq: u32,
    /// A connection closed without a request: 400 `<BADREQ>` CR--.
    empty: u32,
    /// 200 from be_slow after SLOW_DELAY, all at once.
    slow: u32,
    /// 200 through fe_ring, logged over TCP.
    ring_ok: u32,
    /// 200 from fe_nolog, which has no log format: a `Connect from` line each
    /// (rejected: `no_log_format`).
    nolog: u32,
    /// HAProxy notices sent to the exporter.
    ignored: u32,
}

impl Round {
    /// The log lines the exporter receives for this round.
    fn lines(&self) -> u32 {
        self.ok
            + self.missing
            + self.err
            + self.down
            + self.badreq
            + self.empty
            + self.slow
            + self.ring_ok
            + self.nolog
            + self.ignored
    }
}

/// Every kind once: creates every series the second round increases.
const ROUND_1: Round = Round {
    ok: 4,
    missing: 1,
    err: 1,
    down: 1,
    badreq: 1,
    empty: 1,
    slow: 1,
    ring_ok: 1,
    nolog: 1,
    ignored: 1,
};

/// Enough of each kind, within one rate window of five minutes, to pass the
/// alerts' minimum request rates (0.1/s: 30 in five minutes).
const ROUND_2: Round = Round {
    ok: 24,
    missing: 6,
    err: 10,
    down: 40,
    badreq: 3,
    empty: 3,
    slow: 40,
    ring_ok: 8,
    nolog: 5,
    ignored: 2,
};

const OK_PATHS: [&str; 4] = ["/", "/index.html", "/api/items", "/static/app.js"];

fn run_inside_private_netns() {
    let inner = Inner::new(WORK_DIR_PREFIX);
    let mut checks = Checks::default();

    // --- the exporter, labelled as the chart's default values label it ------
    // Every metric's labels are given, since the harness sets some of its own: the
    // chart's where it sets them, otherwise the exporter's defaults, as in the chart's
    // pods.
    let chart_labels = chart_default_labels(&read_repo_file(CHART_VALUES_FILE));
    let mut env: Vec<(String, String)> = METRICS
        .iter()
        .map(|def| {
            let labels = chart_labels
                .iter()
                .find(|(metric, _)| metric == def.name)
                .map(|(_, labels)| labels.clone())
                .unwrap_or_else(|| default_labels(def));
            (format!("{}_LABELS", def.env_prefix()), labels)
        })
        .collect();
    // A forwarding sink that cannot deliver, for the forwarding alerts: refused
    // connections, and a queue that is full after one line.
    env.push((
        "HLE_FORWARD_SYSLOG_ADDR".into(),
        format!("tcp://127.0.0.1:{PORT_FORWARD_DEAD}"),
    ));
    env.push(("HLE_FORWARD_BUFFER_LINES".into(), "1".into()));
    for (k, v) in &env {
        println!("  {k}={v}");
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let _exporter = inner.start_exporter(&env_refs, " with the chart's labels");

    // --- the slow server and HAProxy ------------------------------------------
    let _slow = SlowServer::start(PORT_SLOW, SLOW_DELAY);
    let cfg = render_haproxy_cfg(
        HAPROXY_CFG_TEMPLATE,
        &[
            ("@PORT_MAIN@", &PORT_MAIN.to_string()),
            ("@PORT_RING@", &PORT_RING.to_string()),
            ("@PORT_SLOW@", &PORT_SLOW.to_string()),
            ("@PORT_NOLOG@", &PORT_NOLOG.to_string()),
        ],
    );
    let (_haproxy, _) = inner.start_haproxy(&cfg);

    // --- Prometheus -------------------------------------------------------------
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

    // The rule file as Prometheus parsed it.
    let rules = wait_until(Duration::from_secs(20), || {
        let rules = prom_rules().ok()?;
        (!rules.is_empty()).then_some(rules)
    })
    .unwrap_or_else(|t| {
        fail_with_logs(format!("Prometheus loaded no rules from {RULES_FILE}: {t}"))
    });
    inner.step(&format!(
        "Prometheus is up with {} rules from {RULES_FILE}",
        rules.len()
    ));

    // --- traffic: two rounds, each scraped by Prometheus --------------------------
    let mut want_lines = 0.0;
    for (n, round) in [ROUND_1, ROUND_2].iter().enumerate() {
        send_round(&mut checks, round);
        want_lines += f64::from(round.lines());
        inner.step(&format!(
            "round {}: sent traffic for {} log lines",
            n + 1,
            round.lines()
        ));
        wait_for_exporter_and_prometheus(want_lines)
            .unwrap_or_else(|e| fail_with_logs(format!("round {}: {e}", n + 1)));
        inner.step(&format!(
            "round {}: the exporter received {want_lines} lines and Prometheus scraped them",
            n + 1
        ));
    }

    // --- fe_nolog's lines: rejected under their own reason, and alone --------------
    let nolog = f64::from(ROUND_1.nolog + ROUND_2.nolog);
    let (_, exp) = scrape(EXPORTER_WEB).unwrap_or_else(|e| fail_with_logs(e));
    let rejected = |reason| exp.sum(M_REJECTED, &[("reason", reason)]);
    checks.eq_f64(
        "lines rejected as no_log_format (one per fe_nolog connection)",
        rejected("no_log_format"),
        nolog,
    );
    checks.eq_f64("lines rejected in all", exp.sum(M_REJECTED, &[]), nolog);
    let log = std::fs::read_to_string(&inner.exporter_log).unwrap_or_default();
    let told = log
        .lines()
        .filter(|l| l.contains("frontend fe_nolog") && l.contains("add `option httplog`"))
        .count();
    checks.check(told == 1, || {
        format!(
            "the exporter's log tells fe_nolog its fix {told} times, not once:\n{}",
            inner.exporter_log_tail()
        )
    });

    // --- alert expressions --------------------------------------------------------
    check_alerts(&mut checks, &rules);
    inner.step("evaluated the alert expressions");
    // The rule manager evaluates every second: after a few evaluations every
    // rule must have run without an error (a many-to-many match, say).
    let healthy = wait_until(Duration::from_secs(10), || {
        let rules = prom_rules().ok()?;
        rules.iter().all(|r| r.health == "ok").then_some(())
    });
    if healthy.is_err() {
        for r in prom_rules().unwrap_or_default() {
            checks.check(r.health == "ok", || {
                format!(
                    "rule {}: health {:?} in Prometheus' rule manager: {}",
                    r.name, r.health, r.last_error
                )
            });
        }
    }

    // --- dashboard queries --------------------------------------------------------
    check_dashboard(&mut checks, &read_repo_file(DASHBOARD_FILE));
    inner.step("evaluated the dashboard's queries");

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

// ---------------------------------------------------------------------------
// The chart's default labels
// ---------------------------------------------------------------------------

/// The exporter's default labels of `def`, as `HLE_<METRIC>_LABELS` writes them.
fn default_labels(def: &MetricDef) -> String {
    let names: Vec<&str> = def.default_labels.iter().map(|l| l.name()).collect();
    names.join(",")
}

/// `metrics.labels` of the chart's values.yaml: (metric, comma-separated
/// labels). The file keeps that block in plain `key: value` lines, which is
/// all this reads.
fn chart_default_labels(values: &str) -> Vec<(String, String)> {
    let mut in_metrics = false;
    let mut in_labels = false;
    let mut found = false;
    let mut out = Vec::new();
    for line in values.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            in_metrics = trimmed == "metrics:";
            in_labels = false;
        } else if in_metrics && indent == 2 {
            in_labels = trimmed == "labels:";
            found |= in_labels || trimmed == "labels: {}";
        } else if in_labels && indent == 4 {
            let (k, v) = trimmed
                .split_once(':')
                .unwrap_or_else(|| panic!("{CHART_VALUES_FILE}: metrics.labels: {line:?}"));
            let v = v.trim().trim_matches('"');
            out.push((k.trim().to_string(), v.to_string()));
        }
    }
    assert!(
        found,
        "{CHART_VALUES_FILE}: found no metrics.labels (read {out:?})"
    );
    out
}

// ---------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------

fn main_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], PORT_MAIN))
}

fn send_round(checks: &mut Checks, r: &Round) {
    let main = main_addr();
    let ring = SocketAddr::from(([127, 0, 0, 1], PORT_RING));
    let mut expect = |addr: SocketAddr, req: Vec<u8>, want: u16| {
        let got = exchange(addr, &req);
        checks.check(matches!(got, Ok(s) if s == want), || {
            format!(
                "harness: {addr} {:?} answered {got:?}, expected {want}",
                String::from_utf8_lossy(&req[..req.len().min(40)])
            )
        });
    };
    for i in 0..r.ok {
        expect(main, get(OK_PATHS[i as usize % OK_PATHS.len()]), 200);
    }
    for _ in 0..r.missing {
        expect(main, get("/missing"), 404);
    }
    for _ in 0..r.err {
        expect(main, get("/err"), 500);
    }
    for _ in 0..r.down {
        expect(main, get("/down"), 503);
    }
    for _ in 0..r.badreq {
        expect(main, BAD_REQUEST.to_vec(), 400);
    }
    for _ in 0..r.ring_ok {
        expect(ring, get("/"), 200);
    }
    let nolog = SocketAddr::from(([127, 0, 0, 1], PORT_NOLOG));
    for _ in 0..r.nolog {
        expect(nolog, get("/"), 200);
    }
    for _ in 0..r.empty {
        let conn = TcpStream::connect_timeout(&main, IO_TIMEOUT);
        checks.check(conn.is_ok(), || {
            format!("harness: empty connection: {conn:?}")
        });
    }
    // All slow requests at once: the round takes SLOW_DELAY, not r.slow times it.
    let slow: Vec<_> = (0..r.slow)
        .map(|_| std::thread::spawn(move || exchange(main, &get("/slow"))))
        .collect();
    for h in slow {
        let got = h.join().unwrap_or_else(|_| Err("thread panicked".into()));
        checks.check(matches!(got, Ok(200)), || {
            format!("harness: GET /slow answered {got:?}, expected 200")
        });
    }
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    for _ in 0..r.ignored {
        sock.send_to(IGNORED_LINE, EXPORTER_UDP)
            .expect("send a line to the exporter");
    }
}

/// Waits until the exporter has received `lines` lines, then until
/// Prometheus has scraped that count.
fn wait_for_exporter_and_prometheus(lines: f64) -> Result<(), String> {
    let received = wait_until(Duration::from_secs(20), || {
        let s = scrape(EXPORTER_WEB).ok()?.1;
        (s.sum(M_RECEIVED, &[]) >= lines).then_some(s)
    })
    .map_err(|t| {
        let got = scrape(EXPORTER_WEB).map(|(_, s)| s.sum(M_RECEIVED, &[]));
        format!("the exporter did not receive {lines} lines: {t} (received: {got:?})")
    })?;
    let got = received.sum(M_RECEIVED, &[]);
    if got != lines {
        return Err(format!(
            "the exporter received {got} lines, expected {lines}"
        ));
    }
    let counted = received.sum(M_COUNTED, &[]);
    let query = format!("sum({M_RECEIVED}{{job=\"{JOB}\"}})");
    let query_counted = format!("sum({M_COUNTED}{{job=\"{JOB}\"}})");
    wait_until(Duration::from_secs(20), || {
        let seen = single_value(&prom_query(&query).ok()?)?;
        let seen_counted = single_value(&prom_query(&query_counted).ok()?)?;
        (seen == lines && seen_counted == counted).then_some(())
    })
    .map_err(|t| {
        format!(
            "Prometheus did not scrape the exporter's {lines} lines: {t} ({query} = {:?})",
            prom_query(&query)
        )
    })
}

fn single_value(samples: &[PromSample]) -> Option<f64> {
    match samples {
        [s] => Some(s.value),
        _ => None,
    }
}

/// An HTTP server that answers every request with 200 after a delay; a thread
/// per connection. Stops accepting when dropped.
struct SlowServer {
    stop: Arc<AtomicBool>,
    port: u16,
}

impl SlowServer {
    fn start(port: u16, delay: Duration) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the slow server");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    std::thread::sleep(delay);
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                          Content-Length: 4\r\nConnection: close\r\n\r\nslow",
                    );
                });
            }
        });
        Self { stop, port }
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

// ---------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------

fn start_prometheus(inner: &Inner, log: &Path) -> ChildGuard {
    let bin = find_program("prometheus").expect("prometheus (Debian package prometheus)");
    let rules = repo_file(RULES_FILE);
    assert!(rules.is_file(), "{} is missing", rules.display());
    // The static target carries the labels Kubernetes service discovery gives
    // a pod's target (the Prometheus Operator, and deploy/prometheus/
    // prometheus.yml): the alert on a down exporter selects `container`.
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules:?}\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [{EXPORTER_WEB:?}]\n\
         \x20       labels:\n          container: haproxy-log-exporter\n\
         \x20         namespace: monitoring-test\n          pod: haproxy-0\n",
        rules = rules.display().to_string(),
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
        Ok(Err(e)) => panic!(
            "{e}\nPrometheus log:\n{}\nconfig:\n{config}",
            tail_file(log, 30)
        ),
        Err(t) => panic!(
            "Prometheus was not ready: {t}\nPrometheus log:\n{}",
            tail_file(log, 30)
        ),
    }
    inner.step("Prometheus ready");
    child
}

/// One sample of an instant vector.
#[derive(Debug, Clone)]
struct PromSample {
    labels: BTreeMap<String, String>,
    value: f64,
}

impl std::fmt::Display for PromSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        write!(f, "{{{}}} {}", labels.join(", "), self.value)
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

/// Evaluates `expr` now: the samples of the instant vector (a scalar is one
/// sample without labels).
fn prom_query(expr: &str) -> Result<Vec<PromSample>, String> {
    let body = prom_get(&format!("/api/v1/query?query={}", url_encode(expr)))?;
    let data = body.get("data").ok_or("no data")?;
    let value_of = |pair: &Json| -> Result<f64, String> {
        let v = pair
            .items()
            .get(1)
            .and_then(Json::as_str)
            .ok_or("no value")?;
        match v {
            "NaN" => Ok(f64::NAN),
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            _ => v.parse().map_err(|_| format!("bad value {v:?}")),
        }
    };
    match data.get("resultType").and_then(Json::as_str) {
        Some("vector") => data
            .get("result")
            .map(Json::items)
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let labels = s
                    .get("metric")
                    .map(Json::entries)
                    .unwrap_or_default()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                Ok(PromSample {
                    labels,
                    value: value_of(s.get("value").ok_or("no value")?)?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![PromSample {
            labels: BTreeMap::new(),
            value: value_of(data.get("result").ok_or("no result")?)?,
        }]),
        other => Err(format!("unexpected result type {other:?} for {expr}")),
    }
}

/// A rule as Prometheus' rule manager has it.
#[derive(Debug, Clone, Default)]
struct PromRule {
    name: String,
    kind: String,
    query: String,
    health: String,
    last_error: String,
}

fn prom_rules() -> Result<Vec<PromRule>, String> {
    let body = prom_get("/api/v1/rules")?;
    let mut out = Vec::new();
    let groups = body
        .get("data")
        .and_then(|d| d.get("groups"))
        .map(Json::items)
        .unwrap_or_default();
    for group in groups {
        for rule in group.get("rules").map(Json::items).unwrap_or_default() {
            let s = |k: &str| {
                rule.get(k)
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            out.push(PromRule {
                name: s("name"),
                kind: s("type"),
                query: s("query"),
                health: s("health"),
                last_error: s("lastError"),
            });
        }
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

// ---------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------

fn check_alerts(checks: &mut Checks, rules: &[PromRule]) {
    let alerts: Vec<&PromRule> = rules.iter().filter(|r| r.kind == "alerting").collect();
    for (name, _) in ALERTS {
        checks.check(alerts.iter().any(|r| r.name == *name), || {
            format!("{RULES_FILE} has no alert {name}, which this test expects")
        });
    }
    for rule in alerts {
        let Some((_, expectation)) = ALERTS.iter().find(|(n, _)| *n == rule.name) else {
            checks.check(false, || {
                format!(
                    "alert {} has no expectation in tests/monitoring_queries.rs (ALERTS)",
                    rule.name
                )
            });
            continue;
        };
        match expectation {
            AlertExpectation::Fires {
                must_have,
                must_not_have,
            } => {
                let result = prom_query(&rule.query);
                println!("  alert {}: {}", rule.name, describe(&result));
                let samples = match result {
                    Ok(s) => s,
                    Err(e) => {
                        checks.check(false, || format!("alert {}: {e}", rule.name));
                        continue;
                    }
                };
                checks.check(!samples.is_empty(), || {
                    format!(
                        "alert {}: returned no data, but the traffic crosses its threshold\n    {}",
                        rule.name, rule.query
                    )
                });
                for (label, value) in *must_have {
                    let found = samples
                        .iter()
                        .any(|s| s.labels.get(*label).map(String::as_str) == Some(*value));
                    checks.check(found, || {
                        format!(
                            "alert {}: no series with {label}={value:?}: {}",
                            rule.name,
                            summary(&samples)
                        )
                    });
                }
                for (label, value) in *must_not_have {
                    let found = samples
                        .iter()
                        .any(|s| s.labels.get(*label).map(String::as_str) == Some(*value));
                    checks.check(!found, || {
                        format!(
                            "alert {}: fires for {label}={value:?}, which the traffic does not \
                             imply: {}",
                            rule.name,
                            summary(&samples)
                        )
                    });
                }
            }
            AlertExpectation::SelectorOnly { why } => {
                let Some(selector) = strip_final_comparison(&rule.query) else {
                    checks.check(false, || {
                        format!(
                            "alert {}: no final comparison with a number to strip in {}",
                            rule.name, rule.query
                        )
                    });
                    continue;
                };
                let result = prom_query(selector);
                println!(
                    "  alert {} (threshold not crossed: {why})\n    without the comparison: {selector}\n    -> {}",
                    rule.name,
                    describe(&result)
                );
                checks.check(matches!(&result, Ok(s) if !s.is_empty()), || {
                    format!(
                        "alert {}: {selector} (the expression without its comparison) returned \
                         {}; its selector matches none of the exporter's series",
                        rule.name,
                        describe(&result)
                    )
                });
            }
        }
    }
}

fn describe(result: &Result<Vec<PromSample>, String>) -> String {
    match result {
        Ok(s) if s.is_empty() => "no data".to_string(),
        Ok(s) => format!("{} series: {}", s.len(), summary(s)),
        Err(e) => format!("error: {e}"),
    }
}

/// `expr` without its final top-level comparison with a number
/// (`... > 0`, `... == 0`, `... > bool 1`): the left-hand side. None when
/// `expr` does not end in one.
fn strip_final_comparison(expr: &str) -> Option<&str> {
    let bytes = expr.as_bytes();
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    let mut last: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                b'"' | b'\'' | b'`' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                b'=' | b'!' | b'>' | b'<' if depth == 0 => {
                    let two = bytes.get(i + 1) == Some(&b'=');
                    let is_cmp = two || c == b'>' || c == b'<';
                    if is_cmp {
                        let len = if two { 2 } else { 1 };
                        last = Some((i, i + len));
                        i += len;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    let (start, end) = last?;
    let rhs = expr[end..].trim();
    let rhs = rhs.strip_prefix("bool").map(str::trim).unwrap_or(rhs);
    rhs.parse::<f64>().ok()?;
    Some(expr[..start].trim())
}

// ---------------------------------------------------------------------------
// The dashboard
// ---------------------------------------------------------------------------

/// A query of the dashboard.
struct Query {
    panel: String,
    ref_id: String,
    expr: String,
}

fn check_dashboard(checks: &mut Checks, text: &str) {
    let dash = parse_json(text).unwrap_or_else(|e| panic!("{DASHBOARD_FILE}: {e}"));

    // Grafana's variables: each with "All" stands for its allValue.
    let mut vars: Vec<(String, String)> = vec![
        ("__rate_interval".into(), RATE_INTERVAL.into()),
        ("__interval".into(), INTERVAL.into()),
        ("__range".into(), RANGE.into()),
    ];
    let templating = dash
        .get("templating")
        .and_then(|t| t.get("list"))
        .map(Json::items)
        .unwrap_or_default();
    let mut var_queries = Vec::new();
    for var in templating {
        let name = var.get("name").and_then(Json::as_str).unwrap_or_default();
        if var.get("type").and_then(Json::as_str) == Some("query") {
            let q = var
                .get("query")
                .and_then(|q| q.get("query").or(Some(q)))
                .and_then(Json::as_str)
                .unwrap_or_default();
            var_queries.push((name.to_string(), q.to_string()));
        }
        if var.get("includeAll") == Some(&Json::Bool(true)) {
            let all = var
                .get("allValue")
                .and_then(Json::as_str)
                .filter(|a| !a.is_empty())
                .unwrap_or(".*");
            vars.push((name.to_string(), all.to_string()));
        }
    }
    // Longer names first, so that `$backend` is not read as `$back`.
    vars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let substitute = |expr: &str| -> Result<String, String> {
        let mut out = expr.to_string();
        for (name, value) in &vars {
            out = out
                .replace(&format!("${{{name}}}"), value)
                .replace(&format!("${name}"), value);
        }
        if out.contains('$') {
            return Err(format!("a variable is left after substitution: {out}"));
        }
        Ok(out)
    };

    // The variables' own queries must offer values.
    for (name, q) in &var_queries {
        let result = substitute(q).and_then(|q| {
            let (metric, label) = parse_label_values(&q)
                .ok_or_else(|| format!("not label_values(METRIC, LABEL): {q}"))?;
            let values = prom_query(&format!("count by ({label}) ({metric})"))?;
            Ok((label, values))
        });
        match result {
            Ok((label, values)) => {
                let offered: Vec<&str> = values
                    .iter()
                    .filter_map(|s| s.labels.get(&label).map(String::as_str))
                    .filter(|v| !v.is_empty())
                    .collect();
                println!("  variable ${name}: {offered:?}");
                checks.check(!offered.is_empty(), || {
                    format!("dashboard variable ${name} ({q}) offers no value")
                });
            }
            Err(e) => checks.check(false, || format!("dashboard variable ${name}: {e}")),
        }
    }

    let mut queries = Vec::new();
    collect_queries(
        dash.get("panels").map(Json::items).unwrap_or_default(),
        &mut queries,
    );
    checks.check(queries.len() >= 20, || {
        format!(
            "{DASHBOARD_FILE}: found only {} queries; is the file complete?",
            queries.len()
        )
    });
    for (title, ref_id, _) in ZERO_ALLOWED {
        checks.check(
            queries
                .iter()
                .any(|q| q.panel == *title && q.ref_id == *ref_id),
            || format!("ZERO_ALLOWED names {title:?} {ref_id}, which the dashboard lacks"),
        );
    }
    for (title, ref_id, ..) in DASHBOARD_MUST_HAVE {
        checks.check(
            queries
                .iter()
                .any(|q| q.panel == *title && q.ref_id == *ref_id),
            || format!("DASHBOARD_MUST_HAVE names {title:?} {ref_id}, which the dashboard lacks"),
        );
    }

    for q in &queries {
        let what = format!("panel {:?} query {}", q.panel, q.ref_id);
        let expr = match substitute(&q.expr) {
            Ok(e) => e,
            Err(e) => {
                checks.check(false, || format!("{what}: {e}"));
                continue;
            }
        };
        let result = prom_query(&expr);
        println!("  {what}: {}", describe(&result));
        let samples = match result {
            Ok(s) => s,
            Err(e) => {
                checks.check(false, || format!("{what}: {e}\n    {expr}"));
                continue;
            }
        };
        let finite: Vec<&PromSample> = samples.iter().filter(|s| s.value.is_finite()).collect();
        let zero_ok = ZERO_ALLOWED
            .iter()
            .find(|(t, r, _)| *t == q.panel && *r == q.ref_id);
        match zero_ok {
            Some((_, _, why)) => checks.check(!finite.is_empty(), || {
                format!("{what}: no data (zero would do: {why})\n    {expr}")
            }),
            None => checks.check(finite.iter().any(|s| s.value != 0.0), || {
                format!(
                    "{what}: no finite non-zero sample, but the traffic implies one: {}\n    {expr}",
                    if samples.is_empty() {
                        "no data".to_string()
                    } else {
                        summary(&samples)
                    }
                )
            }),
        }
        for (_, _, label, value, min) in DASHBOARD_MUST_HAVE
            .iter()
            .filter(|(t, r, ..)| *t == q.panel && *r == q.ref_id)
        {
            let best = samples
                .iter()
                .filter(|s| s.labels.get(*label).map(String::as_str) == Some(*value))
                .map(|s| s.value)
                .filter(|v| v.is_finite())
                .fold(None, |acc: Option<f64>, v| {
                    Some(acc.map_or(v, |a| a.max(v)))
                });
            checks.check(best.is_some_and(|v| v > 0.0 && v >= *min), || {
                format!(
                    "{what}: want a series with {label}={value:?} at {min} or more (and above \
                     0), got {best:?}: {}",
                    summary(&samples)
                )
            });
        }
    }
}

/// Every target with an `expr` in `panels` and the panels of rows.
fn collect_queries(panels: &[Json], out: &mut Vec<Query>) {
    for panel in panels {
        let title = panel
            .get("title")
            .and_then(Json::as_str)
            .unwrap_or_default();
        for target in panel.get("targets").map(Json::items).unwrap_or_default() {
            if let Some(expr) = target.get("expr").and_then(Json::as_str) {
                out.push(Query {
                    panel: title.to_string(),
                    ref_id: target
                        .get("refId")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    expr: expr.to_string(),
                });
            }
        }
        collect_queries(
            panel.get("panels").map(Json::items).unwrap_or_default(),
            out,
        );
    }
}

/// `label_values(METRIC, LABEL)` → (METRIC, LABEL).
fn parse_label_values(q: &str) -> Option<(String, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let comma = inner.rfind(',')?;
    let (metric, label) = (inner[..comma].trim(), inner[comma + 1..].trim());
    (!metric.is_empty() && !label.is_empty()).then(|| (metric.to_string(), label.to_string()))
}

// ---------------------------------------------------------------------------
// Self-checks of the pieces above (no network)
// ---------------------------------------------------------------------------

#[test]
fn strips_only_a_final_comparison_with_a_number() {
    assert_eq!(
        strip_final_comparison("sum by (a) (increase(x{b=\">\"}[5m])) > 0"),
        Some("sum by (a) (increase(x{b=\">\"}[5m]))")
    );
    assert_eq!(
        strip_final_comparison("up{container=\"e\"} == 0"),
        Some("up{container=\"e\"}")
    );
    assert_eq!(strip_final_comparison("a > bool 1"), Some("a"));
    assert_eq!(strip_final_comparison("a / b"), None);
    assert_eq!(strip_final_comparison("a > b"), None);
    assert_eq!(strip_final_comparison("rate(x[5m] > 0)"), None);
}

#[test]
fn reads_json_and_label_values() {
    let j =
        parse_json(r#"{"a": [1, -2.5e1, "x\"\u00e9\ud83d\ude00", true, null], "b": {}}"#).unwrap();
    let a = j.get("a").unwrap().items();
    assert_eq!(a[0], Json::Num(1.0));
    assert_eq!(a[1], Json::Num(-25.0));
    assert_eq!(a[2].as_str(), Some("x\"é😀"));
    assert_eq!(a[3], Json::Bool(true));
    assert_eq!(a[4], Json::Null);
    assert!(parse_json("{\"a\": 1,}").is_err());
    assert!(parse_json("[1] 2").is_err());
    assert_eq!(
        parse_label_values("label_values(m{job=~\".+\", x=\"a,b\"}, backend_name)"),
        Some(("m{job=~\".+\", x=\"a,b\"}".into(), "backend_name".into()))
    );
    assert_eq!(url_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
}

/// The chart keeps the exporter's default labels: it sets none, or only the defaults,
/// and those are what the dashboard and the alerts group and filter by.
#[test]
fn the_chart_keeps_the_exporters_default_labels() {
    let defaults = |metric: &str| {
        default_labels(MetricDef::by_name(metric).unwrap_or_else(|| panic!("no metric {metric}")))
    };
    for (metric, labels) in chart_default_labels(&read_repo_file(CHART_VALUES_FILE)) {
        assert_eq!(
            labels,
            defaults(&metric),
            "{CHART_VALUES_FILE}: metrics.labels.{metric} differs from the exporter's default"
        );
    }
    let needed: &[(&str, &[&str])] = &[
        (
            "requests_total",
            &["status_code", "status_class", "backend_name", "server_name"],
        ),
        (
            "response_processing_seconds",
            &["backend_name", "server_name", "http_request_path"],
        ),
        ("request_queued_seconds", &["backend_name"]),
        (
            "server_tcp_connection_establish_seconds",
            &["backend_name", "server_name"],
        ),
        ("request_abort_total", &["termination_state"]),
        (
            "request_pre_server_connection_abort_total",
            &["termination_state"],
        ),
    ];
    for (metric, labels) in needed {
        let have = defaults(metric);
        for label in *labels {
            assert!(have.split(',').any(|l| l == *label), "{metric}: {have}");
        }
    }
}
