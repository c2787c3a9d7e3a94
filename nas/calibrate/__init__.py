"""`python -m nas.calibrate`: fit the search's proxy to your data, against the training you deploy.

    python -m nas.calibrate --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist
    python -m nas.calibrate --space search_spaces/digits.yaml --time-budget 1800
    python -m nas.search --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --proxy results/calibrate-symmetry-fashion-mnist/proxy.yaml

A proxy is a measurement instrument: a short training (a subset of the training images, a few
epochs, an image size) and a number read off it (its rank signal, `nas.proxy`). The space file's
proxy was fitted to the space's own dataset; on other data it may rank networks unlike the
training you deploy. This command measures candidate proxies against that training on your data:

1. **A panel** of `--archs` architectures: the space's reference points (all-conv, all-ACmix, the
   paper's placement), then networks drawn at random from the space (seeded by `--seed`) and
   picked evenly over their MACs, from the cheapest to the most expensive.
2. **Deployment-like training** of each (`nas.fidelity.deployment`): the whole training split (or
   `--deploy-subset` images), the networks' input size, `--deploy-epochs` (default 4x the space
   proxy's), `--seeds` seeds (seed k is `--seed` + k), scored on the validation split, which is
   the one a search with the same `--seed` scores on. The official test split is never used.
3. **Candidate proxies**: every `--subsets` x `--epochs` x `--image-sizes` (sizes below the
   networks' input where the space's strides allow them), trained with the same seeds, cheapest
   first, the rest of the training settings the space proxy's.

Per candidate it reports the seconds per evaluation (wall and CPU) and its cost against deployment
(CPU seconds, which the machine's load does not inflate); its accuracy's seed std, test-retest τ
(seed 0 vs seed 1) and seed std over the median gap between neighbouring panel accuracies (below
1, the proxy tells networks apart that are as close as the panel's neighbours); and
per rank signal Kendall τ against deployment for one proxy seed against one deployment seed
(averaged over the seed pairs: like for like with deployment's own test-retest τ, how well one
seed of the training you deploy ranks like another) and that τ's share of deployment's test-retest
τ, with τ and ρ of the means in calibration.json. A candidate qualifies with a signal when that
share is at least `--share` (0.9) and its accuracy's seed std is below that median gap (the front
reports accuracy, whatever the search ranks by). The signal is the one with the best mean τ over
the candidates measured; the pick is the cheapest candidate (by that cost) qualifying with it (else
with another signal). With none qualifying it says so and names the closest (the highest share
among those below the noise bar, else the highest share), and writes that one, marked
unqualified.

Everything goes to RESULTS/NAME (default results/calibrate-<space>-<dataset>):

    calibration.yaml            what defines the calibration: space, data, seed, panel, deployment,
                                seeds; the grid last asked for
    evaluations/<key>.jsonl     every evaluation, one JSON line (trials.jsonl's format) appended as it
                                finishes, one file per training setting (key: n<images|all>-e<epochs>-<px>px)
    calibration.json            the report: deployment's numbers, the table, the signal, the pick
    proxy.yaml                  the picked proxy as a `proxy:` section (with `rank_by`) and the
                                calibration it came from: `python -m nas.search --proxy proxy.yaml`
    ray/                        Ray Tune's experiment folders

Every evaluation runs on Ray Tune with the search's resource options (`nas.tune.jobs`); running the
same command again trains only what is missing (a failed evaluation is tried again), so an
interrupted or time-budgeted calibration continues where it stopped. A changed space, dataset,
seed, panel size, deployment or seeds is refused (use another --name); a changed grid just trains
the new candidates.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from nas.cli import EXIT_INTERRUPTED, EXIT_USAGE, ArgumentParser, add_resource_options
from nas.errors import UsageError
from nas.fidelity import deployment, format_stat, pair_tau, rank_corr, retest_tau, seed_values
from nas.proxy import SIGNALS, ProxyConfig, score
from nas.run.files import write_atomic
from nas.run.folder import RunFolder, TrialRecord, package_versions
from nas.search.options import DEFAULT_SPACE

if TYPE_CHECKING:  # nas.tune.jobs imports Ray: only the calibration itself needs it
    from nas.data import Dataset
    from nas.tune.jobs import Job, Resources

__all__ = [
    'CalibrateOptions',
    'Candidate',
    'SignalStats',
    'signal_stats',
    'pick',
    'candidate_sizes',
    'pick_panel',
    'calibrate',
    'format_table',
    'load_proxy_file',
    'main',
]

PROJECT = Path(__file__).resolve().parents[2]
CALIBRATION_YAML, CALIBRATION_JSON, PROXY_YAML = 'calibration.yaml', 'calibration.json', 'proxy.yaml'
EVALUATIONS = 'evaluations'
POOL = 8  # random architectures drawn per panel slot, to pick the panel's spread from
DEFINING = ('space_fingerprint', 'dataset', 'seed', 'val_fraction', 'archs', 'seeds', 'deploy')


# --------------------------------------------------------------------------- what to train


@dataclass(frozen=True)
class Candidate:
    """One training setting: `subset` training images (None: the whole training split) for
    `epochs` at `image_size` pixels; the rest of the training is the space proxy's."""

    subset: int | None
    epochs: int
    image_size: int

    @property
    def key(self) -> str:
        return f"n{self.subset if self.subset is not None else 'all'}-e{self.epochs}-{self.image_size}px"

    @property
    def data_key(self) -> str:
        return f"n{self.subset if self.subset is not None else 'all'}-{self.image_size}px"

    @property
    def file(self) -> str:
        return f'{EVALUATIONS}/{self.key}.jsonl'

    def proxy(self, base: ProxyConfig) -> ProxyConfig:
        return replace(base, subset=self.subset, epochs=self.epochs, image_size=self.image_size)


