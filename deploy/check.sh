#!/usr/bin/env bash
# Validates everything under deploy/ without Docker, a cluster or the network (after a
# one-time install of pinned tools from PyPI and Debian's archive):
#
#   deploy/check.sh          run from anywhere; exit status 1 if any check failed
#
# What it runs, one line per check:
#   hadolint on deploy/Dockerfile; the compose-spec JSON schema on deploy/compose/compose.yaml;
#   cross-file checks of the compose stack and the OpenTelemetry Collector config;
#   promtool check config / check rules / test rules; amtool check-config;
#   the Helm chart rendered and linted with each values file (Helm's own Go SDK), its
#   objects cross-checked, then kubernetes-validate --strict against Kubernetes 1.30 (the
#   chart's minimum) and 1.37, the Prometheus Operator objects against deploy/check/schemas/,
#   the chart's policy through `sluice check` and its PrometheusRule through promtool;
#   `sluice check` on every policy file under deploy/; Grafana dashboards (ids, grid, data
#   sources, and every PromQL query through promtool); and a self-test that plants mistakes
#   and expects each cross-file check to catch its own.
#
# Tools: deploy/.venv (deploy/check/requirements.txt) and promtool/amtool unpacked from
# Debian's prometheus and prometheus-alertmanager packages into deploy/.tools (no daemon is
# installed). Both are reused while they are current, so a second run takes seconds.
# `sluice check` uses ${CARGO_TARGET_DIR:-target}/debug/sluice, which the caller builds
# (cargo build -p sluice-gateway --bin sluice).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=deploy/.venv
tools=deploy/.tools
out=$tools/out
requirements=deploy/check/requirements.txt
validate=deploy/check/validate.py
sluice=${CARGO_TARGET_DIR:-target}/debug/sluice
kube_versions=(1.30.0 1.37.0)

mkdir -p "$tools"
rm -rf "$out"
mkdir -p "$out"

as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "check.sh: need root or sudo for: $*" >&2
        return 1
    fi
}

