// SPDX-License-Identifier: GPL-2.0
/* Socket-level load balancing (Cilium's socket-LB design): connect and sendmsg rewrite a
 * service VIP to a backend picked from the service's weighted slots; getpeername and recvmsg
 * translate the backend back, so the application only ever sees the VIP. Each hook exists
 * for IPv4 and IPv6 sockets; both share the maps, whose addresses are IPv6 or IPv4-mapped. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "pier.h"

#define ECONNREFUSED 111

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct pier_svc_key);
	__type(value, struct pier_svc);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1048576);
	__type(key, struct pier_slot_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct pier_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct pier_revnat_key);
	__type(value, struct pier_revnat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PIER_CONN_SLOTS);
	__type(key, __u32);
	__type(value, struct pier_conn_nat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_conn_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pier_sock_nat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_sock_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct pier_affinity_key);
	__type(value, struct pier_affinity);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_affinity SEC(".maps");

/* The node's own addresses: NodePorts answer on each of them (and on loopback). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct pier_ip);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_node_ips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct pier_svc_key);
	__type(value, struct pier_svc_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct pier_backend);	/* the backend's address */
	__type(value, struct pier_backend_fails);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_backend_fails SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pier_owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_owner SEC(".maps");

static __always_inline struct pier_svc_stats *svc_stats(struct pier_svc_key *key)
{
	struct pier_svc_stats *st = bpf_map_lookup_elem(&pier_svc_stats, key);
	if (st)
		return st;
	struct pier_svc_stats zero = {};
	bpf_map_update_elem(&pier_svc_stats, key, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&pier_svc_stats, key);
}

static __always_inline void count_backend(__u32 id)
{
	__u64 *n = bpf_map_lookup_elem(&pier_backend_stats, &id);
	if (n) {
		*n += 1;
		return;
	}
	__u64 one = 1;
	bpf_map_update_elem(&pier_backend_stats, &id, &one, BPF_NOEXIST);
}

/* The destination (or, on receive, source) address of ctx. */
static __always_inline void ctx_ip(struct bpf_sock_addr *ctx, int v6, struct pier_ip *ip)
{
	if (v6) {
		ip->a[0] = ctx->user_ip6[0];
		ip->a[1] = ctx->user_ip6[1];
		ip->a[2] = ctx->user_ip6[2];
		ip->a[3] = ctx->user_ip6[3];
	} else {
		ip->a[0] = 0;
		ip->a[1] = 0;
		ip->a[2] = bpf_htonl(0xffff);
		ip->a[3] = ctx->user_ip4;
	}
}

static __always_inline int is_v4_mapped(const struct pier_ip *ip)
{
	return ip->a[0] == 0 && ip->a[1] == 0 && ip->a[2] == bpf_htonl(0xffff);
}

/* Sets ctx's address; an IPv4 socket cannot take an IPv6 one (0 then, and ctx is unchanged). */
static __always_inline int set_ctx_ip(struct bpf_sock_addr *ctx, int v6, const struct pier_ip *ip)
{
	if (v6) {
		ctx->user_ip6[0] = ip->a[0];
		ctx->user_ip6[1] = ip->a[1];
		ctx->user_ip6[2] = ip->a[2];
		ctx->user_ip6[3] = ip->a[3];
		return 1;
	}
	if (!is_v4_mapped(ip))
		return 0;
	ctx->user_ip4 = ip->a[3];
	return 1;
}

static __always_inline int is_loopback(const struct pier_ip *ip)
{
	if (is_v4_mapped(ip))
		return (bpf_ntohl(ip->a[3]) >> 24) == 127;
	return ip->a[0] == 0 && ip->a[1] == 0 && ip->a[2] == 0 && ip->a[3] == bpf_htonl(1);
}

/* The backend a client used for this service within the affinity timeout, if it still exists. */
static __always_inline struct pier_backend *affine(struct pier_svc *svc, struct pier_affinity_key *ak,
						   __u64 now, __u32 *id)
{
	struct pier_affinity *a = bpf_map_lookup_elem(&pier_affinity, ak);
	if (!a || a->svc_id != svc->id || now - a->last_ns > (__u64)svc->affinity * 1000000000ULL)
		return 0;
	struct pier_backend *be = bpf_map_lookup_elem(&pier_backends, &a->backend_id);
	if (be) {
		a->last_ns = now;
		*id = a->backend_id;
	}
	return be;
}

/* The slot of the connected-socket table for a socket cookie. */
static __always_inline struct pier_conn_nat *conn_slot(__u64 cookie)
{
	__u32 idx = (__u32)cookie & (PIER_CONN_SLOTS - 1);
	return bpf_map_lookup_elem(&pier_conn_nat, &idx);
}

/* Remembers which VIP the backend `to` stands for on this socket: for a connect, in the
 * socket's slot of the connected-socket table (no allocation, no lock) or, if another live
 * socket holds that slot, in the socket's own storage; for an unconnected datagram (one
 * socket, many VIPs), in the revnat map. */
