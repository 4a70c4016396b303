//! Pipeline stage 1: sources. Each receives frames and hands them to the `Pipeline`.

pub mod codec;
pub mod tcp;
pub mod udp;
