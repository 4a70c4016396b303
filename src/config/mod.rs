//! Configuration: environment variables only. `envconfig` reads them (with defaults) into
//! `RawConfig`; `Config::from_env` then checks everything and reports every problem at
//! once, before any socket is bound.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use envconfig::Envconfig;

use crate::haproxy::format::{Format, BUILT_IN};
use crate::haproxy::{LineFormat, Parser};
use crate::ingest::codec::Framing;
use crate::metrics::{Cardinality, Kind, MetricConfig, METRICS};

mod metrics;
pub(crate) mod path_rules;
mod problems;

use metrics::{cardinality, custom_labels, metric_configs};
pub use problems::parse_duration;
use problems::{list, Problems};

/// The variables as strings, with their defaults. Every field is a `String` so that one
/// bad value does not hide the next: parsing happens in `Config::from_env`.
#[derive(Envconfig, Debug)]
pub struct RawConfig {
    #[envconfig(from = "HLE_SYSLOG_UDP_ADDR", default = "127.0.0.1:5140")]
    pub syslog_udp_addr: String,
    #[envconfig(from = "HLE_SYSLOG_TCP_ADDR", default = "127.0.0.1:5140")]
    pub syslog_tcp_addr: String,
    #[envconfig(from = "HLE_SYSLOG_TCP_FRAMING", default = "auto")]
    pub syslog_tcp_framing: String,
    #[envconfig(from = "HLE_SYSLOG_UNIX_PATH", default = "")]
    pub syslog_unix_path: String,
    #[envconfig(from = "HLE_SYSLOG_UNIX_MODE", default = "0660")]
    pub syslog_unix_mode: String,
    #[envconfig(from = "HLE_LOG_FORMAT", default = "httplog")]
    pub log_format: String,
    #[envconfig(from = "HLE_CUSTOM_LABELS", default = "")]
    pub custom_labels: String,
    #[envconfig(from = "HLE_MAX_LINE_BYTES", default = "65536")]
    pub max_line_bytes: String,
    #[envconfig(from = "HLE_TCP_MAX_CONNECTIONS", default = "256")]
    pub tcp_max_connections: String,
    #[envconfig(from = "HLE_TCP_IDLE_TIMEOUT", default = "10m")]
    pub tcp_idle_timeout: String,
    #[envconfig(from = "HLE_WEB_LISTEN_ADDR", default = "0.0.0.0:9129")]
    pub web_listen_addr: String,
    #[envconfig(from = "HLE_WEB_TELEMETRY_PATH", default = "/metrics")]
    pub web_telemetry_path: String,
    #[envconfig(from = "HLE_ENABLED_METRICS", default = "all")]
    pub enabled_metrics: String,
    #[envconfig(from = "HLE_PATH_RULES", default = "")]
    pub path_rules: String,
    #[envconfig(from = "HLE_PATH_AUTO_TEMPLATES", default = "true")]
    pub path_auto_templates: String,
    #[envconfig(from = "HLE_PATH_ALLOW", default = "")]
    pub path_allow: String,
    #[envconfig(from = "HLE_PATH_MAX_SEGMENTS", default = "0")]
    pub path_max_segments: String,
    #[envconfig(from = "HLE_CLIENT_IP_PREFIX_V4", default = "32")]
    pub client_ip_prefix_v4: String,
    #[envconfig(from = "HLE_CLIENT_IP_PREFIX_V6", default = "128")]
    pub client_ip_prefix_v6: String,
    #[envconfig(from = "HLE_MAX_SERIES_PER_METRIC", default = "10000")]
    pub max_series_per_metric: String,
    #[envconfig(from = "HLE_SERIES_TTL", default = "0")]
    pub series_ttl: String,
    #[envconfig(from = "HLE_UDP_RECV_BUFFER_BYTES", default = "4194304")]
    pub udp_recv_buffer_bytes: String,
    #[envconfig(from = "HLE_LOG_LEVEL", default = "info")]
    pub log_level: String,
    #[envconfig(from = "HLE_LOG_OUTPUT", default = "text")]
    pub log_output: String,
}

/// A documented variable: name, default, meaning. `--help` and the README list these.
pub struct Variable {
    pub name: String,
    pub default: String,
    pub help: String,
}

/// The fixed variables, in `--help` order. A unit test keeps the defaults equal to
/// `RawConfig`'s.
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
        "HLE_UDP_RECV_BUFFER_BYTES",
        "4194304",
        "receive buffer of the UDP socket (SO_RCVBUF), up to net.core.rmem_max; 0: the kernel's default",
    ),
    (
        "HLE_LOG_LEVEL",
        "info",
        "log level or tracing filter (error, warn, info, debug, trace)",
    ),
    ("HLE_LOG_OUTPUT", "text", "log output format: text or json"),
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

