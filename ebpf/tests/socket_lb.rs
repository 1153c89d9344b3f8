//! The socket-LB hooks for real: programs attached to a cgroup this test creates, a child
//! process (this binary, re-executed) inside it connecting to a VIP, backends on loopback.
//! Needs root, cgroup2 and bpffs; skips with a reason otherwise (fails under
//! PIER_REQUIRE_PRIVILEGED=1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pier_ebpf::{maps::PROTO_TCP, ServiceAddr, SocketLb};

const CHILD: &str = "PIER_EBPF_TEST_CHILD";

fn environment() -> Result<PathBuf, String> {
    if pier_controlplane::api::current_uid() != 0 {
        return Err("needs root (BPF programs, cgroups)".into());
    }
    if !Path::new(pier_ebpf::BPFFS).exists() {
        return Err("no /sys/fs/bpf directory".into());
    }
    pier_ebpf::cgroup2_root().ok_or_else(|| "no cgroup2 mount".into())
}

fn privileged() -> Option<PathBuf> {
    match environment() {
        Ok(p) => Some(p),
        Err(why) => {
            assert!(
                std::env::var_os("PIER_REQUIRE_PRIVILEGED").is_none(),
                "PIER_REQUIRE_PRIVILEGED is set but the test cannot run: {why}"
            );
            println!("skipped: {why}");
            None
        }
    }
}

/// Removes the programs, pins, the cgroup and a bpffs mount the test made, whatever happened.
struct Cleanup {
    cgroup: PathBuf,
    pin: PathBuf,
    mounted_bpffs: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = SocketLb::detach(&self.pin);
        let _ = std::fs::remove_dir(&self.cgroup);
        if self.mounted_bpffs {
            let _ = Command::new("umount").arg(pier_ebpf::BPFFS).status();
        }
    }
}

/// Backends that answer each connection with their one-letter name, then close.
fn backend(name: u8, stop: Arc<AtomicBool>) -> SocketAddrV4 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(addr) = l.local_addr().unwrap() else {
        unreachable!()
    };
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
    if mode != "tcp" {
        return udp_client(vip, n, mode == "udp-connected");
    }
    let (mut a, mut b, mut peer_is_vip, mut refused) = (0, 0, 0, 0);
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
            Err(e) => panic!("connect: {e}"),
        }
    }
    println!("RESULT {a} {b} {peer_is_vip} {refused}");
}

/// UDP from inside the cgroup: `n` datagrams to the VIP, unconnected (sendmsg4/recvmsg4) or
/// connected (connect4/getpeername4); every reply must come from the VIP.
fn udp_client(vip: SocketAddr, n: usize, connected: bool) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
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

/// A UDP echo backend that prefixes its one-letter name.
fn udp_backend(name: u8, stop: Arc<AtomicBool>) -> SocketAddrV4 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(addr) = s.local_addr().unwrap() else {
        unreachable!()
    };
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

fn run_child(cgroup: &Path, vip: SocketAddrV4, n: usize) -> [usize; 4] {
    run_child_mode(cgroup, vip, n, "tcp")
}

fn run_child_mode(cgroup: &Path, vip: SocketAddrV4, n: usize, mode: &str) -> [usize; 4] {
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
        .take(4)
        .map(|x| x.parse().unwrap())
        .collect();
    [v[0], v[1], v[2], v[3]]
}

#[test]
fn vip_connects_reach_weighted_backends_and_see_the_vip() {
    let Some(root) = privileged() else { return };
    let id = std::process::id();
    let cleanup = Cleanup {
        cgroup: root.join(format!("pier-test-{id}")),
        pin: PathBuf::from(format!("/sys/fs/bpf/pier-test-{id}")),
        mounted_bpffs: pier_ebpf::ensure_bpffs(Path::new(pier_ebpf::BPFFS)).unwrap(),
    };
    std::fs::create_dir_all(&cleanup.cgroup).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (a, b) = (
        backend(b'a', Arc::clone(&stop)),
        backend(b'b', Arc::clone(&stop)),
    );
    let vip = SocketAddrV4::new(Ipv4Addr::new(10, 254, (id % 250) as u8, 1), 80);
    let service = ServiceAddr {
        addr: vip,
        proto: PROTO_TCP,
    };

    let mut lb = SocketLb::load(&cleanup.pin).unwrap();
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
        addr: SocketAddrV4::new(*vip.ip(), 53),
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
    let node_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let np = ServiceAddr {
        addr: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, node_port),
        proto: PROTO_TCP,
    };
    lb.set_service(np, &[(a, 1)], 0).unwrap();
    let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, node_port);
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
    stop.store(true, Ordering::Relaxed);
    drop(cleanup);
    assert!(!Path::new(&format!("/sys/fs/bpf/pier-test-{id}")).exists());
}
