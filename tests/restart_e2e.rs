//! End to end with a real HAProxy 2.6: the exporter restarted under a steady
//! stream of requests loses no line and counts none twice.
//!
//! `restart_end_to_end` re-executes this test binary under `unshare -n` (a
//! private network namespace, so the fixed loopback ports cannot clash with
//! anything else on the machine) to run `restart_e2e_inner`, which:
//!
//! 1. starts the exporter (TCP 127.0.0.1:5141, web 127.0.0.1:9129, JSON log
//!    with the TCP source's connection messages) and HAProxy from
//!    `tests/e2e/haproxy_restart.cfg.in`: two frontends, each logging through
//!    a ring to the exporter, one with newline framing (rfc3164 header), one
//!    with octet counting (rfc5424 header);
//! 2. sends requests to both frontends without pause from one client thread
//!    each (200, 404, 500, 503, `<BADREQ>`, and to one an empty connection),
//!    until the end of step 5;
//! 3. once the exporter has counted lines of both frontends, scrapes it a
//!    last time and stops it (SIGSTOP) until its kernel holds unread lines
//!    of both rings: the exporter is behind, as under load; then SIGTERM and
//!    SIGCONT. It must exit 0, both rings must have closed their end in
//!    answer to its FIN (`closed by peer` in its log), and its last line is
//!    the summary of what it counted;
//! 4. starts a second exporter on the same addresses; the rings reconnect
//!    by themselves and send what the frontends logged meanwhile;
//! 5. once the second exporter has counted lines of both frontends, stops the
//!    traffic and waits for HAProxy's counters to settle and the second
//!    exporter to catch up;
//! 6. checks that the first exporter's summary plus the second's scrape
//!    count exactly HAProxy's responses (`haproxy_frontend_http_responses_total`
//!    deltas) over both frontends, that no line was rejected (none cut short),
//!    that per frontend and status class the first exporter's last scrape
//!    plus the second's is never over HAProxy's count and falls short by
//!    exactly the lines the first counted after its last scrape, and that
//!    HAProxy dropped no log line (`haproxy_process_dropped_logs_total`);
//! 7. stops the second exporter with SIGTERM: it must exit 0, and its summary
//!    must agree with its scrape.
//!
//! Where lines could go: a line HAProxy has taken out of its ring for a
//! connection is gone if that connection is reset. A ring answers the FIN by
//! sending what it holds and closing its end, so the exporter that reads to
//! that close loses nothing; and it connects again within a millisecond. Had
//! the old exporter's listener still been open then, that connection would
//! have been completed in its accept queue and reset when the listener closed,
//! with the lines HAProxy had sent on it: hence the exporter closes its
//! listener before its first FIN. The gap between the two exporters is bridged
//! by the ring, which drops a line only when it is full.
//!
//! Without `unshare`, `ip` or `haproxy` the test prints a skip message, or
//! fails when `CI=true`.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::haproxy::{
    check_plan_against_haproxy, exchange, first_line, get, haproxy_class_delta,
    haproxy_dropped_logs_delta, inner_may_run, ok_request, render_haproxy_cfg, scrape, Expected,
    Frontend, Inner, Kind, Listing, Shot, Transport, BAD_REQUEST, EXPORTER_TCP, EXPORTER_WEB,
    INNER_RUN_LIMIT, IO_TIMEOUT, M_COUNTED, M_IGNORED, M_RECEIVED, M_REJECTED, M_REQUESTS,
    M_TCP_CONNECTIONS, STATUS_CLASSES,
};
use support::{
    json_field as field, run_in_private_netns, tail_file, tcp_sockets, wait_until, Checks,
    ChildGuard, NetnsRun,
};

const OUTER_TEST: &str = "restart_end_to_end";
const INNER_TEST: &str = "restart_e2e_inner";
const WORK_DIR_PREFIX: &str = "hle-restart";

const PORT_RING_LEGACY: u16 = 8081;
const PORT_RING_OCTET: u16 = 8082;

/// Each ring holds this many bytes: the lines of several seconds of this
/// traffic, far more than the frontends log while the exporter restarts.
const RING_SIZE: usize = 8 * 1024 * 1024;

const HAPROXY_CFG_TEMPLATE: &str = include_str!("e2e/haproxy_restart.cfg.in");

