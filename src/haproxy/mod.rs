//! Pipeline stage 4: HAProxy log entries (`option httplog`, `option tcplog`).

pub mod format;
mod parser;
mod record;

pub use parser::{parse, request_path, Entry, ParseError, IGNORE_REASONS, REJECT_REASONS};
pub use record::{EntryKind, LogRecord, Timer};

#[cfg(test)]
mod tests;
