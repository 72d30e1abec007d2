#!/usr/bin/env bash
# `make test`: every test, in an order that keeps both cores busy. The
# Go-built tools (the local cluster's binaries, the OLM validators) build in
# the background at low priority, filling what the Rust lints and builds in
# the foreground leave idle; the tests run once both are done. Ends with one
# line adding up every test binary's results.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
mkdir -p "$CACHE"

# The background build in its own process group, so that a failure here
# stops it with everything it started.
tools_log=$CACHE/go-tools.log
setsid bash -c '"$1/hack/build-cluster-bins.sh" && "$1/hack/build-olm-tools.sh"' _ "$ROOT" \
  >"$tools_log" 2>&1 &
tools=$!
trap 'kill -- -"$tools" 2>/dev/null || true' EXIT

make --no-print-directory lint
hack/check-generated.sh
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-run

if ! wait "$tools"; then
  cat "$tools_log" >&2
  die "building the Go tools failed (log above, in ${tools_log#"$ROOT"/})"
fi
trap - EXIT
grep -E '\] (built|cached)' "$tools_log" >&2 || true
hack/validate-bundle.sh

status=0
cargo test --workspace --locked 2>&1 | tee "$CACHE/cargo-test.log" || status=$?
if [[ ${CI:-} == true ]]; then hack/cluster-down.sh; fi
hack/test-summary.sh "$CACHE/cargo-test.log" || status=1
exit "$status"
