//! The operator's own HAProxy `log-format`, compiled once into an extractor.
//!
//! `compile` takes a format exactly as written after `log-format` in haproxy.cfg (HAProxy's
//! quoting rules apply: `"..."`, `'...'`, `\ `), and turns it into a list of tokens:
//! literal text, separators and fields. `Format::extract` then walks a line along those
//! tokens, without allocating, and fills a `LogRecord`.
//!
//! HAProxy 2.6's log builder decides how a line reads back:
//! - a run of spaces in the format is a *separator*: HAProxy writes one space, and only
//!   when the last thing written was not already a space. Every field writes something
//!   (`-` for an absent value, possibly an empty string, as `%HQ` without a query), except
//!   the capture aliases `%hr %hs %hrl %hsl` when nothing is captured: those take their
//!   separator with them;
//! - with `+Q`, text is written in double quotes, numbers never are. Request lines, paths
//!   and captures are encoded (a quote becomes `#22`), but a sample's value is written as
//!   it is: `"Agent "x" \"` is one quoted User-Agent. `+E` escapes quotes and backslashes;
//! - `%hrl`/`%hsl` write one value per capture, separated by spaces, each quoted on its
//!   own with `+Q`; `%T %Tl %trg %trl` are dates with a zone (two words).
//!
//! A field ends where the next literal begins (the first occurrence), or at the next
//! space. Some have more than one possible end: a raw quoted value (at any quote followed
//! by what the format says comes next), a sample (its value may hold spaces), a capture
//! list (as many values as fit), an address (IPv6 holds colons: the last occurrence of
//! what follows among the address's characters first). Those are tried in turn, the
//! likeliest first, when a line does not read the likeliest way.

use std::borrow::Cow;
use std::fmt;

