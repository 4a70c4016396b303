//! The floor for reading a log file: reads it through a 1 MiB buffer, splits it into lines
//! with memchr and counts the non-empty ones, doing nothing else. bench/compare-mtail.sh
//! runs it beside the replay and mtail, so that their figures can be read against what
//! reading and splitting alone cost.
//!
//! ```text
//! cargo run --release --example linesplit -- corpus.log
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::process::ExitCode;

const READ_BUFFER: usize = 1 << 20;

/// Non-empty lines (a `\r` before the `\n` removed) in `reader`; a last line without
/// `\n` counts too.
fn count_lines(mut reader: impl Read) -> io::Result<(u64, u64)> {
    let mut buf = vec![0u8; READ_BUFFER];
    // Bytes of an unfinished line kept at the front of `buf`.
    let mut kept = 0;
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        if kept == buf.len() {
            // A line longer than the buffer: grow it.
            buf.resize(buf.len() * 2, 0);
        }
        let read = reader.read(&mut buf[kept..])?;
        let filled = kept + read;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buf[kept..filled]).map(|i| i + kept) {
            let line = trim(&buf[start..end]);
            if !line.is_empty() {
                lines += 1;
                bytes += line.len() as u64;
            }
            start = end + 1;
        }
        if read == 0 {
            if !trim(&buf[start..filled]).is_empty() {
                lines += 1;
                bytes += trim(&buf[start..filled]).len() as u64;
            }
            return Ok((lines, bytes));
        }
        buf.copy_within(start..filled, 0);
        kept = filled - start;
    }
}

fn trim(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: linesplit FILE");
        return ExitCode::from(2);
    };
    let counted = File::open(&path).and_then(count_lines);
    match counted {
        Ok((lines, bytes)) => {
            println!("{lines} lines, {bytes} bytes");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("linesplit: {path}: {err}");
            ExitCode::FAILURE
        }
    }
}
