//! End to end with a real HAProxy 2.6.
//!
//! `haproxy_end_to_end` re-executes this test binary under `unshare -n`
//! (a private network namespace, so the fixed loopback ports below cannot
//! clash with anything else on the machine) to run `haproxy_e2e_inner`, which:
//!
//! 1. brings `lo` up, starts the exporter (UDP 127.0.0.1:5140, TCP
//!    127.0.0.1:5141, a unix datagram socket in the test's temporary work
//!    directory, web 127.0.0.1:9129), waits for `/-/ready` and checks that the
//!    socket file exists with the default mode 0660;
//! 2. starts HAProxy from `tests/e2e/haproxy.cfg.in`: one frontend logs over
//!    UDP ("local" header), one to the exporter's unix socket ("local"
//!    header, `log /path/to/sock`), one through a ring to TCP with newline
//!    framing (rfc3164 header), one through a ring to TCP with octet counting
//!    (rfc5424 header);
//! 3. sends a fixed mix of requests (200, 404, 500, 503, `<BADREQ>`, an empty
//!    connection, and requests from an IPv6 client) to each logging frontend,
//!    a different mix per frontend;
//! 4. compares the exporter's `haproxy_log_requests_total` per frontend and
//!    status class with the delta of HAProxy's own
//!    `haproxy_frontend_http_responses_total`, checks that each transport's
//!    `haproxy_log_exporter_lines_received_total` equals its frontends' line
//!    count (and that HAProxy dropped no log line), and checks the other
//!    self-metrics and `promtool check metrics`;
//! 5. soft-stops HAProxy, whose "Proxy fe_udp stopped" (UDP) and "Proxy
//!    fe_unix stopped" (unix socket) notices must be ignored (not counted, not
//!    rejected), and checks that the ring connections close;
//! 6. stops the exporter with SIGTERM: it must exit 0 and remove its socket
//!    file.
//!
//! Without `unshare` or `haproxy` the test prints a skip message, or fails when
//! `CI=true`.
//!
//! What both end-to-end tests do alike (starting the exporter and HAProxy,
//! HAProxy's counters, the comparisons per frontend and class, the line
//! accounting, promtool, SIGTERM) is in `tests/support/haproxy.rs`.

mod support;

use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use support::haproxy::{
    check_answer, check_line_counts, check_plan_against_haproxy, check_promtool_and_probes,
    compare_requests, exchange, inner_may_run, one_word, render_haproxy_cfg, scrape, stop_exporter,
    Expected, Frontend, Inner, Kind, Listing, Plan, Transport, EXPORTER_WEB, INNER_RUN_LIMIT,
    IO_TIMEOUT, M_BYTES_READ, M_COUNTED, M_IGNORED, M_RECEIVED, M_REJECTED, M_TCP_CONNECTIONS,
};
use support::{
    promtool_check_metrics, run_in_private_netns, wait_until, Checks, NetnsRun, PromtoolVerdict,
};

/// Name of the outer test.
const OUTER_TEST: &str = "haproxy_end_to_end";
/// Name of the inner test, run by the outer one inside the namespace.
const INNER_TEST: &str = "haproxy_e2e_inner";
/// Prefix of the work directory's name.
const WORK_DIR_PREFIX: &str = "hle-e2e";

/// The exporter's unix datagram socket, created inside the work directory.
const EXPORTER_UNIX_NAME: &str = "exporter-log.sock";
/// `sun_path` holds 108 bytes, the terminating NUL included.
const UNIX_PATH_MAX: usize = 107;

const PORT_UDP: u16 = 8080;
const PORT_RING_LEGACY: u16 = 8081;
const PORT_RING_OCTET: u16 = 8082;
const PORT_UNIX: u16 = 8083;

const HAPROXY_CFG_TEMPLATE: &str = include_str!("e2e/haproxy.cfg.in");

// ---------------------------------------------------------------------------
// Outer test: re-executes this binary in a private network namespace
// ---------------------------------------------------------------------------

#[test]
fn haproxy_end_to_end() {
    run_in_private_netns(&NetnsRun {
        outer: OUTER_TEST,
        inner: INNER_TEST,
        tools: &[("ip", "iproute2"), ("haproxy", "haproxy")],
        work_dir_prefix: WORK_DIR_PREFIX,
        limit: INNER_RUN_LIMIT,
    });
}

// ---------------------------------------------------------------------------
// Inner test: everything on loopback inside the namespace
// ---------------------------------------------------------------------------

#[test]
#[ignore = "inner half of haproxy_end_to_end: runs only inside its private network namespace"]
fn haproxy_e2e_inner() {
    if inner_may_run(INNER_TEST, OUTER_TEST) {
        run_inside_private_netns();
    }
}

