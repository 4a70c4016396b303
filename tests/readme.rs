//! The manual's tables (README.md and docs/) say what the code does.

use haproxy_log_exporter::config::variables;
use haproxy_log_exporter::haproxy::{IGNORE_REASONS, REJECT_REASONS};
use haproxy_log_exporter::metrics::{
    Label, INCOMPLETE_FRAME, METRICS, OVERSIZE_FRAME, TCP_BUFFER_BUDGET,
};
use haproxy_log_exporter::pipeline::Pipeline;

/// The configuration reference, the metrics reference and the layout table.
const CONFIGURATION: &str = include_str!("../docs/configuration.md");
const METRICS_DOC: &str = include_str!("../docs/metrics.md");
const DEVELOPMENT: &str = include_str!("../docs/development.md");

/// The table rows of the configuration and metrics references whose first cell is
/// `` `name` ``.
fn row(name: &str) -> Option<&'static str> {
    CONFIGURATION
        .lines()
        .chain(METRICS_DOC.lines())
        .find(|l| l.starts_with(&format!("| `{name}` |")) || l.starts_with(&format!("| `{name}{{")))
}

#[test]
fn every_fixed_variable_is_in_the_table_with_its_default() {
    for var in variables()
        .iter()
        .filter(|v| !v.name.ends_with("_LABELS") && !v.name.ends_with("_BUCKETS"))
    {
        let row = row(&var.name).unwrap_or_else(|| panic!("{} is not in the manual", var.name));
        let default = match var.default.as_str() {
            "" => "(empty)".to_string(),
            default => format!("`{default}`"),
        };
        assert!(row.contains(&format!("| {default} |")), "{row}");
    }
}

#[test]
fn every_metric_is_in_the_table_with_its_default_labels() {
    for def in &METRICS {
        let row = row(&def.full_name())
            .unwrap_or_else(|| panic!("{} is not in the manual", def.full_name()));
        let labels: Vec<&str> = def.default_labels.iter().map(|l| l.name()).collect();
        let want = if labels.is_empty() {
            "none".to_string()
        } else {
            format!("`{}`", labels.join(","))
        };
        assert!(row.ends_with(&format!("| {want} |")), "{row}");
    }
    for label in Label::ALL {
        assert!(
            row(label.name()).is_some(),
            "label {} is not in the manual",
            label.name()
        );
    }
}

#[test]
fn every_self_metric_is_in_the_table() {
    let registry = prometheus::Registry::new();
    let _pipeline = Pipeline::new(&[], &registry).unwrap();
    let _spoe = haproxy_log_exporter::spop::counters::SpopCounters::new(&registry).unwrap();
    let _http = haproxy_log_exporter::http::HttpCounters::new(&registry).unwrap();
    let _web = haproxy_log_exporter::web::WebCounters::new(&registry).unwrap();
    let _syslog_tls = haproxy_log_exporter::web::TlsCounters::new(
        &registry,
        haproxy_log_exporter::web::Listener::Syslog,
    )
    .unwrap();
    for family in registry.gather() {
        assert!(
            row(family.name()).is_some(),
            "{} is not in the manual",
            family.name()
        );
    }
}

#[test]
fn every_reason_is_in_the_table_with_its_outcome() {
    let rejected = REJECT_REASONS
        .iter()
        .chain(&[OVERSIZE_FRAME, INCOMPLETE_FRAME, TCP_BUFFER_BUDGET])
        .map(|r| (r, "rejected"));
    let ignored = IGNORE_REASONS.iter().map(|r| (r, "ignored"));
    for (reason, outcome) in rejected.chain(ignored) {
        let row = row(reason).unwrap_or_else(|| panic!("reason {reason} is not in the manual"));
        assert!(row.contains(&format!("| {outcome} |")), "{row}");
    }
}

/// The layout table of docs/development.md and the tree agree: every row is a file or directory of
/// `src`, and every source file is a row or in a directory that is (unit tests beside
/// their code, in a `tests.rs` or a `tests/` directory, aside).
#[test]
fn the_layout_table_matches_the_tree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = DEVELOPMENT
        .split("## Layout")
        .nth(1)
        .and_then(|rest| rest.split("```text\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("a Layout section with a text block");
    let rows: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for row in &rows {
        let path = root.join(row);
        assert!(
            path.exists(),
            "{row} is in the layout table but not in the tree"
        );
        assert_eq!(
            row.ends_with('/'),
            path.is_dir(),
            "{row}: a directory ends in /"
        );
    }
    let mut missing = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let parent = format!("{}/", relative.rsplit_once('/').unwrap().0);
            let listed = rows.contains(&relative.as_str()) || rows.contains(&parent.as_str());
            let unit_tests = relative.ends_with("/tests.rs") || relative.contains("/tests/");
            if !listed && !unit_tests {
                missing.push(relative);
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "not in the layout table of docs/development.md: {missing:?}"
    );
}

#[test]
fn every_spoe_reason_is_in_its_row() {
    use haproxy_log_exporter::spop::message;
    for (reasons, metric) in [
        (
            message::REJECT_REASONS,
            "haproxy_log_exporter_spoe_messages_rejected_total",
        ),
        (
            message::IGNORE_REASONS,
            "haproxy_log_exporter_spoe_messages_ignored_total",
        ),
    ] {
        let row = row(metric).unwrap_or_else(|| panic!("{metric} is not in the manual"));
        for reason in reasons {
            assert!(
                row.contains(&format!("`{reason}`")),
                "{reason} is not in {row}"
            );
        }
    }
}
