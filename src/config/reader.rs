//! The `Reader` every setting is read through: the value in force of a variable (the
//! environment's, or the table's default) and the problems found so far, which
//! `Config::from_env` reports all at once. Also the small parsers of lists, durations,
//! numbers and addresses, each naming its variable in its problem.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::vars::default_of;

/// Items of a comma-separated list, trimmed, empty ones skipped.
pub(super) fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// The units of a duration.
const DURATION_UNITS: &str = "ms, s, m or h";

/// `500ms`, `30s`, `10m`, `1h`, or `0`. A number without a unit is refused: `30` could
/// be meant as seconds or milliseconds (HAProxy's own timeouts are milliseconds).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a number and a unit ({DURATION_UNITS}), e.g. 30s, or 0"))?;
    let millis = match unit {
        "" if number == 0 => Some(0),
        "" => {
            return Err(format!(
                "a duration needs a unit: {DURATION_UNITS}, e.g. {number}s or {number}ms; only 0 goes without"
            ))
        }
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        other => return Err(format!("unknown unit {other:?}; use {DURATION_UNITS}")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| "too large".to_string())
}

/// The environment being read, and the problems found in it so far, in the order they
/// are reported.
pub(super) struct Reader<'a> {
    env: &'a HashMap<String, String>,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(env: &'a HashMap<String, String>) -> Reader<'a> {
        Reader {
            env,
            problems: Vec::new(),
        }
    }

    /// The value in force of a variable of the table: the environment's, or the default.
    pub(super) fn get(&self, var: &str) -> &'a str {
        match self.env.get(var) {
            Some(value) => value,
            // A name missing from the table reads as empty; a unit test sets every
            // variable of the table and checks that each one is read.
            None => default_of(var).unwrap_or_default(),
        }
    }

    /// The value of a variable as the environment gives it, if it does.
    pub(super) fn given(&self, var: &str) -> Option<&'a str> {
        self.env.get(var).map(String::as_str)
    }

    /// The whole environment (for the names nobody reads).
    pub(super) fn env(&self) -> &'a HashMap<String, String> {
        self.env
    }

    pub(super) fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    pub(super) fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    pub(super) fn into_problems(self) -> Vec<String> {
        self.problems
    }

    pub(super) fn addr(&mut self, var: &str) -> Option<SocketAddr> {
        let value = self.get(var);
        match value.trim().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(format!(
                    "{var}={value:?}: expected IP:PORT, e.g. 127.0.0.1:5140 or [::]:5140"
                ));
                None
            }
        }
    }

    /// An address; `None` for an empty value (disabled) and for a bad one, a problem.
    pub(super) fn optional_addr(&mut self, var: &str) -> Option<SocketAddr> {
        if self.get(var).trim().is_empty() {
            None
        } else {
            self.addr(var)
        }
    }

    /// A duration; `None` for `0` (never) and for a bad value, which is a problem.
    pub(super) fn optional_duration(&mut self, var: &str) -> Option<Duration> {
        let value = self.get(var);
        match parse_duration(value) {
            Ok(d) => (!d.is_zero()).then_some(d),
            Err(why) => {
                self.problem(format!("{var}={value:?}: {why}"));
                None
            }
        }
    }

    /// The value of a setting that reports its own problems; the default when it has some.
    pub(super) fn or_default<T: Default>(&mut self, result: Result<T, Vec<String>>) -> T {
        result.unwrap_or_else(|problems| {
            self.problems.extend(problems);
            T::default()
        })
    }

    pub(super) fn number(&mut self, var: &str, min: usize, max: usize) -> Option<usize> {
        let value = self.get(var);
        match value.trim().parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(format!(
                    "{var}={value:?}: expected a whole number from {min} to {max}"
                ));
                None
            }
        }
    }
}
