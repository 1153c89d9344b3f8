//! The manifests in `deploy/kubernetes/` that run pier as kube-proxy + CoreDNS: every object
//! reads as its Kubernetes type with no field the type lacks, the ConfigMap's config file
//! starts a daemon, the DaemonSet passes only flags `pier daemon` has, and pier takes the
//! kube-dns Service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde_json::Value;

mod common;
use common::*;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every object of every manifest, with its file's name.
fn objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            if !value.is_null() {
                out.push((name.clone(), value));
            }
        }
    }
    out
}

/// Reads `value` as `T`; the paths of fields `T` does not have.
fn unknown_fields<T: DeserializeOwned>(value: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    let _typed: T =
        serde_ignored::deserialize(value.clone(), |path| unknown.push(path.to_string()))
            .unwrap_or_else(|e| panic!("{e}: {value}"));
    unknown
}

#[test]
fn the_deploy_manifests_are_what_a_cluster_takes() {
    let objects = objects();
    let kinds: Vec<&str> = objects
        .iter()
        .map(|(_, o)| o["kind"].as_str().unwrap())
        .collect();
    for wanted in [
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "ConfigMap",
        "DaemonSet",
        "Service",
    ] {
        assert!(kinds.contains(&wanted), "no {wanted} in {kinds:?}");
    }
    for (file, object) in &objects {
        let unknown = match object["kind"].as_str().unwrap() {
            "ServiceAccount" => unknown_fields::<ServiceAccount>(object),
            "ClusterRole" => unknown_fields::<ClusterRole>(object),
            "ClusterRoleBinding" => unknown_fields::<ClusterRoleBinding>(object),
            "Role" => unknown_fields::<Role>(object),
            "RoleBinding" => unknown_fields::<RoleBinding>(object),
            "ConfigMap" => unknown_fields::<ConfigMap>(object),
            "DaemonSet" => unknown_fields::<DaemonSet>(object),
            "Service" => unknown_fields::<Service>(object),
            other => panic!("{file}: a {other} the test does not know"),
        };
        // apiVersion and kind are the envelope, not fields of the type.
        let unknown: Vec<&String> = unknown
            .iter()
            .filter(|p| *p != "apiVersion" && *p != "kind")
            .collect();
        assert!(
            unknown.is_empty(),
            "{file}: fields Kubernetes does not have: {unknown:?}"
        );
    }

    // Every flag the DaemonSet passes is one `pier daemon` has.
    let help = std::process::Command::new(PIER)
        .args(["daemon", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let daemonset = &objects
        .iter()
        .find(|(_, o)| o["kind"] == "DaemonSet")
        .unwrap()
        .1;
    let args = daemonset["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    for arg in args
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| a.starts_with("--"))
    {
        let flag = arg.split('=').next().unwrap();
        assert!(help.contains(flag), "pier daemon has no {flag}");
    }

    // The ConfigMap's config file starts a daemon (the test's flags take its listeners), and
    // the daemon takes the kube-dns Service.
    let dir = tempfile::tempdir().unwrap();
    let config_map = &objects
        .iter()
        .find(|(_, o)| o["kind"] == "ConfigMap")
        .unwrap()
        .1;
    let config = dir.path().join("pier.toml");
    std::fs::write(&config, config_map["data"]["pier.toml"].as_str().unwrap()).unwrap();
    let daemon = Daemon::start_with(
        dir.path(),
        &["--config", config.to_str().unwrap(), "--no-proxy"],
    );
    let kube_dns = std::fs::read_to_string(deploy_dir().join("kube-dns.yaml")).unwrap();
    apply_yaml(&daemon.socket(), &kube_dns);
    let svc = daemon.get_json(&["svc", "kube-dns", "-n", "kube-system"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10");
}
