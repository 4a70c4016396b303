//! The shared half of the end-to-end tests with a real HAProxy
//! (`tests/haproxy_e2e.rs`, `tests/haproxy_e2e_formats.rs`), for their inner
//! run inside the private network namespace:
//!
//! - the fixed loopback addresses, timeouts and metric names;
//! - the traffic: [`Plan`] and [`Shot`]s sent to a logging [`Frontend`],
//!   with the plain HTTP client ([`exchange`], [`check_answer`]);
//! - HAProxy's own counters ([`haproxy_class_delta`] and friends);
//! - [`Inner`], the steps every inner run takes in the same order: start the
//!   exporter and HAProxy, snapshot HAProxy's counters around the traffic,
//!   compare them with the exporter's per frontend and status class, check
//!   that every line is accounted for, run promtool, stop the exporter with
//!   SIGTERM and report all failed checks at once.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    find_program, has_placeholder, http_get, inside_private_netns, promtool_check_metrics,
    scrape_metrics, tail_file, wait_until, Checks, ChildGuard, PromtoolVerdict, Sample, Samples,
    TempDir, WORK_DIR_VAR,
};

// ---------------------------------------------------------------------------
// Addresses, limits and names
// ---------------------------------------------------------------------------

/// The whole inner run must finish within this time.
pub const INNER_RUN_LIMIT: Duration = Duration::from_secs(240);

pub const EXPORTER_UDP: &str = "127.0.0.1:5140";
pub const EXPORTER_TCP: &str = "127.0.0.1:5141";
pub const EXPORTER_WEB: &str = "127.0.0.1:9129";

/// `fe_app`, the frontend that answers behind `be_app`.
pub const PORT_APP: u16 = 8090;
/// `be_down`'s server, where nothing listens.
pub const PORT_DEAD: u16 = 8099;
/// HAProxy's Prometheus endpoint.
pub const PORT_STATS: u16 = 8405;

pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

// Exporter metric names.
pub const M_REQUESTS: &str = "haproxy_log_requests_total";
pub const M_BYTES_READ: &str = "haproxy_log_bytes_read_total";
pub const M_RECEIVED: &str = "haproxy_log_exporter_lines_received_total";
pub const M_COUNTED: &str = "haproxy_log_exporter_lines_counted_total";
pub const M_REJECTED: &str = "haproxy_log_exporter_lines_rejected_total";
pub const M_IGNORED: &str = "haproxy_log_exporter_lines_ignored_total";
pub const M_TCP_CONNECTIONS: &str = "haproxy_log_exporter_tcp_connections";

/// HAProxy's count of log lines it could not send (a full unix socket
/// queue, for one).
pub const H_DROPPED_LOGS: &str = "haproxy_process_dropped_logs_total";

/// The guard of an inner test: true inside the private network namespace;
/// outside it, says which (outer) test to run instead.
pub fn inner_may_run(inner: &str, outer: &str) -> bool {
    if inside_private_netns() {
        return true;
    }
    eprintln!(
        "{inner}: nothing to do outside the private network namespace; run `{outer}` instead"
    );
    false
}

// ---------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------

/// What one connection to a logging frontend does, and how HAProxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
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
    pub fn status(self) -> u16 {
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
    pub fn server_answered(self) -> bool {
        matches!(self, Kind::Ok | Kind::Missing | Kind::Err)
    }
}

/// The `status_class` of a status code, as HAProxy's `code` label.
pub fn status_class(status: u16) -> &'static str {
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
pub struct Shot {
    pub kind: Kind,
    /// From [::1] rather than 127.0.0.1.
    pub v6: bool,
    /// Over TLS: send the server name (SNI).
    pub sni: bool,
    /// What the client sends (nothing for [`Kind::Empty`]).
    pub request: Vec<u8>,
    /// A frontend with a custom `log-format`: the `route` and `host` labels
    /// its log line must get.
    pub labels: Option<(&'static str, &'static str)>,
}

