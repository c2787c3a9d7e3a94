"""`python -m nas.fidelity RUN`: does the proxy rank architectures like the training you deploy?

    python -m nas.fidelity results/<run>                     # 12 architectures, deployment-like training, 2 seeds
    python -m nas.fidelity results/<run> --archs 8 --epochs 40 --seeds 3 --cpus-per-trial 2
    python -m nas.fidelity results/<run> --same-subset       # the proxy's own subset, longer: not deployment

It picks N architectures of the run (its front of mean accuracies, then complete architectures
spread evenly over the accuracy range of the rest) and trains each with K seeds (seed k is the
run's seed + k, the seeds the search's racing uses) the way a deployed network is trained: on the
whole training split (the proxy's `subset` off), at the network's input size, for `--epochs`
(default: the deployment the run's proxy was calibrated against, else 4x the proxy's), scored on
the run's validation split (the official test split is never used). It makes sure each also has
K proxy evaluations (the run's own trials.jsonl records are reused; the missing ones are trained). `--same-subset` instead trains longer on the proxy's own
training subset, the check this command made before: it says how much the short schedule alone
changes the ranking, not whether the ranking holds for a deployed network, and the report says so.

Every evaluation runs on Ray Tune (`nas.tune.jobs`, `nas.search.raytune.trainable`) with the search's resource
options and is appended as it finishes to RUN/fidelity-deploy.jsonl (deployment-like) or
RUN/fidelity.jsonl (proxy evaluations, and the long ones of --same-subset); a second invocation
trains only what is missing (a failed evaluation is tried again). The report, printed and written
to RUN/fidelity.json:

* per architecture: proxy mean ± std and long (reference) mean ± std over the K seeds;
* Kendall τ and Spearman ρ between the proxy's means and the long means, and between the proxy's
  first seed alone (what a one-seed search sees) and the long means;
* the reference's own test-retest τ (its first seed vs its second): how well one seed of the
  training you deploy ranks like another, the bar for a proxy; next to it the proxy's one-seed τ
  against the reference's single seeds (the mean over seed pairs, the like-for-like number) and
  its share of the reference's test-retest τ;
* the proxy's test-retest τ: first seed vs second seed, same architectures;
* the mean seed std of the proxy and of long training; the range of long means in units of
  the long seed std (how much there is to rank at all);
* the front long training gives (`nas.run.pareto` on the long means, the run's costs) and which of
  the proxy's front points stay on it.

`fidelity_stats` computes the numbers from per-architecture accuracies alone (tests, notebooks).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.cli import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    ArgumentParser,
    Terminated,
    add_resource_options,
    shell_command,
    stop_on_sigterm,
)
from nas.errors import UsageError
from nas.proxy import ProxyConfig
from nas.run import pareto
from nas.run.files import write_atomic
from nas.run.folder import ArchResult, RunConfig, RunError, RunFolder, TrialRecord, aggregate
from nas.run.lock import RunLock

if TYPE_CHECKING:  # nas.tune.jobs imports Ray: only the check itself needs it, not the dashboard
    from nas.data import Dataset
    from nas.tune.jobs import Job, Resources

__all__ = [
    'FIDELITY_RECORDS',
    'DEPLOY_RECORDS',
    'FIDELITY_JSON',
    'FidelityOptions',
    'ArchFidelity',
    'pick_archs',
    'deployment',
    'plan_jobs',
    'rank_corr',
    'seed_values',
    'fidelity_stats',
    'long_front',
    'report',
    'format_stat',
    'format_table',
    'check',
    'main',
]

FIDELITY_RECORDS = 'fidelity.jsonl'  # the check's proxy evaluations (and --same-subset's long ones), like trials.jsonl
DEPLOY_RECORDS = 'fidelity-deploy.jsonl'  # its deployment-like evaluations
FIDELITY_JSON = 'fidelity.json'  # the report
DEPLOYMENT, SAME_SUBSET = 'deployment', 'same subset'  # what the long training is (fidelity.json 'reference')


# --------------------------------------------------------------------------- what to train


def pick_archs(archs: Sequence[ArchResult], front: Sequence[ArchResult], n: int) -> list[ArchResult]:
    """The front (by increasing cost; n of its points spread along it if it has more), then
    complete architectures off the front spread evenly over their accuracy range: for each of
    the remaining slots, the unpicked one nearest an evenly spaced target accuracy from the best
    to the worst (ties to the earlier evaluated). Deterministic for a given run."""
    front = list(front)
    if len(front) > n:
        front = [front[i] for i in sorted({round(x) for x in np.linspace(0, len(front) - 1, n)})]
    picked = {a.arch_id for a in front}
    rest = [a for a in archs if a.status == 'complete' and a.arch_id not in picked and a.accuracy is not None]
    slots = min(n - len(front), len(rest))
    out = list(front)
    if slots > 0:
        accs = [float(a.accuracy) for a in rest]
        for target in np.linspace(max(accs), min(accs), slots):
            best = min(
                (i for i, a in enumerate(rest) if a.arch_id not in picked), key=lambda i: (abs(accs[i] - target), i)
            )
            picked.add(rest[best].arch_id)
            out.append(rest[best])
    return out


def deployment(proxy: ProxyConfig, input_size: Sequence[int], epochs: int) -> ProxyConfig:
    """Deployment-like training of a proxy's networks: the whole training split (no `subset`) at the
    networks' input size (the proxy's image size when the input is not square), for `epochs`,
    scored on the proxy's validation split (same `val_fraction`; the same seed gives the same split)."""
    h, w = input_size
    return replace(proxy, subset=None, image_size=h if h == w else proxy.image_size, epochs=epochs)


