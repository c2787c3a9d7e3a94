"""`python -m nas.search`: multi-objective architecture search with Optuna samplers on Ray Tune.

    python -m nas.search --budget 100                       # symmetry task, accuracy vs MACs, on this machine
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
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import torch

from nas import pareto
from nas.cli import EXIT_INTERRUPTED, EXIT_USAGE, ArgumentParser, amount
from nas.data import DataError, Dataset
from nas.options import RESUMABLE, SAMPLERS, SearchOptions, UsageError, proxy_changes
from nas.pareto import COSTS
from nas.report import front_report, long_trial_note, proxy_note
from nas.results import DataInfo, RunConfig, RunError, RunFolder, aggregate, package_versions, seed_std
from nas.space import SearchSpace, SpaceError, load_space
from nas.study import StudySource, open_study
from nas.train import ProxyConfig, ProxyError

__all__ = ['run', 'main', 'SearchOptions', 'UsageError']

PROJECT = Path(__file__).resolve().parent.parent
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


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


def _gpus(opts: SearchOptions) -> tuple[float, float | None]:
    """GPUs per trial (for auto: its smallest share) and, for auto, the GPUs' memory in MB.
    The options are checked already (a number >= 0, 'auto' or None)."""
    if opts.gpus_per_trial is None:
        return (1.0 if torch.cuda.is_available() else 0.0), None
    if opts.gpus_per_trial != 'auto':
        return float(opts.gpus_per_trial), None
    memory = opts.gpu_memory_mb
    if memory is None:
        if not torch.cuda.is_available():
            raise UsageError('--gpus-per-trial auto: no GPU here to measure; give --gpu-memory-mb (the memory of '
                             "the cluster's GPUs)")
        memory = torch.cuda.get_device_properties(0).total_memory / 2 ** 20
    from nas.raytune import GPU_GRID

    return 1 / GPU_GRID, float(memory)


def _proxy(space: SearchSpace, opts: SearchOptions) -> tuple[ProxyConfig, dict[str, Any]]:
    """The space's proxy (or the --proxy file's) with the command line's overrides, checked by the
    same rules, and the --proxy file's calibration ({} without one)."""
    from nas.calibrate import load_proxy_file

    base, calibration = (space.proxy, {}) if opts.proxy is None else load_proxy_file(opts.proxy)
    changes = proxy_changes(opts)
    try:
        proxy = replace(base, **changes).checked()
    except ProxyError as e:
        where = f'{opts.proxy}' if opts.proxy is not None else f'{space.path}'
        flag = f'--{e.key.replace("_", "-")}' if e.key in changes else f'{where}: proxy.{e.key}'
        raise UsageError(f'{flag}: {e.msg}') from None
    return proxy, ({'file': str(opts.proxy), **calibration} if opts.proxy is not None else {})


def _hypervolume_scale(space: SearchSpace, num_classes: int, objectives: list[str]) -> dict[str, float]:
    """Per cost objective: twice the most expensive reference point (fixed for the run)."""
    from nas.cost import measure_cost

    costs = [measure_cost(arch, num_classes=num_classes, latency='latency' in objectives,
                          memory='memory' in objectives, warmup=2, repeats=5).to_dict()
             for arch in space.reference_points().values()]
    key = {'latency': 'latency_ms', 'memory': 'peak_memory_mb'}
    return {o: 2.0 * max(float(c[key.get(o, o)] or 0.0) for c in costs) or 1.0 for o in objectives if o != 'accuracy'}


def _new_config(folder: RunFolder, opts: SearchOptions, space: SearchSpace, proxy: ProxyConfig, data: Dataset,
                gpus: float, command: str, calibration: dict[str, Any]) -> RunConfig:
    return RunConfig(
        name=folder.path.name, created=datetime.now(timezone.utc).isoformat(timespec='seconds'), command=command,
        objectives=opts.objectives, sampler=opts.sampler, seed=opts.seed, limits=opts.limits,
        space_file=str(opts.space), space_fingerprint=space.fingerprint,
        space_size=space.size if math.isfinite(space.size) else 'infinite', space=space.to_dict(), proxy=proxy,
        data=DataInfo.of(data), references={name: a.arch_id for name, a in space.reference_points().items()},
        hypervolume_scale=_hypervolume_scale(space, data.num_classes, opts.objectives), versions=package_versions(),
        device='cuda: ' + torch.cuda.get_device_name(0) if gpus > 0 and torch.cuda.is_available() else 'cpu',
        options=opts.to_dict(), calibration=calibration)


