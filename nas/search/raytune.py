"""The Ray Tune side of a search: the trainable, the searcher, the recorder and the stopper.

It imports Ray, so `nas.search` imports it only when a search starts. One search is one
`tune.Tuner` run (`run_tune`):

* `trainable`: a Ray function trainable, a few lines around `nas.trial.evaluate`. It reports
  every epoch (ASHA can stop a trial early); the last report carries `final=True`, the whole
  record and, for a complete trial, its weights as a Tune checkpoint.
* `ArchSearcher`: Ray's `Searcher` interface over the run's Optuna study (`nas.search.study.RunStudy`),
  asked and told through Optuna's ask/tell API (`SearchSpace.sample(trial, full=True)`). It never
  trains an architecture twice, races the front's seeds and tells Optuna what happened (see its
  docstring).
* `Recorder`: a Tune callback in the driver, the only writer of the run folder: it appends every
  finished trial to trials.jsonl, keeps its weights, updates pareto.json and prints progress
  (a line per finished trial, and the epochs of running ones). A full disk or Ctrl-C halts it:
  it records nothing more, and the search stops cleanly.
* `FailureStopper`: ends the search after more than --max-failures failed trials, or once the
  recorder is halted.
* `ParsedResults`: a finished trial's last result made a `TrialRecord` once, for the searcher
  and the recorder both.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import logging
import math
import os
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import ray
import torch
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from nas.cli import StopSignals
from nas.data.dataset import Dataset
from nas.errors import UsageError
from nas.net.arch import Arch
from nas.proxy import mean_score
from nas.run.archive import Archive, ArchResult
from nas.run.folder import RunFolder, TrialRecord
from nas.search.options import SearchOptions
from nas.search.progress import Progress
from nas.search.study import RunStudy, optuna_result
from nas.space import SearchSpace
from nas.trial import TrialSettings, evaluate

__all__ = [
    'TuneJob',
    'TuneOutcome',
    'run_tune',
    'trainable',
    'ArchSearcher',
    'Recorder',
    'FailureStopper',
    'record_from_result',
    'error_line',
]

ERROR_CHARS = 300  # a failed trial's reason (trials.jsonl `error`, its progress line) is cut to this


# --------------------------------------------------------------------------- the trial (worker side)


def _result(record: TrialRecord, final: bool) -> dict[str, Any]:
    """A Tune result: ASHA's metric at the top, the whole record beside it."""
    return {
        'accuracy': record.accuracy or 0.0,
        'epoch': record.epochs,
        'final': final,
        'status': record.status,
        'record': asdict(record),
    }


# The proxy's data on each worker's device, fetched once per worker process: actors are reused
# across trials, so only a worker's first trial pays for the fetch and the copy to the device.
_DATA_ON_DEVICE: dict[tuple[str, str], Dataset] = {}


def _data_on(ref: ray.ObjectRef, device: str) -> Dataset:
    key = (ref.hex(), device)
    if key not in _DATA_ON_DEVICE:
        _DATA_ON_DEVICE.clear()  # one dataset at a time: a worker serves one search
        _DATA_ON_DEVICE[key] = ray.get(ref).to(device)
    return _DATA_ON_DEVICE[key]


def trainable(config: dict[str, Any], data: list[ray.ObjectRef], settings: TrialSettings, threads: int) -> None:
    """Ray Tune function trainable: `evaluate` one architecture, reporting every epoch.

    `data` is [an object ref of the Dataset] (a list, so that Tune passes the ref unresolved and
    the worker fetches it once, not once per trial). The trial runs on the GPU Ray gave it
    (CUDA_VISIBLE_DEVICES: its first GPU is cuda:0), or on the CPU when it has none."""
    from safetensors.torch import save_file

    start = time.perf_counter()
    torch.set_num_threads(max(1, threads))  # one thread per CPU Ray gives the trial
    if config.get('epochs'):  # a longer (or shorter) training than the run's proxy: the fidelity check
        settings = replace(settings, proxy=replace(settings.proxy, epochs=int(config['epochs'])))
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    device = 'cuda' if gpu_ids and torch.cuda.is_available() else 'cpu'
    settings = replace(settings, device=device)
    dataset = _data_on(data[0], device)
    setup = time.perf_counter() - start
    node = ray.get_runtime_context().get_node_id()

    def stamp(record: TrialRecord) -> TrialRecord:
        record.node, record.gpu_ids, record.setup_seconds = node, gpu_ids, setup
        return record

    def report(record: TrialRecord) -> None:
        tune.report(_result(stamp(record), final=False))

    outcome = evaluate(Arch.from_dict(config['arch']), dataset, settings, seed=int(config['seed']), report=report)
    stamp(outcome.record)
    if outcome.model is None:
        tune.report(_result(outcome.record, final=True))
        return
    with tempfile.TemporaryDirectory() as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in outcome.model.state_dict().items()}
        save_file(state, str(Path(tmp) / 'model.safetensors'), metadata={'arch_id': outcome.record.arch_id})
        tune.report(_result(outcome.record, final=True), checkpoint=tune.Checkpoint.from_directory(tmp))


