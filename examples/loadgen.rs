//! Load generator: sends a generated, deterministic HAProxy log corpus to the exporter over
//! UDP or TCP at a target rate, then reads the exporter's own counters and reports what was
//! sent, received, counted and lost, and what it cost the exporter in CPU and memory.
//!
//! ```text
//! # Write a corpus (the benches and bench/compare-mtail.sh use the same generator):
//! cargo run --release --example loadgen -- corpus --lines 1000000 > corpus.log
//!
//! # Start an exporter on free loopback ports, send 30k lines/s over UDP for 20 s, stop it:
//! cargo build --release
//! cargo run --release --example loadgen -- send --exporter target/release/haproxy-log-exporter \
//!     --transport udp --rate 30000 --duration 20
//!
//! # The same against an exporter that is already running:
//! cargo run --release --example loadgen -- send --udp 127.0.0.1:5140 \
//!     --metrics http://127.0.0.1:9129/metrics --pid "$(pidof haproxy-log-exporter)" --rate 300000
//!
//! # TCP over one connection, as fast as the exporter reads, octet-counted framing:
//! cargo run --release --example loadgen -- send --exporter target/release/haproxy-log-exporter \
//!     --transport tcp --framing octet --rate 0 --duration 10
//! ```
//!
//! Loopback only: it is a measuring tool, not a traffic generator for other hosts. Every
//! run is bounded (`--duration`, then at most `--settle` seconds of waiting for the counts
//! to stop moving) and stops by itself.

#[path = "../benches/support/corpus.rs"]
mod corpus;

#[path = "support/cpu.rs"]
mod cpu;

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use corpus::{Generator, Header, Layout, Options};

type Error = Box<dyn std::error::Error>;

const USAGE: &str = "\
loadgen: HAProxy log load for haproxy-log-exporter (loopback only)

Usage:
  loadgen corpus [CORPUS OPTIONS] [--lines N] [--stats]
      Writes N lines (default 1000000) to standard output, one a line; --stats prints
      the number of distinct paths and label sets to standard error instead.
  loadgen send [CORPUS OPTIONS] [SEND OPTIONS]
      Sends the corpus to an exporter and reports sent, received, counted, lost, CPU, RSS.

Corpus options:
  --seed N             PRNG seed (default 1); the same seed gives the same bytes
  --header H           local (default; `<134>Nov 25 10:00:00 haproxy[1234]: `), rfc3164,
                       rfc5424, short, raw
  --layout L           httplog (default, with tcplog lines mixed in), tcplog, clf, custom, json
  --tcp-share F        share of tcplog lines in the httplog layout (default 0.03)
  --path-ids N         numeric ids per route that has one (default 10): path cardinality
  --clock-rate N       simulated requests per second: how fast timestamps advance (30000)

Send options:
  --exporter PATH      start this exporter binary on free loopback ports (and stop it at
                       the end); with --env K=V for more HLE_ variables (repeatable)
  --transport T        udp (default) or tcp, with --exporter
  --udp ADDR | --tcp ADDR
                       send to a running exporter instead (127.0.0.1:5140)
  --metrics URL        its /metrics (default http://127.0.0.1:9129/metrics)
  --pid PID            its process id, for CPU and RSS (default: not measured)
  --framing F          TCP framing: lf (default) or octet (RFC 6587 octet counting)
  --rate N             lines per second (default 30000); 0: as fast as possible
  --duration S         seconds of sending (default 10)
  --batch N            lines per send burst (default 32 for UDP, 512 for TCP)
  --senders N          UDP: sending threads, each with its own socket (default 1); one
                       thread sends about 300k datagrams/s on loopback
  --corpus-lines N     distinct lines held in memory and cycled (default: rate x duration,
                       at most 1000000)
  --settle S           at most this long to wait for the counts to stop moving (default 10)
  --scrape-every S     also scrape /metrics every S seconds while sending, and report
                       how long the scrapes took (default: only before and after)
  --max-loss-ratio F   exit 1 if (sent - counted) / sent is above F (default: never)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("corpus") => corpus_command(&args[1..]),
        Some("send") => send_command(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(format!("expected a command\n\n{USAGE}").into()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("loadgen: {err}");
            ExitCode::from(2)
        }
    }
}

