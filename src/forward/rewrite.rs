//! A received line written again with the header the onward syslog target asks for
//! (`HLE_FORWARD_SYSLOG_FORMAT`), keeping the priority, timestamp, host, tag and pid it
//! came with. What the line lacks (HAProxy's default format has no host, `raw` no
//! header at all) is filled in as a syslog daemon would: priority 134 (local0.info),
//! now, this host's name, `haproxy`.

use crate::config::SyslogFormat;
use crate::forward::clock::{rfc3339_to_bsd, Clock};
use crate::syslog::{self, Timestamp};

/// local0.info, HAProxy's usual facility and its level for traffic.
const DEFAULT_PRIORITY: u8 = 134;
const DEFAULT_APP: &[u8] = b"haproxy";

/// What a rewrite needs besides the line.
pub struct Rewriter {
    pub format: SyslogFormat,
    /// This host's name, for lines without one.
    pub hostname: Vec<u8>,
    pub clock: Clock,
}

impl Rewriter {
    pub fn new(format: SyslogFormat) -> Self {
        Rewriter {
            format,
            hostname: hostname(),
            clock: Clock::default(),
        }
    }

    /// Appends `frame` in the target format (without framing) to `out`.
    pub fn write(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        match self.format {
            SyslogFormat::AsReceived => out.extend_from_slice(frame),
            SyslogFormat::Rfc5424 if is_rfc5424(frame) => out.extend_from_slice(frame),
            SyslogFormat::Rfc5424 => self.rfc5424(frame, out),
            SyslogFormat::Rfc3164 => self.rfc3164(frame, out),
        }
    }

    /// `<PRI>1 TIMESTAMP HOST APP PROCID - - MSG`
    fn rfc5424(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let header = syslog::header(frame);
        priority(header.priority, out);
        out.extend_from_slice(b"1 ");
        let written = match header.timestamp {
            Timestamp::Iso(ts) => {
                out.extend_from_slice(ts);
                true
            }
            Timestamp::Bsd(ts) => self.clock.bsd_to_rfc3339(ts, out),
            Timestamp::Missing => false,
        };
        if !written {
            self.clock.now_rfc3339(out);
        }
        for (field, default) in [
            (header.host, &self.hostname[..]),
            (header.app, DEFAULT_APP),
            (header.pid, b"-"),
        ] {
            out.push(b' ');
            out.extend_from_slice(field.map_or(default, |f| printable(f, 48, default)));
        }
        out.extend_from_slice(b" - - ");
        out.extend_from_slice(header.message);
    }

    /// `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`
    fn rfc3164(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let header = syslog::header(frame);
        priority(header.priority, out);
        let written = match header.timestamp {
            Timestamp::Bsd(ts) => {
                out.extend_from_slice(ts);
                true
            }
            Timestamp::Iso(ts) => rfc3339_to_bsd(ts, out),
            Timestamp::Missing => false,
        };
        if !written {
            self.clock.now_bsd(out);
        }
        out.push(b' ');
        let host = header
            .host
            .map_or(&self.hostname[..], |h| printable(h, 255, &self.hostname));
        out.extend_from_slice(if host == b"-" { b"localhost" } else { host });
        out.push(b' ');
        out.extend_from_slice(
            header
                .app
                .map_or(DEFAULT_APP, |a| printable(a, 48, DEFAULT_APP)),
        );
        if let Some(pid) = header.pid {
            out.push(b'[');
            out.extend_from_slice(printable(pid, 128, b"0"));
            out.push(b']');
        }
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.message);
    }
}

/// `<PRI>1 ` followed by a timestamp: already RFC 5424, sent as it came (structured
/// data and message id included).
fn is_rfc5424(frame: &[u8]) -> bool {
    syslog::parse_pri(frame).is_some_and(|(_, rest)| {
        rest.starts_with(b"1 ") && rest.get(2).is_some_and(u8::is_ascii_digit)
    })
}

