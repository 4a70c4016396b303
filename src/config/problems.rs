//! Small readers shared by the settings: lists, durations, numbers and addresses, each
//! adding its own problem to the list `Config::from_env` reports at once.

use std::net::SocketAddr;
use std::time::Duration;

/// Items of a comma-separated list, trimmed, empty ones skipped.
pub(super) fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `500ms`, `30s`, `10m`, `1h`, or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| "expected a number with an optional unit (ms, s, m, h)".to_string())?;
    let millis = match unit {
        "ms" => Some(number),
        "" | "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| "too large".to_string())
}

/// The problems found so far, in the order they are reported.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn add(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    pub(super) fn addr(&mut self, var: &str, value: &str) -> Option<SocketAddr> {
        match value.trim().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.add(format!(
                    "{var}={value:?}: expected IP:PORT, e.g. 127.0.0.1:5140 or [::]:5140"
                ));
                None
            }
        }
    }

    pub(super) fn optional_addr(&mut self, var: &str, value: &str) -> Option<SocketAddr> {
        if value.trim().is_empty() {
            None
        } else {
            self.addr(var, value)
        }
    }

    /// A duration; `None` for `0` (never) and for a bad value, which is a problem.
    pub(super) fn optional_duration(&mut self, var: &str, value: &str) -> Option<Duration> {
        match parse_duration(value) {
            Ok(d) => (!d.is_zero()).then_some(d),
            Err(why) => {
                self.add(format!("{var}={value:?}: {why}"));
                None
            }
        }
    }

    /// The value of a setting that reports its own problems; the default when it has some.
    pub(super) fn or_default<T: Default>(&mut self, result: Result<T, Vec<String>>) -> T {
        result.unwrap_or_else(|problems| {
            self.0.extend(problems);
            T::default()
        })
    }

    pub(super) fn number(
        &mut self,
        var: &str,
        value: &str,
        min: usize,
        max: usize,
    ) -> Option<usize> {
        match value.trim().parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.add(format!(
                    "{var}={value:?}: expected a whole number from {min} to {max}"
                ));
                None
            }
        }
    }
}
