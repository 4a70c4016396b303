//! The exposition's other two formats for the exporter's own metrics (the families the
//! `prometheus` crate gathers): the protobuf messages of `proto`, one length-delimited
//! family after another, and OpenMetrics 1.0 text. Also the OpenMetrics writers that the
//! traffic metrics share: the family header, numbers, labels, samples and exemplars.
//!
//! OpenMetrics differs from the text format 0.0.4 in small ways that a parser rejects a
//! whole scrape for: a counter's family is named without `_total` and its samples with it,
//! floats carry a `.` or an exponent (`1.0`, `1e+06`) and `le`/`quantile` values are
//! canonical (Go's `%g`, as client_golang writes them), timestamps are in seconds, help
//! escapes `"` too, and the exposition ends in `# EOF`, which the caller appends after the
//! traffic metrics.

use std::borrow::Cow;
use std::fmt::{self, Write};

use prometheus::proto as gathered;
use prost::Message;

use super::proto;

/// At most this many characters in an exemplar's label names and values together
/// (OpenMetrics 1.0, "Exemplars").
pub(crate) const EXEMPLAR_MAX_CHARS: usize = 128;

/// The families as protobuf messages: name, help, type, and every metric's labels, value
/// and timestamp. The `prometheus` crate's histograms have no `+Inf` bucket, which the
/// message allows; its counters have no created timestamp nor exemplar.
pub(crate) fn to_protobuf(families: &[gathered::MetricFamily]) -> Vec<proto::MetricFamily> {
    families.iter().map(family_to_protobuf).collect()
}

fn family_to_protobuf(family: &gathered::MetricFamily) -> proto::MetricFamily {
    use gathered::MetricType as From;
    use proto::MetricType as To;
    let kind = match family.get_field_type() {
        From::COUNTER => To::Counter,
        From::GAUGE => To::Gauge,
        From::SUMMARY => To::Summary,
        From::UNTYPED => To::Untyped,
        From::HISTOGRAM => To::Histogram,
    };
    proto::MetricFamily {
        name: Some(family.name().to_string()),
        help: Some(family.help().to_string()).filter(|help| !help.is_empty()),
        r#type: Some(kind as i32),
        metric: family
            .get_metric()
            .iter()
            .map(|metric| metric_to_protobuf(kind, metric))
            .collect(),
        unit: None,
    }
}

/// One metric: only the value its family's type names is set, as client_golang does.
fn metric_to_protobuf(kind: proto::MetricType, metric: &gathered::Metric) -> proto::Metric {
    use proto::MetricType as Kind;
    let mut out = proto::Metric {
        label: metric
            .get_label()
            .iter()
            .map(|pair| proto::LabelPair {
                name: Some(pair.name().to_string()),
                value: Some(pair.value().to_string()),
            })
            .collect(),
        // The crate's model has no "unset": 0 stands for no timestamp.
        timestamp_ms: Some(metric.timestamp_ms()).filter(|&ms| ms != 0),
        ..proto::Metric::default()
    };
    match kind {
        Kind::Counter => {
            out.counter = Some(proto::Counter {
                value: Some(metric.get_counter().get_value()),
                ..proto::Counter::default()
            });
        }
        Kind::Gauge => {
            out.gauge = Some(proto::Gauge {
                value: Some(metric.get_gauge().get_value()),
            });
        }
        Kind::Untyped => {
            out.untyped = Some(proto::Untyped {
                value: Some(untyped_value(metric)),
            });
        }
        Kind::Summary => {
            let summary = metric.get_summary();
            out.summary = Some(proto::Summary {
                sample_count: Some(summary.sample_count()),
                sample_sum: Some(summary.sample_sum()),
                quantile: summary
                    .get_quantile()
                    .iter()
                    .map(|q| proto::Quantile {
                        quantile: Some(q.quantile()),
                        value: Some(q.value()),
                    })
                    .collect(),
                created_timestamp: None,
            });
        }
        Kind::Histogram | Kind::GaugeHistogram => {
            let histogram = metric.get_histogram();
            out.histogram = Some(proto::Histogram {
                sample_count: Some(histogram.get_sample_count()),
                sample_sum: Some(histogram.get_sample_sum()),
                bucket: histogram
                    .get_bucket()
                    .iter()
                    .map(|bucket| proto::Bucket {
                        cumulative_count: Some(bucket.cumulative_count()),
                        upper_bound: Some(bucket.upper_bound()),
                        ..proto::Bucket::default()
                    })
                    .collect(),
                ..proto::Histogram::default()
            });
        }
    }
    out
}

