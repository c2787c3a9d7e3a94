"""The fidelity check's numbers: how well one set of accuracies ranks architectures like another.

`fidelity_stats` computes them from per-architecture accuracies alone (tests, notebooks); Kendall τ
and Spearman ρ (`rank_corr`), the test-retest τ of two seeds (`retest_tau`) and one seed of one
training against one seed of another (`pair_tau`) serve nas.calibrate too. `seed_values` reads
per-architecture, per-seed values off evaluation records; `long_front` is the Pareto front of the
long means and `front_agreement` the precision and recall of a printed front against it;
`noise_agreement` the same within the long training's seed noise, with the accuracy gap between the
two fronts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.run import pareto
from nas.run.ladder import kendall_spearman, rung_of
from nas.run.record import TrialRecord

__all__ = [
    "ArchFidelity",
    "rank_corr",
    "pair_tau",
    "retest_tau",
    "fidelity_stats",
    "long_front",
    "front_agreement",
    "pooled_std",
    "noise_agreement",
    "seed_values",
    "format_stat",
]


@dataclass
class ArchFidelity:
    """One architecture's accuracies: seed -> accuracy, at the proxy's epochs and at the long ones."""

    arch_id: str
    proxy: dict[int, float]
    long: dict[int, float]
    reference: str | None = None
    costs: dict[str, float] = field(default_factory=dict)  # objective -> the run's value
    search: float | None = None  # the accuracy the run prints for it: its mean at the highest rung it reached
    search_rung: int = 0  # that rung (0: the proxy's; 1: promoted)

    @staticmethod
    def _mean_std(accs: Mapping[int, float]) -> tuple[float | None, float | None]:
        vals = list(accs.values())
        if not vals:
            return None, None
        return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)

    @property
    def proxy_mean(self) -> float | None:
        return self._mean_std(self.proxy)[0]

    @property
    def proxy_std(self) -> float | None:
        return self._mean_std(self.proxy)[1]

    @property
    def long_mean(self) -> float | None:
        return self._mean_std(self.long)[0]

    @property
    def long_std(self) -> float | None:
        return self._mean_std(self.long)[1]


def format_stat(x: float | None, fmt: str = ".2f") -> str:
    """A statistic for a table: formatted by `fmt`, or '-' when it is undefined (None)."""
    return "-" if x is None else format(x, fmt)


# Kendall τ (tau-b: ties count) and Spearman ρ; None below 3 points or for constant input (JSON has
# no NaN). The run folder's promotion check computes the same: one function serves both.
rank_corr = kendall_spearman


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def pair_tau(a: Sequence[Mapping[int, float]], b: Sequence[Mapping[int, float]], seeds: Sequence[int]) -> float | None:
    """Kendall τ between one seed of `a` and one seed of `b` (per architecture: seed -> value),
    averaged over every pair of seeds (the like-for-like number for a test-retest τ); None when no
    pair has a τ."""
    taus = []
    for s, t in itertools.product(seeds, seeds):
        rows = [(x[s], y[t]) for x, y in zip(a, b) if s in x and t in y]
        taus.append(rank_corr([r[0] for r in rows], [r[1] for r in rows])[0])
    return _mean(taus)


def retest_tau(values: Sequence[Mapping[int, float]], seeds: Sequence[int]) -> float | None:
    """Kendall τ of the first seed against the second, over the architectures that have both."""
    if len(seeds) < 2:
        return None
    rows = [(v[seeds[0]], v[seeds[1]]) for v in values if seeds[0] in v and seeds[1] in v]
    return rank_corr([r[0] for r in rows], [r[1] for r in rows])[0]


def fidelity_stats(archs: Sequence[ArchFidelity], seeds: Sequence[int]) -> dict[str, Any]:
    """The fidelity numbers of architectures with both proxy and long accuracies.

    Args:
        archs: the architectures.
        seeds: the seeds in order; the first is what a one-seed search sees, the first two make
            the test-retest pairs.

    Returns:
        kendall_tau, spearman_rho (proxy means vs long means), seed0_kendall_tau,
        seed0_spearman_rho (the first seed's proxy accuracy vs long means), test_retest_tau
        (proxy, first seed vs second seed), search_kendall_tau and search_spearman_rho (the
        accuracies the run prints, each at the highest rung it reached, vs long means),
        long_test_retest_tau (the same for long training: how
        well the reference agrees with itself), pair_kendall_tau (one proxy seed vs one long seed,
        averaged over the seed pairs: like for like with long_test_retest_tau), retest_share
        (pair_kendall_tau / long_test_retest_tau), proxy_seed_std and long_seed_std (the mean over
        architectures of the std over seeds), long_range (best minus worst long mean),
        long_range_over_seed_std, architectures (how many were compared); over the promoted ones
        (`search_rung` >= 1): promoted (how many), promoted_kendall_tau (their promoted means vs long
        means), promoted_proxy_kendall_tau (their proxy means vs long means: does the promotion's
        rung rank them more like the long training than the proxy?) and promoted_long_retest_tau. A
        number that is undefined (too few architectures or seeds, constant accuracies) is None.
    """
    both = [a for a in archs if a.proxy and a.long]
    proxy, long = [a.proxy_mean for a in both], [a.long_mean for a in both]
    tau, rho = rank_corr(proxy, long)
    first = [a for a in both if seeds and seeds[0] in a.proxy]
    tau0, rho0 = rank_corr([a.proxy[seeds[0]] for a in first], [a.long_mean for a in first]) if first else (None, None)
    long_retest = retest_tau([a.long for a in both], seeds)
    pair = pair_tau([a.proxy for a in both], [a.long for a in both], seeds)
    long_std = _mean([a.long_std for a in both])
    spread = (max(long) - min(long)) if long else None
    searched = [a for a in both if a.search is not None]
    search_tau, search_rho = rank_corr([a.search for a in searched], [a.long_mean for a in searched])
    up = [a for a in searched if a.search_rung >= 1]
    return {
        "promoted": len(up),
        "promoted_kendall_tau": rank_corr([a.search for a in up], [a.long_mean for a in up])[0],
        "promoted_proxy_kendall_tau": rank_corr([a.proxy_mean for a in up], [a.long_mean for a in up])[0],
        "promoted_long_retest_tau": retest_tau([a.long for a in up], seeds),
        "architectures": len(both),
        "kendall_tau": tau,
        "spearman_rho": rho,
        "search_kendall_tau": search_tau,
        "search_spearman_rho": search_rho,
        "seed0_kendall_tau": tau0,
        "seed0_spearman_rho": rho0,
        "test_retest_tau": retest_tau([a.proxy for a in both], seeds),
        "long_test_retest_tau": long_retest,
        "pair_kendall_tau": pair,
        "retest_share": pair / long_retest if pair is not None and long_retest else None,
        "proxy_seed_std": _mean([a.proxy_std for a in both]),
        "long_seed_std": long_std,
        "long_range": spread,
        "long_range_over_seed_std": spread / long_std if spread is not None and long_std else None,
    }


class _Point:
    """An architecture with the long mean as its accuracy and the run's costs, for nas.run.pareto."""

    status, feasible = "complete", True

    def __init__(self, number: int, a: ArchFidelity):
        self.number, self.a = number, a

    def value(self, objective: str) -> float | None:
        return self.a.long_mean if objective == "accuracy" else self.a.costs.get(objective)


def long_front(archs: Sequence[ArchFidelity], objectives: Sequence[str]) -> list[str]:
    """Arch ids of the Pareto front of the long means (with the run's costs), by increasing cost."""
    points = [_Point(i, a) for i, a in enumerate(archs) if a.long]
    return [p.a.arch_id for p in pareto.front(points, objectives)]


def front_agreement(printed: Sequence[str], reference: Sequence[str]) -> dict[str, Any]:
    """How a printed front agrees with the reference's front over the same pool of architectures:
    precision (the share of the printed front's points on the reference's front), recall (the share
    of the reference's front that the printed one has) and the points of each kind; a share over
    an empty front is None."""
    on_reference, on_printed = set(reference), set(printed)
    kept = [a for a in printed if a in on_reference]
    return {
        "precision": len(kept) / len(printed) if printed else None,
        "recall": len(kept) / len(reference) if reference else None,
        "kept": kept,
        "missed": [a for a in reference if a not in on_printed],
        "extra": [a for a in printed if a not in on_reference],
    }


def pooled_std(values: Iterable[Mapping[int, float]]) -> float | None:
    """The pooled standard deviation over seeds (sample, n - 1) of architectures with 2 or more seeds
    each: the root of their mean variance. None when none has 2 seeds."""
    variances = [float(np.var(list(v.values()), ddof=1)) for v in values if len(v) > 1]
    return float(np.sqrt(np.mean(variances))) if variances else None


def _no_more(a: ArchFidelity, b: ArchFidelity, costs: Sequence[str]) -> bool:
    """Whether `a` costs no more than `b` on every one of `costs` (both known)."""
    return all(a.costs.get(c) is not None and b.costs.get(c) is not None and a.costs[c] <= b.costs[c] for c in costs)


def noise_agreement(
    printed: Sequence[str],
    archs: Sequence[ArchFidelity],
    objectives: Sequence[str],
    sigma: float | None,
    z: float = pareto.NOISE_Z,
) -> dict[str, Any] | None:
    """A printed front against the long front of `archs` within the long training's seed noise,
    by the rule of the search's noise flags (`nas.run.pareto`): two long means closer than z standard
    errors of their difference are not told apart, a network's standard error being sigma /
    sqrt(its long seeds); costs are exact.

    * precision: the share of printed points that no network of the pool beats by more than the
      noise at no higher cost on every cost (`held`);
    * recall: the share of the long front's points that the printed front has, or matches within the
      noise with a point of no higher cost (`covered`);
    * gaps: per long-front point, how far the best printed point of no higher cost is behind it in
      accuracy (0 where it is printed or ahead; None where no printed point costs as little), and
      `max_gap`, the largest (the additive epsilon indicator; None if any gap is None).

    None without a sigma or a printed point among `archs`."""
    pts = {a.arch_id: a for a in archs if a.long}
    shown = [pts[i] for i in printed if i in pts]
    if not sigma or not shown:
        return None
    cost_names = [o for o in objectives if o != "accuracy"]

    def margin(a: ArchFidelity, b: ArchFidelity) -> float:
        return z * sigma * float(np.sqrt(1 / len(a.long) + 1 / len(b.long)))

    mean = {a.arch_id: float(a.long_mean) for a in pts.values()}  # type: ignore[arg-type]
    held = [
        p.arch_id
        for p in shown
        if not any(
            q is not p and _no_more(q, p, cost_names) and mean[q.arch_id] - mean[p.arch_id] > margin(q, p)
            for q in pts.values()
        )
    ]
    gaps: dict[str, float | None] = {}
    covered = []
    for d in long_front(list(pts.values()), objectives):
        a = pts[d]
        cheaper = [p for p in shown if _no_more(p, a, cost_names)]
        gaps[d] = max(0.0, mean[d] - max(mean[p.arch_id] for p in cheaper)) if cheaper else None
        if d in printed or any(mean[d] - mean[p.arch_id] < margin(p, a) for p in cheaper):
            covered.append(d)
    return {
        "z": z,
        "sigma": sigma,
        "precision": len(held) / len(shown),
        "recall": len(covered) / len(gaps) if gaps else None,
        "held": held,
        "covered": covered,
        "gaps": gaps,
        "max_gap": None if not gaps or None in gaps.values() else max(gaps.values()),  # type: ignore[type-var]
    }


def _accuracy(r: TrialRecord) -> float:
    return float(r.accuracy)


def seed_values(
    records: Iterable[TrialRecord],
    arch_ids: Sequence[str],
    seeds: Sequence[int],
    epochs: int,
    value: Callable[[TrialRecord], float | None] = _accuracy,
    rung: int | None = None,
) -> list[dict[int, float]]:
    """Per architecture of `arch_ids` (in their order): seed -> `value` (default: the accuracy) of its
    complete evaluations at `epochs` with one of `seeds` (and at `rung` of the run's fidelity ladder,
    where given: a promoted evaluation is not the proxy's even at the same epochs), in seed order.
    The first record of a seed with a value wins: a rerun never replaces one."""
    out: dict[str, dict[int, float]] = {a: {} for a in arch_ids}
    for r in records:
        if (
            r.arch_id in out
            and r.status == "complete"
            and r.accuracy is not None
            and r.seed in seeds
            and r.epochs == epochs
            and (rung is None or rung_of(r) == rung)
            and int(r.seed) not in out[r.arch_id]
        ):
            v = value(r)
            if v is not None:
                out[r.arch_id][int(r.seed)] = v
    return [dict(sorted(out[a].items())) for a in arch_ids]
