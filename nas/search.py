"""`python -m nas.search`: multi-objective architecture search with Optuna samplers on Ray Tune.

    python -m nas.search --budget 100                       # digits, accuracy vs MACs, on this machine
    python -m nas.search --space search_spaces/cifar_resnet.yaml --dataset cifar10 --data-dir ~/data \\
        --objectives accuracy latency --max-params 2e6 --gpus-per-trial 0.5
    python -m nas.search --resume results/<run>             # after Ctrl-C or a crash

or from Python (a notebook, a script), with the same options as keyword arguments:

    >>> import nas.search
    >>> run = nas.search.run('search_spaces/digits.yaml', budget=20, objectives=['accuracy', 'params'])
    >>> run.front()                                          # the Pareto front's TrialRecords
    >>> run = nas.search.run(resume=run.path, budget=40)     # continue it to a larger budget

Each trial is one architecture, sampled define-by-run from the YAML space by an Optuna sampler,
evaluated by `nas.trial.evaluate` (built as a timm model, costed, trained as a short proxy, scored
on the validation split) inside Ray Tune (`nas.raytune`). The space's reference points (all-conv,
all-ACmix, the paper's placement) are evaluated first. Everything lands in results/<run>/ (see
nas/results.py), with trials.jsonl as the record of what is done.

This module is the set-up: options, the run folder and run.yaml, resume, the study, the printout.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import torch

from nas import pareto
from nas.data import DataError, Dataset
from nas.pareto import COSTS, OBJECTIVES
from nas.report import front_report
from nas.results import STUDY_NAME, DataInfo, RunConfig, RunError, RunFolder, aggregate, package_versions, seed_std
from nas.space import SearchSpace, SpaceError, load_space
from nas.train import ProxyConfig, ProxyError

__all__ = ['run', 'main', 'SearchOptions', 'UsageError', 'make_sampler']

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_SPACE = Path('search_spaces/digits.yaml')
SAMPLERS = ('tpe', 'nsga2', 'nsga3', 'gp', 'random')
# Options a resumed run may change; the others define the search and must stay as they were.
RESUMABLE = {'budget', 'time_budget', 'cpus_per_trial', 'gpus_per_trial', 'gpu_memory_mb', 'max_concurrent', 'address',
             'max_failures', 'resume', 'results_dir', 'quiet', 'data_dir'}
LIMIT_OPTIONS = {'max_macs': 'macs', 'max_params': 'params', 'max_latency_ms': 'latency'}
PROXY_OPTIONS = ('dataset', 'epochs', 'batch_size', 'subset')


class UsageError(ValueError):
    """Bad input (an option, a space, data, a run folder): one line on the command line, exit 2."""


@dataclass
class SearchOptions:
    """Every option of a search; the command line's flags and `run()`'s keyword arguments."""

    budget: int = 100  # trials (distinct architectures) to evaluate, counting those done before
    time_budget: float | None = None  # stop starting trials after this many seconds
    space: Path = DEFAULT_SPACE
    objectives: list[str] = field(default_factory=lambda: ['accuracy', 'macs'])
    max_macs: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    sampler: str = 'tpe'
    seed: int = 0
    repeats: int = 1  # seeds every architecture is evaluated with
    race: int = 3  # seeds for the front and the points within its noise (1: no racing)
    race_share: float = 0.3  # noise-band re-evaluations, at most this share of the budget
    early_stop: bool = False
    dataset: str | None = None  # proxy overrides; None: the space file's proxy section
    data_dir: Path | None = None
    epochs: int | None = None
    subset: float | None = None
    batch_size: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | str | None = None  # None: 1 when CUDA is present, else 0; 'auto': by memory
    gpu_memory_mb: float | None = None  # the GPUs' memory for auto; None: measured on this machine's GPU
    max_concurrent: int | None = None
    address: str | None = None
    max_failures: int | None = None
    name: str | None = None
    results_dir: Path = Path('results')
    resume: str | None = None
    quiet: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchOptions:
        """From run.yaml's `options` (or keyword arguments); unknown keys are an error."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r}; options: {', '.join(f.name for f in fields(cls))}")
        opts = cls(**d)
        for key in ('space', 'data_dir', 'results_dir'):
            if getattr(opts, key) is not None:
                setattr(opts, key, Path(getattr(opts, key)))
        return opts

    def to_dict(self) -> dict[str, Any]:
        """As run.yaml stores them: paths as strings."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @property
    def limits(self) -> dict[str, float]:
        return {obj: float(getattr(self, opt)) for opt, obj in LIMIT_OPTIONS.items() if getattr(self, opt) is not None}

    def checked(self) -> SearchOptions:
        """These options with objectives parsed, or UsageError naming the first bad one."""
        objectives = _parse_objectives(self.objectives)
        if self.budget < 1:
            raise UsageError(f'--budget must be at least 1, got {self.budget}')
        if self.cpus_per_trial <= 0:
            raise UsageError(f'--cpus-per-trial must be positive, got {self.cpus_per_trial}')
        if self.repeats < 1 or self.race < 1:
            raise UsageError(f'--repeats and --race must be at least 1, got {self.repeats} and {self.race}')
        if not 0 <= self.race_share <= 10:
            raise UsageError(f'--race-share must be in [0, 10], got {self.race_share}')
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler: unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        return replace(self, objectives=objectives)


def _parse_objectives(values: list[str] | str) -> list[str]:
    names = [v.strip().lower() for item in ([values] if isinstance(values, str) else values)
             for v in item.split(',') if v.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise UsageError(f"--objectives: unknown {', '.join(unknown)}; choose accuracy plus any of {', '.join(COSTS)}")
    if 'accuracy' not in names or len(set(names)) < 2:
        raise UsageError('--objectives: give accuracy and at least one cost objective, e.g. accuracy macs')
    return ['accuracy'] + [n for n in dict.fromkeys(names) if n != 'accuracy']


def make_sampler(name: str, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    """A named, seeded Optuna sampler. Hard limits reach the samplers that use them through each
    trial's constraint values (`Trial.set_constraint`), not through a constraints function."""
    population = max(4, min(50, budget // 4))
    return {
        'tpe': lambda: optuna.samplers.TPESampler(seed=seed),
        'nsga2': lambda: optuna.samplers.NSGAIISampler(seed=seed, population_size=population),
        'nsga3': lambda: optuna.samplers.NSGAIIISampler(seed=seed, population_size=population),
        'gp': lambda: optuna.samplers.GPSampler(seed=seed),
        'random': lambda: optuna.samplers.RandomSampler(seed=seed),
    }[name]()


# --------------------------------------------------------------------------- the Python API

def run(space: str | Path | None = None, **options: Any) -> RunFolder:
    """Run (or, with `resume=RUN`, continue) a search and return its run folder.

    Args:
        space: the search-space YAML (default: the digits space); not needed with `resume`.
        **options: any field of `SearchOptions` (budget, objectives, sampler, seed, epochs, ...),
            as the command line's flags without their dashes.

    Raises:
        UsageError: a bad option, space, dataset or run folder (the message is one line).
    """
    if space is not None:
        options['space'] = Path(space)
    opts = SearchOptions.from_dict(options)
    return search(opts, explicit=set(options), command=f'nas.search.run({space!r}, **{options!r})')


def search(opts: SearchOptions, explicit: set[str], command: str) -> RunFolder:
    """The search behind the CLI and `run()`; `explicit` names the options given (not defaults)."""
    try:
        run_folder, opts, resumed = _resolve_run(opts, explicit)
    except (SpaceError, DataError, RunError) as e:
        raise UsageError(str(e)) from None
    existed = run_folder.path.exists()
    try:
        return _search(run_folder, opts.checked(), resumed, command)
    except (UsageError, SpaceError, DataError, RunError) as e:
        if not resumed and run_folder.exists() and not run_folder.trials():  # a new run that never started
            for path in ([run_folder.path] if not existed else list(run_folder.path.iterdir())):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        if run_folder.exists():
            print(f'\ninterrupted; continue with: python -m nas.search --resume {run_folder.path}', file=sys.stderr)
        raise


def _resolve_run(opts: SearchOptions, explicit: set[str]) -> tuple[RunFolder, SearchOptions, bool]:
    """The run folder and the effective options: new, or resumed with its stored options."""
    if opts.resume is None:
        name = opts.name or datetime.now().strftime('%Y%m%d-%H%M%S')
        folder = RunFolder(opts.results_dir / name)
        if folder.exists() or (folder.path.exists() and any(folder.path.iterdir())):
            raise UsageError(f'{folder.path}: a run folder of that name exists; continue it with --resume '
                             f'{folder.path}, or pick another --name')
        return folder, opts, False
    folder = RunFolder(opts.resume)
    if not folder.path.is_dir() and not Path(opts.resume).is_absolute():
        folder = RunFolder(opts.results_dir / opts.resume)
    folder.require()
    stored = folder.config().options
    given = opts.to_dict()
    changed = sorted(k for k in explicit - RESUMABLE if k in stored and given[k] != stored[k])
    if changed:
        raise UsageError(f"--resume: cannot change {', '.join('--' + k.replace('_', '-') for k in changed)} "
                         f"of an existing run ({folder.path}); only resources and budgets may change")
    merged = {**stored, **{k: v for k, v in given.items() if k in explicit or k not in stored}}
    merged['resume'] = str(folder.path)
    return folder, SearchOptions.from_dict({k: v for k, v in merged.items() if k in given}), True


def _gpus(opts: SearchOptions) -> tuple[float, float | None]:
    """GPUs per trial (for auto: its smallest share) and, for auto, the GPUs' memory in MB."""
    if opts.gpus_per_trial is None:
        return (1.0 if torch.cuda.is_available() else 0.0), None
    if opts.gpus_per_trial != 'auto':
        try:
            return float(opts.gpus_per_trial), None
        except ValueError:
            raise UsageError(f"--gpus-per-trial: a number or auto, got {opts.gpus_per_trial!r}") from None
    memory = opts.gpu_memory_mb
    if memory is None:
        if not torch.cuda.is_available():
            raise UsageError('--gpus-per-trial auto: no GPU here to measure; give --gpu-memory-mb (the memory of '
                             "the cluster's GPUs)")
        memory = torch.cuda.get_device_properties(0).total_memory / 2 ** 20
    if memory <= 0:
        raise UsageError(f'--gpu-memory-mb must be positive, got {memory:g}')
    from nas.raytune import GPU_GRID

    return 1 / GPU_GRID, float(memory)


def _proxy(space: SearchSpace, opts: SearchOptions) -> ProxyConfig:
    """The space's proxy with the command line's overrides, checked by the same rules."""
    changes: dict[str, Any] = {k: getattr(opts, k) for k in PROXY_OPTIONS if getattr(opts, k) is not None}
    if 'subset' in changes:
        changes['subset'] = int(changes['subset']) if changes['subset'] > 1 else float(changes['subset'])
    try:
        return replace(space.proxy, **changes).checked()
    except ProxyError as e:
        flag = f'--{e.key.replace("_", "-")}' if e.key in changes else f'{space.path}: proxy.{e.key}'
        raise UsageError(f'{flag}: {e.msg}') from None


def _hypervolume_scale(space: SearchSpace, num_classes: int, objectives: list[str]) -> dict[str, float]:
    """Per cost objective: twice the most expensive reference point (fixed for the run)."""
    from nas.cost import measure_cost

    costs = [measure_cost(arch, num_classes=num_classes, latency='latency' in objectives,
                          memory='memory' in objectives, warmup=2, repeats=5).to_dict()
             for arch in space.reference_points().values()]
    key = {'latency': 'latency_ms', 'memory': 'peak_memory_mb'}
    return {o: 2.0 * max(float(c[key.get(o, o)] or 0.0) for c in costs) or 1.0 for o in objectives if o != 'accuracy'}


def _new_config(folder: RunFolder, opts: SearchOptions, space: SearchSpace, proxy: ProxyConfig, data: Dataset,
                gpus: float, command: str) -> RunConfig:
    return RunConfig(
        name=folder.path.name, created=datetime.now(timezone.utc).isoformat(timespec='seconds'), command=command,
        objectives=opts.objectives, sampler=opts.sampler, seed=opts.seed, limits=opts.limits,
        space_file=str(opts.space), space_fingerprint=space.fingerprint,
        space_size=space.size if math.isfinite(space.size) else 'infinite', space=space.to_dict(), proxy=proxy,
        data=DataInfo.of(data), references={name: a.arch_id for name, a in space.reference_points().items()},
        hypervolume_scale=_hypervolume_scale(space, data.num_classes, opts.objectives), versions=package_versions(),
        device='cuda: ' + torch.cuda.get_device_name(0) if gpus > 0 and torch.cuda.is_available() else 'cpu',
        options=opts.to_dict())


def _open_study(folder: RunFolder, opts: SearchOptions, space: SearchSpace,
                known: set[str]) -> tuple[optuna.Study, int]:
    """The run's Optuna study (created, or loaded to resume) with the reference points not yet
    evaluated queued first. Trials a killed process left running or queued are told FAIL, so
    samplers ignore them; returns how many."""
    study = optuna.create_study(study_name=STUDY_NAME, storage=folder.storage(), load_if_exists=True,
                                directions=pareto.directions(opts.objectives),
                                sampler=make_sampler(opts.sampler, opts.seed, opts.budget))
    stale = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        stale += 1
    for _ in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # ask() takes the queued ones first
        stale += 1
    for arch in space.reference_points().values():
        if arch.arch_id not in known:
            study.enqueue_trial(space.params_of(arch))
    return study, stale


def _search(folder: RunFolder, opts: SearchOptions, resumed: bool, command: str) -> RunFolder:
    if not opts.space.exists() and not opts.space.is_absolute() and (PROJECT / opts.space).exists():
        opts.space = PROJECT / opts.space  # the shipped spaces, from any working directory
    space = load_space(opts.space)
    proxy = _proxy(space, opts)
    gpus, gpu_memory = _gpus(opts)
    if resumed and folder.config().space_fingerprint != space.fingerprint:
        raise UsageError(f'--resume: the search space changed since {folder.path} started ({opts.space} now has '
                         f'fingerprint {space.fingerprint}, the run used {folder.config().space_fingerprint}); '
                         f'start a new run for a new space')
    data = proxy.load_data(opts.data_dir, seed=opts.seed)
    if data.in_chans != space.in_chans:
        raise UsageError(f'{opts.space}: in_chans is {space.in_chans} but dataset {data.name} has {data.in_chans} '
                         f'channel(s); set in_chans: {data.in_chans} in the space or pick another --dataset')
    if resumed:
        config = folder.config()
        config.options = opts.to_dict()
    else:
        config = _new_config(folder, opts, space, proxy, data, gpus, command)
    folder.write_config(config)

    records = folder.trials()
    archs = aggregate(records)
    remaining = opts.budget - len(archs)
    wanting = [a for a, n in pareto.race_targets(archs, opts.objectives, seed_std(archs), repeats=opts.repeats,
                                                 race=opts.race, band=False) if a.seeds < n]
    if remaining <= 0 and not wanting:
        print(f'{folder.path}: {len(archs)} architectures done, budget {opts.budget} reached')
        print(front_report(folder))
        return folder
    study, stale = _open_study(folder, opts, space, {a.arch_id for a in archs})
    if resumed:
        print(f'resuming {folder.path}: {len(archs)} architectures done, {max(0, remaining)} to go'
              + (f' ({stale} interrupted trials marked failed in the study)' if stale else ''))
    size = 'infinitely many' if not math.isfinite(space.size) else f'{int(space.size):,}'
    print(f"{folder.path}: {data.summary()}; space {space.name} ({size} architectures); objectives "
          f"{', '.join(opts.objectives)}; sampler {opts.sampler}, seed {opts.seed}", flush=True)

    from nas.raytune import TuneJob, run_tune
    from nas.trial import TrialSettings

    def on_cluster(cluster: dict[str, Any]) -> None:
        cfg = folder.config()
        cfg.ray = cluster
        folder.write_config(cfg)

    settings = TrialSettings(proxy=proxy, num_classes=data.num_classes, limits=opts.limits,
                             device='cuda' if gpus > 0 else 'cpu')
    outcome = run_tune(TuneJob(
        run=folder, study=study, space=space, data=data, settings=settings, objectives=opts.objectives,
        limits=opts.limits, seed=opts.seed, budget=opts.budget, history=records, repeats=opts.repeats,
        race=opts.race, race_share=opts.race_share, gpu_memory_mb=gpu_memory,
        references={a.arch_id: name for name, a in space.reference_points().items()},
        cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=gpus, max_concurrent=opts.max_concurrent,
        address=opts.address, time_budget=opts.time_budget, early_stop=opts.early_stop,
        max_failures=opts.max_failures, quiet=opts.quiet), on_cluster=on_cluster)
    done = len(aggregate(folder.trials()))
    if outcome.reevaluations:
        print(f'{outcome.reevaluations} re-evaluations with new seeds (the front and the points within its noise)')
    if outcome.duplicates:
        print(f'{outcome.duplicates} proposals of already evaluated architectures were not trained again; '
              f'{outcome.random_injections} random unseen architectures were tried instead')
    if outcome.exhausted:
        print('the space is exhausted: random draws found no architecture not yet evaluated')
    elif opts.max_failures is not None and outcome.failures > opts.max_failures:
        print(f'stopped: {outcome.failures} failed trials, more than --max-failures {opts.max_failures}')
    elif done < opts.budget:
        print(f'stopped at {done}/{opts.budget} architectures; continue with: python -m nas.search --resume {folder.path}')
    print(front_report(folder))
    return folder


# --------------------------------------------------------------------------- command line

def build_parser(explicit_only: bool = False) -> argparse.ArgumentParser:
    """The command line; with `explicit_only`, options not given are absent from the parse."""
    d = SearchOptions()

    def dflt(name: str) -> Any:
        return argparse.SUPPRESS if explicit_only else getattr(d, name)

    p = argparse.ArgumentParser(prog='python -m nas.search', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group('what to search')
    g.add_argument('--budget', type=int, default=dflt('budget'),
                   help='trials (distinct architectures) to evaluate')
    g.add_argument('--time-budget', type=float, default=dflt('time_budget'),
                   help='stop starting trials after this many seconds')
    g.add_argument('--space', type=Path, default=dflt('space'), help='search-space YAML')
    g.add_argument('--objectives', nargs='+', default=dflt('objectives'),
                   help=f"accuracy plus one or more of {', '.join(COSTS)} (space- or comma-separated)")
    g.add_argument('--max-macs', type=float, default=dflt('max_macs'), help='hard limit on MACs per image')
    g.add_argument('--max-params', type=float, default=dflt('max_params'), help='hard limit on parameters')
    g.add_argument('--max-latency-ms', type=float, default=dflt('max_latency_ms'),
                   help='hard limit on latency (batch 1)')
    g.add_argument('--sampler', choices=SAMPLERS, default=dflt('sampler'), help='Optuna sampler')
    g.add_argument('--seed', type=int, default=dflt('seed'), help='seeds the sampler, data split and every proxy training')
    g.add_argument('--repeats', type=int, default=dflt('repeats'),
                   help='evaluate every architecture with this many seeds (its mean and standard error rank it)')
    g.add_argument('--race', type=int, default=dflt('race'),
                   help="racing: evaluate the front's points, and those within its noise, with this many seeds "
                        "(1: off); re-evaluations come on top of --budget")
    g.add_argument('--race-share', type=float, default=dflt('race_share'),
                   help="re-evaluations of points within the front's noise (beyond the front's own), at most this "
                        "share of --budget")
    g.add_argument('--early-stop', action='store_true', default=dflt('early_stop'),
                   help='stop weak trials early (ASHA on validation accuracy); stopped trials never enter the front')
    g = p.add_argument_group("proxy training (defaults: the space file's proxy section)")
    g.add_argument('--dataset', default=dflt('dataset'),
                   help='digits | cifar10 | cifar100 | mnist | fashion-mnist | imagefolder')
    g.add_argument('--data-dir', type=Path, default=dflt('data_dir'), help='folder with the dataset as distributed')
    g.add_argument('--epochs', type=int, default=dflt('epochs'), help='proxy epochs per trial')
    g.add_argument('--subset', type=float, default=dflt('subset'),
                   help='training images per trial: a count (>1) or a fraction')
    g.add_argument('--batch-size', type=int, default=dflt('batch_size'), help='proxy batch size')
    g = p.add_argument_group('resources')
    g.add_argument('--cpus-per-trial', type=float, default=dflt('cpus_per_trial'),
                   help='CPUs per trial (torch threads)')
    g.add_argument('--gpus-per-trial', default=dflt('gpus_per_trial'),
                   help='GPUs per trial, fractions allowed, or auto: each trial gets the share of a GPU its measured '
                        'training memory needs (steps of 1/8), and one that runs out of memory is retried once on a '
                        'whole GPU; default: 1 when CUDA is present, else 0')
    g.add_argument('--gpu-memory-mb', type=float, default=dflt('gpu_memory_mb'),
                   help="with --gpus-per-trial auto: the memory of the cluster's GPUs; default: this machine's GPU")
    g.add_argument('--max-concurrent', type=int, default=dflt('max_concurrent'),
                   help='trials at once; default: as resources allow')
    g.add_argument('--address', default=dflt('address'),
                   help="join an existing Ray cluster ('auto' or host:port); default: a local Ray for this run")
    g.add_argument('--max-failures', type=int, default=dflt('max_failures'),
                   help='stop the search after more failed trials than this')
    g = p.add_argument_group('run folder')
    g.add_argument('--name', default=dflt('name'), help='run folder name under --results-dir; default: a timestamp')
    g.add_argument('--results-dir', type=Path, default=dflt('results_dir'), help='where run folders go')
    g.add_argument('--resume', default=dflt('resume'), metavar='RUN',
                   help='continue RUN (a run folder, or its name under --results-dir) to its budget')
    g.add_argument('--quiet', action='store_true', default=dflt('quiet'), help='no progress lines')
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = SearchOptions.from_dict(vars(build_parser().parse_args(argv)))
    explicit = set(vars(build_parser(explicit_only=True).parse_args(argv)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        search(opts, explicit, command='python -m nas.search ' + ' '.join(argv))
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == '__main__':  # run as nas.search, so that nas.raytune's UsageError is this module's class
    from nas.search import main as _main

    sys.exit(_main())
