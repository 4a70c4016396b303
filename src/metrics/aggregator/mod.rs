//! The aggregator, the metrics sink: turns each `LogRecord` into label values, finds the
//! series of each label set in the store (`store`: at most `max_series` per metric, the
//! rest folded into one overflow series), updates them, forgets series idle for longer
//! than the TTL, and hands the numbers to `exposition` at each scrape.
//!
//! The series live in plain integers behind one mutex rather than in the `prometheus`
//! crate's atomic vectors: a line takes the lock once and then updates every metric with
//! plain additions, where the vectors cost a hash lookup and several atomic operations
//! per metric per line. Metrics with the same label list share one index, so a line
//! hashes each distinct label set once. A scrape copies the numbers out under the lock
//! and formats them after releasing it, so it does not stall the sources.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::time::Instant;

use super::catalog::{Kind, MetricConfig, MetricDef, Source};
use super::client_ip::ClientIpPrefix;
use super::exemplar::{exemplar_id, now_ms};
use super::labels::Label;
use super::native::NativeLayout;
use super::path::PathNormaliser;
use super::store::{Group, Series, SEPARATOR};
use crate::haproxy::LogRecord;

mod encode;
mod protobuf;
#[cfg(test)]
mod tests;

pub use encode::Format;

/// Default of `HLE_MAX_SERIES_PER_METRIC`.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// How label values are reduced and how many series a metric may have.
#[derive(Debug, Clone, PartialEq)]
pub struct Cardinality {
    /// `HLE_PATH_*`: applied to `http_request_path`.
    pub path: PathNormaliser,
    /// `HLE_CLIENT_IP_PREFIX_V4/V6`: applied to `client_ip`.
    pub client_ip: ClientIpPrefix,
    /// `HLE_MAX_SERIES_PER_METRIC`: Prometheus series per metric (a histogram's buckets,
    /// sum and count each count), the overflow series included.
    pub max_series: usize,
    /// `HLE_SERIES_TTL`: series not updated for this long leave the exposition.
    pub ttl: Option<Duration>,
    /// `HLE_NATIVE_HISTOGRAM*`.
    pub native: NativeHistograms,
    /// `HLE_EXEMPLAR_LABEL`: the custom label whose value is kept as each series' and
    /// bucket's exemplar.
    pub exemplar: Option<Label>,
}

/// `HLE_NATIVE_HISTOGRAMS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NativeMode {
    /// Classic buckets only, as before native histograms existed.
    #[default]
    Off,
    /// Classic and native buckets.
    On,
    /// Native buckets only.
    Only,
}

/// The native histogram settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeHistograms {
    pub mode: NativeMode,
    /// `HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR`: above 1.
    pub bucket_factor: f64,
    /// `HLE_NATIVE_HISTOGRAM_MAX_BUCKETS`: 0 for no limit.
    pub max_buckets: usize,
}

impl Default for NativeHistograms {
    fn default() -> Self {
        NativeHistograms {
            mode: NativeMode::Off,
            bucket_factor: 1.1,
            max_buckets: 160,
        }
    }
}

impl Default for Cardinality {
    fn default() -> Self {
        Cardinality {
            path: PathNormaliser::default(),
            client_ip: ClientIpPrefix::default(),
            max_series: DEFAULT_MAX_SERIES,
            ttl: None,
            native: NativeHistograms::default(),
            exemplar: None,
        }
    }
}

