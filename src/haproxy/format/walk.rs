//! Matching one line against a compiled format: where each field's value ends.

use super::store::{custom_labels, store};
use super::{Field, FieldKind, Format, Mismatch, Token};
use crate::haproxy::record::LogRecord;

/// See [`Format::extract`].
pub(super) fn extract<'a>(format: &Format, line: &'a [u8]) -> Result<LogRecord<'a>, Mismatch> {
    let mut walk = Walk {
        format,
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
        (Pass::Search, format.branches),
        (Pass::Cut, format.cut_after.is_some()),
    ];
    for (pass, useful) in passes {
        if !useful {
            continue;
        }
        walk.pass = pass;
        let mut record = LogRecord::empty(format.kind);
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

impl Format {
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
