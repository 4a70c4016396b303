//! The daemon on ephemeral loopback ports, fed real HAProxy lines over UDP and TCP (both
//! framings), scraped and compared exactly.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use haproxy_log_exporter::{Config, Server};
use prometheus::{Encoder, TextEncoder};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use support::{
    http_get_async, parse_exposition, promtool_check_metrics, wait_until_async, Samples,
};

const WAIT: Duration = Duration::from_secs(10);

const H_EDGE: &[u8] = include_bytes!("fixtures/haproxy/h_edge.log");
const RING_LEGACY: &[u8] = include_bytes!("fixtures/haproxy/f_ring_legacy.tcp");
const RING_OCTET: &[u8] = include_bytes!("fixtures/haproxy/f_ring_octet.tcp");

/// Binds a server on loopback port 0 for every listener, with `vars` on top.
async fn bind(vars: &[(&str, &str)]) -> Server {
    try_bind(vars).await.expect("bind on port 0")
}

/// Like `bind`, but a failure to bind is returned.
async fn try_bind(vars: &[(&str, &str)]) -> Result<Server, haproxy_log_exporter::Error> {
    let mut env: HashMap<String, String> = HashMap::new();
    let port_zero = [
        ("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0"),
        ("HLE_SYSLOG_TCP_ADDR", "127.0.0.1:0"),
        ("HLE_WEB_LISTEN_ADDR", "127.0.0.1:0"),
    ];
    for (key, value) in port_zero.iter().chain(vars) {
        env.insert(key.to_string(), value.to_string());
    }
    let config = Config::from_env(&env).expect("valid test configuration");
    Server::bind(config).await
}

/// A running daemon and how to reach and stop it.
struct Daemon {
    udp: SocketAddr,
    tcp: SocketAddr,
    web: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), haproxy_log_exporter::Error>>,
}

impl Daemon {
    async fn start(vars: &[(&str, &str)]) -> Daemon {
        let server = bind(vars).await;
        let (stop, stopped) = oneshot::channel::<()>();
        let daemon = Daemon {
            udp: server.udp_addr().unwrap(),
            tcp: server.tcp_addr().unwrap(),
            web: server.web_addr().unwrap().to_string(),
            stop: Some(stop),
            task: tokio::spawn(server.run(async {
                let _ = stopped.await;
            })),
        };
        let ready = wait_until_async(WAIT, || async {
            let r = http_get_async(&daemon.web, "/-/ready", WAIT).await.ok()?;
            (r.status == 200).then_some(())
        })
        .await;
        ready.expect("daemon ready");
        daemon
    }

    async fn scrape(&self) -> Samples {
        let response = http_get_async(&self.web, "/metrics", WAIT)
            .await
            .expect("scrape");
        assert_eq!(response.status, 200);
        parse_exposition(&response.text()).expect("valid exposition")
    }

    /// Polls until `received` lines in all arrived, then returns that scrape.
    async fn scrape_after(&self, received: f64) -> Samples {
        let scraped = wait_until_async(WAIT, || async {
            let samples = self.scrape().await;
            let got = lines_total(&samples, "received");
            (got >= received).then_some(samples)
        })
        .await;
        scraped.unwrap_or_else(|e| panic!("{received} lines not received: {e}"))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split_inclusive(|&b| b == b'\n').collect()
}

async fn send_udp(to: SocketAddr, datagrams: &[&[u8]]) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for datagram in datagrams {
        socket.send_to(datagram, to).await.unwrap();
    }
}

/// Sends `data` over one connection in pieces of awkward sizes, then closes it.
async fn send_tcp(to: SocketAddr, data: &[u8], piece: usize) {
    let mut stream = TcpStream::connect(to).await.unwrap();
    for chunk in data.chunks(piece) {
        stream.write_all(chunk).await.unwrap();
        stream.flush().await.unwrap();
    }
    stream.shutdown().await.unwrap();
}

/// Lines received, counted, rejected or ignored, over every transport and reason.
fn lines_total(samples: &Samples, outcome: &str) -> f64 {
    samples.sum(&format!("haproxy_log_exporter_lines_{outcome}_total"), &[])
}

