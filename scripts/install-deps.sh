#!/usr/bin/env bash
# Installs, idempotently, every Debian 12 package llmesh needs to build, test and benchmark.
# Nothing else is installed by hand: the README's commands and .ci/run call this script.
set -euo pipefail

PKGS=(
  build-essential pkg-config meson ninja-build cmake clang libclang-rt-14-dev
  libuv1-dev libnng-dev libprotobuf-c-dev protobuf-c-compiler libsqlite3-dev
  libcurl4-openssl-dev libssl-dev libhttp-parser-dev libjansson-dev libyaml-dev libcmocka-dev
  nodejs npm curl nginx-light wrk procps util-linux openssl
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from elsewhere than Debian (a newer build on PATH): accept it.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
fi

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx-light's package starts a service on port 80; the benchmark runs its own instance.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx >/dev/null 2>&1 || true
fi
echo "install-deps: all packages present" >&2
