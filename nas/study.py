"""The run's Optuna study: its sampler, and the study opened to agree with trials.jsonl.

The study lives in the run folder's journal (`RunFolder.storage`); trials.jsonl is the record of
what is done, so on resume the study is made to agree with it (`open_study`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna

from nas import pareto
from nas.options import SearchOptions
from nas.results import STUDY_NAME, RunError, RunFolder, TrialRecord, aggregate
from nas.space import SearchSpace, SpaceError

__all__ = ['StudySource', 'make_sampler', 'open_study', 'trial_of']


def make_sampler(name: str, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    """A named, seeded Optuna sampler. Hard limits reach the samplers that use them through each
    trial's constraint values (`Trial.set_constraint`), not through a constraints function."""
    population = max(4, min(50, budget // 4))
    return {
        'tpe': lambda: optuna.samplers.TPESampler(seed=seed),
        'nsga2': lambda: optuna.samplers.NSGAIISampler(seed=seed, population_size=population),
        'nsga3': lambda: optuna.samplers.NSGAIIISampler(seed=seed, population_size=population),
        # GP draws parameters outside every trial's common set at random and would warn for each of
        # them at every trial; the search says it once instead (nas.search).
        'gp': lambda: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False),
        'random': lambda: optuna.samplers.RandomSampler(seed=seed),
    }[name]()


@dataclass(frozen=True)
class StudySource:
    """Where the run's study lives and how it is sampled: what a pickled searcher carries instead
    of the study itself. The study's state is its journal (and trials.jsonl), so `load` reopens it
    anywhere the run folder is; the sampler is made anew from its name and seed, since samplers
    may hold what cannot be pickled (Optuna 5.1's GA samplers keep a threading.Lock)."""

    journal: Path
    sampler: str
    seed: int
    budget: int

    @classmethod
    def of(cls, folder: RunFolder, opts: SearchOptions) -> StudySource:
        return cls(folder.study_path.resolve(), opts.sampler, opts.seed, opts.budget)

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=STUDY_NAME, storage=RunFolder(self.journal.parent).storage(),
                                 sampler=make_sampler(self.sampler, self.seed, self.budget))


def open_study(folder: RunFolder, opts: SearchOptions, space: SearchSpace,
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
    missing = [a for a in aggregate(records) if a.arch_id not in told]  # one trial per architecture: its mean
    if missing:
        study.add_trials([trial_of(replace(a.record, accuracy=a.accuracy), space, opts, folder) for a in missing])
        why = 'missing' if not existed else f'stale ({len(missing)} of the {len(records)} finished trials absent)'
        notes.append(f'{folder.study_path}: {why}; rebuilt from {folder.trials_path.name} '
                     f'({len(missing)} architectures told to the study)')
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


def trial_of(record: TrialRecord, space: SearchSpace, opts: SearchOptions, folder: RunFolder) -> Any:
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
