#!/usr/bin/env bash
# A three-node pier cluster on one machine: an etcd member and three pier daemons, each node
# in a network namespace of its own, joined by a bridge (the "LAN", 192.168.77.0/24, inside a
# namespace too, so nothing here touches the machine's own network). It shows the nodes
# registering, one of them leading the controllers, a Service applied on one node resolving
# on every node, and a leader killed with SIGKILL handing over to another.
#
#   sudo examples/cluster-local.sh            # builds pier, runs the demo, cleans everything up
#   PIER=target/debug/pier examples/cluster-local.sh     # with a pier binary you built
#
# Needs root, iproute2, dig (bind9-dnsutils) and etcd (etcd-server); `scripts/deps test`
# installs them. The daemons run with the container engine, the proxy and the socket-LB off,
# so this is the control plane and DNS of a cluster; see README "Cluster".
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PIER:-}" ]; then
  cargo build --release -p pier
  PIER=target/release/pier
fi
for tool in ip dig etcd; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/deps test" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }

work=$(mktemp -d /tmp/pier-cluster.XXXXXX)
lan=pier-lan-$$
nodes=(n1 n2 n3)
declare -A pids

cleanup() {
  set +e
  for n in "${nodes[@]}"; do
    [ -n "${pids[$n]:-}" ] && kill -TERM "${pids[$n]}" 2>/dev/null && wait "${pids[$n]}" 2>/dev/null
    ip netns del "pier-$n-$$" 2>/dev/null
  done
  [ -n "${pids[etcd]:-}" ] && kill "${pids[etcd]}" 2>/dev/null && wait "${pids[etcd]}" 2>/dev/null
  ip netns del "$lan" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The LAN: a bridge in a namespace, with etcd on .254.
ip netns add "$lan"
ip -n "$lan" link set lo up
ip -n "$lan" link add lan0 address 02:70:00:00:00:fe type bridge
ip -n "$lan" addr add 192.168.77.254/24 dev lan0
ip -n "$lan" link set lan0 up
ip netns exec "$lan" etcd --name lan --data-dir "$work/etcd" \
  --listen-client-urls http://192.168.77.254:2379 \
  --advertise-client-urls http://192.168.77.254:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster lan=http://127.0.0.1:2380 --log-level error --logger zap \
  >"$work/etcd.log" 2>&1 &
pids[etcd]=$!

# Each node: a namespace with a leg on the LAN, and a daemon.
i=0
for n in "${nodes[@]}"; do
  i=$((i + 1))
  ns="pier-$n-$$"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  host_end="vp$i-$$"
  ip link add "$host_end" type veth peer name eth0 netns "$ns"
  ip link set "$host_end" netns "$lan"
  ip -n "$lan" link set "$host_end" master lan0 up
  ip -n "$ns" addr add "192.168.77.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  mkdir -p "$work/$n"
  ip netns exec "$ns" "$PIER" daemon --store etcd://192.168.77.254:2379 \
    --node-name "$n" --node-ip "192.168.77.$i" \
    --state-dir "$work/$n/state" --socket "$work/$n/pier.sock" \
    --admin 127.0.0.1:0 --dns-listen "192.168.77.$i:53" \
    --no-runtime --no-proxy --no-ebpf --ebpf-pin-dir "$work/$n/pins" \
    >"$work/$n/daemon.log" 2>&1 &
  pids[$n]=$!
done

pier() { local n=$1; shift; "$PIER" --socket "$work/$n/pier.sock" "$@"; }
wait_until() {
  local what=$1; shift
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for $what; daemon logs are in $work" >&2
  tail -n 20 "$work"/*/daemon.log >&2
  exit 1
}
ready_nodes() { [ "$(pier n1 get nodes 2>/dev/null | grep -c ' Ready ')" -eq "$1" ]; }
has_leader() { pier "$1" get nodes 2>/dev/null | awk '$3 == "leader"' | grep -q .; }

wait_until "three Ready nodes" ready_nodes 3
wait_until "a leader" has_leader n1
echo "== pier get nodes"
pier n1 get nodes

echo "== a Service applied on n1 ..."
pier n1 apply -f - <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80}]
EOF
ip=$(pier n1 get svc web -o json | sed -n 's/.*"clusterIP": *"\([^"]*\)".*/\1/p')
i=0
for n in "${nodes[@]}"; do
  i=$((i + 1))
  resolves() { ip netns exec "pier-$1-$$" dig +short +time=1 +tries=1 @"192.168.77.$2" web.default.svc.cluster.local | grep -qx "$ip"; }
  wait_until "$n to resolve web" resolves "$n" "$i"
  echo "   ... resolves on $n: web.default.svc.cluster.local -> $ip"
done

leader=$(pier n1 get nodes | awk '$3 == "leader" {print $1}')
echo "== kill -9 the leader ($leader)"
kill -KILL "${pids[$leader]}"
wait "${pids[$leader]}" 2>/dev/null || true
unset "pids[$leader]"
other=$(for n in "${nodes[@]}"; do [ "$n" != "$leader" ] && echo "$n" && break; done)
new_leader() { pier "$other" get nodes | awk -v old="$leader" '$3 == "leader" && $1 != old' | grep -q .; }
start=$EPOCHREALTIME
wait_until "a new leader" new_leader
echo "   $(pier "$other" get nodes | awk '$3 == "leader" {print $1}') leads, $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')s after the kill"
unknown() { pier "$other" get nodes | awk -v old="$leader" '$1 == old && $2 == "Unknown"' | grep -q .; }
wait_until "$leader to turn Unknown" unknown
pier "$other" get nodes
echo "== done; cleaning up"