/// Command-line flags: `--name value` pairs, plus repeatable `--env`.
struct Args {
    values: BTreeMap<String, String>,
    env: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    fn parse(args: &[String], switches: &[&str]) -> Result<Args, Error> {
        let mut parsed = Args {
            values: BTreeMap::new(),
            env: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            if switches.contains(&name) {
                parsed.flags.push(name.to_string());
                continue;
            }
            let value = it
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?
                .clone();
            if name == "env" {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--env {value:?}: expected NAME=VALUE"))?;
                parsed.env.push((k.to_string(), v.to_string()));
            } else if parsed.values.insert(name.to_string(), value).is_some() {
                return Err(format!("--{name} given twice").into());
            }
        }
        Ok(parsed)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str, default: T) -> Result<T, Error> {
        match self.take(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} {v:?}: not a valid number").into()),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// Fails on options nobody took, so that a typo is not silently ignored.
    fn finish(self) -> Result<(), Error> {
        match self.values.keys().next() {
            Some(name) => Err(format!("unknown option --{name}").into()),
            None => Ok(()),
        }
    }
}

fn corpus_options(args: &mut Args) -> Result<Options, Error> {
    let defaults = Options::default();
    let header = match args.take("header") {
        None => defaults.header,
        Some(h) => Header::from_name(&h).ok_or_else(|| format!("--header {h:?}: unknown"))?,
    };
    let layout = match args.take("layout") {
        None => defaults.layout,
        Some(l) => Layout::from_name(&l).ok_or_else(|| format!("--layout {l:?}: unknown"))?,
    };
    Ok(Options {
        seed: args.number("seed", defaults.seed)?,
        header,
        layout,
        tcp_share: args.number("tcp-share", defaults.tcp_share)?,
        path_ids: args.number("path-ids", defaults.path_ids)?,
        clock_rate: args.number("clock-rate", defaults.clock_rate)?,
    })
}

fn corpus_command(args: &[String]) -> Result<ExitCode, Error> {
    let mut args = Args::parse(args, &["stats"])?;
    let options = corpus_options(&mut args)?;
    let lines: u64 = args.number("lines", 1_000_000)?;
    let stats = args.flag("stats");
    args.finish()?;
    if stats {
        let s = corpus::stats(&options, lines);
        eprintln!("lines                      {}", s.lines);
        eprintln!("bytes                      {}", s.bytes);
        eprintln!("tcplog lines               {}", s.tcp);
        eprintln!("distinct paths             {}", s.paths);
        eprintln!(
            "distinct status,backend,server       {}",
            s.status_backend_server
        );
        eprintln!(
            "distinct path,method,status,server   {}",
            s.path_method_status_server
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut generator = Generator::new(options);
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 20, stdout);
    let mut line = Vec::with_capacity(512);
    for _ in 0..lines {
        line.clear();
        generator.write_line(&mut line);
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Lf,
    Octet,
}

/// The corpus, framed once, and where each line starts.
struct Framed {
    bytes: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is line `i` with its framing.
    offsets: Vec<usize>,
}

impl Framed {
    fn new(options: &Options, lines: usize, framing: Framing) -> Framed {
        let mut generator = Generator::new(options.clone());
        let mut bytes = Vec::with_capacity(lines * 240);
        let mut offsets = Vec::with_capacity(lines + 1);
        let mut line = Vec::with_capacity(512);
        for _ in 0..lines {
            offsets.push(bytes.len());
            line.clear();
            generator.write_line(&mut line);
            match framing {
                // HAProxy ends every datagram and every legacy ring frame with `\n`.
                Framing::Lf => {
                    bytes.extend_from_slice(&line);
                    bytes.push(b'\n');
                }
                Framing::Octet => {
                    let _ = write!(bytes, "{} ", line.len());
                    bytes.extend_from_slice(&line);
                }
            }
        }
        offsets.push(bytes.len());
        Framed { bytes, offsets }
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn line(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Lines `from..to` (`to` <= `len`), framed, as one slice.
    fn range(&self, from: usize, to: usize) -> &[u8] {
        &self.bytes[self.offsets[from]..self.offsets[to]]
    }
}

/// Where the exporter is, and the process to measure.
struct Target {
    transport: Transport,
    addr: SocketAddr,
    metrics: Url,
    pid: Option<u32>,
    child: Option<Child>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            stop(child);
        }
    }
}

/// `http://host:port/path`.
#[derive(Debug, Clone)]
struct Url {
    addr: SocketAddr,
    path: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, Error> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr = host
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| format!("{url:?}: cannot resolve {host}"))?;
        Ok(Url {
            addr,
            path: if path.is_empty() { "/" } else { path }.to_string(),
        })
    }
}

fn loopback(addr: SocketAddr) -> Result<SocketAddr, Error> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!("{addr}: only loopback addresses (this is a measuring tool)").into())
    }
}