use super::record::{EntryKind, LogRecord, MAX_CUSTOM_LABELS};
use super::uri::request_path;
use crate::scan::{is_status, number, plus, split_on, utf8_prefix, Needle};

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
    /// A valid alias whose value no metric uses (`%ID`, `%ac`, `%tr` ...).
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
        let mut walk = Walk {
            format: self,
            line,
            attempts: MAX_ATTEMPTS,
            pass: Pass::Likeliest,
            furthest: None,
        };
        // HAProxy does not start a line with a separator.
        let start = Cursor {
            pos: 0,
            last_was_space: true,
            field: 0,
            path_seen: false,
            open: false,
        };
        let passes = [
            (Pass::Likeliest, true),
            (Pass::Search, self.branches),
            (Pass::Cut, self.cut_after.is_some()),
        ];
        for (pass, useful) in passes {
            if !useful {
                continue;
            }
            walk.pass = pass;
            let mut record = LogRecord::empty(self.kind);
            if walk.tokens(0, start, &mut record).is_some() {
                record.truncated = pass == Pass::Cut;
                return Ok(record);
            }
        }
        Err(walk.furthest.unwrap_or(Mismatch {
            reason: "trailing_data",
            offset: 0,
        }))
    }

    fn mismatch(&self, token: usize, offset: usize) -> Mismatch {
        Mismatch {
            reason: self.tokens[token].reason(),
            offset,
        }
    }

    /// Where the value of field `i` (at `pos`) may end: the first place when `prev` is
    /// `None`, else the next place after `prev`; `None` when there is no (other) place.
    /// In a line that may be `cut` short, free text with no place to end runs to the end.
    #[inline(always)]
    fn candidate(
        &self,
        i: usize,
        field: &Field,
        line: &[u8],
        pos: usize,
        prev: Option<Candidate>,
        cut: bool,
    ) -> Option<Candidate> {
        let rest = &line[pos..];
        let following = self.tokens.get(i + 1..).unwrap_or_default();
        let next = following.first();
        // Offsets below are relative to `pos`.
        let at = |start: usize, value_end: usize, end: usize| Candidate {
            value: (pos + start, pos + value_end),
            end: pos + end,
            wrote: true,
        };
        let nothing = Candidate {
            value: (pos, pos),
            end: pos,
            wrote: false,
        };
        let only = |c: Option<Candidate>| if prev.is_none() { c } else { None };
        let prev_end = prev.map(|p| p.end - pos);
        if field.kind == FieldKind::Captures {
            // `{a|b}` (in quotes with +Q), or nothing at all when nothing was captured.
            let open: &[u8] = if field.quoted { b"\"{" } else { b"{" };
            if !rest.starts_with(open) {
                return only(Some(nothing));
            }
            let close = rest.iter().position(|&b| b == b'}')?;
            let quote = usize::from(field.quoted && rest.get(close + 1) == Some(&b'"'));
            return only(Some(at(open.len() - 1, close + 1, close + 1 + quote)));
        }
        if field.kind == FieldKind::CaptureList && field.quoted {
            // `"a" "b"`: one quoted value per capture (HAProxy encodes quotes inside),
            // nothing when nothing was captured. As many values as possible first.
            if rest.first() != Some(&b'"') {
                return only(Some(nothing));
            }
            let mut best = None;
            let mut j = 0;
            while let Some(close) = rest[j + 1..].iter().position(|&b| b == b'"') {
                let end = j + 1 + close + 1;
                if prev_end.is_some_and(|p| end >= p) {
                    break;
                }
                best = Some(end);
                if !rest[end..].starts_with(b" \"") {
                    break;
                }
                j = end + 1;
            }
            return best.map(|end| at(1, end - 1, end));
        }
        if field.quoted && rest.first() == Some(&b'"') {
            if field.escaped || !field.kind.raw() {
                // `+E` escapes quotes and backslashes; other values never hold a quote.
                if prev.is_some() {
                    return None;
                }
                let mut j = 1;
                while j < rest.len() {
                    match rest[j] {
                        b'\\' if field.escaped => j += 2,
                        b'"' => return Some(at(1, j, j + 1)),
                        _ => j += 1,
                    }
                }
                return None;
            }
            // A raw value in quotes (HAProxy 2.6 does not escape it): any quote after
            // which the line goes on as the format does.
            let mut from = prev_end.unwrap_or(1);
            while let Some(quote) = rest[from..].iter().position(|&b| b == b'"') {
                let j = from + quote;
                if followed_by(following, &rest[j + 1..]) {
                    return Some(at(1, j, j + 1));
                }
                from = j + 1;
            }
            return None;
        }
        if field.quoted && field.kind == FieldKind::Sample {
            // HAProxy writes every sample's value as text: in quotes, `""` when absent.
            return None;
        }
        let word_end = space_from(rest, 0);
        match field.kind {
            FieldKind::RequestLine if !rest.starts_with(b"<BADREQ>") => {
                // Unquoted: `METHOD URI VERSION`, up to what follows the version.
                // Past the next space, if there is one.
                let past = |from: usize| match space_from(rest, from) {
                    space if space < rest.len() => space + 1,
                    _ => from,
                };
                let version = past(past(0));
                let end = match next {
                    Some(Token::Literal { needle, .. }) => {
                        version + needle.find(&rest[version..])?
                    }
                    _ => space_from(rest, version),
                };
                only(Some(at(0, end, end)))
            }
            FieldKind::ZonedDate => {
                // `01/Dec/2026:19:53:06 +0000`: two words.
                let zone = (word_end + 1).min(rest.len());
                let end = match next {
                    Some(Token::Literal { needle, .. }) => zone + needle.find(&rest[zone..])?,
                    _ => space_from(rest, zone),
                };
                only(Some(at(0, end, end)))
            }
            FieldKind::Sample | FieldKind::CaptureList => {
                // Free text, spaces included: wherever what follows occurs, the first
                // first. A list of captures may also have written nothing.
                if prev.is_some_and(|p| !p.wrote) {
                    return None;
                }
                let end = match next {
                    None if prev.is_none() => {
                        Some(rest.len() - rest.iter().rev().take_while(|&&b| b == b' ').count())
                    }
                    None => None,
                    // Each space after which the line goes on as the format does; the
                    // first is the likeliest even when it does not (a line cut there).
                    Some(Token::Separator { .. }) => match prev_end {
                        None => Some(
                            spaces(rest, 0)
                                .find(|&j| followed_by(following, &rest[j..]))
                                .unwrap_or(if cut { rest.len() } else { word_end }),
                        ),
                        Some(p) if p < rest.len() => {
                            spaces(rest, p + 1).find(|&j| followed_by(following, &rest[j..]))
                        }
                        Some(_) => None,
                    },
                    Some(Token::Literal { needle, .. }) => {
                        let from = prev_end.map_or(0, |p| p + 1).min(rest.len());
                        needle.find(&rest[from..]).map(|j| from + j)
                    }
                    // Rejected at compile time: two fields with nothing between them.
                    Some(Token::Field(_)) => None,
                };
                match end {
                    Some(end) => Some(at(0, end, end)),
                    None if field.kind == FieldKind::CaptureList && prev.is_some() => Some(nothing),
                    None => None,
                }
            }
            FieldKind::ClientIp => {
                let Some(Token::Literal { text, needle, .. }) = next else {
                    return only(Some(at(0, word_end, word_end)));
                };
                // IPv6 holds colons: the address ends at the last occurrence of what
                // follows it among the address's characters, then the one before ...
                let run = rest
                    .iter()
                    .position(|&b| !(b.is_ascii_alphanumeric() || b == b':' || b == b'.'))
                    .unwrap_or(rest.len());
                let window = match prev_end {
                    None => (run + text.len()).min(rest.len()),
                    Some(p) => (p + text.len()).saturating_sub(1),
                };
                match needle.rfind(&rest[..window]) {
                    Some(end) => Some(at(0, end, end)),
                    // ... or, outside them, at its first occurrence.
                    None if prev.is_none() => needle.find(rest).map(|end| at(0, end, end)),
                    None => None,
                }
            }
            _ => {
                let end = match next {
                    None | Some(Token::Separator { .. }) => word_end,
                    // Names, numbers, methods and paths hold no space; free-form
                    // aliases (`%ID`, cookies) may.
                    Some(Token::Literal { needle, .. }) => match needle.find(rest)? {
                        end if end > word_end && field.kind != FieldKind::Other => return None,
                        end => end,
                    },
                    Some(Token::Field(_)) => return None,
                };
                only(Some(at(0, end, end)))
            }
        }
    }
}