def candidate_sizes(space: Any, sizes: Sequence[int] | None) -> list[int]:
    """The image sizes to try: `sizes`, or by default the networks' input size and 3/4 of it
    (rounded to a multiple of 4); sizes the space's strides take below one pixel are left out."""
    full = space.input_size[0]
    want = list(sizes) if sizes else [full, 4 * round(0.75 * full / 4)]
    return [s for s in dict.fromkeys(want) if s <= full and space.fits(s)]


def pick_panel(space: Any, n: int, seed: int, num_classes: int) -> list[dict[str, Any]]:
    """The panel: the space's reference points, then architectures drawn at random (seeded) and
    picked evenly over their MACs, cheapest to dearest; each {name, arch_id, arch, macs, params}."""
    import optuna

    from nas.net.cost import measure_cost

    def entry(name: str | None, arch: Any) -> dict[str, Any]:
        cost = measure_cost(arch, num_classes=num_classes, latency=False, memory=False)
        return {'name': name, 'arch_id': arch.arch_id, 'arch': arch.to_dict(), 'macs': cost.macs, 'params': cost.params}

    panel = [entry(name, a) for name, a in list(space.reference_points().items())[:n]]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    pool: dict[str, Any] = {}
    for _ in range(POOL * max(0, n - len(panel))):
        arch = space.sample(study.ask())
        if all(p['arch_id'] != arch.arch_id for p in panel):
            pool.setdefault(arch.arch_id, arch)
    drawn = sorted((entry(None, a) for a in pool.values()), key=lambda e: (e['macs'], e['arch_id']))
    slots = min(n - len(panel), len(drawn))
    if slots > 0:
        panel += [drawn[i] for i in sorted({round(x) for x in np.linspace(0, len(drawn) - 1, slots)})]
    return panel


# --------------------------------------------------------------------------- the statistics


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


def _pooled_std(values: Sequence[Mapping[int, float]]) -> float | None:
    """The root of the mean variance over seeds (architectures with 2 seeds or more)."""
    variances = [statistics.variance(v.values()) for v in values if len(v) > 1]
    return math.sqrt(statistics.mean(variances)) if variances else None


def _median_gap(means: Sequence[float]) -> float | None:
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
    std, gap = _pooled_std([p for p, _ in rows]), _median_gap(p_means)
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
        noise = {r.key: r.signals['accuracy'].noise_ratio for r in done}
        quiet = [(r, s) for r, s in pairs if noise[r.key] is not None and noise[r.key] < 1]
        best = max(quiet or pairs, key=lambda rs: (rs[0].signals[rs[1]].share, -rs[0].cost), default=None)
        closest = (best[0].key, best[1]) if best else None
    return {'signal': signal, 'mean_tau': mean_tau, 'pick': chosen, 'closest': closest}


def _timing(records: Sequence[TrialRecord]) -> tuple[float | None, float | None]:
    """Mean wall and CPU seconds per evaluation; CPU None unless every record has it."""
    if not records:
        return None, None
    cpu = [r.cpu_seconds for r in records]
    return statistics.mean(r.seconds for r in records), statistics.mean(cpu) if all(c > 0 for c in cpu) else None


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.mean(vals) if vals else None


# --------------------------------------------------------------------------- the report


