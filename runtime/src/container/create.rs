//! Creating a container: its record (reserving the name), rootfs, `/etc` files, network and
//! OCI spec, all undone if one step fails.
use std::fs;
use std::net::Ipv4Addr;

use super::now;
use super::{lock, new_id, spec, users, ContainerConfig, ContainerRecord, Engine, State};
use crate::error::{Error, IoContext, Result};
use crate::image::{write_atomic, ImageRecord};
use crate::network::Network;

impl Engine {
    /// Creates a container (rootfs, spec, network) without starting it. `ip` is its address;
    /// `None` keeps it off the network (loopback only).
    pub fn create(&self, config: ContainerConfig, ip: Option<Ipv4Addr>) -> Result<ContainerRecord> {
        let name_ok = !config.name.is_empty()
            && config.name.len() <= 128
            && config
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(Error::Invalid(format!(
                "container name {:?}: use letters, digits, '-', '_' and '.'",
                config.name
            )));
        }
        let image = self.images.resolve(&config.image)?;
        let id = new_id();
        {
            let mut records = lock(&self.records);
            if records.values().any(|r| r.config.name == config.name) {
                return Err(Error::Exists(format!("container name {:?}", config.name)));
            }
            // Reserves the name while the rest is set up.
            records.insert(
                id.clone(),
                ContainerRecord {
                    id: id.clone(),
                    config: config.clone(),
                    image: image.reference.clone(),
                    image_id: image.id.clone(),
                    ip,
                    state: State::Created,
                    pid: None,
                    shim: None,
                    created_at: now(),
                    started_at: None,
                    exit: None,
                    restart_count: 0,
                    stopped_by_user: false,
                },
            );
        }
        let result = self.prepare(&id, &config, &image, ip);
        let record = lock(&self.records).get(&id).cloned();
        match (result, record) {
            (Ok(()), Some(record)) => {
                self.save(&record)?;
                Ok(record)
            }
            (Err(e), _) => {
                self.teardown(&id);
                lock(&self.records).remove(&id);
                Err(e)
            }
            (Ok(()), None) => Err(Error::Runtime("container vanished while created".into())),
        }
    }

    /// Rootfs, `/etc` files, network and `config.json` of a new container.
    pub(super) fn prepare(
        &self,
        id: &str,
        config: &ContainerConfig,
        image: &ImageRecord,
        ip: Option<Ipv4Addr>,
    ) -> Result<()> {
        let dir = self.dir(id);
        for d in ["upper", "work", "rootfs", "etc"] {
            fs::create_dir_all(dir.join(d)).at(dir.join(d))?;
        }
        // The layers first (unpacked once per image and kept): user and group names mean what
        // their passwd and group files say. Then the whole spec, validated before the rootfs is
        // mounted or the network made; the netns path is known before the namespace exists.
        let netns = ip.map(|_| Network::netns_path(id));
        let etc = dir.join("etc");
        let layers = self.images.layer_dirs(image)?;
        let mut config = config.clone();
        if let Some(user) = config.user.clone().or(image.run.user.clone()) {
            if !user.is_empty() {
                let (uid, gid) = users::resolve(&user, &layers)?;
                config.user = Some(format!("{uid}:{gid}"));
            }
        }
        let spec = spec::build(
            id,
            &config,
            &image.run,
            &dir.join("rootfs"),
            netns.as_deref(),
            Some(&etc),
        )?;
        self.mount_rootfs(&dir, &layers)?;
        let hostname = config
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        let ip_line = ip
            .map(|ip| format!("{ip}\t{hostname}\n"))
            .unwrap_or_default();
        fs::write(etc.join("hostname"), format!("{hostname}\n")).at(etc.join("hostname"))?;
        fs::write(
            etc.join("hosts"),
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip_line}"),
        )
        .at(etc.join("hosts"))?;
        fs::write(etc.join("resolv.conf"), self.resolv_conf()).at(etc.join("resolv.conf"))?;
        if let Some(ip) = ip {
            self.network.attach(id, ip)?;
        }
        let data = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Runtime(e.to_string()))?;
        write_atomic(&dir.join("config.json"), &data)
    }

    pub(super) fn resolv_conf(&self) -> String {
        if let Some(r) = &self.config.resolv_conf {
            return r.clone();
        }
        let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        // The host's loopback resolvers are not reachable from a container's namespace.
        host.lines()
            .filter(|l| {
                !l.split_whitespace().nth(1).is_some_and(|a| {
                    l.starts_with("nameserver")
                        && a.parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                })
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }
}
