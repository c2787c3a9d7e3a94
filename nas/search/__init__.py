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
on the validation split) inside Ray Tune (`nas.search.raytune`). The space's reference points (all-conv,
all-ACmix, the paper's placement) are evaluated first. Everything lands in results/<run>/ (see
nas/run/folder.py), with trials.jsonl as the record of what is done.

This module is the set-up: options, the run folder and run.yaml, resume, the study, the printout.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from nas.cli import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    ArgumentParser,
    Terminated,
    amount,
    shell_command,
    stop_on_sigterm,
)
from nas.data import DataError, Dataset
from nas.errors import UsageError
from nas.proxy import ProxyConfig, ProxyError
from nas.run import pareto
from nas.run.folder import RUN_YAML, DataInfo, RunConfig, RunError, RunFolder, aggregate, package_versions, seed_std
from nas.run.ladder import rung_of
from nas.run.lock import LOCK_FILE, RunLock, RunLocked
from nas.run.pareto import COSTS
from nas.search.options import RESUMABLE, SAMPLERS, SearchOptions, proxy_changes
from nas.search.promote import add_promote_arguments, check_lines, promote, run_ladder
from nas.search.report import front_report, long_trial_note, proxy_note, small_data_note
from nas.search.study import open_study
from nas.space import SearchSpace, SpaceError, load_space

if TYPE_CHECKING:
    from nas.run.record import TrialRecord
    from nas.search.raytune import TuneOutcome
    from nas.search.study import RunStudy

__all__ = ['run', 'main', 'SearchOptions', 'UsageError']

PROJECT = Path(__file__).resolve().parents[2]
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
    claim = _Claim(run_folder, resumed, command)
    try:
        if claim.existed:  # a run folder in use is refused at once, before anything loads
            claim()
        return _search(run_folder, opts.checked(), resumed, command, claim)
    except (UsageError, SpaceError, DataError, RunError) as e:
        claim.undo()
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        if run_folder.exists() and claim.made:
            signal_name = 'SIGTERM' if isinstance(sys.exc_info()[1], Terminated) else 'Ctrl-C'
            print(
                f'\ninterrupted ({signal_name}); nothing recorded is lost; continue with: '
                f'{resume_command(run_folder.path)}',
                file=sys.stderr,
            )
        raise
    except OSError as e:  # a full disk, a folder gone read-only: the run's fault, not a trial's
        where = e.filename if e.filename and e.filename != str(run_folder.path) else run_folder.path
        if claim.undo():  # a new run that recorded nothing: nothing to continue
            raise UsageError(f'{where}: {e.strerror or e}; nothing was recorded') from None
        if e.filename == str(run_folder.path):  # _search's own line (a full disk during the run)
            raise
        raise OSError(e.errno, f'{where}: {e.strerror or e}; the search stopped', str(run_folder.path)) from None
    finally:
        claim.stack.close()
        claim.lock.release()


def resume_command(path: str | Path) -> str:
    """The command that continues a run, ready to paste into a shell."""
    return shell_command('search', '--resume', path)


class _Claim:
    """Taking a run folder for this process: its lock (`nas.run.lock`), taken when the folder exists
    (a resume) or right before a new run writes its first file; `undo` removes a new run that
    recorded nothing."""

    def __init__(self, folder: RunFolder, resumed: bool, command: str):
        self.folder, self.resumed = folder, resumed
        self.existed = folder.path.exists()
        self.lock = RunLock(folder.path, command=command, resume=resume_command(folder.path))
        self.made = False  # this process holds the lock and the folder is its run
        self.stack = contextlib.ExitStack()  # what lives as long as the claim: a joined Ray cluster

    def __call__(self) -> None:
        if self.made:
            return
        try:
            note = self.lock.acquire()
        except RunLocked:
            raise
        except RunError:  # a new run's folder that could not be written (a full disk): not left behind
            if not self.existed:
                with contextlib.suppress(OSError):
                    if not self.lock.path.stat().st_size:  # no holder described in it: ours
                        self.lock.path.unlink()
                    self.folder.path.rmdir()  # only if nothing else is in it
            raise
        if note:
            print(note, flush=True)
        if not self.resumed:  # a new run: the name may have been taken while this one set up
            taken = sorted(p.name for p in self.folder.path.iterdir() if p.name != LOCK_FILE)
            if taken:
                self.lock.release()
                raise UsageError(_name_taken(self.folder))
        self.made = True

    def undo(self) -> bool:
        """Remove a new run that recorded nothing (what this process made of it); True if it did."""
        if self.resumed or not self.made:
            return False
        try:
            if self.folder.trials():
                return False
        except RunError:
            return False
        for path in [self.folder.path] if not self.existed else list(self.folder.path.iterdir()):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return True


