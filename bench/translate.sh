#!/usr/bin/env bash
# llmesh translation cost benchmark: CPU per request, response and stream chunk of every
# provider adapter (and the Anthropic ingress) against the OpenAI passthrough. No sockets:
# bench-translate (bench/translate.c) calls the translators directly on generated inputs
# in each provider's own wire format, validated before timing.
#
#   bench/translate.sh [--quick] [--out FILE]
#
# Builds build-tr (release), runs bench-translate pinned to core 0 (taskset -c 0), prints
# the markdown table and writes it to bench/results/translate-<UTC time>.md (or FILE).
# --quick: ~0.04 s per measurement instead of ~0.3 s (about 5 s in all instead of 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
out=
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "translate: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

for t in taskset meson ninja; do
  command -v "$t" >/dev/null || { echo "translate: $t missing — run ./scripts/install-deps.sh" >&2; exit 1; }
done

echo "== build (release) in build-tr" >&2
if [[ -f build-tr/build.ninja ]]; then meson setup --reconfigure build-tr -Dbuildtype=release >/dev/null
else meson setup build-tr -Dbuildtype=release >/dev/null; fi
meson compile -C build-tr bench/bench-translate >/dev/null
BIN=build-tr/bench/bench-translate
[[ -x $BIN ]] || { echo "translate: $BIN not built" >&2; exit 1; }

args=()
((quick)) && args+=(--quick)
tmp=$(mktemp /tmp/llmesh-translate.XXXXXX)
trap 'rm -f "$tmp"' EXIT
{
  echo "### llmesh translation cost — $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m), $(nproc) cores" \
       "($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), release build, core 0 only$( ((quick)) && echo ", quick")"
  echo
  taskset -c 0 "$BIN" "${args[@]}"
} | tee "$tmp"

mkdir -p bench/results
res=${out:-bench/results/translate-$(date -u +%Y%m%dT%H%M%SZ).md}
cp "$tmp" "$res"
echo "translate: report written to $res" >&2
