//! End to end, the forwarding sinks with real components: HAProxy 2.6 logs
//! to the exporter, which passes every line on to a real rsyslog or to its
//! standard output.
//!
//! Each outer test re-executes this test binary under `unshare -n` (a private
//! network namespace, so the fixed loopback ports below cannot clash with
//! anything else on the machine) to run its inner test alone:
//!
//! - `rsyslog_receives_every_line_exactly_once`: three exporters, each
//!   forwarding with `HLE_FORWARD_SYSLOG_ADDR` to its own input of one
//!   rsyslog (`rsyslogd -n`), which writes each input to a file in
//!   `RSYSLOG_SyslogProtocol23Format`: TCP with octet counting (the exporter
//!   fed by an HAProxy ring with `log-proto octet-count`, rfc5424 headers),
//!   TCP with newlines (a ring with newline framing, rfc3164 headers) and
//!   UDP (HAProxy's UDP log, its default header). HAProxy
//!   (`tests/e2e/haproxy_forward.cfg.in`) serves a mix of statuses on an
//!   httplog frontend and sessions on a tcplog one, and also logs every line
//!   in `format raw` to a UDP socket of the test: the messages as HAProxy
//!   wrote them, in its order. Each file must hold exactly those messages,
//!   byte for byte, each once, in that order, as many as HAProxy counted;
//!   each exporter's `sink="syslog"` counters must show every line
//!   forwarded, none dropped, none queued, and so must its "forwarding
//!   stopped" line after SIGTERM.
//! - `receiver_killed_and_restarted`: numbered lines fed to the exporter
//!   over TCP without pause, forwarded over TCP to rsyslog, which in the
//!   middle falls behind (SIGSTOP, for less than the second after which a
//!   written line counts as forwarded), is SIGKILLed with unread lines in
//!   its socket, and is started again three seconds later on the same port
//!   and file. No line may be in the file twice, every line given must be in
//!   the file or counted as dropped (those that died unread included), and
//!   every line given while rsyslog was down must be delivered after it came
//!   back; the exporter's metrics answer and its received count grows during
//!   the outage; `forward_connected` goes to 0 and back to 1 within
//!   `HLE_FORWARD_RECONNECT_MAX_DELAY` (and some slack) of rsyslog listening
//!   again.
//! - `stdout_json_every_line`: `HLE_FORWARD_STDOUT=json` with the same
//!   HAProxy traffic: one JSON object a line received, each with the fields
//!   of the request HAProxy served (status, method, path, frontend, backend,
//!   server, client address, the accept date as an RFC 3339 timestamp, the
//!   message as HAProxy wrote it); standard error holds only the exporter's
//!   own log.
//! - `blocked_stdout_does_not_slow_metrics`: `HLE_FORWARD_STDOUT=raw` into a
//!   pipe the test does not read, with a queue of 1000 lines, while 50000
//!   lines arrive over TCP: every line is received and counted, scrapes
//!   answer at once, the sink drops for `queue_full` and its counters add up
//!   at every scrape; once the pipe is read the queue drains, and after
//!   SIGTERM the "forwarding stopped" numbers add up to what was read.
//!
//! Without `unshare`, `ip`, `haproxy` or `rsyslogd` (each test names what it
//! needs) the tests print a skip message, or fail when `CI=true`.

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::haproxy::{
    check_answer, check_plan_against_haproxy, exchange, first_line, get, haproxy_requests_delta,
    inner_may_run, one_word, raw_exchange, render_haproxy_cfg, scrape, send_shots, Frontend, Inner,
    Kind, Plan, Shot, Transport, EXPORTER_TCP, EXPORTER_UDP, EXPORTER_WEB, IO_TIMEOUT, M_COUNTED,
    M_RECEIVED, M_REJECTED,
};
use support::relays::{start_exporters_with, tcp_listening, udp_bound, ExporterSpec};
use support::{
    find_program, json_field, run_in_private_netns, tail_file, wait_until, Checks, ChildGuard,
    NetnsRun, Samples,
};

// ---------------------------------------------------------------------------
// Names, ports and limits
// ---------------------------------------------------------------------------

const RSYSLOG_OUTER: &str = "rsyslog_receives_every_line_exactly_once";
const RSYSLOG_INNER: &str = "rsyslog_receives_every_line_exactly_once_inner";
const RESTART_OUTER: &str = "receiver_killed_and_restarted";
const RESTART_INNER: &str = "receiver_killed_and_restarted_inner";
const JSON_OUTER: &str = "stdout_json_every_line";
const JSON_INNER: &str = "stdout_json_every_line_inner";
const BLOCKED_OUTER: &str = "blocked_stdout_does_not_slow_metrics";
const BLOCKED_INNER: &str = "blocked_stdout_does_not_slow_metrics_inner";

/// Each inner run must finish within this time.
const INNER_LIMIT: Duration = Duration::from_secs(100);
/// How long a step may wait for HAProxy, the exporters or rsyslog.
const WAIT: Duration = Duration::from_secs(20);

/// HAProxy's logging frontends.
const PORT_HTTP: u16 = 8300;
const PORT_TCP: u16 = 8310;
const PORT_TCP_DOWN: u16 = 8311;
/// The test's own UDP socket, where HAProxy logs every line in `format raw`.
const PORT_CAPTURE: u16 = 5300;
/// rsyslog's inputs.
const PORT_RSYSLOG_OCTET: u16 = 1601;
const PORT_RSYSLOG_LF: u16 = 1602;
const PORT_RSYSLOG_UDP: u16 = 1603;

const HAPROXY_CFG_TEMPLATE: &str = include_str!("e2e/haproxy_forward.cfg.in");

// The forwarding self-metrics, each with a `sink` label.
const M_GIVEN: &str = "haproxy_log_exporter_forward_given_lines_total";
const M_FORWARDED: &str = "haproxy_log_exporter_forwarded_lines_total";
const M_DROPPED: &str = "haproxy_log_exporter_forward_dropped_lines_total";
const M_SAMPLED_OUT: &str = "haproxy_log_exporter_forward_sampled_out_lines_total";
const M_QUEUE: &str = "haproxy_log_exporter_forward_queue_lines";
const M_CONNECTED: &str = "haproxy_log_exporter_forward_connected";

// ---------------------------------------------------------------------------
// Outer tests: re-execute this binary in a private network namespace
// ---------------------------------------------------------------------------

#[test]
fn rsyslog_receives_every_line_exactly_once() {
    run_in_private_netns(&NetnsRun {
        outer: RSYSLOG_OUTER,
        inner: RSYSLOG_INNER,
        tools: &[
            ("ip", "iproute2"),
            ("haproxy", "haproxy"),
            ("rsyslogd", "rsyslog"),
        ],
        work_dir_prefix: "hle-forward-rsyslog",
        limit: INNER_LIMIT,
    });
}

#[test]
fn receiver_killed_and_restarted() {
    run_in_private_netns(&NetnsRun {
        outer: RESTART_OUTER,
        inner: RESTART_INNER,
        tools: &[("ip", "iproute2"), ("rsyslogd", "rsyslog")],
        work_dir_prefix: "hle-forward-restart",
        limit: INNER_LIMIT,
    });
}

#[test]
fn stdout_json_every_line() {
    run_in_private_netns(&NetnsRun {
        outer: JSON_OUTER,
        inner: JSON_INNER,
        tools: &[("ip", "iproute2"), ("haproxy", "haproxy")],
        work_dir_prefix: "hle-forward-json",
        limit: INNER_LIMIT,
    });
}

#[test]
fn blocked_stdout_does_not_slow_metrics() {
    run_in_private_netns(&NetnsRun {
        outer: BLOCKED_OUTER,
        inner: BLOCKED_INNER,
        tools: &[("ip", "iproute2")],
        work_dir_prefix: "hle-forward-blocked",
        limit: INNER_LIMIT,
    });
}

// ---------------------------------------------------------------------------
// HAProxy: its config, the traffic, and the messages it wrote
// ---------------------------------------------------------------------------

/// What fe_http and fe_tcp receive.
struct Traffic {
    http: Frontend,
    /// fe_tcp sessions that reach a server, and that one refuses.
    tcp_ok: u32,
    tcp_down: u32,
}