# ---- setup: pinned Python tools ----
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || $(cat "$venv/.requirements.sha256" 2>/dev/null) != "$want" ]]; then
    rm -rf "$venv"
    if ! { "${PYTHON:-python3}" -m venv "$venv" &&
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"; } >"$out/setup-pip.log" 2>&1; then
        cat "$out/setup-pip.log" >&2
        echo "check.sh: cannot install $requirements into $venv" >&2
        exit 1
    fi
    echo "$want" >"$venv/.requirements.sha256"
fi
echo "setup  $venv: $(grep -cE '^[A-Za-z]' "$requirements") pinned packages ($requirements)"

# ---- setup: promtool and amtool from Debian, unpacked, not installed ----
debian=$tools/debian
if [[ ! -x $debian/usr/bin/promtool || ! -x $debian/usr/bin/amtool ]]; then
    rm -rf "$tools/debs" "$debian"
    mkdir -p "$tools/debs"
    download() { (cd "$tools/debs" && apt-get download prometheus prometheus-alertmanager); }
    # A machine that never ran `apt-get update` has no package lists yet.
    if ! download >"$out/setup-apt.log" 2>&1; then
        if ! { as_root apt-get update -q && download; } >>"$out/setup-apt.log" 2>&1; then
            cat "$out/setup-apt.log" >&2
            echo "check.sh: cannot download prometheus/prometheus-alertmanager with apt-get" >&2
            exit 1
        fi
    fi
    for deb in "$tools"/debs/*.deb; do
        dpkg -x "$deb" "$debian"
    done
fi
promtool=$debian/usr/bin/promtool
amtool=$debian/usr/bin/amtool
echo "setup  $("$promtool" --version 2>&1 | head -n1 | sed 's/ (.*//'), $("$amtool" --version 2>&1 | head -n1 | sed 's/ (.*//') (Debian)"

# ---- checks ----
n=0
failed=()

# check [-v] NAME COMMAND...: runs COMMAND with its output in a log; prints one line, and
# the log's tail on failure. -v appends the log's last line (the command's summary) to "ok".
check() {
    local verbose=0
    if [[ $1 == -v ]]; then
        verbose=1
        shift
    fi
    local name=$1
    shift
    n=$((n + 1))
    local log=$out/check-$n.log
    if "$@" >"$log" 2>&1; then
        if [[ $verbose == 1 ]]; then
            printf 'ok    %s: %s\n' "$name" "$(grep -v '^[[:space:]]*$' "$log" | tail -n1 | sed 's/^[[:space:]]*//')"
        else
            printf 'ok    %s\n' "$name"
        fi
    else
        printf 'FAIL  %s\n' "$name"
        tail -n 40 "$log" | sed 's/^/      | /'
        failed+=("$name")
    fi
}

py=$venv/bin/python

check "hadolint deploy/Dockerfile" "$venv/bin/hadolint" deploy/Dockerfile
check "compose-spec schema: deploy/compose/compose.yaml" \
    "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
check -v "compose stack cross-file consistency" \
    "$py" "$validate" compose deploy/compose/compose.yaml --otel deploy/otel-collector/config.yaml
check -v "otel-collector config structure" "$py" "$validate" otel deploy/otel-collector/config.yaml

for cfg in deploy/compose/prometheus.yml deploy/prometheus/prometheus.yml; do
    check "promtool check config $cfg" "$promtool" check config "$cfg"
done
check -v "promtool check rules deploy/prometheus/rules/*.yml" "$promtool" check rules deploy/prometheus/rules/*.yml
check -v "promtool test rules deploy/prometheus/tests/*.yml" "$promtool" test rules deploy/prometheus/tests/*.yml
check "helm chart's rules file = deploy/prometheus/rules/sluice.rules.yml" \
    cmp deploy/prometheus/rules/sluice.rules.yml deploy/helm/sluice/files/sluice.rules.yml
check "amtool check-config deploy/compose/alertmanager.yml" "$amtool" check-config deploy/compose/alertmanager.yml

# The chart, once per values file: render + lint + cross-checks, then the tools.
chart=deploy/helm/sluice
for values in default deploy/helm/values/*.yaml; do
    if [[ $values == default ]]; then
        name=default
        args=()
    else
        name=$(basename "$values" .yaml)
        args=(--values "$values")
    fi
    check -v "helm render+lint+cross-checks ($name values)" \
        "$py" "$validate" chart "$chart" "${args[@]}" --name "$name" --out "$out/chart"
    if [[ ! -s $out/chart/$name.yaml ]]; then
        continue
    fi
    for kv in "${kube_versions[@]}"; do
        check "kubernetes-validate --strict -k $kv ($name values)" \
            "$venv/bin/kubernetes-validate" --strict --quiet -k "$kv" "$out/chart/$name.yaml"
    done
    if [[ -f $out/chart/$name.rules.yml ]]; then
        check -v "promtool check rules: PrometheusRule ($name values)" "$promtool" check rules "$out/chart/$name.rules.yml"
    fi
done
check -v "helm chart refuses bad values" "$py" "$validate" guards "$chart"

# Every policy: the files under deploy/, and each values file's rendered ConfigMap.
policies=()
while IFS= read -r -d '' f; do
    policies+=("$f")
done < <(find deploy \( -path "$venv" -o -path "$tools" \) -prune -o \
    \( -name sluice.yaml -o -name '*.policy.yaml' \) -type f -print0 | sort -z)
policies+=("$out"/chart/*.policy.yaml)
if [[ -x $sluice ]]; then
    for policy in "${policies[@]}"; do
        check "sluice check $policy" "$sluice" check "$policy"
    done
else
    n=$((n + 1))
    printf 'FAIL  sluice check: no binary at %s (cargo build -p sluice-gateway --bin sluice)\n' "$sluice"
    failed+=("sluice check")
fi

check -v "grafana dashboards deploy/grafana/*.json" "$py" "$validate" dashboards \
    --datasources deploy/compose/grafana/provisioning/datasources/datasources.yaml \
    --rules-out "$out/dashboard-queries.rules.yml" deploy/grafana/*.json
check -v "promtool parses every dashboard query" "$promtool" check rules "$out/dashboard-queries.rules.yml"
check -v "self-test: planted mistakes are caught" "$py" "$validate" selftest deploy

echo
printf 'deploy: %d passed, %d failed\n' "$((n - ${#failed[@]}))" "${#failed[@]}"
if ((${#failed[@]})); then
    printf 'deploy/check.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
