#!/usr/bin/env bash
# Cost of mid-stream tracking on the stream hot path (docs/resilience.md "Mid-stream failover").
# One llmesh-worker (+ llmesh-control) in front of the mock upstream, two model groups on the
# same mock deployment: `tracked` (mid_stream_fallback: continue, every event tracked) and
# `plain` (mid_stream_fallback: error, upstream bytes relayed as they come). The mock streams
# N content chunks per answer (one word each; + the role and finish chunks and [DONE]).
# Worker and mock on core 0, wrk on core 1 (as bench/run.sh).
#
#   bench/midstream.sh [--quick] [--build DIR] [--chunks N] [--conns C] [--rounds R] [--out FILE]
#   bench/midstream.sh --instructions [--build DIR] [--chunks N] [--streams S] [--out FILE]
#
# Per round, each group gets one wrk run of D s (order alternates between rounds); worker
# CPU = utime+stime from /proc/PID/stat around the run, divided by the streams completed
# (and by the chunks per stream). Prints the median over the rounds, per group, and the
# tracked/plain overhead as the median of the per-round ratios (both runs of a round see
# about the same machine load, so the ratio is steadier than either number). Every run is
# checked: 0 non-2xx, 0 socket errors; and before timing, each group's stream must carry
# the N words and end with [DONE] (curl).
# --instructions: the worker runs under valgrind (callgrind) instead, and S sequential
# streams per group are counted in user-space instructions (Ir) per stream and per chunk:
# slow, but independent of the machine's load (the kernel's share, the same syscalls for
# both groups, is not counted).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 build=build-bench chunks=300 conns=8 rounds=5 out= instr=0 streams=100
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --build) build=$2; shift ;;
    --chunks) chunks=$2; shift ;;
    --conns) conns=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --instructions) instr=1 ;;
    --streams) streams=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "midstream-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then dur=2; rounds=3; else dur=4; fi

for t in wrk taskset meson curl; do
  command -v "$t" >/dev/null || { echo "midstream-bench: $t missing" >&2; exit 1; }
done
(($(nproc) >= 2)) || { echo "midstream-bench: needs 2 cores" >&2; exit 1; }
SRV="taskset -c 0" GEN="taskset -c 1"

echo "== build (release) in $build" >&2
if [[ -f $build/build.ninja ]]; then
  meson configure "$build" | grep -E '^ *buildtype +release ' >/dev/null ||
    { echo "midstream-bench: $build is not a release build" >&2; exit 1; }
else meson setup "$build" -Dbuildtype=release >/dev/null; fi
meson compile -C "$build" llmesh-worker llmesh-control llmesh-mock-provider >/dev/null
BIN_MOCK=$build/tests/mock/llmesh-mock-provider
BIN_CONTROL=$build/controlplane/llmesh-control
BIN_WORKER=$build/dataplane/llmesh-worker

tmp=$(mktemp -d /tmp/llmesh-msbench.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [[ ${KEEP_TMP:-0} == 1 ]] || rm -rf "$tmp"
}
trap cleanup EXIT