/// An untyped metric's value. The crate marks its untyped model deprecated and never
/// gathers one (its own text encoder cannot write it), but the model can hold one.
#[allow(deprecated)]
fn untyped_value(metric: &gathered::Metric) -> f64 {
    metric.get_untyped().get_value()
}

/// Appends `family` as `encoding=delimited` frames it: its length as a varint, then the
/// message.
pub(crate) fn write_delimited(family: &proto::MetricFamily, out: &mut Vec<u8>) {
    // prost fails only when the buffer cannot take the message; a Vec grows (short of
    // isize::MAX bytes, where the allocation aborts first). Said rather than ignored.
    if let Err(e) = family.encode_length_delimited(out) {
        tracing::error!(family = family.name(), error = %e, "cannot encode a metric family");
    }
}

/// The families in OpenMetrics 1.0 text, without the closing `# EOF`.
pub(crate) fn write_openmetrics(
    families: &[gathered::MetricFamily],
    out: &mut String,
) -> fmt::Result {
    for family in families {
        write_family(family, out)?;
    }
    Ok(())
}

fn write_family(family: &gathered::MetricFamily, out: &mut String) -> fmt::Result {
    use gathered::MetricType as From;
    let name = family.name();
    let kind = match family.get_field_type() {
        From::COUNTER => OmType::Counter,
        From::GAUGE => OmType::Gauge,
        From::SUMMARY => OmType::Summary,
        From::UNTYPED => OmType::Unknown,
        From::HISTOGRAM => OmType::Histogram,
    };
    write_om_header(out, name, kind, "", family.help())?;
    let mut labels = String::new();
    for metric in family.get_metric() {
        labels.clear();
        for pair in metric.get_label() {
            write_om_label(&mut labels, pair.name(), pair.value())?;
        }
        let timestamp_ms = metric.timestamp_ms();
        let mut line = |suffix: &str, extra: Option<(&str, f64)>, value: Number| {
            write_om_sample(out, name, suffix, &labels, extra, value)?;
            if timestamp_ms != 0 {
                out.push(' ');
                write_om_timestamp_ms(out, timestamp_ms)?;
            }
            out.push('\n');
            Ok::<(), fmt::Error>(())
        };
        match kind {
            OmType::Counter => line("", None, Number::Float(metric.get_counter().get_value()))?,
            OmType::Gauge => line("", None, Number::Float(metric.get_gauge().get_value()))?,
            OmType::Unknown => line("", None, Number::Float(untyped_value(metric)))?,
            OmType::Summary => {
                let summary = metric.get_summary();
                for q in summary.get_quantile() {
                    line(
                        "",
                        Some(("quantile", q.quantile())),
                        Number::Float(q.value()),
                    )?;
                }
                line("_sum", None, Number::Float(summary.sample_sum()))?;
                line("_count", None, Number::Int(summary.sample_count()))?;
            }
            OmType::Histogram => {
                let histogram = metric.get_histogram();
                let mut inf_seen = false;
                let mut negative = false;
                for bucket in histogram.get_bucket() {
                    let bound = bucket.upper_bound();
                    inf_seen |= bound == f64::INFINITY;
                    negative |= bound < 0.0;
                    let count = Number::Int(bucket.cumulative_count());
                    line("_bucket", Some(("le", bound)), count)?;
                }
                let count = histogram.get_sample_count();
                if !inf_seen {
                    line("_bucket", Some(("le", f64::INFINITY)), Number::Int(count))?;
                }
                // With a negative bucket the sum is no counter, and OpenMetrics forbids it;
                // `_count` comes only with `_sum`.
                if !negative {
                    line("_sum", None, Number::Float(histogram.get_sample_sum()))?;
                    line("_count", None, Number::Int(count))?;
                }
            }
        }
    }
    Ok(())
}

/// An OpenMetrics family type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OmType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Unknown,
}

