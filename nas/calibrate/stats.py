"""How well each candidate proxy measures the panel against deployment.

Per candidate: the seconds per evaluation (wall and CPU) and its cost against deployment (CPU
seconds, which the machine's load does not inflate); its accuracy's seed std, test-retest τ (seed 0
vs seed 1) and seed std over the median gap between neighbouring panel accuracies (below 1, the
proxy tells networks apart that are as close as the panel's neighbours; over the whole panel); and
per rank signal, on the half of the panel the pick is made on (`nas.calibrate.intervals`), Kendall
τ against deployment for one proxy seed against one deployment seed (averaged over the seed pairs:
like for like with deployment's test-retest τ, how well one seed of the training you deploy ranks
like another) and that τ's share of deployment's test-retest τ on the same networks, each with its
bootstrap interval, the recall of deployment's top quarter, τ and ρ of the means; and the same τ,
share and recall on the held-out half. A candidate qualifies with a signal when its share's
interval clears `--share` (0.9) (its lower bound reaches it) and its accuracy's seed std is below
that median gap (the front reports accuracy, whatever the search ranks by). The pick among them is
`nas.calibrate.decide`'s.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.calibrate.intervals import Reference, half_stats
from nas.calibrate.panel import Candidate
from nas.fidelity.stats import pair_tau, rank_corr, retest_tau, seed_values
from nas.proxy import SIGNALS, score
from nas.run.folder import RunFolder, TrialRecord

__all__ = [
    "SignalStats",
    "signal_stats",
    "measured_signal",
    "CandidateResult",
    "measure_candidate",
    "DeploymentResult",
    "measure_deployment",
    "set_costs",
    "pooled_std",
    "median_gap",
]


@dataclass
class SignalStats:
    """How one candidate's rank signal measures the panel against deployment."""

    signal: str
    tau: float | None  # one proxy seed vs one deployment seed, averaged over the seed pairs
    share: float | None  # tau / deployment's test-retest τ
    tau_means: float | None  # the proxy's means vs deployment's means
    rho_means: float | None
    retest: float | None  # the proxy's seed 0 vs seed 1
    seed_std: float | None  # pooled over the panel, in the signal's units
    median_gap: float | None  # between neighbouring panel means (sorted), in the signal's units
    noise_ratio: float | None  # seed_std / median_gap: below 1, neighbouring panel networks differ beyond the noise
    qualified: bool = False  # its share's interval clears the bar and the candidate's accuracy is below the noise bar
    networks: int | None = None  # the networks τ and share are measured on (the pick half)
    tau_ci: list[float] | None = None  # [lo, hi], the bootstrap's (nas.calibrate.bootstrap)
    share_ci: list[float] | None = None
    recall: float | None = None  # of deployment's top quarter in the proxy's top quarter, averaged over the seed pairs
    recall_ci: list[float] | None = None
    held_out: dict[str, Any] | None = None  # the same numbers on the held-out half (intervals.half_stats)


def pooled_std(values: Sequence[Mapping[int, float]]) -> float | None:
    """The root of the mean variance over seeds (architectures with 2 seeds or more)."""
    variances = [statistics.variance(v.values()) for v in values if len(v) > 1]
    return math.sqrt(statistics.mean(variances)) if variances else None


def median_gap(means: Sequence[float]) -> float | None:
    """The median gap between neighbouring `means` once sorted: how far apart networks of the panel
    that are close competitors are. (The median over every pair was tried first: networks a short
    proxy leaves at chance inflate it, and on the default task it let through a proxy with a 3.3
    point seed std whose search front had 9 of 12 points within the noise of a dominated point.)"""
    ordered = sorted(means)
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    return statistics.median(gaps) if gaps else None


def signal_stats(
    signal: str,
    proxy: Sequence[Mapping[int, float]],
    deploy: Sequence[Mapping[int, float]],
    seeds: Sequence[int],
    deploy_retest: float | None,
    share: float = 0.9,
    accuracy_noise: float | None = None,
) -> SignalStats:
    """The numbers of one candidate and signal.

    Args:
        signal: the rank signal's name.
        proxy: per panel architecture, seed -> the candidate's signal.
        deploy: per panel architecture (the same order), seed -> deployment's accuracy.
        seeds: the seeds in order (the first two make the test-retest pairs).
        deploy_retest: deployment's own test-retest τ.
        share: the share of deployment's test-retest τ a qualifying candidate reaches.
        accuracy_noise: the candidate's accuracy's noise ratio, which must be below 1 to qualify
            (None: this signal's own, for the accuracy signal itself).
    """
    rows = [(p, d) for p, d in zip(proxy, deploy) if p and d]
    p_means = [statistics.mean(p.values()) for p, _ in rows]
    tau_means, rho_means = rank_corr(p_means, [statistics.mean(d.values()) for _, d in rows])
    tau = pair_tau([p for p, _ in rows], [d for _, d in rows], seeds)
    std, gap = pooled_std([p for p, _ in rows]), median_gap(p_means)
    ratio = std / gap if std is not None and gap else None
    stats = SignalStats(
        signal,
        tau,
        tau / deploy_retest if tau is not None and deploy_retest and deploy_retest > 0 else None,
        tau_means,
        rho_means,
        retest_tau([p for p, _ in rows], seeds),
        std,
        gap,
        ratio,
    )
    noise = ratio if accuracy_noise is None else accuracy_noise
    stats.qualified = (
        tau is not None
        and deploy_retest is not None
        and noise is not None
        and tau >= share * deploy_retest
        and noise < 1
    )
    return stats


