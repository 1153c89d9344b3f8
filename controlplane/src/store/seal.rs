//! Secrets at rest: what the store writes for a Secret is sealed with AES-256-GCM under the
//! keyring's first key, in Kubernetes' envelope (`k8s:enc:aesgcm:v1:<key name>:` then a
//! random 12-byte nonce and the ciphertext); any key of the keyring opens it. Other kinds are
//! stored as they are.
//!
//! The key file holds one key per line, `NAME:BASE64-OF-32-BYTES` (`#` starts a comment).
//! Rotating: put a new key first, restart, and every Secret written from then on is sealed
//! with it; the redb backend re-seals the Secrets it holds under an older key when it opens.

use std::borrow::Cow;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine as _;
use pier_model::Kind;

use crate::error::{Error, Result};

/// What every sealed value starts with.
const ENVELOPE: &[u8] = b"k8s:enc:aesgcm:v1:";
/// Bytes of one key.
const KEY_LEN: usize = 32;

/// The keys Secrets are sealed with: the first seals, all open.
#[derive(Default)]
pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Keyring").field("keys", &names).finish()
    }
}

impl Keyring {
    /// A keyring with no key: Secrets are stored as they are (tests and tools only).
    pub fn none() -> Keyring {
        Keyring::default()
    }

    /// Reads the key file at `path`, or makes it (mode 0600, one new random key) when it does
    /// not exist.
    pub fn load_or_create(path: &Path) -> Result<Keyring> {
        match std::fs::read_to_string(path) {
            Ok(text) => Keyring::parse(&text)
                .map_err(|e| Error::store(format!("encryption key file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Keyring::create(path),
            Err(e) => Err(Error::store_from(
                format!("reading encryption key file {}", path.display()),
                e,
            )),
        }
    }

    /// Reads the key file at `path`, which must exist.
    pub fn load(path: &Path) -> Result<Keyring> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::store_from(format!("reading encryption key file {}", path.display()), e)
        })?;
        Keyring::parse(&text)
            .map_err(|e| Error::store(format!("encryption key file {}: {e}", path.display())))
    }

    fn create(path: &Path) -> Result<Keyring> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key)
            .map_err(|e| Error::store(format!("no randomness for an encryption key: {e}")))?;
        let name = format!("key{}", crate::store::now_rfc3339().replace([':', '-'], ""));
        let line = format!(
            "# pier's key for Secrets at rest; the first key seals, every key opens.\n{name}:{}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(line.as_bytes())?;
            file.sync_all()
        };
        write().map_err(|e| {
            Error::store_from(format!("writing encryption key file {}", path.display()), e)
        })?;
        tracing::info!(path = %path.display(), key = %name, "made a key for Secrets at rest");
        Keyring::parse(&line).map_err(Error::store)
    }

    /// Parses key file text, naming the line at fault.
    pub fn parse(text: &str) -> std::result::Result<Keyring, String> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |what: String| format!("line {}: {what}", i + 1);
            let (name, encoded) = line
                .split_once(':')
                .ok_or_else(|| at("expected NAME:BASE64-KEY".into()))?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(at(format!(
                    "key name {name:?} must be letters, digits, '-', '_' or '.'"
                )));
            }
            if keys.iter().any(|(n, _)| n == name) {
                return Err(at(format!("key name {name:?} is used twice")));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| at(format!("key {name:?} is not base64: {e}")))?;
            if bytes.len() != KEY_LEN {
                return Err(at(format!(
                    "key {name:?} has {} bytes; AES-256-GCM takes {KEY_LEN}",
                    bytes.len()
                )));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| at(format!("key {name:?} is not an AES-256 key")))?;
            keys.push((name.to_string(), LessSafeKey::new(key)));
        }
        if keys.is_empty() {
            return Err("holds no key".into());
        }
        Ok(Keyring { keys })
    }

    /// The name of the key that seals, if any.
    pub fn primary(&self) -> Option<&str> {
        self.keys.first().map(|(n, _)| n.as_str())
    }

    /// The stored form of an object's bytes: sealed when it is a Secret and there is a key.
    pub(super) fn seal(&self, kind: Kind, plain: Vec<u8>) -> Result<Vec<u8>> {
        let Some((name, key)) = self.keys.first().filter(|_| kind == Kind::Secret) else {
            return Ok(plain);
        };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::store(format!("no randomness for a nonce: {e}")))?;
        let mut sealed = plain;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| Error::store("sealing a Secret failed"))?;
        let mut out =
            Vec::with_capacity(ENVELOPE.len() + name.len() + 1 + NONCE_LEN + sealed.len());
        out.extend_from_slice(ENVELOPE);
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plain bytes of a stored value (as it is when it was not sealed).
    pub(super) fn open<'a>(&self, stored: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        let Some((name, nonce, sealed)) = envelope(stored) else {
            return Ok(Cow::Borrowed(stored));
        };
        let key = self
            .keys
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
            .map(|(_, k)| k)
            .ok_or_else(|| {
                Error::store(format!(
                    "a Secret is sealed with key {:?}, which this node's keyring ({}) does not hold; \
                     every node needs the same --encryption-key-file",
                    String::from_utf8_lossy(name),
                    self.names()
                ))
            })?;
        let mut buf = sealed.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::store("a sealed Secret has a short nonce"))?;
        let plain = key
            .open_in_place(nonce, Aad::from(name), &mut buf)
            .map_err(|_| {
                Error::store(format!(
                    "a Secret sealed with key {:?} does not open: the key is not the one it was sealed with, or the value is corrupt",
                    String::from_utf8_lossy(name)
                ))
            })?
            .len();
        buf.truncate(plain);
        Ok(Cow::Owned(buf))
    }

    /// Whether a stored value is sealed with a key other than the one that seals now.
    pub(super) fn stale(&self, stored: &[u8]) -> bool {
        match (envelope(stored), self.primary()) {
            (Some((name, _, _)), Some(primary)) => name != primary.as_bytes(),
            _ => false,
        }
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.keys.iter().map(|(n, _)| n.as_str()).collect();
        if names.is_empty() {
            "no keys".into()
        } else {
            names.join(", ")
        }
    }
}

