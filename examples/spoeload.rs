//! SPOE load generator: plays HAProxy 2.6 against the exporter's SPOE agent and measures
//! how many NOTIFY messages it answers per second and how long each ACK takes to come
//! back, as HAProxy would see it.
//!
//! ```text
//! # An exporter with the agent on (no syslog listener needed):
//! HLE_SPOE_ADDR=127.0.0.1:12345 HLE_SYSLOG_UDP_ADDR= HLE_SYSLOG_TCP_ADDR= \
//!     target/release/haproxy-log-exporter &
//! # 4 connections, 20 NOTIFYs outstanding on each, for 10 s:
//! cargo run --release --example spoeload -- --addr 127.0.0.1:12345 --pid "$!" --duration 10
//! ```
//!
//! Each connection sends HAPROXY-HELLO (supported-versions "2.0", max-frame-size 16380,
//! capabilities "pipelining,async", an engine-id) and checks the AGENT-HELLO; then it
//! keeps up to `--inflight` NOTIFY frames unanswered (HAProxy's max-waiting-frames),
//! alternating `hle-request` (method, path) and `hle-response` (the 12 arguments of
//! `deploy/spoe/spoe.conf`, typed as HAProxy 2.6 sends them: status and client_port
//! INT64, client_ip IPV4, the rest STRING) of the same stream, with frame-ids 1 and 2.
//! Every ACK must match an outstanding NOTIFY of its connection by stream-id and
//! frame-id, and a request's ACK must set the `route` variable. At the end each
//! connection sends HAPROXY-DISCONNECT and waits for the AGENT-DISCONNECT.
//!
//! The ACK latency is measured here, from just before a NOTIFY is written to the socket
//! to when its ACK is read (so it includes both kernels' loopback work and this
//! program's own queueing). Output is one `name value` line per figure, for scripts.
//! Loopback only; every run is bounded by `--duration` (or `--messages`) plus
//! `--ack-timeout`, and stops by itself.

#[path = "support/cpu.rs"]
mod cpu;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use haproxy_log_exporter::spop::codec::SpopCodec;
use haproxy_log_exporter::spop::frame::{
    actions, kv_items, kv_payload, Action, Frame, FrameType, Status, Value,
};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "\
spoeload: plays HAProxy's SPOE filter against haproxy-log-exporter's agent (loopback only)

Usage: spoeload --addr HOST:PORT [OPTIONS]

Options:
  --addr ADDR          the agent (HLE_SPOE_ADDR), on loopback
  --connections N      agent connections (default 4)
  --inflight N         NOTIFY frames unanswered at most, per connection (default 20,
                       HAProxy's max-waiting-frames)
  --duration S         seconds of sending (default 10)
  --messages N         stop after N messages instead (over all connections; 0: no limit)
  --ack-timeout S      an ACK not back after this long is an error and ends the run
                       (default 5)
  --pid PID            the exporter's process id: report its CPU seconds over the run
  --paths N            distinct paths cycled (default 16)
";

/// HAProxy 2.6's max-frame-size (tune.bufsize 16384 - 4).
const MAX_FRAME_SIZE: u32 = 16380;
/// HAProxy's `timeout processing` in the shipped engine file: an ACK slower than this
/// would have been given up on.
const PROCESSING_TIMEOUT: Duration = Duration::from_millis(100);

struct Options {
    addr: SocketAddr,
    connections: usize,
    inflight: usize,
    duration: Duration,
    messages: u64,
    ack_timeout: Duration,
    pid: Option<u32>,
    paths: usize,
}

fn parse_args(args: &[String]) -> Result<Options, Error> {
    let mut values: HashMap<String, String> = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let name = arg
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        if values.insert(name.to_string(), value.clone()).is_some() {
            return Err(format!("--{name} given twice").into());
        }
    }
    fn num<T: std::str::FromStr>(
        v: &mut HashMap<String, String>,
        name: &str,
        default: T,
    ) -> Result<T, Error> {
        match v.remove(name) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| format!("--{name} {s:?}: not a valid number").into()),
        }
    }
    let addr = values
        .remove("addr")
        .ok_or_else(|| format!("--addr is required\n\n{USAGE}"))?;
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr}: only loopback addresses are allowed").into());
    }
    let options = Options {
        addr,
        connections: num(&mut values, "connections", 4)?,
        inflight: num(&mut values, "inflight", 20)?,
        duration: Duration::from_secs_f64(num(&mut values, "duration", 10.0)?),
        messages: num(&mut values, "messages", 0)?,
        ack_timeout: Duration::from_secs_f64(num(&mut values, "ack-timeout", 5.0)?),
        pid: Some(num(&mut values, "pid", 0u32)?).filter(|&p| p != 0),
        paths: num(&mut values, "paths", 16)?,
    };
    if let Some(name) = values.keys().next() {
        return Err(format!("unknown option --{name}").into());
    }
    if options.connections == 0 || options.inflight == 0 || options.paths == 0 {
        return Err("--connections, --inflight and --paths must be at least 1".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(o) => o,
        Err(err) => {
            eprintln!("spoeload: {err}");
            return ExitCode::from(2);
        }
    };
    // One thread: pinned with taskset, the generator uses exactly one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("spoeload: {err}");
            ExitCode::from(2)
        }
    }
}

