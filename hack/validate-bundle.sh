#!/usr/bin/env bash
# Validates the OLM install path: the bundle with operator-sdk (the
# operatorframework suite: OperatorHub metadata, capabilities, categories,
# deprecated APIs, good practices), the file-based catalog with opm, and that
# the bundle ships no Gateway API CRD (OpenShift 4.19+ owns those). The tools
# come from hack/build-olm-tools.sh (`make tools-olm`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

sdk=$CACHE/bin/operator-sdk
opm=$CACHE/bin/opm
for tool in "$sdk" "$opm"; do
  [[ -x $tool ]] || die "${tool#"$ROOT"/} is missing: run hack/build-olm-tools.sh (make tools-olm)"
done
cd "$ROOT"
status=0

# 1. Only our own CRDs in the bundle: any CustomResourceDefinition whose
#    spec.group is not gateway.portcullis.io fails, Gateway API ones first.
shopt -s nullglob
manifests=(bundle/manifests/*)
((${#manifests[@]})) || die "bundle/manifests is empty: run make bundle"
foreign=$(awk '
  FNR == 1 || /^---/ { kind = ""; spec = 0 }
  /^kind:/ { kind = $2 }
  /^[a-zA-Z]/ && !/^kind:/ { spec = ($0 ~ /^spec:/) }
  kind == "CustomResourceDefinition" && spec && /^  group:/ && $2 != "gateway.portcullis.io" {
    print FILENAME ": CRD of group " $2
  }
  kind == "CustomResourceDefinition" && /^  name: .*\.gateway\.networking\.k8s\.io$/ {
    print FILENAME ": CRD " $2
  }' "${manifests[@]}")
if [[ -n $foreign ]]; then
  log "the bundle must not ship Gateway API (or any foreign) CRDs:"
  sed 's/^/  /' <<<"$foreign" >&2
  status=1
else
  log "bundle/manifests: no gateway.networking.k8s.io CRD ($(grep -l '^kind: CustomResourceDefinition' "${manifests[@]}" | wc -l) CRD file(s), all gateway.portcullis.io)"
fi

# 2. operator-sdk: errors fail; so does any warning but the one known false
#    positive: the deprecated-API check flags every RBAC rule on
#    endpointslices, because discovery.k8s.io/v1beta1 was removed in 1.25,
#    whatever version the operator uses (discovery.k8s.io/v1).
report=$("$sdk" bundle validate ./bundle --select-optional suite=operatorframework -o json-alpha1 2>/dev/null) || true
if ! jq -e . >/dev/null 2>&1 <<<"$report"; then
  "$sdk" bundle validate ./bundle --select-optional suite=operatorframework || true
  die "operator-sdk bundle validate produced no report"
fi
jq -r '.outputs[]? | "  \(.type): \(.message)"' <<<"$report" >&2
unexpected=$(jq '[.outputs[]? | select(.type == "error" or (.type == "warning" and (.message | test("Migrate the API\\(s\\) for endpointslices: \\(\\[\"[^\"]*\"\\]\\)$") | not)))] | length' <<<"$report")
if [[ $(jq -r .passed <<<"$report") != true || $unexpected != 0 ]]; then
  log "operator-sdk bundle validate ./bundle --select-optional suite=operatorframework: FAILED ($unexpected unexpected finding(s))"
  status=1
else
  log "operator-sdk bundle validate ./bundle --select-optional suite=operatorframework: passed"
fi

# 3. opm: the file-based catalog.
if "$opm" validate olm/catalog; then
  log "opm validate olm/catalog: passed"
else
  log "opm validate olm/catalog: FAILED"
  status=1
fi
exit $status
