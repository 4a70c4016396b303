//! End to end with a real HAProxy 2.6 and the SPOE agent (`HLE_SPOE_ADDR`): HAProxy's
//! SPOE filter sends each transaction to the exporter, which counts the responses and
//! sends the route back.
//!
//! HAProxy's config is `tests/e2e/haproxy_spoe.cfg.in` with the two blocks an operator
//! copies from `deploy/spoe/haproxy.cfg` (between the `# BEGIN haproxy-log-exporter ...`
//! and `# END ...` markers) spliced in as they are, read at test time; only the engine
//! file path is replaced, by a copy of `deploy/spoe/spoe.conf` in the work directory
//! (whose `timeout processing` the two exact-count tests raise to 1 s, see `haproxy_cfg`).
//! The server behind `be_app` is the test's own HTTP server (a thread), which counts the
//! responses it sends by status: for HAProxy they are real server responses. The
//! exporter has no syslog listener (`HLE_SYSLOG_UDP_ADDR=`, `HLE_SYSLOG_TCP_ADDR=`), so
//! everything it counts came over SPOE.
//!
//! - `spoe_counts_server_responses_exactly`: 32 clients at once (IPv4 and IPv6 `[::1]`,
//!   several methods, paths of 3 and 8 KB among them) get 200, 404 and 500 from the
//!   server, and 403 from HAProxy itself (`http-request deny`). Checks that
//!   `haproxy_log_requests_total` by status_code, frontend, backend and server equals
//!   both the server's own count and HAProxy's (`haproxy_server_http_responses_total`),
//!   that the denied requests are not counted (a documented limit: HAProxy sends no
//!   `hle-response` for an answer it makes itself) though their `hle-request` is routed,
//!   that messages received = counted + routed + rejected + ignored with none rejected
//!   or ignored, that `haproxy_log_response_processing_seconds` has one observation per
//!   response, that NOTIFY frames outnumber the agent's connections (they are reused,
//!   with pipelining on) and that HAProxy's health check (`option spop-check`) of the
//!   agent passes (server UP, L7OK).
//! - `route_variable_comes_back`: the `X-Route` header of the shipped block carries the
//!   normalised path (`/users/123` -> `/users/:id`, no query string) with the default
//!   settings; after a restart with `HLE_PATH_RULES`, the rule's output.
//! - `haproxy_reload_and_agent_restart_under_traffic`: while clients send requests
//!   without pause, HAProxy is reloaded (`haproxy -sf <oldpid>`), then the exporter is
//!   stopped (SIGTERM) and, after some requests served without it, started again on the
//!   same SPOE address. Checks that every request got its server status
//!   (`option continue-on-error`, `timeout processing`) within 10 s, except at most one
//!   a client among those that started within 250 ms of the agent's stop, which
//!   HAProxy 2.6 may hold far beyond `timeout processing`; and lists those
//!   slower than 1 s with when they started, that the old HAProxy sent
//!   HAPROXY-DISCONNECT 0 and the new one connected, that the second exporter counts,
//!   and that nothing is counted twice: the first exporter's count (its summary line) is
//!   at most the server's responses sent before it exited, and both together at most
//!   all the server's responses. It prints how many were not counted.
//!
//! Each test re-executes this binary under `unshare -n` (a private network namespace of
//! its own, so the fixed loopback ports cannot clash). Without `unshare`, `ip` or
//! `haproxy` it prints a skip message, or fails when `CI=true`.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::haproxy::{
    inner_may_run, must_scrape_haproxy, one_word, render_haproxy_cfg, scrape, status_of, Inner,
    Listing, EXPORTER_WEB, IO_TIMEOUT, M_REQUESTS,
};
use support::{
    find_program, json_field, run_in_private_netns, tail_file, wait_until, Checks, ChildGuard,
    NetnsRun, Samples,
};

const HAPROXY_CFG_TEMPLATE: &str = include_str!("e2e/haproxy_spoe.cfg.in");

/// The agent's address, as in the shipped backend block.
const SPOE_ADDR: &str = "127.0.0.1:12345";
/// `fe_www`, on 127.0.0.1 and [::1].
const PORT_WWW: u16 = 8000;
/// The test's HTTP server, behind `be_app`.
const PORT_UPSTREAM: u16 = 8081;

/// Where the shipped engine file says it is installed.
const SHIPPED_ENGINE_PATH: &str = "/etc/haproxy/hle-spoe.conf";

const FRONTEND: &str = "fe_www";
const BACKEND: &str = "be_app";
const SERVER: &str = "app1";
const AGENT_BACKEND: &str = "hle-spoe";
const AGENT_SERVER: &str = "hle1";

/// Each inner run must finish within this time.
const RUN_LIMIT: Duration = Duration::from_secs(100);
/// How long a step may wait for HAProxy, the exporter or the traffic.
const WAIT: Duration = Duration::from_secs(20);

// The agent's self-metrics.
const S_CONNECTIONS: &str = "haproxy_log_exporter_spoe_connections_total";
const S_FRAMES_RECEIVED: &str = "haproxy_log_exporter_spoe_frames_received_total";
const S_RECEIVED: &str = "haproxy_log_exporter_spoe_messages_received_total";
const S_COUNTED: &str = "haproxy_log_exporter_spoe_messages_counted_total";
const S_ROUTED: &str = "haproxy_log_exporter_spoe_messages_routed_total";
const S_REJECTED: &str = "haproxy_log_exporter_spoe_messages_rejected_total";
const S_IGNORED: &str = "haproxy_log_exporter_spoe_messages_ignored_total";
const S_DISCONNECTS: &str = "haproxy_log_exporter_spoe_disconnects_total";
const M_RESPONSE_COUNT: &str = "haproxy_log_response_processing_seconds_count";
const M_REQUEST_WAIT_COUNT: &str = "haproxy_log_request_wait_seconds_count";

/// The exporter's environment: the SPOE agent only, JSON log (for the summary line),
/// `haproxy_log_requests_total` by status code, frontend, backend and server.
const EXPORTER_ENV: [(&str, &str); 5] = [
    ("HLE_SPOE_ADDR", SPOE_ADDR),
    ("HLE_SYSLOG_UDP_ADDR", ""),
    ("HLE_SYSLOG_TCP_ADDR", ""),
    ("HLE_LOG_OUTPUT", "json"),
    (
        "HLE_REQUESTS_TOTAL_LABELS",
        "status_code,frontend_name,backend_name,server_name",
    ),
];

