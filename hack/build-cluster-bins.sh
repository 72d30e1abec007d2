#!/usr/bin/env bash
# Builds the local cluster's binaries from Go modules pinned in hack/tools/:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, the
# echo backend and CoreDNS (the conformance suite's UDP backend, which the
# base manifests run); copies the Gateway API CRDs and conformance manifests
# out of the module cache. With --conformance, also the Gateway API
# conformance suite (as a test binary): only `make conformance` runs it.
# Each binary is rebuilt only when its pin (its go.mod and go.sum) changes.
#
#   hack/build-cluster-bins.sh [--conformance]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bin=$CACHE/bin
mkdir -p "$bin"
# -mod=readonly: a build never rewrites the pins; drift fails instead.
export GOFLAGS=-mod=readonly CGO_ENABLED=0

# Kubernetes binaries built from modules report v0.0.0 unless told their
# version; clients that check the server's version need the real one.
version_flags() {
  local version
  version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit} /^require k8s.io\/kubernetes / {print $3; exit}' "$1/go.mod")
  [[ -n $version ]] || return 0
  local major=${version#v}
  major=${major%%.*}
  local minor=${version#v*.}
  minor=${minor%%.*}
  local flags=""
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $package.gitVersion=$version -X $package.gitMajor=$major -X $package.gitMinor=$minor"
    flags+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$flags"
}

# build NAME TOOLS_DIR PACKAGE [go test -c]
build() {
  local name=$1 dir=$ROOT/hack/tools/$2 package=$3 mode=${4:-build}
  local stamp
  stamp=$(cat "$dir/go.mod" "$dir/go.sum" <(version_flags "$dir") | sha256sum | cut -c1-16)
  if [[ -x $bin/$name && $(cat "$bin/$name.stamp" 2>/dev/null) == "$stamp" ]]; then
    log "cached: $name"
    return
  fi
  log "building $name from $(cd "$dir" && go list -f '{{.Module.Path}} {{.Module.Version}}' "$package") ..."
  local started=$SECONDS
  if [[ $mode == test ]]; then
    (cd "$dir" && nice -n 10 go test -c -trimpath -o "$bin/$name" "$package")
  else
    (cd "$dir" && nice -n 10 go build -trimpath -ldflags="-s -w $(version_flags "$dir")" -o "$bin/$name" "$package")
  fi
  echo "$stamp" > "$bin/$name.stamp"
  log "built $name in $((SECONDS - started)) s"
}

build etcd etcd go.etcd.io/etcd/server/v3
build kube-apiserver kubernetes k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager kubernetes k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler kubernetes k8s.io/kubernetes/cmd/kube-scheduler
build kubectl kubernetes k8s.io/kubernetes/cmd/kubectl
build echo-basic gateway-api sigs.k8s.io/gateway-api/conformance/echo-basic
build coredns coredns github.com/coredns/coredns
if [[ ${1:-} == --conformance ]]; then
  build gateway-conformance.test gateway-api sigs.k8s.io/gateway-api/conformance test
fi

# CRDs and conformance manifests, for the versions the tests use: v1.6.1 and
# v1.2.1 (what OpenShift 4.19 ships).
for version in "$GATEWAY_API_VERSION" v1.2.1; do
  target=$CACHE/gateway-api/$version
  if [[ -f $target/.complete ]]; then
    continue
  fi
  module=$(go_module_dir sigs.k8s.io/gateway-api "$version")
  rm -rf "$target" && mkdir -p "$target"
  cp -r "$module/config/crd/standard" "$module/config/crd/experimental" "$target/"
  chmod -R u+w "$target"
  touch "$target/.complete"
  log "Gateway API $version CRDs in ${target#"$ROOT"/}"
done
conformance=$CACHE/gateway-api/$GATEWAY_API_VERSION/conformance
if [[ ! -f $conformance/base/manifests.yaml ]]; then
  module=$(go_module_dir sigs.k8s.io/gateway-api/conformance "$GATEWAY_API_VERSION")
  mkdir -p "$conformance"
  cp -r "$module/base" "$module/tests" "$conformance/"
  chmod -R u+w "$conformance"
fi