def record_from_result(
    result: dict[str, Any], config: dict[str, Any], error: bool = False, message: str | None = None
) -> TrialRecord:
    """The trials.jsonl record of a trial from its last result and its config (number -1).

    A trial whose last result is not final was stopped by the scheduler ('stopped'); one that
    raised, or never reported, 'failed'.
    """
    raw = dict(result.get('record') or {})
    for key, value in result.items():  # Tune hands searchers its results flattened: 'record/accuracy'
        if key.startswith('record/'):
            *parents, leaf = key.split('/')[1:]
            node = raw
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    record = (
        TrialRecord.from_dict(raw)
        if raw
        else TrialRecord(
            number=-1,
            arch_id=config.get('arch_id', ''),
            arch=config.get('arch', {}),
            status='failed',
            seed=config.get('seed'),
        )
    )
    if error or not raw:
        record.status, record.accuracy = 'failed', None
        record.error = message or record.error or 'the trial ended without a result'
    elif not result.get('final'):
        record.status = 'stopped'  # ended by the scheduler before its last epoch
    record.number = -1
    record.optuna_number = config.get('optuna_number')
    record.optuna_params = dict(config.get('optuna_params') or {})
    record.finished_at = record.finished_at or datetime.now(timezone.utc).isoformat(timespec='milliseconds')
    return record


class ParsedResults:
    """The records of finished trials, each parsed once from its last result (`record_from_result`).

    Tune hands a trial's end to the searcher first and then to the callbacks (its TuneController
    calls the search algorithm's `on_trial_complete` before theirs), but neither relies on that:
    whichever of `ArchSearcher` and `Recorder` asks first parses the result and keeps it, the other
    takes it (and it is forgotten). Each gets its own copy of the record, since each numbers it in
    its own sequence. A trial that raised is not among them: the searcher gets no result for it,
    and the recorder reads its error."""

    def __init__(self) -> None:
        self._first: dict[str, TrialRecord] = {}  # Ray trial id -> its record, until the other asks

    def record(self, trial_id: str, result: dict[str, Any], config: dict[str, Any]) -> TrialRecord:
        """The record of trial `trial_id`, which ended with `result` (flattened or not) and `config`."""
        record = self._first.pop(trial_id, None)
        if record is None:
            record = self._first[trial_id] = record_from_result(result, config)
        return copy.copy(record)


# --------------------------------------------------------------------------- the searcher (driver side)

CUDA_CONTEXT_MB = 600  # what a worker process's CUDA context and kernels take on a GPU, besides tensors
GPU_GRID = 8  # --gpus-per-trial auto hands out GPU fractions in steps of 1/GPU_GRID


def gpu_fraction(need_mb: float, gpu_mb: float, headroom: float = 1.25) -> float:
    """The share of one GPU a trial needing `need_mb` of memory gets under --gpus-per-trial auto:
    its need with `headroom` plus a CUDA context, over the GPU's memory, rounded up to a step of
    1/GPU_GRID, at least one step and at most the whole GPU."""
    steps = math.ceil((need_mb * headroom + CUDA_CONTEXT_MB) / gpu_mb * GPU_GRID - 1e-9)
    return min(GPU_GRID, max(1, steps)) / GPU_GRID


def _is_oom(record: TrialRecord) -> bool:
    return record.status == 'failed' and 'out of memory' in (record.error or '').lower()