/// The key name, nonce and ciphertext of a sealed value.
fn envelope(stored: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let rest = stored.strip_prefix(ENVELOPE)?;
    let colon = rest.iter().position(|b| *b == b':')?;
    let (name, rest) = (&rest[..colon], &rest[colon + 1..]);
    (rest.len() >= NONCE_LEN).then(|| (name, &rest[..NONCE_LEN], &rest[NONCE_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:HxwdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    #[test]
    fn secrets_are_sealed_other_kinds_are_not() {
        let ring = Keyring::parse(K1).expect("key");
        let plain = br#"{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}"#.to_vec();
        let sealed = ring.seal(Kind::Secret, plain.clone()).expect("seal");
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:k1:"));
        assert!(!sealed.windows(8).any(|w| w == b"password"));
        assert_eq!(ring.open(&sealed).expect("open").as_ref(), plain.as_slice());
        let config = ring.seal(Kind::ConfigMap, plain.clone()).expect("as is");
        assert_eq!(config, plain);
        assert_eq!(ring.open(&plain).expect("plain").as_ref(), plain.as_slice());
    }

    #[test]
    fn rotation_opens_old_values_and_marks_them_stale() {
        let old = Keyring::parse(K1).expect("key");
        let sealed = old.seal(Kind::Secret, b"x".to_vec()).expect("seal");
        let rotated = Keyring::parse(&format!("{K2}\n{K1}\n")).expect("keys");
        assert!(rotated.stale(&sealed));
        assert_eq!(rotated.open(&sealed).expect("open").as_ref(), b"x");
        let resealed = rotated.seal(Kind::Secret, b"x".to_vec()).expect("seal");
        assert!(!rotated.stale(&resealed));
        let without = Keyring::parse(K2).expect("key");
        let err = without.open(&sealed).expect_err("no k1").to_string();
        assert!(err.contains("\"k1\""), "{err}");
    }

    #[test]
    fn tampering_and_bad_key_files_are_refused() {
        let ring = Keyring::parse(K1).expect("key");
        let mut sealed = ring.seal(Kind::Secret, b"value".to_vec()).expect("seal");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(ring.open(&sealed).is_err());
        assert!(Keyring::parse("").unwrap_err().contains("no key"));
        assert!(Keyring::parse("k1:AAAA").unwrap_err().contains("line 1"));
        assert!(Keyring::parse(&format!("# c\n{K1}\n{K1}"))
            .unwrap_err()
            .contains("line 3"));
    }
}