def default_epochs(config: RunConfig) -> int:
    """The reference training's epochs when --epochs is not given: the deployment the run's proxy
    was calibrated against (run.yaml `calibration`, from `nas.search --proxy`), else 4x the proxy's."""
    deploy = (config.calibration or {}).get('deploy') or {}
    return int(deploy['epochs']) if deploy.get('epochs') else 4 * config.proxy.epochs


def plan_jobs(
    picked: Sequence[ArchResult], seeds: Sequence[int], proxy_epochs: int, long_epochs: int, same_subset: bool = False
) -> list[Job]:
    """Every evaluation of the check: per picked architecture and seed a long one (on dataset
    'deploy', into DEPLOY_RECORDS; with `same_subset` on dataset 'proxy', into FIDELITY_RECORDS)
    and a proxy one (dataset 'proxy', FIDELITY_RECORDS). Long ones first: they take longest, and
    the proxy's are often all in the run already (`nas.tune.jobs.missing` leaves out what is done)."""
    from nas.tune.jobs import Job

    long = ('proxy', FIDELITY_RECORDS, SAME_SUBSET) if same_subset else ('deploy', DEPLOY_RECORDS, DEPLOYMENT)
    stages = [(*long, long_epochs), ('proxy', FIDELITY_RECORDS, 'proxy', proxy_epochs)]
    return [
        Job(a.arch_id, a.arch, s, data, epochs, file, f'{label}, {epochs} epochs:')
        for data, file, label, epochs in stages
        for a in picked
        for s in seeds
    ]


# --------------------------------------------------------------------------- the statistics


@dataclass
class ArchFidelity:
    """One architecture's accuracies: seed -> accuracy, at the proxy's epochs and at the long ones."""

    arch_id: str
    proxy: dict[int, float]
    long: dict[int, float]
    reference: str | None = None
    costs: dict[str, float] = field(default_factory=dict)  # objective -> the run's value

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


