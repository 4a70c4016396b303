//! Content negotiation for `/metrics`: which exposition format answers a scrape, from its
//! `Accept` header and the formats the exporter offers, as client_golang's
//! `expfmt.NegotiateIncludingOpenMetrics` decides it.
//!
//! The media ranges are tried from the highest `q` down, ties in the order they came (a
//! concrete type before a wildcard), and the first one that names an offered format wins:
//! protobuf only as `application/vnd.google.protobuf` with
//! `proto=io.prometheus.client.MetricFamily` and `encoding=delimited`, OpenMetrics as
//! `application/openmetrics-text` of version 1.0.0, 0.0.1 or none, text as `text/plain` of
//! version 0.0.4 or none, or `*/*` and `text/*`. Anything else is passed over, and when
//! nothing matches, or the header is missing or unreadable, the answer is text, the
//! format every scraper reads.
//!
//! Unlike client_golang, every `Accept` line counts (HTTP joins them as one list), a range
//! with `q=0` or an unreadable `q` is refused rather than ranked last, and `*/*` means text
//! at once rather than the server's first format.

use crate::metrics::Format;

/// The `Content-Type` of an answer in this format. Text keeps the type it has always
/// been sent with, so that a classic scrape's headers do not change.
pub(super) fn content_type(format: Format) -> &'static str {
    match format {
        Format::Text => "text/plain; version=0.0.4",
        Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        Format::Protobuf => {
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        }
    }
}

/// The formats besides text that the exporter offers; text is always offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Offered {
    pub(super) protobuf: bool,
    pub(super) openmetrics: bool,
}

/// The format that answers a request with these `Accept` values (every line of the
/// header, none when it has none).
pub(super) fn negotiate(accept: &[&str], offered: Offered) -> Format {
    let mut ranges: Vec<(f32, MediaRange<'_>)> = accept
        .iter()
        .flat_map(|line| line.split(','))
        .filter_map(MediaRange::parse)
        .collect();
    // Stable: equal preferences keep the client's order.
    ranges.sort_by(|(q_a, a), (q_b, b)| {
        q_b.total_cmp(q_a)
            .then_with(|| a.wildcard().cmp(&b.wildcard()))
    });
    ranges
        .iter()
        .find_map(|(_, range)| range.format(offered))
        .unwrap_or(Format::Text)
}

/// One media range of `Accept`: `type/subtype;name=value;...`, its `q` taken out.
#[derive(Debug)]
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> MediaRange<'a> {
    /// The range and its `q` (1 unless given), or `None` when it is not one or is refused
    /// (`q=0`, or a `q` that is no number from 0 to 1).
    fn parse(text: &'a str) -> Option<(f32, MediaRange<'a>)> {
        let mut parts = text.split(';');
        let media = parts.next()?.trim();
        let (kind, subtype) = match media.split_once('/') {
            Some((kind, subtype)) => (kind.trim(), subtype.trim()),
            // A lone `*`, which clients send for `*/*`.
            None if media == "*" => ("*", "*"),
            None => return None,
        };
        if !is_token(kind) || !is_token(subtype) {
            return None;
        }
        let mut q = 1.0;
        let mut params = Vec::new();
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let name = name.trim();
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if name.eq_ignore_ascii_case("q") {
                q = value
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))?;
            } else {
                params.push((name, value));
            }
        }
        if q == 0.0 {
            return None;
        }
        Some((
            q,
            MediaRange {
                kind,
                subtype,
                params,
            },
        ))
    }

    /// 0 for `type/subtype`, 1 for `type/*`, 2 for `*/*`: the more specific first.
    fn wildcard(&self) -> u8 {
        u8::from(self.kind == "*") + u8::from(self.subtype == "*")
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, value)| value)
    }

    fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// The offered format this range names, if any.
    fn format(&self, offered: Offered) -> Option<Format> {
        let version = self.param("version");
        if self.is("application", "vnd.google.protobuf") {
            let delimited = self.param("proto") == Some("io.prometheus.client.MetricFamily")
                && self.param("encoding") == Some("delimited");
            return (offered.protobuf && delimited).then_some(Format::Protobuf);
        }
        if self.is("application", "openmetrics-text") {
            let known = matches!(version, None | Some("1.0.0" | "0.0.1"));
            return (offered.openmetrics && known).then_some(Format::OpenMetrics);
        }
        if self.is("text", "plain") {
            return matches!(version, None | Some("0.0.4")).then_some(Format::Text);
        }
        if self.is("*", "*") || self.is("text", "*") {
            return Some(Format::Text);
        }
        None
    }
}

