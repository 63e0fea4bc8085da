-- wrk script: streaming chat completions (the whole stream is one wrk response).
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. (os.getenv("KEY") or "sk-sluice-demo")
wrk.body = '{"model":"' .. (os.getenv("MODEL") or "bench") .. '","stream":true,"messages":[{"role":"user","content":"Benchmark prompt: say something short."}]}'
