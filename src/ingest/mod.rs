//! The sources: UDP and unix datagram sockets, TCP connections, and `replay` of files.
//! Each binds or opens its input, frames it (`codec` for TCP) and hands every line to
//! the `Pipeline`. docs/log-formats.md is the manual.

pub mod codec;
pub mod datagram;
mod progress;
pub mod replay;
pub mod tcp;
pub mod unix;
