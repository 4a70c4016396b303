//! `check-config LOGFILE`: how the configuration reads a log file. A sample of its lines
//! is shown one by one (the syslog header, the format that matched and the labels the
//! metrics would get, or for a rejected line where each format stopped matching), then
//! what the whole file would count, with the self-metrics' reasons.
//!
//! Lines are read as `replay` reads them (one per `\n`, a trailing `\r` removed, empty
//! lines skipped, gzip recognised by its magic bytes) and have the outcome the pipeline
//! gives them; nothing is counted anywhere.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Write};

use crate::config::Config;
use crate::haproxy::format::{Format, Stop};
use crate::haproxy::{self, ConnectionLine, Entry, LineFormat, LogRecord, Timer};
use crate::ingest::replay::{self, ReplayError};
use crate::metrics::{Label, OVERSIZE_FRAME};
use crate::syslog::{self, Timestamp};

/// Lines shown from the start of the file, unless `--lines` says otherwise.
pub const DEFAULT_SAMPLE_LINES: usize = 5;

/// After the first lines, the first line of each outcome not seen yet is shown (each
/// rejection or ignore reason, each format that counts lines), at most this many.
pub const MAX_OTHER_OUTCOMES: usize = 20;

/// Lines longer than this are shown shortened: their start and their end.
const SHOWN_BYTES: usize = 240;

/// Why a check of a log file could not finish.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot open {name}: {source}")]
    Open { name: String, source: io::Error },
    #[error("cannot read {name}: {source}")]
    Read { name: String, source: io::Error },
    #[error("cannot write: {0}")]
    Write(#[from] io::Error),
}

/// What the file would count.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    pub counted: u64,
    /// By format (its number, from 1), in the order the formats are tried.
    pub counted_by_format: Vec<(usize, u64)>,
    /// By reason, most frequent first.
    pub rejected: Vec<(String, u64)>,
    /// By reason, most frequent first.
    pub ignored: Vec<(String, u64)>,
}

impl Summary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    pub fn ignored_total(&self) -> u64 {
        self.ignored.iter().map(|(_, n)| n).sum()
    }
}