/// `# TYPE`, `# UNIT` and `# HELP` of one family, in the order OpenMetrics recommends.
/// `name` is the samples' name: for a counter the family is named without its `_total`,
/// and a counter whose name does not end in `_total` is declared `unknown` (as
/// client_golang does), so that its samples keep the name they have in the text format.
/// An empty `unit` or `help` writes no line; nor does a unit that is not a suffix of the
/// family's name (`_seconds` of `x_seconds`), which OpenMetrics requires.
pub(crate) fn write_om_header(
    out: &mut impl Write,
    name: &str,
    kind: OmType,
    unit: &str,
    help: &str,
) -> fmt::Result {
    let (family, kind) = match kind {
        OmType::Counter => match name.strip_suffix("_total") {
            Some(family) => (family, "counter"),
            None => (name, "unknown"),
        },
        OmType::Gauge => (name, "gauge"),
        OmType::Histogram => (name, "histogram"),
        OmType::Summary => (name, "summary"),
        OmType::Unknown => (name, "unknown"),
    };
    writeln!(out, "# TYPE {family} {kind}")?;
    let unit_fits = family
        .strip_suffix(unit)
        .is_some_and(|rest| rest.ends_with('_'))
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    if !unit.is_empty() && unit_fits {
        writeln!(out, "# UNIT {family} {unit}")?;
    }
    if !help.is_empty() {
        writeln!(out, "# HELP {family} {}", escape(help))?;
    }
    Ok(())
}

/// A sample's value: counts are integers (no decimal point), everything else a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Number {
    Int(u64),
    Float(f64),
}

/// `name` + `suffix`, the labels (`labels` as [`write_om_label`] builds them, then `extra`
/// with its value canonical, for `le` and `quantile`) and the value, without the line's
/// end: a timestamp or an exemplar may follow, then `\n`.
pub(crate) fn write_om_sample(
    out: &mut impl Write,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, f64)>,
    value: Number,
) -> fmt::Result {
    out.write_str(name)?;
    out.write_str(suffix)?;
    match extra {
        Some((label, bound)) => {
            write!(out, "{{{labels}{label}=\"")?;
            write_om_float(out, bound)?;
            out.write_str("\"}")?;
        }
        None => {
            if let Some(inner) = labels.strip_suffix(',') {
                write!(out, "{{{inner}}}")?;
            }
        }
    }
    out.write_char(' ')?;
    match value {
        Number::Int(count) => write!(out, "{count}"),
        Number::Float(value) => write_om_float(out, value),
    }
}

/// Appends `name="value",` to a label list, the value escaped.
pub(crate) fn write_om_label(labels: &mut String, name: &str, value: &str) -> fmt::Result {
    write!(labels, "{name}=\"{}\",", escape(value))
}

/// ` # {name="value"} value timestamp`, an exemplar after a counter's `_total` sample or a
/// histogram's bucket, before the line's end: the timestamp in seconds, left out when it
/// is not finite. An empty `label_name` gives `{}`. Writes nothing when the label is
/// longer than [`EXEMPLAR_MAX_CHARS`], which a parser may reject the whole scrape for.
pub(crate) fn write_exemplar(
    out: &mut impl Write,
    label_name: &str,
    label_value: &str,
    value: f64,
    timestamp_seconds: f64,
) -> fmt::Result {
    if label_name.chars().count() + label_value.chars().count() > EXEMPLAR_MAX_CHARS {
        return Ok(());
    }
    if label_name.is_empty() {
        out.write_str(" # {} ")?;
    } else {
        write!(out, " # {{{label_name}=\"{}\"}} ", escape(label_value))?;
    }
    write_om_float(out, value)?;
    if timestamp_seconds.is_finite() {
        out.write_char(' ')?;
        write_om_timestamp(out, timestamp_seconds)?;
    }
    Ok(())
}

/// A timestamp in seconds, never in exponent form (OpenMetrics advises against it): the
/// shortest digits that read back as the same `f64`, e.g. `1700000000.123`.
pub(crate) fn write_om_timestamp(out: &mut impl Write, seconds: f64) -> fmt::Result {
    write!(out, "{seconds}")
}

/// A timestamp in milliseconds as seconds, exactly: `1520879607.789`.
fn write_om_timestamp_ms(out: &mut impl Write, ms: i64) -> fmt::Result {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    write!(out, "{sign}{}.{:03}", ms / 1000, ms % 1000)
}

