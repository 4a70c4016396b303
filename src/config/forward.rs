//! The forwarding settings (`HLE_FORWARD_*`): which sinks ship the access log on, how,
//! and how much each may hold. Every sink is off by default.

use std::time::Duration;

use super::reader::{parse_duration, Reader};

/// `HLE_FORWARD_STDOUT`: what standard output gets for each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdoutForward {
    Off,
    /// The HAProxy message as received, without its syslog header.
    Raw,
    /// One JSON object per line.
    Json,
}

/// `udp://` or `tcp://` in `HLE_FORWARD_SYSLOG_ADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTransport {
    Udp,
    Tcp,
}

/// `HLE_FORWARD_SYSLOG_FRAMING`: how TCP frames are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardFraming {
    /// RFC 6587 octet counting: `LEN SP MSG`.
    OctetCount,
    /// A newline after each message.
    Lf,
}

/// `HLE_FORWARD_SYSLOG_FORMAT`: the header written before each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    Rfc5424,
    Rfc3164,
    /// The frame byte for byte, header and all.
    AsReceived,
}

/// The onward syslog target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: SyslogTransport,
    /// A host name (resolved again on every reconnect) or an address.
    pub host: String,
    pub port: u16,
    pub framing: ForwardFraming,
    pub format: SyslogFormat,
    /// The longest UDP datagram; longer ones are cut (RFC 5426) and counted.
    pub udp_max_bytes: usize,
    pub connect_timeout: Duration,
    /// The longest wait between two connection attempts.
    pub reconnect_max_delay: Duration,
}

impl SyslogTarget {
    /// `HOST:PORT`, as given.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Which lines of normal traffic are forwarded, when not all are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// The share of ordinary lines forwarded, in (0, 1).
    pub rate: f64,
    /// Lines whose `Ta` (or `Tt`) is at least this long are always forwarded.
    pub slow: Duration,
}

/// Every forwarding setting.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardConfig {
    pub stdout: StdoutForward,
    pub syslog: Option<SyslogTarget>,
    /// `None`: every line is forwarded.
    pub sampling: Option<Sampling>,
    pub buffer_lines: usize,
    pub buffer_bytes: usize,
    /// How long shutdown waits for the queues to empty.
    pub shutdown_grace: Duration,
}

impl ForwardConfig {
    /// Whether any sink is on.
    pub fn any(&self) -> bool {
        self.stdout != StdoutForward::Off || self.syslog.is_some()
    }
}

const MAX_BUFFER_LINES: usize = 100_000_000;
const MAX_BUFFER_BYTES: usize = 1 << 40;
/// The largest UDP payload over IPv4.
const MAX_UDP_BYTES: usize = 65_507;
/// RFC 5426: receivers must take datagrams of 480 bytes.
const MIN_UDP_BYTES: usize = 480;

pub(super) fn forward(r: &mut Reader) -> ForwardConfig {
    let stdout = match r.get("HLE_FORWARD_STDOUT").trim() {
        "off" | "" => StdoutForward::Off,
        "raw" => StdoutForward::Raw,
        "json" => StdoutForward::Json,
        other => {
            r.problem(format!(
                "HLE_FORWARD_STDOUT={other:?}: must be off, raw or json"
            ));
            StdoutForward::Off
        }
    };
    let syslog = syslog_target(r);
    let sampling = sampling(r);
    let buffer_lines = r
        .number("HLE_FORWARD_BUFFER_LINES", 1, MAX_BUFFER_LINES)
        .unwrap_or(1);
    let buffer_bytes = byte_size(r, "HLE_FORWARD_BUFFER_BYTES", 1024, MAX_BUFFER_BYTES);
    let shutdown_grace = duration(r, "HLE_FORWARD_SHUTDOWN_GRACE");
    ForwardConfig {
        stdout,
        syslog,
        sampling,
        buffer_lines,
        buffer_bytes,
        shutdown_grace,
    }
}