/// The traffic a frontend in one of HAProxy's built-in formats receives.
/// Counts differ per frontend so that lines attributed to the wrong frontend
/// cannot go unnoticed.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// 200 from the answering frontend (several methods and paths; over TLS,
    /// every other one with SNI).
    pub ok: u32,
    /// 404 (`/missing`).
    pub missing: u32,
    /// 500 (`/err`).
    pub err: u32,
    /// 503 from the dead server (`/down`).
    pub down: u32,
    /// 400 `<BADREQ>` PR-- (garbage request).
    pub badreq: u32,
    /// 400 `<BADREQ>` CR-- (no request; over TLS, after the handshake).
    pub empty: u32,
    /// 200 and 404 from the IPv6 client ([::1]).
    pub ok_v6: u32,
    pub missing_v6: u32,
}

impl Plan {
    /// The connections, in the order sent.
    pub fn shots(&self) -> Vec<Shot> {
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

/// Connections per status class, as HAProxy's `code` label.
pub fn by_class(shots: &[Shot]) -> BTreeMap<&'static str, u32> {
    let mut m: BTreeMap<&'static str, u32> = STATUS_CLASSES.iter().map(|c| (*c, 0)).collect();
    for s in shots {
        *m.get_mut(status_class(s.kind.status())).unwrap() += 1;
    }
    m
}

/// How a frontend's log lines reach the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Unix,
}

impl Transport {
    /// The `transport` label of the exporter's self-metrics.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
        }
    }
}

/// A logging frontend of the HAProxy config, and the traffic it receives.
pub struct Frontend {
    pub name: &'static str,
    /// How it logs, for messages, where the frontends' formats differ.
    pub format: Option<&'static str>,
    pub port: u16,
    /// `bind ... ssl`: the clients speak TLS.
    pub tls: bool,
    pub transport: Transport,
    pub shots: Vec<Shot>,
}

impl Frontend {
    /// Connections sent: HAProxy counts one request and one response each.
    pub fn total(&self) -> f64 {
        self.shots.len() as f64
    }

    /// Its address for the IPv6 client or the IPv4 one.
    pub fn addr(&self, v6: bool) -> SocketAddr {
        let host = if v6 { "[::1]" } else { "127.0.0.1" };
        format!("{host}:{}", self.port).parse().unwrap()
    }
}

