//! Exemplars (`HLE_EXEMPLAR_LABEL`): each counter series and each histogram bucket keeps
//! its latest observation with the value of one custom label, usually a trace id, so
//! that a graph can link from a slow bucket to the request. OpenMetrics and the protobuf
//! format carry them; the 0.0.4 text format has no place for them. docs/native-histograms.md
//! is the manual.

use std::time::{SystemTime, UNIX_EPOCH};

/// OpenMetrics allows an exemplar's label names and values 128 characters together;
/// Prometheus refuses a longer one (and, in the text format, the whole scrape).
pub(super) const MAX_LABEL_CHARS: usize = 128;

/// The latest observation of a series or bucket. An empty `id` means none yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Exemplar {
    /// The value observed, in the unit HAProxy logs (as the store keeps sums).
    pub raw: u64,
    /// When it was observed, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The exemplar label's value.
    pub id: String,
}

impl Exemplar {
    /// Replaces the exemplar, reusing the room of the old value.
    pub fn set(&mut self, raw: u64, at_ms: i64, id: &str) {
        self.raw = raw;
        self.at_ms = at_ms;
        self.id.clear();
        self.id.push_str(id);
    }

    pub fn is_set(&self) -> bool {
        !self.id.is_empty()
    }
}

/// The exemplar value of a label value: a W3C `traceparent` (`00-` 32 hex digits `-` 16
/// hex digits `-` 2 hex digits) gives its trace id; other values are kept as they are.
/// `None` for an empty value, HAProxy's `-` for a missing one, an all-zero trace id, or
/// a value too long for an exemplar labelled `label`.
pub(super) fn exemplar_id<'a>(label: &str, value: &'a str) -> Option<&'a str> {
    let id = trace_id(value).unwrap_or(value);
    if id.is_empty() || id == "-" || label.len() + id.chars().count() > MAX_LABEL_CHARS {
        return None;
    }
    Some(id)
}

fn trace_id(value: &str) -> Option<&str> {
    let b = value.as_bytes();
    let hex = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_hexdigit))
    };
    let shaped = b.len() >= 55
        && hex(0..2)
        && b[2] == b'-'
        && hex(3..35)
        && b[35] == b'-'
        && hex(36..52)
        && b[52] == b'-'
        && hex(53..55)
        && (b.len() == 55 || b[55] == b'-');
    if !shaped {
        return None;
    }
    let id = value.get(3..35)?;
    if id.bytes().all(|c| c == b'0') {
        // W3C: an all-zero trace id is invalid.
        return Some("");
    }
    Some(id)
}

/// Now, in milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_gives_its_trace_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            exemplar_id("trace_id", tp),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // A later version may append fields after a dash.
        let longer = format!("{tp}-what-comes");
        assert_eq!(
            exemplar_id("trace_id", &longer),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert_eq!(exemplar_id("trace_id", zero), None);
    }

    #[test]
    fn other_values_are_kept_unless_empty_or_too_long() {
        assert_eq!(exemplar_id("request_id", "abc-123"), Some("abc-123"));
        // Almost a traceparent: kept whole.
        let odd = "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01";
        assert_eq!(exemplar_id("trace_id", odd), Some(odd));
        assert_eq!(exemplar_id("trace_id", ""), None);
        assert_eq!(exemplar_id("trace_id", "-"), None);
        let fits = "x".repeat(MAX_LABEL_CHARS - "id".len());
        assert_eq!(exemplar_id("id", &fits), Some(fits.as_str()));
        let long = format!("{fits}x");
        assert_eq!(exemplar_id("id", &long), None);
        // Characters, not bytes.
        let wide = "é".repeat(MAX_LABEL_CHARS - "id".len());
        assert_eq!(exemplar_id("id", &wide), Some(wide.as_str()));
    }

    #[test]
    fn set_replaces_in_place() {
        let mut e = Exemplar::default();
        assert!(!e.is_set());
        e.set(5, 7, "abcdef");
        e.set(6, 8, "xy");
        assert_eq!((e.raw, e.at_ms, e.id.as_str()), (6, 8, "xy"));
        assert!(e.is_set());
    }
}
