#!/usr/bin/env bash
# Quick, reproducible overhead check with wrk: mock-llm directly vs Sluice in front of it,
# non-streaming and streaming, closed loop at a fixed concurrency. Everything runs on
# 127.0.0.1, every run is bounded in time, and every process started here is stopped.
#
#   loadtest/run-wrk.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS="${2:-32}"
MOCK_PORT=29100
GW_PORT=29101
ADMIN_PORT=29102

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
scripts/ensure-deps.sh
cargo build --release -p sluice-gateway --bin sluice -p sluice-loadtest --bin mock-llm

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export SLUICE_BENCH_PROVIDER_KEY="sk-bench-provider"
target/release/mock-llm --listen "127.0.0.1:$MOCK_PORT" --api-key-env SLUICE_BENCH_PROVIDER_KEY 2>"$work/mock.log" &
pids+=($!)
key_hash="$(printf %s sk-sluice-demo | target/release/sluice hash-key)"
cat >"$work/sluice.yaml" <<YAML
server: { listen: 127.0.0.1:$GW_PORT, admin_listen: 127.0.0.1:$ADMIN_PORT, threads: 2 }
providers:
  mock-llm: { kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", api_key_env: SLUICE_BENCH_PROVIDER_KEY }
models:
  bench: { provider: mock-llm }
keys:
  - { name: bench, key_sha256: "$key_hash", tenant: bench }
YAML
SLUICE_LOG=warn target/release/sluice --config "$work/sluice.yaml" >"$work/access.log" 2>"$work/sluice.log" &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

run() { # name url script key
  local out
  out="$(KEY="$4" MODEL=bench wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "loadtest/wrk/$3" "$2" 2>&1)"
  local rps p50 p99 errors
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  errors="$( (grep -E 'Non-2xx|Socket errors' <<<"$out" || true) | tr '\n' ' ')"
  printf '| %-22s | %10s | %8s | %8s | %s\n' "$1" "$rps" "$p50" "$p99" "${errors:-}"
}

cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks="$(getconf CLK_TCK)"

printf '| %-22s | %10s | %8s | %8s | errors\n' target req/s p50 p99
printf '|%s|\n' "------------------------|------------|----------|----------|-------"
run "direct, non-stream" "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" chat.lua sk-bench-provider
c0="$(cpu_of "$gw_pid")"
n0="$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^sluice_requests_total/ {s += $NF} END {print s + 0}')"
run "sluice, non-stream" "http://127.0.0.1:$GW_PORT/v1/chat/completions" chat.lua sk-sluice-demo
c1="$(cpu_of "$gw_pid")"
n1="$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^sluice_requests_total/ {s += $NF} END {print s + 0}')"
run "direct, stream" "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" chat-stream.lua sk-bench-provider
run "sluice, stream" "http://127.0.0.1:$GW_PORT/v1/chat/completions" chat-stream.lua sk-sluice-demo
echo
awk -v c="$((c1 - c0))" -v t="$ticks" -v n="$((n1 - n0))" \
  'BEGIN { if (n > 0) printf "sluice CPU per non-stream request: %.1f us (%d requests)\n", c / t / n * 1e6, n }'
echo "sluice peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$gw_pid/status")"