/// The position of the first space in `text` from `from` on, or its end.
fn space_from(text: &[u8], from: usize) -> usize {
    text[from..]
        .iter()
        .position(|&b| b == b' ')
        .map_or(text.len(), |j| from + j)
}

/// The positions of the spaces in `text` from `from` on, then its end.
fn spaces(text: &[u8], from: usize) -> impl Iterator<Item = usize> + '_ {
    text[from..]
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b' ')
        .map(move |(j, _)| from + j)
        .chain(std::iter::once(text.len()))
}

/// How many places a line may try for its fields in all, before it is rejected.
const MAX_ATTEMPTS: u32 = 256;

/// One place a field's value may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    /// The value, without its quotes: start and end in the line.
    value: (usize, usize),
    /// Where the line goes on after the field.
    end: usize,
    /// Whether HAProxy wrote anything for the field: only capture aliases with nothing
    /// captured write nothing, and leave a run of spaces open.
    wrote: bool,
}

/// Whether `after` (the line after a possible end of a value) may go on with the tokens
/// `next`: the next one, and through a separator the one after it. A line cut short
/// (HAProxy's `len`) also goes on as the format does.
fn followed_by(next: &[Token], after: &[u8]) -> bool {
    match next.first() {
        None => after.iter().all(|&b| b == b' '),
        Some(Token::Separator { .. }) => match after.split_first() {
            Some((b' ', rest)) => rest.is_empty() || begins(next.get(1), rest),
            _ => false,
        },
        Some(token) => begins(Some(token), after),
    }
}

/// Whether `text` may begin with `token`: a literal, or a field that always starts with
/// a quote (a sample with `+Q`); any other field may start with anything.
fn begins(token: Option<&Token>, text: &[u8]) -> bool {
    match token {
        Some(Token::Literal { text: literal, .. }) => {
            text.starts_with(literal) || cut_inside(text, literal)
        }
        Some(Token::Field(field)) if field.quoted && field.kind == FieldKind::Sample => {
            text.first() == Some(&b'"')
        }
        _ => true,
    }
}

/// Whether `rest`, the end of a line, is the start of `literal`: the line was cut inside it.
fn cut_inside(rest: &[u8], literal: &[u8]) -> bool {
    !rest.is_empty() && literal.starts_with(rest)
}

/// Where matching stands between two tokens.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    pos: usize,
    /// The last thing written was a space (or nothing yet): a separator writes nothing.
    last_was_space: bool,
    /// Fields read so far.
    field: usize,
    /// The path label came from `%HU`/`%HP`/`%HPO` already.
    path_seen: bool,
    /// The last field's value ran to the end of the line with nothing to close it: the
    /// line may have been cut inside it.
    open: bool,
}

