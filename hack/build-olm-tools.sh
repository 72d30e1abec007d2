#!/usr/bin/env bash
# Builds the OLM validators from Go modules pinned in hack/tools/:
# operator-sdk (bundle validation) and opm (file-based catalog validation),
# into .cache/bin/. Each is rebuilt only when its pin (go.mod and go.sum, and
# the flags below) changes. Built with the tag containers_image_openpgp, so
# that neither needs gpgme or cgo.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bin=$CACHE/bin
mkdir -p "$bin"
# -mod=readonly: a build never rewrites the pins; drift fails instead.
export GOFLAGS=-mod=readonly CGO_ENABLED=0
tags=containers_image_openpgp

# pinned MODULE TOOLS_DIR: the version of MODULE that TOOLS_DIR's go.mod pins.
pinned() {
  (cd "$ROOT/hack/tools/$2" && go list -m -f '{{.Version}}' "$1")
}

# build NAME TOOLS_DIR PACKAGE LDFLAGS
build() {
  local name=$1 dir=$ROOT/hack/tools/$2 package=$3 ldflags=$4
  local stamp
  stamp=$(cat "$dir/go.mod" "$dir/go.sum" <(printf '%s %s' "$tags" "$ldflags") | sha256sum | cut -c1-16)
  if [[ -x $bin/$name && $(cat "$bin/$name.stamp" 2>/dev/null) == "$stamp" ]]; then
    log "cached: $name"
    return
  fi
  log "building $name from $(cd "$dir" && go list -f '{{.Module.Path}} {{.Module.Version}}' "$package") (several minutes, once) ..."
  local started=$SECONDS
  (cd "$dir" && nice -n 10 go build -trimpath -tags "$tags" -ldflags="-s -w $ldflags" -o "$bin/$name.tmp" "$package")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$stamp" > "$bin/$name.stamp"
  log "built $name in $((SECONDS - started)) s"
}

sdk_version=$(pinned github.com/operator-framework/operator-sdk operator-sdk)
sdk_pkg=github.com/operator-framework/operator-sdk/internal/version
build operator-sdk operator-sdk github.com/operator-framework/operator-sdk/cmd/operator-sdk \
  "-X $sdk_pkg.Version=$sdk_version -X $sdk_pkg.GitVersion=$sdk_version"

opm_version=$(pinned github.com/operator-framework/operator-registry opm)
build opm opm github.com/operator-framework/operator-registry/cmd/opm \
  "-X github.com/operator-framework/operator-registry/cmd/opm/version.opmVersion=$opm_version"