class ArchSearcher(Searcher):
    """Ray's Searcher over the run's Optuna study (`nas.search.study.RunStudy`), asked and told through
    Optuna's ask/tell API.

    New architectures (up to `budget` distinct ones): first the queue (architectures a killed run
    left unrecorded, then the space's reference points), then the sampler's proposals. The
    samplers (`nas.search.samplers`) propose only architectures the study has not seen, evaluated or in
    flight, so nothing is trained twice and the study holds no duplicate trials; how each proposal
    came about ('sampled', 'repaired', 'mutated', 'random') is counted in `proposals` and kept as
    the trial's 'proposal' user attribute. When no unseen architecture is left the space counts as
    exhausted. After `deadline` (time.monotonic(); --time-budget) no trial starts.

    Repeated seeds (`Archive.race_targets`), asked before any new architecture: with `repeats` K
    every architecture is evaluated with K seeds; with `race` K (racing) the front's points get K
    seeds, and so do the points within the noise band of the front while the re-evaluations
    stay within `race_share` x `budget` (the front's own never wait). Evaluation k of an
    architecture (from 0) uses seed `seed + k`.

    What Optuna is told is what the front uses: an architecture's mean over its seeds. Its
    Optuna trial stays open (RUNNING) while it still wants seeds and is then told COMPLETE with
    the mean accuracy (or the proxy's rank signal, `rank_by`) and its costs (an infeasible one with its constraint values set through
    `Trial.set_constraint`, which keeps it off the front and tells constraint-aware samplers).
    An architecture told before and re-evaluated later (the front moved) is told again as a new
    trial with the same parameters and its new mean. A trial stopped early (lower fidelity) is
    told PRUNED; a failed one FAIL.

    Every decision reads the in-memory `Archive` (updated once per result) and the running
    trials, never the whole history, so its cost per trial does not grow with the run.
    """

    def __init__(
        self,
        study: RunStudy,
        space: SearchSpace,
        objectives: list[str],
        limits: dict[str, float],
        history: list[TrialRecord],
        seed: int,
        budget: int,
        repeats: int = 1,
        race: int = 1,
        race_share: float = 0.0,
        gpu_memory_mb: float | None = None,
        batch_size: int = 64,
        queue: Sequence[dict[str, Any]] = (),
        deadline: float | None = None,
        rank_by: str = 'accuracy',
        parsed: ParsedResults | None = None,
    ):
        super().__init__()  # several objectives: Optuna holds them, Tune needs no metric of ours
        self.study, self.space, self.objectives, self.limits = study, space, objectives, limits
        self.seed, self.budget, self.repeats, self.race, self.race_share = seed, budget, repeats, race, race_share
        self.archive = Archive(objectives)  # every finished evaluation, this run's earlier ones included
        for record in history:
            self.archive.add(record)
        self.queue = list(queue)  # Optuna parameters of architectures to evaluate first
        self.deadline = deadline
        self.rank_by = rank_by  # the proxy's rank signal (nas.proxy): what the sampler is told for accuracy
        self.running: dict[str, dict[str, Any]] = {}  # Ray trial id -> its config (a new arch's has 'optuna_number')
        self.parsed = parsed or ParsedResults()  # finished trials' records, shared with the Recorder
        self.untold: dict[str, int | None] = {}  # arch id -> its open Optuna trial (None: add anew)
        told = {
            t.user_attrs.get('arch_id') for t in study.journal.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        }
        for a in self.archive.architectures:  # a killed run's open trials were failed: tell those anew
            if a.status == 'complete' and a.arch_id not in told:
                self.untold[a.arch_id] = None
        self._params = {a.arch_id: a.record.optuna_params for a in self.archive.architectures}  # Optuna's, per arch
        self._oom = {a.arch_id for a in self.archive.architectures if len(a.records) == 1 and _is_oom(a.records[0])}
        self.exhausted = False
        self.proposals: Counter[str] = Counter()  # how new architectures came about, this process's
        self.reevaluations = 0  # this process's
        self.gpu_memory_mb, self.batch_size = gpu_memory_mb, batch_size  # --gpus-per-trial auto
        self._gpus: dict[str, float] = {}  # arch id -> its GPU share under auto

    def gpus_for(self, arch: dict[str, Any], arch_id: str) -> float | None:
        """The GPU share of an architecture's trials under --gpus-per-trial auto (None otherwise)."""
        if self.gpu_memory_mb is None:
            return None
        if arch_id not in self._gpus:
            from nas.net.cost import training_memory_mb
            from nas.net.model import create_model

            a = Arch.from_dict(arch)
            need = training_memory_mb(create_model(a), (a.in_chans, *a.input_size), self.batch_size)
            self._gpus[arch_id] = gpu_fraction(need, self.gpu_memory_mb)
        return self._gpus[arch_id]

    # -- what to run next
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = None
        if self.deadline is None or time.monotonic() < self.deadline:
            config = self._oom_retry() or self._reevaluation()
            if config is None and not self.exhausted and self._new_archs() < self.budget:
                config = self._new_arch()
        if config is not None:
            self.running[trial_id] = config
            if 'gpus' not in config and self.gpu_memory_mb is not None:
                config['gpus'] = self.gpus_for(config['arch'], config['arch_id'])
            return config
        if self.running:
            return None  # racing may still want seeds of what is running: ask again later
        self.settle(final=True)
        return Searcher.FINISHED

    def _new_archs(self) -> int:
        return len(self.archive) + sum(c.get('optuna_number') is not None for c in self.running.values())

    def _in_flight(self) -> Counter[str]:
        return Counter(c['arch_id'] for c in self.running.values())

    def _oom_retry(self) -> dict[str, Any] | None:
        """Under --gpus-per-trial auto, a trial that ran out of GPU memory on its share runs once
        more, alone on a whole GPU, with the same seed, before its failure counts."""
        if self.gpu_memory_mb is None:
            return None
        running = self._in_flight()
        for arch_id in sorted(self._oom - set(running), key=lambda a: self.archive.archs[a].number):
            a = self.archive.archs[arch_id]
            return {'arch': a.arch, 'arch_id': a.arch_id, 'seed': a.records[0].seed, 'gpus': 1.0}
        return None

    def _targets(self) -> list[tuple[ArchResult, int]]:
        extra = len(self.archive.records) + len(self.running) - self._new_archs()
        return self.archive.race_targets(
            repeats=self.repeats, race=self.race, band=extra < self.race_share * self.budget
        )

    def _reevaluation(self) -> dict[str, Any] | None:
        pending = self._in_flight()
        for a, target in self._targets():
            n = pending.get(a.arch_id, 0)
            if a.seeds + n < target and len(a.records) + n < target + 2:  # + 2: failed seeds are retried twice
                self.reevaluations += 1
                return {'arch': a.arch, 'arch_id': a.arch_id, 'seed': self.seed + len(a.records) + n}
        return None

    def _new_arch(self) -> dict[str, Any] | None:
        flying = self._in_flight()

        def known(arch_id: str) -> bool:
            return arch_id in self.archive.archs or arch_id in flying

        while self.queue and known(self.space.point(self.queue[0]).arch_id):
            self.queue.pop(0)  # evaluated meanwhile (a queued reference point found by the sampler)
        number, arch, params, kind = self.study.ask(self.queue.pop(0) if self.queue else None)
        if known(arch.arch_id):  # the sampler found nothing unseen: the space is exhausted
            self.study.end(number, TrialState.FAIL, {'duplicate_of': arch.arch_id})
            self.exhausted = True
            return None
        self.proposals[kind or 'queued'] += 1
        self._params[arch.arch_id] = params
        return {
            'arch': arch.to_dict(),
            'arch_id': arch.arch_id,
            'seed': self.seed,
            'optuna_number': number,
            'optuna_params': params,
        }

    # -- what happened
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.running:
            return
        config = self.running.pop(trial_id)
        arch_id, number = config['arch_id'], config.get('optuna_number')
        if error:  # Tune hands no result of a trial that raised
            record = record_from_result({}, config, error=True)
        else:
            record = self.parsed.record(trial_id, result or {}, config)
        record.arch_id, record.number = arch_id, len(self.archive.records)  # numbers key the Pareto functions
        self.archive.add(record)
        a = self.archive.archs[arch_id]
        if len(a.records) == 1 and _is_oom(record):
            self._oom.add(arch_id)
        else:
            self._oom.discard(arch_id)
        try:
            if number is not None:
                if record.status in ('stopped', 'failed'):  # told PRUNED, FAIL
                    self.study.tell(number, optuna_result(record, self.objectives, self.limits))
                else:
                    self.untold[arch_id] = number  # told below, once it wants no more seeds
            elif record.status == 'complete' and arch_id not in self.untold:
                self.untold[arch_id] = None  # a re-evaluation moved its mean: tell the new mean
            self.settle()
        except Exception as e:  # Optuna refuses e.g. NaN values: the trial is still recorded by us
            logging.getLogger(__name__).warning('Optuna did not take trial %s: %s', trial_id, e)

    def settle(self, final: bool = False) -> None:
        """Tell Optuna the mean of every architecture that wants no more seeds (every one, if final)."""
        if not self.untold:
            return
        wanting = set() if final else {a.arch_id for a, target in self._targets() if a.seeds < target}
        for arch_id in [a for a in self.untold if a not in wanting]:
            self._tell(self.archive.archs[arch_id], self.untold.pop(arch_id))

    def _tell(self, a: ArchResult, number: int | None) -> None:
        """Tell Optuna an architecture's mean: as its open trial `number`, or as a new trial."""
        told = optuna_result(a, self.objectives, self.limits, score=self._score(a), seeds=a.seeds)
        if number is not None:
            self.study.tell(number, told)
            return
        params = self._params.get(a.arch_id) or self.space.params_of(Arch.from_dict(a.arch))
        self.study.add(params, told, a.arch_id)

    def _score(self, a: ArchResult) -> float:
        """What the sampler is told for accuracy: the mean of the proxy's rank signal over the
        architecture's complete evaluations (its mean accuracy for the default signal). The front,
        racing and every report stay on accuracy."""
        if self.rank_by == 'accuracy':
            return float(a.accuracy or 0.0)
        score = mean_score(a.complete, self.rank_by)
        return float(score) if score is not None else float(a.accuracy or 0.0)

    def save(self, checkpoint_path: str) -> None:
        """Tune's experiment checkpoint: the study lives in the run's journal and the record of
        what is done in trials.jsonl, so only the counters are kept."""
        Path(checkpoint_path).write_text(json.dumps(dict(self.proposals)) + '\n')

    def restore(self, checkpoint_path: str) -> None:
        self.proposals = Counter(json.loads(Path(checkpoint_path).read_text()))


