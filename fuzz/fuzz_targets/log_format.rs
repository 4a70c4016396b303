//! The log-format compiler and the matcher it builds: the input's first line is a
//! format, the rest lines to match against it. Neither may panic.
//! Leak detection stays on: rejection reasons are made once per distinct text and kept
//! in one table (capped), so compiling formats over and over allocates nothing that is lost.
#![no_main]

use haproxy_log_exporter::haproxy::format::compile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (format, lines) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let Ok(format) = std::str::from_utf8(format) else {
        return;
    };
    if let Ok(mut compiled) = compile(format) {
        let fields: Vec<String> = compiled.fields().map(|f| f.text.clone()).collect();
        let fields: Vec<&str> = fields.iter().map(String::as_str).take(8).collect();
        compiled.bind_custom(&fields);
        for line in lines.split(|&b| b == b'\n') {
            let _ = compiled.extract(line);
        }
    }
});
