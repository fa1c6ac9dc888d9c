#!/usr/bin/env bash
# Create .venv (once) and install gradguard with its test tools. torch is pinned to the CPU wheel the development
# and CI machines carry: an unpinned torch would pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.gradguard-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q "torch==${GRADGUARD_TORCH_VERSION:-2.13.0}"
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
