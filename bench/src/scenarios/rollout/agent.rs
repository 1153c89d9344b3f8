//! A stand-in node agent for the rollout benchmark, so it needs no root and sends nothing off
//! loopback: every pod of the namespace gets a `pier echo` process on its own loopback
//! address (HTTP on 8080, a TCP banner on 9000, named after its image tag), and is then
//! marked running and ready with that address, as the engine would mark it.

use std::collections::HashMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pier_controlplane::api::Client;
use pier_model::Kind;
use serde_json::{json, Value};

use crate::harness::pier_binary;

/// The echo processes by pod name; killed on drop.
#[derive(Default)]
pub(crate) struct Agent {
    echoes: HashMap<String, Child>,
    next: u32,
}

impl Drop for Agent {
    fn drop(&mut self) {
        for (_, mut child) in self.echoes.drain() {
            if let Err(e) = child.kill().and_then(|()| child.wait().map(|_| ())) {
                eprintln!("an echo process was already gone: {e}");
            }
        }
    }
}

impl Agent {
    /// One pass: pods without an address get an echo and become ready; the echoes of pods
    /// marked for deletion or gone are stopped.
    pub(crate) async fn sync(&mut self, client: &Client, namespace: &str) -> Result<()> {
        let pods = client.list(Kind::Pod, Some(namespace), None).await?;
        let mut live = Vec::new();
        for mut pod in pods {
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            live.push(name.clone());
            if !pod["status"]["podIP"].is_null() {
                continue;
            }
            let ip = self.start_echo(&name, &pod)?;
            pod["status"] = json!({
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
            });
            client
                .apply(vec![pod])
                .await
                .context("marking a pod ready")?;
        }
        let gone: Vec<String> = self
            .echoes
            .keys()
            .filter(|n| !live.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(mut child) = self.echoes.remove(&name) {
                child.kill().context("stopping an echo")?;
                child.wait().context("reaping an echo")?;
            }
        }
        Ok(())
    }

    /// Starts the pod's echo on the next loopback address; the address.
    fn start_echo(&mut self, name: &str, pod: &Value) -> Result<String> {
        self.next += 1;
        let ip = format!("127.93.{}.{}", self.next / 250, self.next % 250 + 1);
        let image = pod["spec"]["containers"][0]["image"].as_str().unwrap_or("");
        let version = image.rsplit(':').next().unwrap_or("none");
        let child = Command::new(pier_binary()?)
            .args([
                "echo",
                "--http",
                &format!("{ip}:8080"),
                "--tcp",
                &format!("{ip}:9000"),
            ])
            .args(["--tcp-banner", "--name", version, "--version", version])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pier echo")?;
        self.echoes.insert(name.to_string(), child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((ip.as_str(), 9000)).is_err() {
            if Instant::now() > deadline {
                bail!("pier echo on {ip} did not listen");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(ip)
    }
}
