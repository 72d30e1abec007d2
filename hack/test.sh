#!/usr/bin/env bash
# `make test`: every test, in an order that keeps both cores busy. The
# Go-built tools (the local cluster's binaries, the OLM validators) build in
# the background at low priority (their scripts nice the Go builds), filling
# what the Rust build in the foreground leaves idle; the tests run once both
# are done. Every test binary runs even when one fails, and the
# run ends with one line adding up all their results.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
mkdir -p "$CACHE"
# A cold build gains nothing from incremental state it would only write.
if [[ ${CI:-} == true ]]; then export CARGO_INCREMENTAL=0; fi

# The background build in a process group of its own (job control), so that
# a failure here stops it with everything it started. Not a session of its
# own: the kernel would then share the CPU between the two sessions and the
# nice level would no longer yield to the foreground.
tools_log=$CACHE/go-tools.log
set -m
("$ROOT/hack/build-cluster-bins.sh" && "$ROOT/hack/build-olm-tools.sh") >"$tools_log" 2>&1 &
tools=$!
set +m
trap 'kill -- -"$tools" 2>/dev/null || true' EXIT

# Lints and the build in one: the workspace's crates are compiled by
# clippy's driver with warnings denied (what `make lint` checks), every
# target at once, so the tests below build nothing more.
cargo fmt --all -- --check
hack/check-module-cycles.py proxy/config gwapi crds operator/core operator proxy e2e
clippy_driver="$(rustc --print sysroot)/bin/clippy-driver"
[[ -x $clippy_driver ]] || die "no clippy-driver at $clippy_driver (rustup component add clippy)"
linted() {
  CLIPPY_DRIVER=$clippy_driver RUSTC_WORKSPACE_WRAPPER=$ROOT/hack/clippy-rustc.sh cargo "$@"
}
linted build --workspace --all-targets --locked
hack/check-generated.sh

if ! wait "$tools"; then
  cat "$tools_log" >&2
  die "building the Go tools failed (log above, in ${tools_log#"$ROOT"/})"
fi
trap - EXIT
grep -E '\] (built|cached)' "$tools_log" >&2 || true
hack/validate-bundle.sh

status=0
linted test --workspace --locked --no-fail-fast 2>&1 | tee "$CACHE/cargo-test.log" || status=$?
if [[ ${CI:-} == true ]]; then hack/cluster-down.sh; fi
hack/test-summary.sh "$CACHE/cargo-test.log" || status=1
exit "$status"
