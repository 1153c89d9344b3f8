//! The socket-LB tests' pieces: a cgroup and bpffs of the test's own (removed whatever
//! happens), backends on loopback, and the child process (the test binary re-executed)
//! that connects from inside the cgroup.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pier_ebpf::{maps::PROTO_TCP, ServiceAddr, SocketLb};

pub(crate) const CHILD: &str = "PIER_EBPF_TEST_CHILD";

/// The store identity the tests' socket-LBs are written for.
pub(crate) const OWNER: pier_ebpf::Owner = *b"pier-ebpf-tests!";

use pier_testkit::{private_netns, skip};

pub(crate) fn environment() -> Result<PathBuf, String> {
    if !pier_testkit::is_root() {
        return Err("needs root (BPF programs, cgroups)".into());
    }
    pier_ebpf::cgroup2_root().ok_or_else(|| "no cgroup2 mount".into())
}

pub(crate) fn privileged() -> Option<PathBuf> {
    environment().map_err(|why| skip(&why)).ok()
}

/// The test's own cgroup and BPF filesystem (a private bpffs instance, so concurrent tests
/// never share pins or mounts); removed with the programs and pins, and its backends
/// stopped, whatever happened.
pub(crate) struct Cleanup {
    pub(crate) cgroup: PathBuf,
    pub(crate) bpffs: PathBuf,
    pub(crate) pin: PathBuf,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Cleanup {
    pub(crate) fn new(root: &Path, name: &str) -> Self {
        private_netns();
        let id = std::process::id();
        let bpffs = std::env::temp_dir().join(format!("{name}-bpffs-{id}"));
        let cleanup = Cleanup {
            cgroup: root.join(format!("{name}-{id}")),
            pin: bpffs.join("pier"),
            bpffs,
            stop: Arc::new(AtomicBool::new(false)),
        };
        std::fs::create_dir_all(&cleanup.bpffs).unwrap();
        assert!(pier_ebpf::ensure_bpffs(&cleanup.bpffs).unwrap());
        std::fs::create_dir_all(&cleanup.cgroup).unwrap();
        cleanup
    }

    /// The programs loaded into the test's bpffs and attached to its cgroup.
    pub(crate) fn attached(&self) -> SocketLb {
        let mut lb = SocketLb::load(&self.pin, &OWNER).unwrap();
        lb.attach(&self.cgroup).unwrap();
        lb
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = SocketLb::detach(&self.pin);
        let _ = std::fs::remove_dir(&self.cgroup);
        let _ = Command::new("umount").arg(&self.bpffs).status();
        let _ = std::fs::remove_dir(&self.bpffs);
    }
}

/// A TCP service port at `addr`.
pub(crate) fn tcp(addr: SocketAddr) -> ServiceAddr {
    ServiceAddr {
        addr,
        proto: PROTO_TCP,
    }
}

/// A TCP port nothing listens on at `host` (for a NodePort).
pub(crate) fn unused_port(host: &str) -> u16 {
    pier_testkit::free_port(host).unwrap()
}

/// Backends on `host` that answer each connection with their one-letter name, then close.
pub(crate) fn backend_on(host: &str, name: u8, stop: Arc<AtomicBool>) -> SocketAddr {
    let l = TcpListener::bind(format!("{host}:0")).unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(&[name]);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    addr
}

/// A backend on `host` that accepts each connection and resets it at once (`SO_LINGER` 0).
pub(crate) fn resetting_backend_on(host: &str, stop: Arc<AtomicBool>) -> SocketAddr {
    let l = TcpListener::bind(format!("{host}:0")).unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    socket2::SockRef::from(&s)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                    // Let the client see the connection established before the reset.
                    std::thread::sleep(Duration::from_millis(5));
                    drop(s);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    addr
}

/// Connects `n` times and reports how each ended: answered, refused, reset.
pub(crate) fn outcomes_client(vip: SocketAddr, n: usize) {
    let (mut answered, mut refused, mut reset) = (0, 0, 0);
    for _ in 0..n {
        match TcpStream::connect_timeout(&vip, Duration::from_secs(2)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut byte = [0u8; 1];
                match s.read(&mut byte) {
                    Ok(1) => answered += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => reset += 1,
                    other => panic!("read: {other:?}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
            Err(e) => panic!("connect: {e}"),
        }
    }
    println!("RESULT {answered} {refused} {reset} 0");
}

/// Slots of the connected-socket table held by a socket (a nonzero cookie).
pub(crate) fn held_slots(pin: &Path) -> usize {
    let map = aya::maps::MapData::from_pin(pin.join("pier_conn_nat")).unwrap();
    let slots = aya::maps::Array::<_, [u64; 6]>::try_from(aya::maps::Map::Array(map)).unwrap();
    slots.iter().filter(|v| v.as_ref().unwrap()[0] != 0).count()
}

/// Holds `n` connections to the VIP open at once, counting the slots held then and after
/// closing them all; reports (held while open, held after close, peers seen as the VIP).
pub(crate) fn hold_client(vip: SocketAddr, n: usize, pin: &Path) {
    let streams: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect_timeout(&vip, Duration::from_secs(2)).unwrap())
        .collect();
    let open = held_slots(pin);
    let peer_is_vip = streams
        .iter()
        .filter(|s| s.peer_addr().unwrap() == vip)
        .count();
    drop(streams);
    println!("RESULT {open} {} {peer_is_vip} 0", held_slots(pin));
}

pub(crate) fn backend(name: u8, stop: Arc<AtomicBool>) -> SocketAddr {
    backend_on("127.0.0.1", name, stop)
}

/// UDP from inside the cgroup: `n` datagrams to the VIP, unconnected (sendmsg/recvmsg) or
/// connected (connect/getpeername); every reply must come from the VIP.
pub(crate) fn udp_client(vip: SocketAddr, n: usize, connected: bool) {
    let local = if vip.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let s = std::net::UdpSocket::bind(local).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if connected {
        s.connect(vip).unwrap();
    }
    let (mut a, mut b, mut from_vip) = (0, 0, 0);
    let mut buf = [0u8; 16];
    for _ in 0..n {
        if connected {
            s.send(b"x").unwrap();
        } else {
            s.send_to(b"x", vip).unwrap();
        }
        let (len, from) = s.recv_from(&mut buf).unwrap();
        if from == vip && (!connected || s.peer_addr().unwrap() == vip) {
            from_vip += 1;
        }
        match &buf[..len] {
            b"ax" => a += 1,
            b"bx" => b += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    println!("RESULT {a} {b} {from_vip} 0");
}

/// A UDP echo backend on `host` that prefixes its one-letter name.
pub(crate) fn udp_backend_on(host: &str, name: u8, stop: Arc<AtomicBool>) -> SocketAddr {
    let s = std::net::UdpSocket::bind(format!("{host}:0")).unwrap();
    let addr = s.local_addr().unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = s.recv_from(&mut buf) {
                let mut reply = vec![name];
                reply.extend_from_slice(&buf[..n]);
                let _ = s.send_to(&reply, peer);
            }
        }
    });
    addr
}

pub(crate) fn udp_backend(name: u8, stop: Arc<AtomicBool>) -> SocketAddr {
    udp_backend_on("127.0.0.1", name, stop)
}

pub(crate) fn run_child(cgroup: &Path, vip: SocketAddr, n: usize) -> [usize; 4] {
    run_child_mode(cgroup, vip, n, "tcp")
}

/// The child's counts: connects to a, to b, peers seen as the VIP, refused; every connect
/// must have been translated.
pub(crate) fn run_child_mode(cgroup: &Path, vip: SocketAddr, n: usize, mode: &str) -> [usize; 4] {
    let [a, b, vip_seen, refused, unrouted] = run_child_counts(cgroup, vip, n, mode);
    assert_eq!(unrouted, 0, "connects to {vip} left untranslated");
    [a, b, vip_seen, refused]
}

/// The child's counts, with the connects left untranslated last.
pub(crate) fn run_child_counts(cgroup: &Path, vip: SocketAddr, n: usize, mode: &str) -> [usize; 5] {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_client",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, format!("{} {vip} {n} {mode}", cgroup.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split("RESULT ").nth(1))
        .unwrap_or_else(|| {
            panic!(
                "child failed: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let v: Vec<usize> = line
        .split_whitespace()
        .take(5)
        .map(|x| x.parse().unwrap())
        .collect();
    [v[0], v[1], v[2], v[3], v.get(4).copied().unwrap_or(0)]
}

/// The child: joins the cgroup, connects `n` times, reports what it saw.
pub(crate) fn child_client() {
    let Ok(spec) = std::env::var(CHILD) else {
        return; // only meaningful when re-executed by the test below
    };
    let mut parts = spec.split(' ');
    let cgroup = parts.next().unwrap();
    let vip: SocketAddr = parts.next().unwrap().parse().unwrap();
    let n: usize = parts.next().unwrap().parse().unwrap();
    let mode = parts.next().unwrap_or("tcp");
    std::fs::write(Path::new(cgroup).join("cgroup.procs"), "0").unwrap();
    if let Some(pin) = mode.strip_prefix("tcp-hold:") {
        return hold_client(vip, n, Path::new(pin));
    }
    if mode == "tcp-outcomes" {
        return outcomes_client(vip, n);
    }
    if mode != "tcp" {
        return udp_client(vip, n, mode == "udp-connected");
    }
    let (mut a, mut b, mut peer_is_vip, mut refused, mut unrouted) = (0, 0, 0, 0, 0);
    for _ in 0..n {
        match TcpStream::connect_timeout(&vip, Duration::from_secs(2)) {
            Ok(mut s) => {
                if s.peer_addr().unwrap() == vip {
                    peer_is_vip += 1;
                }
                let mut name = [0u8; 1];
                s.read_exact(&mut name).unwrap();
                match name[0] {
                    b'a' => a += 1,
                    b'b' => b += 1,
                    other => panic!("unexpected backend {other}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
            // Not translated: in the test's network namespace the VIP has no route.
            Err(e) if e.kind() == std::io::ErrorKind::NetworkUnreachable => unrouted += 1,
            Err(e) => panic!("connect: {e}"),
        }
    }
    println!("RESULT {a} {b} {peer_is_vip} {refused} {unrouted}");
}
