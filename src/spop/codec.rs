//! Framing an SPOP connection: `<LENGTH:4 bytes BE> <TYPE:1> <FLAGS:4> <STREAM-ID:varint>
//! <FRAME-ID:varint> <PAYLOAD>`. A length above the negotiated `max-frame-size` is refused
//! before anything is buffered for it, so a peer cannot make us allocate what it claims.
//! Unlike the syslog codec, a decoding error ends the connection: SPOP has no way to
//! resynchronise after a bad frame, and the protocol says to disconnect with a status.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{put_varint, Frame, FrameType, Reader, Status, MIN_FRAME_SIZE};

/// Why a connection ends: a status to send in AGENT-DISCONNECT (when the connection can
/// still take one), or an I/O error.
#[derive(Debug, thiserror::Error)]
pub enum SpopError {
    #[error("{reason}")]
    Protocol {
        status: Status,
        reason: &'static str,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl SpopError {
    pub fn protocol(status: Status, reason: &'static str) -> SpopError {
        SpopError::Protocol { status, reason }
    }

    /// The status code this error is disconnected with.
    pub fn status(&self) -> Status {
        match self {
            SpopError::Protocol { status, .. } => *status,
            SpopError::Io(_) => Status::Io,
        }
    }
}

/// The smallest frame: type, flags and two one-byte ids.
const MIN_FRAME_LEN: usize = 1 + 4 + 1 + 1;

/// Decodes and encodes frames of at most `max_frame_size` bytes (the length prefix not
/// included), as both peers agreed in the HELLO handshake.
#[derive(Debug, Clone)]
pub struct SpopCodec {
    max_frame_size: usize,
}

impl SpopCodec {
    /// A codec for frames of at most `max_frame_size` bytes (at least the protocol's 256).
    pub fn new(max_frame_size: u32) -> SpopCodec {
        SpopCodec {
            max_frame_size: max_frame_size.max(MIN_FRAME_SIZE) as usize,
        }
    }

    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Sets the size agreed in the handshake.
    pub fn set_max_frame_size(&mut self, max_frame_size: u32) {
        self.max_frame_size = max_frame_size.max(MIN_FRAME_SIZE) as usize;
    }

    /// Whether `buf` holds a whole frame (or a length that `decode` refuses): then the
    /// next `decode` returns without waiting for the peer.
    pub fn has_frame(&self, buf: &[u8]) -> bool {
        match buf.get(..4) {
            Some(len) => {
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                len > self.max_frame_size || buf.len() - 4 >= len
            }
            None => false,
        }
    }
}

impl Decoder for SpopCodec {
    type Item = Frame;
    type Error = SpopError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, SpopError> {
        let Some(prefix) = src.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_frame_size {
            return Err(SpopError::protocol(
                Status::TooBig,
                "frame longer than max-frame-size",
            ));
        }
        if len < MIN_FRAME_LEN {
            return Err(SpopError::protocol(Status::Invalid, "frame too short"));
        }
        if src.len() - 4 < len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let body = src.split_to(len).freeze();
        let mut reader = Reader::new(&body);
        let invalid = |e: super::frame::Malformed| SpopError::protocol(Status::Invalid, e.0);
        let frame_type = FrameType::from_byte(reader.u8().map_err(invalid)?);
        let flags = reader.u32_be().map_err(invalid)?;
        let stream_id = reader.varint().map_err(invalid)?;
        let frame_id = reader.varint().map_err(invalid)?;
        let header = body.len() - reader.rest().len();
        Ok(Some(Frame {
            frame_type,
            flags,
            stream_id,
            frame_id,
            payload: body.slice(header..),
        }))
    }
}

impl Encoder<Frame> for SpopCodec {
    type Error = SpopError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), SpopError> {
        let len = frame.encoded_len();
        if len > self.max_frame_size {
            return Err(SpopError::protocol(
                Status::TooBig,
                "frame to send is longer than max-frame-size",
            ));
        }
        dst.reserve(4 + len);
        dst.put_u32(len as u32);
        dst.put_u8(frame.frame_type.byte());
        dst.put_u32(frame.flags);
        put_varint(dst, frame.stream_id);
        put_varint(dst, frame.frame_id);
        dst.put_slice(&frame.payload);
        Ok(())
    }
}
