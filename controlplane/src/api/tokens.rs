//! Bearer tokens for the API's TCP listener: named, created and revoked through the control
//! socket (`pier token create|list|revoke`), kept in one 0600 file under the state dir as
//! SHA-256 digests only, so the file never holds a usable token. Written whole to a temporary
//! file, synced and renamed, so a crash leaves the old list or the new one.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;
/// What every token starts with, so one is recognisable in a leaked file or log.
const PREFIX: &str = "pier_";

/// One token as kept: its name, digest and creation time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenInfo {
    /// The name it was created under.
    pub name: String,
    /// Hex SHA-256 of the token.
    #[serde(rename = "sha256")]
    digest: String,
    /// RFC 3339 creation time.
    pub created: String,
}

/// The tokens the TCP listener accepts.
pub struct Tokens {
    path: PathBuf,
    list: Mutex<Vec<TokenInfo>>,
}

impl Tokens {
    /// Opens the token file at `path` (none yet is an empty list).
    pub fn open(path: &Path) -> Result<Tokens> {
        let list = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::store(format!("{}: not a token list: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::store_from(format!("reading {}", path.display()), e)),
        };
        Ok(Tokens {
            path: path.to_path_buf(),
            list: Mutex::new(list),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TokenInfo>> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `token` is one of the accepted tokens; the name it was created under if so.
    pub fn check(&self, token: &str) -> Option<String> {
        let digest = digest(token);
        self.lock()
            .iter()
            .find(|t| t.digest == digest)
            .map(|t| t.name.clone())
    }

    /// Makes a new token named `name`; returns the token, which is not kept anywhere.
    pub fn create(&self, name: &str) -> Result<String> {
        validate_name(name)?;
        let token = generate()?;
        let mut list = self.lock();
        let mut next = list.clone();
        next.push(TokenInfo {
            name: name.to_string(),
            digest: digest(&token),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        });
        self.save(&next)?;
        *list = next;
        Ok(token)
    }

    /// The tokens, without their values.
    pub fn list(&self) -> Vec<TokenInfo> {
        self.lock().clone()
    }

    /// Revokes every token named `name`; how many there were.
    pub fn revoke(&self, name: &str) -> Result<usize> {
        let mut list = self.lock();
        let next: Vec<TokenInfo> = list.iter().filter(|t| t.name != name).cloned().collect();
        let revoked = list.len() - next.len();
        if revoked == 0 {
            return Err(Error::NotFound {
                kind: "token".into(),
                namespace: String::new(),
                name: name.into(),
            });
        }
        self.save(&next)?;
        *list = next;
        Ok(revoked)
    }

    fn save(&self, list: &[TokenInfo]) -> Result<()> {
        let io = |what: &str, e: std::io::Error| {
            Error::store_from(format!("{what} {}", self.path.display()), e)
        };
        let bytes = serde_json::to_vec_pretty(list)?;
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("creating", e))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("chmod", e))?;
        file.write_all(&bytes).map_err(|e| io("writing", e))?;
        file.sync_all().map_err(|e| io("syncing", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io("renaming onto", e))?;
        Ok(())
    }
}

/// A new random token.
pub(crate) fn generate() -> Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::store(format!("no randomness for a token: {e}")))?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Hex SHA-256 of a token.
pub(crate) fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A token name is a DNS label-like word: what `pier token list` shows and `revoke` takes.
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "token name {name:?}: 1-63 letters, digits, '-', '_' or '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_check_revoke_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let tokens = Tokens::open(&path).unwrap();
        let a = tokens.create("alice").unwrap();
        let b = tokens.create("bob").unwrap();
        assert!(a.starts_with(PREFIX) && a != b);
        assert_eq!(tokens.check(&a).as_deref(), Some("alice"));
        assert_eq!(tokens.check("pier_wrong"), None);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&a), "the file holds digests only");
        assert_eq!(tokens.revoke("alice").unwrap(), 1);
        assert!(tokens.revoke("alice").is_err());
        let reopened = Tokens::open(&path).unwrap();
        assert_eq!(reopened.check(&a), None);
        assert_eq!(reopened.check(&b).as_deref(), Some("bob"));
        assert!(tokens.create("no spaces").is_err());
    }
}