/// A float as OpenMetrics' canonical numbers have it, which is Go's `%g` with `.0`
/// appended when there is neither a point nor an exponent: `0.0`, `1.0`, `0.001`,
/// `100000.0`, `1e+06`, `1e-05`, `1.234567e+06`, `+Inf`, `-Inf`, `NaN`.
pub(crate) fn write_om_float(out: &mut impl Write, value: f64) -> fmt::Result {
    if value.is_nan() {
        return out.write_str("NaN");
    }
    if value.is_infinite() {
        return out.write_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    }
    if value == 0.0 {
        return out.write_str("0.0");
    }
    // The shortest digits that read back as `value`, with their decimal exponent (Rust's
    // `{:e}`: `1.234567e6`, `-1e-5`); Go's `%g` of those digits writes the exponent form
    // when the exponent is below -4 or at least 6 (the precision it uses for the shortest
    // representation).
    let mut sci = Small::default();
    write!(sci, "{value:e}")?;
    let (mantissa, exponent) = sci.as_str().split_once('e').ok_or(fmt::Error)?;
    let exponent: i32 = exponent.parse().map_err(|_| fmt::Error)?;
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return write!(out, "{mantissa}e{sign}{:02}", exponent.unsigned_abs());
    }
    let mut fixed = Small::default();
    write!(fixed, "{value}")?;
    out.write_str(fixed.as_str())?;
    if !fixed.as_str().contains('.') {
        out.write_str(".0")?;
    }
    Ok(())
}

/// Escapes a label value or a help text: `\`, `"` and a line feed.
pub(crate) fn escape(value: &str) -> Cow<'_, str> {
    // The text format escapes label values the same way.
    super::exposition::escape_value(value)
}

/// A formatting buffer on the stack for one number, so that writing floats allocates
/// nothing. The longest `f64`, fixed (`{}`) within the exponents that take that form, or
/// in exponent form, is well under its size; more is an error, not a panic.
struct Small {
    bytes: [u8; 40],
    len: usize,
}

