//! Published ports (`-p 8080:80`): a host listener forwarding to the container, as docker-proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One published port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Publish {
    /// Host address to listen on.
    pub host_ip: IpAddr,
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
}

impl std::str::FromStr for Publish {
    type Err = Error;

    /// `[ip:]hostPort:containerPort[/tcp]`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "publish {s:?}: {why}; use [ip:]hostPort:containerPort"
            ))
        };
        let (spec, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        if proto != "tcp" {
            return Err(bad("only tcp ports can be published"));
        }
        let (rest, container) = spec.rsplit_once(':').ok_or_else(|| bad("missing ':'"))?;
        let (ip, host) = match rest.rsplit_once(':') {
            Some((ip, host)) => (
                ip.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .map_err(|_| bad("bad host address"))?,
                host,
            ),
            None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), rest),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("ports are 1-65535"))
        };
        Ok(Self {
            host_ip: ip,
            host_port: port(host)?,
            container_port: port(container)?,
        })
    }
}

impl Publish {
    /// Binds the host port and forwards each connection to the container.
    pub(crate) fn spawn(&self, container_ip: Ipv4Addr) -> Result<tokio::task::JoinHandle<()>> {
        let listen = SocketAddr::new(self.host_ip, self.host_port);
        let std_listener = std::net::TcpListener::bind(listen)
            .map_err(|e| Error::Invalid(format!("publishing {listen}: {e}")))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| Error::Invalid(format!("publishing {listen}: {e}")))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| Error::Invalid(format!("publishing {listen}: {e}")))?;
        let target = SocketAddr::new(IpAddr::V4(container_ip), self.container_port);
        Ok(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        if let Err(e) =
                            tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await
                        {
                            tracing::debug!(%target, error = %e, "published port connection ended");
                        }
                    }
                });
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        let p: Publish = "8080:80".parse().unwrap();
        assert_eq!((p.host_port, p.container_port), (8080, 80));
        let p: Publish = "127.0.0.1:8080:80/tcp".parse().unwrap();
        assert_eq!(p.host_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        for bad in ["80", "x:80", "8080:0", "1:2/udp", "1.2.3:1:2"] {
            assert!(bad.parse::<Publish>().is_err(), "{bad}");
        }
    }
}
