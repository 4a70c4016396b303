//! Where a field's value may end in a line: one place for most fields, several for
//! those whose value may hold what follows it.
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

use super::{Field, FieldKind, Format, Token};
use crate::scan::{memchr, memchr_long};

/// Where the value of field `i` (at `pos`) may end: the first place when `prev` is
/// `None`, else the next place after `prev`; `None` when there is no (other) place.
/// In a line that may be `cut` short, free text with no place to end runs to the end.
#[inline(always)]
pub(super) fn candidate(
    format: &Format,
    i: usize,
    field: &Field,
    line: &[u8],
    pos: usize,
    prev: Option<Candidate>,
    cut: bool,
) -> Option<Candidate> {
    let site = Site {
        field,
        rest: &line[pos..],
        pos,
        tokens: &format.tokens,
        i,
        prev,
    };
    // In this order: a kind's own shape first, then quotes, then what follows.
    match field.kind {
        FieldKind::Captures => site.captures(),
        FieldKind::CaptureList if field.quoted => site.quoted_list(),
        _ if field.quoted && site.rest.first() == Some(&b'"') => site.quoted(),
        // HAProxy writes every sample's value as text: in quotes, `""` when absent.
        FieldKind::Sample if field.quoted => None,
        FieldKind::RequestLine if !site.rest.starts_with(b"<BADREQ>") => site.request_line(),
        FieldKind::ZonedDate => site.zoned_date(),
        FieldKind::Sample | FieldKind::CaptureList => site.free_text(cut),
        FieldKind::ClientIp => site.address(),
        _ => site.word(),
    }
}

/// Where a field starts in a line, and what the format has after it: what it takes to
/// say where the field's value may end. One method per kind of field; offsets in them
/// are relative to `pos`.
struct Site<'f, 'l> {
    field: &'f Field,
    /// The line from where the field starts.
    rest: &'l [u8],
    /// Where the field starts in the line.
    pos: usize,
    /// The format's tokens, the field's is number `i`.
    tokens: &'f [Token],
    i: usize,
    /// The place tried before this one; `None` for the first.
    prev: Option<Candidate>,
}

// Every method is inlined into the walk, as the one function they were: they run for
// every field of every line, and as calls they cost the replay of CLF lines 4% more
// (callgrind).
impl Site<'_, '_> {
    #[inline(always)]
    fn next(&self) -> Option<&Token> {
        self.tokens.get(self.i + 1)
    }

    /// The tokens after the field.
    #[inline(always)]
    fn following(&self) -> &[Token] {
        self.tokens.get(self.i + 1..).unwrap_or_default()
    }

    /// The end of the place tried before.
    #[inline(always)]
    fn prev_end(&self) -> Option<usize> {
        self.prev.map(|p| p.end - self.pos)
    }

    /// The value from `start` to `value_end`, the line going on at `end`.
    #[inline(always)]
    fn at(&self, start: usize, value_end: usize, end: usize) -> Candidate {
        Candidate {
            value: (self.pos + start, self.pos + value_end),
            end: self.pos + end,
            wrote: true,
        }
    }

    /// Nothing written for the field.
    #[inline(always)]
    fn nothing(&self) -> Candidate {
        Candidate {
            value: (self.pos, self.pos),
            end: self.pos,
            wrote: false,
        }
    }

    /// `%hr`, `%hs`: `{a|b}` (in quotes with +Q), or nothing at all when nothing was
    /// captured. One place.
    #[inline(always)]
    fn captures(&self) -> Option<Candidate> {
        if self.prev.is_some() {
            return None;
        }
        let open: &[u8] = if self.field.quoted { b"\"{" } else { b"{" };
        if !self.rest.starts_with(open) {
            return Some(self.nothing());
        }
        let close = memchr_long(b'}', self.rest)?;
        let quote = usize::from(self.field.quoted && self.rest.get(close + 1) == Some(&b'"'));
        Some(self.at(open.len() - 1, close + 1, close + 1 + quote))
    }