def _name_taken(folder: RunFolder) -> str:
    return (
        f'{folder.path}: a run folder of that name exists; continue it with: {resume_command(folder.path)}, '
        f'or pick another --name'
    )


def _resolve_run(opts: SearchOptions, explicit: set[str]) -> tuple[RunFolder, SearchOptions, bool]:
    """The run folder and the effective options: new, or resumed with its stored options."""
    if opts.resume is None:
        name = opts.name or datetime.now().strftime('%Y%m%d-%H%M%S')
        folder = RunFolder(opts.results_dir / name)
        _check_writable(opts.results_dir, folder.path)
        if folder.exists() or (folder.path.exists() and any(p.name != LOCK_FILE for p in folder.path.iterdir())):
            raise UsageError(_name_taken(folder))
        return folder, opts, False
    given = Path(opts.resume)
    folder = RunFolder(given)
    if not given.is_dir() and not given.is_absolute() and (opts.results_dir / given).is_dir():
        folder = RunFolder(opts.results_dir / given)  # a run's name under --results-dir
    if not folder.path.is_dir():
        raise UsageError(
            f'--resume {opts.resume}: no such run folder'
            + (f' (nor {opts.results_dir / given})' if not given.is_absolute() else '')
        )
    folder.require()
    stored = folder.config().options
    given_opts = opts.to_dict()
    changed = sorted(k for k in explicit - RESUMABLE if k in stored and given_opts[k] != stored[k])
    if changed:
        raise UsageError(
            f"--resume: cannot change {', '.join('--' + k.replace('_', '-') for k in changed)} "
            f"of an existing run ({folder.path}); only resources and budgets may change"
        )
    merged = {**stored, **{k: v for k, v in given_opts.items() if k in explicit or k not in stored}}
    merged['resume'] = str(folder.path)
    return folder, SearchOptions.from_dict({k: v for k, v in merged.items() if k in given_opts}), True


def _check_writable(results_dir: Path, path: Path) -> None:
    """A new run folder can be made at `path`: its nearest existing ancestor is a writable folder."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path and not path.is_dir():
        raise UsageError(f'{path}: exists and is not a folder; pick another --name')
    if not existing.is_dir():
        raise UsageError(f'--results-dir {results_dir}: {existing} is a file, not a folder')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f'--results-dir {results_dir}: cannot write in {existing} '
            f'({os.strerror(errno.EROFS) if _read_only(existing) else os.strerror(errno.EACCES)})'
        )


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


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
            raise UsageError(
                '--gpus-per-trial auto: no GPU here to measure; give --gpu-memory-mb (the memory of '
                "the cluster's GPUs)"
            )
        memory = torch.cuda.get_device_properties(0).total_memory / 2**20
    from nas.search.raytune import GPU_GRID

    return 1 / GPU_GRID, float(memory)


def _proxy(space: SearchSpace, opts: SearchOptions) -> tuple[ProxyConfig, dict[str, Any]]:
    """The space's proxy (or the --proxy file's) with the command line's overrides, checked by the
    same rules, and the --proxy file's calibration ({} without one)."""
    from nas.proxy import load_proxy_file

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
    from nas.net.cost import measure_cost

    costs = [
        measure_cost(
            arch,
            num_classes=num_classes,
            latency='latency' in objectives,
            memory='memory' in objectives,
            warmup=2,
            repeats=5,
        ).to_dict()
        for arch in space.reference_points().values()
    ]
    key = {'latency': 'latency_ms', 'memory': 'peak_memory_mb'}
    return {o: 2.0 * max(float(c[key.get(o, o)] or 0.0) for c in costs) or 1.0 for o in objectives if o != 'accuracy'}


