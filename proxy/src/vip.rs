//! Service VIPs on a dummy interface (`pier0`), as kube-proxy's IPVS mode does with `kube-ipvs0`,
//! so the node's stack accepts traffic to ClusterIPs and the proxy's listeners receive it.
//!
//! Changes go through one `ip -batch` run per snapshot: a single process for any number of
//! addresses, applied before the snapshot counts as applied.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The dummy interface and the addresses pier put on it.
pub(crate) struct VipInterface {
    name: String,
    assigned: BTreeSet<IpAddr>,
}

fn ip_command() -> Command {
    let path = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ip");
    Command::new(path)
}

fn run_batch(lines: &str) -> Result<()> {
    let mut child = ip_command()
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Vip(format!("running ip: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(lines.as_bytes())
            .map_err(|e| Error::Vip(format!("writing to ip: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Vip(format!("waiting for ip: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Adding an address that exists, or deleting one that is gone, is already the wanted state.
    let real: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !l.contains("File exists")
                && !l.contains("Cannot assign requested address")
                && !l.starts_with("Command failed")
                && !l.trim().is_empty()
        })
        .collect();
    if real.is_empty() {
        Ok(())
    } else {
        Err(Error::Vip(real.join("; ")))
    }
}

fn prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

impl VipInterface {
    /// Creates (or takes over) the dummy interface, brings it up and clears old addresses.
    pub(crate) fn create(name: &str) -> Result<Self> {
        let exists = ip_command()
            .args(["link", "show", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            if let Err(e) = run_batch(&format!("link add {name} type dummy\n")) {
                // Some kernels are built without the dummy driver; a bridge without ports
                // holds local addresses just as well.
                tracing::info!(error = %e, "no dummy interfaces here; using a port-less bridge for VIPs");
                run_batch(&format!("link add {name} type bridge\n"))?;
            }
        }
        run_batch(&format!("link set {name} up\naddress flush dev {name}\n"))?;
        Ok(Self {
            name: name.to_string(),
            assigned: BTreeSet::new(),
        })
    }

    /// Adds `add` and removes `remove`; addresses already in the wanted state are skipped.
    pub(crate) fn change(
        &mut self,
        add: &BTreeSet<IpAddr>,
        remove: &BTreeSet<IpAddr>,
    ) -> Result<()> {
        let mut batch = String::new();
        for ip in add.iter().filter(|ip| !self.assigned.contains(ip)) {
            // An IPv6 VIP skips duplicate address detection, so it serves at once rather than
            // staying tentative for a second.
            let nodad = if ip.is_ipv6() { " nodad" } else { "" };
            batch.push_str(&format!(
                "address add {ip}/{} dev {}{nodad}\n",
                prefix(ip),
                self.name
            ));
        }
        for ip in remove.iter().filter(|ip| self.assigned.contains(ip)) {
            batch.push_str(&format!(
                "address del {ip}/{} dev {}\n",
                prefix(ip),
                self.name
            ));
        }
        if batch.is_empty() {
            return Ok(());
        }
        run_batch(&batch)?;
        self.assigned.extend(add.iter().copied());
        for ip in remove {
            self.assigned.remove(ip);
        }
        Ok(())
    }

    /// Removes the interface and its addresses.
    pub(crate) fn delete(&self) {
        match ip_command()
            .args(["link", "del", &self.name])
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => {
                tracing::warn!(interface = %self.name, status = %s, "VIP interface not deleted")
            }
            Err(e) => {
                tracing::warn!(interface = %self.name, error = %e, "VIP interface not deleted")
            }
        }
    }
}
