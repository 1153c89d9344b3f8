//! The etcd backend: objects under `/pier/<Kind>/<namespace>/<name>` as JSON, their
//! resourceVersion being etcd's mod revision; allocations under `/pier-alloc/`, checked in
//! the same etcd transaction as the objects that take them. etcd keeps the event history
//! (watch from a revision; compaction answers `Compacted`).
//!
//! The store's API is synchronous (the daemon calls it off the async threads, and tests call
//! it directly), so every call runs on the backend's own small runtime and the caller waits.

mod hub;
mod reseal;
mod stream;
mod txn;
mod watch;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    TlsOptions, Txn, TxnOp,
};

use super::write::{self, Done};
use super::{kind_range, object_key, Keyring, Op, Outcome, StoreConfig};
use crate::error::{Error, Result};
use pier_model::{Kind, Object};
pub(super) use watch::EtcdWatch;

/// Where objects live.
const OBJECTS: &str = "/pier/";
/// The store's identity.
const ID_KEY: &str = "/pier-meta/id";
/// How often a write is retried when a concurrent write changed what it read.
const ATTEMPTS: usize = 32;
/// Objects per page of a list.
const PAGE: i64 = 500;
/// How old object counts may be before they are read again.
const COUNTS_EVERY: Duration = Duration::from_secs(5);
/// How long a call that reached no member is tried again.
const RETRY_FOR: Duration = Duration::from_secs(5);

/// How to reach the etcd cluster.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// Client URLs (`http://host:port` or `https://host:port`), or `host:port`.
    pub endpoints: Vec<String>,
    /// PEM CA bundle to verify the members with (TLS).
    pub ca: Option<std::path::PathBuf>,
    /// PEM client certificate and key (TLS client authentication).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Most operations (and, separately, compares) etcd takes in one transaction: its
    /// `--max-txn-ops`, 128 unless the members were started with more.
    pub max_txn_ops: usize,
}

impl EtcdConfig {
    /// Endpoints from a `--store etcd://HOST:PORT[,HOST:PORT...]` value.
    pub fn from_url(url: &str) -> Result<EtcdConfig> {
        let rest = url.strip_prefix("etcd://").ok_or_else(|| {
            Error::BadRequest(format!(
                "{url}: an etcd store is etcd://HOST:PORT[,HOST:PORT...]"
            ))
        })?;
        let endpoints: Vec<String> = rest
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(Error::BadRequest(format!("{url}: no etcd endpoint given")));
        }
        Ok(EtcdConfig {
            endpoints,
            max_txn_ops: 128,
            ..EtcdConfig::default()
        })
    }

    fn describe(&self) -> String {
        format!("etcd {}", self.endpoints.join(","))
    }
}

/// The etcd backend.
pub(super) struct EtcdStore {
    client: Client,
    /// One client per member, for watches: a broken watch resumes on the next member in
    /// turn, so it finds a live one after at most one try per dead member (the balanced
    /// client may pick a dead member again and again).
    members: Vec<Client>,
    /// Always present until drop, which shuts it down without waiting (drop may happen on an
    /// async thread, where a runtime may not block).
    runtime: Option<tokio::runtime::Runtime>,
    config: EtcdConfig,
    /// The newest revision any response showed.
    seen: AtomicU64,
    /// Object counts last read, and when.
    counts: std::sync::Mutex<Counted>,
    /// A count is under way.
    counting: std::sync::atomic::AtomicBool,
    /// The node's one watch, shared by its readers.
    hub: Arc<hub::Hub>,
    /// The keys Secrets are sealed with.
    keyring: Arc<Keyring>,
}

