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
import errno
import math
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import torch

from nas import pareto
from nas.cli import EXIT_INTERRUPTED, EXIT_USAGE, ArgumentParser, amount
from nas.data import DataError, Dataset
from nas.pareto import COSTS, OBJECTIVES
from nas.results import STUDY_NAME, DataInfo, RunConfig, RunError, RunFolder, TrialRecord, package_versions
from nas.space import SearchSpace, SpaceError, load_space
from nas.train import ProxyConfig, ProxyError

__all__ = ['run', 'main', 'SearchOptions', 'UsageError', 'make_sampler', 'print_front']

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_SPACE = Path('search_spaces/digits.yaml')
SAMPLERS = ('tpe', 'nsga2', 'nsga3', 'gp', 'random')
# Options a resumed run may change; the others define the search and must stay as they were.
RESUMABLE = {'budget', 'time_budget', 'cpus_per_trial', 'gpus_per_trial', 'max_concurrent', 'address',
             'max_failures', 'resume', 'results_dir', 'quiet', 'data_dir'}
LIMIT_OPTIONS = {'max_macs': 'macs', 'max_params': 'params', 'max_latency_ms': 'latency'}
PROXY_OPTIONS = ('dataset', 'epochs', 'batch_size', 'subset')
# A trial that trains on more images x epochs than this takes minutes rather than seconds on a CPU:
# the digits proxy (1,150 images x 10 epochs) takes 2-6 s on 2 cores, and Fashion-MNIST from disk
# (48,000 x 10) 1.5-7 min, so 100,000 is about a minute a trial for the small spaces.
LONG_TRIAL = 100_000
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


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
    early_stop: bool = False
    dataset: str | None = None  # proxy overrides; None: the space file's proxy section
    data_dir: Path | None = None
    epochs: int | None = None
    subset: float | None = None
    batch_size: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 when CUDA is present, else 0
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
        """These options with objectives and amounts parsed, or UsageError naming the first bad one.
        Needs neither the space nor Ray: everything here is refused before anything starts."""
        objectives = _parse_objectives(self.objectives)
        if not _is_int(self.budget) or self.budget < 1:
            raise UsageError(f'--budget must be at least 1, got {self.budget!r}')
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler: unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if not _is_int(self.seed) or self.seed < 0:
            raise UsageError(f'--seed must be an int >= 0, got {self.seed!r}')
        if self.time_budget is not None and not _positive(self.time_budget):
            raise UsageError(f'--time-budget must be a number of seconds > 0, got {self.time_budget!r}')
        limits = {}
        for key in LIMIT_OPTIONS:
            value = getattr(self, key)
            if value is None:
                continue
            try:
                limits[key] = amount(value)
            except argparse.ArgumentTypeError as e:
                raise UsageError(f'--{_flag(key)}: {e}') from None
            if limits[key] <= 0:
                raise UsageError(f'--{_flag(key)} must be > 0, got {value!r}')
        if not _positive(self.cpus_per_trial):
            raise UsageError(f'--cpus-per-trial must be positive, got {self.cpus_per_trial!r}')
        if self.gpus_per_trial is not None and not (_positive(self.gpus_per_trial) or self.gpus_per_trial == 0):
            raise UsageError(f'--gpus-per-trial must be a number >= 0, got {self.gpus_per_trial!r}')
        for key, low in (('max_concurrent', 1), ('max_failures', 0)):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < low):
                raise UsageError(f'--{_flag(key)} must be an int >= {low}, got {value!r}')
        if self.name is not None:
            name = str(self.name)
            if name in ('', '.', '..') or any(c in name for c in ('/', '\\', '\0', os.sep)):
                raise UsageError(f'--name {name!r}: give a plain folder name (no "/", no ".."); '
                                 f'the run folder goes under --results-dir')
        # the proxy overrides, by ProxyConfig's own rules (the space's proxy is checked once loaded)
        changes = _proxy_changes(self)
        try:
            replace(ProxyConfig(), **changes).checked()
        except ProxyError as e:
            if e.key in changes:
                raise UsageError(f'--{_flag(e.key)}: {e.msg}') from None
        return replace(self, objectives=objectives, **limits)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _flag(key: str) -> str:
    return key.replace('_', '-')