/// Lines rejected for `reason`.
fn rejected_for(samples: &Samples, reason: &str) -> Option<f64> {
    samples.get(
        "haproxy_log_exporter_lines_rejected_total",
        &[("reason", reason)],
    )
}

/// received = counted + rejected + ignored.
fn assert_invariant(samples: &Samples) {
    let received = lines_total(samples, "received");
    let counted = lines_total(samples, "counted");
    let rejected = lines_total(samples, "rejected");
    let ignored = lines_total(samples, "ignored");
    assert_eq!(
        received,
        counted + rejected + ignored,
        "received = counted + rejected + ignored"
    );
}

/// `name{labels} value` lines of one metric, sorted, as the golden files hold them.
fn render(samples: &Samples, name: &str) -> String {
    let mut lines: Vec<String> = samples.find(name, &[]).map(|s| s.to_string()).collect();
    lines.sort();
    lines.join("\n") + "\n"
}

#[tokio::test]
async fn udp_and_both_tcp_framings_are_counted_exactly() {
    let daemon = Daemon::start(&[
        ("HLE_REQUESTS_TOTAL_LABELS", "frontend_name,status_code"),
        ("HLE_BYTES_READ_TOTAL_LABELS", "frontend_name"),
        ("HLE_SESSION_DURATION_SECONDS_LABELS", "frontend_name"),
    ])
    .await;
    let datagrams = lines(H_EDGE);
    send_udp(daemon.udp, &datagrams).await;
    // Pieces of 7 and 13 bytes cut every frame, octet counts included, somewhere.
    tokio::join!(
        send_tcp(daemon.tcp, RING_LEGACY, 7),
        send_tcp(daemon.tcp, RING_OCTET, 13)
    );
    let samples = daemon.scrape_after(23.0 + 15.0 + 15.0).await;

    let received = |t| {
        samples.get(
            "haproxy_log_exporter_lines_received_total",
            &[("transport", t)],
        )
    };
    assert_eq!(received("udp"), Some(23.0));
    assert_eq!(received("tcp"), Some(30.0));
    assert_eq!(lines_total(&samples, "counted"), 53.0);
    assert_invariant(&samples);

    let golden = include_str!("fixtures/daemon/requests_total.prom");
    assert_eq!(render(&samples, "haproxy_log_requests_total"), golden);
    let golden = include_str!("fixtures/daemon/bytes_read_total.prom");
    assert_eq!(render(&samples, "haproxy_log_bytes_read_total"), golden);

    // Histograms: every counted line with a session timer is observed once, in seconds.
    let count = |fe| {
        samples.get(
            "haproxy_log_session_duration_seconds_count",
            &[("frontend_name", fe)],
        )
    };
    assert_eq!(count("fe_abort"), Some(5.0));
    let sum = samples
        .get(
            "haproxy_log_session_duration_seconds_sum",
            &[("frontend_name", "fe_abort")],
        )
        .unwrap();
    assert!(
        (sum - (0.401 + 0.502 + 0.514 + 0.101 + 0.500)).abs() < 1e-9,
        "{sum}"
    );
    let le = |le| {
        samples.get(
            "haproxy_log_session_duration_seconds_bucket",
            &[("frontend_name", "fe_abort"), ("le", le)],
        )
    };
    assert_eq!(le("0.25"), Some(1.0));
    assert_eq!(le("0.5"), Some(3.0));
    assert_eq!(le("+Inf"), Some(5.0));
    // Aborts: 4 `<BADREQ>` lines (TR, Tc and Tr all -1), 3 refused connections to the
    // dead server (Tc and Tr -1: one in h_edge, one in each ring capture) and 3 `sH--`
    // server timeouts (Tr -1).
    assert_eq!(samples.sum("haproxy_log_request_abort_total", &[]), 4.0);
    assert_eq!(
        samples.sum("haproxy_log_request_pre_queue_abort_total", &[]),
        4.0
    );
    assert_eq!(
        samples.sum("haproxy_log_request_pre_server_connection_abort_total", &[]),
        7.0
    );
    assert_eq!(
        samples.sum("haproxy_log_request_response_abort_total", &[]),
        10.0
    );

    let response = http_get_async(&daemon.web, "/metrics", WAIT).await.unwrap();
    assert_eq!(
        response.header("content-type"),
        Some(TextEncoder::new().format_type())
    );
    let verdict = promtool_check_metrics(&response.text());
    assert!(
        matches!(
            verdict,
            support::PromtoolVerdict::Passed | support::PromtoolVerdict::Skipped(_)
        ),
        "{verdict:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn oversize_frames_are_discarded_and_the_connection_goes_on() {
    let daemon = Daemon::start(&[("HLE_MAX_LINE_BYTES", "300")]).await;
    let good = lines(H_EDGE)[1]; // 200 bytes with its header
    assert!(good.len() < 300);
    let long = format!("<134>{}\n", "x".repeat(400));
    let long_octets = format!("400 {}", "y".repeat(400));
    let good_octets = format!(
        "{} {}",
        good.len() - 1,
        std::str::from_utf8(&good[..good.len() - 1]).unwrap()
    );
    // A connection keeps its framing: one newline-framed, one octet-counted.
    let newline_framed = [good, long.as_bytes(), good, good].concat();
    let octet_counted = [
        good_octets.as_bytes(),
        long_octets.as_bytes(),
        good_octets.as_bytes(),
    ]
    .concat();
    send_tcp(daemon.tcp, &newline_framed, 64).await;
    send_tcp(daemon.tcp, &octet_counted, 64).await;
    send_udp(daemon.udp, &[long.as_bytes(), good]).await;

    let samples = daemon.scrape_after(9.0).await;
    assert_eq!(
        samples.get(
            "haproxy_log_exporter_oversize_frames_total",
            &[("transport", "tcp")]
        ),
        Some(2.0)
    );
    assert_eq!(
        samples.get(
            "haproxy_log_exporter_oversize_frames_total",
            &[("transport", "udp")]
        ),
        Some(1.0)
    );
    assert_eq!(rejected_for(&samples, "oversize_frame"), Some(3.0));
    assert_eq!(lines_total(&samples, "counted"), 6.0);
    assert_invariant(&samples);
    daemon.stop().await;
}

#[tokio::test]
async fn notices_are_ignored_and_garbage_is_rejected_by_reason() {
    let daemon = Daemon::start(&[]).await;
    let datagrams: [&[u8]; 6] = [
        b"<133>Nov 25 02:09:39 haproxy[1]: Proxy fe_http started.\n",
        b"<129>Nov 25 02:09:39 haproxy[1]: Server be_app/app1 is DOWN, reason: Layer4 timeout.\n",
        b"<134>Nov 25 02:09:39 haproxy[1]: 127.0.0.1:1 [25/Nov/2026:02:09:39.343] fe be/s 0/0/x/0/0 200 1 - - ---- 1/1/1/1/0 0/0 \"GET / HTTP/1.1\"\n",
        b"\x00\xff\xfe garbage\n",
        b"\n",
        lines(H_EDGE)[0],
    ];
    send_udp(daemon.udp, &datagrams).await;
    let samples = daemon.scrape_after(6.0).await;
    let ignored = |r| samples.get("haproxy_log_exporter_lines_ignored_total", &[("reason", r)]);
    let rejected = |r| {
        samples.get(
            "haproxy_log_exporter_lines_rejected_total",
            &[("reason", r)],
        )
    };
    assert_eq!(ignored("proxy_event"), Some(1.0));
    assert_eq!(ignored("server_event"), Some(1.0));
    assert_eq!(rejected("bad_timers"), Some(1.0));
    assert_eq!(rejected("unrecognized_format"), Some(1.0));
    assert_eq!(rejected("empty_line"), Some(1.0));
    assert_eq!(lines_total(&samples, "counted"), 1.0);
    assert_invariant(&samples);
    daemon.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_counted() {
    let daemon = Daemon::start(&[("HLE_TCP_MAX_CONNECTIONS", "1")]).await;
    let mut first = TcpStream::connect(daemon.tcp).await.unwrap();
    first.write_all(lines(H_EDGE)[0]).await.unwrap();
    daemon.scrape_after(1.0).await;

    let mut second = TcpStream::connect(daemon.tcp).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut second, &mut buf));
    assert_eq!(read.await.expect("closed by the exporter").unwrap_or(0), 0);
    let samples = daemon.scrape().await;
    assert_eq!(
        samples.get("haproxy_log_exporter_tcp_connections_refused_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        samples.get("haproxy_log_exporter_tcp_connections", &[]),
        Some(1.0)
    );

    // The first connection is still served.
    first.write_all(lines(H_EDGE)[1]).await.unwrap();
    let samples = daemon.scrape_after(2.0).await;
    assert_eq!(lines_total(&samples, "counted"), 2.0);
    daemon.stop().await;
}

#[tokio::test]
async fn unix_socket_replaces_a_stale_socket_and_counts_lines() {
    let dir = support::TempDir::new("hle-unix").unwrap();
    let path = dir.path().join("log.sock");
    // A socket file left by a killed process: bound once, never removed.
    drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());
    let path_var = path.to_str().unwrap();
    let daemon = Daemon::start(&[("HLE_SYSLOG_UNIX_PATH", path_var)]).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);

    // Async: a unix datagram queue holds only a few datagrams, and the exporter runs on
    // this same thread.
    let sender = tokio::net::UnixDatagram::unbound().unwrap();
    for datagram in lines(H_EDGE) {
        sender.send_to(datagram, &path).await.unwrap();
    }
    let samples = daemon.scrape_after(23.0).await;
    let received = samples.get(
        "haproxy_log_exporter_lines_received_total",
        &[("transport", "unix")],
    );
    assert_eq!(received, Some(23.0));
    assert_eq!(lines_total(&samples, "counted"), 23.0);
    daemon.stop().await;
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[tokio::test]
async fn unix_socket_never_replaces_a_live_socket() {
    let dir = support::TempDir::new("hle-unix").unwrap();
    let path = dir.path().join("log.sock");
    let path_var = path.to_str().unwrap();
    let first = Daemon::start(&[("HLE_SYSLOG_UNIX_PATH", path_var)]).await;
    let second = try_bind(&[("HLE_SYSLOG_UNIX_PATH", path_var)]).await;
    let err = second.err().expect("the second bind fails").to_string();
    assert_eq!(
        err,
        format!(
            "cannot bind HLE_SYSLOG_UNIX_PATH={path_var}: another process is receiving on it (a datagram socket); set HLE_SYSLOG_UNIX_PATH to a free path"
        )
    );
    // The first exporter still receives.
    let sender = tokio::net::UnixDatagram::unbound().unwrap();
    sender.send_to(lines(H_EDGE)[0], &path).await.unwrap();
    let samples = first.scrape_after(1.0).await;
    assert_eq!(lines_total(&samples, "counted"), 1.0);
    first.stop().await;
}

