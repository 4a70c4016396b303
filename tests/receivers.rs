//! The receivers next to a busy load balancer: the buffer budget of the TCP connections,
//! TCP keepalive, the allowed sources, bytes received. The daemon in-process on
//! loopback port 0; senders from other loopback addresses (127.0.0.0/8 is all loopback
//! on Linux).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use haproxy_log_exporter::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use support::{http_get_async, parse_exposition, wait_until_async, Samples};

const WAIT: Duration = Duration::from_secs(20);

const RING_LEGACY: &[u8] = include_bytes!("fixtures/haproxy/f_ring_legacy.tcp");
const H_EDGE: &[u8] = include_bytes!("fixtures/haproxy/h_edge.log");

struct Daemon {
    udp: SocketAddr,
    tcp: SocketAddr,
    spoe: Option<SocketAddr>,
    web: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), haproxy_log_exporter::Error>>,
}

impl Daemon {
    async fn start(vars: &[(&str, &str)]) -> Daemon {
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
        let server = Server::bind(config).await.expect("bind on port 0");
        let (stop, stopped) = oneshot::channel::<()>();
        let daemon = Daemon {
            udp: server.udp_addr().unwrap(),
            tcp: server.tcp_addr().unwrap(),
            spoe: server.spoe_addr(),
            web: server.web_addr().unwrap().to_string(),
            stop: Some(stop),
            task: tokio::spawn(server.run(async {
                let _ = stopped.await;
            })),
        };
        wait_until_async(WAIT, || async {
            let r = http_get_async(&daemon.web, "/-/ready", WAIT).await.ok()?;
            (r.status == 200).then_some(())
        })
        .await
        .expect("daemon ready");
        daemon
    }

    async fn scrape(&self) -> Samples {
        let response = http_get_async(&self.web, "/metrics", WAIT)
            .await
            .expect("scrape");
        parse_exposition(&response.text()).expect("valid exposition")
    }

