"""Confidence intervals for a calibration's numbers: a bootstrap over panel networks and seed pairs.

A calibration's τ against deployment rests on a dozen or two networks trained with two seeds each;
another panel, or other seeds, gives another τ. Each resample (`draw`) takes the panel's networks
with replacement and, for each network drawn, draws its seeds with replacement, the proxy's and
deployment's apart: which proxy seed meets which deployment seed. τ is then averaged over the seed
pairings, as the calibration's own τ is (one proxy seed against one deployment seed, averaged over
the pairs); deployment's test-retest τ compares, per network drawn, one of its seeds with another.
Every statistic is computed on the same resamples, so differences between candidates are paired.
The resamples are drawn from a fixed seed: the same records give the same intervals.

Drawing one seed pair per network instead (and not averaging) was tried first: on simulated
12-network panels its intervals were about 1.5x as wide as τ's spread over fresh panels and seeds,
against about 1.3x for this two-stage draw (and 1.2x for networks alone, which leaves the seeds out).

A network drawn twice is not compared with itself: the pairs of a resample are those of two
different networks (otherwise every duplicate adds a pair that is either tied or ranked by seed
noise alone, and τ's intervals sit below τ). Kendall τ here is tau-b computed from the signs of every pair's differences (`kendall_tau_b`, equal
to `scipy.stats.kendalltau`'s default, which the tests check), vectorised over the resamples: 2,000
resamples of a 24-network panel and 72 candidate x signal options take about a second. A network
without a value (NaN) leaves its pairs out, as dropping it would. Intervals are percentile intervals
(`interval`) at `LEVEL` (90%: a lower bound is a one-sided 95% bound).

The recall of deployment's best networks (`top_recall`): of deployment's top quarter of the
networks (at least one), the share that the candidate ranks in its own top quarter; chance is that
quarter's share of the panel.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LEVEL",
    "RESAMPLES",
    "Resamples",
    "draw",
    "kendall_tau_b",
    "deploy_signs",
    "tau_samples",
    "retest_samples",
    "top_count",
    "top_recall",
    "recall_samples",
    "pair_recall",
    "interval",
    "lower",
]

LEVEL = 0.9  # two-sided: the 5th and the 95th percentile
RESAMPLES = 2000


@dataclass(frozen=True)
class Resamples:
    """`rows[b]`: the networks (indices into the panel) of resample b, drawn with replacement;
    `proxy_seed[b]`, `deploy_seed[b]`: per drawn network, its seeds (indices into the seeds; the last
    axis, one per seed) drawn with replacement, the proxy's and deployment's; `other_seed[b]`: per
    drawn network, the deployment seed compared with its first drawn one for the test-retest τ
    (never the same)."""

    rows: np.ndarray
    proxy_seed: np.ndarray
    deploy_seed: np.ndarray
    other_seed: np.ndarray
    same: np.ndarray  # per resample and pair of drawn networks (i < j): the same network drawn twice

    @property
    def count(self) -> int:
        return self.rows.shape[0]


def draw(networks: Sequence[int], seeds: int, count: int = RESAMPLES, seed: int | Sequence[int] = 0) -> Resamples:
    """`count` resamples of the panel's `networks` (their indices) with `seeds` seeds each, from the
    random seed `seed`."""
    rng = np.random.default_rng(seed)
    networks = np.asarray(networks)
    shape = (count, len(networks))
    deploy = rng.integers(0, seeds, (*shape, seeds))
    rows = networks[rng.integers(0, len(networks), shape)]
    i, j = np.triu_indices(len(networks), k=1)
    return Resamples(
        rows=rows,
        same=rows[:, i] == rows[:, j],
        proxy_seed=rng.integers(0, seeds, (*shape, seeds)),
        deploy_seed=deploy,
        other_seed=(deploy[..., 0] + rng.integers(1, seeds, shape)) % seeds if seeds > 1 else deploy[..., 0],
    )


def _signs(values: np.ndarray) -> np.ndarray:
    """sign(x_i - x_j) for every pair i < j along the last axis (float32); NaN where either is NaN."""
    i, j = np.triu_indices(values.shape[-1], k=1)
    return np.sign(values[..., i] - values[..., j]).astype(np.float32)


def _tau_from_signs(sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """tau-b: the sum of concordances over the root of the products of the untied pairs' counts;
    a pair with a missing value on either side (NaN) counts on neither."""
    missing = np.isnan(sx) | np.isnan(sy)
    if missing.any():
        sx, sy = np.where(missing, 0, sx), np.where(missing, 0, sy)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.einsum("...k,...k->...", sx, sy, dtype=np.float64) / np.sqrt(
            np.einsum("...k,...k->...", sx, sx, dtype=np.float64)
            * np.einsum("...k,...k->...", sy, sy, dtype=np.float64)
        )
    return np.where(np.isfinite(tau), tau, np.nan)


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of `x` and `y` along their last axis (any leading axes); NaN where either
    side is constant."""
    return _tau_from_signs(_signs(np.asarray(x, float)), _signs(np.asarray(y, float)))


