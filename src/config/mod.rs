//! Configuration: environment variables only, each named, defaulted and explained once in
//! one table. `Config::from_env` reads every variable through it, checks everything and
//! reports every problem at once, before any socket is bound. docs/configuration.md
//! is the manual.
//!
//! `vars` holds the table (and the lists `--help` and `check-config` print, and the check
//! for unknown names), `reader` the values in force and the problems found, `metrics` the
//! metrics, labels, buckets, custom labels and cardinality settings, and `path_rules` the
//! parsing of `HLE_PATH_RULES` and `HLE_PATH_ALLOW`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::haproxy::format::{Format, BUILT_IN};
use crate::haproxy::{LineFormat, Parser};
use crate::metrics::{Cardinality, Label, MetricConfig};
use crate::web::Listener;

mod forward;
mod metrics;
pub(crate) mod path_rules;
mod reader;
mod sources;
mod spop;
mod suggest;
mod vars;
mod web;

pub use forward::{
    ForwardConfig, ForwardFraming, Sampling, StdoutForward, SyslogFormat, SyslogTarget,
    SyslogTransport,
};
use metrics::{cardinality, custom_labels, exemplar_label, metric_configs};
pub use reader::parse_duration;
use reader::{list, Reader};
pub use sources::AllowList;
pub use spop::SpoeConfig;
use vars::unknown_variables;
pub use vars::{effective, process_env, variables, Variable};
pub use web::WebConfig;
pub(crate) use web::MIN_HEADER_BYTES;

/// `HLE_SYSLOG_TCP_FRAMING`: how a TCP connection's frames are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Decided by each connection's first frame.
    Auto,
    /// RFC 6587 octet counting (`LEN SP MSG`), for every connection.
    OctetCount,
    /// Newline-terminated lines, for every connection; a leading number is data.
    Lf,
}

impl Framing {
    /// The variable's values, as written in the configuration.
    pub const NAMES: [(&'static str, Framing); 3] = [
        ("auto", Framing::Auto),
        ("octet-count", Framing::OctetCount),
        ("lf", Framing::Lf),
    ];
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
    /// Bytes of unfinished frames all syslog TCP connections may hold together.
    pub tcp_buffer_budget_bytes: usize,
    /// Who may send syslog over UDP and TCP (`HLE_SYSLOG_ALLOWED_SOURCES`).
    pub syslog_allowed_sources: AllowList,
    pub web_listen_addr: SocketAddr,
    pub web_telemetry_path: String,
    /// The HTTP server's limits.
    pub web: WebConfig,
    /// `HLE_WEB_CONFIG_FILE`, loaded and checked.
    pub web_config: Option<crate::web::WebConfig>,
    /// `HLE_SYSLOG_TLS_CONFIG_FILE`, loaded and checked: TLS on the syslog TCP listener.
    pub syslog_tls_config: Option<crate::web::WebConfig>,
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
    /// The names of `HLE_CUSTOM_LABELS`, by slot.
    pub custom_labels: Vec<&'static str>,
    pub forward: ForwardConfig,
    /// The SPOE agent, if enabled.
    pub spoe: Option<SpoeConfig>,
    /// What is allowed but most likely not meant (a custom label no metric has), logged
    /// as warnings at start-up.
    pub warnings: Vec<String>,
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

    /// Builds the configuration from a map of variables (tests pass their own). The
    /// settings are read in the order their problems are listed.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut r = Reader::new(env);
        let syslog_udp_addr = r.optional_addr("HLE_SYSLOG_UDP_ADDR");
        let syslog_tcp_addr = r.optional_addr("HLE_SYSLOG_TCP_ADDR");
        let web_listen_addr = r.addr("HLE_WEB_LISTEN_ADDR");
        let unix_path = r.get("HLE_SYSLOG_UNIX_PATH").trim();
        let syslog_unix_path = (!unix_path.is_empty()).then(|| PathBuf::from(unix_path));
        let syslog_unix_mode = unix_mode(&mut r);
        let spoe = spop::spoe(&mut r);
        listeners_apart(&mut r, syslog_tcp_addr, web_listen_addr);
        let mut parser = log_formats(&mut r);
        let custom = custom_labels(&mut r, &mut parser, spoe.is_some());
        let max_line_bytes = r.number("HLE_MAX_LINE_BYTES", MIN_LINE_BYTES, MAX_LINE_BYTES);
        let tcp_max_connections = r.number("HLE_TCP_MAX_CONNECTIONS", 1, 1_000_000);
        let tcp_idle_timeout = r.optional_duration("HLE_TCP_IDLE_TIMEOUT");
        let tcp_buffer_budget_bytes = tcp_buffer_budget(&mut r, max_line_bytes);
        let syslog_allowed_sources = sources::allow_list(&mut r, "HLE_SYSLOG_ALLOWED_SOURCES");
        let syslog_tcp_framing = tcp_framing(&mut r);
        let web_telemetry_path = telemetry_path(&mut r);
        let web = web::web(&mut r);
        let web_config = config_file(&mut r, Listener::Web);
        let syslog_tls_config = syslog_tls_config(&mut r);
        let log_level = log_level(&mut r);
        let log_output = log_output(&mut r);
        let metrics = metric_configs(&mut r, &custom);
        let mut cardinality = cardinality(&mut r);
        cardinality.exemplar = exemplar_label(&mut r, &custom, &metrics);
        let udp_recv_buffer_bytes = r
            .number("HLE_UDP_RECV_BUFFER_BYTES", 0, MAX_RECV_BUFFER_BYTES)
            .filter(|&n| n > 0);
        let forward = forward::forward(&mut r);
        let warnings = unused_custom_labels(&custom, &metrics, &forward, cardinality.exemplar);
        for problem in unknown_variables(r.env()) {
            r.problem(problem);
        }

        if r.has_problems() {
            return Err(ConfigError {
                problems: r.into_problems(),
            });
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
            tcp_buffer_budget_bytes,
            syslog_allowed_sources,
            web_listen_addr: web_listen_addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            web_telemetry_path,
            web,
            web_config,
            syslog_tls_config,
            metrics,
            cardinality,
            udp_recv_buffer_bytes,
            udp_recv_buffer_explicit: env.contains_key("HLE_UDP_RECV_BUFFER_BYTES"),
            log_level,
            log_output,
            custom_labels: custom.iter().map(|label| label.name()).collect(),
            forward,
            spoe,
            warnings,
        })
    }
}