def _finite(x: float) -> float | None:
    """JSON has no NaN: a statistic that is undefined (constant input, too few points) is None."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def rank_corr(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    """Kendall τ (tau-b: ties count) and Spearman ρ; None below 3 points or for constant input."""
    from scipy import stats

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None, None
    return _finite(stats.kendalltau(x, y).statistic), _finite(stats.spearmanr(x, y).statistic)


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
        (proxy, first seed vs second seed), long_test_retest_tau (the same for long training: how
        well the reference agrees with itself), pair_kendall_tau (one proxy seed vs one long seed,
        averaged over the seed pairs: like for like with long_test_retest_tau), retest_share
        (pair_kendall_tau / long_test_retest_tau), proxy_seed_std and long_seed_std (the mean over
        architectures of the std over seeds), long_range (best minus worst long mean),
        long_range_over_seed_std, architectures (how many were compared). A number that is
        undefined (too few architectures or seeds, constant accuracies) is None.
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
    return {
        'architectures': len(both),
        'kendall_tau': tau,
        'spearman_rho': rho,
        'seed0_kendall_tau': tau0,
        'seed0_spearman_rho': rho0,
        'test_retest_tau': retest_tau([a.proxy for a in both], seeds),
        'long_test_retest_tau': long_retest,
        'pair_kendall_tau': pair,
        'retest_share': pair / long_retest if pair is not None and long_retest else None,
        'proxy_seed_std': _mean([a.proxy_std for a in both]),
        'long_seed_std': long_std,
        'long_range': spread,
        'long_range_over_seed_std': spread / long_std if spread is not None and long_std else None,
    }


class _Point:
    """An architecture with the long mean as its accuracy and the run's costs, for nas.run.pareto."""

    status, feasible = 'complete', True

    def __init__(self, number: int, a: ArchFidelity):
        self.number, self.a = number, a

    def value(self, objective: str) -> float | None:
        return self.a.long_mean if objective == 'accuracy' else self.a.costs.get(objective)


def long_front(archs: Sequence[ArchFidelity], objectives: Sequence[str]) -> list[str]:
    """Arch ids of the Pareto front of the long means (with the run's costs), by increasing cost."""
    points = [_Point(i, a) for i, a in enumerate(archs) if a.long]
    return [p.a.arch_id for p in pareto.front(points, objectives)]


