//! The forwarding sinks: every line received is also shipped on, to standard output
//! (raw or JSON) and to an onward syslog server (UDP or TCP), so that the access log
//! still reaches the log system when the exporter is the only place HAProxy logs to.
//!
//! Ingestion never waits on a sink: each has a bounded [`Queue`] (lines and bytes),
//! the newest line is dropped when it is full, and every line given to a sink ends in
//! exactly one of forwarded, dropped (by reason), sampled out, or still queued
//! ([`counters`]). The sinks run beside the pipeline: standard output on a thread of its
//! own (a blocked pipe blocks only it), the syslog client as a task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Sampling, StdoutForward};
use crate::haproxy::{LogRecord, Parser};

mod clock;
pub mod counters;
pub mod json;
mod queue;
mod rewrite;
mod stdout;
mod syslog;

pub use counters::{DropReason, SinkCounters, SinkSnapshot};
pub use queue::{Queue, Refused};

/// One sink: its queue and its counters.
struct Sink {
    queue: Arc<Queue>,
    counters: Arc<SinkCounters>,
}

/// How to start a sink's worker, kept until `start`.
enum Work {
    Stdout {
        mode: StdoutForward,
        parser: Parser,
        custom_labels: Vec<&'static str>,
    },
    Syslog(crate::config::SyslogTarget),
}

/// Every configured sink.
pub struct Forwarders {
    sinks: Vec<Sink>,
    work: std::sync::Mutex<Vec<Work>>,
    sampler: Option<Sampler>,
    /// Set when the shutdown grace has run out: workers stop trying.
    abandon: CancellationToken,
    workers: std::sync::Mutex<Vec<Worker>>,
    /// `replay`: wait for room in a full queue instead of dropping.
    wait_when_full: std::sync::atomic::AtomicBool,
    /// How long a line waits for room then (the shutdown grace).
    patience: Duration,
}

/// A running worker, to wait for at shutdown.
enum Worker {
    Thread(std::sync::mpsc::Receiver<()>),
    Task(tokio::task::JoinHandle<()>),
}