fn send_command(args: &[String]) -> Result<ExitCode, Error> {
    let mut args = Args::parse(args, &[])?;
    let options = corpus_options(&mut args)?;
    let rate: u64 = args.number("rate", 30_000)?;
    let duration = Duration::from_secs_f64(args.number("duration", 10.0)?);
    let settle = Duration::from_secs_f64(args.number("settle", 10.0)?);
    let scrape_every: f64 = args.number("scrape-every", 0.0)?;
    let max_loss: f64 = args.number("max-loss-ratio", f64::INFINITY)?;
    let framing = match args.take("framing").as_deref() {
        None | Some("lf") => Framing::Lf,
        Some("octet") => Framing::Octet,
        Some(other) => return Err(format!("--framing {other:?}: lf or octet").into()),
    };

    // Everything is checked, and the corpus generated, before an exporter is started.
    let exporter = args.take("exporter");
    let attach = if exporter.is_some() {
        None
    } else {
        let (transport, addr) = match (args.take("udp"), args.take("tcp")) {
            (Some(a), None) => (Transport::Udp, a),
            (None, Some(a)) => (Transport::Tcp, a),
            _ => return Err("give --exporter PATH, or one of --udp ADDR and --tcp ADDR".into()),
        };
        let addr = loopback(
            addr.to_socket_addrs()?
                .next()
                .ok_or_else(|| format!("cannot resolve {addr}"))?,
        )?;
        let metrics = Url::parse(
            &args
                .take("metrics")
                .unwrap_or_else(|| "http://127.0.0.1:9129/metrics".to_string()),
        )?;
        loopback(metrics.addr)?;
        let pid = Some(args.number("pid", 0u32)?).filter(|p| *p != 0);
        Some((transport, addr, metrics, pid))
    };
    let transport = match &attach {
        Some((transport, ..)) => *transport,
        None => match args.take("transport").as_deref() {
            None | Some("udp") => Transport::Udp,
            Some("tcp") => Transport::Tcp,
            Some(other) => return Err(format!("--transport {other:?}: udp or tcp").into()),
        },
    };
    let batch: usize = args.number(
        "batch",
        match transport {
            Transport::Udp => 32,
            Transport::Tcp => 512,
        },
    )?;
    let senders: usize = args.number("senders", 1)?;
    if senders == 0 || (senders > 1 && transport == Transport::Tcp) {
        return Err("--senders: at least 1, and only for UDP (TCP uses one connection)".into());
    }
    let wanted = if rate == 0 {
        1_000_000
    } else {
        (rate as f64 * duration.as_secs_f64()) as usize
    };
    let corpus_lines: usize = args.number("corpus-lines", wanted.clamp(1000, 1_000_000))?;
    let env = std::mem::take(&mut args.env);
    args.finish()?;
    let framing = match transport {
        Transport::Udp => Framing::Lf,
        Transport::Tcp => framing,
    };

    let t0 = Instant::now();
    let framed = Framed::new(&options, corpus_lines.max(1), framing);
    let generated = t0.elapsed();
    let target = match (attach, exporter) {
        (Some((transport, addr, metrics, pid)), _) => Target {
            transport,
            addr,
            metrics,
            pid,
            child: None,
        },
        (None, exporter) => spawn(&exporter.unwrap_or_default(), transport, &env)?,
    };
    eprintln!(
        "loadgen: {} lines ({} MiB) generated in {:.2} s; sending over {} to {} for {:.0} s at {}",
        framed.len(),
        framed.bytes.len() >> 20,
        generated.as_secs_f64(),
        target.transport.name(),
        target.addr,
        duration.as_secs_f64(),
        if rate == 0 {
            "the highest rate possible".to_string()
        } else {
            format!("{rate} lines/s")
        }
    );

    let before = Counts::scrape(&target.metrics, target.transport)?;
    let kernel_before = kernel_drops(target.addr.port());
    let snmp_before = snmp_rcvbuf_errors();
    let cpu_before = target.pid.and_then(cpu::cpu_seconds);
    let self_before = cpu::cpu_seconds(std::process::id());

    // Watch memory and, if asked, scrape while sending.
    let running = Arc::new(AtomicBool::new(true));
    let max_rss = Arc::new(Mutex::new(0u64));
    let watcher = target.pid.map(|pid| {
        let (running, max_rss) = (running.clone(), max_rss.clone());
        thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                if let Some(rss) = memory(pid).map(|m| m.rss_kib) {
                    let mut max = max_rss.lock().unwrap_or_else(|e| e.into_inner());
                    *max = (*max).max(rss);
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let scraper = (scrape_every > 0.0).then(|| {
        let (running, url) = (running.clone(), target.metrics.clone());
        let every = Duration::from_secs_f64(scrape_every);
        thread::spawn(move || {
            let mut scrapes = Vec::new();
            while running.load(Ordering::Relaxed) {
                let start = Instant::now();
                if let Ok((_, body)) = http_get(&url, Duration::from_secs(10)) {
                    let series = body
                        .split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty() && l[0] != b'#')
                        .count();
                    scrapes.push((start.elapsed(), body.len(), series));
                }
                let wait = every.saturating_sub(start.elapsed());
                thread::sleep(wait);
            }
            scrapes
        })
    });

    let start = Instant::now();
    let sent = match target.transport {
        Transport::Udp => send_udp(&framed, target.addr, rate, duration, batch, senders)?,
        Transport::Tcp => send_tcp(&framed, target.addr, rate, duration, batch)?,
    };
    let send_time = start.elapsed();
    let cpu_sent = target.pid.and_then(cpu::cpu_seconds);
    let self_after = cpu::cpu_seconds(std::process::id());

    // Wait until the exporter has processed everything it will ever see.
    let (after, settled_at) = settle_counts(&target, &before, sent, start, settle)?;
    running.store(false, Ordering::Relaxed);
    let cpu_after = target.pid.and_then(cpu::cpu_seconds);
    let mem = target.pid.and_then(memory);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    let scrapes = scraper.and_then(|s| s.join().ok()).unwrap_or_default();
    let kernel_after = kernel_drops(target.addr.port());
    let snmp_after = snmp_rcvbuf_errors();

    let received = after.received - before.received;
    let counted = after.counted - before.counted;
    let seconds = send_time.as_secs_f64();
    let row = |name: &str, value: String| println!("{name:<26} {value}");
    row("transport", {
        let framing = match (target.transport, framing) {
            (Transport::Udp, _) => "one datagram per line",
            (Transport::Tcp, Framing::Lf) => "one connection, newline framing",
            (Transport::Tcp, Framing::Octet) => "one connection, octet counting",
        };
        format!("{} ({framing})", target.transport.name())
    });
    row(
        "target_rate",
        if rate == 0 {
            "max".to_string()
        } else {
            format!("{rate} lines/s")
        },
    );
    row("send_seconds", format!("{seconds:.2}"));
    row("send_rate", format!("{:.0} lines/s", sent as f64 / seconds));
    row(
        "processed_rate",
        format!(
            "{:.0} lines/s (received lines / time until the last one was counted)",
            received as f64 / settled_at.as_secs_f64().max(1e-9)
        ),
    );
    row("sent", sent.to_string());
    row("received", received.to_string());
    row("counted", counted.to_string());
    row(
        "rejected_ignored",
        format!(
            "{} rejected, {} ignored",
            after.rejected - before.rejected,
            after.ignored - before.ignored
        ),
    );
    let lost = sent.saturating_sub(received);
    row(
        "lost",
        format!(
            "{lost} ({:.4}%) = sent - received",
            100.0 * lost as f64 / sent.max(1) as f64
        ),
    );
    let mut unaccounted = 0;
    if target.transport == Transport::Udp {
        row(
            "udp_receive_drops",
            match (before.udp_drops, after.udp_drops) {
                (Some(b), Some(a)) => {
                    unaccounted = lost.saturating_sub(a - b);
                    format!(
                        "{} (haproxy_log_exporter_udp_receive_drops_total); lost and not in it: {unaccounted}",
                        a - b
                    )
                }
                _ => {
                    "n/a (the exporter has no haproxy_log_exporter_udp_receive_drops_total)".into()
                }
            },
        );
        row(
            "kernel_socket_drops",
            match (kernel_before, kernel_after) {
                (Some(b), Some(a)) => format!(
                    "{} (/proc/net/udp drops of port {})",
                    a - b,
                    target.addr.port()
                ),
                _ => "n/a".into(),
            },
        );
        if let (Some(b), Some(a)) = (snmp_before, snmp_after) {
            row(
                "kernel_rcvbuf_errors",
                format!("{} (/proc/net/snmp Udp RcvbufErrors, whole host)", a - b),
            );
        }
    }
    match (cpu_before, cpu_sent, cpu_after) {
        (Some(b), Some(s), Some(a)) => {
            row(
                "exporter_cpu",
                format!(
                    "{:.1}% of one core while sending ({:.2} s CPU in {seconds:.2} s)",
                    100.0 * (s - b) / seconds,
                    s - b
                ),
            );
            row(
                "exporter_cpu_per_line",
                format!(
                    "{:.3} us (all CPU until settled / received lines)",
                    1e6 * (a - b) / received.max(1) as f64
                ),
            );
        }
        _ => row("exporter_cpu", "n/a (give --pid)".into()),
    }
    match mem {
        Some(m) => row(
            "exporter_rss",
            format!(
                "{:.1} MiB at the end, {:.1} MiB highest sampled while sending, {:.1} MiB peak (VmHWM)",
                m.rss_kib as f64 / 1024.0,
                *max_rss.lock().unwrap_or_else(|e| e.into_inner()) as f64 / 1024.0,
                m.hwm_kib as f64 / 1024.0
            ),
        ),
        None => row("exporter_rss", "n/a (give --pid)".into()),
    }
    if let (Some(b), Some(a)) = (self_before, self_after) {
        row(
            "loadgen_cpu",
            format!(
                "{:.1}% of one core (this generator)",
                100.0 * (a - b) / seconds
            ),
        );
    }
    if !scrapes.is_empty() {
        let mut times: Vec<Duration> = scrapes.iter().map(|s| s.0).collect();
        times.sort();
        let last = scrapes.last().map_or((0, 0), |s| (s.1, s.2));
        row(
            "scrapes_while_sending",
            format!(
                "{} scrapes, median {:.1} ms, max {:.1} ms, last {} KiB with {} samples",
                times.len(),
                times[times.len() / 2].as_secs_f64() * 1e3,
                times[times.len() - 1].as_secs_f64() * 1e3,
                last.0 >> 10,
                last.1
            ),
        );
    }

    if rate > 0 && (sent as f64) < 0.97 * rate as f64 * seconds {
        eprintln!(
            "loadgen: sent {:.0} lines/s, below the target: the generator was the bottleneck \
             (try --senders 2, or a machine with a core to spare)",
            sent as f64 / seconds
        );
    }
    if unaccounted > 0 {
        eprintln!("loadgen: {unaccounted} lost datagrams are not in the exporter's drop counter");
    }
    let loss_ratio = sent.saturating_sub(counted) as f64 / sent.max(1) as f64;
    if loss_ratio > max_loss {
        eprintln!(
            "loadgen: {:.4}% of the lines sent were not counted (more than --max-loss-ratio {max_loss})",
            100.0 * loss_ratio
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Paces sending: after `elapsed`, `rate × elapsed` lines should have been sent, in
/// bursts of at most `batch` lines and at most 1 ms worth of lines. A sender that fell
/// behind (descheduled) catches up by at most 10 ms worth, so a short stall does not
/// turn into an unrealistic burst.
struct Pacer {
    rate: u64,
    batch: u64,
    start: Instant,
    deadline: Instant,
    owed_cap: u64,
    skipped: u64,
}

impl Pacer {
    fn new(rate: u64, duration: Duration, batch: usize) -> Pacer {
        let start = Instant::now();
        let batch = if rate == 0 {
            batch as u64
        } else {
            (rate / 1000).clamp(1, batch.max(1) as u64)
        };
        Pacer {
            rate,
            batch,
            start,
            deadline: start + duration,
            owed_cap: (rate / 100).max(batch),
            skipped: 0,
        }
    }

    /// How many lines to send now, or `None` when the time is up.
    fn next(&mut self, sent: u64) -> Option<usize> {
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                return None;
            }
            if self.rate == 0 {
                return Some(self.batch as usize);
            }
            let due = (self.rate as f64 * (now - self.start).as_secs_f64()) as u64;
            let owed = due.saturating_sub(sent + self.skipped);
            if owed > self.owed_cap {
                self.skipped += owed - self.owed_cap;
            }
            let owed = owed.min(self.owed_cap);
            if owed >= self.batch {
                return Some(owed.min(self.batch) as usize);
            }
            // Sleep until a whole batch is due (or the end).
            let wait = Duration::from_secs_f64((self.batch - owed) as f64 / self.rate as f64);
            thread::sleep(wait.min(self.deadline - now));
        }
    }
}

/// Sends over `senders` sockets, one thread each, each at its share of `rate` and from
/// its own place in the corpus: loopback UDP costs the sender about as much as the
/// receiver, so one thread may not reach the rate wanted.
fn send_udp(
    framed: &Framed,
    addr: SocketAddr,
    rate: u64,
    duration: Duration,
    batch: usize,
    senders: usize,
) -> Result<u64, Error> {
    let results: Vec<Result<u64, String>> = thread::scope(|scope| {
        let threads: Vec<_> = (0..senders)
            .map(|i| {
                let share = rate / senders as u64 + u64::from((i as u64) < rate % senders as u64);
                let first = framed.len() * i / senders;
                scope.spawn(move || send_udp_one(framed, addr, share, duration, batch, first))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("a sender panicked".into())))
            .collect()
    });
    let mut sent = 0;
    for result in results {
        sent += result?;
    }
    Ok(sent)
}

fn send_udp_one(
    framed: &Framed,
    addr: SocketAddr,
    rate: u64,
    duration: Duration,
    batch: usize,
    first: usize,
) -> Result<u64, String> {
    let bind = match addr.ip() {
        IpAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
    };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    socket
        .connect(addr)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let mut pacer = Pacer::new(rate, duration, batch);
    let (mut sent, mut next) = (0u64, first);
    let mut refused = 0u64;
    while let Some(n) = pacer.next(sent) {
        for _ in 0..n {
            match socket.send(framed.line(next)) {
                Ok(_) => sent += 1,
                // Nobody listening (ICMP port unreachable): the datagram is gone, and
                // counts as sent and lost.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    sent += 1;
                    refused += 1;
                }
                Err(e) => return Err(format!("send to {addr}: {e}")),
            }
            next += 1;
            if next == framed.len() {
                next = 0;
            }
        }
    }
    if refused > 0 {
        eprintln!("loadgen: {refused} datagrams were refused (nobody listening on {addr})");
    }
    Ok(sent)
}

fn send_tcp(
    framed: &Framed,
    addr: SocketAddr,
    rate: u64,
    duration: Duration,
    batch: usize,
) -> Result<u64, Error> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    // A write blocks while the exporter is behind (TCP's back-pressure); a stalled
    // exporter must not make the run unbounded.
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut pacer = Pacer::new(rate, duration, batch);
    let (mut sent, mut next) = (0u64, 0usize);
    while let Some(n) = pacer.next(sent) {
        let end = (next + n).min(framed.len());
        stream
            .write_all(framed.range(next, end))
            .map_err(|e| format!("write to {addr}: {e}"))?;
        sent += (end - next) as u64;
        next = if end == framed.len() { 0 } else { end };
    }
    stream.flush()?;
    // Closing tells the exporter the stream is complete; it counts what it has read.
    let _ = stream.shutdown(Shutdown::Write);
    Ok(sent)
}

/// The exporter's self-metrics, summed over labels.
#[derive(Debug, Clone, Default)]
struct Counts {
    received: u64,
    counted: u64,
    rejected: u64,
    ignored: u64,
    udp_drops: Option<u64>,
}

impl Counts {
    fn scrape(url: &Url, transport: Transport) -> Result<Counts, Error> {
        let (status, body) =
            http_get(url, Duration::from_secs(10)).map_err(|e| format!("GET {}: {e}", url.path))?;
        if status != 200 {
            return Err(format!("GET {} answered {status}", url.path).into());
        }
        let text = String::from_utf8_lossy(&body);
        let transport_label = format!("transport=\"{}\"", transport.name());
        let sum = |name: &str, label: Option<&str>| -> Option<u64> {
            let mut total = None;
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let Some(rest) = line.strip_prefix(name) else {
                    continue;
                };
                if !(rest.starts_with('{') || rest.starts_with(' ')) {
                    continue;
                }
                if label.is_some_and(|l| !rest.contains(l)) {
                    continue;
                }
                let value: f64 = rest
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                *total.get_or_insert(0) += value as u64;
            }
            total
        };
        Ok(Counts {
            received: sum(
                "haproxy_log_exporter_lines_received_total",
                Some(&transport_label),
            )
            .ok_or("no haproxy_log_exporter_lines_received_total in the scrape")?,
            counted: sum("haproxy_log_exporter_lines_counted_total", None).unwrap_or(0),
            rejected: sum("haproxy_log_exporter_lines_rejected_total", None).unwrap_or(0),
            ignored: sum("haproxy_log_exporter_lines_ignored_total", None).unwrap_or(0),
            udp_drops: sum("haproxy_log_exporter_udp_receive_drops_total", None),
        })
    }
}