def _proxy_changes(opts: SearchOptions) -> dict[str, Any]:
    """The proxy settings the options override: --subset as a count (> 1) or a fraction."""
    changes: dict[str, Any] = {k: getattr(opts, k) for k in PROXY_OPTIONS if getattr(opts, k) is not None}
    subset = changes.get('subset')
    if isinstance(subset, (int, float)) and not isinstance(subset, bool) and math.isfinite(subset) and subset > 1:
        if subset != int(subset):
            raise UsageError(f'--subset: a count of images must be a whole number, got {subset!r}')
        changes['subset'] = int(subset)
    elif isinstance(subset, int) and not isinstance(subset, bool):
        changes['subset'] = float(subset)  # 1 means all of it, as a fraction
    return changes


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
        opts.checked()  # every option given, before a folder is made or Ray starts
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
    except OSError as e:  # a full disk: the run's fault, not a trial's; --resume continues it
        if e.errno in NO_SPACE and e.filename != str(run_folder.path):
            raise OSError(e.errno, f'{e.filename}: {e.strerror}; the search stopped', str(run_folder.path)) from None
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


def _proxy(space: SearchSpace, opts: SearchOptions) -> ProxyConfig:
    """The space's proxy with the command line's overrides, checked by the same rules."""
    changes = _proxy_changes(opts)
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
                records: list[TrialRecord]) -> tuple[optuna.Study, int, int, list[str]]:
    """The run's Optuna study (created, or loaded to resume), made to agree with trials.jsonl, the
    record of what is done, with the reference points not yet evaluated queued first.

    - A study journal that is missing, unreadable (moved aside to study.journal.damaged-<time>)
      or stale (it lacks finished trials that trials.jsonl has) gets those trials added back
      (`optuna.trial.create_trial` + `Study.add_trials`), so the sampler never starts blind.
    - Trials a killed process left running or queued are told FAIL, so samplers ignore them.
    - An architecture the study has seen that trials.jsonl does not record (interrupted, or
      trained when the disk filled up) is queued again, so the resumed search finishes it.

    Returns the study, how many trials were told FAIL, how many are queued again, and one line
    per repair.

    Raises:
        RunError: a finished trial of trials.jsonl that cannot be told to the study.
    """
    notes: list[str] = []
    existed = folder.study_path.is_file()
    try:
        storage = folder.storage()
    except ValueError as e:  # a line broken in the middle: Optuna cannot replay the journal
        side = folder.study_path.with_name(f"{folder.study_path.name}.damaged-{datetime.now():%Y%m%d-%H%M%S}")
        os.replace(folder.study_path, side)
        notes.append(f'{folder.study_path}: unreadable ({" ".join(str(e).split())}); moved to {side.name}')
        existed, storage = False, folder.storage()
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, load_if_exists=True,
                                directions=pareto.directions(opts.objectives),
                                sampler=make_sampler(opts.sampler, opts.seed, opts.budget))
    done = {r.arch_id for r in records}
    told: set[str] = set()  # architectures whose end the study knows
    again: dict[str, dict[str, Any]] = {}  # seen by the study, not recorded: arch id -> params
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for t in study.get_trials(deepcopy=False):
        if 'duplicate_of' in t.user_attrs or not t.params:
            continue
        try:
            arch_id = t.user_attrs.get('arch_id') or space.sample(optuna.trial.FixedTrial(t.params)).arch_id
        except (ValueError, SpaceError):
            continue
        if t.state in finished or (t.state == optuna.trial.TrialState.FAIL and 'status' in t.user_attrs):
            told.add(arch_id)
        if arch_id not in done:
            again.setdefault(arch_id, dict(t.params))
    missing = [r for r in records if r.arch_id not in told]
    if missing:
        study.add_trials([_trial_of(r, space, opts, folder) for r in missing])
        why = 'missing' if not existed else f'stale ({len(missing)} of the {len(records)} finished trials absent)'
        notes.append(f'{folder.study_path}: {why}; rebuilt from {folder.trials_path.name} '
                     f'({len(missing)} trials told to the study)')
    stale = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        stale += 1
    for _ in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # ask() takes the queued ones first
        stale += 1
    for params in again.values():
        study.enqueue_trial(params)
    for arch in space.reference_points().values():
        if arch.arch_id not in done and arch.arch_id not in again:
            study.enqueue_trial(space.params_of(arch))
    return study, stale, len(again), notes


