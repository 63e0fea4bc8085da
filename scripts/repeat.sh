#!/usr/bin/env bash
# Runs the whole suite (scripts/test.sh) N times in a row at `nice 10`, beside a steady
# half-core load at normal priority, to show that no test passes or fails by timing:
#
#   scripts/repeat.sh [N]          # default 10; logs and a summary in target/repeat/
#
# Every run goes to its end (a failure does not stop the next); the load average is sampled
# every 30 s. Exits non-zero if any run failed. Bounded: N runs, and the load stops with them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${1:-10}
out=${CARGO_TARGET_DIR:-target}/repeat
mkdir -p "$out"
: >"$out/summary.txt"
: >"$out/loadavg.log"

# Busy 50 ms, idle 50 ms: about half a core, at normal priority (above the suite's nice 10).
python3 -c '
import time
while True:
    t = time.time()
    while time.time() - t < 0.05:
        pass
    time.sleep(0.05)
' &
load=$!
(while :; do echo "$(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 30; done) >>"$out/loadavg.log" &
sampler=$!
trap 'kill "$load" "$sampler" 2>/dev/null || true' EXIT

failed=0
for i in $(seq 1 "$runs"); do
    start=$SECONDS
    if nice -n 10 scripts/test.sh >"$out/run-$i.log" 2>&1; then
        result=pass
    else
        result=FAIL
        failed=$((failed + 1))
    fi
    echo "run $i $result $((SECONDS - start))s $(date +%T)" | tee -a "$out/summary.txt"
done
echo "$((runs - failed)) of $runs runs passed; load average $(awk '{print $2}' "$out/loadavg.log" | sort -n | sed -n '1p;$p' | paste -sd'-') (1-minute, min-max)" |
    tee -a "$out/summary.txt"
((failed == 0))
