#!/usr/bin/env bash
# Builds every libFuzzer target with clang (meson -Dfuzz=true) and runs each for a bounded
# time. Seeds: the target's golden vectors when it has some (tests/*/vectors/<name>/).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cc=$(command -v clang-14 || command -v clang || true)
[[ -n $cc ]] || { echo "fuzz: clang not found (scripts/install-deps.sh installs it)" >&2; exit 1; }

if [[ -f build-fuzz/build.ninja ]]; then meson setup --reconfigure build-fuzz >/dev/null
else CC=$cc meson setup build-fuzz -Dfuzz=true -Db_lundef=false >/dev/null; fi
if ! meson compile -C build-fuzz >/tmp/llmesh-fuzz-build.log 2>&1; then
  grep -E "error|FAILED" /tmp/llmesh-fuzz-build.log | head -20 >&2
  echo "fuzz: build failed (full log /tmp/llmesh-fuzz-build.log)" >&2; exit 1
fi

tmp=$(mktemp -d /tmp/llmesh-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
status=0
while IFS= read -r exe; do
  name=$(basename "$exe"); name=${name#fuzz_}
  seeds=()
  for d in tests/*/vectors/"$name"; do [[ -d $d ]] && seeds+=("$d"); done
  mkdir -p "$tmp/$name"
  printf 'fuzz: %-20s %ss ' "$name" "$secs" >&2
  if "$exe" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -print_final_stats=0 \
       -artifact_prefix="$tmp/$name-" "$tmp/$name" "${seeds[@]}" >"$tmp/$name.log" 2>&1; then
    echo "ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$tmp/$name.log" | awk '{print $2}' || true)$(grep -Eo '#[0-9]+.*DONE' "$tmp/$name.log" | tail -1 | awk '{print $1}') runs)" >&2
  else
    echo "FAILED" >&2; tail -40 "$tmp/$name.log" >&2
    mkdir -p fuzz-artifacts && cp "$tmp/$name-"* fuzz-artifacts/ 2>/dev/null || true
    status=1
  fi
done < <(find build-fuzz -type f -executable -name 'fuzz_*' | sort)
exit $status
