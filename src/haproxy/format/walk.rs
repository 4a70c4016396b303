//! Matching one line against a compiled format: the three passes of `Format::extract`,
//! and the walk along the tokens that each of them makes.

use super::ends::{candidate, cut_inside, Candidate};
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
}

/// How many places a line may try for its fields in all, before it is rejected.
const MAX_ATTEMPTS: u32 = 256;

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

/// What matching one token led to.
enum Flow {
    /// On to the next token.
    Next,
    /// The reading is over: `Some(cut)` when the rest of the line fits, whole (`false`)
    /// or cut short by HAProxy (`true`); `None` when it does not.
    End(Option<bool>),
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
        while let Some(token) = format.tokens.get(i) {
            let flow = match token {
                Token::Literal { text, .. } => self.literal(i, text, &mut at),
                Token::Separator { .. } => self.separator(i, &mut at),
                Token::Field(field) => self.field(i, field, &mut at, record),
            };
            if let Flow::End(fits) = flow {
                return fits;
            }
            i += 1;
        }
        // HAProxy may end a line with a space (the CLF formats do).
        if self.line[at.pos..].iter().any(|&b| b != b' ') {
            self.fail(Mismatch {
                reason: "trailing_data",
                offset: at.pos,
            });
            return None;
        }
        Some(false)
    }

    /// Literal text `text`, token `i`.
    #[inline(always)]
    fn literal(&mut self, i: usize, text: &[u8], at: &mut Cursor) -> Flow {
        let rest = &self.line[at.pos..];
        if !rest.starts_with(text) {
            // Cut inside the literal; a line ending just before it is more likely
            // another, shorter format than a cut.
            if cut_inside(rest, text) && self.cut_ok(at.field) {
                return Flow::End(Some(true));
            }
            self.fail(self.format.mismatch(i, at.pos));
            return Flow::End(None);
        }
        at.pos += text.len();
        at.last_was_space = text.last() == Some(&b' ');
        Flow::Next
    }

    /// A separator, token `i`: one space, unless the last thing written was one.
    #[inline(always)]
    fn separator(&mut self, i: usize, at: &mut Cursor) -> Flow {
        if at.last_was_space {
            return Flow::Next;
        }
        // A line that ends where a separator should be ends on a whole field: that is a
        // shorter format, not a cut. Unless the field ran to the end of the line
        // unclosed: HAProxy cuts at any byte.
        if at.pos >= self.line.len() && at.open && self.cut_ok(at.field) {
            return Flow::End(Some(true));
        }
        if self.line.get(at.pos) != Some(&b' ') {
            self.fail(self.format.mismatch(i, at.pos));
            return Flow::End(None);
        }
        at.pos += 1;
        at.last_was_space = true;
        Flow::Next
    }

    /// Field `field`, token `i`: its likeliest place, or in the search pass each of its
    /// places in turn with the rest of the line after it.
    #[inline(always)]
    fn field(
        &mut self,
        i: usize,
        field: &Field,
        at: &mut Cursor,
        record: &mut LogRecord<'a>,
    ) -> Flow {
        let (format, line) = (self.format, self.line);
        // Nothing left where a field should start, after a literal or a separator (never
        // after another field): cut here. (An empty last field reads the same and is
        // counted too, marked cut; captures write nothing when there are none, as CLF
        // lines end.)
        let writes = !matches!(field.kind, FieldKind::Captures | FieldKind::CaptureList);
        if at.pos >= line.len() && i > 0 && writes && self.could_be_cut(at.field) {
            if self.pass == Pass::Cut {
                return Flow::End(Some(true));
            }
            self.fail(format.mismatch(i, at.pos));
            return Flow::End(None);
        }
        let Some(first) = candidate(format, i, field, line, at.pos, None, self.pass == Pass::Cut)
        else {
            return Flow::End(self.unclosed(i, field, *at, record));
        };
        if !field.branches || self.pass != Pass::Search {
            return self.take(i, field, first, at, record);
        }
        Flow::End(self.each_place(i, field, first, *at, record))
    }

    /// A field with no place to end: in a cut line, it runs to the end, and what is
    /// there is used.
    fn unclosed(
        &mut self,
        i: usize,
        field: &Field,
        mut at: Cursor,
        record: &mut LogRecord<'a>,
    ) -> Option<bool> {
        if !self.cut_ok(at.field) {
            self.fail(self.format.mismatch(i, at.pos));
            return None;
        }
        let rest = &self.line[at.pos..];
        let rest = match field.quoted {
            true => rest.strip_prefix(b"\"").unwrap_or(rest),
            false => rest,
        };
        let _ = store(field, rest, record, &mut at.path_seen, self.format);
        custom_labels(self.format, field, at.field, rest, record);
        Some(true)
    }

    /// Field `i` ending at `first`, then at each of its other places, each with the rest
    /// of the line after it, until one reading fits or the attempts run out.
    fn each_place(
        &mut self,
        i: usize,
        field: &Field,
        first: Candidate,
        at: Cursor,
        record: &mut LogRecord<'a>,
    ) -> Option<bool> {
        let saved = record.clone();
        let mut place = Some(first);
        while let Some(c) = place {
            if self.attempts == 0 {
                self.fail(self.format.mismatch(i, at.pos));
                return None;
            }
            self.attempts -= 1;
            let mut after = at;
            let fits = match self.take(i, field, c, &mut after, record) {
                Flow::Next => self.tokens(i + 1, after, record),
                Flow::End(fits) => fits,
            };
            if fits.is_some() {
                return fits;
            }
            record.clone_from(&saved);
            place = candidate(self.format, i, field, self.line, at.pos, Some(c), false);
        }
        None
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
    ) -> Flow {
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
                return Flow::End(Some(true));
            }
            self.fail(format.mismatch(i, at.pos));
            return Flow::End(None);
        }
        custom_labels(format, field, at.field, value, record);
        at.field += 1;
        Flow::Next
    }
}
