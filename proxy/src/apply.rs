//! Applying a snapshot diff to the proxy in named phases: build every changed frontend, check
//! who claims each address, bind every new socket, sync the VIP interface, and only then
//! commit (listeners, then backend groups). A failure before the commit changes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pier_snapshot::{NodeSnapshot, ServiceChange, ServiceKey, SnapshotDiff};

use crate::balance::{Cluster, ClusterKey};
use crate::frontend::{self, ClusterSet, Frontend};
use crate::{health, proto_name, Bound, Error, Listener, ListenerKey, Proxy, Result};

/// Each changed service's frontends, by listening address (none: the service is gone).
type Changed = Vec<(ServiceKey, Vec<(ListenerKey, Frontend)>)>;

/// Who holds each address after the diff, and what the changed services let go.
struct Claims {
    claimed: HashMap<ListenerKey, ServiceKey>,
    released: Vec<ListenerKey>,
}

impl Proxy {
    /// Applies a snapshot diff: validate and bind everything new first, then swap; on error
    /// nothing has changed.
    pub fn apply_diff(&mut self, diff: &SnapshotDiff, snapshot: &NodeSnapshot) -> Result<()> {
        let (changed, created) = self.build(diff)?;
        let claims = self.check(&changed)?;
        let mut bound = self.bind_new(&claims)?;
        self.sync_vips(&claims)?;
        // Commit: nothing below fails.
        self.commit_listeners(changed, &claims.released, &mut bound);
        self.commit_groups(created, diff, snapshot);
        Ok(())
    }

    /// Builds the frontends of every changed service, and the backend groups they need
    /// that do not exist yet.
    fn build(&self, diff: &SnapshotDiff) -> Result<(Changed, HashMap<ClusterKey, Arc<Cluster>>)> {
        let mut set = ClusterSet {
            existing: &self.clusters,
            created: HashMap::new(),
            metrics: &self.metrics,
        };
        let mut changed: Changed = Vec::new();
        for change in &diff.changes {
            match change {
                ServiceChange::Upsert(view) => {
                    let mut list = Vec::new();
                    for (key, i, node) in self.listener_keys(view) {
                        let port = &view.ports[i];
                        let fe = frontend::build(view, port, &node, &mut set, &self.metrics)
                            .map_err(Error::Route)?;
                        list.push((key, fe));
                    }
                    changed.push((view.key.clone(), list));
                }
                ServiceChange::Remove(key) => changed.push((key.clone(), Vec::new())),
            }
        }
        Ok((changed, set.created))
    }

    /// Who claims each address after this diff (only changed services' claims can conflict),
    /// and the addresses changed services no longer claim.
    fn check(&self, changed: &Changed) -> Result<Claims> {
        let changed_keys: HashSet<&ServiceKey> = changed.iter().map(|(k, _)| k).collect();
        let mut claimed: HashMap<ListenerKey, ServiceKey> = HashMap::new();
        for (svc, list) in changed {
            for (key, _) in list {
                let holder = claimed.insert(*key, svc.clone()).or_else(|| {
                    self.listeners
                        .get(key)
                        .map(|l| l.owner.clone())
                        .filter(|o| !changed_keys.contains(o))
                });
                if let Some(first) = holder.filter(|o| o != svc) {
                    return Err(Error::Conflict {
                        addr: key.addr,
                        proto: proto_name(key.protocol),
                        first: first.to_string(),
                        second: svc.to_string(),
                    });
                }
            }
        }
        let released = changed
            .iter()
            .flat_map(|(svc, _)| self.by_service.get(svc).into_iter().flatten())
            .filter(|k| !claimed.contains_key(k))
            .copied()
            .collect();
        Ok(Claims { claimed, released })
    }

    /// Binds every claimed address not listened on yet.
    fn bind_new(&self, claims: &Claims) -> Result<HashMap<ListenerKey, Bound>> {
        let mut bound = HashMap::new();
        for (key, svc) in &claims.claimed {
            if !self.listeners.contains_key(key) {
                bound.insert(*key, self.bind(*key, svc)?);
            }
        }
        Ok(bound)
    }