/// How a line is read: see [`Format::extract`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Each field ends in its likeliest place; whole lines only.
    Likeliest,
    /// Every place of every field, in turn; whole lines only.
    Search,
    /// Each field ends in its likeliest place; the line may end early.
    Cut,
}

/// One line being matched against a format.
struct Walk<'f, 'a> {
    format: &'f Format,
    line: &'a [u8],
    attempts: u32,
    pass: Pass,
    /// The failure furthest into the line, for the rejection reason.
    furthest: Option<Mismatch>,
}

/// What taking one field's value led to.
enum Step {
    Next,
    Cut,
    Fail,
}

impl<'a> Walk<'_, 'a> {
    /// A line that ends before the format does may be counted once `fields_read` fields
    /// are behind, the status among them.
    fn cut_ok(&self, fields_read: usize) -> bool {
        self.pass == Pass::Cut && self.could_be_cut(fields_read)
    }

    fn could_be_cut(&self, fields_read: usize) -> bool {
        self.format
            .cut_after
            .is_some_and(|after| fields_read > after)
    }

    /// Notes where a reading of the line failed; only the likeliest readings give the
    /// reason (another reading of free text often gets further, only to fail later).
    fn fail(&mut self, mismatch: Mismatch) {
        if self.pass != Pass::Search
            && self
                .furthest
                .is_none_or(|furthest| mismatch.offset >= furthest.offset)
        {
            self.furthest = Some(mismatch);
        }
    }

    /// Matches the tokens from `i` on. `Some(cut)` when the rest of the line fits: whole
    /// (`false`) or cut short by HAProxy (`true`).
    fn tokens(&mut self, mut i: usize, mut at: Cursor, record: &mut LogRecord<'a>) -> Option<bool> {
        let format = self.format;
        let line = self.line;
        while let Some(token) = format.tokens.get(i) {
            match token {
                Token::Literal { text, .. } => {
                    if !line[at.pos..].starts_with(text) {
                        // Cut inside the literal; a line ending just before it is more
                        // likely another, shorter format than a cut.
                        let rest = &line[at.pos..];
                        if cut_inside(rest, text) && self.cut_ok(at.field) {
                            return Some(true);
                        }
                        self.fail(format.mismatch(i, at.pos));
                        return None;
                    }
                    at.pos += text.len();
                    at.last_was_space = text.last() == Some(&b' ');
                }
                Token::Separator { .. } => {
                    if !at.last_was_space {
                        // A line that ends where a separator should be ends on a whole
                        // field: that is a shorter format, not a cut. Unless the field ran
                        // to the end of the line unclosed: HAProxy cuts at any byte.
                        if at.pos >= line.len() && at.open && self.cut_ok(at.field) {
                            return Some(true);
                        }
                        if line.get(at.pos) != Some(&b' ') {
                            self.fail(format.mismatch(i, at.pos));
                            return None;
                        }
                        at.pos += 1;
                        at.last_was_space = true;
                    }
                }
                Token::Field(field) => {
                    // Nothing left where a field should start, after a literal or a
                    // separator (never after another field): cut here. (An empty last
                    // field reads the same and is counted too, marked cut; captures
                    // write nothing when there are none, as CLF lines end.)
                    let writes =
                        !matches!(field.kind, FieldKind::Captures | FieldKind::CaptureList);
                    if at.pos >= line.len() && i > 0 && writes && self.could_be_cut(at.field) {
                        if self.pass == Pass::Cut {
                            return Some(true);
                        }
                        self.fail(format.mismatch(i, at.pos));
                        return None;
                    }
                    let Some(first) =
                        format.candidate(i, field, line, at.pos, None, self.pass == Pass::Cut)
                    else {
                        // The field runs to the end of a cut line: use what is there.
                        if self.cut_ok(at.field) {
                            let rest = &line[at.pos..];
                            let rest = match field.quoted {
                                true => rest.strip_prefix(b"\"").unwrap_or(rest),
                                false => rest,
                            };
                            let _ = store(field, rest, record, &mut at.path_seen, format);
                            custom_labels(format, field, at.field, rest, record);
                            return Some(true);
                        }
                        self.fail(format.mismatch(i, at.pos));
                        return None;
                    };
                    if !field.branches || self.pass != Pass::Search {
                        match self.take(i, field, first, &mut at, record) {
                            Step::Next => {}
                            Step::Cut => return Some(true),
                            Step::Fail => return None,
                        }
                    } else {
                        let saved = record.clone();
                        let mut candidate = Some(first);
                        while let Some(c) = candidate {
                            if self.attempts == 0 {
                                self.fail(format.mismatch(i, at.pos));
                                return None;
                            }
                            self.attempts -= 1;
                            let mut after = at;
                            let matched = match self.take(i, field, c, &mut after, record) {
                                Step::Next => self.tokens(i + 1, after, record),
                                Step::Cut => Some(true),
                                Step::Fail => None,
                            };
                            if matched.is_some() {
                                return matched;
                            }
                            record.clone_from(&saved);
                            candidate = format.candidate(i, field, line, at.pos, Some(c), false);
                        }
                        return None;
                    }
                }
            }
            i += 1;
        }
        // HAProxy may end a line with a space (the CLF formats do).
        if line[at.pos..].iter().any(|&b| b != b' ') {
            self.fail(Mismatch {
                reason: "trailing_data",
                offset: at.pos,
            });
            return None;
        }
        Some(false)
    }

    /// Takes candidate `c` as the value of field `i`.
    #[inline(always)]
    fn take(
        &mut self,
        i: usize,
        field: &Field,
        c: Candidate,
        at: &mut Cursor,
        record: &mut LogRecord<'a>,
    ) -> Step {
        let format = self.format;
        let value = &self.line[c.value.0..c.value.1];
        if c.wrote {
            at.last_was_space = false;
        }
        at.open = c.value.1 == c.end && c.end >= self.line.len() && c.end > c.value.0;
        at.pos = c.end;
        if store(field, value, record, &mut at.path_seen, format).is_none() {
            // A value cut in the middle (`0/` for `%sq/%bq`) is no bad value.
            if at.pos >= self.line.len() && self.cut_ok(at.field) {
                return Step::Cut;
            }
            self.fail(format.mismatch(i, at.pos));
            return Step::Fail;
        }
        custom_labels(format, field, at.field, value, record);
        at.field += 1;
        Step::Next
    }
}

