"""The result of one evaluation: numbers, foolbox-style success tensors, masking flags, and how it was run.

`EvalResult.to_dict()` is the stable JSON schema the report renders (documented in docs/evaluation.md, bump
`SCHEMA_VERSION` on any incompatible change). Boolean per-sample tensors are stored as strings of '0'/'1', one
string per epsilon: four times smaller than JSON lists and still readable by eye. Every accuracy comes with its 95%
Wilson interval (`*_ci` fields, `gradguard.intervals`); they are derived from the bits, so files written before they
existed load unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gradguard.atomic import atomic_write_text
from gradguard.intervals import accuracy_interval, format_interval

__all__ = ["SCHEMA_VERSION", "Flag", "AttackRecord", "EvalResult", "encode_bits", "decode_bits"]

SCHEMA_VERSION = 1


def encode_bits(t: Tensor) -> list[str]:
    """(E, N) bool tensor -> E strings of '0'/'1'."""
    return ["".join("1" if b else "0" for b in row.tolist()) for row in t.to(torch.bool)]


def decode_bits(rows: list[str]) -> Tensor:
    """Inverse of `encode_bits`."""
    if not rows:
        return torch.zeros(0, 0, dtype=torch.bool)
    return torch.tensor([[c == "1" for c in r] for r in rows], dtype=torch.bool)


def _share(t: Tensor) -> float:
    return int(t.sum()) / t.numel() if t.numel() else float("nan")  # exact ratio in double, not float32


def _cis(values: list[float | None], n: int) -> list[tuple[float, float] | None]:
    return [accuracy_interval(v, n) for v in values]


def _pct_ci(value: float, n: int) -> str:
    """"93.50% [90.1, 95.8]": an accuracy with its 95% Wilson interval."""
    return f"{100 * value:.2f}% {format_interval(accuracy_interval(value, n))}".rstrip()


@dataclass
class Flag:
    """One masking check: did it fire, a one-line message, and the numbers behind it."""

    name: str
    triggered: bool
    message: str
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "triggered": self.triggered, "message": self.message, "values": self.values}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Flag:
        return cls(d["name"], bool(d["triggered"]), d["message"], dict(d.get("values", {})))


@dataclass
class AttackRecord:
    """One attack of the ensemble across all epsilons.

    `success[e, i]`: the attack fooled the m-draw prediction on sample i at eps[e] (True as well where the clean
    prediction is already wrong, as foolbox counts it). `attacked[e, i]`: the attack was run on sample i (in chained
    mode only the points still robust are attacked, so its own robust accuracy on the full set is unknown).
    """

    name: str
    kind: str  # "white-box" or "gradient-free"
    settings: list[dict[str, Any]]  # one per eps
    success: Tensor
    attacked: Tensor
    wall_s: list[float]
    grad_evals: list[int]  # per-sample forward passes run with autograd on (EOT draws count one each)
    queries: list[int]  # per-sample forward passes without autograd

    @property
    def complete(self) -> bool:
        """True when every clean-correct point was attacked at every eps (own robust accuracy is exact)."""
        return bool(self.attacked.all().item()) if self.attacked.numel() else True

    def robust_accuracy(self, clean_correct: Tensor) -> list[float | None]:
        """Own robust accuracy per eps on the full set; None where some clean-correct point was not attacked."""
        out: list[float | None] = []
        for e in range(self.success.shape[0]):
            if bool((clean_correct & ~self.attacked[e]).any()):
                out.append(None)
            else:
                out.append(_share(~self.success[e]))
        return out

    def to_dict(self, clean_correct: Tensor) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "settings": self.settings,
            "robust_accuracy": self.robust_accuracy(clean_correct),
            "robust_accuracy_ci": _cis(self.robust_accuracy(clean_correct), int(clean_correct.numel())),
            "n_attacked": [int(a.sum()) for a in (self.attacked & clean_correct)],
            "n_broken": [int(s.sum()) for s in (self.success & self.attacked & clean_correct)],
            "wall_s": self.wall_s,
            "grad_evals": self.grad_evals,
            "queries": self.queries,
            "success": encode_bits(self.success),
            "attacked": encode_bits(self.attacked),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttackRecord:
        return cls(
            name=d["name"],
            kind=d["kind"],
            settings=list(d["settings"]),
            success=decode_bits(d["success"]),
            attacked=decode_bits(d["attacked"]),
            wall_s=[float(v) for v in d["wall_s"]],
            grad_evals=[int(v) for v in d["grad_evals"]],
            queries=[int(v) for v in d["queries"]],
        )


@dataclass
class EvalResult:
    """Everything one `evaluate` call measured; see docs/evaluation.md for the JSON schema."""

    eps: list[float]
    norm: str
    m: int
    k: int
    seed: int
    mode: str  # "chained" or "independent"
    suite: str
    randomized: bool
    clean_correct: Tensor  # (N,) bool, m-draw prediction correct
    clean_correct_single: Tensor  # (N,) bool, one draw
    success: Tensor  # (E, N) bool, worst case over the ensemble
    attacks: dict[str, AttackRecord]
    flags: list[Flag] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.clean_correct.numel())

    @property
    def clean_accuracy(self) -> float:
        """m-draw clean accuracy (the protocol's accuracy)."""
        return _share(self.clean_correct)

    @property
    def clean_accuracy_single(self) -> float:
        """Clean accuracy of a single draw (equal to `clean_accuracy` for deterministic models)."""
        return _share(self.clean_correct_single)

    @property
    def robust_accuracy(self) -> list[float]:
        """Worst-case robust accuracy per eps: the fraction of images robust to every attack."""
        return [_share(~s) for s in self.success]

    @property
    def clean_accuracy_ci(self) -> tuple[float, float] | None:
        """95% Wilson interval of `clean_accuracy` (`gradguard.intervals`)."""
        return accuracy_interval(self.clean_accuracy, self.n)

    @property
    def robust_accuracy_ci(self) -> list[tuple[float, float] | None]:
        """95% Wilson intervals of the worst-case robust accuracy per eps: still one yes/no per image (robust to
        all attacks or not), so a binomial proportion like any single attack's."""
        return _cis(list(self.robust_accuracy), self.n)

    def cumulative_accuracy(self) -> dict[str, list[float]]:
        """Worst-case robust accuracy after each attack in ensemble order (what a chained run measures)."""
        out: dict[str, list[float]] = {}
        acc = ~self.clean_correct.unsqueeze(0).expand(len(self.eps), -1).clone()
        for name, rec in self.attacks.items():
            acc = acc | (rec.success & rec.attacked)
            out[name] = [_share(~row) for row in acc]
        return out

    @property
    def suite_label(self) -> str:
        """The suite's name, marked when its reduced CPU setting ran: the quick suite overstates robustness."""
        return f"{self.suite} (quick)" if self.meta.get("quick") else self.suite

    @property
    def triggered_flags(self) -> list[Flag]:
        return [f for f in self.flags if f.triggered]

    def to_dict(self) -> dict[str, Any]:
        cumulative = self.cumulative_accuracy()
        attacks = {}
        for name, rec in self.attacks.items():
            d = rec.to_dict(self.clean_correct)
            d["cumulative_robust_accuracy"] = cumulative[name]
            d["cumulative_robust_accuracy_ci"] = _cis(list(cumulative[name]), self.n)
            attacks[name] = d
        return {
            "schema_version": SCHEMA_VERSION,
            "n": self.n,
            "eps": list(self.eps),
            "norm": self.norm,
            "m": self.m,
            "k": self.k,
            "seed": self.seed,
            "mode": self.mode,
            "suite": self.suite,
            "randomized": self.randomized,
            "clean_accuracy": self.clean_accuracy,
            "clean_accuracy_ci": self.clean_accuracy_ci,
            "clean_accuracy_single": self.clean_accuracy_single,
            "clean_accuracy_single_ci": accuracy_interval(self.clean_accuracy_single, self.n),
            "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_ci": self.robust_accuracy_ci,
            "attacks": attacks,
            "flags": [f.to_dict() for f in self.flags],
            "meta": self.meta,
            "clean_correct": encode_bits(self.clean_correct.unsqueeze(0))[0],
            "clean_correct_single": encode_bits(self.clean_correct_single.unsqueeze(0))[0],
            "success": encode_bits(self.success),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"evaluation result schema_version {version!r} is not supported (expected {SCHEMA_VERSION})"
            )
        return cls(
            eps=[float(e) for e in d["eps"]],
            norm=d["norm"],
            m=int(d["m"]),
            k=int(d["k"]),
            seed=int(d["seed"]),
            mode=d["mode"],
            suite=d["suite"],
            randomized=bool(d["randomized"]),
            clean_correct=decode_bits([d["clean_correct"]])[0] if d["clean_correct"] else torch.zeros(0).bool(),
            clean_correct_single=(
                decode_bits([d["clean_correct_single"]])[0] if d["clean_correct_single"] else torch.zeros(0).bool()
            ),
            success=decode_bits(d["success"]).view(len(d["eps"]), int(d["n"])),
            attacks={name: AttackRecord.from_dict(a) for name, a in d["attacks"].items()},
            flags=[Flag.from_dict(f) for f in d["flags"]],
            meta=dict(d.get("meta") or {}),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON atomically (temporary file in the same folder, then rename): never half-written."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=True) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvalResult:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a JSON evaluation result ({err})") from err
        return cls.from_dict(d)

    def summary(self) -> str:
        """A plain-text table: clean accuracy, robust accuracy per eps and attack (each with its 95% Wilson
        interval), and every masking flag."""
        lines = [
            f"evaluation: n={self.n} norm={self.norm} suite={self.suite_label} mode={self.mode} "
            f"m={self.m} k={self.k} seed={self.seed} randomized={'yes' if self.randomized else 'no'}",
        ]
        n = self.n
        clean = f"clean accuracy: {_pct_ci(self.clean_accuracy, n)}"
        if self.randomized:
            clean += f" ({self.m}-draw), {_pct_ci(self.clean_accuracy_single, n)} (single draw)"
        lines.append(clean)
        cumulative = self.cumulative_accuracy()
        names = list(self.attacks)
        width = max([24] + [len(name) + 2 for name in names])
        header = "eps".ljust(10) + "".join(name.rjust(width) for name in names) + "worst-case".rjust(width)
        lines.append(header)
        own = {n: rec.robust_accuracy(self.clean_correct) for n, rec in self.attacks.items()}
        for e, eps in enumerate(self.eps):
            row = f"{eps:<10g}"
            for name in names:
                value = own[name][e]
                if value is None:  # chained: show the accuracy after this attack in the chain
                    row += f"{_pct_ci(cumulative[name][e], n)}*".rjust(width)
                else:
                    row += _pct_ci(value, n).rjust(width)
            row += _pct_ci(self.robust_accuracy[e], n).rjust(width)
            lines.append(row)
        if any(v is None for vals in own.values() for v in vals):
            lines.append("* chained: robust accuracy after this attack and all before it (each attacks only the "
                         "points still robust)")
        lines.append(f"[lo, hi]: 95% Wilson interval on n={n} images")
        lines.append("masking checks:")
        for flag in self.flags:
            lines.append(f"  [{'WARN' if flag.triggered else ' ok '}] {flag.name}: {flag.message}")
        if "wall_s" in self.meta:
            lines.append(f"wall time {self.meta['wall_s']:.1f} s on {self.meta.get('device', '?')}")
        return "\n".join(lines)