/// The custom labels that no enabled metric has, each a warning: such a label is read
/// from every line and then dropped, most likely because it is missing from a
/// `HLE_<METRIC>_LABELS`. Not a problem: a label may be defined before the metric that
/// will have it. With `HLE_FORWARD_STDOUT=json` every custom label is in the forwarded
/// objects, so none is unused.
fn unused_custom_labels(
    custom: &[Label],
    metrics: &[MetricConfig],
    forward: &ForwardConfig,
    exemplar: Option<Label>,
) -> Vec<String> {
    if forward.stdout == StdoutForward::Json {
        return Vec::new();
    }
    custom
        .iter()
        .filter(|&&label| Some(label) != exemplar)
        .filter(|label| !metrics.iter().any(|m| m.labels.contains(label)))
        .map(|label| {
            format!(
                "HLE_CUSTOM_LABELS: label {:?} is on no enabled metric, so it is read and dropped; add it to the HLE_<METRIC>_LABELS of a metric (e.g. HLE_REQUESTS_TOTAL_LABELS={},status_code)",
                label.name(),
                label.name()
            )
        })
        .collect()
}

/// The most `HLE_TCP_BUFFER_BUDGET_BYTES` may be.
const MAX_TCP_BUFFER_BUDGET: usize = 1 << 40;

/// `HLE_TCP_BUFFER_BUDGET_BYTES`: a size, at least one line of `HLE_MAX_LINE_BYTES` (a
/// smaller budget would cut a lone connection inside a line the limit accepts).
fn tcp_buffer_budget(r: &mut Reader, max_line_bytes: Option<usize>) -> usize {
    let var = "HLE_TCP_BUFFER_BUDGET_BYTES";
    let budget = forward::byte_size(r, var, MIN_LINE_BYTES, MAX_TCP_BUFFER_BUDGET);
    if let Some(line) = max_line_bytes.filter(|&line| budget < line) {
        r.problem(format!(
            "{var}={:?} is less than HLE_MAX_LINE_BYTES={line}: one connection could not hold the longest line accepted",
            r.get(var)
        ));
    }
    budget
}

