//! pier-ebpf: socket-level load balancing on cgroup connect/sendmsg hooks, synced from the node snapshot (not yet implemented).
