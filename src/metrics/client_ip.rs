//! The `client_ip` label aggregated to a network prefix, so that a label
//! per client becomes a label per network (`HLE_CLIENT_IP_PREFIX_V4`,
//! `HLE_CLIENT_IP_PREFIX_V6`).
//!
//! - With the full length (32 for IPv4, 128 for IPv6, the defaults) the value is left
//!   exactly as logged.
//! - Otherwise an address becomes its network in CIDR notation, host bits cleared:
//!   `10.1.2.3` with 24 → `10.1.2.0/24`; `2001:db8:1:2:3:4:5:6` with 64 →
//!   `2001:db8:1:2::/64` (IPv6 in the compressed form of RFC 5952); a prefix of 0 gives
//!   `0.0.0.0/0` or `::/0`.
//! - An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, which HAProxy logs for IPv4 clients
//!   of a `:::port` bind) counts as IPv4: with an IPv4 prefix below 32 it becomes
//!   `10.1.2.0/24`, the same value as `10.1.2.3` from an IPv4 bind; with 32 it is left
//!   as logged.
//! - HAProxy logs IPv6 without brackets; `[2001:db8::1]` is accepted too (and left as
//!   logged at full length).
//! - Anything that is not an IP address (`unix`, empty, an address with a zone such as
//!   `fe80::1%eth0`, garbage) is left as logged.
//!
//! Cost: nothing when both prefixes are full length; otherwise one address parse and, for
//! an address, one small allocation.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The prefix lengths `client_ip` is aggregated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIpPrefix {
    /// IPv4 prefix length, 0 to 32.
    pub v4: u8,
    /// IPv6 prefix length, 0 to 128.
    pub v6: u8,
}

impl Default for ClientIpPrefix {
    /// Full length: values unchanged.
    fn default() -> Self {
        ClientIpPrefix { v4: 32, v6: 128 }
    }
}