taken=" "
free_port() {
  local p
  for _ in $(seq 100); do
    p=$(shuf -i 20000-32000 -n 1)
    [[ $taken == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    taken+="$p "; echo "$p"; return 0
  done
  echo "midstream-bench: no free port" >&2; return 1
}
wait_http() {
  for _ in $(seq $(($2 * 20))); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) == 200 ]] && return 0; sleep 0.05
  done
  echo "midstream-bench: $1 not ready" >&2; return 1
}
cpu_ticks() { cut -d')' -f2- "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime + stime
hz=$(getconf CLK_TCK)
key=sk-bench-master

mock_port=$(free_port)
$SRV "$BIN_MOCK" --listen "127.0.0.1:$mock_port" --name bench --log-level warn >"$tmp/mock.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$mock_port/mock/stats" 10
words=$(seq -f 'w%g' 1 "$chunks" | tr '\n' ' ' | sed 's/ $//')
curl -fsS "http://127.0.0.1:$mock_port/mock/default" -d "{\"content\":\"$words\"}" >/dev/null

cp_port=$(free_port); tp_port=$(free_port); worker_port=$(free_port)
mkdir -p "$tmp/data"
cat >"$tmp/llmesh.yaml" <<YAML
model_list:
  - model_name: tracked
    litellm_params: {model: openai/gpt-4o, api_base: "http://127.0.0.1:$mock_port/v1", api_key: sk-bench}
  - model_name: plain
    litellm_params: {model: openai/gpt-4o, api_base: "http://127.0.0.1:$mock_port/v1", api_key: sk-bench}
router_settings:
  num_retries: 2
  timeout: 120
  mid_stream_fallback: continue
  model_group_settings:
    plain: {mid_stream_fallback: error}
general_settings:
  master_key: $key
YAML
$SRV "$BIN_CONTROL" --config "$tmp/llmesh.yaml" --data-dir "$tmp/data" \
  --workers-url "tcp://127.0.0.1:$cp_port" --telemetry-url "tcp://127.0.0.1:$tp_port" >"$tmp/control.log" 2>&1 &
pids+=($!)
VG=
if ((instr)); then
  command -v valgrind >/dev/null || { echo "midstream-bench: valgrind missing" >&2; exit 1; }
  VG="valgrind --tool=callgrind --callgrind-out-file=$tmp/cg.%p"
fi
$SRV $VG "$BIN_WORKER" --control "tcp://127.0.0.1:$cp_port" --listen "127.0.0.1:$worker_port" --region bench \
  >"$tmp/worker.log" 2>&1 &
worker_pid=$!; pids+=("$worker_pid")
wait_http "http://127.0.0.1:$worker_port/readyz" $((instr ? 120 : 20))

url="http://127.0.0.1:$worker_port/v1/chat/completions"
for g in tracked plain; do # both groups answer the whole stream before anything is timed
  r=$(curl -sN "$url" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$g\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}")
  echo "$r" >"$tmp/check-$g.txt"
  n=$(grep -c '"content":"w[0-9]* \{0,1\}"' <<<"$r" || true)
  [[ $n == "$chunks" && $r == *'data: [DONE]'* ]] ||
    { echo "midstream-bench: group $g streamed $n/$chunks chunks (or no [DONE])" >&2; KEEP_TMP=1; exit 1; }
  ev_bytes=$(grep -m1 '"content":"w1 "' <<<"$r" | wc -c)
done

if ((instr)); then # user-space instructions per stream, under callgrind
  one() { curl -sS -o /dev/null -w '%{http_code}\n' "$url" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d "{\"model\":\"$1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}"; }
  declare -A IR
  for g in plain tracked plain tracked; do
    callgrind_control -z "$worker_pid" >/dev/null
    for ((i = 0; i < streams; i++)); do [[ $(one "$g") == 200 ]] || { echo "midstream-bench: $g failed" >&2; exit 1; }; done
    rm -f "$tmp"/cg.*.[0-9]*
    callgrind_control -d "$worker_pid" >/dev/null
    f=$(ls -t "$tmp"/cg.* | head -1)
    ir=$(awk '/^(summary|totals):/{print $2; exit}' "$f")
    IR[$g]+="$(awk -v i="$ir" -v n="$streams" 'BEGIN{printf "%.0f", i / n}') "
  done
  kill -0 "$worker_pid" 2>/dev/null || { echo "midstream-bench: the worker died; logs in $tmp" >&2; KEEP_TMP=1; exit 1; }
  lo() { tr ' ' '\n' <<<"$1" | grep . | sort -n | head -1; }
  ip=$(lo "${IR[plain]}"); it=$(lo "${IR[tracked]}")
  {
    echo "### mid-stream tracking cost, user-space instructions — $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m)"
    echo
    echo "$chunks content chunks per stream (~$ev_bytes B per SSE event), $streams sequential streams per group, twice (lower kept); worker under callgrind ($build)."
    echo
    echo "| group | worker Ir/stream | Ir/chunk | runs |"
    echo "|---|--:|--:|---|"
    echo "| plain (error) | $ip | $((ip / chunks)) | ${IR[plain]}|"
    echo "| tracked (continue) | $it | $((it / chunks)) | ${IR[tracked]}|"
    echo
    echo "- tracked over plain: $(awk -v a="$it" -v b="$ip" 'BEGIN{printf "%+.1f %%", (a / b - 1) * 100}') user-space instructions per stream ($(( (it - ip) / chunks )) per chunk)."
  } | tee "$tmp/report.md"
  mkdir -p bench/results
  res=${out:-bench/results/midstream-ir-$(date -u +%Y%m%dT%H%M%SZ).md}
  cp "$tmp/report.md" "$res"
  echo "midstream-bench: report written to $res" >&2
  exit 0
fi

declare -A S
run() { # group → appends "cpu_us_per_stream" to S[group]
  local g=$1 c0 c1 o reqs non2xx sock
  c0=$(cpu_ticks "$worker_pid")
  o=$(MODEL=$g BENCH_KEY=$key $GEN wrk -t1 -c"$conns" -d"${dur}s" --timeout 20s -s bench/stream.lua "$url" 2>&1)
  c1=$(cpu_ticks "$worker_pid")
  reqs=$(awk '/requests in/{print $1}' <<<"$o")
  non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$o"); sock=$(awk -F'[ ,]+' '/Socket errors/{print $5+$7+$9+$11}' <<<"$o")
  ((${non2xx:-0} + ${sock:-0} == 0 && ${reqs:-0} > 0)) ||
    { echo "midstream-bench: $g run had errors or no streams:"$'\n'"$o" >&2; KEEP_TMP=1; exit 1; }
  S[$g.last]=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v n="$reqs" 'BEGIN{printf "%.1f", d / hz * 1e6 / n}')
  S[$g]+="${S[$g.last]} "
  S[$g.n]=$(( ${S[$g.n]:-0} + reqs ))
}
echo "== warm-up" >&2
MODEL=tracked BENCH_KEY=$key $GEN wrk -t1 -c"$conns" -d1s -s bench/stream.lua "$url" >/dev/null 2>&1
MODEL=plain BENCH_KEY=$key $GEN wrk -t1 -c"$conns" -d1s -s bench/stream.lua "$url" >/dev/null 2>&1
for ((r = 0; r < rounds; r++)); do
  echo "== round $((r + 1))/$rounds" >&2
  if ((r % 2)); then run plain; run tracked; else run tracked; run plain; fi
  # paired: the two runs of a round saw the same machine load
  S[ratio]+="$(awk -v a="${S[tracked.last]}" -v b="${S[plain.last]}" 'BEGIN{printf "%+.1f", (a / b - 1) * 100}') "