#[tokio::test]
async fn a_unix_socket_path_in_no_directory_names_the_variable() {
    let dir = support::TempDir::new("hle-unix").unwrap();
    let path = dir.path().join("missing").join("log.sock");
    let err = try_bind(&[("HLE_SYSLOG_UNIX_PATH", path.to_str().unwrap())])
        .await
        .err()
        .expect("bind fails")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "cannot bind HLE_SYSLOG_UNIX_PATH={}: ",
            path.display()
        )),
        "{err}"
    );
    assert!(
        err.ends_with("; set HLE_SYSLOG_UNIX_PATH to a path in an existing directory"),
        "{err}"
    );
}

/// A held port: the error is a bind error of the listener's variable, not a panic or a
/// configuration error.
#[tokio::test]
async fn a_port_in_use_is_a_bind_error_naming_the_variable() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = held.local_addr().unwrap();
    let addr = held.to_string();
    let err = try_bind(&[("HLE_SYSLOG_TCP_ADDR", &addr)])
        .await
        .err()
        .expect("bind fails");
    match &err {
        haproxy_log_exporter::Error::Bind { var, addr, source } => {
            assert_eq!(*var, "HLE_SYSLOG_TCP_ADDR");
            assert_eq!(*addr, held);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "cannot bind HLE_SYSLOG_TCP_ADDR={addr}: address in use; set HLE_SYSLOG_TCP_ADDR to a free address"
        )
    );
}

