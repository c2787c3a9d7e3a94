"""Optuna samplers that propose architectures not yet evaluated.

A search space is large, but the architectures a sampler converges on are few: TPE keeps drawing
the same good network, NSGA-II's crossover of two front points often rebuilds one of them. An
evaluation already made (or running) teaches nothing new, and telling Optuna a duplicate as a
failed trial bloats the study that every later ask reads. Both samplers here draw every
parameter of the space's full encoding (`SearchSpace.encoding`, see `SearchSpace.sample(trial,
full=True)`) in one relative sample, build the architecture, and return only one that the study
has not seen:

* `UniqueSampler(inner, space)` wraps any Optuna sampler (TPE, NSGA-II/III, GP, random). The
  inner sampler proposes as usual; a proposal of a seen architecture is *repaired*: the nearest
  unseen architecture by one-decision changes of the proposal (then two, ...), so the sampler's
  intent is kept; a random unseen one only where no neighbour is unseen.
* `EvolutionSampler(space)` is multi-objective regularized evolution (Real et al., AAAI 2019, in
  the spirit of its aging population, with a Pareto tournament): the population is the
  `population` architectures told most recently; a parent is the best of `tournament` members
  drawn at random, by Pareto rank within the population (feasible ones first), then by crowding
  distance on its front as NSGA-II ranks them (the ends of the front first, which extends it
  towards cheaper and towards more accurate networks); the child is the parent with one decision
  changed, to an architecture never seen. Until the population is full it draws random unseen
  architectures. Its state is the study: nothing to pickle, nothing that grows.

What each proposal was ('sampled' by the inner sampler, 'repaired', 'mutated', 'random' in the
evolution's first population, 'fill-in': random where nothing better was unseen) is kept per trial number in
`kinds` until the caller takes it (`take_kind`); `exhausted` is set when no unseen architecture
could be found (the caller stops asking).

    >>> sampler = EvolutionSampler(space, seed=0)
    >>> study = optuna.create_study(directions=['maximize', 'minimize'], sampler=sampler)
    >>> arch = space.sample(study.ask(), full=True)     # never one the study has seen
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nas.space import Decision, SearchSpace

__all__ = ['SeenArchs', 'UniqueSampler', 'HistoryWindow', 'EvolutionSampler']

RANDOM_TRIES = 2000  # random draws that find nothing unseen: the space counts as exhausted
ENQUEUED = 'fixed_params'  # Optuna's system attribute of an enqueued trial (as its GridSampler reads it)


class SeenArchs:
    """The architecture ids of a study's trials (any state, waiting ones by their enqueued
    parameters), updated with the trials added since the last call: a trial's parameters never
    change once sampled, so each is decoded once."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.ids: set[str] = set()
        self._next = 0  # trials before this index are decoded

    def update(self, study: Study, current: int) -> set[str]:
        """The ids of every trial but `current` (the trial being sampled)."""
        trials = study.get_trials(deepcopy=False)
        for t in trials[self._next :]:
            if t.number == current:
                break
            params = t.system_attrs.get(ENQUEUED, {}) if t.state == TrialState.WAITING else t.params
            arch_id = self.arch_id(params)
            if arch_id is not None:
                self.ids.add(arch_id)
            self._next += 1
        return self.ids

    def arch_id(self, params: dict[str, Any]) -> str | None:
        try:
            return self.space.point(params).arch_id
        except (ValueError, TypeError, LookupError):  # not a point of this space (another version's trial)
            return None


