//! End to end with a real HAProxy 2.6, in its built-in formats other than
//! `option httplog` (which `tests/haproxy_e2e.rs` covers) and in a custom
//! `log-format` whose fields become labels.
//!
//! `haproxy_formats_end_to_end` re-executes this test binary under
//! `unshare -n` (a private network namespace, so the fixed loopback ports
//! below cannot clash with anything else on the machine) to run
//! `haproxy_formats_e2e_inner`, which:
//!
//! 1. brings `lo` up and makes a self-signed certificate with
//!    `openssl req -x509` in the test's temporary work directory;
//! 2. starts the exporter (UDP 127.0.0.1:5140, TCP 127.0.0.1:5141, web
//!    127.0.0.1:9129) with three formats in `HLE_HAPROXY_LOG_FORMAT`, one a
//!    line: `clf`, `httpslog` and [`CUSTOM_LOG_FORMAT`];
//!    `HLE_CUSTOM_LABELS` makes `route` and `host` of two fields of the
//!    custom format ([`CUSTOM_LABELS`]);
//!    `HLE_REQUESTS_TOTAL_LABELS=frontend_name,status_class`, and the route
//!    and host on two histograms; then waits for `/-/ready`;
//! 3. starts HAProxy from `tests/e2e/haproxy_formats.cfg.in`: `fe_clf`
//!    (`option httplog clf`, logs over UDP), `fe_tls` (`bind ... ssl crt`,
//!    `option httpslog`, logs through a ring to TCP) and `fe_custom`
//!    (`log-format` [`CUSTOM_LOG_FORMAT`], the same string; logs over UDP
//!    with an rfc3164 header), which sets `txn.route` from the first path
//!    segment and captures the `Host` header;
//! 4. sends a fixed mix to each, a different mix per frontend: 200 (several
//!    methods; over TLS with and without SNI), 404, 500, 503, a garbage
//!    request (400 `<BADREQ>` PR--), a connection that sends no request (400
//!    `<BADREQ>` CR--; for `fe_tls` one that completes the TLS handshake
//!    first), and 200 and 404 from an IPv6 client; to `fe_custom` these
//!    over two routes (`/api/...`, `/shop/...`) and two `Host` headers
//!    ([`CUSTOM_TRAFFIC`]). The TLS client is `openssl s_client`;
//! 5. compares the exporter's `haproxy_log_requests_total` per frontend and
//!    status class with the delta of HAProxy's own
//!    `haproxy_frontend_http_responses_total`, checks that `fe_tls` shows up
//!    without the `~` HAProxy appends to TLS frontends, that nothing is
//!    rejected, that received = counted + rejected + ignored (and each
//!    transport's lines equal its frontends'), the client addresses, and
//!    `promtool check metrics`;
//! 6. checks the custom labels: `fe_custom`'s series of
//!    `haproxy_log_session_duration_seconds` (per route, host and status
//!    code) and `haproxy_log_response_processing_seconds` (per route and
//!    host; only lines with a server response have a `Tr`) are exactly the
//!    ones the traffic plan makes, with its counts, and the other frontends'
//!    series have both labels empty;
//! 7. stops the exporter with SIGTERM: it must exit 0.
//!
//! Without `unshare`, `ip`, `haproxy` or `openssl` the test prints a skip
//! message, or fails when `CI=true`.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    find_program, has_placeholder, http_get, inside_private_netns, promtool_check_metrics,
    run_in_private_netns, run_with_timeout, scrape_metrics, tail_file, wait_until, Checks,
    ChildGuard, NetnsRun, PromtoolVerdict, Samples, TempDir, WORK_DIR_VAR,
};

/// Name of the inner test, run by the outer one inside the namespace.
const INNER_TEST: &str = "haproxy_formats_e2e_inner";
/// The whole inner run must finish within this time.
const INNER_RUN_LIMIT: Duration = Duration::from_secs(240);

const EXPORTER_UDP: &str = "127.0.0.1:5140";
const EXPORTER_TCP: &str = "127.0.0.1:5141";
const EXPORTER_WEB: &str = "127.0.0.1:9129";

/// `fe_custom`'s `log-format`, exactly as written in the HAProxy config
/// (the template's `@CUSTOM_LOG_FORMAT@`) and as given to the exporter. The
/// route is the first path segment (`txn.route`), the host the first (only)
/// value of the `capture request header` block `%hr`. Like most custom
/// formats it begins as the built-in ones do (here up to `%ST %B`), so a
/// format tried before it must not take its lines.
const CUSTOM_LOG_FORMAT: &str = "\"%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc \
     %ac/%fc/%bc/%sc/%rc %sq/%bq host=%hr route=%[var(txn.route)] %{+Q}r\"";

/// `HLE_CUSTOM_LABELS`: the fields of [`CUSTOM_LOG_FORMAT`] that become the
/// labels `route` and `host`, written as in the format.
const CUSTOM_LABELS: &str = "route=%[var(txn.route)],host=%hr#0";

/// `HLE_HAPROXY_LOG_FORMAT`: the formats of the three frontends, one a line,
/// tried in order; the built-in ones first, as when a custom format is added
/// to a configuration that has them. Each line must still be read by its
/// own frontend's format.
fn log_formats() -> String {
    format!("clf\nhttpslog\n{CUSTOM_LOG_FORMAT}")
}

/// Metrics labelled with the custom labels (`HLE_<METRIC>_LABELS`).
const M_SESSION: &str = "haproxy_log_session_duration_seconds";
const SESSION_LABELS: &str = "frontend_name,route,host,status_code";
const M_RESPONSE: &str = "haproxy_log_response_processing_seconds";
const RESPONSE_LABELS: &str = "frontend_name,route,host";