#[tokio::test]
async fn unix_socket_never_replaces_a_regular_file() {
    let dir = support::TempDir::new("hle-unix").unwrap();
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, "keep me").unwrap();
    let err = try_bind(&[("HLE_SYSLOG_UNIX_PATH", path.to_str().unwrap())])
        .await
        .err()
        .expect("bind fails");
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert!(
        err.to_string()
            .ends_with("; set HLE_SYSLOG_UNIX_PATH to a free path"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

/// A live socket of each type at the path is kept, with its listener still reachable, and
/// start-up fails saying why.
#[tokio::test]
async fn unix_socket_never_replaces_a_live_socket_of_any_type() {
    use socket2::{Domain, SockAddr, Socket, Type};
    use std::os::unix::fs::MetadataExt;
    let dir = support::TempDir::new("hle-unix").unwrap();
    for (ty, kind) in [
        (Type::DGRAM, "datagram"),
        (Type::STREAM, "stream"),
        (Type::SEQPACKET, "seqpacket"),
    ] {
        let path = dir.path().join(format!("{kind}.sock"));
        let theirs = Socket::new(Domain::UNIX, ty, None).unwrap();
        theirs.bind(&SockAddr::unix(&path).unwrap()).unwrap();
        if ty != Type::DGRAM {
            theirs.listen(8).unwrap();
        }
        let inode = std::fs::metadata(&path).unwrap().ino();
        let err = try_bind(&[("HLE_SYSLOG_UNIX_PATH", path.to_str().unwrap())])
            .await
            .err()
            .unwrap_or_else(|| panic!("a live {kind} socket was replaced"))
            .to_string();
        assert!(
            err.contains(&format!(
                "another process is receiving on it (a {kind} socket)"
            )),
            "{err}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "{kind}");
        let client = Socket::new(Domain::UNIX, ty, None).unwrap();
        client.connect(&SockAddr::unix(&path).unwrap()).unwrap();
    }
}

/// The socket is never reachable with a wider mode than configured: it is at its path
/// only once it has its mode (the mechanism is checked in `ingest::unix`; here, a
/// watcher looks at the path from the moment it appears).
#[tokio::test]
async fn unix_socket_replaces_a_stale_stream_socket_and_appears_with_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = support::TempDir::new("hle-unix").unwrap();
    let path = dir.path().join("log.sock");
    // Left by a killed process; its mode differs from what a bind gives under any umask.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let stale_mode = 0o600;

    let stop_watching = std::sync::Arc::new(AtomicBool::new(false));
    let watcher = {
        let (path, stop) = (path.clone(), stop_watching.clone());
        std::thread::spawn(move || {
            let mut modes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(meta) = std::fs::symlink_metadata(&path) {
                    modes.push(meta.permissions().mode() & 0o7777);
                }
            }
            modes
        })
    };
    let daemon = Daemon::start(&[
        ("HLE_SYSLOG_UNIX_PATH", path.to_str().unwrap()),
        ("HLE_SYSLOG_UNIX_MODE", "0620"),
    ])
    .await;
    stop_watching.store(true, Ordering::Relaxed);
    let modes = watcher.join().unwrap();
    let ours: Vec<String> = modes
        .iter()
        .skip_while(|&&m| m == stale_mode)
        .map(|m| format!("{m:o}"))
        .collect();
    assert!(
        ours.iter().all(|m| m == "620"),
        "modes seen at the path: {ours:?}"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o620
    );
    let sender = tokio::net::UnixDatagram::unbound().unwrap();
    sender.send_to(lines(H_EDGE)[0], &path).await.unwrap();
    let samples = daemon.scrape_after(1.0).await;
    assert_eq!(lines_total(&samples, "counted"), 1.0);
    daemon.stop().await;
    assert!(!path.exists(), "our socket is removed at exit");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

/// At exit the path is removed only if it is still our socket.
#[tokio::test]
async fn unix_socket_replaced_during_the_run_is_left_at_exit() {
    let dir = support::TempDir::new("hle-unix").unwrap();
    let path = dir.path().join("log.sock");
    let path_var = path.to_str().unwrap();

    let daemon = Daemon::start(&[("HLE_SYSLOG_UNIX_PATH", path_var)]).await;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "someone else's").unwrap();
    daemon.stop().await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
    std::fs::remove_file(&path).unwrap();

    // Another process's socket, at the same path.
    let daemon = Daemon::start(&[("HLE_SYSLOG_UNIX_PATH", path_var)]).await;
    std::fs::remove_file(&path).unwrap();
    let theirs = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    daemon.stop().await;
    let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
    sender.send_to(b"still there", &path).unwrap();
    let mut buf = [0u8; 16];
    let len = theirs.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"still there");
}

