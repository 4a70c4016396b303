//! The metric settings: which metrics are on (`HLE_ENABLED_METRICS`), their labels and
//! buckets (`HLE_<METRIC>_LABELS`, `HLE_<METRIC>_BUCKETS`), the labels taken from log-format
//! fields (`HLE_CUSTOM_LABELS`), and the rules that bound their values (`HLE_PATH_*`,
//! `HLE_CLIENT_IP_PREFIX_*`, the series cap and expiry). The README's "Configuration" and
//! "Cardinality" sections are their manual.

use std::collections::HashMap;
use std::time::Duration;

use crate::haproxy::{Parser, MAX_CUSTOM_LABELS};
use crate::metrics::client_ip::ClientIpPrefix;
use crate::metrics::{Cardinality, Kind, Label, MetricConfig, MetricDef, METRICS};

use super::path_rules;
use super::problems::{list, Problems};
use super::RawConfig;

const MAX_PATH_SEGMENTS: usize = 1000;
const MAX_SERIES_PER_METRIC: usize = 10_000_000;

/// Enabled metrics with their labels and buckets.
pub(super) fn metric_configs(
    enabled: &str,
    env: &HashMap<String, String>,
    custom: &[Label],
    p: &mut Problems,
) -> Vec<MetricConfig> {
    let all_names = || METRICS.iter().map(|m| m.name).collect::<Vec<_>>().join(",");
    let mut defs: Vec<&'static MetricDef> = Vec::new();
    if enabled.trim() == "all" {
        defs.extend(METRICS.iter());
    } else {
        for name in list(enabled) {
            match MetricDef::by_name(name) {
                Some(def) if !defs.contains(&def) => defs.push(def),
                Some(_) => {}
                None => p.add(format!(
                    "HLE_ENABLED_METRICS: unknown metric {name:?}; valid: all or {}",
                    all_names()
                )),
            }
        }
    }
    let mut configs = Vec::new();
    for def in &METRICS {
        let labels_var = format!("{}_LABELS", def.env_prefix());
        let labels = match env.get(&labels_var) {
            Some(value) => parse_labels(&labels_var, value, custom, p),
            None => def.default_labels.to_vec(),
        };
        let buckets_var = format!("{}_BUCKETS", def.env_prefix());
        let buckets = match (env.get(&buckets_var), def.kind) {
            (Some(value), Kind::Histogram) => parse_buckets(&buckets_var, value, p),
            (Some(_), Kind::Counter) => {
                p.add(format!(
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

fn parse_labels(var: &str, value: &str, custom: &[Label], p: &mut Problems) -> Vec<Label> {
    let mut labels = Vec::new();
    for name in list(value) {
        let label =
            Label::from_name(name).or_else(|| custom.iter().find(|l| l.name() == name).copied());
        match label {
            Some(label) if labels.contains(&label) => {
                p.add(format!("{var}: label {name:?} is listed twice"));
            }
            Some(label) => labels.push(label),
            None => {
                let mut valid = Label::all_names();
                for label in custom {
                    valid.push(',');
                    valid.push_str(label.name());
                }
                p.add(format!("{var}: unknown label {name:?}; valid: {valid}"))
            }
        }
    }
    labels
}

fn parse_buckets(var: &str, value: &str, p: &mut Problems) -> Vec<f64> {
    let mut buckets = Vec::new();
    for item in list(value) {
        match item.parse::<f64>() {
            Ok(b) if b.is_finite() => buckets.push(b),
            _ => {
                p.add(format!("{var}: {item:?} is not a finite number"));
                return Vec::new();
            }
        }
    }
    if buckets.is_empty() {
        p.add(format!("{var}: at least one bucket is needed"));
    } else if buckets.windows(2).any(|w| w[0] >= w[1]) {
        p.add(format!("{var}: buckets must be strictly ascending"));
    }
    buckets
}

/// `HLE_CUSTOM_LABELS`: `name=FIELD` entries, separated by commas or white space outside
/// brackets and parentheses (a field such as `%[var(txn.x),lower]` has commas of its own).
pub(super) fn custom_labels(value: &str, parser: &mut Parser, p: &mut Problems) -> Vec<Label> {
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
    let mut labels: Vec<Label> = Vec::new();
    let mut fields = Vec::new();
    for entry in entries {
        let Some((name, field)) = entry.split_once('=') else {
            p.add(format!("HLE_CUSTOM_LABELS: {entry:?} is not name=FIELD"));
            continue;
        };
        let valid_name = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
            && !name.is_empty()
            && !name.starts_with("__");
        if !valid_name {
            p.add(format!(
                "HLE_CUSTOM_LABELS: {name:?} is not a valid label name"
            ));
        } else if Label::from_name(name).is_some() || labels.iter().any(|l| l.name() == name) {
            p.add(format!(
                "HLE_CUSTOM_LABELS: label {name:?} is defined twice"
            ));
        } else if labels.len() == MAX_CUSTOM_LABELS {
            p.add(format!(
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
        if !found {
            p.add(format!(
                "HLE_CUSTOM_LABELS: {field:?} is not a field of any format in HLE_LOG_FORMAT (write it exactly as in the format)"
            ));
        }
    }
    labels
}

/// The `HLE_PATH_*`, `HLE_CLIENT_IP_PREFIX_*`, `HLE_MAX_SERIES_PER_METRIC` and
/// `HLE_SERIES_TTL` variables.
pub(super) fn cardinality(raw: &RawConfig, p: &mut Problems) -> Cardinality {
    let defaults = Cardinality::default();
    let auto_templates = match raw.path_auto_templates.trim() {
        "true" => true,
        "false" => false,
        other => {
            p.add(format!(
                "HLE_PATH_AUTO_TEMPLATES={other:?}: must be true or false"
            ));
            true
        }
    };
    let max_segments = p.number(
        "HLE_PATH_MAX_SEGMENTS",
        &raw.path_max_segments,
        0,
        MAX_PATH_SEGMENTS,
    );
    let path = p.or_default(path_rules::normaliser(
        &raw.path_rules,
        auto_templates,
        &raw.path_allow,
        max_segments.unwrap_or_default(),
    ));
    let client_ip = p.or_default(ClientIpPrefix::from_settings(
        &raw.client_ip_prefix_v4,
        &raw.client_ip_prefix_v6,
    ));
    let max_series = p
        .number(
            "HLE_MAX_SERIES_PER_METRIC",
            &raw.max_series_per_metric,
            1,
            MAX_SERIES_PER_METRIC,
        )
        .unwrap_or(defaults.max_series);
    let ttl = match p.optional_duration("HLE_SERIES_TTL", &raw.series_ttl) {
        Some(d) if d < Duration::from_secs(1) => {
            p.add(format!(
                "HLE_SERIES_TTL={:?}: at least 1s, or 0 for never",
                raw.series_ttl
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
    }
}
