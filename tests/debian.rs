//! The Debian package's generated files are current: `debian/haproxy-log-exporter.default`
//! (the environment file of the systemd unit, every variable commented out with its
//! default) and `debian/haproxy-log-exporter.1` (the man page, from `--help` and the same
//! table of variables).
//!
//! After changing a variable or the help text, write them again with
//!
//! ```sh
//! UPDATE_DEBIAN_FILES=1 cargo test --test debian
//! ```

use std::path::Path;
use std::process::Command;

use haproxy_log_exporter::config::{variables, Variable};
use haproxy_log_exporter::metrics::{Label, METRICS};

const DEFAULT_FILE: &str = "debian/haproxy-log-exporter.default";
const MAN_PAGE: &str = "debian/haproxy-log-exporter.1";
const WIDTH: usize = 80;

/// Words of `text` in lines of at most `width` columns, each starting with `prefix`.
fn wrap(text: &str, prefix: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && prefix.len() + line.len() + 1 + word.len() > width {
            out.push_str(&format!("{prefix}{line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{prefix}{line}\n"));
    }
    out
}

/// A value as it is written in an environment file: bare when systemd and a shell read it
/// the same way bare, in single quotes otherwise.
fn env_value(value: &str) -> String {
    let bare = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.,:/@%+=-".contains(c));
    if bare {
        value.to_string()
    } else {
        assert!(!value.contains('\''), "cannot quote {value:?}");
        format!("'{value}'")
    }
}

fn default_file(vars: &[Variable]) -> String {
    let mut out = String::from(
        "# Configuration of haproxy-log-exporter, read by its systemd unit\n\
         # (EnvironmentFile=); restart the service after a change:\n\
         #\n\
         #   systemctl restart haproxy-log-exporter\n\
         #\n\
         # Every variable is listed below with its default, commented out: a line left\n\
         # commented out keeps the default. Uncomment a line to change its value.\n\
         #\n\
         # - One VARIABLE=value a line. Quote a value with spaces, quotes or backslashes\n\
         #   in single quotes (HLE_LOG_FORMAT='%ci:%cp [%tr] %ft ...'), and a value of\n\
         #   several lines (HLE_PATH_RULES) in quotes over several lines.\n\
         # - An empty value is not the same as a commented-out line: for several\n\
         #   variables (HLE_SYSLOG_TCP_ADDR, HLE_ENABLED_METRICS, ...) it disables what\n\
         #   they set.\n\
         # - A variable starting with HLE_ that is not in this list stops the exporter at\n\
         #   start-up (a misspelt name would otherwise do nothing).\n\
         # - `haproxy-log-exporter check-config`, run with these variables set, prints\n\
         #   the configuration in force; see also haproxy-log-exporter(1).\n",
    );
    let mut per_metric = false;
    for var in vars {
        out.push('\n');
        let metric_var = METRICS.iter().any(|m| {
            let prefix = m.env_prefix();
            var.name == format!("{prefix}_LABELS") || var.name == format!("{prefix}_BUCKETS")
        });
        if metric_var && !per_metric {
            per_metric = true;
            let text = format!(
                "Each metric's labels (comma-separated; empty: none) from {}, and each \
                 histogram's bucket upper bounds (comma-separated, increasing):",
                Label::all_names().replace(',', ", ")
            );
            out.push_str(&wrap(&text, "# ", WIDTH));
            out.push('\n');
        }
        out.push_str(&wrap(&var.help, "# ", WIDTH));
        out.push_str(&format!("# {}={}\n", var.name, env_value(&var.default)));
    }
    out
}

/// Text for roff: backslashes and minus signs escaped, no control character at the start
/// of a line.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}

/// A default value for roff, breakable after its commas (bucket lists are long).
fn roff_value(value: &str) -> String {
    roff(value).replace(',', ",\\:")
}