    /// Polls until `ok` holds of a scrape, then returns that scrape.
    async fn scrape_until(&self, what: &str, ok: impl Fn(&Samples) -> bool) -> Samples {
        wait_until_async(WAIT, || async {
            let samples = self.scrape().await;
            ok(&samples).then_some(samples)
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn total(samples: &Samples, name: &str) -> f64 {
    samples.sum(&format!("haproxy_log_exporter_{name}"), &[])
}

fn assert_invariant(samples: &Samples) {
    let outcomes = ["counted", "rejected", "ignored"]
        .map(|o| total(samples, &format!("lines_{o}_total")))
        .iter()
        .sum::<f64>();
    assert_eq!(total(samples, "lines_received_total"), outcomes);
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closed `stream` without sending anything, within `WAIT`.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(WAIT, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A sender of one huge unfinished frame: `len` bytes of it (an octet count of `len + 1`
/// or a line without its newline), in 64 KiB writes; returns the connection when every
/// write went through, `None` when the exporter closed it on the way.
async fn hog(to: SocketAddr, len: usize, octets: bool) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(to).await.ok()?;
    let mut head = if octets {
        format!("{} <134>", len + 1).into_bytes()
    } else {
        b"<134>".to_vec()
    };
    head.resize(64 * 1024, b'x');
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        let piece = if sent == 0 { &head } else { &chunk };
        let piece = &piece[..piece.len().min(len - sent)];
        match tokio::time::timeout(WAIT, stream.write_all(piece)).await {
            Ok(Ok(())) => sent += piece.len(),
            Ok(Err(_)) => return None,
            Err(_) => panic!("a write of a hog hung for {WAIT:?}"),
        }
    }
    Some(stream)
}

/// The peak resident memory of this process (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

const MIB: usize = 1 << 20;

/// 24 connections each send 8 MiB of an unfinished frame (192 MiB in all) to an exporter
/// with a 32 MiB budget: those over it are cut and counted, the memory stays near the
/// budget, and a well-behaved connection's lines are all counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unfinished_frames_of_all_connections_share_one_budget() {
    let budget = 32 * MIB;
    let daemon = Daemon::start(&[
        ("HLE_MAX_LINE_BYTES", "16777216"),
        ("HLE_TCP_BUFFER_BUDGET_BYTES", "32MiB"),
    ])
    .await;
    let before = peak_rss();
    let hogs = 24;
    let sent: Vec<Option<TcpStream>> =
        futures_util::future::join_all((0..hogs).map(|i| hog(daemon.tcp, 8 * MIB, i % 2 == 0)))
            .await;
    // Some of the connections cut may not have noticed yet: all are kept open.
    let senders: Vec<TcpStream> = sent.into_iter().flatten().collect();

    // Every hog is either cut or open, with nothing left unread on either side, and so
    // in two scrapes in a row (a hog whose last bytes were just read may be about to be
    // cut).
    let settled = |s: &Samples| {
        let (cut, kept) = (
            total(s, "tcp_connections_cut_total"),
            total(s, "tcp_connections"),
        );
        (cut + kept == hogs as f64).then_some((cut, kept))
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    let samples = loop {
        let quiet = nothing_in_flight(daemon.tcp);
        let samples = daemon.scrape().await;
        let now = settled(&samples).filter(|_| quiet);
        if now.is_some() && now == last {
            break samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hogs not read or cut in {WAIT:?}: {now:?}"
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cut = total(&samples, "tcp_connections_cut_total");
    let kept = total(&samples, "tcp_connections");
    let buffered = total(&samples, "tcp_buffered_bytes");
    assert!(
        kept <= (budget / (8 * MIB)) as f64,
        "{kept} hogs kept, {cut} cut, {buffered} bytes buffered"
    );
    assert!(cut >= (hogs - budget / (8 * MIB)) as f64, "{cut} hogs cut");
    assert_eq!(
        samples.get(
            "haproxy_log_exporter_lines_rejected_total",
            &[("reason", "tcp_buffer_budget")]
        ),
        Some(cut)
    );
    assert!(buffered <= budget as f64, "{buffered} bytes buffered");
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 3 * budget as u64,
        "resident memory grew by {} MiB for a budget of 32 MiB",
        grown / MIB as u64
    );

    // A well-behaved connection, in pieces that leave a frame unfinished at each read.
    let mut good = TcpStream::connect(daemon.tcp).await.unwrap();
    for piece in RING_LEGACY.chunks(7) {
        good.write_all(piece).await.unwrap();
        good.flush().await.unwrap();
    }
    good.shutdown().await.unwrap();
    let samples = daemon
        .scrape_until("the well-behaved lines counted", |s| {
            total(s, "lines_counted_total") >= 15.0
        })
        .await;
    assert_eq!(total(&samples, "lines_counted_total"), 15.0);
    assert_invariant(&samples);
    let read = total(&samples, "received_bytes_total");
    assert!(read >= budget as f64, "{read} bytes read");
    drop(senders);
    daemon.stop().await;
}

/// Whether the established connections to `server` have nothing queued: every byte
/// sent to it has been read.
fn nothing_in_flight(server: SocketAddr) -> bool {
    let server = support::proc_net_addr(server).unwrap_or_default();
    support::tcp_sockets()
        .iter()
        .filter(|row| row.state == "01")
        .all(|row| (row.local != server || row.rx == 0) && (row.remote != server || row.tx == 0))
}

/// The accepted socket's keepalive timer, from `/proc/net/tcp`: the row of the server's
/// side of a connection from `client` to `server`, its `tr` (2: keepalive) and when it
/// fires, in hundredths of a second.
fn keepalive_timer(server: SocketAddr, client: SocketAddr) -> Option<(u32, u64)> {
    let local = support::proc_net_addr(server)?;
    let remote = support::proc_net_addr(client)?;
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        if cols.get(1) != Some(&local.as_str()) || cols.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let (tr, when) = cols.get(5)?.split_once(':')?;
        Some((
            u32::from_str_radix(tr, 16).ok()?,
            u64::from_str_radix(when, 16).ok()?,
        ))
    })
}

#[tokio::test]
async fn accepted_connections_have_tcp_keepalive() {
    let daemon = Daemon::start(&[("HLE_SPOE_ADDR", "127.0.0.1:0")]).await;
    for server in [daemon.tcp, daemon.spoe.unwrap()] {
        let client = TcpStream::connect(server).await.unwrap();
        let local = client.local_addr().unwrap();
        // The keepalive timer (`tr` 2), due in about a minute (the kernel counts in
        // USER_HZ), once the exporter has accepted the connection.
        let timer = wait_until_async(WAIT, || async {
            keepalive_timer(server, local).filter(|&(tr, _)| tr == 2)
        })
        .await
        .unwrap_or_else(|e| {
            let seen = keepalive_timer(server, local);
            panic!("{server}: no keepalive timer ({seen:?}) after {e}")
        });
        assert!(
            (5000..=6000).contains(&timer.1),
            "{server}: timer {timer:?}"
        );
    }
    daemon.stop().await;
}

/// Only 127.0.0.2 may send: datagrams and connections from 127.0.0.1 are dropped unread,
/// counted as refused and not as received, and the lines from 127.0.0.2 are counted.
#[tokio::test]
async fn senders_outside_the_allowed_sources_are_refused_and_counted() {
    let daemon = Daemon::start(&[
        (
            "HLE_SYSLOG_ALLOWED_SOURCES",
            "10.0.0.0/8, 127.0.0.2/32, fd00::/8",
        ),
        ("HLE_SPOE_ADDR", "127.0.0.1:0"),
        ("HLE_SPOE_ALLOWED_SOURCES", "127.0.0.2"),
    ])
    .await;
    let lines = lines_of(H_EDGE);
    let refused = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let allowed = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    for line in &lines {
        refused.send_to(line, daemon.udp).await.unwrap();
        allowed.send_to(line, daemon.udp).await.unwrap();
    }
    let mut tcp_refused = connect_from([127, 0, 0, 1], daemon.tcp).await;
    let _ = tcp_refused.write_all(RING_LEGACY).await;
    assert!(closed_by_server(&mut tcp_refused).await);
    let mut spoe_refused = connect_from([127, 0, 0, 1], daemon.spoe.unwrap()).await;
    assert!(closed_by_server(&mut spoe_refused).await);
    let mut tcp_allowed = connect_from([127, 0, 0, 2], daemon.tcp).await;
    tcp_allowed.write_all(RING_LEGACY).await.unwrap();
    tcp_allowed.shutdown().await.unwrap();

    let n = lines.len() as f64;
    let samples = daemon
        .scrape_until("the allowed lines received", |s| {
            total(s, "lines_received_total") >= n + 15.0
                && total(s, "senders_refused_total") >= n + 2.0
        })
        .await;
    let refused_by = |listener| {
        samples.get(
            "haproxy_log_exporter_senders_refused_total",
            &[("listener", listener)],
        )
    };
    assert_eq!(refused_by("udp"), Some(n));
    assert_eq!(refused_by("tcp"), Some(1.0));
    assert_eq!(refused_by("spoe"), Some(1.0));
    let received = |t| {
        samples.get(
            "haproxy_log_exporter_lines_received_total",
            &[("transport", t)],
        )
    };
    assert_eq!(received("udp"), Some(n));
    assert_eq!(received("tcp"), Some(15.0));
    assert_invariant(&samples);
    let bytes = |t| {
        samples.get(
            "haproxy_log_exporter_received_bytes_total",
            &[("transport", t)],
        )
    };
    assert_eq!(bytes("udp"), Some(H_EDGE.len() as f64));
    assert_eq!(bytes("tcp"), Some(RING_LEGACY.len() as f64));
    daemon.stop().await;
}

/// A real HAProxy logging over UDP from 127.0.0.1, allowed, and a sender from 127.0.0.2,
/// refused: HAProxy's lines are all counted, the other sender's none.
#[tokio::test]
async fn haproxy_on_the_allowed_address_is_read_and_another_sender_refused() {
    let test = "haproxy_on_the_allowed_address_is_read_and_another_sender_refused";
    let Some(haproxy) = support::find_program("haproxy") else {
        if support::skip_or_fail(test, "haproxy is not installed") {
            return;
        }
        unreachable!()
    };
    let daemon = Daemon::start(&[("HLE_SYSLOG_ALLOWED_SOURCES", "127.0.0.1/32")]).await;
    // A free port for the frontend: taken from the kernel, then given to HAProxy.
    let frontend = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let dir = support::TempDir::new("hle-receivers").unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    log {udp} local0\n\
             defaults\n    mode http\n    log global\n    option httplog\n\
             \x20   timeout client 5s\n    timeout server 5s\n    timeout connect 1s\n\
             frontend fe_allowed\n    bind {frontend}\n    http-request return status 200\n",
            udp = daemon.udp,
        ),
    )
    .unwrap();
    let mut child = support::ChildGuard::spawn(
        "haproxy",
        std::process::Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .unwrap();

    let requests = 5;
    for _ in 0..requests {
        let answer = wait_until_async(WAIT, || async {
            let mut stream = TcpStream::connect(frontend).await.ok()?;
            stream
                .write_all(b"GET /allowed HTTP/1.0\r\n\r\n")
                .await
                .ok()?;
            let mut answer = Vec::new();
            tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
                .await
                .ok()?
                .ok()?;
            Some(answer)
        })
        .await
        .unwrap_or_else(|e| panic!("HAProxy did not answer ({:?}): {e}", child.try_wait()));
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    }
    let other = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let forged = lines_of(H_EDGE);
    for line in &forged {
        other.send_to(line, daemon.udp).await.unwrap();
    }
    let samples = daemon
        .scrape_until("HAProxy's lines counted, the other sender's refused", |s| {
            total(s, "lines_counted_total") >= requests as f64
                && total(s, "senders_refused_total") >= forged.len() as f64
        })
        .await;
    assert_eq!(total(&samples, "lines_counted_total"), requests as f64);
    assert_eq!(
        samples.get(
            "haproxy_log_exporter_senders_refused_total",
            &[("listener", "udp")]
        ),
        Some(forged.len() as f64)
    );
    assert_eq!(
        samples.get(
            "haproxy_log_requests_total",
            &[
                ("status_code", "200"),
                ("status_class", "2xx"),
                ("backend_name", "fe_allowed"),
                ("server_name", "<NOSRV>")
            ]
        ),
        Some(requests as f64)
    );
    assert_invariant(&samples);
    child.kill();
    daemon.stop().await;
}

fn lines_of(data: &[u8]) -> Vec<&[u8]> {
    data.split_inclusive(|&b| b == b'\n').collect()
}
