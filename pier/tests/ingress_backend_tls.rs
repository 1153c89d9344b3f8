//! Ingress to TLS backends, as ingress-nginx's `backend-protocol: HTTPS|GRPCS` and
//! `proxy-ssl-*` annotations ask: a TLS-only endpoint answers through pier with no
//! verification by default (ingress-nginx's `proxy-ssl-verify: off`), over HTTP/2 for GRPCS;
//! with `proxy-ssl-verify: on` the certificate is checked against the Secret's `ca.crt` and
//! `proxy-ssl-name`, the name goes out as SNI with `proxy-ssl-server-name: on`, and the
//! Secret's `tls.crt`/`tls.key` is shown to an endpoint that asks for a client certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::proxy::*;
use common::tls::{curl, Ca, TlsBackend};
use common::{have, skip, Daemon};

const HOST: &str = "secure.example.com";

/// What each test starts from.
struct Setup {
    _tmp: tempfile::TempDir,
    d: Daemon,
    /// The Ingress listener.
    http: SocketAddr,
    /// The CA of the endpoint's certificate (for `api.internal`).
    server_ca: Ca,
}

/// A TLS-only endpoint, its Service `secure`, and a proxy daemon whose Ingress listener takes
/// a free loopback port; the endpoint asks for a client certificate of `client_ca` if given.
async fn setup(client_ca: Option<&Ca>) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let server_ca = Ca::new();
    let (cert, key) = server_ca.issue("api.internal");
    let backend = TlsBackend {
        name: "secure",
        cert: &cert,
        key: &key,
        client_ca: client_ca.map(|c| c.pem.as_str()),
    }
    .spawn()
    .await;
    let http = SocketAddr::from((
        [127, 0, 0, 1],
        pier_testkit::free_port("127.0.0.1").unwrap(),
    ));
    let d = proxy_daemon(tmp.path(), &["--ingress-listen", &http.to_string()]);
    apply(
        &d,
        &service_yaml("secure", 443, "TCP", "", &[(backend.port(), true)]),
    );
    Setup {
        _tmp: tmp,
        d,
        http,
        server_ca,
    }
}

/// The Ingress `secure` sending every request to the Service `secure`, with these
/// ingress-nginx annotations.
fn ingress(annotations: &[(&str, &str)]) -> String {
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), (*v).into()))
        .collect();
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "secure", "annotations": annotations},
        "spec": {"ingressClassName": "pier", "rules": [{"host": HOST, "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "secure", "port": {"number": 443}}}}]}}]},
    })
    .to_string()
}

/// A Secret holding `ca.crt`, and a client certificate when given.
fn secret(ca_pem: &str, client: Option<(String, String)>) -> String {
    let mut data = serde_json::json!({"ca.crt": ca_pem});
    if let Some((cert, key)) = client {
        data["tls.crt"] = cert.into();
        data["tls.key"] = key.into();
    }
    serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "backend-ca"}, "stringData": data})
    .to_string()
}

/// Asks through the Ingress until the answer (status line, headers, body) passes `check`.
fn until(http: SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let url = format!("http://{http}/");
    let host = format!("Host: {HOST}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out) = curl(&["-i", "-H", &host, &url]);
        if check(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "{what} within 10 s:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn served(out: &str) -> bool {
    out.starts_with("HTTP/1.1 200") && out.ends_with("served-by:secure\n")
}

fn refused(out: &str) -> bool {
    out.starts_with("HTTP/1.1 502") && !out.contains("served-by")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_unverified_by_default_verified_with_the_secret_ca() {
    if !have("curl") {
        return skip("curl is not installed (scripts/deps test installs it)");
    }
    // The endpoint's certificate is for a name pier is not told, from a CA it does not know.
    let Setup {
        _tmp,
        d,
        http,
        server_ca,
    } = setup(None).await;

    // Plain HTTP to a TLS-only endpoint fails.
    apply(&d, &ingress(&[]));
    until(http, "plain HTTP refused", refused);

    // HTTPS: ingress-nginx's defaults, no verification and no SNI.
    apply(&d, &ingress(&[("backend-protocol", "HTTPS")]));
    let out = until(http, "HTTPS without verification", served);
    assert!(out.contains("x-sni: none"), "{out}");
    assert!(out.contains("x-http: HTTP/1.1"), "{out}");

    // GRPCS: HTTP/2 over TLS.
    apply(&d, &ingress(&[("backend-protocol", "GRPCS")]));
    until(http, "HTTP/2 over TLS", |o| {
        served(o) && o.contains("x-http: HTTP/2.0")
    });

    // Verification on, against a CA that did not sign the endpoint's certificate: refused.
    let stranger = Ca::new();
    apply(&d, &secret(&stranger.pem, None));
    let verified = |name: &str| {
        ingress(&[
            ("backend-protocol", "HTTPS"),
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-secret", "default/backend-ca"),
            ("proxy-ssl-name", name),
            ("proxy-ssl-server-name", "on"),
        ])
    };
    apply(&d, &verified("api.internal"));
    until(http, "a certificate of an unknown CA refused", refused);

    // The Secret now holds the right CA: served, with the name sent as SNI.
    apply(&d, &secret(&server_ca.pem, None));
    let out = until(http, "verified against the Secret's CA", served);
    assert!(out.contains("x-sni: api.internal"), "{out}");

    // Another name than the certificate's: refused.
    apply(&d, &verified("other.internal"));
    until(http, "a certificate for another name refused", refused);
    // Both outcomes are counted under the Ingress.
    let (_, metrics) = d.admin("/metrics");
    for code in ["200", "502"] {
        let series = format!(
            "pier_ingress_requests_total{{backend=\"default/secure:443\",code=\"{code}\",host=\"{HOST}\",ingress=\"default/secure\"}}"
        );
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_ssl_secret_certificate_is_shown_to_an_endpoint_that_asks() {
    if !have("curl") {
        return skip("curl is not installed (scripts/deps test installs it)");
    }
    let client_ca = Ca::new();
    let Setup {
        _tmp,
        d,
        http,
        server_ca,
    } = setup(Some(&client_ca)).await;
    let annotations = [
        ("backend-protocol", "HTTPS"),
        ("proxy-ssl-secret", "default/backend-ca"),
    ];
    // A Secret with only the CA: the endpoint wants a client certificate and gets none.
    apply(&d, &secret(&server_ca.pem, None));
    apply(&d, &ingress(&annotations));
    until(http, "no client certificate refused", refused);

    // The Secret gains a client certificate of the CA the endpoint trusts.
    apply(
        &d,
        &secret(&server_ca.pem, Some(client_ca.issue("pier-edge"))),
    );
    let out = until(http, "the client certificate taken", served);
    assert!(out.contains("x-client-cert: yes"), "{out}");
    // A certificate of another CA is refused by the endpoint.
    apply(
        &d,
        &secret(&server_ca.pem, Some(Ca::new().issue("pier-edge"))),
    );
    until(http, "a client certificate of another CA refused", refused);
}
