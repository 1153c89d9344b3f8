//! Registry credentials from Docker config files (a `kubernetes.io/dockerconfigjson` Secret's
//! `.dockerconfigjson`, or the older `.dockercfg`), matched to an image as the kubelet's
//! credential keyring matches them: by registry host (a `*.` wildcard allowed), the entry
//! with the longest repository path prefix first.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

/// One config's entries: (host, repository path prefix) → credentials.
#[derive(Debug, Default, Clone)]
pub struct DockerConfig {
    entries: Vec<(String, String, Credentials)>,
}

/// Docker Hub's many names, as one.
fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

/// `https://index.docker.io/v1/` or `registry:5000/team` → (host, path prefix).
fn split_key(key: &str) -> (String, String) {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/');
    // Docker's legacy `/v1/` suffix names the registry, not a repository.
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path
    };
    (canonical_host(host), path.to_string())
}

/// The entry's credentials; `None` for an empty entry (`docker login` with a credential
/// helper leaves one, holding nothing).
fn credentials(key: &str, entry: Entry) -> Result<Option<Credentials>, String> {
    if entry.auth.is_none() && entry.username.is_none() && entry.password.is_none() {
        return Ok(None);
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        if !username.is_empty() {
            return Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }));
        }
    }
    let auth = entry
        .auth
        .ok_or_else(|| format!("auths[{key}]: neither auth nor username and password"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("auths[{key}].auth: not base64: {e}"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| format!("auths[{key}].auth: not UTF-8"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| format!("auths[{key}].auth: not user:password"))?;
    Ok(Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

impl DockerConfig {
    /// Reads `.dockerconfigjson` (`{"auths": {...}}`) or, with `legacy`, `.dockercfg` (the
    /// entries at the top level).
    pub fn parse(bytes: &[u8], legacy: bool) -> Result<Self, String> {
        let auths = if legacy {
            serde_json::from_slice::<BTreeMap<String, Entry>>(bytes)
        } else {
            serde_json::from_slice::<ConfigJson>(bytes).map(|c| c.auths)
        }
        .map_err(|e| format!("not a Docker config: {e}"))?;
        let mut entries = Vec::new();
        for (key, entry) in auths {
            let Some(creds) = credentials(&key, entry)? else {
                continue;
            };
            let (host, path) = split_key(&key);
            entries.push((host, path, creds));
        }
        Ok(Self { entries })
    }

    /// The credentials for `repository` on `registry` (`host[:port]`), if an entry matches.
    pub fn find(&self, registry: &str, repository: &str) -> Option<(usize, &Credentials)> {
        let registry = canonical_host(registry);
        self.entries
            .iter()
            .filter(|(host, _, _)| host_matches(host, &registry))
            .filter(|(_, path, _)| {
                path.is_empty()
                    || repository == path
                    || repository
                        .strip_prefix(path.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(|(_, path, creds)| (path.len(), creds))
            .max_by_key(|(len, _)| *len)
    }
}

/// Whether a config's host (`*.example.com` allowed, a port only when given) names `registry`.
fn host_matches(pattern: &str, registry: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return registry
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.') && !head[..head.len() - 1].contains('.'));
    }
    pattern == registry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn entries_match_by_host_wildcard_and_longest_path() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "127.0.0.1:5000": {{"username": "u", "password": "p"}},
                "127.0.0.1:5000/team": {{"auth": "{}"}},
                "*.corp.example": {{"auth": "{}"}}
            }}}}"#,
            b64("hub:secret"),
            b64("team:pw:with:colons"),
            b64("corp:x")
        );
        let config = DockerConfig::parse(json.as_bytes(), false).unwrap();
        let user = |reg: &str, repo: &str| config.find(reg, repo).map(|(_, c)| c.username.clone());
        assert_eq!(user("docker.io", "library/nginx").as_deref(), Some("hub"));
        assert_eq!(user("127.0.0.1:5000", "app").as_deref(), Some("u"));
        assert_eq!(user("127.0.0.1:5000", "team/app").as_deref(), Some("team"));
        assert_eq!(user("127.0.0.1:5000", "teamwork/app").as_deref(), Some("u"));
        assert_eq!(user("r.corp.example", "x").as_deref(), Some("corp"));
        assert_eq!(user("a.b.corp.example", "x"), None);
        assert_eq!(user("127.0.0.1:5001", "app"), None);
        let (_, team) = config.find("127.0.0.1:5000", "team/app").unwrap();
        assert_eq!(team.password, "pw:with:colons");
    }

    #[test]
    fn legacy_and_bad_configs() {
        let legacy = format!(r#"{{"registry.example": {{"auth": "{}"}}}}"#, b64("a:b"));
        let config = DockerConfig::parse(legacy.as_bytes(), true).unwrap();
        assert!(config.find("registry.example", "x").is_some());
        let e = DockerConfig::parse(br#"{"auths": {"r": {"auth": "%%"}}}"#, false).unwrap_err();
        assert!(e.contains("auths[r].auth"), "{e}");
        let e = DockerConfig::parse(br#"{"auths": {"r": {"username": "u"}}}"#, false).unwrap_err();
        assert!(e.contains("auths[r]"), "{e}");
        // A credential helper's placeholder holds nothing and is passed over.
        let helper = br#"{"auths": {"r": {}}, "credsStore": "pass"}"#;
        assert!(DockerConfig::parse(helper, false)
            .unwrap()
            .find("r", "x")
            .is_none());
        assert!(DockerConfig::parse(b"{", false).is_err());
        let hidden = format!(
            "{:?}",
            Credentials {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert!(!hidden.contains("\"p\""), "{hidden}");
    }
}
