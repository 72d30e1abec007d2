#!/usr/bin/env bash
# Starts a real Kubernetes control plane on this machine (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, all built from Go
# modules) plus the Portcullis node agent, which runs Pods as processes in
# network namespaces. Idempotent: a healthy cluster is left as it is.
#
# Usage: hack/cluster-up.sh [--experimental]
#   GATEWAY_API_VERSION (v1.6.1), GATEWAY_API_CHANNEL (standard|experimental)
#   PORTCULLIS_APISERVER_PORT (6443)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

channel=${GATEWAY_API_CHANNEL:-standard}
[[ ${1:-} == --experimental ]] && channel=experimental
port=${PORTCULLIS_APISERVER_PORT:-6443}
# Everything lives in 198.18.0.0/15, the range reserved for benchmarking
# network devices: never a real network. Pods: 198.18.0.0/16 behind the
# bridge; Services: 198.19.128.0/17; load balancers: 198.19.0.0/24.
bridge=pcbr0
gateway_ip=198.18.0.1
service_cidr=198.19.128.0/17
service_ip=198.19.128.1
state=$CACHE/cluster
pki=$state/pki
logs=$state/logs
kubeconfig=$CACHE/kubeconfig
agent_bin=${NODE_AGENT:-$ROOT/target/debug/portcullis-node-agent}
export KUBECONFIG=$kubeconfig

