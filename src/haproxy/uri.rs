//! The `http_request_path` label from a request URI, for both parsers: no scheme,
//! authority or query string, and HAProxy's `#XX` escapes decoded.

use std::borrow::Cow;

use crate::scan::memchr;

/// The path of a request URI: without scheme and authority (HTTP/2 logs absolute URIs),
/// query string or fragment, with HAProxy's `#XX` escapes decoded.
pub fn request_path(uri: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(uri) {
        Ok(uri) => path_of(uri),
        Err(_) => Cow::Owned(path_of(&String::from_utf8_lossy(uri)).into_owned()),
    }
}

/// [`request_path`] of a URI that is text.
pub(super) fn path_of(uri: &str) -> Cow<'_, str> {
    let path = without_authority(uri);
    // One pass: up to the query string, noting whether there is an escape to decode.
    let mut escaped = false;
    let mut end = path.len();
    for (i, &b) in path.as_bytes().iter().enumerate() {
        match b {
            b'?' => {
                end = i;
                break;
            }
            b'#' => escaped = true,
            _ => {}
        }
    }
    let path = path.get(..end).unwrap_or_default();
    if !escaped {
        return Cow::Borrowed(path);
    }
    Cow::Owned(decode_escapes(path.as_bytes()))
}

/// [`path_of`] of the URI at the start of `rest`, which ends at the first space (or the
/// end), found in the same pass: the built-in parser's request line, split once.
pub(super) fn path_of_target(rest: &str) -> Cow<'_, str> {
    let bytes = rest.as_bytes();
    let mut start = 0;
    if bytes.first() != Some(&b'/') {
        // As `without_authority`: a scheme has no space, nor has `://`.
        let scheme_end = bytes
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b"+-.".contains(&b)))
            .unwrap_or(bytes.len());
        if bytes.get(scheme_end..scheme_end + 3) == Some(b"://") {
            let authority = scheme_end + 3;
            let end = bytes[authority..]
                .iter()
                .position(|&b| b == b'/' || b == b' ')
                .map_or(bytes.len(), |i| authority + i);
            if bytes.get(end) != Some(&b'/') {
                return Cow::Borrowed("/");
            }
            start = end;
        }
    }
    // Up to the query string or the end of the URI, noting whether there is an escape: a
    // vectorised search, as paths are tens of bytes long.
    let tail = &bytes[start..];
    let (end, escaped) = match memchr::memchr3(b'?', b' ', b'#', tail) {
        None => (bytes.len(), false),
        Some(i) if tail[i] != b'#' => (start + i, false),
        Some(i) => (
            start + i + memchr::memchr2(b'?', b' ', &tail[i..]).unwrap_or(tail.len() - i),
            true,
        ),
    };
    let path = rest.get(start..end).unwrap_or_default();
    if !escaped {
        return Cow::Borrowed(path);
    }
    Cow::Owned(decode_escapes(path.as_bytes()))
}

/// An absolute URI from its path on (`/` if it has none); any other URI as it is.
fn without_authority(uri: &str) -> &str {
    // Only an absolute URI has a scheme; a path starts with `/`. The scheme is the
    // characters a scheme may have, up to the first `://`.
    if uri.starts_with('/') {
        return uri;
    }
    let scheme_end = uri
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b"+-.".contains(&b)))
        .unwrap_or(uri.len());
    match uri.get(scheme_end..).and_then(|p| p.strip_prefix("://")) {
        Some(authority) => match memchr(b'/', authority.as_bytes()) {
            Some(slash) => authority.get(slash..).unwrap_or("/"),
            None => "/",
        },
        None => uri,
    }
}

/// `path` with each `#XX` (two hexadecimal digits) replaced by its byte; a `#` without
/// them stays. Bytes that do not make UTF-8 become U+FFFD.
fn decode_escapes(path: &[u8]) -> String {
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        if b == b'#' {
            if let Some(byte) = path.get(i + 1..i + 3).and_then(hex_byte) {
                decoded.push(byte);
                i += 3;
                continue;
            }
        }
        decoded.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let [hi, lo] = pair else {
        return None;
    };
    let hi = char::from(*hi).to_digit(16)?;
    let lo = char::from(*lo).to_digit(16)?;
    u8::try_from(hi * 16 + lo).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_uris() {
        for (uri, path) in [
            ("/a/b?x=1", "/a/b"),
            ("/a#20b", "/a b"),
            ("/a#2", "/a#2"),
            ("/a#zz#41", "/a#zzA"),
            ("/q?a#20", "/q"),
            ("https://example.com/h2/path?x", "/h2/path"),
            ("http://example.com", "/"),
            ("://host/p", "/p"),
            ("a b://host/p", "a b://host/p"),
            ("*", "*"),
            ("", ""),
            ("/caf#C3#A9", "/caf\u{e9}"),
            ("/bad#FF", "/bad\u{fffd}"),
        ] {
            assert_eq!(path_of(uri), path, "{uri}");
        }
        assert!(matches!(path_of("/a?b"), Cow::Borrowed("/a")));
        assert_eq!(request_path(b"/caf\xe9?x"), "/caf\u{fffd}");
    }

    proptest::proptest! {
        /// The path of a URI up to a space is the path of that URI cut out first.
        #[test]
        fn path_of_target_is_path_of_the_uri(
            rest in proptest::collection::vec(proptest::sample::select(
                vec!["/", "?", "#", "#4", "1", " ", "://", ":", "h", "+", "\u{e9}", "x y", "*"]
            ), 0..12),
        ) {
            let rest = rest.concat();
            let uri = rest.split(' ').next().unwrap_or_default();
            proptest::prop_assert_eq!(path_of_target(&rest), path_of(uri));
        }
    }
}
