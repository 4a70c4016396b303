//! The traffic metrics in the Prometheus protobuf format: one `io.prometheus.client`
//! `MetricFamily` message per metric, each written length-delimited as soon as it is
//! complete. Each series is encoded as it comes, as the family's repeated `metric`
//! field, so that only bytes are held, not the messages of a family's every series. A histogram carries its native buckets with `HLE_NATIVE_HISTOGRAMS` on, its
//! classic buckets unless it is `only`, and its exemplars: on the classic buckets (where
//! every Prometheus version with native histograms reads them) and, without classic
//! buckets, in the histogram's own list (read by later versions).

use std::borrow::Cow;
use std::fmt;

use prost::Message;

use super::encode::{ExemplarOut, Family, Histogram, Writer};
use super::Kind;
use crate::metrics::exemplar::Exemplar;
use crate::metrics::native::ZERO_THRESHOLD;
use crate::metrics::proto as pb;

pub(super) struct Protobuf<'a> {
    out: &'a mut Vec<u8>,
    /// The family's name, help and type, without its series.
    family: pb::MetricFamily,
    /// The family's series so far, encoded as its `metric` fields.
    metrics: Vec<u8>,
    /// Whether the family has any series.
    any: bool,
}

/// The field number of `MetricFamily.metric`.
const METRIC_FIELD: u32 = 4;

impl<'a> Protobuf<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Protobuf {
            out,
            family: pb::MetricFamily::default(),
            metrics: Vec::new(),
            any: false,
        }
    }

    fn push(&mut self, metric: &pb::Metric) {
        prost::encoding::message::encode(METRIC_FIELD, metric, &mut self.metrics);
        self.any = true;
    }
}

fn label_pairs(labels: &[(&str, Cow<'_, str>)]) -> Vec<pb::LabelPair> {
    labels
        .iter()
        .map(|(name, value)| pb::LabelPair {
            name: Some((*name).to_string()),
            value: Some(value.to_string()),
        })
        .collect()
}

fn timestamp(at_ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at_ms.div_euclid(1000),
        // Below 1e9: 999 ms at most.
        nanos: i32::try_from(at_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn exemplar(label: &str, id: &str, value: f64, at_ms: i64) -> pb::Exemplar {
    pb::Exemplar {
        label: vec![pb::LabelPair {
            name: Some(label.to_string()),
            value: Some(id.to_string()),
        }],
        value: Some(value),
        timestamp: Some(timestamp(at_ms)),
    }
}

fn histogram_exemplar(label: &str, e: &Exemplar, per_unit: f64) -> pb::Exemplar {
    exemplar(label, &e.id, e.raw as f64 / per_unit, e.at_ms)
}

impl Writer for Protobuf<'_> {
    fn family(&mut self, family: &Family<'_>) -> fmt::Result {
        let kind = match family.kind {
            Kind::Counter => pb::MetricType::Counter,
            Kind::Histogram => pb::MetricType::Histogram,
        };
        self.family = pb::MetricFamily {
            name: Some(family.name.to_string()),
            help: Some(family.help.to_string()),
            r#type: Some(kind as i32),
            ..pb::MetricFamily::default()
        };
        self.metrics.clear();
        self.any = false;
        Ok(())
    }

    fn counter(
        &mut self,
        labels: &[(&str, Cow<'_, str>)],
        value: u64,
        e: Option<ExemplarOut<'_>>,
    ) -> fmt::Result {
        self.push(&pb::Metric {
            label: label_pairs(labels),
            counter: Some(pb::Counter {
                value: Some(value as f64),
                exemplar: e.map(|e| exemplar(e.label, e.id, e.value, e.at_ms)),
                ..pb::Counter::default()
            }),
            ..pb::Metric::default()
        });
        Ok(())
    }

    fn histogram(
        &mut self,
        labels: &[(&str, Cow<'_, str>)],
        h: &Histogram<'_>,
        exemplar_label: &str,
    ) -> fmt::Result {
        let set = |i: usize| h.exemplars.get(i).filter(|e| e.is_set());
        let mut histogram = pb::Histogram {
            sample_count: Some(h.count()),
            sample_sum: Some(h.sum),
            ..pb::Histogram::default()
        };
        // The classic buckets, cumulative; `+Inf` is the count, listed only to carry
        // its exemplar.
        let mut cumulative = 0;
        for (i, (&bound, count)) in h.bounds.iter().zip(h.counts).enumerate() {
            cumulative += count;
            histogram.bucket.push(pb::Bucket {
                cumulative_count: Some(cumulative),
                upper_bound: Some(bound),
                exemplar: set(i).map(|e| histogram_exemplar(exemplar_label, e, h.per_unit)),
                ..pb::Bucket::default()
            });
        }
        if !h.bounds.is_empty() {
            if let Some(e) = set(h.bounds.len()) {
                histogram.bucket.push(pb::Bucket {
                    cumulative_count: Some(h.count()),
                    upper_bound: Some(f64::INFINITY),
                    exemplar: Some(histogram_exemplar(exemplar_label, e, h.per_unit)),
                    ..pb::Bucket::default()
                });
            }
        }
        if let Some((layout, native)) = h.native {
            histogram.schema = Some(i32::from(native.schema(layout)));
            // Never 0, so that Prometheus takes even an empty histogram for a native one.
            histogram.zero_threshold = Some(ZERO_THRESHOLD);
            histogram.zero_count = Some(native.zero_count());
            let (spans, deltas) = native.spans_and_deltas();
            histogram.positive_span = spans
                .into_iter()
                .map(|(offset, length)| pb::BucketSpan {
                    offset: Some(offset),
                    length: Some(length),
                })
                .collect();
            histogram.positive_delta = deltas;
            if h.bounds.is_empty() {
                histogram.exemplars = h
                    .exemplars
                    .iter()
                    .filter(|e| e.is_set())
                    .map(|e| histogram_exemplar(exemplar_label, e, h.per_unit))
                    .collect();
            }
        }
        self.push(&pb::Metric {
            label: label_pairs(labels),
            histogram: Some(histogram),
            ..pb::Metric::default()
        });
        Ok(())
    }

    fn end_family(&mut self) -> fmt::Result {
        // A family without series is left out: the format has no place for its header
        // alone, and Prometheus would see nothing in it.
        if !self.any {
            return Ok(());
        }
        // The header's fields, then the series' (field order is free in protobuf), as
        // one length-delimited message.
        let header = self.family.encoded_len();
        prost::encoding::encode_varint((header + self.metrics.len()) as u64, self.out);
        if self.family.encode(self.out).is_err() {
            // Only a full buffer fails, and a Vec grows.
            return Err(fmt::Error);
        }
        self.out.extend_from_slice(&self.metrics);
        Ok(())
    }
}
