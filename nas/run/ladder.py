"""The fidelity ladder as the run folder sees it: which rung an evaluation was trained at, and how
well one rung ranks architectures like a higher one.

Rung 0 is the search's proxy; a higher rung is a longer, deployment-like training of architectures
promoted from the rung below (`nas.search.promote` defines the rungs and trains them; run.yaml's
`ladder` lists them). Every record of trials.jsonl says its rung (`TrialRecord.rung`; a record
written before rungs existed is rung 0). An architecture's accuracy is taken at the highest rung it
reached, and the front ranks the highest rung first, as multi-objective successive halving does:

    >>> rung_of(record), top_rung(archs)          # 1, the architectures at the highest rung
    >>> rank_agreement(proxy_means, rung1_means, rung1_by_seed)

The promoted architectures are trained at two rungs, so the run measures its own proxy's fidelity
for free: `rank_agreement` gives Kendall's τ and Spearman's ρ between the rungs' means, and the
higher rung's own test-retest τ (its first seed against its second), the ceiling any proxy can reach.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["rung_of", "top_rung", "kendall_spearman", "rank_agreement"]

T = TypeVar("T")


def rung_of(point: Any) -> int:
    """The rung of a record or an architecture (its `rung`; 0 where it has none)."""
    return int(getattr(point, "rung", 0) or 0)


def top_rung(points: Iterable[T]) -> list[T]:
    """The points at the highest rung among them, in their order."""
    points = list(points)
    top = max((rung_of(p) for p in points), default=0)
    return [p for p in points if rung_of(p) == top]


def _defined(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def kendall_spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    """Kendall's τ (tau-b: ties count) and Spearman's ρ of two paired samples; None for either below 3
    pairs or for a constant sample (no ranking to compare)."""
    from scipy import stats

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None, None
    return _defined(stats.kendalltau(x, y).statistic), _defined(stats.spearmanr(x, y).statistic)


def rank_agreement(
    lower: Sequence[float], upper: Sequence[float], upper_seeds: Sequence[Mapping[int, float]]
) -> dict[str, Any]:
    """How a lower rung ranks architectures like a higher one, over the architectures trained at both.

    Args:
        lower: each architecture's mean accuracy at the lower rung (the proxy).
        upper: its mean at the higher rung, in the same order.
        upper_seeds: its accuracies at the higher rung by seed, in the same order.

    Returns:
        architectures, kendall_tau and spearman_rho (lower means vs upper means), seeds (the two
        seeds the test-retest compares: those most architectures have, the lower on a tie) and retest_tau (the higher rung's first of them against its second). An undefined
        statistic is None.
    """
    tau, rho = kendall_spearman(list(lower), list(upper))
    counts: dict[int, int] = {}
    for accs in upper_seeds:
        for s in accs:
            counts[s] = counts.get(s, 0) + 1
    seeds = sorted(sorted(counts, key=lambda s: (-counts[s], s))[:2])
    retest = None
    if len(seeds) == 2:
        pairs = [(a[seeds[0]], a[seeds[1]]) for a in upper_seeds if seeds[0] in a and seeds[1] in a]
        retest = kendall_spearman([p[0] for p in pairs], [p[1] for p in pairs])[0]
    return {
        "architectures": len(lower),
        "kendall_tau": tau,
        "spearman_rho": rho,
        "seeds": seeds,
        "retest_tau": retest,
    }