/// How the exporter writes its own logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub syslog_udp_addr: Option<SocketAddr>,
    pub syslog_tcp_addr: Option<SocketAddr>,
    pub syslog_tcp_framing: Framing,
    pub syslog_unix_path: Option<PathBuf>,
    pub syslog_unix_mode: u32,
    /// How lines are read: the formats of `HLE_LOG_FORMAT`, in order.
    pub parser: Parser,
    pub max_line_bytes: usize,
    pub tcp_max_connections: usize,
    pub tcp_idle_timeout: Option<Duration>,
    pub web_listen_addr: SocketAddr,
    pub web_telemetry_path: String,
    pub metrics: Vec<MetricConfig>,
    /// Label rules and series limits.
    pub cardinality: Cardinality,
    /// `SO_RCVBUF` of the UDP socket; `None`: the kernel's default.
    pub udp_recv_buffer_bytes: Option<usize>,
    /// Whether `HLE_UDP_RECV_BUFFER_BYTES` was set: only then is a smaller buffer from
    /// the kernel worth a warning.
    pub udp_recv_buffer_explicit: bool,
    pub log_level: String,
    pub log_output: LogOutput,
}

/// Every problem found in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        writeln!(f, "invalid configuration ({count} {noun}):")?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The smallest `len` HAProxy accepts on a log target is 80.
const MIN_LINE_BYTES: usize = 80;
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
const MAX_RECV_BUFFER_BYTES: usize = 1 << 30;

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_process_env() -> Result<Config, ConfigError> {
        let (env, not_utf8) = process_env();
        let mut problems: Vec<String> = not_utf8
            .into_iter()
            .map(|key| format!("{key}: value is not valid UTF-8"))
            .collect();
        match Config::from_env(&env) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError { problems }),
            Err(err) => {
                problems.extend(err.problems);
                Err(ConfigError { problems })
            }
        }
    }

    /// Builds the configuration from a map of variables (tests pass their own).
    pub fn from_env(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let raw = RawConfig::init_from_hashmap(env).map_err(|err| ConfigError {
            problems: vec![err.to_string()],
        })?;
        let mut p = Problems::default();

        let syslog_udp_addr = p.optional_addr("HLE_SYSLOG_UDP_ADDR", &raw.syslog_udp_addr);
        let syslog_tcp_addr = p.optional_addr("HLE_SYSLOG_TCP_ADDR", &raw.syslog_tcp_addr);
        let web_listen_addr = p.addr("HLE_WEB_LISTEN_ADDR", &raw.web_listen_addr);
        let unix_path = raw.syslog_unix_path.trim();
        let syslog_unix_path = (!unix_path.is_empty()).then(|| PathBuf::from(unix_path));
        let syslog_unix_mode = match u32::from_str_radix(raw.syslog_unix_mode.trim(), 8) {
            Ok(mode) if mode <= 0o777 => mode,
            _ => {
                p.add(format!(
                    "HLE_SYSLOG_UNIX_MODE={:?}: expected octal permissions such as 0660",
                    raw.syslog_unix_mode
                ));
                0
            }
        };
        if raw.syslog_udp_addr.trim().is_empty()
            && raw.syslog_tcp_addr.trim().is_empty()
            && syslog_unix_path.is_none()
        {
            p.add("HLE_SYSLOG_UDP_ADDR, HLE_SYSLOG_TCP_ADDR and HLE_SYSLOG_UNIX_PATH are all empty: nothing would receive logs");
        }
        if let (Some(tcp), Some(web)) = (syslog_tcp_addr, web_listen_addr) {
            if tcp == web && tcp.port() != 0 {
                p.add(format!(
                    "HLE_SYSLOG_TCP_ADDR and HLE_WEB_LISTEN_ADDR are both {tcp}"
                ));
            }
        }

        let mut parser = log_formats(&raw.log_format, &mut p);
        let custom = custom_labels(&raw.custom_labels, &mut parser, &mut p);
        let max_line_bytes = p.number(
            "HLE_MAX_LINE_BYTES",
            &raw.max_line_bytes,
            MIN_LINE_BYTES,
            MAX_LINE_BYTES,
        );
        let tcp_max_connections = p.number(
            "HLE_TCP_MAX_CONNECTIONS",
            &raw.tcp_max_connections,
            1,
            1_000_000,
        );
        let tcp_idle_timeout = p.optional_duration("HLE_TCP_IDLE_TIMEOUT", &raw.tcp_idle_timeout);
        let framing = raw.syslog_tcp_framing.trim();
        let syslog_tcp_framing = match Framing::NAMES.iter().find(|(name, _)| *name == framing) {
            Some(&(_, framing)) => framing,
            None => {
                p.add(format!(
                    "HLE_SYSLOG_TCP_FRAMING={framing:?}: must be auto, octet-count or lf"
                ));
                Framing::Auto
            }
        };

        let path = raw.web_telemetry_path.trim().to_string();
        if !path.starts_with('/')
            || path == "/"
            || path.starts_with("/-/")
            || path.contains(char::is_whitespace)
        {
            p.add(format!(
                "HLE_WEB_TELEMETRY_PATH={path:?}: must start with '/' and be neither '/' nor under '/-/'"
            ));
        }

        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&raw.log_level) {
            p.add(format!("HLE_LOG_LEVEL={:?}: {err}", raw.log_level));
        }
        let log_output = match raw.log_output.trim() {
            "text" => LogOutput::Text,
            "json" => LogOutput::Json,
            other => {
                p.add(format!("HLE_LOG_OUTPUT={other:?}: must be text or json"));
                LogOutput::Text
            }
        };

        let metrics = metric_configs(&raw.enabled_metrics, env, &custom, &mut p);
        let cardinality = cardinality(&raw, &mut p);
        let udp_recv_buffer_bytes = p
            .number(
                "HLE_UDP_RECV_BUFFER_BYTES",
                &raw.udp_recv_buffer_bytes,
                0,
                MAX_RECV_BUFFER_BYTES,
            )
            .filter(|&n| n > 0);
        unknown_variables(env, &mut p);

        if !p.0.is_empty() {
            return Err(ConfigError { problems: p.0 });
        }
        Ok(Config {
            syslog_udp_addr,
            syslog_tcp_addr,
            syslog_tcp_framing,
            syslog_unix_path,
            syslog_unix_mode,
            parser,
            max_line_bytes: max_line_bytes.unwrap_or_default(),
            tcp_max_connections: tcp_max_connections.unwrap_or_default(),
            tcp_idle_timeout,
            web_listen_addr: web_listen_addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            web_telemetry_path: path,
            metrics,
            cardinality,
            udp_recv_buffer_bytes,
            udp_recv_buffer_explicit: env.contains_key("HLE_UDP_RECV_BUFFER_BYTES"),
            log_level: raw.log_level,
            log_output,
        })
    }
}