def format_table(report: Mapping[str, Any]) -> str:
    """calibration.json's table for the terminal (and the README)."""
    d = report['deploy']
    need = report['share'] * d['retest'] if d['retest'] is not None else None
    lines = [
        f"deployment: {d['train_images']:,} images x {d['epochs']} epochs at {d['image_size']}px, "
        f"{format_stat(d['seconds'], '.1f')} s per evaluation ({format_stat(d.get('cpu_seconds'), '.1f')} CPU s); "
        f"accuracy {format_stat(d['min'] and 100 * d['min'], '.1f')}-"
        f"{format_stat(d['max'] and 100 * d['max'], '.1f')}%, "
        f"seed std {format_stat(d['seed_std'] and 100 * d['seed_std'])} points, "
        f"median gap {format_stat(d['median_gap'] and 100 * d['median_gap'])} points; "
        f"test-retest τ {format_stat(d['retest'])} "
        f"(a qualifying proxy reaches τ >= {format_stat(need)} with an accuracy seed std below its median gap between "
        f"neighbouring panel networks)",
        f"{'':17} {'':>7} {'':>7} {'':>8} {'accuracy noise':^20} " + ' '.join(f'{s:^13}' for s in SIGNALS),
        f"{'proxy':17} {'s/eval':>7} {'CPU s':>7} {'x deploy':>8} {'std':>6} {'retest':>6} {'s/gap':>6} "
        + ' '.join(f"{'τ':>5} {'share':>5}  " for _ in SIGNALS),
    ]
    for r in report['candidates']:
        if not r['signals']:
            lines.append(f"{r['key']:17} {'-':>7}   measured {r['evaluations']} of {r['expected']} evaluations")
            continue
        acc = r['signals']['accuracy']
        cells = [
            f"{format_stat(st['tau']):>5} {format_stat(st['share']):>5} {'✓' if st['qualified'] else ' '}"
            for st in (r['signals'][s] for s in SIGNALS)
        ]
        lines.append(
            f"{r['key']:17} {format_stat(r['seconds'], '.1f'):>7} {format_stat(r.get('cpu_seconds'), '.1f'):>7} "
            f"{format_stat(r['cost_ratio'], '.3f'):>8} {format_stat(acc['seed_std'] and 100 * acc['seed_std']):>6} "
            f"{format_stat(acc['retest']):>6} {format_stat(acc['noise_ratio']):>6} "
            + ' '.join(cells)
            + ('' if r['evaluations'] >= r['expected'] else f"  ({r['evaluations']}/{r['expected']})")
        )
    mean = report['mean_tau']
    lines.append(
        f"{'mean τ':17} {'':>7} {'':>7} {'':>8} {'':>20} "
        + ' '.join(f"{format_stat(mean[s]):>5}{'':8}" for s in SIGNALS)
    )
    lines.append(
        f"s/eval, CPU s: wall and CPU seconds per evaluation; x deploy: its {report.get('cost_by', 'wall')} "
        "seconds over deployment's; accuracy: its seed std (points), test-retest τ and seed std over the "
        "median gap between neighbouring panel networks; per rank signal: τ, one proxy seed vs one deployment seed "
        "(mean over the seed pairs), and its share of deployment's test-retest τ; ✓ qualifies"
    )
    lines.append(report['verdict'])
    return '\n'.join(lines)


def _verdict(
    choice: Mapping[str, Any], results: Mapping[str, CandidateResult], deploy_retest: float | None, share: float
) -> str:
    if choice['pick']:
        key, signal = choice['pick']
        r, st = results[key], results[key].signals[signal]
        return (
            f"picked {key} ranked by {signal}: τ {format_stat(st.tau)} = {format_stat(st.share)} of deployment's "
            f"test-retest τ {format_stat(deploy_retest)}, accuracy seed std "
            f"{format_stat(r.signals['accuracy'].noise_ratio)} of the median gap, at "
            f"{format_stat(r.cost, '.1f')} "
            f"{'CPU ' if r.cost == r.cpu_seconds else ''}s per evaluation, "
            f"{format_stat(r.cost_ratio and 1 / r.cost_ratio, '.0f')}x cheaper than deployment"
        )
    if choice['closest']:
        key, signal = choice['closest']
        st = results[key].signals[signal]
        return (
            f"no candidate reaches τ >= {share} x deployment's test-retest τ ({format_stat(deploy_retest)}) with an "
            f"accuracy seed std below its median gap; closest: {key} ranked by {signal} (τ {format_stat(st.tau)}, "
            f"{format_stat(st.share)} of it, accuracy seed std "
            f"{format_stat(results[key].signals['accuracy'].noise_ratio)} of the gap), written unqualified"
        )
    return 'no candidate is measured completely yet: nothing picked'


