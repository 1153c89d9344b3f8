//! The socket-LB's pinned state across daemon restarts: hooks replaced by the new
//! programs, pins of another store replaced, the same store's adopted. Needs root,
//! cgroup2 and bpffs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pier_ebpf::SocketLb;

use common::*;

/// The child: joins the cgroup, connects, reports what it saw (only when re-executed).
#[test]
fn child_client() {
    common::child_client();
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
