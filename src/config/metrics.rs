//! The metric settings: which metrics are on (`HLE_ENABLED_METRICS`), their labels and
//! buckets (`HLE_<METRIC>_LABELS`, `HLE_<METRIC>_BUCKETS`), the labels taken from log-format
//! fields (`HLE_CUSTOM_LABELS`), and the rules that bound their values (`HLE_PATH_*`,
//! `HLE_CLIENT_IP_PREFIX_*`, the series cap and expiry). docs/configuration.md and
//! docs/cardinality.md are their manual.

use std::time::Duration;

use crate::haproxy::{Parser, MAX_CUSTOM_LABELS};
use crate::metrics::client_ip::ClientIpPrefix;
use crate::metrics::{
    Cardinality, Kind, Label, MetricConfig, MetricDef, NativeHistograms, NativeMode, METRICS,
};

use super::path_rules;
use super::reader::{list, Reader};

const MAX_PATH_SEGMENTS: usize = 1000;
const MAX_SERIES_PER_METRIC: usize = 10_000_000;

/// Enabled metrics with their labels and buckets.
pub(super) fn metric_configs(r: &mut Reader, custom: &[Label]) -> Vec<MetricConfig> {
    let enabled = r.get("HLE_ENABLED_METRICS");
    let all_names = || METRICS.iter().map(|m| m.name).collect::<Vec<_>>().join(",");
    let mut defs: Vec<&'static MetricDef> = Vec::new();
    if enabled.trim() == "all" {
        defs.extend(METRICS.iter());
    } else {
        for name in list(enabled) {
            match MetricDef::by_name(name) {
                Some(def) if !defs.contains(&def) => defs.push(def),
                Some(_) => {}
                None => r.problem(format!(
                    "HLE_ENABLED_METRICS: unknown metric {name:?}; valid: all or {}",
                    all_names()
                )),
            }
        }
    }
    let mut configs = Vec::new();
    for def in &METRICS {
        let labels_var = format!("{}_LABELS", def.env_prefix());
        let labels = match r.given(&labels_var) {
            Some(value) => parse_labels(r, &labels_var, value, custom),
            None => def.default_labels.to_vec(),
        };
        let buckets_var = format!("{}_BUCKETS", def.env_prefix());
        let buckets = match (r.given(&buckets_var), def.kind) {
            (Some(value), Kind::Histogram) => parse_buckets(r, &buckets_var, value),
            (Some(_), Kind::Counter) => {
                r.problem(format!(
                    "{buckets_var}: {} is a counter and has no buckets",
                    def.full_name()
                ));
                Vec::new()
            }
            (None, _) => def.default_buckets.to_vec(),
        };
        if defs.contains(&def) {
            configs.push(MetricConfig {
                def,
                labels,
                buckets,
            });
        }
    }
    configs
}

fn parse_labels(r: &mut Reader, var: &str, value: &str, custom: &[Label]) -> Vec<Label> {
    let mut labels = Vec::new();
    for name in list(value) {
        let label =
            Label::from_name(name).or_else(|| custom.iter().find(|l| l.name() == name).copied());
        match label {
            Some(label) if labels.contains(&label) => {
                r.problem(format!("{var}: label {name:?} is listed twice"));
            }
            Some(label) => labels.push(label),
            None => {
                let mut valid = Label::all_names();
                for label in custom {
                    valid.push(',');
                    valid.push_str(label.name());
                }
                r.problem(format!("{var}: unknown label {name:?}; valid: {valid}"))
            }
        }
    }
    labels
}

fn parse_buckets(r: &mut Reader, var: &str, value: &str) -> Vec<f64> {
    let mut buckets = Vec::new();
    for item in list(value) {
        match item.parse::<f64>() {
            Ok(b) if b.is_finite() => buckets.push(b),
            _ => {
                r.problem(format!("{var}: {item:?} is not a finite number"));
                return Vec::new();
            }
        }
    }
    if buckets.is_empty() {
        r.problem(format!("{var}: at least one bucket is needed"));
    } else if buckets.windows(2).any(|w| w[0] >= w[1]) {
        r.problem(format!("{var}: buckets must be strictly ascending"));
    }
    buckets
}

