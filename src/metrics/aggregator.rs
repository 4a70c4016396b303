//! Pipeline stage 5 (sink): the aggregator. Turns each `LogRecord` into label values,
//! finds the series of each label set (at most `max_series` per metric, the rest folded
//! into one overflow series), updates them, forgets series idle for longer than the TTL,
//! and renders them in the Prometheus text format.
//!
//! The series live in plain integers behind one mutex rather than in the `prometheus`
//! crate's atomic vectors: a line takes the lock once and then updates every metric with
//! plain additions, where the vectors cost a hash lookup and several atomic operations
//! per metric per line. Metrics with the same label list share one index, so a line
//! hashes each distinct label set once. A scrape copies the numbers out under the lock
//! and formats them after releasing it, so it does not stall the sources.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::time::Instant;

use super::client_ip::ClientIpPrefix;
use super::labels::Label;
use super::path::PathNormaliser;
use super::catalog::{Kind, MetricConfig, MetricDef, Source};
use crate::haproxy::LogRecord;

/// The value of every label of the overflow series.
pub const OVERFLOW: &str = "__overflow__";

/// Default of `HLE_MAX_SERIES_PER_METRIC`.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// Separates label values in a series key; never part of UTF-8 text.
const SEPARATOR: u8 = 0xFF;

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
}

impl Default for Cardinality {
    fn default() -> Self {
        Cardinality {
            path: PathNormaliser::default(),
            client_ip: ClientIpPrefix::default(),
            max_series: DEFAULT_MAX_SERIES,
            ttl: None,
        }
    }
}

