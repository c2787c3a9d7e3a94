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

from nas.cli import StopSignals
from nas.tune.session import ray_session

__all__ = ["TuneSession", "tuner", "trial_dirname"]


class TuneSession:
    """Ray for one Tune run, with Ctrl-C and SIGTERM ours rather than Tune's: the first calls `stop`
    (which should make the run's stoppers end it cleanly) and is kept in `received`; a second
    acts at once. On entry: SIGINT is caught, Ray started or joined (`ray_session`: UsageError if
    the cluster cannot be joined), then SIGTERM caught (after ray.init, which installs its own
    handler: an abort with a C++ stack). On exit: a Ray it started is stopped, the handlers
    restored. `resources` are the cluster's, `cluster()` what run.yaml records of it."""

    def __init__(self, address: str | None, stop: Callable[[], None]):
        self.address = address
        self.signals = StopSignals(stop)
        self.resources: dict[str, float] = {}
        self._stack = contextlib.ExitStack()

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
        self.resources = ray.cluster_resources()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

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
) -> tune.Tuner:
    """The Tuner of one run: `trainable` with `params` (put in Ray's object store once) and
    `resources` per trial (fixed, or a function of the trial's config), `concurrent` trials at
    once, asked of `searcher` until it is finished, actors reused; any of `stoppers` ends the run;
    `callbacks` record. Tune's experiment goes to `folder`/ray/`name`-<time>, a trial that raises
    is not retried, and Tune prints nothing of its own."""
    return tune.Tuner(
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
