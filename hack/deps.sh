#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test Portcullis, and
# nothing when everything is there. Debian packages only; Go-built tools are
# installed by their own scripts into .cache/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# boring-sys builds BoringSSL with cmake and generates bindings with libclang;
# the local cluster needs iproute2, openssl and curl.
packages=(cmake clang libclang1-14 libclang-common-14-dev iproute2 openssl curl jq)
# Benchmarks compare against peers run from Debian packages.
if [[ ${1:-} == --bench ]]; then
  packages+=(nginx-light libnginx-mod-stream haproxy wrk nghttp2-client)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in cargo go; do
  command -v "$tool" >/dev/null || die "$tool is not installed; this machine kind ships it, so something is off"
done
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
