"""A search space as the samplers see it: Optuna distributions, and the id of a point.

`Encoding` holds one Optuna distribution per parameter (categorical, int, float, each possibly
stepped or log-scaled) and a `key` function that names the point a set of parameters stands for:
two parameter sets with the same key are the same point, so a sampler that has seen one does not
propose the other. By default the key is the values of all the parameters; a space whose parameters
do not all matter (a block's kernel when the block is not a convolution) passes a key that keeps
only those that do, so that proposals differing in unused parameters count as one point.
`Encoding.of` also takes an object with an `encoding` (name -> decision with `distribution()`)
and `point(params).arch_id`, such as `nas.space.SearchSpace`, whose architecture ids are the keys.

`Seen` is the set of keys of a study's trials, read once per trial as trials are added.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import Study
from optuna.trial import TrialState

__all__ = ["Encoding", "ArchSpace", "Seen", "ENQUEUED"]

ENQUEUED = "fixed_params"  # Optuna's system attribute of an enqueued trial (as its GridSampler reads it)
Key = Callable[[Mapping[str, Any]], Hashable]


class ArchSpace(Protocol):
    """What `Encoding.of` reads of a space of architectures (`nas.space.SearchSpace` is one)."""

    @property
    def encoding(self) -> Mapping[str, Any]: ...  # name -> a decision with `distribution()`

    def point(self, params: Mapping[str, Any]) -> Any: ...  # with an `arch_id`


@dataclass(frozen=True)
class Encoding:
    """Optuna distributions, one per parameter, and the key naming the point parameters stand for.

    Args:
        distributions: parameter name -> its Optuna distribution.
        key: parameters -> the id of their point; a ValueError, TypeError or LookupError it
            raises means "not a point of this space" (such a trial is ignored). None: the values
            of every parameter of the encoding.
    """

    distributions: Mapping[str, BaseDistribution]
    key: Key | None = None
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        for name, d in self.distributions.items():
            if not isinstance(d, (CategoricalDistribution, IntDistribution, FloatDistribution)):
                raise TypeError(
                    f"{name}: expected an Optuna CategoricalDistribution, IntDistribution or "
                    f"FloatDistribution, got {type(d).__name__}"
                )
        object.__setattr__(self, "distributions", dict(self.distributions))
        object.__setattr__(self, "names", tuple(self.distributions))

    @classmethod
    def of(cls, space: Encoding | Mapping[str, BaseDistribution] | ArchSpace) -> Encoding:
        """`space` as an Encoding: itself, its distributions with the default key, or a space of
        architectures (its full encoding, keyed by architecture id)."""
        if isinstance(space, Encoding):
            return space
        if isinstance(space, Mapping):
            return cls(space)
        if hasattr(space, "encoding") and hasattr(space, "point"):
            return cls({n: d.distribution() for n, d in space.encoding.items()}, _ArchKey(space))
        raise TypeError(
            f"expected Optuna distributions by name, an Encoding or a SearchSpace, got {type(space).__name__}"
        )

    def id_of(self, params: Mapping[str, Any]) -> Hashable | None:
        """The key of `params`, or None if they are not a point of the space."""
        try:
            return self.key(params) if self.key is not None else tuple(params[name] for name in self.names)
        except (ValueError, TypeError, LookupError):  # another version's trial, a value out of range
            return None

    def draw(self, name: str, rng: np.random.Generator, other_than: Any = None) -> Any:
        """A random value of parameter `name` (uniform; log-uniform on a log scale), if possible
        not `other_than`."""
        return draw(self.distributions[name], rng, other_than)

    def random(self, rng: np.random.Generator) -> dict[str, Any]:
        """A random point's parameters."""
        return {name: self.draw(name, rng) for name in self.names}

    def completed(self, params: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """`params` with the parameters they lack drawn at random (in the encoding's order)."""
        return {name: params[name] if name in params else self.draw(name, rng) for name in self.names}


@dataclass(frozen=True)
class _ArchKey:
    """A space of architectures' key: the architecture id of the parameters."""

    space: ArchSpace

    def __call__(self, params: Mapping[str, Any]) -> str:
        return self.space.point(params).arch_id


def values(d: BaseDistribution) -> list[Any] | None:
    """Every value of a distribution, or None where they are too many to list (a continuous range,
    or more than 10,000 ints)."""
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, IntDistribution):
        n = (d.high - d.low) // d.step + 1
        return list(range(d.low, d.high + 1, d.step)) if n <= 10_000 else None
    if d.step is not None:
        n = int(math.floor((d.high - d.low) / d.step + 1e-9)) + 1
        return [round(d.low + i * d.step, 12) for i in range(n)] if n <= 10_000 else None
    return None


def draw(d: BaseDistribution, rng: np.random.Generator, other_than: Any = None) -> Any:
    """A random value of `d`, not `other_than` where `d` has another (see `Encoding.draw`)."""
    if isinstance(d, (IntDistribution, FloatDistribution)) and d.log:
        x = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
        return min(d.high, max(d.low, round(x))) if isinstance(d, IntDistribution) else float(x)
    pool = values(d)
    if pool is None:  # a wide range: a clash with `other_than` is too rare to matter
        if isinstance(d, IntDistribution):
            return int(d.low + d.step * rng.integers((d.high - d.low) // d.step + 1))
        if d.step is not None:
            return round(d.low + d.step * int(rng.integers(int((d.high - d.low) / d.step + 1e-9) + 1)), 12)
        return float(rng.uniform(d.low, d.high))
    others = [v for v in pool if not (v == other_than and type(v) is type(other_than))]
    v = (others or pool)[int(rng.integers(len(others or pool)))]
    return v.item() if isinstance(v, np.generic) else v


class Seen:
    """The keys of a study's trials (any state, waiting ones by their enqueued parameters),
    updated with the trials added since the last call: a trial's parameters never change once
    sampled, so each is read once."""

    def __init__(self, encoding: Encoding):
        self.encoding = encoding
        self.ids: set[Hashable] = set()
        self._next = 0  # trials before this index are read

    def update(self, study: Study, current: int) -> set[Hashable]:
        """The keys of every trial but `current` (the trial being sampled)."""
        trials = study.get_trials(deepcopy=False)
        for t in trials[self._next :]:
            if t.number == current:
                break
            params = t.system_attrs.get(ENQUEUED, {}) if t.state == TrialState.WAITING else t.params
            key = self.encoding.id_of(params)
            if key is not None:
                self.ids.add(key)
            self._next += 1
        return self.ids

    def unseen(self, params: Mapping[str, Any]) -> bool:
        """Whether `params` are a point of the space that no trial has."""
        key = self.encoding.id_of(params)
        return key is not None and key not in self.ids