const PORT_CLF: u16 = 8084;
const PORT_TLS: u16 = 8443;
const PORT_CUSTOM: u16 = 8086;
const PORT_APP: u16 = 8090;
const PORT_DEAD: u16 = 8099;
const PORT_STATS: u16 = 8405;

const HAPROXY_CFG_TEMPLATE: &str = include_str!("e2e/haproxy_formats.cfg.in");

/// The certificate and key HAProxy reads (`crt`), made in the work directory.
const TLS_PEM_NAME: &str = "e2e-tls.pem";
/// The server name the TLS client sends for some requests (SNI).
const TLS_SERVER_NAME: &str = "localhost";

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one `openssl` run (a request over TLS, or making the certificate).
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Outer test: re-executes this binary in a private network namespace
// ---------------------------------------------------------------------------

#[test]
fn haproxy_formats_end_to_end() {
    run_in_private_netns(&NetnsRun {
        outer: "haproxy_formats_end_to_end",
        inner: INNER_TEST,
        tools: &[
            ("ip", "iproute2"),
            ("haproxy", "haproxy"),
            ("openssl", "openssl"),
        ],
        work_dir_prefix: "hle-e2e-formats",
        limit: INNER_RUN_LIMIT,
    });
}

// ---------------------------------------------------------------------------
// Inner test: everything on loopback inside the namespace
// ---------------------------------------------------------------------------

#[test]
#[ignore = "inner half of haproxy_formats_end_to_end: runs only inside its private network namespace"]
fn haproxy_formats_e2e_inner() {
    if !inside_private_netns() {
        eprintln!(
            "{INNER_TEST}: nothing to do outside the private network namespace; \
             run `haproxy_formats_end_to_end` instead"
        );
        return;
    }
    run_inside_private_netns();
}

/// What one connection to a logging frontend does, and how HAProxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 200 from `fe_app`, behind `be_app`.
    Ok,
    /// 404 from `fe_app`.
    Missing,
    /// 500 from `fe_app`.
    Err,
    /// 503: `be_down`'s server refuses the connection (SC--).
    Down,
    /// 400 `<BADREQ>` PR--: a garbage request.
    BadReq,
    /// 400 `<BADREQ>` CR--: a connection that sends no request (over TLS,
    /// after the handshake).
    Empty,
}

impl Kind {
    fn status(self) -> u16 {
        match self {
            Kind::Ok => 200,
            Kind::Missing => 404,
            Kind::Err => 500,
            Kind::Down => 503,
            Kind::BadReq | Kind::Empty => 400,
        }
    }

    /// A server answered, so HAProxy logs a response time `Tr` (it logs -1,
    /// which the exporter does not observe, when no server answered).
    fn server_answered(self) -> bool {
        matches!(self, Kind::Ok | Kind::Missing | Kind::Err)
    }
}

/// The `status_class` of a status code, as HAProxy's `code` label.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// One connection to a logging frontend.
#[derive(Debug, Clone)]
struct Shot {
    kind: Kind,
    /// From [::1] rather than 127.0.0.1.
    v6: bool,
    /// Over TLS: send the server name (SNI).
    sni: bool,
    /// What the client sends (nothing for [`Kind::Empty`]).
    request: Vec<u8>,
    /// `fe_custom`: the `route` and `host` labels its log line must get.
    labels: Option<(&'static str, &'static str)>,
}

/// The traffic `fe_clf` and `fe_tls` receive. Counts differ per frontend so
/// that lines attributed to the wrong frontend cannot go unnoticed.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// 200 from the answering frontend (several methods and paths; over TLS,
    /// every other one with SNI).
    ok: u32,
    /// 404 (`/missing`).
    missing: u32,
    /// 500 (`/err`).
    err: u32,
    /// 503 from the dead server (`/down`).
    down: u32,
    /// 400 `<BADREQ>` PR-- (garbage request).
    badreq: u32,
    /// 400 `<BADREQ>` CR-- (no request; over TLS, after the handshake).
    empty: u32,
    /// 200 and 404 from the IPv6 client ([::1]).
    ok_v6: u32,
    missing_v6: u32,
}

impl Plan {
    fn shots(&self) -> Vec<Shot> {
        let shot = |kind, v6, sni, request| Shot {
            kind,
            v6,
            sni,
            request,
            labels: None,
        };
        let mut out = Vec::new();
        for i in 0..self.ok {
            out.push(shot(Kind::Ok, false, i % 2 == 0, ok_request(i)));
        }
        for i in 0..self.missing {
            let req = get(&format!("/missing/{i}?q={i}"));
            out.push(shot(Kind::Missing, false, true, req));
        }
        for i in 0..self.err {
            out.push(shot(Kind::Err, false, false, get(&format!("/err/{i}"))));
        }
        for i in 0..self.down {
            out.push(shot(Kind::Down, false, true, get(&format!("/down/{i}"))));
        }
        for _ in 0..self.badreq {
            out.push(shot(Kind::BadReq, false, false, BAD_REQUEST.to_vec()));
        }
        for _ in 0..self.empty {
            out.push(shot(Kind::Empty, false, false, Vec::new()));
        }
        for i in 0..self.ok_v6 {
            out.push(shot(Kind::Ok, true, i % 2 == 1, ok_request(i)));
        }
        for i in 0..self.missing_v6 {
            let req = get(&format!("/missing/v6/{i}"));
            out.push(shot(Kind::Missing, true, false, req));
        }
        out
    }
}

