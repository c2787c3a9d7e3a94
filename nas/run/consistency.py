"""Records that parse but contradict: which records of a run folder's file count, the same for every reader.

Each line of trials.jsonl passes `nas.run.record.check_record` on its own; this module checks a
record against the records before it and against the run:

- **One evaluation, one result.** An evaluation is an architecture trained with one seed. A
  second record of the same (architecture, seed) with other exact costs (params, MACs: functions
  of the architecture alone) contradicts the first, and a second *complete* record of the same
  (architecture, seed) at the same fidelity (epochs and rung of the ladder) would count one training as two seeds. Either
  is left out: the first record wins, as it is the one a search resumed from and kept the
  weights of. A failed or stopped record followed by another record of the same evaluation is
  kept (a retry after running out of memory, an early stop).
- **The run's space.** A record whose architecture the run's space (run.yaml `space`) cannot
  produce is left out too: it came from another run or a hand edit, nothing says what it was
  trained on, a resumed search cannot map it to the study's parameters, and the front would
  otherwise present it as a point the search found.

`RecordPolicy.refusal` says why a record is left out (None: it counts); `RunFolder.trials` warns
once per line, naming file:line, and skips it. Measured latency and memory may differ between
evaluations of one architecture and are not compared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas.run.record import TrialRecord

if TYPE_CHECKING:
    from nas.space.space import SearchSpace

__all__ = ["EXACT_COSTS", "SpaceMembership", "RecordPolicy"]

EXACT_COSTS = ("params", "macs")  # what the architecture alone decides


class SpaceMembership:
    """Whether the run's space can produce an architecture (`SearchSpace.params_of`), remembered
    per architecture id: a run holds many evaluations of few architectures."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self._outside: dict[str, bool] = {}

    def produces(self, record: TrialRecord) -> bool:
        if record.arch_id not in self._outside:
            from nas.net.arch import Arch, ArchError
            from nas.space.decision import SpaceError

            try:  # the parameters the search recorded rebuild it (one build), else any that do
                rebuilt = self.space.point(record.optuna_params) if record.optuna_params else None
            except (SpaceError, ArchError, TypeError, ValueError):
                rebuilt = None
            if rebuilt is None or rebuilt.arch_id != record.arch_id:
                try:
                    self.space.params_of(Arch.from_dict(record.arch))
                except (SpaceError, ArchError, TypeError, ValueError):
                    self._outside[record.arch_id] = True
            self._outside.setdefault(record.arch_id, False)
        return not self._outside[record.arch_id]


class RecordPolicy:
    """The records of one file read in order: `refusal(record, line)` is why it does not count, or
    None (it counts, and later records are compared with it)."""

    def __init__(self, space: SpaceMembership | None = None):
        self.space = space
        self._costs: dict[tuple[str, int | None], dict[str, tuple[float, int]]] = {}  # -> cost -> value, line
        self._complete: dict[tuple[str, int | None, int, int], int] = {}  # (arch, seed, epochs, rung) -> its line

    def refusal(self, record: TrialRecord, line: int) -> str | None:
        if self.space is not None and not self.space.produces(record):
            return (
                f"architecture {record.arch_id} is not one this run's space ({self.space.space.name}, "
                f"run.yaml) can produce: a record of another run or a hand edit"
            )
        evaluation = f"architecture {record.arch_id} with seed {record.seed}"
        known = self._costs.setdefault((record.arch_id, record.seed), {})
        differ = [
            (cost, getattr(record, cost), *known[cost])
            for cost in EXACT_COSTS
            if cost in known and getattr(record, cost) is not None and getattr(record, cost) != known[cost][0]
        ]
        if differ:
            said = ", ".join(f"{cost} {value} here, {was} in line {at}" for cost, value, was, at in differ)
            return f"contradicts an earlier record of {evaluation} ({said}); the first record counts"
        complete = (record.arch_id, record.seed, record.epochs, getattr(record, "rung", 0))
        if record.status == "complete" and complete in self._complete:
            return (
                f"a second complete record of {evaluation} at {record.epochs} epochs"
                + (f" (rung {record.rung})" if getattr(record, "rung", 0) else "")
                + " (line "
                f"{self._complete[complete]} is the first): one training counted as two seeds; the first record counts"
            )
        for cost in EXACT_COSTS:
            if getattr(record, cost) is not None:
                known.setdefault(cost, (getattr(record, cost), line))
        if record.status == "complete":
            self._complete[complete] = line
        return None
