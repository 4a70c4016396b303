//! SIGTERM loses nothing the exporter's kernel has acknowledged: the binary, several TCP
//! connections on loopback, and the summary line it logs last.
//!
//! To make "acknowledged but not yet read" certain rather than a race, the exporter is
//! stopped (SIGSTOP) while the senders write: its kernel goes on acknowledging into the
//! sockets' receive buffers. Once the senders' kernels hold nothing unacknowledged
//! (`tx_queue` 0 in `/proc/net/tcp`, what `SIOCOUTQ` reports), the exporter gets SIGTERM
//! and SIGCONT, and its summary line must count every line.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use support::{
    json_field as field, proc_net_addr, scrape_metrics, tcp_sockets, wait_until, ChildGuard,
};

const WAIT: Duration = Duration::from_secs(20);

const RING_LEGACY: &[u8] = include_bytes!("fixtures/haproxy/f_ring_legacy.tcp");

/// The exporter, its TCP address, and its log lines as they come.
struct Exporter {
    child: ChildGuard,
    tcp: SocketAddr,
    web: String,
    log: mpsc::Receiver<String>,
}

impl Exporter {
    fn start() -> Exporter {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"));
        cmd.env_clear()
            .env("HLE_SYSLOG_UDP_ADDR", "")
            .env("HLE_SYSLOG_TCP_ADDR", "127.0.0.1:0")
            .env("HLE_WEB_LISTEN_ADDR", "127.0.0.1:0")
            .env("HLE_LOG_OUTPUT", "json")
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
        let listening = log
            .recv_timeout(WAIT)
            .ok()
            .filter(|l| l.contains("\"listening\""));
        let listening = listening.expect("a 'listening' line first");
        let tcp = field(&listening, "tcp")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no tcp address in {listening}"));
        let web = field(&listening, "web").unwrap_or_default().to_string();
        Exporter {
            child,
            tcp,
            web,
            log,
        }
    }

    /// Waits until the exporter has accepted `n` connections.
    fn accepted(&self, n: usize) {
        let accepted = wait_until(WAIT, || {
            let (_, samples) = scrape_metrics(&self.web, WAIT).ok()?;
            let open = samples.get("haproxy_log_exporter_tcp_connections", &[])?;
            (open == n as f64).then_some(())
        });
        accepted.unwrap_or_else(|e| panic!("{n} connections not accepted: {e}"));
    }

