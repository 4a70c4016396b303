//! The operator's own HAProxy `log-format`, compiled once into an extractor.
//!
//! `compile` takes a format exactly as written after `log-format` in haproxy.cfg (HAProxy's
//! quoting rules apply: `"..."`, `'...'`, `\ `), and turns it into a list of tokens:
//! literal text, separators and fields. `Format::extract` then walks a line along those
//! tokens, in one pass and without allocating, and fills a `LogRecord`.
//!
//! Two rules of HAProxy's log builder shape the matcher:
//! - a run of spaces in the format is a *separator*: HAProxy writes one space, and only
//!   when the last thing written was not already a space, so an empty field (`%hr` without
//!   captures) takes its separator with it;
//! - with `+Q`, string fields are written in double quotes (HAProxy escapes quotes inside);
//!   numbers never are.
//!
//! A field ends where the next literal begins (the first occurrence), except addresses,
//! which end at the last occurrence within their word (IPv6 has colons), capture blocks,
//! which end at their closing brace, and an unquoted request line, which is three words.

use std::fmt;

use super::parser::{find, is_status, number, plus, request_path};
use super::record::{EntryKind, LogRecord, MAX_CUSTOM_LABELS};

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
    /// A valid alias whose value no metric uses (`%ID`, `%ac`, `%tr` ...).
    Other,
    /// `%[sample,converter...]`.
    Sample,
}

/// Every alias HAProxy 2.6 documents (configuration.txt 8.2.4), and what it holds.
const ALIASES: &[(&str, FieldKind)] = &[
    ("ci", FieldKind::ClientIp),
    ("cp", FieldKind::ClientPort),
    ("ft", FieldKind::FrontendTransport),
    ("f", FieldKind::Frontend),
    ("b", FieldKind::Backend),
    ("s", FieldKind::Server),
    ("TR", FieldKind::RequestWait),
    ("Tq", FieldKind::TotalRequestWait),
    ("Tw", FieldKind::Queued),
    ("Tc", FieldKind::Connect),
    ("Tr", FieldKind::Response),
    ("Ta", FieldKind::Active),
    ("Tt", FieldKind::Total),
    ("ST", FieldKind::Status),
    ("B", FieldKind::Bytes),
    ("tsc", FieldKind::TerminationState),
    ("ts", FieldKind::TerminationState),
    ("sq", FieldKind::ServerQueue),
    ("bq", FieldKind::BackendQueue),
    ("r", FieldKind::RequestLine),
    ("HM", FieldKind::Method),
    ("HU", FieldKind::Uri),
    ("HP", FieldKind::Uri),
    ("HPO", FieldKind::PathOnly),
    ("hr", FieldKind::Captures),
    ("hs", FieldKind::Captures),
    // Used by no metric, but part of the line.
    ("ac", FieldKind::Count),
    ("fc", FieldKind::Count),
    ("bc", FieldKind::Count),
    ("sc", FieldKind::Count),
    ("rc", FieldKind::Count),
    ("bi", FieldKind::Other),
    ("bp", FieldKind::Other),
    ("fi", FieldKind::Other),
    ("fp", FieldKind::Other),
    ("si", FieldKind::Other),
    ("sp", FieldKind::Other),
    ("CC", FieldKind::Other),
    ("CS", FieldKind::Other),
    ("H", FieldKind::Other),
    ("HQ", FieldKind::Other),
    ("HV", FieldKind::Other),
    ("ID", FieldKind::Other),
    ("lc", FieldKind::Other),
    ("ms", FieldKind::Other),
    ("pid", FieldKind::Other),
    ("rt", FieldKind::Other),
    ("T", FieldKind::Other),
    ("Td", FieldKind::Other),
    ("Th", FieldKind::Other),
    ("Ti", FieldKind::Other),
    ("Tl", FieldKind::Other),
    ("Ts", FieldKind::Other),
    ("Tu", FieldKind::Other),
    ("t", FieldKind::Other),
    ("tr", FieldKind::Other),
    ("trg", FieldKind::Other),
    ("trl", FieldKind::Other),
    ("U", FieldKind::Other),
    ("hrl", FieldKind::Other),
    ("hsl", FieldKind::Other),
    ("sslc", FieldKind::Other),
    ("sslv", FieldKind::Other),
];

/// One token of a compiled format.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// Text without spaces, matched exactly.
    Literal {
        text: Vec<u8>,
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

fn leak(reason: String) -> &'static str {
    Box::leak(reason.into_boxed_str())
}

