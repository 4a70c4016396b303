//! `HLE_SYSLOG_TLS_CONFIG_FILE` end to end with a real HAProxy 2.6: syslog over TLS
//! (RFC 5425) from HAProxy's rings, a client certificate required.
//!
//! `syslog_tls_end_to_end` re-executes this test binary under `unshare -n` to run
//! `syslog_tls_e2e_inner`, which:
//!
//! 1. makes a CA, the exporter's server certificate (localhost) and a client
//!    certificate with the `openssl` CLI, and starts the exporter with a TLS file that
//!    requires and verifies client certificates from that CA;
//! 2. sends a syslog line over plain TCP: the handshake fails (counted), the line is
//!    neither received nor counted;
//! 3. starts HAProxy from `tests/e2e/haproxy_syslog_tls.cfg.in`: `fe_tls` logs through a
//!    ring that verifies the exporter's certificate and presents the client certificate,
//!    `fe_nocert` through a ring that presents none;
//! 4. sends a mix of requests to both, and compares the exporter's
//!    `haproxy_log_requests_total` for `fe_tls` per status class with HAProxy's own
//!    counters, every line accounted for; none of `fe_nocert`'s may show, and its
//!    refused handshakes are counted;
//! 5. stops the exporter with SIGTERM while the ring is connected: it closes the TLS
//!    connection (close_notify, then its FIN) and exits 0.
//!
//! Without `unshare`, `haproxy` or `openssl` the test prints a skip message, or fails
//! when `CI=true`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::haproxy::{
    check_answer, check_line_counts, check_plan_against_haproxy, check_promtool_and_probes,
    compare_requests, exchange, inner_may_run, one_word, render_haproxy_cfg, scrape, stop_exporter,
    Expected, Frontend, Inner, Kind, Listing, Plan, Transport, EXPORTER_TCP, EXPORTER_WEB,
    INNER_RUN_LIMIT, IO_TIMEOUT, M_COUNTED, M_RECEIVED, M_REQUESTS, M_TCP_CONNECTIONS,
};
use support::{run_in_private_netns, wait_until, Checks, NetnsRun};

const OUTER_TEST: &str = "syslog_tls_end_to_end";
const INNER_TEST: &str = "syslog_tls_e2e_inner";
const WORK_DIR_PREFIX: &str = "hle-tls-e2e";

const PORT_TLS: u16 = 8084;
const PORT_NOCERT: u16 = 8085;

const M_HANDSHAKE_FAILURES: &str = "haproxy_log_exporter_syslog_tls_handshake_failures_total";

const HAPROXY_CFG_TEMPLATE: &str = include_str!("e2e/haproxy_syslog_tls.cfg.in");

#[test]
fn syslog_tls_end_to_end() {
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

#[test]
#[ignore = "inner half of syslog_tls_end_to_end: runs only inside its private network namespace"]
fn syslog_tls_e2e_inner() {
    if inner_may_run(INNER_TEST, OUTER_TEST) {
        run_inside_private_netns();
    }
}

fn frontend(name: &'static str, port: u16, plan: Plan) -> Frontend {
    Frontend {
        name,
        format: None,
        port,
        tls: false,
        transport: Transport::Tcp,
        shots: plan.shots(),
    }
}

/// The frontend whose lines reach the exporter over TLS.
fn fe_tls() -> Frontend {
    frontend(
        "fe_tls",
        PORT_TLS,
        Plan {
            ok: 6,
            missing: 2,
            err: 2,
            down: 1,
            badreq: 1,
            empty: 1,
            ok_v6: 0,
            missing_v6: 0,
        },
    )
}

/// The frontend whose ring has no client certificate.
fn fe_nocert() -> Frontend {
    frontend(
        "fe_nocert",
        PORT_NOCERT,
        Plan {
            ok: 3,
            missing: 1,
            err: 0,
            down: 0,
            badreq: 0,
            empty: 0,
            ok_v6: 0,
            missing_v6: 0,
        },
    )
}

/// Sends every shot of `fe`.
fn send(checks: &mut Checks, fe: &Frontend) {
    for shot in &fe.shots {
        let addr = fe.addr(shot.v6);
        if shot.kind != Kind::Empty {
            let got = exchange(addr, &shot.request);
            check_answer(
                checks,
                fe.name,
                addr,
                &shot.request,
                got,
                shot.kind.status(),
            );
        } else if let Err(e) = TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            checks.check(false, || {
                format!("harness: empty connection to {addr}: {e}")
            });
        }
    }
}

/// A syslog line over plain TCP to the TLS listener; the exporter must close the
/// connection. `Ok` once it has.
fn plain_line() -> Result<(), String> {
    let addr = EXPORTER_TCP.parse().map_err(|e| format!("{e}"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let line = "<134>1 2026-01-01T00:00:00Z host haproxy 1 - - 127.0.0.1:1 [01/Jan/2026:00:00:00.000] fe_plain be_app/app1 0/0/0/0/0 200 10 - - ---- 1/1/0/0/0 0/0 \"GET / HTTP/1.1\"\n";
    s.write_all(line.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    // Its answer, if any, is a TLS alert; then the end of the stream (or a reset).
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "the exporter did not close the plain connection: {e}"
                ))
            }
        }
    }
}

