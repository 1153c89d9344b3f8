//! The ServiceAccount admission Kubernetes runs on a Pod write: a pod that names no
//! `imagePullSecrets` gets those of the account it runs as (`spec.serviceAccountName`, else
//! `default`), so a namespace's registry credentials are given once, on the account. An
//! account that does not exist gives nothing (pier does not make `default` accounts).

use super::object_key;
use super::txn::Txn;
use crate::error::Result;
use pier_model::{Kind, Object};

/// Gives a Pod without pull secrets its account's, read in the same transaction.
pub(super) fn admit(txn: &mut dyn Txn, object: &mut Object) -> Result<()> {
    let Object::Pod(pod) = object else {
        return Ok(());
    };
    if !pod.spec.image_pull_secrets.is_empty() {
        return Ok(());
    }
    let account = pod
        .spec
        .service_account_name
        .as_deref()
        .or(pod.spec.service_account.as_deref())
        .unwrap_or("default");
    let key = object_key(Kind::ServiceAccount, pod.metadata.namespace(), account);
    if let Some(Object::ServiceAccount(sa)) = txn.object(&key)? {
        pod.spec
            .image_pull_secrets
            .clone_from(&sa.image_pull_secrets);
    }
    Ok(())
}
