//! Where a line stopped matching a format, and what the format has there, for
//! `check-config`: off the counting path, run only on a line `extract` rejected.

use std::fmt;

use super::ends::candidate;
use super::store::store;
use super::{FieldKind, Format, Mismatch, Token};
use crate::haproxy::record::LogRecord;

/// What the format has where a line stopped matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A field, as written in the format, and what it holds.
    Field {
        text: String,
        what: &'static str,
        quoted: bool,
    },
    /// Literal text of the format.
    Literal(String),
    /// A space (a separator of the format).
    Space,
    /// The end of the line: the format was over.
    End,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Field { text, what, quoted } => {
                write!(f, "{text} ({what}")?;
                if *quoted {
                    write!(f, ", in double quotes")?;
                }
                write!(f, ")")
            }
            Expected::Literal(text) => write!(f, "{text:?}"),
            Expected::Space => write!(f, "a space"),
            Expected::End => write!(f, "the end of the line"),
        }
    }
}

/// Where a line stopped matching a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// The byte of the message where what the format expects starts.
    pub offset: usize,
    pub expected: Expected,
    /// What the message has there, start and end: the value read for a field (empty
    /// at the end of the line).
    pub found: (usize, usize),
}

/// What a field of this kind holds, in words.
fn what(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::ClientIp => "a client address",
        FieldKind::ClientPort => "a client port",
        FieldKind::FrontendTransport | FieldKind::Frontend => "a frontend name",
        FieldKind::Backend => "a backend name",
        FieldKind::Server => "a server name",
        FieldKind::RequestWait
        | FieldKind::TotalRequestWait
        | FieldKind::Queued
        | FieldKind::Connect
        | FieldKind::Response
        | FieldKind::Active
        | FieldKind::Total => "a timer in milliseconds, or -1",
        FieldKind::Status => "a status code",
        FieldKind::Bytes => "a byte count",
        FieldKind::TerminationState => "a termination state",
        FieldKind::ServerQueue | FieldKind::BackendQueue => "a queue length",
        FieldKind::RequestLine => "a request line",
        FieldKind::Method => "a method",
        FieldKind::Uri => "a URI",
        FieldKind::PathOnly => "a path",
        FieldKind::Count => "a connection count",
        FieldKind::Captures => "captured headers in braces, or nothing",
        FieldKind::CaptureList => "captured headers, or nothing",
        FieldKind::ZonedDate => "a date with its zone",
        FieldKind::AcceptDate => "a date",
        FieldKind::Other => "a value",
        FieldKind::Sample => "a sample's value",
    }
}

/// Whether a field of this kind is a number.
fn number(kind: FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::ClientPort
            | FieldKind::RequestWait
            | FieldKind::TotalRequestWait
            | FieldKind::Queued
            | FieldKind::Connect
            | FieldKind::Response
            | FieldKind::Active
            | FieldKind::Total
            | FieldKind::Status
            | FieldKind::Bytes
            | FieldKind::ServerQueue
            | FieldKind::BackendQueue
            | FieldKind::Count
    )
}

impl Format {
    /// Where `line` (the syslog message), which [`Format::extract`] rejected with
    /// `mismatch`, stopped matching: the token the rejection reason names, where it
    /// starts in the likeliest reading of the line, and what is there.
    pub fn explain(&self, line: &[u8], mismatch: &Mismatch) -> Stop {
        let reading = self.likeliest_reading(line);
        // The token of this reason; none when several share it (past the table of reasons,
        // every new one is the same).
        let mut named = self
            .tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.reason() == mismatch.reason)
            .map(|(i, _)| i);
        let named = match (named.next(), named.next()) {
            (Some(i), None) => Some(i),
            _ => None,
        };
        let offset = mismatch.offset.min(line.len());
        let Some(i) = named.or_else(|| {
            // Where the likeliest reading stopped.
            (mismatch.reason != "trailing_data" && reading.stopped < self.tokens.len())
                .then_some(reading.stopped)
        }) else {
            return Stop {
                offset,
                expected: Expected::End,
                found: (offset, line.len()),
            };
        };
        let start = reading
            .starts
            .get(i)
            .copied()
            .unwrap_or(offset)
            .min(line.len());
        let (expected, found) = match &self.tokens[i] {
            Token::Literal { text, .. } => {
                let end = (start + text.len().max(1)).min(line.len());
                (
                    Expected::Literal(String::from_utf8_lossy(text).into_owned()),
                    (start, end),
                )
            }
            Token::Separator { .. } => (Expected::Space, (start, (start + 1).min(line.len()))),
            Token::Field(field) => {
                let found = match reading.values.get(i).copied().flatten() {
                    Some(value) => value,
                    None => (start, word_end(line, start)),
                };
                (
                    Expected::Field {
                        text: field.text.clone(),
                        what: what(field.kind),
                        // HAProxy never quotes a number, `+Q` or not.
                        quoted: field.quoted && !number(field.kind),
                    },
                    found,
                )
            }
        };
        Stop {
            offset: start,
            expected,
            found,
        }
    }

    /// Each field at its likeliest place, as `extract`'s first pass reads a line: where
    /// each token starts, the value of each field read, and the token it stopped at.
    fn likeliest_reading(&self, line: &[u8]) -> Reading {
        let mut reading = Reading {
            starts: Vec::with_capacity(self.tokens.len()),
            values: Vec::with_capacity(self.tokens.len()),
            stopped: self.tokens.len(),
        };
        let mut record = LogRecord::empty(self.kind);
        let (mut pos, mut last_was_space, mut path_seen) = (0, true, false);
        for (i, token) in self.tokens.iter().enumerate() {
            reading.starts.push(pos);
            reading.values.push(None);
            let fits = match token {
                Token::Literal { text, .. } => {
                    let fits = line[pos..].starts_with(text);
                    if fits {
                        pos += text.len();
                        last_was_space = text.last() == Some(&b' ');
                    }
                    fits
                }
                Token::Separator { .. } if last_was_space => true,
                Token::Separator { .. } => {
                    let fits = line.get(pos) == Some(&b' ');
                    if fits {
                        pos += 1;
                        last_was_space = true;
                    }
                    fits
                }
                Token::Field(field) => match candidate(self, i, field, line, pos, None, false) {
                    None => false,
                    Some(c) => {
                        reading.values[i] = Some(c.value);
                        let value = &line[c.value.0..c.value.1];
                        let fits = store(field, value, &mut record, &mut path_seen, self).is_some();
                        if fits {
                            last_was_space &= !c.wrote;
                            pos = c.end;
                        }
                        fits
                    }
                },
            };
            if !fits {
                reading.stopped = i;
                break;
            }
        }
        reading
    }
}