/// What became of one line.
// As `Entry`: the record lives on the stack, one line at a time.
#[allow(clippy::large_enum_variant)]
enum Outcome<'a> {
    /// Counted, by the format of this index.
    Counted(LogRecord<'a>, Option<usize>),
    Ignored(&'static str),
    Rejected(&'static str),
}

impl Outcome<'_> {
    /// The outcome's kind, for showing the first line of each.
    fn key(&self) -> String {
        match self {
            Outcome::Counted(_, format) => format!("counted {format:?}"),
            Outcome::Ignored(reason) => format!("ignored {reason}"),
            Outcome::Rejected(reason) => format!("rejected {reason}"),
        }
    }
}

/// Reads `name` (`-`: standard input), shows the first `sample` lines and the first of
/// each other outcome on `out`, then the summary, which it returns.
pub fn run(
    config: &Config,
    name: &str,
    sample: usize,
    out: &mut impl Write,
) -> Result<Summary, CheckError> {
    let reader = open(name)?;
    read(config, name, reader, sample, out)
}

/// [`run`] on what `reader` reads.
fn read(
    config: &Config,
    name: &str,
    mut reader: impl BufRead,
    sample: usize,
    out: &mut impl Write,
) -> Result<Summary, CheckError> {
    let check = Check::new(config);
    let first = match sample {
        0 => String::new(),
        1 => "the first line, then ".to_string(),
        n => format!("the first {n} lines, then "),
    };
    let other = if sample == 0 { "" } else { " other" };
    writeln!(
        out,
        "# reading {}: {first}the first line of each{other} outcome (at most {MAX_OTHER_OUTCOMES})",
        shown_name(name)
    )?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut others = 0;
    let mut counts = Counts::default();
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| CheckError::Read {
                name: name.to_string(),
                source,
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let outcome = check.outcome(&line);
        counts.add(&outcome);
        let key = outcome.key();
        let first_lines = counts.read <= sample as u64;
        let new = seen.insert(key);
        if first_lines || (new && others < MAX_OTHER_OUTCOMES) {
            if !first_lines {
                others += 1;
            }
            check.show(number, &line, &outcome, out)?;
        }
    }
    let summary = counts.summary();
    check.show_summary(name, &summary, out)?;
    out.flush()?;
    Ok(summary)
}

/// Opens one input as `replay` does (standard input for `-`, gzip by its magic bytes).
fn open(name: &str) -> Result<Box<dyn BufRead>, CheckError> {
    match replay::open(name) {
        Ok(input) => Ok(input.reader),
        Err(ReplayError::Open { name, source }) => Err(CheckError::Open { name, source }),
        Err(ReplayError::Read { name, source }) => Err(CheckError::Read { name, source }),
        Err(other) => Err(CheckError::Read {
            name: name.to_string(),
            source: io::Error::other(other),
        }),
    }
}

fn shown_name(name: &str) -> String {
    match name {
        "-" => "standard input".to_string(),
        name => escape(name.as_bytes()),
    }
}

#[derive(Default)]
struct Counts {
    read: u64,
    counted: u64,
    by_format: HashMap<usize, u64>,
    rejected: HashMap<&'static str, u64>,
    ignored: HashMap<&'static str, u64>,
}

impl Counts {
    fn add(&mut self, outcome: &Outcome<'_>) {
        self.read += 1;
        match outcome {
            Outcome::Counted(_, format) => {
                self.counted += 1;
                if let Some(format) = format {
                    *self.by_format.entry(*format).or_default() += 1;
                }
            }
            Outcome::Ignored(reason) => *self.ignored.entry(reason).or_default() += 1,
            Outcome::Rejected(reason) => *self.rejected.entry(reason).or_default() += 1,
        }
    }

    fn summary(self) -> Summary {
        let sorted = |map: HashMap<&'static str, u64>| {
            let mut v: Vec<(String, u64)> =
                map.into_iter().map(|(r, n)| (r.to_string(), n)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v
        };
        let mut by_format: Vec<(usize, u64)> = self
            .by_format
            .into_iter()
            .map(|(format, n)| (format + 1, n))
            .collect();
        by_format.sort();
        Summary {
            read: self.read,
            counted: self.counted,
            counted_by_format: by_format,
            rejected: sorted(self.rejected),
            ignored: sorted(self.ignored),
        }
    }
}

/// The configuration a file is read with.
struct Check<'c> {
    config: &'c Config,
    /// HAProxy's httplog and tcplog compiled, to say where a line the built-in parser
    /// rejects stops matching them.
    built_in: Vec<Format>,
    /// `Label::Custom` of each slot of `HLE_CUSTOM_LABELS`.
    custom: Vec<Label>,
}

impl<'c> Check<'c> {
    fn new(config: &'c Config) -> Self {
        let built_in = ["httplog", "tcplog"]
            .into_iter()
            .filter_map(|name| Format::named_or_compiled(name).ok())
            .collect();
        let custom = config
            .custom_labels
            .iter()
            .enumerate()
            .map(|(slot, name)| Label::Custom { slot, name })
            .collect();
        Check {
            config,
            built_in,
            custom,
        }
    }

