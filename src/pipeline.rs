//! The pipeline between framing and the sinks: syslog header → HAProxy entry →
//! `LogRecord` → metrics. Every frame ends in exactly one of counted, rejected or ignored.

use std::sync::Arc;

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::haproxy::{Entry, Parser};
use crate::metrics::{Aggregator, Cardinality, MetricConfig, SelfMetrics, Transport};
use crate::syslog;

/// Shared by every source. Processing a line is synchronous and takes microseconds, so a
/// source never waits for it to be scheduled (HAProxy's ring overwrites when its reader
/// is slow, and a full UDP socket buffer drops).
pub struct Pipeline {
    parser: Parser,
    aggregator: Aggregator,
    selfmon: SelfMetrics,
    registry: Registry,
}

impl Pipeline {
    /// Registers the enabled traffic metrics and the self-metrics in `registry`; lines
    /// are read in HAProxy's built-in formats.
    pub fn new(metrics: &[MetricConfig], registry: &Registry) -> Result<Self, prometheus::Error> {
        Pipeline::build(metrics, Parser::default(), Cardinality::default(), registry)
    }

    /// Everything as configured: formats, metrics, label rules and series limits.
    pub fn from_config(config: &Config, registry: &Registry) -> Result<Self, prometheus::Error> {
        Pipeline::build(
            &config.metrics,
            config.parser.clone(),
            config.cardinality.clone(),
            registry,
        )
    }

    fn build(
        metrics: &[MetricConfig],
        parser: Parser,
        cardinality: Cardinality,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        Ok(Pipeline {
            parser,
            aggregator: Aggregator::with_cardinality(metrics, cardinality, registry)?,
            selfmon: SelfMetrics::new(registry)?,
            registry: registry.clone(),
        })
    }

    /// Processes one frame: a line without its terminator. The line is counted as
    /// received after its outcome, so that a scrape that sees it received also sees it
    /// counted, rejected or ignored.
    pub fn process(&self, transport: Transport, frame: &[u8]) {
        let message = syslog::split(frame).message;
        match self.parser.parse(message) {
            Ok(Entry::Traffic(record)) => {
                self.aggregator.observe(&record);
                self.selfmon.counted();
            }
            Ok(Entry::Notice(reason)) => self.selfmon.ignored(reason),
            Err(err) => self.selfmon.rejected(transport, err.reason(), frame),
        }
        self.selfmon.received(transport);
    }

    /// Processes a line a source has already delimited (a datagram, a line of a file),
    /// unless it is longer than `max_line_bytes`: then it is counted as oversize.
    pub fn process_bounded(&self, transport: Transport, line: &[u8], max_line_bytes: usize) {
        if line.len() > max_line_bytes {
            self.selfmon.oversize(transport, line.len());
        } else {
            self.process(transport, line);
        }
    }

    /// The self-metrics, for the sources' own events (oversize frames, connections).
    pub fn selfmon(&self) -> &SelfMetrics {
        &self.selfmon
    }

    /// How often `sweep` should run; `None` when series never expire.
    pub fn sweep_interval(&self) -> Option<std::time::Duration> {
        self.aggregator.sweep_interval()
    }

    /// Removes the series idle for longer than `HLE_SERIES_TTL`.
    pub fn sweep(&self, now: Instant) {
        self.aggregator.sweep(now);
    }

    /// The whole exposition: the registry's metrics (self-metrics, process) followed by
    /// the traffic metrics.
    pub fn exposition(&self) -> Result<String, prometheus::Error> {
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        let mut text = String::from_utf8(text)
            .map_err(|e| prometheus::Error::Msg(format!("exposition is not UTF-8: {e}")))?;
        self.aggregator.encode(&mut text);
        Ok(text)
    }
}

/// Removes the series idle for longer than `HLE_SERIES_TTL`, at the pipeline's sweep
/// interval, until `shutdown`; returns at once when series never expire.
pub async fn expire_idle_series(pipeline: Arc<Pipeline>, shutdown: CancellationToken) {
    let Some(interval) = pipeline.sweep_interval() else {
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // The tick says when it was due, which is long past after a stall.
            _ = ticks.tick() => pipeline.sweep(Instant::now()),
        }
    }
}