impl Default for Small {
    fn default() -> Self {
        Small {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl Small {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Write for Small {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

    /// A counter (two series, one label value to escape), a counter without `_total`, a
    /// gauge, a gauge named like a counter and a histogram, as the exporter registers them.
    fn registry() -> Registry {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("test_requests_total", "Requests, by \"code\"."),
            &["code"],
        )
        .unwrap();
        requests.with_label_values(&["200"]).inc_by(3);
        requests.with_label_values(&["a\"b\\c\nd"]).inc();
        registry.register(Box::new(requests)).unwrap();
        let events = IntCounter::new("test_events", "Events.").unwrap();
        events.inc_by(2);
        registry.register(Box::new(events)).unwrap();
        let temperature =
            prometheus::Gauge::new("test_temperature_celsius", "Temperature\\ with\nnewline.")
                .unwrap();
        temperature.set(-1.5);
        registry.register(Box::new(temperature)).unwrap();
        let open = prometheus::IntGauge::new("test_open_total", "Open things.").unwrap();
        open.set(7);
        registry.register(Box::new(open)).unwrap();
        let durations = HistogramVec::new(
            HistogramOpts::new("test_duration_seconds", "Durations.")
                .buckets(vec![0.005, 0.5, 1.0, 1e6]),
            &["path"],
        )
        .unwrap();
        for seconds in [0.25, 0.75, 0.75, 2e6] {
            durations.with_label_values(&["/a"]).observe(seconds);
        }
        registry.register(Box::new(durations)).unwrap();
        registry
    }

    #[test]
    fn self_metrics_in_openmetrics() {
        let mut out = String::new();
        write_openmetrics(&registry().gather(), &mut out).unwrap();
        assert_eq!(
            out,
            r#"# TYPE test_duration_seconds histogram
# HELP test_duration_seconds Durations.
test_duration_seconds_bucket{path="/a",le="0.005"} 0
test_duration_seconds_bucket{path="/a",le="0.5"} 1
test_duration_seconds_bucket{path="/a",le="1.0"} 3
test_duration_seconds_bucket{path="/a",le="1e+06"} 3
test_duration_seconds_bucket{path="/a",le="+Inf"} 4
test_duration_seconds_sum{path="/a"} 2.00000175e+06
test_duration_seconds_count{path="/a"} 4
# TYPE test_events unknown
# HELP test_events Events.
test_events 2.0
# TYPE test_open_total gauge
# HELP test_open_total Open things.
test_open_total 7.0
# TYPE test_requests counter
# HELP test_requests Requests, by \"code\".
test_requests_total{code="200"} 3.0
test_requests_total{code="a\"b\\c\nd"} 1.0
# TYPE test_temperature_celsius gauge
# HELP test_temperature_celsius Temperature\\ with\nnewline.
test_temperature_celsius -1.5
"#
        );
    }

    /// A summary and an untyped metric with a timestamp, which the crate's registry never
    /// gathers but its model can hold.
    #[allow(deprecated)]
    fn summary_and_untyped() -> Vec<gathered::MetricFamily> {
        let mut summary = gathered::Summary::default();
        summary.set_sample_count(10);
        summary.set_sample_sum(4.5);
        let mut quantile = gathered::Quantile::default();
        quantile.set_quantile(0.99);
        quantile.set_value(0.5);
        summary.set_quantile(vec![quantile]);
        let mut metric = gathered::Metric::default();
        metric.set_summary(summary);
        let mut rpc = gathered::MetricFamily::default();
        rpc.set_name("test_rpc_seconds".into());
        rpc.set_field_type(gathered::MetricType::SUMMARY);
        rpc.set_metric(vec![metric]);

        let mut untyped = gathered::Untyped::default();
        untyped.set_value(f64::NAN);
        let mut metric = gathered::Metric::default();
        metric.set_untyped(untyped);
        metric.set_timestamp_ms(1_520_879_607_789);
        let mut other = gathered::MetricFamily::default();
        other.set_name("test_other".into());
        other.set_help("Other.".into());
        other.set_field_type(gathered::MetricType::UNTYPED);
        other.set_metric(vec![metric]);
        vec![rpc, other]
    }

    #[test]
    fn summaries_untyped_and_timestamps_in_openmetrics() {
        let mut out = String::new();
        write_openmetrics(&summary_and_untyped(), &mut out).unwrap();
        assert_eq!(
            out,
            "# TYPE test_rpc_seconds summary\n\
             test_rpc_seconds{quantile=\"0.99\"} 0.5\n\
             test_rpc_seconds_sum 4.5\n\
             test_rpc_seconds_count 10\n\
             # TYPE test_other unknown\n\
             # HELP test_other Other.\n\
             test_other NaN 1520879607.789\n"
        );
    }

    #[test]
    fn a_histogram_with_a_negative_bucket_has_neither_sum_nor_count() {
        let registry = Registry::new();
        let h = prometheus::Histogram::with_opts(
            HistogramOpts::new("test_offset", "Offsets.").buckets(vec![-1.0, 1.0]),
        )
        .unwrap();
        h.observe(-2.0);
        registry.register(Box::new(h)).unwrap();
        let mut out = String::new();
        write_openmetrics(&registry.gather(), &mut out).unwrap();
        assert_eq!(
            out,
            "# TYPE test_offset histogram\n# HELP test_offset Offsets.\n\
             test_offset_bucket{le=\"-1.0\"} 1\ntest_offset_bucket{le=\"1.0\"} 1\n\
             test_offset_bucket{le=\"+Inf\"} 1\n"
        );
    }

    /// Every family encoded delimited and decoded back by prost.
    fn round_trip(families: &[gathered::MetricFamily]) -> Vec<proto::MetricFamily> {
        let messages = to_protobuf(families);
        let mut wire = Vec::new();
        for family in &messages {
            write_delimited(family, &mut wire);
        }
        let mut rest = wire.as_slice();
        let mut decoded = Vec::new();
        while !rest.is_empty() {
            decoded.push(proto::MetricFamily::decode_length_delimited(&mut rest).unwrap());
        }
        // Compared as bytes: a NaN is not equal to itself.
        let mut again = Vec::new();
        for family in &decoded {
            write_delimited(family, &mut again);
        }
        assert_eq!(again, wire);
        assert_eq!(decoded.len(), messages.len());
        decoded
    }

    fn label(name: &str, value: &str) -> proto::LabelPair {
        proto::LabelPair {
            name: Some(name.into()),
            value: Some(value.into()),
        }
    }

    #[test]
    fn self_metrics_in_protobuf() {
        let decoded = round_trip(&registry().gather());
        let names: Vec<&str> = decoded.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "test_duration_seconds",
                "test_events",
                "test_open_total",
                "test_requests_total",
                "test_temperature_celsius"
            ]
        );
        let counter = |value: f64| proto::Counter {
            value: Some(value),
            ..proto::Counter::default()
        };
        assert_eq!(
            decoded[3],
            proto::MetricFamily {
                name: Some("test_requests_total".into()),
                help: Some("Requests, by \"code\".".into()),
                r#type: Some(proto::MetricType::Counter as i32),
                metric: vec![
                    proto::Metric {
                        label: vec![label("code", "200")],
                        counter: Some(counter(3.0)),
                        ..proto::Metric::default()
                    },
                    proto::Metric {
                        label: vec![label("code", "a\"b\\c\nd")],
                        counter: Some(counter(1.0)),
                        ..proto::Metric::default()
                    },
                ],
                unit: None,
            }
        );
        let bucket = |count: u64, bound: f64| proto::Bucket {
            cumulative_count: Some(count),
            upper_bound: Some(bound),
            ..proto::Bucket::default()
        };
        assert_eq!(
            decoded[0],
            proto::MetricFamily {
                name: Some("test_duration_seconds".into()),
                help: Some("Durations.".into()),
                r#type: Some(proto::MetricType::Histogram as i32),
                metric: vec![proto::Metric {
                    label: vec![label("path", "/a")],
                    histogram: Some(proto::Histogram {
                        sample_count: Some(4),
                        sample_sum: Some(2_000_001.75),
                        bucket: vec![
                            bucket(0, 0.005),
                            bucket(1, 0.5),
                            bucket(3, 1.0),
                            bucket(3, 1e6)
                        ],
                        ..proto::Histogram::default()
                    }),
                    ..proto::Metric::default()
                }],
                unit: None,
            }
        );
        assert_eq!(
            decoded[4].metric[0].gauge,
            Some(proto::Gauge { value: Some(-1.5) })
        );
        assert_eq!(decoded[4].r#type(), proto::MetricType::Gauge);
        assert_eq!(decoded[1].r#type(), proto::MetricType::Counter);
        assert_eq!(
            decoded[2].metric[0].gauge,
            Some(proto::Gauge { value: Some(7.0) })
        );
    }

    #[test]
    fn summaries_untyped_and_timestamps_in_protobuf() {
        let decoded = round_trip(&summary_and_untyped());
        assert_eq!(decoded[0].help, None);
        assert_eq!(decoded[0].r#type(), proto::MetricType::Summary);
        assert_eq!(
            decoded[0].metric[0].summary,
            Some(proto::Summary {
                sample_count: Some(10),
                sample_sum: Some(4.5),
                quantile: vec![proto::Quantile {
                    quantile: Some(0.99),
                    value: Some(0.5)
                }],
                created_timestamp: None,
            })
        );
        assert_eq!(decoded[0].metric[0].timestamp_ms, None);
        assert_eq!(decoded[1].r#type(), proto::MetricType::Untyped);
        assert!(decoded[1].metric[0].untyped.unwrap().value().is_nan());
        assert_eq!(decoded[1].metric[0].timestamp_ms, Some(1_520_879_607_789));
    }

    #[test]
    fn delimited_is_a_varint_length_then_the_message() {
        // A message of 200 bytes: its length takes two varint bytes (0xc8 0x01).
        let family = proto::MetricFamily {
            name: Some("x".repeat(197)),
            ..proto::MetricFamily::default()
        };
        assert_eq!(family.encoded_len(), 200);
        let mut out = vec![0xff];
        write_delimited(&family, &mut out);
        assert_eq!(&out[..5], [0xff, 0xc8, 0x01, 0x0a, 0xc5]);
        assert_eq!(out.len(), 1 + 2 + 200);
    }

    fn float(value: f64) -> String {
        let mut out = String::new();
        write_om_float(&mut out, value).unwrap();
        out
    }

    #[test]
    fn floats_are_canonical() {
        // The examples of OpenMetrics' "Canonical Numbers", then Go's %g at its edges.
        for (value, text) in [
            (0.0, "0.0"),
            (0.001, "0.001"),
            (0.002, "0.002"),
            (0.01, "0.01"),
            (0.1, "0.1"),
            (0.9, "0.9"),
            (0.95, "0.95"),
            (0.99, "0.99"),
            (0.999, "0.999"),
            (1.0, "1.0"),
            (1.7, "1.7"),
            (10.0, "10.0"),
            (1e-10, "1e-10"),
            (1e-9, "1e-09"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1e10, "1e+10"),
            (1e23, "1e+23"),
            (1.1e23, "1.1e+23"),
            (-0.0, "0.0"),
            (-1.0, "-1.0"),
            (-2.5e-7, "-2.5e-07"),
            (123456.7, "123456.7"),
            (999999.0, "999999.0"),
            (1234567.0, "1.234567e+06"),
            (0.00012345, "0.00012345"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(float(value), text, "{value:e}");
        }
    }

    #[test]
    fn headers_for_each_type_unit_and_help() {
        let header = |name, kind, unit, help| {
            let mut out = String::new();
            write_om_header(&mut out, name, kind, unit, help).unwrap();
            out
        };
        assert_eq!(
            header(
                "a_seconds_total",
                OmType::Counter,
                "seconds",
                "Help \"x\"\\\n."
            ),
            "# TYPE a_seconds counter\n# UNIT a_seconds seconds\n\
             # HELP a_seconds Help \\\"x\\\"\\\\\\n.\n"
        );
        assert_eq!(header("a", OmType::Counter, "", ""), "# TYPE a unknown\n");
        assert_eq!(
            header("a_total", OmType::Gauge, "", ""),
            "# TYPE a_total gauge\n"
        );
        // A unit must be the family name's last part.
        assert_eq!(
            header("a_seconds", OmType::Histogram, "bytes", ""),
            "# TYPE a_seconds histogram\n"
        );
        assert_eq!(
            header("aseconds", OmType::Summary, "seconds", ""),
            "# TYPE aseconds summary\n"
        );
        assert_eq!(
            header("seconds", OmType::Gauge, "seconds", ""),
            "# TYPE seconds gauge\n"
        );
        assert_eq!(
            header("a_b c", OmType::Gauge, "b c", ""),
            "# TYPE a_b c gauge\n"
        );
        assert_eq!(
            header("q_bytes", OmType::Histogram, "bytes", "H."),
            "# TYPE q_bytes histogram\n# UNIT q_bytes bytes\n# HELP q_bytes H.\n"
        );
        assert_eq!(
            header("u", OmType::Unknown, "", "H."),
            "# TYPE u unknown\n# HELP u H.\n"
        );
    }

    #[test]
    fn samples_with_exemplars() {
        let mut labels = String::new();
        write_om_label(&mut labels, "path", "/a\"b").unwrap();
        let mut out = String::new();
        write_om_sample(
            &mut out,
            "h",
            "_bucket",
            &labels,
            Some(("le", 0.25)),
            Number::Int(3),
        )
        .unwrap();
        write_exemplar(&mut out, "trace_id", "abc", 0.123, 1_700_000_000.123).unwrap();
        out.push('\n');
        write_om_sample(&mut out, "c_total", "", "", None, Number::Float(2.0)).unwrap();
        write_exemplar(&mut out, "", "", 1.0, f64::NAN).unwrap();
        out.push('\n');
        write_om_sample(&mut out, "c_total", "", &labels, None, Number::Float(0.5)).unwrap();
        write_exemplar(&mut out, "trace_id", "x\n", 2e6, 1_700_000_000.0).unwrap();
        out.push('\n');
        assert_eq!(
            out,
            "h_bucket{path=\"/a\\\"b\",le=\"0.25\"} 3 # {trace_id=\"abc\"} 0.123 1700000000.123\n\
             c_total 2.0 # {} 1.0\n\
             c_total{path=\"/a\\\"b\"} 0.5 # {trace_id=\"x\\n\"} 2e+06 1700000000\n"
        );
    }

    #[test]
    fn an_exemplar_over_128_characters_is_left_out() {
        let fits = "v".repeat(EXEMPLAR_MAX_CHARS - "trace_id".len());
        let mut out = String::new();
        write_exemplar(&mut out, "trace_id", &fits, 1.0, 1.0).unwrap();
        assert_eq!(out, format!(" # {{trace_id=\"{fits}\"}} 1.0 1"));
        out.clear();
        // Characters, not bytes: 120 two-byte characters fit.
        write_exemplar(&mut out, "trace_id", &"é".repeat(120), 1.0, 1.0).unwrap();
        assert!(!out.is_empty());
        out.clear();
        write_exemplar(&mut out, "trace_id", &format!("{fits}v"), 1.0, 1.0).unwrap();
        assert_eq!(out, "");
    }

    #[test]
    fn timestamps_in_seconds() {
        let mut out = String::new();
        for ms in [1_520_879_607_789, 1_000, 5, 0, -1_500] {
            write_om_timestamp_ms(&mut out, ms).unwrap();
            out.push(' ');
        }
        assert_eq!(out, "1520879607.789 1.000 0.005 0.000 -1.500 ");
    }
}