def _new_config(
    folder: RunFolder,
    opts: SearchOptions,
    space: SearchSpace,
    proxy: ProxyConfig,
    data: Dataset,
    gpus: float,
    command: str,
    calibration: dict[str, Any],
) -> RunConfig:
    return RunConfig(
        name=folder.path.name,
        created=datetime.now(timezone.utc).isoformat(timespec='seconds'),
        command=command,
        objectives=opts.objectives,
        sampler=opts.sampler,
        seed=opts.seed,
        limits=opts.limits,
        space_file=str(opts.space),
        space_fingerprint=space.fingerprint,
        space_size=space.size if math.isfinite(space.size) else 'infinite',
        space=space.to_dict(),
        proxy=proxy,
        data=DataInfo.of(data),
        references={name: a.arch_id for name, a in space.reference_points().items()},
        hypervolume_scale=_hypervolume_scale(space, data.num_classes, opts.objectives),
        versions=package_versions(),
        device='cuda: ' + torch.cuda.get_device_name(0) if gpus > 0 and torch.cuda.is_available() else 'cpu',
        options=opts.to_dict(),
        calibration=calibration,
    )


def _load_space(folder: RunFolder, opts: SearchOptions, resumed: bool) -> SearchSpace:
    """The search space: the space file, or on resume, when the file is gone, the resolved space
    run.yaml stores (a changed file is refused: its fingerprint differs from the run's)."""
    typed = opts.space
    if not opts.space.exists() and not opts.space.is_absolute() and (PROJECT / opts.space).exists():
        opts.space = PROJECT / opts.space  # the shipped spaces, from any working directory
    if resumed and not opts.space.exists():
        config = folder.config()
        space = SearchSpace.from_dict(config.space, file=str(folder.path / RUN_YAML))
        if space.fingerprint != config.space_fingerprint:
            raise UsageError(
                f'--resume: {typed} is gone and {folder.path / RUN_YAML} holds a space of fingerprint '
                f'{space.fingerprint}, not the run\'s {config.space_fingerprint}; give the space file '
                f'with --space'
            )
        print(
            f'note: the space file {typed} is gone; resuming with the space {folder.path / RUN_YAML} stores '
            f'(fingerprint {space.fingerprint})',
            flush=True,
        )
        return space
    try:
        space = load_space(opts.space)
    except SpaceError as e:  # name the path as the user typed it
        raise SpaceError(typed, e.path, e.msg) from None
    if resumed and folder.config().space_fingerprint != space.fingerprint:
        raise UsageError(
            f'--resume: the search space changed since {folder.path} started ({typed} now has '
            f'fingerprint {space.fingerprint}, the run used {folder.config().space_fingerprint}); '
            f'start a new run for a new space'
        )
    return space


def _notes(
    space: SearchSpace,
    data: Dataset,
    proxy: ProxyConfig,
    opts: SearchOptions,
    calibration: dict[str, Any] | None = None,
) -> list[str]:
    """Lines for the start of a search whose settings will not do what they seem to, and which
    calibration its proxy comes from (or that it was never fitted to this data). `calibration` is
    the --proxy file's ({} or None without one: `_proxy`)."""
    notes = [note for note in [proxy_note(space, opts, proxy, calibration or {})] if note]
    if math.isfinite(space.size) and opts.budget > space.size:
        notes.append(
            f'note: --budget {opts.budget} is more than the {int(space.size):,} architectures of this space; '
            f'the search ends when every one is evaluated'
        )
    if proxy.batch_size > len(data.train_y):
        notes.append(
            f'note: the batch size {proxy.batch_size} is more than the {len(data.train_y)} training images; '
            f'every epoch is one batch of {len(data.train_y)}'
        )
    few = small_data_note(data)
    if few:
        notes.append(few)
    if not opts.quiet:
        long = long_trial_note(len(data.train_y), proxy.epochs)
        if long:
            notes.append(long)
    return notes


