//! Secrets at rest, on both backends: what the backend holds is sealed, every read path
//! (get, list, watch, history) opens it, and a rotated keyring still reads what the old key
//! sealed; each backend re-seals under the new key when it opens, so the old key can go.

use std::sync::Arc;
use std::time::Duration;

use super::{objs, Backend, Opened};
use crate::store::{Keyring, StoreConfig};
use pier_model::{Kind, Object};

const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2:HxwdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
const PASSWORD: &str = "correct-horse-battery";

fn config(keys: &str) -> StoreConfig {
    StoreConfig {
        keyring: Arc::new(Keyring::parse(keys).unwrap()),
        ..StoreConfig::default()
    }
}

fn secret() -> Object {
    objs(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\nstringData: {{password: {PASSWORD}}}\n"
    ))
    .remove(0)
}

fn password(o: &Object) -> Vec<u8> {
    match o {
        Object::Secret(s) => s.value("password").unwrap(),
        other => panic!("not a secret: {other:?}"),
    }
}

/// Every byte the backend holds.
fn raw(t: &Opened, backend: Backend) -> Vec<u8> {
    match backend {
        Backend::Redb => std::fs::read(t.dir.path().join("s.redb")).unwrap(),
        Backend::Etcd => {
            let endpoints = t.etcd.as_ref().unwrap().endpoints();
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
                let all = etcd_client::GetOptions::new().with_from_key();
                let response = client.get(vec![0u8], Some(all)).await.unwrap();
                response
                    .kvs()
                    .iter()
                    .flat_map(|kv| kv.value().to_vec())
                    .collect()
            })
        }
    }
}

fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

fn sealed_at_rest_and_read_back(backend: Backend) {
    let Some(t) = Opened::new(backend, config(K1)) else {
        return;
    };
    let first = t.store.revision() + 1;
    let written = t.store.apply(vec![secret()]).unwrap();
    let stored = written[0].object.clone().unwrap();
    assert_eq!(password(&stored), PASSWORD.as_bytes());
    match &stored {
        Object::Secret(s) => assert!(s.string_data.is_empty(), "stringData is folded into data"),
        other => panic!("{other:?}"),
    }
    let got = t.store.get(Kind::Secret, "default", "db").unwrap().unwrap();
    assert_eq!(password(&got), PASSWORD.as_bytes());
    let (listed, _) = t.store.list(Kind::Secret, None, None).unwrap();
    assert_eq!(password(&listed[0]), PASSWORD.as_bytes());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut watch = t.store.watch(first).unwrap();
    let event = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), watch.next()).await })
        .unwrap()
        .unwrap();
    assert_eq!(password(&event.object), PASSWORD.as_bytes());

    let bytes = raw(&t, backend);
    assert!(holds(&bytes, b"k8s:enc:aesgcm:v1:k1:"), "sealed under k1");
    assert!(!holds(&bytes, PASSWORD.as_bytes()), "plaintext at rest");
    assert!(
        !holds(&bytes, b"Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5"),
        "base64 plaintext at rest"
    );
}

fn rotation_reads_old_keys(backend: Backend) {
    let Some(mut t) = Opened::new(backend, config(K1)) else {
        return;
    };
    t.store.apply(vec![secret()]).unwrap();
    t.config = config(&format!("{K2}\n{K1}"));
    let t = t.reopen();
    let got = t.store.get(Kind::Secret, "default", "db").unwrap().unwrap();
    assert_eq!(password(&got), PASSWORD.as_bytes());
    if let Backend::Etcd = backend {
        let bytes = raw(&t, backend);
        assert!(
            holds(&bytes, b"k8s:enc:aesgcm:v1:k2:"),
            "re-sealed on connect"
        );
        assert!(
            !holds(&bytes, b"k8s:enc:aesgcm:v1:k1:"),
            "nothing left under k1"
        );
    }
    // A write seals under the new first key.
    let mut changed = secret();
    if let Object::Secret(s) = &mut changed {
        s.string_data.insert("user".into(), "admin".into());
    }
    t.store.apply(vec![changed]).unwrap();
    let got = t.store.get(Kind::Secret, "default", "db").unwrap().unwrap();
    assert_eq!(password(&got), PASSWORD.as_bytes());
    if let Backend::Redb = backend {
        // Opening re-sealed what k1 sealed, history included: k1 can leave the key file.
        let mut t = t;
        t.config = config(K2);
        let t = t.reopen();
        let got = t.store.get(Kind::Secret, "default", "db").unwrap().unwrap();
        assert_eq!(password(&got), PASSWORD.as_bytes());
        let history = t.store.history(1, t.store.revision()).unwrap();
        let secrets = history.iter().filter(|e| e.object.kind() == Kind::Secret);
        let passwords: Vec<Vec<u8>> = secrets.map(|e| password(&e.object)).collect();
        assert_eq!(passwords, vec![PASSWORD.as_bytes().to_vec(); 2]);
    }
}

mod on_redb {
    #[test]
    fn sealed_at_rest_and_read_back() {
        super::sealed_at_rest_and_read_back(super::Backend::Redb)
    }
    #[test]
    fn rotation_reads_old_keys() {
        super::rotation_reads_old_keys(super::Backend::Redb)
    }
}

mod on_etcd {
    #[test]
    fn sealed_at_rest_and_read_back() {
        super::sealed_at_rest_and_read_back(super::Backend::Etcd)
    }
    #[test]
    fn rotation_reads_old_keys() {
        super::rotation_reads_old_keys(super::Backend::Etcd)
    }
}