/// The NOTIFY payloads, built once and cycled: message `i` of a stream is
/// `requests[k]` then `responses[k]`.
struct Payloads {
    requests: Vec<Bytes>,
    responses: Vec<Bytes>,
}

impl Payloads {
    fn new(paths: usize) -> Payloads {
        const ROUTES: [&str; 8] = [
            "/",
            "/api/v1/items/{}",
            "/api/v1/users/{}/orders",
            "/static/app.{}.js",
            "/login",
            "/search",
            "/img/{}.png",
            "/health",
        ];
        const METHODS: [&str; 4] = ["GET", "GET", "POST", "GET"];
        const STATUSES: [i64; 8] = [200, 200, 200, 304, 200, 404, 200, 500];
        let (mut requests, mut responses) = (Vec::new(), Vec::new());
        for i in 0..paths {
            let path = ROUTES[i % ROUTES.len()].replace("{}", &(1000 + i * 7).to_string());
            let method = METHODS[i % METHODS.len()];
            let request: [(&str, Value<'_>); 2] = [
                ("method", Value::String(method.as_bytes())),
                ("path", Value::String(path.as_bytes())),
            ];
            requests.push(Frame::notify(0, 0, &[("hle-request", &request)]).payload);
            let server = format!("app{}", 1 + i % 3);
            let timers = [
                (i % 5).to_string(),
                "0".to_string(),
                (i % 2).to_string(),
                (2 + i % 40).to_string(),
            ];
            // The order and the types of deploy/spoe/spoe.conf's hle-response, as
            // tests/fixtures/spoe/notify-response.bin shows them.
            let response: [(&str, Value<'_>); 12] = [
                ("method", Value::String(method.as_bytes())),
                ("path", Value::String(path.as_bytes())),
                ("status", Value::Int64(STATUSES[i % STATUSES.len()])),
                ("frontend", Value::String(b"www")),
                ("backend", Value::String(b"app")),
                ("server", Value::String(server.as_bytes())),
                (
                    "client_ip",
                    Value::Ipv4(Ipv4Addr::new(127, 0, 0, 1 + (i % 200) as u8)),
                ),
                (
                    "client_port",
                    Value::Int64(30000 + (i as i64 * 977) % 30000),
                ),
                ("request_wait", Value::String(timers[0].as_bytes())),
                ("queued", Value::String(timers[1].as_bytes())),
                ("connect", Value::String(timers[2].as_bytes())),
                ("response", Value::String(timers[3].as_bytes())),
            ];
            responses.push(Frame::notify(0, 0, &[("hle-response", &response)]).payload);
        }
        Payloads {
            requests,
            responses,
        }
    }
}

/// ACK latencies in nanoseconds, with about 0.2% precision: values below 1024 ns have a
/// bucket each, above that 512 buckets per power of two.
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

impl Histogram {
    const SUB: usize = 512;

    fn new() -> Histogram {
        Histogram {
            buckets: vec![0; 66 * Self::SUB],
            count: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 2 * Self::SUB as u64 {
            return v as usize;
        }
        let shift = (64 - v.leading_zeros()) as usize - 10;
        shift * Self::SUB + (v >> shift) as usize
    }

    /// The highest value of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < 2 * Self::SUB {
            return i as u64;
        }
        let shift = i / Self::SUB - 1;
        let m = (i - shift * Self::SUB) as u64;
        ((m + 1) << shift) - 1
    }

    fn record(&mut self, v: u64) {
        self.buckets[Self::index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    fn over(&self, limit: Duration) -> u64 {
        let limit = limit.as_nanos() as u64;
        let from = Self::index(limit) + 1;
        self.buckets[from.min(self.buckets.len())..].iter().sum()
    }
}

#[derive(Default)]
struct Errors {
    /// Connecting, reading or writing failed, or the agent closed the connection.
    io: u64,
    /// AGENT-HELLO missing, malformed or not agreeing.
    hello: u64,
    /// An ACK whose stream-id/frame-id matches no outstanding NOTIFY.
    unmatched_ack: u64,
    /// An ACK with malformed actions, or a request's ACK without the route.
    bad_ack: u64,
    /// A frame other than ACK while notifying (AGENT-DISCONNECT among them).
    unexpected_frame: u64,
    /// NOTIFYs still unanswered after --ack-timeout.
    unanswered: u64,
    /// No AGENT-DISCONNECT after our HAPROXY-DISCONNECT.
    disconnect: u64,
}

impl Errors {
    fn total(&self) -> u64 {
        self.io
            + self.hello
            + self.unmatched_ack
            + self.bad_ack
            + self.unexpected_frame
            + self.unanswered
            + self.disconnect
    }

    fn add(&mut self, o: &Errors) {
        self.io += o.io;
        self.hello += o.hello;
        self.unmatched_ack += o.unmatched_ack;
        self.bad_ack += o.bad_ack;
        self.unexpected_frame += o.unexpected_frame;
        self.unanswered += o.unanswered;
        self.disconnect += o.disconnect;
    }
}

struct Stats {
    requests_sent: u64,
    responses_sent: u64,
    requests_acked: u64,
    responses_acked: u64,
    /// When the last ACK came back.
    end: Option<Instant>,
    latency: Histogram,
    errors: Errors,
    /// Most NOTIFYs outstanding at once.
    max_outstanding: usize,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            requests_sent: 0,
            responses_sent: 0,
            requests_acked: 0,
            responses_acked: 0,
            end: None,
            latency: Histogram::new(),
            errors: Errors::default(),
            max_outstanding: 0,
        }
    }
}

/// What every connection shares.
struct Shared {
    options: Options,
    payloads: Payloads,
    /// Messages handed out, for --messages.
    budget: AtomicU64,
    /// Set once every connection has done its HELLO.
    start: tokio::sync::Barrier,
}

type Reader = FramedRead<tokio::net::tcp::OwnedReadHalf, SpopCodec>;
type Writer = FramedWrite<tokio::net::tcp::OwnedWriteHalf, SpopCodec>;

async fn run(options: Options) -> Result<bool, Error> {
    let connections = options.connections;
    eprintln!(
        "spoeload: {} connections to {}, {} NOTIFYs in flight each, {}",
        connections,
        options.addr,
        options.inflight,
        if options.messages > 0 {
            format!("{} messages", options.messages)
        } else {
            format!("{:.0} s", options.duration.as_secs_f64())
        }
    );
    let shared = Arc::new(Shared {
        payloads: Payloads::new(options.paths),
        options,
        budget: AtomicU64::new(0),
        // The connections and this task.
        start: tokio::sync::Barrier::new(connections + 1),
    });
    let mut tasks = Vec::new();
    for id in 0..connections {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move { connection(id, &shared).await }));
    }
    shared.start.wait().await;
    let start = Instant::now();
    let cpu_before = shared.options.pid.and_then(cpu::cpu_seconds);
    let self_before = cpu::cpu_seconds(std::process::id());

    let mut total = Stats::new();
    let mut end = start;
    for task in tasks {
        let stats = task.await?;
        total.requests_sent += stats.requests_sent;
        total.responses_sent += stats.responses_sent;
        total.requests_acked += stats.requests_acked;
        total.responses_acked += stats.responses_acked;
        total.latency.merge(&stats.latency);
        total.errors.add(&stats.errors);
        total.max_outstanding = total.max_outstanding.max(stats.max_outstanding);
        if let Some(e) = stats.end {
            end = end.max(e);
        }
    }
    let elapsed = end.duration_since(start).as_secs_f64().max(1e-9);
    let cpu = shared
        .options
        .pid
        .and_then(cpu::cpu_seconds)
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    let self_cpu = cpu::cpu_seconds(std::process::id())
        .zip(self_before)
        .map(|(a, b)| a - b);

    let sent = total.requests_sent + total.responses_sent;
    let acked = total.requests_acked + total.responses_acked;
    let h = &total.latency;
    let us = |ns: u64| ns as f64 / 1000.0;
    println!("connections {}", shared.options.connections);
    println!("inflight {}", shared.options.inflight);
    println!("max_outstanding {}", total.max_outstanding);
    println!("elapsed_s {elapsed:.3}");
    println!("messages_sent {sent}");
    println!("requests_sent {}", total.requests_sent);
    println!("responses_sent {}", total.responses_sent);
    println!("messages_acked {acked}");
    println!("requests_acked {}", total.requests_acked);
    println!("responses_acked {}", total.responses_acked);
    println!("messages_per_s {:.0}", acked as f64 / elapsed);
    println!("ack_p50_us {:.1}", us(h.quantile(0.5)));
    println!("ack_p90_us {:.1}", us(h.quantile(0.9)));
    println!("ack_p99_us {:.1}", us(h.quantile(0.99)));
    println!("ack_p999_us {:.1}", us(h.quantile(0.999)));
    println!("ack_max_us {:.1}", us(h.max));
    println!("acks_over_100ms {}", h.over(PROCESSING_TIMEOUT));
    let e = &total.errors;
    println!("errors {}", e.total());
    println!(
        "errors_detail io={} hello={} unmatched_ack={} bad_ack={} unexpected_frame={} unanswered={} disconnect={}",
        e.io, e.hello, e.unmatched_ack, e.bad_ack, e.unexpected_frame, e.unanswered, e.disconnect
    );
    if let Some(cpu) = cpu {
        println!("exporter_cpu_s {cpu:.2}");
        println!("exporter_cpu_share {:.3}", cpu / elapsed);
        if acked > 0 {
            println!("exporter_cpu_s_per_1m {:.3}", cpu * 1e6 / acked as f64);
        }
    }
    if let Some(cpu) = self_cpu {
        println!("spoeload_cpu_share {:.3}", cpu / elapsed);
    }
    Ok(e.total() == 0)
}