@dataclass(frozen=True)
class _SetUp:
    """What a search runs with, once its run folder is claimed and its run.yaml written."""

    space: SearchSpace
    proxy: ProxyConfig
    calibration: dict[str, Any]  # the --proxy file's ({} without one)
    data: Dataset
    gpus: float  # per trial
    gpu_memory: float | None  # MB of the smallest GPU, for --gpus-per-trial auto
    address: str | None  # the Ray cluster joined; None: a local Ray


def _search(folder: RunFolder, opts: SearchOptions, resumed: bool, command: str, claim: _Claim) -> RunFolder:
    """Search in `folder`: set it up, evaluate architectures up to the budget, promote its front up
    the fidelity ladder (`nas.search.promote`), then say how it ended."""
    setup = _set_up(folder, opts, resumed, command, claim)
    records = [r for r in folder.trials() if rung_of(r) == 0]  # the proxy's: the search's own rung
    archs = aggregate(records)
    remaining = opts.budget - len(archs)
    wanting = [
        a
        for a, n in pareto.race_targets(
            archs, opts.objectives, seed_std(archs), repeats=opts.repeats, race=opts.race, band=False
        )
        if a.seeds < n
    ]
    finished = remaining <= 0 and not wanting
    if finished:
        print(f'{folder.path}: {len(archs)} architectures done, budget {opts.budget} reached')
    else:
        study, queue, references = _start(folder, opts, setup, records, resumed, len(archs), remaining)
        if opts.promote:  # one Ray for the search and its promotion
            from nas.search.raytune import ray_session

            claim.stack.enter_context(ray_session(setup.address))
        finished = _report(folder, opts, _tune(folder, opts, setup, study, queue, references, records))
    if finished:
        promote(folder, opts, setup.gpus, setup.address)
    print(front_report(folder))
    for line in check_lines(folder):
        print(line)
    return folder


def _set_up(folder: RunFolder, opts: SearchOptions, resumed: bool, command: str, claim: _Claim) -> _SetUp:
    """Check what can be checked before anything is written (the proxy, the resources, the data, a
    resumed run's data), join the Ray cluster if one is named, then claim the run folder, repair it
    and write its run.yaml."""
    space = _load_space(folder, opts, resumed)
    proxy, calibration = _proxy(space, opts)
    if resumed and opts.proxy is not None and folder.config().proxy != proxy:
        raise UsageError(
            f'--resume: the proxy in {opts.proxy} changed since {folder.path} started; start a new run for a new proxy'
        )
    gpus, gpu_memory = _gpus(opts)  # for auto: its smallest share of a GPU
    from nas.search.raytune import check_resources, cluster_address, ray_session

    address = cluster_address(opts.address)  # --address, or an exported RAY_ADDRESS as Ray reads it
    if not address:  # this machine's resources are known before Ray starts
        check_resources(
            {'CPU': len(os.sched_getaffinity(0)), 'GPU': torch.cuda.device_count()}, opts.cpus_per_trial, gpus, None
        )
    data = proxy.load_data(opts.data_dir, seed=opts.seed)
    if data.in_chans != space.in_chans:
        raise UsageError(
            f'{opts.space}: in_chans is {space.in_chans} but dataset {data.name} has {data.in_chans} '
            f'channel(s); set in_chans: {data.in_chans} in the space or pick another --dataset'
        )
    if resumed:
        config = folder.config()
        mismatch = config.data.mismatch(DataInfo.of(data))
        if mismatch:
            was = config.options.get('data_dir')
            raise UsageError(
                f'--resume: {folder.path} was searched on other data: {mismatch}; resume it on its own '
                f'data' + (f' (--data-dir {shlex.quote(str(was))})' if was else '') + ', or start a new run'
            )
        config.options = opts.to_dict()
    else:
        config = _new_config(folder, opts, space, proxy, data, gpus, command, calibration)
    if address and not opts.address:
        print(
            f'note: joining the Ray cluster at {address} from the exported RAY_ADDRESS (to run on a local Ray, '
            f'unset it: env -u RAY_ADDRESS python -m nas.search ...)',
            flush=True,
        )
    if address:  # joined before anything is written: a cluster that does not answer leaves no folder
        claim.stack.enter_context(ray_session(opts.address))
    claim()
    for line in folder.repair():  # a torn tail, temp files of a crash: before anything is appended
        print(line, flush=True)
    config.ladder = run_ladder(config, opts.promote_epochs)
    folder.write_config(config)
    return _SetUp(space, proxy, calibration, data, gpus, gpu_memory, address)


