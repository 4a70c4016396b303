//! The traffic metrics in the Prometheus text format (version 0.0.4): small writers for
//! one family's header, a counter sample and a histogram's samples, every write's result
//! passed on. The self-metrics are encoded by the `prometheus` crate.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// `# HELP` and `# TYPE` of one family.
pub(super) fn write_header(
    out: &mut impl Write,
    name: &str,
    help: &str,
    kind: &str,
) -> fmt::Result {
    writeln!(out, "# HELP {name} {}", escape_help(help))?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// Appends `name="value",` to a label list.
pub(super) fn write_label(labels: &mut String, name: &str, value: &str) -> fmt::Result {
    write!(labels, "{name}=\"{}\",", escape_value(value))
}

/// One counter sample; `labels` as `write_label` builds them.
pub(super) fn write_counter(
    out: &mut impl Write,
    name: &str,
    labels: &str,
    value: u64,
) -> fmt::Result {
    writeln!(out, "{name}{} {value}", braces(labels))
}

/// One histogram's samples: the cumulative buckets from per-bucket `counts` (one more
/// than `bounds`, the last above every bound), `_sum` and `_count`.
pub(super) fn write_histogram(
    out: &mut impl Write,
    name: &str,
    labels: &str,
    bounds: &[f64],
    counts: &[u64],
    sum: f64,
) -> fmt::Result {
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(counts) {
        cumulative += count;
        writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}")?;
    }
    cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
    writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}")?;
    let braced = braces(labels);
    writeln!(out, "{name}_sum{braced} {sum}")?;
    writeln!(out, "{name}_count{braced} {cumulative}")
}

/// `{a="1",b="2"}` from `a="1",b="2",`; nothing for no labels.
fn braces(labels: &str) -> Cow<'_, str> {
    match labels.strip_suffix(',') {
        Some(inner) => Cow::Owned(format!("{{{inner}}}")),
        None => Cow::Borrowed(""),
    }
}

pub(super) fn escape_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

fn escape_help(help: &str) -> Cow<'_, str> {
    if !help.contains(['\\', '\n']) {
        return Cow::Borrowed(help);
    }
    Cow::Owned(help.replace('\\', "\\\\").replace('\n', "\\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_as_the_text_format_writes_them() {
        let mut labels = String::new();
        write_label(&mut labels, "path", "/a\"b\\c\nd").unwrap();
        assert_eq!(labels, "path=\"/a\\\"b\\\\c\\nd\",");
        let mut out = String::new();
        write_header(&mut out, "m", "Help \\ with\nlines.", "counter").unwrap();
        write_counter(&mut out, "m", &labels, 3).unwrap();
        write_counter(&mut out, "m", "", 4).unwrap();
        write_histogram(&mut out, "h", "a=\"1\",", &[0.5, 1.0], &[1, 0, 2], 2.5).unwrap();
        assert_eq!(
            out,
            "# HELP m Help \\\\ with\\nlines.\n# TYPE m counter\n\
             m{path=\"/a\\\"b\\\\c\\nd\"} 3\nm 4\n\
             h_bucket{a=\"1\",le=\"0.5\"} 1\nh_bucket{a=\"1\",le=\"1\"} 1\n\
             h_bucket{a=\"1\",le=\"+Inf\"} 3\nh_sum{a=\"1\"} 2.5\nh_count{a=\"1\"} 3\n"
        );
    }
}