// ---------------------------------------------------------------------------
// The three tests: outer halves
// ---------------------------------------------------------------------------

fn outer(outer: &str, inner: &str, prefix: &str) {
    run_in_private_netns(&NetnsRun {
        outer,
        inner,
        tools: &[("ip", "iproute2"), ("haproxy", "haproxy")],
        work_dir_prefix: prefix,
        limit: RUN_LIMIT,
    });
}

#[test]
fn spoe_counts_server_responses_exactly() {
    outer(
        "spoe_counts_server_responses_exactly",
        "spoe_counts_inner",
        "hle-spoe-counts",
    );
}

#[test]
#[ignore = "inner half of spoe_counts_server_responses_exactly: runs only inside its private network namespace"]
fn spoe_counts_inner() {
    if inner_may_run("spoe_counts_inner", "spoe_counts_server_responses_exactly") {
        counts_inside_private_netns();
    }
}

#[test]
fn route_variable_comes_back() {
    outer("route_variable_comes_back", "route_inner", "hle-spoe-route");
}

#[test]
#[ignore = "inner half of route_variable_comes_back: runs only inside its private network namespace"]
fn route_inner() {
    if inner_may_run("route_inner", "route_variable_comes_back") {
        route_inside_private_netns();
    }
}

#[test]
fn haproxy_reload_and_agent_restart_under_traffic() {
    outer(
        "haproxy_reload_and_agent_restart_under_traffic",
        "reload_restart_inner",
        "hle-spoe-reload",
    );
}

#[test]
#[ignore = "inner half of haproxy_reload_and_agent_restart_under_traffic: runs only inside its private network namespace"]
fn reload_restart_inner() {
    if inner_may_run(
        "reload_restart_inner",
        "haproxy_reload_and_agent_restart_under_traffic",
    ) {
        reload_restart_inside_private_netns();
    }
}

// ---------------------------------------------------------------------------
// The shipped HAProxy configuration
// ---------------------------------------------------------------------------

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// The lines strictly between `# BEGIN haproxy-log-exporter <name>` and
/// `# END haproxy-log-exporter <name>` of `cfg` (each marker once).
fn shipped_block(cfg: &str, name: &str) -> String {
    let begin = format!("# BEGIN haproxy-log-exporter {name}");
    let end = format!("# END haproxy-log-exporter {name}");
    let lines: Vec<&str> = cfg.lines().collect();
    let at = |marker: &str| {
        let found: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].trim() == marker)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "deploy/spoe/haproxy.cfg must have the line {marker:?} once; found at {found:?}"
        );
        found[0]
    };
    let (b, e) = (at(&begin), at(&end));
    assert!(
        b < e,
        "{begin:?} comes after {end:?} in deploy/spoe/haproxy.cfg"
    );
    let block = lines[b + 1..e].join("\n");
    assert!(
        block
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#')),
        "the {name} block of deploy/spoe/haproxy.cfg is empty"
    );
    block
}

/// The shipped `timeout processing`.
const SHIPPED_PROCESSING_TIMEOUT: &str = "timeout processing 100ms";

/// HAProxy's config for these tests: the template with the shipped blocks spliced in,
/// the engine file (a copy of `deploy/spoe/spoe.conf` written to the work directory)
/// in place of its installed path. With `processing`, the engine file's `timeout
/// processing` is that instead of the shipped 100 ms: the tests that count exactly give
/// HAProxy 1 s to wait for an ACK, since a loaded 2-core machine sometimes takes longer
/// than 100 ms to schedule the agent, and a response whose message timed out is (rightly)
/// not counted.
fn haproxy_cfg(inner: &Inner, processing: Option<&str>) -> String {
    let engine_path = inner.dir.join("hle-spoe.conf");
    let mut engine = repo_file("deploy/spoe/spoe.conf");
    assert_eq!(
        engine.matches(SHIPPED_PROCESSING_TIMEOUT).count(),
        1,
        "deploy/spoe/spoe.conf no longer has {SHIPPED_PROCESSING_TIMEOUT:?}"
    );
    if let Some(timeout) = processing {
        engine = engine.replace(
            SHIPPED_PROCESSING_TIMEOUT,
            &format!("timeout processing {timeout}"),
        );
    }
    std::fs::write(&engine_path, engine).expect("write spoe.conf");
    let shipped = repo_file("deploy/spoe/haproxy.cfg");

    let frontend = shipped_block(&shipped, "frontend");
    let engine_line = format!("config {SHIPPED_ENGINE_PATH}");
    assert_eq!(
        frontend.matches(&engine_line).count(),
        1,
        "the shipped frontend block must load the engine file with {engine_line:?} once:\n{frontend}"
    );
    let frontend = frontend.replace(&engine_line, &format!("config {}", one_word(&engine_path)));
    // The agent's address stays as shipped: the tests' exporter listens there.
    let backend = shipped_block(&shipped, "backend");
    assert!(
        backend.contains(&format!(" {SPOE_ADDR} ")),
        "the shipped backend block no longer points at {SPOE_ADDR}:\n{backend}"
    );
    render_haproxy_cfg(
        HAPROXY_CFG_TEMPLATE,
        &[
            ("@HLE_FRONTEND_BLOCK@", &frontend),
            ("@HLE_BACKEND_BLOCK@", &backend),
            ("@PORT_WWW@", &PORT_WWW.to_string()),
            ("@PORT_UPSTREAM@", &PORT_UPSTREAM.to_string()),
        ],
    )
}

/// Waits until HAProxy's health check of the agent has passed (server UP, L7OK) and
/// the exporter has answered a HELLO.
fn wait_agent_up(inner: &Inner) -> Samples {
    let up = wait_until(WAIT, || {
        let s = scrape(&support::haproxy::stats_addr()).ok()?.1;
        agent_up(&s).then_some(s)
    });
    match up {
        Ok(s) => {
            inner.step("HAProxy's health check of the agent passed (UP, L7OK)");
            s
        }
        Err(t) => panic!(
            "HAProxy did not see the agent UP: {t}\nits agent server series:\n{}\n\
             exporter log:\n{}\nHAProxy log:\n{}",
            agent_series(&must_scrape_haproxy()),
            inner.exporter_log_tail(),
            tail_file(&inner.haproxy_log, 40)
        ),
    }
}

