//! `pier pull`: images from an OCI / Docker registry, blobs verified and cached by digest.

use std::net::IpAddr;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use tokio::io::AsyncWriteExt;

use super::docker_config::Credentials;
use super::oci::{self, Index};
use super::{sha256_hex, ImageRecord, ImageStore, Reference};
use crate::error::{Error, IoContext, Result};

/// What a pull reports as it goes.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "event")]
pub enum Progress {
    /// The manifest was resolved.
    Resolved {
        /// Manifest digest.
        digest: String,
        /// Number of layers.
        layers: usize,
    },
    /// Bytes of a layer arrived.
    Layer {
        /// Layer digest.
        digest: String,
        /// Bytes so far.
        done: u64,
        /// Blob size.
        total: u64,
    },
    /// A layer was already in the store.
    Cached {
        /// Layer digest.
        digest: String,
    },
}

/// Which registries this node pulls from, and how.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// Reached over plain HTTP besides loopback ones (`host:port`).
    pub insecure: Vec<String>,
    /// The only registries pulls may reach (`host` for any port, or `host:port`); empty allows
    /// every one.
    pub allowed: Vec<String>,
}

impl Registries {
    /// Refuses a registry the node is not allowed to pull from, naming the setting.
    pub fn check_allowed(&self, registry: &str) -> Result<()> {
        if self.allowed.is_empty() {
            return Ok(());
        }
        let host = host_of(registry);
        if self.allowed.iter().any(|a| a == registry || a == host) {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "registry {registry} is not one this node may pull from (allowed registries: {})",
            self.allowed.join(", ")
        )))
    }
}

/// The host of `host[:port]`, brackets of an IPv6 address kept.
fn host_of(registry: &str) -> &str {
    registry
        .rsplit_once(':')
        .filter(|(h, port)| {
            port.bytes().all(|b| b.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']'))
        })
        .map_or(registry, |(h, _)| h)
}

/// The registry (`host[:port]`, `docker.io` by default) and repository an image is pulled from.
pub fn source_of(name: &str) -> Result<(String, String)> {
    let ours = Reference::parse(name)?;
    let registry = ours.registry.clone().unwrap_or_else(|| "docker.io".into());
    Ok((registry, ours.repository))
}

/// Whether a registry is reached over plain HTTP: loopback ones, as Docker does, and any listed.
fn insecure(registry: &str, extra: &[String]) -> bool {
    let host = host_of(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || extra.iter().any(|e| e == registry)
}

/// A registry client for `registry`: plain HTTP where `registries` say so, bounded waits.
pub(crate) fn registry_client(registry: &str, registries: &Registries) -> Client {
    let protocol = if insecure(registry, &registries.insecure) {
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    })
}

/// `credentials` as the registry client takes them (none: anonymous).
pub(crate) fn registry_auth(credentials: Option<&Credentials>) -> RegistryAuth {
    credentials.map_or(RegistryAuth::Anonymous, |c| {
        RegistryAuth::Basic(c.username.clone(), c.password.clone())
    })
}

fn registry_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Registry(format!("{what}: {e}"))
}

