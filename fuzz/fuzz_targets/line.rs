//! A TCP stream through the framing codec, each frame through the syslog header and the
//! built-in entry parser. Nothing may panic.
#![no_main]

use bytes::BytesMut;
use haproxy_log_exporter::haproxy::Parser;
use haproxy_log_exporter::ingest::codec::{Frame, SyslogCodec};
use haproxy_log_exporter::syslog;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let parser = Parser::default();
    let mut codec = SyslogCodec::new(4096);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        if let Frame::Line(line) = frame {
            let _ = parser.parse(syslog::split(&line).message);
        }
    }
});