def _start(
    folder: RunFolder,
    opts: SearchOptions,
    setup: _SetUp,
    records: list[TrialRecord],
    resumed: bool,
    done: int,
    remaining: int,
) -> tuple[RunStudy, list[dict[str, Any]], dict[str, str]]:
    """The run's study, the architectures to evaluate first and the reference points' names (arch id
    -> name), with the lines that open the session."""
    space = setup.space
    study, stale, queue, notes = open_study(folder, opts, space, records)
    references = {a.arch_id: name for name, a in space.reference_points().items()}
    again = sum(space.point(params).arch_id not in references for params in queue)
    for line in notes:
        print(line, flush=True)
    if resumed:
        print(
            f'resuming {folder.path}: {done} architectures done, {max(0, remaining)} to go'
            + (f' ({stale} interrupted trials marked failed in the study)' if stale else '')
            + (f'; {again} architectures started but not recorded are evaluated first' if again else '')
        )
    size = 'infinitely many' if not math.isfinite(space.size) else f'{int(space.size):,}'
    print(
        f"{folder.path}: {setup.data.summary()}; space {space.name} ({size} architectures); objectives "
        f"{', '.join(opts.objectives)}; sampler {opts.sampler}, seed {opts.seed}",
        flush=True,
    )
    for line in _notes(space, setup.data, setup.proxy, opts, setup.calibration):
        print(line, flush=True)
    return study, queue, references


def _tune(
    folder: RunFolder,
    opts: SearchOptions,
    setup: _SetUp,
    study: RunStudy,
    queue: list[dict[str, Any]],
    references: dict[str, str],
    records: list[TrialRecord],
) -> TuneOutcome:
    """The session's evaluations on Ray Tune (run.yaml records the cluster once it is known)."""
    from nas.search.raytune import TuneJob, run_tune
    from nas.trial import TrialSettings

    def on_cluster(cluster: dict[str, Any]) -> None:
        cfg = folder.config()
        cfg.ray = cluster
        folder.write_config(cfg)

    settings = TrialSettings(
        proxy=setup.proxy,
        num_classes=setup.data.num_classes,
        limits=opts.limits,
        device='cuda' if setup.gpus > 0 else 'cpu',
    )
    job = TuneJob(
        opts=opts,
        run=folder,
        study=study,
        space=setup.space,
        data=setup.data,
        settings=settings,
        history=records,
        references=references,
        queue=queue,
        gpus_per_trial=setup.gpus,
        gpu_memory_mb=setup.gpu_memory,
        address=setup.address,
    )
    return run_tune(job, on_cluster=on_cluster)


def _report(folder: RunFolder, opts: SearchOptions, outcome: TuneOutcome) -> bool:
    """How the session ended; True when the search is done (its budget reached, or the space
    exhausted). A stop by a signal is raised again (KeyboardInterrupt, Terminated: `run` says how
    to continue), a full disk as the OSError it is."""
    if outcome.interrupted:  # after Tune's clean stop
        raise Terminated() if outcome.signal == signal.SIGTERM else KeyboardInterrupt()
    if outcome.disk_error is not None:
        e = outcome.disk_error
        raise OSError(
            e.errno,
            f'{e.filename or folder.path}: {e.strerror or e}; the search stopped'
            + (
                f' ({outcome.unrecorded} trained but not recorded: --resume evaluates it again)'
                if outcome.unrecorded
                else ''
            ),
            str(folder.path),
        )
    done = len(aggregate(folder.trials()))
    if outcome.reevaluations:
        print(f'{outcome.reevaluations} re-evaluations with new seeds (the front and the points within its noise)')
    if outcome.proposals:
        print(proposals_line(outcome.proposals))
    if outcome.exhausted:
        print('the space is exhausted: no architecture is left that has not been evaluated')
    elif opts.max_failures is not None and outcome.failures > opts.max_failures:
        print(f'stopped: {outcome.failures} failed trials, more than --max-failures {opts.max_failures}')
        return False
    elif done < opts.budget:
        print(f'stopped at {done}/{opts.budget} architectures; continue with: {resume_command(folder.path)}')
        return False
    return True