alive() { [[ -f $state/$1.pid ]] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
api_ready() { kubectl get --raw /readyz >/dev/null 2>&1; }

if alive etcd && alive kube-apiserver && alive kube-controller-manager && alive kube-scheduler && alive node-agent && api_ready; then
  log "cluster already running (kubeconfig: ${kubeconfig#"$ROOT"/})"
  exit 0
fi
# A partial cluster (a process died, the machine was reset): start clean.
"$ROOT/hack/cluster-down.sh" >/dev/null 2>&1 || true

"$ROOT/hack/deps.sh"
"$ROOT/hack/build-cluster-bins.sh"
mkdir -p "$pki" "$logs"
if [[ ! -x $agent_bin || -n $(find "$ROOT/e2e/src" -newer "$agent_bin" -name '*.rs' 2>/dev/null) ]]; then
  log "building the node agent"
  (cd "$ROOT" && cargo build --quiet --locked -p e2e --bin portcullis-node-agent)
fi
log "network: bridge $bridge at $gateway_ip/16"
ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
ip -4 addr show dev "$bridge" | grep -q "$gateway_ip/16" || ip addr add "$gateway_ip/16" dev "$bridge"
ip link set "$bridge" up
# Remember the machine's setting so that cluster-down can put it back.
[[ -f $state/ip_forward ]] || sysctl -n net.ipv4.ip_forward > "$state/ip_forward"
sysctl -q -w net.ipv4.ip_forward=1
# Nothing addressed to the cluster's ranges ever leaves this machine (a load
# balancer address that is not assigned, a ClusterIP nothing routes), and
# Pods reach nothing beyond this machine.
ip route replace unreachable 198.18.0.0/15
ip rule show | grep -q "iif $bridge lookup main" ||
  ip rule add priority 1000 iif "$bridge" to 198.18.0.0/15 lookup main
ip rule show | grep -q "iif $bridge unreachable" ||
  ip rule add priority 1001 iif "$bridge" unreachable

if [[ ! -f $pki/ca.crt ]]; then
  log "certificates"
  (
    cd "$pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -keyout ca.key -out ca.crt -subj "/CN=portcullis-local-ca" 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    cat > apiserver.ext <<EOF
subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$gateway_ip,IP:$service_ip
extendedKeyUsage=serverAuth
EOF
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout apiserver.key \
      -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout admin.key \
      -out admin.csr -subj "/O=system:masters/CN=portcullis-admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile client.ext -out admin.crt 2>/dev/null
    rm -f ./*.csr
  )
fi
# The node agent's kubelet endpoint (kubectl logs), on the node's InternalIP.
# Its own block, so that a cluster whose CA predates it gets one too.
if [[ ! -f $pki/kubelet.crt ]]; then
  log "kubelet serving certificate"
  (
    cd "$pki"
    printf 'subjectAltName=DNS:portcullis-node,IP:%s\nextendedKeyUsage=serverAuth\n' "$gateway_ip" > kubelet.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout kubelet.key \
      -out kubelet.csr -subj "/O=system:nodes/CN=system:node:portcullis-node" 2>/dev/null
    openssl x509 -req -in kubelet.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile kubelet.ext -out kubelet.crt 2>/dev/null
    rm -f kubelet.csr
  )
fi

cat > "$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: portcullis-local
  cluster:
    server: https://$gateway_ip:$port
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: portcullis-local
  context: {cluster: portcullis-local, user: admin}
current-context: portcullis-local
EOF

# start NAME COMMAND...: runs a daemon in its own session, logging to logs/.
start() {
  local name=$1
  shift
  setsid nohup "$@" > "$logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$state/$name.pid"
}

wait_for() {
  local what=$1 seconds=$2
  shift 2
  for _ in $(seq $((seconds * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what not ready after ${seconds}s; see ${logs#"$ROOT"/}/"
}

log "etcd"
start etcd "$CACHE/bin/etcd" --name local --data-dir "$state/etcd" \
  --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster local=http://127.0.0.1:23800 --unsafe-no-fsync --log-level warn
wait_for etcd 30 curl -sf http://127.0.0.1:23790/health

log "kube-apiserver on https://$gateway_ip:$port"
start kube-apiserver "$CACHE/bin/kube-apiserver" \
  --etcd-servers http://127.0.0.1:23790 \
  --bind-address "$gateway_ip" --advertise-address "$gateway_ip" --secure-port "$port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range "$service_cidr" \
  --authorization-mode Node,RBAC --allow-privileged=true --profiling=false \
  --enable-priority-and-fairness=false --v 1
wait_for kube-apiserver 60 kubectl get --raw /readyz

log "kube-controller-manager and kube-scheduler"
start kube-controller-manager "$CACHE/bin/kube-controller-manager" \
  --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --use-service-account-credentials=true --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 10257 --service-cluster-ip-range "$service_cidr" \
  --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --v 1
start kube-scheduler "$CACHE/bin/kube-scheduler" \
  --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 10259 --v 1

log "Gateway API $GATEWAY_API_VERSION CRDs ($channel channel)"
crd_dir=$CACHE/gateway-api/$GATEWAY_API_VERSION/$channel
[[ -d $crd_dir ]] || die "no CRDs at $crd_dir; run hack/build-cluster-bins.sh"
# Only the CRDs and their admission policy: the folder also holds a
# kustomization.yaml that kubectl cannot apply.
mapfile -t crd_files < <(find "$crd_dir" -maxdepth 1 -name 'gateway.networking*.yaml' | sort)
kubectl apply --server-side --force-conflicts "${crd_files[@]/#/-f}" >/dev/null
kubectl wait --for condition=Established --timeout 60s crd --all >/dev/null

log "node agent"
start node-agent "$agent_bin" --kubeconfig "$kubeconfig" --images "$ROOT/e2e/images.yaml" \
  --state-dir "$state/node" --bridge "$bridge" --gateway "$gateway_ip" \
  --api-server-host "$gateway_ip" --api-server-port "$port" --api-ca-file "$pki/ca.crt" \
  --kubelet-port 10250 --tls-cert-file "$pki/kubelet.crt" --tls-private-key-file "$pki/kubelet.key" \
  --client-ca-file "$pki/ca.crt"
wait_for "the node" 60 kubectl wait --for condition=Ready --timeout 1s node/portcullis-node
# Pods need their namespace's default ServiceAccount before they can start.
wait_for "the default service account" 30 kubectl get serviceaccount default

log "cluster up in ${SECONDS}s: KUBECONFIG=${kubeconfig#"$ROOT"/}"
kubectl get nodes
