//! The operator's own HAProxy `log-format`, compiled once into an extractor.
//!
//! `compile` takes a format exactly as written after `log-format` in haproxy.cfg (HAProxy's
//! quoting rules apply: `"..."`, `'...'`, `\ `), and turns it into a list of tokens:
//! literal text, separators and fields. `Format::extract` then walks a line along those
//! tokens, without allocating, and fills a `LogRecord`.
//!
//! `compile.rs` makes the tokens, `walk.rs` walks a line along them, `ends.rs` says
//! where each field's value may end, `store.rs` puts the values into the record,
//! `explain.rs` tells `check-config` where a line stopped matching. For operators:
//! docs/log-formats.md, "Your own log-format".

use std::fmt;

use super::record::{EntryKind, LogRecord, MAX_CUSTOM_LABELS};
use crate::scan::Needle;

mod compile;
mod ends;
mod explain;
mod store;
mod walk;

pub use compile::compile;
pub use explain::{Expected, Stop};

/// HAProxy's built-in formats, as written in haproxy.cfg, by the names `option httplog`, `httpslog`, `tcplog` and
/// `httplog clf` give them (configuration.txt, sections 8.2.2 to 8.2.5; `tcplog-clf` is
/// the one HAProxy 3.0 added).
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "httplog",
        "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r",
    ),
    (
        "httpslog",
        "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r %[fc_err]/%[ssl_fc_err,hex]/%[ssl_c_err]/%[ssl_c_ca_err]/%[ssl_fc_is_resumed] %[ssl_fc_sni]/%sslv/%sslc",
    ),
    (
        "tcplog",
        "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq",
    ),
    (
        "clf",
        r#""%{+Q}o %{-Q}ci - - [%trg] %r %ST %B \"\" \"\" %cp %ms %ft %b %s %TR %Tw %Tc %Tr %Ta %tsc %ac %fc %bc %sc %rc %sq %bq %CC %CS %hrl %hsl""#,
    ),
    (
        "httplog-clf",
        r#""%{+Q}o %{-Q}ci - - [%trg] %r %ST %B \"\" \"\" %cp %ms %ft %b %s %TR %Tw %Tc %Tr %Ta %tsc %ac %fc %bc %sc %rc %sq %bq %CC %CS %hrl %hsl""#,
    ),
    (
        "tcplog-clf",
        r#""%{+Q}o %{-Q}ci - - [%T] \"TCP \" 000 %B \"\" \"\" %cp %ms %ft %b %s 0 %Tw %Tc %Tt 0 %ts %ac %fc %bc %sc %rc %sq %bq \"\" \"\"""#,
    ),
];

/// What a field holds, as far as the exporter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    ClientIp,
    ClientPort,
    /// `%ft`: the frontend name with `~` for TLS.
    FrontendTransport,
    Frontend,
    Backend,
    Server,
    RequestWait,
    /// `%Tq`: used as `TR` when the format has no `%TR`.
    TotalRequestWait,
    Queued,
    Connect,
    Response,
    Active,
    /// `%Tt`: used as `Ta` when the format has no `%Ta`.
    Total,
    Status,
    Bytes,
    TerminationState,
    ServerQueue,
    BackendQueue,
    RequestLine,
    Method,
    /// `%HU`, `%HP`: the path label is taken from them.
    Uri,
    /// `%HPO`: the path alone; preferred over `%HU`/`%HP` when both are there.
    PathOnly,
    /// `%ac %fc %bc %sc %rc`: connection counts (`%rc` may have a `+`).
    Count,
    /// `%hr`, `%hs`: `{a|b}` blocks, absent when nothing is captured.
    Captures,
    /// `%hrl`, `%hsl`: one value per capture, separated by spaces (each in quotes with
    /// `+Q`), absent when nothing is captured.
    CaptureList,
    /// `%T`, `%Tl`, `%trg`, `%trl`: a date with its zone, `01/Dec/2026:19:53:06 +0000`.
    ZonedDate,
    /// `%t`, `%tr`: the accept date without a zone, `25/Nov/2026:02:09:39.343`, for the
    /// forwarders' JSON.
    AcceptDate,
    /// A valid alias whose value no metric uses (`%ID`, `%ac`, `%H` ...).
    Other,
    /// `%[sample,converter...]`.
    Sample,
}

impl FieldKind {
    /// Whether HAProxy writes the value as it is, so that with `+Q` (and without `+E`) it
    /// may hold quotes: samples and free-form aliases (`%ID`, cookies). Request lines,
    /// paths and captures are encoded (`#22`), names and numbers hold no quotes.
    fn raw(self) -> bool {
        matches!(self, FieldKind::Sample | FieldKind::Other)
    }
}

/// One token of a compiled format.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// Text without spaces, matched exactly.
    Literal {
        text: Vec<u8>,
        /// `text`, for the search of where the field before it ends.
        needle: Needle,
        reason: &'static str,
    },
    /// A run of spaces: one space, unless the last thing written was a space.
    Separator {
        reason: &'static str,
    },
    Field(Field),
}

