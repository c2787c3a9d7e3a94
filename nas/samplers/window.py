"""A study's recent history as a study of its own, for samplers whose cost grows with the history."""

from __future__ import annotations

import optuna
from optuna.study import Study

__all__ = ["HistoryWindow"]


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
