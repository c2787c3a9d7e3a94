"""Objectives, Pareto ranks, the front, its knee and its hypervolume: one convention for all.

Every objective is turned into a *loss* to minimise: a maximised objective (accuracy) is
negated, a minimised one (MACs, params, latency, memory) is taken as it is. On those losses:

* `nondominated_ranks`: 0 for the Pareto front, 1 for the front once rank 0 is removed, ...
  (Optuna's fast non-dominated sort, the one NSGA-II uses);
* `knee_index`: the front point closest (Euclidean) to the ideal point once each objective is
  min-max scaled to [0, 1] over the front, i.e. "best accuracy at the lowest cost at once";
* `hypervolume_of`: on *normalised* losses (`normalise`: 1 − accuracy, each cost divided by a
  fixed scale, run.yaml's `hypervolume_scale`) against the reference point (1, …, 1), with
  Optuna's exact WFG implementation, so runs of one space compare.

The array functions take an (n, m) array of losses; the record functions take anything with
`value(objective)`, `number`, `status` and `feasible` (a `results.TrialRecord`, or an
architecture's aggregate over seeds) and call them.

Points trained at several rungs of the fidelity ladder (`nas.run.ladder`: the proxy, then longer
training of the promoted ones) rank the highest rung first, as multi-objective successive halving
does: the front, its hypervolume and its noise are those of the points at the highest rung, and a
point that was not promoted ranks below every promoted one (`ranks`). Without rungs (every point
rung 0) nothing changes.

    >>> from nas import pareto
    >>> front = pareto.front(records, ['accuracy', 'macs'])
    >>> best = pareto.knee(front, ['accuracy', 'macs'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol, TypeVar

import numpy as np

# Optuna's non-dominated sort and hypervolume are not public API: imported here, and only here.
from optuna._hypervolume import compute_hypervolume
from optuna.study._multi_objective import _fast_non_domination_rank

from nas.run.ladder import rung_of, top_rung

__all__ = [
    "OBJECTIVES",
    "Objective",
    "COSTS",
    "Point",
    "directions",
    "as_losses",
    "nondominated_ranks",
    "knee_index",
    "normalise",
    "hypervolume_of",
    "candidates",
    "losses_of",
    "ranks",
    "front",
    "knee",
    "normalised_losses",
    "hypervolume",
    "hypervolume_history",
    "NOISE_Z",
    "accuracy_errors",
    "noise_band",
    "unseparable",
    "race_targets",
]


class Objective(NamedTuple):
    """One objective: the record field it reads, its Optuna direction, its axis label, and the
    command-line option that caps it (None: it cannot be capped) and whether the search takes
    that cap (the search measures peak memory only on request, so it caps MACs, params and latency;
    `nas.export` selects under all four)."""

    field: str
    direction: str
    label: str
    limit: str | None = None
    search_limit: bool = False


# The one table of objectives: every command, record and plot reads it.
OBJECTIVES: dict[str, Objective] = {
    "accuracy": Objective("accuracy", "maximize", "validation accuracy"),
    "macs": Objective("macs", "minimize", "MACs (one image)", "max_macs", True),
    "params": Objective("params", "minimize", "parameters", "max_params", True),
    "latency": Objective("latency_ms", "minimize", "latency (ms)", "max_latency_ms", True),
    "memory": Objective("memory_mb", "minimize", "peak memory (MB)", "max_memory_mb"),
}
COSTS = tuple(o for o in OBJECTIVES if OBJECTIVES[o][1] == "minimize")
NOISE_Z = 2.0  # accuracy differences within NOISE_Z standard errors are "within the noise"


class Point(Protocol):
    """What the record functions need of a trial (or of an architecture's aggregate)."""

    number: int
    status: str

    @property
    def feasible(self) -> bool: ...

    def value(self, objective: str) -> float | None: ...


P = TypeVar("P", bound=Point)


def directions(objectives: Sequence[str]) -> list[str]:
    """Optuna's direction ('maximize' or 'minimize') of each objective."""
    return [OBJECTIVES[o][1] for o in objectives]


# ---------------------------------------------------------------------------------- on arrays


def as_losses(values: np.ndarray | Sequence[Sequence[float]], objectives: Sequence[str]) -> np.ndarray:
    """Objective values (n, m) as losses: maximised objectives negated."""
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions(objectives)])
    return np.asarray(values, dtype=float).reshape(-1, len(objectives)) * sign


