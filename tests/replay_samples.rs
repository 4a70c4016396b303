//! Every traffic line of every capture in `tests/fixtures/haproxy` is counted, and every
//! other line ignored, in the capture's own format: the test reads the HAProxy
//! configuration that produced the capture (`<name>.cfg`) to find its log formats, as an
//! operator would copy them into `HLE_LOG_FORMAT`.
//!
//! The `w_*` captures are one traffic mix (statuses 200 to 503, `<BADREQ>`, aborted
//! requests, an IPv6 client, TLS and HTTP/2, a User-Agent with quotes and backslashes)
//! logged by HAProxy 2.6 in formats operators use: CLF with several captures, JSON with
//! and without `+Q`, key=value with a GMT date first, quoted captures and samples, the
//! request line in parts, `+X`, `+E`, a unique ID and local dates.

use std::collections::HashMap;
use std::path::Path;

use haproxy_log_exporter::ingest::replay;
use haproxy_log_exporter::Config;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/haproxy");

/// The log formats a configuration uses, one a line: `log-format` strings as written, and
/// the names of the `option httplog [clf]` / `option tcplog` lines.
fn formats_of(cfg: &str) -> String {
    let mut formats: Vec<String> = Vec::new();
    for line in cfg.lines().map(str::trim) {
        let format = if let Some(rest) = line.strip_prefix("log-format ") {
            rest.trim().to_string()
        } else if line == "option httplog clf" {
            "clf".to_string()
        } else if line == "option httplog" {
            "httplog".to_string()
        } else if line == "option tcplog" {
            "tcplog".to_string()
        } else {
            continue;
        };
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    formats.join("\n")
}

/// The number of traffic lines in a capture: lines with an accept date in brackets.
fn traffic_lines(log: &str) -> u64 {
    let date = |l: &str| {
        ["/Nov/2026:", "/Dec/2026:", "/Jan/2026:"]
            .iter()
            .any(|d| l.contains(d))
    };
    log.lines().filter(|l| date(l)).count() as u64
}

#[test]
fn every_capture_in_its_own_format() {
    let mut checked = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(FIXTURES).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("log") {
            continue;
        }
        let cfg_path = path.with_extension("cfg");
        let Ok(cfg) = std::fs::read_to_string(&cfg_path) else {
            continue;
        };
        let log = std::fs::read_to_string(&path).unwrap();
        let formats = formats_of(&cfg);
        let env: HashMap<String, String> = [("HLE_LOG_FORMAT".to_string(), formats.clone())].into();
        let config = Config::from_env(&env).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let input = path.to_str().unwrap().to_string();
        let summary = replay::run(&config, &[input], &mut Vec::new()).unwrap();

        let name = Path::new(&path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let lines = log.lines().filter(|l| !l.is_empty()).count() as u64;
        let traffic = traffic_lines(&log);
        assert!(traffic > 0, "{name}");
        assert_eq!(summary.received, lines, "{name}");
        assert_eq!(
            summary.counted, traffic,
            "{name} with {formats:?}: {summary}"
        );
        assert_eq!(summary.rejected, 0, "{name} with {formats:?}: {summary}");
        assert_eq!(summary.ignored, lines - traffic, "{name}");
        checked.push(name);
    }
    // The captures of every header style and of the CLF, custom and JSON formats.
    for name in [
        "a_default.log",
        "b_rfc5424_sd.log",
        "c_clf.log",
        "e_custom.log",
        "e_json.log",
        "h_edge.log",
        "i_len.log",
        // Operators' formats seen in the wild, each with the same traffic.
        "w_clf.log",
        "w_json_literal_quotes.log",
        "w_json_plusQ.log",
        "w_kv_gmtdate.log",
        "w_quoted_captures.log",
        "w_request_parts.log",
        "w_sample_captures.log",
    ] {
        assert!(
            checked.contains(&name.to_string()),
            "{name} not checked: {checked:?}"
        );
    }
}