/// One enabled metric.
struct Metric {
    def: &'static MetricDef,
    full_name: String,
    /// Upper bounds of a histogram's buckets; empty for counters.
    buckets: Vec<f64>,
    /// Whether the classic buckets are counted and exposed (not with
    /// `HLE_NATIVE_HISTOGRAMS=only`, where a histogram counts only its total); the
    /// bounds still place the exemplars.
    classic: bool,
    /// The native histogram's schema and bucket limit, with `HLE_NATIVE_HISTOGRAMS` on.
    native: Option<NativeLayout>,
    /// Where this metric's native histogram is in a series' natives.
    native_index: usize,
    /// Where this metric's exemplars start in a series' exemplars: one for a counter, one
    /// per bucket (`+Inf` included) for a histogram.
    exemplar_offset: usize,
    /// The same bounds in the unit HAProxy logs: the largest logged value that falls in
    /// each bucket, so that a line is bucketed by integer comparisons.
    thresholds: Vec<i64>,
    /// The thresholds of the counted buckets: `thresholds`, or none without classic
    /// buckets, where every observation counts in the one bucket.
    counted_thresholds: Vec<i64>,
    group: usize,
    /// Where this metric's counts start in a series' counts: one for a counter, one per
    /// bucket plus one above the last bound for a histogram (not cumulative).
    offset: usize,
    /// Where a histogram's sum is in a series' sums.
    sum: usize,
    /// Lines whose observation went to the overflow series.
    overflow: IntCounter,
    /// Series in the exposition.
    series: IntGauge,
}

struct State {
    groups: Vec<Series>,
    /// Scratch space for the key of a label set.
    key: Vec<u8>,
    /// Seconds since the aggregator started, as of the last sweep.
    now: u32,
    /// The slot of the line's series in each group, for native histograms and exemplars.
    slots: Vec<usize>,
}

/// What one line adds to one metric: counters count, histograms observe a value in the
/// unit HAProxy logs it in.
enum Observation {
    Count(u64),
    Value(u64),
}

/// The largest value `raw` in the logged unit with `raw / per_unit <= bound` as the
/// exposition computes it (in floating point), or -1 when there is none.
fn threshold(bound: f64, per_unit: f64) -> i64 {
    let fits = |raw: i64| raw as f64 / per_unit <= bound;
    if !fits(0) {
        return -1;
    }
    // Bounds are finite (validated); beyond 2^62 no logged value is near them.
    const FAR: i64 = 1 << 62;
    let product = (bound * per_unit).floor();
    if product >= FAR as f64 {
        return FAR;
    }
    let mut raw = product.max(0.0) as i64;
    // Rounding puts the product at most a step or two off.
    for _ in 0..4 {
        if raw > 0 && !fits(raw) {
            raw -= 1;
        } else if fits(raw + 1) {
            raw += 1;
        }
    }
    raw
}

/// How many of the logged unit make the metric's base unit: timers are logged in
/// milliseconds and exposed in seconds.
fn per_base_unit(source: Source) -> f64 {
    match source {
        Source::Timer(_) => 1000.0,
        _ => 1.0,
    }
}

fn observation(source: Source, record: &LogRecord<'_>) -> Option<Observation> {
    Some(match source {
        Source::Requests => Observation::Count(1),
        Source::BytesRead => Observation::Count(record.bytes_read),
        Source::Timer(timer) => Observation::Value(timer.get(record)?),
        Source::Abort(timer) => {
            if timer.get(record).is_some()
                || !timer.applies_to(record.kind)
                || !record.missing_timer_is_abort
            {
                return None;
            }
            Observation::Count(1)
        }
        Source::ServerQueue => Observation::Value(record.server_queue),
        Source::BackendQueue => Observation::Value(record.backend_queue),
    })
}

/// Updates every enabled metric from each record; shared by all sources.
pub struct Aggregator {
    metrics: Vec<Metric>,
    groups: Vec<Group>,
    cardinality: Cardinality,
    uses_path: bool,
    uses_client_ip: bool,
    /// Native histograms or exemplars are on: series keep more than classic numbers.
    extras: bool,
    start: Instant,
    state: Mutex<State>,
}

impl Aggregator {
    /// Creates the enabled metrics with the default cardinality limits, and registers
    /// the series self-metrics in `registry`.
    pub fn new(metrics: &[MetricConfig], registry: &Registry) -> Result<Self, prometheus::Error> {
        Aggregator::with_cardinality(metrics, Cardinality::default(), registry)
    }

