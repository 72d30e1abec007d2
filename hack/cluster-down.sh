#!/usr/bin/env bash
# Stops the local cluster and leaves no process, network namespace,
# interface or address behind. `--purge` also removes its state (etcd data,
# certificates, logs). Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

state=$CACHE/cluster
bridge=pcbr0

stop() {
  local name=$1 pidfile=$state/$1.pid
  [[ -f $pidfile ]] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    log "stopped $name"
  fi
  rm -f "$pidfile"
}

# The node agent first, so that it does not restart what is being stopped.
for name in node-agent kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop "$name"
done

# Pods: whatever still runs in their namespaces, then the namespaces.
for namespace in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^pc-' || true); do
  for pid in $(ip netns pids "$namespace" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  ip netns delete "$namespace" 2>/dev/null || true
done
# Host-side veths die with their namespaces; the bridge (and the load
# balancer addresses on it) go last.
if ip link show "$bridge" >/dev/null 2>&1; then
  ip link delete "$bridge"
  log "removed bridge $bridge"
fi

ip rule del priority 1001 2>/dev/null || true
ip rule del priority 1000 2>/dev/null || true
ip route del unreachable 198.18.0.0/15 2>/dev/null || true
if [[ -f $state/ip_forward ]]; then
  sysctl -q -w "net.ipv4.ip_forward=$(cat "$state/ip_forward")"
  rm -f "$state/ip_forward"
fi

if [[ ${1:-} == --purge ]]; then
  rm -rf "$state" "$CACHE/kubeconfig"
  log "removed cluster state"
fi
log "cluster down"