# --------------------------------------------------------------------------- recording and progress


def error_line(trial: Any) -> str:
    """The last line of a trial's exception, e.g. 'RuntimeError: ...'."""
    text = ''
    try:
        path = getattr(trial, 'error_file', None) or ''
        if path and Path(path).is_file():
            text = Path(path).read_text()
    except OSError:
        pass
    text = text or str(getattr(trial, 'error_msg', '') or '')
    if any(s in text for s in ('ActorDiedError', 'RayActorError', 'worker process has died', 'WorkerCrashedError')):
        return "the trial's worker process died (killed by a signal, or out of memory: see dmesg or Ray's logs)"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else 'the trial raised an exception'
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 3] + '...'


class Recorder(tune.Callback):
    """Appends every finished trial to trials.jsonl, keeps its weights and updates pareto.json; its
    `progress` (nas.search.progress, a Tune callback of its own) shows each recorded trial and the running
    ones. Runs in the driver; the only writer of the run folder.

    The run's records and front are kept in memory (`Archive`, read once at the start): nothing is
    read back per trial, and pareto.json is rewritten only when the front changes (a point joins
    or leaves it, or one of its points gets another seed) and once more by the search's report at
    the end (which also brings the counts and the noise flags of points off the front up to date).
    """

    def __init__(
        self,
        run: RunFolder,
        references: dict[str, str],
        objectives: list[str],
        budget: int,
        quiet: bool = False,
        epochs: int = 0,
        parsed: ParsedResults | None = None,
    ):
        self.run, self.references, self.objectives = run, references, objectives
        self.parsed = parsed or ParsedResults()  # finished trials' records: the searcher's, when it has parsed one
        self.interrupted = False
        self.disk_error: OSError | None = None
        self.unrecorded: str | None = None  # the trial a full disk kept out of trials.jsonl
        records = run.trials()
        self.scales = run.config().hypervolume_scale
        self.archive = Archive(objectives)
        for record in records:
            self.archive.add(record)
        self.number = len(records)
        self.archs = set(self.archive.archs)
        self.failures = sum(r.status == 'failed' for r in records)  # the whole run's, resumed or not
        self.weights: dict[str, str] = {}  # Ray trial id -> weights path (relative)
        self.progress = Progress(budget, epochs, quiet, done=len(self.archs))  # the display: a callback of its own

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        src = Path(checkpoint.path) / 'model.safetensors'
        arch_id = trial.config.get('arch_id')
        # an architecture keeps its first complete seed's weights
        if src.is_file() and arch_id and not self.halted and not self.run.weights_path(arch_id).exists():
            with self._unless_out_of_space(trial):
                self.weights[trial.trial_id] = self.run.keep_weights(arch_id, src)  # a fault: warned, recorded

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self.halted:
            with self._unless_out_of_space(trial):
                self._record(trial, self.parsed.record(trial.trial_id, dict(trial.last_result or {}), trial.config))

    def on_trial_error(self, iteration, trials, trial, **info):
        message = error_line(trial)
        if 'No space left on device' in message or 'Errno 28' in message:  # the disk, not the trial
            self.halt(OSError(errno.ENOSPC, message, str(self.run.path)), trial)
        if not self.halted:
            with self._unless_out_of_space(trial):
                self._record(
                    trial, record_from_result(dict(trial.last_result or {}), trial.config, error=True, message=message)
                )

    # -- halting: a full disk, Ctrl-C
    @property
    def halted(self) -> bool:
        return self.interrupted or self.disk_error is not None

    def halt(self, error: OSError | None = None, trial: Any = None) -> None:
        """Record nothing more (the FailureStopper then stops the search): `error` a full disk, with
        the trial it could not record; None a Ctrl-C. Trials not recorded are evaluated on --resume."""
        if error is None:
            self.interrupted = True
        elif self.disk_error is None:
            self.disk_error = error
            if trial is not None:
                self.unrecorded = str(trial.config.get('arch_id') or trial.trial_id)
        self.progress.halt()

    @contextlib.contextmanager
    def _unless_out_of_space(self, trial: Any) -> Iterator[None]:
        """A write fault while keeping `trial` (a full disk, EPERM, EIO, a read-only file system)
        halts the recorder instead of a traceback out of Tune; the trial counts as unrecorded only
        if its line did not reach trials.jsonl (the disk may fill after it, while pareto.json is
        rewritten)."""
        recorded = self.number
        try:
            yield
        except OSError as e:
            self.halt(e, trial if self.number == recorded else None)

    def _record(self, trial: Any, record: TrialRecord) -> None:
        record.number = self.number
        record.reference = self.references.get(record.arch_id)
        record.weights = self.weights.get(trial.trial_id) if record.status == 'complete' else None
        if record.status == 'complete' and record.weights is None:  # why its weights are missing, if a fault
            record.error = self.run.weights_faults.get(record.arch_id, record.error)
        self.run.append(record)
        self.number += 1
        self.archs.add(record.arch_id)
        if record.status == 'failed':
            self.failures += 1
        if self.archive.add(record):  # the front moved: pareto.json follows (and once more at the end)
            self.run.write_summary(self.archive.summary(self.scales))
        self.progress.recorded(trial.trial_id, record, len(self.archs), self.failures, self.archive)


