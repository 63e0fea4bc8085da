"""Offline checks of deploy/ that no off-the-shelf validator covers; run by deploy/check.sh.

Each subcommand prints what it found and exits 1 on any problem:

  chart       render the Helm chart with a values file (helm-python-sdk = Helm's Go SDK),
              lint it, check the manifests against each other (selectors, named ports, probes,
              volumes, security context, the policy against the pod), validate the Prometheus
              Operator resources against schemas/*.json, and write what the other tools check
              next: core manifests (kubernetes-validate), the policy (sluice check), the
              PrometheusRule's groups (promtool check rules)
  guards      render the chart with values that must be refused and check each is, with
              the intended message
  dashboards  Grafana dashboards: panel ids and grid positions, data source references
              against the provisioned data sources and the dashboard's own variables, and
              every PromQL query written out as a rule file for `promtool check rules`
  otel        the OpenTelemetry Collector config: every pipeline's components are defined,
              every defined component is used, connectors join two pipelines, known types
  compose     the compose stack's files against each other: mounts exist, and the
              addresses in the policy, the Prometheus, Grafana and collector configs are
              services and ports that the stack really has
  selftest    plants one mistake at a time in copies of the files and checks that the
              subcommands above catch each one
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"

RELEASE = "sluice"
NAMESPACE = "sluice"


class Problems:
    """Collects findings so one run reports all of them."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def check(self, ok: bool, where: str, message: str) -> None:
        if not ok:
            self.add(where, message)

    def finish(self, summary: str) -> int:
        for item in self.items:
            print(f"  {item}")
        if self.items:
            print(f"{len(self.items)} problem(s)")
            return 1
        print(summary)
        return 0


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def duration_seconds(text: str) -> float | None:
    """A Sluice (humantime) duration such as `250ms`, `20s`, `1m 30s`; None if not one."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)\s*([a-z]+)", text.strip())
    rebuilt = "".join(f"{n}{u}" for n, u in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", text.strip()):
        return None
    total = 0.0
    for number, unit in parts:
        if unit not in units:
            return None
        total += int(number) * units[unit]
    return total


def host_port(address: str) -> tuple[str, int] | None:
    """`host:port` or `scheme://host:port/path` → (host, port)."""
    m = re.match(r"^(?:[a-z]+://)?([^/:]+):(\d+)(?:/.*)?$", address.strip())
    return (m.group(1), int(m.group(2))) if m else None


def selector_matches(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------------------------------
# chart


def render(chart_dir: Path, values: dict[str, Any] | None) -> dict[str, str]:
    import helm_python as helm  # imported here: only the chart subcommands need the 75 MB library

    chart = helm.Chart.load(str(chart_dir))
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def lint(chart_dir: Path, values: dict[str, Any] | None, problems: Problems) -> None:
    import helm_python as helm

    report = helm.lint(str(chart_dir), values, namespace=NAMESPACE)
    for err in report.get("errors") or []:
        problems.add("helm lint", str(err))
    for msg in report.get("messages") or []:
        # 1 = info (e.g. "icon is recommended"); 2 = warning, 3 = error.
        if msg.get("severity", 0) >= 2:
            problems.add(f"helm lint {msg.get('path', '')}", str(msg.get("error")))


def documents(manifests: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                docs.append({**doc, "_template": template})
    return docs


def strip(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "_template"}
    meta = dict(out.get("metadata") or {})
    if not meta.get("annotations"):
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def check_pod_security(where: str, pod: dict[str, Any], problems: Problems) -> None:
    psc = pod.get("securityContext") or {}
    for c in pod.get("containers") or []:
        sc = c.get("securityContext") or {}
        w = f"{where} container {c.get('name')}"
        problems.check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, w, "runAsNonRoot is not true")
        problems.check(sc.get("readOnlyRootFilesystem") is True, w, "readOnlyRootFilesystem is not true")
        problems.check(sc.get("allowPrivilegeEscalation") is False, w, "allowPrivilegeEscalation is not false")
        problems.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), w, "capabilities do not drop ALL")
        problems.check(not (sc.get("capabilities") or {}).get("add"), w, "capabilities are added")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        problems.check(seccomp == "RuntimeDefault", w, f"seccompProfile is {seccomp}, not RuntimeDefault")


def check_chart_manifests(docs: list[dict[str, Any]], values: dict[str, Any], problems: Problems) -> dict[str, Any]:
    """Cross-checks the rendered objects; returns the pieces later checks need."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    out: dict[str, Any] = {"policy": None, "rules": None}

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        problems.add("Deployment", f"expected exactly one, found {len(deployments)}")
        return out
    dep = deployments[0]
    dep_name = dep["metadata"]["name"]
    tmpl = dep["spec"]["template"]
    pod_labels = tmpl["metadata"].get("labels") or {}
    pod = tmpl["spec"]
    problems.check(
        selector_matches(dep["spec"]["selector"].get("matchLabels"), pod_labels),
        "Deployment",
        "selector does not match the pod template's labels",
    )
    containers = pod.get("containers") or []
    sluice = next((c for c in containers if c.get("name") == "sluice"), None)
    if sluice is None:
        problems.add("Deployment", "no container named sluice")
        return out
    ports = {p["name"]: p["containerPort"] for p in sluice.get("ports") or []}
    problems.check({"http", "admin"} <= set(ports), "Deployment", f"container ports {sorted(ports)} lack http/admin")

    # Probes on the admin port, the right paths; preStop sleep; grace period.
    expect = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
    for probe, path in expect.items():
        get = (sluice.get(probe) or {}).get("httpGet") or {}
        problems.check(
            get.get("path") == path and get.get("port") == "admin",
            "Deployment",
            f"{probe} is not GET {path} on the admin port: {get}",
        )
    sleep = (((sluice.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds")
    problems.check(isinstance(sleep, int) and sleep > 0, "Deployment", "no preStop sleep")
    grace = pod.get("terminationGracePeriodSeconds")

    # Volumes: the policy directory (never a subPath) and the data directory.
    mounts = {m["mountPath"]: m for m in sluice.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    policy_mount = mounts.get("/etc/sluice")
    problems.check(
        policy_mount is not None and "subPath" not in policy_mount and policy_mount.get("readOnly") is True,
        "Deployment",
        "the policy must be a read-only directory mount at /etc/sluice without subPath",
    )
    data_mount = mounts.get("/var/lib/sluice")
    problems.check(
        data_mount is not None and not data_mount.get("readOnly"), "Deployment", "no writable mount at /var/lib/sluice"
    )
    env = {e["name"]: e for e in sluice.get("env") or []}
    problems.check(
        (env.get("SLUICE_CONFIG") or {}).get("value") == "/etc/sluice/sluice.yaml",
        "Deployment",
        "SLUICE_CONFIG is not /etc/sluice/sluice.yaml",
    )
    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    if policy_mount:
        cm_name = ((volumes.get(policy_mount["name"]) or {}).get("configMap") or {}).get("name")
        existing = (values.get("policy") or {}).get("existingConfigMap")
        if existing:
            problems.check(cm_name == existing, "Deployment", f"policy volume names {cm_name}, not {existing}")
        elif cm_name not in configmaps:
            problems.add("Deployment", f"policy volume names ConfigMap {cm_name}, which the chart does not render")
        else:
            text = (configmaps[cm_name].get("data") or {}).get("sluice.yaml")
            problems.check(bool(text), f"ConfigMap {cm_name}", "no sluice.yaml key")
            out["policy"] = text
    if data_mount:
        vol = volumes.get(data_mount["name"]) or {}
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and not (values.get("persistence") or {}).get("existingClaim"):
            pvcs = {p["metadata"]["name"] for p in by_kind.get("PersistentVolumeClaim", [])}
            problems.check(claim in pvcs, "Deployment", f"data volume claims {claim}, which the chart does not render")
        problems.check(bool(claim) or "emptyDir" in vol, "Deployment", "data volume is neither a PVC nor an emptyDir")

    check_pod_security("Deployment", pod, problems)
    problems.check(
        pod.get("automountServiceAccountToken") is False,
        "Deployment",
        "the service account token is mounted (Sluice never calls the API server)",
    )

    # The policy against the pod: listeners on the container ports, keys from the env,
    # shutdown_grace inside the grace period.
    if out["policy"]:
        try:
            policy = yaml.safe_load(out["policy"]) or {}
        except yaml.YAMLError as e:
            problems.add("policy", f"not YAML: {e}")
            policy = {}
        server = policy.get("server") or {}
        for key, port in (("listen", "http"), ("admin_listen", "admin")):
            hp = host_port(str(server.get(key, "")))
            problems.check(
                hp is not None and hp[0] == "0.0.0.0" and hp[1] == ports.get(port),
                "policy",
                f"server.{key} {server.get(key)!r} is not 0.0.0.0:{ports.get(port)} (container port {port})",
            )
        shutdown = duration_seconds(str(server.get("shutdown_grace", "10s")))
        if shutdown is None:
            problems.add("policy", f"cannot read server.shutdown_grace {server.get('shutdown_grace')!r}")
        elif isinstance(grace, int) and isinstance(sleep, int):
            problems.check(
                grace > sleep + shutdown,
                "Deployment",
                f"terminationGracePeriodSeconds {grace} <= preStop {sleep}s + shutdown_grace {shutdown:g}s",
            )
        for name, provider in (policy.get("providers") or {}).items():
            var = (provider or {}).get("api_key_env")
            if var:
                problems.check(
                    var in env,
                    "Deployment",
                    f"provider {name} reads its key from {var}, which the pod does not set (providerKeys)",
                )
        for name, e in env.items():
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                problems.check(
                    bool(ref.get("name")) and bool(ref.get("key")), "Deployment", f"env {name}: incomplete secretKeyRef"
                )

    # Services select the pods and name real ports; the test pod is selected by none.
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for name, svc in services.items():
        problems.check(
            selector_matches(svc["spec"].get("selector"), pod_labels),
            f"Service {name}",
            "selector does not match the pods",
        )
        for p in svc["spec"].get("ports") or []:
            problems.check(
                p.get("targetPort") in ports,
                f"Service {name}",
                f"targetPort {p.get('targetPort')} is not a container port",
            )
    admin_services = [s for s in services.values() if any(p.get("targetPort") == "admin" for p in s["spec"]["ports"])]
    client_services = [s for s in services.values() if any(p.get("targetPort") == "http" for p in s["spec"]["ports"])]
    problems.check(len(admin_services) == 1, "Service", "expected one admin Service")
    problems.check(
        all(p.get("targetPort") != "admin" for s in client_services for p in s["spec"]["ports"]),
        "Service",
        "the client-facing Service exposes the admin port",
    )
    for p in by_kind.get("Pod", []):
        hook = p["metadata"]["annotations"].get("helm.sh/hook")
        problems.check(hook == "test", f"Pod {p['metadata']['name']}", "a bare Pod that is not a helm test hook")
        labels = p["metadata"].get("labels") or {}
        for name, svc in services.items():
            problems.check(
                not selector_matches(svc["spec"].get("selector"), labels),
                f"Pod {p['metadata']['name']}",
                f"is selected by Service {name}",
            )
        check_pod_security(f"Pod {p['metadata']['name']}", p["spec"], problems)

    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    for h in hpas:
        ref = h["spec"]["scaleTargetRef"]
        problems.check(
            ref.get("kind") == "Deployment" and ref.get("name") == dep_name,
            "HorizontalPodAutoscaler",
            f"scaleTargetRef {ref} is not the Deployment",
        )
        problems.check("replicas" not in dep["spec"], "Deployment", "sets replicas while an HPA owns them")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        problems.check(
            selector_matches(pdb["spec"]["selector"].get("matchLabels"), pod_labels),
            "PodDisruptionBudget",
            "selector does not match the pods",
        )
    for np_ in by_kind.get("NetworkPolicy", []):
        problems.check(
            selector_matches(np_["spec"]["podSelector"].get("matchLabels"), pod_labels),
            "NetworkPolicy",
            "podSelector does not match the pods",
        )
        for rule in np_["spec"].get("ingress") or []:
            for p in rule.get("ports") or []:
                problems.check(
                    p.get("port") in ports, "NetworkPolicy", f"ingress port {p.get('port')} is not a container port"
                )

    # Prometheus Operator resources: schema, then what they point at.
    for kind, schema_file in (("ServiceMonitor", "servicemonitor.json"), ("PrometheusRule", "prometheusrule.json")):
        schema = json.loads((SCHEMAS / schema_file).read_text(encoding="utf-8"))
        validator = jsonschema.Draft202012Validator(schema)
        for obj in by_kind.get(kind, []):
            for err in sorted(validator.iter_errors(strip(obj)), key=lambda e: list(e.path)):
                path = "/".join(str(p) for p in err.path)
                problems.add(f"{kind} {obj['metadata']['name']} ({schema_file})", f"at /{path}: {err.message}")
    for sm in by_kind.get("ServiceMonitor", []):
        spec = sm["spec"]
        targets = [
            s
            for s in services.values()
            if selector_matches(spec.get("selector", {}).get("matchLabels"), s["metadata"].get("labels") or {})
        ]
        problems.check(
            len(targets) == 1, "ServiceMonitor", f"selects {len(targets)} Services, expected the admin Service"
        )
        for t in targets:
            names = {p.get("name") for p in t["spec"]["ports"]}
            for ep in spec.get("endpoints") or []:
                problems.check(
                    ep.get("port") in names,
                    "ServiceMonitor",
                    f"endpoint port {ep.get('port')} not on Service {t['metadata']['name']}",
                )
                problems.check(ep.get("path") == "/metrics", "ServiceMonitor", "endpoint path is not /metrics")
            job = (t["metadata"].get("labels") or {}).get(spec.get("jobLabel", ""))
            problems.check(
                job == "sluice", "ServiceMonitor", f'job label resolves to {job!r}; the alert rules select job="sluice"'
            )
        problems.check(
            NAMESPACE in ((spec.get("namespaceSelector") or {}).get("matchNames") or []),
            "ServiceMonitor",
            "namespaceSelector misses the release namespace",
        )
    rules = by_kind.get("PrometheusRule", [])
    if rules:
        out["rules"] = {"groups": [g for r in rules for g in r["spec"].get("groups") or []]}
    return out


def cmd_chart(args: argparse.Namespace) -> int:
    problems = Problems()
    chart = Path(args.chart)
    values_path = Path(args.values) if args.values else None
    values = (load_yaml(values_path) or {}) if values_path else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lint(chart, values or None, problems)
    try:
        manifests = render(chart, values or None)
    except Exception as e:  # the SDK raises one exception type per failure kind; all are fatal here
        problems.add("helm render", f"{type(e).__name__}: {e}")
        return problems.finish("")
    try:
        docs = documents(manifests)
    except yaml.YAMLError as e:
        problems.add("helm render", f"a template renders invalid YAML: {e}")
        return problems.finish("")
    found = check_chart_manifests(docs, values, problems)
    core = [strip(d) for d in docs if not str(d.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
    (out / f"{args.name}.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False), encoding="utf-8")
    policy_file = out / f"{args.name}.policy.yaml"
    rules_file = out / f"{args.name}.rules.yml"
    for f in (policy_file, rules_file):
        f.unlink(missing_ok=True)
    if found["policy"]:
        policy_file.write_text(found["policy"], encoding="utf-8")
    if found["rules"]:
        rules_file.write_text(yaml.safe_dump(found["rules"], sort_keys=False), encoding="utf-8")
    kinds = sorted({d["kind"] for d in docs})
    return problems.finish(f"{len(docs)} objects ({', '.join(kinds)}), cross-checked")


GUARDS = [
    ({"replicaCont": 3}, "additional properties 'replicaCont' not allowed"),
    ({"terminationGracePeriodSeconds": 25}, "must exceed preStopSleepSeconds"),
    ({"ports": {"http": 8081, "admin": 9464}}, "server.listen must be 0.0.0.0:8081"),
    ({"ports": {"http": 8080, "admin": 9465}}, "server.admin_listen must be 0.0.0.0:9465"),
    ({"policy": {"content": "server: [oops"}}, "policy.content is not valid YAML"),
    ({"persistence": {"enabled": True}}, "a ReadWriteOnce volume serves one pod"),
    ({"image": {"repository": "sluice", "digest": "sha1:abc"}}, "does not match"),
    ({"providerKeys": [{"env": "OPENAI_API_KEY", "secretName": "keys"}]}, "missing property 'secretKey'"),
]


def cmd_guards(args: argparse.Namespace) -> int:
    problems = Problems()
    chart = Path(args.chart)
    for values, expected in GUARDS:
        try:
            render(chart, values)
        except Exception as e:  # any render failure counts; the message says whether it is the right one
            problems.check(expected in str(e), json.dumps(values), f"refused, but not with {expected!r}: {e}")
        else:
            problems.add(json.dumps(values), "rendered; the chart should have refused it")
    return problems.finish(f"{len(GUARDS)} bad values files refused with the intended message")


# ---------------------------------------------------------------------------------------
# dashboards

VAR_RE = re.compile(r"^\$\{?([A-Za-z0-9_]+)(?::[a-z]+)?\}?$")
GRAFANA_INTERVALS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
}


def substitute_vars(expr: str) -> str:
    """Replaces Grafana's variables so the query parses as PromQL: built-in intervals by a
    duration, the dashboard's own variables by a regex matching anything."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return GRAFANA_INTERVALS.get(name, ".*")

    return re.sub(r"\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)", repl, expr)


def all_panels(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for p in panels:
        yield p
        yield from all_panels(p.get("panels") or [])


class DatasourceRefs:
    """Resolves a dashboard's data source references: a datasource variable of the
    dashboard (`${DS_PROMETHEUS}`), or the uid of a provisioned data source."""

    BUILTIN = ("-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --")

    def __init__(self, where: str, sources: dict[str, Any], ds_vars: dict[str, Any], problems: Problems) -> None:
        self.where, self.sources, self.ds_vars, self.problems = where, sources, ds_vars, problems

    def resolve(self, ref: Any, at: str) -> str | None:
        """Returns the data source type a reference resolves to, reporting what does not."""
        where, sources, ds_vars, problems = self.where, self.sources, self.ds_vars, self.problems
        if ref is None:
            return None
        if isinstance(ref, str):
            ref = {"uid": ref}
        uid, typ = ref.get("uid"), ref.get("type")
        if uid in self.BUILTIN:
            return typ
        m = VAR_RE.match(str(uid))
        if m:
            name = m.group(1)
            if name not in ds_vars:
                problems.add(where, f"{at}: data source variable ${name} is not a datasource variable of the dashboard")
                return typ
            problems.check(typ in (None, ds_vars[name]), where, f"{at}: type {typ} but ${name} selects {ds_vars[name]}")
            return ds_vars[name]
        if uid not in sources:
            problems.add(where, f"{at}: data source uid {uid!r} is not provisioned")
            return typ
        problems.check(
            typ in (None, sources[uid]["type"]), where, f"{at}: type {typ} but uid {uid} is {sources[uid]['type']}"
        )
        return sources[uid]["type"]


def cmd_dashboards(args: argparse.Namespace) -> int:
    problems = Problems()
    provisioned = load_yaml(Path(args.datasources)) or {}
    sources = {d["uid"]: d for d in provisioned.get("datasources") or []}
    problems.check(
        len(sources) == len(provisioned.get("datasources") or []), args.datasources, "missing or duplicate uids"
    )
    defaults = [d for d in sources.values() if d.get("isDefault")]
    problems.check(len(defaults) == 1, args.datasources, f"{len(defaults)} default data sources, expected 1")
    for d in sources.values():
        for link in ("exemplarTraceIdDestinations", "derivedFields"):
            for dest in (d.get("jsonData") or {}).get(link) or []:
                problems.check(
                    dest.get("datasourceUid") in sources,
                    f"data source {d['uid']}",
                    f"{link} points at unknown uid {dest.get('datasourceUid')}",
                )
        for key, val in (d.get("jsonData") or {}).items():
            if isinstance(val, dict) and "datasourceUid" in val:
                problems.check(
                    val["datasourceUid"] in sources,
                    f"data source {d['uid']}",
                    f"{key} points at unknown uid {val['datasourceUid']}",
                )
    rules: list[dict[str, str]] = []
    count = 0
    for path in args.dashboards:
        where = Path(path).name
        try:
            dash = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            problems.add(where, f"not JSON: {e}")
            continue
        count += 1
        for key in ("uid", "title", "panels", "schemaVersion"):
            problems.check(key in dash, where, f"no {key}")
        ds_vars = {
            v["name"]: v.get("query")
            for v in (dash.get("templating") or {}).get("list") or []
            if v.get("type") == "datasource"
        }
        all_vars = {v["name"] for v in (dash.get("templating") or {}).get("list") or []}

        check_ref = DatasourceRefs(where, sources, ds_vars, problems).resolve

        for v in (dash.get("templating") or {}).get("list") or []:
            if v.get("type") == "query":
                typ = check_ref(v.get("datasource"), f"variable {v.get('name')}")
                q = v.get("query")
                q = q.get("query") if isinstance(q, dict) else q
                m = re.match(r"^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$", str(q or ""))
                if typ == "prometheus" and m:
                    rules.append(
                        {"record": f"dashboard:{where}:var:{v.get('name')}", "expr": substitute_vars(m.group(1))}
                    )
        ids: set[int] = set()
        boxes: list[tuple[int, int, int, int, int]] = []
        for p in all_panels(dash.get("panels") or []):
            pid = p.get("id")
            at = f"panel {pid} ({p.get('title', '')})"
            if not isinstance(pid, int):
                problems.add(where, f"{at}: id is not an integer")
            elif pid in ids:
                problems.add(where, f"{at}: duplicate id")
            else:
                ids.add(pid)
            g = p.get("gridPos") or {}
            if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")):
                problems.add(where, f"{at}: gridPos needs integer h, w, x, y: {g}")
            else:
                problems.check(
                    g["w"] >= 1 and g["h"] >= 1 and g["x"] >= 0 and g["y"] >= 0 and g["x"] + g["w"] <= 24,
                    where,
                    f"{at}: gridPos {g} is outside the 24-column grid",
                )
                # Panels inside a collapsed row are laid out when it opens: only the top
                # level shares one grid.
                if any(p is q for q in dash.get("panels") or []):
                    boxes.append((pid, g["x"], g["y"], g["w"], g["h"]))
            problems.check(bool(p.get("type")), where, f"{at}: no type")
            panel_type = check_ref(p.get("datasource"), at)
            ref_ids: set[str] = set()
            for t in p.get("targets") or []:
                ref = t.get("refId")
                problems.check(bool(ref) and ref not in ref_ids, where, f"{at}: missing or duplicate refId {ref}")
                ref_ids.add(ref)
                typ = check_ref(t.get("datasource"), f"{at} target {ref}") or panel_type
                if typ == "prometheus":
                    expr = t.get("expr", "")
                    problems.check(bool(expr.strip()), where, f"{at} target {ref}: empty expr")
                    if expr.strip():
                        rules.append({"record": f"dashboard:{where}:panel{pid}:{ref}", "expr": substitute_vars(expr)})
            for var in re.findall(r"\$\{?([A-Za-z0-9_]+)", json.dumps(p.get("targets") or [])):
                problems.check(
                    var in all_vars or var in GRAFANA_INTERVALS, where, f"{at}: uses undefined variable ${var}"
                )
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                if a[1] < b[1] + b[3] and b[1] < a[1] + a[3] and a[2] < b[2] + b[4] and b[2] < a[2] + a[4]:
                    problems.add(where, f"panels {a[0]} and {b[0]} overlap")
    # Recording-rule names must be metric names: keep them simple.
    groups = [
        {
            "name": "dashboard-queries",
            "rules": [{"record": re.sub(r"[^a-zA-Z0-9_:]", "_", r["record"]), "expr": r["expr"]} for r in rules],
        }
    ]
    Path(args.rules_out).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return problems.finish(
        f"{count} dashboard(s), {len(rules)} PromQL queries written for promtool, data sources resolved"
    )


# ---------------------------------------------------------------------------------------
# OpenTelemetry Collector

# The component types this config may use, all in the contrib distribution.
OTEL_TYPES = {
    "receivers": {"otlp", "fluentforward", "prometheus", "filelog", "hostmetrics"},
    "processors": {"memory_limiter", "batch", "resource", "attributes", "transform", "filter", "tail_sampling"},
    "exporters": {"otlp", "otlphttp", "prometheus", "prometheusremotewrite", "debug", "loki"},
    "connectors": {"spanmetrics", "servicegraph", "count", "forward"},
    "extensions": {"health_check", "pprof", "zpages"},
}


def cmd_otel(args: argparse.Namespace) -> int:
    problems = Problems()
    cfg = load_yaml(Path(args.config)) or {}
    defined = {section: set((cfg.get(section) or {}).keys()) for section in OTEL_TYPES}
    for section, names in defined.items():
        for name in names:
            typ = name.split("/", 1)[0]
            problems.check(typ in OTEL_TYPES[section], section, f"{name}: unknown component type {typ}")
    service = cfg.get("service") or {}
    pipelines = service.get("pipelines") or {}
    problems.check(bool(pipelines), "service", "no pipelines")
    used: dict[str, set[str]] = {s: set() for s in OTEL_TYPES}
    connector_in: dict[str, set[str]] = {}
    connector_out: dict[str, set[str]] = {}
    for pname, p in pipelines.items():
        signal = pname.split("/", 1)[0]
        problems.check(signal in ("traces", "metrics", "logs"), f"pipeline {pname}", "unknown signal")
        problems.check(
            bool(p.get("receivers")) and bool(p.get("exporters")), f"pipeline {pname}", "needs receivers and exporters"
        )
        for r in p.get("receivers") or []:
            if r in defined["connectors"]:
                connector_out.setdefault(r, set()).add(signal)
                used["connectors"].add(r)
            else:
                problems.check(r in defined["receivers"], f"pipeline {pname}", f"receiver {r} is not defined")
                used["receivers"].add(r)
        for x in p.get("exporters") or []:
            if x in defined["connectors"]:
                connector_in.setdefault(x, set()).add(signal)
                used["connectors"].add(x)
            else:
                problems.check(x in defined["exporters"], f"pipeline {pname}", f"exporter {x} is not defined")
                used["exporters"].add(x)
        procs = p.get("processors") or []
        for x in procs:
            problems.check(x in defined["processors"], f"pipeline {pname}", f"processor {x} is not defined")
            used["processors"].add(x)
        # The collector's documented order: memory_limiter first, batch after anything that
        # drops or changes data.
        if "memory_limiter" in procs:
            problems.check(procs[0] == "memory_limiter", f"pipeline {pname}", "memory_limiter must come first")
        if "batch" in procs:
            problems.check(procs[-1] == "batch", f"pipeline {pname}", "batch must come last")
    for e in service.get("extensions") or []:
        problems.check(e in defined["extensions"], "service.extensions", f"{e} is not defined")
        used["extensions"].add(e)
    for section in OTEL_TYPES:
        for name in defined[section] - used[section]:
            problems.add(section, f"{name} is defined but no pipeline uses it")
    for c in defined["connectors"]:
        problems.check(
            c in connector_in and c in connector_out,
            f"connector {c}",
            "must be an exporter of one pipeline and a receiver of another",
        )
    if "spanmetrics" in defined["connectors"]:
        problems.check(
            connector_in.get("spanmetrics", set()) <= {"traces"}
            and connector_out.get("spanmetrics", set()) <= {"metrics"},
            "connector spanmetrics",
            "turns traces into metrics: traces pipeline in, metrics pipeline out",
        )
    return problems.finish(
        f"{len(pipelines)} pipelines, {sum(len(v) for v in defined.values())} components, all defined and used"
    )


# ---------------------------------------------------------------------------------------
# compose


def cmd_compose(args: argparse.Namespace) -> int:
    problems = Problems()
    compose_path = Path(args.compose).resolve()
    base = compose_path.parent
    compose = load_yaml(compose_path) or {}
    services: dict[str, Any] = compose.get("services") or {}
    otel_path = Path(args.otel).resolve()
    otel = load_yaml(otel_path) or {}

    def env_of(svc: dict[str, Any]) -> dict[str, str]:
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {k: str(v) for k, v in env.items()}

    def published(svc: dict[str, Any]) -> dict[int, str]:
        """container port → host address it is published on."""
        out: dict[int, str] = {}
        for p in svc.get("ports") or []:
            parts = str(p).split(":")
            if len(parts) == 3:
                out[int(parts[2].split("/")[0])] = parts[0]
        return out

    mounts: dict[str, dict[str, Path]] = {}  # service → container path → host path
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            ctx = (base / build.get("context", ".")).resolve()
            problems.check(ctx.is_dir(), name, f"build context {ctx} does not exist")
            problems.check((ctx / build.get("dockerfile", "Dockerfile")).is_file(), name, "dockerfile does not exist")
        for v in svc.get("volumes") or []:
            src, _, rest = str(v).partition(":")
            target = rest.split(":")[0]
            if src.startswith((".", "/")):
                host = (base / src).resolve()
                if host.exists():
                    mounts.setdefault(name, {})[target] = host
                else:
                    problems.add(name, f"mount source {src} does not exist")
            else:
                problems.check(src in (compose.get("volumes") or {}), name, f"named volume {src} is not declared")
        for dep in svc.get("depends_on") or {}:
            problems.check(dep in services, name, f"depends on unknown service {dep}")

    def service_port(address: str, where: str) -> tuple[str, int] | None:
        hp = host_port(address)
        if hp is None:
            problems.add(where, f"cannot read host:port from {address!r}")
            return None
        problems.check(
            hp[0] in services or hp[0] in ("localhost", "127.0.0.1"), where, f"{hp[0]} is not a compose service"
        )
        return hp

    def mounted(service: str, container_path: str) -> Path | None:
        host = (mounts.get(service) or {}).get(container_path)
        problems.check(host is not None, service, f"nothing is mounted at {container_path}")
        return host

    def mounted_yaml(service: str, container_path: str) -> dict[str, Any]:
        host = mounted(service, container_path)
        return (load_yaml(host) or {}) if host and host.is_file() else {}

    # Sluice: its policy, the provider (mock-llm) and the collector it sends spans to.
    sluice = services.get("sluice") or {}
    policy = mounted_yaml("sluice", "/etc/sluice/sluice.yaml")
    server = policy.get("server") or {}
    admin = host_port(str(server.get("admin_listen", "")))
    listen = host_port(str(server.get("listen", "")))
    problems.check(
        admin is not None and admin[0] == "0.0.0.0" and admin[1] == 9464,
        "sluice policy",
        "admin_listen must be 0.0.0.0:9464 (the image's HEALTHCHECK)",
    )
    problems.check(listen is not None and listen[0] == "0.0.0.0", "sluice policy", "listen must be on 0.0.0.0")
    for want in (listen, admin):
        if want:
            problems.check(want[1] in published(sluice), "sluice", f"port {want[1]} is not published")
    grace = duration_seconds(str(server.get("shutdown_grace", "10s"))) or 0
    stop = duration_seconds(str(sluice.get("stop_grace_period", "10s"))) or 0
    problems.check(stop > grace, "sluice", f"stop_grace_period {stop:g}s must exceed shutdown_grace {grace:g}s")
    sluice_env = env_of(sluice)
    mock = services.get("mock-llm") or {}
    mock_args = dict(a.lstrip("-").split("=", 1) for a in mock.get("command") or [] if "=" in a)
    for pname, prov in (policy.get("providers") or {}).items():
        if prov.get("kind") == "openai":
            hp = service_port(prov.get("base_url", ""), f"policy provider {pname}")
            if hp and hp[0] == "mock-llm":
                mock_listen = host_port(mock_args.get("listen", ""))
                problems.check(
                    mock_listen is not None and mock_listen[1] == hp[1],
                    f"policy provider {pname}",
                    f"port {hp[1]} is not mock-llm's --listen port",
                )
                key_var = mock_args.get("api-key-env")
                problems.check(
                    key_var == prov.get("api_key_env"),
                    f"policy provider {pname}",
                    f"api_key_env {prov.get('api_key_env')} differs from mock-llm's --api-key-env {key_var}",
                )
                problems.check(
                    bool(key_var) and key_var in env_of(mock), "mock-llm", f"{key_var} is not in its environment"
                )
        if prov.get("api_key_env"):
            problems.check(
                prov["api_key_env"] in sluice_env, "sluice", f"{prov['api_key_env']} is not in its environment"
            )
    redis_url = ((policy.get("state") or {}).get("redis") or {}).get("url")
    if redis_url:
        hp = service_port(redis_url, "policy state.redis")
        redis_svc = services.get(hp[0]) if hp else None
        if redis_svc is not None:
            args = [str(a) for a in redis_svc.get("command") or []]
            port = int(args[args.index("--port") + 1]) if "--port" in args[:-1] else 6379
            problems.check(hp[1] == port, "policy state.redis", f"port {hp[1]} is not {hp[0]}'s port {port}")
            problems.check(
                hp[0] in (sluice.get("depends_on") or {}), "sluice", f"does not depend on {hp[0]} (state.redis)"
            )
    telemetry = policy.get("telemetry") or {}
    otel_recv = ((otel.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}
    # `telemetry.otlp` and every destination of `telemetry.destinations` must reach the
    # collector's OTLP receiver for its protocol.
    exports = [("policy telemetry.otlp", telemetry.get("otlp") or {})] + [
        (f"policy telemetry.destinations[{i}]", d or {}) for i, d in enumerate(telemetry.get("destinations") or [])
    ]
    for where, otlp in exports:
        if not otlp:
            continue
        hp = service_port(otlp.get("endpoint", ""), where)
        proto = {"http/protobuf": "http"}.get(otlp.get("protocol", "grpc"), otlp.get("protocol", "grpc"))
        recv = host_port(str((otel_recv.get(proto) or {}).get("endpoint", "")))
        problems.check(
            bool(hp) and hp[0] == "otel-collector" and recv is not None and recv[1] == hp[1],
            where,
            f"{otlp.get('endpoint')} is not the collector's OTLP {proto} receiver",
        )
    log_opts = (sluice.get("logging") or {}).get("options") or {}
    if (sluice.get("logging") or {}).get("driver") == "fluentd":
        addr = host_port(log_opts.get("fluentd-address", ""))
        ff = host_port(str(((otel.get("receivers") or {}).get("fluentforward") or {}).get("endpoint", "")))
        collector_ports = published(services.get("otel-collector") or {})
        problems.check(
            addr is not None and ff is not None and addr[1] == ff[1] and ff[1] in collector_ports,
            "sluice logging",
            "fluentd-address must be the collector's fluentforward port, published on the host",
        )

    # The collector's exporters reach Tempo and Loki on the ports their configs listen on.
    otel_mount = mounted("otel-collector", "/etc/otelcol/config.yaml")
    problems.check(otel_mount == otel_path, "otel-collector", f"mounts {otel_mount}, not {otel_path}")
    tempo_cfg = mounted_yaml("tempo", "/etc/tempo/tempo.yaml")
    loki_cfg = mounted_yaml("loki", "/etc/loki/loki.yaml")
    tempo_otlp = host_port(
        str(
            (((tempo_cfg.get("distributor") or {}).get("receivers") or {}).get("otlp") or {})
            .get("protocols", {})
            .get("grpc", {})
            .get("endpoint", "")
        )
    )
    tempo_http = (tempo_cfg.get("server") or {}).get("http_listen_port")
    loki_http = (loki_cfg.get("server") or {}).get("http_listen_port")
    for name, exp in (otel.get("exporters") or {}).items():
        endpoint = str((exp or {}).get("endpoint", ""))
        if name.startswith(("otlp/", "otlphttp/")):
            hp = service_port(endpoint, f"collector exporter {name}")
            if hp and hp[0] == "tempo":
                problems.check(
                    tempo_otlp is not None and tempo_otlp[1] == hp[1],
                    f"collector exporter {name}",
                    "port is not Tempo's OTLP gRPC receiver",
                )
            if hp and hp[0] == "loki":
                problems.check(
                    hp[1] == loki_http and endpoint.rstrip("/").endswith("/otlp"),
                    f"collector exporter {name}",
                    "must be Loki's http_listen_port with the /otlp path",
                )
    for key in ("wal", "local"):
        path = str(((tempo_cfg.get("storage") or {}).get("trace") or {}).get(key, {}).get("path", ""))
        problems.check(
            path.startswith("/var/tempo/"), "tempo", f"storage.trace.{key}.path {path} is not on the tempo-data volume"
        )
    problems.check(
        str((loki_cfg.get("common") or {}).get("path_prefix")) == "/loki",
        "loki",
        "path_prefix is not the loki-data volume",
    )

    # Prometheus: rule files, Alertmanager, scrape targets on real ports.
    prom = mounted_yaml("prometheus", "/etc/prometheus/prometheus.yml")
    rules_dir = mounted("prometheus", "/etc/prometheus/rules")
    for rf in prom.get("rule_files") or []:
        problems.check(
            str(rf).startswith("/etc/prometheus/rules/"),
            "prometheus",
            f"rule file {rf} is outside the mounted rules directory",
        )
    if rules_dir:
        problems.check(any(rules_dir.glob("*.yml")), "prometheus", "the mounted rules directory has no *.yml")
    known_ports = {
        "sluice": {admin[1] if admin else None},
        "otel-collector": {
            host_port(str(((otel.get("exporters") or {}).get("prometheus") or {}).get("endpoint", "")) or ("", 0))[1],
            next(
                (
                    r.get("pull", {}).get("exporter", {}).get("prometheus", {}).get("port")
                    for r in ((otel.get("service") or {}).get("telemetry") or {}).get("metrics", {}).get("readers")
                    or []
                ),
                None,
            ),
        },
        "alertmanager": {9093},
        "tempo": {tempo_http},
        "loki": {loki_http},
        "localhost": {9090},
    }
    for job in prom.get("scrape_configs") or []:
        for sc in job.get("static_configs") or []:
            for t in sc.get("targets") or []:
                hp = service_port(t, f"prometheus job {job.get('job_name')}")
                if hp:
                    problems.check(
                        hp[1] in known_ports.get(hp[0], set()),
                        f"prometheus job {job.get('job_name')}",
                        f"nothing listens on {t}",
                    )
    problems.check(
        any(j.get("job_name") == "sluice" for j in prom.get("scrape_configs") or []),
        "prometheus",
        'no job named sluice (the alert rules select job="sluice")',
    )
    for am in (prom.get("alerting") or {}).get("alertmanagers") or []:
        for sc in am.get("static_configs") or []:
            for t in sc.get("targets") or []:
                service_port(t, "prometheus alerting")

    # Grafana: data source URLs and the dashboards directory.
    ds_dir = mounted("grafana", "/etc/grafana/provisioning/datasources")
    dash_dir = mounted("grafana", "/etc/grafana/provisioning/dashboards")
    if ds_dir:
        problems.check(any(ds_dir.glob("*.yaml")), "grafana", "no data source provisioning file")
        for f in sorted(ds_dir.glob("*.yaml")):
            for d in (load_yaml(f) or {}).get("datasources") or []:
                hp = service_port(d.get("url", ""), f"grafana data source {d.get('uid')}")
                ports = {"prometheus": {9090}, "tempo": {tempo_http}, "loki": {loki_http}, "alertmanager": {9093}}
                if hp:
                    problems.check(
                        hp[1] in ports.get(hp[0], set()),
                        f"grafana data source {d.get('uid')}",
                        f"nothing listens on {d.get('url')}",
                    )
    if dash_dir:
        problems.check(any(dash_dir.glob("*.yaml")), "grafana", "no dashboard provisioning file")
        for f in sorted(dash_dir.glob("*.yaml")):
            for p in (load_yaml(f) or {}).get("providers") or []:
                path = (p.get("options") or {}).get("path")
                host = mounted("grafana", path) if path else None
                problems.check(
                    bool(host) and any(host.glob("*.json")), "grafana", f"dashboard path {path} holds no dashboards"
                )
    home = env_of(services.get("grafana") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        hosts = [
            h / Path(home).relative_to(t)
            for t, h in (mounts.get("grafana") or {}).items()
            if Path(home).is_relative_to(t)
        ]
        problems.check(any(h.is_file() for h in hosts), "grafana", f"home dashboard {home} is not a mounted file")
    return problems.finish(f"{len(services)} services: mounts, ports and addresses agree across the stack's files")


# ---------------------------------------------------------------------------------------
# selftest: each check above must catch a planted mistake


def cmd_selftest(args: argparse.Namespace) -> int:
    import contextlib
    import copy
    import io
    import shutil
    import tempfile

    problems = Problems()
    deploy = Path(args.deploy).resolve()
    chart = deploy / "helm" / "sluice"
    prod_values = load_yaml(deploy / "helm" / "values" / "production.yaml")
    base_docs = documents(render(chart, prod_values))

    def dep_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
        return next(d for d in docs if d["kind"] == "Deployment")

    def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
        return dep_of(docs)["spec"]["template"]["spec"]["containers"][0]

    def of_kind(kind: str) -> Any:
        return lambda docs: next(d for d in docs if d["kind"] == kind)

    chart_mutations: list[tuple[str, Any, str]] = [
        (
            "readiness probe on /healthz",
            lambda d: container(d)["readinessProbe"]["httpGet"].update(path="/healthz"),
            "readinessProbe is not GET /readyz",
        ),
        (
            "policy mounted with subPath",
            lambda d: container(d)["volumeMounts"][0].update(subPath="sluice.yaml"),
            "without subPath",
        ),
        (
            "writable root filesystem",
            lambda d: container(d)["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnlyRootFilesystem",
        ),
        (
            "capability added",
            lambda d: container(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
            "capabilities are added",
        ),
        (
            "grace period too short",
            lambda d: dep_of(d)["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=30),
            "terminationGracePeriodSeconds 30",
        ),
        (
            "provider key not in env",
            lambda d: container(d).update(env=[e for e in container(d)["env"] if e["name"] != "OPENAI_API_KEY"]),
            "OPENAI_API_KEY, which the pod does not set",
        ),
        (
            "service selector typo",
            lambda d: of_kind("Service")(d)["spec"]["selector"].update({"app.kubernetes.io/name": "sluse"}),
            "selector does not match the pods",
        ),
        (
            "HPA targets another name",
            lambda d: of_kind("HorizontalPodAutoscaler")(d)["spec"]["scaleTargetRef"].update(name="x"),
            "scaleTargetRef",
        ),
        (
            "ServiceMonitor port typo",
            lambda d: of_kind("ServiceMonitor")(d)["spec"]["endpoints"][0].update(port="metrics"),
            "endpoint port metrics",
        ),
        (
            "ServiceMonitor unknown field",
            lambda d: of_kind("ServiceMonitor")(d)["spec"].update(endpoint=[]),
            "'endpoint' was unexpected",
        ),
        (
            "PrometheusRule bad duration",
            lambda d: of_kind("PrometheusRule")(d)["spec"]["groups"][0]["rules"][0].update({"for": "2 minutes"}),
            "does not match",
        ),
        (
            "PrometheusRule rule without expr",
            lambda d: of_kind("PrometheusRule")(d)["spec"]["groups"][0]["rules"][0].pop("expr"),
            "'expr' is a required property",
        ),
        (
            "admin listener on loopback",
            lambda d: of_kind("ConfigMap")(d)["data"].update(
                {
                    "sluice.yaml": of_kind("ConfigMap")(d)["data"]["sluice.yaml"].replace(
                        "0.0.0.0:9464", "127.0.0.1:9464"
                    )
                }
            ),
            "server.admin_listen",
        ),
    ]
    for label, mutate, expected in chart_mutations:
        docs = copy.deepcopy(base_docs)
        mutate(docs)
        found = Problems()
        check_chart_manifests(docs, prod_values, found)
        problems.check(
            any(expected in item for item in found.items), "chart check", f"missed: {label} (found {found.items})"
        )

    def run_quiet(func: Any, ns: argparse.Namespace) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = func(ns)
        return buf.getvalue() if rc != 0 else ""

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # Dashboards.
        dash = json.loads((deploy / "grafana" / "sluice.json").read_text(encoding="utf-8"))
        panels = [p for p in dash["panels"] if p.get("targets")]
        dash_mutations: list[tuple[str, Any, str]] = [
            ("duplicate panel id", lambda d: d["panels"][1].update(id=d["panels"][2]["id"]), "duplicate id"),
            ("panel off the grid", lambda d: d["panels"][1]["gridPos"].update(x=20), "outside the 24-column grid"),
            (
                "overlapping panels",
                lambda d: d["panels"][2]["gridPos"].update(x=d["panels"][1]["gridPos"]["x"]),
                "overlap",
            ),
            (
                "unprovisioned data source",
                lambda d: d["panels"][1].update(datasource={"type": "prometheus", "uid": "prom-x"}),
                "not provisioned",
            ),
            (
                "undefined datasource variable",
                lambda d: d["panels"][1].update(datasource={"type": "prometheus", "uid": "${DS_X}"}),
                "not a datasource variable",
            ),
            (
                "undefined query variable",
                lambda d: panels[0]["targets"][0].update(expr=panels[0]["targets"][0]["expr"] + " + $nope"),
                "undefined variable $nope",
            ),
            ("gridPos missing", lambda d: d["panels"][1].pop("gridPos"), "gridPos needs"),
        ]
        for label, mutate, expected in dash_mutations:
            d = copy.deepcopy(dash)
            panels = [p for p in d["panels"] if p.get("targets")]
            mutate(d)
            f = tmp / "dash.json"
            f.write_text(json.dumps(d), encoding="utf-8")
            out = run_quiet(
                cmd_dashboards,
                argparse.Namespace(
                    datasources=str(deploy / "compose/grafana/provisioning/datasources/datasources.yaml"),
                    rules_out=str(tmp / "dash.rules.yml"),
                    dashboards=[str(f)],
                ),
            )
            problems.check(expected in out, "dashboards check", f"missed: {label}")

        # Collector.
        otel = load_yaml(deploy / "otel-collector" / "config.yaml")
        otel_mutations: list[tuple[str, Any, str]] = [
            (
                "undefined exporter",
                lambda c: c["service"]["pipelines"]["traces"]["exporters"].append("otlp/jaeger"),
                "exporter otlp/jaeger is not defined",
            ),
            (
                "unused processor",
                lambda c: c["processors"].update({"batch/unused": {}}),
                "batch/unused is defined but no pipeline uses it",
            ),
            (
                "batch before memory_limiter",
                lambda c: c["service"]["pipelines"]["traces"].update(processors=["batch", "memory_limiter"]),
                "memory_limiter must come first",
            ),
            (
                "connector only on one side",
                lambda c: c["service"]["pipelines"]["metrics"]["receivers"].remove("spanmetrics"),
                "must be an exporter of one pipeline and a receiver of another",
            ),
            ("unknown component type", lambda c: c["receivers"].update({"otpl": {}}), "unknown component type otpl"),
        ]
        for label, mutate, expected in otel_mutations:
            c = copy.deepcopy(otel)
            mutate(c)
            f = tmp / "otel.yaml"
            f.write_text(yaml.safe_dump(c), encoding="utf-8")
            out = run_quiet(cmd_otel, argparse.Namespace(config=str(f)))
            problems.check(expected in out, "otel check", f"missed: {label}")

        # Compose: a copy of deploy/ (without tool caches) with one file changed at a time.
        def fresh() -> Path:
            root = tmp / "deploy"
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(deploy, root, ignore=shutil.ignore_patterns(".venv", ".tools", "helm", "__pycache__"))
            return root

        def edit(root: Path, rel: str, old: str, new: str) -> None:
            p = root / rel
            text = p.read_text(encoding="utf-8")
            if old not in text:
                raise SystemExit(f"selftest: {rel} no longer contains {old!r}; update the selftest")
            p.write_text(text.replace(old, new, 1), encoding="utf-8")

        compose_mutations = [
            (
                "shared state on a port Redis does not listen on",
                "compose/sluice.yaml",
                "redis://redis:6379/0",
                "redis://redis:6380/0",
                "is not redis's port 6379",
            ),
            (
                "policy points at the wrong mock-llm port",
                "compose/sluice.yaml",
                "http://mock-llm:9000/v1",
                "http://mock-llm:9001/v1",
                "not mock-llm's --listen port",
            ),
            (
                "OTLP to a service that does not exist",
                "compose/sluice.yaml",
                "http://otel-collector:4317",
                "http://collector:4317",
                "collector is not a compose service",
            ),
            (
                "scrape target on a wrong port",
                "compose/prometheus.yml",
                "sluice:9464",
                "sluice:9465",
                "nothing listens on sluice:9465",
            ),
            (
                "Grafana data source on a wrong port",
                "compose/grafana/provisioning/datasources/datasources.yaml",
                "http://loki:3100",
                "http://loki:3101",
                "nothing listens on http://loki:3101",
            ),
            (
                "missing mount source",
                "compose/compose.yaml",
                "./tempo.yaml:",
                "./tempo.yml:",
                "mount source ./tempo.yml does not exist",
            ),
            (
                "collector exports to Tempo's HTTP port",
                "otel-collector/config.yaml",
                "endpoint: tempo:4317",
                "endpoint: tempo:4318",
                "not Tempo's OTLP gRPC receiver",
            ),
            (
                "stop grace shorter than the drain",
                "compose/compose.yaml",
                "stop_grace_period: 20s",
                "stop_grace_period: 5s",
                "stop_grace_period 5s must exceed",
            ),
            (
                "key variable missing from Sluice",
                "compose/compose.yaml",
                "      <<: *mock-llm-key\n      SLUICE_LOG",
                "      SLUICE_LOG",
                "MOCK_LLM_API_KEY is not in its environment",
            ),
        ]
        for label, rel, old, new, expected in compose_mutations:
            root = fresh()
            edit(root, rel, old, new)
            out = run_quiet(
                cmd_compose,
                argparse.Namespace(
                    compose=str(root / "compose/compose.yaml"), otel=str(root / "otel-collector/config.yaml")
                ),
            )
            problems.check(expected in out, "compose check", f"missed: {label}")
        total = len(chart_mutations) + len(dash_mutations) + len(otel_mutations) + len(compose_mutations)
    return problems.finish(f"{total} planted mistakes, each caught by its check")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("chart")
    p.add_argument("chart")
    p.add_argument("--values")
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_chart)
    p = sub.add_parser("guards")
    p.add_argument("chart")
    p.set_defaults(func=cmd_guards)
    p = sub.add_parser("dashboards")
    p.add_argument("--datasources", required=True)
    p.add_argument("--rules-out", required=True)
    p.add_argument("dashboards", nargs="+")
    p.set_defaults(func=cmd_dashboards)
    p = sub.add_parser("otel")
    p.add_argument("config")
    p.set_defaults(func=cmd_otel)
    p = sub.add_parser("compose")
    p.add_argument("compose")
    p.add_argument("--otel", required=True)
    p.set_defaults(func=cmd_compose)
    p = sub.add_parser("selftest")
    p.add_argument("deploy")
    p.set_defaults(func=cmd_selftest)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