def _trial_of(record: TrialRecord, space: SearchSpace, opts: SearchOptions, folder: RunFolder) -> Any:
    """A finished trial of trials.jsonl as an Optuna FrozenTrial, told as ArchSearcher tells it."""
    from nas.arch import Arch

    state = {'complete': optuna.trial.TrialState.COMPLETE, 'infeasible': optuna.trial.TrialState.COMPLETE,
             'stopped': optuna.trial.TrialState.PRUNED}.get(record.status, optuna.trial.TrialState.FAIL)
    try:
        params = record.optuna_params or space.params_of(Arch.from_dict(record.arch))
        complete = state == optuna.trial.TrialState.COMPLETE
        return optuna.trial.create_trial(
            state=state, params=params, distributions=space.distributions(params),
            values=[float(record.value(o) or 0.0) for o in opts.objectives] if complete else None,
            constraints=dict(zip(sorted(opts.limits), record.constraints)) if complete and opts.limits else None,
            user_attrs={'arch_id': record.arch_id, 'status': record.status, 'epochs': record.epochs,
                        'constraints': list(record.constraints), 'rebuilt_from': folder.trials_path.name})
    except (ValueError, TypeError, SpaceError) as e:
        raise RunError(f'{folder.trials_path}: trial {record.number} ({record.arch_id}) cannot be told to a '
                       f'rebuilt Optuna study ({" ".join(str(e).split())}); not resuming without it') from None


def _search(folder: RunFolder, opts: SearchOptions, resumed: bool, command: str) -> RunFolder:
    typed = opts.space
    if not opts.space.exists() and not opts.space.is_absolute() and (PROJECT / opts.space).exists():
        opts.space = PROJECT / opts.space  # the shipped spaces, from any working directory
    try:
        space = load_space(opts.space)
    except SpaceError as e:  # name the path as the user typed it
        raise SpaceError(typed, e.path, e.msg) from None
    proxy = _proxy(space, opts)
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else (1.0 if torch.cuda.is_available() else 0.0)
    if not opts.address:  # this machine's resources are known before Ray starts
        from nas.raytune import check_resources

        check_resources({'CPU': len(os.sched_getaffinity(0)), 'GPU': torch.cuda.device_count()},
                        opts.cpus_per_trial, gpus, None)
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
    for line in folder.repair():  # a torn tail, temp files of a crash: before anything is appended
        print(line, flush=True)
    folder.write_config(config)

    records = folder.trials()
    remaining = opts.budget - len(records)
    if remaining <= 0:
        print(f'{folder.path}: {len(records)} trials done, budget {opts.budget} reached')
        print_front(folder)
        return folder
    known = {r.arch_id: r for r in records}
    study, stale, again, notes = _open_study(folder, opts, space, records)
    for line in notes:
        print(line, flush=True)
    if resumed:
        print(f'resuming {folder.path}: {len(records)} trials done, {remaining} to go'
              + (f' ({stale} interrupted trials marked failed in the study)' if stale else '')
              + (f'; {again} architectures started but not recorded are evaluated first' if again else ''))
    size = 'infinitely many' if not math.isfinite(space.size) else f'{int(space.size):,}'
    print(f"{folder.path}: {data.summary()}; space {space.name} ({size} architectures); objectives "
          f"{', '.join(opts.objectives)}; sampler {opts.sampler}, seed {opts.seed}", flush=True)
    if not opts.quiet:
        note = long_trial_note(len(data.train_y), proxy.epochs)
        if note:
            print(note, flush=True)

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
        limits=opts.limits, seed=opts.seed, budget=opts.budget, remaining=remaining, known=known,
        references={a.arch_id: name for name, a in space.reference_points().items()},
        cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=gpus, max_concurrent=opts.max_concurrent,
        address=opts.address, time_budget=opts.time_budget, early_stop=opts.early_stop,
        max_failures=opts.max_failures, quiet=opts.quiet), on_cluster=on_cluster)
    if outcome.interrupted:
        raise KeyboardInterrupt  # after Tune's clean stop; search() says how to continue
    if outcome.disk_error is not None:
        e = outcome.disk_error
        raise OSError(e.errno, f'{e.filename or folder.path}: {e.strerror or e}; the search stopped'
                      + (f' ({outcome.unrecorded} trained but not recorded: --resume evaluates it again)'
                         if outcome.unrecorded else ''), str(folder.path))
    done = len(folder.trials())
    if outcome.duplicates:
        print(f'{outcome.duplicates} proposals of already evaluated architectures were not trained again; '
              f'{outcome.random_injections} random unseen architectures were tried instead')
    if outcome.exhausted:
        print('the space is exhausted: random draws found no architecture not yet evaluated')
    elif opts.max_failures is not None and outcome.failures > opts.max_failures:
        print(f'stopped: {outcome.failures} failed trials, more than --max-failures {opts.max_failures}')
    elif done < opts.budget:
        print(f'stopped at {done}/{opts.budget} trials; continue with: python -m nas.search --resume {folder.path}')
    print_front(folder)
    return folder


