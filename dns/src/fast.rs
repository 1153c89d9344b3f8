//! Encoded answers for repeated cluster-zone queries: the first query for a name and type is
//! answered the full way (decode, zone lookup, encode) and its response bytes are kept; later
//! ones only need their ID, RD/CD bits and the question's letter case copied in.
//!
//! Only plain queries take this path: one question, class IN, no EDNS, no other sections, and
//! a response that fits 512 bytes (so it is the same over UDP and TCP). The cache belongs to
//! one zone revision and is emptied when the zone changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most answers kept; past it the cache starts over.
const MAX_ENTRIES: usize = 200_000;
/// Largest response kept.
pub(crate) const MAX_RESPONSE: usize = 512;

/// A plain query, parsed just enough to find its cached answer.
pub(crate) struct PlainQuery {
    /// Lowercased wire-format name followed by the query type.
    key: [u8; 258],
    key_len: usize,
    /// Length of the name in wire format (from offset 12).
    name_len: usize,
    /// Query type.
    pub qtype: u16,
}

impl PlainQuery {
    /// Parses `packet` if it is a plain query (see the module docs).
    pub(crate) fn parse(packet: &[u8]) -> Option<PlainQuery> {
        let header = packet.get(..12)?;
        let flags = header[2];
        // QR = 0, opcode QUERY, AA and TC clear.
        if flags & 0xfe != 0 {
            return None;
        }
        if header[4..12] != [0, 1, 0, 0, 0, 0, 0, 0] {
            return None;
        }
        let mut key = [0u8; 258];
        let mut pos = 12;
        loop {
            let len = usize::from(*packet.get(pos)?);
            if len == 0 {
                break;
            }
            if len > 63 || pos - 12 + len + 1 > 254 {
                return None;
            }
            let label = packet.get(pos + 1..pos + 1 + len)?;
            key[pos - 12] = packet[pos];
            for (i, b) in label.iter().enumerate() {
                key[pos - 12 + 1 + i] = b.to_ascii_lowercase();
            }
            pos += 1 + len;
        }
        let name_len = pos - 12 + 1;
        let tail = packet.get(pos + 1..)?;
        // QTYPE, QCLASS IN, and nothing after.
        if tail.len() != 4 || tail[2..4] != [0, 1] {
            return None;
        }
        let qtype = u16::from_be_bytes([tail[0], tail[1]]);
        key[name_len - 1] = 0;
        key[name_len] = tail[0];
        key[name_len + 1] = tail[1];
        Some(PlainQuery {
            key,
            key_len: name_len + 2,
            name_len,
            qtype,
        })
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }
}

#[derive(Default)]
struct Entries {
    revision: u64,
    map: HashMap<Box<[u8]>, Arc<[u8]>>,
}

/// Encoded answers of the current zone revision.
#[derive(Default)]
pub(crate) struct FastAnswers {
    entries: Mutex<Entries>,
}

impl FastAnswers {
    /// Forgets every answer: the zone is now at `revision`.
    pub(crate) fn reset(&self, revision: u64) {
        if let Ok(mut e) = self.entries.lock() {
            e.revision = revision;
            e.map.clear();
        }
    }

    /// The answer to `query` (a copy of `packet`'s question and flags applied), if kept.
    pub(crate) fn answer(&self, query: &PlainQuery, packet: &[u8]) -> Option<Vec<u8>> {
        let template = self.entries.lock().ok()?.map.get(query.key()).cloned()?;
        let mut out = template.to_vec();
        out[..2].copy_from_slice(packet.get(..2)?);
        // RD (byte 2, bit 0) and CD (byte 3, bit 4) follow the query.
        out[2] = (out[2] & !0x01) | (packet[2] & 0x01);
        out[3] = (out[3] & !0x10) | (packet[3] & 0x10);
        let name = 12..12 + query.name_len;
        out.get_mut(name.clone())?
            .copy_from_slice(packet.get(name)?);
        Some(out)
    }

    /// Keeps `response` as the answer to `query`, if it was computed on zone `revision`.
    pub(crate) fn keep(&self, query: &PlainQuery, revision: u64, response: &[u8]) {
        // A truncated (TC) answer would be wrong over TCP.
        let truncated = response.get(2).is_some_and(|f| f & 0x02 != 0);
        if truncated || response.len() > MAX_RESPONSE || response.len() < 12 + query.name_len + 4 {
            return;
        }
        let Ok(mut e) = self.entries.lock() else {
            return;
        };
        if e.revision != revision {
            return;
        }
        if e.map.len() >= MAX_ENTRIES {
            e.map.clear();
        }
        e.map.insert(query.key().into(), response.into());
    }
}

/// The response code of an encoded response.
pub(crate) fn rcode(response: &[u8]) -> u8 {
    response.get(3).map_or(0, |b| b & 0x0f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &[&str], qtype: u16, rd: bool) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[u8::from(rd), 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn plain_queries_only() {
        assert!(PlainQuery::parse(&query(1, &["web", "default"], 1, true)).is_some());
        let mut edns = query(1, &["a"], 1, true);
        edns[11] = 1;
        assert!(PlainQuery::parse(&edns).is_none());
        let mut response = query(1, &["a"], 1, true);
        response[2] |= 0x80;
        assert!(PlainQuery::parse(&response).is_none());
        let mut chaos = query(1, &["a"], 1, true);
        let n = chaos.len();
        chaos[n - 1] = 3;
        assert!(PlainQuery::parse(&chaos).is_none());
        let mut trailing = query(1, &["a"], 1, true);
        trailing.push(0);
        assert!(PlainQuery::parse(&trailing).is_none());
        assert!(PlainQuery::parse(&[0; 5]).is_none());
    }

    #[test]
    fn answers_follow_the_query_id_flags_and_case() {
        let cache = FastAnswers::default();
        cache.reset(7);
        let first = query(0x1111, &["web", "default"], 1, true);
        let q = PlainQuery::parse(&first).unwrap();
        // A made-up response: header, the question, one byte of "answer".
        let mut response = first.clone();
        response[2] = 0x85; // QR, AA, RD
        response[3] = 0x80; // RA
        response.push(0xAA);
        cache.keep(&q, 6, &response);
        assert!(
            cache.answer(&q, &first).is_none(),
            "answers of an old revision are not kept"
        );
        cache.keep(&q, 7, &response);
        let second = query(0x2222, &["WeB", "DEFAULT"], 1, false);
        let q2 = PlainQuery::parse(&second).unwrap();
        let out = cache.answer(&q2, &second).unwrap();
        assert_eq!(&out[..2], &[0x22, 0x22]);
        assert_eq!(out[2], 0x84, "RD follows the query");
        assert_eq!(&out[12..12 + q2.name_len], &second[12..12 + q2.name_len]);
        assert_eq!(*out.last().unwrap(), 0xAA);
        let other_type = query(3, &["web", "default"], 28, true);
        assert!(cache
            .answer(&PlainQuery::parse(&other_type).unwrap(), &other_type)
            .is_none());
        cache.reset(8);
        assert!(cache.answer(&q2, &second).is_none());
    }
}
