//! Batched UDP I/O: one recvmmsg(2) takes up to [`BATCH`] queries and one sendmmsg(2) sends
//! their answers, instead of a recvfrom and a sendto per query (knot and unbound do the same).
//! The syscalls go through nix's safe wrappers.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

/// Most datagrams taken or sent per syscall.
pub(crate) const BATCH: usize = 32;
/// Largest query kept whole; a longer one arrives truncated and is answered FORMERR.
pub(crate) const DATAGRAM: usize = 8192;

/// Receive buffers, reused for every batch.
pub(crate) struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    got: Vec<(usize, SocketAddr)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: (0..BATCH).map(|_| vec![0u8; DATAGRAM]).collect(),
            got: Vec::with_capacity(BATCH),
        }
    }
}

fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

impl RecvBatch {
    /// Takes the datagrams waiting on `fd` (at least one, or `WouldBlock`).
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let Self { bufs, got } = self;
        got.clear();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(b.as_mut_slice())])
            .collect();
        let results = recvmmsg(
            fd,
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for r in results {
            if let Some(peer) = r.address.as_ref().and_then(to_std) {
                got.push((r.bytes.min(DATAGRAM), peer));
            } else {
                got.push((0, SocketAddr::from(([0, 0, 0, 0], 0))));
            }
        }
        Ok(got.len())
    }

    /// Datagram `i` of the last batch and its sender; `None` for a slot without a usable sender.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (len, peer) = *self.got.get(i)?;
        if peer.port() == 0 {
            return None;
        }
        Some((self.bufs.get(i)?.get(..len)?, peer))
    }
}

/// Sends `replies` with one sendmmsg; returns how many went (the rest must be sent another way).
pub(crate) fn send(fd: RawFd, replies: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    if replies.is_empty() {
        return Ok(0);
    }
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(replies.len(), None);
    let iovs: Vec<[IoSlice<'_>; 1]> = replies.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = replies
        .iter()
        .map(|(_, a)| Some(SockaddrStorage::from(*a)))
        .collect();
    let none: [ControlMessage<'_>; 0] = [];
    let results = sendmmsg(
        fd,
        &mut headers,
        &iovs,
        &addrs,
        none,
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(results.count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_in_and_out() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            client
                .send_to(&[i; 3], server.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = RecvBatch::default();
        let n = batch.recv(server.as_raw_fd()).unwrap();
        assert_eq!(n, 5);
        let replies: Vec<(Vec<u8>, SocketAddr)> = (0..n)
            .map(|i| {
                let (data, peer) = batch.get(i).unwrap();
                assert_eq!(peer, client.local_addr().unwrap());
                (data.iter().map(|b| b + 1).collect(), peer)
            })
            .collect();
        assert_eq!(send(server.as_raw_fd(), &replies).unwrap(), 5);
        let mut buf = [0u8; 16];
        for i in 0..5u8 {
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..len], from),
                (&[i + 1; 3][..], server.local_addr().unwrap())
            );
        }
        let err = batch.recv(server.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