done
kill -0 "$worker_pid" 2>/dev/null || { echo "midstream-bench: the worker died; logs in $tmp" >&2; KEEP_TMP=1; exit 1; }

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
mt=$(median "${S[tracked]}"); mp=$(median "${S[plain]}")
per_chunk() { awk -v u="$1" -v n="$chunks" 'BEGIN{printf "%.0f", u * 1000 / n}'; }
{
  echo "### mid-stream tracking cost — $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "$chunks content chunks per stream (~$ev_bytes B per SSE event), $conns connections, $rounds × ${dur} s per group, release build ($build); worker + mock on core 0, wrk on core 1."
  echo
  echo "| group | worker CPU µs/stream (median) | ns/chunk | runs (µs/stream) | streams |"
  echo "|---|--:|--:|---|--:|"
  echo "| plain (error) | $mp | $(per_chunk "$mp") | ${S[plain]}| ${S[plain.n]} |"
  echo "| tracked (continue) | $mt | $(per_chunk "$mt") | ${S[tracked]}| ${S[tracked.n]} |"
  echo
  echo "- tracked over plain: $(median "${S[ratio]}") % worker CPU per stream (median of the per-round ratios: ${S[ratio]}%); medians above: $(awk -v a="$mt" -v b="$mp" 'BEGIN{printf "%+.1f %%", (a / b - 1) * 100}'), $(awk -v a="$mt" -v b="$mp" -v n="$chunks" 'BEGIN{printf "%+.0f", (a - b) * 1000 / n}') ns per chunk."
} | tee "$tmp/report.md"
mkdir -p bench/results
res=${out:-bench/results/midstream-$(date -u +%Y%m%dT%H%M%SZ).md}
cp "$tmp/report.md" "$res"
echo "midstream-bench: report written to $res" >&2
