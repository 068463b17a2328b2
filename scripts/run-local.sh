#!/usr/bin/env bash
# Runs llmesh locally, in the foreground, on a fresh Debian 12 machine:
#   installs dependencies, builds (./build), then starts
#     llmesh-mock-provider  on 127.0.0.1:9001  (a fake OpenAI upstream)
#     llmesh-control        data dir ./data, config deploy/local.yaml
#     llmesh-worker         on 127.0.0.1:4000
#   and follows their logs (also in ./data/*.log). Ctrl-C or SIGTERM stops all three.
#
# Environment overrides: LLMESH_CONFIG (default deploy/local.yaml), LLMESH_DATA (./data),
# LLMESH_PORT (4000), MOCK_PORT (9001), CONTROL_PORT (7400; telemetry uses +1),
# LLMESH_BUILD_DIR (build), SKIP_DEPS=1 (don't run install-deps.sh), NO_MOCK=1 (real
# providers only: no mock; e.g. LLMESH_CONFIG=deploy/real-providers.example.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

config=${LLMESH_CONFIG:-deploy/local.yaml}
data=${LLMESH_DATA:-$root/data}
port=${LLMESH_PORT:-4000}
mock_port=${MOCK_PORT:-9001}
cp_port=${CONTROL_PORT:-7400}
tp_port=$((cp_port + 1))
master_key=sk-llmesh-local

say() { printf '\033[1mrun-local:\033[0m %s\n' "$*" >&2; }

build=${LLMESH_BUILD_DIR:-build}

[[ ${SKIP_DEPS:-0} == 1 ]] || ./scripts/install-deps.sh
if [[ -f $build/build.ninja ]]; then meson setup --reconfigure "$build" >/dev/null
else meson setup "$build" >/dev/null; fi
meson compile -C "$build"

bin_control=$build/controlplane/llmesh-control
bin_ctl=$build/controlplane/llmesh-ctl
bin_worker=$build/dataplane/llmesh-worker
bin_mock=$build/tests/mock/llmesh-mock-provider
for b in "$bin_control" "$bin_ctl" "$bin_worker" "$bin_mock"; do
  [[ -x $b ]] || { say "missing $b after the build"; exit 1; }
done

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=("$port" "$cp_port" "$tp_port"); [[ ${NO_MOCK:-0} == 1 ]] || ports+=("$mock_port")
for p in "${ports[@]}"; do
  if port_busy "$p"; then say "port $p is already in use (another llmesh? see LLMESH_PORT/MOCK_PORT/CONTROL_PORT)"; exit 1; fi
done

mkdir -p "$data"
pids=()
names=()
tail_pid=
stopping=0

stop_all() {
  ((stopping)) && return; stopping=1
  trap '' INT TERM HUP
  say "stopping..."
  # Reverse start order: worker, control, mock. SIGTERM, then SIGKILL after 5 s.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "${pids[i]}" 2>/dev/null; then
      say "${names[i]} did not stop in 5 s: SIGKILL"; kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    local rc=0; wait "${pids[i]}" 2>/dev/null || rc=$?
    say "${names[i]} exited ($rc)"
  done
  [[ -n $tail_pid ]] && kill "$tail_pid" 2>/dev/null || true
}
trap 'stop_all; exit 0' INT TERM HUP
trap 'stop_all' EXIT

start() { # name, command...
  local name=$1; shift
  # Own session: Ctrl-C reaches only this script, which stops the three in order
  # (worker drains first, then control, then the mock it may still be talking to).
  setsid "$@" >>"$data/$name.log" 2>&1 &
  pids+=($!); names+=("$name")
  say "started $name (pid $!): $*"
}

wait_until() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    for i in "${!pids[@]}"; do
      kill -0 "${pids[i]}" 2>/dev/null || { say "${names[i]} exited; tail of $data/${names[i]}.log:"; tail -n 30 "$data/${names[i]}.log" >&2; exit 1; }
    done
    sleep 0.1
  done
  say "timed out waiting for $what"; exit 1
}

if [[ ${NO_MOCK:-0} != 1 ]]; then
  start mock "$bin_mock" --listen "127.0.0.1:$mock_port" --name mock
  wait_until "mock on :$mock_port" 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$mock_port"
fi
start control "$bin_control" --config "$config" --data-dir "$data" \
  --workers-url "tcp://127.0.0.1:$cp_port" --telemetry-url "tcp://127.0.0.1:$tp_port"
wait_until "llmesh-control admin socket" 15 "$bin_ctl" --data-dir "$data" status
start worker "$bin_worker" --control "tcp://127.0.0.1:$cp_port" --listen "127.0.0.1:$port" --region local
wait_until "worker /readyz" 15 curl -fsS "http://127.0.0.1:$port/readyz"

cat >&2 <<EOF

llmesh is up: worker http://127.0.0.1:$port  (control data in $data, logs in $data/*.log)
Try:
  curl -s http://127.0.0.1:$port/v1/chat/completions \\
    -H 'Authorization: Bearer $master_key' -H 'Content-Type: application/json' \\
    -d '{"model":"gpt-4","messages":[{"role":"user","content":"Hello!"}]}' -i

  curl -sN http://127.0.0.1:$port/v1/chat/completions \\
    -H 'Authorization: Bearer $master_key' -H 'Content-Type: application/json' \\
    -d '{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'

  curl -s http://127.0.0.1:$port/v1/models -H 'Authorization: Bearer $master_key'
  curl -s http://127.0.0.1:$port/metrics
  $bin_ctl --data-dir $data status
EOF
if [[ ${NO_MOCK:-0} != 1 ]]; then
cat >&2 <<EOF

  # make the mock fail the next request with a 500 and watch the failover (x-llmesh-attempts):
  curl -s http://127.0.0.1:$mock_port/mock/faults -d '{"faults":[{"status":500}]}'
EOF
fi
printf '\nCtrl-C stops everything. Logs follow.\n\n' >&2

tail -q -n 0 -F "$data"/{mock,control,worker}.log 2>/dev/null &
tail_pid=$!
# Stay in the foreground until one process dies or we are told to stop.
while :; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      rc=0; wait "${pids[i]}" || rc=$?
      say "${names[i]} exited unexpectedly ($rc); stopping the rest"
      unset 'pids[i]' 'names[i]'; pids=("${pids[@]}"); names=("${names[@]}")
      exit 1
    fi
  done
  sleep 1 & wait $! || true
done
