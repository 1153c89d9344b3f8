//! The control API's routes: one table from paths to endpoints (matchit, the router axum
//! uses), percent-decoding of path parameters and query strings, and the verb each endpoint
//! is counted under.

use std::collections::HashMap;
use std::sync::LazyLock;

use hyper::Method;
use percent_encoding::percent_decode_str;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET /v1/status`.
    Status,
    /// `GET /v1/snapshot`.
    Snapshot,
    /// `POST /v1/apply`.
    Apply,
    /// `GET /v1/watch`.
    Watch,
    /// `GET /v1/<resource>`.
    List { resource: String },
    /// `GET /v1/<resource>/<namespace>/<name>`.
    Get {
        resource: String,
        namespace: String,
        name: String,
    },
    /// `DELETE /v1/<resource>/<namespace>/<name>`.
    Delete {
        resource: String,
        namespace: String,
        name: String,
    },
    /// `/v1/<resource>/...` of a resource another part of the daemon serves: the decoded
    /// segments after `/v1/`.
    Extension(Vec<String>),
    /// `GET|POST /v1/tokens`: list or create the TCP listener's bearer tokens.
    Tokens,
    /// `DELETE /v1/tokens/<name>`.
    RevokeToken { name: String },
    /// Nothing here.
    NotFound,
}

impl Endpoint {
    /// The `verb` label of `pier_api_requests_total`.
    pub(crate) fn verb(&self) -> &'static str {
        match self {
            Endpoint::Status => "status",
            Endpoint::Snapshot => "snapshot",
            Endpoint::Apply => "apply",
            Endpoint::Watch => "watch",
            Endpoint::List { .. } => "list",
            Endpoint::Get { .. } => "get",
            Endpoint::Delete { .. } => "delete",
            Endpoint::Extension(_) => "extension",
            Endpoint::Tokens => "tokens",
            Endpoint::RevokeToken { .. } => "revoke-token",
            Endpoint::NotFound => "other",
        }
    }
}

#[derive(Clone, Copy)]
enum Path {
    Status,
    Snapshot,
    Apply,
    Watch,
    Collection,
    Object,
    Tokens,
    Token,
}

static ROUTER: LazyLock<matchit::Router<Path>> = LazyLock::new(|| {
    let mut router = matchit::Router::new();
    for (path, value) in [
        ("/v1/status", Path::Status),
        ("/v1/snapshot", Path::Snapshot),
        ("/v1/apply", Path::Apply),
        ("/v1/watch", Path::Watch),
        ("/v1/tokens", Path::Tokens),
        ("/v1/tokens/{name}", Path::Token),
        ("/v1/{resource}", Path::Collection),
        ("/v1/{resource}/{namespace}/{name}", Path::Object),
    ] {
        if let Err(e) = router.insert(path, value) {
            tracing::error!(path, error = %e, "control API route not added");
        }
    }
    router
});

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Which endpoint `method` on `path` is; `extension` says which resources another part serves.
pub(crate) fn resolve(method: &Method, path: &str, extension: impl Fn(&str) -> bool) -> Endpoint {
    let segments: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    if let [v1, resource, ..] = segments.as_slice() {
        if v1 == "v1" && extension(resource) {
            return Endpoint::Extension(segments[1..].to_vec());
        }
    }
    let Ok(found) = ROUTER.at(path) else {
        return Endpoint::NotFound;
    };
    let param = |name: &str| found.params.get(name).map(decode).unwrap_or_default();
    match (*found.value, method) {
        (Path::Status, &Method::GET) => Endpoint::Status,
        (Path::Snapshot, &Method::GET) => Endpoint::Snapshot,
        (Path::Apply, &Method::POST) => Endpoint::Apply,
        (Path::Watch, &Method::GET) => Endpoint::Watch,
        (Path::Collection, &Method::GET) => Endpoint::List {
            resource: param("resource"),
        },
        (Path::Object, &Method::GET) => Endpoint::Get {
            resource: param("resource"),
            namespace: param("namespace"),
            name: param("name"),
        },
        (Path::Tokens, &Method::GET | &Method::POST) => Endpoint::Tokens,
        (Path::Token, &Method::DELETE) => Endpoint::RevokeToken {
            name: param("name"),
        },
        (Path::Object, &Method::DELETE) => Endpoint::Delete {
            resource: param("resource"),
            namespace: param("namespace"),
            name: param("name"),
        },
        _ => Endpoint::NotFound,
    }
}

/// The query string's parameters, decoded (`+` is a space, as in forms).
pub(crate) fn query(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_decode_and_verbs() {
        let none = |_: &str| false;
        assert_eq!(resolve(&Method::GET, "/v1/status", none), Endpoint::Status);
        assert_eq!(
            resolve(&Method::GET, "/v1/services/my%2Dns/web", none),
            Endpoint::Get {
                resource: "services".into(),
                namespace: "my-ns".into(),
                name: "web".into()
            }
        );
        assert_eq!(
            resolve(&Method::DELETE, "/v1/pods/default/a", none).verb(),
            "delete"
        );
        assert_eq!(
            resolve(&Method::POST, "/v1/status", none),
            Endpoint::NotFound
        );
        assert_eq!(resolve(&Method::GET, "/v2/x", none), Endpoint::NotFound);
        assert_eq!(
            resolve(&Method::GET, "/v1/containers/abc/logs", |r| r
                == "containers"),
            Endpoint::Extension(vec!["containers".into(), "abc".into(), "logs".into()])
        );
        let q = query(Some(
            "labelSelector=app%3Dweb%2Ctier&x=a+b&bad=%zz%&=ignored",
        ));
        assert_eq!(q["labelSelector"], "app=web,tier");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["bad"], "%zz%");
        assert_eq!(q.len(), 3);
    }
}
