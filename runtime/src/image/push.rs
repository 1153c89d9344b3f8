//! `pier push` and `pier login`: an image's blobs and manifest sent to a registry as the
//! registry API asks (blobs it already holds are skipped, the manifest last, so a refused or
//! broken push never names missing blobs), and credentials checked against a registry as
//! `docker login` checks them: a bearer token fetched with them, or a request they sign.

use futures_util::stream;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::RegistryOperation;
use tokio::io::AsyncReadExt;

use super::docker_config::Credentials;
use super::oci::{self, Manifest};
use super::pull::{registry_auth, registry_client, Registries};
use super::{ImageStore, Reference};
use crate::error::{Error, IoContext, Result};

/// Bytes read from a blob file per chunk sent.
const CHUNK: usize = 1 << 20;

/// What a push reports as it goes.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "event")]
pub enum PushProgress {
    /// The registry holds this blob already.
    Exists {
        /// Blob digest.
        digest: String,
    },
    /// A blob was sent.
    Pushed {
        /// Blob digest.
        digest: String,
        /// Its size.
        size: u64,
    },
}

/// Pushes image `name` (its own registry and repository) as `credentials`; returns the
/// manifest digest.
pub async fn push(
    store: &ImageStore,
    name: &str,
    registries: &Registries,
    credentials: Option<&Credentials>,
    progress: &(dyn Fn(PushProgress) + Send + Sync),
) -> Result<String> {
    let image = store.resolve(name)?;
    let ours = Reference::parse(&image.reference)?;
    let registry = ours.registry.clone().unwrap_or_else(|| "docker.io".into());
    registries.check_allowed(&registry)?;
    let target: oci_client::Reference = format!(
        "{registry}/{}:{}",
        ours.repository,
        ours.tag.as_deref().unwrap_or("latest")
    )
    .parse()
    .map_err(|e| Error::Invalid(format!("invalid image reference {}: {e}", image.reference)))?;
    let client = registry_client(&registry, registries);
    let refused =
        |e: OciDistributionError| refusal(&format!("push of {ours}"), &registry, e, credentials);
    client
        .auth(
            &target,
            &registry_auth(credentials),
            RegistryOperation::Push,
        )
        .await
        .map_err(refused)?;
    let manifest_bytes = store.read_blob(&image.manifest_digest)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| Error::Invalid(format!("manifest of {ours}: {e}")))?;
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if client
            .blob_exists(&target, &blob.digest)
            .await
            .map_err(refused)?
        {
            progress(PushProgress::Exists {
                digest: blob.digest.clone(),
            });
            continue;
        }
        let path = store.blob_path(&blob.digest)?;
        let file = tokio::fs::File::open(&path).await.at(&path)?;
        client
            .push_blob_stream(&target, chunks(file), &blob.digest, Some(blob.size))
            .await
            .map_err(refused)?;
        progress(PushProgress::Pushed {
            digest: blob.digest.clone(),
            size: blob.size,
        });
    }
    let media_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
    let content_type = media_type
        .parse()
        .map_err(|e| Error::Invalid(format!("manifest media type {media_type:?}: {e}")))?;
    client
        .push_manifest_raw(&target, manifest_bytes, content_type)
        .await
        .map_err(refused)?;
    Ok(image.manifest_digest)
}

/// `file` as a stream of chunks the registry client sends.
fn chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, OciDistributionError>> {
    stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((bytes::Bytes::from(buf), file)))
    })
}

/// Checks `credentials` against `registry`, as `docker login` does.
pub async fn login(
    registry: &str,
    registries: &Registries,
    credentials: &Credentials,
) -> Result<()> {
    registries.check_allowed(registry)?;
    // A repository nobody pushes to: the check reads nothing of it.
    let probe: oci_client::Reference = format!("{registry}/pier-login-check:latest")
        .parse()
        .map_err(|e| Error::Invalid(format!("registry {registry:?}: {e}")))?;
    let client = registry_client(registry, registries);
    let refused = |e| {
        refusal(
            &format!("login to {registry}"),
            registry,
            e,
            Some(credentials),
        )
    };
    let token = client
        .auth(
            &probe,
            &registry_auth(Some(credentials)),
            RegistryOperation::Pull,
        )
        .await
        .map_err(refused)?;
    if token.is_some() {
        // The token service handed a token for these credentials: they hold.
        return Ok(());
    }
    // A registry asking for Basic auth checks them on each request: one they sign.
    let absent = format!("sha256:{}", "0".repeat(64));
    client
        .blob_exists(&probe, &absent)
        .await
        .map(|_| ())
        .map_err(refused)
}

/// `e` as pier's error: a refusal for want of (valid) credentials says so.
fn refusal(
    what: &str,
    registry: &str,
    e: OciDistributionError,
    credentials: Option<&Credentials>,
) -> Error {
    let denied = match &e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RequestError(r) => {
            r.status().is_some_and(|s| matches!(s.as_u16(), 401 | 403))
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|x| matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    };
    if !denied {
        return Error::Registry(format!("{what}: {e}"));
    }
    let hint = match credentials {
        Some(c) => format!("the registry refused user {:?}", c.username),
        None => format!("the registry wants credentials: run `pier login {registry}`"),
    };
    Error::Registry(format!("{what} refused (unauthorized): {hint}: {e}"))
}