/// One enabled metric.
struct Metric {
    def: &'static MetricDef,
    full_name: String,
    /// Upper bounds of a histogram's buckets; empty for counters.
    buckets: Vec<f64>,
    /// The same bounds in the unit HAProxy logs: the largest logged value that falls in
    /// each bucket, so that a line is bucketed by integer comparisons.
    thresholds: Vec<i64>,
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

/// The metrics that share one label list and one number of Prometheus series per label
/// set (so one cap on label sets), and so one set of series.
struct Group {
    labels: Vec<Label>,
    metrics: Vec<usize>,
    /// Prometheus series each label set has in each metric: 1 for a counter.
    exposed: usize,
    /// Label sets that fit in `HLE_MAX_SERIES_PER_METRIC` series, the overflow one included.
    max_label_sets: usize,
    /// Counts per series.
    stride: usize,
    /// Sums per series.
    sum_stride: usize,
}

/// The series of one group, in parallel vectors indexed by slot.
#[derive(Default, Clone)]
struct Series {
    index: HashMap<Arc<[u8]>, usize, foldhash::fast::RandomState>,
    keys: Vec<Arc<[u8]>>,
    /// When each series was last updated, in sweep ticks.
    touched: Vec<u32>,
    counts: Vec<u64>,
    /// Histogram sums in the unit HAProxy logs (milliseconds, queue slots): integers, so
    /// the sum does not depend on the order lines arrive in.
    sums: Vec<u64>,
    overflow: Option<usize>,
}

struct State {
    groups: Vec<Series>,
    /// Scratch space for the key of a label set.
    key: Vec<u8>,
    /// Seconds since the aggregator started, as of the last sweep.
    now: u32,
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
            if timer.get(record).is_some() || !timer.applies_to(record.kind) {
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

        let mut groups: Vec<Group> = Vec::new();
        let mut metrics = Vec::with_capacity(configs.len());
        for config in configs {
            let (buckets, width, sums) = match config.def.kind {
                Kind::Counter => (Vec::new(), 1, 0),
                Kind::Histogram => (config.buckets.clone(), config.buckets.len() + 1, 1),
            };
            // Prometheus series per label set: a histogram has one per bucket, `+Inf`
            // included, plus `_sum` and `_count`.
            let exposed = width + sums * 2;
            let same = |g: &Group| g.labels == config.labels && g.exposed == exposed;
            let group = match groups.iter().position(same) {
                Some(group) => group,
                None => {
                    groups.push(Group {
                        labels: config.labels.clone(),
                        metrics: Vec::new(),
                        stride: 0,
                        sum_stride: 0,
                        exposed,
                        max_label_sets: (cardinality.max_series / exposed).max(1),
                    });
                    groups.len() - 1
                }
            };
            let g = &mut groups[group];
            g.metrics.push(metrics.len());
            let full_name = config.def.full_name();
            let gauge = series.with_label_values(&[&full_name]);
            gauge.set(if config.labels.is_empty() {
                exposed as i64
            } else {
                0
            });
            let thresholds = buckets
                .iter()
                .map(|&bound| threshold(bound, per_base_unit(config.def.source)))
                .collect();
            metrics.push(Metric {
                def: config.def,
                thresholds,
                overflow: overflow.with_label_values(&[&full_name]),
                series: gauge,
                full_name,
                buckets,
                group,
                offset: g.stride,
                sum: g.sum_stride,
            });
            g.stride += width;
            g.sum_stride += sums;
        }

        let uses = |label: Label| configs.iter().any(|c| c.labels.contains(&label));
        let mut state = State {
            groups: vec![Series::default(); groups.len()],
            key: Vec::new(),
            now: 0,
        };
        // A metric without labels has exactly one series, there from the start.
        for (group, series) in groups.iter().zip(&mut state.groups) {
            if group.labels.is_empty() {
                series.insert(Arc::from(&[][..]), group);
            }
        }
        Ok(Aggregator {
            uses_path: uses(Label::HttpRequestPath) && !cardinality.path.is_identity(),
            uses_client_ip: uses(Label::ClientIp) && !cardinality.client_ip.is_identity(),
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

        let mut state = self.lock();
        let State { groups, key, now } = &mut *state;
        for (group, series) in self.groups.iter().zip(groups) {
            let (slot, overflowed) = if group.labels.is_empty() {
                (0, false)
            } else {
                key.clear();
                for &label in &group.labels {
                    key.extend_from_slice(value(label).as_bytes());
                    key.push(SEPARATOR);
                }
                self.slot(series, group, key)
            };
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
                        // `+Inf`. Counting (not searching) compiles to vector compares.
                        let value = i64::try_from(raw).unwrap_or(i64::MAX);
                        let bucket = metric.thresholds.iter().filter(|&&t| t < value).count();
                        counts[metric.offset + bucket] += 1;
                        sums[metric.sum] = sums[metric.sum].saturating_add(raw);
                    }
                }
                if overflowed {
                    metric.overflow.inc();
                }
            }
        }
    }

