//! The HTTP server's limits (`HLE_WEB_*` beyond the address and path): connections,
//! request heads, connection age and the reuse of a rendered exposition.

use std::time::Duration;

use super::reader::{parse_duration, Reader};

/// The smallest read buffer hyper accepts (`max_buf_size` panics below it).
pub(crate) const MIN_HEADER_BYTES: usize = 8192;
const MAX_HEADER_BYTES: usize = 1 << 20;
/// A header timeout longer than this would let slow clients hold connections for no use.
const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(600);
/// A reused rendering older than this would show metrics staler than any scrape interval.
const MAX_SCRAPE_CACHE_TTL: Duration = Duration::from_secs(60);

/// The HTTP server's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    pub max_connections: usize,
    /// For a request head, counted from its start or from the end of the previous
    /// response (an idle keep-alive connection closes after it too).
    pub read_header_timeout: Duration,
    pub max_header_bytes: usize,
    /// `None`: connections may live as long as their client keeps them.
    pub max_connection_age: Option<Duration>,
    /// How long a rendered exposition is served again; zero: only to the scrapes that
    /// waited for it.
    pub scrape_cache_ttl: Duration,
}

/// The `HLE_WEB_*` limits; a bad value is a problem (and reads as zero).
pub(super) fn web(r: &mut Reader) -> WebConfig {
    let max_connections = r.number("HLE_WEB_MAX_CONNECTIONS", 1, 100_000);
    let read_header_timeout = bounded_duration(
        r,
        "HLE_WEB_READ_HEADER_TIMEOUT",
        Duration::from_millis(1),
        MAX_HEADER_TIMEOUT,
    );
    let max_header_bytes = r.number(
        "HLE_WEB_MAX_REQUEST_HEADER_BYTES",
        MIN_HEADER_BYTES,
        MAX_HEADER_BYTES,
    );
    let max_connection_age = r.optional_duration("HLE_WEB_MAX_CONNECTION_AGE");
    let scrape_cache_ttl = bounded_duration(
        r,
        "HLE_WEB_SCRAPE_CACHE_TTL",
        Duration::ZERO,
        MAX_SCRAPE_CACHE_TTL,
    );
    WebConfig {
        max_connections: max_connections.unwrap_or_default(),
        read_header_timeout: read_header_timeout.unwrap_or_default(),
        max_header_bytes: max_header_bytes.unwrap_or_default(),
        max_connection_age,
        scrape_cache_ttl: scrape_cache_ttl.unwrap_or_default(),
    }
}

/// A duration from `min` to `max`; `None` (and a problem) otherwise.
fn bounded_duration(r: &mut Reader, var: &str, min: Duration, max: Duration) -> Option<Duration> {
    let value = r.get(var);
    match parse_duration(value) {
        Ok(d) if (min..=max).contains(&d) => Some(d),
        Ok(_) => {
            r.problem(format!("{var}={value:?}: expected from {min:?} to {max:?}"));
            None
        }
        Err(why) => {
            r.problem(format!("{var}={value:?}: {why}"));
            None
        }
    }
}
