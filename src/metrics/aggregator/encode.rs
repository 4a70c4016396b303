//! Writing the traffic metrics out: one walk over a copy of the series (`encode_with`)
//! hands each family and each series to a `Writer`, one per exposition format: the
//! Prometheus text format 0.0.4 (`Text`, what every scraper understands, byte for byte
//! what it has always been), OpenMetrics text with exemplars (`OpenMetrics`), and the
//! Prometheus protobuf format with native histograms (`protobuf::Protobuf`).

use std::borrow::Cow;
use std::fmt;

use super::{per_base_unit, Aggregator, Kind, Series, SEPARATOR};
use crate::metrics::exemplar::Exemplar;
use crate::metrics::exposition;
use crate::metrics::gathered::{self, Number, OmType};
use crate::metrics::native::{NativeBuckets, NativeLayout};

/// An exposition format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0 text, with exemplars.
    OpenMetrics,
    /// The Prometheus protobuf format (`io.prometheus.client.MetricFamily`, length
    /// delimited), with native histograms.
    Protobuf,
}

/// A family's header.
pub(super) struct Family<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub kind: Kind,
}

/// One series of a histogram.
pub(super) struct Histogram<'a> {
    /// The classic bounds in the exposition: none with `HLE_NATIVE_HISTOGRAMS=only`.
    pub bounds: &'a [f64],
    /// Per-bucket (not cumulative) counts, one more than `bounds`.
    pub counts: &'a [u64],
    pub sum: f64,
    /// How many of the logged unit make one of the exposed unit.
    pub per_unit: f64,
    /// One per configured bucket, `+Inf` included; empty without exemplars.
    pub exemplars: &'a [Exemplar],
    pub native: Option<(&'a NativeLayout, &'a NativeBuckets)>,
}

impl Histogram<'_> {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// An exemplar as a format writes it.
pub(super) struct ExemplarOut<'a> {
    pub label: &'a str,
    pub id: &'a str,
    pub value: f64,
    pub at_ms: i64,
}

