//! Shared by the benches: the generated corpus and configurations built the way an
//! operator builds them, from `HLE_` variables.

// Each bench uses a different part of this module.
#![allow(dead_code)]

pub mod corpus;

use std::collections::HashMap;

use haproxy_log_exporter::Config;

use corpus::{Generator, Header, Layout, Options};

/// Lines per benchmark iteration for the per-stage benches; enough distinct lines that
/// branch predictors and caches see a realistic mix, few enough to stay in L2/L3.
pub const STAGE_LINES: usize = 20_000;

/// Lines per iteration for the aggregation and end-to-end benches, which also need many
/// distinct label sets.
pub const PIPELINE_LINES: usize = 100_000;

/// `n` under `cargo bench`; a hundredth of it under `cargo test --all-targets`, which
/// runs each bench once (in a debug build) only to check that it works.
pub fn sized(n: usize) -> usize {
    if std::env::args().any(|a| a == "--bench") {
        n
    } else {
        (n / 100).max(100)
    }
}

/// The label set of the heavy configuration, on every histogram.
pub const HEAVY_LABELS: &str = "http_request_path,http_request_method,status_code,server_name";

/// The `HLE_<METRIC>_LABELS` variables of every histogram.
pub const HISTOGRAM_LABEL_VARIABLES: [&str; 7] = [
    "HLE_REQUEST_WAIT_SECONDS_LABELS",
    "HLE_REQUEST_QUEUED_SECONDS_LABELS",
    "HLE_SERVER_TCP_CONNECTION_ESTABLISH_SECONDS_LABELS",
    "HLE_RESPONSE_PROCESSING_SECONDS_LABELS",
    "HLE_SESSION_DURATION_SECONDS_LABELS",
    "HLE_BACKEND_QUEUE_LENGTH_LABELS",
    "HLE_SERVER_QUEUE_LENGTH_LABELS",
];

/// The configuration `vars` give, everything else at its default.
pub fn config(vars: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match Config::from_env(&env) {
        Ok(config) => config,
        Err(err) => panic!("bench configuration {vars:?} is invalid: {err}"),
    }
}

/// The defaults: every metric with its default labels.
pub fn default_config() -> Config {
    config(&[])
}

/// [`HEAVY_LABELS`] on every histogram; counters keep their default labels.
pub fn heavy_config() -> Config {
    let vars: Vec<(&str, &str)> = HISTOGRAM_LABEL_VARIABLES
        .iter()
        .map(|v| (*v, HEAVY_LABELS))
        .collect();
    config(&vars)
}

/// `n` lines of the default corpus (RFC 3164 "local" header, httplog with some tcplog).
pub fn lines(n: usize) -> Vec<Vec<u8>> {
    lines_with(Header::Local, Layout::Httplog, n)
}

pub fn lines_with(header: Header, layout: Layout, n: usize) -> Vec<Vec<u8>> {
    Generator::new(Options {
        header,
        layout,
        ..Options::default()
    })
    .lines(n)
}
