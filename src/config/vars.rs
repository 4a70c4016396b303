//! The variables: one table of name, default and meaning that `--help`, `check-config`,
//! the manual's check (tests/readme.rs) and the parsing all read. The per-metric
//! `HLE_<METRIC>_LABELS` and `HLE_<METRIC>_BUCKETS` follow from `METRICS`. docs/configuration.md
//! is the manual.

use std::collections::{HashMap, HashSet};

use super::suggest;
use crate::metrics::{Kind, METRICS};

/// A documented variable: name, default, meaning. `--help` and docs/configuration.md list these.
pub struct Variable {
    pub name: String,
    pub default: String,
    pub help: String,
}

/// The fixed variables, in `--help` order: name, default, meaning. This table is the only
/// place a variable and its default are written; the parsing reads its values through
/// `Reader::get`.
const FIXED: &[(&str, &str, &str)] = &[
    (
        "HLE_SYSLOG_UDP_ADDR",
        "127.0.0.1:5140",
        "UDP syslog listen address; empty disables",
    ),
    (
        "HLE_SYSLOG_TCP_ADDR",
        "127.0.0.1:5140",
        "TCP syslog listen address (newline or octet-counted framing); empty disables",
    ),
    (
        "HLE_SYSLOG_TCP_FRAMING",
        "auto",
        "TCP framing: auto (each connection's first frame decides: octet counting when it starts with a count, a space and '<'), octet-count, or lf",
    ),
    (
        "HLE_SYSLOG_TLS_CONFIG_FILE",
        "",
        "TLS on the TCP syslog listener (RFC 5425): a file in the format of HLE_WEB_CONFIG_FILE of which only tls_server_config is used; empty: plain TCP",
    ),
    (
        "HLE_SYSLOG_UNIX_PATH",
        "",
        "unix datagram socket path (a stale socket file is replaced); empty disables",
    ),
    (
        "HLE_SYSLOG_UNIX_MODE",
        "0660",
        "permissions of the unix socket file, octal",
    ),
    (
        "HLE_LOG_FORMAT",
        "httplog",
        "HAProxy's log format: httplog, tcplog, httpslog, clf, httplog-clf, tcplog-clf, or a log-format string; several (one a line, or names with commas) are tried in order",
    ),
    (
        "HLE_CUSTOM_LABELS",
        "",
        "labels from fields of your log-format: name=FIELD as written in the format (%[var(txn.route)], %hr#0 ...), separated by commas or spaces",
    ),
    (
        "HLE_MAX_LINE_BYTES",
        "65536",
        "longest accepted line; longer frames are discarded and counted",
    ),
    (
        "HLE_TCP_MAX_CONNECTIONS",
        "256",
        "open TCP connections allowed; more are closed at once and counted",
    ),
    (
        "HLE_TCP_IDLE_TIMEOUT",
        "10m",
        "close a TCP connection silent for this long (ms, s, m, h); 0 never",
    ),
    (
        "HLE_WEB_LISTEN_ADDR",
        "0.0.0.0:9129",
        "HTTP listen address for metrics and probes",
    ),
    (
        "HLE_WEB_TELEMETRY_PATH",
        "/metrics",
        "path of the Prometheus exposition",
    ),
    (
        "HLE_WEB_MAX_CONNECTIONS",
        "64",
        "open HTTP connections allowed; beyond it a new one replaces the oldest idle one, or is closed at once when all are sending responses",
    ),
    (
        "HLE_WEB_READ_HEADER_TIMEOUT",
        "10s",
        "close an HTTP connection whose request head is not complete this long after it was begun or the connection went idle (ms, s, m)",
    ),
    (
        "HLE_WEB_MAX_REQUEST_HEADER_BYTES",
        "16384",
        "largest HTTP request head (request line and headers), 8192 or more; larger ones are answered 431",
    ),
    (
        "HLE_WEB_MAX_CONNECTION_AGE",
        "10m",
        "an HTTP connection is closed after its current response once it is this old (ms, s, m, h); 0 never",
    ),
    (
        "HLE_WEB_SCRAPE_CACHE_TTL",
        "0",
        "a rendered exposition younger than this is served again (ms, s), e.g. 1s against scrape storms; 0: only to the scrapes that arrived while it was made (one is made at a time)",
    ),
    (
        "HLE_WEB_CONFIG_FILE",
        "",
        "web configuration file (TLS, client certificates, basic auth, headers) in the format of the Prometheus exporters' --web.config.file; empty: plain HTTP, no authentication",
    ),
    (
        "HLE_ENABLED_METRICS",
        "all",
        "comma-separated metric names (without haproxy_log_), or all; empty: none",
    ),
    (
        "HLE_PATH_RULES",
        "",
        "rewrite rules for http_request_path, one a line: REGEX => REPLACEMENT, applied in order",
    ),
    (
        "HLE_PATH_AUTO_TEMPLATES",
        "true",
        "turn numeric, UUID, long hex and token-like path segments into :id (true or false)",
    ),
    (
        "HLE_PATH_ALLOW",
        "",
        "comma-separated path prefixes; other paths become \"other\"; empty: all paths",
    ),
    (
        "HLE_PATH_MAX_SEGMENTS",
        "0",
        "keep this many path segments, the rest become \"...\"; 0: all",
    ),
    (
        "HLE_CLIENT_IP_PREFIX_V4",
        "32",
        "client_ip of IPv4 clients as the network of this prefix length (24: 10.1.2.0/24)",
    ),
    (
        "HLE_CLIENT_IP_PREFIX_V6",
        "128",
        "client_ip of IPv6 clients as the network of this prefix length (64: 2001:db8::/64)",
    ),
    (
        "HLE_MAX_SERIES_PER_METRIC",
        "10000",
        "series per metric (a histogram bucket counts as one); new label sets beyond it go to one __overflow__ series",
    ),
    (
        "HLE_SERIES_TTL",
        "0",
        "series not updated for this long leave the exposition (s, m, h); 0 never",
    ),
    (
        "HLE_NATIVE_HISTOGRAMS",
        "off",
        "native histograms (sparse exponential buckets, served in the protobuf format to a Prometheus that asks for it): off, on (beside the classic buckets) or only (no classic buckets: one series per label set)",
    ),
    (
        "HLE_NATIVE_HISTOGRAM_BUCKET_FACTOR",
        "1.1",
        "largest ratio between the bounds of a native bucket, above 1; it picks the resolution (1.1: 8 buckets per doubling, schema 3)",
    ),
    (
        "HLE_NATIVE_HISTOGRAM_MAX_BUCKETS",
        "160",
        "populated buckets a native histogram series may have; beyond it the series halves its resolution; 0: no limit",
    ),
    (
        "HLE_EXEMPLAR_LABEL",
        "",
        "a custom label (HLE_CUSTOM_LABELS) whose value each counter series and histogram bucket keeps as the exemplar of its latest observation (OpenMetrics and protobuf scrapes); a traceparent is reduced to its trace id; on no metric's label list; empty: no exemplars",
    ),
    (
        "HLE_UDP_RECV_BUFFER_BYTES",
        "4194304",
        "receive buffer of the UDP socket (SO_RCVBUF), up to net.core.rmem_max; 0: the kernel's default",
    ),
    (
        "HLE_LOG_LEVEL",
        "info",
        "log level or tracing filter (error, warn, info, debug, trace)",
    ),
    (
        "HLE_LOG_OUTPUT",
        "text",
        "the exporter's own log (on standard error): text or json",
    ),
    (
        "HLE_TCP_BUFFER_BUDGET_BYTES",
        "256MiB",
        "bytes of unfinished frames all syslog TCP connections may hold together (KiB, MiB, GiB); a connection that would take more is closed and counted",
    ),
    (
        "HLE_SYSLOG_ALLOWED_SOURCES",
        "",
        "comma-separated addresses or networks (10.0.0.0/8, fd00::/8) that may send syslog over UDP and TCP; others are dropped and counted; empty: everyone",
    ),
    (
        "HLE_SPOE_ALLOWED_SOURCES",
        "",
        "the same for connections to the SPOE agent; empty: everyone",
    ),
    (
        "HLE_SPOE_ADDR",
        "",
        "SPOE agent listen address (TCP): HAProxy's SPOE filter sends each transaction's fields here and gets the route back; empty disables",
    ),
    (
        "HLE_SPOE_MAX_FRAME_SIZE",
        "16380",
        "largest SPOP frame, in bytes (256 or more); the handshake takes the smaller of this and HAProxy's max-frame-size",
    ),
    (
        "HLE_SPOE_MAX_CONNECTIONS",
        "256",
        "open SPOE connections allowed; more are closed at once and counted",
    ),
    (
        "HLE_SPOE_METRICS",
        "true",
        "whether SPOE response messages feed the traffic metrics; false when this exporter also reads the same traffic's logs (the agent then only sends routes back)",
    ),
    (
        "HLE_FORWARD_STDOUT",
        "off",
        "forward every line received to standard output: off, raw (the HAProxy message) or json (one object a line, parsed fields)",
    ),
    (
        "HLE_FORWARD_SYSLOG_ADDR",
        "",
        "forward every line received to a syslog server: udp://HOST:PORT or tcp://HOST:PORT (HOST resolved again on each reconnect); empty disables",
    ),
    (
        "HLE_FORWARD_SYSLOG_FRAMING",
        "octet-count",
        "TCP framing of forwarded lines: octet-count (RFC 6587) or lf",
    ),
    (
        "HLE_FORWARD_SYSLOG_FORMAT",
        "rfc5424",
        "header of forwarded lines: rfc5424, rfc3164 (both keep the received priority, timestamp, host, tag and pid) or as-received",
    ),
    (
        "HLE_FORWARD_SYSLOG_UDP_MAX_BYTES",
        "65507",
        "longest forwarded UDP datagram; longer ones are cut (RFC 5426) and counted",
    ),
    (
        "HLE_FORWARD_CONNECT_TIMEOUT",
        "5s",
        "timeout of a TCP connection attempt to the syslog server (ms, s, m, h)",
    ),
    (
        "HLE_FORWARD_RECONNECT_MAX_DELAY",
        "10s",
        "longest wait between two connection attempts (ms, s, m, h; exponential backoff from 100ms, with jitter)",
    ),
    (
        "HLE_FORWARD_BUFFER_LINES",
        "65536",
        "lines each forwarding sink may hold; when full, new lines are dropped and counted",
    ),
    (
        "HLE_FORWARD_BUFFER_BYTES",
        "32MiB",
        "bytes each forwarding sink may hold (KiB, MiB, GiB); when full, new lines are dropped and counted",
    ),
    (
        "HLE_FORWARD_SAMPLE_RATE",
        "1",
        "share of ordinary traffic lines forwarded, 0 to 1; errors, slow lines, notices and rejected lines always are",
    ),
    (
        "HLE_FORWARD_SAMPLE_SLOW",
        "1s",
        "with sampling, lines whose Ta (or Tt) is at least this long are always forwarded (ms, s, m, h)",
    ),
    (
        "HLE_FORWARD_SHUTDOWN_GRACE",
        "5s",
        "at shutdown, how long the forwarding sinks may take to deliver what they hold (ms, s, m, h)",
    ),
];

