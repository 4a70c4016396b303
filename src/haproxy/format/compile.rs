//! Compiling a log-format string into tokens.

use super::{Field, FieldKind, Format, FormatError, Token};
use crate::haproxy::record::EntryKind;
use crate::scan::{memchr, Needle};

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
    ("T", FieldKind::ZonedDate),
    ("Td", FieldKind::Other),
    ("Th", FieldKind::Other),
    ("Ti", FieldKind::Other),
    ("Tl", FieldKind::ZonedDate),
    ("Ts", FieldKind::Other),
    ("Tu", FieldKind::Other),
    ("t", FieldKind::AcceptDate),
    ("tr", FieldKind::AcceptDate),
    ("trg", FieldKind::ZonedDate),
    ("trl", FieldKind::ZonedDate),
    ("U", FieldKind::Other),
    ("hrl", FieldKind::CaptureList),
    ("hsl", FieldKind::CaptureList),
    ("sslc", FieldKind::Other),
    ("sslv", FieldKind::Other),
];

/// Past this many distinct rejection reasons in one process, a new one is
/// [`MISMATCH`]: a configuration has a few dozen, and compiling formats without end (as a
/// fuzzer does) must not grow the table without end.
const MAX_REASONS: usize = 4096;

/// The reason of a mismatch once [`MAX_REASONS`] are made.
pub const MISMATCH: &str = "format_mismatch";

/// A rejection reason, made once per distinct text: reasons are label values for the life
/// of the process, so each is kept in one table (reachable, never dropped) and shared by
/// every format that has it.
fn intern(reason: String) -> &'static str {
    static REASONS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
        std::sync::LazyLock::new(Default::default);
    let mut reasons = REASONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&known) = reasons.get(reason.as_str()) {
        return known;
    }
    if reasons.len() >= MAX_REASONS {
        return MISMATCH;
    }
    let made: &'static str = Box::leak(reason.into_boxed_str());
    reasons.insert(made);
    made
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

/// A field's options: `+Q`, `+E`, `+X`.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    quoted: bool,
    escaped: bool,
    hex: bool,
}

/// Compiles a log-format string.
pub fn compile(format: &str) -> Result<Format, FormatError> {
    let (bytes, columns) = unquote(format)?;
    let lexer = Lexer {
        format,
        bytes: &bytes,
        columns: &columns,
        tokens: Vec::new(),
        text: None,
        all: Flags::default(),
    };
    let mut tokens = lexer.tokens()?;
    mark_branches(&mut tokens);
    Ok(assemble(format, tokens))
}

/// The unquoted format, cut into tokens from left to right.
struct Lexer<'a> {
    /// The format as given, for error messages.
    format: &'a str,
    bytes: &'a [u8],
    /// The column in `format` of each byte of `bytes`.
    columns: &'a [usize],
    tokens: Vec<Token>,
    /// Literal text read but not yet a token, and where it starts.
    text: Option<(Vec<u8>, usize)>,
    /// Flags of every field, as `%{...}o` sets them.
    all: Flags,
}

