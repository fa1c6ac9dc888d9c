#!/usr/bin/env bash
# The test suite: set up if needed, ruff and mypy, then pytest. "No tests collected" (pytest exit 5) is a
# failure, not a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# Lint and type-check first: either failing fails the run (and CI) before the slower tests start.
.venv/bin/ruff check src tests benchmarks scripts || exit 1
.venv/bin/python -m mypy || exit 1   # settings and files in pyproject.toml [tool.mypy]
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
