//! Bridge networking: `pier-br0`, a veth pair and a named network namespace per container.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::metrics::Report;

/// Bridge settings.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Bridge name.
    pub bridge: String,
    /// Pod subnet; the bridge takes its first address.
    pub subnet: Ipv4Net,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            bridge: "pier-br0".into(),
            subnet: Ipv4Net::new(Ipv4Addr::new(10, 88, 0, 0), 16).unwrap_or_default(),
        }
    }
}

/// Runs `ip` with commands on stdin; the error carries what it printed.
pub(crate) fn ip_batch(netns: Option<&str>, commands: &str) -> Result<()> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Network(format!("running ip: {e} (install iproute2)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(commands.as_bytes())
            .map_err(|e| Error::Network(format!("ip: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Network(format!("ip: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Network(format!(
            "ip {}: {}",
            commands.trim().replace('\n', "; "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether the interface `name` exists in this process's network namespace (asked of the
/// kernel: sysfs shows the namespace it was mounted in, which need not be ours).
fn link_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// The node's pod network.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    /// Set once the bridge is known to be up, so containers after the first spawn no `ip` for it.
    bridge_up: std::sync::atomic::AtomicBool,
    /// Held while the bridge is made: pods starting together would race to create it.
    making_bridge: std::sync::Mutex<()>,
}

/// Names of a container's network objects.
pub fn netns_name(id: &str) -> String {
    format!("pier-{}", &id[..id.len().min(12)])
}

/// The bridge's hardware address: locally administered, unique per gateway address (so per
/// node in a cluster).
fn bridge_mac(gateway: Ipv4Addr) -> String {
    let [a, b, c, d] = gateway.octets();
    format!("02:70:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// A pod's hardware address, derived from its IP as Kubernetes' CNI plugins do (`0a:58:` and
/// the address): a pod that gets the address of one just removed also gets its MAC, so the
/// node's and other pods' neighbour entries for that address stay right instead of pointing
/// at a veth that is gone (seen as a new pod unreachable for ~30 s).
fn pod_mac(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

fn host_veth(id: &str) -> String {
    format!("pv{}", &id[..id.len().min(12)])
}

impl Network {
    /// The network with `config`; nothing is created until [`Network::ensure_bridge`].
    pub fn new(config: NetworkConfig) -> Self {
        Self {
            config,
            bridge_up: false.into(),
            making_bridge: std::sync::Mutex::new(()),
        }
    }

    /// The bridge's address, the pods' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.config.subnet.network()) + 1)
    }

    /// The pod subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.config.subnet
    }

    /// Creates the bridge with the gateway address, if missing.
    pub fn ensure_bridge(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let br = &self.config.bridge;
        // Someone may delete the bridge under a running daemon: the check is one ioctl.
        if self.bridge_up.load(Ordering::Acquire) && link_exists(br) {
            return Ok(());
        }
        let _making = self
            .making_bridge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !link_exists(br) {
            // A fixed address: a bridge otherwise takes the lowest of its ports' addresses,
            // which changes as pods come and go and leaves their neighbours' caches pointing
            // at an address the gateway no longer has.
            ip_batch(
                None,
                &format!(
                    "link add {br} address {} type bridge\n",
                    bridge_mac(self.gateway())
                ),
            )?;
        }
        let cidr = format!("{}/{}", self.gateway(), self.config.subnet.prefix_len());
        let has_addr = Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", br])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("inet {cidr}")))
            .unwrap_or(false);
        if !has_addr {
            ip_batch(None, &format!("addr add {cidr} dev {br}\n"))?;
        }
        ip_batch(None, &format!("link set {br} up\n"))?;
        self.bridge_up.store(true, Ordering::Release);
        Ok(())
    }

    /// The lowest free address of the subnet not in `used` (nor the gateway).
    pub fn allocate(&self, used: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr> {
        let net = self.config.subnet;
        let gw = self.gateway();
        net.hosts()
            .find(|ip| *ip != gw && !used.contains(ip))
            .ok_or_else(|| Error::Network(format!("no free address left in {net}")))
    }

    /// Where the network namespace of container `id` is (once attached).
    pub fn netns_path(id: &str) -> PathBuf {
        PathBuf::from("/var/run/netns").join(netns_name(id))
    }

    /// Creates the container's namespace and veth, with `ip` on `eth0`, `lo` up and a default
    /// route, at [`Network::netns_path`]; the bridge is made first if needed.
    pub fn attach(&self, id: &str, ip: Ipv4Addr) -> Result<()> {
        self.ensure_bridge()?;
        let ns = netns_name(id);
        let veth = host_veth(id);
        let br = &self.config.bridge;
        // A leftover from a crash would make `netns add` fail.
        self.detach(id).report("network-detach", id);
        ip_batch(None, &format!("netns add {ns}\n"))?;
        let result = (|| {
            ip_batch(
                None,
                &format!(
                    "link add {veth} type veth peer name eth0 address {} netns {ns}\nlink set {veth} master {br}\nlink set {veth} up\n",
                    pod_mac(ip)
                ),
            )?;
            ip_batch(
                Some(&ns),
                &format!(
                    "link set lo up\naddr add {ip}/{} dev eth0\nlink set eth0 up\nroute add default via {}\n",
                    self.config.subnet.prefix_len(),
                    self.gateway()
                ),
            )
        })();
        if let Err(e) = result {
            self.detach(id).report("network-detach", id);
            return Err(e);
        }
        Ok(())
    }

    /// Whether the container's namespace is there and plugged into this node's bridge (its
    /// host end exists here): after a reboot, or a node whose namespace was remade, the
    /// namespace may be gone, or left with its veth gone with the old bridge.
    pub fn attached(&self, id: &str) -> bool {
        Self::netns_path(id).exists() && link_exists(&host_veth(id))
    }

    /// Removes the namespace and veth of a container (missing ones are fine).
    pub fn detach(&self, id: &str) -> Result<()> {
        let veth = host_veth(id);
        if link_exists(&veth) {
            ip_batch(None, &format!("link del {veth}\n"))?;
        }
        if Self::netns_path(id).exists() {
            ip_batch(None, &format!("netns del {}\n", netns_name(id)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_address_is_local_unicast_and_follows_the_gateway() {
        assert_eq!(bridge_mac(Ipv4Addr::new(10, 88, 3, 1)), "02:70:0a:58:03:01");
        assert_eq!(pod_mac(Ipv4Addr::new(10, 88, 3, 7)), "0a:58:0a:58:03:07");
    }

    #[test]
    fn allocation_skips_gateway_and_used() {
        let n = Network::new(NetworkConfig::default());
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        let mut used = BTreeSet::new();
        assert_eq!(n.allocate(&used).unwrap(), Ipv4Addr::new(10, 88, 0, 2));
        used.insert(Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(n.allocate(&used).unwrap(), Ipv4Addr::new(10, 88, 0, 3));
        let tiny = Network::new(NetworkConfig {
            bridge: "x".into(),
            subnet: "10.0.0.0/30".parse().unwrap(),
        });
        used.insert(Ipv4Addr::new(10, 0, 0, 2));
        assert!(tiny.allocate(&used).is_err());
    }
}
