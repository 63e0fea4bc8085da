#!/usr/bin/env bash
# Formatting and lints, as CI runs them: rustfmt check, clippy with warnings as errors, and
# a ShellCheck pass over the scripts when it is installed (apt-get install shellcheck).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "### cargo fmt --all -- --check"
cargo fmt --all -- --check

echo "### cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

if command -v shellcheck >/dev/null 2>&1; then
    echo "### shellcheck"
    shellcheck scripts/*.sh .ci/run deploy/check.sh
else
    echo "### shellcheck: not installed, skipped"
fi