/// `HLE_SYSLOG_UNIX_MODE`: octal permissions.
fn unix_mode(r: &mut Reader) -> u32 {
    let value = r.get("HLE_SYSLOG_UNIX_MODE");
    match u32::from_str_radix(value.trim(), 8) {
        Ok(mode) if mode <= 0o777 => mode,
        _ => {
            r.problem(format!(
                "HLE_SYSLOG_UNIX_MODE={value:?}: expected octal permissions such as 0660"
            ));
            0
        }
    }
}

/// At least one listener for HAProxy (syslog or SPOE), and no two TCP listeners on one
/// address.
fn listeners_apart(r: &mut Reader, tcp: Option<SocketAddr>, web: Option<SocketAddr>) {
    if r.get("HLE_SYSLOG_UDP_ADDR").trim().is_empty()
        && r.get("HLE_SYSLOG_TCP_ADDR").trim().is_empty()
        && r.get("HLE_SYSLOG_UNIX_PATH").trim().is_empty()
        && r.get("HLE_SPOE_ADDR").trim().is_empty()
    {
        r.problem("HLE_SYSLOG_UDP_ADDR, HLE_SYSLOG_TCP_ADDR, HLE_SYSLOG_UNIX_PATH and HLE_SPOE_ADDR are all empty: nothing would receive logs");
    }
    let spoe = r.get("HLE_SPOE_ADDR").trim().parse::<SocketAddr>().ok();
    let listeners = [
        ("HLE_SYSLOG_TCP_ADDR", tcp),
        ("HLE_WEB_LISTEN_ADDR", web),
        ("HLE_SPOE_ADDR", spoe),
    ];
    for (i, (a_var, a)) in listeners.iter().enumerate() {
        for (b_var, b) in &listeners[i + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                if a == b && a.port() != 0 {
                    r.problem(format!("{a_var} and {b_var} are both {a}"));
                }
            }
        }
    }
}

/// `HLE_SYSLOG_TCP_FRAMING`: `auto`, `octet-count` or `lf`.
fn tcp_framing(r: &mut Reader) -> Framing {
    let framing = r.get("HLE_SYSLOG_TCP_FRAMING").trim();
    match Framing::NAMES.iter().find(|(name, _)| *name == framing) {
        Some(&(_, framing)) => framing,
        None => {
            r.problem(format!(
                "HLE_SYSLOG_TCP_FRAMING={framing:?}: must be auto, octet-count or lf"
            ));
            Framing::Auto
        }
    }
}

/// `HLE_WEB_TELEMETRY_PATH`: a path of its own, apart from `/` and the probes under `/-/`.
fn telemetry_path(r: &mut Reader) -> String {
    let path = r.get("HLE_WEB_TELEMETRY_PATH").trim().to_string();
    if !path.starts_with('/')
        || path == "/"
        || path.starts_with("/-/")
        || path.contains(char::is_whitespace)
    {
        r.problem(format!(
            "HLE_WEB_TELEMETRY_PATH={path:?}: must start with '/' and be neither '/' nor under '/-/'"
        ));
    }
    path
}

/// `HLE_WEB_CONFIG_FILE` or `HLE_SYSLOG_TLS_CONFIG_FILE`: read and checked now
/// (certificates too), so that a bad file stops the start before any socket is bound.
fn config_file(r: &mut Reader, listener: Listener) -> Option<crate::web::WebConfig> {
    let var = listener.variable();
    let path = r.get(var).trim();
    if path.is_empty() {
        return None;
    }
    match crate::web::WebConfig::load_for(listener, std::path::Path::new(path)) {
        Ok(config) => Some(config),
        Err(problems) => {
            for problem in problems {
                r.problem(format!("{var}={path:?}: {problem}"));
            }
            None
        }
    }
}

/// `HLE_SYSLOG_TLS_CONFIG_FILE`, which secures `HLE_SYSLOG_TCP_ADDR`: set without it, it
/// would secure nothing.
fn syslog_tls_config(r: &mut Reader) -> Option<crate::web::WebConfig> {
    let set = !r.get("HLE_SYSLOG_TLS_CONFIG_FILE").trim().is_empty();
    if set && r.get("HLE_SYSLOG_TCP_ADDR").trim().is_empty() {
        r.problem(
            "HLE_SYSLOG_TLS_CONFIG_FILE is set but HLE_SYSLOG_TCP_ADDR is empty: there is no TCP listener to secure",
        );
    }
    config_file(r, Listener::Syslog)
}

