"""The parts a search space is made of: decisions and the stages that hold them.

A `Decision` is one setting of the network (a stage's depth or width, a block's op or kernel, the
width multiplier): fixed, a list of choices, or a numeric range, with the scope it is taken in
(per block, stage or network) and its default. It knows its values, its Optuna distribution and
its YAML form. A `StageSpace` is one stage's fixed structure and its decisions. `SpaceError` is
the error of a bad space, raised by the parser (`nas.space.file`) and by the space (`nas.space`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from nas.checks import is_int, is_num
from nas.errors import NasError
from nas.net.arch import ACMIX_DEFAULTS, CONV_KERNELS, OPS

__all__ = [
    "SpaceError",
    "Kind",
    "KINDS",
    "Decision",
    "StageSpace",
    "BLOCK_DECISIONS",
    "BLOCK_DEFAULTS",
    "CONV_KEYS",
    "ACMIX_KEYS",
    "SCOPES",
]

# Block-level decisions: the op, the conv block's setting, the ACmix block's settings.
CONV_KEYS = ("kernel",)
ACMIX_KEYS = ("heads", "k_att", "k_conv", "alpha", "beta", "learnable")
BLOCK_DECISIONS = ("op",) + CONV_KEYS + ACMIX_KEYS
BLOCK_DEFAULTS: dict[str, Any] = dict(op="conv", kernel=3, **ACMIX_DEFAULTS)
SCOPES = ("block", "stage", "network")


class SpaceError(NasError):
    """A bad search space. str(error) is one line: '<file>: <key path>: <what is wrong / allowed>'."""

    def __init__(self, file: str | Path | None, path: str, msg: str):
        self.file, self.path, self.msg = str(file or "<dict>"), path, msg
        super().__init__(f"{self.file}: {path}: {msg}" if path else f"{self.file}: {msg}")


# -- value kinds ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """What values a decision may take: `check(v)` says whether `v` is one, `allowed` says which
    are (for the error when it is not)."""

    type: str  # 'int' | 'float' | 'str' | 'bool'
    allowed: str
    check: Callable[[Any], bool]


KINDS: dict[str, Kind] = {
    "op": Kind("str", f"one of {list(OPS)}", lambda v: v in OPS),
    "kernel": Kind("int", f"one of {list(CONV_KERNELS)}", lambda v: is_int(v) and v in CONV_KERNELS),
    "k_conv": Kind("int", f"one of {list(CONV_KERNELS)}", lambda v: is_int(v) and v in CONV_KERNELS),
    "k_att": Kind("int", "an odd int from 1 to 31", lambda v: is_int(v) and 1 <= v <= 31 and v % 2 == 1),
    "heads": Kind("int", "an int >= 1", lambda v: is_int(v) and v >= 1),
    "alpha": Kind("float", "a finite number", is_num),
    "beta": Kind("float", "a finite number", is_num),
    "learnable": Kind("bool", "true or false", lambda v: isinstance(v, bool)),
    "depth": Kind("int", "an int from 1 to 64", lambda v: is_int(v) and 1 <= v <= 64),
    "channels": Kind("int", "an int >= 1", lambda v: is_int(v) and v >= 1),
    "width_mult": Kind("float", "a number > 0", lambda v: is_num(v) and v > 0),
}


@dataclass(frozen=True)
class Decision:
    """One decision: fixed (one choice), categorical `choices`, or a `low`..`high` range."""

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    per: str = "block"
    default: Any = None

    @property
    def is_fixed(self) -> bool:
        """Whether there is one value only (not searched)."""
        return self.choices is not None and len(self.choices) == 1

    @property
    def is_int(self) -> bool:
        """Whether the values are ints."""
        return KINDS[self.key].type == "int"

    def values(self) -> tuple[Any, ...] | None:
        """Every value, or None for a continuous range."""
        if self.choices is not None:
            return self.choices
        if self.is_int:
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return tuple(round(self.low + i * self.step, 12) for i in range(n))

    @property
    def count(self) -> float:
        """The number of values (math.inf for a continuous range)."""
        vals = self.values()
        return math.inf if vals is None else len(vals)

    @property
    def min(self) -> Any:
        """The smallest value."""
        vals = self.values()
        return self.low if vals is None else min(vals)

    @property
    def max(self) -> Any:
        """The largest value."""
        vals = self.values()
        return self.high if vals is None else max(vals)

    def contains(self, v: Any) -> bool:
        """Whether `v` is one of the values (a float decision also takes an int of equal value)."""
        if self.choices is not None:
            return any(v == c and type(v) is type(c) for c in self.choices) or (
                KINDS[self.key].type == "float" and is_num(v) and v in self.choices
            )
        vals = self.values()
        if vals is not None:
            return v in vals
        return is_num(v) and self.low <= v <= self.high

    def suggest(self, trial: Any, name: str) -> Any:
        """One Optuna suggest_* call (none for a fixed value)."""
        if self.is_fixed:
            return self.choices[0]
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)

    def distribution(self) -> Any:
        """The Optuna distribution `suggest` samples from (for a decision that is not fixed)."""
        import optuna

        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.is_int:
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), step=self.step, log=self.log)

    def to_dict(self) -> Any:
        """The YAML form: the value when fixed, else a mapping with `per` and `default` filled in."""
        if self.is_fixed:
            return self.choices[0]
        d: dict[str, Any] = {}
        if self.choices is not None:
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high)
            if self.step is not None:
                d["step"] = self.step
            if self.log:
                d["log"] = True
        d["per"] = self.per
        d["default"] = self.default
        return d


@dataclass(frozen=True)
class StageSpace:
    """One stage of a space: fixed block kind, stride and bottleneck ratio; decided depth, width and
    per-block settings (`decisions`, one per key of BLOCK_DECISIONS)."""

    block: str
    stride: int
    bottle_ratio: float
    depth: Decision
    channels: Decision
    decisions: Mapping[str, Decision]

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (its `blocks` without the network's decisions, which the space lists)."""
        return dict(
            depth=self.depth.to_dict(),
            channels=self.channels.to_dict(),
            stride=self.stride,
            block=self.block,
            bottle_ratio=self.bottle_ratio,
            blocks={k: self.decisions[k].to_dict() for k in BLOCK_DECISIONS if self.decisions[k].per != "network"},
        )