def _search(folder: RunFolder, opts: SearchOptions, resumed: bool, command: str) -> RunFolder:
    typed = opts.space
    if not opts.space.exists() and not opts.space.is_absolute() and (PROJECT / opts.space).exists():
        opts.space = PROJECT / opts.space  # the shipped spaces, from any working directory
    try:
        space = load_space(opts.space)
    except SpaceError as e:  # name the path as the user typed it
        raise SpaceError(typed, e.path, e.msg) from None
    proxy, calibration = _proxy(space, opts)
    gpus, gpu_memory = _gpus(opts)  # for auto: its smallest share of a GPU
    if not opts.address:  # this machine's resources are known before Ray starts
        from nas.raytune import check_resources

        check_resources({'CPU': len(os.sched_getaffinity(0)), 'GPU': torch.cuda.device_count()},
                        opts.cpus_per_trial, gpus, None)
    if resumed and folder.config().space_fingerprint != space.fingerprint:
        raise UsageError(f'--resume: the search space changed since {folder.path} started ({opts.space} now has '
                         f'fingerprint {space.fingerprint}, the run used {folder.config().space_fingerprint}); '
                         f'start a new run for a new space')
    if resumed and opts.proxy is not None and folder.config().proxy != proxy:
        raise UsageError(f'--resume: the proxy in {opts.proxy} changed since {folder.path} started; start a new run '
                         f'for a new proxy')
    data = proxy.load_data(opts.data_dir, seed=opts.seed)
    if data.in_chans != space.in_chans:
        raise UsageError(f'{opts.space}: in_chans is {space.in_chans} but dataset {data.name} has {data.in_chans} '
                         f'channel(s); set in_chans: {data.in_chans} in the space or pick another --dataset')
    if resumed:
        config = folder.config()
        config.options = opts.to_dict()
    else:
        config = _new_config(folder, opts, space, proxy, data, gpus, command, calibration)
    for line in folder.repair():  # a torn tail, temp files of a crash: before anything is appended
        print(line, flush=True)
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
    study, stale, again, notes = open_study(folder, opts, space, records)
    for line in notes:
        print(line, flush=True)
    if resumed:
        print(f'resuming {folder.path}: {len(archs)} architectures done, {max(0, remaining)} to go'
              + (f' ({stale} interrupted trials marked failed in the study)' if stale else '')
              + (f'; {again} architectures started but not recorded are evaluated first' if again else ''))
    size = 'infinitely many' if not math.isfinite(space.size) else f'{int(space.size):,}'
    print(f"{folder.path}: {data.summary()}; space {space.name} ({size} architectures); objectives "
          f"{', '.join(opts.objectives)}; sampler {opts.sampler}, seed {opts.seed}", flush=True)
    if opts.sampler == 'gp' and space.conditional:
        print('note: --sampler gp models only the parameters every architecture has; this space\'s '
              'conditional ones (the settings of ACmix or conv blocks, the blocks of searched depths) '
              'it draws at random. tpe models each of them.', flush=True)
    note = proxy_note(space, opts, proxy, calibration)
    if note:
        print(note, flush=True)
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
        run=folder, study=study, study_source=StudySource.of(folder, opts), space=space, data=data, settings=settings, objectives=opts.objectives,
        limits=opts.limits, seed=opts.seed, budget=opts.budget, history=records, repeats=opts.repeats,
        race=opts.race, race_share=opts.race_share, gpu_memory_mb=gpu_memory,
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
    g.add_argument('--proxy', type=Path, default=dflt('proxy'), metavar='FILE',
                   help="a proxy fitted to your data by python -m nas.calibrate (its proxy.yaml) in place of the "
                        "space file's proxy section; the flags below still override it")
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


if __name__ == '__main__':
    sys.exit(main())