class FailureStopper(Stopper):
    """Stops the whole search once the recorder has counted more than `max_failures` failures."""

    def __init__(self, recorder: Recorder, max_failures: int | None):
        self.recorder, self.max_failures = recorder, max_failures

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.recorder.halted or (self.max_failures is not None and self.recorder.failures > self.max_failures)


# --------------------------------------------------------------------------- one search


@dataclass
class TuneJob:
    """One Tune run of a search: its options and what `nas.search` has set up for it."""

    opts: SearchOptions  # checked (`SearchOptions.checked`): objectives, limits, budget, seeds, resources
    run: RunFolder
    study: RunStudy
    space: SearchSpace
    data: Dataset
    settings: TrialSettings
    history: list[TrialRecord]  # the run's evaluations so far (trials.jsonl)
    references: dict[str, str]  # arch id -> reference name
    queue: list[dict[str, Any]] = field(default_factory=list)  # Optuna parameters to evaluate first
    gpus_per_trial: float = 0.0  # resolved (--gpus-per-trial default, or auto's smallest share)
    gpu_memory_mb: float | None = None  # set: --gpus-per-trial auto, each trial's share from its memory
    address: str | None = None  # the Ray cluster (--address or an exported RAY_ADDRESS); None: a local Ray


@dataclass
class TuneOutcome:
    proposals: Counter[str] = field(default_factory=Counter)  # how new architectures came about
    exhausted: bool = False
    failures: int = 0
    reevaluations: int = 0  # evaluations of an architecture with another seed
    cluster: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # Ctrl-C or SIGTERM: Tune stopped cleanly, nothing more was recorded
    disk_error: OSError | None = None  # a full disk stopped the search
    unrecorded: str | None = None  # the arch id the full disk kept out of trials.jsonl
    signal: int | None = None  # the signal that interrupted it (SIGINT, SIGTERM)