impl Traffic {
    fn new() -> Self {
        let plan = Plan {
            ok: 4,
            missing: 2,
            err: 2,
            down: 1,
            badreq: 1,
            empty: 1,
            ok_v6: 2,
            missing_v6: 1,
        };
        Traffic {
            http: Frontend {
                name: "fe_http",
                format: Some("option httplog"),
                port: PORT_HTTP,
                tls: false,
                transport: Transport::Udp,
                shots: plan.shots(),
            },
            tcp_ok: 2,
            tcp_down: 1,
        }
    }

    /// Lines HAProxy logs for it.
    fn lines(&self) -> usize {
        self.http.shots.len() + (self.tcp_ok + self.tcp_down) as usize
    }

    /// Sends it, in order, one connection at a time.
    fn send(&self, checks: &mut Checks) {
        let fe = &self.http;
        send_shots(checks, fe, |shot| shot.v6);
        let tcp = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        for i in 0..self.tcp_ok {
            let req = get(&format!("/tcp/{i}"));
            let got = exchange(tcp(PORT_TCP), &req);
            check_answer(checks, "fe_tcp", tcp(PORT_TCP), &req, got, 200);
        }
        for i in 0..self.tcp_down {
            // The server refuses: HAProxy closes the client's connection
            // without a byte.
            let got = raw_exchange(tcp(PORT_TCP_DOWN), &get(&format!("/tcp-down/{i}")));
            checks.check(matches!(&got, Ok(b) if b.is_empty()), || {
                format!(
                    "harness: fe_tcp {PORT_TCP_DOWN}: want the connection closed without an \
                     answer, got {got:?}"
                )
            });
        }
    }
}

/// The config of `tests/e2e/haproxy_forward.cfg.in` with `rings`: both
/// frontends log to each of `targets` (`ring@NAME` or `ADDRESS:PORT`) and to
/// the capture socket.
fn render_cfg(rings: &str, targets: &[&str]) -> String {
    let mut logs: String = targets
        .iter()
        .map(|t| format!("    log {t} local0\n"))
        .collect();
    logs.push_str(&format!(
        "    log 127.0.0.1:{PORT_CAPTURE} format raw local0"
    ));
    render_haproxy_cfg(
        HAPROXY_CFG_TEMPLATE,
        &[
            ("@RINGS@", rings),
            ("@LOGS@", &logs),
            ("@PORT_HTTP@", &PORT_HTTP.to_string()),
            ("@PORT_TCP@", &PORT_TCP.to_string()),
            ("@PORT_TCP_DOWN@", &PORT_TCP_DOWN.to_string()),
        ],
    )
}

/// A ring to an exporter at `127.0.0.1:port`.
fn ring(name: &str, format: &str, port: u16, proto: &str) -> String {
    format!(
        "ring {name}\n    format {format}\n    maxlen 4096\n    size 262144\n    \
         timeout connect 2s\n    timeout server 10s\n    \
         server {name} 127.0.0.1:{port}{proto}\n\n"
    )
}

/// The test's UDP socket where HAProxy logs each line in `format raw`: the
/// messages exactly as HAProxy wrote them, in its order.
struct Capture(UdpSocket);

impl Capture {
    fn bind() -> Self {
        let socket = UdpSocket::bind(("127.0.0.1", PORT_CAPTURE)).expect("bind the capture socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        Capture(socket)
    }

    /// The messages received until `want` have come or `WAIT` has passed,
    /// each without the newline HAProxy ends a datagram with.
    fn messages(&self, want: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + WAIT;
        while out.len() < want && Instant::now() < deadline {
            if let Ok(n) = self.0.recv(&mut buf) {
                let datagram = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
                let text = std::str::from_utf8(datagram)
                    .unwrap_or_else(|e| panic!("harness: a message that is not UTF-8: {e}"));
                out.push(text.to_string());
            }
        }
        // Anything more would be a line the plan does not know.
        if let Ok(n) = self.0.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
        }
        out
    }
}

/// HAProxy's own count of the lines it logged: fe_http's requests and
/// fe_tcp's sessions.
fn haproxy_logged(before: &Samples, after: &Samples) -> f64 {
    let sessions = |s: &Samples| s.sum("haproxy_frontend_sessions_total", &[("proxy", "fe_tcp")]);
    haproxy_requests_delta(before, after, "fe_http") + sessions(after) - sessions(before)
}

/// Starts HAProxy on `cfg`, sends the traffic, and returns HAProxy's count of
/// the lines it logged and the messages the capture socket got.
fn run_haproxy(
    inner: &Inner,
    checks: &mut Checks,
    cfg: &str,
    traffic: &Traffic,
) -> (ChildGuard, f64, Vec<String>) {
    let capture = Capture::bind();
    let (haproxy, before) = inner.start_haproxy(cfg);
    traffic.send(checks);
    inner.step("sent the traffic");
    let messages = capture.messages(traffic.lines());
    let after = inner.haproxy_after(&before, std::slice::from_ref(&traffic.http));
    check_plan_against_haproxy(checks, &before, &after, std::slice::from_ref(&traffic.http));
    let logged = haproxy_logged(&before, &after);
    let planned = traffic.lines();
    checks.check(logged == planned as f64, || {
        format!("harness: HAProxy logged {logged} lines, the plan sent {planned}")
    });
    checks.check(messages.len() == planned, || {
        format!(
            "harness: the capture socket got {} messages, the plan sent {planned}",
            messages.len()
        )
    });
    inner.step(&format!(
        "HAProxy logged {logged} lines; the capture socket got {}",
        messages.len()
    ));
    (haproxy, logged, messages)
}

// ---------------------------------------------------------------------------
// rsyslog
// ---------------------------------------------------------------------------

