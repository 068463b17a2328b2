#!/usr/bin/env bash
# llmesh benchmark on loopback: the same mock upstream (llmesh-mock-provider) reached
#   (a) directly, (b) through Debian's nginx (proxy_pass), (c) through one llmesh-worker
#   (with llmesh-control; master-key auth, routing, metrics, telemetry all on).
# Servers (and the mock) are pinned to core 0, the load generators to core 1.
#
#   bench/run.sh [--quick] [--out FILE]
#
# Measures, per target: req/s of a non-stream chat POST at 1 and 64 connections (wrk),
# req/s of a streaming chat at 64 connections, p50/p99 latency at 1 connection (added
# vs direct), time to first SSE event (bench/ttfe.c, sequential), CPU per request
# (utime+stime from /proc/PID/stat around the 64-connection run), RSS, and RSS while
# 1,000 streams are held open (bench/hold.c; the mock trickles with a long chunk delay).
# Prints a markdown table (also written to bench/results/). Every run is time-bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
out=
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ((quick)); then dur=2; ttfe_n=300; hold_n=1000; hold_s=2; warm=1
else dur=5; ttfe_n=2000; hold_n=1000; hold_s=3; warm=2; fi

for t in wrk nginx taskset cc meson curl; do
  command -v "$t" >/dev/null || { echo "bench: $t missing — run ./scripts/install-deps.sh" >&2; exit 1; }
done
ncpu=$(nproc)
if ((ncpu < 2)); then echo "bench: needs 2 cores (servers on core 0, load on core 1)" >&2; exit 1; fi
SRV="taskset -c 0"
GEN="taskset -c 1"

# 1,000 streams need ~3,000 descriptors (client, worker both sides, mock).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 4096)); then echo "bench: ulimit -n is $(ulimit -n); 1,000 streams need 4096" >&2; exit 1; fi

echo "== build (release) in build-bench" >&2
if [[ -f build-bench/build.ninja ]]; then meson setup --reconfigure build-bench -Dbuildtype=release >/dev/null
else meson setup build-bench -Dbuildtype=release >/dev/null; fi
meson compile -C build-bench >/dev/null
BIN_MOCK=build-bench/tests/mock/llmesh-mock-provider
BIN_CONTROL=build-bench/controlplane/llmesh-control
BIN_CTL=build-bench/controlplane/llmesh-ctl
BIN_WORKER=build-bench/dataplane/llmesh-worker
for b in $BIN_MOCK $BIN_CONTROL $BIN_CTL $BIN_WORKER; do [[ -x $b ]] || { echo "bench: $b not built" >&2; exit 1; }; done

tmp=$(mktemp -d /tmp/llmesh-bench.XXXXXX)
cc -O2 -Wall -Wextra -o "$tmp/ttfe" bench/ttfe.c
cc -O2 -Wall -Wextra -o "$tmp/hold" bench/hold.c

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

taken_ports=" "
free_port() { # a loopback port nothing answers on, not handed out before in this run
  local p
  for _ in $(seq 100); do
    p=$(shuf -i 20000-32000 -n 1)   # below the ephemeral range (32768+) used by clients
    [[ $taken_ports == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    taken_ports+="$p "; echo "$p"; return 0
  done
  echo "bench: no free port" >&2; return 1
}
wait_http() { # url, seconds, [expected code]
  local url=$1 secs=$2 want=${3:-200}
  for _ in $(seq $((secs * 20))); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) == "$want" ]] && return 0
    sleep 0.05
  done
  echo "bench: $url did not answer $want within ${secs}s" >&2; return 1
}
wait_port() { # port, seconds
  for _ in $(seq $(($2 * 20))); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "bench: nothing listens on :$1" >&2; return 1
}
cpu_ticks() { # pids... → utime+stime in clock ticks, summed
  local t=0 p f
  for p in "$@"; do
    f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
    # after "pid (comm)": field 3 is state, utime = field 14, stime = field 15 → $12, $13 here
    t=$((t + $(awk '{print $12 + $13}' <<<"$f")))
  done
  echo "$t"
}
rss_kib() { # pids... → VmRSS summed, KiB
  local t=0 p v
  for p in "$@"; do v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0); t=$((t + ${v:-0})); done
  echo "$t"
}
tick_hz=$(getconf CLK_TCK)

key=sk-bench-master
body='{"model":"gpt-4","messages":[{"role":"user","content":"Say hello."}]}'
sbody='{"model":"gpt-4","messages":[{"role":"user","content":"Say hello."}],"stream":true}'

# ---------------------------------------------------------------- servers
mock_port=$(free_port)
$SRV "$BIN_MOCK" --listen "127.0.0.1:$mock_port" --name bench --log-level warn >"$tmp/mock.log" 2>&1 &
mock_pid=$!; pids+=("$mock_pid")
wait_port "$mock_port" 10
mock_ctl() { curl -fsS "http://127.0.0.1:$mock_port$1" -d "$2" >/dev/null; }

