//! HAProxy's log entries, read into a `LogRecord` (`record.rs`): `option httplog` and
//! `option tcplog` by the hand-written parser (`parser.rs`), any log-format compiled from
//! its string (`format/`), the path label from the request URI (`uri.rs`). A `Parser`
//! tries the configured formats in order. For operators: docs/log-formats.md.

pub mod format;
mod parser;
mod record;
mod uri;

pub use parser::{parse, ConnectionLine, Entry, ParseError, IGNORE_REASONS, REJECT_REASONS};
pub use record::{EntryKind, LogRecord, Timer, MAX_CUSTOM_LABELS};
pub use uri::request_path;

use format::Format;

/// One way a line may be written.
#[derive(Debug, Clone, PartialEq)]
pub enum LineFormat {
    /// `option httplog` and `option tcplog` (and the pre-1.7 layout), by the hand-written
    /// parser, which also counts lines HAProxy cut inside the request line.
    BuiltIn,
    /// The operator's log-format, or a built-in one compiled from its string.
    Compiled(Format),
}

/// Reads a message in the first of the configured formats it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Parser {
    formats: Vec<LineFormat>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            formats: vec![LineFormat::BuiltIn],
        }
    }
}

impl Parser {
    /// Tries `formats` in order; at least one is needed (the built-in one if none).
    pub fn new(formats: Vec<LineFormat>) -> Self {
        if formats.is_empty() {
            return Parser::default();
        }
        Parser { formats }
    }

    /// The formats, in the order they are tried.
    pub fn formats(&self) -> &[LineFormat] {
        &self.formats
    }

    /// Makes the fields named in `fields` (as written in the format, `%hr#N` for the N-th
    /// capture of a block) fill the record's custom slots, in order. Returns, for each,
    /// whether some format has it.
    pub fn bind_custom(&mut self, fields: &[&str]) -> Vec<bool> {
        let mut found = vec![false; fields.len()];
        for format in &mut self.formats {
            if let LineFormat::Compiled(format) = format {
                for (seen, here) in found.iter_mut().zip(format.bind_custom(fields)) {
                    *seen |= here;
                }
            }
        }
        found
    }

    /// A traffic record from the first format that matches; an HAProxy notice if none
    /// does and the line is one; otherwise the reason of the format that matched furthest
    /// into the line (the first of them on a tie).
    ///
    /// A whole match in any format wins over a match of a line cut short in an earlier one:
    /// a cut line looks like the start of a longer format.
    pub fn parse<'a>(&self, message: &'a [u8]) -> Result<Entry<'a>, ParseError> {
        let mut best: Option<(usize, ParseError)> = None;
        let mut cut: Option<Entry<'a>> = None;
        for format in &self.formats {
            let (reached, error) = match format {
                LineFormat::BuiltIn => match parse(message) {
                    Ok(Entry::Traffic(record)) if record.truncated => {
                        cut.get_or_insert(Entry::Traffic(record));
                        continue;
                    }
                    Ok(entry) => return Ok(entry),
                    // The built-in parser does not say how far it got; a line it took for
                    // traffic got further than one it did not recognise at all.
                    Err(err) => (usize::from(err.reason() != "unrecognized_format"), err),
                },
                LineFormat::Compiled(format) => match format.extract(message) {
                    Ok(record) if record.truncated => {
                        cut.get_or_insert(Entry::Traffic(record));
                        continue;
                    }
                    Ok(record) => return Ok(Entry::Traffic(record)),
                    Err(mismatch) => (mismatch.offset + 1, ParseError::new(mismatch.reason)),
                },
            };
            if best.is_none_or(|(furthest, _)| reached > furthest) {
                best = Some((reached, error));
            }
        }
        if let Some(entry) = cut {
            return Ok(entry);
        }
        match parser::notice(message) {
            Some(notice) => notice.map(Entry::Notice),
            None => Err(best.map_or(ParseError::new("unrecognized_format"), |(_, e)| e)),
        }
    }
}

#[cfg(test)]
mod tests;