/// One input of rsyslog, written to its own file.
enum Input<'a> {
    Tcp(u16, &'a Path),
    Udp(u16, &'a Path),
}

/// An `imtcp` or `imudp` input per entry, each with a ruleset that writes
/// its file in `RSYSLOG_SyslogProtocol23Format`, without a queue between
/// input and file and flushing at the end of each batch, so the files are
/// complete promptly.
fn rsyslog_conf(dir: &Path, inputs: &[Input<'_>]) -> String {
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).expect("rsyslog's work directory");
    let mut conf = format!(
        "global(workDirectory=\"{}\")\nmain_queue(queue.type=\"Direct\")\n\
         module(load=\"imtcp\")\nmodule(load=\"imudp\")\n",
        one_word(&work)
    );
    for input in inputs {
        let (module, port, file) = match input {
            Input::Tcp(port, file) => ("imtcp", port, file),
            Input::Udp(port, file) => ("imudp", port, file),
        };
        conf.push_str(&format!(
            "input(type=\"{module}\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"in_{port}\")\n\
             ruleset(name=\"in_{port}\" queue.type=\"Direct\") {{\n  \
             action(type=\"omfile\" file=\"{}\" template=\"RSYSLOG_SyslogProtocol23Format\" \
             flushOnTXEnd=\"on\" asyncWriting=\"off\")\n}}\n",
            one_word(file)
        ));
    }
    conf
}

/// How to start rsyslog, again and again on the same config, files and log.
struct Rsyslog {
    conf: PathBuf,
    log: PathBuf,
    pid: PathBuf,
    tcp: Vec<u16>,
    udp: Vec<u16>,
}

impl Rsyslog {
    fn new(dir: &Path, inputs: &[Input<'_>]) -> Self {
        let conf = dir.join("rsyslog.conf");
        std::fs::write(&conf, rsyslog_conf(dir, inputs)).expect("write rsyslog.conf");
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        for input in inputs {
            match input {
                Input::Tcp(port, _) => tcp.push(*port),
                Input::Udp(port, _) => udp.push(*port),
            }
        }
        Rsyslog {
            conf,
            log: dir.join("rsyslog.log"),
            pid: dir.join("rsyslog.pid"),
            tcp,
            udp,
        }
    }

    /// `rsyslogd -n`, once it listens on every input; its output is appended
    /// to its log.
    fn start(&self) -> ChildGuard {
        // A SIGKILLed rsyslogd leaves its pid file behind.
        let _ = std::fs::remove_file(&self.pid);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("rsyslog log");
        let rsyslogd = find_program("rsyslogd").expect("rsyslogd");
        let mut child = ChildGuard::spawn(
            "rsyslogd",
            Command::new(rsyslogd)
                .arg("-n")
                .arg("-f")
                .arg(&self.conf)
                .arg("-i")
                .arg(&self.pid)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log file"))
                .stderr(log),
        )
        .expect("spawn rsyslogd");
        let up = wait_until(WAIT, || {
            if let Some(st) = child.try_wait() {
                return Some(Err(format!("rsyslogd exited early: {st}")));
            }
            let up = self.tcp.iter().all(|p| tcp_listening(*p))
                && self.udp.iter().all(|p| udp_bound(*p));
            up.then_some(Ok(()))
        });
        match up {
            Ok(Ok(())) => child,
            Ok(Err(e)) => panic!("{e}\nits log:\n{}", self.log_tail()),
            Err(t) => panic!(
                "rsyslogd did not listen on TCP {:?} and UDP {:?}: {t}\nits log:\n{}",
                self.tcp,
                self.udp,
                self.log_tail()
            ),
        }
    }

    fn log_tail(&self) -> String {
        tail_file(&self.log, 30)
    }
}

/// The MSG of a line of `RSYSLOG_SyslogProtocol23Format`
/// (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`), whose structured data
/// is `-`, as in every line forwarded here.
fn protocol23_message(line: &str) -> Option<&str> {
    let parts: Vec<&str> = line.splitn(8, ' ').collect();
    let ok = parts.len() == 8
        && parts[0].starts_with('<')
        && parts[0].ends_with(">1")
        && parts[6] == "-";
    ok.then(|| parts[7])
}

/// The lines of a file (none if it is missing).
fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// The exporter: its forwarding counters and its summary
// ---------------------------------------------------------------------------

/// One sink's forwarding counters in one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
struct SinkCounts {
    given: f64,
    forwarded: f64,
    /// By reason.
    dropped: BTreeMap<String, f64>,
    sampled_out: f64,
    queue: f64,
    connected: f64,
}

impl SinkCounts {
    fn of(s: &Samples, sink: &str) -> Self {
        let f = [("sink", sink)];
        SinkCounts {
            given: s.sum(M_GIVEN, &f),
            forwarded: s.sum(M_FORWARDED, &f),
            dropped: s
                .find(M_DROPPED, &f)
                .map(|x| (x.labels.get("reason").cloned().unwrap_or_default(), x.value))
                .collect(),
            sampled_out: s.sum(M_SAMPLED_OUT, &f),
            queue: s.sum(M_QUEUE, &f),
            connected: s.sum(M_CONNECTED, &f),
        }
    }

    fn dropped_total(&self) -> f64 {
        self.dropped.values().sum()
    }

    fn dropped_for(&self, reason: &str) -> f64 {
        self.dropped.get(reason).copied().unwrap_or(0.0)
    }

    /// Given and finished: forwarded, dropped or sampled out.
    fn settled(&self) -> bool {
        self.given == self.forwarded + self.dropped_total() + self.sampled_out
    }

    /// given = forwarded + dropped + sampled out + queued, at one scrape.
    fn adds_up(&self) -> bool {
        self.given == self.forwarded + self.dropped_total() + self.sampled_out + self.queue
    }
}

impl fmt::Display for SinkCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dropped: Vec<String> = self
            .dropped
            .iter()
            .filter(|(_, n)| **n != 0.0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        write!(
            f,
            "given={} forwarded={} dropped={} [{}] sampled_out={} queue={} connected={}",
            self.given,
            self.forwarded,
            self.dropped_total(),
            dropped.join(" "),
            self.sampled_out,
            self.queue,
            self.connected
        )
    }
}

/// A scrape of `web` and how long it took to answer.
fn timed_scrape(web: &str) -> (Result<Samples, String>, Duration) {
    let started = Instant::now();
    let scraped = scrape(web).map(|(_, s)| s);
    (scraped, started.elapsed())
}

fn must_scrape(web: &str) -> Samples {
    scrape(web)
        .unwrap_or_else(|e| panic!("exporter {web}: {e}"))
        .1
}

/// A sink's "forwarding stopped" line, from a log in JSON or text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stopped {
    given: u64,
    forwarded: u64,
    dropped: u64,
    sampled_out: u64,
}

/// `name=value` or `name="value"` in a text log line.
fn text_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=");
    let rest = &line[line.find(&key)? + key.len()..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split(' ').next(),
    }
}

fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    if line.starts_with('{') {
        json_field(line, name)
    } else {
        text_field(line, name)
    }
}

fn is_message(line: &str, message: &str) -> bool {
    if line.starts_with('{') {
        json_field(line, "message") == Some(message)
    } else {
        line.contains(&format!(" {message} ")) || line.ends_with(&format!(" {message}"))
    }
}

fn forwarding_stopped(log: &str, sink: &str) -> Result<Stopped, String> {
    let line = log
        .lines()
        .find(|l| is_message(l, "forwarding stopped") && log_field(l, "sink") == Some(sink))
        .ok_or_else(|| format!("no \"forwarding stopped\" line for sink {sink} in the log"))?;
    let count = |name| {
        log_field(line, name)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in {line:?}"))
    };
    Ok(Stopped {
        given: count("lines_given")?,
        forwarded: count("lines_forwarded")?,
        dropped: count("lines_dropped")?,
        sampled_out: count("lines_sampled_out")?,
    })
}

/// SIGTERM; it must exit 0.
fn stop(checks: &mut Checks, what: &str, child: &mut ChildGuard) {
    child.signal("TERM").expect("SIGTERM");
    let status = child.wait_timeout(WAIT);
    checks.check(status.is_some_and(|s| s.success()), || {
        format!("{what}: exit after SIGTERM {status:?}, want status 0")
    });
}

/// Panics with every failed check and the logs, or reports success.
fn finish(inner: &Inner, checks: &Checks, logs: &[(&str, String)]) {
    if checks.failures.is_empty() {
        inner.step(&format!("all {} checks passed", checks.passed));
        return;
    }
    let logs: Vec<String> = logs
        .iter()
        .map(|(what, text)| format!("{what} (tail):\n{text}"))
        .collect();
    panic!(
        "{} of {} checks failed:\n  - {}\n\n{}",
        checks.failures.len(),
        checks.failures.len() + checks.passed,
        checks.failures.join("\n  - "),
        logs.join("\n\n")
    );
}

/// How many times each message is in `list`.
fn count_each(list: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for x in list {
        *m.entry(x.as_str()).or_insert(0) += 1;
    }
    m
}

/// Compares the messages an output got with those HAProxy wrote: the same,
/// in the same order, each once; on a difference, says which.
fn compare_messages(checks: &mut Checks, what: &str, got: &[String], want: &[String]) {
    if got == want {
        checks.check(true, String::new);
        return;
    }
    let (g, w) = (count_each(got), count_each(want));
    let twice: Vec<&&str> = g.iter().filter(|(_, n)| **n > 1).map(|(m, _)| m).collect();
    let missing: Vec<&&str> = w.keys().filter(|m| !g.contains_key(*m)).collect();
    let unexpected: Vec<&&str> = g.keys().filter(|m| !w.contains_key(*m)).collect();
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    checks.check(false, || {
        format!(
            "{what}: {} messages, HAProxy wrote {}; more than once: {twice:?}; missing: \
             {missing:?}; not HAProxy's: {unexpected:?}; first difference at {first:?}: \
             {:?} where HAProxy wrote {:?}",
            got.len(),
            want.len(),
            first.and_then(|i| got.get(i)),
            first.and_then(|i| want.get(i)),
        )
    });
}

// ---------------------------------------------------------------------------
// Lines fed to the exporter directly
// ---------------------------------------------------------------------------

/// The HAProxy message of fed line `id`: an httplog line whose path holds
/// the id.
fn fed_message(id: u64) -> String {
    format!(
        "127.0.0.1:{} [02/Dec/2026:05:49:40.123] fe_feed be_app/app1 0/0/0/1/1 200 73 - - ---- \
         1/1/0/0/0 0/0 \"GET /seq/{id:07} HTTP/1.1\"",
        40000 + id % 20000
    )
}

