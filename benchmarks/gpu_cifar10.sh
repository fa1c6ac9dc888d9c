#!/usr/bin/env bash
# One GPU slot for benchmarks/gpu_cifar10.py: install the carried wheels, run the study within its budget, and pack
# its small outputs into at most three files under $OUT (the device tool returns at most 8 files).
#
# Before the call, in the repository root of the checkout that travels:
#   mkdir -p .device-data && cp ../shared/data/cifar10-jpeg.tar.gz .device-data/    # or the exact python batches
#   # pydantic is not on the GPU image: carry its wheels for Python 3.12 in .whl/ (ignored, like .device-data/)
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
#     typing-inspection==0.4.5          # 2.7 MB in all, checked 2026-12-02
# Then: run(command="bash benchmarks/gpu_cifar10.sh", carry=[".device-data", ".whl"], timeout_s=600).
set -uo pipefail
OUT="${OUT:-gpu-out}"
WORK="$(mktemp -d)"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# The script keeps to its budget by planning; `timeout` is the backstop that leaves time to pack what it wrote
# (plan.json and each finished run's files are written as it goes) inside the tool's 600 s limit.
BUDGET_S="${BUDGET_S:-500}"
timeout "$((BUDGET_S + 70))" python3 benchmarks/gpu_cifar10.py --out "$WORK/gpu_cifar10" --work "$WORK/runs" \
  --data-root .device-data --budget-s "$BUDGET_S" 2>&1 | tee "$WORK/gpu_cifar10.log"
status=$?
mkdir -p "$OUT"
cp "$WORK/gpu_cifar10.log" "$OUT/" 2>/dev/null
cp "$WORK/gpu_cifar10/plan.json" "$WORK/gpu_cifar10/results.md" "$OUT/" 2>/dev/null
tar czf "$OUT/gpu_cifar10.tar.gz" -C "$WORK" gpu_cifar10
exit "$status"
