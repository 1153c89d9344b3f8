//! `pier login`, `pier push` and `pier logout` against a real docker-registry that asks for
//! credentials, both ways registries do: Basic auth (htpasswd) and bearer tokens from a token
//! service. A push without credentials, and a login with a wrong password, are refused and
//! say so; a login keeps the credentials 0600 in Docker's config.json; the push is read back
//! by skopeo with the same digest and pulled by a second pier, which runs it; a second push
//! finds every blob there; logout forgets them. Needs root (containers), docker-registry,
//! skopeo and htpasswd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use common::runtime::*;
use common::token_service::TokenService;
use common::*;
use serde_json::Value;

const USER: &str = "pusher";
const PASSWORD: &str = "s3cret-push";

/// `pier ARGS` against `node` with `stdin`, Docker's config in `docker_config`.
fn pier_with(node: &Node, docker_config: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(PIER)
        .arg("--socket")
        .arg(node.d().socket())
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_push_and_pull_back_through_a_registry_that_wants_credentials() {
    if !privileged("login_push_and_pull_back_through_a_registry_that_wants_credentials") {
        return;
    }
    if !have_all(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = start_registry_with_password(tmp.path(), USER, PASSWORD);
    let docker_config = tmp.path().join("docker");
    let node = Node::start(&tmp.path().join("node"), 0);
    let pier = |args: &[&str], stdin: &str| pier_with(&node, &docker_config, args, stdin);
    node.build_echo("v1");
    let image = format!("{}/team/echo:v1", registry.addr);
    node.ok(&["image", "tag", "pier/echo:v1", &image]);

    // Refusals say why, and a refused login keeps nothing.
    let anonymous = pier(&["push", &image], "");
    assert!(!anonymous.status.success());
    let said = out_text(&anonymous);
    println!("push without credentials: {said}");
    assert!(
        said.contains("unauthorized") && said.contains("pier login"),
        "{said}"
    );
    let wrong = pier(
        &["login", &registry.addr, "-u", USER, "--password-stdin"],
        "not-the-password\n",
    );
    assert!(!wrong.status.success());
    assert!(out_text(&wrong).contains("refused"), "{}", out_text(&wrong));
    assert!(!docker_config.join("config.json").exists());

    // Login: checked, then kept as docker login keeps it.
    let login = pier(
        &["login", &registry.addr, "-u", USER, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(login.status.success(), "{}", out_text(&login));
    assert!(out_text(&login).contains("Login Succeeded"));
    let file = docker_config.join("config.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "config.json mode {mode:o}");
    let config: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let kept = base64::engine::general_purpose::STANDARD
        .decode(config["auths"][&registry.addr]["auth"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(kept).unwrap(),
        format!("{USER}:{PASSWORD}")
    );

    // Push with what login kept; skopeo reads the same manifest back.
    let pushed = pier(&["push", &image], "");
    assert!(pushed.status.success(), "{}", out_text(&pushed));
    println!("push:\n{}", out_text(&pushed));
    let digest = String::from_utf8_lossy(&pushed.stdout)
        .rsplit("digest: ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert!(digest.starts_with("sha256:"), "{}", out_text(&pushed));
    let seen = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds"])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(seen.status.success(), "{}", out_text(&seen));
    let seen: Value = serde_json::from_slice(&seen.stdout).unwrap();
    assert_eq!(seen["Digest"], digest.as_str(), "{seen}");
    let again = pier(&["push", &image], "");
    assert!(again.status.success(), "{}", out_text(&again));
    assert!(
        !out_text(&again).contains("pushed") && out_text(&again).contains("already exists"),
        "{}",
        out_text(&again)
    );

    // A second pier pulls it with the stored credentials and runs it.
    let second = Node::start(&tmp.path().join("second"), 1);
    let pulled = pier_with(&second, &docker_config, &["pull", &image], "");
    assert!(pulled.status.success(), "{}", out_text(&pulled));
    second.ok(&["run", "-d", "--name", "pulled", &image]);
    let ip = second.container("pulled")["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = Value::Null;
    wait_for("the pushed image's server on the second pier", 10, || {
        body = curl(&format!("http://{ip}:8080/")).unwrap_or(Value::Null);
        !body.is_null()
    });
    assert_eq!(body["name"], "echo", "{body}");

    // Logout forgets them: the next push is refused again.
    let logout = pier(&["logout", &registry.addr], "");
    assert!(logout.status.success(), "{}", out_text(&logout));
    let config: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(config["auths"].get(&registry.addr).is_none(), "{config}");
    let other = format!("{}/team/echo:v2", registry.addr);
    node.ok(&["image", "tag", "pier/echo:v1", &other]);
    let refused = pier(&["push", &other], "");
    assert!(!refused.status.success());
    assert!(
        out_text(&refused).contains("unauthorized"),
        "{}",
        out_text(&refused)
    );
}

/// A registry that hands out bearer tokens (`auth: token`, a token service checking the
/// user's password): a wrong password is refused at the token service; login, push, and a
/// pull by skopeo with the same credentials go through tokens the registry verified.
#[test]
fn login_and_push_through_a_registry_with_a_token_service() {
    if !privileged("login_and_push_through_a_registry_with_a_token_service") {
        return;
    }
    if !have_all(&["docker-registry", "skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tokens = TokenService::start(USER, PASSWORD);
    let auth = tokens.registry_auth(&tmp.path().join("token-ca.pem"));
    let registry = start_registry_with_auth(tmp.path(), &auth);
    let docker_config = tmp.path().join("docker");
    let node = Node::start(&tmp.path().join("node"), 0);
    let pier = |args: &[&str], stdin: &str| pier_with(&node, &docker_config, args, stdin);
    node.build_echo("v1");
    let image = format!("{}/team/echo:v1", registry.addr);
    node.ok(&["image", "tag", "pier/echo:v1", &image]);

    let anonymous = pier(&["push", &image], "");
    assert!(!anonymous.status.success());
    assert!(
        out_text(&anonymous).contains("unauthorized"),
        "{}",
        out_text(&anonymous)
    );
    let wrong = pier(
        &["login", &registry.addr, "-u", USER, "--password-stdin"],
        "not-the-password\n",
    );
    assert!(!wrong.status.success());
    assert!(out_text(&wrong).contains("refused"), "{}", out_text(&wrong));
    assert_eq!(tokens.issued.load(std::sync::atomic::Ordering::Relaxed), 0);

    let login = pier(
        &["login", &registry.addr, "-u", USER, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(login.status.success(), "{}", out_text(&login));
    let pushed = pier(&["push", &image], "");
    assert!(pushed.status.success(), "{}", out_text(&pushed));
    let digest = String::from_utf8_lossy(&pushed.stdout)
        .rsplit("digest: ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    let seen = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds"])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(seen.status.success(), "{}", out_text(&seen));
    let seen: Value = serde_json::from_slice(&seen.stdout).unwrap();
    assert_eq!(seen["Digest"], digest.as_str(), "{seen}");
    println!(
        "token service: {} tokens handed out for login, push and skopeo's inspect",
        tokens.issued.load(std::sync::atomic::Ordering::Relaxed)
    );
}
