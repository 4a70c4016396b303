//! The HTTP server next to a busy load balancer: scrape storms share one rendering and
//! leave the receivers alone, slow and idle clients cannot take the descriptors the
//! syslog listeners need, and SIGTERM does not wait for a client that never finishes
//! its request.
//!
//! The exporter runs as a child (its memory and descriptor limit are its own), except
//! for the request limits, which an in-process daemon shows.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use support::{http_get, http_get_async, json_field, scrape_metrics, wait_until, ChildGuard};

const WAIT: Duration = Duration::from_secs(20);

/// A traffic line from client `ip`.
fn line(ip: u32) -> String {
    let [a, b, c, d] = ip.to_be_bytes();
    format!(
        "<134>Nov 25 02:14:12 localhost haproxy[7666]: {a}.{b}.{c}.{d}:35068 [25/Nov/2026:02:14:12.236] \
         fe_http be_app/app1 0/0/0/401/401 200 73 - - ---- 4/2/0/0/0 0/0 \"GET / HTTP/1.1\""
    )
}

/// The exporter binary as a child, its addresses, and its log lines as they come.
struct Exporter {
    child: ChildGuard,
    udp: Option<SocketAddr>,
    tcp: SocketAddr,
    web: String,
    log: mpsc::Receiver<String>,
}

impl Exporter {
    /// Starts the exporter with `env`, under `prlimit --nofile=N` when `nofile` is given.
    fn start(env: &[(&str, &str)], nofile: Option<u32>) -> Exporter {
        let exe = env!("CARGO_BIN_EXE_haproxy-log-exporter");
        let mut cmd = match nofile {
            Some(n) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--nofile={n}:{n}")).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        cmd.env_clear()
            .env("HLE_SYSLOG_UDP_ADDR", "127.0.0.1:0")
            .env("HLE_SYSLOG_TCP_ADDR", "127.0.0.1:0")
            .env("HLE_WEB_LISTEN_ADDR", "127.0.0.1:0")
            .env("HLE_LOG_OUTPUT", "json")
            .envs(env.iter().copied())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn("exporter", &mut cmd).expect("start the exporter");
        let stderr = child.take_stderr().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let listening = log.recv_timeout(WAIT).unwrap_or_default();
        assert!(listening.contains("\"listening\""), "{listening}");
        let addr = |name| json_field(&listening, name).and_then(|a| a.parse().ok());
        Exporter {
            udp: addr("udp"),
            tcp: addr("tcp").expect("a tcp address"),
            web: json_field(&listening, "web")
                .unwrap_or_default()
                .to_string(),
            child,
            log,
        }
    }

    /// A line of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the exporter's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    /// A self-metric's value, summed over its series, from a scrape that succeeds within
    /// the deadline.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let scraped = wait_until(WAIT, || scrape_metrics(&self.web, WAIT).ok());
        let (_, samples) = scraped.expect("a scrape");
        samples.sum(name, labels)
    }

    /// Sends `lines` over one TCP connection and waits until they are counted.
    fn feed_tcp(&self, lines: impl Iterator<Item = String>) {
        let before = self.metric("haproxy_log_exporter_lines_counted_total", &[]);
        let mut data = Vec::new();
        let mut n = 0.0;
        for line in lines {
            data.extend_from_slice(line.as_bytes());
            data.push(b'\n');
            n += 1.0;
        }
        let mut stream = TcpStream::connect(self.tcp).expect("connect to syslog TCP");
        stream.write_all(&data).expect("write lines");
        drop(stream);
        let counted = wait_until(WAIT, || {
            let (_, s) = scrape_metrics(&self.web, WAIT).ok()?;
            (s.sum("haproxy_log_exporter_lines_counted_total", &[]) >= before + n).then_some(())
        });
        counted.expect("every line counted");
    }