/// What each exposition format implements.
pub(super) trait Writer {
    fn family(&mut self, family: &Family<'_>) -> fmt::Result;
    fn counter(
        &mut self,
        labels: &[(&str, Cow<'_, str>)],
        value: u64,
        exemplar: Option<ExemplarOut<'_>>,
    ) -> fmt::Result;
    fn histogram(
        &mut self,
        labels: &[(&str, Cow<'_, str>)],
        histogram: &Histogram<'_>,
        exemplar_label: &str,
    ) -> fmt::Result;
    /// After a family's last series.
    fn end_family(&mut self) -> fmt::Result {
        Ok(())
    }
}

impl Aggregator {
    /// Walks a copy of the series, taken under the lock and written without it, family by
    /// family and each family's series in the order of their label values.
    pub(super) fn encode_with(&self, w: &mut impl Writer) -> fmt::Result {
        let numbers: Vec<Series> = self.lock().groups.iter().map(Series::numbers).collect();
        let orders: Vec<Vec<usize>> = numbers.iter().map(Series::sorted_slots).collect();
        let exemplar_label = self.cardinality.exemplar.map_or("", |l| l.name());
        let mut labels: Vec<(&str, Cow<'_, str>)> = Vec::new();
        for metric in &self.metrics {
            let group = &self.groups[metric.group];
            let series = &numbers[metric.group];
            w.family(&Family {
                name: &metric.full_name,
                help: metric.def.help,
                kind: metric.def.kind,
            })?;
            for &slot in &orders[metric.group] {
                labels.clear();
                let values = series.keys[slot].split(|&b| b == SEPARATOR);
                for (label, value) in group.labels.iter().zip(values) {
                    labels.push((label.name(), String::from_utf8_lossy(value)));
                }
                let counts = &series.counts[slot * group.stride + metric.offset..];
                let exemplars = series
                    .exemplars
                    .get(slot * group.exemplar_stride + metric.exemplar_offset..)
                    .unwrap_or_default();
                match metric.def.kind {
                    Kind::Counter => {
                        let exemplar =
                            exemplars
                                .first()
                                .filter(|e| e.is_set())
                                .map(|e| ExemplarOut {
                                    label: exemplar_label,
                                    id: &e.id,
                                    value: e.raw as f64,
                                    at_ms: e.at_ms,
                                });
                        w.counter(&labels, counts[0], exemplar)?;
                    }
                    Kind::Histogram => {
                        let per_unit = per_base_unit(metric.def.source);
                        let sum =
                            series.sums[slot * group.sum_stride + metric.sum] as f64 / per_unit;
                        let bounds: &[f64] = if metric.classic { &metric.buckets } else { &[] };
                        let native = metric.native.as_ref().and_then(|layout| {
                            let at = slot * group.native_stride + metric.native_index;
                            Some((layout, series.natives.get(at)?))
                        });
                        let exemplars = if group.exemplar_stride == 0 {
                            &[]
                        } else {
                            exemplars.get(..=metric.buckets.len()).unwrap_or_default()
                        };
                        w.histogram(
                            &labels,
                            &Histogram {
                                bounds,
                                counts: &counts[..=bounds.len()],
                                sum,
                                per_unit,
                                exemplars,
                                native,
                            },
                            exemplar_label,
                        )?;
                    }
                }
            }
            w.end_family()?;
        }
        Ok(())
    }
}

/// The Prometheus text format 0.0.4.
pub(super) struct Text<'a> {
    out: &'a mut String,
    name: String,
    labels: String,
}

impl<'a> Text<'a> {
    pub fn new(out: &'a mut String) -> Self {
        Text {
            out,
            name: String::new(),
            labels: String::new(),
        }
    }

    fn labels(&mut self, labels: &[(&str, Cow<'_, str>)]) -> fmt::Result {
        self.labels.clear();
        for (name, value) in labels {
            exposition::write_label(&mut self.labels, name, value)?;
        }
        Ok(())
    }
}

impl Writer for Text<'_> {
    fn family(&mut self, family: &Family<'_>) -> fmt::Result {
        self.name.clear();
        self.name.push_str(family.name);
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        exposition::write_header(self.out, family.name, family.help, kind)
    }

    fn counter(
        &mut self,
        labels: &[(&str, Cow<'_, str>)],
        value: u64,
        _: Option<ExemplarOut<'_>>,
    ) -> fmt::Result {
        self.labels(labels)?;
        exposition::write_counter(self.out, &self.name, &self.labels, value)
    }

    fn histogram(
        &mut self,
        labels: &[(&str, Cow<'_, str>)],
        h: &Histogram<'_>,
        _: &str,
    ) -> fmt::Result {
        self.labels(labels)?;
        exposition::write_histogram(
            self.out,
            &self.name,
            &self.labels,
            h.bounds,
            h.counts,
            h.sum,
        )
    }
}

/// OpenMetrics 1.0 text: counters' family names without `_total`, canonical numbers, and
/// exemplars. The writers are `gathered`'s, which the self-metrics use too.
pub(super) struct OpenMetrics<'a> {
    out: &'a mut String,
    name: String,
    labels: String,
}

impl<'a> OpenMetrics<'a> {
    pub fn new(out: &'a mut String) -> Self {
        OpenMetrics {
            out,
            name: String::new(),
            labels: String::new(),
        }
    }

    fn labels(&mut self, labels: &[(&str, Cow<'_, str>)]) -> fmt::Result {
        self.labels.clear();
        for (name, value) in labels {
            gathered::write_om_label(&mut self.labels, name, value)?;
        }
        Ok(())
    }
}

fn write_exemplar(out: &mut String, e: &ExemplarOut<'_>) -> fmt::Result {
    gathered::write_exemplar(out, e.label, e.id, e.value, e.at_ms as f64 / 1000.0)
}

impl Writer for OpenMetrics<'_> {
    fn family(&mut self, family: &Family<'_>) -> fmt::Result {
        self.name.clear();
        self.name.push_str(family.name);
        let kind = match family.kind {
            Kind::Counter => OmType::Counter,
            Kind::Histogram => OmType::Histogram,
        };
        gathered::write_om_header(self.out, family.name, kind, "", family.help)
    }

    fn counter(
        &mut self,
        labels: &[(&str, Cow<'_, str>)],
        value: u64,
        exemplar: Option<ExemplarOut<'_>>,
    ) -> fmt::Result {
        self.labels(labels)?;
        let value = Number::Int(value);
        gathered::write_om_sample(self.out, &self.name, "", &self.labels, None, value)?;
        if let Some(e) = exemplar {
            write_exemplar(self.out, &e)?;
        }
        self.out.push('\n');
        Ok(())
    }

    fn histogram(
        &mut self,
        labels: &[(&str, Cow<'_, str>)],
        h: &Histogram<'_>,
        exemplar_label: &str,
    ) -> fmt::Result {
        self.labels(labels)?;
        let (name, labels) = (&self.name, &self.labels);
        let mut cumulative = 0;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let bound = h.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            let value = Number::Int(cumulative);
            gathered::write_om_sample(
                self.out,
                name,
                "_bucket",
                labels,
                Some(("le", bound)),
                value,
            )?;
            // Without classic buckets the one bucket, `+Inf`, carries the latest
            // exemplar of any.
            let exemplar = if h.bounds.is_empty() {
                h.exemplars
                    .iter()
                    .filter(|e| e.is_set())
                    .max_by_key(|e| e.at_ms)
            } else {
                h.exemplars.get(i).filter(|e| e.is_set())
            };
            if let Some(e) = exemplar {
                write_exemplar(
                    self.out,
                    &ExemplarOut {
                        label: exemplar_label,
                        id: &e.id,
                        value: e.raw as f64 / h.per_unit,
                        at_ms: e.at_ms,
                    },
                )?;
            }
            self.out.push('\n');
        }
        gathered::write_om_sample(self.out, name, "_sum", labels, None, Number::Float(h.sum))?;
        self.out.push('\n');
        gathered::write_om_sample(
            self.out,
            name,
            "_count",
            labels,
            None,
            Number::Int(cumulative),
        )?;
        self.out.push('\n');
        Ok(())
    }
}
