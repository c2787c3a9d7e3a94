"""A candidate's τ, share and recall against deployment on each half of the panel, with intervals.

The panel is split in two (`nas.calibrate.panel.split_panel`): the pick is made on one half and
confirmed on the other. `Reference` holds deployment's side of both halves (its values, its
test-retest τ and the bootstrap's resamples, `nas.calibrate.bootstrap`); `half_stats` measures one
candidate's signal on one half against it: τ of one proxy seed against one deployment seed
(averaged over the seed pairs), its share of deployment's test-retest τ on the same networks, the
recall of deployment's top quarter, each with its interval, and the τ of every resample (kept for
the paired comparisons of the pick). A resample where deployment's test-retest τ is not positive
says nothing about a share and is left out of the share's interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.calibrate.bootstrap import (
    RESAMPLES,
    Resamples,
    deploy_signs,
    draw,
    interval,
    pair_recall,
    recall_samples,
    retest_samples,
    tau_samples,
)
from nas.calibrate.panel import split_panel
from nas.fidelity.stats import pair_tau, retest_tau

__all__ = ["Half", "Reference", "reference", "matrix", "half_stats", "confirmation"]


def matrix(values: Sequence[Mapping[int, float]], seeds: Sequence[int]) -> np.ndarray:
    """Per network (rows) and seed (columns, in `seeds`' order) the value; NaN where missing."""
    return np.array([[v.get(s, np.nan) for s in seeds] for v in values], float).reshape(len(values), len(seeds))


@dataclass
class Half:
    """Deployment on one half of the panel: its networks (indices), the resamples drawn from them,
    its test-retest τ (seed 0 vs seed 1) and that τ in every resample."""

    rows: list[int]
    resamples: Resamples
    retest: float | None
    retest_samples: np.ndarray
    signs: list[np.ndarray]  # deployment's side of every candidate's τ (bootstrap.deploy_signs)

    def summary(self) -> dict[str, Any]:
        return {"networks": len(self.rows), "retest": self.retest, "retest_ci": interval(self.retest_samples)}


@dataclass
class Reference:
    """Deployment's side of a calibration: its accuracies and the halves of the panel."""

    deploy: list[dict[int, float]]  # per panel network, seed -> accuracy
    seeds: list[int]
    pick: Half  # the networks the pick is made on (the whole panel when it is too small to split)
    held_out: Half | None  # the networks it is confirmed on

    @property
    def values(self) -> np.ndarray:
        return matrix(self.deploy, self.seeds)


def _half(deploy: Sequence[Mapping[int, float]], seeds: Sequence[int], rows: list[int], seed: Sequence[int]) -> Half:
    res, values = draw(rows, len(seeds), RESAMPLES, seed), matrix(deploy, seeds)
    retest = retest_tau([deploy[i] for i in rows], seeds)
    return Half(rows, res, retest, retest_samples(values, res), deploy_signs(values, res))


def reference(deploy: Sequence[Mapping[int, float]], seeds: Sequence[int], seed: int) -> Reference:
    """Deployment's side, the panel split and the resamples drawn from the calibration's `seed`."""
    pick_rows, held_rows = split_panel(len(deploy), seed)
    return Reference(
        list(deploy),
        list(seeds),
        _half(deploy, seeds, pick_rows, [seed, 0]),
        None if held_rows is None else _half(deploy, seeds, held_rows, [seed, 1]),
    )


def half_stats(
    proxy: Sequence[Mapping[int, float]], ref: Reference, half: Half, bar: float
) -> tuple[dict[str, Any], np.ndarray]:
    """One signal of one candidate on `half`: {networks, tau, tau_ci, share, share_ci, clears (the
    share's lower bound reaches `bar`), recall, recall_ci}, and τ in each resample."""
    p, d = matrix(proxy, ref.seeds), ref.values
    taus = tau_samples(p, d, half.resamples, half.signs)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(half.retest_samples > 0, taus / half.retest_samples, np.nan)
    tau = pair_tau([proxy[i] for i in half.rows], [ref.deploy[i] for i in half.rows], ref.seeds)
    share_ci = interval(shares)
    return {
        "networks": len(half.rows),
        "tau": tau,
        "tau_ci": interval(taus),
        "share": tau / half.retest if tau is not None and half.retest and half.retest > 0 else None,
        "share_ci": share_ci,
        "clears": bool(share_ci is not None and share_ci[0] >= bar),
        "recall": pair_recall(p[half.rows], d[half.rows]),
        "recall_ci": interval(recall_samples(p, d, half.resamples)),
    }, taus


def confirmation(held: Mapping[str, Any] | None, bar: float) -> str:
    """What the held-out half says of a pick: 'confirmed' (its share's interval clears `bar`),
    'failed' (the whole interval is below it), 'inconclusive' (the interval straddles it) or
    'none' (no held-out half, or no interval)."""
    ci = held and held.get("share_ci")
    if not ci:
        return "none"
    return "confirmed" if ci[0] >= bar else "failed" if ci[1] < bar else "inconclusive"
