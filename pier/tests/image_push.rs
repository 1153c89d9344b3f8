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

/// A pier with `pier/echo:v1` tagged for `registry` as `image`, and Docker's config of its own.
struct Pusher {
    node: Node,
    docker_config: std::path::PathBuf,
    registry: String,
    image: String,
}

impl Pusher {
    fn start(dir: &std::path::Path, registry: &str) -> Pusher {
        let node = Node::start(&dir.join("node"), 0);
        node.build_echo("v1");
        let image = format!("{registry}/team/echo:v1");
        node.ok(&["image", "tag", "pier/echo:v1", &image]);
        Pusher {
            node,
            docker_config: dir.join("docker"),
            registry: registry.to_string(),
            image,
        }
    }

    fn pier(&self, args: &[&str], stdin: &str) -> Output {
        pier_with(&self.node, &self.docker_config, args, stdin)
    }

    fn login(&self, password: &str) -> Output {
        self.pier(
            &["login", &self.registry, "-u", USER, "--password-stdin"],
            &format!("{password}\n"),
        )
    }

    /// A push refused for want of credentials, which says so; its words.
    fn push_refused(&self, image: &str) -> String {
        let out = self.pier(&["push", image], "");
        let said = out_text(&out);
        assert!(
            !out.status.success() && said.contains("unauthorized"),
            "{said}"
        );
        said
    }

    /// Pushes `image`, which skopeo then finds under the digest push printed; push's words.
    fn push_and_check(&self) -> String {
        let pushed = self.pier(&["push", &self.image], "");
        let said = out_text(&pushed);
        assert!(pushed.status.success(), "{said}");
        let digest = String::from_utf8_lossy(&pushed.stdout)
            .rsplit("digest: ")
            .next()
            .unwrap()
            .trim()
            .to_string();
        assert!(digest.starts_with("sha256:"), "{said}");
        let seen = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--creds"])
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!("docker://{}", self.image))
            .output()
            .unwrap();
        assert!(seen.status.success(), "{}", out_text(&seen));
        let seen: Value = serde_json::from_slice(&seen.stdout).unwrap();
        assert_eq!(seen["Digest"], digest.as_str(), "{seen}");
        said
    }
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
    let p = Pusher::start(tmp.path(), &registry.addr);

    // Refusals say why, and a refused login keeps nothing.
    let said = p.push_refused(&p.image);
    println!("push without credentials: {said}");
    assert!(said.contains("pier login"), "{said}");
    let wrong = p.login("not-the-password");
    assert!(!wrong.status.success());
    assert!(out_text(&wrong).contains("refused"), "{}", out_text(&wrong));
    let file = p.docker_config.join("config.json");
    assert!(!file.exists());

    // Login: checked, then kept as docker login keeps it.
    let login = p.login(PASSWORD);
    assert!(login.status.success(), "{}", out_text(&login));
    assert!(out_text(&login).contains("Login Succeeded"));
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

    // Push with what login kept; skopeo reads the same manifest back; again, nothing is sent.
    println!("push:\n{}", p.push_and_check());
    let again = p.push_and_check();
    assert!(
        !again.contains("pushed") && again.contains("already exists"),
        "{again}"
    );

    // A second pier pulls it with the stored credentials and runs it.
    let second = Node::start(&tmp.path().join("second"), 1);
    let pulled = pier_with(&second, &p.docker_config, &["pull", &p.image], "");
    assert!(pulled.status.success(), "{}", out_text(&pulled));
    second.ok(&["run", "-d", "--name", "pulled", &p.image]);
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
    let logout = p.pier(&["logout", &registry.addr], "");
    assert!(logout.status.success(), "{}", out_text(&logout));
    let config: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(config["auths"].get(&registry.addr).is_none(), "{config}");
    let other = format!("{}/team/echo:v2", registry.addr);
    p.node.ok(&["image", "tag", "pier/echo:v1", &other]);
    p.push_refused(&other);
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
    let p = Pusher::start(tmp.path(), &registry.addr);
    let issued = || tokens.issued.load(std::sync::atomic::Ordering::Relaxed);

    p.push_refused(&p.image);
    let wrong = p.login("not-the-password");
    assert!(!wrong.status.success());
    assert!(out_text(&wrong).contains("refused"), "{}", out_text(&wrong));
    assert_eq!(issued(), 0);

    let login = p.login(PASSWORD);
    assert!(login.status.success(), "{}", out_text(&login));
    p.push_and_check();
    println!(
        "token service: {} tokens handed out for login, push and skopeo's inspect",
        issued()
    );
}
