//! kubectl against pods the engine runs: `kubectl logs` (whole, `--tail`, `-f`, a wrong
//! container) through the pod `log` subresource, `kubectl exec`, `kubectl port-forward` (over
//! the WebSocket tunnel and over SPDY), and the engine's Events as `kubectl describe pod` and
//! `kubectl get events` show them. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::runtime::*;
use common::{have, skip};

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: pier/shell:v1
    args: [echo, --http, '0.0.0.0:8080', --tcp, '127.0.0.1:7070', --name, web]
    readinessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
";

#[test]
fn kubectl_reads_a_pods_logs_and_events() {
    if !privileged("kubectl_reads_a_pods_logs_and_events") {
        return;
    }
    if !have("kubectl") {
        skip("kubectl is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start_with(tmp.path(), 7, &["--api-listen", "127.0.0.1:0"]);
    if !have("umoci") {
        skip("umoci is not installed (scripts/deps test installs it)");
        return;
    }
    // The echo server, with a shell and cat to exec.
    // (/bin and /usr/bin are one directory on a merged-/usr install, two on others.)
    let host = |name: &str| {
        ["/usr/bin", "/bin"]
            .iter()
            .map(|dir| format!("{dir}/{name}"))
            .find(|path| Path::new(path).exists())
            .unwrap_or_else(|| panic!("{name} is not on this machine"))
    };
    let (dash, cat) = (host("dash"), host("cat"));
    let shell = [(dash.as_str(), "/bin/sh"), (cat.as_str(), "/bin/cat")];
    let layout = umoci_layout(tmp.path(), &shell);
    let layout = layout.to_str().unwrap();
    node.ok(&["image", "import", layout, "--tag", "pier/shell:v1"]);
    let kubeconfig = tmp.path().join("kubeconfig");
    let out = node.pier(&["kubeconfig"]);
    assert!(out.status.success(), "{}", out_text(&out));
    std::fs::write(&kubeconfig, &out.stdout).unwrap();
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    common::apply_yaml(&node.d().socket(), POD);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let phase = kubectl(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"]);
        let logs = kubectl(&["logs", "web"]);
        if String::from_utf8_lossy(&phase.stdout) == "Running"
            && String::from_utf8_lossy(&logs.stdout).contains("http 0.0.0.0:8080")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod: {} logs: {}",
            out_text(&phase),
            out_text(&logs)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let tail = kubectl(&["logs", "web", "--tail=1", "--timestamps"]);
    let tail = String::from_utf8_lossy(&tail.stdout).into_owned();
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("20"), "a timestamp first: {tail}");
    let wrong = kubectl(&["logs", "web", "-c", "nope"]);
    assert!(!wrong.status.success());
    assert!(
        out_text(&wrong).contains("not valid for pod web"),
        "{}",
        out_text(&wrong)
    );

    let mut follow = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    // Kept open until kubectl is stopped: a closed pipe would end it with SIGPIPE.
    let mut followed = std::io::BufReader::new(follow.stdout.take().unwrap());
    followed.read_line(&mut first).unwrap();
    assert!(first.contains("http 0.0.0.0:8080"), "{first}");
    std::thread::sleep(Duration::from_millis(300));
    if let Some(ended) = follow.try_wait().unwrap() {
        let mut why = String::new();
        if let Some(mut err) = follow.stderr.take() {
            std::io::Read::read_to_string(&mut err, &mut why).unwrap();
        }
        let pod = kubectl(&["get", "pod", "web", "-o", "yaml"]);
        panic!(
            "-f keeps following, but kubectl ended ({ended}): {why}\n{}",
            out_text(&pod)
        );
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
    drop(followed);

    // exec over WebSocket (v5.channel.k8s.io): output, stdin to its end, exit codes.
    let hostname = kubectl(&["exec", "web", "--", "cat", "/etc/hostname"]);
    assert!(hostname.status.success(), "{}", out_text(&hostname));
    assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "web");
    let mut cat = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["exec", "-i", "web", "--", "sh", "-c", "cat; echo done >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = cat.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"line one\nline two\n").unwrap();
    drop(stdin);
    let cat = cat.wait_with_output().unwrap();
    assert!(cat.status.success(), "{}", out_text(&cat));
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "line one\nline two\n");
    assert_eq!(String::from_utf8_lossy(&cat.stderr).trim(), "done");
    let failed = kubectl(&["exec", "web", "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "{}", out_text(&failed));
    let missing = kubectl(&["exec", "web", "--", "/nope"]);
    assert!(!missing.status.success());
    // With -t the command gets a terminal (script(1) gives kubectl one).
    let tty = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "kubectl --kubeconfig {} exec -it web -- sh -c 'test -t 0 && test -t 1 && echo on a terminal'",
            kubeconfig.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&tty.stdout).contains("on a terminal"),
        "{}",
        out_text(&tty)
    );

    port_forward(&node, &kubeconfig);

    // The engine's story of the pod, with the failing readiness probe's repeats counted.
    let deadline = Instant::now() + Duration::from_secs(40);
    let described = loop {
        let out = kubectl(&["describe", "pod", "web"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let events = text.split("Events:").nth(1).unwrap_or("").to_string();
        let counted = events
            .lines()
            .any(|l| l.contains("Unhealthy") && l.contains("(x"));
        if ["Pulled", "Created", "Started"]
            .iter()
            .all(|r| events.contains(r))
            && counted
        {
            break events;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(described.contains("kubelet"), "{described}");
    assert!(
        described.contains("Readiness probe failed: TCP connect to :9999 failed"),
        "{described}"
    );
    let warnings = kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,type=Warning",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&warnings.stdout),
        "Unhealthy",
        "{}",
        out_text(&warnings)
    );
    let deleted = kubectl(&["delete", "pod", "web"]);
    assert!(deleted.status.success(), "{}", out_text(&deleted));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let table = kubectl(&["get", "events"]);
        let text = String::from_utf8_lossy(&table.stdout).into_owned();
        if text.contains("Killing") {
            assert!(text.starts_with("LAST SEEN"), "{text}");
            assert!(text.contains("pod/web"), "{text}");
            assert!(text.contains("Stopping container web"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `kubectl port-forward pod/web` to the HTTP port and to a TCP echo bound to the pod's own
/// loopback, over kubectl's WebSocket tunnel and then over SPDY; a port nothing listens on is
/// reported as kubectl reports a kubelet's failure.
fn port_forward(node: &Node, kubeconfig: &Path) {
    for (websockets, transport) in [("true", "websocket"), ("false", "spdy")] {
        let (mut kubectl, ports) =
            common::kubectl::port_forward(kubeconfig, "pod/web", websockets, &[":8080", ":7070"]);
        for _ in 0..2 {
            let mut http = std::net::TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
            http.write_all(b"GET /hello HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            http.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.contains("web"), "{answer}");
        }
        // 1 MiB both ways through the loopback-only echo, the client's end first.
        let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut echo = std::net::TcpStream::connect(("127.0.0.1", ports[1])).unwrap();
        let mut reader = echo.try_clone().unwrap();
        let expected = payload.len();
        let read = std::thread::spawn(move || {
            let mut back = Vec::new();
            while back.len() < expected {
                let mut buf = [0u8; 65536];
                match reader.read(&mut buf).unwrap() {
                    0 => break,
                    n => back.extend_from_slice(&buf[..n]),
                }
            }
            back
        });
        echo.write_all(&payload).unwrap();
        echo.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(
            read.join().unwrap() == payload,
            "the echo came back whole (websockets {websockets})"
        );
        kubectl.kill().unwrap();
        kubectl.wait().unwrap();
        // kubectl falls back to SPDY quietly: the daemon says which transport carried them.
        let counted = node.metric(&format!(
            "pier_api_portforward_connections_total{{transport=\"{transport}\"}}"
        ));
        assert_eq!(counted, 3.0, "connections forwarded over {transport}");
    }
    let (mut kubectl, ports) =
        common::kubectl::port_forward(kubeconfig, "pod/web", "true", &[":9999"]);
    let mut nothing = std::net::TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    let mut rest = Vec::new();
    // The connection ends once the pod side's failure is known.
    nothing.read_to_end(&mut rest).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while kubectl.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    kubectl.kill().ok();
    let out = kubectl.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error forwarding port 9999 to pod web") && stderr.contains("refused"),
        "{stderr}"
    );
}
