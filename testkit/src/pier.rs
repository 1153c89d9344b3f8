//! Talking to a pier daemon the way a user does: the `pier` CLI on its control socket, plain
//! HTTP/1.1 to its admin listener, and `dig` to its DNS.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Daemon flags that keep image pulls on the machine: a pod whose image is missing may only
/// be pulled from a loopback registry, never from one a test names but does not run.
pub const LOOPBACK_REGISTRIES: [&str; 6] = [
    "--allowed-registry",
    "127.0.0.1",
    "--allowed-registry",
    "localhost",
    "--allowed-registry",
    "[::1]",
];

/// Runs `pier args` (the binary at `pier`) against the daemon at `socket`, `stdin` as input.
pub fn pier_cli(pier: &Path, socket: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(pier)
        .args(args)
        .env("PIER_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `GET path` over `stream` (HTTP/1.1, the connection closed after it): status and body.
pub fn http_get(mut stream: impl Read + Write, path: &str) -> (u16, String) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: pier\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut stream)
}

/// Reads an HTTP/1.1 response to its end: status code and body (de-chunked).
pub fn read_response(s: &mut impl Read) -> (u16, String) {
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        eprintln!("reading a response: {e} (after {} bytes)", raw.len());
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (code, body)
}

/// The payload of a chunked body.
pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The `pier image build` arguments for `pier/echo:<tag>`: the binary at `pier` serving
/// `pier echo` on port 8080 and reporting `tag` as its version.
pub fn echo_image_args(pier: &Path, tag: &str) -> Vec<String> {
    let image = format!("pier/echo:{tag}");
    let pier = pier.to_string_lossy();
    [
        "image",
        "build",
        "-t",
        &image,
        "--binary",
        &pier,
        "--path-in-image",
        "/usr/local/bin/pier",
        "--expose",
        "8080",
        "--",
        "echo",
        "--http",
        "0.0.0.0:8080",
        "--version",
        tag,
    ]
    .map(str::to_string)
    .to_vec()
}

/// The A records `dig` gets for `name` from the DNS server at `server` (`dig`'s `@` argument).
pub fn dig_a(server: &str, port: u16, name: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            &format!("@{server}"),
            "-p",
            &port.to_string(),
            "+short",
            "+time=1",
            "+tries=2",
            name,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
        .collect()
}

/// Removes every Deployment, then every container, from the daemon at `socket`, so a test's
/// daemon leaves nothing running. Never panics (a test may be unwinding); failures are printed.
pub fn remove_workloads(pier: &Path, socket: &Path) {
    let run = |args: &[&str]| -> Option<Output> {
        match Command::new(pier)
            .args(args)
            .env("PIER_SOCKET", socket)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => Some(out),
            Ok(out) => {
                eprintln!(
                    "cleanup: pier {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("cleanup: running pier {args:?}: {e}");
                None
            }
        }
    };
    let items = |args: &[&str]| -> Vec<serde_json::Value> {
        run(args)
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    };
    // Workload controllers first (Deployments and Rollouts), or they would replace the
    // containers removed after.
    for kind in ["deployment", "rollout"] {
        for d in items(&["get", kind, "-A", "-o", "json"]) {
            let meta = &d["metadata"];
            run(&[
                "delete",
                kind,
                meta["name"].as_str().unwrap_or_default(),
                "-n",
                meta["namespace"].as_str().unwrap_or("default"),
            ]);
        }
    }
    for c in items(&["ps", "-a", "-o", "json"]) {
        run(&["rm", "-f", c["id"].as_str().unwrap_or_default()]);
    }
}
