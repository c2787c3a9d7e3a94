"""`python -m nas.fidelity RUN`: does the proxy rank architectures like longer training does?

    python -m nas.fidelity results/<run>                     # 12 architectures, 4x the proxy's epochs, 2 seeds
    python -m nas.fidelity results/<run> --archs 8 --epochs 40 --seeds 3 --cpus-per-trial 2

It picks N architectures of the run (its front of mean accuracies, then complete architectures
spread evenly over the accuracy range of the rest), trains each for `--epochs` with K seeds
(seed k is the run's seed + k, the seeds the search's racing uses) and makes sure each also has K
proxy evaluations (the run's own trials.jsonl records are reused; the missing ones are trained).
Every evaluation runs on Ray Tune (`nas.raytune.trainable`) with the search's resource options and
is appended to RUN/fidelity.jsonl as it finishes; a second invocation trains only what is missing
(a failed evaluation is tried again). The report, printed and written to RUN/fidelity.json:

* per architecture: proxy mean ± std and long mean ± std over the K seeds;
* Kendall τ and Spearman ρ between the proxy's means and the long means, and between the proxy's
  first seed alone (what a one-seed search sees) and the long means;
* the proxy's test-retest τ: first seed vs second seed, same architectures;
* the mean seed std of the proxy and of long training; the range of long means in units of
  the long seed std (how much there is to rank at all);
* the front long training gives (`nas.pareto` on the long means, the run's costs) and which of
  the proxy's front points stay on it.

`fidelity_stats` computes the numbers from per-architecture accuracies alone (tests, notebooks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from nas import pareto
from nas.cli import (EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, ArgumentParser, Terminated, shell_command,
                     stop_on_sigterm)
from nas.results import ArchResult, RunConfig, RunError, RunFolder, TrialRecord, aggregate
from nas.runlock import RunLock

__all__ = ['FIDELITY_RECORDS', 'FIDELITY_JSON', 'FidelityOptions', 'Job', 'ArchFidelity', 'pick_archs', 'plan_jobs',
           'fidelity_stats', 'long_front', 'report', 'format_table', 'check', 'main']

FIDELITY_RECORDS = 'fidelity.jsonl'  # every evaluation of the check, appended like trials.jsonl
FIDELITY_JSON = 'fidelity.json'  # the report


class UsageError(ValueError):
    """Bad input: one line on the command line, exit 2."""


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
            best = min((i for i, a in enumerate(rest) if a.arch_id not in picked),
                       key=lambda i: (abs(accs[i] - target), i))
            picked.add(rest[best].arch_id)
            out.append(rest[best])
    return out


@dataclass(frozen=True)
class Job:
    """One evaluation to run: an architecture at a seed for a number of epochs."""

    arch_id: str
    arch: dict[str, Any]
    seed: int
    epochs: int

    def config(self) -> dict[str, Any]:
        """The Ray trainable's config (nas.raytune.trainable)."""
        return {'arch_id': self.arch_id, 'arch': self.arch, 'seed': self.seed, 'epochs': self.epochs}


def _done(records: Sequence[TrialRecord]) -> set[tuple[str, int, int]]:
    """(arch id, seed, epochs) of the complete evaluations. Only complete ones count as done: a
    failed one (out of memory with too many at once, say) is tried again by the next invocation."""
    return {(r.arch_id, int(r.seed), r.epochs) for r in records
            if r.status == 'complete' and r.accuracy is not None and r.seed is not None}


def plan_jobs(picked: Sequence[ArchResult], run_records: Sequence[TrialRecord], records: Sequence[TrialRecord],
              seeds: Sequence[int], proxy_epochs: int, long_epochs: int) -> list[Job]:
    """The evaluations still missing: for every picked architecture and seed, a proxy one (unless
    the run's trials.jsonl or fidelity.jsonl has it) and a long one (unless fidelity.jsonl has it).
    Long ones first: they take longest, and the proxy's are often all in the run already."""
    done = _done(run_records) | _done(records)
    jobs = [Job(a.arch_id, a.arch, s, e) for e in (long_epochs, proxy_epochs) for a in picked for s in seeds
            if (a.arch_id, s, e) not in done]
    return jobs


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