    /// Puts claimed VIPs on the VIP interface and takes released ones off (interface mode).
    fn sync_vips(&mut self, claims: &Claims) -> Result<()> {
        let Some(vip) = &mut self.vip else {
            return Ok(());
        };
        let node = self.config.node_address;
        let add: BTreeSet<IpAddr> = claims
            .claimed
            .keys()
            .map(|k| k.addr.ip())
            .filter(|ip| *ip != node)
            .collect();
        // A ClusterIP belongs to one Service, so a released address is free unless re-claimed.
        let remove: BTreeSet<IpAddr> = claims
            .released
            .iter()
            .map(|k| k.addr.ip())
            .filter(|ip| *ip != node && !add.contains(ip))
            .collect();
        vip.change(&add, &remove)
    }

    /// Drops released listeners, swaps the frontends of kept ones (open connections see the
    /// change on their next request) and starts the new ones.
    fn commit_listeners(
        &mut self,
        changed: Changed,
        released: &[ListenerKey],
        bound: &mut HashMap<ListenerKey, Bound>,
    ) {
        for key in released {
            self.listeners.remove(key);
        }
        for (svc, list) in changed {
            let mut keys = Vec::with_capacity(list.len());
            for (key, fe) in list {
                keys.push(key);
                let fe = Arc::new(fe);
                if let Some(l) = self.listeners.get_mut(&key) {
                    l.frontend.store(fe);
                    l.owner = svc.clone();
                    continue;
                }
                let Some(b) = bound.remove(&key) else {
                    continue;
                };
                let frontend = Arc::new(ArcSwap::new(fe));
                match self.spawn(b, Arc::clone(&frontend)) {
                    Ok(task) => {
                        self.listeners.insert(
                            key,
                            Listener {
                                owner: svc.clone(),
                                frontend,
                                task,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::error!(addr = %key.addr, error = %e, "listener failed to start")
                    }
                }
            }
            if keys.is_empty() {
                self.by_service.remove(&svc);
            } else {
                self.by_service.insert(svc, keys);
            }
        }
        self.metrics.listeners.set(self.listeners.len() as i64);
    }

    /// Adds the new backend groups, refreshes the endpoints of groups whose backend changed,
    /// and drops groups no frontend uses any more (their health checkers stop with them).
    fn commit_groups(
        &mut self,
        created: HashMap<ClusterKey, Arc<Cluster>>,
        diff: &SnapshotDiff,
        snapshot: &NodeSnapshot,
    ) {
        for (key, cluster) in created {
            cluster.update(snapshot.services.get(&key.backend));
            health::ensure_checker(&cluster, &self.http);
            self.by_backend.add(&key.backend, &key);
            self.by_frontend.add(&key.frontend, &key);
            self.clusters.insert(key, cluster);
        }
        for change in &diff.changes {
            let svc = match change {
                ServiceChange::Upsert(v) => &v.key,
                ServiceChange::Remove(k) => k,
            };
            // Groups whose endpoints changed.
            for key in self.by_backend.get(svc) {
                if let Some(cluster) = self.clusters.get(key) {
                    cluster.update(snapshot.services.get(svc));
                    health::ensure_checker(cluster, &self.http);
                }
            }
            // Groups this service's frontends no longer use (their checkers stop with them).
            let in_use: HashSet<&ClusterKey> = self
                .by_service
                .get(svc)
                .into_iter()
                .flatten()
                .filter_map(|k| self.listeners.get(k))
                .flat_map(|l| {
                    l.frontend
                        .load()
                        .clusters()
                        .into_iter()
                        .map(|c| c.key.clone())
                        .collect::<Vec<_>>()
                })
                .filter_map(|k| self.clusters.get_key_value(&k).map(|(k, _)| k))
                .collect();
            let unused: Vec<ClusterKey> = self
                .by_frontend
                .get(svc)
                .filter(|k| !in_use.contains(k))
                .cloned()
                .collect();
            for key in unused {
                if let Some(cluster) = self.clusters.remove(&key) {
                    cluster.update(None);
                }
                self.by_backend.remove(&key.backend, &key);
                self.by_frontend.remove(&key.frontend, &key);
            }
        }
    }
}
