"""The run's Optuna study: its sampler, the journal made to agree with trials.jsonl, and the
working copy the searcher asks and tells.

The study's record is the run folder's journal (`RunFolder.storage`, which optuna-dashboard opens);
trials.jsonl is the record of what is done, so on resume the journal is made to agree with it
(`open_study`). The searcher does not ask the journal: every Optuna call on it is an fsynced,
file-locked write, and a trial of the full encoding has tens of parameters. `RunStudy` keeps a
working copy in memory that the sampler reads, and mirrors it into the journal trial for trial
(the same numbers) with one write when a trial starts and a few when it ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.trial import TrialState

from nas.net.arch import Arch
from nas.run import pareto
from nas.run.folder import STUDY_NAME, RunError, RunFolder, TrialRecord, aggregate
from nas.samplers import registry as samplers
from nas.samplers.unseen import UnseenSampler
from nas.search.options import SearchOptions
from nas.search.told import OptunaResult, optuna_result
from nas.space.decision import SpaceError
from nas.space.space import SearchSpace

__all__ = [
    "StudySource",
    "RunStudy",
    "BatchedJournal",
    "OptunaResult",
    "journal_storage",
    "make_sampler",
    "open_study",
    "optuna_result",
    "trial_of",
]

HISTORY_WINDOW = 500  # trials a TPE or GP ask reads at most (nas.samplers.window.HistoryWindow)


def make_sampler(name: str, seed: int, budget: int, space: SearchSpace) -> UnseenSampler:
    """The named, seeded sampler of a search (`nas.samplers.registry`): it proposes only
    architectures the study has not seen; TPE and GP read the last HISTORY_WINDOW trials."""
    return samplers.make_sampler(name, space, seed, budget, window=HISTORY_WINDOW)


@dataclass(frozen=True)
class StudySource:
    """Where the run's study lives and how it is sampled: what a pickled searcher carries instead
    of the study itself. The study's state is its journal (and trials.jsonl), so `open` reopens it
    anywhere the run folder is; the sampler is made anew from its name and seed, since samplers
    may hold what cannot be pickled (Optuna 5.1's GA samplers keep a threading.Lock)."""

    journal: Path
    sampler: str
    seed: int
    budget: int
    space: SearchSpace

    @classmethod
    def of(cls, folder: RunFolder, opts: SearchOptions, space: SearchSpace) -> StudySource:
        return cls(folder.study_path.resolve(), opts.sampler, opts.seed, opts.budget, space)

    def open(self) -> RunStudy:
        storage, backend = journal_storage(RunFolder(self.journal.parent))
        journal = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=optuna.samplers.RandomSampler())
        return RunStudy(self, journal, storage, backend)


def open_study(
    folder: RunFolder, opts: SearchOptions, space: SearchSpace, records: list[TrialRecord]
) -> tuple[RunStudy, int, list[dict[str, Any]], list[str]]:
    """The run's study (created, or loaded to resume), its journal made to agree with
    trials.jsonl, the record of what is done, and the architectures to evaluate first.

    - A study journal that is missing, unreadable (moved aside to study.journal.damaged-<time>)
      or stale (it lacks finished trials that trials.jsonl has) gets those trials added back
      (`optuna.trial.create_trial` + `Study.add_trials`), so the sampler never starts blind.
    - Trials a killed process left running or queued are told FAIL, so samplers ignore them.
    - An architecture the study has seen that trials.jsonl does not record (interrupted, or
      trained when the disk filled up) is queued again, so the resumed search finishes it; then
      the reference points not yet evaluated.

    Returns the study, how many trials were told FAIL, the queue (Optuna parameters, in order) and
    one line per repair.

    Raises:
        RunError: a finished trial of trials.jsonl that cannot be told to the study.
    """
    journal, storage, backend, existed, notes = _open_journal(folder, opts)
    done = {r.arch_id for r in records}
    told, again = _seen(journal, space, done)
    missing = [a for a in aggregate(records) if a.arch_id not in told]  # one trial per architecture: its mean
    if missing:
        journal.add_trials([trial_of(replace(a.record, accuracy=a.accuracy), space, opts, folder) for a in missing])
        why = "missing" if not existed else f"stale ({len(missing)} of the {len(records)} finished trials absent)"
        notes.append(
            f"{folder.study_path}: {why}; rebuilt from {folder.trials_path.name} "
            f"({len(missing)} architectures told to the study)"
        )
    stale = _fail_unfinished(journal)
    queue = list(again.values())
    for arch in space.reference_points().values():
        if arch.arch_id not in done and arch.arch_id not in again:
            queue.append(space.params_of(arch))
    source = StudySource.of(folder, opts, space)
    return RunStudy(source, journal, storage, backend), stale, queue, notes