def nondominated_ranks(losses: np.ndarray) -> np.ndarray:
    """Non-domination rank of each row of `losses` (0 = the Pareto front). Equal rows share a rank."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(_fast_non_domination_rank(losses), dtype=int)


def knee_index(losses: np.ndarray, tie_break: Sequence[int] | None = None) -> int | None:
    """Index of the knee of a front given as losses (see the module docstring); None when empty.

    Ties in distance go to the lower first loss (the higher accuracy), then to the lower
    `tie_break` value (e.g. the trial number; default: the row index).
    """
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return None
    lo, span = losses.min(axis=0), np.ptp(losses, axis=0)
    scaled = np.divide(losses - lo, span, out=np.zeros_like(losses), where=span > 0)
    dist = np.sqrt((scaled**2).sum(axis=1))
    order = tie_break if tie_break is not None else range(len(losses))
    keys = [(round(float(d), 12), float(first), t) for d, first, t in zip(dist, losses[:, 0], order)]
    return min(range(len(losses)), key=keys.__getitem__)


def normalise(losses: np.ndarray, objectives: Sequence[str], scales: Mapping[str, float]) -> np.ndarray:
    """Losses in [0, ~1] for the hypervolume: 1 − accuracy (1 + its loss), each cost / its scale."""
    losses = np.asarray(losses, dtype=float).reshape(-1, len(objectives))
    out = np.empty_like(losses)
    for j, o in enumerate(objectives):
        out[:, j] = 1.0 + losses[:, j] if OBJECTIVES[o][1] == "maximize" else losses[:, j] / float(scales[o])
    return out


def hypervolume_of(normalised: np.ndarray) -> float:
    """Hypervolume dominated by `normalised` losses against the reference point (1, …, 1).
    Points beyond the reference point on any objective add nothing."""
    normalised = np.asarray(normalised, dtype=float)
    if normalised.size == 0:
        return 0.0
    inside = normalised[(normalised < 1.0).all(axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(compute_hypervolume(inside, np.ones(normalised.shape[1])))


# ---------------------------------------------------------------------------------- on records


def candidates(points: Iterable[P], objectives: Sequence[str]) -> list[P]:
    """The points that can be on a front: complete, feasible, with every objective measured."""
    return [
        p for p in points if p.status == "complete" and p.feasible and all(p.value(o) is not None for o in objectives)
    ]


def losses_of(points: Sequence[Point], objectives: Sequence[str]) -> np.ndarray:
    """The (n, m) losses of `points` (every objective must be measured)."""
    return as_losses([[float(p.value(o)) for o in objectives] for p in points], objectives)


def ranks(points: Iterable[Point], objectives: Sequence[str]) -> dict[int, int]:
    """Non-domination rank of every candidate point, keyed by its number: the highest rung's points
    first, then each lower rung's ranks after the last rank above it."""
    cands = candidates(points, objectives)
    out: dict[int, int] = {}
    for rung in sorted({rung_of(p) for p in cands}, reverse=True):
        group = [p for p in cands if rung_of(p) == rung]
        ks = nondominated_ranks(losses_of(group, objectives))
        offset = max(out.values(), default=-1) + 1
        out.update({p.number: offset + int(k) for p, k in zip(group, ks)})
    return out


def front(points: Iterable[P], objectives: Sequence[str]) -> list[P]:
    """The Pareto front of the candidate points at the highest rung, sorted by the first cost
    objective (then number)."""
    cands = top_rung(candidates(points, objectives))
    on_front = [p for p, k in zip(cands, nondominated_ranks(losses_of(cands, objectives))) if k == 0]
    key = objectives[1] if len(objectives) > 1 else objectives[0]
    return sorted(on_front, key=lambda p: (float(p.value(key)), p.number))


def knee(front_points: Sequence[P], objectives: Sequence[str]) -> P | None:
    """The knee of a front (see `knee_index`); ties go to the lower point number."""
    if not front_points:
        return None
    i = knee_index(losses_of(front_points, objectives), [p.number for p in front_points])
    return front_points[i]


def normalised_losses(points: Sequence[Point], objectives: Sequence[str], scales: Mapping[str, float]) -> np.ndarray:
    """`normalise(losses_of(points))`: 1 − accuracy, and each cost divided by its scale."""
    return normalise(losses_of(points, objectives), objectives, scales)


def hypervolume(points: Iterable[Point], objectives: Sequence[str], scales: Mapping[str, float]) -> float:
    """Hypervolume of the normalised losses of the candidate points at the highest rung (see the
    module docstring)."""
    cands = top_rung(candidates(points, objectives))
    return hypervolume_of(normalised_losses(cands, objectives, scales)) if cands else 0.0


