//! UDP and TCP listeners feeding the resolver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

use crate::ratelimit::{RateLimiter, Verdict};
use crate::resolver::{Proto, Resolver, Step};
use crate::udp_batch::{self, RecvBatch};

/// Idle time after which a TCP client is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most TCP clients served at once.
const TCP_CLIENTS: usize = 1024;

/// Binds UDP and TCP on every address; returns the bound addresses (port 0 resolved).
pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<(UdpSocket, TcpListener)>> {
    let mut out = Vec::new();
    for addr in addrs {
        out.push(bind_pair(*addr).await?);
    }
    Ok(out)
}

/// UDP and TCP on one port. For port 0 the kernel's UDP pick may be taken for TCP (say, by an
/// outgoing connection), so a few picks are tried.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut attempts = if addr.port() == 0 { 20 } else { 1 };
    loop {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if attempts > 1 && e.kind() == std::io::ErrorKind::AddrInUse => attempts -= 1,
            Err(e) => return Err(e),
        }
    }
}

/// Serves requests on the sockets until `shutdown` turns true; `limiter` caps UDP queries per client.
pub async fn serve(
    resolver: Arc<Resolver>,
    sockets: Vec<(UdpSocket, TcpListener)>,
    limiter: Option<Arc<RateLimiter>>,
    shutdown: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    for (udp, tcp) in sockets {
        tasks.push(tokio::spawn(serve_udp(
            Arc::clone(&resolver),
            Arc::new(udp),
            limiter.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(serve_tcp(
            Arc::clone(&resolver),
            tcp,
            shutdown.clone(),
        )));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "DNS listener task failed");
        }
    }
}

async fn serve_udp(
    resolver: Arc<Resolver>,
    socket: Arc<UdpSocket>,
    limiter: Option<Arc<RateLimiter>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let fd = socket.as_raw_fd();
    let mut batch = RecvBatch::default();
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(udp_batch::BATCH);
    loop {
        tokio::select! {
            r = socket.readable() => if let Err(e) = r {
                tracing::debug!(error = %e, "udp socket not readable");
                continue;
            },
            _ = shutdown.changed() => return,
        }
        let n = match socket.try_io(Interest::READABLE, || batch.recv(fd)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let now = Instant::now();
        for i in 0..n {
            let Some((packet, peer)) = batch.get(i) else {
                continue;
            };
            match limiter.as_ref().map(|l| l.check(peer.ip(), now)) {
                None | Some(Verdict::Allow) => {}
                Some(Verdict::Slip) => {
                    if let Some(tc) = resolver.slip(packet) {
                        replies.push((tc, peer));
                    }
                    continue;
                }
                Some(Verdict::Drop) => {
                    resolver.dropped();
                    continue;
                }
            }
            match resolver.prepare(packet, peer.ip(), Proto::Udp) {
                Step::Reply(bytes) => replies.push((bytes, peer)),
                Step::Forward(pending) => {
                    let (resolver, socket) = (Arc::clone(&resolver), Arc::clone(&socket));
                    tokio::spawn(async move {
                        let bytes = resolver.resolve(pending).await;
                        if let Err(e) = socket.send_to(&bytes, peer).await {
                            tracing::debug!(%peer, error = %e, "DNS reply not sent");
                        }
                    });
                }
                Step::Drop => {}
            }
        }
        let sent = socket
            .try_io(Interest::WRITABLE, || udp_batch::send(fd, &replies))
            .unwrap_or(0);
        // Whatever the batch send did not take (a full socket buffer) goes one by one.
        for (bytes, peer) in replies.drain(..).skip(sent) {
            if let Err(e) = socket.send_to(&bytes, peer).await {
                tracing::debug!(%peer, error = %e, "DNS reply not sent");
            }
        }
    }
}

async fn serve_tcp(
    resolver: Arc<Resolver>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(TCP_CLIENTS));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // over the limit: drop the connection
        };
        let resolver = Arc::clone(&resolver);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = tcp_client(resolver, stream, peer).await {
                tracing::debug!(%peer, error = %e, "tcp client ended");
            }
        });
    }
}

async fn tcp_client(
    resolver: Arc<Resolver>,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow client"))??;
        let reply = match resolver.prepare(&buf, peer.ip(), Proto::Tcp) {
            Step::Reply(bytes) => bytes,
            Step::Forward(pending) => resolver.resolve(pending).await,
            Step::Drop => continue,
        };
        let n = u16::try_from(reply.len()).unwrap_or(u16::MAX);
        stream.write_all(&n.to_be_bytes()).await?;
        stream.write_all(&reply[..usize::from(n)]).await?;
    }
}
