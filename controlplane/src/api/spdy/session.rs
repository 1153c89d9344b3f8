//! A SPDY/3.1 server session, the framing Kubernetes' port-forward speaks: frames read off the
//! byte stream, each stream the peer opens answered with SYN_REPLY and handed to the caller,
//! data routed to its stream, pings echoed, and one writer for every outgoing frame. The
//! session keeps no flow-control windows: Kubernetes' SPDY peers (spdystream) neither send nor
//! honour WINDOW_UPDATE.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream as ByteSource, StreamExt};
use tokio::sync::{mpsc, watch};

use super::frame::{Frame, FLAG_FIN};
use super::headers::{Decoder, Encoder, Headers};
use super::SpdyError;

/// RST_STREAM status: the stream broke the protocol.
const PROTOCOL_ERROR: u32 = 1;
/// Frames queued for the writer before senders wait.
const OUT_QUEUE: usize = 64;
/// Data frames queued for a stream's reader before the session waits.
const IN_QUEUE: usize = 16;

/// A stream the peer opened.
pub(crate) struct Stream {
    /// Its id.
    pub(crate) id: u32,
    /// Its headers (names lowercase).
    pub(crate) headers: Headers,
    /// Its data as it arrives; ends when the peer finishes or resets it.
    pub(crate) incoming: mpsc::Receiver<Bytes>,
    /// Writes to it.
    pub(crate) out: StreamWriter,
}

impl Stream {
    /// The value of header `name` (lowercase), if sent.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the writer is asked to send.
enum Out {
    /// A SYN_REPLY with no headers, for a stream just accepted.
    Reply(u32),
    /// Any other frame.
    Frame(Frame),
}

/// Writes one stream's half of the session.
#[derive(Clone)]
pub(crate) struct StreamWriter {
    id: u32,
    tx: mpsc::Sender<Out>,
    closed: watch::Receiver<bool>,
}

impl StreamWriter {
    /// Sends `data`; false once the session is gone.
    pub(crate) async fn send(&self, data: Bytes) -> bool {
        self.frame(Frame::Data {
            stream: self.id,
            flags: 0,
            data,
        })
        .await
    }

    /// Ends this side's half of the stream.
    pub(crate) async fn finish(&self) -> bool {
        self.frame(Frame::Data {
            stream: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await
    }

    /// Abandons the stream (RST_STREAM, status cancel).
    pub(crate) async fn reset(&self) -> bool {
        self.frame(Frame::RstStream {
            stream: self.id,
            status: 5,
        })
        .await
    }

    /// Resolves once the session has ended (the peer went away or broke the protocol).
    pub(crate) async fn session_closed(&self) {
        let mut closed = self.closed.clone();
        // An error means the session dropped its end: closed as well.
        while !*closed.borrow_and_update() {
            if closed.changed().await.is_err() {
                return;
            }
        }
    }

    async fn frame(&self, frame: Frame) -> bool {
        self.tx.send(Out::Frame(frame)).await.is_ok()
    }
}

/// Serves a session: reads frames from `incoming` until it ends, writes through `outgoing`,
/// and hands each stream the peer opens to `accepted`. Returns when the peer is gone.
pub(crate) async fn serve<I, O, E>(
    incoming: I,
    outgoing: O,
    accepted: mpsc::Sender<Stream>,
) -> Result<(), SpdyError>
where
    I: ByteSource<Item = std::io::Result<Bytes>> + Unpin,
    O: Sink<Bytes, Error = E> + Unpin + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let (closed_tx, closed) = watch::channel(false);
    let writer = tokio::spawn(write_frames(rx, outgoing));
    let read = read_frames(incoming, &tx, &closed, accepted).await;
    // Streams still being served see the session end.
    if closed_tx.send(true).is_err() {
        tracing::debug!("spdy: no stream was left to tell that the session ended");
    }
    drop(tx);
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "spdy: writing to the peer"),
        Err(e) => tracing::warn!(error = %e, "spdy: the writer task failed"),
    }
    read
}

/// The reading half: frames to streams, until the byte stream ends.
async fn read_frames<I>(
    mut incoming: I,
    tx: &mpsc::Sender<Out>,
    closed: &watch::Receiver<bool>,
    accepted: mpsc::Sender<Stream>,
) -> Result<(), SpdyError>
where
    I: ByteSource<Item = std::io::Result<Bytes>> + Unpin,
{
    let mut buf = BytesMut::new();
    let mut decoder = Decoder::new()?;
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut gone_away = false;
    loop {
        while let Some(frame) = Frame::parse(&mut buf)? {
            match frame {
                Frame::SynStream {
                    stream,
                    flags,
                    headers,
                } => {
                    // Headers are decoded even for a refused stream: the zlib context is shared.
                    let headers = decoder.decode(&headers)?;
                    if gone_away || stream % 2 == 0 || open.contains_key(&stream) {
                        send(
                            tx,
                            Out::Frame(Frame::RstStream {
                                stream,
                                status: PROTOCOL_ERROR,
                            }),
                        )
                        .await?;
                        continue;
                    }
                    send(tx, Out::Reply(stream)).await?;
                    let (data_tx, data_rx) = mpsc::channel(IN_QUEUE);
                    if flags & FLAG_FIN == 0 {
                        open.insert(stream, data_tx);
                    }
                    let new = Stream {
                        id: stream,
                        headers,
                        incoming: data_rx,
                        out: StreamWriter {
                            id: stream,
                            tx: tx.clone(),
                            closed: closed.clone(),
                        },
                    };
                    if accepted.send(new).await.is_err() {
                        gone_away = true;
                    }
                }
                Frame::Data {
                    stream,
                    flags,
                    data,
                } => {
                    if let Some(reader) = open.get(&stream) {
                        if !data.is_empty() && reader.send(data).await.is_err() {
                            open.remove(&stream);
                        }
                    }
                    if flags & FLAG_FIN != 0 {
                        open.remove(&stream);
                    }
                }
                Frame::RstStream { stream, .. } => {
                    open.remove(&stream);
                }
                // Pings from the client have odd ids; this server sends none of its own.
                Frame::Ping(id) if id % 2 == 1 => send(tx, Out::Frame(Frame::Ping(id))).await?,
                Frame::GoAway { .. } => gone_away = true,
                Frame::Ping(_) | Frame::SynReply { .. } | Frame::Other(_) => {}
            }
        }
        match incoming.next().await {
            Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
            Some(Err(e)) => return Err(SpdyError::Io(e)),
            None => return Ok(()),
        }
    }
}

