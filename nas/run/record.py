"""One trial's record: a line of trials.jsonl (and of fidelity.jsonl), and the checks that a line
read back must pass before it counts anywhere.

`TrialRecord` is what an evaluation produces and what the run folder (`nas.run.folder`), the
archive of architectures (`nas.run.archive`), the front and every report read; `check_record` checks a
parsed line field by field and says which field is wrong (`RecordError`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache, partial
from typing import Any

from nas.errors import NasError
from nas.run.pareto import OBJECTIVES

__all__ = ["STATUSES", "TrialRecord", "RecordError", "check_record"]

STATUSES = ("complete", "stopped", "failed", "infeasible")


@dataclass
class TrialRecord:
    """One line of trials.jsonl."""

    number: int  # position in the run, from 0
    arch_id: str
    arch: dict[str, Any]
    status: str  # see STATUSES ('running' only in progress reports, never in trials.jsonl)
    accuracy: float | None = None  # final validation accuracy (fraction)
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    memory_mb: float | None = None
    acc_per_epoch: list[float] = field(default_factory=list)
    loss_per_epoch: list[float] = field(default_factory=list)
    epochs: int = 0  # epochs trained: the fidelity reached
    rung: int = 0  # the fidelity ladder's rung it was trained at (nas.run.ladder): 0 the proxy, 1 promoted, ...
    seconds: float = 0.0  # wall time of the trial (cost measurement + training + evaluation)
    train_seconds: float = 0.0  # of which training and evaluation
    cpu_seconds: float = (
        0.0  # CPU time of the trial's process over the same span (a cost that machine load does not inflate)
    )
    error: str | None = None
    reference: str | None = None  # 'all_conv' | 'all_acmix' | 'paper' for the reference points
    optuna_number: int | None = None
    optuna_params: dict[str, Any] = field(default_factory=dict)
    constraints: list[float] = field(default_factory=list)  # <= 0 where a hard limit holds
    rates: list[dict[str, Any]] = field(default_factory=list)  # learned alpha/beta per ACmix block
    weights: str | None = None  # path of the weights file, relative to the run folder
    node: str | None = None  # the Ray node that ran the trial
    seed: int | None = None  # the proxy's seed (initial weights, batch order, augmentation)
    device: str | None = None  # where it was costed and trained ('cpu', 'cuda:0')
    gpu_ids: list[str] = field(default_factory=list)  # the GPUs Ray gave the trial (empty on CPU)
    setup_seconds: float = 0.0  # in the trainable before evaluation: the data fetched and placed
    started_at: str = ""
    finished_at: str = ""

    @property
    def feasible(self) -> bool:
        return all(c <= 0 for c in self.constraints)

    def value(self, objective: str) -> float | None:
        return getattr(self, OBJECTIVES[objective][0])

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class RecordError(NasError):
    """A line of a records file that is not a valid trial record; `field` names what is wrong."""

    def __init__(self, field: str, msg: str):
        self.field, self.msg = field, msg
        super().__init__(f"{field}: {msg}" if field else msg)


def _int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _num(v: Any, low: float = 0.0, high: float = math.inf) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


_fraction = partial(_num, high=1.0)
_finite = partial(_num, low=-math.inf)
_text = _optional(lambda v: isinstance(v, str))
# field -> (check, what is allowed): every field of TrialRecord, as trials.jsonl holds it
_RECORD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "number": (_int, "an int >= 0"),
    "arch_id": (lambda v: isinstance(v, str) and v != "", "an architecture id (a string)"),
    "arch": (lambda v: isinstance(v, dict), "an architecture (a mapping)"),
    "status": (lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}"),
    "accuracy": (_optional(_fraction), "a number in [0, 1] or null"),
    "params": (_optional(_num), "a number >= 0 or null"),
    "macs": (_optional(_num), "a number >= 0 or null"),
    "latency_ms": (_optional(_num), "a number >= 0 or null"),
    "memory_mb": (_optional(_num), "a number >= 0 or null"),
    "acc_per_epoch": (_list_of(_fraction), "a list of numbers in [0, 1]"),
    "loss_per_epoch": (_list_of(_finite), "a list of numbers"),
    "epochs": (_int, "an int >= 0"),
    "rung": (_int, "an int >= 0"),
    "seconds": (_num, "a number >= 0"),
    "train_seconds": (_num, "a number >= 0"),
    "setup_seconds": (_num, "a number >= 0"),
    "error": (_text, "a string or null"),
    "reference": (_text, "a string or null"),
    "optuna_number": (_optional(_int), "an int >= 0 or null"),
    "optuna_params": (lambda v: isinstance(v, dict), "a mapping"),
    "constraints": (_list_of(_finite), "a list of numbers"),
    "rates": (_list_of(lambda x: isinstance(x, dict)), "a list of mappings"),
    "weights": (_text, "a string or null"),
    "node": (_text, "a string or null"),
    "seed": (_optional(_int), "an int >= 0 or null"),
    "device": (_text, "a string or null"),
    "gpu_ids": (lambda v: isinstance(v, list), "a list"),
    "started_at": (lambda v: isinstance(v, str), "a string"),
    "finished_at": (lambda v: isinstance(v, str), "a string"),
}
_REQUIRED = ("number", "arch_id", "arch", "status")


@lru_cache(maxsize=1 << 16)
def _arch_id_of(arch_json: str) -> str:
    """The id of an architecture given as canonical JSON (ArchError if it describes no network)."""
    from nas.net.arch import Arch

    return Arch.from_json(arch_json).arch_id


def check_record(d: Any) -> TrialRecord:
    """The TrialRecord a parsed line of trials.jsonl (or fidelity.jsonl) holds, every field checked:
    types and ranges, a known status, an accuracy for a complete trial, an architecture that
    describes a network (nas.net.arch.Arch) and whose id is its arch_id. Keys this version does not
    know are ignored (a later version's records stay readable).

    Raises:
        RecordError: the first field that is wrong (its `field` says which).
    """
    if not isinstance(d, dict):
        raise RecordError("", f"expected a JSON object (a trial record), got {type(d).__name__}")
    for key in _REQUIRED:
        if key not in d:
            raise RecordError(key, "missing")
    for key, (ok, allowed) in _RECORD_CHECKS.items():
        if key in d and not ok(d[key]):
            shown = repr(d[key])
            raise RecordError(key, f"expected {allowed}, got {shown if len(shown) <= 60 else shown[:57] + '...'}")
    if d["status"] == "complete" and d.get("accuracy") is None:
        raise RecordError("accuracy", "a complete trial needs one, got null")
    from nas.net.arch import ArchError

    try:
        arch_id = _arch_id_of(json.dumps(d["arch"], sort_keys=True))
    except (ArchError, TypeError, ValueError) as e:
        raise RecordError("arch", f"not a buildable architecture ({' '.join(str(e).split())})") from None
    if arch_id != d["arch_id"]:
        raise RecordError("arch_id", f"{d['arch_id']!r} is not the id of its arch ({arch_id})")
    return TrialRecord.from_dict(d)
