"""The driver's one picture of a run while it searches: every evaluation, in one `Archive`.

The searcher (`nas.search.searcher`) and the recorder (`nas.search.recorder`) share one
`RunState`: the archive of the run's records (trials.jsonl, read once at the start) and of every
trial finished since. Tune tells a trial's end to the searcher first and to the recorder after it
(its TuneController calls the search algorithm's `on_trial_complete` before the callbacks'), but
neither relies on that: whichever asks first (`RunState.finished`) parses the trial's last result
(`nas.tune.result.record_from_result`), numbers it and adds it to the archive; the other gets the
same record. So each trial is parsed, numbered and added to the front once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from nas.run.archive import Archive
from nas.run.record import TrialRecord
from nas.tune.result import record_from_result

__all__ = ["RunState"]


class RunState:
    """The run's evaluations for the driver: `archive` holds `records` (the run's so far, in
    trials.jsonl order) and every trial that `finished` since, numbered in that order."""

    def __init__(self, objectives: Sequence[str], records: Sequence[TrialRecord] = ()):
        self.archive = Archive(objectives)
        for record in records:
            self.archive.add(record)
        self._taken: dict[str, tuple[TrialRecord, bool]] = {}  # Ray trial id -> its record, until the other asks

    def finished(
        self,
        trial_id: str,
        result: dict[str, Any],
        config: dict[str, Any],
        error: bool = False,
        message: str | None = None,
    ) -> tuple[TrialRecord, bool]:
        """The record of trial `trial_id`, which ended with `result` (flattened or not) and `config`,
        and whether the front moved with it (`Archive.add`). The first to ask adds it to the archive,
        numbered next; the second gets the same record (and it is forgotten). A trial that raised
        (`error`) reaches the searcher without a result: the recorder's later `message` (what it
        raised) and result (how far it got) complete its record."""
        taken = self._taken.pop(trial_id, None)
        if taken is not None:
            if error and message is not None:
                _complete_failure(taken[0], record_from_result(result, config, error=True, message=message))
            return taken
        record = record_from_result(result, config, error=error, message=message)
        record.arch_id = config.get("arch_id") or record.arch_id
        record.number = len(self.archive.records)  # numbers key the Pareto functions and trials.jsonl
        moved = self.archive.add(record)
        self._taken[trial_id] = (record, moved)
        return record, moved


def _complete_failure(record: TrialRecord, known: TrialRecord) -> None:
    """Fill a failed trial's record in place with what is `known` of it now, its number kept. A
    failed evaluation adds nothing to its architecture's mean or costs, so the archive holding
    it needs no update."""
    for f in fields(TrialRecord):
        if f.name not in ("number", "arch_id"):
            setattr(record, f.name, getattr(known, f.name))