/// Pulls `name` into the store, as `credentials` when given.
pub async fn pull(
    store: &ImageStore,
    name: &str,
    registries: &Registries,
    credentials: Option<&Credentials>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<ImageRecord> {
    let started = std::time::Instant::now();
    let ours = Reference::parse(name)?;
    let registry = ours.registry.clone().unwrap_or_else(|| "docker.io".into());
    registries.check_allowed(&registry)?;
    let mut full = format!("{registry}/{}", ours.repository);
    if let Some(t) = &ours.tag {
        full.push(':');
        full.push_str(t);
    }
    if let Some(d) = &ours.digest {
        full.push('@');
        full.push_str(d);
    }
    let reference: oci_client::Reference = full
        .parse()
        .map_err(|e| Error::Invalid(format!("invalid image reference {name:?}: {e}")))?;
    let client = registry_client(&registry, registries);
    let auth = registry_auth(credentials);
    let accepted = [
        oci::OCI_MANIFEST,
        oci::DOCKER_MANIFEST,
        oci::OCI_INDEX,
        oci::DOCKER_LIST,
    ];
    let (mut bytes, mut digest) = client
        .pull_manifest_raw(&reference, &auth, &accepted)
        .await
        .map_err(|e| registry_err(&format!("manifest of {ours}"), e))?;
    let check = |bytes: &[u8], digest: &str| -> Result<()> {
        let actual = format!("sha256:{}", sha256_hex(bytes));
        if !digest.is_empty() && actual != digest {
            return Err(Error::Digest {
                what: format!("manifest of {ours}"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(())
    };
    check(&bytes, &digest)?;
    if let Some(pinned) = &ours.digest {
        check(&bytes, pinned)?;
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("manifest of {ours}: {e}")))?;
    if value.get("manifests").is_some() {
        let index: Index = serde_json::from_value(value)
            .map_err(|e| Error::Invalid(format!("manifest list of {ours}: {e}")))?;
        let chosen = oci::pick_platform(&index)
            .ok_or_else(|| Error::NotFound(format!("{ours} for linux/{}", oci::host_arch())))?;
        let by_digest: oci_client::Reference =
            format!("{registry}/{}@{}", ours.repository, chosen.digest)
                .parse()
                .map_err(|e| Error::Invalid(format!("{e}")))?;
        (bytes, _) = client
            .pull_manifest_raw(&by_digest, &auth, &accepted)
            .await
            .map_err(|e| registry_err(&format!("manifest {} of {ours}", chosen.digest), e))?;
        check(&bytes, &chosen.digest)?;
        digest = chosen.digest.clone();
    }
    let manifest: oci::Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("manifest of {ours}: {e}")))?;
    progress(Progress::Resolved {
        digest: digest.clone(),
        layers: manifest.layers.len(),
    });
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if store.has_blob(&blob.digest) {
            progress(Progress::Cached {
                digest: blob.digest.clone(),
            });
            continue;
        }
        let tmp = store.temp_path("pull");
        let fetched = fetch(&client, &reference, blob, &tmp, progress).await;
        let committed = fetched.and_then(|()| {
            store.commit_blob(
                &tmp,
                &blob.digest,
                &format!("blob {} of {ours}", blob.digest),
            )
        });
        if let Err(e) = committed {
            crate::metrics::cleanup(std::fs::remove_file(&tmp), "remove-temp-file", &tmp);
            return Err(e);
        }
    }
    let image = store.register(&ours, &bytes)?;
    if let Some(m) = crate::metrics::get() {
        m.pull_seconds.observe(started.elapsed().as_secs_f64());
    }
    Ok(image)
}

async fn fetch(
    client: &Client,
    reference: &oci_client::Reference,
    blob: &oci::Descriptor,
    tmp: &std::path::Path,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<()> {
    use futures_util::StreamExt;
    let mut stream = client
        .pull_blob_stream(reference, blob.digest.as_str())
        .await
        .map_err(|e| registry_err(&format!("blob {}", blob.digest), e))?;
    let mut file = tokio::fs::File::create(tmp).await.at(tmp)?;
    let mut done = 0u64;
    let mut last_report = 0u64;
    while let Some(chunk) = stream.stream.next().await {
        let chunk = chunk.map_err(|e| registry_err(&format!("blob {}", blob.digest), e))?;
        done += chunk.len() as u64;
        if done > blob.size {
            return Err(Error::Registry(format!(
                "blob {} is larger than its descriptor's {} bytes",
                blob.digest, blob.size
            )));
        }
        file.write_all(&chunk).await.at(tmp)?;
        if let Some(m) = crate::metrics::get() {
            m.pull_bytes.inc_by(chunk.len() as u64);
        }
        if done - last_report >= 1 << 20 || done == blob.size {
            last_report = done;
            progress(Progress::Layer {
                digest: blob.digest.clone(),
                done,
                total: blob.size,
            });
        }
    }
    file.sync_all().await.at(tmp)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(insecure("127.0.0.1:5000", &[]));
        assert!(insecure("localhost:5000", &[]));
        assert!(insecure("[::1]:5000", &[]));
        assert!(!insecure("registry.example.com", &[]));
        assert!(insecure("registry.lan:5000", &["registry.lan:5000".into()]));
    }

    #[test]
    fn allowed_registries_match_a_host_or_a_host_and_port() {
        let open = Registries::default();
        assert!(open.check_allowed("docker.io").is_ok());
        let local = Registries {
            allowed: vec!["127.0.0.1".into(), "[::1]".into(), "r.lan:5000".into()],
            ..Default::default()
        };
        assert!(local.check_allowed("127.0.0.1:5000").is_ok());
        assert!(local.check_allowed("[::1]:5000").is_ok());
        assert!(local.check_allowed("r.lan:5000").is_ok());
        assert!(local.check_allowed("r.lan:5001").is_err());
        let e = local.check_allowed("docker.io").unwrap_err().to_string();
        assert!(
            e.contains("docker.io") && e.contains("allowed registries"),
            "{e}"
        );
    }
}