/// Scrapes until every sent line was received, or the counts stop moving for a second,
/// or `limit` has passed. Returns the last counts and when (after `send_start`) the
/// received count last moved.
fn settle_counts(
    target: &Target,
    before: &Counts,
    sent: u64,
    send_start: Instant,
    limit: Duration,
) -> Result<(Counts, Duration), Error> {
    let deadline = Instant::now() + limit;
    let mut last = Counts::scrape(&target.metrics, target.transport)?;
    let mut last_change = Instant::now();
    loop {
        let done = last.received - before.received >= sent
            && last.counted + last.rejected + last.ignored
                >= before.counted + before.rejected + before.ignored + sent;
        if done || last_change.elapsed() > Duration::from_secs(1) || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
        let now = Counts::scrape(&target.metrics, target.transport)?;
        if now.received != last.received || now.counted != last.counted {
            last_change = Instant::now();
        }
        last = now;
    }
    Ok((last, last_change - send_start))
}

/// Starts the exporter on free loopback ports and waits until it is ready.
fn spawn(path: &str, transport: Transport, env: &[(String, String)]) -> Result<Target, Error> {
    let syslog_port = free_port_pair()?;
    let web_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let syslog = format!("127.0.0.1:{syslog_port}");
    let web = format!("127.0.0.1:{web_port}");
    let mut command = Command::new(path);
    // Our own HLE_ variables only: an unknown one in the environment would stop it.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HLE_") {
            command.env_remove(key);
        }
    }
    command
        .env("HLE_SYSLOG_UDP_ADDR", &syslog)
        .env("HLE_SYSLOG_TCP_ADDR", &syslog)
        .env("HLE_WEB_LISTEN_ADDR", &web)
        .env("HLE_LOG_LEVEL", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {path}: {e}"))?;
    let pid = child.id();
    let metrics = Url {
        addr: web.parse()?,
        path: env
            .iter()
            .find(|(k, _)| k == "HLE_WEB_TELEMETRY_PATH")
            .map_or("/metrics".to_string(), |(_, v)| v.clone()),
    };
    let ready = Url {
        addr: metrics.addr,
        path: "/-/ready".to_string(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(format!("{path} exited at start-up ({status})").into());
        }
        if matches!(http_get(&ready, Duration::from_secs(1)), Ok((200, _))) {
            break;
        }
        if Instant::now() > deadline {
            stop(&mut child);
            return Err(format!("{path} was not ready within 10 s").into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(Target {
        transport,
        addr: syslog.parse()?,
        metrics,
        pid: Some(pid),
        child: Some(child),
    })
}

/// A port free for both UDP and TCP on 127.0.0.1 (the exporter listens on both). It is
/// released before the exporter binds it; another process could take it in between,
/// which the exporter then reports.
fn free_port_pair() -> Result<u16, Error> {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no port free for both UDP and TCP".into())
}

/// SIGTERM (through kill(1): a clean stop), then SIGKILL if it has not exited within 5 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A minimal HTTP/1.1 GET (the exporter's endpoints only): status and body.
fn http_get(url: &Url, timeout: Duration) -> io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&url.addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        url.path, url.addr
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response");
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let body = &response[end + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body).ok_or_else(bad)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// The kernel's `drops` count of the UDP sockets bound to `port` (`/proc/net/udp{,6}`):
/// datagrams discarded because the receive buffer was full.
fn kernel_drops(port: u16) -> Option<u64> {
    let port_hex = format!(":{port:04X}");
    let mut total = None;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields
                .get(1)
                .is_some_and(|local| local.ends_with(&port_hex))
            {
                if let Some(drops) = fields.last().and_then(|d| d.parse::<u64>().ok()) {
                    *total.get_or_insert(0) += drops;
                }
            }
        }
    }
    total
}

/// `Udp: ... RcvbufErrors` from `/proc/net/snmp`: every UDP socket of this network
/// namespace, so other traffic on the host shows up here too.
fn snmp_rcvbuf_errors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}
