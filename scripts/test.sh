#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what is missing, builds, runs every
# test — unit and integration — plainly and again under AddressSanitizer + UBSan,
# then runs every libFuzzer target for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

./scripts/install-deps.sh
if [[ -f tests/integration/package.json ]]; then
  (cd tests/integration && npm ci --no-audit --no-fund --loglevel=error)
fi

build() { # dir, extra meson args...
  local dir=$1; shift
  if [[ -f $dir/build.ninja ]]; then meson setup --reconfigure "$dir" "$@" >/dev/null
  else meson setup "$dir" "$@" >/dev/null; fi
  meson compile -C "$dir"
}

echo "== build (release-ish, -Werror)"
build build
echo "== tests"
meson test -C build --print-errorlogs --num-processes 2

echo "== build with AddressSanitizer + UndefinedBehaviorSanitizer"
build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
echo "== tests under ASan/UBSan"
meson test -C build-asan --setup asan --no-suite chaos --print-errorlogs --num-processes 2 # chaos: plain build only
echo "== fuzz targets (libFuzzer, bounded time each)"
./scripts/fuzz.sh "${LLMESH_FUZZ_SECONDS:-10}"
echo "== all tests passed"
