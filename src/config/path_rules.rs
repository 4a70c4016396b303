//! `HLE_PATH_RULES` and `HLE_PATH_ALLOW` read into the `PathNormaliser` that
//! `metrics::path` runs on every path. docs/cardinality.md ("Paths") is their manual.

use regex::Regex;

use crate::metrics::path::{PathNormaliser, PathRule};

/// The normaliser of `HLE_PATH_RULES` and `HLE_PATH_ALLOW` as written, with
/// `HLE_PATH_AUTO_TEMPLATES` and `HLE_PATH_MAX_SEGMENTS` already parsed by the caller.
/// Returns every problem at once, each a one-line message naming the variable.
pub(crate) fn normaliser(
    rules: &str,
    auto_templates: bool,
    allow: &str,
    max_segments: usize,
) -> Result<PathNormaliser, Vec<String>> {
    let mut problems = Vec::new();
    let mut compiled = Vec::new();
    for (index, line) in rules.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rule) = parse_rule(index + 1, line, &mut problems) {
            compiled.push(rule);
        }
    }

    let mut prefixes = Vec::new();
    for entry in allow.split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        } else if entry.starts_with('/') {
            prefixes.push(entry.to_string());
        } else {
            problems.push(format!(
                "HLE_PATH_ALLOW entry {entry:?}: a path prefix must start with '/'"
            ));
        }
    }

    if problems.is_empty() {
        Ok(PathNormaliser::new(
            compiled,
            auto_templates,
            prefixes,
            max_segments,
        ))
    } else {
        Err(problems)
    }
}

/// Parses one non-blank, non-comment line of `HLE_PATH_RULES`; a problem goes to
/// `problems` and gives `None`.
fn parse_rule(number: usize, line: &str, problems: &mut Vec<String>) -> Option<PathRule> {
    let Some((regex, replacement)) = split_rule(line) else {
        problems.push(format!(
            "HLE_PATH_RULES line {number}: expected \"REGEX => REPLACEMENT\", found {line:?}"
        ));
        return None;
    };
    if regex.is_empty() {
        problems.push(format!(
            "HLE_PATH_RULES line {number}: empty regex before \"=>\""
        ));
        return None;
    }
    let regex = match Regex::new(regex) {
        Ok(regex) => regex,
        Err(err) => {
            problems.push(format!(
                "HLE_PATH_RULES line {number}: invalid regex {regex:?}: {}",
                regex_error_summary(&err)
            ));
            return None;
        }
    };
    let before = problems.len();
    for reference in group_references(replacement) {
        let known = match reference {
            GroupRef::Number(n) => n < regex.captures_len(),
            GroupRef::Name(name) => regex.capture_names().flatten().any(|n| n == name),
        };
        if known {
            continue;
        }
        let groups = regex.captures_len() - 1;
        problems.push(match reference {
            GroupRef::Number(n) => format!(
                "HLE_PATH_RULES line {number}: replacement {replacement:?} refers to group {n}, but the regex has {groups} group(s)"
            ),
            GroupRef::Name(name) if name.starts_with(|c: char| c.is_ascii_digit()) => {
                let text = name.trim_start_matches(|c: char| c.is_ascii_digit());
                let digits = &name[..name.len() - text.len()];
                format!(
                    "HLE_PATH_RULES line {number}: replacement {replacement:?} refers to a group named {name:?}, which the regex does not have (for group {digits} followed by {text:?}, write ${{{digits}}}{text})"
                )
            }
            GroupRef::Name(name) => format!(
                "HLE_PATH_RULES line {number}: replacement {replacement:?} refers to a group named {name:?}, which the regex does not have"
            ),
        });
    }
    (problems.len() == before).then(|| PathRule::new(regex, replacement.to_string()))
}

/// Splits a rule at the first `=>` with whitespace (or the line's start) before it and
/// whitespace (or the line's end) after it, so that `=>` inside a regex such as `a=>b`
/// stays part of it. Both sides are trimmed.
fn split_rule(line: &str) -> Option<(&str, &str)> {
    line.match_indices("=>").find_map(|(at, _)| {
        let before = &line[..at];
        let after = &line[at + 2..];
        let spaced_before = before.is_empty() || before.ends_with(char::is_whitespace);
        let spaced_after = after.is_empty() || after.starts_with(char::is_whitespace);
        (spaced_before && spaced_after).then(|| (before.trim(), after.trim()))
    })
}

