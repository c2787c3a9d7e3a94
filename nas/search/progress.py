"""The search's live progress display, a Tune callback of its own (as Ray Tune keeps its
`ProgressReporter` apart from what records results).

One line per recorded evaluation (`Progress.recorded`, called by `nas.search.recorder.Recorder`, the run
folder's writer, after it has recorded one), and, while trials run, a status line with each
running trial's epoch, accuracy so far and time left, and the run's time left: on a terminal it is
updated in place, else printed every `PROGRESS_EVERY` seconds.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TYPE_CHECKING

from ray import tune

from nas.cli import hms

if TYPE_CHECKING:
    from nas.run.archive import Archive
    from nas.run.record import TrialRecord

__all__ = ["Progress", "PROGRESS_EVERY"]

PROGRESS_EVERY = 30.0  # seconds between status lines of running trials when stdout is not a terminal


class Progress(tune.Callback):
    """The progress lines of a search of `budget` architectures, `done` of them recorded before
    this process; `epochs` per trial (0: no status line); `quiet`: no output at all."""

    def __init__(self, budget: int, epochs: int = 0, quiet: bool = False, done: int = 0):
        self.budget, self.epochs, self.quiet = budget, epochs, quiet
        self.tty = sys.stdout.isatty()  # a status line updated in place; else a line every PROGRESS_EVERY s
        self.halted = False  # the recorder stopped recording (a full disk, Ctrl-C): no more status lines
        self.archs = self.archs_before = done  # architectures recorded, as the recorder counts them
        self._running: dict[str, tuple[str, int, float, float]] = {}  # trial id -> arch, epoch, acc, train s
        self._shown = time.perf_counter()
        self._status_shown = False
        self.start = time.perf_counter()

    # -- Tune's callbacks: the running trials
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.halted or not self.epochs:
            return
        record = result.get("record") or {}
        train_seconds = record.get("train_seconds", result.get("record/train_seconds")) or 0.0
        self._running[trial.trial_id] = (
            str(trial.config.get("arch_id", trial.trial_id)),
            int(result.get("epoch") or 0),
            float(result.get("accuracy") or 0.0),
            float(train_seconds),
        )
        if self.quiet:
            return
        now = time.perf_counter()
        if now - self._shown >= (0.5 if self.tty else PROGRESS_EVERY):
            self._show(now)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._running.pop(trial.trial_id, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._running.pop(trial.trial_id, None)

    # -- what the recorder tells
    def recorded(self, trial_id: str, record: TrialRecord, archs: int, failures: int, archive: Archive) -> None:
        """One line for an evaluation the recorder has just recorded: `archs` architectures
        recorded in all, `failures` failed evaluations, the run's `archive`."""
        self._running.pop(trial_id, None)
        self.archs = archs
        if self.quiet:
            return
        self.clear()
        elapsed = time.perf_counter() - self.start
        remaining = max(0, self.budget - archs) * elapsed / max(1, archs - self.archs_before)
        what = {
            "complete": f"acc {record.accuracy:.3f}" if record.accuracy is not None else "",
            "stopped": f"stopped at epoch {record.epochs}, acc {record.accuracy or 0:.3f}",
            "failed": f"{record.error}",
            "infeasible": "over a hard limit, not trained",
        }
        costs = f"{(record.macs or 0) / 1e6:.2f}M MACs {(record.params or 0) / 1e3:.1f}k params"
        tag = f" [{record.reference}]" if record.reference else ""
        tag += f" re-evaluated, seed {record.seed}" if record.optuna_number is None and record.seed is not None else ""
        print(
            f"[{archs:>4}/{self.budget}] {hms(elapsed)} {record.arch_id}{tag} {record.status}: "
            f"{what.get(record.status, '')}, {costs} | failed {failures}, front {len(archive.front())}, "
            f"~{hms(remaining)} left",
            flush=True,
        )

    def halt(self) -> None:
        """The recorder stopped: no more status lines, and the one shown is cleared."""
        self.halted = True
        self.clear()

    # -- the status line
    def status_line(self) -> str:
        """The running trials: epoch, accuracy so far, time left each, and the run's time left."""
        parts, totals = [], []
        for arch_id, epoch, acc, seconds in self._running.values():
            per_epoch = seconds / max(1, epoch)
            left = per_epoch * max(0, self.epochs - epoch)
            totals.append(per_epoch * self.epochs)
            parts.append(f"{arch_id} epoch {epoch}/{self.epochs} acc {acc:.3f} ~{hms(left)}")
        finished = self.archs - self.archs_before
        if finished:  # wall time per new architecture, re-evaluations and concurrency included
            per_arch = (time.perf_counter() - self.start) / finished
        else:  # none finished yet: the running ones' estimated length, shared by those running side by side
            per_arch = sum(totals) / len(totals) ** 2 if totals else 0.0
        run_left = max(0, self.budget - self.archs) * per_arch
        return f"running {len(parts)}: {'; '.join(parts)} | run ~{hms(run_left)} left"

    def _show(self, now: float) -> None:
        self._shown = now
        line = f"[{self.archs:>4}/{self.budget}] " + self.status_line()  # architectures, as `recorded` counts
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns
            sys.stdout.write("\r\x1b[K" + line[: width - 1])
            self._status_shown = True
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def clear(self) -> None:
        """Clear the status line shown in place, if any (before other output)."""
        if self._status_shown:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
            self._status_shown = False