    /// What the pipeline makes of `line`, and which format counted it.
    fn outcome<'a>(&self, line: &'a [u8]) -> Outcome<'a> {
        if line.len() > self.config.max_line_bytes {
            return Outcome::Rejected(OVERSIZE_FRAME);
        }
        let message = syslog::split(line).message;
        match self.config.parser.parse(message) {
            Ok(Entry::Traffic(record)) => {
                let format = self.counted_by(message, record.truncated);
                Outcome::Counted(record, format)
            }
            Ok(Entry::Notice(reason)) => Outcome::Ignored(reason),
            Err(err) => Outcome::Rejected(err.reason()),
        }
    }

    /// The first format that reads `message` as traffic, whole or `cut` short as the
    /// parser took it.
    fn counted_by(&self, message: &[u8], cut: bool) -> Option<usize> {
        self.config
            .parser
            .formats()
            .iter()
            .position(|format| match format {
                LineFormat::BuiltIn => {
                    matches!(haproxy::parse(message), Ok(Entry::Traffic(r)) if r.truncated == cut)
                }
                LineFormat::Compiled(format) => {
                    matches!(format.extract(message), Ok(r) if r.truncated == cut)
                }
            })
    }

    fn show(
        &self,
        number: u64,
        line: &[u8],
        outcome: &Outcome<'_>,
        out: &mut impl Write,
    ) -> io::Result<()> {
        writeln!(out, "line {number}: {}", shortened(line))?;
        if let Outcome::Rejected(OVERSIZE_FRAME) = outcome {
            return writeln!(
                out,
                "  rejected: {OVERSIZE_FRAME}: {} bytes, longer than HLE_MAX_LINE_BYTES={}",
                line.len(),
                self.config.max_line_bytes
            );
        }
        let header = syslog::header(line);
        writeln!(out, "  syslog header: {}", describe_header(line, &header))?;
        let message = header.message;
        // Where the message starts in the line, for columns of the line.
        let start = (message.as_ptr() as usize)
            .saturating_sub(line.as_ptr() as usize)
            .min(line.len());
        match outcome {
            Outcome::Counted(record, format) => {
                let by = match format {
                    Some(k) => format!("format {}, {}", k + 1, self.format_name(*k)),
                    None => "the formats together".to_string(),
                };
                let cut = match record.truncated {
                    true => " (cut short by HAProxy inside the request line)",
                    false => "",
                };
                writeln!(out, "  counted, read by {by}{cut}")?;
                self.show_record(record, out)
            }
            Outcome::Ignored(reason) => {
                writeln!(out, "  ignored: {reason} (an HAProxy notice, not traffic)")
            }
            Outcome::Rejected(reason) => {
                write!(out, "  rejected: {reason}")?;
                match ConnectionLine::parse(message) {
                    Some(connect) if *reason == "no_log_format" => writeln!(
                        out,
                        "; frontend {} has no log format: add `option {}` to it",
                        escape(connect.frontend),
                        if connect.http { "httplog" } else { "tcplog" }
                    )?,
                    _ => writeln!(out)?,
                }
                self.show_stops(line, start, message, *reason != "no_log_format", out)
            }
        }
    }

    /// A format's name: the built-in parser's, a built-in format's, or the format as
    /// given (shortened).
    fn format_name(&self, index: usize) -> String {
        match self.config.parser.formats().get(index) {
            Some(LineFormat::BuiltIn) => "httplog/tcplog (built-in parser)".to_string(),
            Some(LineFormat::Compiled(format)) => {
                let source: String = format.source.chars().take(60).collect();
                match source.len() < format.source.len() {
                    true => format!("{source}..."),
                    false => source,
                }
            }
            None => String::new(),
        }
    }

    /// The record as the metrics see it: every label's value (paths and client
    /// addresses as `HLE_PATH_*` and `HLE_CLIENT_IP_PREFIX_*` make them), timers, bytes.
    fn show_record(&self, record: &LogRecord<'_>, out: &mut impl Write) -> io::Result<()> {
        let path = self
            .config
            .cardinality
            .path
            .normalise(&record.http_request_path);
        let client_ip = self.config.cardinality.client_ip.apply(&record.client_ip);
        let labels: Vec<String> = Label::ALL
            .iter()
            .map(|&label| {
                let value = match label {
                    Label::HttpRequestPath => &*path,
                    Label::ClientIp => &*client_ip,
                    other => other.value(record),
                };
                format!("{}=\"{}\"", label.name(), escape(value.as_bytes()))
            })
            .collect();
        writeln!(out, "  labels: {}", labels.join(" "))?;
        if path != record.http_request_path {
            writeln!(
                out,
                "  http_request_path from {:?}",
                escape(record.http_request_path.as_bytes())
            )?;
        }
        if !self.custom.is_empty() {
            let custom: Vec<String> = self
                .custom
                .iter()
                .map(|label| {
                    let value = label.value(record);
                    format!("{}=\"{}\"", label.name(), escape(value.as_bytes()))
                })
                .collect();
            writeln!(out, "  custom labels: {}", custom.join(" "))?;
        }
        let timer = |t: Timer| t.map_or("-".to_string(), |ms| ms.to_string());
        writeln!(
            out,
            "  timers (ms, - when not logged or -1): TR={} Tw={} Tc={} Tr={} Ta={}  bytes_read={}  queues: server={} backend={}",
            timer(record.request_wait),
            timer(record.queued),
            timer(record.connect),
            timer(record.response),
            timer(record.session),
            record.bytes_read,
            record.server_queue,
            record.backend_queue,
        )
    }

    /// Where each format stopped matching `message`, which starts at byte `start` of
    /// `line`; for the built-in parser, only `where_built_in`.
    fn show_stops(
        &self,
        line: &[u8],
        start: usize,
        message: &[u8],
        where_built_in: bool,
        out: &mut impl Write,
    ) -> io::Result<()> {
        for (k, format) in self.config.parser.formats().iter().enumerate() {
            write!(out, "  format {}, {}: ", k + 1, self.format_name(k))?;
            let stop = match format {
                LineFormat::BuiltIn => match haproxy::parse(message) {
                    Err(err) => {
                        write!(out, "{}", err.reason())?;
                        // Where it stops matching HAProxy's httplog or tcplog, whichever it
                        // follows further (httplog on a tie).
                        let furthest = self
                            .built_in
                            .iter()
                            .rev()
                            .filter(|_| where_built_in)
                            .filter_map(|f| f.extract(message).err().map(|m| (f, m)))
                            .max_by_key(|(_, m)| m.offset);
                        match furthest {
                            Some((f, mismatch)) => {
                                write!(out, "; read as {},", f.source)?;
                                Some(f.explain(message, &mismatch))
                            }
                            _ => None,
                        }
                    }
                    Ok(_) => {
                        write!(out, "matches")?;
                        None
                    }
                },
                LineFormat::Compiled(format) => match format.extract(message) {
                    Err(mismatch) => {
                        write!(out, "{}:", mismatch.reason)?;
                        Some(format.explain(message, &mismatch))
                    }
                    Ok(_) => {
                        write!(out, "matches")?;
                        None
                    }
                },
            };
            match stop {
                Some(stop) => show_stop(line, start, message, &stop, out)?,
                None => writeln!(out)?,
            }
        }
        Ok(())
    }

    fn show_summary(&self, name: &str, summary: &Summary, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "# {}: {} line{} read: {} counted, {} rejected, {} ignored",
            shown_name(name),
            summary.read,
            if summary.read == 1 { "" } else { "s" },
            summary.counted,
            summary.rejected_total(),
            summary.ignored_total()
        )?;
        let formats = self.config.parser.formats().len();
        for (format, n) in &summary.counted_by_format {
            if formats > 1 {
                writeln!(
                    out,
                    "#   counted  {n:>10}  by format {format}, {}",
                    self.format_name(format - 1)
                )?;
            }
        }
        for (reason, n) in &summary.rejected {
            writeln!(out, "#   rejected {n:>10}  {reason}")?;
        }
        for (reason, n) in &summary.ignored {
            writeln!(out, "#   ignored  {n:>10}  {reason}")?;
        }
        Ok(())
    }
}