/// Every variable, the per-metric ones included.
pub fn variables() -> Vec<Variable> {
    let mut vars: Vec<Variable> = FIXED
        .iter()
        .map(|(name, default, help)| Variable {
            name: name.to_string(),
            default: default.to_string(),
            help: help.to_string(),
        })
        .collect();
    for def in &METRICS {
        vars.push(Variable {
            name: format!("{}_LABELS", def.env_prefix()),
            default: def
                .default_labels
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(","),
            help: format!("labels of {}", def.full_name()),
        });
        if def.kind == Kind::Histogram {
            vars.push(Variable {
                name: format!("{}_BUCKETS", def.env_prefix()),
                default: format_buckets(def.default_buckets),
                help: format!("bucket upper bounds of {}", def.full_name()),
            });
        }
    }
    vars
}

/// Every variable with the value in force: the environment's, or the default.
pub fn effective(env: &HashMap<String, String>) -> Vec<(String, String)> {
    variables()
        .into_iter()
        .map(|var| {
            let value = env.get(&var.name).cloned().unwrap_or(var.default);
            (var.name, value)
        })
        .collect()
}

/// The process environment as a map, and the `HLE_` variables left out of it because
/// their values are not UTF-8 (other variables that are not UTF-8 are no concern of ours).
pub fn process_env() -> (HashMap<String, String>, Vec<String>) {
    let mut env = HashMap::new();
    let mut not_utf8 = Vec::new();
    for (key, value) in std::env::vars_os() {
        match (key.into_string(), value.into_string()) {
            (Ok(key), Ok(value)) => {
                env.insert(key, value);
            }
            (Ok(key), Err(_)) if key.starts_with("HLE_") => not_utf8.push(key),
            _ => {}
        }
    }
    (env, not_utf8)
}