/// One agent connection: HELLO, NOTIFYs until the time or the budget is spent, then
/// DISCONNECT.
async fn connection(id: usize, shared: &Shared) -> Stats {
    let mut stats = Stats::new();
    let opened = handshake(shared.options.addr).await;
    // Every connection reaches the barrier, even a failed one, so that none waits forever.
    shared.start.wait().await;
    let (mut reader, mut writer) = match opened {
        Ok(halves) => halves,
        Err(Failure::Hello(err)) => {
            eprintln!("spoeload: connection {id}: {err}");
            stats.errors.hello += 1;
            return stats;
        }
        Err(Failure::Io(err)) => {
            eprintln!("spoeload: connection {id}: {err}");
            stats.errors.io += 1;
            return stats;
        }
    };
    if notify(id, shared, &mut reader, &mut writer, &mut stats).await {
        disconnect(
            &mut reader,
            &mut writer,
            &mut stats,
            shared.options.ack_timeout,
        )
        .await;
    }
    stats
}

enum Failure {
    Io(std::io::Error),
    Hello(String),
}

async fn handshake(addr: SocketAddr) -> Result<(Reader, Writer), Failure> {
    let stream = TcpStream::connect(addr).await.map_err(Failure::Io)?;
    stream.set_nodelay(true).map_err(Failure::Io)?;
    let (rd, wr) = stream.into_split();
    let mut reader = FramedRead::new(rd, SpopCodec::new(MAX_FRAME_SIZE));
    let mut writer = FramedWrite::new(wr, SpopCodec::new(MAX_FRAME_SIZE));
    let hello = kv_payload(&[
        ("supported-versions", Value::String(b"2.0")),
        ("max-frame-size", Value::Uint32(MAX_FRAME_SIZE)),
        ("capabilities", Value::String(b"pipelining,async")),
        (
            "engine-id",
            Value::String(b"5d1bd3a8-0d52-4c4b-9a2f-spoeload0000"),
        ),
    ]);
    let hello = Frame::new(FrameType::HaproxyHello, 0, 0, hello);
    writer
        .send(hello)
        .await
        .map_err(|e| Failure::Hello(format!("sending HAPROXY-HELLO: {e}")))?;
    let reply = tokio::time::timeout(Duration::from_secs(5), reader.next())
        .await
        .map_err(|_| Failure::Hello("no AGENT-HELLO within 5 s".into()))?;
    let reply = match reply {
        None => return Err(Failure::Hello("closed before AGENT-HELLO".into())),
        Some(Err(e)) => return Err(Failure::Hello(format!("reading AGENT-HELLO: {e}"))),
        Some(Ok(f)) => f,
    };
    if reply.frame_type != FrameType::AgentHello {
        return Err(Failure::Hello(format!(
            "expected AGENT-HELLO, got {:?}",
            reply.frame_type
        )));
    }
    let (mut version, mut size, mut caps) = (None, None, None);
    for item in kv_items(&reply.payload) {
        let (name, value) = item.map_err(|e| Failure::Hello(format!("AGENT-HELLO: {e}")))?;
        match name {
            b"version" => version = Some(value),
            b"max-frame-size" => size = value.integer(),
            b"capabilities" => caps = Some(value),
            _ => {}
        }
    }
    if version != Some(Value::String(b"2.0")) {
        return Err(Failure::Hello(format!("AGENT-HELLO version {version:?}")));
    }
    let size = match size {
        Some(s) if (256..=i64::from(MAX_FRAME_SIZE)).contains(&s) => s as u32,
        other => {
            return Err(Failure::Hello(format!(
                "AGENT-HELLO max-frame-size {other:?}"
            )))
        }
    };
    let pipelining = match caps {
        Some(Value::String(s)) => s
            .split(|&b| b == b',')
            .any(|c| c.trim_ascii() == b"pipelining"),
        _ => false,
    };
    if !pipelining {
        return Err(Failure::Hello(format!(
            "AGENT-HELLO capabilities {caps:?}: no pipelining"
        )));
    }
    reader.decoder_mut().set_max_frame_size(size);
    writer.encoder_mut().set_max_frame_size(size);
    Ok((reader, writer))
}