class _ArchSampler(BaseSampler):
    """What both samplers share: the full encoding as one relative search space, the seen
    architectures, one-decision mutations and random unseen draws."""

    def __init__(self, space: SearchSpace, seed: int | None):
        self.space = space
        self.seen = SeenArchs(space)
        self._rng = np.random.default_rng(seed)
        self._space = {name: d.distribution() for name, d in space.encoding.items()}
        self.kinds: dict[int, str] = {}
        self.exhausted = False

    def take_kind(self, number: int) -> str | None:
        """How the trial's parameters came about (see the module docstring; None: enqueued),
        forgotten once taken."""
        return self.kinds.pop(number, None)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {} if ENQUEUED in trial.system_attrs else dict(self._space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return (
            self._draw(self.space.encoding[param_name])
            if param_name in self.space.encoding
            else optuna.samplers.RandomSampler().sample_independent(study, trial, param_name, param_distribution)
        )

    # -- drawing
    def _draw(self, d: Decision, other_than: Any = None) -> Any:
        values = d.values()
        if values is None:  # a continuous range
            if d.log:
                return float(math.exp(self._rng.uniform(math.log(d.low), math.log(d.high))))
            return float(self._rng.uniform(d.low, d.high))
        pool = [v for v in values if not (v == other_than and type(v) is type(other_than))] or list(values)
        v = pool[int(self._rng.integers(len(pool)))]
        return v.item() if isinstance(v, np.generic) else v

    def _unseen(self, params: dict[str, Any]) -> bool:
        arch_id = self.seen.arch_id(params)
        return arch_id is not None and arch_id not in self.seen.ids

    def random_unseen(self) -> dict[str, Any] | None:
        for _ in range(RANDOM_TRIES):
            params = {name: self._draw(d) for name, d in self.space.encoding.items()}
            if self._unseen(params):
                return params
        return None

    def nearest_unseen(self, params: dict[str, Any], max_changes: int = 3) -> dict[str, Any] | None:
        """An unseen architecture one decision away from `params` (each decision tried once, in
        random order, with a random other value); failing that, two decisions away, and so on."""
        names = list(self.space.encoding)
        frontier = [self.completed(params)]
        for _ in range(max_changes):
            nxt = []
            for base in frontier[:8]:
                for i in self._rng.permutation(len(names)):
                    name = names[int(i)]
                    child = {**base, name: self._draw(self.space.encoding[name], other_than=base[name])}
                    if self._unseen(child):
                        return child
                    nxt.append(child)
            frontier = nxt
        return None

    def completed(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with every parameter of the full encoding: those it lacks (a trial of
        define-by-run sampling, an enqueued reference point) drawn at random; they are not used by
        its architecture, so it stays the same."""
        return {name: params[name] if name in params else self._draw(d) for name, d in self.space.encoding.items()}

    def _fallback(self, number: int, proposal: dict[str, Any]) -> dict[str, Any]:
        params = self.random_unseen()
        if params is None:  # nothing unseen is left to find: the caller sees a duplicate and stops
            self.exhausted = True
            self.kinds[number] = 'exhausted'
            return proposal
        self.kinds[number] = 'fill-in'
        return params


class UniqueSampler(_ArchSampler):
    """Any Optuna sampler, made to propose unseen architectures (see the module docstring).

    The inner sampler sees the study and trial (its relative search space, then its independent
    draws for the parameters the relative sample leaves out, as Optuna would call it); its hooks
    (`before_trial`, `after_trial`) are passed through. With `window`, a sampler whose cost grows
    with the history (TPE, GP) sees only the last `window` trials (and those running): a study of
    their own, made anew each time `window` / 2 more trials have come (`HistoryWindow`).
    """

    def __init__(self, inner: BaseSampler, space: SearchSpace, seed: int | None = None, window: int | None = None):
        super().__init__(space, seed)
        self.inner = inner
        self.window = HistoryWindow(window) if window else None

    def _inner_params(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        """The inner sampler's proposal for every parameter of the space, on `study`."""
        inner_space = self.inner.infer_relative_search_space(study, trial)
        params = dict(self.inner.sample_relative(study, trial, inner_space)) if inner_space else {}
        for name, dist in self._space.items():
            if name not in params:
                params[name] = self.inner.sample_independent(study, trial, name, dist)
        return params

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        self.seen.update(study, trial.number)
        view = self.window.of(study) if self.window else study
        if view is study:
            params = self._inner_params(study, trial)
        else:  # the inner sampler may write onto the asked trial (TPE's constant liar, GP): one of the copy's
            stand_in = view.ask()
            try:
                params = self._inner_params(view, view.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[-1])
            finally:
                view.tell(stand_in, state=TrialState.FAIL)  # a FAIL trial: no sampler learns from it
        if self._unseen(params):
            self.kinds[trial.number] = 'sampled'
            return params
        repaired = self.nearest_unseen(params)
        if repaired is not None:
            self.kinds[trial.number] = 'repaired'
            return repaired
        return self._fallback(trial.number, params)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self.inner.reseed_rng()


class HistoryWindow:
    """The recent finished trials of a study as an in-memory study of their own, for a sampler
    whose cost per ask grows with the history: the copy is made anew from the last `size` trials
    each time `size` / 2 more have come, and the trials that finish in between are added to it, so
    it holds at most 1.5 x `size` trials and costs O(1) per ask over a run. Until the study has
    `size` trials the study itself is used. Trials in flight are not in the copy (a constant liar
    sees none of them there; the unseen-only rule still keeps proposals apart)."""

    def __init__(self, size: int):
        self.size = size
        self._copy: Study | None = None
        self._made_at = 0  # trials in the study when the copy was made
        self._synced = 0  # trials before this number were looked at
        self._open: list[int] = []  # trials not finished when looked at

    def of(self, study: Study) -> Study:
        trials = study.get_trials(deepcopy=False)
        if len(trials) <= self.size:
            return study
        if self._copy is None or len(trials) >= self._made_at + self.size // 2:
            self._copy = optuna.create_study(directions=study.directions, sampler=optuna.samplers.RandomSampler())
            self._made_at, self._synced, self._open = len(trials), len(trials) - self.size, []
        looking = [*self._open, *range(self._synced, len(trials))]
        self._copy.add_trials([trials[n] for n in looking if trials[n].state.is_finished()])
        self._open = [n for n in looking if not trials[n].state.is_finished()]
        self._synced = len(trials)
        return self._copy


class EvolutionSampler(_ArchSampler):
    """Multi-objective regularized evolution over architectures (see the module docstring).

    Args:
        space: the search space (its full encoding is the genome).
        population: the most recently told architectures that can be parents (aging).
        tournament: members drawn at random for each parent's tournament.
        seed: seeds the sampler.
    """

    def __init__(self, space: SearchSpace, population: int = 32, tournament: int = 8, seed: int | None = None):
        super().__init__(space, seed)
        if not 1 <= tournament <= population:
            raise ValueError(f'tournament must be from 1 to population ({population}), got {tournament}')
        self.population, self.tournament = population, tournament
        self._members: deque[FrozenTrial] = deque(maxlen=population)  # the complete trials, oldest first
        self._open: list[int] = []  # trial numbers not finished when last looked at
        self._looked = 0  # trials before this number have been looked at

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        self.seen.update(study, trial.number)
        members = self._population(study)
        if len(members) < self.population:  # the first population: random unseen architectures
            params = self.random_unseen()
            if params is None:
                return self._fallback(trial.number, {})
            self.kinds[trial.number] = 'random'
            return params
        for _ in range(8):  # parents whose every neighbour has been seen: another tournament
            parent = self._tournament(members, study.directions)
            child = self.nearest_unseen(dict(parent.params), max_changes=1)
            if child is not None:
                self.kinds[trial.number] = 'mutated'
                return child
        child = self.nearest_unseen(dict(self._tournament(members, study.directions).params))
        if child is not None:
            self.kinds[trial.number] = 'mutated'
            return child
        return self._fallback(trial.number, {})

    def _population(self, study: Study) -> list[FrozenTrial]:
        """The last `population` complete trials (of this space's parameters), in the order they
        were found complete: only the trials new since the last call, and those still open then,
        are looked at (a trial's number is its index in the study)."""
        trials = study.get_trials(deepcopy=False)
        still_open = []
        for number in [*self._open, *range(self._looked, len(trials))]:
            t = trials[number]
            if t.state == TrialState.COMPLETE:
                if t.values is not None and all(k in self._space for k in t.params):
                    self._members.append(t)
            elif not t.state.is_finished():
                still_open.append(number)
        self._open, self._looked = still_open, len(trials)
        return list(self._members)

    def _tournament(self, members: list[FrozenTrial], directions: Sequence[StudyDirection]) -> FrozenTrial:
        """A parent: the best of `tournament` random members by Pareto rank in the population
        (infeasible ones after every feasible one), then by crowding distance on its front (the
        ends of a front first: they extend it), ties at random."""
        rank, crowding = _rank_and_crowding(members, directions)
        picked = self._rng.choice(len(members), self.tournament, replace=False)
        best = min((rank[i], -crowding[i], self._rng.random(), int(i)) for i in picked)
        return members[best[-1]]


def _rank_and_crowding(
    members: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> tuple[np.ndarray, np.ndarray]:
    """Each member's non-domination rank (feasible ones first: an infeasible member ranks after
    every feasible one) and its crowding distance within its front (NSGA-II's: the sum over
    objectives of the gap between its neighbours, scaled by the front's range; inf at the ends)."""
    from nas.run.pareto import nondominated_ranks

    sign = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    losses = np.array([t.values for t in members], dtype=float) * sign
    feasible = np.array([all(c <= 0 for c in t.user_attrs.get('constraints') or []) for t in members])
    rank = np.zeros(len(members), dtype=int)
    for group, offset in ((feasible, 0), (~feasible, len(members))):
        if group.any():
            rank[group] = nondominated_ranks(losses[group]) + offset
    crowding = np.zeros(len(members))
    for r in np.unique(rank):
        idx = np.flatnonzero(rank == r)
        for j in range(losses.shape[1]):
            order = idx[np.argsort(losses[idx, j], kind='stable')]
            span = losses[order[-1], j] - losses[order[0], j]
            crowding[order[0]] = crowding[order[-1]] = np.inf
            if len(order) > 2 and span > 0:
                crowding[order[1:-1]] += (losses[order[2:], j] - losses[order[:-2], j]) / span
    return rank, crowding
