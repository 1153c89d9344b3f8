//! The socket-LB hooks for real: programs attached to a cgroup this test creates, a child
//! process (this binary, re-executed) inside it connecting to a VIP, backends on loopback.
//! Needs root, cgroup2 and bpffs; skips with a reason otherwise (fails under
//! PIER_REQUIRE_PRIVILEGED=1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pier_ebpf::{maps::PROTO_TCP, ServiceAddr, SocketLb};

const CHILD: &str = "PIER_EBPF_TEST_CHILD";

/// The store identity the tests' socket-LBs are written for.
const OWNER: pier_ebpf::Owner = *b"pier-ebpf-tests!";

use pier_testkit::{private_netns, skip};

fn environment() -> Result<PathBuf, String> {
    if !pier_testkit::is_root() {
        return Err("needs root (BPF programs, cgroups)".into());
    }
    pier_ebpf::cgroup2_root().ok_or_else(|| "no cgroup2 mount".into())
}

fn privileged() -> Option<PathBuf> {
    environment().map_err(|why| skip(&why)).ok()
}

/// The test's own cgroup and BPF filesystem (a private bpffs instance, so concurrent tests
/// never share pins or mounts); removed with the programs and pins, and its backends
/// stopped, whatever happened.
struct Cleanup {
    cgroup: PathBuf,
    bpffs: PathBuf,
    pin: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Cleanup {
    fn new(root: &Path, name: &str) -> Self {
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
    fn attached(&self) -> SocketLb {
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
fn tcp(addr: SocketAddr) -> ServiceAddr {
    ServiceAddr {
        addr,
        proto: PROTO_TCP,
    }
}

/// A TCP port nothing listens on at `host` (for a NodePort).
fn unused_port(host: &str) -> u16 {
    pier_testkit::free_port(host).unwrap()
}

/// Backends on `host` that answer each connection with their one-letter name, then close.
fn backend_on(host: &str, name: u8, stop: Arc<AtomicBool>) -> SocketAddr {
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

/// The child: joins the cgroup, connects `n` times, reports what it saw.
#[test]
fn child_client() {
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

/// Slots of the connected-socket table held by a socket (a nonzero cookie).
fn held_slots(pin: &Path) -> usize {
    let map = aya::maps::MapData::from_pin(pin.join("pier_conn_nat")).unwrap();
    let slots = aya::maps::Array::<_, [u64; 6]>::try_from(aya::maps::Map::Array(map)).unwrap();
    slots.iter().filter(|v| v.as_ref().unwrap()[0] != 0).count()
}

/// Holds `n` connections to the VIP open at once, counting the slots held then and after
/// closing them all; reports (held while open, held after close, peers seen as the VIP).
fn hold_client(vip: SocketAddr, n: usize, pin: &Path) {
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

fn backend(name: u8, stop: Arc<AtomicBool>) -> SocketAddr {
    backend_on("127.0.0.1", name, stop)
}

/// UDP from inside the cgroup: `n` datagrams to the VIP, unconnected (sendmsg/recvmsg) or
/// connected (connect/getpeername); every reply must come from the VIP.
fn udp_client(vip: SocketAddr, n: usize, connected: bool) {
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
fn udp_backend_on(host: &str, name: u8, stop: Arc<AtomicBool>) -> SocketAddr {
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

fn udp_backend(name: u8, stop: Arc<AtomicBool>) -> SocketAddr {
    udp_backend_on("127.0.0.1", name, stop)
}

fn run_child(cgroup: &Path, vip: SocketAddr, n: usize) -> [usize; 4] {
    run_child_mode(cgroup, vip, n, "tcp")
}

/// The child's counts: connects to a, to b, peers seen as the VIP, refused; every connect
/// must have been translated.
fn run_child_mode(cgroup: &Path, vip: SocketAddr, n: usize, mode: &str) -> [usize; 4] {
    let [a, b, vip_seen, refused, unrouted] = run_child_counts(cgroup, vip, n, mode);
    assert_eq!(unrouted, 0, "connects to {vip} left untranslated");
    [a, b, vip_seen, refused]
}

/// The child's counts, with the connects left untranslated last.
fn run_child_counts(cgroup: &Path, vip: SocketAddr, n: usize, mode: &str) -> [usize; 5] {
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

#[test]
fn vip_connects_reach_weighted_backends_and_see_the_vip() {
    let Some(root) = privileged() else { return };
    let id = std::process::id();
    let cleanup = Cleanup::new(&root, "pier-test");
    let stop = Arc::clone(&cleanup.stop);
    let (a, b) = (
        backend(b'a', Arc::clone(&stop)),
        backend(b'b', Arc::clone(&stop)),
    );
    let vip = SocketAddr::new(Ipv4Addr::new(10, 254, (id % 250) as u8, 1).into(), 80);
    let service = tcp(vip);

    let mut lb = SocketLb::load(&cleanup.pin, &OWNER).unwrap();
    // The layouts pier checks pinned maps against are the object's.
    for (name, key, value) in pier_ebpf::MAP_LAYOUTS {
        let info = aya::maps::MapInfo::from_pin(cleanup.pin.join(name)).unwrap();
        assert_eq!(
            (info.key_size() as usize, info.value_size() as usize),
            (key, value),
            "{name}"
        );
    }
    assert!(pier_ebpf::stale_pins(&cleanup.pin).is_empty());
    lb.attach(&cleanup.cgroup).unwrap();
    lb.set_service(service, &[(a, 90), (b, 10)], 0).unwrap();
    let [ca, cb, vip_seen, refused] = run_child(&cleanup.cgroup, vip, 2000);
    println!("90/10 over 2000 connects: a={ca} b={cb}");
    assert_eq!((ca + cb, refused), (2000, 0));
    assert_eq!(vip_seen, 2000, "getpeername returns the VIP");
    let share = cb as f64 / 2000.0;
    assert!((0.07..=0.13).contains(&share), "b's share {share}");

    lb.set_service(service, &[(a, 0), (b, 100)], 0).unwrap();
    assert_eq!(run_child(&cleanup.cgroup, vip, 200), [0, 200, 200, 0]);

    // Weight changes and an endpoint removal while a client connects in a loop: every
    // connect reaches a live backend.
    let loop_cgroup = cleanup.cgroup.clone();
    let looping = std::thread::spawn(move || run_child(&loop_cgroup, vip, 3000));
    for backends in [
        vec![(a, 50), (b, 50)],
        vec![(a, 0), (b, 100)],
        vec![(b, 100)],
        vec![(a, 50), (b, 50)],
        vec![(a, 90), (b, 10)],
    ] {
        std::thread::sleep(Duration::from_millis(40));
        lb.set_service(service, &backends, 0).unwrap();
    }
    let [la, lb_, _, lrefused] = looping.join().unwrap();
    println!("3000 connects across 5 updates: a={la} b={lb_} refused={lrefused}");
    assert_eq!(
        (la + lb_, lrefused),
        (3000, 0),
        "no connect lost during updates"
    );

    // ClientIP affinity: every connect from the same client (network namespace) keeps its
    // backend; without it, 50/50 spreads.
    lb.set_service(service, &[(a, 50), (b, 50)], 60).unwrap();
    let [aa, ab, _, _] = run_child(&cleanup.cgroup, vip, 100);
    assert!(aa == 100 || ab == 100, "affinity holds: a={aa} b={ab}");
    lb.set_service(service, &[(a, 50), (b, 50)], 0).unwrap();
    let [sa, sb, _, _] = run_child(&cleanup.cgroup, vip, 200);
    assert!(
        sa > 50 && sb > 50,
        "without affinity both get traffic: a={sa} b={sb}"
    );

    // No backend: connects fail at once with ECONNREFUSED rather than hang.
    lb.set_service(service, &[], 0).unwrap();
    assert_eq!(run_child(&cleanup.cgroup, vip, 20), [0, 0, 0, 20]);

    // UDP to a VIP, unconnected and connected: replies come back from the VIP.
    let (ua, ub) = (
        udp_backend(b'a', Arc::clone(&stop)),
        udp_backend(b'b', Arc::clone(&stop)),
    );
    let udp = ServiceAddr {
        addr: SocketAddr::new(vip.ip(), 53),
        proto: pier_ebpf::maps::PROTO_UDP,
    };
    lb.set_service(udp, &[(ua, 1), (ub, 1)], 0).unwrap();
    for mode in ["udp", "udp-connected"] {
        let [ra, rb, from_vip, _] = run_child_mode(&cleanup.cgroup, udp.addr, 200, mode);
        println!("{mode}: a={ra} b={rb}, {from_vip}/200 replies from the VIP");
        assert_eq!(ra + rb, 200);
        assert_eq!(
            from_vip, 200,
            "{mode}: replies are translated back to the VIP"
        );
    }

    // A NodePort answers on loopback (and the node's addresses) and the client sees that address.
    let node_port = unused_port("127.0.0.1");
    let np = tcp(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), node_port));
    lb.set_service(np, &[(a, 1)], 0).unwrap();
    let local = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), node_port);
    assert_eq!(
        run_child(&cleanup.cgroup, local, 20),
        [20, 0, 20, 0],
        "NodePort on 127.0.0.1"
    );
    lb.remove_service(np).unwrap();

    // Removed: the VIP is no longer translated (nothing routes 10.254.x.1 here).
    lb.remove_service(udp).unwrap();
    lb.remove_service(service).unwrap();
    drop(lb);
    let pin = cleanup.pin.clone();
    drop(cleanup);
    assert!(!pin.exists());
}

#[test]
fn ipv6_vips_and_v4_mapped_vips_translate_both_ways() {
    let Some(root) = privileged() else { return };
    let id = std::process::id();
    let cleanup = Cleanup::new(&root, "pier-test6");
    let stop = Arc::clone(&cleanup.stop);
    let (a, b) = (
        backend_on("[::1]", b'a', Arc::clone(&stop)),
        backend_on("[::1]", b'b', Arc::clone(&stop)),
    );
    let vip6: IpAddr = Ipv6Addr::new(0xfd00, 0xfe, 0, 0, 0, 0, 0, (id % 65000) as u16 + 1).into();
    let service = tcp(SocketAddr::new(vip6, 80));
    let mut lb = cleanup.attached();

    // connect6 and getpeername6: weights and the VIP as the peer.
    lb.set_service(service, &[(a, 90), (b, 10)], 0).unwrap();
    let [ca, cb, vip_seen, refused] = run_child(&cleanup.cgroup, service.addr, 1000);
    println!("IPv6 90/10 over 1000 connects: a={ca} b={cb}");
    assert_eq!((ca + cb, refused, vip_seen), (1000, 0, 1000));
    let share = cb as f64 / 1000.0;
    assert!((0.06..=0.14).contains(&share), "b's share {share}");
    lb.set_service(service, &[], 0).unwrap();
    assert_eq!(run_child(&cleanup.cgroup, service.addr, 10), [0, 0, 0, 10]);

    // sendmsg6/recvmsg6 and connected UDP over IPv6: replies from the VIP.
    let (ua, ub) = (
        udp_backend_on("[::1]", b'a', Arc::clone(&stop)),
        udp_backend_on("[::1]", b'b', Arc::clone(&stop)),
    );
    let udp = ServiceAddr {
        addr: SocketAddr::new(vip6, 53),
        proto: pier_ebpf::maps::PROTO_UDP,
    };
    lb.set_service(udp, &[(ua, 1), (ub, 1)], 0).unwrap();
    for mode in ["udp", "udp-connected"] {
        let [ra, rb, from_vip, _] = run_child_mode(&cleanup.cgroup, udp.addr, 100, mode);
        assert_eq!((ra + rb, from_vip), (100, 100), "{mode} over IPv6");
    }

    // A dual-stack IPv6 socket connecting to an IPv4 VIP, v4-mapped, reaches its IPv4
    // backends and sees the mapped VIP as its peer.
    let v4 = backend(b'a', Arc::clone(&stop));
    let vip4 = Ipv4Addr::new(10, 253, (id % 250) as u8, 1);
    let service4 = tcp(SocketAddr::new(vip4.into(), 80));
    lb.set_service(service4, &[(v4, 1)], 0).unwrap();
    let mapped = SocketAddr::new(vip4.to_ipv6_mapped().into(), 80);
    assert_eq!(run_child(&cleanup.cgroup, mapped, 20), [20, 0, 20, 0]);

    // An IPv6 NodePort answers on ::1.
    let node_port = unused_port("[::1]");
    let np = tcp(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), node_port));
    lb.set_service(np, &[(b, 1)], 0).unwrap();
    let local = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), node_port);
    assert_eq!(run_child(&cleanup.cgroup, local, 20), [0, 20, 20, 0]);
}

#[test]
fn a_failed_service_write_is_taken_back_whole() {
    let Some(root) = privileged() else { return };
    let cleanup = Cleanup::new(&root, "pier-test-full");
    let stop = Arc::clone(&cleanup.stop);
    let a = backend(b'a', Arc::clone(&stop));
    let mut lb = cleanup.attached();
    let vip = SocketAddr::new(Ipv4Addr::new(10, 252, 0, 1).into(), 80);
    let service = tcp(vip);
    lb.set_service(service, &[(a, 1)], 0).unwrap();

    let open = |name: &str| aya::maps::MapData::from_pin(cleanup.pin.join(name)).unwrap();
    let count = || {
        let slots = aya::maps::HashMap::<_, [u32; 2], u32>::try_from(aya::maps::Map::HashMap(
            open("pier_slots"),
        ))
        .unwrap();
        let backends = aya::maps::HashMap::<_, u32, pier_ebpf::maps::Backend>::try_from(
            aya::maps::Map::HashMap(open("pier_backends")),
        )
        .unwrap();
        (slots.keys().count(), backends.keys().count())
    };
    let before = count();

    // Fill the service map to its limit, so the next new service entry cannot be written.
    let mut services =
        aya::maps::HashMap::<_, pier_ebpf::maps::SvcKey, pier_ebpf::maps::Svc>::try_from(
            aya::maps::Map::HashMap(open("pier_services")),
        )
        .unwrap();
    let filler =
        |i: u32| pier_ebpf::maps::SvcKey::new(Ipv4Addr::from(0x0a00_0000 | i).into(), 1, PROTO_TCP);
    let junk = pier_ebpf::maps::Svc {
        id: 0,
        slots: 0,
        affinity: 0,
        pad: 0,
    };
    let mut filled = 0u32;
    while services.insert(filler(filled), junk, 0).is_ok() {
        filled += 1;
        assert!(filled <= 70_000, "the service map never filled");
    }
    let b = backend(b'b', Arc::clone(&stop));
    let other = tcp(SocketAddr::new(Ipv4Addr::new(10, 252, 0, 2).into(), 80));
    let err = lb.set_service(other, &[(a, 1), (b, 1)], 0).unwrap_err();
    println!("full map: {err}");
    assert_eq!(
        count(),
        before,
        "no slot or backend of the failed service is left behind"
    );
    for i in 0..filled {
        let _ = services.remove(&filler(i));
    }
    // The service written before still translates, and a retry now succeeds.
    assert_eq!(run_child(&cleanup.cgroup, vip, 10), [10, 0, 10, 0]);
    lb.set_service(other, &[(a, 1), (b, 1)], 0).unwrap();
}

#[test]
fn connected_sockets_hold_a_slot_until_closed_or_use_their_own_storage() {
    let Some(root) = privileged() else { return };
    let id = std::process::id();
    let cleanup = Cleanup::new(&root, "pier-test-slots");
    let a = backend(b'a', Arc::clone(&cleanup.stop));
    let mut lb = cleanup.attached();
    let vip = SocketAddr::new(Ipv4Addr::new(10, 251, (id % 250) as u8, 1).into(), 80);
    let service = tcp(vip);
    lb.set_service(service, &[(a, 1)], 0).unwrap();
    let hold = format!("tcp-hold:{}", cleanup.pin.display());

    // Each open connection holds the slot of its cookie; closing frees it. (Two of them may
    // share a slot, the later one then keeping its translation in its socket storage.)
    let [open, after, vip_seen, _] = run_child_mode(&cleanup.cgroup, vip, 50, &hold);
    println!("50 open connections held {open} slots, {after} after closing");
    assert!((40..=50).contains(&open), "slots held while open: {open}");
    assert_eq!((after, vip_seen), (0, 50));

    // Every slot held by some other socket: connections keep their translation in their own
    // storage, still see the VIP, and take no slot from its holder.
    let map = aya::maps::MapData::from_pin(cleanup.pin.join("pier_conn_nat")).unwrap();
    let mut slots = aya::maps::Array::<_, [u64; 6]>::try_from(aya::maps::Map::Array(map)).unwrap();
    let taken = [u64::MAX, 0, 0, 0, 0, 0];
    let len = slots.len();
    for i in 0..len {
        slots.set(i, taken, 0).unwrap();
    }
    let [_, _, vip_seen, _] = run_child_mode(&cleanup.cgroup, vip, 50, &hold);
    assert_eq!(
        vip_seen, 50,
        "getpeername returns the VIP from socket storage"
    );
    assert!(
        (0..len).all(|i| slots.get(&i, 0).unwrap() == taken),
        "no held slot was overwritten or freed"
    );
    assert_eq!(run_child(&cleanup.cgroup, vip, 20), [20, 0, 20, 0]);
}

/// Ids of the links pinned for each hook under `pin`.
fn pinned_link_ids(pin: &Path) -> Vec<u32> {
    pier_ebpf::PROGRAMS
        .iter()
        .map(|name| {
            let link = aya::programs::links::PinnedLink::from_pin(pin.join(format!("link_{name}")))
                .unwrap();
            aya::programs::links::FdLink::from(link)
                .info()
                .unwrap()
                .id()
        })
        .collect()
}

#[test]
fn a_restart_replaces_the_hooks_with_its_own_programs() {
    let Some(root) = privileged() else { return };
    let cleanup = Cleanup::new(&root, "pier-test-restart");
    let a = backend(b'a', Arc::clone(&cleanup.stop));
    let vip = SocketAddr::new(Ipv4Addr::new(10, 250, 0, 1).into(), 80);
    let service = tcp(vip);
    let mut first = cleanup.attached();
    first.set_service(service, &[(a, 1)], 0).unwrap();
    let old = pinned_link_ids(&cleanup.pin);
    // A crash: nothing is detached, the next run finds the pins.
    drop(first);
    let _second = cleanup.attached();
    let new = pinned_link_ids(&cleanup.pin);
    assert!(
        new.iter().all(|id| !old.contains(id)),
        "every link replaced"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let live: Vec<u32> = aya::programs::loaded_links()
            .filter_map(|l| l.ok().map(|l| l.id()))
            .filter(|id| old.contains(id))
            .collect();
        if live.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old links still attached: {live:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let leftovers: Vec<_> = std::fs::read_dir(&cleanup.pin)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("_staged"))
        .collect();
    assert!(leftovers.is_empty(), "staged pins left: {leftovers:?}");
    // The maps were kept: the service written by the first run still translates.
    assert_eq!(run_child(&cleanup.cgroup, vip, 20), [20, 0, 20, 0]);
}

#[test]
fn pins_of_another_store_are_replaced_and_the_same_store_adopts_its_own() {
    let Some(root) = privileged() else { return };
    let cleanup = Cleanup::new(&root, "pier-test-owner");
    let a = backend(b'a', Arc::clone(&cleanup.stop));
    let b = backend(b'b', Arc::clone(&cleanup.stop));
    let vip = SocketAddr::new(Ipv4Addr::new(10, 250, 1, 1).into(), 80);
    let service = tcp(vip);
    let mut first = cleanup.attached();
    first.set_service(service, &[(a, 1)], 0).unwrap();
    drop(first);
    assert_eq!(pier_ebpf::pinned_owner(&cleanup.pin), Some(Some(OWNER)));

    // The same store (a restart) adopts the pins: the service still translates.
    let again = SocketLb::load(&cleanup.pin, &OWNER).unwrap();
    drop(again);
    assert_eq!(run_child(&cleanup.cgroup, vip, 10), [10, 0, 10, 0]);

    // Another store's daemon replaces them: the old service is gone with the old hooks.
    let other: pier_ebpf::Owner = *b"another-store-id";
    let mut lb = SocketLb::load(&cleanup.pin, &other).unwrap();
    assert_eq!(pier_ebpf::pinned_owner(&cleanup.pin), Some(Some(other)));
    lb.attach(&cleanup.cgroup).unwrap();
    assert_eq!(
        run_child_counts(&cleanup.cgroup, vip, 5, "tcp"),
        [0, 0, 0, 0, 5],
        "the earlier store's service no longer translates"
    );
    lb.set_service(service, &[(b, 1)], 0).unwrap();
    assert_eq!(run_child(&cleanup.cgroup, vip, 10), [0, 10, 10, 0]);
}