# --------------------------------------------------------------------------- the calibration


@dataclass
class CalibrateOptions:
    """The command line's options (see `build_parser`)."""

    space: Path = DEFAULT_SPACE
    dataset: str | None = None  # None: the space proxy's
    data_dir: Path | None = None
    seed: int = 0
    archs: int = 12
    seeds: int = 2
    subsets: list[int] = field(default_factory=lambda: [500, 1000, 2000, 4000])
    epochs: list[int] = field(default_factory=lambda: [3, 5, 8])
    image_sizes: list[int] | None = None  # None: the input size and 3/4 of it, where the space allows
    deploy_epochs: int | None = None  # None: 4x the space proxy's
    deploy_subset: int | None = None  # None: the whole training split
    share: float = 0.9
    time_budget: float | None = None
    name: str | None = None
    results_dir: Path = Path('results')
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    address: str | None = None


def _check(opts: CalibrateOptions) -> None:
    for flag, values, low in (
        ('--subsets', opts.subsets, 1),
        ('--epochs', opts.epochs, 1),
        ('--image-sizes', opts.image_sizes or [1], 1),
    ):
        if not values or any(v < low for v in values):
            raise UsageError(f'{flag} takes numbers >= {low}, got {values}')
    if opts.archs < 3:
        raise UsageError(f'--archs must be at least 3 (Kendall τ needs three), got {opts.archs}')
    if opts.seeds < 2:
        raise UsageError(f'--seeds must be at least 2 (test-retest τ and seed std need two), got {opts.seeds}')
    if opts.deploy_epochs is not None and opts.deploy_epochs < 1:
        raise UsageError(f'--deploy-epochs must be at least 1, got {opts.deploy_epochs}')
    if opts.deploy_subset is not None and opts.deploy_subset < 1:
        raise UsageError(f'--deploy-subset must be at least 1, got {opts.deploy_subset}')
    if not 0 < opts.share <= 1:
        raise UsageError(f'--share must be in (0, 1], got {opts.share}')
    if opts.time_budget is not None and not opts.time_budget > 0:
        raise UsageError(f'--time-budget must be a number of seconds > 0, got {opts.time_budget}')
    if opts.seed < 0:
        raise UsageError(f'--seed must be >= 0, got {opts.seed}')
    if opts.name is not None and (opts.name in ('', '.', '..') or '/' in opts.name):
        raise UsageError(f'--name {opts.name!r}: give a plain folder name under --results-dir')


def _load_space(path: Path) -> Any:
    from nas.space import SpaceError, load_space

    if not path.exists() and not path.is_absolute() and (PROJECT / path).exists():
        path = PROJECT / path  # the shipped spaces, from any working directory
    try:
        return load_space(path)
    except SpaceError as e:
        raise UsageError(str(e)) from None


def _definition(folder: RunFolder, definition: dict[str, Any]) -> dict[str, Any]:
    """calibration.yaml: the stored definition when the folder has one (refused if it differs in a
    defining key), else `definition`, written."""
    path = folder.path / CALIBRATION_YAML
    if path.is_file():
        stored = yaml.safe_load(path.read_text()) or {}
        changed = [k for k in DEFINING if stored.get(k) != definition[k]]
        if changed:
            raise UsageError(
                f"{folder.path}: a calibration with another {', '.join(changed)} (see {path}); "
                f"continue it with the same options, or pick another --name"
            )
        definition = {**stored, 'grid': definition['grid'], 'data_dir': definition['data_dir']}
    folder.path.mkdir(parents=True, exist_ok=True)
    (folder.path / EVALUATIONS).mkdir(exist_ok=True)
    write_atomic(path, yaml.safe_dump(definition, sort_keys=False, allow_unicode=True))
    return definition


def _values(
    records: Sequence[TrialRecord], panel: Sequence[Mapping[str, Any]], seeds: Sequence[int], epochs: int, signal: str
) -> list[dict[int, float]]:
    """Per panel architecture, seed -> the signal of its complete evaluation (the first of a seed wins)."""
    return seed_values(
        records,
        [p['arch_id'] for p in panel],
        seeds,
        epochs,
        lambda r: score(r.acc_per_epoch, r.loss_per_epoch, signal),
    )


