//! The HTTP server's self-metrics: connections open, refused and evicted, scrapes answered and
//! renderings made (their difference is the scrapes that shared a rendering).

use prometheus::{IntCounter, IntGauge, Registry};

/// The HTTP counters, registered once; clones share the numbers.
#[derive(Clone)]
pub struct HttpCounters {
    connections: IntGauge,
    connections_refused: IntCounter,
    connections_evicted: IntCounter,
    scrapes: IntCounter,
    renders: IntCounter,
}

impl HttpCounters {
    pub fn new(registry: &Registry) -> Result<HttpCounters, prometheus::Error> {
        let counters = HttpCounters {
            connections: IntGauge::new(
                "haproxy_log_exporter_http_connections",
                "Open HTTP connections.",
            )?,
            connections_refused: IntCounter::new(
                "haproxy_log_exporter_http_connections_refused_total",
                "HTTP connections closed at once because HLE_WEB_MAX_CONNECTIONS were open, each answering a request.",
            )?,
            connections_evicted: IntCounter::new(
                "haproxy_log_exporter_http_connections_evicted_total",
                "Idle HTTP connections closed because HLE_WEB_MAX_CONNECTIONS were open and a new one came.",
            )?,
            scrapes: IntCounter::new(
                "haproxy_log_exporter_http_scrapes_total",
                "Requests for the exposition answered with it.",
            )?,
            renders: IntCounter::new(
                "haproxy_log_exporter_http_exposition_renders_total",
                "Renderings of the exposition; scrapes beyond them shared one.",
            )?,
        };
        registry.register(Box::new(counters.connections.clone()))?;
        registry.register(Box::new(counters.connections_refused.clone()))?;
        registry.register(Box::new(counters.connections_evicted.clone()))?;
        registry.register(Box::new(counters.scrapes.clone()))?;
        registry.register(Box::new(counters.renders.clone()))?;
        Ok(counters)
    }

    pub(super) fn connection_opened(&self) {
        self.connections.inc();
    }

    pub(super) fn connection_closed(&self) {
        self.connections.dec();
    }

    pub(super) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub(super) fn connection_evicted(&self) {
        self.connections_evicted.inc();
    }

    pub(super) fn scraped(&self) {
        self.scrapes.inc();
    }

    pub(super) fn rendered(&self) {
        self.renders.inc();
    }

    /// Scrapes answered and renderings made so far.
    pub fn scrapes_and_renders(&self) -> (u64, u64) {
        (self.scrapes.get(), self.renders.get())
    }
}
