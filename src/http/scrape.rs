//! Single-flight scrapes: one rendering of the exposition at a time, on a blocking
//! thread; the scrapes that arrive while it runs wait for it and get the same bytes
//! (`Bytes` shares one copy between every response), and a rendering younger than
//! `HLE_WEB_SCRAPE_CACHE_TTL` is served again.
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
use crate::pipeline::Pipeline;

/// The last rendering and the lock that makes renderings one at a time.
pub(super) struct Exposition {
    pipeline: Arc<Pipeline>,
    ttl: Duration,
    counters: HttpCounters,
    /// Held for the whole rendering: later arrivals queue on it (tokio's mutex is fair).
    last: Mutex<Option<Rendering>>,
}

struct Rendering {
    finished: Instant,
    body: Bytes,
}

impl Exposition {
    pub(super) fn new(pipeline: Arc<Pipeline>, ttl: Duration, counters: HttpCounters) -> Self {
        Exposition {
            pipeline,
            ttl,
            counters,
            last: Mutex::new(None),
        }
    }

    /// The exposition as of this call or later: a rendering that finished after the call
    /// began (it was running, or ran while this one waited), one younger than the TTL, or
    /// a new one.
    pub(super) async fn get(self: &Arc<Self>) -> Result<Bytes, String> {
        let arrived = Instant::now();
        let this = self.clone();
        // A task of its own, so that a client that goes away while the rendering runs
        // neither cancels it for the scrapes queued behind nor lets the lock go early.
        tokio::spawn(async move { this.shared_or_rendered(arrived).await })
            .await
            .map_err(|e| format!("rendering task failed: {e}"))?
    }

    async fn shared_or_rendered(&self, arrived: Instant) -> Result<Bytes, String> {
        let mut last = self.last.lock().await;
        if let Some(rendering) = last.as_ref() {
            if rendering.finished >= arrived || rendering.finished.elapsed() < self.ttl {
                return Ok(rendering.body.clone());
            }
        }
        // The old copy goes before a new one is made (responses still being written
        // hold theirs).
        *last = None;
        let pipeline = self.pipeline.clone();
        let text = tokio::task::spawn_blocking(move || pipeline.exposition())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.counters.rendered();
        let body = Bytes::from(text.into_bytes());
        *last = Some(Rendering {
            finished: Instant::now(),
            body: body.clone(),
        });
        Ok(body)
    }
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
                tokio::spawn(async move { exposition.shared_or_rendered(arrived).await })
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
        let first = exposition.get().await.unwrap();
        let second = exposition.get().await.unwrap();
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(counters.scrapes_and_renders().1, 1);

        let (exposition, counters) = with_ttl(Duration::ZERO);
        exposition.get().await.unwrap();
        exposition.get().await.unwrap();
        assert_eq!(counters.scrapes_and_renders().1, 2);
    }
}