static __always_inline void remember(struct bpf_sock_addr *ctx, int connected, const struct pier_ip *to,
				     __u16 to_port, const struct pier_ip *vip, __u16 vip_port)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	if (connected) {
		struct pier_sock_nat *nat = 0;
		struct pier_conn_nat *slot = conn_slot(cookie);
		if (slot) {
			__u64 held = __sync_val_compare_and_swap(&slot->cookie, 0, cookie);
			if (held == 0 || held == cookie)
				nat = &slot->nat;
		}
		if (!nat) {
			struct bpf_sock *sk = ctx->sk;
			if (!sk)
				return;
			nat = bpf_sk_storage_get(&pier_sock_nat, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
			if (!nat)
				return;
		}
		nat->backend = *to;
		nat->vip = *vip;
		nat->backend_port = to_port;
		nat->vip_port = vip_port;
		return;
	}
	struct pier_revnat_key rk = {
		.cookie = cookie,
		.addr = *to,
		.port = to_port,
	};
	struct pier_revnat rn = {
		.vip = *vip,
		.port = vip_port,
	};
	bpf_map_update_elem(&pier_revnat, &rk, &rn, BPF_ANY);
}

/* Picks a backend for the VIP in ctx and rewrites ctx to it; 1 lets the call go on, 0 fails it.
 * `connected` is set for connect(), clear for sendmsg(). */
static __always_inline int translate(struct bpf_sock_addr *ctx, __u8 proto, int v6, int connected)
{
	/* user_port is read as a whole u32 (the verifier rejects narrower loads here). */
	__u32 user_port = ctx->user_port;
	struct pier_svc_key key = {
		.port = (__u16)user_port,
		.proto = proto,
	};
	ctx_ip(ctx, v6, &key.vip);
	struct pier_ip dst = key.vip;
	struct pier_svc *svc = bpf_map_lookup_elem(&pier_services, &key);
	if (!svc) {
		/* NodePorts are keyed with the family's unspecified address. */
		if (!is_loopback(&dst) && !bpf_map_lookup_elem(&pier_node_ips, &dst))
			return 1;
		key.vip.a[0] = 0;
		key.vip.a[1] = 0;
		key.vip.a[2] = is_v4_mapped(&dst) ? bpf_htonl(0xffff) : 0;
		key.vip.a[3] = 0;
		svc = bpf_map_lookup_elem(&pier_services, &key);
		if (!svc)
			return 1;
	}
	struct pier_svc_stats *st = svc_stats(&key);
	if (svc->slots == 0) {
		if (st)
			st->refused += 1;
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	struct pier_affinity_key ak = {
		.netns = bpf_get_netns_cookie(ctx),
		.svc = key,
	};
	__u64 now = bpf_ktime_get_ns();
	struct pier_backend *be = 0;
	__u32 chosen = 0;
	if (svc->affinity)
		be = affine(svc, &ak, now, &chosen);
	if (!be) {
		struct pier_slot_key sk = {
			.svc_id = svc->id,
			.slot = bpf_get_prandom_u32() % svc->slots,
		};
		__u32 *backend_id = bpf_map_lookup_elem(&pier_slots, &sk);
		if (!backend_id)
			return 1;
		chosen = *backend_id;
		be = bpf_map_lookup_elem(&pier_backends, &chosen);
		if (!be)
			return 1;
		if (svc->affinity) {
			struct pier_affinity a = {
				.last_ns = now,
				.backend_id = *backend_id,
				.svc_id = svc->id,
			};
			bpf_map_update_elem(&pier_affinity, &ak, &a, BPF_ANY);
		}
	}
	struct pier_ip to = be->addr;
	__u16 to_port = be->port;
	if (!set_ctx_ip(ctx, v6, &to))
		return 1;
	remember(ctx, connected, &to, to_port, &dst, key.port);
	if (st)
		st->connects += 1;
	count_backend(chosen);
	ctx->user_port = (__u32)to_port;
	return 1;
}

static __always_inline int same_ip(const struct pier_ip *x, const struct pier_ip *y)
{
	return x->a[0] == y->a[0] && x->a[1] == y->a[1] && x->a[2] == y->a[2] && x->a[3] == y->a[3];
}

static __always_inline int nat_matches(const struct pier_sock_nat *nat, const struct pier_ip *from,
				       __u16 port)
{
	return nat && nat->backend_port == port && same_ip(&nat->backend, from);
}

/* Rewrites a backend address in ctx back to the VIP it was picked for: the socket's own
 * translation if it was connected to that backend, else (unconnected UDP) the revnat map. */
static __always_inline void reverse(struct bpf_sock_addr *ctx, int v6)
{
	__u32 user_port = ctx->user_port;
	struct pier_ip from;
	ctx_ip(ctx, v6, &from);
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct pier_sock_nat *nat = 0;
	struct pier_conn_nat *slot = conn_slot(cookie);
	if (slot && slot->cookie == cookie)
		nat = &slot->nat;
	if (!nat_matches(nat, &from, (__u16)user_port)) {
		struct bpf_sock *sk = ctx->sk;
		nat = sk ? bpf_sk_storage_get(&pier_sock_nat, sk, 0, 0) : 0;
	}
	struct pier_ip vip;
	__u16 port;
	if (nat_matches(nat, &from, (__u16)user_port)) {
		vip = nat->vip;
		port = nat->vip_port;
	} else {
		struct pier_revnat_key rk = {
			.cookie = cookie,
			.addr = from,
			.port = (__u16)user_port,
		};
		struct pier_revnat *rn = bpf_map_lookup_elem(&pier_revnat, &rk);
		if (!rn)
			return;
		vip = rn->vip;
		port = rn->port;
	}
	if (set_ctx_ip(ctx, v6, &vip))
		ctx->user_port = (__u32)port;
}

static __always_inline __u8 connect_proto(struct bpf_sock_addr *ctx)
{
	return ctx->protocol == PIER_PROTO_UDP ? PIER_PROTO_UDP : PIER_PROTO_TCP;
}

SEC("cgroup/connect4")
int pier_connect4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, connect_proto(ctx), 0, 1);
}

