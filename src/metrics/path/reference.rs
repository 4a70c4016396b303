//! Path normalisation as it was before stage 2 was made one pass: the reference the
//! property tests hold `PathNormaliser::normalise` to. Kept as it was, apart from what
//! moving it here took; not used outside the tests.

use std::borrow::Cow;

use super::{is_identifier, segment_cut, PathNormaliser, ELLIPSIS, ID, OTHER};

/// `PathNormaliser::normalise`.
pub fn normalise<'a>(n: &PathNormaliser, path: &'a str) -> Cow<'a, str> {
    let mut current = Cow::Borrowed(path);
    if path.is_empty() {
        return current;
    }
    for rule in &n.rules {
        // `replace_all` borrows from its input when nothing matched.
        let replaced = match rule.regex.replace_all(&current, rule.replacement.as_str()) {
            Cow::Owned(s) => Some(s),
            Cow::Borrowed(_) => None,
        };
        if let Some(s) = replaced {
            current = Cow::Owned(s);
        }
    }
    if n.auto_templates {
        if let Some(folded) = fold_identifiers(&current) {
            current = Cow::Owned(folded);
        }
    }
    if !n.allow.is_empty() && !n.allow.iter().any(|p| current.starts_with(p.as_str())) {
        return Cow::Borrowed(OTHER);
    }
    if n.max_segments > 0 {
        if let Some(cut) = segment_cut(&current, n.max_segments) {
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

/// Stage 2: the path with every identifier-like segment replaced by `:id`, or `None` when
/// no segment is one.
fn fold_identifiers(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out: Option<String> = None;
    // `path[..copied]` is already in `out`.
    let mut copied = 0;
    let mut start = 0;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |i| start + i);
        if is_identifier(&bytes[start..end]) {
            let out = out.get_or_insert_with(|| {
                // Only a segment of one or two digits grows (to the three bytes of
                // `:id`), so this bound is never exceeded: one allocation.
                let segments_left = bytes[start..].iter().filter(|&&b| b == b'/').count() + 1;
                String::with_capacity(path.len() + 2 * segments_left)
            });
            // `start` and `end` are next to a `/` or at an end: char boundaries.
            out.push_str(&path[copied..start]);
            out.push_str(ID);
            copied = end;
        }
        if end == bytes.len() {
            break;
        }
        start = end + 1;
    }
    out.map(|mut out| {
        out.push_str(&path[copied..]);
        out
    })
}