    /// Like `new`, with the operator's label rules and limits.
    pub fn with_cardinality(
        configs: &[MetricConfig],
        cardinality: Cardinality,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let gauges = SeriesGauges::register(registry)?;
        let (metrics, groups) = layout(configs, &cardinality, &gauges);
        let uses = |label: Label| configs.iter().any(|c| c.labels.contains(&label));
        let state = State {
            groups: groups.iter().map(Series::new).collect(),
            key: Vec::new(),
            now: 0,
            slots: Vec::with_capacity(groups.len()),
        };
        Ok(Aggregator {
            uses_path: uses(Label::HttpRequestPath) && !cardinality.path.is_identity(),
            uses_client_ip: uses(Label::ClientIp) && !cardinality.client_ip.is_identity(),
            extras: cardinality.native.mode != NativeMode::Off || cardinality.exemplar.is_some(),
            metrics,
            groups,
            cardinality,
            start: Instant::now(),
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind, never a broken
        // invariant worth refusing to count for.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http_request_path` as its label reads it (`HLE_PATH_*`), before any cap.
    pub fn normalise_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        self.cardinality.path.normalise(path)
    }

    /// Counts one traffic line in every enabled metric.
    pub fn observe(&self, record: &LogRecord<'_>) {
        let path = if self.uses_path {
            self.cardinality.path.normalise(&record.http_request_path)
        } else {
            Cow::Borrowed(&*record.http_request_path)
        };
        let client_ip = if self.uses_client_ip {
            self.cardinality.client_ip.apply(&record.client_ip)
        } else {
            Cow::Borrowed(&*record.client_ip)
        };
        let value = |label: Label| match label {
            Label::HttpRequestPath => &*path,
            Label::ClientIp => &*client_ip,
            other => other.value(record),
        };

        let exemplar = self.cardinality.exemplar.and_then(|label| {
            let id = exemplar_id(label.name(), label.value(record))?;
            Some((id, now_ms()))
        });

        let mut state = self.lock();
        let State {
            groups,
            key,
            now,
            slots,
        } = &mut *state;
        slots.clear();
        for (group, series) in self.groups.iter().zip(groups.iter_mut()) {
            let (slot, overflowed) = if group.labels.is_empty() {
                (0, false)
            } else {
                key.clear();
                for &label in &group.labels {
                    key.extend_from_slice(value(label).as_bytes());
                    key.push(SEPARATOR);
                }
                let found = series.slot(group, key);
                if found.added {
                    self.publish(series, group);
                }
                (found.slot, found.overflowed)
            };
            if self.extras {
                slots.push(slot);
            }
            series.touched[slot] = *now;
            let counts = &mut series.counts[slot * group.stride..][..group.stride];
            let sums = &mut series.sums[slot * group.sum_stride..][..group.sum_stride];
            for &m in &group.metrics {
                let metric = &self.metrics[m];
                match observation(metric.def.source, record) {
                    None => continue,
                    Some(Observation::Count(n)) => counts[metric.offset] += n,
                    Some(Observation::Value(raw)) => {
                        // The first bound at or above the value; past the last one:
                        // `+Inf`. The thresholds ascend, so a binary search finds it.
                        let value = i64::try_from(raw).unwrap_or(i64::MAX);
                        let bucket = metric.counted_thresholds.partition_point(|&t| t < value);
                        counts[metric.offset + bucket] += 1;
                        sums[metric.sum] = sums[metric.sum].saturating_add(raw);
                    }
                }
                if overflowed {
                    metric.overflow.inc();
                }
            }
        }
        if self.extras {
            self.observe_extras(groups, slots, record, exemplar);
        }
    }

    /// The native histograms and exemplars of a line, in the series `observe` found:
    /// a second pass, so that the classic one stays what it is without them.
    #[inline(never)]
    fn observe_extras(
        &self,
        groups: &mut [Series],
        slots: &[usize],
        record: &LogRecord<'_>,
        exemplar: Option<(&str, i64)>,
    ) {
        for ((group, series), &slot) in self.groups.iter().zip(groups).zip(slots) {
            let natives = &mut series.natives[slot * group.native_stride..][..group.native_stride];
            let exemplars =
                &mut series.exemplars[slot * group.exemplar_stride..][..group.exemplar_stride];
            for &m in &group.metrics {
                let metric = &self.metrics[m];
                match observation(metric.def.source, record) {
                    None => continue,
                    Some(Observation::Count(n)) => {
                        if let Some((id, at)) = exemplar {
                            exemplars[metric.exemplar_offset].set(n, at, id);
                        }
                    }
                    Some(Observation::Value(raw)) => {
                        if let Some(layout) = &metric.native {
                            natives[metric.native_index].observe(layout, raw);
                        }
                        if let Some((id, at)) = exemplar {
                            let value = i64::try_from(raw).unwrap_or(i64::MAX);
                            let bucket = metric.thresholds.partition_point(|&t| t < value);
                            exemplars[metric.exemplar_offset + bucket].set(raw, at, id);
                        }
                    }
                }
            }
        }
    }

    /// Sets the series gauge of every metric of `group`.
    fn publish(&self, series: &Series, group: &Group) {
        let exposed = i64::try_from(series.keys.len() * group.exposed).unwrap_or(i64::MAX);
        for &m in &group.metrics {
            self.metrics[m].series.set(exposed);
        }
    }

    /// How often `sweep` should run: a tenth of the TTL, between 1 s and 1 min; `None`
    /// when series never expire.
    pub fn sweep_interval(&self) -> Option<Duration> {
        let ttl = self.cardinality.ttl?;
        Some((ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60)))
    }

    /// Advances the aggregator's clock to `now` and removes the series not updated for
    /// the TTL. Lines are stamped with the time of the last sweep, so a series leaves
    /// between one TTL and one TTL plus two sweep intervals after its last update.
    pub fn sweep(&self, now: Instant) {
        let (Some(ttl), Some(interval)) = (self.cardinality.ttl, self.sweep_interval()) else {
            return;
        };
        let seconds = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let idle_limit = seconds(ttl + interval);
        let mut state = self.lock();
        state.now = seconds(now.saturating_duration_since(self.start));
        let now = state.now;
        for (group, series) in self.groups.iter().zip(&mut state.groups) {
            if !group.labels.is_empty() && series.expire(group, now, idle_limit) {
                self.publish(series, group);
            }
        }
    }

    /// Appends the traffic metrics in the Prometheus text format (version 0.0.4).
    pub fn encode(&self, out: &mut String) -> fmt::Result {
        self.encode_with(&mut encode::Text::new(out))
    }

    /// Appends the traffic metrics in the OpenMetrics text format, with exemplars, without
    /// the closing `# EOF`.
    pub fn encode_openmetrics(&self, out: &mut String) -> fmt::Result {
        self.encode_with(&mut encode::OpenMetrics::new(out))
    }

    /// Appends the traffic metrics in the Prometheus protobuf format, length-delimited
    /// `MetricFamily` messages, with native histograms and exemplars.
    pub fn encode_protobuf(&self, out: &mut Vec<u8>) -> fmt::Result {
        self.encode_with(&mut protobuf::Protobuf::new(out))
    }

    /// Which formats are worth offering beside the text format: (protobuf, OpenMetrics).
    /// Protobuf is what carries native histograms, OpenMetrics text exemplars; without
    /// either, every scrape gets the text format as it did before they existed.
    pub fn offers(&self) -> (bool, bool) {
        (
            self.cardinality.native.mode != NativeMode::Off,
            self.cardinality.exemplar.is_some(),
        )
    }
}

/// The self-metrics about series, one of each per traffic metric.
struct SeriesGauges {
    series: IntGaugeVec,
    overflow: IntCounterVec,
}

impl SeriesGauges {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let series = IntGaugeVec::new(
            Opts::new(
                "haproxy_log_exporter_series",
                "Series each traffic metric has in the exposition (a histogram's buckets, sum and count each count), the overflow series included.",
            ),
            &["metric"],
        )?;
        let overflow = IntCounterVec::new(
            Opts::new(
                "haproxy_log_exporter_series_overflow_total",
                "Lines whose label set went to a metric's overflow series, because the metric had HLE_MAX_SERIES_PER_METRIC series.",
            ),
            &["metric"],
        )?;
        registry.register(Box::new(series.clone()))?;
        registry.register(Box::new(overflow.clone()))?;
        Ok(SeriesGauges { series, overflow })
    }
}

