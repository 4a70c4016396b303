//! The compiler: HAProxy's quoting, the built-in formats, errors that say where.

use proptest::prelude::*;

use super::*;

#[test]
fn built_in_formats_compile() {
    for (name, _) in BUILT_IN {
        let format = Format::named_or_compiled(name).unwrap();
        assert_eq!(format.source, *name);
    }
}

#[test]
fn compile_errors_point_at_the_column() {
    let cases = [
        ("%ci %Xyz", 5, "unknown log-format alias %Xyz"),
        ("%ci %", 4, "% must be followed by"),
        ("\"%ci %cp", 0, "this \" is never closed"),
        ("%ci%cp", 3, "two fields with nothing between them"),
        ("%ci %[var(txn.x)", 5, "this %[ is never closed"),
        ("%{+Z}ci", 2, "unknown flag"),
        ("", 0, "the format is empty"),
    ];
    for (format, column, message) in cases {
        let err = compile(format).unwrap_err();
        assert!(err.message.contains(message), "{format:?}: {err}");
        assert_eq!(err.column, column, "{format:?}: {err}");
        let shown = err.to_string();
        let caret_line = shown.lines().last().unwrap();
        assert_eq!(caret_line.find('^'), Some(4 + column), "{shown}");
    }
}

#[test]
fn haproxy_quoting_is_undone() {
    let plain = compile("%ci %ST").unwrap();
    let shape = |f: &Format| -> Vec<String> {
        f.tokens
            .iter()
            .map(|t| match t {
                Token::Literal { text, .. } => String::from_utf8_lossy(text).into_owned(),
                Token::Separator { .. } => " ".to_string(),
                Token::Field(field) => format!("{}{}", field.text, field.quoted),
            })
            .collect()
    };
    for written in [
        r#"log-format "%ci %ST""#,
        r"%ci\ %ST",
        r#"'%ci %ST'"#,
        r#""%ci"' %ST'"#,
    ] {
        let format = compile(written).unwrap();
        assert_eq!(shape(&format), shape(&plain), "{written}");
    }
    let escaped = compile(r#""\"%ci\" %ST""#).unwrap();
    assert!(escaped.extract(b"\"1.2.3.4\" 200").is_ok());
}

proptest! {
    #[test]
    fn compiling_anything_never_panics(format in "[%{}\\[\\]()a-zA-Z+\\-Q\"' \\\\x0-9]{0,40}") {
        if let Ok(compiled) = compile(&format) {
            let _ = compiled.extract(format.as_bytes());
        }
    }
}

#[test]
fn a_rejection_reason_is_made_once_for_every_format_that_has_it() {
    let reason = |format: &str| {
        let format = Format::named_or_compiled(format).unwrap();
        format.extract(b"no match here").unwrap_err().reason
    };
    let (a, b) = (reason("%ci:%cp %ST"), reason("%ci:%cp %ST"));
    assert_eq!(a, "format_mismatch_at_%ci_col_1");
    // The same text in the same memory: compiling again allocates no new reason.
    assert!(std::ptr::eq(a, b));
}