/// The logging frontends, all in `option httplog`, each with its own
/// [`Plan`]: a 200 is several methods and paths, a 400 `<BADREQ>` CR-- a
/// connection opened and closed without a request.
fn frontends() -> Vec<Frontend> {
    let frontend = |name, port, transport, plan: Plan| Frontend {
        name,
        format: None,
        port,
        tls: false,
        transport,
        shots: plan.shots(),
    };
    vec![
        frontend(
            "fe_udp",
            PORT_UDP,
            Transport::Udp,
            Plan {
                ok: 3,
                missing: 2,
                err: 1,
                down: 1,
                badreq: 1,
                empty: 1,
                ok_v6: 2,
                missing_v6: 1,
            },
        ),
        frontend(
            "fe_unix",
            PORT_UNIX,
            Transport::Unix,
            Plan {
                ok: 6,
                missing: 1,
                err: 3,
                down: 2,
                badreq: 2,
                empty: 1,
                ok_v6: 0,
                missing_v6: 0,
            },
        ),
        frontend(
            "fe_ring_legacy",
            PORT_RING_LEGACY,
            Transport::Tcp,
            Plan {
                ok: 4,
                missing: 1,
                err: 2,
                down: 1,
                badreq: 1,
                empty: 1,
                ok_v6: 0,
                missing_v6: 0,
            },
        ),
        frontend(
            "fe_ring_octet",
            PORT_RING_OCTET,
            Transport::Tcp,
            Plan {
                ok: 5,
                missing: 3,
                err: 1,
                down: 2,
                badreq: 2,
                empty: 1,
                ok_v6: 0,
                missing_v6: 0,
            },
        ),
    ]
}

fn render_cfg(unix_log_path: &str) -> String {
    render_haproxy_cfg(
        HAPROXY_CFG_TEMPLATE,
        &[
            ("@UNIX_LOG_PATH@", unix_log_path),
            ("@PORT_UDP@", &PORT_UDP.to_string()),
            ("@PORT_UNIX@", &PORT_UNIX.to_string()),
            ("@PORT_RING_LEGACY@", &PORT_RING_LEGACY.to_string()),
            ("@PORT_RING_OCTET@", &PORT_RING_OCTET.to_string()),
        ],
    )
}