/// Fed line `id`, with an RFC 5424 header (forwarded as it is) and a newline.
fn fed_line(id: u64) -> String {
    format!(
        "<134>1 2026-12-02T05:49:40.123456+00:00 feeder haproxy 4242 - - {}\n",
        fed_message(id)
    )
}

/// The id of a fed message, if it is one, whole.
fn fed_id(message: &str) -> Option<u64> {
    let start = message.find("\"GET /seq/")? + "\"GET /seq/".len();
    let id = message.get(start..start + 7)?.parse().ok()?;
    (fed_message(id) == message).then_some(id)
}

/// A client that feeds numbered lines to the exporter's TCP address, `burst`
/// at a time every `pause`, until stopped.
struct Feeder {
    stop: Arc<AtomicBool>,
    /// Lines written so far: ids `0..sent`.
    sent: Arc<AtomicU64>,
    thread: JoinHandle<Result<(), String>>,
}

impl Feeder {
    fn start(burst: u64, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let addr: SocketAddr = EXPORTER_TCP.parse().expect("address");
                let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                    .map_err(|e| format!("connect to the exporter: {e}"))?;
                stream
                    .set_write_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                let mut next = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let lines: String = (next..next + burst).map(fed_line).collect();
                    stream
                        .write_all(lines.as_bytes())
                        .map_err(|e| format!("write to the exporter: {e}"))?;
                    next += burst;
                    sent.store(next, Ordering::Relaxed);
                    // Pacing the traffic, not waiting for anything.
                    std::thread::sleep(pause);
                }
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .map_err(|e| e.to_string())
            })
        };
        Feeder { stop, sent, thread }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops it; how many lines it wrote.
    fn stop(self, checks: &mut Checks) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let result = self.thread.join().expect("feeder thread");
        checks.check(result.is_ok(), || {
            format!("harness: the feeder: {result:?}")
        });
        self.sent.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------
// 1. rsyslog receives every line exactly once
// ---------------------------------------------------------------------------

/// One exporter of the first test: how HAProxy reaches it, and how it
/// forwards to rsyslog.
struct Setting {
    what: &'static str,
    spec: ExporterSpec,
    env: Vec<(&'static str, &'static str)>,
    /// rsyslog's file for its input.
    file: PathBuf,
    /// HAProxy's `log` target for it.
    target: &'static str,
}

#[test]
#[ignore = "inner half of rsyslog_receives_every_line_exactly_once: runs only inside its private network namespace"]
fn rsyslog_receives_every_line_exactly_once_inner() {
    if !inner_may_run(RSYSLOG_INNER, RSYSLOG_OUTER) {
        return;
    }
    let inner = Inner::new("hle-forward-rsyslog");
    let dir = inner.dir.clone();
    let spec = |transport, i: u16| ExporterSpec {
        transport,
        syslog_port: 5200 + i,
        web: format!("127.0.0.1:{}", 9200 + i),
        log: dir.join(format!("exporter-{i}.log")),
    };
    let settings = [
        Setting {
            what: "tcp, octet-count (from a ring with log-proto octet-count, rfc5424)",
            spec: spec(Transport::Tcp, 1),
            env: vec![
                ("HLE_FORWARD_SYSLOG_ADDR", "tcp://127.0.0.1:1601"),
                ("HLE_FORWARD_SYSLOG_FRAMING", "octet-count"),
                ("HLE_LOG_OUTPUT", "json"),
            ],
            file: dir.join("rsyslog-tcp-octet-count.log"),
            target: "ring@r_octet",
        },
        Setting {
            what: "tcp, lf (from a ring with newline framing, rfc3164)",
            spec: spec(Transport::Tcp, 2),
            env: vec![
                ("HLE_FORWARD_SYSLOG_ADDR", "tcp://127.0.0.1:1602"),
                ("HLE_FORWARD_SYSLOG_FRAMING", "lf"),
                ("HLE_LOG_OUTPUT", "json"),
            ],
            file: dir.join("rsyslog-tcp-lf.log"),
            target: "ring@r_lf",
        },
        Setting {
            what: "udp (from HAProxy's UDP log, default header)",
            spec: spec(Transport::Udp, 3),
            env: vec![
                ("HLE_FORWARD_SYSLOG_ADDR", "udp://127.0.0.1:1603"),
                ("HLE_LOG_OUTPUT", "json"),
            ],
            file: dir.join("rsyslog-udp.log"),
            target: "127.0.0.1:5203",
        },
    ];
    let rsyslog = Rsyslog::new(
        &dir,
        &[
            Input::Tcp(PORT_RSYSLOG_OCTET, &settings[0].file),
            Input::Tcp(PORT_RSYSLOG_LF, &settings[1].file),
            Input::Udp(PORT_RSYSLOG_UDP, &settings[2].file),
        ],
    );
    let mut relay = rsyslog.start();
    inner.step("rsyslog listens");
    let specs: Vec<ExporterSpec> = settings.iter().map(|s| s.spec.clone()).collect();
    let envs: Vec<&[(&str, &str)]> = settings.iter().map(|s| &s.env[..]).collect();
    let mut exporters = start_exporters_with(&specs, &envs);
    // A UDP sink says it is connected once a datagram was accepted.
    let connected = wait_until(WAIT, || {
        specs
            .iter()
            .filter(|spec| spec.transport == Transport::Tcp)
            .all(|spec| {
                scrape(&spec.web).is_ok_and(|(_, s)| SinkCounts::of(&s, "syslog").connected == 1.0)
            })
            .then_some(())
    });
    assert!(
        connected.is_ok(),
        "the exporters' TCP syslog sinks did not connect to rsyslog: {connected:?}\n{}",
        rsyslog.log_tail()
    );
    inner.step("3 exporters ready, the TCP syslog sinks connected");

    let rings = ring("r_octet", "rfc5424", 5201, " log-proto octet-count")
        + &ring("r_lf", "rfc3164", 5202, "");
    let targets: Vec<&str> = settings.iter().map(|s| s.target).collect();
    let traffic = Traffic::new();
    let mut checks = Checks::default();
    let (haproxy, logged, messages) =
        run_haproxy(&inner, &mut checks, &render_cfg(&rings, &targets), &traffic);

    // Every file complete, every line confirmed.
    let n = messages.len();
    let delivered = wait_until(WAIT, || {
        settings
            .iter()
            .all(|s| {
                let counts = scrape(&s.spec.web).map(|(_, x)| SinkCounts::of(&x, "syslog"));
                file_lines(&s.file).len() >= n
                    && counts.is_ok_and(|c| c.given >= n as f64 && c.settled())
            })
            .then_some(())
    });
    inner.step(&format!(
        "every file has its lines and every line is settled: {delivered:?}"
    ));

    for s in &settings {
        let lines = file_lines(&s.file);
        let mut got = Vec::new();
        for line in &lines {
            match protocol23_message(line) {
                Some(msg) => got.push(msg.to_string()),
                None => checks.check(false, || {
                    format!(
                        "{}: a line of {} that is not RFC 5424: {line:?}",
                        s.what,
                        s.file.display()
                    )
                }),
            }
        }
        println!(
            "  {:<70} {} lines in rsyslog's file (HAProxy logged {logged})",
            s.what,
            got.len()
        );
        compare_messages(&mut checks, s.what, &got, &messages);
        let x = must_scrape(&s.spec.web);
        let counts = SinkCounts::of(&x, "syslog");
        println!("    sink=\"syslog\": {counts}");
        checks.eq_f64(
            &format!("{}: {M_RECEIVED}", s.what),
            x.sum(M_RECEIVED, &[]),
            logged,
        );
        checks.eq_f64(
            &format!("{}: {M_COUNTED}", s.what),
            x.sum(M_COUNTED, &[]),
            logged,
        );
        checks.eq_f64(
            &format!("{}: {M_REJECTED}", s.what),
            x.sum(M_REJECTED, &[]),
            0.0,
        );
        checks.eq_f64(&format!("{}: {M_GIVEN}", s.what), counts.given, logged);
        checks.eq_f64(
            &format!("{}: {M_FORWARDED}", s.what),
            counts.forwarded,
            counts.given,
        );
        checks.eq_f64(
            &format!("{}: {M_DROPPED}", s.what),
            counts.dropped_total(),
            0.0,
        );
        checks.eq_f64(
            &format!("{}: {M_SAMPLED_OUT}", s.what),
            counts.sampled_out,
            0.0,
        );
        checks.eq_f64(&format!("{}: {M_QUEUE}", s.what), counts.queue, 0.0);
        checks.eq_f64(&format!("{}: {M_CONNECTED}", s.what), counts.connected, 1.0);
    }

    drop(haproxy);
    for (s, exporter) in settings.iter().zip(exporters.iter_mut()) {
        stop(&mut checks, s.what, exporter);
        let log = std::fs::read_to_string(&s.spec.log).unwrap_or_default();
        match forwarding_stopped(&log, "syslog") {
            Ok(end) => {
                let want = Stopped {
                    given: logged as u64,
                    forwarded: logged as u64,
                    dropped: 0,
                    sampled_out: 0,
                };
                checks.check(end == want, || {
                    format!(
                        "{}: \"forwarding stopped\" says {end:?}, want {want:?}",
                        s.what
                    )
                });
            }
            Err(e) => checks.check(false, || format!("{}: {e}", s.what)),
        }
        // Nothing more reached the file at shutdown.
        let after = file_lines(&s.file).len();
        checks.check(after == n, || {
            format!(
                "{}: {after} lines in the file after shutdown, want {n}",
                s.what
            )
        });
    }
    checks.check(relay.try_wait().is_none(), || {
        "rsyslogd exited during the test".to_string()
    });
    let mut logs = vec![("rsyslog's log", rsyslog.log_tail())];
    for s in &settings {
        logs.push((s.what, tail_file(&s.spec.log, 20)));
    }
    logs.push(("HAProxy's log", tail_file(&inner.haproxy_log, 20)));
    finish(&inner, &checks, &logs);
}