    /// `%hrl`, `%hsl` with +Q: `"a" "b"`, one quoted value per capture (HAProxy encodes
    /// quotes inside), nothing when nothing was captured. As many values as possible
    /// first, then one fewer each time.
    #[inline(always)]
    fn quoted_list(&self) -> Option<Candidate> {
        let rest = self.rest;
        if rest.first() != Some(&b'"') {
            return if self.prev.is_none() {
                Some(self.nothing())
            } else {
                None
            };
        }
        let prev_end = self.prev_end();
        let mut best = None;
        let mut j = 0;
        while let Some(close) = memchr(b'"', &rest[j + 1..]) {
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
        best.map(|end| self.at(1, end - 1, end))
    }

    /// A value in quotes (+Q), the line at its opening quote.
    #[inline(always)]
    fn quoted(&self) -> Option<Candidate> {
        let rest = self.rest;
        if self.field.escaped || !self.field.kind.raw() {
            // `+E` escapes quotes and backslashes; other values never hold a quote. One
            // place.
            if self.prev.is_some() {
                return None;
            }
            let close = closing_quote(rest, self.field.escaped)?;
            return Some(self.at(1, close, close + 1));
        }
        // A raw value in quotes (HAProxy 2.6 does not escape it): any quote after
        // which the line goes on as the format does.
        let mut from = self.prev_end().unwrap_or(1);
        while let Some(quote) = memchr(b'"', &rest[from..]) {
            let j = from + quote;
            if followed_by(self.following(), &rest[j + 1..]) {
                return Some(self.at(1, j, j + 1));
            }
            from = j + 1;
        }
        None
    }

    /// `%r` unquoted: `METHOD URI VERSION`, up to what follows the version. One place.
    #[inline(always)]
    fn request_line(&self) -> Option<Candidate> {
        if self.prev.is_some() {
            return None;
        }
        let rest = self.rest;
        // Past the next space, if there is one.
        let past = |from: usize| match space_from(rest, from) {
            space if space < rest.len() => space + 1,
            _ => from,
        };
        let version = past(past(0));
        let end = match self.next() {
            Some(Token::Literal { needle, .. }) => version + needle.find(&rest[version..])?,
            _ => space_from(rest, version),
        };
        Some(self.at(0, end, end))
    }

    /// `01/Dec/2026:19:53:06 +0000`: two words. One place.
    #[inline(always)]
    fn zoned_date(&self) -> Option<Candidate> {
        if self.prev.is_some() {
            return None;
        }
        let rest = self.rest;
        let zone = (space_from(rest, 0) + 1).min(rest.len());
        let end = match self.next() {
            Some(Token::Literal { needle, .. }) => zone + needle.find(&rest[zone..])?,
            _ => space_from(rest, zone),
        };
        Some(self.at(0, end, end))
    }

    /// A sample, or a capture list without quotes: free text, spaces included. It ends
    /// wherever what follows occurs, the first first; a list of captures may also have
    /// written nothing.
    #[inline(always)]
    fn free_text(&self, cut: bool) -> Option<Candidate> {
        let rest = self.rest;
        if self.prev.is_some_and(|p| !p.wrote) {
            return None;
        }
        let prev_end = self.prev_end();
        let end = match self.next() {
            None if self.prev.is_none() => {
                Some(rest.len() - rest.iter().rev().take_while(|&&b| b == b' ').count())
            }
            None => None,
            // Each space after which the line goes on as the format does; the first is
            // the likeliest even when it does not (a line cut there).
            Some(Token::Separator { .. }) => match prev_end {
                None => Some(
                    spaces(rest, 0)
                        .find(|&j| followed_by(self.following(), &rest[j..]))
                        .unwrap_or_else(|| if cut { rest.len() } else { space_from(rest, 0) }),
                ),
                Some(p) if p < rest.len() => {
                    spaces(rest, p + 1).find(|&j| followed_by(self.following(), &rest[j..]))
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
            Some(end) => Some(self.at(0, end, end)),
            None if self.field.kind == FieldKind::CaptureList && self.prev.is_some() => {
                Some(self.nothing())
            }
            None => None,
        }
    }

    /// `%ci`. IPv6 holds colons: before a literal, the address ends at the last
    /// occurrence of the literal among the address's characters, then the one before ...
    #[inline(always)]
    fn address(&self) -> Option<Candidate> {
        let rest = self.rest;
        let Some(Token::Literal { text, needle, .. }) = self.next() else {
            if self.prev.is_some() {
                return None;
            }
            let end = space_from(rest, 0);
            return Some(self.at(0, end, end));
        };
        let run = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b':' || b == b'.'))
            .unwrap_or(rest.len());
        let window = match self.prev_end() {
            None => (run + text.len()).min(rest.len()),
            Some(p) => (p + text.len()).saturating_sub(1),
        };
        match needle.rfind(&rest[..window]) {
            Some(end) => Some(self.at(0, end, end)),
            // ... or, outside them, at its first occurrence.
            None if self.prev.is_none() => needle.find(rest).map(|end| self.at(0, end, end)),
            None => None,
        }
    }

    /// Any other field: up to the next space, or to the literal that follows. One place.
    #[inline(always)]
    fn word(&self) -> Option<Candidate> {
        if self.prev.is_some() {
            return None;
        }
        let rest = self.rest;
        let end = match self.next() {
            None | Some(Token::Separator { .. }) => space_from(rest, 0),
            Some(Token::Literal { needle, .. }) => {
                let end = needle.find(rest)?;
                // Names, numbers, methods and paths hold no space; free-form aliases
                // (`%ID`, cookies) may.
                if self.field.kind != FieldKind::Other && memchr(b' ', &rest[..end]).is_some() {
                    return None;
                }
                end
            }
            Some(Token::Field(_)) => return None,
        };
        Some(self.at(0, end, end))
    }
}

/// The quote that closes the value `quoted` starts with (at its opening quote): the
/// next one, or with `+E` the next one no backslash escapes.
fn closing_quote(quoted: &[u8], escaped: bool) -> Option<usize> {
    if !escaped {
        return memchr(b'"', quoted.get(1..)?).map(|j| j + 1);
    }
    let mut j = 1;
    while let Some(&b) = quoted.get(j) {
        match b {
            b'\\' => j += 2,
            b'"' => return Some(j),
            _ => j += 1,
        }
    }
    None
}

/// The position of the first space in `text` from `from` on, or its end.
fn space_from(text: &[u8], from: usize) -> usize {
    memchr(b' ', &text[from..]).map_or(text.len(), |j| from + j)
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

/// One place a field's value may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Candidate {
    /// The value, without its quotes: start and end in the line.
    pub(super) value: (usize, usize),
    /// Where the line goes on after the field.
    pub(super) end: usize,
    /// Whether HAProxy wrote anything for the field: only capture aliases with nothing
    /// captured write nothing, and leave a run of spaces open.
    pub(super) wrote: bool,
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
pub(super) fn cut_inside(rest: &[u8], literal: &[u8]) -> bool {
    !rest.is_empty() && literal.starts_with(rest)
}