/// A field of the format.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub kind: FieldKind,
    /// As written, e.g. `%{+Q}r` or `%[var(txn.route)]`: how `HLE_CUSTOM_LABELS` names it.
    pub text: String,
    /// Written in double quotes (`+Q`).
    pub quoted: bool,
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
    pub fn extract<'a>(&self, line: &'a [u8]) -> Result<LogRecord<'a>, Mismatch> {
        let mut record = LogRecord::empty(self.kind);
        let mut pos = 0;
        // HAProxy does not start a line with a separator.
        let mut last_was_space = true;
        let mut field_number = 0;
        let mut path_seen = false;
        for (i, token) in self.tokens.iter().enumerate() {
            match token {
                Token::Literal { text, .. } => {
                    if !line[pos..].starts_with(text) {
                        // Cut inside the literal; a line ending just before it is more
                        // likely another, shorter format than a cut.
                        let rest = &line[pos..];
                        if !rest.is_empty() && text.starts_with(rest) && self.cut_ok(field_number) {
                            return Ok(cut(record));
                        }
                        return Err(self.mismatch(i, pos));
                    }
                    pos += text.len();
                    last_was_space = text.last() == Some(&b' ');
                }
                Token::Separator { .. } => {
                    if !last_was_space {
                        // A line that ends at a separator ends on a whole field: that is a
                        // shorter format, not a cut (HAProxy cuts at any byte).
                        if line.get(pos) != Some(&b' ') {
                            return Err(self.mismatch(i, pos));
                        }
                        pos += 1;
                        last_was_space = true;
                    }
                }
                Token::Field(field) => {
                    // Nothing left where a field should start, after a literal or a
                    // separator (never after another field): cut here. (An empty last
                    // field reads the same and is counted too, marked cut.)
                    if pos >= line.len() && i > 0 && self.cut_ok(field_number) {
                        return Ok(cut(record));
                    }
                    let Some((value, end)) = self.field_value(i, field, line, pos) else {
                        // The field runs to the end of a cut line: use what is there.
                        if self.cut_ok(field_number) {
                            let rest = &line[pos..];
                            let rest = if field.quoted {
                                rest.strip_prefix(b"\"").unwrap_or(rest)
                            } else {
                                rest
                            };
                            let _ = store(field, rest, &mut record, &mut path_seen, self);
                            return Ok(cut(record));
                        }
                        return Err(self.mismatch(i, pos));
                    };
                    // A field that wrote anything (`""` included) ends any run of spaces.
                    if end > pos {
                        last_was_space = false;
                    }
                    pos = end;
                    if store(field, value, &mut record, &mut path_seen, self).is_none() {
                        // A value cut in the middle (`0/` for `%sq/%bq`) is no bad value.
                        if pos >= line.len() && self.cut_ok(field_number) {
                            return Ok(cut(record));
                        }
                        return Err(self.mismatch(i, pos));
                    }
                    for custom in self.custom.iter().filter(|c| c.field == field_number) {
                        let value = match custom.capture {
                            Some(n) => capture(value, n),
                            None => value,
                        };
                        record.custom[custom.slot] =
                            std::str::from_utf8(value).map_err(|_| self.mismatch(i, pos))?;
                    }
                    field_number += 1;
                }
            }
        }
        // HAProxy may end a line with a space (the CLF formats do).
        if line[pos..].iter().any(|&b| b != b' ') {
            return Err(Mismatch {
                reason: "trailing_data",
                offset: pos,
            });
        }
        Ok(record)
    }

    /// A line that ends before the format does may be counted once `fields_read` fields
    /// are behind, the status among them.
    fn cut_ok(&self, fields_read: usize) -> bool {
        self.cut_after.is_some_and(|after| fields_read > after)
    }

    fn mismatch(&self, token: usize, offset: usize) -> Mismatch {
        Mismatch {
            reason: self.tokens[token].reason(),
            offset,
        }
    }

    /// The value of the field at `pos` and where it ends in the line.
    fn field_value<'a>(
        &self,
        i: usize,
        field: &Field,
        line: &'a [u8],
        pos: usize,
    ) -> Option<(&'a [u8], usize)> {
        let rest = &line[pos..];
        if field.quoted && rest.first() == Some(&b'"') {
            let mut j = 1;
            while j < rest.len() {
                match rest[j] {
                    b'\\' => j += 2,
                    b'"' => return Some((&rest[1..j], pos + j + 1)),
                    _ => j += 1,
                }
            }
            return None;
        }
        if field.kind == FieldKind::Captures {
            if rest.first() != Some(&b'{') {
                return Some((&rest[..0], pos));
            }
            let close = rest.iter().position(|&b| b == b'}')?;
            return Some((&rest[..close + 1], pos + close + 1));
        }
        let word_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        if field.kind == FieldKind::RequestLine {
            // Unquoted: `METHOD URI VERSION`, or one word (`<BADREQ>`).
            let mut end = word_end;
            if !rest.starts_with(b"<BADREQ>") {
                for _ in 0..2 {
                    if rest.get(end) == Some(&b' ') {
                        end += 1 + rest[end + 1..]
                            .iter()
                            .position(|&b| b == b' ')
                            .unwrap_or(rest.len() - end - 1);
                    }
                }
            }
            return Some((&rest[..end], pos + end));
        }
        let next = self.tokens.get(i + 1);
        let end = match next {
            // A sample's value may hold spaces; the last one takes the rest of the line.
            None if field.kind == FieldKind::Sample => {
                rest.len() - rest.iter().rev().take_while(|&&b| b == b' ').count()
            }
            None | Some(Token::Separator { .. }) => word_end,
            Some(Token::Literal { text, .. }) if is_address(field.kind) => {
                rfind(&rest[..word_end.max(text.len()).min(rest.len())], text)?
            }
            Some(Token::Literal { text, .. }) => find(rest, text)?,
            // Rejected at compile time: two fields with nothing between them.
            Some(Token::Field(_)) => return None,
        };
        Some((&rest[..end], pos + end))
    }
}

