//! The exporter's own logs: tracing to standard error, as text or JSON lines.
//!
//! Whatever a sender controls (a rejected line's sample, a frontend's name) is logged
//! escaped (`escape_debug`): control bytes and newlines become `\n`, `\r`, `\u{1b}`, so
//! one event is one line in either output and a forged line cannot pass for ours.

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogOutput;

/// Installs the global subscriber. `level` was validated with the configuration.
pub fn init(level: &str, format: LogOutput) {
    let ansi = std::io::stderr().is_terminal();
    // `try_init` fails only when a subscriber is already set (tests); keep that one.
    let _ = subscriber(level, format, std::io::stderr, ansi).try_init();
}

/// The subscriber [`init`] installs, writing to `writer`.
pub fn subscriber<W>(
    level: &str,
    format: LogOutput,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi);
    match format {
        LogOutput::Text => Box::new(builder.finish()),
        LogOutput::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::metrics::{SelfMetrics, Transport};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the "line rejected" warning of `line` looks like in `format`.
    fn rejected_log(format: LogOutput, line: &[u8]) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = subscriber("info", format, move || writer.clone(), false);
        let selfmon = SelfMetrics::new(&prometheus::Registry::new()).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            selfmon.rejected(Transport::Udp, "unrecognized_format", line);
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    const FORGED: &[u8] =
        b"<134>evil\n2026-12-02T00:00:00.000000Z ERROR exiting\r\x1b[31mred\x1b[0m\0end";

    #[test]
    fn a_rejected_line_is_one_escaped_line_of_text() {
        let log = rejected_log(LogOutput::Text, FORGED);
        assert_eq!(log.matches('\n').count(), 1, "{log:?}");
        assert!(log.ends_with('\n'), "{log:?}");
        assert!(!log.contains(['\r', '\x1b', '\0']), "{log:?}");
        assert!(log.contains(" WARN "), "{log:?}");
        assert!(
            log.contains(r"evil\n2026-12-02T00:00:00.000000Z ERROR exiting\r\u{1b}[31mred"),
            "{log:?}"
        );
        assert!(
            !log.contains("\nERROR") && !log.starts_with("ERROR"),
            "{log:?}"
        );
    }

    #[test]
    fn a_rejected_line_is_one_escaped_line_of_json() {
        let log = rejected_log(LogOutput::Json, FORGED);
        assert_eq!(log.matches('\n').count(), 1, "{log:?}");
        assert!(!log.contains(['\r', '\x1b', '\0']), "{log:?}");
        let event: serde_json::Value = serde_json::from_str(log.trim_end()).unwrap();
        assert_eq!(event["level"], "WARN");
        assert_eq!(event["message"], "line rejected");
        let sample = event["sample"].as_str().unwrap();
        // The sample holds the escapes, not the bytes they stand for.
        assert!(
            sample.starts_with(
                r"<134>evil\n2026-12-02T00:00:00.000000Z ERROR exiting\r\u{1b}[31mred"
            ),
            "{sample:?}"
        );
        assert!(!sample.contains(['\n', '\r', '\x1b', '\0']), "{sample:?}");
    }
}
