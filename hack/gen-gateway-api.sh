#!/usr/bin/env bash
# Generates Rust types for the Gateway API kinds that the `gateway-api` crate
# lags on, from the upstream CRDs in the sigs.k8s.io/gateway-api Go module.
# The output is committed; `make check-generated` reruns this into a scratch
# directory and fails on any difference.
#
# Usage: hack/gen-gateway-api.sh [OUT_DIR]   (default: gwapi/src/generated)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

out=${1:-$ROOT/gwapi/src/generated}
mkdir -p "$out"
kopium=$(ensure_kopium)
crds=$(go_module_dir sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION")/config/crd/standard

# TCPRoute and UDPRoute are v1 in the standard channel since v1.6; the crate
# still has them as v1alpha2 experimental.
for kind in tcproutes udproutes; do
  log "generating $kind from Gateway API $GATEWAY_API_VERSION"
  {
    echo "// Gateway API $GATEWAY_API_VERSION, standard channel: config/crd/standard/gateway.networking.k8s.io_$kind.yaml"
    # Reading stdin keeps the machine's paths out of kopium's header.
    "$kopium" --schema=derived --derive=JsonSchema --derive=Default --derive=PartialEq --docs -f - \
      < "$crds/gateway.networking.k8s.io_$kind.yaml"
  } > "$out/$kind.rs"
  rustfmt --edition 2024 "$out/$kind.rs"
done
