"""The search's recorder: the only writer of the run folder while Tune runs, and its stopper.

`Recorder` is a Tune callback in the driver: it appends every finished trial to trials.jsonl,
keeps its weights, updates pareto.json and hands each recorded trial to the progress display
(`nas.search.progress`). A full disk or Ctrl-C halts it: it records nothing more, and the search
stops cleanly (`HaltStopper`). `FailureStopper` ends the search after more than --max-failures
failed trials. Tune takes the two composed (`ray.tune.stopper.CombinedStopper`).
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.stopper import Stopper

from nas.run.folder import RunFolder
from nas.run.record import TrialRecord
from nas.search.progress import Progress
from nas.search.state import RunState
from nas.tune.result import error_line

__all__ = ["Recorder", "FailureStopper", "HaltStopper"]


class Recorder(tune.Callback):
    """Appends every finished trial to trials.jsonl, keeps its weights and updates pareto.json; its
    `progress` (nas.search.progress, a Tune callback of its own) shows each recorded trial and the running
    ones. Runs in the driver; the only writer of the run folder.

    The run's records and front are the driver's one `RunState` (shared with the searcher, read
    from trials.jsonl once at the start): nothing is read back per trial, and pareto.json (its
    hypervolume measured with `scales`, run.yaml's) is rewritten only when the front changes (a
    point joins or leaves it, or one of its points gets another seed) and once more by the search
    at the end (which also brings the counts and the noise flags of points off the front up to date).
    """

    def __init__(
        self,
        run: RunFolder,
        state: RunState,
        budget: int,
        references: dict[str, str] | None = None,
        scales: dict[str, float] | None = None,
        quiet: bool = False,
        epochs: int = 0,
    ):
        self.run, self.state, self.references, self.scales = run, state, references or {}, scales
        self.archive = state.archive
        self.interrupted = False
        self.disk_error: OSError | None = None
        self.unrecorded: str | None = None  # the trial a full disk kept out of trials.jsonl
        self.recorded = len(self.archive.records)  # lines in trials.jsonl
        self.failures = sum(r.status == "failed" for r in self.archive.records)  # the whole run's, resumed or not
        self.weights: dict[str, str] = {}  # Ray trial id -> weights path (relative)
        self.progress = Progress(budget, epochs, quiet, done=len(self.archive))  # the display: a callback of its own

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        src = Path(checkpoint.path) / "model.safetensors"
        arch_id = trial.config.get("arch_id")
        # an architecture keeps its first complete seed's weights
        if src.is_file() and arch_id and not self.halted and not self.run.weights_path(arch_id).exists():
            with self._unless_out_of_space(trial):
                self.weights[trial.trial_id] = self.run.keep_weights(arch_id, src)  # a fault: warned, recorded

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self.halted:
            with self._unless_out_of_space(trial):
                self._record(trial, *self.state.finished(trial.trial_id, dict(trial.last_result or {}), trial.config))

    def on_trial_error(self, iteration, trials, trial, **info):
        message = error_line(trial)
        if "No space left on device" in message or "Errno 28" in message:  # the disk, not the trial
            self.halt(OSError(errno.ENOSPC, message, str(self.run.path)), trial)
        if not self.halted:
            with self._unless_out_of_space(trial):
                finished = self.state.finished(
                    trial.trial_id, dict(trial.last_result or {}), trial.config, error=True, message=message
                )
                self._record(trial, *finished)

    # -- halting: a full disk, Ctrl-C
    @property
    def halted(self) -> bool:
        return self.interrupted or self.disk_error is not None

    def halt(self, error: OSError | None = None, trial: Any = None) -> None:
        """Record nothing more (the HaltStopper then stops the search): `error` a full disk, with
        the trial it could not record; None a Ctrl-C. Trials not recorded are evaluated on --resume."""
        if error is None:
            self.interrupted = True
        elif self.disk_error is None:
            self.disk_error = error
            if trial is not None:
                self.unrecorded = str(trial.config.get("arch_id") or trial.trial_id)
        self.progress.halt()

    @contextlib.contextmanager
    def _unless_out_of_space(self, trial: Any) -> Iterator[None]:
        """A write fault while keeping `trial` (a full disk, EPERM, EIO, a read-only file system)
        halts the recorder instead of a traceback out of Tune; the trial counts as unrecorded only
        if its line did not reach trials.jsonl (the disk may fill after it, while pareto.json is
        rewritten)."""
        recorded = self.recorded
        try:
            yield
        except OSError as e:
            self.halt(e, trial if self.recorded == recorded else None)

    def _record(self, trial: Any, record: TrialRecord, moved: bool) -> None:
        """Append `record` (numbered, in the archive: `RunState.finished`); `moved`: the front moved with it."""
        record.reference = self.references.get(record.arch_id)
        record.weights = self.weights.get(trial.trial_id) if record.status == "complete" else None
        if record.status == "complete" and record.weights is None:  # why its weights are missing, if a fault
            record.error = self.run.weights_faults.get(record.arch_id, record.error)
        self.run.append(record)
        self.recorded += 1
        if record.status == "failed":
            self.failures += 1
        if moved:  # pareto.json follows (and once more at the end, with the front's reproduction)
            self.run.write_summary(self.archive.summary(self.scales, reproduce=False))
        self.progress.recorded(trial.trial_id, record, len(self.archive), self.failures, self.archive)


class FailureStopper(Stopper):
    """Stops the whole search once the recorder has counted more than `max_failures` failures."""

    def __init__(self, recorder: Recorder, max_failures: int | None):
        self.recorder, self.max_failures = recorder, max_failures

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.max_failures is not None and self.recorder.failures > self.max_failures


class HaltStopper(Stopper):
    """Stops the whole search once the recorder is halted (Ctrl-C, SIGTERM, a full disk): what
    still runs would not be recorded. Running trials are not stopped one by one on their results
    (as a stopped trial they would be told to Optuna); Tune stops them all together."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.recorder.halted
