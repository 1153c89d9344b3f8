//! SPDY/3 header blocks: the name/value block format and its zlib compression, one context
//! per direction for the whole session, primed with the SPDY/3 dictionary as the protocol
//! requires (draft 3, section 2.6.10.1).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::SpdyError;

/// The words of the SPDY/3 compression dictionary, each stored after its 32-bit length.
const WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail, stored as it is.
const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The most a decompressed header block may hold.
const MAX_BLOCK: usize = 64 * 1024;

/// The SPDY/3 dictionary.
fn dictionary() -> Vec<u8> {
    let mut dict = Vec::with_capacity(1423);
    for word in WORDS {
        dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dict.extend_from_slice(word.as_bytes());
    }
    dict.extend_from_slice(TAIL.as_bytes());
    dict
}

/// A header block's pairs, names lowercase; a repeated value is NUL-separated, as sent.
pub(crate) type Headers = Vec<(String, String)>;

/// Reads the peer's header blocks: one inflate stream across the session.
pub(crate) struct Decoder {
    inflate: Decompress,
    /// Whether the zlib header before the first block is still to come.
    first: bool,
}

impl Decoder {
    /// A decoder whose window already holds the dictionary. Deflate data may refer back into
    /// a preceding stored block, so the dictionary goes in as one (discarded) stored block and
    /// the peer's raw deflate data, without its zlib header, follows it.
    pub(crate) fn new() -> Result<Self, SpdyError> {
        let dict = dictionary();
        let len = dict.len() as u16;
        let mut primer = vec![0u8];
        primer.extend_from_slice(&len.to_le_bytes());
        primer.extend_from_slice(&(!len).to_le_bytes());
        primer.extend_from_slice(&dict);
        let mut inflate = Decompress::new(false);
        let mut out = Vec::with_capacity(dict.len() + 16);
        inflate
            .decompress_vec(&primer, &mut out, FlushDecompress::Sync)
            .map_err(|e| SpdyError::Headers(format!("priming the dictionary: {e}")))?;
        if out != dict {
            return Err(SpdyError::Headers("priming the dictionary".into()));
        }
        Ok(Self {
            inflate,
            first: true,
        })
    }

    /// Decompresses and parses one block.
    pub(crate) fn decode(&mut self, mut block: &[u8]) -> Result<Headers, SpdyError> {
        if self.first {
            self.first = false;
            block = strip_zlib_header(block)?;
        }
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut consumed = 0usize;
        while consumed < block.len() || out.len() == out.capacity() {
            if out.len() >= MAX_BLOCK {
                return Err(SpdyError::Headers(format!(
                    "a header block larger than {MAX_BLOCK} bytes"
                )));
            }
            out.reserve(4096);
            let before = self.inflate.total_in();
            let status = self
                .inflate
                .decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync)
                .map_err(|e| SpdyError::Headers(format!("inflating a header block: {e}")))?;
            consumed += (self.inflate.total_in() - before) as usize;
            if status == Status::StreamEnd {
                break;
            }
            if self.inflate.total_in() == before && out.len() < out.capacity() {
                break;
            }
        }
        parse_block(&out)
    }
}