fn agent_up(s: &Samples) -> bool {
    let server = [("proxy", AGENT_BACKEND), ("server", AGENT_SERVER)];
    let with = |state| [server[0], server[1], ("state", state)];
    s.sum("haproxy_server_status", &with("UP")) == 1.0
        && s.sum("haproxy_server_check_status", &with("L7OK")) == 1.0
}

fn agent_series(s: &Samples) -> String {
    s.find("haproxy_server_status", &[("proxy", AGENT_BACKEND)])
        .chain(s.find("haproxy_server_check_status", &[("proxy", AGENT_BACKEND)]))
        .filter(|x| x.value != 0.0)
        .map(|x| format!("    {x}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn must_scrape_exporter(inner: &Inner) -> Samples {
    scrape(EXPORTER_WEB)
        .unwrap_or_else(|e| {
            panic!(
                "exporter: {e}\nexporter log:\n{}",
                inner.exporter_log_tail()
            )
        })
        .1
}

/// The `spoe agent stopped` line of an exporter's JSON log: its message counts.
fn spoe_summary(log: &str) -> Result<BTreeMap<&'static str, u64>, String> {
    let line = log
        .lines()
        .find(|l| json_field(l, "message") == Some("spoe agent stopped"))
        .ok_or("no `spoe agent stopped` line in the exporter's log")?;
    let mut out = BTreeMap::new();
    for name in [
        "messages_received",
        "messages_counted",
        "messages_routed",
        "messages_rejected",
        "messages_ignored",
    ] {
        let n = json_field(line, name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name} in {line:?}"))?;
        out.insert(name, n);
    }
    Ok(out)
}

/// SIGTERM; the exporter must exit with status 0. Returns its log.
fn stop_exporter(
    checks: &mut Checks,
    inner: &Inner,
    exporter: &mut ChildGuard,
    which: &str,
) -> String {
    exporter.signal("TERM").expect("SIGTERM the exporter");
    let exit = exporter.wait_timeout(Duration::from_secs(15));
    checks.check(exit.is_some_and(|st| st.success()), || {
        format!("{which}'s exit after SIGTERM: {exit:?}, want status 0")
    });
    inner.step(&format!("{which} stopped ({exit:?})"));
    std::fs::read_to_string(&inner.exporter_log).unwrap_or_default()
}

/// Checks received = counted + routed + rejected + ignored, with none rejected (and
/// none ignored).
fn check_message_invariant(checks: &mut Checks, s: &Samples, which: &str) {
    check_messages(checks, s, which, false);
}

/// The same for a scrape taken while messages arrive: the outcomes may be ahead of
/// received by the messages being counted at that instant, never behind.
fn check_message_invariant_under_traffic(checks: &mut Checks, s: &Samples, which: &str) {
    check_messages(checks, s, which, true);
}

fn check_messages(checks: &mut Checks, s: &Samples, which: &str, under_traffic: bool) {
    let (received, counted, routed, rejected, ignored) = (
        s.sum(S_RECEIVED, &[]),
        s.sum(S_COUNTED, &[]),
        s.sum(S_ROUTED, &[]),
        s.sum(S_REJECTED, &[]),
        s.sum(S_IGNORED, &[]),
    );
    println!(
        "  {which}: messages received={received} counted={counted} routed={routed} \
         rejected={rejected} ignored={ignored}"
    );
    checks.check(
        s.has(S_RECEIVED) && s.has(S_COUNTED) && s.has(S_ROUTED),
        || format!("{which}: the SPOE message self-metrics are missing"),
    );
    let outcomes = counted + routed + rejected + ignored;
    if under_traffic {
        checks.check(received <= outcomes && outcomes - received < 100.0, || {
            format!(
                "{which}: {S_RECEIVED} = {received}, counted + routed + rejected + ignored = \
                 {outcomes}: a message received without its outcome, or too many in flight"
            )
        });
    } else {
        checks.eq_f64(
            &format!("{which}: {S_RECEIVED} - (counted + routed + rejected + ignored)"),
            received - outcomes,
            0.0,
        );
    }
    checks.eq_f64(&format!("{which}: {S_REJECTED}"), rejected, 0.0);
    for x in s.find(S_REJECTED, &[]).filter(|x| x.value != 0.0) {
        checks.check(false, || format!("{which}: rejected: {x}"));
    }
    checks.eq_f64(&format!("{which}: {S_IGNORED}"), ignored, 0.0);
}

// ---------------------------------------------------------------------------
// The server behind be_app
// ---------------------------------------------------------------------------

/// The test's HTTP server: 404 for `/missing...`, 500 for `/err...`, 200 otherwise,
/// each on a connection of its own (`Connection: close`). It counts what it sends.
struct Upstream {
    sent: Arc<Mutex<BTreeMap<u16, u64>>>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn upstream_status(path: &str) -> u16 {
    if path.starts_with("/missing") {
        404
    } else if path.starts_with("/err") {
        500
    } else {
        200
    }
}

impl Upstream {
    fn start() -> Upstream {
        let listener =
            TcpListener::bind(("127.0.0.1", PORT_UPSTREAM)).expect("bind the test's HTTP server");
        let sent = Arc::new(Mutex::new(BTreeMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, f, st) = (sent.clone(), failures.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, f) = (s.clone(), f.clone());
                std::thread::spawn(move || {
                    if let Err(e) = serve_one(conn, &s) {
                        f.lock().unwrap().push(e);
                    }
                });
            }
        });
        Upstream {
            sent,
            failures,
            stop,
            thread: Some(thread),
        }
    }

    /// Responses sent, by status.
    fn sent(&self) -> BTreeMap<u16, u64> {
        self.sent.lock().unwrap().clone()
    }

    fn total(&self) -> u64 {
        self.sent.lock().unwrap().values().sum()
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], PORT_UPSTREAM)),
            Duration::from_secs(1),
        );
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (no body) and answers it. A response is counted before it is
/// written, so that whoever has seen it finds it counted.
fn serve_one(mut conn: TcpStream, sent: &Mutex<BTreeMap<u16, u64>>) -> Result<(), String> {
    conn.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 16384];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            // HAProxy closed a connection it did not use (or the wake-up at the end).
            Ok(0) if head.is_empty() => return Ok(()),
            Ok(0) => return Err("upstream: the request ended before its headers".into()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("upstream: reading a request: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap()])
        .into_owned();
    let mut words = line.split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let status = upstream_status(path);
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let body = if method == "HEAD" { "" } else { "ok" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\n{body}"
    );
    *sent.lock().unwrap().entry(status).or_insert(0) += 1;
    if let Err(e) = conn.write_all(response.as_bytes()) {
        *sent.lock().unwrap().get_mut(&status).unwrap() -= 1;
        return Err(format!("upstream: writing the response to {line:?}: {e}"));
    }
    let _ = conn.shutdown(std::net::Shutdown::Write);
    // Read to HAProxy's close, so that our close sends no reset.
    let _ = conn.read(&mut buf);
    Ok(())
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// What HAProxy answered.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    route: Option<String>,
    /// `txn.hle.error`: the SPOE filter's error, if it had one.
    hle_error: Option<String>,
}

fn www(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, PORT_WWW))
    } else {
        SocketAddr::from(([127, 0, 0, 1], PORT_WWW))
    }
}

