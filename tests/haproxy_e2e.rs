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

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    find_program, has_placeholder, http_get, inside_private_netns, promtool_check_metrics,
    run_in_private_netns, scrape_metrics, tail_file, wait_until, Checks, ChildGuard, NetnsRun,
    PromtoolVerdict, Samples, TempDir, WORK_DIR_VAR,
};

/// Name of the inner test, run by the outer one inside the namespace.
const INNER_TEST: &str = "haproxy_e2e_inner";
/// The whole inner run must finish within this time.
const INNER_RUN_LIMIT: Duration = Duration::from_secs(240);

const EXPORTER_UDP: &str = "127.0.0.1:5140";
const EXPORTER_TCP: &str = "127.0.0.1:5141";
const EXPORTER_WEB: &str = "127.0.0.1:9129";
/// The exporter's unix datagram socket, created inside the work directory.
const EXPORTER_UNIX_NAME: &str = "exporter-log.sock";
/// `sun_path` holds 108 bytes, the terminating NUL included.
const UNIX_PATH_MAX: usize = 107;

const PORT_UDP: u16 = 8080;
const PORT_RING_LEGACY: u16 = 8081;
const PORT_RING_OCTET: u16 = 8082;
const PORT_UNIX: u16 = 8083;
const PORT_APP: u16 = 8090;
const PORT_DEAD: u16 = 8099;
const PORT_STATS: u16 = 8405;

const HAPROXY_CFG_TEMPLATE: &str = include_str!("e2e/haproxy.cfg.in");

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

const IO_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Outer test: re-executes this binary in a private network namespace
// ---------------------------------------------------------------------------

#[test]
fn haproxy_end_to_end() {
    run_in_private_netns(&NetnsRun {
        outer: "haproxy_end_to_end",
        inner: INNER_TEST,
        tools: &[("ip", "iproute2"), ("haproxy", "haproxy")],
        work_dir_prefix: "hle-e2e",
        limit: INNER_RUN_LIMIT,
    });
}

// ---------------------------------------------------------------------------
// Inner test: everything on loopback inside the namespace
// ---------------------------------------------------------------------------

#[test]
#[ignore = "inner half of haproxy_end_to_end: runs only inside its private network namespace"]
fn haproxy_e2e_inner() {
    if !inside_private_netns() {
        eprintln!(
            "{INNER_TEST}: nothing to do outside the private network namespace; \
             run `haproxy_end_to_end` instead"
        );
        return;
    }
    run_inside_private_netns();
}

/// The traffic one logging frontend receives. Counts differ per frontend so
/// that lines attributed to the wrong frontend cannot go unnoticed.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// 200 from the answering frontend (several methods and paths).
    ok: u32,
    /// 404 (`/missing`).
    missing: u32,
    /// 500 (`/err`).
    err: u32,
    /// 503 from the dead server (`/down`).
    down: u32,
    /// 400 `<BADREQ>` PR-- (garbage request).
    badreq: u32,
    /// 400 `<BADREQ>` CR-- (connection opened and closed without a request).
    empty: u32,
    /// 200 and 404 from the IPv6 client ([::1]).
    ok_v6: u32,
    missing_v6: u32,
}

impl Plan {
    fn total(&self) -> u32 {
        self.ok
            + self.missing
            + self.err
            + self.down
            + self.badreq
            + self.empty
            + self.ok_v6
            + self.missing_v6
    }

    fn by_class(&self) -> BTreeMap<&'static str, u32> {
        let mut m: BTreeMap<&'static str, u32> = STATUS_CLASSES.iter().map(|c| (*c, 0)).collect();
        *m.get_mut("2xx").unwrap() = self.ok + self.ok_v6;
        *m.get_mut("4xx").unwrap() = self.missing + self.missing_v6 + self.badreq + self.empty;
        *m.get_mut("5xx").unwrap() = self.err + self.down;
        m
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
    Unix,
}

struct Frontend {
    name: &'static str,
    port: u16,
    transport: Transport,
    plan: Plan,
}

