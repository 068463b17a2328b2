#!/usr/bin/env bash
# test_mock_cloud.sh MOCK_BINARY — starts llmesh-mock-provider (with --aws-secret) and checks
# its Azure OpenAI, Bedrock Converse/ConverseStream (event-stream frames and CRCs decoded by
# mock_cloud_util.py) and Vertex AI surfaces (token endpoint, Gemini and Anthropic models):
# auth rules, answers, tool calls, faults and stats (curl + jq + python3).
set -u
MOCK=${1:?usage: test_mock_cloud.sh path/to/llmesh-mock-provider}
UTIL="$(dirname "$0")/mock_cloud_util.py"
TMP=$(mktemp -d)
PID=
fails=0
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then echo "ok - $what"; else fail "$what"; fi; }
eq() { [ "$1" = "$2" ] || { echo "   got:  $1" >&2; echo "   want: $2" >&2; return 1; }; }

SECRET=mock-secret-key
"$MOCK" --listen 127.0.0.1:0 --name t3 --aws-secret "$SECRET" 2>"$TMP/log" &
PID=$!
PORT=
for _ in $(seq 100); do
  PORT=$(jq -r 'select(.event=="listening") | .port' "$TMP/log" 2>/dev/null | head -1)
  [ -n "$PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] || { echo "FAIL: mock did not start"; cat "$TMP/log"; exit 1; }
U=http://127.0.0.1:$PORT
HELLO='[t3] Hello from the mock.'
fault() { curl -s -d "{\"faults\":[$1]}" "$U/mock/faults" >/dev/null; }
status() { curl -s -o "$TMP/body" -D "$TMP/hdr" -w '%{http_code}' "$@"; }
stats() { curl -s "$U/mock/stats"; }
TOOLS='"tool_calls":[{"name":"lookup","arguments":{"q":"weather in Oslo","n":3}},{"name":"clock"}]'

# ---------------------------------------------------------------- Azure OpenAI
AZ=$U/openai/deployments/gpt4o-prod/chat/completions
az() { curl -s -H 'api-key: az-key' -H 'Content-Type: application/json' "$@"; }
R=$(az -d '{"messages":[{"role":"user","content":"hi"}]}' "$AZ?api-version=2024-10-21")
check "azure: content, model = deployment" eq "$(jq -r '.choices[0].message.content, .model' <<<"$R" | tr '\n' '|')" "$HELLO|gpt4o-prod|"
check "azure: content_filter_results and prompt_filter_results" eq \
  "$(jq -r '.choices[0].content_filter_results.hate.severity, .prompt_filter_results[0].content_filter_results.jailbreak.detected' <<<"$R" | tr '\n' ' ')" "safe false "
S=$(stats)
check "azure: last_request format/path/auth/model" eq "$(jq -r '.last_request | [.format,.path,.query,.auth,.model] | join(",")' <<<"$S")" \
  "azure,/openai/deployments/gpt4o-prod/chat/completions,api-version=2024-10-21,az-key,gpt4o-prod"
check "azure: no api-key → 401 Azure-shaped" eq "$(status -d '{}' "$AZ?api-version=2024-10-21"):$(jq -r '.error.code' "$TMP/body")" "401:401"
check "azure: Bearer is not an api-key → 401" eq "$(status -H 'Authorization: Bearer x' -d '{}' "$AZ?api-version=1"):$(jq -r '.error.code' "$TMP/body")" "401:401"
check "azure: no api-version on deployments path → 400" eq "$(status -H 'api-key: k' -d '{}' "$AZ")" 400
R=$(az -d '{"model":"my-dep","messages":[]}' "$U/openai/v1/chat/completions")
check "azure v1: no api-version needed, model from body" eq "$(jq -r '.model, .choices[0].message.content' <<<"$R" | tr '\n' '|')" "my-dep|$HELLO|"
az -N -d '{"stream":true,"stream_options":{"include_usage":true}}' "$AZ?api-version=2024-10-21" >"$TMP/azs"
D=$(grep '^data: {' "$TMP/azs" | sed 's/^data: //')
check "azure stream: first event is the prompt-filter annotation" eq \
  "$(head -1 <<<"$D" | jq -c '[.choices, .id, .model, .created, (.prompt_filter_results|length)]')" '[[],"","",0,1]'
check "azure stream: content reassembles" eq "$(jq -j '.choices[0].delta.content // empty' <<<"$D")" "$HELLO"
check "azure stream: text chunks carry content_filter_results" test \
  "$(jq -c 'select(.choices[0].delta.content != null and .choices[0].delta.content != "") | .choices[0].content_filter_results.violence.filtered' <<<"$D" | sort -u)" = false
check "azure stream: an async-filter chunk without delta" eq \
  "$(jq -c 'select(.choices[0] != null and (.choices[0] | has("delta") | not)) | .choices[0].content_filter_offsets.end_offset' <<<"$D")" "${#HELLO}"
check "azure stream: finish, usage, [DONE]" eq \
  "$(jq -r '.choices[0].finish_reason // empty' <<<"$D")$(jq -r '.usage.total_tokens // empty | type' <<<"$D")$(grep -v '^$' "$TMP/azs" | tail -1)" "stopnumberdata: [DONE]"
fault '{"status":429}'
check "azure: scripted 429 with code \"429\" and retry-after" eq \
  "$(status -H 'api-key: k' -d '{}' "$AZ?api-version=1"):$(jq -r '.error.code' "$TMP/body"):$(grep -i '^retry-after:' "$TMP/hdr" | tr -d '\r')" "429:429:retry-after: 1"
fault "{$TOOLS}"
R=$(az -d '{}' "$AZ?api-version=1")
check "azure: tool_calls" eq "$(jq -r '.choices[0].finish_reason, .choices[0].message.tool_calls[1].function.name' <<<"$R" | tr '\n' ' ')" "tool_calls clock "
R=$(az -d '{"input":["a","b"]}' "$U/openai/deployments/emb/embeddings?api-version=2024-10-21")
check "azure embeddings: two vectors, model = deployment" eq "$(jq -r '[(.data|length), .model] | join(",")' <<<"$R")" "2,emb"
R2=$(curl -s -H 'Authorization: Bearer k' -d '{"model":"m","input":["a","b"]}' "$U/v1/embeddings")
check "azure embeddings: same vectors as OpenAI's" eq "$(jq -c '.data[].embedding' <<<"$R")" "$(jq -c '.data[].embedding' <<<"$R2")"

# ---------------------------------------------------------------- Bedrock
BM='us.anthropic.claude-sonnet-4-20250514-v1%3A0'
BB='{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":64}}'
printf '%s' "$BB" >"$TMP/bb"
br() { curl -s -H 'Authorization: Bearer bedrock-key' -H 'Content-Type: application/json' --data-binary @"$TMP/bb" "$@"; }
R=$(br "$U/model/$BM/converse")
check "bedrock converse: text, stopReason, usage" eq \
  "$(jq -r '[.output.message.role, .output.message.content[0].text, .stopReason, (.usage.totalTokens == .usage.inputTokens + .usage.outputTokens), (.metrics.latencyMs|type)] | join("|")' <<<"$R")" \
  "assistant|$HELLO|end_turn|true|number"
S=$(stats)
check "bedrock: last_request format, decoded model" eq "$(jq -r '.last_request | [.format,.model,.auth] | join(",")' <<<"$S")" \
  "bedrock,us.anthropic.claude-sonnet-4-20250514-v1:0,Bearer bedrock-key"
check "bedrock: no auth → 403 Missing Authentication Token" eq \
  "$(status -d "$BB" "$U/model/$BM/converse"):$(jq -r .message "$TMP/body"):$(grep -i '^x-amzn-errortype:' "$TMP/hdr" | cut -d' ' -f2 | cut -d: -f1)" \
  "403:Missing Authentication Token:UnrecognizedClientException"
A='AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000'
check "bedrock: SigV4 for another service → 403" eq "$(status -H "Authorization: $A" -H 'x-amz-date: 20250101T000000Z' -d "$BB" "$U/model/$BM/converse")" 403
python3 "$UTIL" sigv4 "$SECRET" "/model/$BM/converse" "$TMP/bb" "127.0.0.1:$PORT" >"$TMP/sig"
SIGH=(-H "$(sed -n 1p "$TMP/sig")" -H "$(sed -n 2p "$TMP/sig")" -H 'Content-Type: application/json')
check "bedrock: valid SigV4 (double-encoded path) → 200" eq "$(status "${SIGH[@]}" --data-binary @"$TMP/bb" "$U/model/$BM/converse")" 200
check "bedrock: SigV4 over another body → 403 InvalidSignatureException" eq \
  "$(status "${SIGH[@]}" --data-binary '{"messages":[{"role":"user","content":[{"text":"x"}]}]}' "$U/model/$BM/converse"):$(grep -i '^x-amzn-errortype:' "$TMP/hdr" | cut -d' ' -f2 | cut -d: -f1)" \
  "403:InvalidSignatureException"
NOD=(-H "$(sed -n 2p "$TMP/sig")" -H 'Content-Type: application/json')
check "bedrock: SigV4 without x-amz-date → 403" eq "$(status "${NOD[@]}" --data-binary @"$TMP/bb" "$U/model/$BM/converse")" 403
check "bedrock: empty messages → 400 ValidationException" eq \
  "$(status -H 'Authorization: Bearer k' -d '{"messages":[]}' "$U/model/$BM/converse"):$(grep -i '^x-amzn-errortype:' "$TMP/hdr" | cut -d' ' -f2 | cut -d: -f1)" "400:ValidationException"
for p in "429 ThrottlingException" "400 ValidationException" "500 InternalServerException" "503 ServiceUnavailableException"; do
  set -- $p
  fault "{\"status\":$1}"
  check "bedrock: scripted $1 → $2" eq "$(status -H 'Authorization: Bearer k' -d "$BB" "$U/model/$BM/converse"):$(grep -i '^x-amzn-errortype:' "$TMP/hdr" | cut -d' ' -f2 | cut -d: -f1):$(jq -r '.message|type' "$TMP/body")" "$1:$2:string"
done
fault "{\"content\":\"Checking.\",$TOOLS}"
R=$(br "$U/model/$BM/converse")
check "bedrock converse: toolUse blocks" eq "$(jq -c '[.stopReason, .output.message.content[0].text, (.output.message.content[1:][] | .toolUse | [.toolUseId,.name,.input])]' <<<"$R")" \
  '["tool_use","Checking.",["tooluse_mock_0","lookup",{"q":"weather in Oslo","n":3}],["tooluse_mock_1","clock",{}]]'
status -H 'Authorization: Bearer k' --data-binary @"$TMP/bb" "$U/model/$BM/converse-stream" >/dev/null
check "bedrock stream: content-type eventstream" eq "$(grep -i '^content-type:' "$TMP/hdr" | tr -d '\r' | cut -d' ' -f2)" application/vnd.amazon.eventstream
python3 "$UTIL" frames "$TMP/body" >"$TMP/fr"
check "bedrock stream: frame sequence (CRCs valid)" eq "$(jq -r '.type // .bad' "$TMP/fr" | uniq | tr '\n' ' ')" \
  "messageStart contentBlockDelta contentBlockStop messageStop metadata "
check "bedrock stream: one delta per word, text reassembles" eq "$(jq -j 'select(.type=="contentBlockDelta") | .payload.delta.text' "$TMP/fr")" "$HELLO"
check "bedrock stream: word deltas" eq "$(grep -c contentBlockDelta "$TMP/fr")" 5
check "bedrock stream: messageStop end_turn, metadata usage" eq \
  "$(jq -r 'select(.type=="messageStop") .payload.stopReason' "$TMP/fr")$(jq -r 'select(.type=="metadata") | .payload.usage | (.totalTokens == .inputTokens + .outputTokens)' "$TMP/fr")" "end_turntrue"
fault "{\"content\":\"Checking.\",$TOOLS}"
br "$U/model/$BM/converse-stream" >"$TMP/bs"
python3 "$UTIL" frames "$TMP/bs" >"$TMP/fr"
check "bedrock stream tools: contentBlockStart toolUse per call" eq \
  "$(jq -c 'select(.type=="contentBlockStart") | [.payload.contentBlockIndex, .payload.start.toolUse.toolUseId, .payload.start.toolUse.name]' "$TMP/fr" | tr -d '\n')" \
  '[1,"tooluse_mock_0","lookup"][2,"tooluse_mock_1","clock"]'
check "bedrock stream tools: input fragments concatenate" eq \
  "$(jq -j 'select(.type=="contentBlockDelta" and .payload.contentBlockIndex==1) | .payload.delta.toolUse.input' "$TMP/fr" | jq -c .)" '{"q":"weather in Oslo","n":3}'
check "bedrock stream tools: several fragments" test "$(jq -c 'select(.type=="contentBlockDelta" and .payload.contentBlockIndex==1)' "$TMP/fr" | wc -l)" -ge 3
check "bedrock stream tools: blocks stopped, stopReason tool_use" eq \
  "$(jq -c 'select(.type=="contentBlockStop") | .payload.contentBlockIndex' "$TMP/fr" | tr -d '\n')$(jq -r 'select(.type=="messageStop") .payload.stopReason' "$TMP/fr")" "012tool_use"
fault '{"error_after":2}'
br "$U/model/$BM/converse-stream" >"$TMP/bs"
python3 "$UTIL" frames "$TMP/bs" >"$TMP/fr"
check "bedrock stream error_after: throttlingException frame last" eq \
  "$(tail -1 "$TMP/fr" | jq -r '[.mt,.type,(.payload.message|type)] | join(",")'):$(grep -c contentBlockDelta "$TMP/fr")" "exception,throttlingException,string:2"
fault '{"garbage":true}'
br "$U/model/$BM/converse-stream" >"$TMP/bs"
python3 "$UTIL" frames "$TMP/bs" >"$TMP/fr"
check "bedrock stream garbage: frames with a bad message CRC" test "$(grep -c '"message crc"' "$TMP/fr")" -ge 1
fault '{"cut_after":2}'
br "$U/model/$BM/converse-stream" >"$TMP/bs"
python3 "$UTIL" frames "$TMP/bs" >"$TMP/fr"
check "bedrock stream cut_after: 2 deltas, no messageStop" eq "$(grep -c contentBlockDelta "$TMP/fr"):$(grep -c messageStop "$TMP/fr")" "2:0"

# ---------------------------------------------------------------- Vertex AI
TOK=$U/token
tok() { curl -s -H 'Content-Type: application/x-www-form-urlencoded' \
  -d "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=$1" "$TOK"; }
R=$(tok "$(python3 "$UTIL" jwt "$TOK")")
T1=$(jq -r .access_token <<<"$R")
check "vertex token: issued" eq "$(jq -r '[.token_type, .expires_in, (.access_token|startswith("mock-token-"))] | join(",")' <<<"$R")" "Bearer,3600,true"
check "vertex token: wrong aud → 400 invalid_grant" eq "$(tok "$(python3 "$UTIL" jwt https://oauth2.googleapis.com/token)" | jq -r .error)" invalid_grant
check "vertex token: alg HS256 → 400" eq "$(tok "$(python3 "$UTIL" jwt "$TOK" h.alg=HS256)" | jq -r .error)" invalid_grant
check "vertex token: scope without cloud-platform → 400" eq "$(tok "$(python3 "$UTIL" jwt "$TOK" scope=email)" | jq -r .error)" invalid_grant
check "vertex token: expired assertion → 400" eq "$(tok "$(python3 "$UTIL" jwt "$TOK" iat=1000 exp=4600)" | jq -r .error)" invalid_grant
check "vertex token: not a JWT → 400" eq "$(tok abc.def | jq -r .error)" invalid_grant
check "vertex token: wrong grant_type → 400" eq \
  "$(curl -s -d "grant_type=client_credentials&assertion=$(python3 "$UTIL" jwt "$TOK")" "$TOK" | jq -r .error)" unsupported_grant_type
VP=$U/v1/projects/my-proj/locations/us-central1/publishers
vx() { curl -s -H "Authorization: Bearer $T1" -H 'Content-Type: application/json' "$@"; }
GB='{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}'
R=$(vx -d "$GB" "$VP/google/models/gemini-2.5-flash:generateContent")
check "vertex gemini: text, modelVersion" eq "$(jq -r '.candidates[0].content.parts[0].text, .modelVersion' <<<"$R" | tr '\n' '|')" "$HELLO|gemini-2.5-flash|"
S=$(stats)
check "vertex: last_request format, model; tokens_issued" eq "$(jq -r '[.last_request.format, .last_request.model, .tokens_issued] | join(",")' <<<"$S")" "vertex,gemini-2.5-flash,1"
vx -N -d "$GB" "$VP/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse" >"$TMP/vs"
check "vertex gemini stream: SSE reassembles" eq "$(grep '^data: ' "$TMP/vs" | sed 's/^data: //' | jq -j '.candidates[0].content.parts[0].text')" "$HELLO"
check "vertex: no token → 401 UNAUTHENTICATED" eq \
  "$(status -d "$GB" "$VP/google/models/g:generateContent"):$(jq -r .error.status "$TMP/body")" "401:UNAUTHENTICATED"
check "vertex: token not issued by the mock → 401" eq \
  "$(status -H 'Authorization: Bearer ya29.other' -d "$GB" "$VP/google/models/g:generateContent"):$(jq -r '.error.details[0].reason' "$TMP/body")" "401:ACCESS_TOKEN_TYPE_UNSUPPORTED"
check "vertex: API key is not enough → 401" eq "$(status -H 'x-goog-api-key: k' -d "$GB" "$VP/google/models/g:generateContent")" 401
AB='{"anthropic_version":"vertex-2023-10-16","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
R=$(vx -d "$AB" "$VP/anthropic/models/claude-sonnet-4@20250514:rawPredict")
check "vertex anthropic: message, model from path" eq "$(jq -r '.type, .content[0].text, .model' <<<"$R" | tr '\n' '|')" "message|$HELLO|claude-sonnet-4@20250514|"
check "vertex anthropic: model in body → 400" eq \
  "$(status -H "Authorization: Bearer $T1" -d '{"model":"c","anthropic_version":"vertex-2023-10-16","max_tokens":5,"messages":[{"role":"user","content":"x"}]}' "$VP/anthropic/models/c:rawPredict")" 400
check "vertex anthropic: wrong anthropic_version → 400" eq \
  "$(status -H "Authorization: Bearer $T1" -d '{"anthropic_version":"2023-06-01","max_tokens":5,"messages":[{"role":"user","content":"x"}]}' "$VP/anthropic/models/c:rawPredict"):$(jq -r .error.type "$TMP/body")" "400:invalid_request_error"
vx -N -d "${AB%\}},\"stream\":true}" "$VP/anthropic/models/claude-sonnet-4@20250514:streamRawPredict" >"$TMP/vas"
check "vertex anthropic stream: events" eq "$(grep '^event: ' "$TMP/vas" | cut -d' ' -f2 | uniq | tr '\n' ' ')" \
  "message_start content_block_start ping content_block_delta content_block_stop message_delta message_stop "
fault '{"status":429}'
check "vertex gemini: scripted 429 RESOURCE_EXHAUSTED" eq \
  "$(status -H "Authorization: Bearer $T1" -d "$GB" "$VP/google/models/g:generateContent"):$(jq -r .error.status "$TMP/body")" "429:RESOURCE_EXHAUSTED"
# token control: expiry, failures, revocation
R=$(curl -s -d '{"expires_in":700}' "$U/mock/token")
check "mock/token: expires_in set" eq "$(tok "$(python3 "$UTIL" jwt "$TOK")" | jq -r .expires_in)" 700
curl -s -d '{"fail":503}' "$U/mock/token" >/dev/null
check "mock/token: fail 503" eq "$(status -d "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=$(python3 "$UTIL" jwt "$TOK")" "$TOK")" 503
curl -s -d '{"fail":0,"revoke":true}' "$U/mock/token" >/dev/null
check "mock/token: revoke → old token 401 ACCESS_TOKEN_EXPIRED" eq \
  "$(status -H "Authorization: Bearer $T1" -d "$GB" "$VP/google/models/g:generateContent"):$(jq -r '.error.details[0].reason' "$TMP/body")" "401:ACCESS_TOKEN_EXPIRED"
T2=$(tok "$(python3 "$UTIL" jwt "$TOK")" | jq -r .access_token)
check "mock/token: a new token works after revoke" eq "$(status -H "Authorization: Bearer $T2" -d "$GB" "$VP/google/models/g:generateContent")" 200
check "mock/token: bad control → 400" eq "$(status -d '{"fail":200}' "$U/mock/token")" 400
check "stats: tokens_issued" eq "$(stats | jq .tokens_issued)" 3
curl -s -X POST "$U/mock/reset" >/dev/null
check "reset: tokens_issued 0, issued tokens still valid" eq \
  "$(stats | jq .tokens_issued):$(status -H "Authorization: Bearer $T2" -d "$GB" "$VP/google/models/g:generateContent")" "0:200"

check "mock still alive" kill -0 "$PID"
kill "$PID"; wait "$PID"; rc=$?; PID=
check "mock exits cleanly on SIGTERM" eq "$rc" 0
[ "$fails" -eq 0 ] && echo "all mock cloud checks passed" || echo "$fails check(s) failed"
exit $((fails > 0))
