#!/usr/bin/env bash
# Installs what building and testing Sluice needs, when it is missing; fast when all is there.
#
#   scripts/ensure-deps.sh            the Rust build: cargo, a C/C++ toolchain, make, cmake
#   scripts/ensure-deps.sh --python   also a Python >= 3.10 that can make a venv (SDK tests)
#   scripts/ensure-deps.sh --browser  also Debian's chromium and chromedriver (console tests)
#
# cmake is needed by pingora's zlib-ng build (libz-ng-sys); cc/c++ by ring, zstd-sys and
# jemalloc; redis-server by the tests of limits shared through Redis. Packages come from Debian's archive with apt-get (via sudo when not root).
set -euo pipefail

want_python=0
want_browser=0
for arg in "$@"; do
    case "$arg" in
        --python) want_python=1 ;;
        --browser) want_browser=1 ;;
        -h | --help)
            sed -n '2,9p' "$0"
            exit 0
            ;;
        *)
            echo "ensure-deps: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

missing=()
need() { # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}

need cmake cmake
need make make
need cc gcc
need c++ g++
need pkg-config pkg-config
# The shared-state tests start their own Redis (issue 13).
need redis-server redis-server
# The end-to-end suite scrapes Sluice with a real Prometheus, and deploy/check.sh runs promtool.
need prometheus prometheus
need promtool prometheus

# A Python for the SDK tests: openai 3.x needs >= 3.10, and `python -m venv` must work.
python_ok() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}
if [[ $want_python == 1 ]]; then
    py=${PYTHON:-python3}
    if ! command -v "$py" >/dev/null 2>&1; then
        missing+=(python3 python3-venv)
    elif ! python_ok "$py"; then
        missing+=(python3-venv)
    fi
fi

# The console's browser test drives headless Chromium through chromedriver (gateway/tests/browser).
if [[ $want_browser == 1 ]]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi

if ((${#missing[@]})); then
    echo "ensure-deps: installing ${missing[*]}" >&2
    sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "ensure-deps: need root or sudo to install: ${missing[*]}" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "ensure-deps: cargo not found; install a Rust toolchain >= 1.89 (rustup) first" >&2
    exit 1
fi
if [[ $want_python == 1 ]] && ! python_ok "${PYTHON:-python3}"; then
    echo "ensure-deps: ${PYTHON:-python3} cannot make a venv or is older than 3.10;" \
        "set PYTHON to a Python >= 3.10 with venv" >&2
    exit 1
fi