def proposals_line(proposals: dict[str, int]) -> str:
    """How this session's new architectures came about, in one line."""
    words = {
        'queued': 'queued (reference points, unfinished ones)',
        'sampled': 'proposed by the sampler',
        'mutated': 'mutated from a front parent',
        'repaired': 'repaired (the sampler proposed one already seen; its nearest unseen neighbour was taken)',
        'random': 'random (the evolution\'s first population)',
        'fill-in': 'random fill-ins (no unseen neighbour of the proposal)',
    }
    total = sum(proposals.values())
    return f'{total} new architectures: ' + ', '.join(
        f'{n} {words.get(k, k)}' for k, n in sorted(proposals.items(), key=lambda kv: -kv[1])
    )


# --------------------------------------------------------------------------- command line


def build_parser(explicit_only: bool = False) -> argparse.ArgumentParser:
    """The command line; with `explicit_only`, options not given are absent from the parse."""
    d = SearchOptions()

    def dflt(name: str) -> Any:
        return argparse.SUPPRESS if explicit_only else getattr(d, name)

    p = ArgumentParser(
        prog='python -m nas.search',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _search_arguments(p, dflt)
    _proxy_arguments(p, dflt)
    add_promote_arguments(p, dflt)
    _resource_arguments(p, dflt)
    _run_folder_arguments(p, dflt)
    return p


def _search_arguments(p: argparse.ArgumentParser, dflt: Callable[[str], Any]) -> None:
    """What to search: the budget, the space, the objectives and limits, the sampler, seeds and racing."""
    g = p.add_argument_group('what to search')
    g.add_argument('--budget', type=int, default=dflt('budget'), help='trials (distinct architectures) to evaluate')
    g.add_argument(
        '--time-budget', type=float, default=dflt('time_budget'), help='stop starting trials after this many seconds'
    )
    g.add_argument('--space', type=Path, default=dflt('space'), help='search-space YAML')
    g.add_argument(
        '--objectives',
        nargs='+',
        default=dflt('objectives'),
        help=f"accuracy plus one or more of {', '.join(COSTS)} (space- or comma-separated)",
    )
    g.add_argument('--max-macs', type=amount, default=dflt('max_macs'), help='hard limit on MACs per image (2e6, 2M)')
    g.add_argument('--max-params', type=amount, default=dflt('max_params'), help='hard limit on parameters (50k)')
    g.add_argument(
        '--max-latency-ms', type=amount, default=dflt('max_latency_ms'), help='hard limit on latency (batch 1)'
    )
    g.add_argument(
        '--sampler',
        choices=SAMPLERS,
        default=dflt('sampler'),
        help='how new architectures are proposed: evolution (multi-objective regularized evolution) '
        'or one of Optuna\'s samplers',
    )
    g.add_argument(
        '--seed', type=int, default=dflt('seed'), help='seeds the sampler, data split and every proxy training'
    )
    g.add_argument(
        '--repeats',
        type=int,
        default=dflt('repeats'),
        help='evaluate every architecture with this many seeds (its mean and standard error rank it)',
    )
    g.add_argument(
        '--race',
        type=int,
        default=dflt('race'),
        help="racing: evaluate the front's points, and those within its noise, with this many seeds "
        "(1: off); re-evaluations come on top of --budget",
    )
    g.add_argument(
        '--race-share',
        type=float,
        default=dflt('race_share'),
        help="re-evaluations of points within the front's noise (beyond the front's own), at most this "
        "share of --budget",
    )
    g.add_argument(
        '--early-stop',
        action='store_true',
        default=dflt('early_stop'),
        help='stop weak trials early (ASHA on validation accuracy); stopped trials never enter the front',
    )


def _proxy_arguments(p: argparse.ArgumentParser, dflt: Callable[[str], Any]) -> None:
    """The proxy training's overrides of the space file's proxy section."""
    g = p.add_argument_group("proxy training (defaults: the space file's proxy section)")
    g.add_argument(
        '--proxy',
        type=Path,
        default=dflt('proxy'),
        metavar='FILE',
        help="a proxy fitted to your data by python -m nas.calibrate (its proxy.yaml) in place of the "
        "space file's proxy section; the flags below still override it",
    )
    g.add_argument(
        '--dataset', default=dflt('dataset'), help='digits | cifar10 | cifar100 | mnist | fashion-mnist | imagefolder'
    )
    g.add_argument('--data-dir', type=Path, default=dflt('data_dir'), help='folder with the dataset as distributed')
    g.add_argument('--epochs', type=int, default=dflt('epochs'), help='proxy epochs per trial')
    g.add_argument(
        '--subset', type=float, default=dflt('subset'), help='training images per trial: a count (>1) or a fraction'
    )
    g.add_argument('--batch-size', type=int, default=dflt('batch_size'), help='proxy batch size')


def _resource_arguments(p: argparse.ArgumentParser, dflt: Callable[[str], Any]) -> None:
    """The resources: each trial's CPUs and GPUs, and the Ray cluster."""
    g = p.add_argument_group('resources')
    g.add_argument(
        '--cpus-per-trial', type=float, default=dflt('cpus_per_trial'), help='CPUs per trial (torch threads)'
    )
    g.add_argument(
        '--gpus-per-trial',
        default=dflt('gpus_per_trial'),
        help='GPUs per trial, fractions allowed, or auto: each trial gets the share of a GPU its measured '
        'training memory needs (steps of 1/8), and one that runs out of memory is retried once on a '
        'whole GPU; default: 1 when CUDA is present, else 0',
    )
    g.add_argument(
        '--gpu-memory-mb',
        type=float,
        default=dflt('gpu_memory_mb'),
        help="with --gpus-per-trial auto: the memory of the cluster's GPUs; default: this machine's GPU",
    )
    g.add_argument(
        '--max-concurrent', type=int, default=dflt('max_concurrent'), help='trials at once; default: as resources allow'
    )
    g.add_argument(
        '--address',
        default=dflt('address'),
        help="join an existing Ray cluster ('auto' or host:port); default: a local Ray for this run",
    )
    g.add_argument(
        '--max-failures',
        type=int,
        default=dflt('max_failures'),
        help='stop the search after more failed trials than this',
    )


def _run_folder_arguments(p: argparse.ArgumentParser, dflt: Callable[[str], Any]) -> None:
    """The run folder: its name and place, resuming one, and the progress display."""
    g = p.add_argument_group('run folder')
    g.add_argument('--name', default=dflt('name'), help='run folder name under --results-dir; default: a timestamp')
    g.add_argument('--results-dir', type=Path, default=dflt('results_dir'), help='where run folders go')
    g.add_argument(
        '--resume',
        default=dflt('resume'),
        metavar='RUN',
        help='continue RUN (a run folder, or its name under --results-dir) to its budget',
    )
    g.add_argument(
        '--quiet',
        action='store_true',
        default=dflt('quiet'),
        help='no progress: neither the line per trial nor the status of running trials',
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stop_on_sigterm()  # SIGTERM stops the search as Ctrl-C does
    opts = SearchOptions.from_dict(vars(build_parser().parse_args(argv)))
    explicit = set(vars(build_parser(explicit_only=True).parse_args(argv)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        search(opts, explicit, command=shell_command('search', *argv))
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as e:  # search() made it one line: what failed, and that the search stopped
        fix = 'free some space' if e.errno in NO_SPACE else 'fix that'
        print(f'error: {e.strerror}; {fix}, then continue with: {resume_command(e.filename)}', file=sys.stderr)
        return 1
    return 0
