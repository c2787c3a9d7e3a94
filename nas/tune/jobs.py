"""A fixed list of evaluations on Ray Tune, each appended to a records file as it finishes.

`nas.fidelity` and `nas.calibrate` train known architectures under known settings (no searcher
choosing what comes next): a `Job` is one architecture, one seed, one dataset (a training subset
at an image size) and a number of epochs, and names the records file its result goes to.
`run_jobs` runs a list of them in one Tune run with the search's resource options:

* `JobQueue` hands the jobs to Tune in their order and stops handing them out at a deadline
  (`--time-budget`: the running ones finish, the rest wait for the next invocation);
* `job_trainable` is `nas.tune.trainable.trainable` on the job's dataset and epochs (seeded as the search
  seeds: the same architecture, data and seed give the same accuracy on CPU);
* `JobRecorder` is the only writer: every finished evaluation, complete or failed, is appended to
  its job's file (`RunFolder.append`: one whole line per write, fsynced), with a progress line, so
  a killed invocation loses nothing finished and the next one trains only what is missing
  (`missing`); a running evaluation gets a progress line at most every `every` seconds, and the
  time left is weighted by each job's estimated seconds or work (`nas.tune.progress`);
* before anything trains, once Ray says how many trials run at once, the plan: `plan_line`, or
  the caller's own (`nas.calibrate.plan`), which may refuse it.

Ctrl-C (or SIGTERM, what a cluster's scheduler sends) stops the running evaluations cleanly
(nothing half-done is recorded) and raises KeyboardInterrupt (`nas.cli.Terminated` for SIGTERM)
once Ray is down; a second one interrupts at once.

The datasets go into Ray's object store without their official test split: nothing that selects
(a proxy, a calibration) ever sees it.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from nas.cli import Terminated, hms
from nas.data.dataset import DataError, Dataset
from nas.errors import UsageError
from nas.proxy import ProxyConfig
from nas.run.files import repair_tail
from nas.run.folder import RunFolder
from nas.run.record import TrialRecord
from nas.train.estimate import work
from nas.trial import TrialSettings
from nas.tune.progress import PROGRESS_EVERY, ProgressLines, makespan
from nas.tune.result import error_line, record_from_result
from nas.tune.runner import TuneSession, tuner
from nas.tune.session import trial_slots
from nas.tune.trainable import trainable

__all__ = [
    "Job",
    "Resources",
    "JobQueue",
    "JobRecorder",
    "job_trainable",
    "missing",
    "sized",
    "load_datasets",
    "plan_line",
    "run_jobs",
]


@dataclass(frozen=True)
class Job:
    """One evaluation: `arch` trained with `seed` on the dataset `data` (a key of run_jobs'
    `datasets`) for `epochs`, appended to `file` (relative to the folder). `label` names its
    setting in progress lines; `work` is its relative cost (images x epochs x pixels) and `seconds`
    its estimated seconds when the caller timed it: the progress lines' time left is weighted by
    the seconds when every job has them, else by the work."""

    arch_id: str
    arch: dict[str, Any]
    seed: int
    data: str
    epochs: int
    file: str
    label: str = ""
    work: float = 1.0
    seconds: float | None = None  # its estimated seconds, when timed (nas.train.estimate)
    rung: int = 0  # the fidelity ladder's rung its record says (nas.run.ladder)
    keep: str | None = None  # keep its weights as weights/<keep>.safetensors, if none are there yet (a promotion)

    def config(self) -> dict[str, Any]:
        return asdict(self)


def missing(jobs: Iterable[Job], folder: RunFolder, also_done: Iterable[tuple[str, str, int, int]] = ()) -> list[Job]:
    """The jobs without a complete record of their (arch id, seed, epochs) in their file, or in
    `also_done` ((file, arch id, seed, epochs) known done elsewhere: a run's own proxy evaluations).
    A failed evaluation (out of memory with too many at once, say) is tried again."""
    jobs = list(jobs)
    done = set(also_done)
    for file in {j.file for j in jobs}:
        done |= {(file, r.arch_id, int(r.seed), r.epochs) for r in folder.trials(file) if _complete(r)}
    return [j for j in jobs if (j.file, j.arch_id, j.seed, j.epochs) not in done]


def sized(jobs: Iterable[Job], datasets: Mapping[str, Dataset]) -> list[Job]:
    """The jobs with their `work`: training images x epochs x pixels of their dataset."""
    return [replace(j, work=work(len(datasets[j.data].train_y), j.epochs, datasets[j.data].image_size)) for j in jobs]


def load_datasets(proxies: Mapping[str, ProxyConfig], data_dir: Path | str | None, seed: int) -> dict[str, Dataset]:
    """Each proxy's data (its training subset at its image size, the split `seed` makes), by the same
    key: what `run_jobs` takes as `datasets`.

    Raises:
        UsageError: a dataset that cannot be loaded (missing, unreadable), with the data's message.
    """
    try:
        return {key: proxy.load_data(data_dir, seed=seed) for key, proxy in proxies.items()}
    except DataError as e:
        raise UsageError(str(e)) from None


def _complete(r: TrialRecord) -> bool:
    return r.status == "complete" and r.accuracy is not None and r.seed is not None


@dataclass
class Resources:
    """The search's resource options (`python -m nas.search --help`)."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 when CUDA is present, else 0
    max_concurrent: int | None = None  # None: as many as the resources fit
    address: str | None = None  # None: a local Ray for this command

    @classmethod
    def of(cls, opts: Any) -> Resources:
        """The resource options of a command's options (`cpus_per_trial`, `gpus_per_trial`,
        `max_concurrent`, `address`), checked."""
        return cls(opts.cpus_per_trial, opts.gpus_per_trial, opts.max_concurrent, opts.address).checked()

    def checked(self) -> Resources:
        """These resources with the GPUs resolved, or UsageError naming the first bad one."""
        if not self.cpus_per_trial > 0:
            raise UsageError(f"--cpus-per-trial must be positive, got {self.cpus_per_trial}")
        if self.gpus_per_trial is not None and not self.gpus_per_trial >= 0:
            raise UsageError(f"--gpus-per-trial must be >= 0, got {self.gpus_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise UsageError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        gpus = self.gpus_per_trial if self.gpus_per_trial is not None else float(torch.cuda.is_available())
        return replace(self, gpus_per_trial=gpus)

    @property
    def device(self) -> str:
        return "cuda" if (self.gpus_per_trial or 0) > 0 else "cpu"


class JobQueue(Searcher):
    """Tune's searcher over a fixed list: the jobs in order, none after `deadline` (time.time())."""

    def __init__(self, jobs: Sequence[Job], deadline: float | None = None):
        super().__init__()
        self.jobs, self.deadline, self.handed = [j.config() for j in jobs], deadline, 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        if self.handed >= len(self.jobs) or (self.deadline is not None and time.time() >= self.deadline):
            return Searcher.FINISHED
        self.handed += 1
        return {"job": self.jobs[self.handed - 1]}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # the recorder records; the order is fixed


def job_trainable(config: dict[str, Any], data: Mapping[str, list[Any]], settings: TrialSettings, threads: int) -> None:
    """`nas.tune.trainable.trainable` on the job's dataset (an object ref in `data`) for its epochs."""
    job = config["job"]
    trainable(
        {"arch_id": job["arch_id"], "arch": job["arch"], "seed": job["seed"], "epochs": job["epochs"]},
        data=data[job["data"]],
        settings=settings,
        threads=threads,
    )


class JobRecorder(tune.Callback):
    """Appends every finished job's record (the trials.jsonl format; `seed` and `epochs` say which
    evaluation it is) to its file, numbered within that file, and prints a progress line: one when
    an evaluation ends, one at most every `every` seconds while it runs (`nas.tune.progress`)."""

    def __init__(
        self, folder: RunFolder, jobs: Sequence[Job], start: float, slots: int = 1, every: float = PROGRESS_EVERY
    ):
        self.folder, self.start = folder, start
        self.index = {_key(j.config()): k for k, j in enumerate(jobs)}
        timed = all(j.seconds is not None for j in jobs)
        costs = [float(j.seconds if timed else j.work) for j in jobs]
        self.progress = ProgressLines(costs, slots, seconds=timed, every=every)
        self.total, self.finished = len(jobs), 0
        self.numbers = {f: len(folder.trials(f)) for f in {j.file for j in jobs}}
        self.weights: dict[str, str | None] = {}  # Ray trial id -> weights kept (a job with `keep`)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        keep, src = trial.config["job"].get("keep"), Path(checkpoint.path) / "model.safetensors"
        if keep and src.is_file() and not self.folder.weights_path(keep).exists():
            self.weights[trial.trial_id] = self.folder.keep_weights(keep, src)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.progress.start(self.index[_key(trial.config["job"])])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        job = trial.config["job"]
        if result.get("final") or not result.get("epoch"):
            return
        what = f"{job['label']} {job['arch_id']} seed {job['seed']}"
        line = self.progress.epoch_line(self.index[_key(job)], what, int(result["epoch"]), int(job["epochs"]))
        if line:
            print(line, flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        record = record_from_result(dict(trial.last_result or {}), trial.config["job"])
        self._record(record, trial.config["job"], self.weights.get(trial.trial_id))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(
            record_from_result(
                dict(trial.last_result or {}), trial.config["job"], error=True, message=error_line(trial)
            ),
            trial.config["job"],
        )

    def _record(self, record: TrialRecord, job: dict[str, Any], weights: str | None = None) -> None:
        k = self.index[_key(job)]
        if record.status == "stopped":  # ended by a Ctrl-C before its last epoch: trained again next time
            return
        file = job["file"]
        record.number, record.seed = self.numbers[file], job["seed"]
        record.weights = weights if record.status == "complete" else None  # kept only for a job with `keep`
        record.rung = job.get("rung", 0)
        self.folder.append(record, file)
        self.numbers[file] += 1
        self.finished += 1
        self.progress.advance(k, 1.0)
        elapsed = time.perf_counter() - self.start
        what = f"acc {record.accuracy:.4f}" if record.status == "complete" else f"{record.status}: {record.error}"
        print(
            f"[{self.finished:>3}/{self.total}] {hms(elapsed)} {job['label']} {record.arch_id} seed "
            f"{record.seed}: {what}, {record.seconds:.1f} s | {self.progress.left_text()}",
            flush=True,
        )


def _key(job: Mapping[str, Any]) -> tuple[str, str, int, int]:
    return job["file"], job["arch_id"], int(job["seed"]), int(job["epochs"])


def plan_line(jobs: Sequence[Job], slots: int, resources: Resources) -> str:
    """What `run_jobs` is about to train, on what, and (when its jobs were timed) for how long."""
    each = f"{resources.cpus_per_trial:g} CPU" + (
        f", {resources.gpus_per_trial:g} GPU" if resources.gpus_per_trial else ""
    )
    head = f"plan: {len(jobs)} evaluations, {slots} at a time ({each} each)"
    if not jobs or any(j.seconds is None for j in jobs):
        return f"{head}; the time left is said once the first epochs are measured"
    seconds = [float(j.seconds or 0.0) for j in jobs]
    return f"{head}: ~{hms(sum(seconds))} of trial time, ~{hms(makespan(seconds, slots))} wall (estimated)"


class _OnInterrupt(Stopper):
    """Stops every trial once Ctrl-C was pressed (`interrupted` set by run_jobs' signal handler).
    A plain attribute, not a threading.Event: Tune pickles its stoppers."""

    def __init__(self) -> None:
        self.interrupted = False

    def interrupt(self) -> None:
        """Stop every trial from now on."""
        self.interrupted = True

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.interrupted

    def stop_all(self) -> bool:
        return self.interrupted


def _whole_record(line: bytes) -> bool:
    try:
        return bool(TrialRecord.from_dict(json.loads(line)).arch_id)
    except (ValueError, TypeError, AttributeError):
        return False


def _without_test(data: Dataset) -> Dataset:
    empty = data.test_x[:0], data.test_y[:0]
    return replace(data, test_x=empty[0], test_y=empty[1])


def run_jobs(
    folder: RunFolder,
    jobs: Sequence[Job],
    datasets: Mapping[str, Dataset],
    settings: TrialSettings,
    resources: Resources,
    name: str,
    deadline: float | None = None,
    start: float | None = None,
    plan: Callable[[int], None] | None = None,
    every: float = PROGRESS_EVERY,
) -> None:
    """Run `jobs` in one Tune run (a local Ray, or the cluster at `resources.address`), appending
    each finished one to its file under `folder`. Torn last lines of those files (a kill -9 during
    a write) are set aside first, with a line each. Results are read back from the files.

    Once Ray is up, before anything trains, `plan` is called with the number of trials Ray runs at
    once (it prints the plan, and may refuse it by raising UsageError); without one, `plan_line`
    is printed. Progress lines: one per finished evaluation, one at most every `every` seconds per
    running one (`JobRecorder`).

    Raises:
        UsageError: a trial fits on no node of the cluster; `plan` refused.
        KeyboardInterrupt: Ctrl-C, after the running evaluations were stopped and Ray shut down
            (nas.cli.Terminated, a KeyboardInterrupt, for SIGTERM).
    """
    start = time.perf_counter() if start is None else start
    _repair(folder, jobs)
    stopper = _OnInterrupt()
    with TuneSession(resources.address, stop=stopper.interrupt) as session:
        cpus, gpus = resources.cpus_per_trial, resources.gpus_per_trial
        slots = trial_slots(session.resources, cpus, gpus, resources.address, resources.max_concurrent)
        if plan is not None:
            plan(slots)
        else:
            print(plan_line(jobs, slots, resources), flush=True)
        refs = {k: [ray.put(_without_test(d))] for k, d in datasets.items() if any(j.data == k for j in jobs)}
        tuner(
            job_trainable,
            {"data": refs, "settings": settings, "threads": max(1, int(cpus))},
            {"cpu": cpus, "gpu": gpus},
            folder=folder.path,
            name=name,
            searcher=JobQueue(jobs, deadline),
            concurrent=slots,
            stoppers=[stopper],
            callbacks=[JobRecorder(folder, jobs, start, slots, every)],
        ).fit()
    if stopper.interrupted:
        raise Terminated() if signal.SIGTERM in session.received else KeyboardInterrupt()


def _repair(folder: RunFolder, jobs: Sequence[Job]) -> None:
    """Set aside the torn last line of each of the jobs' files (a kill -9 during a write), saying so."""
    for file in sorted({j.file for j in jobs}):
        report = repair_tail(folder.path / file, _whole_record)
        if report:
            print(report, flush=True)