@dataclass
class CandidateResult:
    """A candidate's measurements: seconds per evaluation, and per signal its statistics."""

    key: str
    subset: int | None
    epochs: int
    image_size: int
    evaluations: int  # complete ones
    expected: int  # panel x seeds
    seconds: float | None  # mean wall seconds per evaluation (costing, training, validation)
    cpu_seconds: float | None  # mean CPU seconds of the same (None: records from before CPU time was recorded)
    cost: float | None = None  # what it is picked by: CPU seconds, or wall seconds where some are unknown
    cost_ratio: float | None = None  # cost / deployment's
    signals: dict[str, SignalStats] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # signal -> τ per resample (pick half)

    @property
    def complete(self) -> bool:
        return self.evaluations >= self.expected


def _timing(records: Sequence[TrialRecord]) -> tuple[float | None, float | None]:
    """Mean wall and CPU seconds per evaluation; CPU None unless every record has it."""
    if not records:
        return None, None
    cpu = [r.cpu_seconds for r in records]
    return statistics.mean(r.seconds for r in records), statistics.mean(cpu) if all(c > 0 for c in cpu) else None


def _values(
    records: Sequence[TrialRecord], panel: Sequence[Mapping[str, Any]], seeds: Sequence[int], epochs: int, signal: str
) -> list[dict[int, float]]:
    """Per panel architecture, seed -> the signal of its complete evaluation (the first of a seed wins)."""
    return seed_values(
        records,
        [p["arch_id"] for p in panel],
        seeds,
        epochs,
        lambda r: score(r.acc_per_epoch, r.loss_per_epoch, signal),
    )


def measured_signal(
    signal: str,
    proxy: Sequence[Mapping[int, float]],
    ref: Reference,
    share: float,
    accuracy_noise: float | None = None,
) -> tuple[SignalStats, np.ndarray]:
    """One signal of a candidate against deployment (`ref`): τ, share and the rest on the pick half
    with their intervals, the noise over the whole panel, the held-out half's numbers; qualified
    by the share's lower bound and the noise. Also τ in every resample of the pick half."""
    rows = ref.pick.rows
    st = signal_stats(signal, [proxy[i] for i in rows], [ref.deploy[i] for i in rows], ref.seeds, ref.pick.retest)
    whole = signal_stats(signal, proxy, ref.deploy, ref.seeds, None)
    st.seed_std, st.median_gap, st.noise_ratio = whole.seed_std, whole.median_gap, whole.noise_ratio
    picked, taus = half_stats(proxy, ref, ref.pick, share)
    st.networks, st.tau_ci, st.share_ci = picked["networks"], picked["tau_ci"], picked["share_ci"]
    st.recall, st.recall_ci = picked["recall"], picked["recall_ci"]
    noise = st.noise_ratio if accuracy_noise is None else accuracy_noise
    st.qualified = bool(picked["clears"] and noise is not None and noise < 1)
    st.held_out = None if ref.held_out is None else half_stats(proxy, ref, ref.held_out, share)[0]
    return st, taus


def measure_candidate(
    folder: RunFolder,
    cand: Candidate,
    panel: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    ref: Reference | None,
    share: float,
) -> CandidateResult:
    """A candidate's timing and, once it and deployment (`ref`) are measured completely, its signals."""
    records = folder.trials(cand.file)
    complete = [
        r
        for r in records
        if r.status == "complete"
        and r.epochs == cand.epochs
        and r.seed in seeds
        and r.arch_id in {p["arch_id"] for p in panel}
    ]
    evaluations = len({(r.arch_id, r.seed) for r in complete})
    result = CandidateResult(
        cand.key, cand.subset, cand.epochs, cand.image_size, evaluations, len(panel) * len(seeds), *_timing(complete)
    )
    if result.complete and ref is not None:
        acc, result.samples["accuracy"] = measured_signal(
            "accuracy", _values(records, panel, seeds, cand.epochs, "accuracy"), ref, share
        )
        result.signals["accuracy"] = acc
        for s in SIGNALS:
            if s != "accuracy":
                result.signals[s], result.samples[s] = measured_signal(
                    s, _values(records, panel, seeds, cand.epochs, s), ref, share, acc.noise_ratio
                )
    return result


@dataclass
class DeploymentResult:
    """Deployment's measurements of the panel."""

    accuracies: list[dict[int, float]]  # per panel architecture, seed -> accuracy
    complete: bool  # every architecture with every seed
    retest: float | None  # its test-retest τ, once complete
    seconds: float | None  # mean wall seconds per evaluation
    cpu_seconds: float | None  # mean CPU seconds per evaluation


def measure_deployment(
    folder: RunFolder, cand: Candidate, panel: Sequence[Mapping[str, Any]], seeds: Sequence[int]
) -> DeploymentResult:
    """Deployment's accuracies of the panel, its test-retest τ and its seconds per evaluation."""
    records = folder.trials(cand.file)
    accuracies = _values(records, panel, seeds, cand.epochs, "accuracy")
    complete = all(len(d) == len(seeds) for d in accuracies)
    seconds, cpu = _timing([r for r in records if r.status == "complete" and r.epochs == cand.epochs])
    return DeploymentResult(accuracies, complete, retest_tau(accuracies, seeds) if complete else None, seconds, cpu)


def set_costs(results: Mapping[str, CandidateResult], deploy: DeploymentResult) -> bool:
    """Each candidate's cost and its ratio to deployment's: CPU seconds where every evaluation has
    them (the machine's load does not inflate them), else wall seconds. True for CPU seconds."""
    by_cpu = deploy.cpu_seconds is not None and all(
        r.cpu_seconds is not None for r in results.values() if r.evaluations
    )
    d_cost = deploy.cpu_seconds if by_cpu else deploy.seconds
    for r in results.values():
        r.cost = r.cpu_seconds if by_cpu else r.seconds
        r.cost_ratio = r.cost / d_cost if r.cost is not None and d_cost else None
    return by_cpu