/// `HLE_LOG_FORMAT`: names separated by commas (`httplog,clf`), or entries one a
/// line (a log-format string may itself contain commas).
fn log_formats(value: &str, p: &mut Problems) -> Parser {
    // Before HAProxy's format took this name, it chose the exporter's own log output.
    if let output @ ("text" | "json") = value.trim() {
        p.add(format!(
            "HLE_LOG_FORMAT={output:?}: HLE_LOG_FORMAT is HAProxy's log format; the exporter's own log output is HLE_LOG_OUTPUT={output}"
        ));
        return Parser::new(Vec::new());
    }
    let is_name = |s: &str| BUILT_IN.iter().any(|(name, _)| *name == s);
    let entries: Vec<&str> = if list(value).all(is_name) {
        list(value).collect()
    } else {
        value
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    };
    let mut formats = Vec::new();
    for entry in entries {
        // The hand-written parser reads httplog and tcplog lines alike, cut ones too.
        if entry == "httplog" || entry == "tcplog" {
            if !formats.contains(&LineFormat::BuiltIn) {
                formats.push(LineFormat::BuiltIn);
            }
            continue;
        }
        match Format::named_or_compiled(entry) {
            Ok(format) => formats.push(LineFormat::Compiled(format)),
            Err(err) => p.add(format!("HLE_LOG_FORMAT: {err}")),
        }
    }
    if formats.is_empty() && p.0.is_empty() {
        p.add("HLE_LOG_FORMAT is empty: name a format (httplog, clf, ...) or give a log-format string");
    }
    Parser::new(formats)
}

/// Variables that had another name in earlier builds: old, new.
const RENAMED: &[(&str, &str)] = &[("HLE_HAPROXY_LOG_FORMAT", "HLE_LOG_FORMAT")];

/// A `HLE_` variable nobody reads is most likely a typo that would silently do nothing.
fn unknown_variables(env: &HashMap<String, String>, p: &mut Problems) {
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
    for name in unknown {
        match RENAMED.iter().find(|(old, _)| old == name) {
            Some((_, new)) => p.add(format!("{name}: renamed, use {new}")),
            None => p.add(format!(
                "{name}: unknown variable (see --help for the list)"
            )),
        }
    }
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

#[cfg(test)]
mod tests;