fn format_buckets(buckets: &[f64]) -> String {
    buckets
        .iter()
        .map(f64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The default of a fixed variable; `None` for a name not in the table.
pub(super) fn default_of(name: &str) -> Option<&'static str> {
    FIXED
        .iter()
        .find(|(fixed, _, _)| *fixed == name)
        .map(|(_, default, _)| *default)
}

/// Variables that had another name in earlier builds: old, new.
const RENAMED: &[(&str, &str)] = &[("HLE_HAPROXY_LOG_FORMAT", "HLE_LOG_FORMAT")];

/// A `HLE_` variable nobody reads is most likely a typo that would silently do nothing:
/// the problems with the names of `env`.
pub(super) fn unknown_variables(env: &HashMap<String, String>) -> Vec<String> {
    let mut known: HashSet<String> = variables().into_iter().map(|v| v.name).collect();
    // A counter's `_BUCKETS` gets its own, more helpful, message in `metric_configs`.
    known.extend(
        METRICS
            .iter()
            .map(|m| format!("{}_BUCKETS", m.env_prefix())),
    );
    let mut unknown: Vec<&String> = env
        .keys()
        .filter(|k| k.starts_with("HLE_") && !known.contains(*k) && !is_service_link(k))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|name| match RENAMED.iter().find(|(old, _)| old == name) {
            Some((_, new)) => format!("{name}: renamed, use {new}"),
            None => match nearest_variable(name) {
                Some(near) => format!(
                    "{name}: unknown variable; did you mean `{near}`? (see --help for the list)"
                ),
                None => format!("{name}: unknown variable (see --help for the list)"),
            },
        })
        .collect()
}