/// The exporter logs the TCP source's connection messages too: how each ring
/// connection ended.
const LOG_LEVEL: &str = "info,haproxy_log_exporter::ingest::tcp=debug";

/// Lines each exporter counts of each frontend before the next step: the
/// restart happens in the middle of the traffic.
const LINES_PER_STEP: f64 = 300.0;

/// Unread bytes the stopped first exporter's kernel must hold on each ring
/// connection before SIGTERM: some dozens of lines.
const UNREAD_BYTES: u64 = 8 * 1024;

/// How long the steps may wait for the traffic, the exporter and HAProxy.
const WAIT: Duration = Duration::from_secs(20);

/// The second exporter has caught up once it has received no line for this long
/// after the traffic (or has all the lines).
const STILL: Duration = Duration::from_secs(2);

#[test]
fn restart_end_to_end() {
    run_in_private_netns(&NetnsRun {
        outer: OUTER_TEST,
        inner: INNER_TEST,
        tools: &[("ip", "iproute2"), ("haproxy", "haproxy")],
        work_dir_prefix: WORK_DIR_PREFIX,
        limit: INNER_RUN_LIMIT,
    });
}

#[test]
#[ignore = "inner half of restart_end_to_end: runs only inside its private network namespace"]
fn restart_e2e_inner() {
    if inner_may_run(INNER_TEST, OUTER_TEST) {
        run_inside_private_netns();
    }
}

// ---------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------

/// One client thread sends `cycle` round and round to a frontend, until told
/// to stop; its shots are what it sent.
struct Client {
    name: &'static str,
    port: u16,
    thread: JoinHandle<(Vec<Shot>, Vec<String>)>,
}

fn shot(kind: Kind, i: u32) -> Shot {
    let request = match kind {
        Kind::Ok => ok_request(i),
        Kind::Missing => get(&format!("/missing/{i}?q={i}")),
        Kind::Err => get(&format!("/err/{i}")),
        Kind::Down => get(&format!("/down/{i}")),
        Kind::BadReq => BAD_REQUEST.to_vec(),
        Kind::Empty => Vec::new(),
    };
    Shot {
        kind,
        v6: false,
        sni: false,
        request,
        labels: None,
    }
}

fn start_client(
    name: &'static str,
    port: u16,
    cycle: &'static [Kind],
    stop: Arc<AtomicBool>,
) -> Client {
    let thread = std::thread::spawn(move || {
        let addr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut shots = Vec::new();
        let mut failures = Vec::new();
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let s = shot(cycle[i as usize % cycle.len()], i);
            i += 1;
            let answer = if s.kind == Kind::Empty {
                TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                    .map(drop)
                    .map_err(|e| format!("connect: {e}"))
            } else {
                let want = s.kind.status();
                match exchange(addr, &s.request) {
                    Ok(got) if got == want => Ok(()),
                    got => Err(format!("answered {got:?}, expected {want}")),
                }
            };
            match answer {
                // HAProxy counts it, answered or not: keep it in the plan so
                // that the harness check names the difference.
                Ok(()) => shots.push(s),
                Err(e) => {
                    failures.push(format!("harness: {name} {:?}: {e}", first_line(&s.request)));
                    shots.push(s);
                }
            }
        }
        (shots, failures)
    });
    Client { name, port, thread }
}

// ---------------------------------------------------------------------------
// The exporter's log and its sockets
// ---------------------------------------------------------------------------

/// What an exporter's summary line (its last, `stopped`) says it counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    received: u64,
    counted: u64,
    rejected: u64,
    ignored: u64,
}

fn summary(log: &str) -> Result<Summary, String> {
    let last = log
        .lines()
        .last()
        .filter(|l| field(l, "message") == Some("stopped"))
        .ok_or_else(|| "the exporter's last log line is not its summary".to_string())?;
    let count = |name| {
        field(last, name)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in the summary {last:?}"))
    };
    Ok(Summary {
        received: count("lines_received")?,
        counted: count("lines_counted")?,
        rejected: count("lines_rejected")?,
        ignored: count("lines_ignored")?,
    })
}

