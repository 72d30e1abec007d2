#!/usr/bin/env bash
# Fails when committed generated files differ from what the generators write.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0

"$ROOT/hack/gen-gateway-api.sh" "$scratch/gwapi"
for file in "$scratch"/gwapi/*.rs; do
  if ! diff -u "$ROOT/gwapi/src/generated/$(basename "$file")" "$file"; then
    log "gwapi/src/generated/$(basename "$file") is stale: run hack/gen-gateway-api.sh"
    status=1
  fi
done
[[ $status == 0 ]] && log "generated Gateway API types are up to date"
exit $status