/// One reading of a line, token by token.
struct Reading {
    /// Where each token reached starts.
    starts: Vec<usize>,
    /// The value each field reached was read as.
    values: Vec<Option<(usize, usize)>>,
    /// The token the reading stopped at; the number of tokens if none.
    stopped: usize,
}

/// The end of the word at `start`: the next space, or the end of the line.
fn word_end(line: &[u8], start: usize) -> usize {
    line[start..]
        .iter()
        .position(|&b| b == b' ')
        .map_or(line.len(), |j| start + j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(format: &str, line: &[u8]) -> Stop {
        let format = Format::named_or_compiled(format).unwrap();
        let mismatch = format.extract(line).unwrap_err();
        format.explain(line, &mismatch)
    }

    const HTTPLOG: &[u8] = b"127.0.0.1:40786 [01/Dec/2026:20:52:24.079] fe_main be_app/app1 0/0/0/0/0 200 112 - - ---- 2/1/0/0/0 0/0 \"GET / HTTP/1.1\"";

    #[test]
    fn a_bad_status_names_the_field_where_its_value_starts() {
        let line = String::from_utf8_lossy(HTTPLOG).replace(" 200 ", " abc ");
        let stop = stop("httplog", line.as_bytes());
        let at = line.find("abc").unwrap();
        assert_eq!(stop.offset, at);
        assert_eq!(stop.found, (at, at + 3));
        assert_eq!(stop.expected.to_string(), "%ST (a status code)", "{stop:?}");
    }

    #[test]
    fn a_missing_literal_and_trailing_text_are_told() {
        let line = String::from_utf8_lossy(HTTPLOG).replace(" [01", " (01");
        let literal = stop("httplog", line.as_bytes());
        assert_eq!(literal.expected, Expected::Literal("[".into()));
        assert_eq!(literal.offset, line.find('(').unwrap());

        let format = "%ci:%cp %ST";
        let line = b"10.0.0.1:80 200 extra";
        let end = stop(format, line);
        assert_eq!(end.expected, Expected::End);
        assert_eq!((end.offset, end.found), (15, (15, line.len())));
    }

    #[test]
    fn a_quoted_field_says_so() {
        let quoted = stop("%ci %{+Q}[var(txn.x)] %ST", b"10.0.0.1 abc 200");
        assert_eq!(
            quoted.expected.to_string(),
            "%{+Q}[var(txn.x)] (a sample's value, in double quotes)"
        );
        assert_eq!((quoted.offset, quoted.found), (9, (9, 12)));
        // `%{+Q}o` quotes every field but the numbers.
        let status = stop("%{+Q}o %ci %ST", b"10.0.0.1 abc");
        assert_eq!(status.expected.to_string(), "%ST (a status code)");
    }

    #[test]
    fn no_line_panics() {
        let format = Format::named_or_compiled("httplog").unwrap();
        let custom = Format::named_or_compiled("%ci:%cp [%tr] %{+Q}[var(txn.x)] %ST %hrl").unwrap();
        let mut lines: Vec<Vec<u8>> = (0..HTTPLOG.len()).map(|n| HTTPLOG[..n].to_vec()).collect();
        for at in 0..HTTPLOG.len() {
            for b in [b' ', b'"', b'x', b'{', 0xff] {
                let mut line = HTTPLOG.to_vec();
                line[at] = b;
                lines.push(line);
            }
        }
        for line in &lines {
            for f in [&format, &custom] {
                if let Err(mismatch) = f.extract(line) {
                    let stop = f.explain(line, &mismatch);
                    assert!(stop.offset <= line.len());
                    assert!(stop.found.0 <= stop.found.1 && stop.found.1 <= line.len());
                }
            }
        }
    }
}
