#!/usr/bin/env bash
# test_mock_formats.sh MOCK_BINARY — starts llmesh-mock-provider on a free port and checks
# its Anthropic, Gemini and Ollama surfaces, tool-call scripting in every format,
# per-format errors/garbage/cut_after, embeddings and the per-format stats (curl + jq).
set -u
MOCK=${1:?usage: test_mock_formats.sh path/to/llmesh-mock-provider}
TMP=$(mktemp -d)
PID=
fails=0
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then echo "ok - $what"; else fail "$what"; fi; }
eq() { [ "$1" = "$2" ] || { echo "   got:  $1" >&2; echo "   want: $2" >&2; return 1; }; }

"$MOCK" --listen 127.0.0.1:0 --name t2 2>"$TMP/log" &
PID=$!
PORT=
for _ in $(seq 100); do
  PORT=$(jq -r 'select(.event=="listening") | .port' "$TMP/log" 2>/dev/null | head -1)
  [ -n "$PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] || { echo "FAIL: mock did not start"; cat "$TMP/log"; exit 1; }
U=http://127.0.0.1:$PORT
HELLO='[t2] Hello from the mock.'
fault() { curl -s -d "{\"faults\":[$1]}" "$U/mock/faults" >/dev/null; }
TOOLS='"tool_calls":[{"name":"lookup","arguments":{"q":"weather in Oslo","n":3}},{"name":"clock"}]'

# ---------------------------------------------------------------- OpenAI tool calls
oai() { curl -s -H 'Authorization: Bearer sk-test' -H 'Content-Type: application/json' "$U/v1/chat/completions" "$@"; }
fault "{$TOOLS}"
R=$(oai -d '{"model":"m"}')
check "openai tools: finish_reason tool_calls" eq "$(jq -r '.choices[0].finish_reason' <<<"$R")" tool_calls
check "openai tools: content null" eq "$(jq -r '.choices[0].message.content' <<<"$R")" null
check "openai tools: ids, names" eq "$(jq -c '[.choices[0].message.tool_calls[] | .id, .type, .function.name]' <<<"$R")" \
  '["call_mock_0","function","lookup","call_mock_1","function","clock"]'
check "openai tools: arguments are a JSON string" eq "$(jq -c '[.choices[0].message.tool_calls[].function.arguments | fromjson]' <<<"$R")" \
  '[{"q":"weather in Oslo","n":3},{}]'
fault "{\"content\":\"Checking.\",$TOOLS}"
oai -N -d '{"model":"m","stream":true}' >"$TMP/ots"
D=$(grep '^data: {' "$TMP/ots" | sed 's/^data: //')
check "openai tools stream: text deltas first" eq "$(jq -j '.choices[0].delta.content // empty' <<<"$D")" Checking.
check "openai tools stream: arguments split across several deltas" \
  test "$(jq -c 'select(.choices[0].delta.tool_calls[0].index == 0 and .choices[0].delta.tool_calls[0].id == null)' <<<"$D" | wc -l)" -ge 3
check "openai tools stream: id/name only in first delta per index" eq \
  "$(jq -c '.choices[0].delta.tool_calls[0] // empty | select(.id) | [.index,.id,.function.name]' <<<"$D" | tr -d '\n')" \
  '[0,"call_mock_0","lookup"][1,"call_mock_1","clock"]'
for i in 0 1; do
  A=$(jq -j ".choices[0].delta.tool_calls[0] // empty | select(.index == $i) | .function.arguments" <<<"$D")
  eval "ARGS$i=\$A"
done
check "openai tools stream: concatenated arguments per index" eq "$(jq -c . <<<"$ARGS0")$(jq -c . <<<"$ARGS1")" '{"q":"weather in Oslo","n":3}{}'
check "openai tools stream: finish tool_calls, [DONE]" eq \
  "$(jq -r '.choices[0].finish_reason // empty' <<<"$D")$(grep -v '^$' "$TMP/ots" | tail -1)" "tool_callsdata: [DONE]"

# ---------------------------------------------------------------- Anthropic
ant() { curl -s -H 'x-api-key: sk-ant-test' -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' \
  "$U/v1/messages" "$@"; }
AB='{"model":"claude-x","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
ABS='{"model":"claude-x","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
R=$(ant -D "$TMP/ah" -d "$AB")
check "anthropic: shape" eq "$(jq -c '[.type,.role,.model,.content[0].type,.stop_reason,.stop_sequence,(.id|startswith("msg_mock_"))]' <<<"$R")" \
  '["message","assistant","claude-x","text","end_turn",null,true]'
check "anthropic: content" eq "$(jq -r '.content[0].text' <<<"$R")" "$HELLO"
check "anthropic: usage" eq "$(jq -c '.usage' <<<"$R")" "{\"input_tokens\":$(( ${#AB} / 4 )),\"output_tokens\":5}"
check "anthropic: request-id header" grep -qi '^request-id: req_mock_' "$TMP/ah"
R=$(curl -s -w ' %{http_code}' -H 'anthropic-version: 2023-06-01' -d "$AB" "$U/v1/messages")
check "anthropic: 401 without x-api-key" eq "$(jq -c '[.type,.error.type]' <<<"${R% *}") ${R##* }" '["error","authentication_error"] 401'
R=$(curl -s -w ' %{http_code}' -H 'x-api-key: k' -d "$AB" "$U/v1/messages")
check "anthropic: 400 without anthropic-version" eq "$(jq -r .error.type <<<"${R% *}") ${R##* }" 'invalid_request_error 400'
R=$(ant -w ' %{http_code}' -d '{"model":"c","messages":[{"role":"user","content":"hi"}]}')
check "anthropic: 400 without max_tokens" eq "$(jq -r .error.message <<<"${R% *}") ${R##* }" 'max_tokens: Field required 400'
R=$(ant -w ' %{http_code}' -d '{"model":"c","max_tokens":5,"messages":[]}')
check "anthropic: 400 on empty messages" eq "$(jq -r .error.type <<<"${R% *}") ${R##* }" 'invalid_request_error 400'

ant -N -D "$TMP/ash" -d "$ABS" >"$TMP/as"
check "anthropic stream: content-type" grep -qi '^content-type: text/event-stream' "$TMP/ash"
EV=$(grep '^event: ' "$TMP/as" | cut -d' ' -f2 | tr '\n' ' ')
check "anthropic stream: event order" eq "$EV" \
  "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop "
check "anthropic stream: event name = data.type" eq "$(grep '^data: ' "$TMP/as" | sed 's/^data: //' | jq -r .type | tr '\n' ' ')" "$EV"
check "anthropic stream: every event followed by a blank line" eq "$(grep -c '^event: ' "$TMP/as")" "$(grep -c '^$' "$TMP/as")"
AD=$(grep '^data: ' "$TMP/as" | sed 's/^data: //')
check "anthropic stream: text deltas == content" eq "$(jq -j 'select(.type=="content_block_delta") | .delta.text' <<<"$AD")" "$HELLO"
check "anthropic stream: message_start usage" eq "$(jq -r 'select(.type=="message_start") | .message.usage.input_tokens' <<<"$AD")" $(( ${#ABS} / 4 ))
check "anthropic stream: message_delta stop_reason, output_tokens" eq \
  "$(jq -c 'select(.type=="message_delta") | [.delta.stop_reason,.usage.output_tokens]' <<<"$AD")" '["end_turn",5]'

fault "{$TOOLS}"
R=$(ant -d "$AB")
check "anthropic tools: tool_use blocks" eq "$(jq -c '[.stop_reason, (.content[] | [.type,.id,.name,.input])]' <<<"$R")" \
  '["tool_use",["tool_use","toolu_mock_0","lookup",{"q":"weather in Oslo","n":3}],["tool_use","toolu_mock_1","clock",{}]]'
fault "{\"content\":\"Let me check.\",$TOOLS}"
AD=$(ant -N -d "$ABS" | grep '^data: ' | sed 's/^data: //')
check "anthropic tools stream: blocks text, tool_use, tool_use" eq \
  "$(jq -c 'select(.type=="content_block_start") | [.index,.content_block.type,.content_block.id]' <<<"$AD" | tr -d '\n')" \
  '[0,"text",null][1,"tool_use","toolu_mock_0"][2,"tool_use","toolu_mock_1"]'
check "anthropic tools stream: several input_json_delta for block 1" \
  test "$(jq -c 'select(.delta.type=="input_json_delta" and .index==1)' <<<"$AD" | wc -l)" -ge 3
check "anthropic tools stream: partial_json concatenates to the input" eq \
  "$(jq -j 'select(.delta.type=="input_json_delta" and .index==1) | .delta.partial_json' <<<"$AD" | jq -c .)" '{"q":"weather in Oslo","n":3}'
check "anthropic tools stream: every block stopped" eq "$(jq -c 'select(.type=="content_block_stop") | .index' <<<"$AD" | tr -d '\n')" 012
check "anthropic tools stream: stop_reason tool_use" eq "$(jq -r 'select(.type=="message_delta") | .delta.stop_reason' <<<"$AD")" tool_use

fault '{"status":429},{"status":529},{"status":500},{"status":400},{"status":401},{"status":429,"headers":{"retry-after":"7"}}'
ant -D "$TMP/a429" -o "$TMP/a429b" -d "$AB"
check "anthropic 429: rate_limit_error" eq "$(jq -r '.type + " " + .error.type' "$TMP/a429b")" "error rate_limit_error"
check "anthropic 429: status line" grep -q '^HTTP/1.1 429' "$TMP/a429"
check "anthropic 429: retry-after" grep -qi '^retry-after: 1' "$TMP/a429"
check "anthropic 429: requests-remaining" grep -qi '^anthropic-ratelimit-requests-remaining: 0' "$TMP/a429"
check "anthropic 429: requests-reset is RFC 3339" grep -qiE '^anthropic-ratelimit-requests-reset: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z' "$TMP/a429"
check "anthropic 429: request-id" grep -qi '^request-id: req_mock_' "$TMP/a429"
for st in "529 overloaded_error" "500 api_error" "400 invalid_request_error" "401 authentication_error"; do
  R=$(ant -w ' %{http_code}' -d "$AB")
  check "anthropic scripted ${st% *}" eq "${R##* } $(jq -r .error.type <<<"${R% *}")" "$st"
done
ant -D "$TMP/a429" -o /dev/null -d "$AB"
check "anthropic 429: scripted retry-after wins" eq "$(grep -ci '^retry-after:' "$TMP/a429") $(grep -i '^retry-after:' "$TMP/a429" | tr -d '\r')" "1 retry-after: 7"

fault '{"garbage":true}'
ant -N -d "$ABS" >"$TMP/ag"
check "anthropic garbage: SSE framing kept" eq "$(grep -c '^event: ' "$TMP/ag")" "$(grep -c '^data: ' "$TMP/ag")"
check "anthropic garbage: data is not JSON" test "$(grep '^data: ' "$TMP/ag" | sed 's/^data: //' | while read -r l; do jq -e . <<<"$l" >/dev/null 2>&1 || echo bad; done | wc -l)" -ge 5
fault '{"cut_after":2}'
ant -N -d "$ABS" >"$TMP/ac"; RC=$?
check "anthropic cut_after: curl sees a cut (18)" eq $RC 18
check "anthropic cut_after: 2 deltas, no message_stop" eq "$(grep -c '^event: content_block_delta' "$TMP/ac") $(grep -c message_stop "$TMP/ac")" "2 0"

# ---------------------------------------------------------------- Gemini
GB='{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}'
GM=$U/v1beta/models/gemini-2.5-flash
gem() { curl -s -H 'x-goog-api-key: g-key' -H 'content-type: application/json' "$@"; }
R=$(gem -d "$GB" "$GM:generateContent")
check "gemini: shape" eq "$(jq -c '[.candidates[0].content.role,.candidates[0].finishReason,.candidates[0].index,.modelVersion,(.responseId|startswith("mock-"))]' <<<"$R")" \
  '["model","STOP",0,"gemini-2.5-flash",true]'
check "gemini: content" eq "$(jq -r '.candidates[0].content.parts[0].text' <<<"$R")" "$HELLO"
check "gemini: usageMetadata" eq "$(jq -c .usageMetadata <<<"$R")" \
  "{\"promptTokenCount\":$(( ${#GB} / 4 )),\"candidatesTokenCount\":5,\"totalTokenCount\":$(( ${#GB} / 4 + 5 ))}"
R=$(curl -s -w ' %{http_code}' -d "$GB" "$GM:generateContent")
check "gemini: no key → 400 API_KEY_INVALID" eq "${R##* } $(jq -r '.error.status + " " + .error.details[0].reason' <<<"${R% *}")" \
  "400 INVALID_ARGUMENT API_KEY_INVALID"
check "gemini: ?key= accepted" eq "$(curl -s -o /dev/null -w '%{http_code}' -d "$GB" "$GM:generateContent?key=q-key")" 200
R=$(gem -w ' %{http_code}' -d '{"contents":[]}' "$GM:generateContent")
check "gemini: empty contents → 400" eq "${R##* } $(jq -r .error.status <<<"${R% *}")" "400 INVALID_ARGUMENT"
gem -N -D "$TMP/gsh" -d "$GB" "$GM:streamGenerateContent?alt=sse" >"$TMP/gs"
check "gemini stream: content-type" grep -qi '^content-type: text/event-stream' "$TMP/gsh"
check "gemini stream: every line ends in CR (CRLF framing)" eq "$(grep -vc $'\r$' "$TMP/gs")" 0
check "gemini stream: ends with CRLF CRLF" eq "$(tail -c 4 "$TMP/gs" | od -An -tx1 | tr -d ' \n')" 0d0a0d0a
check "gemini stream: 5 data events, blank-line separated" eq "$(grep -c '^data: {' "$TMP/gs") $(grep -c $'^\r$' "$TMP/gs")" "5 5"
GD=$(grep '^data: ' "$TMP/gs" | tr -d '\r' | sed 's/^data: //')
check "gemini stream: text parts == content" eq "$(jq -j '.candidates[0].content.parts[0].text' <<<"$GD")" "$HELLO"
check "gemini stream: only the last has finishReason + usage" eq \
  "$(jq -c '[.candidates[0].finishReason, .usageMetadata.candidatesTokenCount]' <<<"$GD" | tr -d '\n')" \
  '[null,null][null,null][null,null][null,null]["STOP",5]'
check "gemini stream: no [DONE]" eq "$(grep -c DONE "$TMP/gs")" 0
R=$(gem -d "$GB" "$GM:streamGenerateContent")
check "gemini stream without alt=sse: a JSON array" eq "$(jq -r '[length, .[-1].candidates[0].finishReason] | join(" ")' <<<"$R")" "5 STOP"
fault "{$TOOLS}"
R=$(gem -d "$GB" "$GM:generateContent")
check "gemini tools: functionCall parts, STOP" eq "$(jq -c '[.candidates[0].finishReason, .candidates[0].content.parts[].functionCall]' <<<"$R")" \
  '["STOP",{"name":"lookup","args":{"q":"weather in Oslo","n":3}},{"name":"clock","args":{}}]'
fault "{$TOOLS}"
GD=$(gem -N -d "$GB" "$GM:streamGenerateContent?alt=sse" | grep '^data: ' | tr -d '\r' | sed 's/^data: //')
check "gemini tools stream: one whole functionCall per event, last STOP" eq \
  "$(jq -c '[.candidates[0].content.parts[0].functionCall.name, .candidates[0].content.parts[0].functionCall.args, .candidates[0].finishReason]' <<<"$GD" | tr -d '\n')" \
  '["lookup",{"q":"weather in Oslo","n":3},null]["clock",{},"STOP"]'
fault '{"status":429},{"status":503},{"status":500},{"status":400}'
R=$(gem -D "$TMP/g429" -d "$GB" "$GM:generateContent")
check "gemini 429: RESOURCE_EXHAUSTED with RetryInfo" eq \
  "$(jq -r '.error.code|tostring' <<<"$R") $(jq -r '.error.status + " " + (.error.details[] | select(."@type"=="type.googleapis.com/google.rpc.RetryInfo") | .retryDelay)' <<<"$R")" \
  "429 RESOURCE_EXHAUSTED 1s"
check "gemini 429: status line" grep -q '^HTTP/1.1 429' "$TMP/g429"
for st in "503 UNAVAILABLE" "500 INTERNAL" "400 INVALID_ARGUMENT"; do
  R=$(gem -w ' %{http_code}' -d "$GB" "$GM:streamGenerateContent?alt=sse")
  check "gemini scripted ${st% *}" eq "${R##* } $(jq -r '(.error.code|tostring) + " " + .error.status' <<<"${R% *}")" "${st% *} $st"
done
fault '{"garbage":true}'
gem -N -d "$GB" "$GM:streamGenerateContent?alt=sse" >"$TMP/gg"
check "gemini garbage: CRLF data events" eq "$(grep -c '^data: ' "$TMP/gg") $(grep -vc $'\r$' "$TMP/gg")" "5 0"
check "gemini garbage: data is not JSON" eq "$(grep '^data: ' "$TMP/gg" | tr -d '\r' | sed 's/^data: //' | jq -e . 2>/dev/null | wc -l)" 0
fault '{"cut_after":2}'
gem -N -d "$GB" "$GM:streamGenerateContent?alt=sse" >"$TMP/gc"; RC=$?
check "gemini cut_after: curl sees a cut (18)" eq $RC 18
check "gemini cut_after: 2 events, no finishReason" eq "$(grep -c '^data: ' "$TMP/gc") $(grep -c finishReason "$TMP/gc")" "2 0"

# ---------------------------------------------------------------- Ollama
OB='{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}'
curl -s -D "$TMP/oh" -d "$OB" "$U/api/chat" >"$TMP/os"
check "ollama: streams NDJSON by default" grep -qi '^content-type: application/x-ndjson' "$TMP/oh"
check "ollama stream: every line is JSON" eq "$(jq -c . "$TMP/os" | wc -l)" "$(wc -l <"$TMP/os")"
check "ollama stream: 5 words then a done line" eq "$(jq -c .done "$TMP/os" | tr '\n' ' ')" "false false false false false true "
check "ollama stream: words == content" eq "$(jq -j 'select(.done==false) | .message.content' "$TMP/os")" "$HELLO"
check "ollama stream: done line" eq "$(tail -1 "$TMP/os" | jq -c '[.done_reason,.prompt_eval_count,.eval_count,.model,(.created_at|test("^[0-9-]+T[0-9:.]+Z$"))]')" \
  "[\"stop\",$(( ${#OB} / 4 )),5,\"llama3.2\",true]"
R=$(curl -s -D "$TMP/oh" -d '{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"hi"}]}' "$U/api/chat")
check "ollama stream:false: one object" eq "$(jq -c '[.done,.done_reason,.message.role,.message.content,.eval_count]' <<<"$R")" \
  "[true,\"stop\",\"assistant\",\"$HELLO\",5]"
R=$(curl -s -w ' %{http_code}' -d '{"messages":[]}' "$U/api/chat")
check "ollama: 400 without model" eq "${R##* } $(jq -r .error <<<"${R% *}")" "400 model is required"
fault "{$TOOLS}"
R=$(curl -s -d '{"model":"llama3.2","stream":false,"messages":[]}' "$U/api/chat")
check "ollama tools: message.tool_calls with argument objects" eq "$(jq -c '[.message.tool_calls[].function | [.name,.arguments]]' <<<"$R")" \
  '[["lookup",{"q":"weather in Oslo","n":3}],["clock",{}]]'
fault "{$TOOLS}"
curl -s -d "$OB" "$U/api/chat" >"$TMP/ot"
check "ollama tools stream: whole calls, then done" eq "$(jq -c '[.done, (.message.tool_calls // [] | map(.function.name))]' "$TMP/ot" | tr -d '\n')" \
  '[false,["lookup"]][false,["clock"]][true,[]]'
fault '{"status":503},{"status":500,"headers":{"x-mock":"o"}}'
R=$(curl -s -w ' %{http_code}' -d "$OB" "$U/api/chat")
check "ollama scripted 503: {\"error\":...}" eq "${R##* } $(jq -r '.error | type' <<<"${R% *}")" "503 string"
curl -s -D "$TMP/oh" -o /dev/null -d "$OB" "$U/api/chat"
check "ollama scripted 500 + header" eq "$(head -1 "$TMP/oh" | tr -d '\r') $(grep -i '^x-mock:' "$TMP/oh" | tr -d '\r')" "HTTP/1.1 500 Internal Server Error x-mock: o"
fault '{"garbage":true}'
curl -s -d "$OB" "$U/api/chat" >"$TMP/og"
check "ollama garbage: 5 non-JSON lines then a done line" eq \
  "$(head -5 "$TMP/og" | while read -r l; do jq -e . <<<"$l" >/dev/null 2>&1 && echo json || echo bad; done | tr '\n' ' ')$(tail -1 "$TMP/og" | jq -r .done)" \
  "bad bad bad bad bad true"
fault '{"cut_after":3}'
curl -s -d "$OB" "$U/api/chat" >"$TMP/oc"; RC=$?
check "ollama cut_after: curl sees a cut (18)" eq $RC 18
check "ollama cut_after: 3 lines, no done:true" eq "$(wc -l <"$TMP/oc") $(grep -c '"done":true' "$TMP/oc")" "3 0"

# ---------------------------------------------------------------- embeddings
V1=$(curl -s -H 'Authorization: Bearer k' -d '{"model":"te-3","input":"hello"}' "$U/v1/embeddings")
check "openai embeddings: shape" eq "$(jq -c '[.object,.model,.data[0].object,.data[0].index,(.data[0].embedding|length),.usage.prompt_tokens,.usage.total_tokens]' <<<"$V1")" \
  '["list","te-3","embedding",0,8,1,1]'
check "openai embeddings: unit length" jq -e '[.data[0].embedding[] | . * .] | add | . > 0.999 and . < 1.001' <<<"$V1" >/dev/null
R=$(curl -s -H 'Authorization: Bearer k' -d '{"model":"te-3","input":["hello","world","hello"]}' "$U/v1/embeddings")
check "openai embeddings: array input, deterministic" eq \
  "$(jq -c '[.data[].index] + [(.data[0].embedding == .data[2].embedding), (.data[0].embedding != .data[1].embedding)]' <<<"$R")" '[0,1,2,true,true]'
check "openai embeddings: same vector as a single input" eq "$(jq -c '.data[0].embedding' <<<"$R")" "$(jq -c '.data[0].embedding' <<<"$V1")"
R=$(curl -s -H 'Authorization: Bearer k' -d '{"model":"te-3","input":"hello","encoding_format":"base64"}' "$U/v1/embeddings")
B64=$(jq -r '.data[0].embedding' <<<"$R" | base64 -d | od -An -v -tf4 | tr -s ' \n' ' ')
check "openai embeddings: base64 float32 == floats" awk -v a="$B64" -v b="$(jq -r '.data[0].embedding | join(" ")' <<<"$V1")" \
  'BEGIN { n = split(a, x, " "); m = split(b, y, " "); if (n != 8 || m != 8) exit 1; for (i = 1; i <= 8; i++) if (x[i] - y[i] > 1e-5 || y[i] - x[i] > 1e-5) exit 1 }'
check "openai embeddings: 401 without bearer" eq "$(curl -s -o /dev/null -w '%{http_code}' -d '{"model":"te-3","input":"x"}' "$U/v1/embeddings")" 401
check "openai embeddings: dimensions" eq "$(curl -s -H 'Authorization: Bearer k' -d '{"model":"te-3","input":"x","dimensions":3}' "$U/v1/embeddings" | jq '.data[0].embedding | length')" 3
R=$(gem -d '{"content":{"parts":[{"text":"hello"}]}}' "$U/v1beta/models/text-embedding-004:embedContent")
check "gemini embedContent: same vector" eq "$(jq -c .embedding.values <<<"$R")" "$(jq -c '.data[0].embedding' <<<"$V1")"
R=$(gem -d '{"requests":[{"model":"models/text-embedding-004","content":{"parts":[{"text":"hello"}]}},{"content":{"parts":[{"text":"b"}]},"outputDimensionality":4}]}' \
  "$U/v1beta/models/text-embedding-004:batchEmbedContents")
check "gemini batchEmbedContents" eq "$(jq -c '[(.embeddings[0].values|length), (.embeddings[1].values|length)]' <<<"$R")" '[8,4]'
R=$(curl -s -d '{"model":"nomic","input":["hello","x"]}' "$U/api/embed")
check "ollama embed" eq "$(jq -c '[.model, (.embeddings|length), (.embeddings[0] == $v)]' --argjson v "$(jq -c '.data[0].embedding' <<<"$V1")" <<<"$R")" '["nomic",2,true]'
fault '{"status":429}'
check "embeddings take scripted faults too" eq "$(curl -s -o /dev/null -w '%{http_code}' -d '{"model":"nomic","input":"x"}' "$U/api/embed")" 429

# ---------------------------------------------------------------- error_after: in-band errors
fault '{"error_after":2}'
oai -N -d '{"model":"m","stream":true}' >"$TMP/e1"; RC=$?
check "openai error_after: clean end, 2 deltas, error event, no [DONE]" eq \
  "$RC $(grep -c '"delta":{"content"' "$TMP/e1") $(grep '^data: {"error"' "$TMP/e1" | sed 's/^data: //' | jq -r .error.type) $(grep -c DONE "$TMP/e1")" "0 2 server_error 0"
fault '{"error_after":1}'
ant -N -d "$ABS" >"$TMP/e2"; RC=$?
check "anthropic error_after: event: error, no message_stop" eq \
  "$RC $(grep -A1 '^event: error' "$TMP/e2" | grep '^data: ' | sed 's/^data: //' | jq -r .error.type) $(grep -c message_stop "$TMP/e2")" "0 overloaded_error 0"
fault '{"error_after":1}'
gem -N -d "$GB" "$GM:streamGenerateContent?alt=sse" >"$TMP/e3"; RC=$?
check "gemini error_after: Status event, CRLF, no finishReason" eq \
  "$RC $(grep '^data: {"error"' "$TMP/e3" | tr -d '\r' | sed 's/^data: //' | jq -r .error.status) $(grep -c finishReason "$TMP/e3") $(grep -vc $'\r$' "$TMP/e3")" "0 UNAVAILABLE 0 0"
fault '{"error_after":1}'
curl -s -d "$OB" "$U/api/chat" >"$TMP/e4"; RC=$?
check "ollama error_after: {\"error\"} line, no done:true" eq \
  "$RC $(wc -l <"$TMP/e4") $(tail -1 "$TMP/e4" | jq -r '.error | type') $(grep -c '"done":true' "$TMP/e4")" "0 2 string 0"

# ---------------------------------------------------------------- shared queue, delays, stats
curl -s -X POST "$U/mock/reset" >/dev/null
fault '{"status":500},{"content":"a b"},{"ttft_ms":200}'
check "queue: first fault hits an Ollama request" eq "$(curl -s -o /dev/null -w '%{http_code}' -d "$OB" "$U/api/chat")" 500
check "queue: second fault hits an Anthropic request" eq "$(ant -d "$AB" | jq -r '.content[0].text')" "a b"
T=$(gem -N -o /dev/null -w '%{time_starttransfer} %{time_total}' -d "$GB" "$GM:streamGenerateContent?alt=sse")
check "queue: ttft applies to a Gemini stream ($T)" awk -v t="${T#* }" 'BEGIN{exit !(t >= 0.19 && t < 2)}'
S=$(curl -s "$U/mock/stats")
check "stats: gemini last_request" eq "$(jq -c '.last_request | [.format,.path,.query,.model,.auth,.authorization]' <<<"$S")" \
  '["gemini","/v1beta/models/gemini-2.5-flash:streamGenerateContent","alt=sse","gemini-2.5-flash","g-key",null]'
check "stats: counters" eq "$(jq -c '[.requests,.completed,.cancelled,.in_flight]' <<<"$S")" '[3,3,0,0]'
ant -d "$AB" >/dev/null
check "stats: anthropic auth = x-api-key" eq "$(curl -s "$U/mock/stats" | jq -c '.last_request | [.format,.auth,.model]')" '["anthropic","sk-ant-test","claude-x"]'
curl -s -d "$GB" "$GM:generateContent?key=qk" >/dev/null
check "stats: gemini auth from ?key=" eq "$(curl -s "$U/mock/stats" | jq -c '.last_request | [.format,.auth]')" '["gemini","qk"]'
curl -s -H 'Authorization: Bearer ol' -d "$OB" "$U/api/chat" >/dev/null
check "stats: ollama" eq "$(curl -s "$U/mock/stats" | jq -c '.last_request | [.format,.auth,.authorization,.path]')" '["ollama","Bearer ol","Bearer ol","/api/chat"]'
check "bad tool_calls rejected" eq "$(curl -s -o /dev/null -w '%{http_code}' -d '{"faults":[{"tool_calls":[{"arguments":{}}]}]}' "$U/mock/faults")" 400
check "unknown path 404" eq "$(curl -s -o /dev/null -w '%{http_code}' -d '{}' "$U/v1beta/models/x:nope")" 404

kill -TERM "$PID"; wait "$PID"; RC=$?; PID=
check "SIGTERM exits 0" eq $RC 0

[ $fails = 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all mock format checks passed"
