#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, fetch and verify MNIST, then train a Self-Gradient Network,
# attack it with APGD-CE + targeted APGD on 500 test images and write the report (about 5 minutes on 2 CPU cores).
# Pass another config, and `--set key=value` overrides, as arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
config=${1:-configs/mnist-sgn.toml}
shift || true
.venv/bin/gradguard data fetch mnist
# A second run keeps the first and writes to runs/<name>-<UTC date-time> (printed); `--resume DIR` continues one.
.venv/bin/gradguard run "$config" --if-exists new "$@"
