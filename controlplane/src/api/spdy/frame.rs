//! SPDY/3 frames on the wire (draft 3, section 2.2): parsed from a byte buffer as they
//! complete, and written. Header blocks stay compressed here; `headers.rs` reads them.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::SpdyError;

/// The protocol version spoken.
const VERSION: u16 = 3;
/// The flag that ends a stream's half (control and data frames alike).
pub(crate) const FLAG_FIN: u8 = 0x01;
/// The largest frame read: past it the peer is misbehaving.
const MAX_FRAME: usize = 1 << 20;

/// A frame's type in a control frame header.
mod kind {
    pub(super) const SYN_STREAM: u16 = 1;
    pub(super) const SYN_REPLY: u16 = 2;
    pub(super) const RST_STREAM: u16 = 3;
    pub(super) const PING: u16 = 6;
    pub(super) const GOAWAY: u16 = 7;
}

/// A frame, as far as a server acts on it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The peer opens a stream; its header block is still compressed.
    SynStream {
        /// The stream's id.
        stream: u32,
        /// Flags (`FLAG_FIN`: the peer sends nothing more on it).
        flags: u8,
        /// The compressed header block.
        headers: Bytes,
    },
    /// This side's answer to a `SynStream`.
    SynReply {
        /// The stream's id.
        stream: u32,
        /// The compressed header block.
        headers: Bytes,
    },
    /// A stream is abandoned.
    RstStream {
        /// The stream's id.
        stream: u32,
        /// Why (1 protocol error, 5 cancel, ...).
        status: u32,
    },
    /// A ping, answered by echoing it.
    Ping(u32),
    /// The peer opens no more streams.
    GoAway {
        /// The last stream the sender accepted.
        last: u32,
    },
    /// Payload for a stream.
    Data {
        /// The stream's id.
        stream: u32,
        /// Flags (`FLAG_FIN`: the last data of the sender's half).
        flags: u8,
        /// The payload.
        data: Bytes,
    },
    /// A control frame this server ignores (SETTINGS, HEADERS, WINDOW_UPDATE, ...).
    Other(u16),
}

impl Frame {
    /// Takes one whole frame off the front of `buf`; `None` until one has fully arrived.
    pub(crate) fn parse(buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = usize::from(buf[5]) << 16 | usize::from(buf[6]) << 8 | usize::from(buf[7]);
        if length > MAX_FRAME {
            return Err(SpdyError::Protocol(format!(
                "a frame of {length} bytes (the most read is {MAX_FRAME})"
            )));
        }
        if buf.len() < 8 + length {
            return Ok(None);
        }
        let head = buf.split_to(8);
        let mut body = buf.split_to(length).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                stream,
                flags,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Protocol(format!(
                "SPDY version {version} (this server speaks {VERSION})"
            )));
        }
        let ty = u16::from_be_bytes([head[2], head[3]]);
        let short = |need: usize| {
            if body.len() < need {
                Err(SpdyError::Protocol(format!(
                    "a control frame of type {ty} with {} bytes (at least {need} expected)",
                    body.len()
                )))
            } else {
                Ok(())
            }
        };
        let frame = match ty {
            kind::SYN_STREAM => {
                short(10)?;
                let stream = body.get_u32() & 0x7fff_ffff;
                body.advance(6); // associated stream, priority, slot
                Frame::SynStream {
                    stream,
                    flags,
                    headers: body,
                }
            }
            kind::SYN_REPLY => {
                short(4)?;
                let stream = body.get_u32() & 0x7fff_ffff;
                Frame::SynReply {
                    stream,
                    headers: body,
                }
            }
            kind::RST_STREAM => {
                short(8)?;
                Frame::RstStream {
                    stream: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            kind::PING => {
                short(4)?;
                Frame::Ping(body.get_u32())
            }
            kind::GOAWAY => {
                short(4)?;
                Frame::GoAway {
                    last: body.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Other(other),
        };
        Ok(Some(frame))
    }

    /// Appends the frame's bytes to `out`.
    pub(crate) fn write(&self, out: &mut BytesMut) {
        let control = |out: &mut BytesMut, ty: u16, flags: u8, length: usize| {
            out.put_u16(0x8000 | VERSION);
            out.put_u16(ty);
            out.put_u32(u32::from(flags) << 24 | length as u32);
        };
        match self {
            Frame::SynStream {
                stream,
                flags,
                headers,
            } => {
                control(out, kind::SYN_STREAM, *flags, 10 + headers.len());
                out.put_u32(*stream);
                out.put_u32(0);
                out.put_u16(0);
                out.put_slice(headers);
            }
            Frame::SynReply { stream, headers } => {
                control(out, kind::SYN_REPLY, 0, 4 + headers.len());
                out.put_u32(*stream);
                out.put_slice(headers);
            }
            Frame::RstStream { stream, status } => {
                control(out, kind::RST_STREAM, 0, 8);
                out.put_u32(*stream);
                out.put_u32(*status);
            }
            Frame::Ping(id) => {
                control(out, kind::PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway { last } => {
                control(out, kind::GOAWAY, 0, 8);
                out.put_u32(*last);
                out.put_u32(0);
            }
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                out.put_u32(stream & 0x7fff_ffff);
                out.put_u32(u32::from(*flags) << 24 | data.len() as u32);
                out.put_slice(data);
            }
            Frame::Other(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(frame: &Frame) -> Frame {
        let mut buf = BytesMut::new();
        frame.write(&mut buf);
        let parsed = Frame::parse(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        parsed
    }

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::SynStream {
                stream: 7,
                flags: FLAG_FIN,
                headers: Bytes::from_static(b"abc"),
            },
            Frame::SynReply {
                stream: 7,
                headers: Bytes::from_static(b"xyz"),
            },
            Frame::RstStream {
                stream: 9,
                status: 5,
            },
            Frame::Ping(3),
            Frame::GoAway { last: 11 },
            Frame::Data {
                stream: 1,
                flags: 0,
                data: Bytes::from_static(b"hello"),
            },
        ];
        for frame in frames {
            assert_eq!(round_trip(&frame), frame);
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        // SPDY/2.
        let mut v2 = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(Frame::parse(&mut v2).is_err());
        // A PING too short to hold its id.
        let mut short = BytesMut::from(&[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 1][..]);
        assert!(Frame::parse(&mut short).is_err());
        // Too large.
        let mut huge = BytesMut::from(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff][..]);
        assert!(Frame::parse(&mut huge).is_err());
        // WINDOW_UPDATE is read and ignored.
        let mut window = BytesMut::from(&[0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 1, 0][..]);
        assert_eq!(Frame::parse(&mut window).unwrap(), Some(Frame::Other(9)));
    }

    proptest! {
        /// Frames arrive in any split: each is read once whole, and never before.
        #[test]
        fn frames_are_read_whatever_the_split(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
            cut in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            let sent: Vec<Frame> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| Frame::Data { stream: i as u32 * 2 + 1, flags: 0, data: Bytes::from(p.clone()) })
                .collect();
            for f in &sent {
                f.write(&mut wire);
            }
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                buf.extend_from_slice(chunk);
                while let Some(f) = Frame::parse(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, sent);
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Frame::parse(&mut buf) {}
        }
    }
}