/// The enabled metrics, and the groups of those that share a label list: where each
/// metric's numbers are in its group's series.
fn layout(
    configs: &[MetricConfig],
    cardinality: &Cardinality,
    gauges: &SeriesGauges,
) -> (Vec<Metric>, Vec<Group>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut metrics = Vec::with_capacity(configs.len());
    for config in configs {
        let native_mode = cardinality.native.mode;
        let histogram = config.def.kind == Kind::Histogram;
        let classic = !histogram || native_mode != NativeMode::Only;
        let buckets = if histogram {
            config.buckets.clone()
        } else {
            Vec::new()
        };
        // Counts per label set: a counter's one, a histogram's buckets with `+Inf`, or
        // only its total without classic buckets.
        let width = if classic { buckets.len() + 1 } else { 1 };
        let sums = usize::from(histogram);
        let native = (histogram && native_mode != NativeMode::Off)
            .then(|| {
                NativeLayout::new(
                    cardinality.native.bucket_factor,
                    per_base_unit(config.def.source),
                    cardinality.native.max_buckets,
                )
            })
            .flatten();
        let exemplar_width = if cardinality.exemplar.is_some() {
            buckets.len() + 1
        } else {
            0
        };
        // Prometheus series per label set: a classic histogram has one per bucket, `+Inf`
        // included, plus `_sum` and `_count`; a native histogram is one series.
        let exposed = match (histogram, classic, native.is_some()) {
            (false, _, _) => 1,
            (true, true, native) => width + 2 + usize::from(native),
            (true, false, _) => 1,
        };
        let same = |g: &Group| g.labels == config.labels && g.exposed == exposed;
        let group = match groups.iter().position(same) {
            Some(group) => group,
            None => {
                groups.push(Group {
                    labels: config.labels.clone(),
                    metrics: Vec::new(),
                    stride: 0,
                    sum_stride: 0,
                    native_stride: 0,
                    exemplar_stride: 0,
                    exposed,
                    max_label_sets: (cardinality.max_series / exposed).max(1),
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[group];
        g.metrics.push(metrics.len());
        let full_name = config.def.full_name();
        let gauge = gauges.series.with_label_values(&[&full_name]);
        // A metric without labels has exactly one series, there from the start.
        gauge.set(if config.labels.is_empty() {
            exposed as i64
        } else {
            0
        });
        let thresholds: Vec<i64> = buckets
            .iter()
            .map(|&bound| threshold(bound, per_base_unit(config.def.source)))
            .collect();
        metrics.push(Metric {
            def: config.def,
            native,
            counted_thresholds: if classic {
                thresholds.clone()
            } else {
                Vec::new()
            },
            thresholds,
            overflow: gauges.overflow.with_label_values(&[&full_name]),
            series: gauge,
            full_name,
            buckets,
            classic,
            native_index: g.native_stride,
            exemplar_offset: g.exemplar_stride,
            group,
            offset: g.stride,
            sum: g.sum_stride,
        });
        g.stride += width;
        g.sum_stride += sums;
        g.native_stride += usize::from(metrics.last().is_some_and(|m| m.native.is_some()));
        g.exemplar_stride += exemplar_width;
    }
    (metrics, groups)
}