fn run_inside_private_netns() {
    let inner = Inner::new(WORK_DIR_PREFIX);
    let unix_path = inner.dir.join(EXPORTER_UNIX_NAME);
    // The same path goes into the exporter's environment and HAProxy's config,
    // where it must be one word.
    let unix_path_str = one_word(&unix_path);
    assert!(
        unix_path_str.len() <= UNIX_PATH_MAX,
        "the unix socket path {unix_path_str:?} is {} bytes, over the {UNIX_PATH_MAX} a \
         socket address holds; use a shorter TMPDIR",
        unix_path_str.len()
    );

    // --- the exporter -------------------------------------------------------
    let mut exporter = inner.start_exporter(
        &[
            ("HLE_SYSLOG_UNIX_PATH", &unix_path_str),
            ("HLE_BYTES_READ_TOTAL_LABELS", "client_ip"),
        ],
        "",
    );
    // HAProxy gets "Permission denied" or "No such file" on every line if the
    // socket is not there as promised; say so before any traffic.
    match std::fs::symlink_metadata(&unix_path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            assert!(
                meta.file_type().is_socket() && mode == 0o660,
                "{unix_path_str}: want a socket with mode 0660 (the default \
                 HLE_SYSLOG_UNIX_MODE), got {:?} with mode {mode:04o}",
                meta.file_type()
            );
        }
        Err(e) => panic!(
            "the exporter is ready but its unix socket {unix_path_str} is missing: {e}\n\
             exporter log:\n{}",
            inner.exporter_log_tail()
        ),
    }
    inner.step("exporter's unix socket is in place (mode 0660)");

    // --- HAProxy ------------------------------------------------------------
    let (mut haproxy, before) = inner.start_haproxy(&render_cfg(&unix_path_str));

    // --- traffic ------------------------------------------------------------
    let fes = frontends();
    let mut checks = Checks::default();
    for fe in &fes {
        for shot in &fe.shots {
            let addr = fe.addr(shot.v6);
            let req = &shot.request;
            if shot.kind != Kind::Empty {
                let got = exchange(addr, req);
                check_answer(&mut checks, fe.name, addr, req, got, shot.kind.status());
            } else if let Err(e) = TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                checks.check(false, || {
                    format!("harness: empty connection to {addr}: {e}")
                });
            }
        }
    }
    let planned_total: usize = fes.iter().map(|f| f.shots.len()).sum();
    inner.step(&format!(
        "sent {planned_total} requests and empty connections"
    ));

    let after = inner.haproxy_after(&before, &fes);
    check_plan_against_haproxy(&mut checks, &before, &after, &fes);
    let want = Expected::from_haproxy(&before, &after, &fes);

    // --- the exporter catches up (the rings connect and flush lazily) -------
    let (text, exp) = inner.scrape_exporter(&want);

    // --- comparisons ----------------------------------------------------------
    compare_requests(&mut checks, &exp, &want, &fes, 15);
    let lines = check_line_counts(&mut checks, &exp, &want, &fes);
    checks.eq_f64(
        &format!("{M_TCP_CONNECTIONS} (one per ring)"),
        exp.sum(M_TCP_CONNECTIONS, &[]),
        2.0,
    );

    // client_ip on a second metric: the IPv6 client must show up as ::1.
    let clients = exp.label_values(M_BYTES_READ, "client_ip");
    println!("  {M_BYTES_READ} client_ip values: {clients:?}");
    checks.check(clients.iter().any(|c| c == "::1"), || {
        format!("{M_BYTES_READ}: no client_ip=\"::1\" series (values: {clients:?})")
    });
    checks.check(exp.sum(M_BYTES_READ, &[("client_ip", "::1")]) > 0.0, || {
        format!("{M_BYTES_READ}{{client_ip=\"::1\"}} is not positive")
    });
    checks.check(
        clients.iter().all(|c| c == "::1" || c == "127.0.0.1"),
        || format!("{M_BYTES_READ}: unexpected client_ip values {clients:?}"),
    );

    check_promtool_and_probes(&mut checks, &text);
    inner.step("checked the scrape");

    // --- soft stop: HAProxy's notices must be ignored, rings must close ------
    let received_udp = lines.received_over(Transport::Udp);
    let received_unix = lines.received_over(Transport::Unix);
    haproxy.signal("USR1").expect("soft-stop HAProxy");
    let exited = haproxy.wait_timeout(Duration::from_secs(15));
    checks.check(exited.is_some(), || {
        "HAProxy did not exit after SIGUSR1 (soft stop)".to_string()
    });
    inner.step(
        "HAProxy soft-stopped (it sends \"Proxy fe_udp stopped ...\" over UDP and \
         \"Proxy fe_unix stopped ...\" to the unix socket)",
    );
    let drained = wait_until(Duration::from_secs(15), || {
        let s = scrape(EXPORTER_WEB).ok()?.1;
        let ok = s.sum(M_RECEIVED, &[("transport", "udp")]) > received_udp
            && s.sum(M_RECEIVED, &[("transport", "unix")]) > received_unix
            && s.sum(M_TCP_CONNECTIONS, &[]) == 0.0;
        ok.then_some(())
    });
    if let Err(t) = drained {
        println!(
            "the exporter did not see HAProxy's stop notices and closed rings: {t}; comparing anyway"
        );
    }
    let (text2, exp2) = scrape(EXPORTER_WEB).unwrap_or_else(|e| panic!("exporter: {e}"));
    let received2 = exp2.sum(M_RECEIVED, &[]);
    let ignored2 = exp2.sum(M_IGNORED, &[]);
    let rejected2 = exp2.sum(M_REJECTED, &[]);
    let counted2 = exp2.sum(M_COUNTED, &[]);
    println!(
        "  after the stop: received={received2} counted={counted2} rejected={rejected2} \
         ignored={ignored2} tcp_connections={}",
        exp2.sum(M_TCP_CONNECTIONS, &[])
    );
    checks.check(
        exp2.sum(M_RECEIVED, &[("transport", "udp")]) > received_udp,
        || "the exporter did not receive HAProxy's \"Proxy fe_udp stopped\" notice".to_string(),
    );
    checks.check(
        exp2.sum(M_RECEIVED, &[("transport", "unix")]) > received_unix,
        || "the exporter did not receive HAProxy's \"Proxy fe_unix stopped\" notice".to_string(),
    );
    checks.eq_f64(
        "lines counted after HAProxy's stop notices",
        counted2,
        lines.counted,
    );
    checks.eq_f64(
        "lines ignored for HAProxy's stop notices (all new lines)",
        ignored2 - lines.ignored,
        received2 - lines.received,
    );
    checks.eq_f64(
        "lines rejected after HAProxy's stop notices",
        rejected2,
        0.0,
    );
    checks.eq_f64(
        "invariant after the stop: received - (counted + rejected + ignored)",
        received2 - (counted2 + rejected2 + ignored2),
        0.0,
    );
    checks.eq_f64(
        &format!("{M_TCP_CONNECTIONS} after HAProxy exited"),
        exp2.sum(M_TCP_CONNECTIONS, &[]),
        0.0,
    );
    if let PromtoolVerdict::Failed { code, output } = promtool_check_metrics(&text2) {
        checks.check(false, || {
            format!("promtool check metrics failed after the stop (exit {code:?}):\n{output}")
        });
    }
    checks.check(exporter.try_wait().is_none(), || {
        "the exporter exited during the test".to_string()
    });
    inner.step("checked the soft stop");
    drop(haproxy);

    // --- the exporter stops on SIGTERM and removes its socket file ----------
    stop_exporter(&mut checks, &mut exporter);
    let socket_left = std::fs::symlink_metadata(&unix_path).is_ok();
    checks.check(!socket_left, || {
        format!("the exporter left its unix socket {unix_path_str} behind at exit")
    });
    inner.step("the exporter exited on SIGTERM and removed its unix socket");
    drop(exporter);
    inner.finish(
        &checks,
        &exp,
        &Listing {
            skip_zero_self_metrics: false,
            also: &[],
        },
    );
}
