//! The pipeline between framing and the sinks: syslog header → HAProxy entry →
//! `LogRecord` → metrics, and every frame to the forwarding sinks. Every frame ends in
//! exactly one of counted, rejected or ignored.

use std::sync::Arc;

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::forward::Forwarders;
use crate::haproxy::{ConnectionLine, Entry, Parser};
use crate::metrics::{
    gathered, Aggregator, Cardinality, CountingWatch, Format, MetricConfig, SelfMetrics, Transport,
};
use crate::syslog;

/// Shared by every source. Processing a line is synchronous and takes microseconds, so a
/// source never waits for it to be scheduled (HAProxy's ring overwrites when its reader
/// is slow, and a full UDP socket buffer drops).
pub struct Pipeline {
    parser: Parser,
    aggregator: Aggregator,
    selfmon: SelfMetrics,
    registry: Registry,
    /// The forwarding sinks, if any is configured.
    forward: Option<Arc<Forwarders>>,
}

impl Pipeline {
    /// Registers the enabled traffic metrics and the self-metrics in `registry`; lines
    /// are read in HAProxy's built-in formats.
    pub fn new(metrics: &[MetricConfig], registry: &Registry) -> Result<Self, prometheus::Error> {
        Pipeline::build(metrics, Parser::default(), Cardinality::default(), registry)
    }

