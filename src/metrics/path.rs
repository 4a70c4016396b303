//! Pipeline stage 5 (labels): `http_request_path` normalised before it becomes a label, so
//! that `/users/1234` and `/users/5678` are one series. Four stages run in order, each on
//! the result of the one before: the rules of `HLE_PATH_RULES` (read in
//! `config::path_rules`), the `:id` templates, the `HLE_PATH_ALLOW` list and the
//! `HLE_PATH_MAX_SEGMENTS` limit. The README's "Paths" section is the manual.
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
mod tests {
    use super::*;
    use crate::config::path_rules;
    use proptest::prelude::*;

    fn normaliser(rules: &str, auto: bool, allow: &str, max: usize) -> PathNormaliser {
        path_rules::normaliser(rules, auto, allow, max).unwrap()
    }

    fn check(n: &PathNormaliser, cases: &[(&str, &str)]) {
        for (input, want) in cases {
            assert_eq!(n.normalise(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn default_is_templates_only() {
        let n = PathNormaliser::default();
        assert_eq!(n, normaliser("", true, "", 0));
        assert!(!n.is_identity());
        assert!(normaliser("# nothing\n\n", false, " , ", 0).is_identity());
        assert!(!normaliser("", false, "", 3).is_identity());
        assert!(!normaliser("", false, "/a", 0).is_identity());
        assert!(!normaliser("x => y", false, "", 0).is_identity());
    }

    #[test]
    fn built_in_templates() {
        check(
            &PathNormaliser::default(),
            &[
                ("/api/v1/users/profile", "/api/v1/users/profile"),
                ("/users/1234", "/users/:id"),
                ("/users/0", "/users/:id"),
                ("/users/1/orders/22/", "/users/:id/orders/:id/"),
                ("/1/2/3", "/:id/:id/:id"),
                ("/o/123e4567-E89B-12d3-a456-426614174000", "/o/:id"),
                ("/o/11111111-2222-3333-4444-555555555555", "/o/:id"),
                // Not UUIDs, but opaque tokens all the same (unless all digits).
                ("/o/123e4567-e89b-12d3-a456-42661417400", "/o/:id"),
                (
                    "/o/11111111-2222-3333-4444-55555555555",
                    "/o/11111111-2222-3333-4444-55555555555",
                ),
                ("/o/123e4567e-89b-12d3-a456-426614174000", "/o/:id"),
                ("/o/507f1f77bcf86cd799439011", "/o/:id"),
                ("/o/DEADBEEFDEADBEEF", "/o/:id"),
                ("/o/deadbeefdeadbee", "/o/deadbeefdeadbee"),
                ("/o/cafe", "/o/cafe"),
                ("/o/deadbeef", "/o/deadbeef"),
                ("/o/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/o/:id"),
                ("/t/dGhpcyBpcyBhIHRva2VuMTIz", "/t/:id"),
                ("/t/aGVsbG8gd29ybGQgMTIzNA==", "/t/:id"),
                ("/t/aGVsbG8gd29ybGQgMTIzNA=", "/t/:id"),
                (
                    "/t/aGVsbG8gd29ybGQgMTIzNA===",
                    "/t/aGVsbG8gd29ybGQgMTIzNA===",
                ),
                ("/t/abc_DEF-ghi_123-jkl0", "/t/:id"),
                ("/t/abc_DEF-ghi_123-jkl", "/t/abc_DEF-ghi_123-jkl"),
                (
                    "/blog/very-long-article-title-here",
                    "/blog/very-long-article-title-here",
                ),
                ("/blog/release-notes-for-2024", "/blog/:id"),
                ("/d/1234.json", "/d/1234.json"),
                ("/d/%31%32", "/d/%31%32"),
                ("/d/:id/:name", "/d/:id/:name"),
                ("//a//1//", "//a//:id//"),
                ("/", "/"),
                ("//", "//"),
                ("1234", ":id"),
                ("*", "*"),
                ("/caf\u{e9}/12", "/caf\u{e9}/:id"),
                ("/\u{663}\u{664}", "/\u{663}\u{664}"),
                ("/a#1/2", "/a#1/:id"),
            ],
        );
    }

    #[test]
    fn unchanged_paths_are_borrowed() {
        let n = PathNormaliser::default();
        assert!(matches!(
            n.normalise("/api/v1/users/profile"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(n.normalise(""), Cow::Borrowed(_)));
        let all = normaliser("^/x => /y", true, "/api/", 4);
        assert!(matches!(
            all.normalise("/api/v1/users/profile"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(all.normalise("/api/a/b/c/..."), Cow::Borrowed(_)));
    }

    #[test]
    fn folding_allocates_exactly_once() {
        // The capacity bound holds, so the string never grows past it.
        for path in ["/1/2/3/4/5", "/1", "1/", "/a/22/b/333/", "/x/1/y"] {
            let folded = fold_identifiers(path).unwrap();
            let segments = path.bytes().filter(|&b| b == b'/').count() + 1;
            assert!(folded.capacity() <= path.len() + 2 * segments, "{path}");
        }
    }

    #[test]
    fn operator_rules() {
        let n = normaliser(
            "# products by slug\n\
             ^/shop/[^/]+/p/[^/]+$ => /shop/:shop/p/:product\n\
             \n\
             ^/(?P<lang>en|de|fr)/ => /${lang}/\n\
             ^/static/.* => /static/\n\
             ^/(healthz?|ping)$ =>\n\
             x => y => z\n\
             a=>b => c\n",
            false,
            "",
            0,
        );
        check(
            &n,
            &[
                ("/shop/acme/p/blue-shirt", "/shop/:shop/p/:product"),
                (
                    "/shop/acme/p/blue-shirt/reviews",
                    "/shop/acme/p/blue-shirt/reviews",
                ),
                ("/de/impressum", "/de/impressum"),
                ("/static/js/app.3f2a.js", "/static/"),
                ("/healthz", ""),
                ("/ping", ""),
                ("/xx", "/y => zy => z"),
                ("/a=>b", "/c"),
            ],
        );
    }

    #[test]
    fn rules_apply_in_order_to_the_previous_result() {
        let n = normaliser("a => b\nb => c\n^/c+$ => /done", false, "", 0);
        check(&n, &[("/aab", "/done"), ("/xab", "/xcc")]);
        let n = normaliser("^/v(\\d+)/ => /v$1/\n$ => $$", false, "", 0);
        check(&n, &[("/v2/x", "/v2/x$")]);
    }

    #[test]
    fn stages_run_in_order() {
        // Rules see the raw path (so they can still name an id), templates see the
        // rules' output, the allow-list sees templates' output, the limit comes last.
        let n = normaliser(
            r"^/legacy/(\d+) => /api/users/$1",
            true,
            "/api/users/:id",
            3,
        );
        check(
            &n,
            &[
                ("/legacy/42/a/b", "/api/users/:id/..."),
                ("/api/users/7", "/api/users/:id"),
                ("/api/users/name", "other"),
                ("/legacy/x", "other"),
                ("", ""),
            ],
        );
        // A rule that empties the path: with an allow-list, the result is `other`.
        let n = normaliser("^/health$ => ", true, "/api/", 0);
        check(&n, &[("/health", "other"), ("/api/1", "/api/:id")]);
        // Templates before the limit: the folded id is one of the kept segments.
        let n = normaliser("", true, "", 2);
        check(&n, &[("/users/123456/orders", "/users/:id/...")]);
    }

    #[test]
    fn allow_list() {
        let n = normaliser("", false, " /api/ , /static/,,/health", 0);
        check(
            &n,
            &[
                ("/api/v1", "/api/v1"),
                ("/api", "other"),
                ("/healthz", "/healthz"),
                ("/static/app.js", "/static/app.js"),
                ("/admin", "other"),
                ("*", "other"),
                ("", ""),
            ],
        );
        assert!(matches!(n.normalise("/admin"), Cow::Borrowed("other")));
    }

    #[test]
    fn segment_limit() {
        let n = normaliser("", false, "", 2);
        check(
            &n,
            &[
                ("/a/b/c/d", "/a/b/..."),
                ("/a/b/c/", "/a/b/..."),
                ("/a/b/c", "/a/b/..."),
                ("/a/b/", "/a/b/"),
                ("/a/b", "/a/b"),
                ("/a", "/a"),
                ("/", "/"),
                ("/a//b", "/a//..."),
                ("//a/b", "//a/..."),
                ("a/b/c", "a/b/..."),
                ("a/b/", "a/b/"),
                ("*", "*"),
                ("/a/b/...", "/a/b/..."),
                ("", ""),
            ],
        );
        let one = normaliser("", false, "", 1);
        check(&one, &[("/a/b", "/a/..."), ("/a/", "/a/"), ("/", "/")]);
    }

    #[test]
    fn edge_cases_do_not_panic() {
        let all = normaliser(r"\d => 0", true, "/", 3);
        let long_digits = format!("/{}", "7".repeat(64 * 1024));
        let long_many = "/1".repeat(32 * 1024);
        let long_words = "/word".repeat(13 * 1024);
        for n in [
            PathNormaliser::default(),
            all.clone(),
            normaliser("", true, "", 1),
        ] {
            for path in [
                "",
                "*",
                "/",
                "no-slash",
                "/%",
                "/%zz/%2F",
                "/#",
                "/a#b",
                "/\u{1f600}/\u{e9}\u{e9}",
                long_digits.as_str(),
                long_many.as_str(),
                long_words.as_str(),
            ] {
                let once = n.normalise(path);
                let _ = n.normalise(&once);
            }
        }
        assert_eq!(PathNormaliser::default().normalise(&long_digits), "/:id");
        assert_eq!(
            PathNormaliser::default().normalise(&long_many),
            "/:id".repeat(32 * 1024)
        );
        assert_eq!(all.normalise(&long_many), "/:id/:id/:id/...");
        assert_eq!(all.normalise("*"), "other");
    }

    proptest! {
        #[test]
        fn never_panics(path in ".{0,200}", rules in "[a-z0-9/()$^.*+ =>\n]{0,40}") {
            let _ = PathNormaliser::default().normalise(&path);
            if let Ok(n) = path_rules::normaliser(&rules, true, "/a", 2) {
                let _ = n.normalise(&path);
            }
        }

        // Stages 2–4 are each idempotent, and so are 2 and 4 together (the limit runs
        // after templates and `...` is no identifier). Rules are not in general
        // (`a => aa`), and an allow-list prefix with more segments than the limit breaks
        // it (`/a/b/c/d` → `/a/b/...`, which no longer starts with `/a/b/c/`).
        #[test]
        fn built_in_stages_are_idempotent(
            path in "(/([a-zA-Z0-9_=.%:-]{0,30}|[0-9]{1,3}|[0-9a-f]{16,24}))*/?",
            max in 0usize..5,
        ) {
            for n in [
                PathNormaliser::default(),
                normaliser("", true, "", max),
                normaliser("", false, "", max),
                normaliser("", false, "/a,/1", 0),
            ] {
                let once = n.normalise(&path).into_owned();
                let twice = n.normalise(&once);
                prop_assert_eq!(&once, &twice, "{:?}", n);
                prop_assert!(matches!(twice, Cow::Borrowed(_)));
            }
        }

        #[test]
        fn default_is_idempotent_on_any_string(path in "\\PC{0,100}") {
            let n = PathNormaliser::default();
            let once = n.normalise(&path).into_owned();
            prop_assert_eq!(n.normalise(&once), once.as_str());
        }
    }
}
