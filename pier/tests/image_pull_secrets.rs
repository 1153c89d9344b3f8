//! Pods get their images as the kubelet does: from a registry that asks for credentials,
//! with those of the pod's `imagePullSecrets` (a `kubectl create secret docker-registry`
//! Secret) or of its ServiceAccount; `ErrImagePull` then `ImagePullBackOff` without them, until the image is on the
//! node; `imagePullPolicy: Never` on an absent image; and a registry the node may not pull
//! from; and `pier pull` with `--creds` or Docker's config file. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::have_all;
use common::kubectl::{self, Kubectl};
use common::runtime::*;
use serde_json::Value;

const USER: &str = "puller";
const PASSWORD: &str = "pull-s3cret";

fn pod(name: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - name: app
    image: {image}
{extra}"
    )
}

fn apply(k: &Kubectl, dir: &Path, yaml: &str) {
    let file = dir.join("apply.yaml");
    std::fs::write(&file, yaml).unwrap();
    k.ok(&["apply", "-f", file.to_str().unwrap()]);
}

/// Waits up to `secs` for the pod's JSON to satisfy `check`; the JSON.
fn until(k: &Kubectl, pod: &str, secs: u64, check: impl Fn(&Value) -> bool) -> Value {
    kubectl::until_within(k, &["pod", pod], secs, check)
}

fn reason(v: &Value) -> &str {
    v["status"]["reason"].as_str().unwrap_or("")
}

