//! Connects to a port on a container's own loopback, as a kubelet's port-forward does: the
//! socket is made inside the container's network namespace (by a thread that enters it and
//! then ends), so a server bound to 127.0.0.1 in the container is reachable too.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection to `port` on the loopback (127.0.0.1, then ::1) of the network namespace
/// at `netns`.
pub fn connect_loopback(netns: &Path, port: u16) -> io::Result<TcpStream> {
    let namespace = File::open(netns).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("opening network namespace {}: {e}", netns.display()),
        )
    })?;
    // A thread of its own: it leaves this process's namespace and is never reused.
    let entered = std::thread::Builder::new()
        .name("pier-connect".into())
        .spawn(move || -> io::Result<TcpStream> {
            setns(&namespace, CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::other(format!("entering the network namespace: {e}")))?;
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT).or_else(|first| {
                let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
                TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| {
                    io::Error::new(first.kind(), format!("dial tcp4 127.0.0.1:{port}: {first}"))
                })
            })
        })?;
    entered
        .join()
        .map_err(|_| io::Error::other("the thread connecting into the namespace panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_named() {
        let err = connect_loopback(Path::new("/nonexistent/netns"), 80).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/netns"), "{err}");
    }

    #[test]
    fn this_process_namespace_reaches_its_own_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Entering one's own namespace needs CAP_SYS_ADMIN; unprivileged runs stop at the error.
        match connect_loopback(Path::new("/proc/self/ns/net"), port) {
            Ok(stream) => assert_eq!(stream.peer_addr().unwrap().port(), port),
            Err(e) => assert!(e.to_string().contains("entering"), "{e}"),
        }
    }
}