impl EtcdStore {
    /// Connects to the cluster and reads (or, the first time, makes) the store's identity.
    pub(super) fn connect(
        config: EtcdConfig,
        keyring: Arc<Keyring>,
    ) -> Result<(Arc<EtcdStore>, uuid::Uuid)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pier-etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::store_from("starting the etcd client's runtime", e))?;
        let options = connect_options(&config)?;
        let endpoints = config.endpoints.clone();
        let (client, members) = run_on(&runtime, async move {
            let client = Client::connect(&endpoints, Some(options.clone())).await?;
            let mut members = Vec::with_capacity(endpoints.len());
            for endpoint in &endpoints {
                members.push(Client::connect([endpoint], Some(options.clone())).await?);
            }
            Ok::<_, etcd_client::Error>((client, members))
        })?
        .map_err(|e| Error::store_from(format!("connecting to {}", config.describe()), e))?;
        let store = Arc::new(EtcdStore {
            client,
            members,
            runtime: Some(runtime),
            config,
            seen: AtomicU64::new(0),
            counts: std::sync::Mutex::new(Counted::default()),
            counting: std::sync::atomic::AtomicBool::new(false),
            hub: Arc::default(),
            keyring,
        });
        let id = store.identity()?;
        store.reseal_stale()?;
        Ok((store, id))
    }

    /// Runs an etcd call on the backend's runtime and waits for it. A call that never reached
    /// a member (one is down, or the connection to it broke) is tried again on the others
    /// for a few seconds, so losing a minority of members is invisible to callers.
    fn call<T, F>(&self, what: &str, f: impl Fn(Client) -> F + Send + 'static) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| Error::store("the etcd client has stopped"))?;
        let client = self.client.clone();
        let attempts = async move {
            let deadline = tokio::time::Instant::now() + RETRY_FOR;
            let mut pause = Duration::from_millis(20);
            loop {
                match f(client.clone()).await {
                    Err(e) if unreached(&e) && tokio::time::Instant::now() + pause < deadline => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                    other => return other,
                }
            }
        };
        run_on(runtime, attempts)?.map_err(|e| self.error(what, e))
    }

    /// Starts a task on the backend's runtime.
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(fut);
        }
    }

    /// An etcd failure, naming the cluster and what the store was doing.
    /// The client of one member, counting round the cluster.
    fn member(&self, n: usize) -> &Client {
        self.members
            .get(n % self.members.len().max(1))
            .unwrap_or(&self.client)
    }

    fn error(&self, what: &str, e: etcd_client::Error) -> Error {
        let hint = if unreached(&e) || timed_out(&e) {
            " (no etcd member answered in time: a quorum of members must be up and reachable)"
        } else {
            ""
        };
        Error::store_from(format!("{}: {what}{hint}", self.config.describe()), e)
    }

    /// Notes a revision a response showed.
    fn saw(&self, revision: i64) {
        self.seen
            .fetch_max(u64::try_from(revision).unwrap_or(0), Ordering::AcqRel);
    }

    /// The newest revision seen.
    pub(super) fn revision(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }

    fn identity(&self) -> Result<uuid::Uuid> {
        let made = uuid::Uuid::new_v4().to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(ID_KEY, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(ID_KEY, made.as_str(), None)])
            .or_else([TxnOp::get(ID_KEY, None)]);
        let response = self.call("reading the store's identity", move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        if let Some(h) = response.header() {
            self.saw(h.revision());
        }
        let stored = if response.succeeded() {
            made
        } else {
            response
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    etcd_client::TxnOpResponse::Get(g) => g
                        .kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        uuid::Uuid::parse_str(stored.trim())
            .map_err(|e| Error::store_from(format!("{ID_KEY} in etcd is not a UUID"), e))
    }

    /// Reads one object.
    pub(super) fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Object>> {
        let key = object_etcd_key(&object_key(kind, namespace, name));
        let response = self.call("reading an object", move |mut c| {
            let key = key.clone();
            async move { c.get(key, None).await }
        })?;
        if let Some(h) = response.header() {
            self.saw(h.revision());
        }
        response
            .kvs()
            .first()
            .map(|kv| decode_object(&self.keyring, kv))
            .transpose()
    }

    /// Lists objects of a kind at one revision, with that revision, in pages of `PAGE`
    /// (one response for 10,000 EndpointSlices would pass gRPC's message limit).
    pub(super) fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<(Vec<Object>, u64)> {
        let (lo, hi) = kind_range(kind, namespace);
        let (mut from, hi) = (object_etcd_key(&lo), object_etcd_key(&hi));
        let mut at: Option<i64> = None;
        let mut out = Vec::new();
        loop {
            let (start, end) = (from.clone(), hi.clone());
            let response = self.call("listing objects", move |mut c| {
                let (start, end) = (start.clone(), end.clone());
                let mut options = GetOptions::new().with_range(end).with_limit(PAGE);
                if let Some(revision) = at {
                    options = options.with_revision(revision);
                }
                async move { c.get(start, Some(options)).await }
            })?;
            let revision = *at.get_or_insert(response.header().map_or(0, |h| h.revision()));
            self.saw(revision);
            for kv in response.kvs() {
                out.push(decode_object(&self.keyring, kv)?);
            }
            match response.kvs().last() {
                // The next page starts just after the last key of this one.
                Some(last) if response.more() => {
                    from = format!("{}\0", String::from_utf8_lossy(last.key()));
                }
                _ => return Ok((out, u64::try_from(revision).unwrap_or(0))),
            }
        }
    }

    /// Objects per kind, as last counted; a count older than `COUNTS_EVERY` starts a new one
    /// in the background, so a metrics scrape never waits for etcd.
    pub(super) fn counts(self: &Arc<Self>) -> BTreeMap<Kind, u64> {
        let counted = super::lock(&self.counts).clone();
        if counted.at.is_none_or(|at| at.elapsed() >= COUNTS_EVERY)
            && !self.counting.swap(true, Ordering::AcqRel)
        {
            let store = Arc::clone(self);
            self.spawn(async move {
                match count(&store.client).await {
                    Ok(counts) => {
                        *super::lock(&store.counts) = Counted {
                            at: Some(std::time::Instant::now()),
                            counts,
                        };
                    }
                    Err(e) => tracing::debug!(error = %e, "counting objects in etcd failed"),
                }
                store.counting.store(false, Ordering::Release);
            });
        }
        counted.counts
    }

    /// Runs a batch as one etcd transaction, again from fresh reads when a concurrent write
    /// changed anything it read.
    pub(super) fn write(&self, config: &StoreConfig, ops: Vec<Op>) -> Result<Done> {
        for attempt in 0..ATTEMPTS {
            let mut txn = txn::EtcdTxn::new(self);
            let mut done = write::apply(&mut txn, &config.alloc, 0, ops.clone())?;
            if done.events.is_empty() {
                return Ok(done);
            }
            if let Some(revision) = txn.commit()? {
                stamp(&mut done, revision);
                return Ok(done);
            }
            // Writers that keep colliding (nodes allocating from one range) spread out.
            std::thread::sleep(contention_pause(attempt));
        }
        Err(Error::Conflict(format!(
            "{}: the write kept meeting concurrent writes to the same objects ({ATTEMPTS} attempts)",
            self.config.describe()
        )))
    }

    /// A watch of every object change from `from` on (to objects of `kinds` only, if given).
    pub(super) fn watch(self: &Arc<Self>, from: u64, kinds: Option<&'static [Kind]>) -> EtcdWatch {
        EtcdWatch::start(Arc::clone(self), &self.hub, from, kinds)
    }
}