fn priority(priority: Option<u8>, out: &mut Vec<u8>) {
    out.push(b'<');
    out.extend_from_slice(priority.unwrap_or(DEFAULT_PRIORITY).to_string().as_bytes());
    out.push(b'>');
}

/// A header field as RFC 5424 allows it (printable ASCII, no space, at most `max`
/// bytes), else `default`.
fn printable<'a>(field: &'a [u8], max: usize, default: &'a [u8]) -> &'a [u8] {
    if !field.is_empty() && field.len() <= max && field.iter().all(u8::is_ascii_graphic) {
        field
    } else {
        default
    }
}

/// This host's name (a pod's name in Kubernetes), as syslog daemons find it.
fn hostname() -> Vec<u8> {
    let name = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let name = name.trim().as_bytes().to_vec();
    if name.is_empty() || name.len() > 255 || !name.iter().all(u8::is_ascii_graphic) {
        b"-".to_vec()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    const MSG: &str = "127.0.0.1:47056 [25/Nov/2026:02:09:39.343] fe be/s1 0/0/0/0/0 200 73 - - ---- 3/1/0/0/0 0/0 \"GET / HTTP/1.1\"";

    fn rewrite(format: SyslogFormat, header: &str) -> String {
        let mut rewriter = Rewriter {
            format,
            hostname: b"pod-7".to_vec(),
            clock: Clock::at(DateTime::parse_from_rfc3339("2026-11-25T02:10:00+00:00").unwrap()),
        };
        let mut out = Vec::new();
        rewriter.write(format!("{header}{MSG}").as_bytes(), &mut out);
        let out = String::from_utf8(out).unwrap();
        out.strip_suffix(MSG).expect(&out).to_string()
    }

    #[test]
    fn rfc5424_keeps_what_the_line_had() {
        use SyslogFormat::Rfc5424;
        let kept = "<134>1 2026-11-25T02:09:56.857871+00:00 - haproxy 2246 - [x@1 a=\"b\"] ";
        assert_eq!(rewrite(Rfc5424, kept), kept);
        let got = rewrite(Rfc5424, "<133>Nov 25 02:09:45 lb1 haproxy[1721]: ");
        assert!(got.starts_with("<133>1 2026-11-25T02:09:45"), "{got}");
        assert!(got.ends_with(" lb1 haproxy 1721 - - "), "{got}");
        let got = rewrite(Rfc5424, "<134>Nov 25 02:09:39 haproxy[1440]: ");
        assert!(got.ends_with(" pod-7 haproxy 1440 - - "), "{got}");
        assert_eq!(
            rewrite(Rfc5424, "<6>2026-11-25T02:11:16.586437+00:00 "),
            "<6>1 2026-11-25T02:11:16.586437+00:00 pod-7 haproxy - - - "
        );
        assert_eq!(
            rewrite(Rfc5424, ""),
            "<134>1 2026-11-25T02:10:00.000000+00:00 pod-7 haproxy - - - "
        );
    }

    #[test]
    fn rfc3164_keeps_what_the_line_had() {
        use SyslogFormat::Rfc3164;
        let kept = "<133>Nov  5 02:09:45 lb1 haproxy[1721]: ";
        assert_eq!(rewrite(Rfc3164, kept), kept);
        assert_eq!(
            rewrite(Rfc3164, "<134>Nov 25 02:09:39 haproxy[1440]: "),
            "<134>Nov 25 02:09:39 pod-7 haproxy[1440]: "
        );
        assert_eq!(
            rewrite(
                Rfc3164,
                "<134>1 2026-11-25T02:09:56.857871+00:00 - haproxy 2246 - - "
            ),
            "<134>Nov 25 02:09:56 pod-7 haproxy[2246]: "
        );
        assert_eq!(
            rewrite(Rfc3164, "<6>"),
            "<6>Nov 25 02:10:00 pod-7 haproxy: "
        );
    }

    #[test]
    fn as_received_is_the_frame() {
        let header = "<134>Nov 25 02:09:39 haproxy[1440]: ";
        assert_eq!(rewrite(SyslogFormat::AsReceived, header), header);
    }
}