    fn log_so_far(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

/// Sends `line` over UDP at about `rate` a second until `stop`; returns how many it sent.
fn udp_at_rate(to: SocketAddr, rate: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP sender");
        let datagram = line(0x0a00_0001);
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = start.elapsed().as_micros() as u64 * rate / 1_000_000;
            while sent < due {
                if socket.send_to(datagram.as_bytes(), to).is_ok() {
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        sent
    })
}

/// 500 concurrent scrapes of an exposition of a few megabytes: all answered, the memory
/// they take bounded by a few renderings (each used to render its own, 500 at once), and
/// UDP at a steady rate meanwhile loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_storm_shares_renderings_and_udp_loses_nothing() {
    const SCRAPES: usize = 500;
    const CLIENTS: u32 = 1500;
    const UDP_RATE: u64 = 2000;
    let exporter = tokio::task::block_in_place(|| {
        let exporter = Exporter::start(
            &[
                ("HLE_SESSION_DURATION_SECONDS_LABELS", "client_ip"),
                ("HLE_MAX_SERIES_PER_METRIC", "1000000"),
                ("HLE_WEB_MAX_CONNECTIONS", "1000"),
            ],
            None,
        );
        exporter.feed_tcp((0..CLIENTS).map(|i| line(0x0a01_0000 + i)));
        exporter
    });
    let web = exporter.web.clone();
    let first = http_get_async(&web, "/metrics", WAIT)
        .await
        .expect("a scrape");
    let size = first.body.len() as u64;
    assert!(size > 1_000_000, "exposition of {size} bytes");
    let rss_before = exporter.status_kib("VmRSS") * 1024;

    let stop = Arc::new(AtomicBool::new(false));
    let udp = exporter.udp.expect("a udp address");
    let sender = udp_at_rate(udp, UDP_RATE, stop.clone());
    let started = Instant::now();
    let scrapes: Vec<_> = (0..SCRAPES)
        .map(|_| {
            let web = web.clone();
            tokio::spawn(async move { http_get_async(&web, "/metrics", WAIT).await })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for scrape in scrapes {
        let response = scrape
            .await
            .expect("scrape task")
            .expect("a scrape answered");
        assert_eq!(response.status, 200);
        let length = response
            .header("content-length")
            .and_then(|l| l.parse().ok());
        assert_eq!(length, Some(response.body.len()));
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let sent = tokio::task::block_in_place(|| sender.join().expect("the UDP sender"));
    let peak = exporter.status_kib("VmHWM") * 1024;

    let (received, drops, scrapes, renders) = tokio::task::block_in_place(|| {
        let received = wait_until(WAIT, || {
            let (_, s) = scrape_metrics(&exporter.web, WAIT).ok()?;
            let received = s.sum(
                "haproxy_log_exporter_lines_received_total",
                &[("transport", "udp")],
            );
            (received as u64 >= sent).then_some(received as u64)
        });
        let (_, s) = scrape_metrics(&exporter.web, WAIT).expect("a scrape");
        (
            received.unwrap_or(0),
            s.sum("haproxy_log_exporter_udp_receive_drops_total", &[]),
            s.sum("haproxy_log_exporter_http_scrapes_total", &[]),
            s.sum("haproxy_log_exporter_http_exposition_renders_total", &[]),
        )
    });
    eprintln!(
        "{SCRAPES} scrapes of {size} bytes in {slowest:?}; RSS {rss_before} before, peak {peak}; \
         {renders} renderings for {scrapes} scrapes; UDP {sent} sent, {received} received, {drops} dropped"
    );
    assert_eq!(drops, 0.0, "the kernel dropped datagrams");
    assert_eq!(received, sent, "every datagram received");
    assert!(renders < (SCRAPES / 10) as f64, "{renders} renderings");
    // A rendering (the text and what the encoder builds on the way), the one kept, the
    // one replacing it, and the connections' buffers.
    let bound = rss_before + 8 * size + 64 * 1024 * 1024;
    assert!(peak <= bound, "peak RSS {peak} over {bound}");
}

/// A request head begun and never finished, and 2000 idle connections, against an
/// exporter allowed 256 descriptors: requests are answered long before the header timeout
/// (a minute) would close the slow ones, because each newcomer takes the place of an idle
/// connection, and the syslog TCP listener accepts throughout.
#[test]
fn slow_and_idle_clients_do_not_starve_the_listeners() {
    const SLOW: usize = 200;
    const IDLE: usize = 2000;
    let exporter = Exporter::start(&[("HLE_WEB_READ_HEADER_TIMEOUT", "60s")], Some(256));
    let web: SocketAddr = exporter.web.parse().expect("web address");
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut stream = TcpStream::connect(web).expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .expect("write a half");
        slow.push(stream);
    }
    let idle: Vec<TcpStream> = (0..IDLE)
        .filter_map(|_| TcpStream::connect(web).ok())
        .collect();
    assert!(idle.len() > IDLE / 2, "{} idle connections", idle.len());

    // The syslog TCP listener still accepts, and counts what it reads.
    exporter.feed_tcp(std::iter::once(line(0x0a00_0001)));
    let answered = wait_until(Duration::from_secs(10), || {
        http_get(&exporter.web, "/-/healthy", Duration::from_secs(2)).ok()
    });
    assert_eq!(answered.expect("a request answered").status, 200);
    // Closed for newcomers, the oldest first: each slow client reads the end of its
    // connection (well before the header timeout).
    for stream in &mut slow {
        closed_within(stream, WAIT).expect("a slow connection closed");
    }
    let evicted = exporter.metric("haproxy_log_exporter_http_connections_evicted_total", &[]);
    assert!(evicted >= SLOW as f64, "{evicted} evicted");
    let log = exporter.log_so_far();
    assert!(
        !log.iter().any(|l| l.contains("accept failed")),
        "out of descriptors:\n{}",
        log.join("\n")
    );
}

/// SIGTERM while a client holds a half-sent request, another an idle keep-alive
/// connection: the exporter exits at once, not after the header timeout.
#[test]
fn sigterm_does_not_wait_for_a_half_sent_request() {
    let mut exporter = Exporter::start(&[], None);
    let web: SocketAddr = exporter.web.parse().expect("web address");
    let mut half = TcpStream::connect(web).expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost:")
        .expect("write a half");
    let mut idle = TcpStream::connect(web).expect("connect");
    idle.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    idle.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).expect("an answer");
    assert_eq!(&answer, b"HTTP/1.1 200");
    // Both connections are accepted before the signal.
    let open = wait_until(WAIT, || {
        let open = exporter.metric("haproxy_log_exporter_http_connections", &[]);
        (open >= 3.0).then_some(())
    });
    open.expect("both connections open (and the scrape's)");

    let signalled = Instant::now();
    exporter.child.signal("TERM").expect("SIGTERM");
    let status = exporter.child.wait_timeout(WAIT).expect("exited");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
}

/// Reads one response from a keep-alive connection: its head and body (by
/// Content-Length). `None` when the connection ends first.
fn read_response(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Waits for the peer to close `stream`; how long that took, `None` if it did not within
/// `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(within)).ok()?;
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => Some(start.elapsed()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(start.elapsed()),
        Err(_) => None,
    }
}

fn connect(web: &str) -> TcpStream {
    let stream = TcpStream::connect(web).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream
}

const HEALTHY: &[u8] = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn an_oversize_head_a_body_and_other_methods_are_refused() {
    let exporter = Exporter::start(&[("HLE_WEB_MAX_REQUEST_HEADER_BYTES", "8192")], None);
    let status = |request: &[u8]| {
        let mut stream = connect(&exporter.web);
        stream.write_all(request).expect("write");
        read_response(&mut stream)
            .map(|(head, _)| head.lines().next().unwrap_or_default().to_string())
    };
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    assert_eq!(
        status(big.as_bytes()).as_deref(),
        Some("HTTP/1.1 431 Request Header Fields Too Large")
    );
    let with_body = b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(
        status(with_body).as_deref(),
        Some("HTTP/1.1 413 Payload Too Large")
    );
    let post = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        status(post).as_deref(),
        Some("HTTP/1.1 405 Method Not Allowed")
    );
    assert_eq!(status(HEALTHY).as_deref(), Some("HTTP/1.1 200 OK"));
}

/// An idle keep-alive connection closes after the header timeout; one past its age after
/// its response; one after 1000 requests.
#[test]
fn keep_alive_connections_end() {
    let exporter = Exporter::start(&[("HLE_WEB_READ_HEADER_TIMEOUT", "300ms")], None);
    let mut idle = connect(&exporter.web);
    idle.write_all(HEALTHY).expect("request");
    assert!(read_response(&mut idle).is_some());
    let took = closed_within(&mut idle, Duration::from_secs(5)).expect("idle connection closed");
    assert!(took >= Duration::from_millis(200), "closed after {took:?}");

    let exporter = Exporter::start(&[("HLE_WEB_MAX_CONNECTION_AGE", "500ms")], None);
    let mut old = connect(&exporter.web);
    let opened = Instant::now();
    old.write_all(HEALTHY).expect("request");
    assert!(read_response(&mut old).is_some());
    closed_within(&mut old, Duration::from_secs(5)).expect("old connection closed");
    let age = opened.elapsed();
    assert!(age >= Duration::from_millis(450), "closed at {age:?}");

    // Defaults: neither the age nor the header timeout may end it first.
    let exporter = Exporter::start(&[], None);
    let mut busy = connect(&exporter.web);
    for i in 1..=1000 {
        busy.write_all(HEALTHY).expect("request");
        let (head, _) = read_response(&mut busy).unwrap_or_else(|| panic!("answer {i}"));
        assert_eq!(
            head.to_ascii_lowercase().contains("connection: close"),
            i == 1000,
            "{i}: {head}"
        );
    }
    closed_within(&mut busy, Duration::from_secs(5)).expect("closed after 1000 requests");
}

/// At the cap, a new connection takes the place of the oldest idle one, which is closed:
/// idle clients cannot keep a scraper out.
#[test]
fn an_idle_connection_makes_room_for_a_new_one() {
    let exporter = Exporter::start(&[("HLE_WEB_MAX_CONNECTIONS", "2")], None);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&exporter.web);
        stream.write_all(HEALTHY).expect("request");
        assert!(read_response(&mut stream).is_some(), "answered");
        held.push(stream);
    }
    let mut third = connect(&exporter.web);
    third.write_all(HEALTHY).expect("request");
    let (head, _) = read_response(&mut third).expect("the newcomer answered");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    closed_within(&mut held[0], WAIT).expect("the oldest idle connection closed");
    // The other one is still served.
    held[1].write_all(HEALTHY).expect("request");
    assert!(
        read_response(&mut held[1]).is_some(),
        "the younger one kept"
    );
    drop(held);
    drop(third);
    let evicted = exporter.metric("haproxy_log_exporter_http_connections_evicted_total", &[]);
    assert!(evicted >= 1.0, "{evicted}");
}

