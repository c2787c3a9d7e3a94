"""`EvolutionSampler`: multi-objective regularized evolution, on any Optuna study.

Regularized evolution (Real et al., AAAI 2019), in the spirit of its aging population, with a
Pareto tournament: the population is the `population` points told most recently; a parent is the
best of `tournament` members drawn at random, by Pareto rank within the population (feasible ones
first), then by crowding distance on its front as NSGA-II ranks them (the ends of the front first,
which extends it); the child is the parent with one parameter changed, to a point never seen.
It draws random unseen points only until `start` (10) points are told: from then on every told
point joins the population until it is full, so the search exploits from its 11th trial on
instead of after a whole population of random points (on NAS-Bench-201 that is what lets it keep
up with TPE at 25 trials; benchmarks/nas_bench_201.py). Its state is the study: nothing to pickle,
nothing that grows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nas.run.pareto import nondominated_ranks
from nas.samplers.encoding import ArchSpace, Encoding
from nas.samplers.unseen import UnseenSampler

__all__ = ["EvolutionSampler", "rank_and_crowding", "feasible_trial"]


class EvolutionSampler(UnseenSampler):
    """Multi-objective regularized evolution (see the module docstring).

    What each proposal was ('random' before the evolution starts, 'mutated', 'fill-in': random
    where nothing better was unseen) is kept until taken (`take_kind`).

    Args:
        search_space: Optuna distributions by name, an `Encoding` or a `nas.space.SearchSpace`
            (its full encoding is the genome, its architecture ids the keys).
        population: the most recently told points that can be parents (aging).
        tournament: members drawn at random for each parent's tournament.
        seed: seeds the sampler.
        start: random points told before the evolution starts (at most `population`); until the
            population is full, every told point is a member.
    """

    def __init__(
        self,
        search_space: Encoding | Mapping[str, BaseDistribution] | ArchSpace,
        population: int = 32,
        tournament: int = 8,
        seed: int | None = None,
        start: int = 10,
    ):
        super().__init__(search_space, seed)
        if not 1 <= tournament <= population:
            raise ValueError(f"tournament must be from 1 to population ({population}), got {tournament}")
        if start < 1:
            raise ValueError(f"start must be >= 1, got {start}")
        self.population, self.tournament, self.start = population, tournament, min(start, population)
        self._members: deque[FrozenTrial] = deque(maxlen=population)  # the complete trials, oldest first
        self._open: list[int] = []  # trial numbers not finished when last looked at
        self._looked = 0  # trials before this number have been looked at

    def propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        members = self._population(study)
        if len(members) < self.start:  # before the evolution: random unseen points
            params = self.random_unseen()
            if params is None:
                return self.fallback(trial.number, {})
            self.kinds[trial.number] = "random"
            return params
        ranks = rank_and_crowding(members, study.directions)
        child = None
        for _ in range(8):  # parents whose every neighbour has been seen: another tournament
            child = self.nearest_unseen(dict(self._tournament(members, ranks).params), max_changes=1)
            if child is not None:
                break
        if child is None:
            child = self.nearest_unseen(dict(self._tournament(members, ranks).params))
        if child is None:
            return self.fallback(trial.number, {})
        self.kinds[trial.number] = "mutated"
        return child

    def _population(self, study: Study) -> list[FrozenTrial]:
        """The last `population` complete trials (of this space's parameters), in the order they
        were found complete: only the trials new since the last call, and those still open then,
        are looked at (a trial's number is its index in the study)."""
        trials = study.get_trials(deepcopy=False)
        still_open = []
        for number in [*self._open, *range(self._looked, len(trials))]:
            t = trials[number]
            if t.state == TrialState.COMPLETE:
                if t.values is not None and all(k in self.encoding.distributions for k in t.params):
                    self._members.append(t)
            elif not t.state.is_finished():
                still_open.append(number)
        self._open, self._looked = still_open, len(trials)
        return list(self._members)

    def _tournament(self, members: list[FrozenTrial], ranks: tuple[np.ndarray, np.ndarray]) -> FrozenTrial:
        """A parent: the best of `tournament` random members (all, while fewer) by Pareto rank in
        the population (infeasible ones after every feasible one), then by crowding distance on its
        front (the ends of a front first: they extend it), ties at random; `ranks`: the members'
        `rank_and_crowding`, worked out once per proposal."""
        rank, crowding = ranks
        picked = self._rng.choice(len(members), min(self.tournament, len(members)), replace=False)
        best = min((rank[i], -crowding[i], self._rng.random(), int(i)) for i in picked)
        return members[best[-1]]


def _losses(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> np.ndarray:
    """The trials' objective values as losses (maximised ones negated), (n, m)."""
    sign = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    return np.array([t.values for t in trials], dtype=float) * sign


def feasible_trial(t: FrozenTrial) -> bool:
    """Whether every constraint value of `t` is <= 0: Optuna's (`Trial.set_constraint`) and those
    of the 'constraints' user attribute (as nas.search records them too)."""
    return all(c <= 0 for c in [*t.constraints.values(), *(t.user_attrs.get("constraints") or [])])


def rank_and_crowding(
    members: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> tuple[np.ndarray, np.ndarray]:
    """Each member's non-domination rank (feasible ones first: an infeasible member ranks after
    every feasible one) and its crowding distance within its front (NSGA-II's: the sum over
    objectives of the gap between its neighbours, scaled by the front's range; inf at the ends)."""
    losses = _losses(members, directions)
    feasible = np.array([feasible_trial(t) for t in members])
    rank = np.zeros(len(members), dtype=int)
    for group, offset in ((feasible, 0), (~feasible, len(members))):
        if group.any():
            rank[group] = nondominated_ranks(losses[group]) + offset
    crowding = np.zeros(len(members))
    for r in np.unique(rank):
        idx = np.flatnonzero(rank == r)
        for j in range(losses.shape[1]):
            order = idx[np.argsort(losses[idx, j], kind="stable")]
            span = losses[order[-1], j] - losses[order[0], j]
            crowding[order[0]] = crowding[order[-1]] = np.inf
            if len(order) > 2 and span > 0:
                crowding[order[1:-1]] += (losses[order[2:], j] - losses[order[:-2], j]) / span
    return rank, crowding