fn request(v6: bool, method: &str, target: &str) -> Result<Answer, String> {
    request_within(v6, method, target, IO_TIMEOUT)
}

/// [`request`], with `timeout` for the connect and each read and write.
fn request_within(
    v6: bool,
    method: &str,
    target: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: spoe.test\r\nUser-Agent: e2e\r\nConnection: close\r\n\r\n"
    );
    let addr = www(v6);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    // Only the head: the answer to HEAD has a Content-Length and no body.
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    Ok(Answer {
        status: status_of(&raw)?,
        route: header("x-route"),
        hle_error: header("x-hle-error"),
    })
}

fn short(target: &str) -> String {
    if target.len() <= 60 {
        target.to_string()
    } else {
        format!("{}... ({} bytes)", &target[..40], target.len())
    }
}

// ---------------------------------------------------------------------------
// 1. Exact counts
// ---------------------------------------------------------------------------

const CLIENTS: usize = 32;
const REQUESTS_PER_CLIENT: usize = 24;

/// The `n`th request of the burst: IPv6 or not, method, target, and the status it
/// must get (403: HAProxy's own deny).
fn burst_request(client: usize, j: usize) -> (bool, &'static str, String, u16) {
    let n = client * REQUESTS_PER_CLIENT + j;
    let v6 = client % 4 == 0;
    let method = match n % 5 {
        0 => "HEAD",
        1 => "DELETE",
        2 => "PURGE",
        _ => "GET",
    };
    let (target, status) = match n % 16 {
        0 => ("/".to_string(), 200),
        1 => (format!("/users/{n}?session={n}"), 200),
        2 => (format!("/static/app.{n}.js"), 200),
        3 | 9 => (format!("/missing/{n}"), 404),
        4 | 10 => (format!("/err/{n}"), 500),
        5 => (format!("/deny/{n}"), 403),
        6 if n % 64 == 6 => (format!("/long/{n}/{}", "a".repeat(3000)), 200),
        6 if n % 64 == 38 => (format!("/long/{n}/{}", "b/".repeat(4000)), 200),
        11 if n % 32 == 11 => (format!("/missing/long/{}", "m".repeat(3000)), 404),
        _ => (format!("/orders/{n}/items"), 200),
    };
    (v6, method, target, status)
}