/// A random pause before attempt `attempt + 1` of a write that met a concurrent one: up to
/// 1 ms, doubling per attempt, at most 64 ms (etcd's own STM clients back off likewise).
fn contention_pause(attempt: usize) -> Duration {
    let ceiling_us = 1000u64 << attempt.min(6);
    let random = getrandom::u64().unwrap_or(ceiling_us / 2);
    Duration::from_micros(random % ceiling_us)
}

/// Object counts and when they were read.
#[derive(Debug, Clone, Default)]
struct Counted {
    at: Option<std::time::Instant>,
    counts: BTreeMap<Kind, u64>,
}

/// Counts the objects of every kind (count-only range reads).
async fn count(client: &Client) -> std::result::Result<BTreeMap<Kind, u64>, etcd_client::Error> {
    let mut kv = client.kv_client();
    let mut counts = BTreeMap::new();
    for kind in Kind::ALL {
        let (lo, hi) = kind_range(kind, None);
        let options = GetOptions::new()
            .with_range(object_etcd_key(&hi))
            .with_count_only();
        let response = kv.get(object_etcd_key(&lo), Some(options)).await?;
        counts.insert(kind, u64::try_from(response.count()).unwrap_or(0));
    }
    Ok(counts)
}

/// Whether a call failed without reaching a member that could answer it (safe to send again:
/// a write sent again finds its own effect through its compares and is run afresh).
fn unreached(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        // Unavailable covers a member that is down and "leader changed" while a new leader
        // is elected; without quorum the retries run out and the caller gets the error.
        // Cancelled with a transport error underneath: the member went away mid-call.
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown => true,
            tonic::Code::Cancelled => std::error::Error::source(status).is_some(),
            _ => false,
        },
        _ => false,
    }
}

/// Whether a call ran out of time (etcd-client's request timeout).
fn timed_out(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status)
        if matches!(status.code(), tonic::Code::Cancelled | tonic::Code::DeadlineExceeded))
}

/// Gives what a committed write created or changed the revision etcd committed it at.
fn stamp(done: &mut Done, revision: u64) {
    done.revision = revision;
    for written in &mut done.results {
        if matches!(written.outcome, Outcome::Created | Outcome::Configured) {
            if let Some(object) = &mut written.object {
                object.meta_mut().resource_version = revision.to_string();
            }
        }
    }
}

fn connect_options(config: &EtcdConfig) -> Result<ConnectOptions> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    if config.ca.is_some() || config.client_cert.is_some() {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| Error::store_from(format!("reading {}", p.display()), e))
        };
        let mut tls = TlsOptions::new();
        if let Some(ca) = &config.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = &config.client_cert {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `fut` on `runtime` and blocks the calling thread (any thread, async or not) until it
/// finishes.
fn run_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        if tx.send(fut.await).is_err() {
            tracing::debug!("an etcd call finished after its caller stopped waiting");
        }
    });
    rx.recv()
        .map_err(|_| Error::store("the etcd client stopped before answering"))
}

/// The etcd key of an object key (`Kind/namespace/name`).
fn object_etcd_key(key: &str) -> String {
    format!("{OBJECTS}{key}")
}

/// An object as stored, its resourceVersion being the key's mod revision.
fn decode_object(keyring: &Keyring, kv: &KeyValue) -> Result<Object> {
    let mut object = Object::from_stored(&keyring.open(kv.value())?).map_err(|e| {
        Error::store(format!(
            "corrupt object at {}: {e}",
            String::from_utf8_lossy(kv.key())
        ))
    })?;
    object.meta_mut().resource_version = kv.mod_revision().to_string();
    Ok(object)
}

/// An object's stored bytes (sealed when it is a Secret): its resourceVersion is etcd's, not
/// part of the value.
fn encode_object(keyring: &Keyring, object: &Object) -> Result<Vec<u8>> {
    let mut value = object.to_value();
    if let Some(meta) = value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        meta.remove("resourceVersion");
    }
    keyring.seal(object.kind(), serde_json::to_vec(&value)?)
}