// ---------------------------------------------------------------------------
// 2. The receiver killed and restarted
// ---------------------------------------------------------------------------

/// `HLE_FORWARD_RECONNECT_MAX_DELAY`, and the slack on top that reconnecting
/// may take once rsyslog listens again (the scrapes' own pace included).
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
const RECONNECT_SLACK: Duration = Duration::from_millis(750);
/// Lines the exporter must receive while rsyslog is down: three seconds of
/// the feeder's traffic, long enough for the backoff to reach its bound
/// (100 ms doubling: 3.1 s at most to its sixth attempt).
const OUTAGE_LINES: f64 = 3000.0;
/// Lines written to rsyslog while it is stopped, before it is killed.
const UNREAD_LINES: u64 = 200;
/// A scrape must answer within this time, outage or not.
const SCRAPE_BOUND: Duration = Duration::from_secs(1);

#[test]
#[ignore = "inner half of receiver_killed_and_restarted: runs only inside its private network namespace"]
fn receiver_killed_and_restarted_inner() {
    if !inner_may_run(RESTART_INNER, RESTART_OUTER) {
        return;
    }
    let inner = Inner::new("hle-forward-restart");
    let file = inner.dir.join("rsyslog-tcp.log");
    let rsyslog = Rsyslog::new(&inner.dir, &[Input::Tcp(PORT_RSYSLOG_OCTET, &file)]);
    let mut relay = rsyslog.start();
    let max_delay = format!("{}ms", RECONNECT_MAX_DELAY.as_millis());
    let mut exporter = inner.start_exporter(
        &[
            ("HLE_SYSLOG_UDP_ADDR", ""),
            ("HLE_FORWARD_SYSLOG_ADDR", "tcp://127.0.0.1:1601"),
            ("HLE_FORWARD_RECONNECT_MAX_DELAY", &max_delay),
            ("HLE_LOG_OUTPUT", "json"),
        ],
        "",
    );
    let mut checks = Checks::default();
    let syslog = |s: &Samples| SinkCounts::of(s, "syslog");
    let connected = wait_until(WAIT, || {
        (syslog(&scrape(EXPORTER_WEB).ok()?.1).connected == 1.0).then_some(())
    });
    assert!(
        connected.is_ok(),
        "the syslog sink did not connect: {connected:?}"
    );

    // --- traffic, and rsyslog writing it -----------------------------------
    let feeder = Feeder::start(5, Duration::from_millis(5));
    // Until lines are confirmed: the connection is older than a second.
    let flowing = wait_until(WAIT, || {
        (syslog(&scrape(EXPORTER_WEB).ok()?.1).forwarded >= 500.0).then_some(())
    });
    assert!(
        flowing.is_ok(),
        "500 lines were not forwarded to rsyslog: {flowing:?}\nexporter log:\n{}",
        inner.exporter_log_tail()
    );
    inner.step(&format!(
        "lines flow: {} written, {} in rsyslog's file",
        feeder.sent(),
        file_lines(&file).len()
    ));

    // --- rsyslog falls behind, and is SIGKILLed -----------------------------------
    // Stopped first, for less than the second a line takes to count as
    // forwarded: the lines written meanwhile wait unread in its socket and die
    // with it, and must be counted dropped.
    relay.signal("STOP").expect("SIGSTOP rsyslogd");
    let stopped = Instant::now();
    let sent_at_stop = feeder.sent();
    let behind = wait_until(Duration::from_secs(2), || {
        (feeder.sent() >= sent_at_stop + UNREAD_LINES).then_some(())
    });
    assert!(behind.is_ok(), "harness: the feeder stalled: {behind:?}");
    relay.kill();
    let killed = Instant::now();
    let sent_at_kill = feeder.sent();
    let received_at_kill = must_scrape(EXPORTER_WEB).sum(M_RECEIVED, &[]);
    let disconnected = wait_until(Duration::from_secs(5), || {
        (syslog(&scrape(EXPORTER_WEB).ok()?.1).connected == 0.0).then_some(())
    });
    let sent_when_down = feeder.sent();
    inner.step(&format!(
        "rsyslogd stopped at line {sent_at_stop}, SIGKILLed {:?} later at line {sent_at_kill}; \
         {M_CONNECTED} 0 after {:?}: {disconnected:?}",
        killed - stopped,
        killed.elapsed()
    ));
    checks.check(disconnected.is_ok(), || {
        format!("{M_CONNECTED} did not go to 0 within 5 s of rsyslogd's death")
    });

    // The metrics answer and count while lines pile up.
    let mut scrapes: Vec<(Duration, f64, f64)> = Vec::new();
    let mut failed_scrapes = Vec::new();
    let outage = wait_until(WAIT, || {
        let (scraped, took) = timed_scrape(EXPORTER_WEB);
        let s = scraped.map_err(|e| failed_scrapes.push(e)).ok()?;
        let received = s.sum(M_RECEIVED, &[]);
        scrapes.push((took, received, syslog(&s).connected));
        (received >= received_at_kill + OUTAGE_LINES).then_some(())
    });
    let slowest = scrapes.iter().map(|s| s.0).max().unwrap_or_default();
    let received_growth = scrapes.last().map_or(0.0, |s| s.1) - received_at_kill;
    inner.step(&format!(
        "outage: {} scrapes, the slowest {slowest:?}; lines received grew by {received_growth}",
        scrapes.len()
    ));
    checks.check(outage.is_ok() && scrapes.len() >= 3, || {
        format!(
            "{M_RECEIVED} did not grow by {OUTAGE_LINES} while rsyslog was down: {outage:?} \
             (scrapes: {scrapes:?})"
        )
    });
    checks.check(slowest <= SCRAPE_BOUND && failed_scrapes.is_empty(), || {
        format!(
            "a scrape during the outage took {slowest:?} (bound {SCRAPE_BOUND:?}); failed \
             scrapes: {failed_scrapes:?}"
        )
    });
    checks.check(scrapes.iter().all(|s| s.2 == 0.0), || {
        format!("{M_CONNECTED} was not 0 throughout the outage: {scrapes:?}")
    });

    // --- rsyslog again, on the same port and file -------------------------------
    let lines_before_restart = file_lines(&file).len();
    let mut relay = rsyslog.start();
    let listening = Instant::now();
    let sent_at_restart = feeder.sent();
    let reconnected = wait_until(WAIT, || {
        (syslog(&scrape(EXPORTER_WEB).ok()?.1).connected == 1.0).then(|| listening.elapsed())
    });
    inner.step(&format!(
        "rsyslogd listens again after {:?} down (line {sent_at_restart}); {M_CONNECTED} 1 after \
         {reconnected:?}",
        listening - killed
    ));
    let bound = RECONNECT_MAX_DELAY + RECONNECT_SLACK;
    checks.check(reconnected.is_ok_and(|took| took <= bound), || {
        format!(
            "{M_CONNECTED} did not return to 1 within {bound:?} of rsyslogd listening again \
             (HLE_FORWARD_RECONNECT_MAX_DELAY={max_delay}): {reconnected:?}"
        )
    });
    let resumed = wait_until(WAIT, || {
        (file_lines(&file).len() >= lines_before_restart + 500).then_some(())
    });
    checks.check(resumed.is_ok(), || {
        format!("rsyslog's file did not grow after the restart: {resumed:?}")
    });

    // --- the end -------------------------------------------------------------------
    let sent = feeder.stop(&mut checks);
    let settled = wait_until(WAIT, || {
        let s = scrape(EXPORTER_WEB).ok()?.1;
        let c = syslog(&s);
        (s.sum(M_RECEIVED, &[]) >= sent as f64 && c.given >= sent as f64 && c.settled())
            .then_some((s, c))
    });
    let (last, counts) = match settled {
        Ok(x) => x,
        Err(t) => {
            let s = must_scrape(EXPORTER_WEB);
            let c = syslog(&s);
            checks.check(false, || {
                format!("the exporter did not settle every one of the {sent} lines: {t}; {c}")
            });
            (s, c)
        }
    };
    inner.step(&format!("fed {sent} lines; sink=\"syslog\": {counts}"));
    checks.eq_f64(M_RECEIVED, last.sum(M_RECEIVED, &[]), sent as f64);
    checks.eq_f64(M_COUNTED, last.sum(M_COUNTED, &[]), sent as f64);
    checks.eq_f64(M_GIVEN, counts.given, sent as f64);
    checks.check(counts.adds_up() && counts.queue == 0.0, || {
        format!("the counters do not add up with an empty queue: {counts}")
    });
    checks.check(counts.dropped_for("connection_lost") > 0.0, || {
        format!("no line written just before rsyslogd died counted as connection_lost: {counts}")
    });
    for reason in ["queue_full", "shutdown", "oversize"] {
        checks.eq_f64(
            &format!("{M_DROPPED}{{reason={reason:?}}}"),
            counts.dropped_for(reason),
            0.0,
        );
    }
    stop(&mut checks, "the exporter", &mut exporter);
    let log = std::fs::read_to_string(&inner.exporter_log).unwrap_or_default();
    let end = forwarding_stopped(&log, "syslog");
    match &end {
        Ok(end) => {
            println!("  forwarding stopped: {end:?}");
            checks.check(end.given == sent, || {
                format!("\"forwarding stopped\" {end:?}: given, want the {sent} lines fed")
            });
            checks.check(
                end.given == end.forwarded + end.dropped + end.sampled_out,
                || format!("\"forwarding stopped\" does not add up: {end:?}"),
            );
            checks.check(
                end.forwarded == counts.forwarded as u64
                    && end.dropped == counts.dropped_total() as u64,
                || format!("\"forwarding stopped\" {end:?} against the last scrape {counts}"),
            );
        }
        Err(e) => checks.check(false, || e.clone()),
    }
    stop(&mut checks, "rsyslogd", &mut relay);

    // --- what rsyslog's file holds ------------------------------------------------------
    let mut delivered: BTreeMap<u64, usize> = BTreeMap::new();
    let mut torn = Vec::new();
    for line in file_lines(&file) {
        // rsyslogd killed in the middle of a write may leave part of a line,
        // which the next run's first line then continues: each header starts
        // a piece.
        let starts: Vec<usize> = line.match_indices("<134>1 ").map(|(i, _)| i).collect();
        if starts.first() != Some(&0) {
            torn.push(line[..starts.first().copied().unwrap_or(line.len())].to_string());
        }
        for (i, &start) in starts.iter().enumerate() {
            let piece = &line[start..starts.get(i + 1).copied().unwrap_or(line.len())];
            match protocol23_message(piece).and_then(fed_id) {
                Some(id) => *delivered.entry(id).or_insert(0) += 1,
                None => torn.push(piece.to_string()),
            }
        }
    }
    let twice: Vec<(&u64, &usize)> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    let unknown: Vec<&u64> = delivered.keys().filter(|id| **id >= sent).collect();
    let distinct = delivered.len() as u64;
    let dropped = counts.dropped_total() as u64;
    let lost_unread = (sent_at_stop..sent_at_kill)
        .filter(|id| !delivered.contains_key(id))
        .count();
    println!(
        "  rsyslog's file: {distinct} of the {sent} lines, {} more than once, {} torn; \
         {dropped} counted dropped; {lost_unread} of the {} written while rsyslogd was \
         stopped are lost",
        twice.len(),
        torn.len(),
        sent_at_kill - sent_at_stop
    );
    checks.check(lost_unread > 0, || {
        "harness: no line written while rsyslogd was stopped was lost with it".to_string()
    });
    checks.check(twice.is_empty(), || {
        format!("lines in rsyslog's file more than once (id, times): {twice:?}")
    });
    checks.check(unknown.is_empty(), || {
        format!("lines never fed: {unknown:?}")
    });
    checks.check(torn.len() <= 1, || {
        format!("lines of rsyslog's file that are no whole forwarded line: {torn:?}")
    });
    checks.check(distinct + dropped >= sent, || {
        format!(
            "{} lines are neither in rsyslog's file nor counted dropped ({distinct} delivered, \
             {dropped} dropped, {sent} given)",
            sent - distinct - dropped
        )
    });
    checks.check(distinct >= counts.forwarded as u64, || {
        format!(
            "{} lines counted forwarded, only {distinct} in rsyslog's file",
            counts.forwarded
        )
    });
    // Given after the exporter saw the break: queued, then delivered on the new
    // connection, which stayed up.
    let waited: Vec<u64> = (sent_when_down..sent)
        .filter(|id| !delivered.contains_key(id))
        .collect();
    checks.check(waited.is_empty(), || {
        format!(
            "{} of the lines fed from the outage on ({sent_when_down}..{sent}) are not in \
             rsyslog's file, the first {:?}",
            waited.len(),
            waited.first()
        )
    });
    finish(
        &inner,
        &checks,
        &[
            ("exporter log", inner.exporter_log_tail()),
            ("rsyslog's log", rsyslog.log_tail()),
        ],
    );
}

