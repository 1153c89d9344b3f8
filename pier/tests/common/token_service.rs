//! A registry token service, as Docker Hub's and Harbor's are to a registry configured with
//! `auth: token`: `GET /token?service=S&scope=repository:NAME:ACTIONS` with a user's Basic
//! credentials answers a JWT (ES256, the signing certificate in its `x5c` header) granting
//! the scopes asked for, which docker-registry checks against the certificate bundle it
//! trusts; wrong or missing credentials get 401. One thread, bounded: it serves until the
//! test drops it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rcgen::{CertificateParams, KeyPair, SigningKey};
use serde_json::{json, Value};

/// Who the tokens say issued them (the registry's `issuer`).
pub(crate) const ISSUER: &str = "pier-test-token-issuer";
/// The registry the tokens are for (the registry's `service`).
pub(crate) const SERVICE: &str = "pier-test-registry";

/// A running token service.
pub(crate) struct TokenService {
    /// Its token endpoint (the registry's `realm`).
    pub(crate) realm: String,
    /// The PEM certificate its tokens are signed under (the registry's `rootcertbundle`).
    pub(crate) cert_pem: String,
    /// Tokens handed out.
    pub(crate) issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl TokenService {
    /// Serves tokens to `user` with `password`.
    pub(crate) fn start(user: &str, password: &str) -> TokenService {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ISSUER);
        let cert = params.self_signed(&key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop, issued) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let signer = Signer {
            key,
            x5c: STANDARD.encode(cert.der()),
            basic: format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
        };
        let (until, count) = (Arc::clone(&stop), Arc::clone(&issued));
        std::thread::spawn(move || {
            while !until.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if signer.answer(stream) {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TokenService {
            realm: format!("http://{addr}/token"),
            cert_pem: cert.pem(),
            issued,
            stop,
            addr,
        }
    }

    /// The registry's `auth:` section for this service, its certificate in `bundle`.
    pub(crate) fn registry_auth(&self, bundle: &std::path::Path) -> String {
        std::fs::write(bundle, &self.cert_pem).unwrap();
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            bundle.display()
        )
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        if TcpStream::connect(self.addr).is_err() {
            eprintln!("token service already gone");
        }
    }
}

struct Signer {
    key: KeyPair,
    x5c: String,
    basic: String,
}

impl Signer {
    /// Answers one request; whether a token was handed out.
    fn answer(&self, stream: TcpStream) -> bool {
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(&stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return false;
        }
        let mut authorized = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("authorization") && value.trim() == self.basic {
                    authorized = true;
                }
            }
        }
        let target = request_line.split_whitespace().nth(1).unwrap_or("");
        let scopes: Vec<String> = url_query(target)
            .into_iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v)
            .collect();
        let (status, body) = if authorized {
            let token = self.token(&scopes);
            (
                "200 OK",
                json!({"token": token, "access_token": token, "expires_in": 300}),
            )
        } else {
            (
                "401 Unauthorized",
                json!({"errors": [{"code": "UNAUTHORIZED", "message": "wrong user or password"}]}),
            )
        };
        let body = body.to_string();
        let mut out = &stream;
        let written = write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        written.is_ok() && authorized
    }

    /// A JWT granting `scopes` (`repository:NAME:pull,push`).
    fn token(&self, scopes: &[String]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let access: Vec<Value> = scopes
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [self.x5c]});
        let claims = json!({
            "iss": ISSUER, "sub": "pusher", "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", scopes.len()), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let der = self.key.sign(signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(fixed(&der)))
    }
}

/// An ASN.1 DER ECDSA signature as JWS's fixed `r || s` (32 bytes each).
fn fixed(der: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER r, INTEGER s }, each short enough for one length byte.
    let mut at = 2;
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[at], 0x02, "an INTEGER");
        let len = usize::from(der[at + 1]);
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        at += 2 + len;
    }
    out
}

/// The decoded `key=value` pairs of a request target's query.
fn url_query(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