/// An HTTP log line of exactly `len` bytes (with its `\n`), its path made long.
fn line_of(len: usize) -> Vec<u8> {
    let head = "<134>Nov 25 02:14:12 localhost haproxy[7666]: 127.0.0.1:35068 \
                [25/Nov/2026:02:14:12.236] fe_http be_app/app1 0/0/0/401/401 200 73 - - ---- \
                4/2/0/0/0 0/0 \"GET /";
    let tail = " HTTP/1.1\"\n";
    let path = "a".repeat(len - head.len() - tail.len());
    format!("{head}{path}{tail}").into_bytes()
}

/// Datagrams are read with a buffer of HLE_MAX_LINE_BYTES, also above 64 KiB; a longer
/// one, whether it fits the buffer or the kernel cut it, is `oversize_frame`.
#[tokio::test]
async fn datagrams_up_to_the_line_limit_are_counted_and_longer_ones_are_oversize() {
    let dir = support::TempDir::new("hle-unix").unwrap();
    let path = dir.path().join("log.sock");
    let limit = 100_000;
    let daemon = Daemon::start(&[
        ("HLE_SYSLOG_UNIX_PATH", path.to_str().unwrap()),
        ("HLE_MAX_LINE_BYTES", &limit.to_string()),
    ])
    .await;
    let sender = tokio::net::UnixDatagram::unbound().unwrap();
    socket2::SockRef::from(&sender)
        .set_send_buffer_size(1 << 20)
        .unwrap();
    // Below 64 KiB's cut and right at the limit (its `\n` aside).
    let counted = [line_of(90_000), line_of(limit + 1)];
    // One byte over the limit, over what the buffer holds, and far over it.
    let oversize = [line_of(limit + 2), line_of(limit + 100), line_of(150_000)];
    for datagram in counted.iter().chain(&oversize) {
        sender.send_to(datagram, &path).await.unwrap();
    }
    // UDP: a datagram as long as UDP allows is read whole with the large limit.
    send_udp(daemon.udp, &[&line_of(65_000)]).await;
    let samples = daemon.scrape_after(6.0).await;
    let oversize_unix = samples.get(
        "haproxy_log_exporter_oversize_frames_total",
        &[("transport", "unix")],
    );
    assert_eq!(oversize_unix, Some(3.0));
    assert_eq!(rejected_for(&samples, "oversize_frame"), Some(3.0));
    assert_eq!(lines_total(&samples, "counted"), 3.0);
    assert_invariant(&samples);
    daemon.stop().await;

    // Below 64 KiB, a UDP datagram the kernel cut to the buffer is oversize too.
    let daemon = Daemon::start(&[("HLE_MAX_LINE_BYTES", "1000")]).await;
    send_udp(
        daemon.udp,
        &[&line_of(1001), &line_of(1020), &line_of(5000)],
    )
    .await;
    let samples = daemon.scrape_after(3.0).await;
    assert_eq!(
        samples.get(
            "haproxy_log_exporter_oversize_frames_total",
            &[("transport", "udp")]
        ),
        Some(2.0)
    );
    assert_eq!(lines_total(&samples, "counted"), 1.0);
    daemon.stop().await;
}