/// The raw deflate data after the zlib header (and dictionary id) of the first block.
fn strip_zlib_header(block: &[u8]) -> Result<&[u8], SpdyError> {
    let bad = || SpdyError::Headers("the first header block has no zlib header".into());
    let [cmf, flg, ..] = block else {
        return Err(bad());
    };
    if cmf & 0x0f != 8 || (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 != 0 {
        return Err(bad());
    }
    let skip = if flg & 0x20 != 0 { 6 } else { 2 };
    block.get(skip..).ok_or_else(bad)
}

/// Parses a decompressed name/value block.
fn parse_block(mut raw: &[u8]) -> Result<Headers, SpdyError> {
    let short = || SpdyError::Headers("a truncated header block".into());
    let take = |raw: &mut &[u8]| -> Result<String, SpdyError> {
        if raw.remaining() < 4 {
            return Err(short());
        }
        let len = raw.get_u32() as usize;
        if raw.remaining() < len {
            return Err(short());
        }
        let text = String::from_utf8_lossy(&raw[..len]).into_owned();
        raw.advance(len);
        Ok(text)
    };
    if raw.remaining() < 4 {
        return Err(short());
    }
    let count = raw.get_u32();
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take(&mut raw)?;
        let value = take(&mut raw)?;
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

/// Writes this side's header blocks: one zlib stream across the session, each block flushed
/// to a byte boundary. It does not refer to the dictionary, which a reader allows.
pub(crate) struct Encoder {
    deflate: Compress,
}

impl Encoder {
    /// A new stream.
    pub(crate) fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::default(), true),
        }
    }

    /// Serialises and compresses one block.
    pub(crate) fn encode(&mut self, headers: &[(&str, &str)]) -> Result<Bytes, SpdyError> {
        let mut raw = BytesMut::new();
        raw.put_u32(headers.len() as u32);
        for (name, value) in headers {
            raw.put_u32(name.len() as u32);
            raw.put_slice(name.to_ascii_lowercase().as_bytes());
            raw.put_u32(value.len() as u32);
            raw.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut consumed = 0usize;
        loop {
            out.reserve(256);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Headers(format!("compressing a header block: {e}")))?;
            consumed += (self.deflate.total_in() - before) as usize;
            // Done once all input went in and the flush fitted (room was left over).
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(Bytes::from(out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        // Its Adler-32, the id a zlib stream that uses it carries.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in &dict {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(b << 16 | a, 0xe3c6_a7c2);
    }

    #[test]
    fn blocks_round_trip_across_one_stream() {
        let mut encoder = Encoder::new();
        let mut decoder = Decoder::new().unwrap();
        for i in 0..5 {
            let port = format!("{}", 8000 + i);
            let block = encoder
                .encode(&[("streamType", "data"), ("port", &port)])
                .unwrap();
            let headers = decoder.decode(&block).unwrap();
            assert_eq!(
                headers,
                vec![
                    ("streamtype".to_string(), "data".to_string()),
                    ("port".to_string(), port)
                ]
            );
        }
    }

    /// What Go's framer sends: one zlib stream that names the dictionary and refers into it,
    /// sync-flushed after each block (made with zlib's own deflate, through Python's binding).
    #[test]
    fn blocks_compressed_against_the_dictionary_are_read() {
        const ERROR_STREAM: &[u8] = &[
            0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0x25, 0x3a, 0x70, 0x3a, 0x2b, 0x29, 0x4a,
            0x4d, 0xcc, 0x85, 0x16, 0x25, 0xac, 0xa9, 0xa0, 0x80, 0x86, 0x14, 0xcb, 0x45, 0xe0,
            0x1c, 0x60, 0x61, 0x60, 0x61, 0x00, 0xa4, 0x39, 0x8b, 0x20, 0xd1, 0x98, 0x09, 0x4a,
            0xde, 0x8c, 0x06, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        const DATA_STREAM: &[u8] = &[
            0xc2, 0xaa, 0x19, 0x54, 0x0e, 0x25, 0x12, 0xd6, 0x0b, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let pairs = |kind: &str| -> Headers {
            [("streamtype", kind), ("port", "8080"), ("requestid", "0")]
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let mut decoder = Decoder::new().unwrap();
        assert_eq!(decoder.decode(ERROR_STREAM).unwrap(), pairs("error"));
        assert_eq!(decoder.decode(DATA_STREAM).unwrap(), pairs("data"));
    }

    #[test]
    fn bad_blocks_are_errors() {
        let mut decoder = Decoder::new().unwrap();
        assert!(decoder.decode(b"").is_err());
        assert!(decoder.decode(&[0x78, 0x9c, 0xff, 0xff]).is_err());
        assert!(parse_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
    }
}