def hypervolume_history(points: Sequence[Point], objectives: Sequence[str], scales: Mapping[str, float]) -> list[float]:
    """Hypervolume after each point, in the order given (trials: the order they finished)."""
    return [hypervolume(points[: i + 1], objectives, scales) for i in range(len(points))]


# ---------------------------------------------------------------------------------- noise
# Accuracy is an estimate with seed noise; costs are exact. A point's accuracy error is its own
# standard error over seeds (`accuracy_se`) where it has one, else sigma / sqrt(seeds) with sigma
# the run's pooled seed standard deviation, else unknown (nan: nothing counts as within noise).


def accuracy_errors(points: Sequence[Point], sigma: float | None) -> np.ndarray:
    """The standard error of each point's accuracy (see above)."""
    out = []
    for p in points:
        se = getattr(p, "accuracy_se", None)
        if se is None and sigma is not None:
            se = sigma / max(1, int(getattr(p, "seeds", 1))) ** 0.5
        out.append(np.nan if se is None else float(se))
    return np.asarray(out, dtype=float)


def _noise_setup(points: Iterable[P], objectives: Sequence[str], sigma: float | None, z: float):
    cands = top_rung(candidates(points, objectives))  # noise is compared within a rung: the front's
    losses = losses_of(cands, objectives)
    acc = -losses[:, list(objectives).index("accuracy")] if len(cands) else np.zeros(0)
    costs = np.delete(losses, list(objectives).index("accuracy"), axis=1) if len(cands) else losses
    se = accuracy_errors(cands, sigma)
    margin = z * np.sqrt(se[:, None] ** 2 + se[None, :] ** 2)  # margin[i, j]: noise of acc_i - acc_j
    return cands, nondominated_ranks(losses), acc, costs, margin


def noise_band(points: Iterable[P], objectives: Sequence[str], sigma: float | None, z: float = NOISE_Z) -> list[P]:
    """Dominated points that could be on the front within the noise: every front point that
    dominates one is ahead of it in accuracy by less than z standard errors of the difference.
    Closest to the front first."""
    cands, ranks_, acc, costs, margin = _noise_setup(points, objectives, sigma, z)
    front_idx = np.flatnonzero(ranks_ == 0)
    band = []  # (how far behind, in noise margins, the point is; the point)
    for d in np.flatnonzero(ranks_ > 0):
        dominating = [f for f in front_idx if (costs[f] <= costs[d]).all() and acc[f] >= acc[d]]
        behind = max(((acc[f] - acc[d]) / margin[f, d] for f in dominating), default=0.0)
        if behind < 1.0:  # nan (noise unknown) compares False: not in the band
            band.append((behind, cands[d].number, cands[d]))
    return [p for *_, p in sorted(band, key=lambda t: t[:2])]


def unseparable(
    points: Iterable[Point], objectives: Sequence[str], sigma: float | None, z: float = NOISE_Z
) -> dict[int, list[int]]:
    """Front points whose place is not separable from a dominated point within the noise:
    front point number -> numbers of the dominated points that cost no more on every cost and
    are behind it in accuracy by less than z standard errors (they may truly dominate it)."""
    cands, ranks_, acc, costs, margin = _noise_setup(points, objectives, sigma, z)
    out: dict[int, list[int]] = {}
    for f in np.flatnonzero(ranks_ == 0):
        near = [
            cands[d].number
            for d in np.flatnonzero(ranks_ > 0)
            if (costs[d] <= costs[f]).all() and acc[f] - acc[d] < margin[f, d]
        ]
        if near:
            out[cands[f].number] = near
    return out


def race_targets(
    points: Sequence[P],
    objectives: Sequence[str],
    sigma: float | None,
    *,
    repeats: int = 1,
    race: int = 1,
    band: bool = True,
) -> list[tuple[P, int]]:
    """The seeds each point of one rung should have, most urgent first: the front's points `race` seeds
    (fewest seeds first), then, when `band`, the points within the noise band of the front
    (`noise_band`, closest first), then every other candidate `repeats` seeds. A point is
    listed once, with the largest count that applies; counts of 1 are left out."""
    cands = candidates(points, objectives)
    out: dict[int, tuple[P, int]] = {}
    if race > 1:
        for p in sorted(front(cands, objectives), key=lambda p: (getattr(p, "seeds", 1), p.number)):
            out[p.number] = (p, max(race, repeats))
        if band:
            for p in noise_band(cands, objectives, sigma):
                out.setdefault(p.number, (p, max(race, repeats)))
    if repeats > 1:
        for p in cands:
            out.setdefault(p.number, (p, repeats))
    return list(out.values())
