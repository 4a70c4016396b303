//! An SPOP connection's bytes through the frame codec, fed in chunks, each frame through
//! the HELLO negotiation and the payload readers the agent uses. Nothing may panic, the
//! codec never waits with a whole frame buffered, and every decoded frame re-encodes to
//! one that decodes the same.
#![no_main]

use bytes::BytesMut;
use haproxy_log_exporter::spop::agent::negotiate;
use haproxy_log_exporter::spop::codec::SpopCodec;
use haproxy_log_exporter::spop::frame::{actions, kv_items, messages};
use haproxy_log_exporter::spop::message::{request_path, response_record, Scratch};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the size of each read, the rest is the stream.
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(pick % 64) + 1;
    let mut codec = SpopCodec::new(4096);
    let mut buf = BytesMut::new();
    let mut scratch = Scratch::default();
    'stream: for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let whole = codec.has_frame(&buf);
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let _ = negotiate(&frame.payload, 4096);
                    for message in messages(&frame.payload).flatten() {
                        let _ = request_path(&message);
                        let _ = response_record(&message, &["tenant", "zone"], &mut scratch);
                    }
                    for _ in actions(&frame.payload) {}
                    for _ in kv_items(&frame.payload) {}
                    let mut out = BytesMut::new();
                    if codec.encode(frame.clone(), &mut out).is_ok() {
                        let again = codec.decode(&mut out).ok().flatten();
                        assert_eq!(again.as_ref(), Some(&frame));
                    }
                }
                Ok(None) => {
                    assert!(!whole, "a whole frame is buffered and decode waits");
                    break;
                }
                Err(_) => break 'stream,
            }
        }
    }
});
