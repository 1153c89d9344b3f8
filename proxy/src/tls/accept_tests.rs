#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::tls::certs::{CertTable, Certificates};
use crate::tls::config::server_config;
use crate::tls::test_ca::{client_config, Ca};

const LIMIT: Duration = Duration::from_millis(400);

/// A listener on loopback whose every handshake's outcome is sent to the receiver; a
/// finished one is sent a byte and then echoes until the client goes.
async fn server(
    ca: &Ca,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Result<Handshake, Failure>>,
) {
    let mut table = CertTable::default();
    table
        .insert("web.example.com", ca.key("web", &["web.example.com"]))
        .unwrap();
    let certs = Arc::new(Certificates::default());
    certs.replace(table);
    let acceptor = TlsAcceptor::from(server_config(certs).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match accept(&acceptor, tcp, LIMIT).await {
                    Ok((mut tls, handshake)) => {
                        tx.send(Ok(handshake)).unwrap();
                        tls.write_all(b"x").await.unwrap();
                        let mut buf = [0u8; 64];
                        while let Ok(n) = tls.read(&mut buf).await {
                            if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(failure) => tx.send(Err(failure)).unwrap(),
                }
            });
        }
    });
    (addr, rx)
}

async fn handshake(addr: SocketAddr, connector: &TlsConnector, sni: &str) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    // The first byte: by then a TLS 1.3 client has its tickets.
    let mut first = [0u8; 1];
    tls.read_exact(&mut first).await?;
    Ok(())
}

#[tokio::test]
async fn versions_alpn_and_resumption_are_reported() {
    let ca = Ca::new();
    let (addr, mut outcomes) = server(&ca).await;
    for (versions, want) in [
        (vec![&rustls::version::TLS13], "TLSv1.3"),
        (vec![&rustls::version::TLS12], "TLSv1.2"),
    ] {
        let mut config = client_config(&ca, &versions);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = TlsConnector::from(Arc::new(config));
        handshake(addr, &connector, "web.example.com")
            .await
            .unwrap();
        let first = outcomes.recv().await.unwrap().unwrap();
        assert_eq!(
            first,
            Handshake {
                version: want,
                resumed: false,
                alpn: Some(b"h2".to_vec())
            }
        );
        handshake(addr, &connector, "web.example.com")
            .await
            .unwrap();
        let again = outcomes.recv().await.unwrap().unwrap();
        assert!(again.resumed, "{want}: {again:?}");
    }
    // A client that offers only HTTP/1.1 gets it.
    let mut config = client_config(&ca, &[&rustls::version::TLS13]);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    handshake(
        addr,
        &TlsConnector::from(Arc::new(config)),
        "web.example.com",
    )
    .await
    .unwrap();
    let h1 = outcomes.recv().await.unwrap().unwrap();
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn hostile_clients_are_cut_off_and_others_still_served() {
    let ca = Ca::new();
    let (addr, mut outcomes) = server(&ca).await;
    let connector = TlsConnector::from(Arc::new(client_config(&ca, &[&rustls::version::TLS13])));

    // Stalled: connects and says nothing.
    let started = Instant::now();
    let stalled = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        outcomes.recv().await.unwrap().unwrap_err(),
        Failure::Timeout
    );
    assert!(started.elapsed() < LIMIT * 5);
    drop(stalled);

    // Plain HTTP on the TLS port.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let failure = outcomes.recv().await.unwrap().unwrap_err();
    assert_eq!(failure.reason(), "protocol", "{failure:?}");

    // A ClientHello claiming 16 MiB: refused from its header, not buffered.
    let mut huge = TcpStream::connect(addr).await.unwrap();
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    record.resize(5 + 0x4000, 0);
    huge.write_all(&record).await.unwrap();
    let failure = outcomes.recv().await.unwrap().unwrap_err();
    assert_eq!(failure.reason(), "protocol", "{failure:?}");

    // A name nobody serves, with no default.
    assert!(handshake(addr, &connector, "other.example.com")
        .await
        .is_err());
    assert_eq!(
        outcomes.recv().await.unwrap().unwrap_err(),
        Failure::UnknownName
    );

    // Through all of it, a real client is served.
    handshake(addr, &connector, "web.example.com")
        .await
        .unwrap();
    assert!(outcomes.recv().await.unwrap().is_ok());
}
