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
//!    127.0.0.1:9129) with three formats in `HLE_LOG_FORMAT`, one a
//!    line: `clf`, `httpslog` and [`CUSTOM_LOG_FORMAT`];
//!    `HLE_CUSTOM_LABELS` makes `route` and `host` of two fields of the
//!    custom format ([`CUSTOM_LABELS`]);
//!    `HLE_REQUESTS_TOTAL_LABELS=frontend_name,status_class`, and the route
//!    and host on two histograms; then waits for `/-/ready`;
//! 3. starts HAProxy from `tests/e2e/haproxy_formats.cfg.in`: `fe_clf`
//!    (`option httplog clf` with two request captures and one response
//!    capture, so CLF's `%hrl %hsl` have values; logs over UDP), `fe_tls` (`bind ... ssl crt`,
//!    `option httpslog`, logs through a ring to TCP) and `fe_custom`
//!    (`log-format` [`CUSTOM_LOG_FORMAT`], the same string; logs over UDP
//!    with an rfc3164 header), which sets `txn.route` from the first path
//!    segment and captures the `Host` header, and logs the User-Agent (with
//!    quotes and a final backslash, [`USER_AGENT`]) in unescaped quotes;
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

//!
//! What both end-to-end tests do alike (starting the exporter and HAProxy,
//! the traffic plan, HAProxy's counters, the comparisons per frontend and
//! class, the line accounting, promtool, SIGTERM) is in
//! `tests/support/haproxy.rs`.

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::haproxy::{
    check_answer, check_line_counts, check_plan_against_haproxy, check_promtool_and_probes,
    compare_requests, exchange, haproxy_requests_delta, inner_may_run, one_word,
    render_haproxy_cfg, status_of, stop_exporter, Expected, Frontend, Inner, Kind, Listing, Plan,
    Shot, Transport, BAD_REQUEST, INNER_RUN_LIMIT, IO_TIMEOUT, M_BYTES_READ, M_REQUESTS,
};
use support::{find_program, run_in_private_netns, run_with_timeout, Checks, NetnsRun, Samples};

/// Name of the outer test.
const OUTER_TEST: &str = "haproxy_formats_end_to_end";
/// Name of the inner test, run by the outer one inside the namespace.
const INNER_TEST: &str = "haproxy_formats_e2e_inner";
/// Prefix of the work directory's name.
const WORK_DIR_PREFIX: &str = "hle-e2e-formats";

/// `fe_custom`'s `log-format`, exactly as written in the HAProxy config
/// (the template's `@CUSTOM_LOG_FORMAT@`) and as given to the exporter. The
/// route is the first path segment (`txn.route`), the host the first value of
/// the `capture request header` block `%hr`; the User-Agent, [`USER_AGENT`],
/// is a quoted sample that HAProxy 2.6 writes unescaped. Like most custom
/// formats it begins as the built-in ones do (here up to `%ST %B`), so a
/// format tried before it must not take its lines.
const CUSTOM_LOG_FORMAT: &str = "\"%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc \
     %ac/%fc/%bc/%sc/%rc %sq/%bq host=%hr route=%[var(txn.route)] \
     ua=%{+Q}[capture.req.hdr(1)] %{+Q}r\"";

/// The User-Agent of every request: quotes inside and a backslash at the end,
/// as HAProxy writes it in `%{+Q}[capture.req.hdr(1)]`: `"e2e "quoted" agent\"`.
const USER_AGENT: &str = r#"e2e "quoted" agent\"#;

/// `HLE_CUSTOM_LABELS`: the fields of [`CUSTOM_LOG_FORMAT`] that become the
/// labels `route` and `host`, written as in the format.
const CUSTOM_LABELS: &str = "route=%[var(txn.route)],host=%hr#0";

/// `HLE_LOG_FORMAT`: the formats of the three frontends, one a line,
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

const HAPROXY_CFG_TEMPLATE: &str = include_str!("e2e/haproxy_formats.cfg.in");

/// The certificate and key HAProxy reads (`crt`), made in the work directory.
const TLS_PEM_NAME: &str = "e2e-tls.pem";
/// The server name the TLS client sends for some requests (SNI).
const TLS_SERVER_NAME: &str = "localhost";

/// Bound on one `openssl` run (a request over TLS, or making the certificate).
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Outer test: re-executes this binary in a private network namespace
// ---------------------------------------------------------------------------

#[test]
fn haproxy_formats_end_to_end() {
    run_in_private_netns(&NetnsRun {
        outer: OUTER_TEST,
        inner: INNER_TEST,
        tools: &[
            ("ip", "iproute2"),
            ("haproxy", "haproxy"),
            ("openssl", "openssl"),
        ],
        work_dir_prefix: WORK_DIR_PREFIX,
        limit: INNER_RUN_LIMIT,
    });
}

// ---------------------------------------------------------------------------
// Inner test: everything on loopback inside the namespace
// ---------------------------------------------------------------------------