/// The two `Host` headers `fe_custom`'s clients send.
const HOST_WWW: &str = "www.e2e.test";
const HOST_MOBILE: &str = "m.e2e.test:8086";
/// The `route` label of a line whose `txn.route` was never set (a
/// `<BADREQ>` never reaches the `http-request` rules): HAProxy logs a
/// missing sample as `-`, and the label keeps the field as logged.
const ROUTE_UNSET: &str = "-";
/// The `host` label of a line without captures: for a `<BADREQ>`, HAProxy
/// writes nothing at all for `%hr` (not even `{}`).
const HOST_NONE: &str = "";

/// `fe_custom`'s traffic, in the order sent: (route, Host header, kind, how
/// many, from [::1]). A request of route `r` asks for `/r/<what>/<i>`, which
/// `fe_custom` rewrites to `/<what>/<i>` (so `fe_app` and `be_down` answer as
/// for the other frontends). For `BadReq` and `Empty`, which carry no path
/// nor `Host`, route and host are the labels their lines get.
const CUSTOM_TRAFFIC: &[(&str, &str, Kind, u32, bool)] = &[
    ("api", HOST_WWW, Kind::Ok, 3, false),
    ("api", HOST_WWW, Kind::Missing, 1, false),
    ("shop", HOST_MOBILE, Kind::Ok, 4, false),
    ("api", HOST_WWW, Kind::Err, 1, false),
    (ROUTE_UNSET, HOST_NONE, Kind::BadReq, 1, false),
    ("api", HOST_WWW, Kind::Down, 1, false),
    ("api", HOST_MOBILE, Kind::Ok, 1, true),
    ("api", HOST_MOBILE, Kind::Err, 2, false),
    ("shop", HOST_WWW, Kind::Ok, 2, false),
    ("shop", HOST_WWW, Kind::Missing, 2, true),
    ("shop", HOST_MOBILE, Kind::Down, 2, true),
    (ROUTE_UNSET, HOST_NONE, Kind::BadReq, 2, false),
    ("shop", HOST_WWW, Kind::Down, 1, false),
    ("shop", HOST_MOBILE, Kind::Missing, 1, false),
    (ROUTE_UNSET, HOST_NONE, Kind::Empty, 1, false),
];

fn custom_shots() -> Vec<Shot> {
    let mut out = Vec::new();
    for &(route, host, kind, n, v6) in CUSTOM_TRAFFIC {
        for i in 0..n {
            let what = match kind {
                Kind::Ok => "items",
                Kind::Missing => "missing",
                Kind::Err => "err",
                Kind::Down => "down",
                Kind::BadReq | Kind::Empty => "",
            };
            let path = format!("/{route}/{what}/{i}");
            let request = match kind {
                Kind::BadReq => BAD_REQUEST.to_vec(),
                Kind::Empty => Vec::new(),
                // Several methods, with and without a query string.
                Kind::Ok => match i % 3 {
                    0 => request("GET", &format!("{path}?page={i}"), host, None),
                    1 => request("HEAD", &path, host, None),
                    _ => request("POST", &path, host, Some("hello")),
                },
                _ => request("GET", &path, host, None),
            };
            out.push(Shot {
                kind,
                v6,
                sni: false,
                request,
                labels: Some((route, host)),
            });
        }
    }
    out
}

/// Connections per status class, as HAProxy's `code` label.
fn by_class(shots: &[Shot]) -> BTreeMap<&'static str, u32> {
    let mut m: BTreeMap<&'static str, u32> = STATUS_CLASSES.iter().map(|c| (*c, 0)).collect();
    for s in shots {
        *m.get_mut(status_class(s.kind.status())).unwrap() += 1;
    }
    m
}

/// Values of some labels of a series, in a chosen order.
type SeriesKey = Vec<String>;

/// `fe_custom`'s expected `haproxy_log_session_duration_seconds_count` per
/// (route, host, status code): every line has a session time `Ta`.
fn expected_sessions(shots: &[Shot]) -> BTreeMap<SeriesKey, f64> {
    let mut m = BTreeMap::new();
    for s in shots {
        let (route, host) = s.labels.expect("fe_custom's shots have labels");
        let key = vec![route.into(), host.into(), s.kind.status().to_string()];
        *m.entry(key).or_insert(0.0) += 1.0;
    }
    m
}

