-- wrk script: a non-stream (or, with STREAM=1, streaming) chat completion POST.
-- The same request bytes go to every target; the mock and nginx ignore the bearer.
-- No response() hook: it would make wrk parse every body in Lua. wrk itself reports
-- "Non-2xx or 3xx responses: N", which run.sh turns into an error column.
local stream = os.getenv("STREAM") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "sk-bench-master")
wrk.body = '{"model":"gpt-4","messages":[{"role":"user","content":"Say hello."}]' ..
           (stream and ',"stream":true' or '') .. '}'
