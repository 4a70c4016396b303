//! The standard output sink (`HLE_FORWARD_STDOUT`): one line per line received, the
//! HAProxy message as it came (`raw`) or a JSON object (`json`), for the log agent that
//! reads the container's output. It runs on its own thread, so that a full pipe blocks
//! only this sink; its queue then fills and drops, and ingestion goes on.

use std::io::Write;
use std::time::Duration;

use crate::config::StdoutForward;
use crate::forward::counters::{DropReason, SinkCounters};
use crate::forward::json::JsonWriter;
use crate::forward::queue::Queue;
use crate::haproxy::Parser;

/// Lines written in one go.
const BATCH: usize = 1024;

/// How each line is written.
pub enum Encoder {
    Raw,
    Json(Box<JsonWriter>),
}

impl Encoder {
    pub fn new(mode: StdoutForward, parser: Parser, custom_labels: &[&str]) -> Self {
        match mode {
            StdoutForward::Json => Encoder::Json(Box::new(JsonWriter::new(parser, custom_labels))),
            _ => Encoder::Raw,
        }
    }

    /// Appends the line for `frame`, newline included.
    pub fn write(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        match self {
            Encoder::Json(writer) => writer.write(frame, out),
            Encoder::Raw => {
                let start = out.len();
                out.extend_from_slice(crate::syslog::split(frame).message);
                // One line each: a newline inside a frame (octet counting allows it)
                // would split it.
                for b in &mut out[start..] {
                    if *b == b'\n' || *b == b'\r' {
                        *b = b' ';
                    }
                }
                out.push(b'\n');
            }
        }
    }
}

/// Writes what `queue` holds to `output` until the queue is closed and empty.
pub fn run(queue: &Queue, counters: &SinkCounters, mut encoder: Encoder, output: &mut impl Write) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut out = Vec::with_capacity(256 * 1024);
    let mut failed = false;
    counters.set_connected(true);
    loop {
        batch.clear();
        let n = queue.take_blocking(&mut batch, BATCH, Duration::from_secs(1));
        if n == 0 {
            if queue.is_closed() && queue.len().0 == 0 {
                return;
            }
            continue;
        }
        out.clear();
        for frame in &batch {
            encoder.write(frame, &mut out);
        }
        match output.write_all(&out).and_then(|()| output.flush()) {
            Ok(()) => {
                counters.forwarded(n);
                if failed {
                    failed = false;
                    counters.set_connected(true);
                }
            }
            Err(err) => {
                counters.lost(n, DropReason::ConnectionLost);
                if !failed {
                    failed = true;
                    counters.set_connected(false);
                    tracing::warn!(error = %err, "forwarding: cannot write to standard output; its lines are dropped and counted");
                }
            }
        }
    }
}