/// At the cap with every connection sending a response (scrapers that read slowly), a new
/// connection is closed at once, and the responses in progress are not cut short.
#[test]
fn busy_connections_are_kept_and_a_newcomer_refused() {
    const CLIENTS: u32 = 6000;
    let exporter = Exporter::start(
        &[
            ("HLE_WEB_MAX_CONNECTIONS", "2"),
            ("HLE_SESSION_DURATION_SECONDS_LABELS", "client_ip"),
            ("HLE_MAX_SERIES_PER_METRIC", "1000000"),
        ],
        None,
    );
    exporter.feed_tcp((0..CLIENTS).map(|i| line(0x0a01_0000 + i)));
    let web: SocketAddr = exporter.web.parse().expect("web address");
    // Two scrapers that read nothing yet, with small receive windows: the exposition (some
    // megabytes) stays in progress on the exporter's side.
    let mut scrapers: Vec<TcpStream> = (0..2)
        .map(|_| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
            socket.connect(&web.into()).expect("connect");
            let mut stream: TcpStream = socket.into();
            stream.set_read_timeout(Some(WAIT)).expect("read timeout");
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("request");
            stream
        })
        .collect();
    // Both are busy once the exporter has begun their responses: each has bytes waiting.
    for stream in &scrapers {
        let mut byte = [0u8; 1];
        assert_eq!(stream.peek(&mut byte).expect("a response begun"), 1);
    }
    let mut third = connect(&exporter.web);
    let took = closed_within(&mut third, Duration::from_secs(5)).expect("the newcomer closed");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    // The two responses arrive whole.
    for stream in &mut scrapers {
        let (head, body) = read_response(stream).expect("the whole response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body.len() > 4_000_000, "exposition of {} bytes", body.len());
    }
    drop(scrapers);
    let refused = exporter.metric("haproxy_log_exporter_http_connections_refused_total", &[]);
    assert!(refused >= 1.0, "{refused}");
}