/// An RFC 9110 token, as a type or subtype is.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Offered = Offered {
        protobuf: true,
        openmetrics: true,
    };
    const NONE: Offered = Offered {
        protobuf: false,
        openmetrics: false,
    };
    const PROTOBUF: Offered = Offered {
        protobuf: true,
        openmetrics: false,
    };
    const OPENMETRICS: Offered = Offered {
        protobuf: false,
        openmetrics: true,
    };

    /// Prometheus 2.x (scrape.go, `scrapeAcceptHeader`), and with
    /// `--enable-feature=native-histograms` (`scrapeAcceptHeaderWithProtobuf`).
    const PROMETHEUS_2: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_2_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// Prometheus 3, built from the default `scrape_protocols`, and from the protobuf-first
    /// ones (`scrape_native_histograms`).
    const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_3_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

    fn one(accept: &str, offered: Offered) -> Format {
        negotiate(&[accept], offered)
    }

    #[test]
    fn prometheus_gets_the_best_format_offered() {
        for header in [PROMETHEUS_2, PROMETHEUS_3] {
            assert_eq!(one(header, BOTH), Format::OpenMetrics, "{header}");
            assert_eq!(one(header, PROTOBUF), Format::Text, "{header}");
            assert_eq!(one(header, OPENMETRICS), Format::OpenMetrics, "{header}");
            assert_eq!(one(header, NONE), Format::Text, "{header}");
        }
        for header in [PROMETHEUS_2_PROTOBUF, PROMETHEUS_3_PROTOBUF] {
            assert_eq!(one(header, BOTH), Format::Protobuf, "{header}");
            assert_eq!(one(header, PROTOBUF), Format::Protobuf, "{header}");
            assert_eq!(one(header, OPENMETRICS), Format::OpenMetrics, "{header}");
            assert_eq!(one(header, NONE), Format::Text, "{header}");
        }
    }

    #[test]
    fn curl_and_no_header_get_text() {
        assert_eq!(one("*/*", BOTH), Format::Text);
        assert_eq!(negotiate(&[], BOTH), Format::Text);
        assert_eq!(one("", BOTH), Format::Text);
        assert_eq!(
            one("text/html,application/xhtml+xml,*/*;q=0.8", BOTH),
            Format::Text
        );
        assert_eq!(one("text/*", BOTH), Format::Text);
        // A wildcard type alone names no format of ours.
        assert_eq!(one("application/*", BOTH), Format::Text);
    }

    #[test]
    fn highest_q_wins_then_order_then_the_specific_range() {
        let header = "text/plain;q=0.5,application/openmetrics-text;q=0.9";
        assert_eq!(one(header, BOTH), Format::OpenMetrics);
        let header = "application/openmetrics-text;q=0.5,text/plain;q=0.5";
        assert_eq!(one(header, BOTH), Format::OpenMetrics);
        let header = "text/plain;q=0.5,application/openmetrics-text;q=0.5";
        assert_eq!(one(header, BOTH), Format::Text);
        // At the same q, `*/*` yields to a concrete type that comes after it.
        let header = "*/*,application/openmetrics-text";
        assert_eq!(one(header, BOTH), Format::OpenMetrics);
        // But a higher q of `*/*` wins, and it means text.
        let header = "*/*;q=1,application/openmetrics-text;q=0.5";
        assert_eq!(one(header, BOTH), Format::Text);
        // Every Accept line counts, as one list.
        let lines = ["text/plain;q=0.2", "application/openmetrics-text;q=0.3"];
        assert_eq!(negotiate(&lines, BOTH), Format::OpenMetrics);
    }

    #[test]
    fn protobuf_only_as_delimited_metric_families() {
        let p = "application/vnd.google.protobuf";
        assert_eq!(one(p, BOTH), Format::Text);
        for params in [
            ";proto=io.prometheus.client.MetricFamily",
            ";proto=io.prometheus.client.MetricFamily;encoding=text",
            ";proto=io.prometheus.client.MetricFamily;encoding=compact-text",
            ";proto=other.Message;encoding=delimited",
        ] {
            assert_eq!(one(&format!("{p}{params}"), BOTH), Format::Text, "{params}");
        }
        // client_golang's own spelling, with spaces, and parameters in any order or case.
        for header in [
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
            "Application/Vnd.Google.Protobuf;Encoding=delimited;PROTO=io.prometheus.client.MetricFamily",
            "application/vnd.google.protobuf;proto=\"io.prometheus.client.MetricFamily\";encoding=\"delimited\"",
        ] {
            assert_eq!(one(header, BOTH), Format::Protobuf, "{header}");
        }
        // A protobuf request the exporter cannot serve falls to the next range.
        let header =
            format!("{p};proto=io.prometheus.client.MetricFamily;encoding=text,text/plain;q=0.1");
        assert_eq!(one(&header, BOTH), Format::Text);
    }

    #[test]
    fn versions_of_openmetrics_and_text() {
        for version in [
            "",
            ";version=1.0.0",
            ";version=0.0.1",
            "; version=1.0.0; charset=utf-8",
        ] {
            let header = format!("application/openmetrics-text{version}");
            assert_eq!(one(&header, BOTH), Format::OpenMetrics, "{header}");
        }
        let header = "application/openmetrics-text;version=2.0.0,text/plain;q=0.1";
        assert_eq!(one(header, BOTH), Format::Text);
        // Text 1.0.0 is passed over as client_golang does; the next range decides.
        let header = "text/plain;version=1.0.0,application/openmetrics-text;q=0.5";
        assert_eq!(one(header, BOTH), Format::OpenMetrics);
        let header = "text/plain;version=0.0.4,application/openmetrics-text;q=0.5";
        assert_eq!(one(header, BOTH), Format::Text);
    }

    #[test]
    fn refused_and_malformed_ranges_are_passed_over() {
        for header in [
            "application/openmetrics-text;q=0",
            "application/openmetrics-text;q=0.000",
            "application/openmetrics-text;q=abc",
            "application/openmetrics-text;q=2",
            "application/openmetrics-text;q=-1",
            "application/openmetrics-text;q=NaN",
            "application/openmetrics-text;q=",
            "openmetrics",
            "/openmetrics-text",
            "application/",
            "application/openmetrics text",
            "application/openmetrics-text/x",
            ";;;,,,",
            "\u{0}/\u{0}",
            "é/ü;q=1",
        ] {
            assert_eq!(one(header, BOTH), Format::Text, "{header:?}");
        }
        // A broken range does not spoil the others.
        let header = "garbage;;q=x,,application/openmetrics-text;q=0.5;version";
        assert_eq!(one(header, BOTH), Format::OpenMetrics);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Format::Text), "text/plain; version=0.0.4");
        assert_eq!(
            content_type(Format::OpenMetrics),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            content_type(Format::Protobuf),
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        );
        // Each content type, sent back as an Accept, negotiates itself.
        for format in [Format::Text, Format::OpenMetrics, Format::Protobuf] {
            assert_eq!(one(content_type(format), BOTH), format);
        }
    }

    #[test]
    fn any_bytes_never_panic() {
        // Every short string over the characters that matter, as one header.
        let alphabet = ['a', '/', '*', ';', '=', ',', 'q', '0', '.', '"', ' '];
        let mut text = String::new();
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        text.clear();
                        text.extend([a, b, c, d]);
                        let _ = negotiate(&[&text], BOTH);
                    }
                }
            }
        }
        let long = "text/plain;q=0.5,".repeat(10_000);
        assert_eq!(one(&long, BOTH), Format::Text);
    }
}
