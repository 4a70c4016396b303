//! A TCP stream through the framing codec, each frame through the syslog header and the
//! built-in entry parser. Nothing may panic.
#![no_main]

use bytes::BytesMut;
use haproxy_log_exporter::haproxy::Parser;
use haproxy_log_exporter::ingest::codec::{Frame, Framing, SyslogCodec};
use haproxy_log_exporter::syslog;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let parser = Parser::default();
    // The first byte picks the framing, the rest is the stream.
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let framing = Framing::NAMES[usize::from(pick) % Framing::NAMES.len()].1;
    let mut codec = SyslogCodec::new(4096, framing);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        if let Frame::Line(line) = frame {
            let _ = parser.parse(syslog::split(&line).message);
        }
    }
});
