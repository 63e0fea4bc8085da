#!/usr/bin/env bash
# The whole test suite: Rust unit + e2e tests (`cargo test --workspace`), then the official
# openai Python SDK against the real binaries (gateway/tests/sdk, pytest in .venv), then the
# offline validation of the deployment files (deploy/check.sh: Dockerfile, compose stack, Helm
# chart, Prometheus/Alertmanager configs and rules, dashboards, policies).
# Every stage runs even when an earlier test stage failed; the exit status is non-zero if any did.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage() { printf '\n### %s\n' "$*"; }

stage "dependencies"
scripts/ensure-deps.sh --python --browser

stage "python venv (.venv)"
py=${PYTHON:-python3}
if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
    rm -rf .venv
    "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r gateway/tests/sdk/requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -r gateway/tests/browser/requirements.txt
.venv/bin/python -m pip list --disable-pip-version-check 2>/dev/null | grep -iE '^(openai|pytest|httpx2?) ' || true

stage "cargo build --workspace --bins"
cargo build --workspace --bins

failed=()

stage "cargo test --workspace"
if ! cargo test --workspace; then
    failed+=("cargo test --workspace")
fi

stage "openai SDK tests (pytest gateway/tests/sdk)"
target=${CARGO_TARGET_DIR:-target}
set +e
SLUICE_BIN_DIR="$target/debug" .venv/bin/python -m pytest gateway/tests/sdk -q
rc=$?
set -e
case $rc in
    0) ;;
    5) failed+=("pytest: no tests ran (exit 5)") ;;
    *) failed+=("pytest (exit $rc)") ;;
esac

stage "console in headless Chromium (pytest gateway/tests/browser)"
set +e
SLUICE_BIN_DIR="$target/debug" CONSOLE_SCREENSHOTS="$target/console-screenshots" \
    .venv/bin/python -m pytest gateway/tests/browser -q
rc=$?
set -e
case $rc in
    0) ;;
    5) failed+=("pytest browser: no tests ran (exit 5)") ;;
    *) failed+=("pytest browser (exit $rc)") ;;
esac

stage "deploy files (deploy/check.sh)"
if ! deploy/check.sh; then
    failed+=("deploy/check.sh")
fi

echo
if ((${#failed[@]})); then
    printf 'test.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "test.sh: all tests passed"