    /// The slot of the series for `key`, created if there is room, else the overflow
    /// series; and whether it is the overflow series.
    fn slot(&self, series: &mut Series, group: &Group, key: &[u8]) -> (usize, bool) {
        if let Some(&slot) = series.index.get(key) {
            return (slot, Some(slot) == series.overflow);
        }
        // One series is kept for the overflow, so the cap holds once it exists.
        let regular = series.keys.len() - usize::from(series.overflow.is_some());
        if regular + 1 < group.max_label_sets {
            let slot = series.insert(Arc::from(key), group);
            self.publish(series, group);
            return (slot, false);
        }
        let slot = match series.overflow {
            Some(slot) => slot,
            None => {
                let mut key = Vec::new();
                for _ in &group.labels {
                    key.extend_from_slice(OVERFLOW.as_bytes());
                    key.push(SEPARATOR);
                }
                let slot = series.insert(Arc::from(key), group);
                series.overflow = Some(slot);
                self.publish(series, group);
                slot
            }
        };
        (slot, true)
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
            if group.labels.is_empty() {
                continue;
            }
            let before = series.keys.len();
            let mut slot = 0;
            while slot < series.keys.len() {
                if now.saturating_sub(series.touched[slot]) >= idle_limit {
                    series.remove(slot, group);
                } else {
                    slot += 1;
                }
            }
            if series.keys.len() != before {
                self.publish(series, group);
            }
        }
    }

    /// Appends the traffic metrics in the Prometheus text format (version 0.0.4).
    pub fn encode(&self, out: &mut String) {
        // Copy the numbers out and format them without holding the lock.
        let snapshot: Vec<Series> = {
            let state = self.lock();
            state
                .groups
                .iter()
                .map(|s| Series {
                    keys: s.keys.clone(),
                    counts: s.counts.clone(),
                    sums: s.sums.clone(),
                    ..Series::default()
                })
                .collect()
        };
        let orders: Vec<Vec<usize>> = snapshot
            .iter()
            .map(|s| {
                let mut order: Vec<usize> = (0..s.keys.len()).collect();
                order.sort_unstable_by(|&a, &b| s.keys[a].cmp(&s.keys[b]));
                order
            })
            .collect();
        let mut labels = String::new();
        for metric in &self.metrics {
            let group = &self.groups[metric.group];
            let series = &snapshot[metric.group];
            let kind = match metric.def.kind {
                Kind::Counter => "counter",
                Kind::Histogram => "histogram",
            };
            let name = &metric.full_name;
            let _ = writeln!(out, "# HELP {name} {}", escape_help(metric.def.help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for &slot in &orders[metric.group] {
                labels.clear();
                let values = series.keys[slot].split(|&b| b == SEPARATOR);
                for (label, value) in group.labels.iter().zip(values) {
                    let value = String::from_utf8_lossy(value);
                    let _ = write!(labels, "{}=\"{}\",", label.name(), escape_value(&value));
                }
                let counts = &series.counts[slot * group.stride + metric.offset..];
                let braced = braces(&labels);
                match metric.def.kind {
                    Kind::Counter => {
                        let _ = writeln!(out, "{name}{braced} {}", counts[0]);
                    }
                    Kind::Histogram => {
                        let mut cumulative = 0;
                        for (bound, count) in metric.buckets.iter().zip(counts) {
                            cumulative += count;
                            let _ = writeln!(
                                out,
                                "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}"
                            );
                        }
                        cumulative += counts[metric.buckets.len()];
                        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
                        let sum = series.sums[slot * group.sum_stride + metric.sum] as f64
                            / per_base_unit(metric.def.source);
                        let _ = writeln!(out, "{name}_sum{braced} {sum}");
                        let _ = writeln!(out, "{name}_count{braced} {cumulative}");
                    }
                }
            }
        }
    }
}

impl Series {
    /// Adds a series with zero counts; returns its slot. The line that brought it
    /// stamps its time.
    fn insert(&mut self, key: Arc<[u8]>, group: &Group) -> usize {
        let slot = self.keys.len();
        self.index.insert(key.clone(), slot);
        self.keys.push(key);
        self.touched.push(0);
        self.counts.resize(self.counts.len() + group.stride, 0);
        self.sums.resize(self.sums.len() + group.sum_stride, 0);
        slot
    }

    /// Removes the series in `slot`; the last series moves into its place.
    fn remove(&mut self, slot: usize, group: &Group) {
        let last = self.keys.len() - 1;
        self.index.remove(&self.keys[slot]);
        self.keys.swap_remove(slot);
        self.touched.swap_remove(slot);
        swap_remove_run(&mut self.counts, slot, last, group.stride);
        swap_remove_run(&mut self.sums, slot, last, group.sum_stride);
        if self.overflow == Some(slot) {
            self.overflow = None;
        }
        if slot != last {
            if let Some(moved) = self.index.get_mut(&self.keys[slot]) {
                *moved = slot;
            }
            if self.overflow == Some(last) {
                self.overflow = Some(slot);
            }
        }
    }
}

/// Removes the `width` values of `slot` from `values`, moving those of `last` there.
fn swap_remove_run<T: Copy>(values: &mut Vec<T>, slot: usize, last: usize, width: usize) {
    values.copy_within(last * width..(last + 1) * width, slot * width);
    values.truncate(last * width);
}

/// `{a="1",b="2"}` from `a="1",b="2",`; nothing for no labels.
fn braces(labels: &str) -> String {
    match labels.strip_suffix(',') {
        Some(inner) => format!("{{{inner}}}"),
        None => String::new(),
    }
}

fn escape_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

fn escape_help(help: &str) -> Cow<'_, str> {
    if !help.contains(['\\', '\n']) {
        return Cow::Borrowed(help);
    }
    Cow::Owned(help.replace('\\', "\\\\").replace('\n', "\\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::EntryKind;
    use crate::metrics::MetricDef;

    #[test]
    fn thresholds_bucket_a_logged_value_as_its_value_in_base_units() {
        for bound in [
            0.0, 0.001, 0.005, 0.1, 0.3, 0.7, 1.0, 2.5, 1.1, 9.999, 60.0, 1e6,
        ] {
            let t = threshold(bound, 1000.0);
            for raw in [t - 1, t, t + 1].into_iter().filter(|&r| r >= 0) {
                assert_eq!(raw <= t, raw as f64 / 1000.0 <= bound, "{bound} {raw}");
            }
        }
        assert_eq!(threshold(-1.0, 1000.0), -1);
        assert_eq!(threshold(-0.5, 1.0), -1);
        assert_eq!(threshold(0.0, 1.0), 0);
        assert_eq!(threshold(2.5, 1.0), 2);
        assert_eq!(threshold(1e300, 1000.0), 1 << 62);
    }

    fn config(name: &str, labels: &[Label]) -> MetricConfig {
        let def = MetricDef::by_name(name).unwrap();
        MetricConfig {
            def,
            labels: labels.to_vec(),
            buckets: def.default_buckets.to_vec(),
        }
    }

    fn record(path: &str, status: &'static str, response_ms: u64) -> LogRecord<'static> {
        let mut record = LogRecord::empty(EntryKind::Http);
        record.status_code = status;
        record.backend_name = "be";
        record.server_name = "s1";
        record.request_wait = Some(0);
        record.queued = Some(0);
        record.connect = Some(0);
        record.response = Some(response_ms);
        record.session = Some(response_ms);
        record.bytes_read = 10;
        record.http_request_path = Cow::Owned(path.to_string());
        record
    }

    /// `name{labels} value` lines of `metric` (no HELP/TYPE), in exposition order.
    fn samples(aggregator: &Aggregator, metric: &str) -> Vec<(String, f64)> {
        let mut text = String::new();
        aggregator.encode(&mut text);
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| series.split('{').next() == Some(metric))
            .map(|(series, value)| (series.to_string(), value.parse().unwrap()))
            .collect()
    }

    fn total(aggregator: &Aggregator, metric: &str) -> f64 {
        samples(aggregator, metric).iter().map(|(_, v)| v).sum()
    }

    fn gauge(registry: &Registry, name: &str, metric: &str) -> f64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == metric))
            .map(|m| {
                if m.get_gauge().get_value() != 0.0 {
                    m.get_gauge().get_value()
                } else {
                    m.get_counter().get_value()
                }
            })
            .sum()
    }

    const REQUESTS: &str = "haproxy_log_requests_total";

    #[test]
    fn counters_and_histograms_in_text_format() {
        let registry = Registry::new();
        let metrics = [
            config(
                "requests_total",
                &[Label::StatusCode, Label::HttpRequestPath],
            ),
            config("response_processing_seconds", &[Label::ServerName]),
        ];
        let aggregator = Aggregator::new(&metrics, &registry).unwrap();
        aggregator.observe(&record("/a", "200", 3));
        aggregator.observe(&record("/a", "200", 40));
        aggregator.observe(&record("/b\"\\", "503", 20_000));
        let mut text = String::new();
        aggregator.encode(&mut text);
        let expected = "\
# HELP haproxy_log_requests_total Traffic log lines counted: HTTP requests (option httplog) and TCP sessions (option tcplog).
# TYPE haproxy_log_requests_total counter
haproxy_log_requests_total{status_code=\"200\",http_request_path=\"/a\"} 2
haproxy_log_requests_total{status_code=\"503\",http_request_path=\"/b\\\"\\\\\"} 1
";
        assert!(text.starts_with(expected), "{text}");
        for line in [
            "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"0.001\"} 0",
            "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"0.005\"} 1",
            "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"0.05\"} 2",
            "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"10\"} 2",
            "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"30\"} 3",
            "haproxy_log_response_processing_seconds_bucket{server_name=\"s1\",le=\"+Inf\"} 3",
            "haproxy_log_response_processing_seconds_sum{server_name=\"s1\"} 20.043",
            "haproxy_log_response_processing_seconds_count{server_name=\"s1\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn a_timer_logged_as_minus_one_is_not_observed() {
        let registry = Registry::new();
        let metrics = [
            config("response_processing_seconds", &[]),
            config("request_response_abort_total", &[]),
        ];
        let aggregator = Aggregator::new(&metrics, &registry).unwrap();
        let mut aborted = record("/", "-1", 0);
        aborted.response = None;
        aggregator.observe(&aborted);
        aggregator.observe(&record("/", "200", 1));
        assert_eq!(
            total(&aggregator, "haproxy_log_response_processing_seconds_count"),
            1.0
        );
        assert_eq!(
            total(&aggregator, "haproxy_log_request_response_abort_total"),
            1.0
        );
    }

    #[test]
    fn label_sets_beyond_the_cap_fold_into_one_overflow_series() {
        let registry = Registry::new();
        let metrics = [
            config(
                "requests_total",
                &[Label::StatusCode, Label::HttpRequestPath],
            ),
            config(
                "bytes_read_total",
                &[Label::StatusCode, Label::HttpRequestPath],
            ),
            config(
                "request_abort_total",
                &[Label::StatusCode, Label::HttpRequestPath],
            ),
        ];
        let cardinality = Cardinality {
            max_series: 5,
            ..Cardinality::default()
        };
        let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
        // 4 regular series, then everything new folds; a known set keeps its series.
        let paths: Vec<String> = (0..20).map(|i| format!("/p{i}")).collect();
        for path in &paths {
            aggregator.observe(&record(path, "200", 1));
        }
        aggregator.observe(&record("/p0", "200", 1));
        let series = samples(&aggregator, REQUESTS);
        assert_eq!(series.len(), 5, "{series:?}");
        assert_eq!(total(&aggregator, REQUESTS), 21.0);
        assert_eq!(total(&aggregator, "haproxy_log_bytes_read_total"), 210.0);
        let overflow =
            format!("{REQUESTS}{{status_code=\"{OVERFLOW}\",http_request_path=\"{OVERFLOW}\"}}");
        assert!(series.contains(&(overflow, 16.0)), "{series:?}");
        let p0 = format!("{REQUESTS}{{status_code=\"200\",http_request_path=\"/p0\"}}");
        assert!(series.contains(&(p0, 2.0)), "{series:?}");

        let overflow_total = "haproxy_log_exporter_series_overflow_total";
        assert_eq!(gauge(&registry, overflow_total, REQUESTS), 16.0);
        // No line aborted, so none went to the abort counter's overflow series.
        assert_eq!(
            gauge(&registry, overflow_total, "haproxy_log_request_abort_total"),
            0.0
        );
        assert_eq!(
            gauge(&registry, "haproxy_log_exporter_series", REQUESTS),
            5.0
        );
    }

    #[test]
    fn a_cap_of_one_sends_every_label_set_to_the_overflow_series() {
        let registry = Registry::new();
        let metrics = [config("requests_total", &[Label::StatusCode])];
        let cardinality = Cardinality {
            max_series: 1,
            ..Cardinality::default()
        };
        let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
        aggregator.observe(&record("/", "200", 1));
        aggregator.observe(&record("/", "404", 1));
        assert_eq!(
            samples(&aggregator, REQUESTS),
            [(format!("{REQUESTS}{{status_code=\"{OVERFLOW}\"}}"), 2.0)]
        );
    }

    #[test]
    fn path_and_client_ip_rules_apply_before_the_label_set_is_looked_up() {
        let registry = Registry::new();
        let metrics = [config(
            "requests_total",
            &[Label::HttpRequestPath, Label::ClientIp],
        )];
        let cardinality = Cardinality {
            client_ip: ClientIpPrefix::from_settings("24", "128").unwrap(),
            ..Cardinality::default()
        };
        let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
        for (path, ip) in [("/users/1", "10.0.0.1"), ("/users/22", "10.0.0.2")] {
            let mut line = record(path, "200", 1);
            line.client_ip = Cow::Borrowed(ip);
            aggregator.observe(&line);
        }
        assert_eq!(
            samples(&aggregator, REQUESTS),
            [(
                format!("{REQUESTS}{{http_request_path=\"/users/:id\",client_ip=\"10.0.0.0/24\"}}"),
                2.0
            )]
        );
    }

    #[test]
    fn idle_series_expire_after_the_ttl_and_free_their_place() {
        let registry = Registry::new();
        let metrics = [config("requests_total", &[Label::HttpRequestPath])];
        let cardinality = Cardinality {
            max_series: 3,
            ttl: Some(Duration::from_secs(60)),
            ..Cardinality::default()
        };
        let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
        let interval = aggregator.sweep_interval().unwrap();
        assert_eq!(interval, Duration::from_secs(6));
        let start = aggregator.start;
        let at = |secs: u64| start + Duration::from_secs(secs);

        aggregator.observe(&record("/old", "200", 1));
        aggregator.observe(&record("/kept", "200", 1));
        aggregator.observe(&record("/folded", "200", 1));
        assert_eq!(samples(&aggregator, REQUESTS).len(), 3);

        // /kept stays busy; nothing leaves before a TTL has passed.
        for secs in (6..=60).step_by(6) {
            aggregator.sweep(at(secs));
            aggregator.observe(&record("/kept", "200", 1));
        }
        assert_eq!(samples(&aggregator, REQUESTS).len(), 3);
        for secs in (66..=90).step_by(6) {
            aggregator.sweep(at(secs));
            aggregator.observe(&record("/kept", "200", 1));
        }
        let left = samples(&aggregator, REQUESTS);
        assert_eq!(
            left,
            [(format!("{REQUESTS}{{http_request_path=\"/kept\"}}"), 16.0)]
        );
        assert_eq!(
            gauge(&registry, "haproxy_log_exporter_series", REQUESTS),
            1.0
        );
        // The freed places take new label sets again, not the overflow series.
        aggregator.observe(&record("/new", "200", 1));
        assert!(samples(&aggregator, REQUESTS)
            .iter()
            .any(|(s, _)| s.contains("/new")));
    }

    #[test]
    fn removing_series_keeps_every_other_series_and_its_counts() {
        let registry = Registry::new();
        let metrics = [
            config("requests_total", &[Label::HttpRequestPath]),
            config("response_processing_seconds", &[Label::HttpRequestPath]),
        ];
        let cardinality = Cardinality {
            ttl: Some(Duration::from_secs(10)),
            ..Cardinality::default()
        };
        let aggregator = Aggregator::with_cardinality(&metrics, cardinality, &registry).unwrap();
        let start = aggregator.start;
        for i in 0..10 {
            aggregator.observe(&record(&format!("/p{i}"), "200", i));
        }
        aggregator.sweep(start + Duration::from_secs(1));
        // Every odd path stays busy, so the even ones leave from all over the table.
        for secs in 2..=30 {
            for i in (1..10).step_by(2) {
                aggregator.observe(&record(&format!("/p{i}"), "200", i));
            }
            aggregator.sweep(start + Duration::from_secs(secs));
        }
        let left = samples(&aggregator, REQUESTS);
        let expected: Vec<(String, f64)> = (1..10)
            .step_by(2)
            .map(|i| (format!("{REQUESTS}{{http_request_path=\"/p{i}\"}}"), 30.0))
            .collect();
        assert_eq!(left, expected);
        let sums = samples(&aggregator, "haproxy_log_response_processing_seconds_sum");
        for (i, (_, sum)) in (1..10).step_by(2).zip(&sums) {
            assert!((sum - 30.0 * i as f64 / 1000.0).abs() < 1e-9, "{sums:?}");
        }
    }
}