def report(
    archs: Sequence[ArchFidelity],
    proxy_front: Sequence[str],
    objectives: Sequence[str],
    seeds: Sequence[int],
    proxy_epochs: int,
    long_epochs: int,
    reference: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """fidelity.json's contents (without the run's name and the minutes). `reference` says what the
    long training is: {'reference': 'deployment' or 'same subset', 'long_train_images': N,
    'long_image_size': S}."""
    lf = long_front(archs, objectives)
    return {
        'objectives': list(objectives),
        'seeds': list(seeds),
        'proxy_epochs': proxy_epochs,
        'long_epochs': long_epochs,
        **(reference or {}),
        **fidelity_stats(archs, seeds),
        'proxy_front': list(proxy_front),
        'long_front': lf,
        'proxy_front_kept': [a for a in proxy_front if a in lf],
        'archs': [
            {
                'arch_id': a.arch_id,
                'reference': a.reference,
                'on_proxy_front': a.arch_id in proxy_front,
                'on_long_front': a.arch_id in lf,
                **a.costs,
                'proxy_mean': a.proxy_mean,
                'proxy_std': a.proxy_std,
                'proxy_accuracies': [a.proxy.get(s) for s in seeds],
                'long_mean': a.long_mean,
                'long_std': a.long_std,
                'long_accuracies': [a.long.get(s) for s in seeds],
            }
            for a in archs
        ],
    }


def _pct(x: float | None, std: float | None = None) -> str:
    if x is None:
        return '-'
    return f'{100 * x:.2f}' + (f' ± {100 * std:.2f}' if std is not None else '')


def format_stat(x: float | None, fmt: str = '.2f') -> str:
    """A statistic for a table: formatted by `fmt`, or '-' when it is undefined (None)."""
    return '-' if x is None else format(x, fmt)


def long_label(summary: Mapping[str, Any]) -> str:
    """What the long training of a report is, in words."""
    if summary.get('reference') == DEPLOYMENT:
        images = summary.get('long_train_images')
        return (
            f"deployment-like training ({'all ' + format(images, ',') if images else 'all'} training images"
            f"{', %dpx' % summary['long_image_size'] if summary.get('long_image_size') else ''}, "
            f"{summary['long_epochs']} epochs)"
        )
    return (
        f"longer training on the proxy's own subset ({summary['long_epochs']} epochs; not deployment: "
        f"python -m nas.fidelity without --same-subset checks that)"
    )


def format_table(summary: Mapping[str, Any]) -> str:
    """The report for the terminal."""
    k = len(summary['seeds'])
    long = 'deploy' if summary.get('reference') == DEPLOYMENT else 'long'
    lines = [
        f"against {long_label(summary)}",
        f"  {'arch id':12}  {'proxy %s ep. (%d seeds)' % (summary['proxy_epochs'], k):>22}  "
        f"{'%s %s ep. (%d seeds)' % (long, summary['long_epochs'], k):>22}  front: proxy → {long}",
    ]
    for a in summary['archs']:
        lines.append(
            f"  {a['arch_id']:12}  {_pct(a['proxy_mean'], a['proxy_std']):>22}  "
            f"{_pct(a['long_mean'], a['long_std']):>22}  {'●' if a['on_proxy_front'] else '·'} → "
            f"{'●' if a['on_long_front'] else '·'}  {a['reference'] or ''}"
        )
    s = summary
    second = s['seeds'][1] if k > 1 else '?'
    lines += [
        f"\nKendall τ {format_stat(s['kendall_tau'])}, Spearman ρ {format_stat(s['spearman_rho'])} between the "
        f"proxy's means and the {long} means of {s['architectures']} architectures; the proxy's first seed alone: τ "
        f"{format_stat(s['seed0_kendall_tau'])}, ρ {format_stat(s['seed0_spearman_rho'])}",
        f"the {long} training's own test-retest τ (seed {s['seeds'][0]} vs seed {second}): "
        f"{format_stat(s.get('long_test_retest_tau'))}; one proxy seed vs one {long} seed: τ "
        f"{format_stat(s.get('pair_kendall_tau'))}, {format_stat(s.get('retest_share'))} of it (at 1, one proxy "
        f"seed ranks like one {long} seed as well as another {long} seed does)",
        f"the proxy's test-retest τ (seed {s['seeds'][0]} vs seed {second}): {format_stat(s['test_retest_tau'])}",
        f"seed std: proxy {_pct(s['proxy_seed_std'])} points, {long} {_pct(s['long_seed_std'])} points; {long} means "
        f"span {_pct(s['long_range'])} points = {format_stat(s['long_range_over_seed_std'], '.1f')} {long} seed stds",
        f"front of the {long} means: {', '.join(s['long_front']) or 'none'}; {len(s['proxy_front_kept'])} of "
        f"{len(s['proxy_front'])} proxy front points stay on it"
        + (f" ({', '.join(s['proxy_front_kept'])})" if s['proxy_front_kept'] else ''),
    ]
    if 'minutes' in s:
        lines.append(
            f"{s.get('evaluations_run', 0)} evaluations trained in {s['minutes']:.1f} min; "
            f"{s.get('evaluations_reused', 0)} proxy evaluations reused from the run"
        )
    return '\n'.join(lines)


# --------------------------------------------------------------------------- the check


@dataclass
class FidelityOptions:
    """The command line's options (see `build_parser`)."""

    run: Path
    archs: int = 12
    epochs: int | None = None  # None: 4x the run's proxy epochs
    seeds: int = 2
    same_subset: bool = False  # the long training on the proxy's subset (the old check), not deployment-like
    data_dir: Path | None = None  # None: the run's
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 when CUDA is present, else 0
    max_concurrent: int | None = None
    address: str | None = None


def _accuracy(r: TrialRecord) -> float:
    return float(r.accuracy)


def seed_values(
    records: Iterable[TrialRecord],
    arch_ids: Sequence[str],
    seeds: Sequence[int],
    epochs: int,
    value: Callable[[TrialRecord], float | None] = _accuracy,
) -> list[dict[int, float]]:
    """Per architecture of `arch_ids` (in their order): seed -> `value` (default: the accuracy) of its
    complete evaluations at `epochs` with one of `seeds`, in seed order. The first record of a seed
    with a value wins: a rerun never replaces one."""
    out: dict[str, dict[int, float]] = {a: {} for a in arch_ids}
    for r in records:
        if (
            r.arch_id in out
            and r.status == 'complete'
            and r.accuracy is not None
            and r.seed in seeds
            and r.epochs == epochs
            and int(r.seed) not in out[r.arch_id]
        ):
            v = value(r)
            if v is not None:
                out[r.arch_id][int(r.seed)] = v
    return [dict(sorted(out[a].items())) for a in arch_ids]


def _gather(
    picked: Sequence[ArchResult],
    proxy_records: Sequence[TrialRecord],
    long_records: Sequence[TrialRecord],
    seeds: Sequence[int],
    proxy_epochs: int,
    long_epochs: int,
    objectives: Sequence[str],
) -> list[ArchFidelity]:
    """Per picked architecture: its complete accuracies at the check's seeds, proxy and long."""
    ids = [a.arch_id for a in picked]
    proxy = seed_values(proxy_records, ids, seeds, proxy_epochs)
    long = seed_values(long_records, ids, seeds, long_epochs)
    return [
        ArchFidelity(
            a.arch_id,
            p,
            q,
            a.reference,
            {o: float(a.value(o)) for o in objectives if o != 'accuracy' and a.value(o) is not None},
        )
        for a, p, q in zip(picked, proxy, long)
    ]


def check(opts: FidelityOptions) -> dict[str, Any]:
    """Run (or continue) the fidelity check of a run; returns and writes fidelity.json. It holds
    the run folder's lock (`nas.run.lock`) while it runs: a search of the run, or a second check,
    is refused meanwhile, as this check is while one runs.

    Raises:
        UsageError: a missing run folder, bad numbers, a run with nothing complete, a run in use.
    """
    lock = RunLock(opts.run, command=shell_command('fidelity', opts.run), resume=shell_command('fidelity', opts.run))
    try:
        RunFolder(opts.run).require()  # not made by the lock
        if lock.acquire():
            print(lock.note, flush=True)
    except RunError as e:
        raise UsageError(str(e)) from None
    try:
        return _check(opts)
    finally:
        lock.release()


@dataclass
class _Plan:
    """What a check compares, once its options are checked: the run, the architectures picked from
    it, the seeds, the two trainings (the proxy's and the long one) and the evaluations to train."""

    run: RunFolder
    config: RunConfig
    objectives: list[str]
    run_records: list[TrialRecord]
    front_ids: list[str]  # the run's front
    picked: list[ArchResult]
    seeds: list[int]
    proxy_epochs: int
    long_epochs: int
    deploy: ProxyConfig  # the deployment-like training
    jobs: list[Job]  # what is not trained yet
    resources: Resources


def _check(opts: FidelityOptions) -> dict[str, Any]:
    """The check, inside the run's lock: plan it, train what is missing, write fidelity.json."""
    start = time.perf_counter()
    plan = _plan(opts)
    datasets = _train(opts, plan, start)
    summary = _summary(opts, plan, datasets, start)
    write_atomic(plan.run.path / FIDELITY_JSON, json.dumps(summary, indent=2, allow_nan=False))
    return summary


def _plan(opts: FidelityOptions) -> _Plan:
    """The check's plan from the run and the options, or UsageError naming what is wrong: the run's
    config, the numbers, the resources, a run with fewer than 2 complete architectures."""
    run = RunFolder(opts.run)
    try:
        config: RunConfig = run.config()
    except RunError as e:
        raise UsageError(str(e)) from None
    proxy_epochs = config.proxy.epochs
    long_epochs = opts.epochs if opts.epochs is not None else default_epochs(config)
    if opts.archs < 2:
        raise UsageError(f'--archs must be at least 2 (a ranking needs two), got {opts.archs}')
    if opts.seeds < 1:
        raise UsageError(f'--seeds must be at least 1, got {opts.seeds}')
    if long_epochs <= proxy_epochs and opts.same_subset:
        raise UsageError(
            f"--epochs must be more than the run's proxy epochs ({proxy_epochs}) with --same-subset, got {long_epochs}"
        )
    if long_epochs < proxy_epochs:
        raise UsageError(f"--epochs must be at least the run's proxy epochs ({proxy_epochs}), got {long_epochs}")
    from nas.tune.jobs import Resources, missing

    resources = Resources.of(opts)
    objectives = list(config.objectives)
    run_records = run.trials()
    front = run.front(objectives)
    picked = pick_archs(aggregate(run_records), front, opts.archs)
    if len(picked) < 2:
        raise UsageError(f'{run.path}: {len(picked)} complete architecture(s); the check needs at least 2')
    seeds = [config.seed + k for k in range(opts.seeds)]
    in_run = {
        (FIDELITY_RECORDS, r.arch_id, int(r.seed), r.epochs)
        for r in run_records
        if r.status == 'complete' and r.seed is not None
    }
    jobs = missing(plan_jobs(picked, seeds, proxy_epochs, long_epochs, opts.same_subset), run, in_run)
    deploy = deployment(config.proxy, config.space.get('input_size') or [config.proxy.image_size] * 2, long_epochs)
    front_ids = [a.arch_id for a in front]
    return _Plan(
        run,
        config,
        objectives,
        run_records,
        front_ids,
        picked,
        seeds,
        proxy_epochs,
        long_epochs,
        deploy,
        jobs,
        resources,
    )


def _train(opts: FidelityOptions, plan: _Plan, start: float) -> dict[str, Dataset]:
    """Say what the check compares and what it trains, then train the missing evaluations on Ray
    (`nas.tune.jobs.run_jobs`); returns the datasets loaded for them (none when nothing is missing)."""
    from nas.trial import TrialSettings
    from nas.tune.jobs import load_datasets, run_jobs, sized

    run, jobs = plan.run, plan.jobs
    long_file = FIDELITY_RECORDS if opts.same_subset else DEPLOY_RECORDS
    n_long = sum(j.file == long_file and j.epochs == plan.long_epochs for j in jobs)
    what = 'the same subset, longer (not deployment)' if opts.same_subset else 'deployment-like'
    print(
        f"{run.path}: {len(plan.picked)} architectures ({sum(a.arch_id in plan.front_ids for a in plan.picked)} on "
        f"the front), seeds {', '.join(map(str, plan.seeds))}; {plan.proxy_epochs} epochs (the proxy) vs "
        f"{plan.long_epochs} epochs {what}; to train: {n_long} long and {len(jobs) - n_long} proxy evaluations",
        flush=True,
    )
    if not jobs:
        return {}
    proxies = {'proxy': plan.config.proxy, 'deploy': plan.deploy}
    data_dir = opts.data_dir or plan.config.options.get('data_dir')
    # the run's data and split: its split seed is the run's seed
    datasets = load_datasets({k: proxies[k] for k in {j.data for j in jobs}}, data_dir, plan.config.seed)
    num_classes = next(iter(datasets.values())).num_classes
    settings = TrialSettings(
        proxy=plan.config.proxy,
        num_classes=num_classes,
        limits=dict(plan.config.limits),
        device=plan.resources.device,
        measure=(),
    )  # costs are the run's
    run_jobs(run, sized(jobs, datasets), datasets, settings, plan.resources, name='fidelity', start=start)
    return datasets


def _summary(opts: FidelityOptions, plan: _Plan, datasets: Mapping[str, Dataset], start: float) -> dict[str, Any]:
    """fidelity.json's contents: the report of the picked architectures' accuracies, with what the
    long training is, and this invocation's evaluations, failures and minutes."""
    run, run_records, seeds = plan.run, plan.run_records, plan.seeds
    records = run.trials(FIDELITY_RECORDS)
    long_records = [*run_records, *records] if opts.same_subset else run.trials(DEPLOY_RECORDS)
    reused = {(r.arch_id, r.seed) for r in run_records if r.status == 'complete' and r.epochs == plan.proxy_epochs}
    rows = _gather(
        plan.picked, [*run_records, *records], long_records, seeds, plan.proxy_epochs, plan.long_epochs, plan.objectives
    )
    picked_ids = {a.arch_id for a in plan.picked}
    return {
        'run': str(run.path),
        **report(
            rows,
            [i for i in plan.front_ids if i in picked_ids],
            plan.objectives,
            seeds,
            plan.proxy_epochs,
            plan.long_epochs,
            _reference(opts, plan, datasets),
        ),
        'evaluations_run': len(plan.jobs),
        'evaluations_reused': sum((a.arch_id, s) in reused for a in plan.picked for s in seeds),
        'failed': sum(r.status != 'complete' for r in [*records, *run.trials(DEPLOY_RECORDS)]),
        'minutes': (time.perf_counter() - start) / 60,  # this invocation's wall time
        'train_minutes': sum(r.seconds for r in [*records, *run.trials(DEPLOY_RECORDS)]) / 60,
    }


def _reference(opts: FidelityOptions, plan: _Plan, datasets: Mapping[str, Dataset]) -> dict[str, Any]:
    """What the long training is (`report`'s `reference`): deployment-like or the same subset, its
    image size and training images (a deployment's from its data, else from the last report)."""
    if opts.same_subset:
        return {
            'reference': SAME_SUBSET,
            'long_image_size': plan.config.proxy.image_size,
            'long_train_images': plan.config.data.train_images,
        }
    return {
        'reference': DEPLOYMENT,
        'long_image_size': plan.deploy.image_size,
        'long_train_images': len(datasets['deploy'].train_y)
        if 'deploy' in datasets
        else _previous(plan.run, DEPLOYMENT).get('long_train_images'),
    }


def _previous(run: RunFolder, reference: str) -> dict[str, Any]:
    """The last report against `reference`, if any: what an invocation that loads no data does not
    know again (how many training images the reference had)."""
    try:
        summary = json.loads((run.path / FIDELITY_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) and summary.get('reference') == reference else {}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog='python -m nas.fidelity',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument('run', type=Path, help='the run folder (results/<run>)')
    p.add_argument('--archs', type=int, default=12, help='architectures to check: the front, then spread over accuracy')
    p.add_argument(
        '--epochs',
        type=int,
        default=None,
        help="the reference training's epochs; default: those of the deployment the run's proxy was "
        "calibrated against (nas.calibrate), else 4x the run's proxy epochs",
    )
    p.add_argument(
        '--seeds', type=int, default=2, help="seeds per architecture and budget (the run's seed + 0, 1, ...)"
    )
    p.add_argument(
        '--same-subset',
        action='store_true',
        help="compare with longer training on the proxy's own training subset (the old check: the short "
        "schedule's effect alone) instead of deployment-like training on the whole training split",
    )
    p.add_argument('--data-dir', type=Path, default=None, help="the dataset's folder; default: the run's")
    add_resource_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()  # SIGTERM stops the check as Ctrl-C does
    args = build_parser().parse_args(argv)
    try:
        summary = check(FidelityOptions(**vars(args)))
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        print(f'\ninterrupted; continue with: {shell_command("fidelity", args.run)}', file=sys.stderr)
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
    except OSError as e:  # a full disk, a run folder gone read-only: what is recorded stays
        print(
            f'error: {e.filename or args.run}: {e.strerror or e}; the check stopped; continue with: '
            f'{shell_command("fidelity", args.run)}',
            file=sys.stderr,
        )
        return 1
    print(format_table(summary))
    print(f"\nwrote {Path(summary['run']) / FIDELITY_JSON}; dashboard: {shell_command('dashboard', summary['run'])}")
    return 0
