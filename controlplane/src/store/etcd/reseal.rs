//! Key rotation on etcd: Secrets sealed under a key other than the keyring's first are
//! written again under it when the node connects, each compared on its mod revision so a
//! concurrent write wins. Watchers see a modification with the same contents, as after
//! Kubernetes' storage migration.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use pier_model::Kind;

use super::{object_etcd_key, EtcdStore};
use crate::error::Result;
use crate::store::kind_range;

/// Secrets read per page (each may hold up to 1 MiB).
const PAGE: i64 = 16;

impl EtcdStore {
    /// Re-seals the Secrets an older key sealed; how many it rewrote.
    pub(super) fn reseal_stale(&self) -> Result<usize> {
        if self.keyring.primary().is_none() {
            return Ok(0);
        }
        let (lo, hi) = kind_range(Kind::Secret, None);
        let (mut from, hi) = (object_etcd_key(&lo), object_etcd_key(&hi));
        let mut resealed = 0;
        loop {
            let (start, end) = (from.clone(), hi.clone());
            let page = self.call("reading Secrets to re-seal", move |mut c| {
                let (start, end) = (start.clone(), end.clone());
                let options = GetOptions::new().with_range(end).with_limit(PAGE);
                async move { c.get(start, Some(options)).await }
            })?;
            for kv in page.kvs() {
                if !self.keyring.stale(kv.value()) {
                    continue;
                }
                let plain = self.keyring.open(kv.value())?.into_owned();
                let sealed = self.keyring.seal(Kind::Secret, plain)?;
                let key = kv.key().to_vec();
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        key.clone(),
                        CompareOp::Equal,
                        kv.mod_revision(),
                    )])
                    .and_then([TxnOp::put(key, sealed, None)]);
                let done = self.call("re-sealing a Secret", move |mut c| {
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })?;
                resealed += usize::from(done.succeeded());
            }
            match page.kvs().last() {
                Some(last) if page.more() => {
                    let mut next = last.key().to_vec();
                    next.push(0);
                    from = String::from_utf8_lossy(&next).into_owned();
                }
                _ => break,
            }
        }
        if resealed > 0 {
            tracing::info!(
                resealed,
                key = self.keyring.primary().unwrap_or_default(),
                "sealed stored Secrets again under the keyring's first key"
            );
        }
        Ok(resealed)
    }
}
