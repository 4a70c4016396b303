//! Compiling a log-format string into tokens.

use super::{Field, FieldKind, Format, FormatError, Token};
use crate::haproxy::record::EntryKind;
use crate::scan::Needle;

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
    ("t", FieldKind::Other),
    ("tr", FieldKind::Other),
    ("trg", FieldKind::ZonedDate),
    ("trl", FieldKind::ZonedDate),
    ("U", FieldKind::Other),
    ("hrl", FieldKind::CaptureList),
    ("hsl", FieldKind::CaptureList),
    ("sslc", FieldKind::Other),
    ("sslv", FieldKind::Other),
];

fn leak(reason: String) -> &'static str {
    Box::leak(reason.into_boxed_str())
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
    let error = |at: usize, message: String| FormatError {
        format: format.to_string(),
        column: columns
            .get(at)
            .copied()
            .unwrap_or_else(|| format.chars().count()),
        message,
    };
    let mut tokens: Vec<Token> = Vec::new();
    // Flags of every field, as `%{...}o` sets them.
    let mut all = Flags::default();
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
            (Some(Token::Literal { text, needle, .. }), b) => {
                text.push(b);
                *needle = Needle::new(text);
            }
            (_, b) => tokens.push(Token::Literal {
                text: vec![b],
                needle: Needle::new(&[b]),
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
        let mut flags = all;
        if bytes.get(i) == Some(&b'{') {
            let close = bytes[i..]
                .iter()
                .position(|&b| b == b'}')
                .ok_or_else(|| error(start, "this %{ is never closed".into()))?;
            let written = String::from_utf8_lossy(&bytes[i + 1..i + close]).into_owned();
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
                        return Err(error(
                            start + 2,
                            format!("unknown flag {other:?} (known: +Q, -Q, +X, +E)"),
                        ))
                    }
                }
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
                all = flags;
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
            quoted: flags.quoted,
            escaped: flags.escaped,
            hex: flags.hex,
            column,
            reason,
            branches: false,
        }));
        i = name_end;
    }
    if tokens.is_empty() {
        return Err(error(0, "the format is empty".into()));
    }
    for i in 0..tokens.len() {
        let next_is_literal = matches!(tokens.get(i + 1), Some(Token::Literal { .. }));
        if let Token::Field(field) = &mut tokens[i] {
            field.branches = match field.kind {
                FieldKind::Sample | FieldKind::CaptureList => true,
                FieldKind::ClientIp => next_is_literal,
                kind => field.quoted && !field.escaped && kind.raw(),
            };
        }
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
        branches: tokens
            .iter()
            .any(|t| matches!(t, Token::Field(f) if f.branches)),
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
