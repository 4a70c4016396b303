//! Replay's progress on a terminal: lines, bytes, rate and time left, redrawn on one line
//! of standard error a few times a second, and nothing at all when standard error is not
//! a terminal (a pipe, a file, CI), so that scripts read only the summary.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const EVERY: Duration = Duration::from_millis(250);

/// The progress of one replay over all its inputs.
pub(super) struct Progress {
    out: Option<std::io::Stderr>,
    started: Instant,
    next: Instant,
    lines: u64,
    /// Bytes read of the current input, and what came before it.
    bytes: u64,
    /// The inputs' total size in bytes, when every one is a plain file.
    total: Option<u64>,
}

impl Progress {
    /// Progress on standard error if it is a terminal; `total` is the size to read, if known.
    pub(super) fn new(total: Option<u64>) -> Progress {
        let stderr = std::io::stderr();
        let started = Instant::now();
        Progress {
            out: stderr.is_terminal().then_some(stderr),
            started,
            next: started + EVERY,
            lines: 0,
            bytes: 0,
            total,
        }
    }

    /// `lines` and `bytes` more were read; redraws when it is time.
    pub(super) fn read(&mut self, lines: u64, bytes: u64) {
        self.lines += lines;
        self.bytes += bytes;
        if self.out.is_none() {
            return;
        }
        let now = Instant::now();
        if now >= self.next {
            self.next = now + EVERY;
            let text = line(
                self.lines,
                self.bytes,
                self.total,
                now - self.started,
                false,
            );
            self.draw(&text);
        }
    }

    /// The last line, left on the terminal above the summary.
    pub(super) fn finish(mut self) {
        if self.out.is_some() {
            let text = line(
                self.lines,
                self.bytes,
                self.total,
                self.started.elapsed(),
                true,
            );
            self.draw(&text);
            if let Some(out) = self.out.as_mut() {
                let _ = writeln!(out);
            }
        }
    }

    fn draw(&mut self, text: &str) {
        if let Some(out) = self.out.as_mut() {
            // Back to the start of the line, the text, and the rest of the line cleared.
            let _ = write!(out, "\r{text}\x1b[K");
            let _ = out.flush();
        }
    }
}

/// The progress line: `1.2M lines  310 MiB of 1.2 GiB (25%)  1.1M lines/s  0:03 left`.
fn line(lines: u64, bytes: u64, total: Option<u64>, elapsed: Duration, done: bool) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { lines as f64 / secs } else { 0.0 };
    let mut text = format!("{} lines  {}", count(lines as f64), size(bytes));
    match total {
        Some(total) if total > 0 && !done => {
            let share = (bytes as f64 / total as f64).min(1.0);
            text.push_str(&format!(" of {} ({:.0}%)", size(total), share * 100.0));
        }
        _ => {}
    }
    text.push_str(&format!("  {} lines/s", count(rate)));
    if done {
        text.push_str(&format!("  in {}", clock(secs)));
    } else if let Some(total) = total.filter(|&t| t > 0 && bytes > 0) {
        let left = secs * (total.saturating_sub(bytes) as f64) / bytes as f64;
        text.push_str(&format!("  {} left", clock(left)));
    }
    text
}

/// 950, 12.3k, 4.5M.
fn count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// 512 B, 3.4 MiB, 1.2 GiB.
fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB * KIB {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// 0:07, 12:34, 1:02:03.
fn clock(secs: f64) -> String {
    let s = secs.round().clamp(0.0, 1e9) as u64;
    match s {
        0..3600 => format!("{}:{:02}", s / 60, s % 60),
        _ => format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_lines_bytes_rate_and_time_left() {
        let at = Duration::from_secs(3);
        assert_eq!(
            line(3_000_000, 256 << 20, Some(1024 << 20), at, false),
            "3.0M lines  256.0 MiB of 1.0 GiB (25%)  1.0M lines/s  0:09 left"
        );
        // Standard input or gzip: no total, no time left.
        assert_eq!(
            line(1500, 2048, None, Duration::from_secs(2), false),
            "1.5k lines  2.0 KiB  750 lines/s"
        );
        assert_eq!(
            line(
                42_000,
                4_000_000,
                Some(4_000_000),
                Duration::from_secs(3725),
                true
            ),
            "42k lines  3.8 MiB  11 lines/s  in 1:02:05"
        );
    }
}