/// `replay` and the live listeners count the same lines the same way.
#[tokio::test]
async fn replay_gives_the_same_numbers_as_the_listeners() {
    let tcplog: &[u8] = include_bytes!("fixtures/haproxy/d_tcplog.log");
    let vars = [
        (
            "HLE_REQUESTS_TOTAL_LABELS",
            "frontend_name,status_code,http_request_path",
        ),
        (
            "HLE_RESPONSE_PROCESSING_SECONDS_LABELS",
            "server_name,http_request_method",
        ),
        ("HLE_BYTES_READ_TOTAL_LABELS", "client_ip,termination_state"),
    ];
    let daemon = Daemon::start(&vars).await;
    send_udp(daemon.udp, &lines(H_EDGE)).await;
    send_udp(daemon.udp, &lines(tcplog)).await;
    send_tcp(daemon.tcp, RING_LEGACY, 100).await;
    let live = daemon.scrape_after(23.0 + 5.0 + 15.0).await;
    daemon.stop().await;

    let dir = support::TempDir::new("hle-replay").unwrap();
    let mut inputs = Vec::new();
    for (name, data) in [("a.log", H_EDGE), ("b.log", tcplog), ("c.log", RING_LEGACY)] {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        inputs.push(path.to_str().unwrap().to_string());
    }
    let mut env: HashMap<String, String> = HashMap::new();
    for (key, value) in vars {
        env.insert(key.to_string(), value.to_string());
    }
    let config = Config::from_env(&env).unwrap();
    let mut out = Vec::new();
    let summary = haproxy_log_exporter::ingest::replay::run(&config, &inputs, &mut out).unwrap();
    assert_eq!((summary.received, summary.counted), (43, 43));
    let replayed = parse_exposition(&String::from_utf8(out).unwrap()).unwrap();

    let traffic = |samples: &Samples| -> Vec<String> {
        let mut lines: Vec<String> = samples
            .samples
            .iter()
            .filter(|s| {
                s.name.starts_with("haproxy_log_") && !s.name.starts_with("haproxy_log_exporter_")
            })
            .map(|s| s.to_string())
            .collect();
        lines.sort();
        lines
    };
    let live = traffic(&live);
    assert!(live.len() > 100, "{}", live.len());
    assert_eq!(traffic(&replayed), live);
}

