//! Times in the forms the forwarders write: RFC 3339 for RFC 5424 headers and JSON, the
//! BSD `Mmm dd hh:mm:ss` for RFC 3164. HAProxy writes its dates in its local time
//! without a zone (BSD headers, `%tr`), so they are read in this process's zone (`TZ`,
//! else `/etc/localtime`, else UTC): the same as HAProxy's in the same pod or host.

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, Offset};

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// The local zone's offset, looked up again once a minute.
pub struct Clock {
    offset: FixedOffset,
    checked: Instant,
    /// A time that never moves, for tests.
    fixed: Option<DateTime<FixedOffset>>,
}

const RECHECK: Duration = Duration::from_secs(60);

impl Default for Clock {
    fn default() -> Self {
        Clock {
            offset: *Local::now().fixed_offset().offset(),
            checked: Instant::now(),
            fixed: None,
        }
    }
}

impl Clock {
    /// A clock stopped at `now`, for tests.
    pub fn at(now: DateTime<FixedOffset>) -> Self {
        Clock {
            offset: *now.offset(),
            checked: Instant::now(),
            fixed: Some(now),
        }
    }

    fn now(&mut self) -> DateTime<FixedOffset> {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        if self.checked.elapsed() >= RECHECK {
            *self = Clock::default();
        }
        Local::now().with_timezone(&self.offset)
    }

    /// Now, as RFC 3339 with microseconds.
    pub fn now_rfc3339(&mut self, out: &mut Vec<u8>) {
        let now = self.now().format("%Y-%m-%dT%H:%M:%S%.6f%:z");
        out.extend_from_slice(now.to_string().as_bytes());
    }

    /// Now, as a BSD timestamp.
    pub fn now_bsd(&mut self, out: &mut Vec<u8>) {
        let now = self.now().format("%b %e %H:%M:%S");
        out.extend_from_slice(now.to_string().as_bytes());
    }

    /// `Mmm dd hh:mm:ss` as RFC 3339, in this year (last year for a date more than a
    /// month ahead: a December line read in January).
    pub fn bsd_to_rfc3339(&mut self, bsd: &[u8], out: &mut Vec<u8>) -> bool {
        let now = self.now();
        let Some(month) = month(bsd.get(..3).unwrap_or_default()) else {
            return false;
        };
        let day = digits(bsd.get(4..6).unwrap_or_default().trim_ascii_start());
        let (Some(day), Some((h, m, s))) = (day, clock(bsd.get(7..15).unwrap_or_default())) else {
            return false;
        };
        let mut year = now.year();
        if month > now.month() + 1 {
            year -= 1;
        }
        self.write_local(year, month, day, (h, m, s), None, out)
    }

    /// HAProxy's accept date, `25/Nov/2026:02:09:39.343` (milliseconds optional), as
    /// RFC 3339 with its milliseconds.
    pub fn accept_date_to_rfc3339(&mut self, date: &[u8], out: &mut Vec<u8>) -> bool {
        if date.len() < 20 || date[2] != b'/' || date[6] != b'/' || date[11] != b':' {
            return false;
        }
        let (Some(day), Some(month), Some(year), Some(time)) = (
            digits(&date[..2]),
            month(&date[3..6]),
            digits(&date[7..11]),
            clock(&date[12..20]),
        ) else {
            return false;
        };
        let millis = match date.get(20..) {
            Some([b'.', ms @ ..]) if ms.len() == 3 => digits(ms),
            Some([]) => None,
            _ => return false,
        };
        self.write_local(year as i32, month, day, time, millis, out)
    }

    fn write_local(
        &self,
        year: i32,
        month: u32,
        day: u32,
        (h, m, s): (u32, u32, u32),
        millis: Option<u32>,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(naive) = NaiveDate::from_ymd_opt(year, month, day)
            .and_then(|d| d.and_hms_milli_opt(h, m, s, millis.unwrap_or(0)))
        else {
            return false;
        };
        let local = local_offset(naive).unwrap_or(self.offset);
        let pattern = match millis {
            Some(_) => "%Y-%m-%dT%H:%M:%S%.3f",
            None => "%Y-%m-%dT%H:%M:%S",
        };
        out.extend_from_slice(naive.format(pattern).to_string().as_bytes());
        out.extend_from_slice(local.to_string().as_bytes());
        true
    }
}