def check_resources(
    resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float, address: str | None
) -> None:
    """A trial that fits nowhere would make Tune wait forever: say so instead."""
    where = f'the Ray cluster at {address}' if address else 'this machine'
    if cpus_per_trial > resources.get('CPU', 0):
        raise UsageError(f"--cpus-per-trial {cpus_per_trial:g}: {where} has {resources.get('CPU', 0):g} CPUs")
    if gpus_per_trial > resources.get('GPU', 0):
        raise UsageError(
            f"--gpus-per-trial {gpus_per_trial:g}: {where} has {resources.get('GPU', 0):g} GPUs"
            + ('' if address else '; CUDA is not available to torch here')
        )


def fitting_trials(resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster runs at once. Tune needs this number: without a concurrency
    limit it keeps a single trial pending when a searcher is used, and trials start one by one."""
    fit = int(resources.get('CPU', 1) // cpus_per_trial)
    if gpus_per_trial > 0:
        fit = min(fit, int(resources.get('GPU', 0) // gpus_per_trial))
    return max(1, fit)


def _resources(cpus: float, gpus: float, config: dict[str, Any]) -> tune.PlacementGroupFactory:
    """A trial's resources: its CPUs, and its config's GPU share (auto, an OOM retry) or the fixed one."""
    return tune.PlacementGroupFactory([{'CPU': cpus, 'GPU': config.get('gpus', gpus)}])


def trial_dirname(trial: Any) -> str:
    """Ray trial folders named by trial id (the default spells out the whole config)."""
    return f'trial_{trial.trial_id}'


CONNECT_TIMEOUT_S = 30.0  # joining a Ray cluster: the longest wait before one line says it does not answer
QUIET_LOGGERS = ('ray.tune', 'ray.train')  # Tune's own error reports: our records and lines say it once


def cluster_address(address: str | None) -> str | None:
    """The Ray cluster to join: `address` (--address), else an exported RAY_ADDRESS, as Ray itself
    would read it; None: start a local Ray."""
    return address or os.environ.get('RAY_ADDRESS') or None


# An HTTP/2 client's first bytes, then an empty SETTINGS frame: a gRPC server (Ray's GCS, a Ray
# Client server) answers with its own SETTINGS frame, anything else with something else or nothing.
_HTTP2_HELLO = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _probe(host: str, port: int, timeout: float) -> str | None:
    """Why no Ray cluster can answer at host:port (None: a gRPC server answers there, as Ray's does).
    Bounded by `timeout`: ray.init would retry a silent or foreign address forever."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(_HTTP2_HELLO)
            head = s.recv(9)
    except TimeoutError:
        return f'no answer within {timeout:.0f} s'
    except OSError as e:
        return e.strerror or str(e)
    return None if len(head) >= 4 and head[3] == 4 else 'something else listens there, not a Ray cluster'


@contextlib.contextmanager
def _stderr_hidden() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while (what C++ code writes there, too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def join_cluster(address: str, from_env: bool = False) -> None:
    """ray.init on the cluster at `address` ('auto', host:port or ray://host:port), or UsageError
    with one line: nothing answers there as a Ray cluster (asked first, with a bounded wait), no
    cluster runs for 'auto', or Ray refuses (another version, a wrong token)."""
    flag = f'RAY_ADDRESS={address} (exported)' if from_env else f'--address {address}'
    how = (
        '; to run on a local Ray instead, run the command with it unset (env -u RAY_ADDRESS ...)'
        if from_env
        else '; start one with ray start --head, or leave --address out for a local Ray'
    )
    if address != 'auto':
        host, _, port = address.removeprefix('ray://').rpartition(':')
        if not host or not port.isdigit():
            raise UsageError(f"{flag}: expected auto or host:port{how}")
        why = _probe(host.strip('[]'), int(port), CONNECT_TIMEOUT_S)
        if why:
            raise UsageError(f'{flag}: no Ray cluster answers there ({why}){how}')
    try:
        with _stderr_hidden():  # Ray's C++ client prints a line per retry
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        ray.shutdown()
        reason = ' '.join(str(e).split('. ')[0].split()) or type(e).__name__
        raise UsageError(f'{flag}: cannot join a Ray cluster ({reason}){how}') from None


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for one Tune run: the cluster at `address` (or an exported RAY_ADDRESS: see
    `join_cluster`), or a local Ray with this machine's resources and no dashboard that is stopped
    afterwards. A Ray this process joined already is used as it is. Our progress lines replace
    Tune's tables, and our records files its per-trial result files and error reports.

    Raises:
        UsageError: the cluster cannot be joined (one line).
    """
    os.environ.setdefault('RAY_AIR_NEW_OUTPUT', '0')
    os.environ.setdefault('TUNE_DISABLE_AUTO_CALLBACK_LOGGERS', '1')
    os.environ.setdefault('TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S', '0')
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        joined = cluster_address(address)
        if ray.is_initialized():  # joined already (nas.search joins before it writes anything)
            yield
        elif joined:
            join_cluster(joined, from_env=not address)
            yield
        else:
            ray.init(
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
                num_gpus=torch.cuda.device_count(),
            )
            try:
                yield
            finally:
                ray.shutdown()
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def run_tune(job: TuneJob, on_cluster: Any = None) -> TuneOutcome:
    """Start (or join) Ray, run the trials, stop the Ray it started. `on_cluster(info)` is called
    once Ray is up, with {'address', 'nodes', 'cpus', 'gpus'} (the search writes it to run.yaml).

    Raises:
        UsageError: a trial fits on no node.
    """
    searcher = _searcher(job)
    recorder = Recorder(
        job.run,
        job.references,
        job.opts.objectives,
        job.opts.budget,
        job.opts.quiet,
        epochs=job.settings.proxy.epochs,
        parsed=searcher.parsed,
    )
    os.environ['TUNE_DISABLE_SIGINT_HANDLER'] = '1'  # Ctrl-C and SIGTERM: ours (`StopSignals`), not Tune's
    signals = StopSignals(recorder.halt)
    signals.catch(signal.SIGINT)
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(ray_session(job.address))
        signals.catch(signal.SIGTERM)  # after ray.init, which installs its own (an abort with a C++ stack)
        cluster, resources = _cluster(job.address)
        if on_cluster is not None:
            on_cluster(cluster)
        tuner = _tuner(job, searcher, recorder, resources)
        if job.opts.time_budget is not None:  # no trial starts after it; running ones finish and are recorded
            searcher.deadline = time.monotonic() + job.opts.time_budget
        tuner.fit()  # results are read from the run folder, not from Tune's ResultGrid
        searcher.settle(final=True)  # the failure stopper ended it early
    finally:
        signals.restore()
        recorder.progress.clear()
        stack.close()
    return TuneOutcome(
        searcher.proposals,
        searcher.exhausted,
        recorder.failures,
        searcher.reevaluations,
        cluster,
        recorder.interrupted,
        recorder.disk_error,
        recorder.unrecorded,
        signal=signals.received[0] if signals.received else None,
    )


def _searcher(job: TuneJob) -> ArchSearcher:
    """The job's searcher, over its study, with what the run has evaluated so far."""
    opts = job.opts
    return ArchSearcher(
        job.study,
        job.space,
        opts.objectives,
        opts.limits,
        job.history,
        opts.seed,
        opts.budget,
        repeats=opts.repeats,
        race=opts.race,
        race_share=opts.race_share,
        gpu_memory_mb=job.gpu_memory_mb,
        batch_size=job.settings.proxy.batch_size,
        queue=job.queue,
        rank_by=job.settings.proxy.rank_by,
    )


def _cluster(address: str | None) -> tuple[dict[str, Any], dict[str, float]]:
    """The Ray cluster this process runs on, as run.yaml records it, and its resources."""
    resources = ray.cluster_resources()
    cluster = {
        'address': address or 'local',
        'nodes': sum(n['Alive'] for n in ray.nodes()),
        **{k.lower() + 's': v for k, v in resources.items() if k in ('CPU', 'GPU')},
    }
    return cluster, resources


def _scheduler(job: TuneJob) -> ASHAScheduler | None:
    """ASHA on validation accuracy per epoch with --early-stop; None (every trial runs to its end) without."""
    if not job.opts.early_stop:
        return None
    epochs = job.settings.proxy.epochs
    return ASHAScheduler(
        metric='accuracy',
        mode='max',
        time_attr='training_iteration',
        max_t=max(1, epochs),
        grace_period=max(1, epochs // 4),
        reduction_factor=3,
    )


def _tuner(job: TuneJob, searcher: ArchSearcher, recorder: Recorder, resources: dict[str, float]) -> tune.Tuner:
    """The Tuner of the job: the trainable with the data put in Ray's object store once, as many
    trials at once as fit the cluster (or --max-concurrent), the searcher, the recorder and its
    progress display, and the failure stopper.

    Raises:
        UsageError: a trial fits on no node.
    """
    opts = job.opts
    cpus = opts.cpus_per_trial
    least = 1 / GPU_GRID if job.gpu_memory_mb is not None else job.gpus_per_trial  # auto: its smallest share
    check_resources(resources, cpus, least, job.address)
    concurrent = opts.max_concurrent or fitting_trials(resources, cpus, least)
    fn = tune.with_parameters(trainable, data=[ray.put(job.data)], settings=job.settings, threads=max(1, int(cpus)))
    return tune.Tuner(
        tune.with_resources(fn, partial(_resources, cpus, job.gpus_per_trial)),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=_scheduler(job),
            num_samples=-1,  # searcher ends
            max_concurrent_trials=concurrent,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{datetime.now().strftime('%Y%m%d-%H%M%S')}",
            storage_path=str((job.run.path / 'ray').resolve()),
            stop=FailureStopper(recorder, opts.max_failures),
            callbacks=[recorder, recorder.progress],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
        # No CheckpointConfig(num_to_keep): every trial reports one checkpoint (its weights), and with
        # num_to_keep set Tune snapshots the whole experiment state after each one: a pass over every
        # trial per trial, which starved the slots of long runs. The run folder is the record.
    )