#[tokio::test]
async fn http_endpoints() {
    let daemon = Daemon::start(&[("HLE_WEB_TELEMETRY_PATH", "/custom")]).await;
    let get = |path: &'static str| http_get_async(&daemon.web, path, WAIT);
    assert_eq!(get("/-/healthy").await.unwrap().status, 200);
    assert_eq!(get("/-/ready").await.unwrap().status, 200);
    let index = get("/").await.unwrap();
    assert_eq!(index.status, 200);
    assert!(index.text().contains("href=\"/custom\""));
    assert_eq!(get("/metrics").await.unwrap().status, 404);
    let metrics = get("/custom").await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .text()
        .contains("haproxy_log_exporter_build_info{version="));

    let mut stream = TcpStream::connect(&daemon.web).await.unwrap();
    stream
        .write_all(
            b"POST /custom HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw)
        .await
        .unwrap();
    assert_eq!(support::parse_http_response(&raw).unwrap().status, 405);
    daemon.stop().await;
}

/// Datagrams already queued for the socket when shutdown starts are still counted.
#[tokio::test]
async fn shutdown_counts_datagrams_already_queued() {
    let server = bind(&[("HLE_SYSLOG_TCP_ADDR", "")]).await;
    let registry = server.registry();
    let datagrams = lines(H_EDGE);
    send_udp(server.udp_addr().unwrap(), &datagrams).await;
    // Shut down at once: the receive loop never runs, only the drain does.
    server.run(async {}).await.unwrap();
    let samples = exposition(&registry);
    assert_eq!(lines_total(&samples, "counted"), datagrams.len() as f64);
}

fn exposition(registry: &prometheus::Registry) -> Samples {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    parse_exposition(&String::from_utf8(text).unwrap()).unwrap()
}

/// Datagrams the kernel drops for a full receive buffer are visible: with nothing
/// reading, every datagram sent is either queued (and counted at shutdown) or dropped.
#[tokio::test]
async fn udp_datagrams_the_kernel_drops_are_counted() {
    let server = bind(&[
        ("HLE_SYSLOG_TCP_ADDR", ""),
        ("HLE_UDP_RECV_BUFFER_BYTES", "65536"),
    ])
    .await;
    let registry = server.registry();
    let line = lines(H_EDGE)[0];
    let sent = 5_000;
    send_udp(server.udp_addr().unwrap(), &vec![line; sent]).await;
    // Read while the socket is open; nothing reads it yet, so this is final.
    let before = exposition(&registry);
    let dropped = before.sum("haproxy_log_exporter_udp_receive_drops_total", &[]);
    let buffer = before.sum("haproxy_log_exporter_udp_receive_buffer_bytes", &[]);
    assert!(
        dropped > 0.0,
        "a 64 KiB buffer holds fewer than {sent} datagrams"
    );
    assert!(buffer >= 65536.0, "{buffer}");
    server.run(async {}).await.unwrap();
    let received = exposition(&registry).sum("haproxy_log_exporter_lines_received_total", &[]);
    assert_eq!(received + dropped, sent as f64);
}

