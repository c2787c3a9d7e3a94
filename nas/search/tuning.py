"""One search's Tune run: the searcher, the recorder and its stopper, the scheduler, on Ray.

`run_tune` runs a `SearchTuning` (what `nas.search` has set up: options, run folder, study, data) in
one `tune.Tuner` run: the trainable (`nas.tune.trainable`) on the data put in Ray's object store
once, the `ArchSearcher`, the `Recorder` and its progress display, its stoppers (too many
failures, the recorder halted) and ASHA with --early-stop, in a `nas.tune.runner.TuneSession`.
It returns how the session ended (`TuneOutcome`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from nas.data.dataset import Dataset
from nas.run.folder import RunFolder
from nas.search.options import SearchOptions
from nas.search.recorder import FailureStopper, HaltStopper, Recorder
from nas.search.searcher import ArchSearcher
from nas.search.state import RunState
from nas.search.study import RunStudy
from nas.space.space import SearchSpace
from nas.trial import TrialSettings
from nas.tune.runner import TuneRun, TuneSession, tuner
from nas.tune.session import GPU_GRID, trial_slots
from nas.tune.trainable import trainable

__all__ = ["SearchTuning", "TuneOutcome", "run_tune"]


@dataclass
class SearchTuning:
    """One Tune run of a search: its options and what `nas.search` has set up for it."""

    opts: SearchOptions  # checked (`SearchOptions.checked`): objectives, limits, budget, seeds, resources
    run: RunFolder
    study: RunStudy
    space: SearchSpace
    data: Dataset
    settings: TrialSettings
    state: RunState  # the run's evaluations so far (trials.jsonl), shared by the searcher and the recorder
    scales: dict[str, float]  # the hypervolume's (run.yaml's hypervolume_scale)
    references: dict[str, str]  # arch id -> reference name
    queue: list[dict[str, Any]] = field(default_factory=list)  # Optuna parameters to evaluate first
    gpus_per_trial: float = 0.0  # resolved (--gpus-per-trial default, or auto's smallest share)
    gpu_memory_mb: float | None = None  # set: --gpus-per-trial auto, each trial's share from its memory
    address: str | None = None  # the Ray cluster (--address or an exported RAY_ADDRESS); None: a local Ray


@dataclass
class TuneOutcome:
    proposals: Counter[str] = field(default_factory=Counter)  # how new architectures came about
    exhausted: bool = False
    failures: int = 0
    reevaluations: int = 0  # evaluations of an architecture with another seed
    cluster: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # Ctrl-C or SIGTERM: Tune stopped cleanly, nothing more was recorded
    disk_error: OSError | None = None  # a full disk stopped the search
    unrecorded: str | None = None  # the arch id the full disk kept out of trials.jsonl
    signal: int | None = None  # the signal that interrupted it (SIGINT, SIGTERM)


def _resources(cpus: float, gpus: float, config: dict[str, Any]) -> tune.PlacementGroupFactory:
    """A trial's resources: its CPUs, and its config's GPU share (auto, an OOM retry) or the fixed one."""
    return tune.PlacementGroupFactory([{"CPU": cpus, "GPU": config.get("gpus", gpus)}])


def run_tune(job: SearchTuning, on_cluster: Any = None) -> TuneOutcome:
    """Start (or join) Ray, run the trials, stop the Ray it started. `on_cluster(info)` is called
    once Ray is up, with {'address', 'nodes', 'cpus', 'gpus'} (the search writes it to run.yaml).

    Raises:
        UsageError: a trial fits on no node.
    """
    searcher = _searcher(job)
    recorder = Recorder(
        job.run,
        job.state,
        job.opts.budget,
        job.references,
        job.scales,
        job.opts.quiet,
        epochs=job.settings.proxy.epochs,
    )
    with TuneSession(job.address, stop=recorder.halt) as session:  # Ctrl-C, SIGTERM: record nothing more
        try:
            cluster = session.cluster()
            if on_cluster is not None:
                on_cluster(cluster)
            tuner = _tuner(job, searcher, recorder, session.resources)
            if job.opts.time_budget is not None:  # no trial starts after it; running ones finish and are recorded
                searcher.deadline = time.monotonic() + job.opts.time_budget
            tuner.fit()  # results are read from the run folder, not from Tune's ResultGrid
            searcher.settle(final=True)  # a stopper ended it early
        finally:
            recorder.progress.clear()
    return TuneOutcome(
        searcher.proposals,
        searcher.exhausted,
        recorder.failures,
        searcher.reevaluations,
        cluster,
        recorder.interrupted,
        recorder.disk_error,
        recorder.unrecorded,
        signal=session.received[0] if session.received else None,
    )


def _searcher(job: SearchTuning) -> ArchSearcher:
    """The job's searcher, over its study, with what the run has evaluated so far."""
    opts = job.opts
    return ArchSearcher(
        job.study,
        job.space,
        job.state,
        opts.limits,
        opts.seed,
        opts.budget,
        repeats=opts.repeats,
        race=opts.race,
        race_share=opts.race_share,
        gpu_memory_mb=job.gpu_memory_mb,
        batch_size=job.settings.proxy.batch_size,
        queue=job.queue,
        rank_by=job.settings.proxy.rank_by,
    )


def _scheduler(job: SearchTuning) -> ASHAScheduler | None:
    """ASHA on validation accuracy per epoch with --early-stop; None (every trial runs to its end) without."""
    if not job.opts.early_stop:
        return None
    epochs = job.settings.proxy.epochs
    return ASHAScheduler(
        metric="accuracy",
        mode="max",
        time_attr="training_iteration",
        max_t=max(1, epochs),
        grace_period=max(1, epochs // 4),
        reduction_factor=3,
    )


def _tuner(job: SearchTuning, searcher: ArchSearcher, recorder: Recorder, resources: dict[str, float]) -> TuneRun:
    """The Tuner of the job: the trainable on the data, as many trials at once as fit the cluster
    (or --max-concurrent), the searcher, the recorder and its progress display, stopped by too
    many failures or by the recorder's halt, and ASHA with --early-stop.

    Raises:
        UsageError: a trial fits on no node.
    """
    opts = job.opts
    cpus = opts.cpus_per_trial
    least = 1 / GPU_GRID if job.gpu_memory_mb is not None else job.gpus_per_trial  # auto: its smallest share
    slots = trial_slots(resources, cpus, least, job.address, opts.max_concurrent)
    return tuner(
        trainable,
        {"data": [ray.put(job.data)], "settings": job.settings, "threads": max(1, int(cpus))},
        partial(_resources, cpus, job.gpus_per_trial),
        folder=job.run.path,
        name="tune",
        searcher=searcher,
        concurrent=slots,
        stoppers=[FailureStopper(recorder, opts.max_failures), HaltStopper(recorder)],
        callbacks=[recorder, recorder.progress],
        scheduler=_scheduler(job),
    )