/// `HLE_CUSTOM_LABELS`: `name=FIELD` entries, each name a new label, each field bound to
/// the formats of `HLE_LOG_FORMAT`. With the SPOE agent on, a field need not be in a
/// format: the label may come only from the SPOE argument of its name.
pub(super) fn custom_labels(r: &mut Reader, parser: &mut Parser, spoe: bool) -> Vec<Label> {
    let mut labels: Vec<Label> = Vec::new();
    let mut fields = Vec::new();
    for entry in custom_label_entries(r.get("HLE_CUSTOM_LABELS")) {
        let Some((name, field)) = entry.split_once('=') else {
            r.problem(format!("HLE_CUSTOM_LABELS: {entry:?} is not name=FIELD"));
            continue;
        };
        if !is_label_name(name) {
            r.problem(format!(
                "HLE_CUSTOM_LABELS: {name:?} is not a valid label name"
            ));
        } else if Label::from_name(name).is_some() || labels.iter().any(|l| l.name() == name) {
            r.problem(format!(
                "HLE_CUSTOM_LABELS: label {name:?} is defined twice"
            ));
        } else if labels.len() == MAX_CUSTOM_LABELS {
            r.problem(format!(
                "HLE_CUSTOM_LABELS: at most {MAX_CUSTOM_LABELS} labels"
            ));
        } else {
            let name: &'static str = Box::leak(name.to_string().into_boxed_str());
            labels.push(Label::Custom {
                slot: labels.len(),
                name,
            });
            fields.push(field);
        }
    }
    for (field, found) in fields.iter().zip(parser.bind_custom(&fields)) {
        if !found && !spoe {
            r.problem(format!(
                "HLE_CUSTOM_LABELS: {field:?} is not a field of any format in HLE_LOG_FORMAT (write it exactly as in the format)"
            ));
        }
    }
    labels
}