impl Forwarders {
    /// The sinks `config` enables, their self-metrics registered; `None` when none is.
    pub fn new(config: &Config, registry: &Registry) -> Result<Option<Self>, prometheus::Error> {
        let forward = &config.forward;
        if !forward.any() {
            return Ok(None);
        }
        let mut metrics = counters::ForwardMetrics::new()?;
        let mut sinks = Vec::new();
        let mut work = Vec::new();
        let mut add = |name: &'static str, job: Work| {
            let queue = Arc::new(Queue::new(forward.buffer_lines, forward.buffer_bytes));
            let len = queue.clone();
            let counters = metrics.sink(name, Box::new(move || len.len()));
            sinks.push(Sink { queue, counters });
            work.push(job);
        };
        if forward.stdout != StdoutForward::Off {
            add(
                "stdout",
                Work::Stdout {
                    mode: forward.stdout,
                    parser: config.parser.clone(),
                    custom_labels: config.custom_labels.clone(),
                },
            );
        }
        if let Some(target) = &forward.syslog {
            add("syslog", Work::Syslog(target.clone()));
        }
        metrics.register(registry)?;
        Ok(Some(Forwarders {
            sinks,
            work: std::sync::Mutex::new(work),
            sampler: forward.sampling.map(Sampler::new),
            abandon: CancellationToken::new(),
            workers: std::sync::Mutex::new(Vec::new()),
            wait_when_full: false.into(),
            patience: forward.shutdown_grace,
        }))
    }

    /// Starts each sink's worker; the syslog client needs a tokio runtime.
    pub fn start(&self) {
        let work = std::mem::take(&mut *lock(&self.work));
        let mut workers = lock(&self.workers);
        for (sink, job) in self.sinks.iter().zip(work) {
            let (queue, counters) = (sink.queue.clone(), sink.counters.clone());
            match job {
                Work::Stdout {
                    mode,
                    parser,
                    custom_labels,
                } => {
                    let (done, finished) = std::sync::mpsc::channel();
                    let encoder = stdout::Encoder::new(mode, parser, &custom_labels);
                    let spawned = std::thread::Builder::new()
                        .name("forward-stdout".into())
                        .spawn(move || {
                            stdout::run(&queue, &counters, encoder, &mut std::io::stdout());
                            let _ = done.send(());
                        });
                    match spawned {
                        Ok(_) => workers.push(Worker::Thread(finished)),
                        Err(err) => {
                            tracing::error!(error = %err, "cannot start the standard output forwarder")
                        }
                    }
                }
                Work::Syslog(target) => {
                    let abandon = self.abandon.clone();
                    workers.push(Worker::Task(tokio::spawn(async move {
                        syslog::run(target, queue, counters, abandon).await
                    })));
                }
            }
        }
    }

    /// For `replay`: a full queue makes ingestion wait (up to the shutdown grace for
    /// each line) rather than drop.
    pub fn wait_when_full(&self) {
        self.wait_when_full.store(true, Ordering::Relaxed);
    }

    /// Gives a line (the whole frame) to every sink. `keep` is false for an ordinary
    /// traffic line that sampling leaves out (see [`Forwarders::keep`]).
    pub fn give(&self, frame: &[u8], keep: bool) {
        if !keep {
            for sink in &self.sinks {
                sink.counters.given();
                sink.counters.sampled_out();
            }
            return;
        }
        let line = Bytes::copy_from_slice(frame);
        for sink in &self.sinks {
            sink.counters.given();
            let pushed = match self.wait_when_full.load(Ordering::Relaxed) {
                true => sink.queue.push_waiting(line.clone(), self.patience),
                false => sink.queue.push(line.clone()),
            };
            if let Err(refused) = pushed {
                sink.counters.refused(match refused {
                    Refused::Full => DropReason::QueueFull,
                    Refused::Oversize => DropReason::Oversize,
                    Refused::Closed => DropReason::Shutdown,
                });
            }
        }
    }

    /// Whether a traffic line is forwarded: always without sampling, and for errors and
    /// slow lines; otherwise at the sampling rate.
    pub fn keep(&self, record: &LogRecord<'_>) -> bool {
        match &self.sampler {
            None => true,
            Some(sampler) => sampler.keep(record),
        }
    }

    /// Shutdown, once the sources have stopped: each sink delivers what it holds for up
    /// to `grace`; what is left then is counted as dropped at shutdown. Returns each
    /// sink's final counts.
    pub async fn finish(&self, grace: Duration) -> Vec<SinkSnapshot> {
        for sink in &self.sinks {
            sink.queue.close();
        }
        let workers = std::mem::take(&mut *lock(&self.workers));
        let deadline = tokio::time::Instant::now() + grace;
        for worker in workers {
            match worker {
                Worker::Task(task) => {
                    let _ = tokio::time::timeout_at(deadline, task).await;
                }
                Worker::Thread(finished) => {
                    // A thread blocked on a full pipe cannot be interrupted: poll.
                    while finished.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty)
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        self.abandon.cancel();
        self.sinks
            .iter()
            .map(|sink| {
                let left = sink.counters.close();
                if left > 0 {
                    tracing::warn!(
                        sink = sink.counters.name,
                        lines = left,
                        "forwarding: lines still queued at the end of the shutdown grace were dropped"
                    );
                }
                sink.counters.snapshot()
            })
            .collect()
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `HLE_FORWARD_SAMPLE_RATE`: errors and slow lines always, the rest at the rate, spread
/// evenly (the n-th ordinary line is kept when ⌊n·rate⌋ grows), so the share is exact.
struct Sampler {
    rate: f64,
    slow_ms: u64,
    ordinary: AtomicU64,
}

impl Sampler {
    fn new(sampling: Sampling) -> Self {
        Sampler {
            rate: sampling.rate,
            slow_ms: u64::try_from(sampling.slow.as_millis()).unwrap_or(u64::MAX),
            ordinary: AtomicU64::new(0),
        }
    }

    fn keep(&self, record: &LogRecord<'_>) -> bool {
        if is_essential(record, self.slow_ms) {
            return true;
        }
        let n = self.ordinary.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.rate).floor() > (n * self.rate).floor()
    }
}

/// An error (status 5xx or `-1`, or a termination state other than `--`) or a line
/// whose `Ta` (or `Tt`) is at least `slow_ms`.
fn is_essential(record: &LogRecord<'_>, slow_ms: u64) -> bool {
    let status = record.status_code.as_bytes();
    (status.len() == 3 && status[0] == b'5')
        || status == b"-1"
        || (!record.termination_state.is_empty() && record.termination_state != "--")
        || record.session.is_some_and(|ta| ta >= slow_ms)
}

#[cfg(test)]
mod tests;
