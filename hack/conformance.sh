#!/usr/bin/env bash
# Runs the Gateway API conformance suite (built from the pinned Go module by
# hack/build-cluster-bins.sh) against the local cluster, with GatewayClass
# `portcullis` in one pass over every profile (the suite runs each test
# once whatever the profiles), writes one report per profile under
# conformance/reports/ and prints core/extended counts per profile.
#
#   CONFORMANCE_PROFILES  comma list (GATEWAY-HTTP,GATEWAY-GRPC,GATEWAY-TLS,GATEWAY-TCP,GATEWAY-UDP)
#   CONFORMANCE_RUN_TEST  run only this test (the suite's -run-test)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

profiles=${CONFORMANCE_PROFILES:-GATEWAY-HTTP,GATEWAY-GRPC,GATEWAY-TLS,GATEWAY-TCP,GATEWAY-UDP}
reports=$ROOT/conformance/reports/$GATEWAY_API_VERSION
# A partial run (one test) must not replace the committed reports.
[[ -n ${CONFORMANCE_RUN_TEST:-} ]] && reports=$CACHE/conformance-reports
suite=$CACHE/bin/gateway-conformance.test
export KUBECONFIG=$CACHE/kubeconfig
"$ROOT/hack/build-cluster-bins.sh" --conformance
[[ -x $suite ]] || die "no conformance suite at $suite; run hack/build-cluster-bins.sh --conformance"
kubectl get --raw /readyz >/dev/null 2>&1 || die "the local cluster is not running; run make cluster-up"
mkdir -p "$reports"

# The operator runs beside the cluster, as make demo runs it.
(cd "$ROOT" && cargo build --locked -q -p operator -p proxy --bin portcullis-operator --bin portcullis-proxy)
kubectl apply -f "$ROOT/crds/gateway.portcullis.io_proxyconfigs.yaml" >/dev/null
kubectl create namespace portcullis-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f "$ROOT/examples/00-gatewayclass.yaml" >/dev/null
# The suite creates its namespaces and deletes them when it ends; ones left
# by an interrupted run (or another test) are deleted, not waited for.
for ns in gateway-conformance-infra gateway-conformance-app-backend gateway-conformance-web-backend; do
  if kubectl get namespace "$ns" >/dev/null 2>&1; then
    log "deleting namespace $ns left by an earlier run"
    kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout=180s >/dev/null ||
      die "namespace $ns is still there after 180 s"
  fi
done
if [[ -f $CACHE/demo/operator.pid ]]; then "$ROOT/hack/demo.sh" --down >/dev/null 2>&1 || true; fi
POD_NAMESPACE=portcullis-system "$ROOT/target/debug/portcullis-operator" --admin 127.0.0.1:0 \
  >"$CACHE/conformance-operator.log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null; wait $operator 2>/dev/null || true' EXIT

version=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo dev)
started=$SECONDS
combined=$CACHE/conformance-report.yaml
log "running $profiles in one pass (log: ${CACHE#"$ROOT"/}/conformance.log)"
args=(
  -test.v -test.timeout 80m -test.run '^TestConformance$'
  -gateway-class portcullis
  -conformance-profiles "$profiles"
  -organization portcullis -project portcullis
  -url https://github.com/portcullis-io/portcullis -version "$version"
  -contact https://github.com/portcullis-io/portcullis/issues
  -report-output "$combined"
  # GatewayStaticAddresses: the last address of the node agent's load
  # balancer pool can be assigned; one outside the pool cannot.
  -usable-address 198.19.0.209 -unusable-address 198.19.1.250
)
[[ -n ${CONFORMANCE_RUN_TEST:-} ]] && args+=(-run-test "$CONFORMANCE_RUN_TEST")
status=0
rm -f "$combined"
# The suite reads its manifests relative to its package directory.
(cd "$CACHE/gateway-api/$GATEWAY_API_VERSION/conformance" && "$suite" "${args[@]}") \
  >"$CACHE/conformance.log" 2>&1 || status=1
if [[ ! -f $combined ]]; then
  # The suite stopped before running any test: say why.
  grep -m1 -A1 'Received unexpected error' "$CACHE/conformance.log" | tail -1 >&2 || true
  die "no report written; see ${CACHE#"$ROOT"/}/conformance.log"
fi
# The suite's own verdicts: it writes its report before its parallel tests
# end and counts those as passed, so the report alone cannot be trusted.
# Every test that failed, by its top-level name.
failed=$(grep -E '^ {4}--- FAIL: TestConformance/' "$CACHE/conformance.log" |
  sed -E 's/^ *--- FAIL: TestConformance\/([^ ]+) .*/\1/' | sort -u || true)
passed=$(grep -cE '^ {4}--- PASS: TestConformance/' "$CACHE/conformance.log" || true)
if [[ -n $failed ]]; then
  status=1
  log "the suite's output: $passed test(s) passed, $(wc -l <<<"$failed") failed:"
  sed 's/^/  FAIL /' <<<"$failed" >&2
  # A failing run never replaces the committed reports.
  reports=$CACHE/conformance-reports
  mkdir -p "$reports"
elif ((status)); then
  log "the suite exited with an error and no failed test: see ${CACHE#"$ROOT"/}/conformance.log"
  reports=$CACHE/conformance-reports
  mkdir -p "$reports"
else
  log "the suite's output: $passed test(s) passed, none failed"
fi
# One report per profile, and a summary line for each.
python3 - "$combined" "$reports" <<'PY'
import copy, sys, yaml
combined, reports = sys.argv[1], sys.argv[2]
report = yaml.safe_load(open(combined))
for profile in report.get("profiles", []):
    single = copy.deepcopy(report)
    single["profiles"] = [profile]
    name = profile["name"].lower()
    with open(f"{reports}/{name}-report.yaml", "w") as out:
        yaml.safe_dump(single, out, sort_keys=False)
    parts = []
    for level in ("core", "extended"):
        stats = (profile.get(level) or {}).get("statistics") or {}
        parts.append(f"{level} {stats.get('Passed', 0)} passed {stats.get('Failed', 0)} failed {stats.get('Skipped', 0)} skipped")
    failed = (profile.get("core") or {}).get("failedTests", []) + (profile.get("extended") or {}).get("failedTests", [])
    unsupported = (profile.get("extended") or {}).get("unsupportedFeatures", [])
    line = f"{profile['name']:<14} " + ", ".join(parts)
    if failed:
        line += f"; failed: {', '.join(failed)}"
    if unsupported:
        line += f"; unsupported: {', '.join(unsupported)}"
    print(line)
PY
log "conformance took $((SECONDS - started)) s; reports in ${reports#"$ROOT"/}"
exit $status
