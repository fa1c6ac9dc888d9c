"""`gradguard bench`: list and run the benchmark scripts of a source checkout (`benchmarks/*.py`).

Benchmarks measure speed and memory as ratios taken side by side in one run; they are never unit tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HELP = "list or run the benchmarks in benchmarks/ (speed, convergence, GradDiv tables)"
EPILOG = """examples:
  gradguard bench                         # list benchmarks
  gradguard bench attack_speed            # run benchmarks/attack_speed.py
  gradguard bench attack_speed -- --help  # arguments after -- go to the script
"""


def benchmarks_dir() -> Path | None:
    """The checkout's benchmarks/ folder (present for editable installs and source trees)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "benchmarks"
        if candidate.is_dir() and (parent / "pyproject.toml").exists():
            return candidate
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="benchmark to run (file name without .py)")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script")


def run(args: argparse.Namespace) -> int:
    folder = benchmarks_dir()
    if folder is None:
        print("gradguard bench: no benchmarks/ folder found; benchmarks ship with the source checkout", file=sys.stderr)
        return 2
    scripts = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    if not args.name:
        for p in scripts:
            doc = _first_doc_line(p)
            print(f"{p.stem:28s} {doc}")
        return 0
    script = folder / f"{args.name}.py"
    if not script.exists():
        names = ", ".join(p.stem for p in scripts) or "none"
        print(f"gradguard bench: no benchmark {args.name!r} in {folder} (have: {names})", file=sys.stderr)
        return 2
    extra = [a for a in args.script_args if a != "--"]
    return subprocess.call([sys.executable, str(script), *extra])


def _first_doc_line(path: Path) -> str:
    import ast

    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except SyntaxError:
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
