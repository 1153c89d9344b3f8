//! The socket-LB hooks for real: programs attached to a cgroup this test creates, a child
//! process (this binary, re-executed) inside it connecting to a VIP, backends on loopback.
//! Needs root, cgroup2 and bpffs; skips with a reason otherwise (fails under
//! PIER_REQUIRE_PRIVILEGED=1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use pier_ebpf::{maps::PROTO_TCP, ServiceAddr, SocketLb};

use common::*;

/// The child: joins the cgroup, connects, reports what it saw (only when re-executed).
#[test]
fn child_client() {
    common::child_client();
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

/// How translated connections end, per backend: connects to a backend nothing listens on are
/// counted as connect failures, connections a backend resets as resets, clean ones as
/// neither; the counters reach `pier_ebpf_backend_*` metrics. Connections this cgroup's hooks
/// did not translate are never counted, though the tracepoint sees the whole machine.
#[test]
fn refused_and_reset_connections_are_counted_per_backend() {
    let Some(root) = privileged() else { return };
    let id = std::process::id();
    let cleanup = Cleanup::new(&root, "pier-test-fails");
    let stop = Arc::clone(&cleanup.stop);
    let good = backend(b'a', Arc::clone(&stop));
    let resetting = resetting_backend_on("127.0.0.1", Arc::clone(&stop));
    let dead: SocketAddr = format!("127.0.0.1:{}", unused_port("127.0.0.1"))
        .parse()
        .unwrap();
    let vip = |n: u8| SocketAddr::new(Ipv4Addr::new(10, 249, (id % 250) as u8, n).into(), 80);
    let mut lb = cleanup.attached();
    let registry = prometheus::Registry::new();
    pier_ebpf::metrics::EbpfMetrics::register(&registry, &cleanup.pin, lb.inventory()).unwrap();
    for (n, backend) in [(1, good), (2, resetting), (3, dead)] {
        lb.set_service(tcp(vip(n)), &[(backend, 1)], 0).unwrap();
    }
    let outcomes = |n: u8| run_child_counts(&cleanup.cgroup, vip(n), 20, "tcp-outcomes");
    assert_eq!(outcomes(1), [20, 0, 0, 0, 0], "answered");
    assert_eq!(outcomes(2), [0, 0, 20, 0, 0], "reset");
    assert_eq!(outcomes(3), [0, 20, 0, 0, 0], "refused");
    // Outside the cgroup nothing is translated or counted, even to the same backends.
    for _ in 0..5 {
        assert!(std::net::TcpStream::connect(dead).is_err());
    }

    let counter = |name: &str, backend: SocketAddr| -> u64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.value() == backend.to_string())
            })
            .map(|m| m.get_counter().value() as u64)
            .sum()
    };
    let failures = "pier_ebpf_backend_connect_failures_total";
    let resets = "pier_ebpf_backend_resets_total";
    assert_eq!(counter(failures, dead), 20);
    assert_eq!(counter(resets, dead), 0);
    assert_eq!(counter(resets, resetting), 20);
    assert_eq!(counter(failures, resetting), 0);
    assert_eq!(counter(failures, good) + counter(resets, good), 0);
    assert_eq!(
        counter("pier_ebpf_backend_connections_total", resetting),
        20
    );
}