def long_trial_note(images: int, epochs: int) -> str | None:
    """A line for the start of a search whose trials train long (images x epochs over LONG_TRIAL),
    saying how --subset and --epochs shorten them; None for short trials."""
    if images * epochs <= LONG_TRIAL:
        return None
    subset = max(100, LONG_TRIAL // max(1, epochs) // 100 * 100)
    shorter = [f'--subset {subset:,}'.replace(',', '') if subset < images else '',
               f'--epochs {max(1, LONG_TRIAL // images)}' if epochs > max(1, LONG_TRIAL // images) else '']
    return (f'note: each trial trains on {images:,} images x {epochs} epochs ({images * epochs:,} image-epochs): '
            f'minutes a trial on a CPU; ' + ' or '.join(x for x in shorter if x)
            + f' brings it under {LONG_TRIAL:,} (a proxy ranks architectures; it need not train them fully)')


def print_front(folder: RunFolder) -> None:
    """The run's counts and its Pareto front as a table (and pareto.json rewritten)."""
    records = folder.trials()
    summary = folder.write_pareto()
    counts = {s: sum(r.status == s for r in records) for s in ('complete', 'stopped', 'failed', 'infeasible')}
    print(f"\n{len(records)} trials ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
          f"Pareto front: {len(summary['front'])} architectures"
          + (f", hypervolume {summary['hypervolume']:.4f}" if summary['hypervolume'] is not None else ''))
    by_number = {r.number: r for r in records}
    print(f"  {'arch id':12}  {'accuracy':>8}  {'MACs':>10}  {'params':>9}  {'latency':>9}  acmix  reference")
    from nas.arch import Arch

    for row in summary['front']:
        r = by_number[row['number']]
        lat = f'{r.latency_ms:.2f}ms' if r.latency_ms is not None else '-'
        print(f"  {r.arch_id:12}  {r.accuracy:8.4f}  {r.macs / 1e6:9.3f}M  {r.params / 1e3:8.1f}k  {lat:>9}  "
              f"{Arch.from_dict(r.arch).num_acmix:5}  {r.reference or ''}")
    print(f'\nrun folder: {folder.path}   dashboard: python -m nas.dashboard {folder.path}')


# --------------------------------------------------------------------------- command line

def build_parser(explicit_only: bool = False) -> argparse.ArgumentParser:
    """The command line; with `explicit_only`, options not given are absent from the parse."""
    d = SearchOptions()

    def dflt(name: str) -> Any:
        return argparse.SUPPRESS if explicit_only else getattr(d, name)

    p = ArgumentParser(prog='python -m nas.search', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group('what to search')
    g.add_argument('--budget', type=int, default=dflt('budget'),
                   help='trials (distinct architectures) to evaluate')
    g.add_argument('--time-budget', type=float, default=dflt('time_budget'),
                   help='stop starting trials after this many seconds')
    g.add_argument('--space', type=Path, default=dflt('space'), help='search-space YAML')
    g.add_argument('--objectives', nargs='+', default=dflt('objectives'),
                   help=f"accuracy plus one or more of {', '.join(COSTS)} (space- or comma-separated)")
    g.add_argument('--max-macs', type=amount, default=dflt('max_macs'), help='hard limit on MACs per image (2e6, 2M)')
    g.add_argument('--max-params', type=amount, default=dflt('max_params'), help='hard limit on parameters (50k)')
    g.add_argument('--max-latency-ms', type=amount, default=dflt('max_latency_ms'),
                   help='hard limit on latency (batch 1)')
    g.add_argument('--sampler', choices=SAMPLERS, default=dflt('sampler'), help='Optuna sampler')
    g.add_argument('--seed', type=int, default=dflt('seed'), help='seeds the sampler, data split and every proxy training')
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
    g.add_argument('--gpus-per-trial', type=float, default=dflt('gpus_per_trial'),
                   help='GPUs per trial, fractions allowed; default: 1 when CUDA is present, else 0')
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
    g.add_argument('--quiet', action='store_true', default=dflt('quiet'),
                   help='no progress: neither the line per trial nor the status of running trials')
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
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        print(f'error: {e.strerror}; free some space, then continue with: python -m nas.search --resume '
              f'{e.filename}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':  # run as nas.search, so that nas.raytune's UsageError is this module's class
    from nas.search import main as _main

    sys.exit(_main())
