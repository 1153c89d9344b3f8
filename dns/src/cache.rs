//! Forwarding cache: positive and negative answers, TTLs respected and capped, LRU-bounded,
//! with serve-stale (RFC 8767) for when upstreams fail.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use lru::LruCache;

/// TTL given to answers served stale (RFC 8767 recommends 30 s).
pub const STALE_TTL: u32 = 30;

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Most entries kept; the least recently used goes first.
    pub capacity: usize,
    /// Cap on positive TTLs.
    pub max_ttl: u32,
    /// Cap on negative (NXDOMAIN/NODATA) TTLs.
    pub max_negative_ttl: u32,
    /// How long after expiry an entry may still be served when upstreams fail.
    pub stale_for: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_ttl: 3600,
            max_negative_ttl: 1800,
            stale_for: Duration::from_secs(3600),
        }
    }
}

/// Cache key: lowercase name, type, class.
pub type CacheKey = (String, RecordType, DNSClass);

struct Entry {
    response: Message,
    stored: Instant,
    ttl: u32,
}

/// What a lookup found.
pub enum Lookup {
    /// A fresh answer, TTLs counted down.
    Fresh(Message),
    /// Nothing usable.
    Miss,
}

/// Counters the cache keeps for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries now.
    pub entries: usize,
    /// Entries pushed out by capacity.
    pub evictions: u64,
}

/// The cache.
pub struct Cache {
    config: CacheConfig,
    inner: Mutex<(LruCache<CacheKey, Entry>, u64)>,
}

fn count_down(mut m: Message, elapsed: u32, floor: Option<u32>) -> Message {
    let adjust = |ttl: u32| floor.unwrap_or_else(|| ttl.saturating_sub(elapsed));
    for r in m
        .answers
        .iter_mut()
        .chain(m.authorities.iter_mut())
        .chain(m.additionals.iter_mut())
    {
        r.ttl = adjust(r.ttl);
    }
    m
}

impl Cache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Cache {
        let cap = NonZeroUsize::new(config.capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Cache {
            config,
            inner: Mutex::new((LruCache::new(cap), 0)),
        }
    }

