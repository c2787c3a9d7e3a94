"""One Tune run, as the search and `nas.tune.jobs` both run theirs.

`TuneSession` is the run's frame: Ray started (or the cluster joined, `nas.tune.session`), Ctrl-C
and SIGTERM handled by us instead of Tune (`nas.cli.StopSignals`), and both undone at the end.
`tuner` is the Tune run itself: the trainable with its parameters put in Ray's object store once,
a searcher that hands out trials until it is finished, the stoppers composed with Ray's
`CombinedStopper`, the callbacks that record, and Tune's own files under the run folder's ray/.

    with TuneSession(address, stop=recorder.halt) as session:
        slots = trial_slots(session.resources, cpus, gpus, address, max_concurrent)
        tuner(trainable, {'data': refs, ...}, resources, folder=..., name='tune', searcher=...,
              concurrent=slots, stoppers=[...], callbacks=[...]).fit()
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import CombinedStopper, Stopper

from nas.cli import StopSignals, Terminated
from nas.tune.head import LocalHead
from nas.tune.session import local_head, ray_session

__all__ = ["TuneSession", "TuneRun", "tuner", "trial_dirname", "write_fault"]


class TuneSession:
    """Ray for one Tune run, with Ctrl-C and SIGTERM ours rather than Tune's: the first calls `stop`
    (which should make the run's stoppers end it cleanly) and is kept in `received`; a second
    acts at once. On entry: SIGINT is caught, Ray started or joined (`ray_session`: UsageError if
    the cluster cannot be joined), then SIGTERM caught (after ray.init, which installs its own
    handler: an abort with a C++ stack). A process of the command's local Ray that dies stops the
    run as the first signal does, and `RayDied` is raised on exit (`nas.tune.head`). On exit: a
    Ray it started is stopped, the handlers restored. `resources` are the cluster's, `cluster()` what run.yaml records of it."""

    def __init__(self, address: str | None, stop: Callable[[], None]):
        self.address = address
        self.signals = StopSignals(stop)
        self.resources: dict[str, float] = {}
        self._stack = contextlib.ExitStack()
        self._head: LocalHead | None = None

    def __enter__(self) -> TuneSession:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        self._stack.enter_context(self.signals)  # restored last, after Ray is down
        self.signals.catch(signal.SIGINT)
        try:
            self._stack.enter_context(ray_session(self.address))
        except BaseException:
            self._stack.close()
            raise
        self.signals.catch(signal.SIGTERM)
        self._head = local_head()
        if self._head is not None:  # a Ray process that dies stops the run as a signal does
            self._head.on_death.append(self.signals.stop)
        self.resources = ray.cluster_resources()
        return self

    def __exit__(self, *exc: object) -> None:
        head = self._head
        try:
            self._stack.close()
        finally:
            if head is not None:
                head.on_death.remove(self.signals.stop)
        if head is not None and head.died is not None:  # whatever Tune made of it: one line
            raise head.died from None
        if (
            isinstance(exc[1], KeyboardInterrupt)
            and not isinstance(exc[1], Terminated)
            and self.received[-1:] == [signal.SIGTERM]
        ):  # a second SIGTERM that Ray's wait turned into a plain KeyboardInterrupt
            raise Terminated() from None

    @property
    def received(self) -> list[int]:
        """The signals that stopped the run (SIGINT, SIGTERM), first first."""
        return self.signals.received

    def cluster(self) -> dict[str, Any]:
        """The cluster as run.yaml records it: {'address', 'nodes', 'cpus', 'gpus'}."""
        return {
            "address": self.address or "local",
            "nodes": sum(n["Alive"] for n in ray.nodes()),
            **{k.lower() + "s": v for k, v in self.resources.items() if k in ("CPU", "GPU")},
        }


def trial_dirname(trial: Any) -> str:
    """Ray trial folders named by trial id (the default spells out the whole config)."""
    return f"trial_{trial.trial_id}"


FREE_BYTES = 1 << 20  # less than this free under the run folder: Tune's own state cannot be kept


def write_fault(folder: Path) -> OSError | None:
    """Why `folder` cannot be written now (a full disk, a read-only file system, no permission, an
    I/O error), as the OSError that says it and names the place; None if it can. A probe file is
    written, fsynced and removed."""
    folder = Path(folder)
    try:
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < FREE_BYTES:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))
        probe = folder / f".nas-probe-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
    except OSError as e:
        e.filename = e.filename or str(folder)
        return e
    return None


class TuneRun:
    """A Tune run (`tuner`) whose end by a write fault under its folder is that fault: Tune keeps its
    own state (the experiment, each trial's error file) under the run folder, and a disk that fills
    or turns read-only in the middle makes it fail in its own ways (an `EOFError` reading back an
    empty error file, pyarrow's errors): `fit` raises the OSError naming the place instead (one
    line from the command frame, with the command's resume note). Anything else passes as it is."""

    def __init__(self, tuner: tune.Tuner, folder: Path):
        self.tuner, self.folder = tuner, Path(folder)

    def fit(self) -> Any:
        try:
            return self.tuner.fit()
        except Exception:
            fault = write_fault(self.folder)
            if fault is None:
                raise
            raise fault from None


def tuner(
    trainable: Callable[..., None],
    params: Mapping[str, Any],
    resources: Mapping[str, float] | Callable[[dict[str, Any]], Any],
    *,
    folder: Path,
    name: str,
    searcher: Searcher,
    concurrent: int,
    stoppers: Sequence[Stopper],
    callbacks: Sequence[tune.Callback],
    scheduler: TrialScheduler | None = None,
) -> TuneRun:
    """The Tuner of one run: `trainable` with `params` (put in Ray's object store once) and
    `resources` per trial (fixed, or a function of the trial's config), `concurrent` trials at
    once, asked of `searcher` until it is finished, actors reused; any of `stoppers` ends the run;
    `callbacks` record. Tune's experiment goes to `folder`/ray/`name`-<time>, a trial that raises
    is not retried, and Tune prints nothing of its own; a write fault under `folder` ends it as that
    fault (`TuneRun`)."""
    tuned = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, **params), resources),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=-1,  # the searcher ends the run
            max_concurrent_trials=concurrent,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}",
            storage_path=str((Path(folder) / "ray").resolve()),
            stop=CombinedStopper(*stoppers),
            callbacks=list(callbacks),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
        # No CheckpointConfig(num_to_keep): every trial of a search reports one checkpoint (its
        # weights), and with num_to_keep set Tune snapshots the whole experiment state after each
        # one: a pass over every trial per trial, which starved the slots of long runs. The run
        # folder is the record.
    )
    return TuneRun(tuned, folder)
