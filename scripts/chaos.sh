#!/usr/bin/env bash
# chaos.sh [BUILD_DIR] [-- chaos.mjs args...] — builds the plain tree and runs the chaos
# suite (tests/chaos/chaos.mjs): scripted failure scenarios (hard outage, 30 % 500s,
# latency spike, 429 storm, all down, flapping, stream cut/stall, silent provider, control
# plane down) under mixed load, ~5 min. Prints the table and writes bench/results/chaos.md.
# Not meant for a sanitizer build: the numbers would measure ASan.
#   scripts/chaos.sh                      # build/, every scenario
#   scripts/chaos.sh build -- --only hard-outage,silent --flap-seconds 20
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
if [[ $# -gt 0 && $1 != -- ]]; then dir=$1; shift; fi
[[ ${1:-} == -- ]] && shift
if [[ ! -d tests/integration/node_modules ]]; then
  (cd tests/integration && npm ci --no-audit --no-fund --loglevel=error)
fi
if [[ -f $dir/build.ninja ]]; then meson compile -C "$dir" >/dev/null
else meson setup "$dir" >/dev/null && meson compile -C "$dir" >/dev/null; fi
san=$(meson introspect --buildoptions "$dir" | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).find(o=>o.name==="b_sanitize")?.value ?? "none"))')
if [[ $san != none ]]; then
  echo "chaos.sh: $dir is built with -Db_sanitize=$san; chaos numbers need a plain build" >&2
  exit 2
fi
LLMESH_BUILD_DIR=$PWD/$dir exec node tests/chaos/chaos.mjs "$@"
