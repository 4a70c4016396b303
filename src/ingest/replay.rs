//! The replay source: reads log files (plain or gzip, any header style) or standard input,
//! sends every line through the same pipeline as the live listeners, and prints the
//! resulting exposition. It is how an operator tests a configuration against yesterday's
//! logs, and how parsing is benchmarked.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};

use flate2::read::MultiGzDecoder;
use prometheus::proto::MetricFamily;
use prometheus::Registry;
use tokio::time::Instant;

use super::progress::Progress;
use crate::config::Config;
use crate::metrics::Transport;
use crate::pipeline::Pipeline;

/// Why a replay could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open {name}: {source}")]
    Open { name: String, source: io::Error },
    #[error("cannot read {name}: {source}")]
    Read { name: String, source: io::Error },
    #[error("cannot write the exposition: {0}")]
    Write(io::Error),
    #[error("cannot start the forwarding sinks: {0}")]
    Runtime(io::Error),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// What a replay counted, from the self-metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub received: u64,
    pub counted: u64,
    pub rejected: u64,
    pub ignored: u64,
    /// Rejection reasons with their counts, most frequent first; only those seen.
    pub rejected_by_reason: Vec<(String, u64)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "replayed {} lines: {} counted, {} rejected, {} ignored",
            self.received, self.counted, self.rejected, self.ignored
        )?;
        for (reason, count) in self.rejected_by_reason.iter().take(5) {
            writeln!(f, "  rejected {count:>10}  {reason}")?;
        }
        Ok(())
    }
}

/// Read buffer; large, as log files are read front to back.
const READ_BUFFER: usize = 256 * 1024;

/// Replays `inputs` (`-` or none: standard input; `*.gz` or gzip data: decompressed),
/// writes the exposition to `out`, and returns the summary.
pub fn run(
    config: &Config,
    inputs: &[String],
    out: &mut impl Write,
) -> Result<Summary, ReplayError> {
    let registry = Registry::new();
    let pipeline = Pipeline::from_config(config, &registry)?;
    // Forwarding from a replay: the sinks run on a runtime of their own, and the
    // exposition follows once they have delivered everything.
    let forwarding = match pipeline.forwarders() {
        Some(forward) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(ReplayError::Runtime)?;
            forward.wait_when_full();
            let _entered = runtime.enter();
            forward.start();
            Some((runtime, forward.clone()))
        }
        None => None,
    };
    let stdin = ["-".to_string()];
    let inputs = if inputs.is_empty() {
        &stdin[..]
    } else {
        inputs
    };
    let mut opened = Vec::with_capacity(inputs.len());
    for name in inputs {
        opened.push((name, open(name)?));
    }
    // The size to read is known when every input is a plain file.
    let total = opened
        .iter()
        .map(|(_, input)| input.size)
        .try_fold(0u64, |sum, size| Some(sum + size?));
    let mut progress = Progress::new(total);
    for (name, input) in opened {
        replay(
            &pipeline,
            input.reader,
            config.max_line_bytes,
            &mut progress,
        )
        .map_err(|source| ReplayError::Read {
            name: name.clone(),
            source,
        })?;
    }
    progress.finish();
    if let Some((runtime, forward)) = forwarding {
        runtime.block_on(forward.finish(config.forward.shutdown_grace));
    }
    let text = pipeline
        .exposition()
        .map_err(|e| ReplayError::Write(io::Error::other(e)))?;
    out.write_all(text.as_bytes()).map_err(ReplayError::Write)?;
    out.flush().map_err(ReplayError::Write)?;
    Ok(summary(&registry.gather()))
}

/// An input, opened, and its size in bytes if it is a plain file.
pub(crate) struct Input {
    pub(crate) reader: Box<dyn BufRead>,
    size: Option<u64>,
}

