#!/usr/bin/env bash
# Syntax checks of the deployment templates with the tools' own checkers:
#   bash -n and shellcheck on the Slurm scripts, kubernetes-validate (strict, Kubernetes 1.33 schemas)
#   and yamllint on the manifests, and `sbatch --test-only` when a Slurm controller answers here.
# `make check-deploy` installs the Python tools (pinned, from the package registry) and runs this.
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION=${K8S_VERSION:-1.33.0}
failed=0
run() {
    echo "+ $*"
    "$@" || failed=1
}

for f in slurm/*.sbatch slurm/*.sh; do
    run bash -n "$f"
done
run shellcheck --shell=bash slurm/*.sbatch slurm/*.sh
run kubernetes-validate --strict -k "$K8S_VERSION" kubernetes/*.yaml
# The shell scripts inside the manifests (container command `/bin/sh -c`), checked as POSIX sh.
if python3 -c 'import yaml' 2> /dev/null; then
    for f in kubernetes/*.yaml; do
        python3 - "$f" > "${TMPDIR:-/tmp}/tumor-audit-check.sh" <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
    for c in spec.get("containers", []):
        if c.get("command", [])[:2] == ["/bin/sh", "-c"]:
            print(c["args"][0])
PY
        if [ -s "${TMPDIR:-/tmp}/tumor-audit-check.sh" ]; then
            echo "+ shellcheck --shell=sh <the script in $f>"
            shellcheck --shell=sh - < "${TMPDIR:-/tmp}/tumor-audit-check.sh" || failed=1
        fi
    done
fi
run yamllint --strict -d '{extends: default, rules: {line-length: {max: 120}}}' kubernetes/
if command -v sbatch > /dev/null && scontrol ping > /dev/null 2>&1; then
    run env RUN=check SHARDS=4 sbatch --test-only --array=0-3 slurm/audit-shard.sbatch
    run env RUN=check SHARDS=4 sbatch --test-only slurm/merge.sbatch
else
    echo "(no Slurm controller here: sbatch --test-only skipped)"
fi
if [ "$failed" -ne 0 ]; then
    echo "deploy templates: some checks failed" >&2
    exit 1
fi
echo "deploy templates: all checks passed"
