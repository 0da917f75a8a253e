"""The analytic model against synthesis: does it rank layers the same, and how far apart?

Analytic area is in µm² and synthesis counts gates, transistors or LUTs, so only ranks and
proportions compare. Per layer: each side's rank, each side's share of the total, and the
factor synthesis / analytic normalised by its geometric mean over the layers (1.0 when the
two are proportional). ``spread`` (largest factor over smallest) is how far apart the two
are; Spearman's rank correlation summarises the ranking (1.0: same order).

Example usage::

    compare_rankings({"conv1": 909.0, "fc": 11007.0}, {"conv1": 693, "fc": 7011})
"""

import math
from collections.abc import Mapping
from typing import Any

from inq_hw.cost.errors import CostError

__all__ = ["compare_rankings", "spearman"]


def _ranks(values: Mapping[str, float]) -> dict[str, float]:
    """Rank 1 = largest; ties share their mean rank."""
    ordered = sorted(values, key=lambda k: -values[k])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and values[ordered[j + 1]] == values[ordered[i]]:
            j += 1
        for k in ordered[i : j + 1]:
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Spearman's rank correlation of two measures of the same keys."""
    ra, rb = _ranks(a), _ranks(b)
    keys = list(a)
    n = len(keys)
    mean = (n + 1) / 2
    cov = sum((ra[k] - mean) * (rb[k] - mean) for k in keys)
    var = math.sqrt(sum((ra[k] - mean) ** 2 for k in keys) * sum((rb[k] - mean) ** 2 for k in keys))
    return cov / var if var else 1.0


def compare_rankings(
    analytic: Mapping[str, float], synthesis: Mapping[str, float]
) -> dict[str, Any]:
    """Ranks, shares and normalised factors per layer (module docstring).

    Raises
    ------
    CostError
        The two sides name different layers, or a value is not positive.
    """
    if set(analytic) != set(synthesis) or not analytic:
        raise CostError(
            f"Both sides must cover the same layers, not {sorted(analytic)} and {sorted(synthesis)}"
        )
    bad = [k for k in analytic if not (analytic[k] > 0 and synthesis[k] > 0)]
    if bad:
        raise CostError(f"Costs must be positive to compare, not those of {bad[0]!r}")
    factors = {k: synthesis[k] / analytic[k] for k in analytic}
    geo = math.exp(sum(math.log(f) for f in factors.values()) / len(factors))
    ra, rs = _ranks(analytic), _ranks(synthesis)
    total_a, total_s = sum(analytic.values()), sum(synthesis.values())
    layers = {
        k: {
            "analytic": analytic[k],
            "synthesis": synthesis[k],
            "analytic_rank": ra[k],
            "synthesis_rank": rs[k],
            "analytic_share": analytic[k] / total_a,
            "synthesis_share": synthesis[k] / total_s,
            "factor": factors[k] / geo,
        }
        for k in analytic
    }
    return {
        "layers": layers,
        "same_ranking": all(ra[k] == rs[k] for k in analytic),
        "spearman": spearman(analytic, synthesis),
        "spread": max(factors.values()) / min(factors.values()),
    }