SEC("cgroup/sendmsg4")
int pier_sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, PIER_PROTO_UDP, 0, 0);
}

SEC("cgroup/recvmsg4")
int pier_recvmsg4(struct bpf_sock_addr *ctx)
{
	reverse(ctx, 0);
	return 1;
}

SEC("cgroup/getpeername4")
int pier_getpeername4(struct bpf_sock_addr *ctx)
{
	reverse(ctx, 0);
	return 1;
}

SEC("cgroup/connect6")
int pier_connect6(struct bpf_sock_addr *ctx)
{
	return translate(ctx, connect_proto(ctx), 1, 1);
}

SEC("cgroup/sendmsg6")
int pier_sendmsg6(struct bpf_sock_addr *ctx)
{
	return translate(ctx, PIER_PROTO_UDP, 1, 0);
}

SEC("cgroup/recvmsg6")
int pier_recvmsg6(struct bpf_sock_addr *ctx)
{
	reverse(ctx, 1);
	return 1;
}

SEC("cgroup/getpeername6")
int pier_getpeername6(struct bpf_sock_addr *ctx)
{
	reverse(ctx, 1);
	return 1;
}

/* Frees the socket's slot of the connected-socket table, if it holds one. */
SEC("cgroup/sock_release")
int pier_sock_release(struct bpf_sock *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct pier_conn_nat *slot = conn_slot(cookie);
	if (slot && slot->cookie == cookie)
		__sync_val_compare_and_swap(&slot->cookie, cookie, 0);
	return 1;
}

/* TCP states, as include/net/tcp_states.h numbers them. */
#define PIER_TCP_ESTABLISHED 1
#define PIER_TCP_SYN_SENT 2
#define PIER_TCP_CLOSE 7

struct sock;

/* Counts how a translated TCP connection to a backend ended badly, for pier's analysis and
 * metrics (the socket-LB sends no traffic through the proxy, so nothing else sees it):
 * SYN_SENT -> CLOSE never connected (refused or timed out); ESTABLISHED -> CLOSE was reset (a
 * clean close passes through FIN_WAIT or CLOSE_WAIT). Only sockets this object translated
 * count: their translation is in the connected-socket table or their own storage, so the
 * machine's other connections and another daemon's never do. */
SEC("tp_btf/inet_sock_set_state")
int pier_sock_state(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int old = (int)ctx[1];
	int new = (int)ctx[2];
	if (!sk || new != PIER_TCP_CLOSE || (old != PIER_TCP_SYN_SENT && old != PIER_TCP_ESTABLISHED))
		return 0;
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct pier_sock_nat *nat = 0;
	struct pier_conn_nat *slot = conn_slot(cookie);
	if (slot && slot->cookie == cookie)
		nat = &slot->nat;
	else
		nat = bpf_sk_storage_get(&pier_sock_nat, sk, 0, 0);
	if (!nat)
		return 0;
	struct pier_backend key = {
		.addr = nat->backend,
		.port = nat->backend_port,
	};
	struct pier_backend_fails *f = bpf_map_lookup_elem(&pier_backend_fails, &key);
	if (!f) {
		struct pier_backend_fails zero = {};
		bpf_map_update_elem(&pier_backend_fails, &key, &zero, BPF_NOEXIST);
		f = bpf_map_lookup_elem(&pier_backend_fails, &key);
		if (!f)
			return 0;
	}
	if (old == PIER_TCP_SYN_SENT)
		f->connect_failures += 1;
	else
		f->resets += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
