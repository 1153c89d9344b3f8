//! The status subresource in the store, on both backends: writing a Deployment keeps the
//! status the controller wrote; a status write changes only the status, conditionally on the
//! resourceVersion it read, and does not bump the generation.

use super::{objs, Backend, Opened};
use crate::error::Error;
use crate::store::{Op, StoreConfig};
use pier_model::deployment::DeploymentStatus;
use pier_model::{Kind, Object};

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: REPLICAS\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: v1}]}\n";

fn deployment(replicas: u32) -> Object {
    objs(&DEPLOYMENT.replace("REPLICAS", &replicas.to_string())).remove(0)
}

fn status(o: &Object) -> Option<DeploymentStatus> {
    match o {
        Object::Deployment(d) => d.status.clone(),
        _ => None,
    }
}

fn check(backend: Backend) {
    let Some(t) = Opened::new(backend, StoreConfig::default()) else {
        return;
    };
    let store = &t.store;
    let mut created = store.apply(vec![deployment(2)]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(status(&created), None);
    if let Object::Deployment(d) = &mut created {
        d.status = Some(DeploymentStatus {
            replicas: 2,
            ..DeploymentStatus::default()
        });
    }
    let stale = created.clone();
    let with_status = store.write(vec![Op::PutStatus(created)]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(status(&with_status).unwrap().replicas, 2);
    assert_eq!(
        with_status.meta().generation,
        1,
        "a status write is not a new generation"
    );
    let err = store.write(vec![Op::PutStatus(stale)]).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");

    let scaled = store.apply(vec![deployment(3)]).unwrap()[0]
        .object
        .clone()
        .unwrap();
    assert_eq!(scaled.meta().generation, 2);
    assert_eq!(
        status(&scaled).unwrap().replicas,
        2,
        "a spec write keeps the status"
    );
    let stored = store
        .get(Kind::Deployment, "default", "web")
        .unwrap()
        .unwrap();
    assert_eq!(stored, scaled);
}

#[test]
fn status_is_written_apart_on_redb() {
    check(Backend::Redb);
}

#[test]
fn status_is_written_apart_on_etcd() {
    check(Backend::Etcd);
}
