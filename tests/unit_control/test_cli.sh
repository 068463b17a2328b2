#!/bin/bash
# test_cli.sh — exit statuses and messages of llmesh-control / llmesh-ctl:
# --help → 0, bad flag → 2, bad config → 1 with FILE:LINE: key, no config → 1,
# a secret.key that is too open → 1, ctl without a running control → 1.
# usage: test_cli.sh LLMESH_CONTROL LLMESH_CTL
set -u
control=$1 ctl=$2
dir=$(mktemp -d /tmp/llmesh-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0

# expect STATUS PATTERN CMD...: runs CMD, checks its exit status and that its output matches PATTERN.
expect() {
  local want=$1 pattern=$2 out rc
  shift 2
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" != "$want" ]; then
    echo "FAIL: '$*' exited $rc, want $want. Output: $out"; fails=$((fails + 1))
  elif [ -n "$pattern" ] && ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: '$*' output does not match /$pattern/: $out"; fails=$((fails + 1))
  fi
}

expect 0 'Usage: llmesh-control' "$control" --help
expect 0 'Usage: llmesh-ctl' "$ctl" --help
expect 2 "unknown option '--bogus'" "$control" --bogus
expect 2 "unknown option" "$ctl" --data-dir "$dir" status --bogus
expect 2 'data-dir is required' "$control" --config /dev/null
expect 2 'needs a value' "$control" --data-dir
expect 2 "invalid --log-level" "$control" --data-dir "$dir/d" --log-level loud
expect 2 "telemetry URL" "$control" --data-dir "$dir/d" --workers-url ipc:///tmp/x
expect 2 'unknown command' "$ctl" --data-dir "$dir" frobnicate
expect 2 'missing command' "$ctl" --data-dir "$dir"

cat >"$dir/bad.yaml" <<'YAML'
model_list:
  - model_name: gpt-4
    litellm_params:
      model: openai/gpt-4o
      weight: zero
YAML
expect 1 "$dir/bad.yaml:5: model_list\[0\]\.litellm_params\.weight: must be a positive integer" \
  "$control" --config "$dir/bad.yaml" --data-dir "$dir/d1" --workers-url tcp://127.0.0.1:1
printf 'model_list:\n  - model_name: a\n    litellm_params: {model: x\n' >"$dir/syntax.yaml"
expect 1 "$dir/syntax.yaml:[34]: yaml: " "$control" --config "$dir/syntax.yaml" --data-dir "$dir/d1"
cat >"$dir/env.yaml" <<'YAML'
model_list:
  - model_name: a
    litellm_params: {model: x, api_key: os.environ/LLMESH_CLI_TEST_UNSET_VAR}
YAML
expect 1 "$dir/env.yaml:3: model_list\[0\]\.litellm_params\.api_key: environment variable LLMESH_CLI_TEST_UNSET_VAR is not set" \
  env -u LLMESH_CLI_TEST_UNSET_VAR "$control" --config "$dir/env.yaml" --data-dir "$dir/d1"
expect 1 "$dir/missing.yaml" "$control" --config "$dir/missing.yaml" --data-dir "$dir/d1"
# an empty database and no --config: nothing to serve
expect 1 'no config' "$control" --data-dir "$dir/d2" --workers-url tcp://127.0.0.1:1
[ "$(stat -c %a "$dir/d2")" = 700 ] || { echo "FAIL: data dir mode $(stat -c %a "$dir/d2")"; fails=$((fails + 1)); }
chmod 644 "$dir/d2/secret.key"
expect 1 'too open' "$control" --data-dir "$dir/d2" --workers-url tcp://127.0.0.1:1
expect 1 'is llmesh-control running' "$ctl" --data-dir "$dir/d2" status
expect 1 'is llmesh-control running' "$ctl" --admin "ipc://$dir/nothing.sock" status --json

echo "$fails failure(s)"
[ "$fails" = 0 ]
