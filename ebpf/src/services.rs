//! How a service is written to the BPF maps: backends by reference count, then a new slot
//! table, then the service entry swapped last (a half-written one is taken back), and the
//! old slots freed. The one file that decides how a service is written.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use pier_snapshot::weights::SlotTable;

use crate::maps::{Backend, SlotKey, Svc, SvcKey};
use crate::{hash_map, map_err, removed, Error, Installed, Result, ServiceAddr, SocketLb};

fn slot_key(svc_id: u32, slot: u32) -> SlotKey {
    SlotKey { svc_id, slot }
}

/// The map key of a service port.
pub fn svc_key(s: &ServiceAddr) -> SvcKey {
    SvcKey::new(s.addr.ip(), s.addr.port(), s.proto)
}

impl SocketLb {
    fn backend_id(&mut self, addr: SocketAddr) -> Result<u32> {
        if let Some((id, refs)) = self.backend_ids.get_mut(&addr) {
            *refs += 1;
            return Ok(*id);
        }
        let id = self.next_backend;
        self.next_backend += 1;
        hash_map::<u32, Backend>(&mut self.ebpf, "pier_backends")?
            .insert(id, Backend::from(addr), 0)
            .map_err(map_err("pier_backends"))?;
        self.backend_ids.insert(addr, (id, 1));
        if let Ok(mut b) = self.inventory.backends.write() {
            b.insert(id, addr);
        }
        Ok(id)
    }

    fn release_backend(&mut self, addr: SocketAddr) -> Result<()> {
        let Some((id, refs)) = self.backend_ids.get_mut(&addr) else {
            return Ok(());
        };
        *refs -= 1;
        if *refs > 0 {
            return Ok(());
        }
        let id = *id;
        self.backend_ids.remove(&addr);
        removed(
            "pier_backends",
            hash_map::<u32, Backend>(&mut self.ebpf, "pier_backends")?.remove(&id),
        )?;
        if let Ok(mut b) = self.inventory.backends.write() {
            b.remove(&id);
        }
        Ok(())
    }

    /// Points `service` at `backends` split by weight (no backend, or all weights zero:
    /// connections are refused), with ClientIP affinity for `affinity` seconds (0: none).
    /// Backends and slots are written first, the service entry is swapped last, and the old
    /// slots are freed after, so no lookup sees a partial service.
    pub fn set_service(
        &mut self,
        service: ServiceAddr,
        backends: &[(SocketAddr, u32)],
        affinity: u32,
    ) -> Result<()> {
        let table = SlotTable::new(&backends.iter().map(|(_, w)| *w).collect::<Vec<_>>());
        let addrs: Vec<SocketAddr> = backends.iter().map(|(a, _)| *a).collect();
        let mut ids = Vec::with_capacity(backends.len());
        for addr in &addrs {
            match self.backend_id(*addr) {
                Ok(id) => ids.push(id),
                Err(e) => return Err(self.undo(0, 0, &addrs[..ids.len()], e)),
            }
        }
        let id = self.next_service;
        self.next_service = self.next_service.wrapping_add(1).max(1);
        let slots = u32::try_from(table.len()).unwrap_or(0);
        let value = Svc {
            id,
            slots,
            affinity,
            pad: 0,
        };
        let mut written = 0;
        if let Err(e) = self.write_service(service, value, &table, &ids, &mut written) {
            return Err(self.undo(id, written, &addrs, e));
        }
        self.inventory
            .slots
            .fetch_add(table.len(), Ordering::Relaxed);
        let installed = Installed {
            id,
            slots,
            backends: addrs,
        };
        match self.services.insert(service, installed) {
            Some(old) => self.free(old)?,
            None => {
                self.inventory.services.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Writes the slots of `value` (counting them in `written`), then swaps the service entry.
    fn write_service(
        &mut self,
        service: ServiceAddr,
        value: Svc,
        table: &SlotTable,
        ids: &[u32],
        written: &mut u32,
    ) -> Result<()> {
        let mut slots = hash_map::<SlotKey, u32>(&mut self.ebpf, "pier_slots")?;
        for (slot, group) in table.slots().enumerate() {
            let key = slot_key(value.id, u32::try_from(slot).unwrap_or(u32::MAX));
            slots
                .insert(key, ids[group], 0)
                .map_err(map_err("pier_slots"))?;
            *written += 1;
        }
        hash_map::<SvcKey, Svc>(&mut self.ebpf, "pier_services")?
            .insert(svc_key(&service), value, 0)
            .map_err(map_err("pier_services"))
    }

    /// Takes back a half-written service (its first `slots` slots and its backend references)
    /// so a failed update leaves the service as it was; returns `error`.
    fn undo(&mut self, svc_id: u32, slots: u32, backends: &[SocketAddr], error: Error) -> Error {
        if let Ok(mut map) = hash_map::<SlotKey, u32>(&mut self.ebpf, "pier_slots") {
            for slot in 0..slots {
                if let Err(e) = removed("pier_slots", map.remove(&slot_key(svc_id, slot))) {
                    tracing::warn!(service = svc_id, slot, error = %e, "undoing a half-written service");
                }
            }
        }
        for addr in backends {
            if let Err(e) = self.release_backend(*addr) {
                tracing::warn!(service = svc_id, backend = %addr, error = %e, "undoing a half-written service");
            }
        }
        error
    }

    /// Removes a service: connections to its VIP are no longer translated.
    pub fn remove_service(&mut self, service: ServiceAddr) -> Result<()> {
        removed(
            "pier_services",
            hash_map::<SvcKey, Svc>(&mut self.ebpf, "pier_services")?.remove(&svc_key(&service)),
        )?;
        if let Some(old) = self.services.remove(&service) {
            self.inventory.services.fetch_sub(1, Ordering::Relaxed);
            self.free(old)?;
        }
        Ok(())
    }

    fn free(&mut self, old: Installed) -> Result<()> {
        let mut slots = hash_map::<SlotKey, u32>(&mut self.ebpf, "pier_slots")?;
        for slot in 0..old.slots {
            // The service entry no longer points here: a slot left behind is unreachable,
            // so the rest is freed anyway and the failure only logged.
            if let Err(e) = removed("pier_slots", slots.remove(&slot_key(old.id, slot))) {
                tracing::warn!(service = old.id, slot, error = %e, "freeing an old slot");
            }
        }
        self.inventory
            .slots
            .fetch_sub(old.slots as usize, Ordering::Relaxed);
        for addr in old.backends {
            self.release_backend(addr)?;
        }
        Ok(())
    }
}
