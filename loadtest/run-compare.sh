#!/usr/bin/env bash
# Sluice vs nginx vs mock-llm directly, one command per scenario. Installs nginx when missing,
# builds the release binaries once, runs `sluice-bench compare` on 127.0.0.1 (bounded in time
# and request count by the scenario, and in wall time by `timeout` here), and stops every
# process it started. Reports go to target/bench-results/.
#
#   loadtest/run-compare.sh [SCENARIO.yaml ...] [-- extra sluice-bench compare args]
#   loadtest/run-compare.sh                                   # throughput, fixed-5k, stream-ttft, stream-burst
#   loadtest/run-compare.sh loadtest/scenarios/soak.yaml -- --duration 3m
#   BASELINE=/tmp/sluice-main loadtest/run-compare.sh loadtest/scenarios/stream-burst.yaml
#
# Environment: SKIP_BUILD=1 reuses the binaries; CARGO_TARGET_DIR is honoured;
# BENCH_TIMEOUT caps the wall time of each scenario (default: 2400 s); BASELINE=/path/to/sluice
# also measures that binary (e.g. an earlier commit's release build) as the target `baseline`.
set -euo pipefail

# Checked (and made absolute) before the cd below and before the long build.
baseline_args=()
if [ -n "${BASELINE:-}" ]; then
    case "$BASELINE" in /*) ;; *) BASELINE="$PWD/$BASELINE" ;; esac
    if [ ! -f "$BASELINE" ] || [ ! -x "$BASELINE" ]; then
        echo "BASELINE=$BASELINE is not an executable file" >&2
        exit 2
    fi
    baseline_args=(--baseline "$BASELINE")
fi
cd "$(dirname "$0")/.."

scenarios=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    scenarios+=("$1")
    shift
done
[ "${1:-}" = "--" ] && shift
if [ ${#scenarios[@]} -eq 0 ]; then
    scenarios=(loadtest/scenarios/throughput.yaml loadtest/scenarios/fixed-5k.yaml loadtest/scenarios/stream-ttft.yaml
        loadtest/scenarios/stream-burst.yaml)
fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    sudo_=""
    [ "$(id -u)" -ne 0 ] && sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq nginx-light ||
        DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq nginx
fi

target_dir="${CARGO_TARGET_DIR:-target}"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    scripts/ensure-deps.sh
    cargo build --release -p sluice-gateway --bin sluice \
        -p sluice-loadtest --bin mock-llm --bin sluice-bench
fi
bin="$target_dir/release"
out="$target_dir/bench-results"
mkdir -p "$out"

bench_pid=""
cleanup() {
    if [ -n "$bench_pid" ]; then
        kill -INT "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
for sc in "${scenarios[@]}"; do
    name="$(basename "$sc" .yaml)"
    echo "=== $name ($sc)" >&2
    timeout --signal=INT --kill-after=15 "${BENCH_TIMEOUT:-2400}" \
        "$bin/sluice-bench" compare "$sc" \
        --sluice "$bin/sluice" --mock-llm "$bin/mock-llm" "${baseline_args[@]}" \
        --json "$out/$name-$stamp.json" --md "$out/$name-$stamp.md" "$@" &
    bench_pid=$!
    wait "$bench_pid"
    bench_pid=""
done
echo "reports: $out/*-$stamp.{md,json}" >&2