/// The useful line of a regex error: `regex_syntax` writes the pattern and a caret on
/// lines of their own and the reason on a line starting with `error: `.
fn regex_error_summary(err: &regex::Error) -> String {
    let text = err.to_string();
    match text.lines().find_map(|l| l.trim().strip_prefix("error: ")) {
        Some(reason) => reason.to_string(),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// A capture group reference in a replacement.
#[derive(Debug, PartialEq, Eq)]
enum GroupRef<'a> {
    Number(usize),
    Name(&'a str),
}

/// The group references in a replacement, read exactly as the `regex` crate expands
/// them: `$$` is a literal `$`; `${...}` up to the next `}` (a `$` with no closing brace
/// is literal); otherwise the longest run of `[0-9A-Za-z_]` (none: literal `$`). A
/// reference of digits only is a group number, anything else a name.
fn group_references(replacement: &str) -> Vec<GroupRef<'_>> {
    let mut refs = Vec::new();
    let mut rest = replacement;
    while let Some(dollar) = rest.find('$') {
        rest = &rest[dollar + 1..];
        let (name, len) = if rest.starts_with('$') {
            rest = &rest[1..];
            continue;
        } else if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(close) => (&braced[..close], close + 2),
                None => continue,
            }
        } else {
            let len = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if len == 0 {
                continue;
            }
            (&rest[..len], len)
        };
        // As in the regex crate: whatever `usize` parses (`+1` too) is a number.
        refs.push(match name.parse::<usize>() {
            Ok(n) => GroupRef::Number(n),
            Err(_) => GroupRef::Name(name),
        });
        rest = &rest[len..];
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = normaliser(
            "^/ok$ => /fine\n\
             no arrow here\n\
             (unclosed => x\n\
             \x20=> /empty-regex\n\
             ^/(a)/(b)$ => /$3/$1\n\
             ^/(?P<id>\\d+)$ => /${ide}/$1a\n\
             # ^/commented( => ignored\n",
            true,
            "/api/,static/, ,x",
            0,
        )
        .unwrap_err();
        let expected = [
            "HLE_PATH_RULES line 2: expected \"REGEX => REPLACEMENT\", found \"no arrow here\"",
            "HLE_PATH_RULES line 3: invalid regex \"(unclosed\": unclosed group",
            "HLE_PATH_RULES line 4: empty regex before \"=>\"",
            "HLE_PATH_RULES line 5: replacement \"/$3/$1\" refers to group 3, but the regex has 2 group(s)",
            "HLE_PATH_RULES line 6: replacement \"/${ide}/$1a\" refers to a group named \"ide\", which the regex does not have",
            "HLE_PATH_RULES line 6: replacement \"/${ide}/$1a\" refers to a group named \"1a\", which the regex does not have (for group 1 followed by \"a\", write ${1}a)",
            "HLE_PATH_ALLOW entry \"static/\": a path prefix must start with '/'",
            "HLE_PATH_ALLOW entry \"x\": a path prefix must start with '/'",
        ];
        assert_eq!(err, expected);
        for problem in &err {
            assert!(!problem.contains('\n'), "{problem}");
        }
    }

    #[test]
    fn group_references_follow_the_regex_crate() {
        use GroupRef::*;
        let cases: &[(&str, Vec<GroupRef<'_>>)] = &[
            ("", vec![]),
            ("plain", vec![]),
            ("$", vec![]),
            ("$$1", vec![]),
            ("$$$1", vec![Number(1)]),
            ("$0", vec![Number(0)]),
            ("$1-$2", vec![Number(1), Number(2)]),
            ("$1a", vec![Name("1a")]),
            ("${1}a", vec![Number(1)]),
            ("$x_$y", vec![Name("x_"), Name("y")]),
            ("${foo", vec![]),
            ("${a.b}", vec![Name("a.b")]),
            ("${}", vec![Name("")]),
            ("${+1}", vec![Number(1)]),
            ("$-", vec![]),
            ("$\u{e9}", vec![]),
            ("${\u{e9}}", vec![Name("\u{e9}")]),
        ];
        for (replacement, want) in cases {
            assert_eq!(&group_references(replacement), want, "{replacement:?}");
        }
        // The crate itself agrees on the odd cases.
        let re = Regex::new("(?P<foo>x)").unwrap();
        assert_eq!(re.replace("x", "${foo"), "${foo");
        assert_eq!(re.replace("x", "${+1}|$1a|${}"), "x||");
    }
}