def _open_journal(
    folder: RunFolder, opts: SearchOptions
) -> tuple[optuna.Study, optuna.storages.JournalStorage, BatchedJournal, bool, list[str]]:
    """The run's journal study, created if new: the study, its storage and backend, whether the
    journal file existed, and a note if an unreadable one was moved aside (and a new one begun)."""
    notes: list[str] = []
    existed = folder.study_path.is_file()
    try:
        storage, backend = journal_storage(folder)
    except ValueError as e:  # a line broken in the middle: Optuna cannot replay the journal
        side = folder.study_path.with_name(f"{folder.study_path.name}.damaged-{datetime.now():%Y%m%d-%H%M%S}")
        os.replace(folder.study_path, side)
        notes.append(f"{folder.study_path}: unreadable ({' '.join(str(e).split())}); moved to {side.name}")
        existed = False
        storage, backend = journal_storage(folder)
    journal = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        load_if_exists=True,
        directions=pareto.directions(opts.objectives),
        sampler=optuna.samplers.RandomSampler(),
    )
    return journal, storage, backend, existed, notes


def _seen(journal: optuna.Study, space: SearchSpace, done: set[str]) -> tuple[set[str], dict[str, dict[str, Any]]]:
    """What the journal knows: the architectures whose end it was told, and those it has seen
    that are not `done` (not in trials.jsonl), arch id -> their parameters, in trial order."""
    told: set[str] = set()
    again: dict[str, dict[str, Any]] = {}
    for t in journal.get_trials(deepcopy=False):
        if "duplicate_of" in t.user_attrs or not t.params:
            continue
        try:
            arch_id = t.user_attrs.get("arch_id") or space.point(t.params).arch_id
        except (ValueError, SpaceError):
            continue
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.FAIL and "status" in t.user_attrs
        ):
            told.add(arch_id)
        if arch_id not in done:
            again.setdefault(arch_id, dict(t.params))
    return told, again


def _fail_unfinished(journal: optuna.Study) -> int:
    """Tell FAIL every trial a killed process left running or queued; how many there were."""
    stale = 0
    for t in journal.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        journal.tell(t.number, state=TrialState.FAIL)
        stale += 1
    for _ in journal.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        journal.tell(journal.ask(), state=TrialState.FAIL)  # ask() takes the queued ones first
        stale += 1
    return stale


def trial_of(record: TrialRecord, space: SearchSpace, opts: SearchOptions, folder: RunFolder) -> Any:
    """A finished trial of trials.jsonl as an Optuna FrozenTrial, told as ArchSearcher tells it."""
    try:
        params = record.optuna_params or space.params_of(Arch.from_dict(record.arch))
        told = optuna_result(record, opts.objectives, opts.limits)
        return told.frozen(space, params, record.arch_id, rebuilt_from=folder.trials_path.name)
    except (ValueError, TypeError, SpaceError) as e:
        raise RunError(
            f"{folder.trials_path}: trial {record.number} ({record.arch_id}) cannot be told to a "
            f"rebuilt Optuna study ({' '.join(str(e).split())}); not resuming without it"
        ) from None


class BatchedJournal(BaseJournalBackend):
    """A journal file backend whose writes inside `batch()` go to the file as one append (one
    lock, one fsync) when the batch ends; reads see them at once, as JournalStorage expects (it
    reads back every write). Outside a batch every write goes straight through. One writer only
    (the search driver): the logs it buffers are numbered after the file's last."""

    def __init__(self, inner: BaseJournalBackend):
        self.inner = inner
        self._on_file = 0  # logs known to be in the file
        self._pending: list[dict[str, Any]] | None = None

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        if self._pending is None or log_number_from < self._on_file:  # (in a batch the file has no more)
            read = 0
            for log in self.inner.read_logs(log_number_from):
                read += 1
                yield log
            if read:
                self._on_file = max(self._on_file, log_number_from + read)
        if self._pending:
            yield from self._pending[max(0, log_number_from - self._on_file) :]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if self._pending is None:
            self.inner.append_logs(logs)
            self._on_file += len(logs)
        else:
            self._pending.extend(logs)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Gather the writes of the block into one append. They are written even if the block
        raises: the storage has applied them already, and the file must not fall behind it."""
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            if pending:
                self.inner.append_logs(pending)
                for _ in self.inner.read_logs(self._on_file):  # the file backend learns where the new lines
                    pass  # start, or its next read would scan the whole file from its first line
                self._on_file += len(pending)


def journal_storage(folder: RunFolder) -> tuple[optuna.storages.JournalStorage, BatchedJournal]:
    """The run's journal as the search driver writes it: batched (see `BatchedJournal`)."""
    backend = BatchedJournal(JournalFileBackend(str(folder.study_path)))
    return optuna.storages.JournalStorage(backend), backend