impl Lexer<'_> {
    /// An error at byte `at` of the unquoted format (its end if past it).
    fn error(&self, at: usize, message: impl Into<String>) -> FormatError {
        FormatError {
            format: self.format.to_string(),
            column: self
                .columns
                .get(at)
                .copied()
                .unwrap_or_else(|| self.format.chars().count()),
            message: message.into(),
        }
    }

    /// The rejection reason of a literal or separator at byte `at`: its column.
    fn reason_at(&self, at: usize) -> &'static str {
        intern(format!(
            "format_mismatch_at_col_{}",
            self.columns.get(at).map_or(0, |c| c + 1)
        ))
    }

    fn tokens(mut self) -> Result<Vec<Token>, FormatError> {
        let mut i = 0;
        while let Some(&b) = self.bytes.get(i) {
            i = match b {
                b'%' => self.percent(i)?,
                b => {
                    self.literal(b, i);
                    i + 1
                }
            };
        }
        self.end_text();
        if self.tokens.is_empty() {
            return Err(self.error(0, "the format is empty"));
        }
        Ok(self.tokens)
    }

    /// Byte `b` of literal text, at `at`: a space is a separator (a run of them is
    /// one), anything else literal text.
    fn literal(&mut self, b: u8, at: usize) {
        if b != b' ' {
            self.text.get_or_insert_with(|| (Vec::new(), at)).0.push(b);
            return;
        }
        self.end_text();
        if !matches!(self.tokens.last(), Some(Token::Separator { .. })) {
            let reason = self.reason_at(at);
            self.tokens.push(Token::Separator { reason });
        }
    }

    /// The literal text read so far becomes a token.
    fn end_text(&mut self) {
        if let Some((text, at)) = self.text.take() {
            self.tokens.push(Token::Literal {
                needle: Needle::new(&text),
                text,
                reason: self.reason_at(at),
            });
        }
    }

    /// What a `%` at `start` begins: `%%`, `%{flags}o`, or a field with its flags.
    /// Returns where the format goes on.
    fn percent(&mut self, start: usize) -> Result<usize, FormatError> {
        let mut i = start + 1;
        if self.bytes.get(i) == Some(&b'%') {
            self.literal(b'%', start);
            return Ok(i + 1);
        }
        let mut flags = self.all;
        if self.bytes.get(i) == Some(&b'{') {
            i = self.flags(start, i, &mut flags)?;
        }
        let (kind, name_end) = if self.bytes.get(i) == Some(&b'[') {
            (FieldKind::Sample, self.sample_end(i)? + 1)
        } else {
            match self.alias(start, i)? {
                (Some(kind), end) => (kind, end),
                (None, end) => {
                    // `%{+Q}o`: the flags apply to every field after it.
                    self.all = flags;
                    return Ok(end);
                }
            }
        };
        self.field(start, kind, name_end, flags)?;
        Ok(name_end)
    }

    /// `{+Q,-E ...}` at `open`, after the `%` at `start`, applied to `flags`. Returns
    /// where the format goes on.
    fn flags(&self, start: usize, open: usize, flags: &mut Flags) -> Result<usize, FormatError> {
        let close = memchr(b'}', &self.bytes[open..])
            .ok_or_else(|| self.error(start, "this %{ is never closed"))?;
        let written = String::from_utf8_lossy(&self.bytes[open + 1..open + close]).into_owned();
        for flag in written.split(',').map(str::trim) {
            match flag {
                "+Q" => flags.quoted = true,
                "-Q" => flags.quoted = false,
                "+E" => flags.escaped = true,
                "-E" => flags.escaped = false,
                "+X" => flags.hex = true,
                "-X" => flags.hex = false,
                "+json" | "-json" | "+cbor" | "" => {}
                other => {
                    return Err(self.error(
                        start + 2,
                        format!("unknown flag {other:?} (known: +Q, -Q, +X, +E)"),
                    ))
                }
            }
        }
        Ok(open + close + 1)
    }

    /// The `]` that closes the sample `[...]` at `open` (brackets and parentheses nest).
    fn sample_end(&self, open: usize) -> Result<usize, FormatError> {
        let mut depth = 0;
        let mut end = None;
        for (j, &b) in self.bytes[open..].iter().enumerate() {
            match b {
                b'[' | b'(' => depth += 1,
                b']' | b')' => {
                    depth -= 1;
                    if depth == 0 && b == b']' {
                        end = Some(open + j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| self.error(open, "this %[ is never closed"))?;
        if end == open + 1 {
            return Err(self.error(open, "empty sample expression"));
        }
        Ok(end)
    }

    /// The alias at `i`, after the `%` at `start`: its kind (`None` for `o`) and where
    /// it ends.
    fn alias(&self, start: usize, i: usize) -> Result<(Option<FieldKind>, usize), FormatError> {
        let len = self.bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let alias = std::str::from_utf8(&self.bytes[i..i + len]).unwrap_or_default();
        if alias == "o" {
            return Ok((None, i + len));
        }
        match ALIASES.iter().find(|(name, _)| *name == alias) {
            Some((_, kind)) => Ok((Some(*kind), i + len)),
            None if len == 0 => {
                Err(self.error(start, "% must be followed by an alias, {flags} or [sample]"))
            }
            None => Err(self.error(i, format!("unknown log-format alias %{alias}"))),
        }
    }

    /// The field written from `start` to `name_end`.
    fn field(
        &mut self,
        start: usize,
        kind: FieldKind,
        name_end: usize,
        flags: Flags,
    ) -> Result<(), FormatError> {
        self.end_text();
        if matches!(self.tokens.last(), Some(Token::Field(_))) {
            return Err(self.error(
                start,
                "two fields with nothing between them: where the first ends cannot be told",
            ));
        }
        let text = String::from_utf8_lossy(&self.bytes[start..name_end]).into_owned();
        let column = self.columns.get(start).copied().unwrap_or_default();
        // One reason per field, made once: the label value of rejected lines.
        let reason = intern(format!("format_mismatch_at_{}_col_{}", text, column + 1));
        self.tokens.push(Token::Field(Field {
            kind,
            text,
            quoted: flags.quoted,
            escaped: flags.escaped,
            hex: flags.hex,
            column,
            reason,
            branches: false,
        }));
        Ok(())
    }
}

/// Marks the fields whose value may end in more than one place (see `ends`).
fn mark_branches(tokens: &mut [Token]) {
    for i in 0..tokens.len() {
        let next_is_literal = matches!(tokens.get(i + 1), Some(Token::Literal { .. }));
        if let Some(Token::Field(field)) = tokens.get_mut(i) {
            field.branches = match field.kind {
                FieldKind::Sample | FieldKind::CaptureList => true,
                FieldKind::ClientIp => next_is_literal,
                kind => field.quoted && !field.escaped && kind.raw(),
            };
        }
    }
}

/// The format of these tokens: whether it is HTTP's, and which of its fields give the
/// timers and the path that more than one field may give.
fn assemble(source: &str, tokens: Vec<Token>) -> Format {
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
    Format {
        source: source.to_string(),
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
        branches: tokens
            .iter()
            .any(|t| matches!(t, Token::Field(f) if f.branches)),
        tokens,
        custom: Vec::new(),
    }
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
