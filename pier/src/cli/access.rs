//! Access to the API's TCP listener: `pier token create|list|revoke` manage its bearer tokens,
//! `pier kubeconfig` makes a token and prints a kubeconfig (server, CA data, token) that
//! kubectl and Kubernetes client libraries use as they would a cluster's.

use anyhow::{bail, Context, Result};
use base64::Engine;
use hyper::Method;
use pier_controlplane::api::{encode, Client};
use serde_json::{json, Value};

/// `pier token create NAME`: prints the new token (the only time it is shown).
pub(crate) async fn create(client: &Client, name: &str) -> Result<()> {
    println!("{}", make(client, name).await?);
    Ok(())
}

/// `pier token list`: names and creation times.
pub(crate) async fn list(client: &Client) -> Result<()> {
    let answer = client.call(Method::GET, "/v1/tokens", None).await?;
    println!("{:<32} CREATED", "NAME");
    for token in answer["tokens"].as_array().into_iter().flatten() {
        println!(
            "{:<32} {}",
            token["name"].as_str().unwrap_or(""),
            token["created"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `pier token revoke NAME`: every token of that name stops working at once.
pub(crate) async fn revoke(client: &Client, name: &str) -> Result<()> {
    let answer = client
        .call(
            Method::DELETE,
            &format!("/v1/tokens/{}", encode(name)),
            None,
        )
        .await
        .with_context(|| format!("revoking token {name:?}"))?;
    println!("token/{name} revoked ({})", answer["revoked"]);
    Ok(())
}

/// `pier kubeconfig`: a kubeconfig for the daemon's TCP listener with a new token `name`.
pub(crate) async fn kubeconfig(client: &Client, name: &str, server: Option<&str>) -> Result<()> {
    let status = client.status().await?;
    let (Some(address), Some(ca)) = (status["apiAddress"].as_str(), status["apiCa"].as_str())
    else {
        bail!(
            "the daemon serves no TCP API: start it with --api-listen ADDR (e.g. 127.0.0.1:6443)"
        );
    };
    let server = match server {
        Some(s) => s.to_string(),
        None => format!("https://{}", reachable(address)?),
    };
    let token = make(client, name).await?;
    print!("{}", render(&server, ca, &token, name)?);
    Ok(())
}

async fn make(client: &Client, name: &str) -> Result<String> {
    let answer = client
        .call(Method::POST, "/v1/tokens", Some(&json!({ "name": name })))
        .await
        .with_context(|| format!("creating token {name:?}"))?;
    answer["token"]
        .as_str()
        .map(str::to_string)
        .context("the daemon answered without a token")
}

/// The listener's address as a client dials it: a wildcard address becomes loopback.
fn reachable(address: &str) -> Result<String> {
    let addr: std::net::SocketAddr = address
        .parse()
        .with_context(|| format!("the daemon reported API address {address:?}"))?;
    Ok(match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => format!("127.0.0.1:{}", addr.port()),
        ip if ip.is_unspecified() => format!("[::1]:{}", addr.port()),
        _ => addr.to_string(),
    })
}

/// The kubeconfig YAML: one cluster, one user, one context named `pier`.
fn render(server: &str, ca_pem: &str, token: &str, user: &str) -> Result<String> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config: Value = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "pier", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "pier", "context": {"cluster": "pier", "user": user}}],
        "current-context": "pier",
        "preferences": {},
    });
    serde_yaml_ng::to_string(&config).context("writing the kubeconfig")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_names_server_ca_and_token() {
        let text = render("https://127.0.0.1:6443", "PEM", "pier_x", "me").unwrap();
        let parsed: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(parsed["current-context"], "pier");
        assert_eq!(
            parsed["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(parsed["users"][0]["user"]["token"], "pier_x");
        assert_eq!(reachable("0.0.0.0:6443").unwrap(), "127.0.0.1:6443");
        assert_eq!(reachable("[::]:6443").unwrap(), "[::1]:6443");
    }
}