    fn ttl_of(&self, response: &Message) -> Option<u32> {
        match response.metadata.response_code {
            ResponseCode::NoError if !response.answers.is_empty() => {
                let min = response.answers.iter().map(|r| r.ttl).min()?;
                Some(min.min(self.config.max_ttl))
            }
            ResponseCode::NoError | ResponseCode::NXDomain => {
                // Negative answers live as long as the SOA says (RFC 2308), capped.
                let soa = response.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                })?;
                Some(soa.min(self.config.max_negative_ttl))
            }
            _ => None,
        }
    }

    /// `response` with every TTL capped as the cache caps lifetimes (`max_ttl`, and
    /// `max_negative_ttl` for the authority of a negative answer), so clients are never told
    /// to keep an answer longer than pier would.
    pub fn capped(&self, mut response: Message) -> Message {
        let negative = response.answers.is_empty();
        let (max, max_authority) = (
            self.config.max_ttl,
            if negative {
                self.config.max_negative_ttl
            } else {
                self.config.max_ttl
            },
        );
        for r in response
            .answers
            .iter_mut()
            .chain(response.additionals.iter_mut())
        {
            r.ttl = r.ttl.min(max);
        }
        for r in response.authorities.iter_mut() {
            r.ttl = r.ttl.min(max_authority);
        }
        response
    }

    /// Stores an upstream response; errors, truncated and uncacheable answers are skipped.
    pub fn insert(&self, key: CacheKey, response: &Message, now: Instant) {
        if response.metadata.truncation {
            return;
        }
        let Some(ttl) = self.ttl_of(response).filter(|t| *t > 0) else {
            return;
        };
        let mut stored = response.clone();
        stored.edns = None;
        if let Ok(mut inner) = self.inner.lock() {
            let (lru, evictions) = &mut *inner;
            if let Some((old, _)) = lru.push(
                key.clone(),
                Entry {
                    response: stored,
                    stored: now,
                    ttl,
                },
            ) {
                if old != key {
                    *evictions += 1;
                }
            }
        }
    }

    /// A fresh answer for `key`, if any.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Lookup {
        let Ok(mut inner) = self.inner.lock() else {
            return Lookup::Miss;
        };
        let Some(entry) = inner.0.get(key) else {
            return Lookup::Miss;
        };
        let elapsed = now.saturating_duration_since(entry.stored).as_secs();
        if elapsed >= u64::from(entry.ttl) {
            return Lookup::Miss;
        }
        let elapsed = u32::try_from(elapsed).unwrap_or(u32::MAX);
        Lookup::Fresh(count_down(entry.response.clone(), elapsed, None))
    }

    /// An expired answer still inside the stale window, with TTLs set to [`STALE_TTL`].
    pub fn get_stale(&self, key: &CacheKey, now: Instant) -> Option<Message> {
        let mut inner = self.inner.lock().ok()?;
        let entry = inner.0.get(key)?;
        let limit =
            entry.stored + Duration::from_secs(u64::from(entry.ttl)) + self.config.stale_for;
        (now < limit).then(|| count_down(entry.response.clone(), 0, Some(STALE_TTL)))
    }

    /// Current entries and evictions so far.
    pub fn stats(&self) -> CacheStats {
        self.inner
            .lock()
            .map(|i| CacheStats {
                entries: i.0.len(),
                evictions: i.1,
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, Record};

    use super::*;

    fn answer(ttl: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(
            Name::from_ascii("a.example.").unwrap(),
            ttl,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        ));
        m
    }

    fn nxdomain(soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        let soa = SOA::new(
            Name::from_ascii("ns.example.").unwrap(),
            Name::from_ascii("h.example.").unwrap(),
            1,
            1,
            1,
            1,
            minimum,
        );
        m.add_authority(Record::from_rdata(
            Name::from_ascii("example.").unwrap(),
            soa_ttl,
            RData::SOA(soa),
        ));
        m
    }

    fn key(n: &str) -> CacheKey {
        (n.to_string(), RecordType::A, DNSClass::IN)
    }

    #[test]
    fn ttl_counts_down_and_expires() {
        let c = Cache::new(CacheConfig::default());
        let t0 = Instant::now();
        c.insert(key("a"), &answer(60), t0);
        match c.get(&key("a"), t0 + Duration::from_secs(15)) {
            Lookup::Fresh(m) => assert_eq!(m.answers[0].ttl, 45),
            Lookup::Miss => panic!("expected a hit"),
        }
        assert!(matches!(
            c.get(&key("a"), t0 + Duration::from_secs(60)),
            Lookup::Miss
        ));
        let stale = c
            .get_stale(&key("a"), t0 + Duration::from_secs(120))
            .unwrap();
        assert_eq!(stale.answers[0].ttl, STALE_TTL);
        assert!(c
            .get_stale(&key("a"), t0 + Duration::from_secs(60 + 3600))
            .is_none());
    }

    #[test]
    fn caps_and_negative_ttls() {
        let c = Cache::new(CacheConfig {
            max_ttl: 100,
            max_negative_ttl: 10,
            ..CacheConfig::default()
        });
        let t0 = Instant::now();
        c.insert(key("big"), &answer(86400), t0);
        assert!(matches!(
            c.get(&key("big"), t0 + Duration::from_secs(101)),
            Lookup::Miss
        ));
        c.insert(key("nx"), &nxdomain(300, 60), t0);
        assert!(matches!(
            c.get(&key("nx"), t0 + Duration::from_secs(9)),
            Lookup::Fresh(_)
        ));
        assert!(matches!(
            c.get(&key("nx"), t0 + Duration::from_secs(10)),
            Lookup::Miss
        ));
        let mut servfail = answer(60);
        servfail.metadata.response_code = ResponseCode::ServFail;
        c.insert(key("sf"), &servfail, t0);
        assert!(
            matches!(c.get(&key("sf"), t0), Lookup::Miss),
            "errors are not cached"
        );
    }

    #[test]
    fn bounded_with_lru_eviction() {
        let c = Cache::new(CacheConfig {
            capacity: 2,
            ..CacheConfig::default()
        });
        let t0 = Instant::now();
        c.insert(key("a"), &answer(60), t0);
        c.insert(key("b"), &answer(60), t0);
        let _ = c.get(&key("a"), t0);
        c.insert(key("c"), &answer(60), t0);
        assert!(
            matches!(c.get(&key("b"), t0), Lookup::Miss),
            "least recently used evicted"
        );
        assert!(matches!(c.get(&key("a"), t0), Lookup::Fresh(_)));
        assert_eq!(
            c.stats(),
            CacheStats {
                entries: 2,
                evictions: 1
            }
        );
    }
}