def _measure(
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
        if r.status == 'complete'
        and r.epochs == cand.epochs
        and r.seed in seeds
        and r.arch_id in {p['arch_id'] for p in panel}
    ]
    evaluations = len({(r.arch_id, r.seed) for r in complete})
    result = CandidateResult(
        cand.key, cand.subset, cand.epochs, cand.image_size, evaluations, len(panel) * len(seeds), *_timing(complete)
    )
    if result.complete and deploy:
        acc = signal_stats(
            'accuracy', _values(records, panel, seeds, cand.epochs, 'accuracy'), deploy, seeds, deploy_retest, share
        )
        result.signals = {
            s: acc
            if s == 'accuracy'
            else signal_stats(
                s, _values(records, panel, seeds, cand.epochs, s), deploy, seeds, deploy_retest, share, acc.noise_ratio
            )
            for s in SIGNALS
        }
    return result


@dataclass
class _SetUp:
    """What a calibration runs with, once its options, space and data are checked and its
    calibration.yaml is written."""

    folder: RunFolder
    definition: dict[str, Any]  # calibration.yaml's contents
    space: Any  # nas.space.SearchSpace
    base: ProxyConfig  # the space's proxy, on the dataset asked for
    cands: list[Candidate]  # deployment, then the candidate proxies cheapest first
    panel: list[dict[str, Any]]
    seeds: list[int]
    data: dict[str, Dataset]  # data key -> the data loaded so far (deployment's)
    full: Dataset  # deployment's data
    resources: Resources


def calibrate(opts: CalibrateOptions, command: str = '') -> dict[str, Any]:
    """Run (or continue) a calibration; returns calibration.json's contents (also written, with
    proxy.yaml once a candidate is measured).

    Raises:
        UsageError: bad options, a missing dataset, a folder of another calibration.
    """
    start = time.perf_counter()
    setup = _set_up(opts, command)
    _train(opts, setup, start)
    folder = setup.folder
    report = _report(folder, setup.definition, setup.cands, setup.panel, setup.seeds, opts.share)
    report['minutes'] = (time.perf_counter() - start) / 60
    write_atomic(folder.path / CALIBRATION_JSON, json.dumps(report, indent=2, allow_nan=False))
    choice = report['pick'] or report['closest']
    if choice:
        write_atomic(folder.path / PROXY_YAML, _proxy_file(folder, setup.definition, report, setup.base, choice))
    return report


def _set_up(opts: CalibrateOptions, command: str) -> _SetUp:
    """Check the options, the resources, the space and deployment's data (before anything is
    written), then make or continue the calibration's folder and its calibration.yaml."""
    from nas.tune.jobs import Resources, load_datasets

    _check(opts)
    resources = Resources.of(opts)
    space = _load_space(opts.space)
    base = space.proxy if opts.dataset is None else replace(space.proxy, dataset=opts.dataset)
    deploy_epochs = opts.deploy_epochs or 4 * space.proxy.epochs
    deploy_proxy = deployment(base, space.input_size, deploy_epochs)
    deploy_cand = Candidate(opts.deploy_subset, deploy_epochs, deploy_proxy.image_size)
    data = load_datasets({deploy_cand.data_key: deploy_cand.proxy(base)}, opts.data_dir, opts.seed)
    full = data[deploy_cand.data_key]
    if full.in_chans != space.in_chans:
        raise UsageError(
            f'{opts.space}: in_chans is {space.in_chans} but dataset {full.name} has {full.in_chans} channel(s)'
        )
    grid = _grid(opts, space, deploy_cand, len(full.train_y))
    name = opts.name or f'calibrate-{space.name}-{full.name}'
    folder = RunFolder(opts.results_dir / name)
    seeds = [opts.seed + k for k in range(opts.seeds)]
    definition = _define(folder, opts, command, space, base, full, deploy_cand, grid, seeds)
    cands = [deploy_cand, *grid]
    return _SetUp(folder, definition, space, base, cands, definition['panel'], seeds, data, full, resources)


def _grid(opts: CalibrateOptions, space: Any, deploy: Candidate, train_images: int) -> list[Candidate]:
    """The candidate proxies, cheapest first (images x epochs x pixels): every subset smaller than
    the `train_images` of the training split x epochs x image size the space's strides allow, but
    deployment's own setting; UsageError when no image size or no subset is left."""
    sizes = candidate_sizes(space, opts.image_sizes)
    if not sizes:
        raise UsageError(
            f"--image-sizes {opts.image_sizes}: none fits the space's strides (input {space.input_size[0]}px)"
        )
    grid = [
        Candidate(n, e, s)
        for n in sorted(set(opts.subsets))
        for e in sorted(set(opts.epochs))
        for s in sizes
        if n < train_images and Candidate(n, e, s) != deploy
    ]
    grid.sort(key=lambda c: (c.subset * c.epochs * c.image_size**2, c.key))
    if not grid:
        raise UsageError(f'--subsets {opts.subsets}: every one is at least the {train_images} training images')
    return grid