def _rank_corr(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    """Kendall τ (tau-b: ties count) and Spearman ρ; None below 3 points or for constant input."""
    from scipy import stats

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None, None
    return _finite(stats.kendalltau(x, y).statistic), _finite(stats.spearmanr(x, y).statistic)


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def fidelity_stats(archs: Sequence[ArchFidelity], seeds: Sequence[int]) -> dict[str, Any]:
    """The fidelity numbers of architectures with both proxy and long accuracies.

    Args:
        archs: the architectures.
        seeds: the seeds in order; the first is what a one-seed search sees, the first two make
            the test-retest pair.

    Returns:
        kendall_tau, spearman_rho (proxy means vs long means), seed0_kendall_tau,
        seed0_spearman_rho (the first seed's proxy accuracy vs long means), test_retest_tau
        (proxy, first seed vs second seed), proxy_seed_std and long_seed_std (the mean over
        architectures of the std over seeds), long_range (best minus worst long mean),
        long_range_over_seed_std, architectures (how many were compared). A number that is
        undefined (too few architectures or seeds, constant accuracies) is None.
    """
    both = [a for a in archs if a.proxy and a.long]
    proxy, long = [a.proxy_mean for a in both], [a.long_mean for a in both]
    tau, rho = _rank_corr(proxy, long)
    first = [a for a in both if seeds and seeds[0] in a.proxy]
    tau0, rho0 = _rank_corr([a.proxy[seeds[0]] for a in first], [a.long_mean for a in first]) if first else (None, None)
    pair = [a for a in both if len(seeds) > 1 and seeds[0] in a.proxy and seeds[1] in a.proxy]
    retest = _rank_corr([a.proxy[seeds[0]] for a in pair], [a.proxy[seeds[1]] for a in pair])[0] if pair else None
    long_std = _mean([a.long_std for a in both])
    spread = (max(long) - min(long)) if long else None
    return {'architectures': len(both), 'kendall_tau': tau, 'spearman_rho': rho, 'seed0_kendall_tau': tau0,
            'seed0_spearman_rho': rho0, 'test_retest_tau': retest,
            'proxy_seed_std': _mean([a.proxy_std for a in both]), 'long_seed_std': long_std,
            'long_range': spread,
            'long_range_over_seed_std': spread / long_std if spread is not None and long_std else None}


class _Point:
    """An architecture with the long mean as its accuracy and the run's costs, for nas.pareto."""

    status, feasible = 'complete', True

    def __init__(self, number: int, a: ArchFidelity):
        self.number, self.a = number, a

    def value(self, objective: str) -> float | None:
        return self.a.long_mean if objective == 'accuracy' else self.a.costs.get(objective)


def long_front(archs: Sequence[ArchFidelity], objectives: Sequence[str]) -> list[str]:
    """Arch ids of the Pareto front of the long means (with the run's costs), by increasing cost."""
    points = [_Point(i, a) for i, a in enumerate(archs) if a.long]
    return [p.a.arch_id for p in pareto.front(points, objectives)]


def report(archs: Sequence[ArchFidelity], proxy_front: Sequence[str], objectives: Sequence[str],
           seeds: Sequence[int], proxy_epochs: int, long_epochs: int) -> dict[str, Any]:
    """fidelity.json's contents (without the run's name and the minutes)."""
    lf = long_front(archs, objectives)
    return {
        'objectives': list(objectives), 'seeds': list(seeds), 'proxy_epochs': proxy_epochs, 'long_epochs': long_epochs,
        **fidelity_stats(archs, seeds),
        'proxy_front': list(proxy_front), 'long_front': lf,
        'proxy_front_kept': [a for a in proxy_front if a in lf],
        'archs': [{'arch_id': a.arch_id, 'reference': a.reference, 'on_proxy_front': a.arch_id in proxy_front,
                   'on_long_front': a.arch_id in lf, **a.costs,
                   'proxy_mean': a.proxy_mean, 'proxy_std': a.proxy_std,
                   'proxy_accuracies': [a.proxy.get(s) for s in seeds],
                   'long_mean': a.long_mean, 'long_std': a.long_std,
                   'long_accuracies': [a.long.get(s) for s in seeds]} for a in archs],
    }


def _pct(x: float | None, std: float | None = None) -> str:
    if x is None:
        return '-'
    return f'{100 * x:.2f}' + (f' ± {100 * std:.2f}' if std is not None else '')


def _num(x: float | None, fmt: str = '.2f') -> str:
    return '-' if x is None else format(x, fmt)


def format_table(summary: Mapping[str, Any]) -> str:
    """The report for the terminal."""
    k = len(summary['seeds'])
    lines = [f"  {'arch id':12}  {'proxy %s ep. (%d seeds)' % (summary['proxy_epochs'], k):>22}  "
             f"{'long %s ep. (%d seeds)' % (summary['long_epochs'], k):>22}  front: proxy → long"]
    for a in summary['archs']:
        lines.append(f"  {a['arch_id']:12}  {_pct(a['proxy_mean'], a['proxy_std']):>22}  "
                     f"{_pct(a['long_mean'], a['long_std']):>22}  {'●' if a['on_proxy_front'] else '·'} → "
                     f"{'●' if a['on_long_front'] else '·'}  {a['reference'] or ''}")
    s = summary
    lines += [
        f"\nKendall τ {_num(s['kendall_tau'])}, Spearman ρ {_num(s['spearman_rho'])} between the proxy's means and "
        f"the long means of {s['architectures']} architectures; the proxy's first seed alone: τ "
        f"{_num(s['seed0_kendall_tau'])}, ρ {_num(s['seed0_spearman_rho'])}",
        f"test-retest τ (proxy, seed {s['seeds'][0]} vs seed {s['seeds'][1] if k > 1 else '?'}): "
        f"{_num(s['test_retest_tau'])}",
        f"seed std: proxy {_pct(s['proxy_seed_std'])} points, long {_pct(s['long_seed_std'])} points; long means span "
        f"{_pct(s['long_range'])} points = {_num(s['long_range_over_seed_std'], '.1f')} long seed stds",
        f"front of the long means: {', '.join(s['long_front']) or 'none'}; {len(s['proxy_front_kept'])} of "
        f"{len(s['proxy_front'])} proxy front points stay on it"
        + (f" ({', '.join(s['proxy_front_kept'])})" if s['proxy_front_kept'] else ''),
    ]
    if 'minutes' in s:
        lines.append(f"{s.get('evaluations_run', 0)} evaluations trained in {s['minutes']:.1f} min; "
                     f"{s.get('evaluations_reused', 0)} proxy evaluations reused from the run")
    return '\n'.join(lines)


# --------------------------------------------------------------------------- the Ray side

def job_trainable(config: dict[str, Any], **kwargs: Any) -> None:
    """`nas.raytune.trainable` on the grid's job (the grid varies one key, 'job')."""
    from nas.raytune import trainable

    trainable(config['job'], **kwargs)


def _run_jobs(run: RunFolder, jobs: Sequence[Job], data: Any, settings: Any, cpus_per_trial: float,
              gpus_per_trial: float, max_concurrent: int | None, address: str | None, start: float) -> None:
    """One Tune run over the fixed list of evaluations (a grid over the list, no searcher)."""
    import ray
    from ray import tune

    from nas.raytune import FidelityRecorder, check_resources, fitting_trials, ray_session, trial_dirname
    from nas.options import UsageError as SearchUsageError

    with ray_session(address):
        resources = ray.cluster_resources()
        try:
            check_resources(resources, cpus_per_trial, gpus_per_trial, address)
        except SearchUsageError as e:
            raise UsageError(str(e)) from None
        fn = tune.with_parameters(job_trainable, data=[ray.put(data)], settings=settings, threads=max(1, int(cpus_per_trial)))
        tuner = tune.Tuner(
            tune.with_resources(fn, {'cpu': cpus_per_trial, 'gpu': gpus_per_trial}),
            param_space={'job': tune.grid_search([j.config() for j in jobs])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=max_concurrent or fitting_trials(resources, cpus_per_trial, gpus_per_trial),
                reuse_actors=True, trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=f"fidelity-{datetime.now().strftime('%Y%m%d-%H%M%S')}",
                storage_path=str((run.path / 'ray').resolve()),
                callbacks=[FidelityRecorder(run, FIDELITY_RECORDS, len(jobs), start)],
                verbose=0, failure_config=tune.FailureConfig(max_failures=0),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        tuner.fit()  # results are read from fidelity.jsonl, not from Tune's ResultGrid


# --------------------------------------------------------------------------- the check

@dataclass
class FidelityOptions:
    """The command line's options (see `build_parser`)."""

    run: Path
    archs: int = 12
    epochs: int | None = None  # None: 4x the run's proxy epochs
    seeds: int = 2
    data_dir: Path | None = None  # None: the run's
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 when CUDA is present, else 0
    max_concurrent: int | None = None
    address: str | None = None


def _gather(picked: Sequence[ArchResult], records: Sequence[TrialRecord], seeds: Sequence[int], proxy_epochs: int,
            long_epochs: int, objectives: Sequence[str]) -> list[ArchFidelity]:
    """Per picked architecture: its complete accuracies at the check's seeds, at both budgets
    (the first record of an (arch, seed, epochs) wins: a rerun never replaces one)."""
    out = []
    for a in picked:
        acc: dict[int, dict[int, float]] = {proxy_epochs: {}, long_epochs: {}}
        for r in records:
            if (r.arch_id == a.arch_id and r.status == 'complete' and r.accuracy is not None and r.seed in seeds
                    and r.epochs in acc):
                acc[r.epochs].setdefault(int(r.seed), float(r.accuracy))
        costs = {o: float(a.value(o)) for o in objectives if o != 'accuracy' and a.value(o) is not None}
        out.append(ArchFidelity(a.arch_id, dict(sorted(acc[proxy_epochs].items())),
                                dict(sorted(acc[long_epochs].items())), a.reference, costs))
    return out


def check(opts: FidelityOptions) -> dict[str, Any]:
    """Run (or continue) the fidelity check of a run; returns and writes fidelity.json. It holds
    the run folder's lock (`nas.runlock`) while it runs: a search of the run, or a second check,
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


def _check(opts: FidelityOptions) -> dict[str, Any]:
    start = time.perf_counter()
    run = RunFolder(opts.run)
    try:
        config: RunConfig = run.config()
    except RunError as e:
        raise UsageError(str(e)) from None
    proxy_epochs = config.proxy.epochs
    long_epochs = opts.epochs if opts.epochs is not None else 4 * proxy_epochs
    if opts.archs < 2:
        raise UsageError(f'--archs must be at least 2 (a ranking needs two), got {opts.archs}')
    if opts.seeds < 1:
        raise UsageError(f'--seeds must be at least 1, got {opts.seeds}')
    if long_epochs <= proxy_epochs:
        raise UsageError(f"--epochs must be more than the run's proxy epochs ({proxy_epochs}), got {long_epochs}")
    if opts.cpus_per_trial <= 0:
        raise UsageError(f'--cpus-per-trial must be positive, got {opts.cpus_per_trial}')
    if opts.max_concurrent is not None and opts.max_concurrent < 1:
        raise UsageError(f'--max-concurrent must be at least 1, got {opts.max_concurrent}')
    objectives = list(config.objectives)
    run_records = run.trials()
    archs = aggregate(run_records)
    front = run.front(objectives)
    picked = pick_archs(archs, front, opts.archs)
    front_ids = [a.arch_id for a in front]
    if len(picked) < 2:
        raise UsageError(f'{run.path}: {len(picked)} complete architecture(s); the check needs at least 2')
    seeds = [config.seed + k for k in range(opts.seeds)]
    jobs = plan_jobs(picked, run_records, run.trials(FIDELITY_RECORDS), seeds, proxy_epochs, long_epochs)
    n_long = sum(j.epochs == long_epochs for j in jobs)
    print(f"{run.path}: {len(picked)} architectures ({sum(a.arch_id in front_ids for a in picked)} on the front), seeds "
          f"{', '.join(map(str, seeds))}; {proxy_epochs} epochs (the proxy) vs {long_epochs}; to train: {n_long} long and "
          f"{len(jobs) - n_long} proxy evaluations", flush=True)
    if jobs:
        import torch

        gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else (1.0 if torch.cuda.is_available() else 0.0)
        data_dir = opts.data_dir or config.options.get('data_dir')
        from nas.data import DataError
        from nas.trial import TrialSettings

        try:  # the run's data and split: its split seed is the run's seed
            data = config.proxy.load_data(data_dir, seed=config.seed)
        except DataError as e:
            raise UsageError(str(e)) from None
        settings = TrialSettings(proxy=config.proxy, num_classes=data.num_classes, limits=dict(config.limits),
                                 device='cuda' if gpus > 0 else 'cpu', measure=())  # costs are the run's
        _run_jobs(run, jobs, data, settings, opts.cpus_per_trial, gpus, opts.max_concurrent, opts.address, start)
    records = run.trials(FIDELITY_RECORDS)
    reused = {(r.arch_id, r.seed) for r in run_records if r.status == 'complete' and r.epochs == proxy_epochs}
    rows = _gather(picked, [*run_records, *records], seeds, proxy_epochs, long_epochs, objectives)
    summary = {'run': str(run.path),
               **report(rows, [i for i in front_ids if i in {a.arch_id for a in picked}], objectives, seeds, proxy_epochs, long_epochs),
               'evaluations_run': len(jobs),
               'evaluations_reused': sum((a.arch_id, s) in reused for a in picked for s in seeds),
               'failed': sum(r.status != 'complete' for r in records),
               'minutes': (time.perf_counter() - start) / 60,  # this invocation's wall time
               'train_minutes': sum(r.seconds for r in records) / 60}  # every evaluation's, resumes included
    tmp = run.path / (FIDELITY_JSON + '.tmp')
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False))
    os.replace(tmp, run.path / FIDELITY_JSON)
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog='python -m nas.fidelity', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('run', type=Path, help='the run folder (results/<run>)')
    p.add_argument('--archs', type=int, default=12, help='architectures to check: the front, then spread over accuracy')
    p.add_argument('--epochs', type=int, default=None, help="long training's epochs; default: 4x the run's proxy epochs")
    p.add_argument('--seeds', type=int, default=2, help="seeds per architecture and budget (the run's seed + 0, 1, ...)")
    p.add_argument('--data-dir', type=Path, default=None, help="the dataset's folder; default: the run's")
    g = p.add_argument_group('resources (as for python -m nas.search)')
    g.add_argument('--cpus-per-trial', type=float, default=1.0, help='CPUs per evaluation (torch threads)')
    g.add_argument('--gpus-per-trial', type=float, default=None,
                   help='GPUs per evaluation, fractions allowed; default: 1 when CUDA is present, else 0')
    g.add_argument('--max-concurrent', type=int, default=None, help='evaluations at once; default: as resources allow')
    g.add_argument('--address', default=None,
                   help="join an existing Ray cluster ('auto' or host:port); default: a local Ray for this check")
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
        print(f'error: {e.filename or args.run}: {e.strerror or e}; the check stopped; continue with: '
              f'{shell_command("fidelity", args.run)}', file=sys.stderr)
        return 1
    print(format_table(summary))
    print(f"\nwrote {Path(summary['run']) / FIDELITY_JSON}; dashboard: {shell_command('dashboard', summary['run'])}")
    return 0


if __name__ == '__main__':  # run as nas.fidelity, so Ray pickles its trainable by reference
    from nas.fidelity import main as _main

    sys.exit(_main())
