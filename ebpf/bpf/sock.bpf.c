// SPDX-License-Identifier: GPL-2.0
/* Socket-level load balancing (Cilium's socket-LB design): connect4 and sendmsg4 rewrite a
 * service VIP to a backend picked from the service's weighted slots; getpeername4 and
 * recvmsg4 translate the backend back, so the application only ever sees the VIP. */
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
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct pier_affinity_key);
	__type(value, struct pier_affinity);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pier_affinity SEC(".maps");

/* The node's own IPv4 addresses: NodePorts answer on each of them (and on 127.0.0.0/8). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
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

/* The backend a client used for this service within the affinity timeout, if it still exists. */
static __always_inline struct pier_backend *affine(struct bpf_sock_addr *ctx, struct pier_svc *svc,
						   struct pier_affinity_key *ak, __u64 now, __u32 *id)
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

/* Picks a backend for the VIP in ctx and rewrites ctx to it; 1 lets the call go on, 0 fails it. */
static __always_inline int translate(struct bpf_sock_addr *ctx, __u8 proto)
{
	/* user_port is read as a whole u32 (the verifier rejects narrower loads here). */
	__u32 user_port = ctx->user_port;
	struct pier_svc_key key = {
		.vip = ctx->user_ip4,
		.port = (__u16)user_port,
		.proto = proto,
	};
	__u32 dst = ctx->user_ip4;
	struct pier_svc *svc = bpf_map_lookup_elem(&pier_services, &key);
	if (!svc) {
		/* NodePorts are keyed with VIP 0. */
		if ((bpf_ntohl(dst) >> 24) != 127 && !bpf_map_lookup_elem(&pier_node_ips, &dst))
			return 1;
		key.vip = 0;
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
		be = affine(ctx, svc, &ak, now, &chosen);
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
	struct pier_revnat_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = be->addr,
		.port = be->port,
	};
	struct pier_revnat rn = {
		.vip = dst,
		.port = key.port,
	};
	bpf_map_update_elem(&pier_revnat, &rk, &rn, BPF_ANY);
	if (st)
		st->connects += 1;
	count_backend(chosen);
	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
	return 1;
}

/* Rewrites a backend address in ctx back to the VIP it was picked for. */
static __always_inline void reverse(struct bpf_sock_addr *ctx)
{
	__u32 user_port = ctx->user_port;
	struct pier_revnat_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = ctx->user_ip4,
		.port = (__u16)user_port,
	};
	struct pier_revnat *rn = bpf_map_lookup_elem(&pier_revnat, &rk);
	if (!rn)
		return;
	ctx->user_ip4 = rn->vip;
	ctx->user_port = (__u32)rn->port;
}

SEC("cgroup/connect4")
int pier_connect4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, ctx->protocol == PIER_PROTO_UDP ? PIER_PROTO_UDP : PIER_PROTO_TCP);
}

SEC("cgroup/sendmsg4")
int pier_sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, PIER_PROTO_UDP);
}

SEC("cgroup/recvmsg4")
int pier_recvmsg4(struct bpf_sock_addr *ctx)
{
	reverse(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int pier_getpeername4(struct bpf_sock_addr *ctx)
{
	reverse(ctx);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