/// ` expected X at column N, found "..."`, then the line around that column with a caret
/// under it.
fn show_stop(
    line: &[u8],
    start: usize,
    message: &[u8],
    stop: &Stop,
    out: &mut impl Write,
) -> io::Result<()> {
    let at = (start + stop.offset).min(line.len());
    let found = message.get(stop.found.0..stop.found.1).unwrap_or_default();
    let found = if found.is_empty() && stop.found.0 >= message.len() {
        "the end of the line".to_string()
    } else if found.len() > 40 {
        format!("\"{}...\"", escape(&found[..40]))
    } else {
        format!("\"{}\"", escape(found))
    };
    writeln!(
        out,
        " expected {} at column {}, found {found}",
        stop.expected,
        at + 1
    )?;
    const AROUND: usize = 40;
    let from = at.saturating_sub(AROUND);
    let to = (at + AROUND).min(line.len());
    let before = format!(
        "{}{}",
        if from > 0 { "..." } else { "" },
        escape(&line[from..at])
    );
    let after = format!(
        "{}{}",
        escape(&line[at..to]),
        if to < line.len() { "..." } else { "" }
    );
    writeln!(out, "    {before}{after}")?;
    writeln!(out, "    {}^", " ".repeat(before.chars().count()))
}

/// The header fields of a line, or `none`.
fn describe_header(line: &[u8], header: &syslog::Header<'_>) -> String {
    let mut parts = Vec::new();
    if let Some(priority) = header.priority {
        parts.push(format!(
            "priority {priority} ({})",
            facility_severity(priority)
        ));
    }
    match header.timestamp {
        Timestamp::Missing => {}
        Timestamp::Bsd(t) | Timestamp::Iso(t) => parts.push(format!("timestamp {}", escape(t))),
    }
    if let Some(host) = header.host {
        parts.push(format!("host {}", escape(host)));
    }
    match (header.app, header.pid) {
        (Some(app), Some(pid)) => parts.push(format!("tag {}[{}]", escape(app), escape(pid))),
        (Some(app), None) => parts.push(format!("tag {}", escape(app))),
        (None, Some(pid)) => parts.push(format!("pid {}", escape(pid))),
        (None, None) => {}
    }
    match parts.is_empty() {
        true if header.message.len() == line.len() => "none (the line is the message)".into(),
        true => "none".into(),
        false => parts.join(", "),
    }
}

