//! Store tests. `contract.rs` is the store's contract and runs against both backends, from
//! the same code: redb in a temp dir, and a real etcd member (Debian's `etcd-server`) started
//! for each test. `redb.rs` and `etcd.rs` hold what only one backend has.

use std::sync::Arc;

use pier_model::{manifest, Object};
use pier_testkit::Etcd;

use super::{EtcdConfig, Store, StoreConfig};

mod contract;
mod etcd;
mod etcd_watch;
mod redb;
mod secrets;
mod status;

/// Which backend a contract test runs on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Backend {
    Redb,
    Etcd,
}

/// A store open for a test, with what keeps it alive.
pub(super) struct Opened {
    pub(super) store: Arc<Store>,
    config: StoreConfig,
    dir: tempfile::TempDir,
    etcd: Option<Etcd>,
}

impl Opened {
    /// A store on `backend`, or `None` (having said why) when it cannot run here.
    pub(super) fn new(backend: Backend, config: StoreConfig) -> Option<Opened> {
        let dir = tempfile::tempdir().unwrap();
        let (store, etcd) = match backend {
            Backend::Redb => (
                Store::open(&dir.path().join("s.redb"), config.clone()).unwrap(),
                None,
            ),
            Backend::Etcd => {
                if !Etcd::available() {
                    pier_testkit::skip("etcd is not installed (apt-get install etcd-server)");
                    return None;
                }
                let etcd = Etcd::start(1);
                let store = Store::connect(etcd_config(&etcd), config.clone()).unwrap();
                (store, Some(etcd))
            }
        };
        Some(Opened {
            store,
            config,
            dir,
            etcd,
        })
    }

    /// Closes the store and opens it again from what it persisted.
    pub(super) fn reopen(self) -> Opened {
        let Opened {
            store,
            config,
            dir,
            etcd,
        } = self;
        // redb refuses a file that is still open.
        drop(store);
        let store = match &etcd {
            Some(etcd) => Store::connect(etcd_config(etcd), config.clone()).unwrap(),
            None => Store::open(&dir.path().join("s.redb"), config.clone()).unwrap(),
        };
        Opened {
            store,
            config,
            dir,
            etcd,
        }
    }

    /// The etcd cluster under the store, on the etcd backend.
    pub(super) fn etcd(&mut self) -> Option<&mut Etcd> {
        self.etcd.as_mut()
    }
}

/// The client settings for a test cluster.
pub(super) fn etcd_config(etcd: &Etcd) -> EtcdConfig {
    EtcdConfig::from_url(&etcd.store_url()).unwrap()
}

pub(super) fn objs(yaml: &str) -> Vec<Object> {
    manifest::objects("test", yaml).unwrap()
}

pub(super) fn svc(name: &str, extra: &str) -> Object {
    objs(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 80}}]\n{extra}"
    ))
    .remove(0)
}

pub(super) fn cluster_ip(o: &Object) -> String {
    match o {
        Object::Service(s) => s.spec.cluster_ip.clone(),
        _ => panic!("not a service"),
    }
}

/// The resourceVersion of a write's object, as a number.
pub(super) fn rv(o: &Object) -> u64 {
    o.meta().resource_version.parse().unwrap()
}
