"""How well a front of noisy means would reproduce, as numbers a user can check.

A front of mean accuracies is decided by tenths of a point where the seed noise is a point or more
(docs/benchmarks.md): which of its points a retraining keeps is partly chance. From each point's
mean accuracy, its number of seeds, the pooled seed standard deviation σ and its exact costs,
`reproduction` estimates by Monte Carlo

* `p_front`: each point's probability of being on the front of the true (noise-free) accuracies;
* `precision` and `recall`: what the front of the means (the one printed) is expected to score
  against the front of a retraining of the same networks with `retrain_seeds` new seeds each:
  the share of its points on the retraining's front, and the share of the retraining's front it
  has. That is what `python -m nas.fidelity` measures against deployment, less the difference
  between the two trainings (which only lowers it).

The true accuracies are drawn from an empirical-Bayes normal posterior: the prior is a least-squares
fit of accuracy on the log of each cost over the points, with the residual variance left after
the noise (method of moments), and each mean is shrunk towards the fit by its noise. Taking the
means as the truth (a flat prior) forgets that the printed front holds the luckiest of the noisy
means: over simulated pools like the default task's (17 networks, σ 1.3 points, 2 seeds) the flat
prior predicted recall 0.80 where 0.65 was measured, the shrunk posterior 0.64
(`benchmarks/front_reproduction.py`, docs/benchmarks.md). Costs are exact; accuracy differences are what is drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DRAWS", "posterior", "fronts", "reproduction"]

DRAWS = 2000  # Monte Carlo draws: a share's sampling error is at most 0.5 / sqrt(DRAWS) ~ 0.01


def posterior(acc: np.ndarray, se: np.ndarray, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The posterior mean and variance of each point's true accuracy given its mean `acc` with
    standard error `se` (n,), its `costs` (n, c) the prior's covariates (see the module docstring).
    With fewer than c + 3 points the prior is their mean alone."""
    n = len(acc)
    logs = np.log(np.maximum(costs, 1e-12)) if costs.size else np.zeros((n, 0))
    x = np.column_stack([np.ones(n), logs]) if n >= logs.shape[1] + 3 else np.ones((n, 1))
    beta, *_ = np.linalg.lstsq(x, acc, rcond=None)
    prior = x @ beta
    dof = max(1, n - x.shape[1])
    tau2 = max(float(np.sum((acc - prior) ** 2)) / dof - float(np.mean(se**2)), 1e-12)
    w = tau2 / (tau2 + se**2)
    return prior + w * (acc - prior), w * se**2


def fronts(acc: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Which points are on the Pareto front in each row of `acc` (draws, n), accuracy maximised and
    the exact `costs` (n, c) minimised: a point is off it where another costs no more on every cost
    and is more accurate, or as accurate and cheaper on one."""
    n = acc.shape[1]
    no_more = (costs[None, :, :] <= costs[:, None, :]).all(axis=2) & ~np.eye(n, dtype=bool)  # [i, j]: j <= i
    cheaper = no_more & (costs[None, :, :] < costs[:, None, :]).any(axis=2)
    out = np.ones(acc.shape, dtype=bool)
    for i in range(n):  # only the points that cost no more than i can push it off
        js = np.flatnonzero(no_more[i])
        if len(js):
            rivals, own = acc[:, js], acc[:, i : i + 1]
            out[:, i] = ~((rivals > own) | ((rivals == own) & cheaper[i, js])).any(axis=1)
    return out


def reproduction(
    acc: np.ndarray,
    seeds: np.ndarray,
    costs: np.ndarray,
    sigma: float,
    retrain_seeds: int = 2,
    draws: int = DRAWS,
    seed: int = 0,
    measured_seeds: int | None = None,
) -> dict[str, Any]:
    """`p_front` (n,), `precision` and `recall` of the front of the means `acc` (n,) of points with
    `seeds` (n,) seeds each and exact `costs` (n, c), against a retraining with `retrain_seeds` seeds
    each, at pooled seed std `sigma` (see the module docstring). `measured_seeds`: the front printed
    is itself drawn as if each point had that many seeds (what more seeds per network would buy);
    None: the front of `acc`. The same inputs give the same numbers (`seed`)."""
    acc, costs = np.asarray(acc, dtype=float), np.asarray(costs, dtype=float).reshape(len(acc), -1)
    se = sigma / np.sqrt(np.maximum(1, np.asarray(seeds, dtype=float)))
    mean, var = posterior(acc, se, costs)
    rng = np.random.default_rng(seed)
    truth = mean + np.sqrt(var) * rng.standard_normal((draws, len(acc)))
    retrained = fronts(truth + sigma / np.sqrt(retrain_seeds) * rng.standard_normal(truth.shape), costs)
    if measured_seeds is None:
        printed = np.broadcast_to(fronts(acc[None, :], costs), truth.shape)
    else:
        printed = fronts(truth + sigma / np.sqrt(measured_seeds) * rng.standard_normal(truth.shape), costs)
    both = (printed & retrained).sum(axis=1)
    return {
        "retrain_seeds": retrain_seeds,
        "precision": float(np.mean(both / np.maximum(1, printed.sum(axis=1)))),
        "recall": float(np.mean(both / np.maximum(1, retrained.sum(axis=1)))),
        "p_front": fronts(truth, costs).mean(axis=0),
    }
