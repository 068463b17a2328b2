#!/usr/bin/env bash
# test_mock.sh MOCK_BINARY — starts llmesh-mock-provider on a free port and checks its
# OpenAI surface and fault scripting with curl + jq.
set -u
MOCK=${1:?usage: test_mock.sh path/to/llmesh-mock-provider}
TMP=$(mktemp -d)
PID=
fails=0
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then echo "ok - $what"; else fail "$what"; fi; }
AUTH=(-H 'Authorization: Bearer sk-test' -H 'Content-Type: application/json')

# CLI
"$MOCK" --help >/dev/null; check "--help exits 0" [ $? -eq 0 ]
"$MOCK" --bogus 2>/dev/null; check "bad flag exits 2" [ $? -eq 2 ]
"$MOCK" 2>/dev/null; check "missing --listen exits 2" [ $? -eq 2 ]
"$MOCK" --listen 127.0.0.1:0 --seed x 2>/dev/null; check "bad --seed exits 2" [ $? -eq 2 ]

"$MOCK" --listen 127.0.0.1:0 --name t1 2>"$TMP/log" &
PID=$!
PORT=
for _ in $(seq 100); do
  PORT=$(jq -r 'select(.event=="listening") | .port' "$TMP/log" 2>/dev/null | head -1)
  [ -n "$PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] || { echo "FAIL: mock did not start"; cat "$TMP/log"; exit 1; }
U=http://127.0.0.1:$PORT
HELLO='[t1] Hello from the mock.'
chat() { curl -s "${AUTH[@]}" "$U/v1/chat/completions" "$@"; }

# non-stream reply shape
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
R=$(chat -d "$BODY")
check "non-stream object" [ "$(jq -r .object <<<"$R")" = chat.completion ]
check "non-stream id" [ "$(jq -r '.id | startswith("chatcmpl-mock-")' <<<"$R")" = true ]
check "non-stream model echoed" [ "$(jq -r .model <<<"$R")" = gpt-4o-mini ]
check "non-stream content" [ "$(jq -r '.choices[0].message.content' <<<"$R")" = "$HELLO" ]
check "non-stream finish_reason" [ "$(jq -r '.choices[0].finish_reason' <<<"$R")" = stop ]
check "usage completion_tokens = words" [ "$(jq -r .usage.completion_tokens <<<"$R")" = 5 ]
check "usage prompt_tokens = len/4" [ "$(jq -r .usage.prompt_tokens <<<"$R")" = $(( ${#BODY} / 4 )) ]
check "usage total" [ "$(jq -r '.usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens' <<<"$R")" = true ]

# stream framing
chat -N -d '{"model":"m","stream":true,"stream_options":{"include_usage":true}}' >"$TMP/s"
check "stream ends with [DONE]" [ "$(grep -v '^$' "$TMP/s" | tail -1)" = "data: [DONE]" ]
check "events separated by blank lines" [ "$(grep -c '^data: ' "$TMP/s")" = "$(grep -c '^$' "$TMP/s")" ]
CAT=$(grep '^data: {' "$TMP/s" | sed 's/^data: //' | jq -j '.choices[0].delta.content // empty')
check "concatenated deltas == content" [ "$CAT" = "$HELLO" ]
check "first chunk has role" [ "$(grep '^data: {' "$TMP/s" | head -1 | sed 's/^data: //' | jq -r '.choices[0].delta.role')" = assistant ]
check "finish chunk" [ "$(grep '^data: {' "$TMP/s" | sed 's/^data: //' | jq -r 'select(.choices[0].finish_reason=="stop") | .object')" = chat.completion.chunk ]
check "usage chunk" [ "$(grep '^data: {' "$TMP/s" | sed 's/^data: //' | jq -r 'select(.choices==[]) | .usage.completion_tokens')" = 5 ]
chat -N -d '{"model":"m","stream":true}' >"$TMP/s2"
check "no usage chunk without include_usage" [ "$(grep -c '"usage"' "$TMP/s2")" = 0 ]

# errors
check "401 without bearer" [ "$(curl -s -o /dev/null -w '%{http_code}' -d "$BODY" "$U/v1/chat/completions")" = 401 ]
R=$(chat -d '{"model":')
check "400 on malformed JSON" [ "$(jq -r .error.type <<<"$R")" = invalid_request_error ]

# scripted 500 then healthy (queue consumed in order), 429 with retry headers
curl -s -d '{"faults":[{"status":500},{"status":429},{}]}' "$U/mock/faults" >/dev/null
R=$(chat -w ' %{http_code}' -d "$BODY")
check "scripted 500" [ "${R##* }" = 500 ]
check "500 is server_error" [ "$(jq -r .error.type <<<"${R% *}")" = server_error ]
curl -s -D "$TMP/h" -o /dev/null "${AUTH[@]}" -d "$BODY" "$U/v1/chat/completions"
check "429 status" grep -q '^HTTP/1.1 429' "$TMP/h"
check "429 retry-after" grep -qi '^retry-after: 1' "$TMP/h"
check "then healthy" [ "$(chat -d "$BODY" | jq -r '.choices[0].message.content')" = "$HELLO" ]
check "queue empty → healthy" [ "$(chat -o /dev/null -w '%{http_code}' -d "$BODY")" = 200 ]

# content override, headers, body override
curl -s -d '{"faults":[{"content":"one two  three","headers":{"x-mock":"yes"}},{"status":503,"body":{"error":{"message":"boom"}}}]}' "$U/mock/faults" >/dev/null
R=$(chat -N -D "$TMP/h2" -d '{"model":"m","stream":true}')
CAT=$(grep '^data: {' <<<"$R" | sed 's/^data: //' | jq -j '.choices[0].delta.content // empty')
check "content override streamed exactly" [ "$CAT" = "one two  three" ]
check "scripted header" grep -qi '^x-mock: yes' "$TMP/h2"
check "body override" [ "$(chat -d "$BODY" | jq -r .error.message)" = boom ]

# cut_after: the connection is cut after 2 content chunks, no [DONE]
curl -s -d '{"faults":[{"cut_after":2}]}' "$U/mock/faults" >/dev/null
chat -N -d '{"model":"m","stream":true}' >"$TMP/c"; RC=$?
check "cut_after: curl sees a cut (18)" [ $RC = 18 ]
check "cut_after: no [DONE]" [ "$(grep -c DONE "$TMP/c")" = 0 ]
check "cut_after: 2 content chunks" [ "$(grep '^data: {' "$TMP/c" | sed 's/^data: //' | jq -r '.choices[0].delta.content // empty' | grep -c .)" = 2 ]

# garbage
curl -s -d '{"faults":[{"garbage":true}]}' "$U/mock/faults" >/dev/null
R=$(chat -w ' %{http_code}' -d "$BODY")
check "garbage is 200" [ "${R##* }" = 200 ]
check "garbage is not JSON" [ "$(jq -e . <<<"${R% *}" >/dev/null 2>&1; echo $?)" != 0 ]

# delays
curl -s -d '{"faults":[{"delay_ms":300}]}' "$U/mock/faults" >/dev/null
T=$(chat -o /dev/null -w '%{time_total}' -d "$BODY")
check "delay_ms 300 ($T s)" awk -v t="$T" 'BEGIN{exit !(t >= 0.29 && t < 2)}'
curl -s -d '{"faults":[{"ttft_ms":200,"chunk_delay_ms":50}]}' "$U/mock/faults" >/dev/null
T=$(chat -N -o /dev/null -w '%{time_starttransfer} %{time_total}' -d '{"model":"m","stream":true}')
check "ttft+chunk delays ($T)" awk -v a="${T% *}" -v t="${T#* }" 'BEGIN{exit !(a < 0.15 && t >= 0.39 && t < 2)}'

# rate: a fault hits that share of requests (seeded PRNG: the same seed, the same sequence)
URLS=(); for _ in $(seq 200); do URLS+=(-o /dev/null "$U/v1/chat/completions"); done # one -o per URL
statuses() { curl -s "${AUTH[@]}" -d "$BODY" -w '%{http_code}\n' "${URLS[@]}" | tr '\n' ' '; }
curl -s -d '{"status":500,"rate":0.3,"seed":42}' "$U/mock/default" >/dev/null
S1=$(statuses)
N500=$(tr ' ' '\n' <<<"$S1" | grep -c '^500$'); N200=$(tr ' ' '\n' <<<"$S1" | grep -c '^200$')
check "rate 0.3: ~30 % of 200 are 500 ($N500), the rest 200 ($N200)" [ "$N500" -ge 40 ] && [ "$N500" -le 80 ] && [ $((N500 + N200)) = 200 ]
curl -s -d '{"status":500,"rate":0.3,"seed":42}' "$U/mock/default" >/dev/null
check "rate: the same seed gives the same sequence" [ "$(statuses)" = "$S1" ]
curl -s -d '{"status":500,"rate":0.3,"seed":43}' "$U/mock/default" >/dev/null
check "rate: another seed gives another sequence" [ "$(statuses)" != "$S1" ]
curl -s -X POST "$U/mock/reset" >/dev/null
curl -s -d '{"status":500,"rate":0.3}' "$U/mock/default" >/dev/null
S2=$(statuses)
curl -s -d '{"status":500,"rate":0.3,"seed":1}' "$U/mock/default" >/dev/null
check "reset restores the --seed default (1)" [ "$(statuses)" = "$S2" ]
curl -s -d '{"status":503,"rate":0}' "$U/mock/default" >/dev/null
check "rate 0: never" [ "$(statuses | tr ' ' '\n' | grep -c '^200$')" = 200 ]
curl -s -d '{}' "$U/mock/default" >/dev/null
curl -s -d '{"faults":[{"status":502,"rate":1},{"status":502,"rate":0},{"status":502}]}' "$U/mock/faults" >/dev/null
Q=$(curl -s "${AUTH[@]}" -d "$BODY" -w '%{http_code} ' "${URLS[@]:0:12}")
check "rate on queued faults: each entry consumed once ($Q)" [ "$Q" = "502 200 502 200 " ]
check "rate > 1 rejected" [ "$(curl -s -o /dev/null -w '%{http_code}' -d '{"status":500,"rate":1.5}' "$U/mock/default")" = 400 ]
check "negative seed rejected" [ "$(curl -s -o /dev/null -w '%{http_code}' -d '{"faults":[{"rate":0.5,"seed":-1}]}' "$U/mock/faults")" = 400 ]

# stats, hang → cancelled
curl -s -X POST "$U/mock/reset" >/dev/null
S=$(curl -s "$U/mock/stats")
check "reset zeroes stats" [ "$(jq -c '[.requests,.completed,.cancelled,.in_flight,.last_request]' <<<"$S")" = '[0,0,0,0,null]' ]
curl -s -d '{"hang":true}' "$U/mock/default" >/dev/null
chat --max-time 0.3 -d "$BODY" >/dev/null
curl -s -d '{}' "$U/mock/default" >/dev/null
chat -d "$BODY" >/dev/null
chat -H 'X-Extra: 1' -d '{"model":"last-one"}' >/dev/null
sleep 0.05
S=$(curl -s "$U/mock/stats")
check "stats counters ($S)" [ "$(jq -c '[.requests,.completed,.cancelled,.in_flight]' <<<"$S")" = '[3,2,1,0]' ]
check "last_request" [ "$(jq -c '.last_request | [.path,.model,.authorization,.body]' <<<"$S")" = '["/v1/chat/completions","last-one","Bearer sk-test","{\"model\":\"last-one\"}"]' ]
check "models list" [ "$(curl -s "$U/v1/models" | jq -r '.object + " " + (.data | length | tostring)')" = "list 1" ]
check "bad fault rejected" [ "$(curl -s -o /dev/null -w '%{http_code}' -d '{"faults":[{"delay_ms":"x"}]}' "$U/mock/faults")" = 400 ]

# logs are JSON lines; SIGTERM → 0
check "log lines are JSON" jq -e -s 'length > 10 and all(.svc == "mock")' "$TMP/log" >/dev/null
kill -TERM "$PID"; wait "$PID"; RC=$?; PID=
check "SIGTERM exits 0" [ $RC = 0 ]

[ $fails = 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all mock checks passed"
