//! Pipeline stage 1: sources (UDP, unix datagram socket, TCP). Each receives frames and
//! hands them to the `Pipeline`.

pub mod codec;
pub mod datagram;
pub mod tcp;
pub mod unix;
