//! `HLE_SYSLOG_ALLOWED_SOURCES` and `HLE_SPOE_ALLOWED_SOURCES`: the networks a sender
//! may be in (CIDRs, IPv4 and IPv6). Parsed here, small enough not to need a crate.

use std::net::IpAddr;

use super::reader::{list, Reader};

/// One network: an address and how many of its leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of the `width` low bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, width: u32, prefix: u8) -> bool {
    let prefix = u32::from(prefix).min(width);
    if prefix == 0 {
        return true;
    }
    let shift = width - prefix;
    (a >> shift) == (b >> shift)
}

/// The senders allowed; empty allows everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<Network>,
}

impl AllowList {
    /// Whether a list was given at all (an empty one lets everyone in).
    pub fn is_restricted(&self) -> bool {
        !self.networks.is_empty()
    }

    /// Whether `ip` may send. An IPv4 peer of a dual-stack (`[::]`) listener is seen as
    /// `::ffff:a.b.c.d` and is matched as the IPv4 address it is.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.networks.is_empty() {
            return true;
        }
        let ip = ip.to_canonical();
        self.networks.iter().any(|net| net.contains(ip))
    }

    /// Parses a comma-separated list of `ADDR/PREFIX` or bare addresses (a host); every
    /// entry that is not one is a problem.
    pub fn parse(value: &str) -> Result<AllowList, Vec<String>> {
        let mut networks = Vec::new();
        let mut problems = Vec::new();
        for entry in list(value) {
            match parse_network(entry) {
                Some(net) => networks.push(net),
                None => problems.push(entry.to_string()),
            }
        }
        if problems.is_empty() {
            Ok(AllowList { networks })
        } else {
            Err(problems)
        }
    }
}

fn parse_network(entry: &str) -> Option<Network> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        // Digits only: `u8::from_str` would also take `+24`.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
        None => width,
    };
    (prefix <= width).then_some(Network {
        addr: addr.to_canonical(),
        prefix,
    })
}

/// Reads one allow-list variable; bad entries are problems, all of them listed.
pub(super) fn allow_list(r: &mut Reader, var: &str) -> AllowList {
    let value = r.get(var);
    match AllowList::parse(value) {
        Ok(list) => list,
        Err(bad) => {
            for entry in bad {
                r.problem(format!(
                    "{var}: {entry:?} is not an address or a network (ADDR/PREFIX, e.g. 10.0.0.0/8 or fd00::/8)"
                ));
            }
            AllowList::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(list: &str, ip: &str) -> bool {
        AllowList::parse(list).unwrap().allows(ip.parse().unwrap())
    }

    #[test]
    fn networks_of_both_families_match_their_addresses_only() {
        let list = "10.0.0.0/8, 192.168.1.7, fd00::/8, ::1";
        assert!(allows(list, "10.200.3.4"));
        assert!(!allows(list, "11.0.0.1"));
        assert!(allows(list, "192.168.1.7"));
        assert!(!allows(list, "192.168.1.8"));
        assert!(allows(list, "fd12::3"));
        assert!(!allows(list, "fe80::1"));
        assert!(allows(list, "::1"));
        assert!(!allows(list, "::2"));
        // The IPv4 peer of a dual-stack listener.
        assert!(allows(list, "::ffff:10.1.2.3"));
        assert!(!allows(list, "::ffff:11.1.2.3"));
        assert!(allows("0.0.0.0/0", "203.0.113.9"));
        assert!(!allows("0.0.0.0/0", "2001:db8::1"));
        assert!(allows("::/0", "2001:db8::1"));
        assert!(allows("127.0.0.1/32", "127.0.0.1"));
        assert!(!allows("127.0.0.1/32", "127.0.0.2"));
        assert!(allows("", "203.0.113.9"), "empty lets everyone in");
    }

    #[test]
    fn every_bad_entry_is_listed() {
        let bad = AllowList::parse(
            "10.0.0.0/33, ::/129, host.example, 10.0.0.0/, 1.2.3.4/+8, 10.0.0.0/8, 1.2.3.4/x",
        )
        .unwrap_err();
        assert_eq!(
            bad,
            [
                "10.0.0.0/33",
                "::/129",
                "host.example",
                "10.0.0.0/",
                "1.2.3.4/+8",
                "1.2.3.4/x"
            ]
        );
    }
}