def _pair_signs(values: np.ndarray, res: Resamples) -> np.ndarray:
    """`_signs` of resampled values, a network drawn twice not compared with itself (0: both sides
    of every τ pass through here, so the pair counts on neither)."""
    signs = _signs(values)
    signs[res.same] = 0
    return signs


def _drawn(values: np.ndarray, res: Resamples, seeds: np.ndarray) -> list[np.ndarray]:
    """The resampled values, per seed role: per resample and drawn network, the value of the seed
    drawn for that role."""
    return [values[res.rows, seeds[..., k]] for k in range(seeds.shape[-1])]


def deploy_signs(deploy: np.ndarray, res: Resamples) -> list[np.ndarray]:
    """Deployment's side of `tau_samples`, computed once for every candidate measured against it."""
    return [_pair_signs(v, res) for v in _drawn(deploy, res, res.deploy_seed)]


def tau_samples(
    proxy: np.ndarray, deploy: np.ndarray, res: Resamples, signs: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Per resample, τ of the proxy's values (networks x seeds) against deployment's, averaged over
    the seed pairings (`signs`: `deploy_signs(deploy, res)`, when already computed)."""
    sp = [_pair_signs(v, res) for v in _drawn(proxy, res, res.proxy_seed)]
    sd = signs if signs is not None else deploy_signs(deploy, res)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without a defined τ: NaN
        return np.nanmean([_tau_from_signs(a, b) for a in sp for b in sd], axis=0)


def retest_samples(deploy: np.ndarray, res: Resamples) -> np.ndarray:
    """Per resample, deployment's test-retest τ: one of its seeds against another, per network."""
    first, other = deploy[res.rows, res.deploy_seed[..., 0]], deploy[res.rows, res.other_seed]
    return _tau_from_signs(_pair_signs(first, res), _pair_signs(other, res))


def top_count(networks: int) -> int:
    """How many networks the top quarter of `networks` holds (at least one)."""
    return max(1, math.ceil(networks / 4))


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """A mask of the `k` highest values along the last axis (NaN lowest; ties by position)."""
    order = np.argsort(np.where(np.isnan(values), -np.inf, values), axis=-1, kind="stable")
    mask = np.zeros(values.shape, bool)
    np.put_along_axis(mask, order[..., -k:], True, axis=-1)
    return mask


def top_recall(proxy: np.ndarray, deploy: np.ndarray) -> np.ndarray:
    """Along the last axis: the share of deployment's top quarter that the proxy ranks in its own."""
    k = top_count(np.shape(deploy)[-1])
    return (_top(np.asarray(proxy, float), k) & _top(np.asarray(deploy, float), k)).sum(-1) / k


def recall_samples(proxy: np.ndarray, deploy: np.ndarray, res: Resamples) -> np.ndarray:
    """Per resample, `top_recall` of the proxy's values against deployment's, averaged over the seed
    pairings."""
    pairs = [top_recall(a, b) for a in _drawn(proxy, res, res.proxy_seed) for b in _drawn(deploy, res, res.deploy_seed)]
    return np.mean(pairs, axis=0)


def pair_recall(proxy: np.ndarray, deploy: np.ndarray) -> float | None:
    """`top_recall` of one proxy seed against one deployment seed, averaged over the seed pairs
    (networks x seeds each; networks with a missing value left out); None below 3 networks."""
    keep = ~(np.isnan(proxy).any(1) | np.isnan(deploy).any(1))
    if keep.sum() < 3:
        return None
    p, d = proxy[keep], deploy[keep]
    return float(np.mean([top_recall(p[:, s], d[:, t]) for s in range(p.shape[1]) for t in range(d.shape[1])]))


def interval(samples: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The percentile interval [lo, hi] of `samples` (NaNs left out); None when none is finite."""
    finite = samples[np.isfinite(samples)]
    if not finite.size:
        return None
    tail = 100 * (1 - level) / 2
    return [float(v) for v in np.percentile(finite, [tail, 100 - tail])]


def lower(samples: np.ndarray, level: float = LEVEL) -> float | None:
    """The interval's lower bound."""
    ci = interval(samples, level)
    return None if ci is None else ci[0]