/// The offset the local zone had at `naive`; `None` where it is ambiguous or skipped.
fn local_offset(naive: NaiveDateTime) -> Option<FixedOffset> {
    use chrono::TimeZone;
    Local
        .offset_from_local_datetime(&naive)
        .single()
        .map(|o| o.fix())
}

/// `YYYY-MM-DDThh:mm:ss...` as `Mmm dd hh:mm:ss`, the wall time as written.
pub fn rfc3339_to_bsd(ts: &[u8], out: &mut Vec<u8>) -> bool {
    let (Some(month), Some(day)) = (
        digits(ts.get(5..7).unwrap_or_default()),
        digits(ts.get(8..10).unwrap_or_default()),
    ) else {
        return false;
    };
    let Some(name) = MONTHS.get((month as usize).wrapping_sub(1)) else {
        return false;
    };
    if clock(ts.get(11..19).unwrap_or_default()).is_none() {
        return false;
    }
    out.extend_from_slice(&name[..]);
    out.extend_from_slice(format!(" {day:>2} ").as_bytes());
    out.extend_from_slice(&ts[11..19]);
    true
}

fn month(name: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m[..] == *name)
        .map(|i| i as u32 + 1)
}

fn digits(d: &[u8]) -> Option<u32> {
    if d.is_empty() || d.len() > 9 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(d.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

/// `hh:mm:ss`
fn clock(t: &[u8]) -> Option<(u32, u32, u32)> {
    if t.len() != 8 || t[2] != b':' || t[5] != b':' {
        return None;
    }
    Some((digits(&t[..2])?, digits(&t[3..5])?, digits(&t[6..8])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock_at(rfc3339: &str) -> Clock {
        Clock::at(DateTime::parse_from_rfc3339(rfc3339).unwrap())
    }

    fn text(f: impl FnOnce(&mut Vec<u8>) -> bool) -> Option<String> {
        let mut out = Vec::new();
        f(&mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn accept_dates() {
        let mut clock = clock_at("2026-11-25T02:10:00+00:00");
        let got = text(|o| clock.accept_date_to_rfc3339(b"25/Nov/2026:02:09:39.343", o)).unwrap();
        // The zone is this process's: check the part that does not depend on it.
        assert!(got.starts_with("2026-11-25T02:09:39.343"), "{got}");
        assert!(DateTime::parse_from_rfc3339(&got).is_ok(), "{got}");
        let got = text(|o| clock.accept_date_to_rfc3339(b"05/Jan/2027:23:59:59", o)).unwrap();
        assert!(got.starts_with("2027-01-05T23:59:59"), "{got}");
        for bad in [
            &b"25/Nov/2026:02:09:39.34"[..],
            b"32/Nov/2026:02:09:39",
            b"25/Nox/2026:02:09:39",
            b"",
        ] {
            assert_eq!(text(|o| clock.accept_date_to_rfc3339(bad, o)), None);
        }
    }

    #[test]
    fn bsd_dates_get_a_year() {
        let mut clock = clock_at("2027-01-02T00:00:01+00:00");
        let got = text(|o| clock.bsd_to_rfc3339(b"Dec 31 23:59:59", o)).unwrap();
        assert!(got.starts_with("2026-12-31T23:59:59"), "{got}");
        let got = text(|o| clock.bsd_to_rfc3339(b"Jan  2 00:00:00", o)).unwrap();
        assert!(got.starts_with("2027-01-02T00:00:00"), "{got}");
        assert_eq!(text(|o| clock.bsd_to_rfc3339(b"Feb 30 00:00:00", o)), None);
    }

    #[test]
    fn rfc3339_as_bsd() {
        let got = text(|o| rfc3339_to_bsd(b"2026-11-05T02:09:56.857871+00:00", o));
        assert_eq!(got.as_deref(), Some("Nov  5 02:09:56"));
        assert_eq!(text(|o| rfc3339_to_bsd(b"2026-13-05T02:09:56Z", o)), None);
    }
}