/// Fills the custom label slots that field number `number` feeds with its `value`.
#[inline(always)]
fn custom_labels<'a>(
    format: &Format,
    field: &Field,
    number: usize,
    value: &'a [u8],
    record: &mut LogRecord<'a>,
) {
    if format.custom.is_empty() {
        return;
    }
    for custom in format.custom.iter().filter(|c| c.field == number) {
        let value = match custom.capture {
            Some(n) => capture(field, value, n),
            None => value,
        };
        record.custom[custom.slot] = utf8_prefix(value);
    }
}

/// The `n`-th value of a capture block `{a|b|c}` or of a capture list (`a" "b` quoted,
/// `a b` not); empty if there is none.
fn capture<'v>(field: &Field, value: &'v [u8], n: usize) -> &'v [u8] {
    if field.kind == FieldKind::CaptureList {
        let values = match field.quoted {
            true => split_on(value, b"\" \"").nth(n),
            false => value.split(|&b| b == b' ').nth(n),
        };
        return values.unwrap_or_default();
    }
    let inner = value
        .strip_prefix(b"{")
        .and_then(|b| b.strip_suffix(b"}"))
        .unwrap_or(value);
    inner.split(|&b| b == b'|').nth(n).unwrap_or_default()
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
        FieldKind::ClientIp => {
            record.client_ip = match hex_address(field, value) {
                Some(decoded) => Cow::Owned(decoded),
                None => Cow::Borrowed(text(value)?),
            }
        }
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
        FieldKind::Captures
        | FieldKind::CaptureList
        | FieldKind::ZonedDate
        | FieldKind::Other
        | FieldKind::Sample => {}
    }
    Some(())
}

/// An address HAProxy logged in hexadecimal (`+X`): 8 digits for IPv4, 32 for IPv6.
fn hex_address(field: &Field, value: &[u8]) -> Option<String> {
    if !field.hex {
        return None;
    }
    let digits = std::str::from_utf8(value).ok()?;
    match digits.len() {
        8 => u32::from_str_radix(digits, 16)
            .ok()
            .map(|ip| std::net::Ipv4Addr::from(ip).to_string()),
        32 => u128::from_str_radix(digits, 16)
            .ok()
            .map(|ip| std::net::Ipv6Addr::from(ip).to_string()),
        _ => None,
    }
}

fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok()
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

#[cfg(test)]
mod tests;
