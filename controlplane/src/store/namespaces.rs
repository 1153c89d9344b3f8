//! Namespace rules of the store, as Kubernetes keeps them: the built-in namespaces exist, an
//! object goes only into a namespace that exists, every namespace has its `default`
//! ServiceAccount, and deleting a namespace deletes what is in it (in the same transaction).

use super::txn::Txn;
use super::{kind_range, object_key, Op, Outcome, Store};
use crate::error::{Error, Result};
use pier_model::namespace::BUILT_IN;
use pier_model::{Kind, Namespace, Object, ServiceAccount};

/// The built-in namespaces a store lacks, to create (each then gets its `default`
/// ServiceAccount), and the `default` accounts of existing ones made before accounts were.
pub(super) fn missing_built_ins(store: &Store) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for name in BUILT_IN {
        if store.get(Kind::Namespace, "", name)?.is_none() {
            out.push(Object::Namespace(Namespace::named(name)));
        } else if store.get(Kind::ServiceAccount, name, "default")?.is_none() {
            out.push(Object::ServiceAccount(ServiceAccount::default_in(name)));
        }
    }
    Ok(out)
}

/// The `default` ServiceAccount a change calls for, as Kubernetes' ServiceAccount controller
/// keeps one in every namespace: a new namespace's, or a fresh one for a `default` account
/// deleted on its own (not by its namespace's deletion, whose cascade is not `reported`).
pub(super) fn default_account_after(
    object: &Object,
    outcome: &Outcome,
    reported: bool,
) -> Option<ServiceAccount> {
    match (object, outcome) {
        (Object::Namespace(ns), Outcome::Created) => {
            Some(ServiceAccount::default_in(&ns.metadata.name))
        }
        (Object::ServiceAccount(sa), Outcome::Deleted)
            if reported && sa.metadata.name == "default" =>
        {
            Some(ServiceAccount::default_in(sa.metadata.namespace()))
        }
        _ => None,
    }
}

/// An error unless `object`'s namespace exists (created earlier in the same write counts).
pub(super) fn check_exists(txn: &mut dyn Txn, object: &Object) -> Result<()> {
    if !object.kind().namespaced() {
        return Ok(());
    }
    let ns = object.meta().namespace();
    if txn.object(&object_key(Kind::Namespace, "", ns))?.is_some() {
        return Ok(());
    }
    Err(Error::invalid(
        object.describe(),
        "metadata.namespace",
        format!(
            "namespace {ns:?} not found: create it first (a Namespace earlier in the same file \
             is enough)"
        ),
    ))
}

/// An error if the namespace `name` may not be deleted.
pub(super) fn check_deletable(name: &str) -> Result<()> {
    if BUILT_IN.contains(&name) {
        return Err(Error::invalid(
            format!("Namespace {name}"),
            "metadata.name",
            "this namespace may not be deleted",
        ));
    }
    Ok(())
}

/// Deletes for every object in the namespace `name`.
pub(super) fn contents(txn: &mut dyn Txn, name: &str) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
        let (lo, hi) = kind_range(kind, Some(name));
        for key in txn.object_keys(&lo, &hi)? {
            let Some(object_name) = key.rsplit('/').next().map(str::to_string) else {
                continue;
            };
            ops.push(Op::Delete {
                kind,
                namespace: name.to_string(),
                name: object_name,
                resource_version: None,
                must_exist: false,
            });
        }
    }
    Ok(ops)
}
