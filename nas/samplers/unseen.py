"""What the samplers of this package share: the whole encoding sampled at once, and only points
the study has not seen.

`UnseenSampler` is an Optuna `BaseSampler` whose relative search space is the whole encoding
(every parameter, in one relative sample), which knows the keys of the study's trials (`Seen`),
and which finds unseen points near a proposal (`nearest_unseen`: one parameter changed, then
two, ...) or anywhere (`random_unseen`). What each proposal was is kept per trial number in
`kinds` until the caller takes it (`take_kind`); `exhausted` is set when no unseen point could be
found (the caller stops asking).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from nas.samplers.encoding import ENQUEUED, ArchSpace, Encoding, Seen

__all__ = ["UnseenSampler", "RANDOM_TRIES"]

RANDOM_TRIES = 2000  # random draws that find nothing unseen: the space counts as exhausted


class UnseenSampler(BaseSampler):
    """The base of the samplers here (see the module docstring).

    Args:
        search_space: the space: Optuna distributions by name, an `Encoding` (distributions and
            the key that names a point), or a `nas.space.SearchSpace`.
        seed: seeds the sampler.
    """

    def __init__(self, search_space: Encoding | Mapping[str, BaseDistribution] | ArchSpace, seed: int | None = None):
        self.encoding = Encoding.of(search_space)
        self.seen = Seen(self.encoding)
        self._rng = np.random.default_rng(seed)
        self.kinds: dict[int, str] = {}
        self.exhausted = False

    def take_kind(self, number: int) -> str | None:
        """How the trial's parameters came about (None: enqueued), forgotten once taken."""
        return self.kinds.pop(number, None)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {} if ENQUEUED in trial.system_attrs else dict(self.encoding.distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:  # an enqueued trial: its parameters are given
            return {}
        self.seen.update(study, trial.number)
        return self.propose(study, trial)

    @abstractmethod
    def propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        """Every parameter of the encoding for `trial`, a point no other trial has (the study's
        keys are in `seen`), its kind recorded in `kinds`."""

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if param_name in self.encoding.distributions:
            return self.encoding.draw(param_name, self._rng)
        return optuna.samplers.RandomSampler().sample_independent(study, trial, param_name, param_distribution)

    # -- finding unseen points
    def random_unseen(self) -> dict[str, Any] | None:
        for _ in range(RANDOM_TRIES):
            params = self.encoding.random(self._rng)
            if self.seen.unseen(params):
                return params
        return None

    def nearest_unseen(self, params: Mapping[str, Any], max_changes: int = 3) -> dict[str, Any] | None:
        """An unseen point one parameter away from `params` (each parameter tried once, in random
        order, with a random other value); failing that, two parameters away, and so on."""
        names = self.encoding.names
        frontier = [self.encoding.completed(params, self._rng)]
        for _ in range(max_changes):
            nxt = []
            for base in frontier[:8]:
                for i in self._rng.permutation(len(names)):
                    name = names[int(i)]
                    child = {**base, name: self.encoding.draw(name, self._rng, other_than=base[name])}
                    if self.seen.unseen(child):
                        return child
                    nxt.append(child)
            frontier = nxt
        return None

    def fallback(self, number: int, proposal: dict[str, Any]) -> dict[str, Any]:
        """A random unseen point where nothing better was found ('fill-in'); `proposal` itself
        where none is left ('exhausted')."""
        params = self.random_unseen()
        if params is None:  # nothing unseen is left to find: the caller sees a duplicate and stops
            self.exhausted = True
            self.kinds[number] = "exhausted"
            return proposal
        self.kinds[number] = "fill-in"
        return params
