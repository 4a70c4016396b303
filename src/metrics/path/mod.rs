//! The `http_request_path` label, normalised before it becomes a label, so
//! that `/users/1234` and `/users/5678` are one series. Four stages run in order, each on
//! the result of the one before: the rules of `HLE_PATH_RULES` (read in
//! `config::path_rules`), the `:id` templates, the `HLE_PATH_ALLOW` list and the
//! `HLE_PATH_MAX_SEGMENTS` limit. docs/cardinality.md ("Paths") is the manual.
//!
//! Cost: stages 2–4 are one pass over the path's bytes with no regex, and an unchanged path
//! is returned borrowed. Each rule is one regex search; rules cannot share a `RegexSet`
//! pass because each sees the output of the one before.

use std::borrow::Cow;

use regex::Regex;

/// One line of `HLE_PATH_RULES`: a compiled regex and its replacement.
#[derive(Debug, Clone)]
pub struct PathRule {
    regex: Regex,
    replacement: String,
}

impl PartialEq for PathRule {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str() && self.replacement == other.replacement
    }
}

impl Eq for PathRule {}

impl PathRule {
    /// A rule that replaces every match of `regex` by `replacement` (`$1`, `${name}` ...).
    pub fn new(regex: Regex, replacement: String) -> PathRule {
        PathRule { regex, replacement }
    }
}

/// The whole normalisation of `http_request_path`, built once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathNormaliser {
    rules: Vec<PathRule>,
    auto_templates: bool,
    allow: Vec<String>,
    max_segments: usize,
}

impl Default for PathNormaliser {
    /// No rules, built-in templates on, no allow-list, no segment limit.
    fn default() -> Self {
        PathNormaliser {
            rules: Vec::new(),
            auto_templates: true,
            allow: Vec::new(),
            max_segments: 0,
        }
    }
}

/// The value an allow-list gives to a path it does not allow.
const OTHER: &str = "other";
/// The segment that stands for the segments cut by `HLE_PATH_MAX_SEGMENTS`.
const ELLIPSIS: &str = "...";
/// The segment that stands for an identifier.
const ID: &str = ":id";

impl PathNormaliser {
    /// The normalisation of these rules (applied in order), templates on or off, allowed
    /// prefixes (none: every path) and segment limit (0: none).
    pub fn new(
        rules: Vec<PathRule>,
        auto_templates: bool,
        allow: Vec<String>,
        max_segments: usize,
    ) -> PathNormaliser {
        PathNormaliser {
            rules,
            auto_templates,
            allow,
            max_segments,
        }
    }

    /// True when `normalise` returns every path unchanged (lets the caller skip it).
    pub fn is_identity(&self) -> bool {
        self.rules.is_empty()
            && !self.auto_templates
            && self.allow.is_empty()
            && self.max_segments == 0
    }

    /// The normalised path; borrowed when nothing changed.
    pub fn normalise<'a>(&self, path: &'a str) -> Cow<'a, str> {
        let mut current = Cow::Borrowed(path);
        if path.is_empty() {
            return current;
        }
        for rule in &self.rules {
            // `replace_all` borrows from its input when nothing matched.
            let replaced = match rule.regex.replace_all(&current, rule.replacement.as_str()) {
                Cow::Owned(s) => Some(s),
                Cow::Borrowed(_) => None,
            };
            if let Some(s) = replaced {
                current = Cow::Owned(s);
            }
        }
        if self.auto_templates {
            if let Some(folded) = fold_identifiers(&current) {
                current = Cow::Owned(folded);
            }
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| current.starts_with(p.as_str())) {
            return Cow::Borrowed(OTHER);
        }
        if self.max_segments > 0 {
            if let Some(cut) = segment_cut(&current, self.max_segments) {
                current = match current {
                    Cow::Borrowed(s) => {
                        let mut out = String::with_capacity(cut + 1 + ELLIPSIS.len());
                        out.push_str(&s[..cut]);
                        out.push('/');
                        out.push_str(ELLIPSIS);
                        Cow::Owned(out)
                    }
                    Cow::Owned(mut s) => {
                        s.truncate(cut);
                        s.push('/');
                        s.push_str(ELLIPSIS);
                        Cow::Owned(s)
                    }
                };
            }
        }
        current
    }
}

