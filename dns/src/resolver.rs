//! One request, start to finish: validate, answer from the cluster zone, or forward through the cache.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use ipnet::IpNet;

use crate::cache::{Cache, CacheKey, Lookup};
use crate::fast::{self, FastAnswers, PlainQuery};
use crate::forward::Forwarder;
use crate::metrics::DnsMetrics;
use crate::zone::{Answer, Zone};

/// The transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP: answers above the client's size limit are truncated.
    Udp,
    /// TCP.
    Tcp,
}

/// What to do with a request after the synchronous part.
pub enum Step {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Needs an upstream: finish with [`Resolver::resolve`].
    Forward(Box<Pending>),
    /// Send nothing (not a query we answer at all).
    Drop,
}

/// A request waiting for an upstream answer.
pub struct Pending {
    request: Message,
    /// What is asked upstream: the request's question, or the out-of-zone target that an
    /// ExternalName chain ends at.
    query: Query,
    /// Records answered before the upstream's (the zone's CNAME chain).
    prefix: Vec<Record>,
    key: CacheKey,
    max_size: usize,
    proto: Proto,
    started: Instant,
}

/// The DNS resolver: cluster zone, forwarding cache, upstreams, access control.
pub struct Resolver {
    zone: ArcSwap<Zone>,
    cache: Cache,
    forwarder: Forwarder,
    allow: Vec<IpNet>,
    metrics: Arc<DnsMetrics>,
    fast: FastAnswers,
}

const OUR_PAYLOAD: u16 = 1232;

/// Most CNAMEs followed through the zone for one answer.
const MAX_CHAIN: usize = 8;

/// How following a CNAME answer through the zone ended.
enum Tail {
    /// The answer is complete.
    Complete,
    /// The chain ends at a name the zone does not have.
    NxDomain,
    /// The chain ends at a name without records of the type.
    NoData,
    /// The chain leaves the zone at this name (lowercase, trailing dot).
    External(String),
}

/// The target of `records`' last record when it is a CNAME.
fn cname_target(records: &[Record]) -> Option<String> {
    match &records.last()?.data {
        RData::CNAME(c) => Some(c.0.to_lowercase().to_ascii()),
        _ => None,
    }
}

/// Follows a CNAME answer (an ExternalName service) through the zone, as CoreDNS does:
/// in-zone targets are answered from the zone and appended; an out-of-zone target is left for
/// the upstream.
fn chase(zone: &Zone, records: &mut Vec<Record>, qtype: RecordType) -> Tail {
    if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
        return Tail::Complete;
    }
    for _ in 0..MAX_CHAIN {
        let Some(target) = cname_target(records) else {
            return Tail::Complete;
        };
        if !zone.in_zone(&target) {
            return Tail::External(target);
        }
        match zone.lookup(&target, qtype) {
            Answer::Records(more) => records.extend(more),
            Answer::NoData => return Tail::NoData,
            Answer::NxDomain | Answer::NotAuthoritative => return Tail::NxDomain,
        }
    }
    Tail::Complete
}

fn response_to(request: &Message, rcode: ResponseCode) -> Message {
    let mut m = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    m.metadata.recursion_desired = request.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = request.metadata.checking_disabled;
    m.metadata.response_code = rcode;
    m.queries.clone_from(&request.queries);
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(OUR_PAYLOAD);
        m.set_edns(edns);
    }
    m
}

/// The response to `request` from an upstream's (or the cache's) `answer`, after `prefix`.
fn with_prefix(request: &Message, mut prefix: Vec<Record>, answer: Message) -> Message {
    let mut m = response_to(request, answer.metadata.response_code);
    prefix.extend(answer.answers);
    m.answers = prefix;
    m.authorities = answer.authorities;
    m.additionals = answer.additionals;
    m
}

/// Encodes `m`, truncating (TC, empty sections) when it does not fit `max_size`.
fn encode(m: &Message, max_size: usize) -> Vec<u8> {
    match m.to_vec() {
        Ok(bytes) if bytes.len() <= max_size => bytes,
        Ok(_) => m.truncate().to_vec().unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "could not encode a DNS response");
            let mut fail =
                Message::error_msg(m.metadata.id, m.metadata.op_code, ResponseCode::ServFail);
            fail.queries.clone_from(&m.queries);
            fail.to_vec().unwrap_or_default()
        }
    }
}