def _define(
    folder: RunFolder,
    opts: CalibrateOptions,
    command: str,
    space: Any,
    base: ProxyConfig,
    full: Dataset,
    deploy: Candidate,
    grid: Sequence[Candidate],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """calibration.yaml's contents, written: this calibration's definition (`_definition`: refused
    when the folder holds another), with its panel, drawn once on the first invocation."""
    definition = _definition(
        folder,
        {
            'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'command': command,
            'space_file': str(opts.space),
            'space': space.name,
            'space_fingerprint': space.fingerprint,
            'dataset': full.name,
            'data_dir': None if opts.data_dir is None else str(opts.data_dir),
            'seed': opts.seed,
            'val_fraction': base.val_fraction,
            'val_images': len(full.val_y),
            'archs': opts.archs,
            'seeds': list(seeds),
            'deploy': {**asdict(deploy), 'train_images': len(full.train_y)},
            'grid': [c.key for c in grid],
            'base_proxy': base.to_dict(),
            'versions': package_versions(),
            'panel': None,
        },
    )
    if definition['panel'] is None:
        definition['panel'] = pick_panel(space, opts.archs, opts.seed, full.num_classes)
        write_atomic(folder.path / CALIBRATION_YAML, yaml.safe_dump(definition, sort_keys=False, allow_unicode=True))
    return definition


def _plan(setup: _SetUp) -> list[Job]:
    """Every evaluation of the calibration: per setting (deployment first), architecture and seed."""
    from nas.tune.jobs import Job

    deploy = setup.cands[0]
    return [
        Job(
            p['arch_id'],
            p['arch'],
            s,
            c.data_key,
            c.epochs,
            c.file,
            f'{"deployment" if c == deploy else "proxy"} {c.key}',
        )
        for c in setup.cands
        for p in setup.panel
        for s in setup.seeds
    ]


def _train(opts: CalibrateOptions, setup: _SetUp, start: float) -> None:
    """Say what the calibration holds and what it trains, then train the evaluations not recorded
    yet on Ray (`nas.tune.jobs.run_jobs`) until done or `--time-budget`, loading the data they need."""
    from nas.trial import TrialSettings
    from nas.tune.jobs import load_datasets, missing, run_jobs, sized

    folder, deploy, plan = setup.folder, setup.cands[0], _plan(setup)
    jobs = missing(plan, folder)
    n_deploy = sum(j.file == deploy.file for j in jobs)
    print(
        f"{folder.path}: space {setup.space.name}, {setup.full.summary()}; panel of {len(setup.panel)} "
        f"architectures, seeds {', '.join(map(str, setup.seeds))}; deployment {deploy.key}, "
        f"{len(setup.cands) - 1} candidate proxies; to train: {n_deploy} deployment and {len(jobs) - n_deploy} "
        f"proxy evaluations",
        flush=True,
    )
    if not jobs:
        return
    wanted: dict[str, ProxyConfig] = {}
    for c in setup.cands:
        if c.data_key not in setup.data and any(j.data == c.data_key for j in jobs):
            wanted.setdefault(c.data_key, c.proxy(setup.base))
    data = {**setup.data, **load_datasets(wanted, opts.data_dir, opts.seed)}
    settings = TrialSettings(
        proxy=setup.base, num_classes=setup.full.num_classes, device=setup.resources.device, measure=()
    )
    deadline = time.time() + opts.time_budget if opts.time_budget else None
    run_jobs(
        folder, sized(jobs, data), data, settings, setup.resources, name='calibrate', deadline=deadline, start=start
    )
    left = len(missing(plan, folder))
    if left:
        print(
            f'{left} evaluations not trained yet (time budget or failures); run the same command again to continue',
            flush=True,
        )


@dataclass
class _Deployment:
    """Deployment's measurements of the panel."""

    accuracies: list[dict[int, float]]  # per panel architecture, seed -> accuracy
    complete: bool  # every architecture with every seed
    retest: float | None  # its test-retest τ, once complete
    seconds: float | None  # mean wall seconds per evaluation
    cpu_seconds: float | None  # mean CPU seconds per evaluation


def _measure_deployment(
    folder: RunFolder, cand: Candidate, panel: Sequence[Mapping[str, Any]], seeds: Sequence[int]
) -> _Deployment:
    """Deployment's accuracies of the panel, its test-retest τ and its seconds per evaluation."""
    records = folder.trials(cand.file)
    accuracies = _values(records, panel, seeds, cand.epochs, 'accuracy')
    complete = all(len(d) == len(seeds) for d in accuracies)
    seconds, cpu = _timing([r for r in records if r.status == 'complete' and r.epochs == cand.epochs])
    return _Deployment(accuracies, complete, retest_tau(accuracies, seeds) if complete else None, seconds, cpu)


def _set_costs(results: Mapping[str, CandidateResult], deploy: _Deployment) -> bool:
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


def _deploy_section(
    definition: Mapping[str, Any],
    cand: Candidate,
    deploy: _Deployment,
    panel: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """calibration.json's `deploy`: the setting, how much of it is measured, its time and its noise."""
    means = [statistics.mean(d.values()) for d in deploy.accuracies if d]
    return {
        **definition['deploy'],
        'key': cand.key,
        'evaluations': sum(len(d) for d in deploy.accuracies),
        'expected': len(panel) * len(seeds),
        'seconds': deploy.seconds,
        'cpu_seconds': deploy.cpu_seconds,
        'retest': deploy.retest,
        'seed_std': _pooled_std(deploy.accuracies),
        'median_gap': _median_gap(means),
        'min': min(means) if means else None,
        'max': max(means) if means else None,
    }


def _report(
    folder: RunFolder,
    definition: Mapping[str, Any],
    cands: Sequence[Candidate],
    panel: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    share: float,
) -> dict[str, Any]:
    """calibration.json's contents (without the minutes): deployment's numbers, the panel, each
    candidate's measurements, the signal and the pick (or the closest), and the verdict; nothing is
    picked before deployment is measured completely."""
    deploy_cand = cands[0]
    deploy = _measure_deployment(folder, deploy_cand, panel, seeds)
    measured = deploy.accuracies if deploy.complete else []
    results = {c.key: _measure(folder, c, panel, seeds, measured, deploy.retest, share) for c in cands[1:]}
    by_cpu = _set_costs(results, deploy)
    choice = pick(list(results.values()))
    report = {
        'folder': str(folder.path),
        'space': definition['space'],
        'space_fingerprint': definition['space_fingerprint'],
        'dataset': definition['dataset'],
        'seeds': list(seeds),
        'share': share,
        'cost_by': 'cpu' if by_cpu else 'wall',
        'deploy': _deploy_section(definition, deploy_cand, deploy, panel, seeds),
        'panel': [
            {**{k: p[k] for k in ('name', 'arch_id', 'macs', 'params')}, 'deploy_accuracies': [d.get(s) for s in seeds]}
            for p, d in zip(panel, deploy.accuracies)
        ],
        'candidates': [
            {
                **{k: v for k, v in asdict(r).items() if k != 'signals'},
                'signals': {s: asdict(st) for s, st in r.signals.items()},
            }
            for r in results.values()
        ],
        **choice,
        'verdict': _verdict(choice, results, deploy.retest, share)
        if deploy.complete
        else 'deployment training is not measured completely yet: nothing picked',
    }
    if not deploy.complete:
        report['pick'] = report['closest'] = None
    return report


# the deployment numbers proxy.yaml's calibration section repeats from calibration.json
_PROXY_FILE_DEPLOY = (
    'key',
    'train_images',
    'epochs',
    'image_size',
    'seconds',
    'cpu_seconds',
    'retest',
    'seed_std',
    'median_gap',
)


def _proxy_file(
    folder: RunFolder,
    definition: Mapping[str, Any],
    report: Mapping[str, Any],
    base: ProxyConfig,
    choice: Sequence[str],
) -> str:
    """proxy.yaml: a comment saying where it comes from and how to search with it, the chosen
    candidate as a `proxy:` section ranked by the chosen signal, and its `calibration:`."""
    key, signal = choice
    cand = next(c for c in report['candidates'] if c['key'] == key)
    proxy = replace(
        base, subset=cand['subset'], epochs=cand['epochs'], image_size=cand['image_size'], rank_by=signal
    ).checked()
    st = cand['signals'][signal]
    head = (
        f"# A proxy fitted by python -m nas.calibrate ({folder.path / CALIBRATION_JSON}):\n"
        f"# {report['verdict']}\n# {key}: {cand['seconds']:.1f} s per evaluation, τ {format_stat(st['tau'])} "
        f"against deployment ({format_stat(st['share'])} of its test-retest τ)\n"
        f"# search with it: python -m nas.search --space {definition['space_file']} --dataset "
        f"{definition['dataset']}"
        + (f" --data-dir {definition['data_dir']}" if definition['data_dir'] else '')
        + f" --proxy {folder.path / PROXY_YAML}\n"
    )
    body = {
        'proxy': {**proxy.to_dict(), 'rank_by': signal},
        'calibration': _calibration_section(folder, definition, report, key, signal),
    }
    return head + yaml.safe_dump(json.loads(json.dumps(body)), sort_keys=False, allow_unicode=True)


def _calibration_section(
    folder: RunFolder, definition: Mapping[str, Any], report: Mapping[str, Any], key: str, signal: str
) -> dict[str, Any]:
    """proxy.yaml's `calibration:`: what the proxy was measured against and the table it was picked from."""
    return {
        'folder': str(folder.path),
        'qualified': report['pick'] is not None,
        'candidate': key,
        'signal': signal,
        'space': definition['space'],
        'space_fingerprint': definition['space_fingerprint'],
        'dataset': definition['dataset'],
        'seed': definition['seed'],
        'verdict': report['verdict'],
        'deploy': {k: report['deploy'][k] for k in _PROXY_FILE_DEPLOY},
        'cost_by': report['cost_by'],
        'table': [
            {
                'key': c['key'],
                'seconds': c['seconds'],
                'cpu_seconds': c['cpu_seconds'],
                'cost_ratio': c['cost_ratio'],
                'accuracy_noise_ratio': c['signals']['accuracy']['noise_ratio'],
                **{s: {k: v[k] for k in ('tau', 'share', 'qualified')} for s, v in c['signals'].items()},
            }
            for c in report['candidates']
            if c['signals']
        ],
    }


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    d = CalibrateOptions()
    p = ArgumentParser(
        prog='python -m nas.calibrate',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_what_options(p, d)
    _add_candidate_options(p, d)
    add_resource_options(p)
    g = p.add_argument_group('where')
    g.add_argument('--name', default=None, help='folder name under --results-dir; default: calibrate-<space>-<dataset>')
    g.add_argument('--results-dir', type=Path, default=d.results_dir, help='where the folder goes')
    return p


def _add_what_options(p: argparse.ArgumentParser, d: CalibrateOptions) -> None:
    """The options of what to calibrate: the space, the data, the seed, the panel and its seeds."""
    g = p.add_argument_group('what to calibrate')
    g.add_argument('--space', type=Path, default=d.space, help='search-space YAML')
    g.add_argument('--dataset', default=None, help="the dataset (as for nas.search); default: the space proxy's")
    g.add_argument('--data-dir', type=Path, default=None, help='folder with the dataset as distributed')
    g.add_argument(
        '--seed',
        type=int,
        default=d.seed,
        help="the data split's seed (use the search's --seed), the panel's draw and the first training seed",
    )
    g.add_argument(
        '--archs',
        type=int,
        default=d.archs,
        help="the panel: the space's reference points, then architectures spread over MACs",
    )
    g.add_argument('--seeds', type=int, default=d.seeds, help='training seeds per architecture and setting')


def _add_candidate_options(p: argparse.ArgumentParser, d: CalibrateOptions) -> None:
    """The options of the candidate proxies, the deployment they are measured against, the bar
    they qualify by and the time budget."""
    g = p.add_argument_group('the candidate proxies and the deployment they are measured against')
    g.add_argument('--subsets', type=int, nargs='+', default=d.subsets, help='training images of the candidates')
    g.add_argument('--epochs', type=int, nargs='+', default=d.epochs, help='epochs of the candidates')
    g.add_argument(
        '--image-sizes',
        type=int,
        nargs='+',
        default=None,
        help="image sizes of the candidates; default: the networks' input size and 3/4 of it, where the "
        "space's strides allow",
    )
    g.add_argument(
        '--deploy-epochs',
        type=int,
        default=None,
        help="deployment-like training's epochs; default: 4x the space proxy's",
    )
    g.add_argument(
        '--deploy-subset',
        type=int,
        default=None,
        help='deployment-like training on this many training images; default: the whole training split',
    )
    g.add_argument(
        '--share',
        type=float,
        default=d.share,
        help="a qualifying proxy's τ against deployment, as a share of deployment's test-retest τ",
    )
    g.add_argument(
        '--time-budget',
        type=float,
        default=None,
        help='stop starting evaluations after this many seconds (run again to continue)',
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = CalibrateOptions(**vars(build_parser().parse_args(argv)))
    try:
        report = calibrate(opts, command='python -m nas.calibrate ' + ' '.join(argv))
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m nas.calibrate {' '.join(argv)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(format_table(report))
    choice = report['pick'] or report['closest']
    folder = Path(report['folder'])
    print(
        f"\nwrote {folder / CALIBRATION_JSON}"
        + (
            f" and {folder / PROXY_YAML}; search with: python -m nas.search --proxy {folder / PROXY_YAML}"
            if choice
            else ''
        )
    )
    return 0