#[test]
#[ignore = "inner half of haproxy_formats_end_to_end: runs only inside its private network namespace"]
fn haproxy_formats_e2e_inner() {
    if inner_may_run(INNER_TEST, OUTER_TEST) {
        run_inside_private_netns();
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

const FE_CUSTOM: &str = "fe_custom";

fn frontends() -> Vec<Frontend> {
    let frontend = |name, format, port, tls, transport, shots| Frontend {
        name,
        format: Some(format),
        port,
        tls,
        transport,
        shots,
    };
    vec![
        frontend(
            "fe_clf",
            "option httplog clf",
            PORT_CLF,
            false,
            Transport::Udp,
            Plan {
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
        ),
        frontend(
            "fe_tls",
            "option httpslog",
            PORT_TLS,
            true,
            Transport::Tcp,
            Plan {
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
        ),
        frontend(
            FE_CUSTOM,
            "log-format with route and host",
            PORT_CUSTOM,
            false,
            Transport::Udp,
            custom_shots(),
        ),
    ]
}

fn render_cfg(tls_pem: &str) -> String {
    render_haproxy_cfg(
        HAPROXY_CFG_TEMPLATE,
        &[
            ("@TLS_PEM@", tls_pem),
            ("@PORT_CLF@", &PORT_CLF.to_string()),
            ("@PORT_TLS@", &PORT_TLS.to_string()),
            ("@PORT_CUSTOM@", &PORT_CUSTOM.to_string()),
            ("@CUSTOM_LOG_FORMAT@", CUSTOM_LOG_FORMAT),
        ],
    )
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
    let inner = Inner::new(WORK_DIR_PREFIX);

    let openssl = find_program("openssl").expect("openssl");
    let tls_pem = one_word(&make_certificate(&openssl, &inner.dir));
    inner.step("made a self-signed certificate with `openssl req -x509`");

    // --- the exporter -------------------------------------------------------
    let formats = log_formats();
    let mut exporter = inner.start_exporter(
        &[
            ("HLE_LOG_FORMAT", &formats),
            ("HLE_CUSTOM_LABELS", CUSTOM_LABELS),
            ("HLE_BYTES_READ_TOTAL_LABELS", "frontend_name,client_ip"),
            ("HLE_SESSION_DURATION_SECONDS_LABELS", SESSION_LABELS),
            ("HLE_RESPONSE_PROCESSING_SECONDS_LABELS", RESPONSE_LABELS),
        ],
        &format!(" with HLE_LOG_FORMAT={formats:?} and HLE_CUSTOM_LABELS={CUSTOM_LABELS}"),
    );

    // --- HAProxy ------------------------------------------------------------
    let (haproxy, before) = inner.start_haproxy(&render_cfg(&tls_pem));

    // --- traffic ------------------------------------------------------------
    let fes = frontends();
    let mut checks = Checks::default();
    for fe in &fes {
        for shot in &fe.shots {
            let addr = fe.addr(shot.v6);
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
            check_answer(&mut checks, fe.name, addr, req, got, shot.kind.status());
        }
        inner.step(&format!(
            "sent {} requests and empty connections to {} ({}{})",
            fe.shots.len(),
            fe.name,
            fe.format.unwrap_or_default(),
            if fe.tls { ", TLS" } else { "" }
        ));
    }

    let after = inner.haproxy_after(&before, &fes);
    check_plan_against_haproxy(&mut checks, &before, &after, &fes);
    let want = Expected::from_haproxy(&before, &after, &fes);

    // --- the exporter catches up (the ring connects and flushes lazily) -----
    let (text, exp) = inner.scrape_exporter(&want);

    // --- comparisons ----------------------------------------------------------
    compare_requests(&mut checks, &exp, &want, &fes, 9);
    // HAProxy writes `fe_tls~` for a TLS listener; the label must not keep it.
    for metric in [M_REQUESTS, M_BYTES_READ] {
        let names = exp.label_values(metric, "frontend_name");
        println!("  {metric} frontend_name values: {names:?}");
        checks.check(!names.iter().any(|n| n.contains('~')), || {
            format!("{metric}: frontend_name keeps HAProxy's TLS marker `~`: {names:?}")
        });
    }

    // Every line is accounted for, per transport.
    check_line_counts(&mut checks, &exp, &want, &fes);

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
            // Every label set a line brought has a series in each metric of that label
            // list, so a set seen only on lines without a response has a count of 0.
            let g = got.get(key).copied().filter(|&count| count > 0.0);
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

    check_promtool_and_probes(&mut checks, &text);
    checks.check(exporter.try_wait().is_none(), || {
        "the exporter exited during the test".to_string()
    });
    inner.step("checked the scrape");

    // --- stop ---------------------------------------------------------------
    drop(haproxy);
    stop_exporter(&mut checks, &mut exporter);
    inner.step("the exporter exited on SIGTERM");
    drop(exporter);
    let counts = [format!("{M_SESSION}_count"), format!("{M_RESPONSE}_count")];
    inner.finish(
        &checks,
        &exp,
        &Listing {
            skip_zero_self_metrics: true,
            also: &counts,
        },
    );
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

/// An HTTP/1.1 request to `host`, with `body` as text/plain.
fn request(method: &str, target: &str, host: &str, body: Option<&str>) -> Vec<u8> {
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n");
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
