//! Path normalisation: rules, templates, the allow list and the segment limit.

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

/// Paths made of the segments the built-in templates tell apart: digits, hex, UUIDs,
/// tokens with and without padding, words, empty segments and non-ASCII text.
fn segmented_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[0-9]{0,3}",
        "[0-9]{15,21}",
        "[0-9a-fA-F]{14,42}",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-fA-F]{11,13}",
        "[A-Za-z0-9_-]{15,30}={0,3}",
        "[a-z]{1,12}",
        "[a-z0-9.%:#=-]{0,8}",
        "\\PC{0,6}",
    ];
    (
        prop::option::of(Just("https://h")),
        prop::collection::vec(segment, 0..8),
        any::<bool>(),
    )
        .prop_map(|(scheme, segments, trailing)| {
            let mut path = scheme.unwrap_or_default().to_owned();
            for s in segments {
                path.push('/');
                path.push_str(&s);
            }
            if trailing {
                path.push('/');
            }
            path
        })
}

proptest! {
    // The one-pass stage 2 gives what the reference gives, and borrows exactly when the
    // reference does, with or without the other stages.
    #[test]
    fn same_as_the_reference(
        path in prop_oneof![segmented_path(), "\\PC{0,60}", "[/0-9a]{0,40}"],
        max in 0usize..4,
    ) {
        for n in [
            PathNormaliser::default(),
            normaliser("", true, "", max),
            normaliser("", true, "/api/,/1", max),
            normaliser(r"^/v(\d+)/ => /version/$1/", true, "", max),
        ] {
            let got = n.normalise(&path);
            let want = reference::normalise(&n, &path);
            prop_assert_eq!(&got, &want, "{:?}", n);
            prop_assert_eq!(
                matches!(got, Cow::Borrowed(_)),
                matches!(want, Cow::Borrowed(_)),
                "{:?}", n
            );
        }
    }
}