fn counts_inside_private_netns() {
    let inner = Inner::new("hle-spoe-counts");
    let mut checks = Checks::default();
    let upstream = Upstream::start();
    let mut exporter = inner.start_exporter(&EXPORTER_ENV, "");
    let (_haproxy, before) = inner.start_haproxy(&haproxy_cfg(&inner, Some("1s")));
    let before = if agent_up(&before) {
        before
    } else {
        wait_agent_up(&inner)
    };
    let exp_before = must_scrape_exporter(&inner);

    // --- the burst: 32 clients at once ------------------------------------------
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..REQUESTS_PER_CLIENT)
                    .map(|j| {
                        let (v6, method, target, want) = burst_request(c, j);
                        (
                            v6,
                            method,
                            target.clone(),
                            want,
                            request(v6, method, &target),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut want_by_status: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut sent, mut v6_sent, mut spoe_errors) = (0u64, 0u64, Vec::new());
    for c in clients {
        for (v6, method, target, want, got) in c.join().expect("client thread") {
            sent += 1;
            v6_sent += u64::from(v6);
            *want_by_status.entry(want).or_insert(0) += 1;
            match &got {
                Ok(a) if a.status == want => {
                    if let Some(e) = &a.hle_error {
                        spoe_errors.push(format!("{method} {} error {e}", short(&target)));
                    }
                }
                _ => checks.check(false, || {
                    format!(
                        "harness: {method} {} from {} answered {got:?}, want {want}",
                        short(&target),
                        www(v6)
                    )
                }),
            }
        }
    }
    let denied = want_by_status.get(&403).copied().unwrap_or(0);
    inner.step(&format!(
        "{sent} requests ({v6_sent} over IPv6, {denied} denied) from {CLIENTS} clients in {:?}",
        started.elapsed()
    ));
    checks.check(spoe_errors.is_empty(), || {
        format!(
            "HAProxy's SPOE filter reported an error (txn.hle.error) on {} responses, e.g. {:?}",
            spoe_errors.len(),
            &spoe_errors[..spoe_errors.len().min(5)]
        )
    });

    // --- the server's count is the ground truth; HAProxy's must agree -----------
    let server_sent = upstream.sent();
    let server_total: u64 = server_sent.values().sum();
    for f in upstream.failures() {
        checks.check(false, || format!("harness: {f}"));
    }
    for status in [200u16, 404, 500] {
        let want = want_by_status.get(&status).copied().unwrap_or(0);
        let got = server_sent.get(&status).copied().unwrap_or(0);
        checks.check(got == want, || {
            format!("harness: the server sent {got} {status}, the clients expected {want}")
        });
    }
    let class_of = |status: u16| format!("{}xx", status / 100);
    let server_class = |s: &Samples, class: &str| {
        s.sum(
            "haproxy_server_http_responses_total",
            &[("proxy", BACKEND), ("server", SERVER), ("code", class)],
        )
    };
    let settled = wait_until(WAIT, || {
        let s = scrape(&support::haproxy::stats_addr()).ok()?.1;
        let total: f64 = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"]
            .iter()
            .map(|c| server_class(&s, c) - server_class(&before, c))
            .sum();
        (total >= server_total as f64).then_some(s)
    });
    let after = settled.unwrap_or_else(|t| {
        println!(
            "HAProxy's server counters did not reach the server's count ({t}); comparing anyway"
        );
        must_scrape_haproxy()
    });
    let fe_class = |s: &Samples, class: &str| {
        s.sum(
            "haproxy_frontend_http_responses_total",
            &[("proxy", FRONTEND), ("code", class)],
        )
    };
    for status in [200u16, 404, 500] {
        let class = class_of(status);
        let got = server_class(&after, &class) - server_class(&before, &class);
        let want = server_sent.get(&status).copied().unwrap_or(0) as f64;
        checks.check(got == want, || {
            format!(
                "harness: haproxy_server_http_responses_total{{proxy={BACKEND:?},server={SERVER:?},\
                 code={class:?}}} grew by {got}; the server sent {want} {status}"
            )
        });
    }
    // The frontend saw the denied requests too: HAProxy answered them itself.
    let fe_4xx = fe_class(&after, "4xx") - fe_class(&before, "4xx");
    let want_fe_4xx = (server_sent.get(&404).copied().unwrap_or(0) + denied) as f64;
    checks.check(fe_4xx == want_fe_4xx, || {
        format!("harness: {FRONTEND} answered {fe_4xx} 4xx, want {want_fe_4xx} (404 + 403)")
    });

    // --- the exporter -----------------------------------------------------------------
    let caught_up = wait_until(WAIT, || {
        let s = scrape(EXPORTER_WEB).ok()?.1;
        (s.sum(S_COUNTED, &[]) >= server_total as f64).then_some(())
    });
    if let Err(t) = caught_up {
        println!("the exporter did not count {server_total} messages: {t}; comparing anyway");
    }
    let (text, exp) = scrape(EXPORTER_WEB).unwrap_or_else(|e| panic!("exporter: {e}"));
    inner.step("scraped the exporter");
    println!("  status  server  haproxy(server)  exporter");
    for status in [200u16, 404, 500] {
        let code = status.to_string();
        let got = exp.sum(
            M_REQUESTS,
            &[
                ("status_code", &code),
                ("frontend_name", FRONTEND),
                ("backend_name", BACKEND),
                ("server_name", SERVER),
            ],
        );
        let want = server_sent.get(&status).copied().unwrap_or(0) as f64;
        let class = class_of(status);
        let ha = server_class(&after, &class) - server_class(&before, &class);
        println!("  {status:<6}  {want:>6}  {ha:>15}  {got:>8}");
        checks.eq_f64(
            &format!(
                "{M_REQUESTS}{{status_code={code:?},frontend_name={FRONTEND:?},\
                 backend_name={BACKEND:?},server_name={SERVER:?}}} (the server sent {want})"
            ),
            got,
            want,
        );
    }
    // Nothing else: no 403 (HAProxy's own answers send no hle-response), no other
    // frontend, backend or server.
    for s in exp.find(M_REQUESTS, &[]) {
        let known = ["200", "404", "500"]
            .iter()
            .any(|c| s.labels.get("status_code").map(String::as_str) == Some(c))
            && s.matches(&[
                ("frontend_name", FRONTEND),
                ("backend_name", BACKEND),
                ("server_name", SERVER),
            ]);
        checks.check(known || s.value == 0.0, || {
            format!("unexpected series {s} (HAProxy answered {denied} requests itself with 403)")
        });
    }
    let total = server_total as f64;
    checks.eq_f64(
        &format!("{M_REQUESTS} (all series)"),
        exp.sum(M_REQUESTS, &[]),
        total,
    );

    // Messages: every response counted, every request routed (the denied ones too:
    // hle-request is sent before the http-request rules), nothing rejected.
    let delta = |name: &str| exp.sum(name, &[]) - exp_before.sum(name, &[]);
    check_message_invariant(&mut checks, &exp, "exporter");
    checks.eq_f64(
        &format!("{S_COUNTED} (the server's responses; not HAProxy's {denied} denials)"),
        delta(S_COUNTED),
        total,
    );
    checks.eq_f64(
        &format!("{S_ROUTED} (every request, denied or not)"),
        delta(S_ROUTED),
        sent as f64,
    );
    // One observation per response of each timer histogram.
    checks.eq_f64(
        &format!("{M_RESPONSE_COUNT} (all series)"),
        exp.sum(M_RESPONSE_COUNT, &[]),
        total,
    );
    checks.eq_f64(
        M_REQUEST_WAIT_COUNT,
        exp.sum(M_REQUEST_WAIT_COUNT, &[]),
        total,
    );

    // Connections are reused and NOTIFY frames pipelined: far more frames than
    // connections (health checks included, which carry no NOTIFY).
    let notify = exp.sum(S_FRAMES_RECEIVED, &[("type", "notify")]);
    let connections = exp.sum(S_CONNECTIONS, &[]);
    let hellos = exp.sum(S_FRAMES_RECEIVED, &[("type", "haproxy_hello")]);
    println!(
        "  SPOE: {connections} connections ({hellos} HELLOs, health checks among them), \
         {notify} NOTIFY frames"
    );
    checks.eq_f64(
        &format!("{S_FRAMES_RECEIVED}{{type=\"notify\"}} (one message each)"),
        notify,
        exp.sum(S_RECEIVED, &[]),
    );
    checks.check(notify > connections, || {
        format!("{notify} NOTIFY frames on {connections} SPOE connections: no reuse, no pipelining")
    });

    // The health check (option spop-check) was answered throughout.
    let ha_now = must_scrape_haproxy();
    checks.check(agent_up(&ha_now), || {
        format!(
            "HAProxy's agent server is not UP with L7OK after the traffic:\n{}",
            agent_series(&ha_now)
        )
    });
    let agent_connections = ha_now.sum(
        "haproxy_server_connection_errors_total",
        &[("proxy", AGENT_BACKEND), ("server", AGENT_SERVER)],
    );
    checks.eq_f64(
        "haproxy_server_connection_errors_total of the agent server",
        agent_connections,
        0.0,
    );

    support::haproxy::check_promtool_and_probes(&mut checks, &text);
    let log = stop_exporter(&mut checks, &inner, &mut exporter, "the exporter");
    match spoe_summary(&log) {
        Ok(sum) => checks.check(sum["messages_counted"] as f64 >= total, || {
            format!("the exporter's summary {sum:?} counted fewer than {total}")
        }),
        Err(e) => checks.check(false, || e),
    }
    let also = ["haproxy_log_response_processing_seconds_count".to_string()];
    inner.finish(
        &checks,
        &exp,
        &Listing {
            skip_zero_self_metrics: true,
            also: &also,
        },
    );
}

// ---------------------------------------------------------------------------
// 2. The route variable
// ---------------------------------------------------------------------------

fn route_inside_private_netns() {
    let inner = Inner::new("hle-spoe-route");
    let mut checks = Checks::default();
    let _upstream = Upstream::start();
    let mut exporter = inner.start_exporter(&EXPORTER_ENV, " (default path settings)");
    let (_haproxy, before) = inner.start_haproxy(&haproxy_cfg(&inner, Some("1s")));
    if !agent_up(&before) {
        wait_agent_up(&inner);
    }

    // (IPv6 client, target, status, X-Route); None: no header.
    let defaults: &[(bool, &str, u16, Option<&str>)] = &[
        (false, "/users/123", 200, Some("/users/:id")),
        (true, "/users/123?tab=orders&x=1", 200, Some("/users/:id")),
        (
            false,
            "/orders/550e8400-e29b-41d4-a716-446655440000/items/7",
            200,
            Some("/orders/:id/items/:id"),
        ),
        (
            false,
            "/static/app.1234.js",
            200,
            Some("/static/app.1234.js"),
        ),
        (false, "/", 200, Some("/")),
        (false, "/missing/42", 404, Some("/missing/:id")),
        (true, "/err/deadbeefdeadbeef00", 500, Some("/err/:id")),
        // HAProxy's own answer: the http-response rules do not run.
        (false, "/deny/1", 403, None),
    ];
    let check_routes =
        |checks: &mut Checks, cases: &[(bool, &str, u16, Option<&str>)], what: &str| {
            for &(v6, target, status, route) in cases {
                let got = request(v6, "GET", target);
                checks.check(
                    matches!(&got, Ok(a) if a.status == status && a.route.as_deref() == route),
                    || {
                        format!(
                            "{what}: GET {target} from {} answered {got:?}, want status {status} \
                         and X-Route {route:?}",
                            www(v6)
                        )
                    },
                );
            }
        };
    check_routes(&mut checks, defaults, "default settings");
    inner.step("checked X-Route with the default settings");
    let exp = must_scrape_exporter(&inner);
    let paths = exp.label_values(
        "haproxy_log_response_processing_seconds_count",
        "http_request_path",
    );
    checks.check(
        paths.iter().any(|p| p == "/users/:id") && !paths.iter().any(|p| p.starts_with("/users/1")),
        || format!("the http_request_path labels are {paths:?}, want /users/:id among them"),
    );
    check_message_invariant(&mut checks, &exp, "the first exporter");

    // --- a path rule --------------------------------------------------------------
    stop_exporter(&mut checks, &inner, &mut exporter, "the first exporter");
    drop(exporter);
    let rules = "^/users/[^/]+ => /users/:name\n^/static/.* => /static/*";
    let mut env = EXPORTER_ENV.to_vec();
    env.push(("HLE_PATH_RULES", rules));
    let mut exporter = inner.start_exporter(&env, " (with HLE_PATH_RULES)");
    // HAProxy connects to the new agent by itself; the first requests may find none.
    let back = wait_until(WAIT, || {
        request(false, "GET", "/users/alice")
            .ok()
            .filter(|a| a.route.as_deref() == Some("/users/:name"))
    });
    checks.check(back.is_ok(), || {
        format!(
            "HAProxy did not get a route from the restarted agent: {back:?}; last answer {:?}",
            request(false, "GET", "/users/alice")
        )
    });
    inner.step("the restarted agent answers");
    let with_rules: &[(bool, &str, u16, Option<&str>)] = &[
        (false, "/users/alice", 200, Some("/users/:name")),
        // The rule comes before the templates.
        (
            true,
            "/users/123/orders/9",
            200,
            Some("/users/:name/orders/:id"),
        ),
        (false, "/static/css/site.css?v=3", 200, Some("/static/*")),
        (false, "/orders/77", 200, Some("/orders/:id")),
        (false, "/missing/users/x", 404, Some("/missing/users/x")),
    ];
    check_routes(&mut checks, with_rules, "HLE_PATH_RULES");
    let exp = must_scrape_exporter(&inner);
    let paths = exp.label_values(
        "haproxy_log_response_processing_seconds_count",
        "http_request_path",
    );
    checks.check(paths.iter().any(|p| p == "/users/:name"), || {
        format!("the http_request_path labels are {paths:?}, want /users/:name among them")
    });
    check_message_invariant(&mut checks, &exp, "the second exporter");
    stop_exporter(&mut checks, &inner, &mut exporter, "the second exporter");
    inner.finish(
        &checks,
        &exp,
        &Listing {
            skip_zero_self_metrics: true,
            also: &[],
        },
    );
}

// ---------------------------------------------------------------------------
// 3. HAProxy reloaded and the agent restarted under traffic
// ---------------------------------------------------------------------------

const TRAFFIC_CLIENTS: usize = 4;
/// Responses the first phases wait for: the first exporter before and after the
/// reload, the second exporter.
const PER_PHASE: u64 = 150;
/// Responses served while no agent listens.
const WITHOUT_AGENT: u64 = 40;
/// How long a client waits for an answer. HAProxy 2.6 holds a request whose NOTIFY
/// was in flight when the agent went away (SIGTERM or SIGKILL alike) past `timeout
/// processing`: seen released when the agent was back (after 3 to 12 s), or not within
/// 25 s. Such requests are tolerated (see [`HELD_WINDOW`]); every other must be answered.
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(10);
/// A request that started this close to the agent's stop may be held by HAProxy 2.6
/// (above); at most one per client, since a held client sends nothing else.
const HELD_WINDOW: Duration = Duration::from_millis(250);
/// Requests slower than this are listed.
const SLOW: Duration = Duration::from_secs(1);

/// What one client thread saw.
#[derive(Default)]
struct ClientReport {
    sent: u64,
    /// Requests without their server status: when each started (since the traffic
    /// began), and what happened.
    failures: Vec<(Duration, String)>,
    /// Answers with `X-Hle-Error` (the SPOE filter's `txn.hle.error`).
    spoe_errors: u64,
    /// Requests slower than [`SLOW`]: target, started after the traffic began, took.
    slow: Vec<(String, Duration, Duration)>,
}

/// One client thread sending requests without pause until told to stop.
fn traffic_client(c: usize, began: Instant, stop: Arc<AtomicBool>) -> JoinHandle<ClientReport> {
    std::thread::spawn(move || {
        let mut r = ClientReport::default();
        let mut n = c;
        while !stop.load(Ordering::Relaxed) {
            let target = match n % 4 {
                0 => format!("/missing/{n}"),
                1 => format!("/err/{n}"),
                _ => format!("/users/{n}"),
            };
            let want = upstream_status(&target);
            let v6 = c % 2 == 1;
            let started = Instant::now();
            let got = request_within(v6, "GET", &target, TRAFFIC_TIMEOUT);
            let took = started.elapsed();
            if took > SLOW {
                r.slow.push((target.clone(), started - began, took));
            }
            r.sent += 1;
            match &got {
                Ok(a) if a.status == want => r.spoe_errors += u64::from(a.hle_error.is_some()),
                _ => r.failures.push((
                    started - began,
                    format!(
                    "GET {target} from {} (started at {:?}, took {took:?}): {got:?}, want {want}",
                    www(v6),
                    started - began
                    ),
                )),
            }
            n += TRAFFIC_CLIENTS;
        }
        r
    })
}

fn start_reloaded_haproxy(inner: &Inner, old_pid: u32) -> ChildGuard {
    let log = std::fs::File::create(inner.dir.join("haproxy-2.log")).expect("haproxy log");
    ChildGuard::spawn(
        "haproxy (reloaded)",
        Command::new(find_program("haproxy").expect("haproxy"))
            .arg("-f")
            .arg(inner.dir.join("haproxy.cfg"))
            .arg("-db")
            .arg("-sf")
            .arg(old_pid.to_string())
            .current_dir(&inner.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log),
    )
    .expect("spawn the new haproxy")
}

fn reload_restart_inside_private_netns() {
    let inner = Inner::new("hle-spoe-reload");
    let mut checks = Checks::default();
    let upstream = Upstream::start();
    let mut first = inner.start_exporter(&EXPORTER_ENV, " (the first)");
    let (mut haproxy, before) = inner.start_haproxy(&haproxy_cfg(&inner, None));
    if !agent_up(&before) {
        wait_agent_up(&inner);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let clients: Vec<_> = (0..TRAFFIC_CLIENTS)
        .map(|c| traffic_client(c, began, stop.clone()))
        .collect();
    inner.step("traffic started");
    let exporter_counted = |at_least: f64| {
        wait_until(WAIT, || {
            let s = scrape(EXPORTER_WEB).ok()?.1;
            (s.sum(S_COUNTED, &[]) >= at_least).then_some(s)
        })
    };
    let phase = |what: &str, at_least: f64| {
        exporter_counted(at_least).unwrap_or_else(|t| {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "{what}: the exporter did not count {at_least} messages: {t}\n\
                 exporter log:\n{}\nHAProxy log:\n{}",
                inner.exporter_log_tail(),
                tail_file(&inner.haproxy_log, 40)
            )
        })
    };
    let s = phase("before the reload", PER_PHASE as f64);
    let connections_before_reload = s.sum(S_CONNECTIONS, &[]);
    let counted_before_reload = s.sum(S_COUNTED, &[]);

    // --- reload: a new HAProxy takes over, the old one soft-stops -----------------
    let old_pid = haproxy.id();
    let reload_at = began.elapsed();
    let mut reloaded = start_reloaded_haproxy(&inner, old_pid);
    let old_exit = haproxy.wait_timeout(WAIT);
    inner.step(&format!(
        "HAProxy reloaded; the old process exited: {old_exit:?}"
    ));
    checks.check(old_exit.is_some(), || {
        "the old HAProxy did not exit after `-sf`".to_string()
    });
    checks.check(reloaded.try_wait().is_none(), || {
        format!(
            "the new HAProxy exited: {}",
            tail_file(&inner.dir.join("haproxy-2.log"), 20)
        )
    });
    let s = phase("after the reload", counted_before_reload + PER_PHASE as f64);
    // A second at least between the reload and the agent's stop, so that a request
    // hurt by one can be told from one hurt by the other (by when it started).
    let _ = wait_until(WAIT, || (began.elapsed() >= reload_at + SLOW).then_some(()));
    let s = scrape(EXPORTER_WEB).map(|(_, s)| s).unwrap_or(s);
    let normal = s.sum(
        S_DISCONNECTS,
        &[("sender", "haproxy"), ("status_code", "0")],
    );
    checks.check(normal >= 1.0, || {
        format!(
            "no HAPROXY-DISCONNECT with status 0 from the old HAProxy; disconnects: {:?}",
            s.find(S_DISCONNECTS, &[])
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        )
    });
    checks.check(
        s.sum(S_CONNECTIONS, &[]) > connections_before_reload,
        || "the new HAProxy opened no SPOE connection".to_string(),
    );
    check_message_invariant_under_traffic(
        &mut checks,
        &s,
        "the first exporter, after the reload (scraped under traffic)",
    );

    // --- the agent stops; requests go on without it ---------------------------------
    let agent_stop_at = began.elapsed();
    let first_log = stop_exporter(&mut checks, &inner, &mut first, "the first exporter");
    let sent_while_first_ran = upstream.total();
    std::fs::write(inner.dir.join("exporter-1.log"), &first_log).expect("keep the log");
    drop(first);
    let first_sum = spoe_summary(&first_log).unwrap_or_else(|e| {
        panic!(
            "{e}; its log:\n{}",
            tail_file(&inner.dir.join("exporter-1.log"), 20)
        )
    });
    let counted1 = first_sum["messages_counted"];
    println!("  the first exporter's summary: {first_sum:?}");
    checks.check(counted1 <= sent_while_first_ran, || {
        format!(
            "the first exporter counted {counted1} responses, but the server had sent only \
             {sent_while_first_ran} when it exited"
        )
    });
    checks.check(
        first_sum["messages_received"]
            == counted1
                + first_sum["messages_routed"]
                + first_sum["messages_rejected"]
                + first_sum["messages_ignored"]
            && first_sum["messages_rejected"] == 0,
        || format!("the first exporter's summary does not add up: {first_sum:?}"),
    );
    let down = wait_until(WAIT, || {
        (upstream.total() >= sent_while_first_ran + WITHOUT_AGENT).then_some(())
    });
    checks.check(down.is_ok(), || {
        format!(
            "without the agent, the server sent {} responses in {WAIT:?}, want {WITHOUT_AGENT}",
            upstream.total() - sent_while_first_ran
        )
    });
    inner.step(&format!(
        "{} responses served without an agent",
        upstream.total() - sent_while_first_ran
    ));

    // --- the agent is back on the same address -----------------------------------------
    let agent_start_at = began.elapsed();
    let mut second = inner.start_exporter(&EXPORTER_ENV, " (the second, on the same address)");
    let s = phase("after the agent's restart", PER_PHASE as f64);
    checks.check(s.sum(S_CONNECTIONS, &[]) >= 1.0, || {
        "HAProxy did not connect to the second exporter".to_string()
    });
    inner.step("the second exporter counts");

    // --- the end ------------------------------------------------------------------------
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut failures, mut spoe_errors, mut slow) = (0u64, Vec::new(), 0u64, Vec::new());
    for c in clients {
        let r = c.join().expect("client thread");
        sent += r.sent;
        failures.extend(r.failures);
        spoe_errors += r.spoe_errors;
        slow.extend(r.slow);
    }
    inner.step(&format!(
        "traffic stopped; {} requests slower than {SLOW:?} (since the traffic began: reload \
         at {reload_at:?}, agent stopped at {agent_stop_at:?}, started again at \
         {agent_start_at:?})",
        slow.len()
    ));
    for (target, at, took) in &slow {
        println!("    GET {target}: started at {at:?}, took {took:?}");
    }
    let server_total = upstream.total();
    // Everything was answered: the last messages are counted as their ACKs go out.
    let settled = wait_until(Duration::from_secs(5), || {
        let a = scrape(EXPORTER_WEB).ok()?.1;
        std::thread::sleep(Duration::from_millis(300));
        let b = scrape(EXPORTER_WEB).ok()?.1;
        (a.sum(S_COUNTED, &[]) == b.sum(S_COUNTED, &[])).then_some(b)
    });
    let exp = settled.unwrap_or_else(|_| must_scrape_exporter(&inner));
    let counted2 = exp.sum(S_COUNTED, &[]) as u64;
    check_message_invariant(&mut checks, &exp, "the second exporter");
    let requests2 = exp.sum(M_REQUESTS, &[]) as u64;
    checks.check(requests2 == counted2, || {
        format!(
            "the second exporter: {M_REQUESTS} sums to {requests2}, messages counted {counted2}"
        )
    });
    println!(
        "  {sent} requests; the server sent {server_total} responses, {sent_while_first_ran} \
         while the first exporter ran; counted {counted1} + {counted2}; not counted {} \
         (the agent down or restarting); {spoe_errors} answers had txn.hle.error",
        server_total as i64 - (counted1 + counted2) as i64
    );
    // HAProxy 2.6 may hold the requests in flight at the agent's stop (TRAFFIC_TIMEOUT).
    let (held, failed): (Vec<_>, Vec<_>) = failures
        .iter()
        .partition(|(started, _)| started.abs_diff(agent_stop_at) <= HELD_WINDOW);
    for (_, f) in &held {
        println!("    held by HAProxy at the agent's stop: {f}");
    }
    checks.check(failed.is_empty() && held.len() <= TRAFFIC_CLIENTS, || {
        format!(
            "{} of {sent} requests did not get their server status ({} of them started \
             within {HELD_WINDOW:?} of the agent's stop), e.g. {:?}",
            failures.len(),
            held.len(),
            &failed[..failed.len().min(5)]
        )
    });
    checks.check(
        server_total <= sent && sent - server_total <= held.len() as u64,
        || format!("{sent} requests, but the server sent {server_total} responses"),
    );
    for f in upstream.failures() {
        checks.check(false, || format!("harness: {f}"));
    }
    checks.check(counted1 + counted2 <= server_total, || {
        format!(
            "counted twice: the exporters counted {counted1} + {counted2} responses, the server \
             sent {server_total}"
        )
    });
    checks.check(counted2 > 0, || {
        "the second exporter counted nothing".to_string()
    });
    let second_log = stop_exporter(&mut checks, &inner, &mut second, "the second exporter");
    if let Ok(sum) = spoe_summary(&second_log) {
        checks.check(sum["messages_counted"] >= counted2, || {
            format!("the second exporter's summary {sum:?} is below its scrape ({counted2})")
        });
    }
    drop(reloaded);
    if !checks.failures.is_empty() {
        println!(
            "the reloaded HAProxy's log (tail):\n{}",
            tail_file(&inner.dir.join("haproxy-2.log"), 30)
        );
    }
    inner.finish(
        &checks,
        &exp,
        &Listing {
            skip_zero_self_metrics: true,
            also: &[],
        },
    );
}