/// Prometheus asks for gzip; the answer is the same exposition, compressed.
#[test]
fn the_exposition_is_gzipped_when_asked_for() {
    let exporter = Exporter::start(&[], None);
    let mut stream = connect(&exporter.web);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        .expect("request");
    let (head, body) = read_response(&mut stream).expect("an answer");
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("gzip");
    assert!(
        text.contains("\nhaproxy_log_exporter_http_scrapes_total "),
        "{text}"
    );
}

/// SIGTERM while a scrape's response is still being written to a client that reads
/// slowly: the response is finished within the grace, then the exporter exits.
#[test]
fn sigterm_lets_a_response_in_progress_finish() {
    let mut exporter = Exporter::start(
        &[
            ("HLE_SESSION_DURATION_SECONDS_LABELS", "client_ip"),
            ("HLE_MAX_SERIES_PER_METRIC", "1000000"),
        ],
        None,
    );
    // Several megabytes: more than the sockets' buffers hold.
    exporter.feed_tcp((0..5000).map(|i| line(0x0a02_0000 + i)));
    let web: SocketAddr = exporter.web.parse().expect("web address");
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    socket.connect(&web.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let local = support::proc_net_addr(stream.local_addr().expect("local address"));
    let remote = support::proc_net_addr(web);
    let blocked = wait_until(WAIT, || {
        support::tcp_sockets()
            .into_iter()
            .any(|s| {
                Some(&s.local) == remote.as_ref() && Some(&s.remote) == local.as_ref() && s.tx > 0
            })
            .then_some(())
    });
    blocked.expect("the exporter writing, the client not reading");

    exporter.child.signal("TERM").expect("SIGTERM");
    // The client reads only after the short flush allowed to idle connections.
    std::thread::sleep(Duration::from_secs(1));
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let response = support::parse_http_response(&raw).expect("a whole response");
    let length = response
        .header("content-length")
        .and_then(|l| l.parse().ok());
    assert_eq!(length, Some(response.body.len()), "cut off");
    assert!(
        response.body.len() > 4_000_000,
        "{} bytes",
        response.body.len()
    );
    let status = exporter.child.wait_timeout(WAIT).expect("exited");
    assert_eq!(status.code(), Some(0));
}
