#!/usr/bin/env bash
# `make bench-control-plane`: installs wrk, builds the release operator and
# proxy (and the node agent the local cluster runs), starts the cluster, and
# runs hack/bench/bench_control_plane.py, which prints a Markdown table and
# writes .cache/bench/control-plane/results.json.
#
# Options (environment): BENCH_ROUTES (5000), BENCH_NAMESPACES (10),
# BENCH_PROPAGATE (40), BENCH_EDITS (1000), BENCH_FLIPS (30), BENCH_PHASES
# (scale,propagate,churn,endpoints), BENCH_NO_BUILD=1 to use the binaries as
# they are.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

"$ROOT/hack/deps.sh" --bench
"$ROOT/hack/build-cluster-bins.sh"
if [[ ${BENCH_NO_BUILD:-} != 1 ]]; then
  log "building the release operator and proxy"
  (cd "$ROOT" && cargo build --release --locked -p operator -p proxy \
    --bin portcullis-operator --bin portcullis-proxy)
  (cd "$ROOT" && cargo build --locked -p e2e --bin portcullis-node-agent)
fi
"$ROOT/hack/cluster-up.sh"
exec python3 "$ROOT/hack/bench/bench_control_plane.py"