/// The variable `name` was most likely meant to be: the documented name nearest to it, if
/// it is near enough (the tolerance grows with the length of the part after `HLE_`, which
/// every name shares).
fn nearest_variable(name: &str) -> Option<String> {
    let len = name.strip_prefix("HLE_").unwrap_or(name).chars().count();
    let names: Vec<String> = variables().into_iter().map(|v| v.name).collect();
    suggest::nearest(
        name,
        names.iter().map(String::as_str),
        suggest::tolerance(len),
    )
    .map(str::to_string)
}

/// Kubernetes gives a pod (unless `enableServiceLinks: false`) variables for every Service
/// in its namespace: `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT>]`, `<NAME>_PORT`
/// and `<NAME>_PORT_<N>_<PROTO>[_PROTO|_PORT|_ADDR]`. A Service called `hle...` must not
/// stop a sidecar from starting, so these names are not ours to refuse.
fn is_service_link(name: &str) -> bool {
    if name.contains("_SERVICE_HOST") || name.contains("_SERVICE_PORT") || name.ends_with("_PORT") {
        return true;
    }
    let Some((_, rest)) = name.rsplit_once("_PORT_") else {
        return false;
    };
    let mut parts = rest.split('_');
    let number = parts.next().is_some_and(|n| n.parse::<u16>().is_ok());
    let proto = matches!(parts.next(), Some("TCP" | "UDP" | "SCTP"));
    let suffix = matches!(parts.next(), None | Some("PROTO" | "PORT" | "ADDR"));
    number && proto && suffix && parts.next().is_none()
}
