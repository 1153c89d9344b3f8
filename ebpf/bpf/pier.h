/* Shared between the kernel programs and pier-ebpf's #[repr(C)] twins (src/maps.rs).
 * Addresses and ports are kept in network byte order, as the sock_addr context has them. */
#ifndef PIER_H
#define PIER_H

#include <linux/types.h>

#define PIER_PROTO_TCP 6
#define PIER_PROTO_UDP 17

/* An IP address in network byte order. IPv4 is held IPv4-mapped (::ffff:a.b.c.d): one set of
 * maps serves both families, and a dual-stack IPv6 socket connecting to a v4-mapped VIP
 * matches the IPv4 service. */
struct pier_ip {
	__u32 a[4];
};

/* A service port: the VIP clients connect to. */
struct pier_svc_key {
	struct pier_ip vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

/* How a service port picks its backend. */
struct pier_svc {
	__u32 id;       /* key prefix of its selection slots */
	__u32 slots;    /* slots in use; 0 = no backend: connect fails with ECONNREFUSED */
	__u32 affinity; /* ClientIP affinity timeout in seconds; 0 = none */
	__u32 pad;
};

/* ClientIP affinity: a client (its network namespace, as Cilium keys socket-LB affinity)
 * keeps its backend for a service port while it uses it within the timeout, and while the
 * service's backend set is the one it was picked from (svc_id is that set's generation). */
struct pier_affinity_key {
	__u64 netns;
	struct pier_svc_key svc;
	__u32 pad;
};

struct pier_affinity {
	__u64 last_ns;
	__u32 backend_id;
	__u32 svc_id;
};

/* One selection slot of a service: weights are laid out as slot counts. */
struct pier_slot_key {
	__u32 svc_id;
	__u32 slot;
};

struct pier_backend {
	struct pier_ip addr;
	__u16 port;
	__u16 pad;
};

/* Reverse translation of unconnected UDP: which VIP a socket's backend stands for. */
struct pier_revnat_key {
	__u64 cookie;
	struct pier_ip addr;
	__u16 port;
	__u16 pad;
	__u32 pad2;
};

struct pier_revnat {
	struct pier_ip vip;
	__u16 port;
	__u16 pad;
};

/* Reverse translation of a connected socket (TCP, connected UDP): the backend it was sent
 * to and the VIP that stands for it. */
struct pier_sock_nat {
	struct pier_ip backend;
	struct pier_ip vip;
	__u16 backend_port;
	__u16 vip_port;
};

/* Slots of the connected-socket table, indexed by socket cookie modulo this (a power of 2). */
#define PIER_CONN_SLOTS (1 << 18)

/* One slot: the socket (cookie; 0 = free) that holds it, and its translation. A socket
 * claims its slot at connect and frees it at release; a socket whose slot is held by another
 * live socket keeps its translation in its own socket storage instead. */
struct pier_conn_nat {
	__u64 cookie;
	struct pier_sock_nat nat;
};

/* Per-CPU counters of a service port (summed by pier for pier_ebpf_* metrics). */
struct pier_svc_stats {
	__u64 connects;   /* translated connects and datagrams */
	__u64 refused;    /* refused: no backend */
};

/* Per-CPU counters of how a backend's translated TCP connections ended badly. */
struct pier_backend_fails {
	__u64 connect_failures; /* never established: refused (RST) or timed out */
	__u64 resets;           /* established, then closed at once by a reset */
};

/* The identity of the store whose snapshots wrote the pinned maps: a daemon adopts pins only
 * when it is the same store's, and replaces them otherwise. Written by userspace only. */
struct pier_owner {
	__u8 id[16];
};

#endif
