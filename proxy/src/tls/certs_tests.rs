#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::tls::test_ca::{connector, provider, Ca};

fn acceptor(certs: Arc<Certificates>) -> TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(certs);
    TlsAcceptor::from(Arc::new(config))
}

type Client = tokio_rustls::client::TlsStream<tokio::io::DuplexStream>;

/// A handshake for `sni` against a server that echoes one line back; the client stream, or
/// the handshake's error.
async fn connect(certs: &Arc<Certificates>, ca: &Ca, sni: &str) -> Result<Client, String> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let acceptor = acceptor(Arc::clone(certs));
    tokio::spawn(async move {
        if let Ok(mut tls) = acceptor.accept(server).await {
            let mut buf = [0u8; 64];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    let name = ServerName::try_from(sni.to_string()).unwrap();
    connector(ca)
        .connect(name, client)
        .await
        .map_err(|e| e.to_string())
}

fn served(tls: &Client) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default() {
    let ca = Ca::new();
    let (exact, wild, other) = (
        ca.key("exact", &["a.example.com"]),
        ca.key("wild", &["*.example.com"]),
        ca.key(
            "default",
            &["a.example.com", "b.example.com", "fallback.test"],
        ),
    );
    let mut table = CertTable::default();
    table.insert("A.Example.com", Arc::clone(&exact)).unwrap();
    table.insert("*.example.com", Arc::clone(&wild)).unwrap();
    let certs = Arc::new(Certificates::default());
    certs.replace(table.clone());

    let tls = connect(&certs, &ca, "a.example.com").await.unwrap();
    assert_eq!(served(&tls), exact.cert[0]);
    let tls = connect(&certs, &ca, "b.example.com").await.unwrap();
    assert_eq!(served(&tls), wild.cert[0]);
    // One label only: neither the apex nor a deeper name is the wildcard's.
    assert!(table.lookup(Some("example.com")).is_none());
    assert!(table.lookup(Some("x.b.example.com")).is_none());
    // No default: an unknown name gets no certificate, and the handshake fails.
    let e = connect(&certs, &ca, "fallback.test").await.unwrap_err();
    assert!(!e.is_empty());

    table.set_default(Arc::clone(&other));
    certs.replace(table);
    let tls = connect(&certs, &ca, "fallback.test").await.unwrap();
    assert_eq!(served(&tls), other.cert[0]);
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_handshakes_while_open_ones_go_on() {
    let ca = Ca::new();
    let (old, new) = (
        ca.key("old", &["web.example.com"]),
        ca.key("new", &["web.example.com"]),
    );
    let certs = Arc::new(Certificates::default());
    let mut table = CertTable::default();
    table.insert("web.example.com", Arc::clone(&old)).unwrap();
    certs.replace(table);
    let mut open = connect(&certs, &ca, "web.example.com").await.unwrap();
    assert_eq!(served(&open), old.cert[0]);

    let mut table = CertTable::default();
    table.insert("web.example.com", Arc::clone(&new)).unwrap();
    certs.replace(table);
    let fresh = connect(&certs, &ca, "web.example.com").await.unwrap();
    assert_eq!(served(&fresh), new.cert[0]);

    open.write_all(b"still here\n").await.unwrap();
    let mut back = [0u8; 11];
    open.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still here\n");
}

#[test]
fn bad_secrets_are_refused_naming_the_secret_and_key() {
    let ca = Ca::new();
    let (crt, key) = ca.leaf(&["a.example.com"]);
    let (_, other_key) = ca.leaf(&["b.example.com"]);
    let e = certified_key("default/web", b"", key.as_bytes()).unwrap_err();
    assert!(e.contains("default/web") && e.contains("tls.crt"), "{e}");
    let e = certified_key("default/web", crt.as_bytes(), b"junk").unwrap_err();
    assert!(e.contains("tls.key"), "{e}");
    let e = certified_key("default/web", crt.as_bytes(), other_key.as_bytes()).unwrap_err();
    assert!(e.contains("does not go with tls.crt"), "{e}");

    let mut table = CertTable::default();
    let good = Arc::new(certified_key("default/web", crt.as_bytes(), key.as_bytes()).unwrap());
    for bad in ["*", "a.*.example.com", "*.*.example.com"] {
        let e = table.insert(bad, Arc::clone(&good)).unwrap_err();
        assert!(e.contains("wildcard"), "{bad}: {e}");
    }
}
