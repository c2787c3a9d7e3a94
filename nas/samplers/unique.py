"""`UniqueSampler`: any Optuna sampler, made to propose only points the study has not seen.

A search space is large, but the points a sampler converges on are few: TPE keeps drawing the same
good network, NSGA-II's crossover of two front points often rebuilds one of them. An evaluation
already made (or running) teaches nothing new, and telling Optuna a duplicate as a failed trial
bloats the study that every later ask reads. The inner sampler proposes as usual; a proposal of a
seen point is *repaired*: the nearest unseen point by one-parameter changes of the proposal (then
two, ...), so the sampler's intent is kept; a random unseen one only where no neighbour is unseen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from nas.samplers.encoding import ArchSpace, Encoding
from nas.samplers.unseen import UnseenSampler
from nas.samplers.window import HistoryWindow

__all__ = ["UniqueSampler"]


class UniqueSampler(UnseenSampler):
    """Any Optuna sampler, made to propose unseen points (see the module docstring).

    The inner sampler sees the study and trial (its relative search space, then its independent
    draws for the parameters the relative sample leaves out, as Optuna would call it); its hooks
    (`before_trial`, `after_trial`) are passed through. What each proposal was ('sampled' by the
    inner sampler, 'repaired', 'fill-in') is kept until taken (`take_kind`).

    Args:
        inner: the sampler that proposes (TPE, NSGA-II/III, GP, random, ...).
        search_space: Optuna distributions by name, an `Encoding` or a `nas.space.SearchSpace`.
        seed: seeds the repairs.
        window: a sampler whose cost grows with the history (TPE, GP) sees only the last `window`
            trials (and those running): a study of their own, made anew each time `window` / 2
            more trials have come (`HistoryWindow`). None: the whole study.
    """

    def __init__(
        self,
        inner: BaseSampler,
        search_space: Encoding | Mapping[str, BaseDistribution] | ArchSpace,
        seed: int | None = None,
        window: int | None = None,
    ):
        super().__init__(search_space, seed)
        self.inner = inner
        self.window = HistoryWindow(window) if window else None

    def _inner_params(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        """The inner sampler's proposal for every parameter of the space, on `study`."""
        inner_space = self.inner.infer_relative_search_space(study, trial)
        params = dict(self.inner.sample_relative(study, trial, inner_space)) if inner_space else {}
        for name, dist in self.encoding.distributions.items():
            if name not in params:
                params[name] = self.inner.sample_independent(study, trial, name, dist)
        return params

    def propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        view = self.window.of(study) if self.window else study
        if view is study:
            params = self._inner_params(study, trial)
        else:  # the inner sampler may write onto the asked trial (TPE's constant liar, GP): one of the copy's
            stand_in = view.ask()
            try:
                params = self._inner_params(view, view.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[-1])
            finally:
                view.tell(stand_in, state=TrialState.FAIL)  # a FAIL trial: no sampler learns from it
        if self.seen.unseen(params):
            self.kinds[trial.number] = "sampled"
            return params
        repaired = self.nearest_unseen(params)
        if repaired is not None:
            self.kinds[trial.number] = "repaired"
            return repaired
        return self.fallback(trial.number, params)

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