    /// Everything as configured: formats, metrics, label rules and series limits.
    pub fn from_config(config: &Config, registry: &Registry) -> Result<Self, prometheus::Error> {
        let mut pipeline = Pipeline::build(
            &config.metrics,
            config.parser.clone(),
            config.cardinality.clone(),
            registry,
        )?;
        pipeline.forward = Forwarders::new(config, registry)?.map(Arc::new);
        Ok(pipeline)
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
            forward: None,
        })
    }

    /// Processes one frame: a line without its terminator. The line is counted as
    /// received after its outcome, so that a scrape that sees it received also sees it
    /// counted, rejected or ignored.
    pub fn process(&self, transport: Transport, frame: &[u8]) {
        let message = syslog::split(frame).message;
        // Matched by reference: the record is not moved out of the result.
        match &self.parser.parse(message) {
            Ok(Entry::Traffic(record)) => {
                self.aggregator.observe(record);
                self.selfmon.counted();
                if let Some(forward) = &self.forward {
                    forward.give(frame, forward.keep(record));
                }
            }
            Ok(Entry::Notice(reason)) => {
                self.selfmon.ignored(reason);
                if let Some(forward) = &self.forward {
                    forward.give(frame, true);
                }
            }
            Err(err) => {
                if let Some(forward) = &self.forward {
                    forward.give(frame, true);
                }
                if err.is_no_log_format() {
                    if let Some(line) = ConnectionLine::parse(message) {
                        self.selfmon.no_log_format(&line);
                    }
                }
                self.selfmon.rejected(transport, err.reason(), frame)
            }
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

    /// Feeds the metrics a record that came from elsewhere than a log line (SPOE).
    pub fn observe(&self, record: &crate::haproxy::LogRecord<'_>) {
        self.aggregator.observe(record);
    }

    /// A request path as the `http_request_path` label reads it: the route SPOE sends
    /// back to HAProxy.
    pub fn normalise_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        self.aggregator.normalise_path(path)
    }

    /// The forwarding sinks, if any is configured.
    pub fn forwarders(&self) -> Option<&Arc<Forwarders>> {
        self.forward.as_ref()
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

    /// The exposition formats this configuration offers beside the text format: protobuf
    /// with native histograms on, OpenMetrics with exemplars. Without either every scrape
    /// gets the text format, as before they existed.
    pub fn offers(&self) -> (bool, bool) {
        self.aggregator.offers()
    }

    /// The self-metrics and the traffic metrics in `format`.
    pub fn exposition_as(&self, format: Format) -> Result<Vec<u8>, String> {
        match format {
            Format::Text => self
                .exposition()
                .map(String::into_bytes)
                .map_err(|e| e.to_string()),
            Format::OpenMetrics => {
                let mut text = String::new();
                let written = gathered::write_openmetrics(&self.registry.gather(), &mut text)
                    .and_then(|()| self.aggregator.encode_openmetrics(&mut text));
                written.map_err(|e| format!("cannot write the exposition: {e}"))?;
                text.push_str("# EOF\n");
                Ok(text.into_bytes())
            }
            Format::Protobuf => {
                let mut out = Vec::new();
                for family in gathered::to_protobuf(&self.registry.gather()) {
                    gathered::write_delimited(&family, &mut out);
                }
                self.aggregator
                    .encode_protobuf(&mut out)
                    .map_err(|e| format!("cannot write the exposition: {e}"))?;
                Ok(out)
            }
        }
    }

    /// The whole exposition: the registry's metrics (self-metrics, process) followed by
    /// the traffic metrics.
    pub fn exposition(&self) -> Result<String, prometheus::Error> {
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        let mut text = String::from_utf8(text)
            .map_err(|e| prometheus::Error::Msg(format!("exposition is not UTF-8: {e}")))?;
        self.aggregator
            .encode(&mut text)
            .map_err(|e| prometheus::Error::Msg(format!("cannot write the exposition: {e}")))?;
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

/// Every `period` until `shutdown`, logs a warning when lines came in the period and none
/// was counted, once per such stretch (see [`CountingWatch`]).
pub async fn warn_when_nothing_is_counted(
    pipeline: Arc<Pipeline>,
    period: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut watch = CountingWatch::new(pipeline.selfmon().snapshot());
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {
                if let Some(warning) = watch.tick(pipeline.selfmon().snapshot(), period) {
                    tracing::warn!("{warning}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// The log output of a test, as the exporter writes it.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Logs {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }

        fn capture(&self) -> tracing::subscriber::DefaultGuard {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(self.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_default(subscriber)
        }
    }

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
        type Writer = Logs;

        fn make_writer(&'a self) -> Logs {
            self.clone()
        }
    }

    const CONNECT: &[u8] =
        b"<134>Nov 25 02:09:39 haproxy[1]: Connect from 127.0.0.1:34140 to 127.0.0.1:31080 (fe_main/HTTP)";
    const CONNECT_TCP: &[u8] =
        b"<134>Nov 25 02:09:39 haproxy[1]: Connect from 127.0.0.1:34141 to 127.0.0.1:31081 (fe_db/TCP)";
    const TRAFFIC: &[u8] = b"<134>Nov 25 02:14:12 localhost haproxy[7666]: 127.0.0.1:35068 [25/Nov/2026:02:14:12.236] fe_http be_app/app1 0/0/0/401/401 200 73 - - ---- 4/2/0/0/0 0/0 \"GET / HTTP/1.1\"";

    fn pipeline() -> Arc<Pipeline> {
        Arc::new(Pipeline::new(&[], &Registry::new()).unwrap())
    }

    #[test]
    fn a_frontend_without_a_log_format_is_told_its_fix_once() {
        let logs = Logs::default();
        let _capture = logs.capture();
        let pipeline = pipeline();
        for line in [CONNECT, CONNECT, CONNECT_TCP, CONNECT, CONNECT_TCP] {
            pipeline.process(Transport::Udp, line);
        }
        let text = logs.text();
        assert_eq!(text.matches("add `option httplog`").count(), 1, "{text}");
        assert_eq!(text.matches("add `option tcplog`").count(), 1, "{text}");
        assert!(text.contains("frontend fe_main"), "{text}");
        assert!(text.contains("frontend fe_db"), "{text}");
        let snapshot = pipeline.selfmon().snapshot();
        assert!(snapshot
            .rejected
            .contains(&("no_log_format".to_string(), 5)));
        assert_eq!(snapshot.received, 5);
    }

    #[test]
    fn rejected_lines_are_logged_escaped() {
        let logs = Logs::default();
        let _capture = logs.capture();
        pipeline().process(Transport::Udp, b"forged\nWARN line rejected\x1b[31m");
        let text = logs.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r"forged\nWARN line rejected\u{1b}[31m"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn receiving_without_counting_for_a_period_is_said_once_per_stretch() {
        let logs = Logs::default();
        let _capture = logs.capture();
        let pipeline = pipeline();
        let shutdown = CancellationToken::new();
        let period = Duration::from_secs(60);
        let watch = tokio::spawn(warn_when_nothing_is_counted(
            pipeline.clone(),
            period,
            shutdown.clone(),
        ));
        // Lets the watch start; the periods end at 60 s, 120 s ...
        tokio::time::sleep(Duration::from_millis(1)).await;
        let warnings = || logs.text().matches("counted none").count();
        let period_with = |lines: &[&[u8]]| {
            for line in lines {
                pipeline.process(Transport::Udp, line);
            }
            tokio::time::sleep(period)
        };

        period_with(&[CONNECT, CONNECT, b"garbage", CONNECT]).await;
        assert_eq!(warnings(), 1);
        let text = logs.text();
        assert!(
            text.contains(
                "received 4 lines in the last 60s and counted none \
                 (rejected no_log_format=3, unrecognized_format=1)"
            ),
            "{text}"
        );
        period_with(&[CONNECT]).await;
        period_with(&[]).await;
        assert_eq!(warnings(), 1, "one warning for the stretch");
        period_with(&[TRAFFIC, CONNECT]).await;
        assert_eq!(warnings(), 1, "a line was counted");
        period_with(&[b"<133>Nov 25 02:09:39 haproxy[1]: Proxy fe started."]).await;
        assert_eq!(warnings(), 2, "a new stretch");
        assert!(logs.text().contains("(ignored proxy_event=1)"));

        shutdown.cancel();
        watch.await.unwrap();
    }

    /// Under load, every scrape shows each line received with its outcome: received is
    /// read before the outcomes (and counted after them).
    #[test]
    fn a_scrape_never_shows_a_line_received_without_its_outcome() {
        let registry = Registry::new();
        let pipeline = Arc::new(Pipeline::new(&[], &registry).unwrap());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let entry = b"<134>Nov 25 02:09:39 haproxy[1]: 127.0.0.1:47056 [25/Nov/2026:02:09:39.343] fe_http be_app/app1 0/0/0/0/0 200 73 - - ---- 3/1/0/0/0 0/0 \"GET / HTTP/1.1\"";
        let feeders: Vec<_> = [&b"<134>x"[..], b"Proxy fe started.", &entry[..]]
            .into_iter()
            .map(|line| {
                let (pipeline, stop) = (pipeline.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        pipeline.process(Transport::Tcp, line);
                    }
                })
            })
            .collect();
        let sum = |families: &[prometheus::proto::MetricFamily], name: &str| -> f64 {
            families
                .iter()
                .filter(|f| f.name() == format!("haproxy_log_exporter_{name}"))
                .flat_map(|f| f.get_metric())
                .map(|m| m.get_counter().get_value())
                .sum()
        };
        let mut seen = 0.0;
        for _ in 0..2000 {
            let families = registry.gather();
            let received = sum(&families, "lines_received_total");
            let outcomes = [
                "lines_counted_total",
                "lines_rejected_total",
                "lines_ignored_total",
            ]
            .iter()
            .map(|name| sum(&families, name))
            .sum::<f64>();
            assert!(
                received <= outcomes,
                "{received} received, {outcomes} outcomes"
            );
            seen = received;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for feeder in feeders {
            feeder.join().unwrap();
        }
        assert!(seen > 0.0);
    }
}
