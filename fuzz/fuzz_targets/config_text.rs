//! The texts an operator writes that the exporter parses at start-up: a web configuration
//! file (YAML, exporter-toolkit's keys and values) and an allowed-sources list (CIDRs).
//! The first byte picks which. Neither may panic.
#![no_main]

use haproxy_log_exporter::config::AllowList;
use haproxy_log_exporter::web::text_problems;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if pick % 2 == 0 {
        let _ = text_problems(text);
    } else if let Ok(list) = AllowList::parse(text) {
        let _ = list.allows(std::net::Ipv4Addr::LOCALHOST.into());
        let _ = list.allows(std::net::Ipv6Addr::LOCALHOST.into());
    }
});
