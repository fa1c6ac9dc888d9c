"""PNG plots for reports. Each function takes plain series, so it serves one run and an overlay of many alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on machines without a display
import matplotlib.pyplot as plt  # noqa: E402

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]  # label -> (xs, ys)

__all__ = ["line_plot", "Series"]


def line_plot(
    path: Path,
    series: Series,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    ylim: tuple[float, float] | None = None,
) -> Path | None:
    """One line per series; returns None (and writes nothing) when there is nothing to draw."""
    series = {k: v for k, v in series.items() if len(v[0]) > 0}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o" if len(xs) <= 30 else None, markersize=3, label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    if len(series) > 1 or next(iter(series)) != "":
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
