//! Nothing acknowledged is lost when the store's process is killed with SIGKILL mid-write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pier_controlplane::store::{Store, StoreConfig};
use pier_model::{Kind, Object};

const STORE_ENV: &str = "PIER_CRASH_STORE";

fn service(i: u64) -> Object {
    Object::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("s{i}"), "labels": {"seq": i.to_string()}},
        "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap()
    .object
}

fn slice(i: u64) -> Object {
    Object::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("s{i}-1"), "labels": {"kubernetes.io/service-name": format!("s{i}")}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [format!("10.88.{}.{}", i / 250, i % 250 + 1)]}],
        "ports": [{"port": 8080}]
    }))
    .unwrap()
    .object
}

/// The child: writes service + slice pairs forever, printing each acknowledged index.
#[test]
#[ignore = "helper: run as a child process by store_survives_sigkill"]
fn crash_child_writer() {
    let Some(path) = std::env::var_os(STORE_ENV) else {
        return;
    };
    let store = Store::open(std::path::Path::new(&path), StoreConfig::default()).unwrap();
    let start = store.list(Kind::Service, None, None).unwrap().0.len() as u64;
    let mut out = std::io::stdout().lock();
    for i in start.. {
        store.apply(vec![service(i), slice(i)]).unwrap();
        writeln!(out, "ACK {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn store_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut acked: Option<u64> = None;
    // Kill at different moments: early, mid-stream, later.
    for (round, kill_after) in [5u64, 40, 150].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(STORE_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen_this_round = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ACK ") {
                acked = Some(n.trim().parse().unwrap());
                seen_this_round += 1;
                if seen_this_round >= kill_after || Instant::now() > deadline {
                    child.kill().unwrap(); // SIGKILL, possibly in the middle of the next commit
                    break;
                }
            }
        }
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: child must have been killed"
        );
        assert!(
            seen_this_round >= kill_after,
            "round {round}: child wrote only {seen_this_round} acks"
        );

        let store = Store::open(&path, StoreConfig::default()).unwrap();
        let last = acked.unwrap();
        for i in 0..=last {
            let svc = store
                .get(Kind::Service, "default", &format!("s{i}"))
                .unwrap();
            let eps = store
                .get(Kind::EndpointSlice, "default", &format!("s{i}-1"))
                .unwrap();
            assert!(
                svc.is_some() && eps.is_some(),
                "round {round}: acknowledged write {i} lost"
            );
        }
        // Both objects of a write batch are there or neither: count pairs.
        let services = store.list(Kind::Service, None, None).unwrap().0.len();
        let slices = store.list(Kind::EndpointSlice, None, None).unwrap().0.len();
        assert_eq!(
            services, slices,
            "round {round}: a batch was half-committed"
        );
        assert!(store.revision() >= 2 * (last + 1));
        // The watch log is intact and ordered from the start.
        let watch_store = std::sync::Arc::clone(&store);
        let last_event = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut w = watch_store.watch(1).unwrap();
                let mut prev = 0;
                while prev < watch_store.revision() {
                    let e = tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
                        .await
                        .expect("the whole log replays")
                        .unwrap();
                    assert_eq!(e.revision, prev + 1);
                    prev = e.revision;
                }
                assert!(
                    w.try_next().unwrap().is_none(),
                    "nothing after the last revision"
                );
                prev
            })
        })
        .join()
        .unwrap();
        assert_eq!(last_event, store.revision());
        // The next child must be able to open the file: every handle here is gone.
        assert_eq!(std::sync::Arc::strong_count(&store), 1);
        drop(store);
    }
}