impl ClientIpPrefix {
    /// Parses the raw values of `HLE_CLIENT_IP_PREFIX_V4` (0 to 32) and
    /// `HLE_CLIENT_IP_PREFIX_V6` (0 to 128), reporting both problems at once.
    pub fn from_settings(v4: &str, v6: &str) -> Result<ClientIpPrefix, Vec<String>> {
        let mut problems = Vec::new();
        let mut parse = |var: &str, value: &str, max: u8| match value.trim().parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                problems.push(format!(
                    "{var}={value:?}: expected a prefix length from 0 to {max}"
                ));
                max
            }
        };
        let v4 = parse("HLE_CLIENT_IP_PREFIX_V4", v4, 32);
        let v6 = parse("HLE_CLIENT_IP_PREFIX_V6", v6, 128);
        if problems.is_empty() {
            Ok(ClientIpPrefix { v4, v6 })
        } else {
            Err(problems)
        }
    }

    /// True when `apply` returns every value unchanged.
    pub fn is_identity(&self) -> bool {
        self.v4 >= 32 && self.v6 >= 128
    }

    /// The value of the `client_ip` label for the logged `ip`; borrowed when unchanged.
    pub fn apply<'a>(&self, ip: &'a str) -> Cow<'a, str> {
        if self.is_identity() {
            return Cow::Borrowed(ip);
        }
        let bare = ip
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(ip);
        if let Ok(v4) = bare.parse::<Ipv4Addr>() {
            return self.v4_network(ip, v4);
        }
        match bare.parse::<Ipv6Addr>() {
            Ok(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.v4_network(ip, v4),
                None if self.v6 >= 128 => Cow::Borrowed(ip),
                None => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(self.v6)).unwrap_or(0);
                    let network = Ipv6Addr::from(u128::from(v6) & mask);
                    Cow::Owned(format!("{network}/{}", self.v6))
                }
            },
            Err(_) => Cow::Borrowed(ip),
        }
    }

    fn v4_network<'a>(&self, logged: &'a str, v4: Ipv4Addr) -> Cow<'a, str> {
        if self.v4 >= 32 {
            return Cow::Borrowed(logged);
        }
        // A shift by 32 overflows: prefix 0 is the empty mask.
        let mask = u32::MAX.checked_shl(32 - u32::from(self.v4)).unwrap_or(0);
        let network = Ipv4Addr::from(u32::from(v4) & mask);
        Cow::Owned(format!("{network}/{}", self.v4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefix(v4: u8, v6: u8) -> ClientIpPrefix {
        ClientIpPrefix { v4, v6 }
    }

    #[test]
    fn settings() {
        assert_eq!(
            ClientIpPrefix::from_settings("32", "128"),
            Ok(ClientIpPrefix::default())
        );
        assert_eq!(
            ClientIpPrefix::from_settings(" 24 ", "0"),
            Ok(prefix(24, 0))
        );
        assert_eq!(
            ClientIpPrefix::from_settings("33", "/64"),
            Err(vec![
                "HLE_CLIENT_IP_PREFIX_V4=\"33\": expected a prefix length from 0 to 32".to_string(),
                "HLE_CLIENT_IP_PREFIX_V6=\"/64\": expected a prefix length from 0 to 128"
                    .to_string(),
            ])
        );
        for bad in ["", "-1", "256", "1e1", "24.0"] {
            assert!(
                ClientIpPrefix::from_settings(bad, "128").is_err(),
                "{bad:?}"
            );
        }
        assert!(ClientIpPrefix::from_settings("32", "129").is_err());
        assert!(ClientIpPrefix::default().is_identity());
        assert!(!prefix(24, 128).is_identity());
        assert!(!prefix(32, 64).is_identity());
    }

    #[test]
    fn networks() {
        let cases: &[(ClientIpPrefix, &str, &str)] = &[
            (prefix(24, 64), "10.1.2.3", "10.1.2.0/24"),
            (prefix(16, 64), "10.1.2.3", "10.1.0.0/16"),
            (prefix(31, 64), "10.1.2.3", "10.1.2.2/31"),
            (prefix(0, 0), "10.1.2.3", "0.0.0.0/0"),
            (prefix(24, 64), "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            (prefix(24, 48), "2001:DB8:1:2:3:4:5:6", "2001:db8:1::/48"),
            (prefix(24, 127), "2001:db8::7", "2001:db8::6/127"),
            (prefix(24, 0), "2001:db8::1", "::/0"),
            (prefix(24, 64), "[2001:db8:1:2::1]", "2001:db8:1:2::/64"),
            (prefix(24, 64), "::ffff:10.1.2.3", "10.1.2.0/24"),
            (prefix(24, 64), "[::ffff:10.1.2.3]", "10.1.2.0/24"),
            (prefix(0, 64), "::ffff:10.1.2.3", "0.0.0.0/0"),
            (prefix(24, 64), "::1", "::/64"),
            // Full length of the address's family: as logged.
            (prefix(32, 64), "10.1.2.3", "10.1.2.3"),
            (prefix(32, 64), "::ffff:10.1.2.3", "::ffff:10.1.2.3"),
            (prefix(24, 128), "2001:db8::1", "2001:db8::1"),
            (prefix(24, 128), "[2001:db8::1]", "[2001:db8::1]"),
            // Not addresses: as logged.
            (prefix(0, 0), "unix", "unix"),
            (prefix(0, 0), "", ""),
            (prefix(0, 0), "-", "-"),
            (prefix(0, 0), "10.1.2", "10.1.2"),
            (prefix(0, 0), "10.1.2.3:80", "10.1.2.3:80"),
            (prefix(0, 0), "[10.1.2.3]", "0.0.0.0/0"),
            (prefix(0, 0), "[2001:db8::1", "[2001:db8::1"),
            (prefix(0, 0), "fe80::1%eth0", "fe80::1%eth0"),
            (prefix(0, 0), "caf\u{e9}", "caf\u{e9}"),
        ];
        for (prefix, ip, want) in cases {
            assert_eq!(prefix.apply(ip), *want, "{ip} with {prefix:?}");
        }
    }

    #[test]
    fn unchanged_values_are_borrowed() {
        assert!(matches!(
            ClientIpPrefix::default().apply("10.1.2.3"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(prefix(24, 64).apply("unix"), Cow::Borrowed(_)));
        assert!(matches!(
            prefix(24, 128).apply("2001:db8::1"),
            Cow::Borrowed(_)
        ));
    }

    proptest! {
        #[test]
        fn never_panics(ip in "\\PC{0,60}", v4 in 0u8..=32, v6 in 0u8..=128) {
            let _ = prefix(v4, v6).apply(&ip);
        }

        #[test]
        fn never_panics_on_address_like_text(ip in "[\\[\\]0-9a-fA-F:.%]{0,45}", v4 in 0u8..=32, v6 in 0u8..=128) {
            let _ = prefix(v4, v6).apply(&ip);
        }

        #[test]
        fn one_value_per_ipv4_network(a: u32, b: u32, len in 0u8..32) {
            let p = prefix(len, 128);
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            let same_net = (a & mask) | (b & !mask);
            let one = p.apply(&Ipv4Addr::from(a).to_string()).into_owned();
            let other = Ipv4Addr::from(same_net).to_string();
            prop_assert_eq!(p.apply(&other), one.as_str());
            let mapped = Ipv4Addr::from(a).to_ipv6_mapped().to_string();
            prop_assert_eq!(&p.apply(&mapped), &one);
            prop_assert_eq!(one, format!("{}/{len}", Ipv4Addr::from(a & mask)));
        }

        #[test]
        fn one_value_per_ipv6_network(a: u128, b: u128, len in 0u8..128) {
            let p = prefix(32, len);
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            let (a, b) = (Ipv6Addr::from(a), Ipv6Addr::from((a & mask) | (b & !mask)));
            prop_assume!(a.to_ipv4_mapped().is_none() && b.to_ipv4_mapped().is_none());
            let (a, b) = (a.to_string(), b.to_string());
            prop_assert_eq!(p.apply(&a), p.apply(&b));
        }
    }
}
