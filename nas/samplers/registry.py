"""The samplers by name: the one table `--sampler` chooses from.

Each entry makes a seeded sampler for a search of `budget` points that proposes only unseen
points: 'evolution' (`EvolutionSampler`), and Optuna's samplers wrapped in `UniqueSampler`. TPE
models the parameters jointly (multivariate, grouped) with a constant liar for the trials in
flight; TPE and GP, whose every ask reads the whole history, see the last `window` trials.
Hard limits reach the samplers that use them through each trial's constraint values
(`Trial.set_constraint`), not through a constraints function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler

from nas.samplers.encoding import ArchSpace, Encoding
from nas.samplers.evolution import EvolutionSampler
from nas.samplers.unique import UniqueSampler
from nas.samplers.unseen import UnseenSampler

__all__ = ["SAMPLERS", "make_sampler", "evolution_sizes"]


def evolution_sizes(budget: int) -> tuple[int, int]:
    """The evolution's population and tournament for a search of `budget` points."""
    size = max(8, min(64, budget // 4))
    return size, max(2, size // 4)


def _evolution(space: Encoding, seed: int, budget: int, window: int | None) -> EvolutionSampler:
    population, tournament = evolution_sizes(budget)
    return EvolutionSampler(space, population=population, tournament=tournament, seed=seed)


def _ga_population(budget: int) -> int:
    return max(4, min(50, budget // 4))


@dataclass(frozen=True)
class _Optuna:
    """One of Optuna's samplers, seeded and sized by the budget, made unique."""

    make: Callable[[int, int], BaseSampler]  # (seed, budget) -> the inner sampler
    windowed: bool = False  # its ask reads the whole history: it sees a window of it

    def __call__(self, space: Encoding, seed: int, budget: int, window: int | None) -> UniqueSampler:
        with warnings.catch_warnings():  # multivariate/group/constant_liar and NSGA-III are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            inner = self.make(seed, budget)
        return UniqueSampler(inner, space, seed=seed, window=window if self.windowed else None)


Factory = Callable[[Encoding, int, int, "int | None"], UnseenSampler]  # (space, seed, budget, window)
_FACTORIES: dict[str, Factory] = {
    "evolution": _evolution,  # the first is the default
    "tpe": _Optuna(
        lambda seed, _: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True),
        windowed=True,
    ),
    "nsga2": _Optuna(
        lambda seed, budget: optuna.samplers.NSGAIISampler(seed=seed, population_size=_ga_population(budget))
    ),
    "nsga3": _Optuna(
        lambda seed, budget: optuna.samplers.NSGAIIISampler(seed=seed, population_size=_ga_population(budget))
    ),
    "gp": _Optuna(lambda seed, _: optuna.samplers.GPSampler(seed=seed), windowed=True),
    "random": _Optuna(lambda seed, _: optuna.samplers.RandomSampler(seed=seed)),
}
SAMPLERS: tuple[str, ...] = tuple(_FACTORIES)


def make_sampler(
    name: str,
    search_space: Encoding | Mapping[str, BaseDistribution] | ArchSpace,
    seed: int,
    budget: int,
    window: int | None = None,
) -> UnseenSampler:
    """The sampler `name` (one of `SAMPLERS`), seeded, for a search of `budget` points of
    `search_space`; `window`: the trials a TPE or GP ask reads at most (None: all).

    Raises:
        ValueError: an unknown name.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return _FACTORIES[name](Encoding.of(search_space), seed, budget, window)
