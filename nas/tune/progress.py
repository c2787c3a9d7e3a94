"""How far a fixed list of evaluations is, and how long the rest will take: the job runner's plan
line, its progress lines and its time left (`nas.tune.jobs`).

Every evaluation has a cost: its estimated seconds when the caller timed it (`nas.train.estimate`,
as `nas.calibrate` does), else its relative work (images x epochs x pixels). The time left is
weighted by those costs, not by counts: the work not done yet over the throughput measured so far
(work done per wall second since the first evaluation started; a running evaluation's finished
epochs count as their share of its work), and at least the longest remaining evaluation's own rest
at one slot's share of that throughput (the tail, when fewer evaluations are left than slots run).
Before any epoch is done it is the plan's: estimated seconds over the slots, or unknown.

Ray gives each trial's reports to the driver as they come; `ProgressLines.epoch_line` turns a
report into a line at most every `every` seconds per evaluation (every epoch with 0), so that a
redirected log shows a long evaluation moving, not only evaluations that ended.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from nas.cli import hms

__all__ = ["PROGRESS_EVERY", "finish_times", "makespan", "time_left", "ProgressLines"]

PROGRESS_EVERY = 30.0  # seconds between two progress lines of one running evaluation


def finish_times(costs: Sequence[float], slots: int) -> list[float]:
    """When each of evaluations of these seconds ends, run in order on `slots` slots, each started
    on the first slot free (as Tune starts them)."""
    free, ends = [0.0] * max(1, slots), []
    for c in costs:
        ends.append(free[0] + c)
        heapq.heapreplace(free, ends[-1])
    return ends


def makespan(costs: Sequence[float], slots: int) -> float:
    """The wall seconds of evaluations of these seconds run in order on `slots` slots."""
    return max(finish_times(costs, slots), default=0.0)


def time_left(remaining: Sequence[float], done: float, elapsed: float, slots: int, seconds: bool) -> float | None:
    """Seconds left for evaluations whose remaining costs are `remaining` (a running one's cost
    less its finished share), after `done` cost was done in `elapsed` wall seconds on `slots`
    slots (see the module docstring). `seconds`: the costs are estimated seconds (the plan's rate,
    one cost-second per slot per second, stands in until some work is done), else relative work
    (None until some work is done)."""
    rate = done / elapsed if done > 0 and elapsed > 0 else (float(max(1, slots)) if seconds else None)
    if not remaining:
        return 0.0
    if rate is None:
        return None
    return max(sum(remaining) / rate, max(remaining) * max(1, slots) / rate)


@dataclass
class ProgressLines:
    """The progress of a list of evaluations, keyed by index in the list: their costs, what each
    has done, and the lines that say so."""

    costs: list[float]
    slots: int
    seconds: bool  # the costs are estimated seconds (else relative work)
    every: float = PROGRESS_EVERY
    first_start: float | None = None
    share: dict[int, float] = field(default_factory=dict)  # index -> share of its cost done (1: finished)
    started: dict[int, float] = field(default_factory=dict)
    last_line: dict[int, float] = field(default_factory=dict)

    def start(self, k: int, now: float | None = None) -> None:
        """Evaluation `k` started."""
        now = time.perf_counter() if now is None else now
        self.first_start = now if self.first_start is None else self.first_start
        self.started[k] = self.last_line[k] = now

    def advance(self, k: int, share: float) -> None:
        """Evaluation `k` has done `share` of its work (1 when it ended, whatever its outcome)."""
        self.share[k] = min(1.0, max(self.share.get(k, 0.0), share))

    def left(self, now: float | None = None) -> float | None:
        """The time left (`time_left`) as of `now`."""
        now = time.perf_counter() if now is None else now
        done = sum(self.costs[k] * s for k, s in self.share.items())
        remaining = [c * (1 - self.share.get(k, 0.0)) for k, c in enumerate(self.costs) if self.share.get(k, 0.0) < 1]
        elapsed = now - self.first_start if self.first_start is not None else 0.0
        return time_left(remaining, done, elapsed, self.slots, self.seconds)

    def epoch_line(self, k: int, what: str, epoch: int, epochs: int, now: float | None = None) -> str | None:
        """After epoch `epoch` of `epochs` of evaluation `k` (`what` names it): its progress line,
        or None when its last line is less than `every` seconds old."""
        now = time.perf_counter() if now is None else now
        self.advance(k, epoch / max(1, epochs))
        if now - self.last_line.get(k, now) < self.every:
            return None
        self.last_line[k] = now
        return (
            f"   ...  {what} (evaluation {k + 1} of {len(self.costs)}): epoch {epoch}/{epochs}, "
            f"{hms(now - self.started.get(k, now))} elapsed | {self.left_text(now)}"
        )

    def left_text(self, now: float | None = None) -> str:
        """'~H:MM:SS left', or that it is not known yet."""
        left = self.left(now)
        return "time left not known yet" if left is None else f"~{hms(left)} left"