/// Stage 2: the path with every identifier-like segment replaced by `:id`, or `None` when
/// no segment is one.
///
/// The `/`s are found eight bytes at a time; a segment shorter than 16 bytes is decided
/// by its first byte unless that is a digit (only all-digit ones are identifiers), so most
/// bytes are read once, as part of a word. Nothing is allocated unless a segment is
/// replaced.
fn fold_identifiers(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut folder = Folder {
        path,
        out: None,
        copied: 0,
    };
    // The segment being read begins at `start`.
    let mut start = 0;
    let mut words_at = |offset: usize, mut slashes: u64| {
        while slashes != 0 {
            let end = offset + (slashes.trailing_zeros() / 8) as usize;
            folder.segment(start, end);
            start = end + 1;
            slashes &= slashes - 1;
        }
    };
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    for (i, word) in words.enumerate() {
        if let Ok(word) = <[u8; 8]>::try_from(word) {
            words_at(i * 8, slash_bits(u64::from_le_bytes(word)));
        }
    }
    if !tail.is_empty() {
        let offset = bytes.len() - tail.len();
        // The last eight bytes, shifted so that those already read are gone (zeros are
        // no `/`); or the short path itself.
        let word = match bytes.last_chunk::<8>() {
            Some(last) => u64::from_le_bytes(*last) >> (8 * (8 - tail.len())),
            None => tail
                .iter()
                .rev()
                .fold(0, |word, &b| word << 8 | u64::from(b)),
        };
        words_at(offset, slash_bits(word));
    }
    folder.segment(start, bytes.len());
    folder.finish()
}

/// Bit 7 of each byte of `word` that is a `/`, and no other bit.
#[inline(always)]
fn slash_bits(word: u64) -> u64 {
    const SLASHES: u64 = u64::from_le_bytes([b'/'; 8]);
    const LOW7: u64 = u64::from_le_bytes([0x7f; 8]);
    // A byte of `x` is 0 exactly where `word` has a `/`; adding 0x7f to its low seven
    // bits sets bit 7 of every other byte, and no carry crosses a byte.
    let x = word ^ SLASHES;
    !((x & LOW7).wrapping_add(LOW7) | x | LOW7)
}

/// Stage 2's output, made at the first identifier.
struct Folder<'a> {
    path: &'a str,
    out: Option<String>,
    /// `path[..copied]` is already in `out`.
    copied: usize,
}

impl Folder<'_> {
    /// Replaces `path[start..end]`, a segment, by `:id` if it is an identifier.
    #[inline(always)]
    fn segment(&mut self, start: usize, end: usize) {
        let Some(segment) = self.path.as_bytes().get(start..end) else {
            return;
        };
        let identifier = match segment.first() {
            None => false,
            // Below 16 bytes only digits make an identifier.
            Some(first) if segment.len() < 16 => {
                first.is_ascii_digit() && segment.iter().all(u8::is_ascii_digit)
            }
            Some(_) => is_identifier(segment),
        };
        if identifier {
            let path = self.path;
            let out = self.out.get_or_insert_with(|| {
                // Only a segment of one or two digits grows (to the three bytes of
                // `:id`), so this bound is never exceeded: one allocation.
                let rest = path.as_bytes().get(start..).unwrap_or_default();
                let segments_left = rest.iter().filter(|&&b| b == b'/').count() + 1;
                String::with_capacity(path.len() + 2 * segments_left)
            });
            // `start` and `end` are next to a `/` or at an end: char boundaries.
            out.push_str(path.get(self.copied..start).unwrap_or_default());
            out.push_str(ID);
            self.copied = end;
        }
    }

    /// The folded path, or `None` when no segment was replaced.
    fn finish(self) -> Option<String> {
        let mut out = self.out?;
        out.push_str(self.path.get(self.copied..).unwrap_or_default());
        Some(out)
    }
}

/// Whether a segment looks like an identifier: all digits, a UUID, 16 or more hex digits,
/// or a token of 20 or more characters.
fn is_identifier(segment: &[u8]) -> bool {
    if segment.is_empty() {
        return false;
    }
    if segment.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if segment.len() < 16 {
        return false;
    }
    if segment.iter().all(u8::is_ascii_hexdigit) || is_uuid(segment) {
        return true;
    }
    segment.len() >= 20 && is_token(segment)
}

fn is_uuid(segment: &[u8]) -> bool {
    segment.len() == 36
        && segment.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `[A-Za-z0-9_-]+` with up to two `=` of padding, at least one digit and one letter.
fn is_token(segment: &[u8]) -> bool {
    let body = match segment {
        [body @ .., b'=', b'='] | [body @ .., b'='] => body,
        body => body,
    };
    let mut digit = false;
    let mut letter = false;
    for b in body {
        match b {
            b'0'..=b'9' => digit = true,
            b'a'..=b'z' | b'A'..=b'Z' => letter = true,
            b'-' | b'_' => {}
            _ => return false,
        }
    }
    digit && letter
}

/// Stage 4: the byte index of the `/` after which the path is cut (the end of its
/// `max`-th segment), or `None` when it has at most `max` segments or is already cut
/// there.
fn segment_cut(path: &str, max: usize) -> Option<usize> {
    let start = usize::from(path.starts_with('/'));
    let (cut, _) = path
        .bytes()
        .enumerate()
        .skip(start)
        .filter(|&(_, b)| b == b'/')
        .nth(max.checked_sub(1)?)?;
    let rest = &path[cut + 1..];
    (!rest.is_empty() && rest != ELLIPSIS).then_some(cut)
}

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