/// `fe_custom`'s expected `haproxy_log_response_processing_seconds_count` per
/// (route, host): only lines with a server response have a `Tr`.
fn expected_responses(shots: &[Shot]) -> BTreeMap<SeriesKey, f64> {
    let mut m = BTreeMap::new();
    for s in shots.iter().filter(|s| s.kind.server_answered()) {
        let (route, host) = s.labels.expect("fe_custom's shots have labels");
        *m.entry(vec![route.into(), host.into()]).or_insert(0.0) += 1.0;
    }
    m
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The `transport` label of the exporter's self-metrics.
    fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

struct Frontend {
    name: &'static str,
    /// How it logs, for messages.
    format: &'static str,
    port: u16,
    tls: bool,
    transport: Transport,
    shots: Vec<Shot>,
}

impl Frontend {
    /// Connections sent: HAProxy counts one request and one response each.
    fn total(&self) -> f64 {
        self.shots.len() as f64
    }
}

const FE_CUSTOM: &str = "fe_custom";

fn frontends() -> Vec<Frontend> {
    vec![
        Frontend {
            name: "fe_clf",
            format: "option httplog clf",
            port: PORT_CLF,
            tls: false,
            transport: Transport::Udp,
            shots: Plan {
                ok: 4,
                missing: 2,
                err: 1,
                down: 2,
                badreq: 1,
                empty: 1,
                ok_v6: 2,
                missing_v6: 1,
            }
            .shots(),
        },
        Frontend {
            name: "fe_tls",
            format: "option httpslog",
            port: PORT_TLS,
            tls: true,
            transport: Transport::Tcp,
            shots: Plan {
                ok: 5,
                missing: 1,
                err: 3,
                down: 1,
                badreq: 2,
                empty: 1,
                ok_v6: 1,
                missing_v6: 2,
            }
            .shots(),
        },
        Frontend {
            name: FE_CUSTOM,
            format: "log-format with route and host",
            port: PORT_CUSTOM,
            tls: false,
            transport: Transport::Udp,
            shots: custom_shots(),
        },
    ]
}

fn render_haproxy_cfg(tls_pem: &str) -> String {
    let cfg = HAPROXY_CFG_TEMPLATE
        .replace("@UDP_LOG_ADDR@", EXPORTER_UDP)
        .replace("@TCP_LOG_ADDR@", EXPORTER_TCP)
        .replace("@TLS_PEM@", tls_pem)
        .replace("@PORT_CLF@", &PORT_CLF.to_string())
        .replace("@PORT_TLS@", &PORT_TLS.to_string())
        .replace("@PORT_CUSTOM@", &PORT_CUSTOM.to_string())
        .replace("@CUSTOM_LOG_FORMAT@", CUSTOM_LOG_FORMAT)
        .replace("@PORT_APP@", &PORT_APP.to_string())
        .replace("@PORT_DEAD@", &PORT_DEAD.to_string())
        .replace("@PORT_STATS@", &PORT_STATS.to_string());
    let leftover = cfg.lines().find(|l| has_placeholder(l));
    assert!(
        leftover.is_none(),
        "unreplaced placeholder in the HAProxy config: {leftover:?}"
    );
    cfg
}

fn scrape(addr: &str) -> Result<(String, Samples), String> {
    scrape_metrics(addr, IO_TIMEOUT)
}

fn stats_addr() -> String {
    format!("127.0.0.1:{PORT_STATS}")
}

fn must_scrape_haproxy() -> Samples {
    scrape(&stats_addr())
        .unwrap_or_else(|e| panic!("HAProxy stats: {e}"))
        .1
}

/// HAProxy's responses per class for one frontend, as a delta.
fn haproxy_class_delta(before: &Samples, after: &Samples, fe: &str, class: &str) -> f64 {
    let f = [("proxy", fe), ("code", class)];
    after.sum("haproxy_frontend_http_responses_total", &f)
        - before.sum("haproxy_frontend_http_responses_total", &f)
}

fn haproxy_requests_delta(before: &Samples, after: &Samples, fe: &str) -> f64 {
    let f = [("proxy", fe)];
    after.sum("haproxy_frontend_http_requests_total", &f)
        - before.sum("haproxy_frontend_http_requests_total", &f)
}

/// HAProxy's count of log lines it could not send.
const H_DROPPED_LOGS: &str = "haproxy_process_dropped_logs_total";

// Exporter metric names.
const M_REQUESTS: &str = "haproxy_log_requests_total";
const M_BYTES_READ: &str = "haproxy_log_bytes_read_total";
const M_RECEIVED: &str = "haproxy_log_exporter_lines_received_total";
const M_COUNTED: &str = "haproxy_log_exporter_lines_counted_total";
const M_REJECTED: &str = "haproxy_log_exporter_lines_rejected_total";
const M_IGNORED: &str = "haproxy_log_exporter_lines_ignored_total";

fn self_metrics_summary(s: &Samples) -> String {
    s.samples
        .iter()
        .filter(|x| {
            (x.name.starts_with("haproxy_log_exporter_") && x.value != 0.0)
                || x.name == M_REQUESTS
                || x.name == M_BYTES_READ
                || x.name == format!("{M_SESSION}_count")
                || x.name == format!("{M_RESPONSE}_count")
        })
        .map(|x| format!("    {x}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A path that can go into HAProxy's config and the exporter's environment
/// as one word.
fn one_word(path: &Path) -> String {
    path.to_str()
        .filter(|p| !p.contains(char::is_whitespace) && !p.contains(['"', '\'', '\\', '#']))
        .unwrap_or_else(|| {
            panic!(
                "{} cannot go into HAProxy's config as is; use another TMPDIR",
                path.display()
            )
        })
        .to_string()
}

/// A self-signed certificate for `CN=localhost` and its key, in one PEM file
/// as HAProxy's `crt` takes them.
fn make_certificate(openssl: &Path, dir: &Path) -> PathBuf {
    let cert = dir.join("e2e-cert.pem");
    let key = dir.join("e2e-key.pem");
    let out = run_with_timeout(
        Command::new(openssl)
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", &format!("/CN={TLS_SERVER_NAME}"), "-days", "2"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        None,
        OPENSSL_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("openssl req: {e}"));
    assert!(
        out.status.success(),
        "openssl req -x509 failed: {}",
        out.describe()
    );
    let mut pem = std::fs::read(&cert).expect("read the certificate");
    pem.extend(std::fs::read(&key).expect("read the key"));
    let path = dir.join(TLS_PEM_NAME);
    std::fs::write(&path, pem).expect("write the PEM file");
    path
}

fn run_inside_private_netns() {
    let started = Instant::now();
    let step = |msg: &str| println!("[{:>6.2}s] {msg}", started.elapsed().as_secs_f64());

    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run `ip link set lo up`");
    assert!(status.success(), "`ip link set lo up` failed: {status}");

    // The outer test owns the work dir; a stray manual run gets its own.
    let own_dir;
    let dir: PathBuf = match std::env::var_os(WORK_DIR_VAR) {
        Some(d) => PathBuf::from(d),
        None => {
            own_dir = TempDir::new("hle-e2e-formats").expect("temp dir");
            own_dir.path().to_path_buf()
        }
    };
    let exporter_log = dir.join("exporter.log");
    let haproxy_log = dir.join("haproxy.log");
    let cfg_path = dir.join("haproxy.cfg");

    let openssl = find_program("openssl").expect("openssl");
    let tls_pem = one_word(&make_certificate(&openssl, &dir));
    step("made a self-signed certificate with `openssl req -x509`");

    // --- the exporter -------------------------------------------------------
    let exporter_log_file = std::fs::File::create(&exporter_log).expect("exporter log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HLE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HLE_SYSLOG_UDP_ADDR", EXPORTER_UDP)
        .env("HLE_SYSLOG_TCP_ADDR", EXPORTER_TCP)
        .env("HLE_WEB_LISTEN_ADDR", EXPORTER_WEB)
        .env("HLE_HAPROXY_LOG_FORMAT", log_formats())
        .env("HLE_CUSTOM_LABELS", CUSTOM_LABELS)
        .env("HLE_LOG_LEVEL", "info")
        .env("RUST_BACKTRACE", "1")
        .env("HLE_REQUESTS_TOTAL_LABELS", "frontend_name,status_class")
        .env("HLE_BYTES_READ_TOTAL_LABELS", "frontend_name,client_ip")
        .env("HLE_SESSION_DURATION_SECONDS_LABELS", SESSION_LABELS)
        .env("HLE_RESPONSE_PROCESSING_SECONDS_LABELS", RESPONSE_LABELS)
        .stdin(Stdio::null())
        .stdout(exporter_log_file.try_clone().expect("clone log file"))
        .stderr(exporter_log_file);
    let mut exporter = ChildGuard::spawn("exporter", &mut cmd).expect("spawn the exporter");
    step(&format!(
        "exporter started with HLE_HAPROXY_LOG_FORMAT={:?} and HLE_CUSTOM_LABELS={CUSTOM_LABELS}; \
         waiting for /-/ready",
        log_formats()
    ));
    let ready = wait_until(Duration::from_secs(20), || {
        if let Some(st) = exporter.try_wait() {
            return Some(Err(format!("the exporter exited early: {st}")));
        }
        match http_get(EXPORTER_WEB, "/-/ready", IO_TIMEOUT) {
            Ok(r) if r.status == 200 => Some(Ok(())),
            _ => None,
        }
    });
    match ready {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}\nexporter log:\n{}", tail_file(&exporter_log, 40)),
        Err(t) => panic!(
            "the exporter was not ready: {t}\nexporter log:\n{}",
            tail_file(&exporter_log, 40)
        ),
    }
    step("exporter ready");

    // --- HAProxy ------------------------------------------------------------
    std::fs::write(&cfg_path, render_haproxy_cfg(&tls_pem)).expect("write haproxy.cfg");
    let haproxy_bin = find_program("haproxy").expect("haproxy");
    let check = Command::new(&haproxy_bin)
        .arg("-c")
        .arg("-f")
        .arg(&cfg_path)
        .output()
        .expect("run haproxy -c");
    assert!(
        check.status.success(),
        "haproxy -c rejected the config:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let log_file = std::fs::File::create(&haproxy_log).expect("haproxy log");
    let mut haproxy = ChildGuard::spawn(
        "haproxy",
        Command::new(&haproxy_bin)
            .arg("-f")
            .arg(&cfg_path)
            .arg("-db")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log file"))
            .stderr(log_file),
    )
    .expect("spawn haproxy");
    let before = wait_until(Duration::from_secs(15), || {
        if let Some(st) = haproxy.try_wait() {
            return Some(Err(format!("HAProxy exited early: {st}")));
        }
        scrape(&stats_addr()).ok().map(|(_, s)| Ok(s))
    });
    let before = match before {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("{e}\nHAProxy log:\n{}", tail_file(&haproxy_log, 40)),
        Err(t) => panic!(
            "HAProxy's stats endpoint did not answer: {t}\nHAProxy log:\n{}",
            tail_file(&haproxy_log, 40)
        ),
    };
    step("HAProxy up; took the 'before' snapshot of its counters");

    // --- traffic ------------------------------------------------------------
    let fes = frontends();
    let mut checks = Checks::default();
    for fe in &fes {
        let v4: SocketAddr = format!("127.0.0.1:{}", fe.port).parse().unwrap();
        let v6: SocketAddr = format!("[::1]:{}", fe.port).parse().unwrap();
        for shot in &fe.shots {
            let addr = if shot.v6 { v6 } else { v4 };
            if shot.kind == Kind::Empty {
                let done = if fe.tls {
                    tls_handshake_only(&openssl, addr)
                } else {
                    TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                        .map(drop)
                        .map_err(|e| e.to_string())
                };
                checks.check(done.is_ok(), || {
                    format!(
                        "harness: {} {addr}: connection without a request: {}",
                        fe.name,
                        done.unwrap_err()
                    )
                });
                continue;
            }
            let req = &shot.request;
            // `sni` only matters over TLS.
            let got = if fe.tls {
                tls_exchange(&openssl, addr, shot.sni.then_some(TLS_SERVER_NAME), req)
            } else {
                exchange(addr, req)
            };
            let want = shot.kind.status();
            checks.check(matches!(got, Ok(status) if status == want), || {
                format!(
                    "harness: {} {addr} {:?} answered {got:?}, expected {want}",
                    fe.name,
                    first_line(req)
                )
            });
        }
        step(&format!(
            "sent {} requests and empty connections to {} ({}{})",
            fe.shots.len(),
            fe.name,
            fe.format,
            if fe.tls { ", TLS" } else { "" }
        ));
    }

    // HAProxy's counters settle once every stream has ended (the empty
    // connections end asynchronously).
    let settled = wait_until(Duration::from_secs(15), || {
        let after = scrape(&stats_addr()).ok()?.1;
        let done = fes.iter().all(|fe| {
            let want = fe.total();
            let responses: f64 = STATUS_CLASSES
                .iter()
                .map(|c| haproxy_class_delta(&before, &after, fe.name, c))
                .sum();
            haproxy_requests_delta(&before, &after, fe.name) >= want && responses >= want
        });
        done.then_some(after)
    });
    let after = match settled {
        Ok(s) => s,
        Err(t) => {
            println!("HAProxy's counters did not reach the traffic plan ({t}); comparing anyway");
            must_scrape_haproxy()
        }
    };
    step("took the 'after' snapshot of HAProxy's counters");

    // The plan and HAProxy must agree, or the harness itself is wrong.
    for fe in &fes {
        let want = fe.total();
        let got = haproxy_requests_delta(&before, &after, fe.name);
        checks.check(got == want, || {
            format!(
                "harness: HAProxy counted {got} requests on {} but the plan sent {want}",
                fe.name
            )
        });
        for (class, n) in by_class(&fe.shots) {
            let got = haproxy_class_delta(&before, &after, fe.name, class);
            checks.check(got == f64::from(n), || {
                format!(
                    "harness: HAProxy counted {got} {class} on {} but the plan expects {n}",
                    fe.name
                )
            });
        }
    }
    let dropped = after.sum(H_DROPPED_LOGS, &[]) - before.sum(H_DROPPED_LOGS, &[]);
    checks.check(after.has(H_DROPPED_LOGS), || {
        format!("harness: HAProxy's scrape has no {H_DROPPED_LOGS}")
    });
    checks.check(dropped == 0.0, || {
        format!("harness: HAProxy dropped {dropped} log lines ({H_DROPPED_LOGS})")
    });

    // Expected values for the exporter, from HAProxy's deltas.
    let mut expected: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for fe in &fes {
        for class in STATUS_CLASSES {
            expected.insert(
                (fe.name, class),
                haproxy_class_delta(&before, &after, fe.name, class),
            );
        }
    }
    let fe_lines = |t: Transport| -> f64 {
        fes.iter()
            .filter(|f| f.transport == t)
            .flat_map(|f| STATUS_CLASSES.iter().map(|c| expected[&(f.name, *c)]))
            .sum()
    };
    let want_udp = fe_lines(Transport::Udp);
    let want_tcp = fe_lines(Transport::Tcp);
    let want_counted = want_udp + want_tcp;

    // --- the exporter catches up (the ring connects and flushes lazily) -----
    let caught_up = wait_until(Duration::from_secs(20), || {
        let s = scrape(EXPORTER_WEB).ok()?.1;
        let ok = s.sum(M_COUNTED, &[]) >= want_counted
            && s.sum(M_RECEIVED, &[("transport", "udp")]) >= want_udp
            && s.sum(M_RECEIVED, &[("transport", "tcp")]) >= want_tcp;
        ok.then_some(())
    });
    if let Err(t) = caught_up {
        println!("the exporter did not reach the expected counts: {t}; comparing anyway");
    }
    let (text, exp) = scrape(EXPORTER_WEB).unwrap_or_else(|e| panic!("exporter: {e}"));
    step("scraped the exporter");

    // --- comparisons ----------------------------------------------------------
    println!("  frontend  class  haproxy  exporter");
    for fe in &fes {
        for class in STATUS_CLASSES {
            let want = expected[&(fe.name, class)];
            let got = exp.sum(
                M_REQUESTS,
                &[("frontend_name", fe.name), ("status_class", class)],
            );
            println!("  {:<9} {class:<5}  {want:>7}  {got:>8}", fe.name);
            checks.eq_f64(
                &format!(
                    "{M_REQUESTS}{{frontend_name={:?},status_class={class:?}}} ({})",
                    fe.name, fe.format
                ),
                got,
                want,
            );
        }
    }
    for s in exp.find(M_REQUESTS, &[]) {
        let keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        checks.check(keys == ["frontend_name", "status_class"], || {
            format!("{M_REQUESTS} has labels {keys:?}, configured frontend_name,status_class: {s}")
        });
        let fe_ok = s
            .labels
            .get("frontend_name")
            .is_some_and(|f| fes.iter().any(|fe| fe.name == f));
        let class_ok = s
            .labels
            .get("status_class")
            .is_some_and(|c| STATUS_CLASSES.contains(&c.as_str()));
        checks.check(fe_ok && class_ok, || format!("unexpected series {s}"));
    }
    // HAProxy writes `fe_tls~` for a TLS listener; the label must not keep it.
    for metric in [M_REQUESTS, M_BYTES_READ] {
        let names = exp.label_values(metric, "frontend_name");
        println!("  {metric} frontend_name values: {names:?}");
        checks.check(!names.iter().any(|n| n.contains('~')), || {
            format!("{metric}: frontend_name keeps HAProxy's TLS marker `~`: {names:?}")
        });
    }

    // Every line is accounted for, per transport.
    let received_udp = exp.sum(M_RECEIVED, &[("transport", "udp")]);
    let received_tcp = exp.sum(M_RECEIVED, &[("transport", "tcp")]);
    let received = exp.sum(M_RECEIVED, &[]);
    let counted = exp.sum(M_COUNTED, &[]);
    let rejected = exp.sum(M_REJECTED, &[]);
    let ignored = exp.sum(M_IGNORED, &[]);
    println!(
        "  exporter: received udp={received_udp} tcp={received_tcp} counted={counted} \
         rejected={rejected} ignored={ignored}; expected udp={want_udp} tcp={want_tcp}"
    );
    for transport in [Transport::Udp, Transport::Tcp] {
        let t = transport.label();
        let names: Vec<&str> = fes
            .iter()
            .filter(|f| f.transport == transport)
            .map(|f| f.name)
            .collect();
        checks.eq_f64(
            &format!("{M_RECEIVED}{{transport={t:?}}} (the lines of {names:?})"),
            exp.sum(M_RECEIVED, &[("transport", t)]),
            fe_lines(transport),
        );
    }
    checks.eq_f64(
        &format!("{M_RECEIVED} (all transports)"),
        received,
        want_counted,
    );
    checks.eq_f64(M_COUNTED, counted, want_counted);
    checks.eq_f64(M_REJECTED, rejected, 0.0);
    for s in exp.find(M_REJECTED, &[]).filter(|s| s.value != 0.0) {
        checks.check(false, || format!("lines rejected: {s}"));
    }
    checks.eq_f64(
        "invariant: received - (counted + rejected + ignored)",
        received - (counted + rejected + ignored),
        0.0,
    );
    checks.check(
        exp.has(M_RECEIVED) && exp.has(M_COUNTED) && exp.has(M_REJECTED) && exp.has(M_IGNORED),
        || "self-metrics missing from the scrape".to_string(),
    );

    // The client address, as each format writes it (`%{-Q}ci` in clf).
    for fe in &fes {
        let clients: Vec<String> = exp
            .find(M_BYTES_READ, &[("frontend_name", fe.name)])
            .filter_map(|s| s.labels.get("client_ip").cloned())
            .collect();
        println!(
            "  {M_BYTES_READ}{{frontend_name={:?}}} client_ip values: {clients:?}",
            fe.name
        );
        let has = |ip: &str| clients.iter().any(|c| c == ip);
        checks.check(has("127.0.0.1") && has("::1") && clients.len() == 2, || {
            format!(
                "{M_BYTES_READ}{{frontend_name={:?}}}: client_ip values {clients:?}, \
                     want 127.0.0.1 and ::1",
                fe.name
            )
        });
    }

    // The custom labels: fe_custom's series are exactly the plan's.
    let custom = fes
        .iter()
        .find(|f| f.name == FE_CUSTOM)
        .expect("fe_custom in frontends()");
    let want_sessions = expected_sessions(&custom.shots);
    let want_responses = expected_responses(&custom.shots);
    // Ties the plan to HAProxy: one session per request it counted.
    checks.eq_f64(
        "harness: fe_custom's planned sessions vs HAProxy's requests delta",
        want_sessions.values().sum(),
        haproxy_requests_delta(&before, &after, FE_CUSTOM),
    );
    for (metric, labels, want) in [
        (M_SESSION, SESSION_LABELS, &want_sessions),
        (M_RESPONSE, RESPONSE_LABELS, &want_responses),
    ] {
        let labels: Vec<&str> = labels.split(',').collect();
        let key_labels = &labels[1..]; // after frontend_name
        let got = histogram_counts(&exp, metric, FE_CUSTOM, key_labels, &mut checks);
        println!("  {metric}_count{{frontend_name={FE_CUSTOM:?}}} by {key_labels:?}: want / got");
        let keys: std::collections::BTreeSet<&SeriesKey> = want.keys().chain(got.keys()).collect();
        for key in keys {
            let w = want.get(key).copied();
            let g = got.get(key).copied();
            println!("    {key:?}  {w:?} / {g:?}");
            checks.check(w == g, || {
                format!(
                    "{metric}_count{{frontend_name={FE_CUSTOM:?}}} with {key_labels:?} = {key:?}: \
                     got {g:?}, want {w:?} (None: no such series)"
                )
            });
        }
        // Every series has exactly the configured labels. Every fe_custom
        // line has a route (`-` when unset), so an empty one means another
        // format read the line; the lines of the built-in formats, which
        // have no such fields, get both empty.
        let mut sorted = labels.clone();
        sorted.sort_unstable();
        for s in exp.find(&format!("{metric}_count"), &[]) {
            let keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
            checks.check(keys == sorted, || {
                format!("{metric} has labels {keys:?}, configured {labels:?}: {s}")
            });
            let empty = |l: &str| s.labels.get(l).is_some_and(|v| v.is_empty());
            if s.labels.get("frontend_name").map(String::as_str) == Some(FE_CUSTOM) {
                checks.check(!empty("route"), || {
                    format!(
                        "{metric}: a {FE_CUSTOM} line without a route, so not read by its \
                         log-format but by a format tried before it: {s}"
                    )
                });
            } else {
                checks.check(empty("route") && empty("host"), || {
                    format!("{metric}: a built-in format's series has a route or host: {s}")
                });
            }
        }
    }

    // promtool and the probes.
    match promtool_check_metrics(&text) {
        PromtoolVerdict::Passed => checks.check(true, String::new),
        PromtoolVerdict::Skipped(why) => println!("  promtool check skipped: {why}"),
        PromtoolVerdict::Failed { code, output } => checks.check(false, || {
            format!("promtool check metrics failed (exit {code:?}):\n{output}")
        }),
    }
    for path in ["/-/healthy", "/-/ready"] {
        let st = http_get(EXPORTER_WEB, path, IO_TIMEOUT).map(|r| r.status);
        checks.check(matches!(st, Ok(200)), || format!("GET {path}: {st:?}"));
    }
    checks.check(exporter.try_wait().is_none(), || {
        "the exporter exited during the test".to_string()
    });
    step("checked the scrape");

    // --- stop ---------------------------------------------------------------
    drop(haproxy);
    exporter.signal("TERM").expect("SIGTERM the exporter");
    let exporter_exit = exporter.wait_timeout(Duration::from_secs(15));
    checks.check(exporter_exit.is_some_and(|st| st.success()), || {
        format!("the exporter's exit after SIGTERM: {exporter_exit:?}, want status 0")
    });
    step("the exporter exited on SIGTERM");
    drop(exporter);
    if !checks.failures.is_empty() {
        panic!(
            "{} of {} checks failed:\n  - {}\n\nexporter series (first scrape; self-metrics \
             at zero left out):\n{}\n\nexporter log (tail):\n{}\n\nHAProxy log (tail):\n{}",
            checks.failures.len(),
            checks.failures.len() + checks.passed,
            checks.failures.join("\n  - "),
            self_metrics_summary(&exp),
            tail_file(&exporter_log, 40),
            tail_file(&haproxy_log, 40),
        );
    }
    step(&format!("all {} checks passed", checks.passed));
}

/// A histogram's `_count` per value of `key_labels` among the series of
/// frontend `fe`; checks that `_bucket{le="+Inf"}` equals `_count` and that
/// no two series share a key.
fn histogram_counts(
    exp: &Samples,
    metric: &str,
    fe: &str,
    key_labels: &[&str],
    checks: &mut Checks,
) -> BTreeMap<SeriesKey, f64> {
    let count_name = format!("{metric}_count");
    let bucket_name = format!("{metric}_bucket");
    let filter = [("frontend_name", fe)];
    let mut out = BTreeMap::new();
    for s in exp.find(&count_name, &filter) {
        let key: SeriesKey = key_labels
            .iter()
            .map(|l| s.labels.get(*l).cloned().unwrap_or_default())
            .collect();
        let mut inf_filter: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        inf_filter.push(("le", "+Inf"));
        let inf: Vec<f64> = exp
            .find(&bucket_name, &inf_filter)
            .filter(|b| b.labels.len() == inf_filter.len())
            .map(|b| b.value)
            .collect();
        checks.check(inf == [s.value], || {
            format!("{s}: the le=\"+Inf\" bucket is {inf:?}, want [{}]", s.value)
        });
        let dup = out.insert(key.clone(), s.value);
        checks.check(dup.is_none(), || {
            format!("{count_name}{{frontend_name={fe:?}}}: two series for {key:?}")
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: e2e.test\r\nUser-Agent: e2e\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// A request HAProxy cannot parse: 400 `<BADREQ>` PR--.
const BAD_REQUEST: &[u8] = b"BAD\x01REQUEST\r\n\r\n";

/// An HTTP/1.1 request to `host`, with `body` as text/plain.
fn request(method: &str, target: &str, host: &str, body: Option<&str>) -> Vec<u8> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: e2e\r\n");
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.push_str(body.unwrap_or_default());
    req.into_bytes()
}

/// Requests answered with 200, varied in method and path.
fn ok_request(i: u32) -> Vec<u8> {
    match i % 4 {
        0 => get("/"),
        1 => get(&format!("/index.html?user=alice&x={i}")),
        2 => format!("HEAD /head/{i} HTTP/1.1\r\nHost: e2e.test\r\nConnection: close\r\n\r\n")
            .into_bytes(),
        _ => format!(
            "POST /form/{i} HTTP/1.1\r\nHost: e2e.test\r\nContent-Type: text/plain\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\nhello"
        )
        .into_bytes(),
    }
}

fn first_line(req: &[u8]) -> String {
    let end = req.iter().position(|&b| b == b'\r').unwrap_or(req.len());
    String::from_utf8_lossy(&req[..end]).into_owned()
}

/// The status code of a response's status line.
fn status_of(response: &[u8]) -> Result<u16, String> {
    let line = first_line(response);
    line.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {line:?}"))
}

/// Sends `req` and reads the response to EOF; returns the status code.
fn exchange(addr: SocketAddr, req: &[u8]) -> Result<u16, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    status_of(&buf)
}

/// `openssl s_client` to `addr`, sending `sni` as the server name (none
/// without it).
fn s_client(openssl: &Path, addr: SocketAddr, sni: Option<&str>) -> Command {
    let mut cmd = Command::new(openssl);
    cmd.args(["s_client", "-connect", &addr.to_string()]);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    cmd
}

/// Sends `req` over TLS and reads the response until HAProxy closes the
/// connection (`-quiet` implies `-ign_eof`: the client does not close when
/// its input ends); returns the status code.
fn tls_exchange(
    openssl: &Path,
    addr: SocketAddr,
    sni: Option<&str>,
    req: &[u8],
) -> Result<u16, String> {
    let out = run_with_timeout(
        s_client(openssl, addr, sni).arg("-quiet"),
        Some(req),
        OPENSSL_TIMEOUT,
    )?;
    status_of(&out.stdout).map_err(|e| format!("{e} ({})", out.describe()))
}

/// Completes a TLS handshake, then closes the connection without a request:
/// without `-quiet` (`-ign_eof`), `s_client` closes as soon as its input ends.
fn tls_handshake_only(openssl: &Path, addr: SocketAddr) -> Result<(), String> {
    let out = run_with_timeout(&mut s_client(openssl, addr, None), None, OPENSSL_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.contains("CONNECTED") && stdout.contains("Cipher is") {
        Ok(())
    } else {
        Err(format!("openssl s_client: {}", out.describe()))
    }
}