/// A NOTIFY waiting for its ACK.
struct Outstanding {
    sent: Instant,
    request: bool,
}

/// The NOTIFY phase; false when the connection cannot be used any more.
async fn notify(
    id: usize,
    shared: &Shared,
    reader: &mut Reader,
    writer: &mut Writer,
    stats: &mut Stats,
) -> bool {
    let options = &shared.options;
    let deadline = Instant::now() + options.duration;
    let mut outstanding: HashMap<(u64, u64), Outstanding> =
        HashMap::with_capacity(options.inflight * 2);
    // HAProxy's stream ids are process-wide: each connection takes every N-th one.
    let mut stream = id as u64;
    let step = options.connections as u64;
    let mut seq = id;
    // The request of `stream` was sent; its response goes next.
    let mut response_due = false;
    let mut sending = true;
    loop {
        if sending {
            let now = Instant::now();
            if options.messages == 0 && now >= deadline {
                sending = false;
            }
            let mut fed = false;
            while sending && outstanding.len() < options.inflight {
                if options.messages > 0
                    && shared.budget.fetch_add(1, Ordering::Relaxed) >= options.messages
                {
                    sending = false;
                    break;
                }
                let k = seq % shared.payloads.requests.len();
                let (frame_id, payload) = if response_due {
                    (2, shared.payloads.responses[k].clone())
                } else {
                    (1, shared.payloads.requests[k].clone())
                };
                let frame = Frame::new(FrameType::Notify, stream, frame_id, payload);
                let request = !response_due;
                if response_due {
                    stream += step;
                    seq += 1;
                    stats.responses_sent += 1;
                } else {
                    stats.requests_sent += 1;
                }
                response_due = !response_due;
                outstanding.insert(
                    (frame.stream_id, frame.frame_id),
                    Outstanding { sent: now, request },
                );
                if let Err(e) = writer.feed(frame).await {
                    eprintln!("spoeload: connection {id}: write: {e}");
                    stats.errors.io += 1;
                    return false;
                }
                fed = true;
            }
            stats.max_outstanding = stats.max_outstanding.max(outstanding.len());
            if fed {
                if let Err(e) = writer.flush().await {
                    eprintln!("spoeload: connection {id}: write: {e}");
                    stats.errors.io += 1;
                    return false;
                }
            }
        }
        if outstanding.is_empty() {
            return true;
        }
        // One ACK (waiting for it), then every one already buffered.
        let next = match tokio::time::timeout(options.ack_timeout, reader.next()).await {
            Ok(next) => next,
            Err(_) => {
                eprintln!(
                    "spoeload: connection {id}: {} NOTIFYs unanswered after {:?}",
                    outstanding.len(),
                    options.ack_timeout
                );
                stats.errors.unanswered += outstanding.len() as u64;
                return false;
            }
        };
        let mut next = Some(next);
        while let Some(frame) = next.take() {
            let frame = match frame {
                None => {
                    eprintln!("spoeload: connection {id}: closed by the agent");
                    stats.errors.io += 1;
                    stats.errors.unanswered += outstanding.len() as u64;
                    return false;
                }
                Some(Err(e)) => {
                    eprintln!("spoeload: connection {id}: read: {e}");
                    stats.errors.io += 1;
                    stats.errors.unanswered += outstanding.len() as u64;
                    return false;
                }
                Some(Ok(frame)) => frame,
            };
            let now = Instant::now();
            if frame.frame_type != FrameType::Ack {
                eprintln!(
                    "spoeload: connection {id}: unexpected {:?} frame",
                    frame.frame_type
                );
                stats.errors.unexpected_frame += 1;
                if frame.frame_type == FrameType::AgentDisconnect {
                    stats.errors.unanswered += outstanding.len() as u64;
                    return false;
                }
            } else {
                match outstanding.remove(&(frame.stream_id, frame.frame_id)) {
                    None => stats.errors.unmatched_ack += 1,
                    Some(o) => {
                        stats
                            .latency
                            .record(now.duration_since(o.sent).as_nanos() as u64);
                        stats.end = Some(now);
                        if o.request {
                            stats.requests_acked += 1;
                        } else {
                            stats.responses_acked += 1;
                        }
                        if !ack_ok(&frame.payload, o.request) {
                            stats.errors.bad_ack += 1;
                        }
                    }
                }
            }
            if reader.decoder().has_frame(reader.read_buffer()) {
                next = Some(reader.next().await);
            }
        }
    }
}

