#!/usr/bin/env bash
# make demo: builds, starts the local cluster, runs the operator, applies
# examples/, waits for the Gateway to be Programmed, and shows traffic.
# The operator runs as a process beside the cluster (log: .cache/demo/operator.log);
# `hack/demo.sh --down` stops it and removes the examples.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

demo=$CACHE/demo
export KUBECONFIG=$CACHE/kubeconfig
mkdir -p "$demo"

stop_operator() {
  local pid
  pid=$(cat "$demo/operator.pid" 2>/dev/null || true)
  if [[ -n $pid ]] && kill "$pid" 2>/dev/null; then
    # It gives its leader lease up before exiting.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$demo/operator.pid"
}

if [[ ${1:-} == --down ]]; then
  kubectl delete --ignore-not-found -f "$ROOT/examples/" >/dev/null 2>&1 || true
  stop_operator
  log "demo stopped"
  exit 0
fi

"$ROOT/hack/deps.sh"
"$ROOT/hack/build-cluster-bins.sh"
log "building the operator, the proxy and the node agent"
(cd "$ROOT" && cargo build --locked -p operator -p proxy -p e2e --bin portcullis-operator --bin portcullis-proxy --bin portcullis-node-agent)
"$ROOT/hack/cluster-up.sh"

kubectl apply -f "$ROOT/crds/gateway.portcullis.io_proxyconfigs.yaml" >/dev/null
kubectl create namespace portcullis-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
stop_operator
log "starting the operator (log: ${demo#"$ROOT"/}/operator.log)"
POD_NAMESPACE=portcullis-system nohup "$ROOT/target/debug/portcullis-operator" \
  --admin 127.0.0.1:18081 >"$demo/operator.log" 2>&1 &
echo $! >"$demo/operator.pid"
sleep 0.5
kill -0 "$(cat "$demo/operator.pid")" 2>/dev/null || { tail -5 "$demo/operator.log" >&2; die "the operator did not start"; }

kubectl apply -f "$ROOT/examples/00-gatewayclass.yaml" -f "$ROOT/examples/10-echo.yaml"
if ! kubectl -n portcullis-demo get secret demo-tls >/dev/null 2>&1; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=*.demo.example" -addext "subjectAltName=DNS:*.demo.example" \
    -keyout "$demo/demo.key" -out "$demo/demo.crt" 2>/dev/null
  kubectl -n portcullis-demo create secret tls demo-tls --cert="$demo/demo.crt" --key="$demo/demo.key"
fi
kubectl apply -f "$ROOT/examples/20-gateway.yaml" -f "$ROOT/examples/30-routes.yaml" \
  -f "$ROOT/examples/40-listenerset.yaml"

log "waiting for the Gateway to be Programmed"
kubectl -n portcullis-demo wait --for=condition=Programmed --timeout=180s gateway/demo >/dev/null
kubectl -n portcullis-demo wait --for=condition=Available --timeout=120s deployment/echo-v1 deployment/echo-v2 >/dev/null
kubectl -n portcullis-demo wait --for=condition=Programmed --timeout=60s listenerset/shop >/dev/null
address=$(kubectl -n portcullis-demo get gateway demo -o jsonpath='{.status.addresses[0].value}')

echo
kubectl get gatewayclass,gateway,listenerset,httproute -A
echo
echo "\$ curl -si -H 'Host: app.demo.example' http://$address/hello"
curl -si -H 'Host: app.demo.example' "http://$address/hello" | sed -n '1p;/^location/Ip'
echo
resolve=(--resolve "app.demo.example:443:$address" --cacert "$demo/demo.crt")
[[ -f $demo/demo.crt ]] || resolve=(--resolve "app.demo.example:443:$address" -k)
echo "\$ curl https://app.demo.example/ x 100 (canary 90/10 between echo-v1 and echo-v2)"
for _ in $(seq 100); do
  curl -s "${resolve[@]}" https://app.demo.example/ | grep -o '"pod": *"echo-v[12]' | grep -o 'echo-v[12]'
done | sort | uniq -c
echo
echo "\$ curl -H 'x-version: v2' https://app.demo.example/"
curl -s "${resolve[@]}" -H 'x-version: v2' https://app.demo.example/ | grep '"pod"'
echo
echo "\$ curl -H 'Host: shop.example' http://$address/   (a listener the shop team added with a ListenerSet)"
curl -s -H 'Host: shop.example' "http://$address/" | grep '"pod"'
echo
log "demo running: Gateway address $address; stop it with hack/demo.sh --down (make cluster-down stops everything)"
