#!/usr/bin/env bash
# Builds (release) and runs the gateway. Arguments go to `sluice`:
#
#   scripts/run.sh                                   the embedded quickstart: mock provider, no API key
#   scripts/run.sh --config config/examples/openai.yaml
#   scripts/run.sh check my-policy.yaml
#
# The first release build takes several minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ensure-deps.sh
cargo build --release -p sluice-gateway --bin sluice

# Where it will listen: the policy's server.listen/admin_listen, else the quickstart's.
serving=1
config=${SLUICE_CONFIG:-}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        check | hash-key | schema | slo | drill | help | -h | --help | -V | --version) serving=0 ;;
        -c | --config) config=${args[i + 1]:-} ;;
        --config=*) config=${args[i]#--config=} ;;
    esac
done
if [[ $serving == 1 ]]; then
    listen=127.0.0.1:8080 admin=127.0.0.1:9464
    if [[ -n $config ]]; then
        listen=$(sed -nE 's/^[[:space:]]+listen:[[:space:]]*"?([^"#[:space:]]+).*/\1/p' "$config" 2>/dev/null | head -n1)
        admin=$(sed -nE 's/^[[:space:]]+admin_listen:[[:space:]]*"?([^"#[:space:]]+).*/\1/p' "$config" 2>/dev/null | head -n1)
        listen=${listen:-0.0.0.0:8080} admin=${admin:-127.0.0.1:9464}
        echo "sluice: serving $config on http://$listen/v1 (admin http://$admin/metrics); Ctrl-C stops it" >&2
    else
        echo "sluice: quickstart on http://$listen/v1 (key sk-sluice-demo, model gpt-4o-mini; admin http://$admin/metrics); Ctrl-C stops it" >&2
    fi
fi

exec cargo run --release -q -p sluice-gateway --bin sluice -- "$@"
