#!/usr/bin/env bash
# Runs the Gateway API conformance suite (built from the pinned Go module by
# hack/build-cluster-bins.sh) against the local cluster, with GatewayClass
# `portcullis` in one pass over every profile (the suite runs each test
# once whatever the profiles), writes one report per profile under
# conformance/reports/ and prints core/extended counts per profile.
#
#   CONFORMANCE_PROFILES  comma list (GATEWAY-HTTP,GATEWAY-GRPC,GATEWAY-TLS,GATEWAY-TCP,GATEWAY-UDP)
#   CONFORMANCE_RUN_TEST  run only this test (the suite's -run-test)
#   GATEWAY_API_CHANNEL   standard (default) or experimental: the run installs
#                         that channel's CRDs and puts the standard ones back
#                         when it ends; reports are named after the channel
set -euo pipefail
source "$(dirname "$0")/lib.sh"

profiles=${CONFORMANCE_PROFILES:-GATEWAY-HTTP,GATEWAY-GRPC,GATEWAY-TLS,GATEWAY-TCP,GATEWAY-UDP}
channel=${GATEWAY_API_CHANNEL:-standard}
[[ $channel == standard || $channel == experimental ]] ||
  die "GATEWAY_API_CHANNEL is standard or experimental, not $channel"
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

# The Gateway API CRDs of a channel (the cluster runs the standard ones).
crd_files() {
  find "$CACHE/gateway-api/$GATEWAY_API_VERSION/$1" -maxdepth 1 -name 'gateway.networking*.yaml' | sort
}
install_crds() {
  local files
  mapfile -t files < <(crd_files "$1")
  if [[ $1 == experimental ]]; then
    # The standard install's admission policy refuses experimental CRDs
    # over standard ones (upstream's advice: remove it first); the
    # standard install brings it back.
    kubectl delete validatingadmissionpolicybinding,validatingadmissionpolicy \
      safe-upgrades.gateway.networking.k8s.io --ignore-not-found >/dev/null
    mapfile -t files < <(printf '%s\n' "${files[@]}" | grep -v '_vap_')
  fi
  # The API server takes a moment to drop a deleted policy: retry briefly.
  local attempt
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    kubectl apply --server-side --force-conflicts "${files[@]/#/-f}" >/dev/null 2>"$CACHE/crd-apply.err" && break
    ((attempt < 10)) || { cat "$CACHE/crd-apply.err" >&2; die "the $1 CRDs could not be installed"; }
    sleep 2
  done
  kubectl wait --for condition=Established --timeout 60s crd --all >/dev/null
}
# Back to the standard channel: its CRDs, and none of the experimental-only.
restore_standard() {
  install_crds standard
  local standard_names extra
  standard_names=$(crd_files standard | xargs -n1 basename)
  for file in $(crd_files experimental); do
    grep -qxF "$(basename "$file")" <<<"$standard_names" && continue
    extra=$(basename "$file" .yaml)
    kubectl delete crd "${extra#*_}.${extra%%_*}" --ignore-not-found >/dev/null
  done
}
if [[ $channel == experimental ]]; then
  log "installing the experimental channel's CRDs (the standard ones come back at the end)"
  install_crds experimental
fi

POD_NAMESPACE=portcullis-system "$ROOT/target/debug/portcullis-operator" --admin 127.0.0.1:0 \
  >"$CACHE/conformance-operator.log" 2>&1 &
operator=$!
cleanup() {
  kill "$operator" 2>/dev/null || true
  wait "$operator" 2>/dev/null || true
  if [[ $channel == experimental ]]; then restore_standard; fi
}
trap cleanup EXIT
# The suite reads the features to test from the GatewayClass's status: wait
# for the operator to write it (a cluster just created has none yet).
kubectl wait --for=condition=Accepted --timeout=120s gatewayclass/portcullis >/dev/null ||
  die "GatewayClass portcullis was not accepted; see ${CACHE#"$ROOT"/}/conformance-operator.log"
# An earlier run's operator left the class Accepted with that run's
# features: wait until this one has written this channel's (retries are
# claimed on the experimental channel's HTTPRoute CRD only).
claims_retry() {
  local features
  features=" $(kubectl get gatewayclass portcullis -o jsonpath='{.status.supportedFeatures[*].name}') "
  [[ $features == *" HTTPRouteRetry "* ]]
}
for _ in $(seq 240); do
  if [[ $channel == experimental ]] && claims_retry; then break; fi
  if [[ $channel == standard ]] && ! claims_retry; then break; fi
  sleep 0.5
done
if [[ $channel == experimental ]] && ! claims_retry; then
  die "the operator does not claim the experimental channel's features; see ${CACHE#"$ROOT"/}/conformance-operator.log"
fi

# The commit under test; "-dirty" when code differs from it (the reports an
# earlier run rewrote do not count, or a second run would never be clean).
version=$(cd "$ROOT" && git describe --always 2>/dev/null || echo dev)
if [[ -n $(cd "$ROOT" && git status --porcelain -- . ':!conformance/reports' 2>/dev/null) ]]; then
  version+=-dirty
fi
started=$SECONDS
combined=$CACHE/conformance-report.yaml
log "running $profiles, $channel channel, in one pass (log: ${CACHE#"$ROOT"/}/conformance.log)"
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
python3 - "$combined" "$reports" "$channel" <<'PY'
import copy, sys, yaml
combined, reports, channel = sys.argv[1], sys.argv[2], sys.argv[3]
report = yaml.safe_load(open(combined))
for profile in report.get("profiles", []):
    single = copy.deepcopy(report)
    single["profiles"] = [profile]
    name = profile["name"].lower()
    with open(f"{reports}/{channel}-{name}-report.yaml", "w") as out:
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