async fn send(tx: &mpsc::Sender<Out>, out: Out) -> Result<(), SpdyError> {
    tx.send(out)
        .await
        .map_err(|_| SpdyError::Protocol("the peer stopped reading".into()))
}

/// The writing half: every queued frame, in order, until no stream can send any more.
async fn write_frames<O, E>(mut rx: mpsc::Receiver<Out>, mut outgoing: O) -> Result<(), String>
where
    O: Sink<Bytes, Error = E> + Unpin,
    E: std::fmt::Display,
{
    let mut encoder = Encoder::new();
    while let Some(out) = rx.recv().await {
        let frame = match out {
            Out::Reply(stream) => Frame::SynReply {
                stream,
                headers: encoder.encode(&[]).map_err(|e| e.to_string())?,
            },
            Out::Frame(frame) => frame,
        };
        let mut bytes = BytesMut::new();
        frame.write(&mut bytes);
        outgoing
            .send(bytes.freeze())
            .await
            .map_err(|e| e.to_string())?;
    }
    outgoing.close().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    /// A client's SYN_STREAM with `pairs`, compressed on the client's header stream.
    fn syn(encoder: &mut Encoder, stream: u32, flags: u8, pairs: &[(&str, &str)]) -> Bytes {
        let mut out = BytesMut::new();
        Frame::SynStream {
            stream,
            flags,
            headers: encoder.encode(pairs).unwrap(),
        }
        .write(&mut out);
        out.freeze()
    }

    fn data(stream: u32, flags: u8, payload: &'static [u8]) -> Bytes {
        let mut out = BytesMut::new();
        Frame::Data {
            stream,
            flags,
            data: Bytes::from_static(payload),
        }
        .write(&mut out);
        out.freeze()
    }

    #[tokio::test]
    async fn streams_are_replied_to_fed_and_answered() {
        let mut client = Encoder::new();
        let mut wire = vec![
            syn(&mut client, 1, 0, &[("streamType", "data"), ("port", "80")]),
            data(1, 0, b"ping?"),
            data(1, FLAG_FIN, b""),
        ];
        let mut ping = BytesMut::new();
        Frame::Ping(7).write(&mut ping);
        wire.push(ping.freeze());
        // A server-side (even) id is refused.
        wire.push(syn(&mut client, 2, 0, &[]));
        // Byte by byte, as a tunnel may deliver it.
        let bytes: Vec<std::io::Result<Bytes>> = wire
            .concat()
            .into_iter()
            .map(|b| Ok(Bytes::from(vec![b])))
            .collect();
        let (sink_tx, mut sink_rx) = futures_channel_sink();
        let (accept_tx, mut accept_rx) = mpsc::channel(4);
        let server = tokio::spawn(serve(stream::iter(bytes), sink_tx, accept_tx));
        let mut stream = accept_rx.recv().await.unwrap();
        assert_eq!(stream.id, 1);
        assert_eq!(stream.header("streamtype"), Some("data"));
        assert_eq!(stream.incoming.recv().await.unwrap(), "ping?");
        assert!(
            stream.incoming.recv().await.is_none(),
            "FIN ends the stream"
        );
        assert!(stream.out.send(Bytes::from_static(b"pong")).await);
        assert!(stream.out.finish().await);
        drop(stream);
        server.await.unwrap().unwrap();

        let mut written = BytesMut::new();
        while let Some(chunk) = sink_rx.recv().await {
            written.extend_from_slice(&chunk);
        }
        let mut frames = Vec::new();
        while let Some(f) = Frame::parse(&mut written).unwrap() {
            frames.push(f);
        }
        assert!(matches!(frames[0], Frame::SynReply { stream: 1, .. }));
        assert!(frames.contains(&Frame::Ping(7)));
        assert!(frames.contains(&Frame::RstStream {
            stream: 2,
            status: PROTOCOL_ERROR
        }));
        assert!(frames.contains(&Frame::Data {
            stream: 1,
            flags: 0,
            data: Bytes::from_static(b"pong")
        }));
        assert_eq!(
            frames.last(),
            Some(&Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: Bytes::new()
            })
        );
    }

    /// A sink into a channel the test reads.
    fn futures_channel_sink() -> (
        impl Sink<Bytes, Error = String> + Unpin + Send + 'static,
        mpsc::UnboundedReceiver<Bytes>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = futures_util::sink::unfold(tx, |tx, item: Bytes| async move {
            tx.send(item).map_err(|e| e.to_string())?;
            Ok::<_, String>(tx)
        });
        (Box::pin(sink), rx)
    }
}
