#!/usr/bin/env python3
"""Checks of deploy/ that need no Docker engine and no cluster: every YAML file parses, the Kubernetes
manifests agree with each other and with the image (port, user, probes on health routes that exist),
and the grace period covers the preStop pause plus the node's shutdown bound. Schema validation
(kubernetes-validate) and the Dockerfile lint (hadolint) run from deploy/check.sh."""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
failures = []


def fail(message):
    failures.append(message)


def load(path):
    try:
        return list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as e:
        fail(f"{path.relative_to(ROOT)} does not parse: {e}")
        return []


for path in sorted(ROOT.glob("deploy/**/*.y*ml")) + [ROOT / "compose.yaml"]:
    load(path)
for path in sorted(ROOT.glob("deploy/**/*.json")):
    try:
        json.loads(path.read_text())
    except ValueError as e:
        fail(f"{path.relative_to(ROOT)} does not parse: {e}")

docs = {}
for path in sorted(K8S.glob("*.yaml")):
    for doc in load(path):
        if doc:
            docs[doc["kind"]] = doc

kustomization = docs.get("Kustomization", {})
listed = set(kustomization.get("resources", []))
present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
if listed != present:
    fail(f"kustomization.yaml lists {sorted(listed)}, deploy/k8s holds {sorted(present)}")

deployment = docs["Deployment"]
pod = deployment["spec"]["template"]["spec"]
container = pod["containers"][0]
config = docs["ConfigMap"]["data"]
secret = docs["Secret"]["stringData"]

dockerfile = (ROOT / "Dockerfile").read_text()
user = re.search(r"^USER (\d+)", dockerfile, re.M)
if not user or int(user.group(1)) != pod["securityContext"]["runAsUser"]:
    fail("the Deployment's runAsUser is not the image's USER")
port = re.search(r"^EXPOSE (\d+)", dockerfile, re.M)
if not port or int(port.group(1)) != container["ports"][0]["containerPort"]:
    fail("the container port is not the image's EXPOSE")
if not config.get("ORDERSAGA_BIND", "").endswith(f":{container['ports'][0]['containerPort']}"):
    fail("ORDERSAGA_BIND does not listen on the container port")

health = (ROOT / "src" / "routes" / "health.rs").read_text()
for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
    path = container[probe]["httpGet"]["path"]
    if f'"{path}"' not in health:
        fail(f"{probe} asks {path}, which src/routes/health.rs does not serve")
if container["readinessProbe"]["httpGet"]["path"] != "/health/ready":
    fail("the readiness probe must be /health/ready (it turns 503 while draining)")

pause = 0
pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
if len(pre_stop) == 2 and pre_stop[0] == "sleep":
    pause = int(pre_stop[1])
shutdown = int(config.get("ORDERSAGA_SHUTDOWN_TIMEOUT_SECONDS", "20"))
grace = pod.get("terminationGracePeriodSeconds", 30)
if grace < pause + shutdown + 5:
    fail(
        f"terminationGracePeriodSeconds {grace} < preStop {pause} s + shutdown_timeout_seconds "
        f"{shutdown} s + 5 s: the kubelet would kill the node mid-shutdown"
    )

for key in ("ORDERSAGA_JWT_SECRET", "ORDERSAGA_BROKER__SIGNING_KEY"):
    if len(secret.get(key, "").encode()) < 32:
        fail(f"the Secret's {key} is shorter than the 32 bytes the node requires")
for key in list(config) + list(secret):
    if not key.startswith("ORDERSAGA_"):
        fail(f"{key} is not an ordersaga setting")

compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
build = compose.get("x-ordersaga", {}).get("build", {})
if build.get("dockerfile") != "Dockerfile":
    fail("compose.yaml's nodes are not built from the top-level Dockerfile")
for service, spec in compose.get("services", {}).items():
    for volume in spec.get("volumes", []):
        source = volume.split(":", 1)[0]
        if source.startswith("./") and not (ROOT / source).exists():
            fail(f"compose.yaml's {service} mounts {source}, which does not exist")

selector = deployment["spec"]["selector"]["matchLabels"]
for kind in ("Service", "PodDisruptionBudget"):
    spec = docs[kind]["spec"]
    chosen = spec.get("selector", {})
    chosen = chosen.get("matchLabels", chosen)
    if chosen != selector:
        fail(f"the {kind} selects {chosen}, the Deployment's pods are {selector}")
if docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] != deployment["metadata"]["name"]:
    fail("the HorizontalPodAutoscaler scales another Deployment")
if "resources" not in container or "requests" not in container["resources"]:
    fail("the container has no resource requests (the autoscaler needs them)")

for failure in failures:
    print(f"deploy/check: {failure}", file=sys.stderr)
if failures:
    sys.exit(1)
print(f"deploy/check: {len(docs)} Kubernetes documents, compose.yaml and the Dockerfile agree")