/// The usage entries of `--help`: (command line, what it does).
fn usage(help: &str) -> Vec<(String, String)> {
    let block = help
        .split("Usage:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a Usage block in --help");
    // The column of the descriptions: that of the first entry's.
    let first = block.lines().next().expect("a usage line");
    let gap = first
        .trim_start()
        .find("  ")
        .expect("a description after the first command");
    let column = first.len() - first.trim_start()[gap..].trim_start().len();
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        let line = line.strip_prefix("  ").expect("usage lines are indented");
        if line.starts_with(' ') {
            let (_, text) = entries.last_mut().expect("a continuation follows an entry");
            // A command too long for the column has its description on the next lines.
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(line.trim());
            continue;
        }
        // A command as long as the column has no description.
        let split = column - 2;
        let described = line.len() > split && line[..split].ends_with(' ');
        let (command, text) = if described {
            line.split_at(split)
        } else {
            (line, "")
        };
        entries.push((command.trim().to_string(), text.trim().to_string()));
    }
    entries
}

/// The text of the `--help` line that starts with `prefix`, the prefix left out.
fn help_line<'a>(help: &'a str, prefix: &str) -> &'a str {
    help.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in --help"))
        .trim()
}

fn man_page(help: &str, vars: &[Variable]) -> String {
    let mut lines = help.lines();
    let title = lines.next().expect("a first line in --help");
    let version = title
        .strip_prefix("haproxy-log-exporter ")
        .expect("--help starts with the name and version");
    let summary = lines.next().expect("a second line in --help").trim();
    let commands = usage(help);
    let labels = help_line(help, "Labels:");
    let exit_codes = help_line(help, "Exit codes:");

    let mut out = String::new();
    out.push_str(&format!(
        ".TH HAPROXY\\-LOG\\-EXPORTER 1 \"\" \"haproxy\\-log\\-exporter {}\" \"User Commands\"\n",
        roff(version)
    ));
    // No hyphenation and a ragged right margin: the text is full of long names.
    out.push_str(".nh\n.ad l\n");
    out.push_str(".SH NAME\nhaproxy\\-log\\-exporter \\- turn HAProxy's log stream into Prometheus metrics\n");
    out.push_str(".SH SYNOPSIS\n");
    for (index, (command, _)) in commands.iter().enumerate() {
        if index > 0 {
            out.push_str(".br\n");
        }
        out.push_str(&format!(".B {}\n", roff(command)));
    }
    out.push_str(".SH DESCRIPTION\n");
    out.push_str(&format!("{}\n", roff(summary)));
    out.push_str(".PP\n");
    out.push_str(
        "It listens for syslog lines from HAProxy, reads the HAProxy log entry in each, and\n\
         counts it into per\\-request metrics (requests, bytes, timers as histograms) with the\n\
         labels chosen for each metric; every line received is accounted for in the\n\
         exporter's own metrics.\n\
         Metrics and the probes are served over HTTP: /metrics, /\\-/healthy and /\\-/ready.\n",
    );
    out.push_str(".PP\n");
    out.push_str(
        "Configuration is by environment variables only; there are no options.\n\
         A variable that starts with HLE_ and is not listed below stops the exporter at\n\
         start\\-up, as does any invalid value: every problem is listed before any socket is\n\
         bound.\n\
         An empty value is not the same as an unset variable: for several variables it\n\
         disables what they set.\n",
    );
    out.push_str(".SH COMMANDS\n");
    for (command, text) in &commands {
        out.push_str(&format!(".TP\n.B {}\n", roff(command)));
        let text = match text.as_str() {
            "" => "print this help (the commands and variables) or the version, and exit",
            text => text,
        };
        out.push_str(&format!("{}\n", roff(text)));
    }
    out.push_str(".SH ENVIRONMENT\n");
    for var in vars {
        out.push_str(&format!(
            ".TP\n.B {}\n{}\n",
            roff(&var.name),
            roff(&var.help)
        ));
        match var.default.as_str() {
            "" => out.push_str(".br\nDefault: empty\n"),
            default => out.push_str(&format!(".br\nDefault: \\fB{}\\fR\n", roff_value(default))),
        }
    }
    out.push_str(".PP\n");
    out.push_str(&format!(
        "Labels, for the _LABELS variables: {}.\n",
        roff(&labels.replace(',', ", "))
    ));
    out.push_str(".SH EXIT STATUS\n");
    out.push_str(&format!("{}\n", roff(exit_codes)));
    out.push_str(".SH FILES\n");
    out.push_str(
        ".TP\n.I /etc/default/haproxy\\-log\\-exporter\n\
         The environment of the systemd unit haproxy\\-log\\-exporter.service: every variable\n\
         with its default, commented out.\n\
         .TP\n.I /usr/share/doc/haproxy\\-log\\-exporter/examples/\n\
         A complete HAProxy configuration that logs to the exporter, and an rsyslog\n\
         configuration that relays HAProxy's lines to it.\n",
    );
    out.push_str(".SH EXAMPLES\n");
    out.push_str(
        "Check a configuration, then count a log file and print the exposition:\n\
         .PP\n.nf\n.RS\n\
         HLE_LOG_FORMAT=tcplog haproxy\\-log\\-exporter check\\-config\n\
         haproxy\\-log\\-exporter replay /var/log/haproxy.log\n\
         .RE\n.fi\n",
    );
    out.push_str(".SH SEE ALSO\n");
    out.push_str(".BR haproxy (1),\n.BR systemd.exec (5)\n");
    out
}