    /// SIGTERM (and SIGCONT, should it be stopped); returns the summary line's counts
    /// once it has exited 0.
    fn terminate(mut self) -> Summary {
        self.child.signal("TERM").expect("SIGTERM");
        self.child.signal("CONT").expect("SIGCONT");
        let status = self.child.wait_timeout(WAIT);
        let status = status.unwrap_or_else(|| {
            let log: Vec<String> = self.log.try_iter().collect();
            panic!(
                "still running {WAIT:?} after SIGTERM; its log:\n{}",
                log.join("\n")
            )
        });
        assert_eq!(status.code(), Some(0));
        let lines: Vec<String> = self.log.try_iter().collect();
        let last = lines.last().cloned().unwrap_or_default();
        let count = |name| {
            field(&last, name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in the last line {last:?}"))
        };
        Summary {
            received: count("lines_received"),
            counted: count("lines_counted"),
            rejected: count("lines_rejected"),
            ignored: count("lines_ignored"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Summary {
    received: u64,
    counted: u64,
    rejected: u64,
    ignored: u64,
}

/// A TCP socket's queues, `tx` and `rx`, by its local and remote address.
fn queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let (local, remote) = (proc_net_addr(local)?, proc_net_addr(remote)?);
    tcp_sockets()
        .into_iter()
        .find(|s| s.local == local && s.remote == remote)
        .map(|s| (s.tx, s.rx))
}

/// Bytes the sender at `local` wrote that the exporter at `server` has not acknowledged.
fn unacknowledged(local: SocketAddr, server: SocketAddr) -> Option<u64> {
    queues(local, server).map(|(tx, _)| tx)
}

/// Bytes from the sender at `peer` that the exporter's kernel acknowledged and the
/// exporter has not read.
fn unread(server: SocketAddr, peer: SocketAddr) -> Option<u64> {
    queues(server, peer).map(|(_, rx)| rx)
}

/// Lines of the ring capture, repeated: every one a counted httplog line.
fn corpus(lines: usize) -> Vec<u8> {
    let ring: Vec<&[u8]> = RING_LEGACY.split_inclusive(|&b| b == b'\n').collect();
    (0..lines)
        .flat_map(|i| ring[i % ring.len()].to_vec())
        .collect()
}

/// How many whole lines the first `bytes` bytes of `data`, sent again and again, hold.
fn whole_lines(data: &[u8], bytes: u64) -> u64 {
    let newlines = |d: &[u8]| d.iter().filter(|&&b| b == b'\n').count() as u64;
    let len = data.len() as u64;
    bytes / len * newlines(data) + newlines(&data[..(bytes % len) as usize])
}

/// Connections the exporter has accepted, and connections still waiting in its accept
/// queue: both hold lines its kernel acknowledged.
#[test]
fn sigterm_counts_every_line_the_kernel_acknowledged() {
    for accepted_first in [true, false] {
        every_acknowledged_line_counted(accepted_first);
    }
}

fn every_acknowledged_line_counted(accepted_first: bool) {
    const CONNECTIONS: usize = 8;
    // About 40 KB a connection: inside one receive buffer, so every byte is
    // acknowledged while the exporter is stopped.
    const LINES: usize = 200;
    let exporter = Exporter::start();
    let mut streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| TcpStream::connect(exporter.tcp).expect("connect"))
        .collect();
    if accepted_first {
        exporter.accepted(CONNECTIONS);
    }
    exporter.child.signal("STOP").expect("SIGSTOP");
    let data = corpus(LINES);
    for stream in &mut streams {
        stream.write_all(&data).expect("write");
    }
    let acknowledged = wait_until(WAIT, || {
        streams
            .iter()
            .all(|s| {
                let local = s.local_addr().ok();
                local.and_then(|l| unacknowledged(l, exporter.tcp)) == Some(0)
            })
            .then_some(())
    });
    acknowledged.expect("every byte acknowledged by the exporter's kernel");

    let summary = exporter.terminate();
    let sent = (CONNECTIONS * LINES) as u64;
    assert_eq!(
        summary,
        Summary {
            received: sent,
            counted: sent,
            rejected: 0,
            ignored: 0
        },
        "accepted before the signal: {accepted_first}"
    );
}

#[test]
fn sigterm_while_senders_send_loses_nothing_acknowledged_before_it() {
    const CONNECTIONS: usize = 8;
    let exporter = Exporter::start();
    let data = Arc::new(corpus(5000));
    let stop = Arc::new(AtomicBool::new(false));
    // Each sender writes flat out, keeping count of the bytes its kernel took.
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let stream = TcpStream::connect(exporter.tcp).expect("connect");
            let local = stream.local_addr().expect("local address");
            let written = Arc::new(AtomicU64::new(0));
            let (data, stop, counter) = (data.clone(), stop.clone(), written.clone());
            // Non-blocking writes of 16 KiB: the count is exact after every call (a
            // blocking write moves bytes into the kernel before it returns).
            stream.set_nonblocking(true).expect("non-blocking");
            let thread = std::thread::spawn(move || {
                let mut stream = stream;
                let mut at = 0;
                while !stop.load(Ordering::Relaxed) {
                    let end = (at + 16 * 1024).min(data.len());
                    match stream.write(&data[at..end]) {
                        Ok(n) => {
                            counter.fetch_add(n as u64, Ordering::SeqCst);
                            at = (at + n) % data.len();
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(_) => break,
                    }
                }
            });
            (local, written, thread)
        })
        .collect();
    // Let the exporter fall behind: stopped, its kernel acknowledges into full buffers.
    // Running a while, the connections' receive windows grow.
    let written_some = wait_until(WAIT, || {
        let (_, samples) = scrape_metrics(&exporter.web, WAIT).ok()?;
        let received = samples.sum("haproxy_log_exporter_lines_received_total", &[]);
        (received > 50_000.0).then_some(())
    });
    written_some.expect("the senders are sending");
    exporter.child.signal("STOP").expect("SIGSTOP");
    // Written first, then what is still unacknowledged: their difference is at most what
    // was acknowledged when the signal goes.
    let acknowledged_now = || -> Option<Vec<u64>> {
        senders
            .iter()
            .map(|(local, written, _)| {
                let written = written.load(Ordering::SeqCst);
                Some(written.saturating_sub(unacknowledged(*local, exporter.tcp)?))
            })
            .collect()
    };
    // Until the stopped exporter's kernel holds unread lines of every connection, as
    // many as its receive buffers take (the same in two polls).
    let mut before: Option<Vec<u64>> = None;
    let filled = wait_until(WAIT, || {
        let now: Option<Vec<u64>> = senders
            .iter()
            .map(|(local, _, _)| unread(exporter.tcp, *local))
            .collect();
        let now = now.filter(|n| n.iter().all(|&u| u > 0))?;
        let full = before.as_ref() == Some(&now);
        before = Some(now.clone());
        full.then_some(now)
    });
    filled.expect("lines unread by the stopped exporter");
    let filled = acknowledged_now();
    let acknowledged = filled.expect("the senders' sockets");
    // Every line wholly inside the acknowledged bytes must be counted.
    let must_count: u64 = acknowledged.iter().map(|&a| whole_lines(&data, a)).sum();

    // The senders go on while the exporter shuts down.
    let summary = exporter.terminate();
    stop.store(true, Ordering::Relaxed);
    let mut written_lines = 0;
    for (_, written, thread) in senders {
        thread.join().expect("sender");
        // A line begun counts as sent: the exporter may count it as incomplete.
        written_lines += whole_lines(&data, written.load(Ordering::SeqCst)) + 1;
    }
    assert!(
        summary.counted >= must_count,
        "{summary:?}: {must_count} lines were acknowledged before SIGTERM"
    );
    assert!(
        summary.received <= written_lines,
        "{summary:?} > {written_lines} sent"
    );
    assert_eq!(summary.ignored, 0, "{summary:?}");
    assert_eq!(
        summary.received,
        summary.counted + summary.rejected,
        "{summary:?}"
    );
    // Only a frame cut short when the exporter closes a connection may be rejected.
    assert!(summary.rejected <= CONNECTIONS as u64, "{summary:?}");
}