nginx_port=$(free_port)
mkdir -p "$tmp/nginx/logs"
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
error_log $tmp/nginx/logs/error.log warn;
pid $tmp/nginx/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  upstream mock { server 127.0.0.1:$mock_port; keepalive 128; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 120s;
    }
  }
}
EOF
$SRV nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" -g 'daemon off;' >"$tmp/nginx/stderr.log" 2>&1 &
nginx_master=$!; pids+=("$nginx_master")
wait_port "$nginx_port" 10
nginx_pids() { echo "$nginx_master" $(pgrep -P "$nginx_master" || true); }

cp_port=$(free_port); tp_port=$(free_port); worker_port=$(free_port)
mkdir -p "$tmp/data"
cat >"$tmp/llmesh.yaml" <<EOF
model_list:
  - model_name: gpt-4
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:$mock_port/v1
      api_key: sk-bench-provider
router_settings:
  num_retries: 2
  timeout: 120
general_settings:
  master_key: $key
EOF
$SRV "$BIN_CONTROL" --config "$tmp/llmesh.yaml" --data-dir "$tmp/data" \
  --workers-url "tcp://127.0.0.1:$cp_port" --telemetry-url "tcp://127.0.0.1:$tp_port" >"$tmp/control.log" 2>&1 &
control_pid=$!; pids+=("$control_pid")
$SRV "$BIN_WORKER" --control "tcp://127.0.0.1:$cp_port" --listen "127.0.0.1:$worker_port" --region bench \
  >"$tmp/worker.log" 2>&1 &
worker_pid=$!; pids+=("$worker_pid")
wait_http "http://127.0.0.1:$worker_port/readyz" 20

targets=(direct nginx llmesh)
declare -A port=([direct]=$mock_port [nginx]=$nginx_port [llmesh]=$worker_port)
srv_pids() { case $1 in direct) echo "$mock_pid" ;; nginx) nginx_pids ;; llmesh) echo "$worker_pid" ;; esac; }

# Sanity: every target answers a chat with the mock's content before we time anything.
for t in "${targets[@]}"; do
  r=$(curl -s "http://127.0.0.1:${port[$t]}/v1/chat/completions" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d "$body")
  grep -q 'Hello from the mock' <<<"$r" || { echo "bench: $t does not answer a chat: $r" >&2; exit 1; }
done

# ---------------------------------------------------------------- measurements
to_ms() { # wrk latency "123.45us" / "1.23ms" / "1.2s" → ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.4f", n }'
}
declare -A R
wrk_run() { # target, conns, stream(0/1), tag → sets R[target.tag.rps|p50|p99|reqs|errs]
  local t=$1 c=$2 s=$3 tag=$4 o
  o=$(STREAM=$s BENCH_KEY=$key $GEN wrk -t1 -c"$c" -d"${dur}s" --timeout 10s --latency -s bench/chat.lua \
    "http://127.0.0.1:${port[$t]}/v1/chat/completions" 2>&1)
  echo "$o" >"$tmp/wrk-$t-$tag.txt"
  R[$t.$tag.rps]=$(awk '/^Requests\/sec:/{printf "%.0f", $2}' <<<"$o")
  R[$t.$tag.reqs]=$(awk '/requests in/{print $1}' <<<"$o")
  R[$t.$tag.p50]=$(to_ms "$(awk '$1=="50%"{print $2}' <<<"$o")")
  R[$t.$tag.p99]=$(to_ms "$(awk '$1=="99%"{print $2}' <<<"$o")")
  local non2xx sockerr
  non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$o"); sockerr=$(awk -F'[ ,]+' '/Socket errors/{print $5+$7+$9+$11}' <<<"$o")
  R[$t.$tag.errs]=$(( ${non2xx:-0} + ${sockerr:-0} ))
}

for t in "${targets[@]}"; do
  echo "== $t" >&2
  STREAM=0 BENCH_KEY=$key $GEN wrk -t1 -c16 -d"${warm}s" -s bench/chat.lua "http://127.0.0.1:${port[$t]}/v1/chat/completions" >/dev/null 2>&1
  wrk_run "$t" 1 0 c1
  read -r -a sp <<<"$(srv_pids "$t")"
  c0=$(cpu_ticks "${sp[@]}")
  wrk_run "$t" 64 0 c64
  c1=$(cpu_ticks "${sp[@]}")
  R[$t.cpu_us]=$(awk -v d=$((c1 - c0)) -v hz="$tick_hz" -v n="${R[$t.c64.reqs]:-0}" \
    'BEGIN { if (n > 0) printf "%.1f", d / hz * 1e6 / n; else print "n/a" }')
  wrk_run "$t" 64 1 s64
  R[$t.ttfe]=$($GEN "$tmp/ttfe" 127.0.0.1 "${port[$t]}" "$ttfe_n" "$sbody" "$key")
  R[$t.rss]=$(rss_kib "${sp[@]}")
  if [[ $t != direct ]]; then
    mock_ctl /mock/default '{"chunk_delay_ms":60000}'
    $GEN "$tmp/hold" 127.0.0.1 "${port[$t]}" "$hold_n" "$hold_s" "$sbody" "$key" >"$tmp/hold-$t.txt" 2>&1 &
    hp=$!
    for _ in $(seq 400); do grep -q READY "$tmp/hold-$t.txt" && break; sleep 0.1; done
    R[$t.hold_rss]=$(rss_kib "${sp[@]}")
    R[$t.hold]=$(grep -o 'READY.*' "$tmp/hold-$t.txt" || echo "READY never (see $tmp/hold-$t.txt)")
    wait "$hp" || true
    mock_ctl /mock/default '{}'
    # let the cancelled upstream streams drain before the next target
    for _ in $(seq 100); do
      [[ $(curl -s "http://127.0.0.1:$mock_port/mock/stats" | grep -o '"in_flight":[0-9]*' | cut -d: -f2) == 0 ]] && break
      sleep 0.1
    done
  fi