/// The levels of `HLE_LOG_LEVEL`: from the fewest lines to the most, and none.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Words other programs use for a level, and the level they stand for here.
const LOG_LEVEL_SYNONYMS: &[(&str, &str)] = &[
    ("warning", "warn"),
    ("err", "error"),
    ("fatal", "error"),
    ("critical", "error"),
    ("crit", "error"),
    ("notice", "info"),
    ("information", "info"),
    ("verbose", "debug"),
    ("all", "trace"),
    ("none", "off"),
    ("quiet", "off"),
];

/// The target every event of this program has (or starts with).
const LOG_TARGET: &str = env!("CARGO_CRATE_NAME");

/// `HLE_LOG_LEVEL`: a level or a tracing filter, kept as written for `telemetry::init`.
/// A filter's bare word that is not a level is a target (`hyper` enables every level of
/// the events whose target starts with it); one that is not this program's would switch
/// off every log line, so `verbose` or `infoo` is refused rather than obeyed.
fn log_level(r: &mut Reader) -> String {
    let level = r.get("HLE_LOG_LEVEL");
    let accepted = "a level (error, warn, info, debug, trace, off) or a tracing filter such as info,haproxy_log_exporter::spop=debug";
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(level) {
        let hint = level
            .split(',')
            .filter_map(|directive| directive.rsplit_once('=').map(|(_, lvl)| lvl.trim()))
            .find(|lvl| lvl.parse::<tracing::level_filters::LevelFilter>().is_err())
            .and_then(nearest_level)
            .map(|near| format!("; did you mean `{near}`?"))
            .unwrap_or_default();
        r.problem(format!(
            "HLE_LOG_LEVEL={level:?}: {err}; expected {accepted}{hint}"
        ));
        return level.to_string();
    }
    for word in level.split(',').map(str::trim) {
        let bare = !word.is_empty() && !word.contains(['=', '[', '{']);
        if !bare
            || word.parse::<tracing::level_filters::LevelFilter>().is_ok()
            || word.starts_with(LOG_TARGET)
            || LOG_TARGET.starts_with(word)
        {
            continue;
        }
        let hint = match nearest_level(word) {
            Some(near) => format!("; did you mean `{near}`?"),
            None => String::new(),
        };
        r.problem(format!(
            "HLE_LOG_LEVEL={level:?}: {word:?} is not a level, and as a target ({LOG_TARGET}...) it would match none of the exporter's logs; expected {accepted}{hint}"
        ));
        break;
    }
    level.to_string()
}

/// The level `word` was most likely meant to be: a synonym's, or the nearest level.
fn nearest_level(word: &str) -> Option<&'static str> {
    let lower = word.to_ascii_lowercase();
    if let Some((_, level)) = LOG_LEVEL_SYNONYMS
        .iter()
        .find(|(synonym, _)| *synonym == lower)
    {
        return Some(level);
    }
    // The levels are short: two edits of a four-letter word could make almost any of them.
    let tolerance = if word.chars().count() <= 4 { 1 } else { 2 };
    suggest::nearest(word, LOG_LEVELS, tolerance)
}

/// `HLE_LOG_OUTPUT`: `text` or `json`.
fn log_output(r: &mut Reader) -> LogOutput {
    match r.get("HLE_LOG_OUTPUT").trim() {
        "text" => LogOutput::Text,
        "json" => LogOutput::Json,
        other => {
            r.problem(format!("HLE_LOG_OUTPUT={other:?}: must be text or json"));
            LogOutput::Text
        }
    }
}

/// `HLE_LOG_FORMAT`: names separated by commas (`httplog,clf`), or entries one a
/// line (a log-format string may itself contain commas).
fn log_formats(r: &mut Reader) -> Parser {
    let value = r.get("HLE_LOG_FORMAT");
    // Before HAProxy's format took this name, it chose the exporter's own log output.
    if let output @ ("text" | "json") = value.trim() {
        r.problem(format!(
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
            Err(err) => r.problem(format!("HLE_LOG_FORMAT: {err}")),
        }
    }
    if formats.is_empty() && !r.has_problems() {
        r.problem("HLE_LOG_FORMAT is empty: name a format (httplog, clf, ...) or give a log-format string");
    }
    Parser::new(formats)
}

#[cfg(test)]
mod tests;
