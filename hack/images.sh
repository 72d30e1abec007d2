#!/usr/bin/env bash
# Builds the container images: the operator, the proxy (separately: the
# operator never links BoringSSL), the OLM bundle and the catalog. Uses the
# first image builder that works here: podman, docker (with a reachable
# daemon) or buildah. Without one it says so and exits 0: building images is
# optional on a development machine, and nothing else needs them here (the
# local cluster runs binaries in place of images, see e2e/images.yaml).
#
#   REGISTRY (ghcr.io/portcullis-io)  VERSION (the workspace version)
#   IMAGE_BUILDER (podman|docker|buildah: skip detection)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

registry=${REGISTRY:-ghcr.io/portcullis-io}
version=${VERSION:-$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version *=/ {print $2; exit}' Cargo.toml)}
[[ -n $version ]] || die "cannot read the workspace version from Cargo.toml"

# works NAME: whether NAME is installed and can build images right now.
works() {
  command -v "$1" >/dev/null 2>&1 || return 1
  case $1 in
    docker) docker info >/dev/null 2>&1 ;;
    podman) podman info >/dev/null 2>&1 ;;
    buildah) buildah info >/dev/null 2>&1 ;;
  esac
}

builder=${IMAGE_BUILDER:-}
if [[ -z $builder ]]; then
  for candidate in podman docker buildah; do
    if works "$candidate"; then
      builder=$candidate
      break
    fi
  done
fi
if [[ -z $builder ]]; then
  found=()
  for candidate in podman docker buildah; do
    command -v "$candidate" >/dev/null 2>&1 && found+=("$candidate")
  done
  note=""
  ((${#found[@]})) && note=" (${found[*]} installed but not usable: no daemon or no permission)"
  log "no image builder available: looked for podman, docker and buildah${note}."
  log "nothing built. The recipes: operator/Containerfile, proxy/Containerfile (context: the repository root), bundle/bundle.Dockerfile (context: bundle/), olm/catalog.Dockerfile (context: olm/)."
  exit 0
fi
works "$builder" || die "IMAGE_BUILDER=$builder does not work here"

# build FILE CONTEXT TAG
build() {
  local file=$1 context=$2 tag=$3
  log "$builder: $tag from $file"
  local started=$SECONDS
  case $builder in
    buildah) buildah build --layers -f "$file" --build-arg "VERSION=$version" -t "$tag" "$context" ;;
    *) "$builder" build -f "$file" --build-arg "VERSION=$version" -t "$tag" "$context" ;;
  esac
  log "built $tag in $((SECONDS - started)) s"
}

build operator/Containerfile . "$registry/portcullis-operator:v$version"
build proxy/Containerfile . "$registry/portcullis-proxy:v$version"
build bundle/bundle.Dockerfile bundle "$registry/portcullis-bundle:v$version"
build olm/catalog.Dockerfile olm "$registry/portcullis-catalog:v$version"
log "images: $registry/portcullis-{operator,proxy,bundle,catalog}:v$version"