done
R[llmesh.control_rss]=$(rss_kib "$control_pid")
for p in "$mock_pid" "$worker_pid" "$control_pid" "$nginx_master"; do
  kill -0 "$p" 2>/dev/null || { echo "bench: a server died during the run (pid $p); logs in $tmp" >&2; KEEP_TMP=1; }
done

# ---------------------------------------------------------------- report
kv() { grep -o "$2=[0-9.]*" <<<"$1" | cut -d= -f2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.2f", a / b; else print "—" }'; }
diffms() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; printf "%+.3f", d }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

{
  echo "### llmesh benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m), $ncpu cores, $([[ $quick == 1 ]] && echo "quick: ${dur} s runs" || echo "${dur} s runs")"
  echo
  echo "Loopback, same mock upstream; servers + mock on core 0, load generator on core 1."
  echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), access_log off; llmesh: 1 worker, master-key auth, metrics, telemetry on."
  echo
  echo "| target | req/s 1 conn | req/s 64 conns | ×nginx (64) | stream req/s 64 | p50 1 conn ms | p99 1 conn ms | added p50 ms | added p99 ms | TTFE p50 ms | added TTFE ms | CPU µs/req | RSS MiB | RSS, 1,000 streams MiB | errors |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  d50=${R[direct.c1.p50]}; d99=${R[direct.c1.p99]}
  dtt=$(awk -v v="$(kv "${R[direct.ttfe]}" p50_us)" 'BEGIN{printf "%.4f", v/1000}')
  for t in "${targets[@]}"; do
    tt=$(awk -v v="$(kv "${R[$t.ttfe]}" p50_us)" 'BEGIN{printf "%.4f", v/1000}')
    if [[ $t == direct ]]; then a50="—"; a99="—"; att="—"; hold="—"
    else a50=$(diffms "${R[$t.c1.p50]}" "$d50"); a99=$(diffms "${R[$t.c1.p99]}" "$d99"); att=$(diffms "$tt" "$dtt")
      hold=$(mib "${R[$t.hold_rss]}"); fi
    errs=$(( ${R[$t.c1.errs]:-0} + ${R[$t.c64.errs]:-0} + ${R[$t.s64.errs]:-0} ))
    echo "| $t | ${R[$t.c1.rps]} | ${R[$t.c64.rps]} | $(ratio "${R[$t.c64.rps]}" "${R[nginx.c64.rps]}") | ${R[$t.s64.rps]} | ${R[$t.c1.p50]} | ${R[$t.c1.p99]} | $a50 | $a99 | $(printf %.3f "$tt") | $att | ${R[$t.cpu_us]} | $(mib "${R[$t.rss]}") | $hold | $errs |"
  done
  echo
  echo "- llmesh vs nginx: req/s 64 conns ×$(ratio "${R[llmesh.c64.rps]}" "${R[nginx.c64.rps]}"), stream ×$(ratio "${R[llmesh.s64.rps]}" "${R[nginx.s64.rps]}"), CPU/req ×$(ratio "${R[llmesh.cpu_us]}" "${R[nginx.cpu_us]}"), RSS ×$(ratio "${R[llmesh.rss]}" "${R[nginx.rss]}")."
  echo "- CPU µs/req: server processes only (direct: the mock; nginx: master+worker; llmesh: the worker), utime+stime over the 64-conn run."
  echo "- RSS: nginx = master + worker; llmesh = the worker (llmesh-control: $(mib "${R[llmesh.control_rss]}") MiB, not included)."
  echo "- 1,000 streams: nginx ${R[nginx.hold]}; llmesh ${R[llmesh.hold]} (open/headers/first data event seen by the client)."
  echo "- TTFE = time from request write to the first \`data:\` line, $ttfe_n sequential requests, new connection each (bench/ttfe.c). direct: ${R[direct.ttfe]}; nginx: ${R[nginx.ttfe]}; llmesh: ${R[llmesh.ttfe]}."
  echo "- errors = non-2xx + socket errors over the three wrk runs (must be 0 for the numbers to count)."
} | tee "$tmp/report.md"

mkdir -p bench/results
res=${out:-bench/results/bench-$(date -u +%Y%m%dT%H%M%SZ).md}
cp "$tmp/report.md" "$res"
echo "bench: report written to $res" >&2