fn help_text() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_haproxy-log-exporter"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("run the exporter");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("--help is UTF-8")
}

/// Compares `path` with `want`, or writes it with UPDATE_DEBIAN_FILES=1.
fn check(path: &str, want: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("UPDATE_DEBIAN_FILES").is_some() {
        std::fs::write(&file, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        have == want,
        "{path} is stale: write it again with `UPDATE_DEBIAN_FILES=1 cargo test --test debian`"
    );
}

#[test]
fn the_environment_file_lists_every_variable_with_its_default() {
    check(DEFAULT_FILE, &default_file(&variables()));
}

#[test]
fn the_man_page_is_made_from_the_help() {
    check(MAN_PAGE, &man_page(&help_text(), &variables()));
}

/// Every line of the environment file is a comment or empty: the unit sets nothing the
/// exporter would not set itself, and each commented-out line names a variable with its
/// default.
#[test]
fn the_environment_file_sets_nothing() {
    let text = default_file(&variables());
    for var in variables() {
        let line = format!("# {}={}", var.name, env_value(&var.default));
        assert!(text.lines().any(|l| l == line), "no {line:?}");
    }
    for line in text.lines() {
        assert!(
            line.is_empty() || line == "#" || line.starts_with("# "),
            "{line:?}"
        );
        let assignment = line.starts_with("# HLE_");
        assert!(
            assignment || line.len() <= WIDTH,
            "longer than {WIDTH}: {line:?}"
        );
    }
}

#[test]
fn the_man_page_has_every_command_of_the_help() {
    let help = help_text();
    let commands = usage(&help);
    assert!(commands.len() >= 4, "{commands:?}");
    for (command, _) in &commands {
        assert!(command.starts_with("haproxy-log-exporter"), "{command:?}");
    }
    assert!(commands
        .iter()
        .any(|(c, t)| c == "haproxy-log-exporter replay [FILE...]"
            && t.contains("print the exposition")));
}

/// The package's version is the crate's (a native package): the changelog's newest entry
/// must name it.
#[test]
fn the_changelog_names_this_version() {
    let changelog = include_str!("../debian/changelog");
    let first = changelog.lines().next().unwrap_or_default();
    let want = format!("haproxy-log-exporter ({}) ", env!("CARGO_PKG_VERSION"));
    assert!(
        first.starts_with(&want),
        "debian/changelog starts with {first:?}: add an entry for {}",
        env!("CARGO_PKG_VERSION")
    );
}