/// A record of a line HAProxy cut short.
fn cut(mut record: LogRecord<'_>) -> LogRecord<'_> {
    record.truncated = true;
    record
}

/// The `n`-th value of a capture block `{a|b|c}`; empty if there is none.
fn capture(block: &[u8], n: usize) -> &[u8] {
    let inner = block
        .strip_prefix(b"{")
        .and_then(|b| b.strip_suffix(b"}"))
        .unwrap_or(block);
    inner.split(|&b| b == b'|').nth(n).unwrap_or_default()
}

fn is_address(kind: FieldKind) -> bool {
    matches!(kind, FieldKind::ClientIp)
}

/// Puts a field's value into the record; `None` if it is malformed.
fn store<'a>(
    field: &Field,
    value: &'a [u8],
    record: &mut LogRecord<'a>,
    path_seen: &mut bool,
    format: &Format,
) -> Option<()> {
    // As in the built-in parser, plus an absent value (`-` or nothing) in a custom format.
    let timer = |v: &[u8]| -> Option<Option<u64>> {
        match plus(v) {
            b"-1" | b"" | b"-" => Some(None),
            v => number(v).map(Some),
        }
    };
    match field.kind {
        FieldKind::ClientIp => record.client_ip = text(value)?,
        FieldKind::ClientPort => record.client_port = text(value)?,
        FieldKind::FrontendTransport | FieldKind::Frontend => {
            record.frontend_name = text(value.strip_suffix(b"~").unwrap_or(value))?
        }
        FieldKind::Backend => record.backend_name = text(value)?,
        FieldKind::Server => record.server_name = text(value)?,
        kind @ (FieldKind::RequestWait | FieldKind::TotalRequestWait) => {
            if kind == format.request_wait {
                record.request_wait = timer(value)?;
            }
        }
        FieldKind::Queued => record.queued = timer(value)?,
        FieldKind::Connect => record.connect = timer(value)?,
        FieldKind::Response => record.response = timer(value)?,
        kind @ (FieldKind::Active | FieldKind::Total) => {
            if kind == format.session {
                record.session = timer(value)?;
            }
        }
        FieldKind::Status => {
            if !is_status(value) {
                return None;
            }
            record.status_code = text(value)?;
        }
        FieldKind::Bytes => record.bytes_read = number(plus(value))?,
        FieldKind::TerminationState => {
            if value.len() < 2 {
                return None;
            }
            record.termination_state = text(&value[..2])?;
        }
        FieldKind::ServerQueue => record.server_queue = number(value)?,
        FieldKind::BackendQueue => record.backend_queue = number(value)?,
        FieldKind::RequestLine => {
            if value != b"<BADREQ>" {
                let mut parts = value.split(|&b| b == b' ');
                record.http_request_method = text(parts.next().unwrap_or_default())?;
                if !*path_seen {
                    record.http_request_path = request_path(parts.next().unwrap_or_default());
                }
            }
        }
        FieldKind::Method => {
            if value != b"<BADREQ>" && value != b"-" {
                record.http_request_method = text(value)?;
            }
        }
        kind @ (FieldKind::Uri | FieldKind::PathOnly) => {
            if Some(kind) == format.path && value != b"<BADREQ>" && value != b"-" {
                record.http_request_path = request_path(value);
                *path_seen = true;
            }
        }
        FieldKind::Count => {
            number(plus(value))?;
        }
        FieldKind::Captures | FieldKind::Other | FieldKind::Sample => {}
    }
    Some(())
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok()
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// Undoes haproxy.cfg quoting (`"..."` with backslash escapes, `'...'` verbatim, `\x`
/// outside quotes) and a leading `log-format` keyword. Each output byte keeps the column
/// it came from, for error messages.
fn unquote(format: &str) -> Result<(Vec<u8>, Vec<usize>), FormatError> {
    let error = |column: usize, message: &str| FormatError {
        format: format.to_string(),
        column,
        message: message.to_string(),
    };
    let chars: Vec<(usize, char)> = format.char_indices().collect();
    let column_of = |byte: usize| format[..byte].chars().count();
    let mut out = Vec::new();
    let mut columns = Vec::new();
    let mut i = 0;
    let start = format.trim_start();
    if let Some(rest) = start.strip_prefix("log-format") {
        if rest.starts_with([' ', '\t']) {
            let skip = format.len() - rest.trim_start().len();
            while i < chars.len() && chars[i].0 < skip {
                i += 1;
            }
        }
    }
    let push = |out: &mut Vec<u8>, columns: &mut Vec<usize>, c: char, byte: usize| {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            out.push(b);
            columns.push(column_of(byte));
        }
    };
    let mut quote: Option<(char, usize)> = None;
    while i < chars.len() {
        let (byte, c) = chars[i];
        match (quote, c) {
            (None, '"' | '\'') => quote = Some((c, byte)),
            (Some((q, _)), c) if c == q => quote = None,
            (Some(('\'', _)), c) => push(&mut out, &mut columns, c, byte),
            (_, '\\') => {
                let Some(&(_, next)) = chars.get(i + 1) else {
                    return Err(error(column_of(byte), "a backslash ends the format"));
                };
                i += 1;
                if next == 'x' {
                    let hex: String = chars.iter().skip(i + 1).take(2).map(|(_, c)| c).collect();
                    let value = u8::from_str_radix(&hex, 16)
                        .map_err(|_| error(column_of(byte), "\\x needs two hex digits"))?;
                    out.push(value);
                    columns.push(column_of(byte));
                    i += 2;
                } else {
                    push(&mut out, &mut columns, next, byte);
                }
            }
            (_, c) => push(&mut out, &mut columns, c, byte),
        }
        i += 1;
    }
    if let Some((q, byte)) = quote {
        return Err(error(column_of(byte), &format!("this {q} is never closed")));
    }
    Ok((out, columns))
}