/// The entries of `HLE_CUSTOM_LABELS`, separated by commas or white space outside
/// brackets and parentheses (a field such as `%[var(txn.x),lower]` has commas of its own).
fn custom_label_entries(value: &str) -> Vec<&str> {
    let mut entries = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in value
        .char_indices()
        .chain(std::iter::once((value.len(), ',')))
    {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            ',' | ' ' | '\t' | '\n' if depth <= 0 => {
                let entry = value[start..i].trim();
                if !entry.is_empty() {
                    entries.push(entry);
                }
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    entries
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not starting with `__` (reserved by Prometheus).
fn is_label_name(name: &str) -> bool {
    name.chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
        && !name.is_empty()
        && !name.starts_with("__")
}

/// The `HLE_PATH_*`, `HLE_CLIENT_IP_PREFIX_*`, `HLE_MAX_SERIES_PER_METRIC` and
/// `HLE_SERIES_TTL` variables.
pub(super) fn cardinality(r: &mut Reader) -> Cardinality {
    let defaults = Cardinality::default();
    let auto_templates = match r.get("HLE_PATH_AUTO_TEMPLATES").trim() {
        "true" => true,
        "false" => false,
        other => {
            r.problem(format!(
                "HLE_PATH_AUTO_TEMPLATES={other:?}: must be true or false"
            ));
            true
        }
    };
    let max_segments = r.number("HLE_PATH_MAX_SEGMENTS", 0, MAX_PATH_SEGMENTS);
    let path = path_rules::normaliser(
        r.get("HLE_PATH_RULES"),
        auto_templates,
        r.get("HLE_PATH_ALLOW"),
        max_segments.unwrap_or_default(),
    );
    let path = r.or_default(path);
    let client_ip = ClientIpPrefix::from_settings(
        r.get("HLE_CLIENT_IP_PREFIX_V4"),
        r.get("HLE_CLIENT_IP_PREFIX_V6"),
    );
    let client_ip = r.or_default(client_ip);
    let max_series = r
        .number("HLE_MAX_SERIES_PER_METRIC", 1, MAX_SERIES_PER_METRIC)
        .unwrap_or(defaults.max_series);
    let ttl = match r.optional_duration("HLE_SERIES_TTL") {
        Some(d) if d < Duration::from_secs(1) => {
            r.problem(format!(
                "HLE_SERIES_TTL={:?}: at least 1s, or 0 for never",
                r.get("HLE_SERIES_TTL")
            ));
            None
        }
        ttl => ttl,
    };
    Cardinality {
        path,
        client_ip,
        max_series,
        ttl,
        native: native_histograms(r),
        exemplar: None,
    }
}

/// The largest `HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR`: one bucket per 2^16, Prometheus'
/// coarsest schema (-4).
const MAX_BUCKET_FACTOR: f64 = 65536.0;
const MAX_NATIVE_BUCKETS: usize = 1_000_000;

/// `HLE_NATIVE_HISTOGRAMS`, `HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR` and
/// `HLE_NATIVE_HISTOGRAM_MAX_BUCKETS`.
fn native_histograms(r: &mut Reader) -> NativeHistograms {
    let defaults = NativeHistograms::default();
    let mode = match r.get("HLE_NATIVE_HISTOGRAMS").trim() {
        "off" => NativeMode::Off,
        "on" => NativeMode::On,
        "only" => NativeMode::Only,
        other => {
            r.problem(format!(
                "HLE_NATIVE_HISTOGRAMS={other:?}: must be off, on or only"
            ));
            NativeMode::Off
        }
    };
    let var = "HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR";
    let value = r.get(var).trim();
    let bucket_factor = match value.parse::<f64>() {
        Ok(f) if f > 1.0 && f <= MAX_BUCKET_FACTOR => f,
        _ => {
            r.problem(format!(
                "{var}={value:?}: must be a number above 1 and at most {MAX_BUCKET_FACTOR} (1.1: buckets at most 10% wide)"
            ));
            defaults.bucket_factor
        }
    };
    let max_buckets = r
        .number("HLE_NATIVE_HISTOGRAM_MAX_BUCKETS", 0, MAX_NATIVE_BUCKETS)
        .unwrap_or(defaults.max_buckets);
    NativeHistograms {
        mode,
        bucket_factor,
        max_buckets,
    }
}

/// `HLE_EXEMPLAR_LABEL`: one of the custom labels, on no metric's label list (an
/// exemplar label is there to differ on every request, which as a series label would
/// make a series of each).
pub(super) fn exemplar_label(
    r: &mut Reader,
    custom: &[Label],
    metrics: &[MetricConfig],
) -> Option<Label> {
    let var = "HLE_EXEMPLAR_LABEL";
    let name = r.get(var).trim();
    if name.is_empty() {
        return None;
    }
    let Some(label) = custom.iter().find(|l| l.name() == name).copied() else {
        let known: Vec<&str> = custom.iter().map(|l| l.name()).collect();
        let known = if known.is_empty() {
            "HLE_CUSTOM_LABELS defines none".to_string()
        } else {
            format!("defined: {}", known.join(","))
        };
        r.problem(format!(
            "{var}={name:?}: not a label of HLE_CUSTOM_LABELS ({known}); e.g. HLE_CUSTOM_LABELS=trace_id=%[capture.req.hdr(0)] with HAProxy capturing the traceparent header"
        ));
        return None;
    };
    for metric in metrics.iter().filter(|m| m.labels.contains(&label)) {
        r.problem(format!(
            "{var}={name:?}: the label is also on {}_LABELS; an exemplar label would make a series of every request: remove it there",
            metric.def.env_prefix()
        ));
    }
    Some(label)
}