/// Opens one input (`-`: standard input); gzip is recognised by its magic bytes,
/// whatever the file is called. `check-config` reads its log file through it too.
pub(crate) fn open(name: &str) -> Result<Input, ReplayError> {
    let (raw, mut size): (Box<dyn Read>, Option<u64>) = if name == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(name).map_err(|source| ReplayError::Open {
            name: name.to_string(),
            source,
        })?;
        let size = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        (Box::new(file), size)
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, raw);
    let is_gzip = reader
        .fill_buf()
        .map_err(|source| ReplayError::Read {
            name: name.to_string(),
            source,
        })?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead> = if is_gzip {
        // What is read is the decompressed text, of a size not known ahead.
        size = None;
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(reader),
        ))
    } else {
        Box::new(reader)
    };
    Ok(Input { reader, size })
}

/// Lines between two looks at the clock for `HLE_SERIES_TTL`.
const SWEEP_CHECK_LINES: u32 = 1 << 16;

/// What [`replay`] reads into at once: lines are split inside it, without a copy each.
const SPLIT_BUFFER: usize = 1024 * 1024;

/// One line per `\n`, as a syslog daemon writes them to a file. A trailing `\r` is
/// removed and empty lines are skipped, as on a TCP stream. Idle series expire as they
/// do in the live listeners, by the wall clock.
///
/// The lines are split with memchr inside a large buffer and processed where they lie;
/// the unfinished line at its end moves to its front before the next read, and a line
/// longer than the buffer grows it (as `read_until` would).
fn replay(
    pipeline: &Pipeline,
    mut reader: impl Read,
    max_line_bytes: usize,
    progress: &mut Progress,
) -> io::Result<()> {
    let mut buf = vec![0u8; SPLIT_BUFFER];
    // The start of `buf` holds this many bytes of an unfinished line.
    let mut kept = 0;
    let sweep_interval = pipeline.sweep_interval();
    let mut last_sweep = Instant::now();
    let mut lines = 0u32;
    let mut line = |line: &[u8]| {
        lines = lines.wrapping_add(1);
        if let Some(interval) = sweep_interval.filter(|_| lines % SWEEP_CHECK_LINES == 0) {
            if last_sweep.elapsed() >= interval {
                last_sweep = Instant::now();
                pipeline.sweep(last_sweep);
            }
        }
        let end = line
            .iter()
            .rposition(|&b| b != b'\r')
            .map_or(0, |last| last + 1);
        if end > 0 {
            pipeline.process_bounded(Transport::Replay, &line[..end], max_line_bytes);
        }
    };
    loop {
        if kept == buf.len() {
            buf.resize(buf.len().saturating_mul(2), 0);
        }
        let read = match reader.read(&mut buf[kept..]) {
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        let filled = kept + read;
        if read == 0 {
            if filled > 0 {
                line(&buf[..filled]);
                progress.read(1, 0);
            }
            return Ok(());
        }
        let mut start = 0;
        let mut split = 0;
        for end in memchr::memchr_iter(b'\n', &buf[kept..filled]) {
            let end = kept + end;
            line(&buf[start..end]);
            start = end + 1;
            split += 1;
        }
        progress.read(split, read as u64);
        buf.copy_within(start..filled, 0);
        kept = filled - start;
    }
}

fn summary(families: &[MetricFamily]) -> Summary {
    let counters = |name: &str| -> Vec<(String, u64)> {
        families
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .map(|m| {
                let label = m.get_label().first().map(|l| l.value().to_string());
                (
                    label.unwrap_or_default(),
                    m.get_counter().get_value() as u64,
                )
            })
            .collect()
    };
    let total = |name: &str| counters(name).iter().map(|(_, n)| n).sum();
    let mut rejected_by_reason: Vec<(String, u64)> =
        counters("haproxy_log_exporter_lines_rejected_total")
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
    rejected_by_reason.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Summary {
        received: total("haproxy_log_exporter_lines_received_total"),
        counted: total("haproxy_log_exporter_lines_counted_total"),
        rejected: total("haproxy_log_exporter_lines_rejected_total"),
        ignored: total("haproxy_log_exporter_lines_ignored_total"),
        rejected_by_reason,
    }
}