// ---------------------------------------------------------------------------
// 3. Every line as JSON on standard output
// ---------------------------------------------------------------------------

/// What the JSON object of one line must say.
#[derive(Debug, Clone, PartialEq)]
struct Want {
    mode: &'static str,
    status: Option<u16>,
    method: Option<String>,
    path: Option<String>,
    frontend: &'static str,
    backend: &'static str,
    server: &'static str,
    client: &'static str,
    termination: &'static str,
}

/// How the test tells HAProxy's messages apart: by the request line and the
/// client's address family, or for lines without a request by what HAProxy
/// did with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Request { v6: bool, line: String },
    BadReq,
    Empty,
    TcpOk,
    TcpDown,
}

/// The key of a message HAProxy wrote.
fn key_of(message: &str) -> Option<Key> {
    if message.contains(" fe_tcp ") {
        return Some(match message.contains(" be_down_tcp/") {
            true => Key::TcpDown,
            false => Key::TcpOk,
        });
    }
    if message.contains("\"<BADREQ>\"") {
        return match (message.contains(" PR-- "), message.contains(" CR-- ")) {
            (true, false) => Some(Key::BadReq),
            (false, true) => Some(Key::Empty),
            _ => None,
        };
    }
    let line = message.strip_suffix('"')?.rsplit('"').next()?;
    Some(Key::Request {
        v6: message.starts_with("::1:"),
        line: line.to_string(),
    })
}

/// What each connection of the traffic must give, by key.
fn wants(traffic: &Traffic) -> Vec<(Key, Want)> {
    let mut out = Vec::new();
    for shot in &traffic.http.shots {
        out.push(http_want(shot));
    }
    let tcp = |backend, server, termination| Want {
        mode: "tcp",
        status: None,
        method: None,
        path: None,
        frontend: "fe_tcp",
        backend,
        server,
        client: "127.0.0.1",
        termination,
    };
    for _ in 0..traffic.tcp_ok {
        out.push((Key::TcpOk, tcp("be_app_tcp", "app1", "--")));
    }
    for _ in 0..traffic.tcp_down {
        out.push((Key::TcpDown, tcp("be_down_tcp", "dead1", "SC")));
    }
    out
}