fn frontends() -> Vec<Frontend> {
    vec![
        Frontend {
            name: "fe_udp",
            port: PORT_UDP,
            transport: Transport::Udp,
            plan: Plan {
                ok: 3,
                missing: 2,
                err: 1,
                down: 1,
                badreq: 1,
                empty: 1,
                ok_v6: 2,
                missing_v6: 1,
            },
        },
        Frontend {
            name: "fe_unix",
            port: PORT_UNIX,
            transport: Transport::Unix,
            plan: Plan {
                ok: 6,
                missing: 1,
                err: 3,
                down: 2,
                badreq: 2,
                empty: 1,
                ok_v6: 0,
                missing_v6: 0,
            },
        },
        Frontend {
            name: "fe_ring_legacy",
            port: PORT_RING_LEGACY,
            transport: Transport::Tcp,
            plan: Plan {
                ok: 4,
                missing: 1,
                err: 2,
                down: 1,
                badreq: 1,
                empty: 1,
                ok_v6: 0,
                missing_v6: 0,
            },
        },
        Frontend {
            name: "fe_ring_octet",
            port: PORT_RING_OCTET,
            transport: Transport::Tcp,
            plan: Plan {
                ok: 5,
                missing: 3,
                err: 1,
                down: 2,
                badreq: 2,
                empty: 1,
                ok_v6: 0,
                missing_v6: 0,
            },
        },
    ]
}