/// The reasons and messages of the events about `pod`.
fn events(k: &Kubectl, pod: &str) -> Vec<(String, String)> {
    let selector = format!("involvedObject.name={pod}");
    let list: Value = serde_json::from_str(&k.ok(&[
        "get",
        "events",
        "--field-selector",
        &selector,
        "-o",
        "json",
    ]))
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// `pier pull` as `docker pull`: refused without credentials, pulled with `--creds`, with
/// what `docker login` left in Docker's config file, or with a credential helper's answer.
/// The image is removed again after each.
fn cli_pulls_with_credentials(node: &Node, dir: &Path, registry: &str, image: &str) {
    let e = node.fails(&["pull", image]);
    assert!(e.to_lowercase().contains("not authorized"), "{e}");
    let e = node.fails(&["pull", "--creds", "nocolon", image]);
    assert!(e.contains("USER:PASSWORD"), "{e}");
    node.ok(&["pull", "--creds", &format!("{USER}:{PASSWORD}"), image]);
    node.ok(&["image", "rm", image]);

    use base64::Engine as _;
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}, "docker.io": {{}}}}, "credsStore": "pass"}}"#),
    )
    .unwrap();
    let pulled = Command::new(common::PIER)
        .args(["pull", image])
        .env("PIER_SOCKET", node.d().socket())
        .env("DOCKER_CONFIG", &docker)
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", out_text(&pulled));
    assert!(node.ok(&["images"]).contains("team/echo"));
    node.ok(&["image", "rm", image]);

    // A credential helper, run as Docker runs it (`get`, the server on stdin), named for the
    // registry in credHelpers; a helper with nothing stored leaves the pull anonymous.
    let bin = dir.join("helpers");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-pier-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\nif [ \"$server\" = \"{registry}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pull_with = |config: &str| {
        std::fs::write(docker.join("config.json"), config).unwrap();
        Command::new(common::PIER)
            .args(["pull", image])
            .env("PIER_SOCKET", node.d().socket())
            .env("DOCKER_CONFIG", &docker)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let pulled = pull_with(&format!(
        r#"{{"credHelpers": {{"{registry}": "pier-test"}}}}"#
    ));
    assert!(pulled.status.success(), "{}", out_text(&pulled));
    node.ok(&["image", "rm", image]);
    let pulled = pull_with(r#"{"credsStore": "pier-test"}"#);
    assert!(pulled.status.success(), "{}", out_text(&pulled));
    node.ok(&["image", "rm", image]);
    let empty = bin.join("docker-credential-empty");
    std::fs::write(
        &empty,
        "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = pull_with(r#"{"credsStore": "empty"}"#);
    assert!(!refused.status.success());
    let text = out_text(&refused);
    assert!(text.to_lowercase().contains("not authorized"), "{text}");
    let missing = pull_with(&format!(r#"{{"credHelpers": {{"{registry}": "absent"}}}}"#));
    assert!(
        out_text(&missing).contains("docker-credential-absent"),
        "{}",
        out_text(&missing)
    );
}

#[test]
fn pods_pull_with_their_image_pull_secrets() {
    if !privileged("pods_pull_with_their_image_pull_secrets") {
        return;
    }
    if !have_all(&["kubectl", "docker-registry", "skopeo", "umoci", "htpasswd"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = start_registry_with_password(tmp.path(), USER, PASSWORD);
    let layout = umoci_layout(tmp.path(), &[]);
    let image = format!("{}/team/echo:v1", registry.addr);
    // Without credentials the registry refuses the push, so it does ask for them.
    let refused = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{}", out_text(&refused));
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{image}")),
    );

    let node = Node::start_with(
        &tmp.path().join("node"),
        15,
        &["--api-listen", "127.0.0.1:0"],
    );
    cli_pulls_with_credentials(&node, tmp.path(), &registry.addr, &image);
    let kubeconfig = tmp.path().join("kubeconfig");
    let out = node.pier(&["kubeconfig"]);
    assert!(out.status.success(), "{}", out_text(&out));
    std::fs::write(&kubeconfig, &out.stdout).unwrap();
    let k = Kubectl {
        kubeconfig,
        cache: tmp.path().join("kube-cache"),
    };

    // No credentials: the pull fails on the registry's refusal and backs off.
    apply(&k, tmp.path(), &pod("anonymous", &image, ""));
    let v = until(&k, "anonymous", 30, |v| reason(v) == "ImagePullBackOff");
    assert_eq!(v["status"]["phase"], "Pending");
    let message = v["status"]["message"].as_str().unwrap().to_lowercase();
    assert!(
        message.contains("failed to pull image") && message.contains("not authorized"),
        "{message}"
    );
    let table = k.ok(&["get", "pod", "anonymous"]);
    assert!(
        table.contains("ImagePullBackOff") || table.contains("ErrImagePull"),
        "{table}"
    );
    let seen = events(&k, "anonymous");
    for want in ["Pulling", "Failed", "BackOff"] {
        assert!(seen.iter().any(|(r, _)| r == want), "{want}: {seen:?}");
    }
    assert!(
        seen.iter().any(|(_, m)| m == "Error: ErrImagePull"),
        "{seen:?}"
    );

    // The Secret kubectl makes for a registry, named by the pod: pulled, run, reached.
    k.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", registry.addr),
        &format!("--docker-username={USER}"),
        &format!("--docker-password={PASSWORD}"),
    ]);
    let with_secret = "    imagePullPolicy: Always\n  imagePullSecrets:\n  - name: regcred\n";
    apply(&k, tmp.path(), &pod("authed", &image, with_secret));
    let v = until(&k, "authed", 60, |v| v["status"]["phase"] == "Running");
    let ip = v["status"]["podIP"].as_str().unwrap().to_string();
    let mut body = Value::Null;
    wait_for("the pulled image's server", 10, || {
        body = curl(&format!("http://{ip}:8080/")).unwrap_or(Value::Null);
        !body.is_null()
    });
    assert_eq!(body["name"], "echo");
    let seen = events(&k, "authed");
    assert!(
        seen.iter()
            .any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image")),
        "{seen:?}"
    );
    // The credentials are in no table or event.
    for shown in [k.ok(&["get", "secret", "regcred"]), format!("{seen:?}")] {
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    assert!(node.ok(&["images"]).contains("team/echo"));

    // Given once, on the namespace's `default` ServiceAccount, as Kubernetes' docs do it: a
    // pod made after that gets its pull secrets.
    k.ok(&[
        "patch",
        "serviceaccount",
        "default",
        "-p",
        r#"{"imagePullSecrets": [{"name": "regcred"}]}"#,
    ]);
    let always = "    imagePullPolicy: Always\n";
    apply(&k, tmp.path(), &pod("via-account", &image, always));
    let v = until(&k, "via-account", 60, |v| v["status"]["phase"] == "Running");
    assert_eq!(v["spec"]["imagePullSecrets"][0]["name"], "regcred", "{v}");

    // The image is on the node now, and the first pod's policy (IfNotPresent, for a tag)
    // takes it on its next try.
    until(&k, "anonymous", 60, |v| v["status"]["phase"] == "Running");

    // Never: an absent image is not pulled, and the pod says why.
    let absent = format!("{}/team/absent:v1", registry.addr);
    apply(
        &k,
        tmp.path(),
        &pod("never", &absent, "    imagePullPolicy: Never\n"),
    );
    let v = until(&k, "never", 30, |v| reason(v) == "ErrImageNeverPull");
    assert!(
        v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("pull policy of Never"),
        "{v}"
    );

    // A registry this node may not reach (the tests allow loopback only).
    apply(
        &k,
        tmp.path(),
        &pod("elsewhere", "registry.invalid/team/echo:v1", ""),
    );
    let v = until(&k, "elsewhere", 30, |v| {
        matches!(reason(v), "ErrImagePull" | "ImagePullBackOff")
    });
    let message = v["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("registry.invalid") && message.contains("allowed registries"),
        "{message}"
    );

    // A policy kubectl cannot mean is refused, naming the field.
    let file = tmp.path().join("bad.yaml");
    std::fs::write(
        &file,
        pod("bad", &image, "    imagePullPolicy: Sometimes\n"),
    )
    .unwrap();
    let e = k.fails(&["apply", "-f", file.to_str().unwrap()]);
    assert!(e.contains("imagePullPolicy"), "{e}");
}