/// Sends a plain-HTTP frontend its shots, in order, one connection each, and checks each
/// answer; `v6` says whether a shot's IPv6 client is used.
pub fn send_shots(checks: &mut Checks, fe: &Frontend, v6: impl Fn(&Shot) -> bool) {
    for shot in &fe.shots {
        let addr = fe.addr(v6(shot));
        if shot.kind == Kind::Empty {
            let done = TcpStream::connect_timeout(&addr, IO_TIMEOUT);
            checks.check(done.is_ok(), || {
                format!("harness: empty connection to {addr}: {done:?}")
            });
        } else {
            let got = exchange(addr, &shot.request);
            check_answer(
                checks,
                fe.name,
                addr,
                &shot.request,
                got,
                shot.kind.status(),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Plain HTTP clients
// ---------------------------------------------------------------------------

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: e2e.test\r\nUser-Agent: e2e\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// A request HAProxy cannot parse: 400 `<BADREQ>` PR--.
pub const BAD_REQUEST: &[u8] = b"BAD\x01REQUEST\r\n\r\n";

/// Requests answered with 200, varied in method and path.
pub fn ok_request(i: u32) -> Vec<u8> {
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

pub fn first_line(req: &[u8]) -> String {
    let end = req.iter().position(|&b| b == b'\r').unwrap_or(req.len());
    String::from_utf8_lossy(&req[..end]).into_owned()
}

/// The status code of a response's status line.
pub fn status_of(response: &[u8]) -> Result<u16, String> {
    let line = first_line(response);
    line.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {line:?}"))
}

/// Sends `req` and reads the response to EOF; returns the status code.
pub fn exchange(addr: SocketAddr, req: &[u8]) -> Result<u16, String> {
    status_of(&raw_exchange(addr, req)?)
}

/// Sends `req` and reads to EOF: whatever came back, perhaps nothing (a TCP
/// frontend whose server refused the connection).
pub fn raw_exchange(addr: SocketAddr, req: &[u8]) -> Result<Vec<u8>, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    Ok(buf)
}

/// Checks that frontend `fe` at `addr` answered `req` with `want`.
pub fn check_answer(
    checks: &mut Checks,
    fe: &str,
    addr: SocketAddr,
    req: &[u8],
    got: Result<u16, String>,
    want: u16,
) {
    checks.check(matches!(got, Ok(status) if status == want), || {
        format!(
            "harness: {fe} {addr} {:?} answered {got:?}, expected {want}",
            first_line(req)
        )
    });
}

// ---------------------------------------------------------------------------
// HAProxy's config and counters
// ---------------------------------------------------------------------------

/// Fills in a config template of `tests/e2e/`: the exporter's addresses
/// (`@UDP_LOG_ADDR@`, `@TCP_LOG_ADDR@`), then `own` (placeholder, value),
/// then `@PORT_APP@`, `@PORT_DEAD@` and `@PORT_STATS@`. Every placeholder
/// must be filled.
pub fn render_haproxy_cfg(template: &str, own: &[(&str, &str)]) -> String {
    let mut cfg = template
        .replace("@UDP_LOG_ADDR@", EXPORTER_UDP)
        .replace("@TCP_LOG_ADDR@", EXPORTER_TCP);
    for (placeholder, value) in own {
        cfg = cfg.replace(placeholder, value);
    }
    let cfg = cfg
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

/// A path that can go into HAProxy's config and the exporter's environment
/// as one word.
pub fn one_word(path: &Path) -> String {
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

pub fn scrape(addr: &str) -> Result<(String, Samples), String> {
    scrape_metrics(addr, IO_TIMEOUT)
}

pub fn stats_addr() -> String {
    format!("127.0.0.1:{PORT_STATS}")
}

pub fn must_scrape_haproxy() -> Samples {
    scrape(&stats_addr())
        .unwrap_or_else(|e| panic!("HAProxy stats: {e}"))
        .1
}

/// HAProxy's responses per class for one frontend, as a delta.
pub fn haproxy_class_delta(before: &Samples, after: &Samples, fe: &str, class: &str) -> f64 {
    let f = [("proxy", fe), ("code", class)];
    after.sum("haproxy_frontend_http_responses_total", &f)
        - before.sum("haproxy_frontend_http_responses_total", &f)
}

pub fn haproxy_requests_delta(before: &Samples, after: &Samples, fe: &str) -> f64 {
    let f = [("proxy", fe)];
    after.sum("haproxy_frontend_http_requests_total", &f)
        - before.sum("haproxy_frontend_http_requests_total", &f)
}

pub fn haproxy_dropped_logs_delta(before: &Samples, after: &Samples) -> f64 {
    after.sum(H_DROPPED_LOGS, &[]) - before.sum(H_DROPPED_LOGS, &[])
}

/// What the exporter must show, from HAProxy's deltas.
pub struct Expected {
    /// Responses per (frontend, status class).
    pub per_class: BTreeMap<(&'static str, &'static str), f64>,
    /// Log lines per transport that some frontend uses.
    pub lines: BTreeMap<Transport, f64>,
    /// Log lines in all.
    pub counted: f64,
}

impl Expected {
    pub fn from_haproxy(before: &Samples, after: &Samples, fes: &[Frontend]) -> Self {
        let mut per_class = BTreeMap::new();
        for fe in fes {
            for class in STATUS_CLASSES {
                per_class.insert(
                    (fe.name, class),
                    haproxy_class_delta(before, after, fe.name, class),
                );
            }
        }
        let mut lines = BTreeMap::new();
        for fe in fes {
            let n: f64 = STATUS_CLASSES
                .iter()
                .map(|c| per_class[&(fe.name, *c)])
                .sum();
            *lines.entry(fe.transport).or_insert(0.0) += n;
        }
        let counted = lines.values().sum();
        Self {
            per_class,
            lines,
            counted,
        }
    }
}

// ---------------------------------------------------------------------------
// The exporter's series
// ---------------------------------------------------------------------------

/// Which series of the first scrape a failure report lists: the exporter's
/// self-metrics, `haproxy_log_requests_total`, `haproxy_log_bytes_read_total`
/// and the series named in `also`.
pub struct Listing<'a> {
    /// Leave out self-metrics at zero.
    pub skip_zero_self_metrics: bool,
    pub also: &'a [String],
}

impl Listing<'_> {
    fn heading(&self) -> &'static str {
        if self.skip_zero_self_metrics {
            "exporter series (first scrape; self-metrics at zero left out)"
        } else {
            "exporter series (first scrape)"
        }
    }

    fn lists(&self, x: &Sample) -> bool {
        (x.name.starts_with("haproxy_log_exporter_")
            && !(self.skip_zero_self_metrics && x.value == 0.0))
            || x.name == M_REQUESTS
            || x.name == M_BYTES_READ
            || self.also.contains(&x.name)
    }
}

pub fn self_metrics_summary(s: &Samples, listing: &Listing<'_>) -> String {
    s.samples
        .iter()
        .filter(|x| listing.lists(x))
        .map(|x| format!("    {x}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compares `haproxy_log_requests_total` per frontend and status class with
/// HAProxy's deltas, printing a table (frontend column `name_width` wide),
/// and checks that every series has exactly the labels frontend_name and
/// status_class, of a known frontend and class. A frontend's
/// [`Frontend::format`] goes into its messages.
pub fn compare_requests(
    checks: &mut Checks,
    exp: &Samples,
    want: &Expected,
    fes: &[Frontend],
    name_width: usize,
) {
    println!("  {:<name_width$} class  haproxy  exporter", "frontend");
    for fe in fes {
        let format = fe.format.map(|f| format!(" ({f})")).unwrap_or_default();
        for class in STATUS_CLASSES {
            let want = want.per_class[&(fe.name, class)];
            let got = exp.sum(
                M_REQUESTS,
                &[("frontend_name", fe.name), ("status_class", class)],
            );
            println!("  {:<name_width$} {class:<5}  {want:>7}  {got:>8}", fe.name);
            checks.eq_f64(
                &format!(
                    "{M_REQUESTS}{{frontend_name={:?},status_class={class:?}}}{format}",
                    fe.name
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
}

/// The exporter's line counts in one scrape.
#[derive(Debug, Clone)]
pub struct Lines {
    /// Received, per transport that some frontend uses.
    pub received_by: BTreeMap<Transport, f64>,
    pub received: f64,
    pub counted: f64,
    pub rejected: f64,
    pub ignored: f64,
}

impl Lines {
    /// Lines received over `t`.
    pub fn received_over(&self, t: Transport) -> f64 {
        self.received_by.get(&t).copied().unwrap_or(0.0)
    }
}

/// Checks that every line is accounted for: each transport's received lines
/// equal its frontends', all of them are counted, none is rejected, and
/// received = counted + rejected + ignored.
pub fn check_line_counts(
    checks: &mut Checks,
    exp: &Samples,
    want: &Expected,
    fes: &[Frontend],
) -> Lines {
    let received_by: BTreeMap<Transport, f64> = want
        .lines
        .keys()
        .map(|t| (*t, exp.sum(M_RECEIVED, &[("transport", t.label())])))
        .collect();
    let lines = Lines {
        received_by,
        received: exp.sum(M_RECEIVED, &[]),
        counted: exp.sum(M_COUNTED, &[]),
        rejected: exp.sum(M_REJECTED, &[]),
        ignored: exp.sum(M_IGNORED, &[]),
    };
    let per_transport = |m: &BTreeMap<Transport, f64>| {
        m.iter()
            .map(|(t, n)| format!("{}={n}", t.label()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  exporter: received {} counted={} rejected={} ignored={}; expected {}",
        per_transport(&lines.received_by),
        lines.counted,
        lines.rejected,
        lines.ignored,
        per_transport(&want.lines)
    );
    for (&transport, &n) in &want.lines {
        let t = transport.label();
        let names: Vec<&str> = fes
            .iter()
            .filter(|f| f.transport == transport)
            .map(|f| f.name)
            .collect();
        checks.eq_f64(
            &format!("{M_RECEIVED}{{transport={t:?}}} (the lines of {names:?})"),
            lines.received_over(transport),
            n,
        );
    }
    checks.eq_f64(
        &format!("{M_RECEIVED} (all transports)"),
        lines.received,
        want.counted,
    );
    checks.eq_f64(M_COUNTED, lines.counted, want.counted);
    checks.eq_f64(M_REJECTED, lines.rejected, 0.0);
    for s in exp.find(M_REJECTED, &[]).filter(|s| s.value != 0.0) {
        checks.check(false, || format!("lines rejected: {s}"));
    }
    checks.eq_f64(
        "invariant: received - (counted + rejected + ignored)",
        lines.received - (lines.counted + lines.rejected + lines.ignored),
        0.0,
    );
    checks.check(
        exp.has(M_RECEIVED) && exp.has(M_COUNTED) && exp.has(M_REJECTED) && exp.has(M_IGNORED),
        || "self-metrics missing from the scrape".to_string(),
    );
    lines
}

/// `promtool check metrics` on the scrape, and the probes `/-/healthy` and
/// `/-/ready`.
pub fn check_promtool_and_probes(checks: &mut Checks, text: &str) {
    match promtool_check_metrics(text) {
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
}

/// Stops the exporter with SIGTERM; it must exit with status 0.
pub fn stop_exporter(checks: &mut Checks, exporter: &mut ChildGuard) {
    exporter.signal("TERM").expect("SIGTERM the exporter");
    let exporter_exit = exporter.wait_timeout(Duration::from_secs(15));
    checks.check(exporter_exit.is_some_and(|st| st.success()), || {
        format!("the exporter's exit after SIGTERM: {exporter_exit:?}, want status 0")
    });
}

// ---------------------------------------------------------------------------
// The inner run
// ---------------------------------------------------------------------------

/// The inner run's work directory and log files, and its progress messages.
/// Made first thing in the inner run and dropped last (a work directory of
/// its own goes with it).
pub struct Inner {
    started: Instant,
    /// The work directory, owned by the outer test.
    pub dir: PathBuf,
    pub exporter_log: PathBuf,
    pub haproxy_log: PathBuf,
    cfg_path: PathBuf,
    /// The work directory of a stray manual run (without the outer test).
    _own_dir: Option<TempDir>,
}

impl Inner {
    /// Brings `lo` up and finds the work directory; a stray manual run gets
    /// its own, named after `work_dir_prefix`.
    pub fn new(work_dir_prefix: &str) -> Self {
        let started = Instant::now();
        let status = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run `ip link set lo up`");
        assert!(status.success(), "`ip link set lo up` failed: {status}");
        // The unix socket's queue as the manual advises (docs/log-formats.md): the
        // kernel's default of 10 makes HAProxy drop lines whenever the reader waits a
        // few milliseconds for a CPU, as on a loaded test machine. Per network namespace,
        // so only this run's; without the permission the default stays.
        let _ = std::fs::write("/proc/sys/net/unix/max_dgram_qlen", "512");

        let (dir, own_dir) = match std::env::var_os(WORK_DIR_VAR) {
            Some(d) => (PathBuf::from(d), None),
            None => {
                let own = TempDir::new(work_dir_prefix).expect("temp dir");
                (own.path().to_path_buf(), Some(own))
            }
        };
        Self {
            started,
            exporter_log: dir.join("exporter.log"),
            haproxy_log: dir.join("haproxy.log"),
            cfg_path: dir.join("haproxy.cfg"),
            dir,
            _own_dir: own_dir,
        }
    }

    /// Prints a progress message with the time since the start.
    pub fn step(&self, msg: &str) {
        println!("[{:>6.2}s] {msg}", self.started.elapsed().as_secs_f64());
    }

    /// Starts the exporter (UDP, TCP and web on [`EXPORTER_UDP`],
    /// [`EXPORTER_TCP`] and [`EXPORTER_WEB`],
    /// `HLE_REQUESTS_TOTAL_LABELS=frontend_name,status_class`, no other
    /// `HLE_` variable of this environment) with `env` on top, and waits for
    /// `/-/ready`. `started` goes into the progress message.
    pub fn start_exporter(&self, env: &[(&str, &str)], started: &str) -> ChildGuard {
        let exporter_log_file = std::fs::File::create(&self.exporter_log).expect("exporter log");
        let stdout = exporter_log_file.try_clone().expect("clone log file");
        self.start_exporter_with_stdout(env, started, stdout.into())
    }

    /// [`Inner::start_exporter`], with the exporter's standard output going to
    /// `stdout` instead of its log (which holds its standard error).
    pub fn start_exporter_with_stdout(
        &self,
        env: &[(&str, &str)],
        started: &str,
        stdout: Stdio,
    ) -> ChildGuard {
        let exporter_log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.exporter_log)
            .expect("exporter log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HLE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HLE_SYSLOG_UDP_ADDR", EXPORTER_UDP)
            .env("HLE_SYSLOG_TCP_ADDR", EXPORTER_TCP)
            .env("HLE_WEB_LISTEN_ADDR", EXPORTER_WEB)
            .env("HLE_LOG_LEVEL", "info")
            .env("RUST_BACKTRACE", "1")
            .env("HLE_REQUESTS_TOTAL_LABELS", "frontend_name,status_class")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(exporter_log_file);
        let mut exporter = ChildGuard::spawn("exporter", &mut cmd).expect("spawn the exporter");
        self.step(&format!("exporter started{started}; waiting for /-/ready"));
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
            Ok(Err(e)) => panic!("{e}\nexporter log:\n{}", self.exporter_log_tail()),
            Err(t) => panic!(
                "the exporter was not ready: {t}\nexporter log:\n{}",
                self.exporter_log_tail()
            ),
        }
        self.step("exporter ready");
        exporter
    }

    /// The last lines of the exporter's log, for failure messages.
    pub fn exporter_log_tail(&self) -> String {
        tail_file(&self.exporter_log, 40)
    }

    /// Writes `cfg` to the work directory, checks it with `haproxy -c`,
    /// starts HAProxy on it and waits for its stats endpoint: the 'before'
    /// snapshot of its counters.
    pub fn start_haproxy(&self, cfg: &str) -> (ChildGuard, Samples) {
        std::fs::write(&self.cfg_path, cfg).expect("write haproxy.cfg");
        let haproxy_bin = find_program("haproxy").expect("haproxy");
        let check = Command::new(&haproxy_bin)
            .arg("-c")
            .arg("-f")
            .arg(&self.cfg_path)
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy -c rejected the config:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log_file = std::fs::File::create(&self.haproxy_log).expect("haproxy log");
        let mut haproxy = ChildGuard::spawn(
            "haproxy",
            Command::new(&haproxy_bin)
                .arg("-f")
                .arg(&self.cfg_path)
                .arg("-db")
                .current_dir(&self.dir)
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
            Ok(Err(e)) => panic!("{e}\nHAProxy log:\n{}", tail_file(&self.haproxy_log, 40)),
            Err(t) => panic!(
                "HAProxy's stats endpoint did not answer: {t}\nHAProxy log:\n{}",
                tail_file(&self.haproxy_log, 40)
            ),
        };
        self.step("HAProxy up; took the 'before' snapshot of its counters");
        (haproxy, before)
    }

    /// The 'after' snapshot of HAProxy's counters, once every stream has
    /// ended (the empty connections end asynchronously) or after 15 s.
    pub fn haproxy_after(&self, before: &Samples, fes: &[Frontend]) -> Samples {
        let settled = wait_until(Duration::from_secs(15), || {
            let after = scrape(&stats_addr()).ok()?.1;
            let done = fes.iter().all(|fe| {
                let want = fe.total();
                let responses: f64 = STATUS_CLASSES
                    .iter()
                    .map(|c| haproxy_class_delta(before, &after, fe.name, c))
                    .sum();
                haproxy_requests_delta(before, &after, fe.name) >= want && responses >= want
            });
            done.then_some(after)
        });
        let after = match settled {
            Ok(s) => s,
            Err(t) => {
                println!(
                    "HAProxy's counters did not reach the traffic plan ({t}); comparing anyway"
                );
                must_scrape_haproxy()
            }
        };
        self.step("took the 'after' snapshot of HAProxy's counters");
        after
    }

    /// Scrapes the exporter once it has caught up with `want` (the rings
    /// connect and flush lazily) or after 20 s: the text and its samples.
    pub fn scrape_exporter(&self, want: &Expected) -> (String, Samples) {
        let caught_up = wait_until(Duration::from_secs(20), || {
            let s = scrape(EXPORTER_WEB).ok()?.1;
            let ok = s.sum(M_COUNTED, &[]) >= want.counted
                && want
                    .lines
                    .iter()
                    .all(|(t, n)| s.sum(M_RECEIVED, &[("transport", t.label())]) >= *n);
            ok.then_some(())
        });
        if let Err(t) = caught_up {
            println!("the exporter did not reach the expected counts: {t}; comparing anyway");
        }
        let scraped = scrape(EXPORTER_WEB).unwrap_or_else(|e| panic!("exporter: {e}"));
        self.step("scraped the exporter");
        scraped
    }

    /// Fails with every failed check, the series of the first scrape `exp`
    /// that `listing` names, and the tails of both logs; or reports that
    /// all checks passed.
    pub fn finish(&self, checks: &Checks, exp: &Samples, listing: &Listing<'_>) {
        if !checks.failures.is_empty() {
            panic!(
                "{} of {} checks failed:\n  - {}\n\n{}:\n{}\n\n\
                 exporter log (tail):\n{}\n\nHAProxy log (tail):\n{}",
                checks.failures.len(),
                checks.failures.len() + checks.passed,
                checks.failures.join("\n  - "),
                listing.heading(),
                self_metrics_summary(exp, listing),
                self.exporter_log_tail(),
                tail_file(&self.haproxy_log, 40),
            );
        }
        self.step(&format!("all {} checks passed", checks.passed));
    }
}

/// Checks that HAProxy's counters agree with the traffic plan (or the
/// harness itself is wrong): requests and responses per class on every
/// frontend, and no log line dropped.
pub fn check_plan_against_haproxy(
    checks: &mut Checks,
    before: &Samples,
    after: &Samples,
    fes: &[Frontend],
) {
    for fe in fes {
        let want = fe.total();
        let got = haproxy_requests_delta(before, after, fe.name);
        checks.check(got == want, || {
            format!(
                "harness: HAProxy counted {got} requests on {} but the plan sent {want}",
                fe.name
            )
        });
        for (class, n) in by_class(&fe.shots) {
            let got = haproxy_class_delta(before, after, fe.name, class);
            checks.check(got == f64::from(n), || {
                format!(
                    "harness: HAProxy counted {got} {class} on {} but the plan expects {n}",
                    fe.name
                )
            });
        }
    }

    // A line HAProxy could not send (the unix socket's queue full, say) would
    // show up later as a confusing mismatch: name it here.
    let dropped = haproxy_dropped_logs_delta(before, after);
    checks.check(after.has(H_DROPPED_LOGS), || {
        format!("harness: HAProxy's scrape has no {H_DROPPED_LOGS}")
    });
    checks.check(dropped == 0.0, || {
        format!("harness: HAProxy dropped {dropped} log lines ({H_DROPPED_LOGS})")
    });
}
