-- wrk script for bench/midstream.sh: a streaming chat POST to the group named by $MODEL.
-- No response() hook (wrk would hand every body to Lua); wrk counts non-2xx itself.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "sk-bench-master")
wrk.body = '{"model":"' .. (os.getenv("MODEL") or "tracked") ..
           '","messages":[{"role":"user","content":"Say hello."}],"stream":true}'
