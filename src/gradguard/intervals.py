"""95% confidence intervals for accuracies, and the one rule by which two accuracies are called different.

An accuracy on n test images is a binomial proportion, and so is the worst-case robust accuracy over an attack
ensemble: it is the fraction of images that survive *every* attack, one yes/no per image. The Wilson score interval
fits both; unlike the normal approximation it stays inside [0, 1] and keeps its coverage near 0% and 100%, where
robust accuracies often sit. Pure Python (no torch), so reports can use it on archived JSON.
"""

from __future__ import annotations

import math

__all__ = ["Z95", "wilson", "accuracy_interval", "differs", "format_interval"]

#: The two-sided 95% normal quantile.
Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (lower, upper) for `successes` out of `n`; (0, 1) when n is 0 (nothing known)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy: float | None, n: int) -> tuple[float, float] | None:
    """The Wilson interval of an accuracy stored as a fraction of `n` images (None stays None).

    Recovers the count as round(accuracy * n), exact for any accuracy computed on those n images, so that archived
    results without stored intervals get the same interval as new ones.
    """
    if accuracy is None or n <= 0 or math.isnan(accuracy):
        return None
    return wilson(round(accuracy * n), n)


def differs(a: float, b: float, n_a: int, n_b: int | None = None) -> bool:
    """Whether accuracies `a` (on `n_a` images) and `b` (on `n_b`, default the same) differ at the 95% level.

    The rule: their Wilson intervals do not overlap. It is conservative (two non-overlapping 95% intervals mean
    p < 0.05 and then some) and needs nothing but the two accuracies and counts, so any two rows of a table can be
    compared. For two attacks on the *same* images a paired test would be sharper; this rule never calls more.
    """
    ia, ib = accuracy_interval(a, n_a), accuracy_interval(b, n_a if n_b is None else n_b)
    if ia is None or ib is None:
        return False
    return ia[1] < ib[0] or ib[1] < ia[0]


def format_interval(interval: tuple[float, float] | None, digits: int = 1) -> str:
    """"[lo, hi]" in percent, or "" when there is no interval."""
    if interval is None:
        return ""
    return f"[{100 * interval[0]:.{digits}f}, {100 * interval[1]:.{digits}f}]"