/// FORMERR for a packet too broken to decode, if its header is readable and it is a query.
fn formerr_from_header(packet: &[u8]) -> Option<Vec<u8>> {
    let header = packet.get(..12)?;
    if header[2] & 0x80 != 0 {
        return None; // a response: never answer it
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    let op_code = OpCode::from_u8((header[2] >> 3) & 0x0f);
    Message::error_msg(id, op_code, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

impl Resolver {
    /// A resolver serving `zone`, forwarding through `cache` and `forwarder` for clients in `allow`.
    pub fn new(
        zone: Zone,
        cache: Cache,
        forwarder: Forwarder,
        allow: Vec<IpNet>,
        metrics: Arc<DnsMetrics>,
    ) -> Self {
        let fast = FastAnswers::default();
        fast.reset(zone.revision());
        Resolver {
            zone: ArcSwap::from_pointee(zone),
            cache,
            forwarder,
            allow,
            metrics,
            fast,
        }
    }

    /// The zone being served.
    pub fn zone(&self) -> Arc<Zone> {
        self.zone.load_full()
    }

    /// An empty truncated answer to `packet` (for rate-limited clients), if it is a query.
    pub fn slip(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(packet).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut m = response_to(&request, ResponseCode::NoError);
        m.metadata.truncation = true;
        self.metrics.rate_limited.inc();
        m.to_vec().ok()
    }

    /// Counts a query dropped by the rate limiter.
    pub fn dropped(&self) {
        self.metrics.rate_limited.inc();
    }

    /// Swaps in a new zone version.
    pub fn set_zone(&self, zone: Zone) {
        // Emptied first: an answer computed on the old zone can no longer be kept.
        self.fast.reset(zone.revision());
        self.metrics
            .services_skipped
            .set(i64::try_from(zone.skipped_count()).unwrap_or(i64::MAX));
        self.zone.store(Arc::new(zone));
    }

    fn finish(&self, m: &Message, max_size: usize, proto: Proto, started: Instant) -> Step {
        self.metrics.response(
            proto == Proto::Tcp,
            m.metadata.response_code,
            started.elapsed().as_secs_f64(),
        );
        Step::Reply(encode(m, max_size))
    }

    /// Handles everything that needs no upstream.
    pub fn prepare(&self, packet: &[u8], client: IpAddr, proto: Proto) -> Step {
        let started = Instant::now();
        let plain = PlainQuery::parse(packet);
        if let Some(q) = &plain {
            if let Some(bytes) = self.fast.answer(q, packet) {
                let tcp = proto == Proto::Tcp;
                self.metrics.request(tcp, RecordType::from(q.qtype), false);
                self.metrics.response(
                    tcp,
                    ResponseCode::from(0, fast::rcode(&bytes)),
                    started.elapsed().as_secs_f64(),
                );
                return Step::Reply(bytes);
            }
        }
        let request = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) => {
                let seconds = started.elapsed().as_secs_f64();
                self.metrics
                    .response(proto == Proto::Tcp, ResponseCode::FormErr, seconds);
                return formerr_from_header(packet).map_or(Step::Drop, Step::Reply);
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return Step::Drop;
        }
        let max_size = match proto {
            Proto::Tcp => usize::from(u16::MAX),
            Proto::Udp => usize::from(request.max_payload().clamp(512, 4096)),
        };
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 6.1.3: we speak EDNS version 0 only.
            return self.finish(
                &response_to(&request, ResponseCode::BADVERS),
                max_size,
                proto,
                started,
            );
        }
        if request.metadata.op_code != OpCode::Query {
            return self.finish(
                &response_to(&request, ResponseCode::NotImp),
                max_size,
                proto,
                started,
            );
        }
        let [query] = request.queries.as_slice() else {
            return self.finish(
                &response_to(&request, ResponseCode::FormErr),
                max_size,
                proto,
                started,
            );
        };
        let qtype = query.query_type();
        if query.query_class() != DNSClass::IN {
            return self.finish(
                &response_to(&request, ResponseCode::NotImp),
                max_size,
                proto,
                started,
            );
        }
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return self.finish(
                &response_to(&request, ResponseCode::Refused),
                max_size,
                proto,
                started,
            );
        }
        let qname = query.name().to_lowercase().to_ascii();
        let qname = if qname.ends_with('.') {
            qname
        } else {
            format!("{qname}.")
        };
        let zone = self.zone.load();
        let answer = zone.lookup(&qname, qtype);
        self.metrics.request(
            proto == Proto::Tcp,
            qtype,
            answer == Answer::NotAuthoritative,
        );
        let mut response = match answer {
            Answer::Records(mut records) => {
                let (rcode, negative) = match chase(&zone, &mut records, qtype) {
                    Tail::Complete => (ResponseCode::NoError, false),
                    Tail::NoData => (ResponseCode::NoError, true),
                    Tail::NxDomain => (ResponseCode::NXDomain, true),
                    Tail::External(target) if self.allowed(client) => {
                        return self.forward_chain(
                            request, records, target, qtype, max_size, proto, started,
                        );
                    }
                    // Clients that may not use forwarding get the zone's part of the chain.
                    Tail::External(_) => (ResponseCode::NoError, false),
                };
                let mut m = response_to(&request, rcode);
                m.answers = records;
                if negative {
                    m.add_authority(zone.soa());
                }
                m
            }
            Answer::NoData | Answer::NxDomain => {
                let rcode = if answer == Answer::NxDomain {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::NoError
                };
                let mut m = response_to(&request, rcode);
                m.add_authority(zone.soa());
                m
            }
            Answer::NotAuthoritative => {
                if !self.allowed(client) {
                    return self.finish(
                        &response_to(&request, ResponseCode::Refused),
                        max_size,
                        proto,
                        started,
                    );
                }
                let query = query.clone();
                return self.forward_chain(
                    request,
                    Vec::new(),
                    qname,
                    query.query_type(),
                    max_size,
                    proto,
                    started,
                );
            }
        };
        response.metadata.authoritative = true;
        let step = self.finish(&response, max_size, proto, started);
        if let (Some(q), Step::Reply(bytes)) = (&plain, &step) {
            self.fast.keep(q, zone.revision(), bytes);
        }
        step
    }

    /// Whether `client` may have names outside the cluster zone resolved.
    fn allowed(&self, client: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&client))
    }

    /// Answers `name`/`qtype` from the cache, after `prefix` (a CNAME chain), or hands it to
    /// the upstream.
    #[allow(clippy::too_many_arguments)]
    fn forward_chain(
        &self,
        request: Message,
        prefix: Vec<Record>,
        name: String,
        qtype: RecordType,
        max_size: usize,
        proto: Proto,
        started: Instant,
    ) -> Step {
        let Ok(qname) = Name::from_ascii(&name) else {
            return self.finish(
                &response_to(&request, ResponseCode::ServFail),
                max_size,
                proto,
                started,
            );
        };
        let key = (name, qtype, DNSClass::IN);
        match self.cache.get(&key, Instant::now()) {
            Lookup::Fresh(cached) => {
                self.metrics.cache_hits.inc();
                let m = with_prefix(&request, prefix, cached);
                return self.finish(&m, max_size, proto, started);
            }
            Lookup::Miss => self.metrics.cache_misses.inc(),
        }
        Step::Forward(Box::new(Pending {
            request,
            query: Query::query(qname, qtype),
            prefix,
            key,
            max_size,
            proto,
            started,
        }))
    }

    /// Finishes a forwarded request: upstream answer, else a stale one, else SERVFAIL.
    pub async fn resolve(&self, pending: Box<Pending>) -> Vec<u8> {
        let Pending {
            request,
            query,
            prefix,
            key,
            max_size,
            proto,
            started,
        } = *pending;
        let response = match self.forwarder.forward(&query, self.metrics.as_ref()).await {
            Ok(upstream) => {
                let upstream = self.cache.capped(upstream);
                self.cache.insert(key, &upstream, Instant::now());
                let stats = self.cache.stats();
                self.metrics
                    .cache_entries
                    .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
                self.metrics
                    .cache_evictions
                    .set(i64::try_from(stats.evictions).unwrap_or(i64::MAX));
                with_prefix(&request, prefix, upstream)
            }
            Err(e) => match self.cache.get_stale(&key, Instant::now()) {
                Some(stale) => {
                    tracing::debug!(error = %e, name = %key.0, "upstream failed; serving stale");
                    self.metrics.cache_stale.inc();
                    with_prefix(&request, prefix, stale)
                }
                None => {
                    tracing::debug!(error = %e, name = %key.0, "upstream failed");
                    response_to(&request, ResponseCode::ServFail)
                }
            },
        };
        match self.finish(&response, max_size, proto, started) {
            Step::Reply(bytes) => bytes,
            _ => Vec::new(),
        }
    }
}