fn syslog_target(r: &mut Reader) -> Option<SyslogTarget> {
    let framing = match r.get("HLE_FORWARD_SYSLOG_FRAMING").trim() {
        "octet-count" => ForwardFraming::OctetCount,
        "lf" => ForwardFraming::Lf,
        other => {
            r.problem(format!(
                "HLE_FORWARD_SYSLOG_FRAMING={other:?}: must be octet-count or lf"
            ));
            ForwardFraming::OctetCount
        }
    };
    let format = match r.get("HLE_FORWARD_SYSLOG_FORMAT").trim() {
        "rfc5424" => SyslogFormat::Rfc5424,
        "rfc3164" => SyslogFormat::Rfc3164,
        "as-received" => SyslogFormat::AsReceived,
        other => {
            r.problem(format!(
                "HLE_FORWARD_SYSLOG_FORMAT={other:?}: must be rfc5424, rfc3164 or as-received"
            ));
            SyslogFormat::Rfc5424
        }
    };
    let udp_max_bytes = r
        .number(
            "HLE_FORWARD_SYSLOG_UDP_MAX_BYTES",
            MIN_UDP_BYTES,
            MAX_UDP_BYTES,
        )
        .unwrap_or(MAX_UDP_BYTES);
    let connect_timeout = duration(r, "HLE_FORWARD_CONNECT_TIMEOUT");
    let reconnect_max_delay = duration(r, "HLE_FORWARD_RECONNECT_MAX_DELAY");
    let value = r.get("HLE_FORWARD_SYSLOG_ADDR").trim();
    if value.is_empty() {
        return None;
    }
    match parse_target(value) {
        Ok((transport, host, port)) => Some(SyslogTarget {
            transport,
            host,
            port,
            framing,
            format,
            udp_max_bytes,
            connect_timeout,
            reconnect_max_delay,
        }),
        Err(why) => {
            r.problem(format!("HLE_FORWARD_SYSLOG_ADDR={value:?}: {why}"));
            None
        }
    }
}

/// `udp://HOST:PORT` or `tcp://HOST:PORT`, HOST a name, an IPv4 address or `[IPv6]`.
fn parse_target(value: &str) -> Result<(SyslogTransport, String, u16), String> {
    const EXPECTED: &str = "expected udp://HOST:PORT or tcp://HOST:PORT";
    let (transport, authority) = if let Some(rest) = value.strip_prefix("udp://") {
        (SyslogTransport::Udp, rest)
    } else if let Some(rest) = value.strip_prefix("tcp://") {
        (SyslogTransport::Tcp, rest)
    } else {
        return Err(EXPECTED.to_string());
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("no port; {EXPECTED}"))?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
            .ok_or_else(|| format!("{host:?} is not an IPv6 address in brackets"))?,
        None => host,
    };
    let host_ok = !host.is_empty()
        && (host.contains(':')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    if !host_ok {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("{port:?} is not a port from 1 to 65535"))?;
    Ok((transport, host.to_string(), port))
}

/// `HLE_FORWARD_SAMPLE_RATE` (1: everything) and `HLE_FORWARD_SAMPLE_SLOW`.
fn sampling(r: &mut Reader) -> Option<Sampling> {
    let value = r.get("HLE_FORWARD_SAMPLE_RATE");
    let rate = match value.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => rate,
        _ => {
            r.problem(format!(
                "HLE_FORWARD_SAMPLE_RATE={value:?}: expected a share from 0 to 1, e.g. 0.1"
            ));
            1.0
        }
    };
    let slow = duration(r, "HLE_FORWARD_SAMPLE_SLOW");
    (rate < 1.0).then_some(Sampling { rate, slow })
}

fn duration(r: &mut Reader, var: &str) -> Duration {
    let value = r.get(var);
    parse_duration(value).unwrap_or_else(|why| {
        r.problem(format!("{var}={value:?}: {why}"));
        Duration::ZERO
    })
}

/// A size in bytes, with an optional `KiB`, `MiB` or `GiB`.
pub(super) fn byte_size(r: &mut Reader, var: &str, min: usize, max: usize) -> usize {
    let value = r.get(var);
    let trimmed = value.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let scale = match unit.trim() {
        "" => Some(1usize),
        "KiB" => Some(1 << 10),
        "MiB" => Some(1 << 20),
        "GiB" => Some(1 << 30),
        _ => None,
    };
    match (number.parse::<usize>().ok(), scale) {
        (Some(n), Some(scale)) if (min..=max).contains(&n.saturating_mul(scale)) => n * scale,
        _ => {
            r.problem(format!(
                "{var}={value:?}: expected a size from {min} bytes to {max} bytes (a number, optionally with KiB, MiB or GiB)"
            ));
            min
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("tcp://rsyslog.logging:514").unwrap(),
            (SyslogTransport::Tcp, "rsyslog.logging".to_string(), 514)
        );
        assert_eq!(
            parse_target("udp://[::1]:5514").unwrap(),
            (SyslogTransport::Udp, "::1".to_string(), 5514)
        );
        assert_eq!(
            parse_target("udp://10.0.0.1:514").unwrap().1,
            "10.0.0.1".to_string()
        );
        for bad in [
            "10.0.0.1:514",
            "tcp://host",
            "tcp://host:0",
            "tcp://host:70000",
            "tcp://:514",
            "tcp://[host]:514",
            "tcp://a b:514",
            "http://host:514",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
