#!/usr/bin/env bash
# Create .venv (once) and install gradguard with its test tools. torch is pinned to the CPU wheel the development
# and CI machines carry: an unpinned torch would pull gigabytes of CUDA packages. torchattacks, the reference the attack
# cross-checks run against (tests/test_attacks_trained.py, which fail under CI=true without it), is installed with
# --no-deps: its dependencies would pull torchvision, and it imports with what the dev extra already brings (scipy
# through scikit-learn, tqdm through gradguard). A dev extra cannot say --no-deps, hence this script.
# adv-lib 0.2.8 is not installed: `import adv_lib.attacks` imports torchvision (its LPIPS distance).
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
TORCHATTACKS_VERSION=3.5.1
if ! .venv/bin/python -c "import torchattacks, sys; sys.exit(torchattacks.__version__ != '$TORCHATTACKS_VERSION')" \
    2>/dev/null; then
  .venv/bin/python -m pip install -q --no-deps "torchattacks==$TORCHATTACKS_VERSION"
fi
