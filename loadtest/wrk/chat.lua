-- wrk script: non-streaming chat completions. MODEL and KEY come from the environment.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. (os.getenv("KEY") or "sk-sluice-demo")
wrk.body = '{"model":"' .. (os.getenv("MODEL") or "bench") .. '","messages":[{"role":"user","content":"Benchmark prompt: say something short."}]}'
