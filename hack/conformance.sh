#!/usr/bin/env bash
# Runs the Gateway API conformance suite (built from the pinned Go module by
# hack/build-cluster-bins.sh) against the local cluster, with GatewayClass
# `portcullis`, writes one report per profile under conformance/reports/
# and prints passed/failed/skipped per profile.
#
#   CONFORMANCE_PROFILES  comma list (GATEWAY-HTTP,GATEWAY-GRPC,GATEWAY-TLS,GATEWAY-TCP,GATEWAY-UDP)
#   CONFORMANCE_RUN_TEST  run only this test (the suite's -run-test)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

profiles=${CONFORMANCE_PROFILES:-GATEWAY-HTTP,GATEWAY-GRPC,GATEWAY-TLS,GATEWAY-TCP,GATEWAY-UDP}
reports=$ROOT/conformance/reports/$GATEWAY_API_VERSION
suite=$CACHE/bin/gateway-conformance.test
export KUBECONFIG=$CACHE/kubeconfig
[[ -x $suite ]] || die "no conformance suite at $suite; run hack/build-cluster-bins.sh"
kubectl get --raw /readyz >/dev/null 2>&1 || die "the local cluster is not running; run make cluster-up"
mkdir -p "$reports"

# The operator runs beside the cluster, as make demo runs it.
(cd "$ROOT" && cargo build --locked -q -p operator -p proxy --bin portcullis-operator --bin portcullis-proxy)
kubectl apply -f "$ROOT/crds/gateway.portcullis.io_proxyconfigs.yaml" >/dev/null
kubectl create namespace portcullis-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if [[ -f $CACHE/demo/operator.pid ]]; then "$ROOT/hack/demo.sh" --down >/dev/null 2>&1 || true; fi
POD_NAMESPACE=portcullis-system "$ROOT/target/debug/portcullis-operator" --admin 127.0.0.1:0 \
  >"$CACHE/conformance-operator.log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null; wait $operator 2>/dev/null || true' EXIT

version=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo dev)
started=$SECONDS
summary=()
status=0
for profile in ${profiles//,/ }; do
  report=$reports/$(tr 'A-Z' 'a-z' <<<"$profile")-report.yaml
  log "running $profile"
  args=(
    -test.v -test.timeout 60m -test.run '^TestConformance$'
    -gateway-class portcullis
    -conformance-profiles "$profile"
    -organization portcullis -project portcullis
    -url https://github.com/portcullis-io/portcullis -version "$version"
    -contact https://github.com/portcullis-io/portcullis/issues
    -report-output "$report"
    # GatewayStaticAddresses: the last address of the node agent's load
    # balancer pool can be assigned; one outside the pool cannot.
    -usable-address 198.19.0.209 -unusable-address 198.19.1.250
  )
  [[ -n ${CONFORMANCE_RUN_TEST:-} ]] && args+=(-run-test "$CONFORMANCE_RUN_TEST")
  # The suite reads its manifests relative to its package directory.
  if ! (cd "$CACHE/gateway-api/$GATEWAY_API_VERSION/conformance" && "$suite" "${args[@]}") \
    > "$CACHE/conformance-$profile.log" 2>&1; then
    status=1
  fi
  passed=$(grep -c -- '^    --- PASS' "$CACHE/conformance-$profile.log" || true)
  failed=$(grep -c -- '^    --- FAIL' "$CACHE/conformance-$profile.log" || true)
  skipped=$(grep -c -- '^    --- SKIP' "$CACHE/conformance-$profile.log" || true)
  line=$(printf '%-14s %4d passed %4d failed %4d skipped' "$profile" "$passed" "$failed" "$skipped")
  if ((passed + failed == 0)); then
    # The suite stopped before running any test: say why.
    line+="  ($(grep -m1 -A1 'Received unexpected error' "$CACHE/conformance-$profile.log" | tail -1 | sed 's/^[[:space:]]*//'))"
  fi
  summary+=("$line")
done
printf '%s\n' "${summary[@]}"
log "conformance took $((SECONDS - started)) s; logs in ${CACHE#"$ROOT"/}/conformance-*.log, reports in ${reports#"$ROOT"/}"
exit $status
