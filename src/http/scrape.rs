//! Single-flight scrapes: one rendering of the exposition at a time, on a blocking
//! thread; the scrapes that arrive while it runs wait for it and get the same bytes
//! (`Bytes` shares one copy between every response), and a rendering younger than
//! `HLE_WEB_SCRAPE_CACHE_TTL` is served again. The gzip form (what Prometheus asks for)
//! is made once per rendering too, when first asked for, and shared the same way. Each
//! exposition format (text, OpenMetrics, protobuf: `negotiate`) has a rendering of its
//! own; they share the one lock.
//!
//! Rendering is the expensive part of a scrape (a large exposition takes hundreds of
//! milliseconds and its size in memory). Rendered once per arrival, concurrent scrapes
//! multiply both, take the cores from the receivers and make each other slower.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::counters::HttpCounters;
use crate::metrics::Format;
use crate::pipeline::Pipeline;

/// The last rendering and the lock that makes renderings one at a time.
pub(super) struct Exposition {
    pipeline: Arc<Pipeline>,
    ttl: Duration,
    counters: HttpCounters,
    /// Held for the whole rendering: later arrivals queue on it (tokio's mutex is fair).
    last: Mutex<Renderings>,
}

/// The last rendering of each format.
#[derive(Default)]
struct Renderings {
    text: Option<Rendering>,
    openmetrics: Option<Rendering>,
    protobuf: Option<Rendering>,
}

impl Renderings {
    fn of(&mut self, format: Format) -> &mut Option<Rendering> {
        match format {
            Format::Text => &mut self.text,
            Format::OpenMetrics => &mut self.openmetrics,
            Format::Protobuf => &mut self.protobuf,
        }
    }
}

struct Rendering {
    finished: Instant,
    body: Bytes,
    gzip: Option<Bytes>,
}

/// How a scrape wants the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
}

impl Exposition {
    pub(super) fn new(pipeline: Arc<Pipeline>, ttl: Duration, counters: HttpCounters) -> Self {
        Exposition {
            pipeline,
            ttl,
            counters,
            last: Mutex::new(Renderings::default()),
        }
    }

    /// The exposition as of this call or later: a rendering that finished after the call
    /// began (it was running, or ran while this one waited), one younger than the TTL, or
    /// a new one.
    pub(super) async fn get(
        self: &Arc<Self>,
        format: Format,
        encoding: Encoding,
    ) -> Result<Bytes, String> {
        let arrived = Instant::now();
        let this = self.clone();
        // A task of its own, so that a client that goes away while the rendering runs
        // neither cancels it for the scrapes queued behind nor lets the lock go early.
        tokio::spawn(async move { this.shared_or_rendered(arrived, format, encoding).await })
            .await
            .map_err(|e| format!("rendering task failed: {e}"))?
    }

    async fn shared_or_rendered(
        &self,
        arrived: Instant,
        format: Format,
        encoding: Encoding,
    ) -> Result<Bytes, String> {
        let mut renderings = self.last.lock().await;
        let last = renderings.of(format);
        let fresh = last.as_ref().is_some_and(|rendering| {
            rendering.finished >= arrived || rendering.finished.elapsed() < self.ttl
        });
        if !fresh {
            // The old copy goes before a new one is made (responses still being written
            // hold theirs).
            *last = None;
            let pipeline = self.pipeline.clone();
            let body = blocking(move || pipeline.exposition_as(format)).await?;
            self.counters.rendered();
            *last = Some(Rendering {
                finished: Instant::now(),
                body: Bytes::from(body),
                gzip: None,
            });
        }
        let Some(rendering) = last.as_mut() else {
            return Err("no rendering".to_string());
        };
        if encoding == Encoding::Identity {
            return Ok(rendering.body.clone());
        }
        if let Some(gzip) = &rendering.gzip {
            return Ok(gzip.clone());
        }
        let body = rendering.body.clone();
        let gzip = Bytes::from(blocking(move || gzipped(&body)).await?);
        rendering.gzip = Some(gzip.clone());
        Ok(gzip)
    }
}

/// Runs `work` on a blocking thread: off the workers that serve the connections.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("rendering task failed: {e}"))?
}

/// The fastest gzip level: the exposition shrinks about tenfold at a fraction of the
/// cost of rendering it, and the slower levels gain little on this text.
fn gzipped(text: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 8),
        flate2::Compression::fast(),
    );
    encoder.write_all(text).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;

    use super::*;

    fn with_ttl(ttl: Duration) -> (Arc<Exposition>, HttpCounters) {
        let registry = Registry::new();
        let pipeline = Arc::new(Pipeline::new(&[], &registry).unwrap());
        let counters = HttpCounters::new(&registry).unwrap();
        let exposition = Exposition::new(pipeline, ttl, counters.clone());
        (Arc::new(exposition), counters)
    }

    /// Scrapes that arrived before a rendering finished share it, one copy for all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_waiting_for_a_rendering_share_it() {
        let (exposition, counters) = with_ttl(Duration::ZERO);
        let arrived = Instant::now();
        let scrapes: Vec<_> = (0..100)
            .map(|_| {
                let exposition = exposition.clone();
                tokio::spawn(async move {
                    exposition
                        .shared_or_rendered(arrived, Format::Text, Encoding::Identity)
                        .await
                })
            })
            .collect();
        let mut bodies = Vec::new();
        for scrape in scrapes {
            bodies.push(scrape.await.unwrap().unwrap());
        }
        assert_eq!(counters.scrapes_and_renders().1, 1);
        assert!(bodies.iter().all(|b| b.as_ptr() == bodies[0].as_ptr()));
        assert!(!bodies[0].is_empty());
    }

    #[tokio::test]
    async fn a_rendering_is_served_again_within_its_ttl_only() {
        let (exposition, counters) = with_ttl(Duration::from_secs(60));
        let first = exposition
            .get(Format::Text, Encoding::Identity)
            .await
            .unwrap();
        let second = exposition
            .get(Format::Text, Encoding::Identity)
            .await
            .unwrap();
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(counters.scrapes_and_renders().1, 1);

        let (exposition, counters) = with_ttl(Duration::ZERO);
        exposition
            .get(Format::Text, Encoding::Identity)
            .await
            .unwrap();
        exposition
            .get(Format::Text, Encoding::Identity)
            .await
            .unwrap();
        assert_eq!(counters.scrapes_and_renders().1, 2);
    }

    #[tokio::test]
    async fn the_gzip_form_is_made_once_per_rendering() {
        let (exposition, counters) = with_ttl(Duration::from_secs(60));
        let plain = exposition
            .get(Format::Text, Encoding::Identity)
            .await
            .unwrap();
        let first = exposition.get(Format::Text, Encoding::Gzip).await.unwrap();
        let second = exposition.get(Format::Text, Encoding::Gzip).await.unwrap();
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(counters.scrapes_and_renders().1, 1);
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&first[..]), &mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain);
    }
}