/// Compiles a log-format string.
pub fn compile(format: &str) -> Result<Format, FormatError> {
    let (bytes, columns) = unquote(format)?;
    let error = |at: usize, message: String| FormatError {
        format: format.to_string(),
        column: columns
            .get(at)
            .copied()
            .unwrap_or_else(|| format.chars().count()),
        message,
    };
    let mut tokens: Vec<Token> = Vec::new();
    let mut quote_all = false;
    let mut i = 0;
    let literal = |tokens: &mut Vec<Token>, b: u8, at: usize| {
        let reason = || {
            leak(format!(
                "format_mismatch_at_col_{}",
                columns.get(at).map_or(0, |c| c + 1)
            ))
        };
        match (tokens.last_mut(), b) {
            (Some(Token::Separator { .. }), b' ') => {}
            (_, b' ') => tokens.push(Token::Separator { reason: reason() }),
            (Some(Token::Literal { text, .. }), b) => text.push(b),
            (_, b) => tokens.push(Token::Literal {
                text: vec![b],
                reason: reason(),
            }),
        }
    };
    while i < bytes.len() {
        if bytes[i] != b'%' {
            literal(&mut tokens, bytes[i], i);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if bytes.get(i) == Some(&b'%') {
            literal(&mut tokens, b'%', start);
            i += 1;
            continue;
        }
        let mut quoted = quote_all;
        let mut flags_given = None;
        if bytes.get(i) == Some(&b'{') {
            let close = bytes[i..]
                .iter()
                .position(|&b| b == b'}')
                .ok_or_else(|| error(start, "this %{ is never closed".into()))?;
            let flags = String::from_utf8_lossy(&bytes[i + 1..i + close]).into_owned();
            for flag in flags.split(',').map(str::trim) {
                match flag {
                    "+Q" => flags_given = Some(true),
                    "-Q" => flags_given = Some(false),
                    "+X" | "-X" | "+E" | "-E" | "+json" | "-json" | "+cbor" | "" => {}
                    other => {
                        return Err(error(
                            start + 2,
                            format!("unknown flag {other:?} (known: +Q, -Q, +X, +E)"),
                        ))
                    }
                }
            }
            if let Some(q) = flags_given {
                quoted = q;
            }
            i += close + 1;
        }
        let (kind, name_end) = if bytes.get(i) == Some(&b'[') {
            let mut depth = 0;
            let mut end = None;
            for (j, &b) in bytes[i..].iter().enumerate() {
                match b {
                    b'[' | b'(' => depth += 1,
                    b']' | b')' => {
                        depth -= 1;
                        if depth == 0 && b == b']' {
                            end = Some(i + j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| error(i, "this %[ is never closed".into()))?;
            if end == i + 1 {
                return Err(error(i, "empty sample expression".into()));
            }
            (FieldKind::Sample, end + 1)
        } else {
            let len = bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_alphabetic())
                .count();
            let alias = std::str::from_utf8(&bytes[i..i + len]).unwrap_or_default();
            if alias == "o" {
                // `%{+Q}o`: the flags apply to every field after it.
                quote_all = flags_given.unwrap_or(quote_all);
                i += len;
                continue;
            }
            match ALIASES.iter().find(|(name, _)| *name == alias) {
                Some((_, kind)) => (*kind, i + len),
                None if len == 0 => {
                    return Err(error(
                        start,
                        "% must be followed by an alias, {flags} or [sample]".into(),
                    ))
                }
                None => return Err(error(i, format!("unknown log-format alias %{alias}"))),
            }
        };
        if matches!(tokens.last(), Some(Token::Field(_))) {
            return Err(error(
                start,
                "two fields with nothing between them: where the first ends cannot be told".into(),
            ));
        }
        let text = String::from_utf8_lossy(&bytes[start..name_end]).into_owned();
        let column = columns.get(start).copied().unwrap_or_default();
        // One reason per field, made once: the label value of rejected lines.
        let reason = leak(format!("format_mismatch_at_{}_col_{}", text, column + 1));
        tokens.push(Token::Field(Field {
            kind,
            text,
            quoted,
            column,
            reason,
        }));
        i = name_end;
    }
    if tokens.is_empty() {
        return Err(error(0, "the format is empty".into()));
    }
    let has = |k: FieldKind| {
        tokens
            .iter()
            .any(|t| matches!(t, Token::Field(f) if f.kind == k))
    };
    let http = [
        FieldKind::Status,
        FieldKind::RequestLine,
        FieldKind::Method,
        FieldKind::Uri,
        FieldKind::PathOnly,
    ]
    .into_iter()
    .any(has);
    Ok(Format {
        source: format.to_string(),
        kind: if http {
            EntryKind::Http
        } else {
            EntryKind::Tcp
        },
        request_wait: if has(FieldKind::RequestWait) {
            FieldKind::RequestWait
        } else {
            FieldKind::TotalRequestWait
        },
        session: if has(FieldKind::Active) {
            FieldKind::Active
        } else {
            FieldKind::Total
        },
        path: if has(FieldKind::PathOnly) {
            Some(FieldKind::PathOnly)
        } else if has(FieldKind::Uri) {
            Some(FieldKind::Uri)
        } else {
            None
        },
        cut_after: field_number_of(&tokens, FieldKind::Status)
            .or_else(|| field_number_of(&tokens, FieldKind::Bytes)),
        tokens,
        custom: Vec::new(),
    })
}

/// The number of the first field of `kind` among the fields.
fn field_number_of(tokens: &[Token], kind: FieldKind) -> Option<usize> {
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Field(f) => Some(f.kind),
            _ => None,
        })
        .position(|k| k == kind)
}

#[cfg(test)]
mod tests;
