//! The exporter's own logs: tracing to standard error, as text or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogOutput;

/// Installs the global subscriber. `level` was validated with the configuration.
pub fn init(level: &str, format: LogOutput) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    // `try_init` fails only when a subscriber is already set (tests); keep that one.
    let _ = match format {
        LogOutput::Text => builder.try_init(),
        LogOutput::Json => builder.json().flatten_event(true).try_init(),
    };
}