/// `local0.info` for 134.
fn facility_severity(priority: u8) -> String {
    const FACILITIES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    const SEVERITIES: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    let facility = FACILITIES
        .get(usize::from(priority / 8))
        .copied()
        .unwrap_or("unknown");
    let severity = SEVERITIES
        .get(usize::from(priority % 8))
        .copied()
        .unwrap_or("unknown");
    format!("{facility}.{severity}")
}

/// The line escaped, its middle left out when it is long.
fn shortened(line: &[u8]) -> String {
    if line.len() <= SHOWN_BYTES {
        return escape(line);
    }
    let (head, tail) = (SHOWN_BYTES * 2 / 3, SHOWN_BYTES / 4);
    format!(
        "{} ... ({} bytes left out) ... {}",
        escape(&line[..head]),
        line.len() - head - tail,
        escape(&line[line.len() - tail..])
    )
}

/// Text as it can be shown on a terminal: `\n`, `\r`, `\t`, other control bytes and
/// bytes that are not UTF-8 as `\xNN`; invisible, line-separating or reordering characters
/// as `\u{N}`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control()
                    || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}') =>
                {
                    out.push_str(&format!("\\u{{{:x}}}", c as u32))
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(format: &str) -> Config {
        let env = [("HLE_LOG_FORMAT", format), ("HLE_MAX_LINE_BYTES", "600")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(&env).unwrap()
    }

    const FORMATS: [&str; 3] = [
        "httplog",
        "clf,httplog",
        "%ci:%cp [%tr] %ft %b/%s %{+Q}[var(txn.x)] %ST %B %hrl %{+Q}r",
    ];

    proptest! {
        #[test]
        fn no_input_panics(
            lines in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..700),
                    "[ -~\\n\\r\\x00\\x1b\\u{2028}é]{0,300}".prop_map(String::into_bytes),
                ],
                0..8,
            ),
            format in 0..FORMATS.len(),
        ) {
            let config = config(FORMATS[format]);
            let mut input = Vec::new();
            for line in &lines {
                input.extend_from_slice(line);
                input.push(b'\n');
            }
            let mut out = Vec::new();
            let summary = read(&config, "-", &input[..], 3, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            prop_assert!(text.lines().all(|l| !l.contains(['\r', '\x1b'])), "{text:?}");
            prop_assert_eq!(
                summary.read,
                summary.counted + summary.rejected_total() + summary.ignored_total()
            );
        }
    }

    #[test]
    fn every_mutation_of_real_lines_is_shown() {
        let log = include_bytes!("../tests/fixtures/haproxy/h_edge.log");
        let first = log.split(|&b| b == b'\n').next().unwrap_or_default();
        let mut input = Vec::new();
        for at in 0..first.len() {
            for b in [b' ', b'"', b'x', b'/', 0xff] {
                let mut line = first.to_vec();
                line[at] = b;
                input.extend_from_slice(&line);
                input.push(b'\n');
            }
        }
        for format in FORMATS {
            let mut out = Vec::new();
            let summary = read(&config(format), "-", &input[..], usize::MAX, &mut out).unwrap();
            assert_eq!(summary.read, first.len() as u64 * 5);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.matches("\nline ").count() as u64, summary.read);
        }
    }

    #[test]
    fn control_bytes_and_bad_utf8_are_escaped() {
        assert_eq!(
            escape(b"a\nb\r\t\x1b[31m\x00\x7f\xff\xc3\xa9\xe2\x80\xae"),
            "a\\nb\\r\\t\\x1b[31m\\x00\\x7f\\xff\u{e9}\\u{202e}"
        );
        assert_eq!(escape("\u{85}\u{2028}".as_bytes()), "\\u{85}\\u{2028}");
    }

    #[test]
    fn long_lines_are_shortened_in_the_middle() {
        let line = [b'a'; 1000];
        let shown = shortened(&line);
        assert!(shown.contains(" ... (780 bytes left out) ... "), "{shown}");
        assert!(shown.len() < 300);
        assert_eq!(shortened(b"short"), "short");
    }

    #[test]
    fn priorities_read_as_facility_and_severity() {
        assert_eq!(facility_severity(134), "local0.info");
        assert_eq!(facility_severity(0), "kern.emerg");
        assert_eq!(facility_severity(255), "unknown.debug");
    }
}