class RunStudy:
    """The run's study as the searcher asks and tells it: a working copy in memory, with the
    sampler, mirrored trial for trial into the run's journal (see the module docstring).

    A trial has the same number in both. Per new architecture the journal gets one write (one
    fsync) when it starts (its parameters, as a RUNNING trial) and one when it ends (its user
    attributes, constraint values and state, batched: `BatchedJournal`). Pickled (Tune pickles the searcher), it keeps only its
    source: both studies are reopened from the journal when next used.
    """

    def __init__(
        self, source: StudySource, journal: optuna.Study, storage: optuna.storages.BaseStorage, backend: BatchedJournal
    ):
        self.source = source
        self.journal, self._storage, self._backend = journal, storage, backend
        self._journal_id = storage.get_study_id_from_name(STUDY_NAME)
        self.sampler = make_sampler(source.sampler, source.seed, source.budget, source.space)
        self._work_storage = optuna.storages.InMemoryStorage()
        self.work = optuna.create_study(storage=self._work_storage, directions=journal.directions, sampler=self.sampler)
        self.work.add_trials(journal.get_trials(deepcopy=False))
        self._work_id = self._work_storage.get_study_id_from_name(self.work.study_name)
        self._open: dict[tuple[bool, int], optuna.Trial] = {}  # (journal?, number) -> a running trial

    def __reduce__(self) -> tuple[Any, ...]:
        return (StudySource.open, (self.source,))

    # -- one trial's life
    def ask(self, params: dict[str, Any] | None = None) -> tuple[int, Arch, dict[str, Any], str | None]:
        """Start a trial for a new architecture: `params` (queued: a reference point, one to
        finish) or the sampler's proposal. Returns its number, architecture, parameters and how
        the sampler came to them (None: queued)."""
        if params is not None:
            self.work.enqueue_trial(params)  # taken by the ask right after it: no number is skipped
        trial = self.work.ask()
        arch = self.source.space.sample(trial, full=True)
        kind = self.sampler.take_kind(trial.number)
        attrs = {"arch_id": arch.arch_id, "proposal": kind or "queued"}
        params = trial.params
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=params,
            distributions=self.source.space.distributions(params),
            user_attrs=attrs,
        )
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        trial_id = self._storage.create_new_trial(self._journal_id, template_trial=template)
        self._open[False, trial.number] = trial
        self._open[True, trial.number] = optuna.Trial(self.journal, trial_id)
        return trial.number, arch, params, kind

    def tell(self, number: int, told: OptunaResult) -> None:
        """End a trial as `told` says: its user attributes, then for COMPLETE its constraint values
        and objective values, else its state (PRUNED, FAIL); one write to the journal."""
        if told.state != TrialState.COMPLETE:
            self.end(number, told.state, told.attrs)
            return
        for study in (self.work, self.journal):
            with self._backend.batch() if study is self.journal else contextlib.nullcontext():
                trial = self._trial(study, number)
                for key, value in told.attrs.items():
                    trial.set_user_attr(key, value)
                for name, value in told.constraints.items():
                    trial.set_constraint(name, value)
                study.tell(trial, told.values)

    def end(self, number: int, state: TrialState, attrs: dict[str, Any]) -> None:
        """End a trial as PRUNED or FAIL, with its user attributes (one write to the journal)."""
        for study in (self.work, self.journal):
            with self._backend.batch() if study is self.journal else contextlib.nullcontext():
                trial = self._trial(study, number)
                for key, value in attrs.items():
                    trial.set_user_attr(key, value)
                study.tell(trial, state=state)

    def add(self, params: dict[str, Any], told: OptunaResult, arch_id: str) -> None:
        """Add a finished trial: an architecture told before whose mean has moved (Optuna cannot
        change a finished trial, so its new mean is a new trial with the same parameters)."""
        trial = told.frozen(self.source.space, params, arch_id)
        self.work.add_trial(trial)
        self.journal.add_trial(trial)

    def _trial(self, study: optuna.Study, number: int) -> optuna.Trial:
        """The running trial `number` of `study` (one of the two), forgotten once ended: the one
        `ask` made, or, after unpickling, the trial of that number reattached."""
        in_journal = study is self.journal
        trial = self._open.pop((in_journal, number), None)
        if trial is None:
            storage, study_id = (self._storage, self._journal_id) if in_journal else (self._work_storage, self._work_id)
            trial = optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))
        return trial
