"""How well each candidate proxy measures the panel against deployment, and the pick.

Per candidate: the seconds per evaluation (wall and CPU) and its cost against deployment (CPU
seconds, which the machine's load does not inflate); its accuracy's seed std, test-retest τ (seed 0
vs seed 1) and seed std over the median gap between neighbouring panel accuracies (below 1, the
proxy tells networks apart that are as close as the panel's neighbours); and per rank signal
Kendall τ against deployment for one proxy seed against one deployment seed (averaged over the seed
pairs: like for like with deployment's own test-retest τ, how well one seed of the training you
deploy ranks like another) and that τ's share of deployment's test-retest τ, with τ and ρ of the
means. A candidate qualifies with a signal when that share is at least `--share` (0.9) and its
accuracy's seed std is below that median gap (the front reports accuracy, whatever the search ranks
by). The signal is the one with the best mean τ over the candidates measured; the pick is the
cheapest candidate (by that cost) qualifying with it (else with another signal). With none
qualifying, the closest: the highest share among those below the noise bar, else the highest share.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.calibrate.panel import Candidate
from nas.fidelity.stats import format_stat, pair_tau, rank_corr, retest_tau, seed_values
from nas.proxy import SIGNALS, score
from nas.run.folder import RunFolder, TrialRecord

__all__ = [
    "SignalStats",
    "signal_stats",
    "CandidateResult",
    "pick",
    "verdict",
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
    qualified: bool = False  # its share reaches the bar and the candidate's accuracy is below the noise bar


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
        tau / deploy_retest if tau is not None and deploy_retest else None,
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

    @property
    def complete(self) -> bool:
        return self.evaluations >= self.expected


def pick(results: Sequence[CandidateResult]) -> dict[str, Any]:
    """The signal (best mean τ over the complete candidates; ties in SIGNALS' order), the pick (the
    cheapest candidate qualifying with that signal, else the cheapest qualifying with another),
    or, with none qualifying, the closest (highest share among those below the noise bar, else
    the highest share). Returns {'signal', 'mean_tau' (per signal), 'pick' (key, signal) or None,
    'closest' (key, signal) or None}."""
    # a candidate without signals waits for deployment's measurements
    done = [r for r in results if r.complete and r.cost is not None and r.signals]
    mean_tau = {s: _mean_or_none([r.signals[s].tau for r in done if s in r.signals]) for s in SIGNALS}
    ranked = [s for s in SIGNALS if mean_tau[s] is not None]
    signal = max(ranked, key=lambda s: (mean_tau[s], -SIGNALS.index(s))) if ranked else SIGNALS[0]
    by_cost = sorted(done, key=lambda r: r.cost)
    chosen = next(((r.key, signal) for r in by_cost if r.signals[signal].qualified), None)
    if chosen is None:
        chosen = next(((r.key, s) for r in by_cost for s in SIGNALS if r.signals[s].qualified), None)
    closest = None
    if chosen is None:
        pairs = [(r, s) for r in done for s in SIGNALS if r.signals[s].share is not None]
        noise = {r.key: r.signals["accuracy"].noise_ratio for r in done}
        quiet = [(r, s) for r, s in pairs if noise[r.key] is not None and noise[r.key] < 1]
        best = max(quiet or pairs, key=lambda rs: (rs[0].signals[rs[1]].share, -rs[0].cost), default=None)
        closest = (best[0].key, best[1]) if best else None
    return {"signal": signal, "mean_tau": mean_tau, "pick": chosen, "closest": closest}


def _timing(records: Sequence[TrialRecord]) -> tuple[float | None, float | None]:
    """Mean wall and CPU seconds per evaluation; CPU None unless every record has it."""
    if not records:
        return None, None
    cpu = [r.cpu_seconds for r in records]
    return statistics.mean(r.seconds for r in records), statistics.mean(cpu) if all(c > 0 for c in cpu) else None


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.mean(vals) if vals else None


def verdict(
    choice: Mapping[str, Any], results: Mapping[str, CandidateResult], deploy_retest: float | None, share: float
) -> str:
    if choice["pick"]:
        key, signal = choice["pick"]
        r, st = results[key], results[key].signals[signal]
        return (
            f"picked {key} ranked by {signal}: τ {format_stat(st.tau)} = {format_stat(st.share)} of deployment's "
            f"test-retest τ {format_stat(deploy_retest)}, accuracy seed std "
            f"{format_stat(r.signals['accuracy'].noise_ratio)} of the median gap, at "
            f"{format_stat(r.cost, '.1f')} "
            f"{'CPU ' if r.cost == r.cpu_seconds else ''}s per evaluation, "
            f"{format_stat(r.cost_ratio and 1 / r.cost_ratio, '.0f')}x cheaper than deployment"
        )
    if choice["closest"]:
        key, signal = choice["closest"]
        st = results[key].signals[signal]
        return (
            f"no candidate reaches τ >= {share} x deployment's test-retest τ ({format_stat(deploy_retest)}) with an "
            f"accuracy seed std below its median gap; closest: {key} ranked by {signal} (τ {format_stat(st.tau)}, "
            f"{format_stat(st.share)} of it, accuracy seed std "
            f"{format_stat(results[key].signals['accuracy'].noise_ratio)} of the gap), written unqualified"
        )
    return "no candidate is measured completely yet: nothing picked"


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


def measure_candidate(
    folder: RunFolder,
    cand: Candidate,
    panel: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    deploy: Sequence[Mapping[int, float]],
    deploy_retest: float | None,
    share: float,
) -> CandidateResult:
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
    if result.complete and deploy:
        acc = signal_stats(
            "accuracy", _values(records, panel, seeds, cand.epochs, "accuracy"), deploy, seeds, deploy_retest, share
        )
        result.signals = {
            s: acc
            if s == "accuracy"
            else signal_stats(
                s, _values(records, panel, seeds, cand.epochs, s), deploy, seeds, deploy_retest, share, acc.noise_ratio
            )
            for s in SIGNALS
        }
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