impl Token {
    /// The rejection reason for a line that stops matching at this token: the field, or
    /// the column of the literal text, in the format as given. One string per token,
    /// made once at start-up, so the label stays bounded.
    fn reason(&self) -> &'static str {
        match self {
            Token::Literal { reason, .. } | Token::Separator { reason } => reason,
            Token::Field(field) => field.reason,
        }
    }
}

/// A field of the format.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub kind: FieldKind,
    /// As written, e.g. `%{+Q}r` or `%[var(txn.route)]`: how `HLE_CUSTOM_LABELS` names it.
    pub text: String,
    /// Written in double quotes (`+Q`).
    pub quoted: bool,
    /// Quotes and backslashes escaped with a backslash (`+E`).
    pub escaped: bool,
    /// Addresses and numbers in hexadecimal (`+X`).
    pub hex: bool,
    /// Whether the value may end in more than one place (see [`Format::extract`]).
    branches: bool,
    /// Column of the `%` in the format as given (for error messages).
    pub column: usize,
    /// The rejection reason for a line that does not match here.
    reason: &'static str,
}

/// A format the compiler cannot use, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub format: String,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for FormatError {
    /// The format, and a caret under the offending column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.format.chars().take(self.column).collect();
        writeln!(f, "{} (column {})", self.message, self.column + 1)?;
        writeln!(f, "    {}", self.format)?;
        write!(f, "    {}^", " ".repeat(prefix.chars().count()))
    }
}

impl std::error::Error for FormatError {}

/// A compiled log-format.
#[derive(Debug, Clone, PartialEq)]
pub struct Format {
    /// The name (`httplog` ...) or the format as given.
    pub source: String,
    tokens: Vec<Token>,
    kind: EntryKind,
    /// Which timer fields stand for `TR` and for the session timer.
    request_wait: FieldKind,
    session: FieldKind,
    /// Which field the path label comes from.
    path: Option<FieldKind>,
    /// Fields that fill custom label slots: (field number, slot, capture index).
    custom: Vec<CustomField>,
    /// A line cut short (HAProxy's `len`, a ring's `maxlen`) is still counted once this
    /// field, the status (or, without one, the bytes), has been read; `None`: never.
    cut_after: Option<usize>,
    /// Some field may end in more than one place.
    branches: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CustomField {
    field: usize,
    slot: usize,
    /// For `%hr#N`: the N-th value of the `{a|b}` block.
    capture: Option<usize>,
}

/// Why a line did not match; the reason is bounded (one per token of the format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    pub reason: &'static str,
    /// Where in the line matching stopped.
    pub offset: usize,
}

impl Format {
    /// The built-in format with this name, or the format string compiled.
    pub fn named_or_compiled(value: &str) -> Result<Format, FormatError> {
        match BUILT_IN.iter().find(|(name, _)| *name == value.trim()) {
            Some((name, format)) => {
                let mut compiled = compile(format)?;
                compiled.source = name.to_string();
                Ok(compiled)
            }
            None => compile(value),
        }
    }

    /// The fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.tokens.iter().filter_map(|t| match t {
            Token::Field(f) => Some(f),
            _ => None,
        })
    }

    /// Makes the fields named in `fields` fill the custom slots of the records, slot `i`
    /// for `fields[i]`; see `Parser::bind_custom`. Returns which fields this format has.
    pub fn bind_custom(&mut self, fields: &[&str]) -> Vec<bool> {
        let texts: Vec<String> = self.fields().map(|f| f.text.clone()).collect();
        self.custom.clear();
        let mut found = Vec::with_capacity(fields.len());
        for (slot, wanted) in fields.iter().enumerate() {
            let (text, capture) = match wanted.rsplit_once('#') {
                Some((text, n)) if n.parse::<usize>().is_ok() => (text, n.parse().ok()),
                _ => (*wanted, None),
            };
            let field = texts.iter().position(|t| *t == text);
            if let Some(field) = field {
                self.custom.push(CustomField {
                    field,
                    slot: slot.min(MAX_CUSTOM_LABELS - 1),
                    capture,
                });
            }
            found.push(field.is_some());
        }
        found
    }

    /// Matches `line` (the syslog message) and extracts a record.
    ///
    /// Most fields end in exactly one place. Where a value may itself hold what follows it
    /// in the format (a raw quoted sample, a list of captures, an address before `:`),
    /// the likeliest place is tried first, in one pass over the line that reads nearly
    /// every line. Only a line that does not fit that way is searched: each place in turn,
    /// keeping the first reading of the whole line that fits, within `MAX_ATTEMPTS`.
    ///
    /// Only a line that fits no way whole is read as one HAProxy cut short (`len`), and
    /// then with each field ending in its likeliest place: reading a long line's extra
    /// text into free-form fields would otherwise make most bad lines look cut. The
    /// rejection reason tells where the likeliest reading stopped.
    pub fn extract<'a>(&self, line: &'a [u8]) -> Result<LogRecord<'a>, Mismatch> {
        walk::extract(self, line)
    }
}

#[cfg(test)]
mod tests;