fn http_want(shot: &Shot) -> (Key, Want) {
    let line = first_line(&shot.request);
    let mut parts = line.split(' ');
    let method = parts.next().map(str::to_string);
    let path = parts
        .next()
        .map(|uri| uri.split('?').next().unwrap_or_default().to_string());
    let (backend, server, termination) = match shot.kind {
        Kind::Ok | Kind::Missing | Kind::Err => ("be_app", "app1", "--"),
        Kind::Down => ("be_down", "dead1", "SC"),
        Kind::BadReq => ("fe_http", "<NOSRV>", "PR"),
        Kind::Empty => ("fe_http", "<NOSRV>", "CR"),
    };
    let request = !matches!(shot.kind, Kind::BadReq | Kind::Empty);
    let key = match shot.kind {
        Kind::BadReq => Key::BadReq,
        Kind::Empty => Key::Empty,
        _ => Key::Request {
            v6: shot.v6,
            line: line.clone(),
        },
    };
    let want = Want {
        mode: "http",
        status: Some(shot.kind.status()),
        method: method.filter(|_| request),
        path: path.filter(|_| request),
        frontend: "fe_http",
        backend,
        server,
        client: if shot.v6 { "::1" } else { "127.0.0.1" },
        termination,
    };
    (key, want)
}

/// `[25/Nov/2026:02:09:39.343]` of a message as `2026-11-25T02:09:39.343`.
fn accept_date(message: &str) -> Option<String> {
    let start = message.find('[')? + 1;
    let date = message.get(start..start + 24)?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == &date[3..6])?
        + 1;
    Some(format!(
        "{}-{month:02}-{}T{}",
        &date[7..11],
        &date[..2],
        &date[12..24]
    ))
}

/// Compares one JSON object with what it must say; a list of differences.
fn json_differences(
    object: &serde_json::Map<String, serde_json::Value>,
    want: &Want,
    message: &str,
) -> Vec<String> {
    use serde_json::Value;
    let mut out = Vec::new();
    let mut expect = |key: &str, value: Option<Value>| {
        let got = object.get(key);
        if got != value.as_ref() {
            out.push(format!("{key}: {got:?}, want {value:?}"));
        }
    };
    let text = |v: &str| Some(Value::from(v));
    expect("message", text(message));
    expect("haproxy.outcome", text("counted"));
    expect("haproxy.mode", text(want.mode));
    expect("http.response.status_code", want.status.map(Value::from));
    expect("http.request.method", want.method.as_deref().and_then(text));
    expect("url.path", want.path.as_deref().and_then(text));
    expect("haproxy.frontend", text(want.frontend));
    expect("haproxy.backend", text(want.backend));
    expect("haproxy.server", text(want.server));
    expect("client.address", text(want.client));
    expect("haproxy.termination_state", text(want.termination));
    let timestamp = object.get("timestamp").and_then(Value::as_str);
    let parsed = timestamp.map(chrono::DateTime::parse_from_rfc3339);
    let date = accept_date(message);
    let ok = matches!(parsed, Some(Ok(_)))
        && date
            .as_deref()
            .is_some_and(|d| timestamp.is_some_and(|t| t.starts_with(d)));
    if !ok {
        out.push(format!(
            "timestamp {timestamp:?} ({parsed:?}): want RFC 3339, the accept date {date:?}"
        ));
    }
    out
}

#[test]
#[ignore = "inner half of stdout_json_every_line: runs only inside its private network namespace"]
fn stdout_json_every_line_inner() {
    if !inner_may_run(JSON_INNER, JSON_OUTER) {
        return;
    }
    let inner = Inner::new("hle-forward-json");
    let stdout_path = inner.dir.join("exporter.stdout");
    let stdout = std::fs::File::create(&stdout_path).expect("exporter's standard output");
    let mut exporter = inner.start_exporter_with_stdout(
        &[("HLE_SYSLOG_TCP_ADDR", ""), ("HLE_FORWARD_STDOUT", "json")],
        " (HLE_FORWARD_STDOUT=json)",
        stdout.into(),
    );
    let traffic = Traffic::new();
    let mut checks = Checks::default();
    let (haproxy, logged, messages) = run_haproxy(
        &inner,
        &mut checks,
        &render_cfg("", &[EXPORTER_UDP]),
        &traffic,
    );
    let n = messages.len();
    let written = wait_until(WAIT, || {
        let c = SinkCounts::of(&scrape(EXPORTER_WEB).ok()?.1, "stdout");
        (file_lines(&stdout_path).len() >= n && c.given >= n as f64 && c.settled()).then_some(())
    });
    inner.step(&format!("the exporter wrote its lines: {written:?}"));
    let exp = must_scrape(EXPORTER_WEB);
    let counts = SinkCounts::of(&exp, "stdout");
    let received = exp.sum(M_RECEIVED, &[]);
    println!("  received {received}; sink=\"stdout\": {counts}");
    checks.eq_f64(M_RECEIVED, received, logged);
    checks.eq_f64(M_COUNTED, exp.sum(M_COUNTED, &[]), logged);
    checks.eq_f64(M_GIVEN, counts.given, received);
    checks.eq_f64(M_FORWARDED, counts.forwarded, received);
    checks.eq_f64(M_DROPPED, counts.dropped_total(), 0.0);
    checks.eq_f64(M_QUEUE, counts.queue, 0.0);

    let lines = file_lines(&stdout_path);
    checks.check(lines.len() as f64 == received, || {
        format!(
            "{} lines on standard output, {received} received",
            lines.len()
        )
    });
    let mut wants = wants(&traffic);
    let mut got = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let object = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(object)) => object,
            other => {
                checks.check(false, || {
                    format!("standard output line {i} is no JSON object ({other:?}): {line:?}")
                });
                continue;
            }
        };
        let message = object
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        got.push(message.clone());
        // The object of the i-th line HAProxy wrote (the order is compared
        // below), against what HAProxy was asked and answered.
        let Some(written) = messages.get(i) else {
            continue;
        };
        let key = key_of(written);
        let Some(at) = wants.iter().position(|(k, _)| Some(k) == key.as_ref()) else {
            checks.check(false, || {
                format!(
                    "harness: HAProxy wrote a line the plan does not have ({key:?}): {written:?}"
                )
            });
            continue;
        };
        let (_, want) = wants.remove(at);
        let differences = json_differences(&object, &want, written);
        checks.check(differences.is_empty(), || {
            format!("line {i} {line}:\n      {}", differences.join("\n      "))
        });
    }
    compare_messages(&mut checks, "the JSON objects' message", &got, &messages);
    checks.check(wants.is_empty(), || {
        format!("connections without their line: {wants:?}")
    });
    inner.step(&format!("checked {} JSON objects", lines.len()));

    drop(haproxy);
    stop(&mut checks, "the exporter", &mut exporter);
    let log = std::fs::read_to_string(&inner.exporter_log).unwrap_or_default();
    let objects: Vec<&str> = log
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .collect();
    checks.check(objects.is_empty(), || {
        format!("JSON objects on standard error: {objects:?}")
    });
    checks.check(
        log.lines().last().is_some_and(|l| is_message(l, "stopped")),
        || "the exporter's log does not end with its summary".to_string(),
    );
    match forwarding_stopped(&log, "stdout") {
        Ok(end) => {
            let n = logged as u64;
            let want = Stopped {
                given: n,
                forwarded: n,
                dropped: 0,
                sampled_out: 0,
            };
            checks.check(end == want, || {
                format!("\"forwarding stopped\" says {end:?}, want {want:?}")
            });
        }
        Err(e) => checks.check(false, || e),
    }
    let after = file_lines(&stdout_path).len();
    checks.check(after == lines.len(), || {
        format!(
            "{after} lines on standard output after shutdown, {} before",
            lines.len()
        )
    });
    finish(
        &inner,
        &checks,
        &[
            ("exporter log", inner.exporter_log_tail()),
            ("HAProxy's log", tail_file(&inner.haproxy_log, 20)),
        ],
    );
}