fn run_inside_private_netns() {
    let inner = Inner::new(WORK_DIR_PREFIX);
    let dir = &inner.dir;

    // --- certificates and the exporter --------------------------------------
    support::pki::ca(dir, "ca");
    support::pki::leaf(dir, "server", "ca", "serverAuth");
    support::pki::leaf(dir, "client", "ca", "clientAuth");
    let pem = [
        std::fs::read_to_string(dir.join("client.crt")).expect("client.crt"),
        std::fs::read_to_string(dir.join("client.key")).expect("client.key"),
    ]
    .concat();
    std::fs::write(dir.join("client.pem"), pem).expect("client.pem");
    let tls_file = dir.join("syslog-tls.yml");
    std::fs::write(
        &tls_file,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n",
    )
    .expect("write the TLS file");
    inner.step("made the CA, the server and the client certificates");
    let mut exporter = inner.start_exporter(
        &[
            ("HLE_SYSLOG_TLS_CONFIG_FILE", &one_word(&tls_file)),
            ("HLE_SYSLOG_TCP_FRAMING", "octet-count"),
        ],
        " with TLS on its TCP listener",
    );
    let mut checks = Checks::default();

    // --- plain TCP is refused -------------------------------------------------
    let refused = plain_line();
    checks.check(refused.is_ok(), || format!("plain TCP client: {refused:?}"));
    let counted = wait_until(Duration::from_secs(10), || {
        let s = scrape(EXPORTER_WEB).ok()?.1;
        (s.sum(M_HANDSHAKE_FAILURES, &[]) >= 1.0 && s.sum(M_TCP_CONNECTIONS, &[]) == 0.0)
            .then_some(s)
    });
    match counted {
        Ok(s) => {
            checks.eq_f64(
                &format!("{M_HANDSHAKE_FAILURES} after the plain client"),
                s.sum(M_HANDSHAKE_FAILURES, &[]),
                1.0,
            );
            checks.eq_f64(
                "lines received from the plain client",
                s.sum(M_RECEIVED, &[]),
                0.0,
            );
            checks.eq_f64(
                "lines counted from the plain client",
                s.sum(M_COUNTED, &[]),
                0.0,
            );
        }
        Err(t) => checks.check(false, || {
            format!("the plain client's handshake failure was not counted: {t}")
        }),
    }
    inner.step("a plain TCP client was refused");

    // --- HAProxy over TLS ------------------------------------------------------
    let cfg = render_haproxy_cfg(
        HAPROXY_CFG_TEMPLATE,
        &[
            ("@CA_FILE@", &one_word(&dir.join("ca.crt"))),
            ("@CLIENT_PEM@", &one_word(&dir.join("client.pem"))),
            ("@PORT_TLS@", &PORT_TLS.to_string()),
            ("@PORT_NOCERT@", &PORT_NOCERT.to_string()),
        ],
    );
    let (haproxy, before) = inner.start_haproxy(&cfg);
    let fes = [fe_tls()];
    let nocert = fe_nocert();
    send(&mut checks, &fes[0]);
    send(&mut checks, &nocert);
    inner.step("sent the requests");

    let after = inner.haproxy_after(&before, &fes);
    check_plan_against_haproxy(&mut checks, &before, &after, &fes);
    let want = Expected::from_haproxy(&before, &after, &fes);
    let (text, exp) = inner.scrape_exporter(&want);

    // compare_requests also fails on any series of a frontend not in `fes`: fe_nocert.
    compare_requests(&mut checks, &exp, &want, &fes, 10);
    check_line_counts(&mut checks, &exp, &want, &fes);
    checks.eq_f64(
        &format!("{M_REQUESTS}{{frontend_name=\"fe_nocert\"}}"),
        exp.sum(M_REQUESTS, &[("frontend_name", "fe_nocert")]),
        0.0,
    );
    // The ring with its certificate, and perhaps one of ring_nocert's attempts, which
    // holds a connection until its handshake fails.
    let open = exp.sum(M_TCP_CONNECTIONS, &[]);
    checks.check((1.0..=2.0).contains(&open), || {
        format!("{M_TCP_CONNECTIONS}: {open}, want ring_tls's (and at most one handshaking)")
    });
    // The plain client's, and at least one of the ring without a certificate.
    let failures = exp.sum(M_HANDSHAKE_FAILURES, &[]);
    checks.check(failures >= 2.0, || {
        format!("{M_HANDSHAKE_FAILURES}: {failures}, want the plain client's and ring_nocert's")
    });
    check_promtool_and_probes(&mut checks, &text);
    inner.step("checked the scrape");

    // --- SIGTERM with the ring connected over TLS ------------------------------
    stop_exporter(&mut checks, &mut exporter);
    inner.step("the exporter exited on SIGTERM");
    drop(haproxy);
    drop(exporter);
    inner.finish(
        &checks,
        &exp,
        &Listing {
            skip_zero_self_metrics: true,
            also: &[],
        },
    );
}