fn render_haproxy_cfg(unix_log_path: &str) -> String {
    let cfg = HAPROXY_CFG_TEMPLATE
        .replace("@UDP_LOG_ADDR@", EXPORTER_UDP)
        .replace("@TCP_LOG_ADDR@", EXPORTER_TCP)
        .replace("@UNIX_LOG_PATH@", unix_log_path)
        .replace("@PORT_UDP@", &PORT_UDP.to_string())
        .replace("@PORT_UNIX@", &PORT_UNIX.to_string())
        .replace("@PORT_RING_LEGACY@", &PORT_RING_LEGACY.to_string())
        .replace("@PORT_RING_OCTET@", &PORT_RING_OCTET.to_string())
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

/// HAProxy's count of log lines it could not send (a full unix socket
/// queue, for one).
const H_DROPPED_LOGS: &str = "haproxy_process_dropped_logs_total";

fn haproxy_dropped_logs_delta(before: &Samples, after: &Samples) -> f64 {
    after.sum(H_DROPPED_LOGS, &[]) - before.sum(H_DROPPED_LOGS, &[])
}

fn haproxy_requests_delta(before: &Samples, after: &Samples, fe: &str) -> f64 {
    let f = [("proxy", fe)];
    after.sum("haproxy_frontend_http_requests_total", &f)
        - before.sum("haproxy_frontend_http_requests_total", &f)
}

// Exporter metric names.
const M_REQUESTS: &str = "haproxy_log_requests_total";
const M_BYTES_READ: &str = "haproxy_log_bytes_read_total";
const M_RECEIVED: &str = "haproxy_log_exporter_lines_received_total";
const M_COUNTED: &str = "haproxy_log_exporter_lines_counted_total";
const M_REJECTED: &str = "haproxy_log_exporter_lines_rejected_total";
const M_IGNORED: &str = "haproxy_log_exporter_lines_ignored_total";
const M_TCP_CONNECTIONS: &str = "haproxy_log_exporter_tcp_connections";

fn self_metrics_summary(s: &Samples) -> String {
    s.samples
        .iter()
        .filter(|x| {
            x.name.starts_with("haproxy_log_exporter_")
                || x.name == M_REQUESTS
                || x.name == M_BYTES_READ
        })
        .map(|x| format!("    {x}"))
        .collect::<Vec<_>>()
        .join("\n")
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
            own_dir = TempDir::new("hle-e2e").expect("temp dir");
            own_dir.path().to_path_buf()
        }
    };
    let exporter_log = dir.join("exporter.log");
    let haproxy_log = dir.join("haproxy.log");
    let cfg_path = dir.join("haproxy.cfg");
    let unix_path = dir.join(EXPORTER_UNIX_NAME);
    // The same path goes into the exporter's environment and HAProxy's config,
    // where it must be one word.
    let unix_path_str = unix_path
        .to_str()
        .filter(|p| !p.contains(char::is_whitespace) && !p.contains(['"', '\\', '#']))
        .unwrap_or_else(|| {
            panic!(
                "the unix socket path {} cannot go into HAProxy's config as is",
                unix_path.display()
            )
        })
        .to_string();
    assert!(
        unix_path_str.len() <= UNIX_PATH_MAX,
        "the unix socket path {unix_path_str:?} is {} bytes, over the {UNIX_PATH_MAX} a \
         socket address holds; use a shorter TMPDIR",
        unix_path_str.len()
    );

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
        .env("HLE_SYSLOG_UNIX_PATH", &unix_path_str)
        .env("HLE_WEB_LISTEN_ADDR", EXPORTER_WEB)
        .env("HLE_LOG_LEVEL", "info")
        .env("RUST_BACKTRACE", "1")
        .env("HLE_REQUESTS_TOTAL_LABELS", "frontend_name,status_class")
        .env("HLE_BYTES_READ_TOTAL_LABELS", "client_ip")
        .stdin(Stdio::null())
        .stdout(exporter_log_file.try_clone().expect("clone log file"))
        .stderr(exporter_log_file);
    let mut exporter = ChildGuard::spawn("exporter", &mut cmd).expect("spawn the exporter");
    step("exporter started; waiting for /-/ready");
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
            tail_file(&exporter_log, 40)
        ),
    }
    step("exporter's unix socket is in place (mode 0660)");

    // --- HAProxy ------------------------------------------------------------
    std::fs::write(&cfg_path, render_haproxy_cfg(&unix_path_str)).expect("write haproxy.cfg");
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
        let send = |addr: SocketAddr, req: &[u8], want: u16, checks: &mut Checks| {
            let got = exchange(addr, req);
            checks.check(matches!(got, Ok(status) if status == want), || {
                format!(
                    "harness: {} {addr} {:?} answered {got:?}, expected {want}",
                    fe.name,
                    first_line(req)
                )
            });
        };
        for i in 0..fe.plan.ok {
            send(v4, &ok_request(i), 200, &mut checks);
        }
        for i in 0..fe.plan.missing {
            send(v4, &get(&format!("/missing/{i}?q={i}")), 404, &mut checks);
        }
        for i in 0..fe.plan.err {
            send(v4, &get(&format!("/err/{i}")), 500, &mut checks);
        }
        for i in 0..fe.plan.down {
            send(v4, &get(&format!("/down/{i}")), 503, &mut checks);
        }
        for _ in 0..fe.plan.badreq {
            send(v4, b"BAD\x01REQUEST\r\n\r\n", 400, &mut checks);
        }
        for _ in 0..fe.plan.empty {
            match TcpStream::connect_timeout(&v4, IO_TIMEOUT) {
                Ok(s) => drop(s),
                Err(e) => checks.check(false, || format!("harness: empty connection to {v4}: {e}")),
            }
        }
        for i in 0..fe.plan.ok_v6 {
            send(v6, &ok_request(i), 200, &mut checks);
        }
        for i in 0..fe.plan.missing_v6 {
            send(v6, &get(&format!("/missing/v6/{i}")), 404, &mut checks);
        }
    }
    let planned_total: u32 = fes.iter().map(|f| f.plan.total()).sum();
    step(&format!(
        "sent {planned_total} requests and empty connections"
    ));

    // HAProxy's counters settle once every stream has ended (the empty
    // connections end asynchronously).
    let settled = wait_until(Duration::from_secs(15), || {
        let after = scrape(&stats_addr()).ok()?.1;
        let done = fes.iter().all(|fe| {
            let want = f64::from(fe.plan.total());
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
        let want = f64::from(fe.plan.total());
        let got = haproxy_requests_delta(&before, &after, fe.name);
        checks.check(got == want, || {
            format!(
                "harness: HAProxy counted {got} requests on {} but the plan sent {want}",
                fe.name
            )
        });
        for (class, n) in fe.plan.by_class() {
            let got = haproxy_class_delta(&before, &after, fe.name, class);
            checks.check(got == f64::from(n), || {
                format!(
                    "harness: HAProxy counted {got} {class} on {} but the plan expects {n}",
                    fe.name
                )
            });
        }
    }

    // A line HAProxy could not send (the unix socket's queue full, say) would
    // show up below as a confusing mismatch: name it here.
    let dropped = haproxy_dropped_logs_delta(&before, &after);
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
    let want_unix = fe_lines(Transport::Unix);
    let want_counted = want_udp + want_tcp + want_unix;

    // --- the exporter catches up (the rings connect and flush lazily) -------
    let caught_up = wait_until(Duration::from_secs(20), || {
        let s = scrape(EXPORTER_WEB).ok()?.1;
        let ok = s.sum(M_COUNTED, &[]) >= want_counted
            && s.sum(M_RECEIVED, &[("transport", "udp")]) >= want_udp
            && s.sum(M_RECEIVED, &[("transport", "tcp")]) >= want_tcp
            && s.sum(M_RECEIVED, &[("transport", "unix")]) >= want_unix;
        ok.then_some(())
    });
    if let Err(t) = caught_up {
        println!("the exporter did not reach the expected counts: {t}; comparing anyway");
    }
    let (text, exp) = scrape(EXPORTER_WEB).unwrap_or_else(|e| panic!("exporter: {e}"));
    step("scraped the exporter");

    // --- comparisons ----------------------------------------------------------
    println!("  frontend        class  haproxy  exporter");
    for fe in &fes {
        for class in STATUS_CLASSES {
            let want = expected[&(fe.name, class)];
            let got = exp.sum(
                M_REQUESTS,
                &[("frontend_name", fe.name), ("status_class", class)],
            );
            println!("  {:<15} {class:<5}  {want:>7}  {got:>8}", fe.name);
            checks.eq_f64(
                &format!(
                    "{M_REQUESTS}{{frontend_name={:?},status_class={class:?}}}",
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

    let received_udp = exp.sum(M_RECEIVED, &[("transport", "udp")]);
    let received_tcp = exp.sum(M_RECEIVED, &[("transport", "tcp")]);
    let received_unix = exp.sum(M_RECEIVED, &[("transport", "unix")]);
    let received = exp.sum(M_RECEIVED, &[]);
    let counted = exp.sum(M_COUNTED, &[]);
    let rejected = exp.sum(M_REJECTED, &[]);
    let ignored = exp.sum(M_IGNORED, &[]);
    println!(
        "  exporter: received udp={received_udp} tcp={received_tcp} unix={received_unix} \
         counted={counted} rejected={rejected} ignored={ignored}; \
         expected udp={want_udp} tcp={want_tcp} unix={want_unix}"
    );
    checks.eq_f64(
        &format!("{M_RECEIVED}{{transport=\"udp\"}} (fe_udp's lines)"),
        received_udp,
        want_udp,
    );
    checks.eq_f64(
        &format!("{M_RECEIVED}{{transport=\"tcp\"}} (the two ring frontends' lines)"),
        received_tcp,
        want_tcp,
    );
    checks.eq_f64(
        &format!("{M_RECEIVED}{{transport=\"unix\"}} (fe_unix's lines)"),
        received_unix,
        want_unix,
    );
    checks.eq_f64(
        &format!("{M_RECEIVED} (all transports)"),
        received,
        want_counted,
    );
    checks.eq_f64(M_COUNTED, counted, want_counted);
    checks.eq_f64(
        "invariant: received - (counted + rejected + ignored)",
        received - (counted + rejected + ignored),
        0.0,
    );
    checks.eq_f64(M_REJECTED, rejected, 0.0);
    checks.check(exp.has(M_RECEIVED) && exp.has(M_COUNTED), || {
        "self-metrics missing from the scrape".to_string()
    });
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

    // promtool and the other endpoints.
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
    step("checked the scrape");

    // --- soft stop: HAProxy's notices must be ignored, rings must close ------
    haproxy.signal("USR1").expect("soft-stop HAProxy");
    let exited = haproxy.wait_timeout(Duration::from_secs(15));
    checks.check(exited.is_some(), || {
        "HAProxy did not exit after SIGUSR1 (soft stop)".to_string()
    });
    step(
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
        counted,
    );
    checks.eq_f64(
        "lines ignored for HAProxy's stop notices (all new lines)",
        ignored2 - ignored,
        received2 - received,
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
    step("checked the soft stop");
    drop(haproxy);

    // --- the exporter stops on SIGTERM and removes its socket file ----------
    exporter.signal("TERM").expect("SIGTERM the exporter");
    let exporter_exit = exporter.wait_timeout(Duration::from_secs(15));
    checks.check(exporter_exit.is_some_and(|st| st.success()), || {
        format!("the exporter's exit after SIGTERM: {exporter_exit:?}, want status 0")
    });
    let socket_left = std::fs::symlink_metadata(&unix_path).is_ok();
    checks.check(!socket_left, || {
        format!("the exporter left its unix socket {unix_path_str} behind at exit")
    });
    step("the exporter exited on SIGTERM and removed its unix socket");
    drop(exporter);
    if !checks.failures.is_empty() {
        panic!(
            "{} of {} checks failed:\n  - {}\n\nexporter series (first scrape):\n{}\n\n\
             exporter log (tail):\n{}\n\nHAProxy log (tail):\n{}",
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

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: e2e.test\r\nUser-Agent: e2e\r\nConnection: close\r\n\r\n")
        .into_bytes()
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
    let line = first_line(&buf);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {line:?}"))
}