/// The datagram sources are threads of their own. A server whose `run` is dropped
/// instead of stopped (its runtime shut down under it) must end them, or the runtime's
/// shutdown waits for them forever.
#[test]
fn a_runtime_shut_down_under_the_server_does_not_wait_for_its_sources() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let daemon = Daemon::start(&[]).await;
            // A counted datagram shows the UDP source thread is running.
            send_udp(daemon.udp, &lines(H_EDGE)[..1]).await;
            daemon.scrape_after(1.0).await;
            std::mem::forget(daemon.stop);
        });
        drop(runtime);
        let _ = done.send(());
    });
    finished
        .recv_timeout(WAIT)
        .expect("the runtime's shutdown waited for the datagram sources");
}

/// A custom format that starts with `%ST` over newline framing: `200 73 ...` is a line,
/// not an octet count (before framing was decided per connection, none was counted).
#[tokio::test]
async fn a_line_starting_with_a_number_is_not_an_octet_count() {
    let daemon = Daemon::start(&[
        ("HLE_LOG_FORMAT", "%ST %B %ci:%cp %b/%s"),
        ("HLE_REQUESTS_TOTAL_LABELS", "status_code,server_name"),
    ])
    .await;
    let mut stream = String::new();
    for i in 0..100 {
        let status = [200, 404, 503][i % 3];
        stream.push_str(&format!(
            "{status} {} 127.0.0.1:{} be_app/app{}\n",
            70 + i,
            40000 + i,
            i % 2
        ));
    }
    send_tcp(daemon.tcp, stream.as_bytes(), 37).await;
    let samples = daemon.scrape_after(100.0).await;
    assert_eq!(lines_total(&samples, "counted"), 100.0);
    let requests = |status| samples.sum("haproxy_log_requests_total", &[("status_code", status)]);
    assert_eq!(
        (requests("200"), requests("404"), requests("503")),
        (34.0, 33.0, 33.0)
    );
    assert_eq!(
        samples.sum("haproxy_log_bytes_read_total", &[]),
        (0..100).map(|i| 70.0 + f64::from(i)).sum::<f64>()
    );
    assert_invariant(&samples);
    daemon.stop().await;
}

/// A first line that looks like a count (`4096 oops`) costs that line only.
#[tokio::test]
async fn a_bad_first_frame_never_costs_the_frames_after_it() {
    let daemon = Daemon::start(&[]).await;
    let good = lines(RING_LEGACY);
    let mut stream = b"4096 oops\n".to_vec();
    for i in 0..100 {
        stream.extend_from_slice(good[i % good.len()]);
    }
    send_tcp(daemon.tcp, &stream, 1000).await;
    let samples = daemon.scrape_after(101.0).await;
    assert_eq!(lines_total(&samples, "counted"), 100.0);
    assert_eq!(lines_total(&samples, "rejected"), 1.0);
    assert_invariant(&samples);
    daemon.stop().await;
}

/// `HLE_SYSLOG_TCP_FRAMING` fixes the framing for every connection.
#[tokio::test]
async fn framing_can_be_fixed_for_every_connection() {
    // Octet counting: a ring's frames are read; a line without a count is read up to its
    // newline.
    let daemon = Daemon::start(&[("HLE_SYSLOG_TCP_FRAMING", "octet-count")]).await;
    let stream = [b"not counted\n".as_slice(), RING_OCTET].concat();
    send_tcp(daemon.tcp, &stream, 13).await;
    let samples = daemon.scrape_after(16.0).await;
    assert_eq!(lines_total(&samples, "counted"), 15.0);
    assert_invariant(&samples);
    daemon.stop().await;

    // Newline framing: an octet-counted stream is one long line.
    let daemon = Daemon::start(&[("HLE_SYSLOG_TCP_FRAMING", "lf")]).await;
    send_tcp(daemon.tcp, RING_OCTET, 13).await;
    let samples = daemon.scrape_after(1.0).await;
    assert_eq!(lines_total(&samples, "counted"), 0.0);
    assert_eq!(lines_total(&samples, "received"), 1.0);
    daemon.stop().await;
}