// ---------------------------------------------------------------------------
// 4. A blocked standard output does not slow the metrics
// ---------------------------------------------------------------------------

const BLOCKED_LINES: u64 = 50_000;
const BLOCKED_QUEUE: &str = "1000";
/// How long the test goes on not reading once every line is in, scraping
/// every `HOLD_SCRAPES`.
const HOLD: Duration = Duration::from_secs(2);
const HOLD_SCRAPES: Duration = Duration::from_millis(50);

#[test]
#[ignore = "inner half of blocked_stdout_does_not_slow_metrics: runs only inside its private network namespace"]
fn blocked_stdout_does_not_slow_metrics_inner() {
    if !inner_may_run(BLOCKED_INNER, BLOCKED_OUTER) {
        return;
    }
    let inner = Inner::new("hle-forward-blocked");
    let mut exporter = inner.start_exporter_with_stdout(
        &[
            ("HLE_SYSLOG_UDP_ADDR", ""),
            ("HLE_FORWARD_STDOUT", "raw"),
            ("HLE_FORWARD_BUFFER_LINES", BLOCKED_QUEUE),
            ("HLE_LOG_OUTPUT", "json"),
        ],
        " (HLE_FORWARD_STDOUT=raw into a pipe nobody reads)",
        Stdio::piped(),
    );
    // Held, not read, until the end.
    let mut pipe = exporter
        .take_stdout()
        .expect("the exporter's standard output");
    let mut checks = Checks::default();
    let stdout = |s: &Samples| SinkCounts::of(s, "stdout");

    let started = Instant::now();
    let feeder = std::thread::spawn(|| -> Result<(), String> {
        let addr: SocketAddr = EXPORTER_TCP.parse().expect("address");
        let mut stream =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        let lines: String = (0..BLOCKED_LINES).map(fed_line).collect();
        stream
            .write_all(lines.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        stream
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())
    });

    // Every line received and counted, the scrapes answering throughout.
    let mut scrapes: Vec<(Duration, f64)> = Vec::new();
    let mut failed_scrapes = Vec::new();
    let all_in = wait_until(Duration::from_secs(60), || {
        let (scraped, took) = timed_scrape(EXPORTER_WEB);
        match scraped {
            Ok(s) => {
                let received = s.sum(M_RECEIVED, &[]);
                scrapes.push((took, received));
                (received >= BLOCKED_LINES as f64).then_some(s)
            }
            Err(e) => {
                failed_scrapes.push(e);
                None
            }
        }
    });
    let fed = feeder.join().expect("feeder thread");
    checks.check(fed.is_ok(), || format!("harness: the feeder: {fed:?}"));
    let slowest = scrapes.iter().map(|s| s.0).max().unwrap_or_default();
    inner.step(&format!(
        "{} scrapes while the lines came in, the slowest {slowest:?}; all in: {}",
        scrapes.len(),
        all_in.is_ok()
    ));
    let s = all_in.unwrap_or_else(|t| {
        panic!(
            "the exporter did not receive {BLOCKED_LINES} lines: {t}; scrapes {scrapes:?}\n\
             exporter log:\n{}",
            inner.exporter_log_tail()
        )
    });
    println!(
        "  {BLOCKED_LINES} lines received in {:?}; sink=\"stdout\": {}",
        started.elapsed(),
        stdout(&s)
    );
    checks.check(failed_scrapes.is_empty(), || {
        format!("scrapes failed: {failed_scrapes:?}")
    });
    checks.eq_f64(M_COUNTED, s.sum(M_COUNTED, &[]), BLOCKED_LINES as f64);

    // The pipe stays full: the sink moves no line, the metrics go on answering.
    let hold_until = Instant::now() + HOLD;
    let mut held = Vec::new();
    while Instant::now() < hold_until {
        let (scraped, took) = timed_scrape(EXPORTER_WEB);
        match scraped {
            Ok(s) => held.push((took, stdout(&s))),
            Err(e) => failed_scrapes.push(e),
        }
        // Watching for a while, not waiting for anything.
        std::thread::sleep(HOLD_SCRAPES);
    }
    let slowest = scrapes
        .iter()
        .map(|s| s.0)
        .chain(held.iter().map(|h| h.0))
        .max()
        .unwrap_or_default();
    checks.check(slowest <= SCRAPE_BOUND, || {
        format!(
            "a scrape took {slowest:?} while standard output was blocked, over {SCRAPE_BOUND:?}"
        )
    });
    for (_, c) in &held {
        checks.check(c.adds_up(), || {
            format!("a scrape where given != forwarded + dropped + sampled out + queued: {c}")
        });
    }
    let first = held.first().map(|h| h.1.clone()).unwrap_or_default();
    let last = held.last().map(|h| h.1.clone()).unwrap_or_default();
    inner.step(&format!(
        "held the pipe {HOLD:?} more: {} scrapes; sink=\"stdout\": {last}",
        held.len()
    ));
    checks.eq_f64(M_GIVEN, last.given, BLOCKED_LINES as f64);
    checks.check(last.dropped_for("queue_full") > 0.0, || {
        format!("no line dropped for queue_full while standard output was blocked: {last}")
    });
    checks.check(
        last.forwarded < last.given && last.forwarded == first.forwarded,
        || format!("the sink moved lines into a pipe nobody read: {first} then {last}"),
    );
    checks.check(last.queue > 0.0, || {
        format!("nothing queued behind the blocked pipe: {last}")
    });

    // --- the pipe read at last --------------------------------------------------------
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = pipe.read_to_end(&mut out);
        (out, read.map(|_| ()).map_err(|e| e.to_string()))
    });
    let drained = wait_until(WAIT, || {
        let c = stdout(&scrape(EXPORTER_WEB).ok()?.1);
        (c.queue == 0.0 && c.settled()).then_some(c)
    });
    inner.step(&format!("reading the pipe; the queue drained: {drained:?}"));
    let drained = drained.unwrap_or_else(|t| panic!("the queue did not drain: {t}"));
    checks.eq_f64(
        "lines dropped, once the pipe is read, against those dropped while it was not",
        drained.dropped_total(),
        last.dropped_total(),
    );
    stop(&mut checks, "the exporter", &mut exporter);
    let (out, read) = reader.join().expect("pipe reader");
    checks.check(read.is_ok(), || format!("reading the pipe: {read:?}"));

    // What came through: whole lines of the fed messages, in order.
    let text = String::from_utf8_lossy(&out);
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        match fed_id(line) {
            Some(id) => ids.push(id),
            None => bad.push(line.to_string()),
        }
    }
    let ordered = ids.windows(2).all(|w| w[0] < w[1]);
    println!(
        "  read {} lines from the pipe ({} bytes), ids {:?}..{:?}",
        ids.len(),
        out.len(),
        ids.first(),
        ids.last()
    );
    checks.check(bad.is_empty(), || {
        format!(
            "{} lines on standard output that are no fed message, the first {:?}",
            bad.len(),
            bad.first()
        )
    });
    checks.check(ordered, || {
        "the lines on standard output are out of order or repeated".to_string()
    });
    let log = std::fs::read_to_string(&inner.exporter_log).unwrap_or_default();
    match forwarding_stopped(&log, "stdout") {
        Ok(end) => {
            println!("  forwarding stopped: {end:?}");
            checks.check(end.given == BLOCKED_LINES, || {
                format!("\"forwarding stopped\" {end:?}: want {BLOCKED_LINES} given")
            });
            checks.check(
                end.given == end.forwarded + end.dropped + end.sampled_out,
                || format!("\"forwarding stopped\" does not add up: {end:?}"),
            );
            checks.check(end.forwarded == ids.len() as u64, || {
                format!(
                    "\"forwarding stopped\" {end:?}, but {} lines came through the pipe",
                    ids.len()
                )
            });
            checks.check(end.dropped == drained.dropped_total() as u64, || {
                format!("\"forwarding stopped\" {end:?}, against the last scrape {drained}")
            });
        }
        Err(e) => checks.check(false, || e),
    }
    finish(
        &inner,
        &checks,
        &[("exporter log", inner.exporter_log_tail())],
    );
}