/// How the exporter's TCP connections ended, from its log: reason -> count.
fn connection_ends(log: &str) -> BTreeMap<String, usize> {
    let mut ends = BTreeMap::new();
    for line in log.lines() {
        if field(line, "message") == Some("tcp connection closed") {
            let reason = field(line, "reason").unwrap_or("?").to_string();
            *ends.entry(reason).or_insert(0) += 1;
        }
    }
    ends
}

/// The unread bytes (`rx_queue` of `/proc/net/tcp`) of each established
/// connection to the exporter's TCP address, the exporter's end.
fn exporter_unread() -> Vec<u64> {
    let local = format!("0100007F:{:04X}", tcp_port());
    tcp_sockets()
        .into_iter()
        // State 01: established.
        .filter(|s| s.local == local && s.state == "01")
        .map(|s| s.rx)
        .collect()
}

fn tcp_port() -> u16 {
    EXPORTER_TCP
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the exporter's TCP port")
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// SIGTERM (and SIGCONT, should it be stopped); the exit status and the time
/// it took.
fn terminate(exporter: &mut ChildGuard) -> (Option<std::process::ExitStatus>, Duration) {
    let signalled = Instant::now();
    exporter.signal("TERM").expect("SIGTERM the exporter");
    exporter.signal("CONT").expect("SIGCONT the exporter");
    let status = exporter.wait_timeout(WAIT);
    (status, signalled.elapsed())
}

// ---------------------------------------------------------------------------
// The inner run
// ---------------------------------------------------------------------------

fn run_inside_private_netns() {
    let inner = Inner::new(WORK_DIR_PREFIX);
    let env = [
        ("HLE_SYSLOG_UDP_ADDR", ""),
        ("HLE_LOG_OUTPUT", "json"),
        ("HLE_LOG_LEVEL", LOG_LEVEL),
    ];
    let mut checks = Checks::default();

    // --- the first exporter and HAProxy ---------------------------------------
    let mut first = inner.start_exporter(&env, " (the first)");
    let cfg = render_haproxy_cfg(
        HAPROXY_CFG_TEMPLATE,
        &[
            ("@RING_SIZE@", &RING_SIZE.to_string()),
            ("@PORT_RING_LEGACY@", &PORT_RING_LEGACY.to_string()),
            ("@PORT_RING_OCTET@", &PORT_RING_OCTET.to_string()),
        ],
    );
    let (_haproxy, before) = inner.start_haproxy(&cfg);

    // --- steady traffic ----------------------------------------------------------
    use Kind as K;
    #[rustfmt::skip]
    static LEGACY: [Kind; 10] = [
        K::Ok, K::Ok, K::Ok, K::Missing, K::Err, K::Down, K::BadReq, K::Ok, K::Missing, K::Empty,
    ];
    #[rustfmt::skip]
    static OCTET: [Kind; 9] = [
        K::Ok, K::Missing, K::Missing, K::Err, K::Err, K::Down, K::Ok, K::BadReq, K::Ok,
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let clients = [
        start_client("fe_ring_legacy", PORT_RING_LEGACY, &LEGACY, stop.clone()),
        start_client("fe_ring_octet", PORT_RING_OCTET, &OCTET, stop.clone()),
    ];
    let traffic_started = Instant::now();
    inner.step("traffic started");

    // The exporter's scrape once it has counted at least `n` lines of each
    // frontend.
    let counted_both = |n: f64| {
        wait_until(WAIT, || {
            let s = scrape(EXPORTER_WEB).ok()?.1;
            let enough = |fe| s.sum(M_REQUESTS, &[("frontend_name", fe)]) >= n;
            (enough("fe_ring_legacy") && enough("fe_ring_octet")).then_some(s)
        })
    };
    let last_first = counted_both(LINES_PER_STEP).unwrap_or_else(|t| {
        panic!(
            "the first exporter did not count {LINES_PER_STEP} lines of each frontend: {t}\n\
             exporter log:\n{}",
            inner.exporter_log_tail()
        )
    });
    inner.step(&format!(
        "the first exporter counted {} lines (its last scrape)",
        last_first.sum(M_COUNTED, &[])
    ));

    // --- the first exporter falls behind, and gets SIGTERM --------------------
    first.signal("STOP").expect("SIGSTOP the exporter");
    let unread = wait_until(WAIT, || {
        let unread = exporter_unread();
        (unread.len() == 2 && unread.iter().all(|&u| u >= UNREAD_BYTES)).then_some(unread)
    });
    let unread = unread.unwrap_or_else(|t| {
        panic!(
            "the stopped exporter's kernel did not hold {UNREAD_BYTES} unread bytes of both \
             rings: {t} (now {:?})",
            exporter_unread()
        )
    });
    inner.step(&format!(
        "the stopped first exporter holds {unread:?} unread bytes; SIGTERM"
    ));
    let (status, took) = terminate(&mut first);
    let stopped_at = Instant::now();
    inner.step(&format!(
        "the first exporter exited ({status:?}) {took:?} after SIGTERM"
    ));
    checks.check(status.is_some_and(|s| s.success()), || {
        format!("the first exporter's exit after SIGTERM: {status:?}, want status 0")
    });
    let first_log_path = inner.dir.join("exporter-1.log");
    std::fs::copy(&inner.exporter_log, &first_log_path).expect("keep the first exporter's log");
    let first_log = read_log(&first_log_path);
    let sum1 = summary(&first_log)
        .unwrap_or_else(|e| panic!("{e}; its log:\n{}", tail_file(&first_log_path, 40)));
    let ends1 = connection_ends(&first_log);
    println!("  first exporter: {sum1:?}; its connections ended: {ends1:?}");
    // The rings answer the exporter's FIN by closing their end: the exporter
    // read all they sent, and did not wait for the peer to go quiet.
    checks.check(
        ends1.get("closed by peer") == Some(&2) && ends1.len() == 1,
        || format!("the first exporter's ring connections ended {ends1:?}, want 2 closed by peer"),
    );
    drop(first);

    // --- the second exporter; the rings reconnect by themselves -------------------
    let mut second = inner.start_exporter(&env, " (the second, on the same addresses)");
    let reconnected = wait_until(WAIT, || {
        let s = scrape(EXPORTER_WEB).ok()?.1;
        (s.sum(M_TCP_CONNECTIONS, &[]) == 2.0).then_some(())
    });
    inner.step(&format!(
        "both rings connected to the second exporter {:?} after the first exited",
        stopped_at.elapsed()
    ));
    checks.check(reconnected.is_ok(), || {
        format!("the rings did not connect to the second exporter: {reconnected:?}")
    });
    let after_restart = counted_both(LINES_PER_STEP);
    checks.check(after_restart.is_ok(), || {
        format!(
            "the second exporter did not count {LINES_PER_STEP} lines of each frontend: \
             {after_restart:?}"
        )
    });

    // --- the traffic ends; HAProxy's counters settle --------------------------------
    stop.store(true, Ordering::Relaxed);
    let mut fes = Vec::new();
    for client in clients {
        let (shots, failures) = client.thread.join().expect("client thread");
        for f in failures {
            checks.check(false, || f);
        }
        fes.push(Frontend {
            name: client.name,
            format: None,
            port: client.port,
            tls: false,
            transport: Transport::Tcp,
            shots,
        });
    }
    let sent: usize = fes.iter().map(|f| f.shots.len()).sum();
    let traffic_took = traffic_started.elapsed();
    inner.step(&format!(
        "sent {sent} requests and empty connections in {traffic_took:?} ({:.0}/s)",
        sent as f64 / traffic_took.as_secs_f64()
    ));
    let after = inner.haproxy_after(&before, &fes);
    check_plan_against_haproxy(&mut checks, &before, &after, &fes);
    let dropped = haproxy_dropped_logs_delta(&before, &after);
    println!("  HAProxy dropped {dropped} log lines");
    let want = Expected::from_haproxy(&before, &after, &fes);

    // --- the second exporter catches up --------------------------------------------
    // Until it has received what the first one did not count, or nothing more for
    // a while: the rings, connected, send at once what they hold.
    let left = want.counted - sum1.counted as f64;
    let mut last_change = (-1.0, Instant::now());
    let caught_up = wait_until(WAIT, || {
        let received = scrape(EXPORTER_WEB).ok()?.1.sum(M_RECEIVED, &[]);
        if received >= left {
            return Some(Ok(()));
        }
        if received != last_change.0 {
            last_change = (received, Instant::now());
        }
        (last_change.1.elapsed() >= STILL).then_some(Err(received))
    });
    match caught_up {
        Ok(Ok(())) => {}
        Ok(Err(received)) => println!(
            "the second exporter received {received} lines, no more for {STILL:?}, of the \
             {left} the first did not count; comparing"
        ),
        Err(t) => {
            println!("the second exporter did not receive {left} lines: {t}; comparing anyway")
        }
    }
    let (_, exp) = scrape(EXPORTER_WEB).unwrap_or_else(|e| panic!("exporter: {e}"));
    inner.step("scraped the second exporter");

    // --- comparisons -----------------------------------------------------------------
    let counted2 = exp.sum(M_COUNTED, &[]);
    let total = sum1.counted as f64 + counted2;
    println!(
        "  HAProxy logged {} lines; the first exporter counted {}, the second {counted2}: \
         {} lost, {} counted twice",
        want.counted,
        sum1.counted,
        (want.counted - total).max(0.0),
        (total - want.counted).max(0.0),
    );
    checks.eq_f64(
        "lines counted by the first exporter (summary) and the second (scrape)",
        total,
        want.counted,
    );
    checks.check(
        sum1.rejected == 0 && sum1.ignored == 0 && sum1.received == sum1.counted,
        || format!("the first exporter rejected or ignored lines: {sum1:?}"),
    );
    checks.eq_f64(M_REJECTED, exp.sum(M_REJECTED, &[]), 0.0);
    checks.eq_f64(M_IGNORED, exp.sum(M_IGNORED, &[]), 0.0);
    checks.eq_f64(M_RECEIVED, exp.sum(M_RECEIVED, &[]), counted2);

    // Per frontend and class: the first exporter's last scrape plus the second
    // exporter's scrape is never above HAProxy's count, and what they miss in all
    // is what the first exporter counted after its last scrape.
    println!("  frontend        class  haproxy  first (last scrape)  second");
    let mut missed = 0.0;
    for fe in &fes {
        for class in STATUS_CLASSES {
            let f = [("frontend_name", fe.name), ("status_class", class)];
            let first_got = last_first.sum(M_REQUESTS, &f);
            let second_got = exp.sum(M_REQUESTS, &f);
            let haproxy = haproxy_class_delta(&before, &after, fe.name, class);
            if haproxy + first_got + second_got > 0.0 {
                println!(
                    "  {:<15} {class:<5}  {haproxy:>7}  {first_got:>19}  {second_got:>6}",
                    fe.name
                );
            }
            checks.check(first_got + second_got <= haproxy, || {
                format!(
                    "{M_REQUESTS}{{frontend_name={:?},status_class={class:?}}}: the first \
                     exporter's last scrape {first_got} and the second's {second_got}, over \
                     HAProxy's {haproxy}",
                    fe.name
                )
            });
            missed += haproxy - first_got - second_got;
        }
    }
    checks.eq_f64(
        "lines the two scrapes miss, against those the first exporter counted after its \
         last scrape",
        missed,
        sum1.counted as f64 - last_first.sum(M_REQUESTS, &[]),
    );
    checks.eq_f64("HAProxy's dropped log lines", dropped, 0.0);
    checks.eq_f64(
        &format!("{M_TCP_CONNECTIONS} of the second exporter"),
        exp.sum(M_TCP_CONNECTIONS, &[]),
        2.0,
    );

    // --- the second exporter stops too -------------------------------------------------
    let (status, took) = terminate(&mut second);
    inner.step(&format!(
        "the second exporter exited ({status:?}) {took:?} after SIGTERM"
    ));
    checks.check(status.is_some_and(|s| s.success()), || {
        format!("the second exporter's exit after SIGTERM: {status:?}, want status 0")
    });
    let second_log = read_log(&inner.exporter_log);
    match summary(&second_log) {
        Ok(sum2) => {
            println!(
                "  second exporter: {sum2:?}; its connections ended: {:?}",
                connection_ends(&second_log)
            );
            checks.eq_f64(
                "the second exporter's summary lines_counted, against its scrape",
                sum2.counted as f64,
                counted2,
            );
            checks.eq_f64(
                "lines counted in the two summaries",
                (sum1.counted + sum2.counted) as f64,
                want.counted,
            );
        }
        Err(e) => checks.check(false, || e),
    }
    drop(second);
    if !checks.failures.is_empty() {
        println!(
            "the first exporter's log (tail):\n{}",
            tail_file(&first_log_path, 40)
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
