//! Byte helpers shared by the parsers: searches, UTF-8 prefixes and HAProxy's numbers.
//!
//! `syslog` and `haproxy` use them from below, the way httparse keeps its scans in one
//! module; nothing here knows either of them. The searches for a string are
//! `memchr::memmem`'s, built once for a string searched for on every line ([`Needle`]);
//! the search for one byte is a plain loop (see [`memchr`]).

use std::fmt;

use memchr::memmem;

/// Position of the first `needle` byte in a field of a few bytes.
#[inline]
pub(crate) fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    // Fields are a few bytes long: a plain loop beats a vectorised search's set-up. With
    // the `memchr` crate's search here, `cargo bench --bench parse` took 4% longer on
    // tcplog lines and 7% on the custom format, whose fields are all short.
    haystack.iter().position(|&b| b == needle)
}

/// Position of the first `needle` byte in a long stretch of a line (a request line, a
/// block of captures): there the vectorised search of the `memchr` crate is faster
/// (httplog lines 5% faster in `cargo bench --bench parse`).
#[inline]
pub(crate) fn memchr_long(needle: u8, haystack: &[u8]) -> Option<usize> {
    memchr::memchr(needle, haystack)
}

/// Position of the first `needle` in `haystack` (0 for an empty needle).
#[inline]
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find(haystack, needle)
}

/// A string searched for in every line (a literal of a log-format), with its searchers
/// built once: building one costs more than a search in a short line. Boxed, because
/// the searchers are large and the tokens of a format are read one after the other.
#[derive(Clone)]
pub(crate) struct Needle(Box<Searchers>);

#[derive(Clone)]
struct Searchers {
    forward: memmem::Finder<'static>,
    reverse: memmem::FinderRev<'static>,
}

impl Needle {
    pub(crate) fn new(needle: &[u8]) -> Self {
        Needle(Box::new(Searchers {
            forward: memmem::Finder::new(needle).into_owned(),
            reverse: memmem::FinderRev::new(needle).into_owned(),
        }))
    }

    /// The string searched for.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.forward.needle()
    }

    /// Position of its first occurrence in `haystack` (0 if it is empty).
    #[inline]
    pub(crate) fn find(&self, haystack: &[u8]) -> Option<usize> {
        self.0.forward.find(haystack)
    }

    /// Position of its last occurrence in `haystack` (the end if it is empty).
    #[inline]
    pub(crate) fn rfind(&self, haystack: &[u8]) -> Option<usize> {
        self.0.reverse.rfind(haystack)
    }
}

/// Two needles are the same string.
impl PartialEq for Needle {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for Needle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Needle({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// `haystack` split at each occurrence of `separator` (which must not be empty).
pub(crate) fn split_on<'h>(
    haystack: &'h [u8],
    separator: &'h [u8],
) -> impl Iterator<Item = &'h [u8]> {
    let mut rest = Some(haystack);
    std::iter::from_fn(move || {
        let current = rest?;
        match find(current, separator).filter(|_| !separator.is_empty()) {
            Some(i) => {
                rest = Some(&current[i + separator.len()..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// `bytes` up to the first byte that is not UTF-8. HAProxy writes what a client sent
/// as it is (a Latin-1 header), or cuts a line at any byte: a line or a label value with
/// such a byte is read as if it ended there.
pub(crate) fn utf8_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default(),
    }
}

/// A decimal number of at most 19 digits (so it fits a `u64`).
pub(crate) fn number(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    field.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Drops the `+` that logasap (and redispatch, on `%rc`) put before a value.
pub(crate) fn plus(field: &[u8]) -> &[u8] {
    field.strip_prefix(b"+").unwrap_or(field)
}

/// `%ST`: three digits, or `-1` when the client left before any response.
pub(crate) fn is_status(field: &[u8]) -> bool {
    field == b"-1" || (field.len() == 3 && field.iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn searches() {
        assert_eq!(memchr(b' ', b"ab cd ef"), Some(2));
        assert_eq!(memchr(b'x', b"ab cd"), None);
        assert_eq!(memchr_long(b'"', b"GET /a\" x"), Some(6));
        assert_eq!(memchr_long(b'"', b"GET /a"), None);
        assert_eq!(find(b"http://h/p", b"://"), Some(4));
        assert_eq!(find(b"ab", b"abc"), None);
        let colon = Needle::new(b":");
        assert_eq!(colon.rfind(b"::1:80"), Some(3));
        assert_eq!((colon.find(b"::1:80"), colon.rfind(b"")), (Some(0), None));
        assert_eq!(colon, colon.clone());
        assert_eq!(format!("{colon:?}"), "Needle(\":\")");
        let parts: Vec<&[u8]> = split_on(b"a\" \"b\" \"", b"\" \"").collect();
        assert_eq!(parts, [&b"a"[..], b"b", b""]);
        let whole: Vec<&[u8]> = split_on(b"ab", b"").collect();
        assert_eq!(whole, [&b"ab"[..]]);
    }

    #[test]
    fn values() {
        assert_eq!(utf8_prefix(b"caf\xc3\xa9 \xe9t\xc3\xa9"), "caf\u{e9} ");
        assert_eq!(number(b"0123"), Some(123));
        assert_eq!(
            number(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(number(b"10000000000000000000"), None);
        assert_eq!(
            (number(b""), number(b"-1"), number(b"1x")),
            (None, None, None)
        );
        assert_eq!(
            (plus(b"+3"), plus(b"3"), plus(b"++3")),
            (&b"3"[..], &b"3"[..], &b"+3"[..])
        );
        assert!(is_status(b"200") && is_status(b"-1"));
        assert!(!is_status(b"20") && !is_status(b"2000") && !is_status(b"-2"));
    }

    proptest! {
        /// The searches find what a search of every window finds.
        #[test]
        fn searches_agree_with_windows(
            haystack in proptest::collection::vec(prop::sample::select(b" :/\"ab".to_vec()), 0..80),
            needle in proptest::collection::vec(prop::sample::select(b" :/\"ab".to_vec()), 1..4),
        ) {
            let first = haystack.windows(needle.len()).position(|w| w == needle.as_slice());
            let last = haystack.windows(needle.len()).rposition(|w| w == needle.as_slice());
            prop_assert_eq!(find(&haystack, &needle), first);
            prop_assert_eq!(Needle::new(&needle).find(&haystack), first);
            prop_assert_eq!(Needle::new(&needle).rfind(&haystack), last);
        }
    }
}