/// A request's ACK sets txn.route; every action must read.
fn ack_ok(payload: &[u8], request: bool) -> bool {
    let mut route = false;
    for action in actions(payload) {
        match action {
            Err(_) => return false,
            Ok(Action::SetVar {
                name: b"route",
                value: Value::String(s),
                ..
            }) => route = !s.is_empty(),
            Ok(_) => {}
        }
    }
    route || !request
}

/// HAPROXY-DISCONNECT as at a soft stop, then the AGENT-DISCONNECT and the close.
async fn disconnect(reader: &mut Reader, writer: &mut Writer, stats: &mut Stats, wait: Duration) {
    if writer
        .send(Frame::haproxy_disconnect(Status::Normal, "normal"))
        .await
        .is_err()
    {
        stats.errors.disconnect += 1;
        return;
    }
    match tokio::time::timeout(wait, reader.next()).await {
        Ok(Some(Ok(f))) if f.frame_type == FrameType::AgentDisconnect => {}
        other => {
            eprintln!("spoeload: expected AGENT-DISCONNECT, got {other:?}");
            stats.errors.disconnect += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn histogram_buckets_are_continuous_and_tight() {
        let mut last = None;
        for v in 0..5_000_000u64 {
            let i = Histogram::index(v);
            assert!(Histogram::value(i) >= v, "{v}");
            if let Some(l) = last {
                assert!(i == l || i == l + 1);
            }
            last = Some(i);
            assert!(Histogram::value(i) as f64 <= v as f64 * 1.002 + 1.0);
        }
    }
}
