"""The fidelity check of a run: which architectures, which trainings, trained on Ray, and the report.

It picks N architectures of the run (its front as printed, each point at the highest rung of the
fidelity ladder it reached, then complete architectures spread evenly over the accuracy range of
the rest, or with `--pick ranks` the next non-domination ranks: the pool in which the front's
precision and recall are measured) and trains each with K seeds (seed k is the run's seed + k, the
seeds the search's racing uses) the way a deployed network is trained: on the whole training split
(the proxy's `subset` off), at the network's input size, for `--epochs` (default: the deployment
the run's proxy was calibrated against, else 4x the proxy's), scored on the run's validation split,
or with `--score-on test` trained on every training image and scored on the official test split,
which no search or calibration ever selects on (a final measurement; its own records file). It
makes sure each also has K proxy evaluations at rung 0 (the run's own trials.jsonl records are
reused; the missing ones are trained). `--same-subset` instead trains longer on the proxy's own
training subset, the check this command made before: it says how much the short schedule alone
changes the ranking, not whether the ranking holds for a deployed network, and the report says so.

Every evaluation runs on Ray Tune (`nas.tune.jobs`, `nas.tune.trainable`) with the search's resource
options and is appended as it finishes to RUN/fidelity-deploy.jsonl (deployment-like;
RUN/fidelity-deploy-test.jsonl scored on the test split) or
RUN/fidelity.jsonl (proxy evaluations, and the long ones of --same-subset); a second invocation
trains only what is missing (a failed evaluation is tried again). The report
(`nas.fidelity.report`) is written to RUN/fidelity.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.cli import shell_command
from nas.errors import UsageError
from nas.fidelity.reference import DEPLOYMENT, SAME_SUBSET, SCORED_ON, default_epochs, deployment, scored_on_test
from nas.fidelity.report import report
from nas.fidelity.stats import ArchFidelity, seed_values
from nas.proxy import ProxyConfig
from nas.run import pareto
from nas.run.archive import Archive
from nas.run.files import write_atomic
from nas.run.folder import ArchResult, RunConfig, RunError, RunFolder, TrialRecord, aggregate
from nas.run.ladder import rung_of
from nas.run.lock import RunLock

if TYPE_CHECKING:  # nas.tune.jobs imports Ray: only the check itself needs it, not the dashboard
    from nas.data.dataset import Dataset
    from nas.tune.jobs import Job, Resources

__all__ = [
    "FIDELITY_RECORDS",
    "DEPLOY_RECORDS",
    "DEPLOY_TEST_RECORDS",
    "FIDELITY_JSON",
    "PICKS",
    "FidelityOptions",
    "pick_archs",
    "plan_jobs",
    "check",
]

FIDELITY_RECORDS = "fidelity.jsonl"  # the check's proxy evaluations (and --same-subset's long ones), like trials.jsonl
DEPLOY_RECORDS = "fidelity-deploy.jsonl"  # its deployment-like evaluations, scored on the validation split
DEPLOY_TEST_RECORDS = "fidelity-deploy-test.jsonl"  # the same scored on the test split (--score-on test)
FIDELITY_JSON = "fidelity.json"  # the report


# --------------------------------------------------------------------------- what to train


PICKS = ("spread", "ranks")  # how the architectures off the front are picked (--pick)


def pick_archs(
    archs: Sequence[ArchResult],
    front: Sequence[ArchResult],
    n: int,
    how: str = "spread",
    objectives: Sequence[str] = ("accuracy", "macs"),
) -> list[ArchResult]:
    """The front (by increasing cost; n of its points spread along it if it has more), then
    complete architectures off the front. `how='spread'`: spread evenly over their accuracy range
    (for each of the remaining slots, the unpicked one nearest an evenly spaced target accuracy
    from the best to the worst; ties to the earlier evaluated), the range a rank correlation
    needs. `how='ranks'`: the next non-domination ranks (`nas.run.pareto.ranks` over
    `objectives`: the highest rung first), each by increasing first cost: the pool in which a
    front's precision and recall mean something. Deterministic for a given run."""
    front = list(front)
    if len(front) > n:
        front = [front[i] for i in sorted({round(x) for x in np.linspace(0, len(front) - 1, n)})]
    picked = {a.arch_id for a in front}
    rest = [a for a in archs if a.status == "complete" and a.arch_id not in picked and a.accuracy is not None]
    slots = min(n - len(front), len(rest))
    out = list(front)
    if how == "ranks":
        rank = pareto.ranks(rest, objectives)
        cost = objectives[1] if len(objectives) > 1 else objectives[0]
        ranked = sorted((a for a in rest if a.number in rank), key=lambda a: (rank[a.number], a.value(cost), a.number))
        return out + ranked[:slots]
    if slots > 0:
        accs = [float(a.accuracy) for a in rest]
        for target in np.linspace(max(accs), min(accs), slots):
            best = min(
                (i for i, a in enumerate(rest) if a.arch_id not in picked), key=lambda i: (abs(accs[i] - target), i)
            )
            picked.add(rest[best].arch_id)
            out.append(rest[best])
    return out


def plan_jobs(
    picked: Sequence[ArchResult],
    seeds: Sequence[int],
    proxy_epochs: int,
    long_epochs: int,
    same_subset: bool = False,
    deploy_file: str = DEPLOY_RECORDS,
) -> list[Job]:
    """Every evaluation of the check: per picked architecture and seed a long one (on dataset
    'deploy', into `deploy_file`; with `same_subset` on dataset 'proxy', into FIDELITY_RECORDS)
    and a proxy one (dataset 'proxy', FIDELITY_RECORDS). Long ones first: they take longest, and
    the proxy's are often all in the run already (`nas.tune.jobs.missing` leaves out what is done)."""
    from nas.tune.jobs import Job

    long = ("proxy", FIDELITY_RECORDS, SAME_SUBSET) if same_subset else ("deploy", deploy_file, DEPLOYMENT)
    stages = [(*long, long_epochs), ("proxy", FIDELITY_RECORDS, "proxy", proxy_epochs)]
    return [
        Job(a.arch_id, a.arch, s, data, epochs, file, f"{label}, {epochs} epochs:")
        for data, file, label, epochs in stages
        for a in picked
        for s in seeds
    ]


# --------------------------------------------------------------------------- the check


@dataclass
class FidelityOptions:
    """The command line's options (see `nas.fidelity.cli.build_parser`)."""

    run: Path
    archs: int = 12
    epochs: int | None = None  # None: 4x the run's proxy epochs
    seeds: int = 2
    same_subset: bool = False  # the long training on the proxy's subset (the old check), not deployment-like
    pick: str = "spread"  # the architectures off the front: spread over accuracy, or the next ranks (PICKS)
    score_on: str = "val"  # the deployment-like training's score: the validation split, or the test split
    images: int | None = None  # the deployment-like training's images (a seeded subset); None: all

    @property
    def deploy_file(self) -> str:
        """Where the deployment-like evaluations go: one file per place they are scored on and per
        training subset (a record's key is its architecture, seed and epochs)."""
        name = DEPLOY_TEST_RECORDS if self.score_on == "test" else DEPLOY_RECORDS
        return name if self.images is None else name.replace(".jsonl", f"-n{self.images}.jsonl")

    data_dir: Path | None = None  # None: the run's
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 when CUDA is present, else 0
    max_concurrent: int | None = None
    address: str | None = None


def _gather(
    picked: Sequence[ArchResult],
    proxy_records: Sequence[TrialRecord],
    long_records: Sequence[TrialRecord],
    seeds: Sequence[int],
    proxy_epochs: int,
    long_epochs: int,
    objectives: Sequence[str],
) -> list[ArchFidelity]:
    """Per picked architecture: its complete accuracies at the check's seeds, proxy and long."""
    ids = [a.arch_id for a in picked]
    proxy = seed_values(proxy_records, ids, seeds, proxy_epochs, rung=0)
    long = seed_values(long_records, ids, seeds, long_epochs)
    return [
        ArchFidelity(
            a.arch_id,
            p,
            q,
            a.reference,
            {o: float(a.value(o)) for o in objectives if o != "accuracy" and a.value(o) is not None},
            search=None if a.accuracy is None else float(a.accuracy),
            search_rung=a.rung,
        )
        for a, p, q in zip(picked, proxy, long)
    ]


def _check_choices(opts: FidelityOptions) -> None:
    """UsageError for a --pick or --score-on the check does not know, or --score-on test with --same-subset."""
    if opts.pick not in PICKS:
        raise UsageError(f"--pick must be one of {', '.join(PICKS)}, got {opts.pick!r}")
    if opts.score_on not in SCORED_ON:
        raise UsageError(f"--score-on must be one of {', '.join(SCORED_ON)}, got {opts.score_on!r}")
    if opts.images is not None and (not isinstance(opts.images, int) or opts.images < 1):
        raise UsageError(f"--images must be a count of training images >= 1, got {opts.images!r}")
    if opts.images is not None and opts.same_subset:
        raise UsageError("--images sizes the deployment-like training; --same-subset trains on the proxy's subset")
    if opts.score_on == "test" and opts.same_subset:
        raise UsageError("--score-on test scores deployment-like training; --same-subset is not that")


def check(opts: FidelityOptions, command: str | None = None) -> dict[str, Any]:
    """Run (or continue) the fidelity check of a run; returns and writes fidelity.json. It holds
    the run folder's lock (`nas.run.lock`) while it runs: a search of the run, or a second check,
    is refused meanwhile, as this check is while one runs.

    `command` is the command line that continues it (every option that matters: --archs, --seeds,
    --epochs...); a second writer's refusal names it. Default: the bare `python -m nas.fidelity RUN`.

    Raises:
        UsageError: a missing run folder, bad numbers, a run with nothing complete, a run in use.
    """
    command = command or shell_command("fidelity", opts.run)
    lock = RunLock(opts.run, command=command, resume=command)
    try:
        RunFolder(opts.run).require()  # not made by the lock
        if lock.acquire():
            print(lock.note, flush=True)
    except RunError as e:
        raise UsageError(str(e)) from None
    try:
        return _check(opts)
    finally:
        lock.release()


@dataclass
class _Plan:
    """What a check compares, once its options are checked: the run, the architectures picked from
    it, the seeds, the two trainings (the proxy's and the long one) and the evaluations to train."""

    run: RunFolder
    config: RunConfig
    objectives: list[str]
    run_records: list[TrialRecord]
    front_ids: list[str]  # the run's front
    picked: list[ArchResult]
    seeds: list[int]
    proxy_epochs: int
    long_epochs: int
    deploy: ProxyConfig  # the deployment-like training
    jobs: list[Job]  # what is not trained yet
    resources: Resources


def _check(opts: FidelityOptions) -> dict[str, Any]:
    """The check, inside the run's lock: plan it, train what is missing, write fidelity.json."""
    start = time.perf_counter()
    plan = _plan(opts)
    datasets = _train(opts, plan, start)
    summary = _summary(opts, plan, datasets, start)
    write_atomic(plan.run.path / FIDELITY_JSON, json.dumps(summary, indent=2, allow_nan=False))
    return summary


def _plan(opts: FidelityOptions) -> _Plan:
    """The check's plan from the run and the options, or UsageError naming what is wrong: the run's
    config, the numbers, the resources, a run with fewer than 2 complete architectures."""
    run = RunFolder(opts.run)
    try:
        config: RunConfig = run.config()
    except RunError as e:
        raise UsageError(str(e)) from None
    proxy_epochs = config.proxy.epochs
    long_epochs = opts.epochs if opts.epochs is not None else default_epochs(config)
    if opts.archs < 2:
        raise UsageError(f"--archs must be at least 2 (a ranking needs two), got {opts.archs}")
    if opts.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {opts.seeds}")
    if long_epochs <= proxy_epochs and opts.same_subset:
        raise UsageError(
            f"--epochs must be more than the run's proxy epochs ({proxy_epochs}) with --same-subset, got {long_epochs}"
        )
    if long_epochs < proxy_epochs:
        raise UsageError(f"--epochs must be at least the run's proxy epochs ({proxy_epochs}), got {long_epochs}")
    _check_choices(opts)
    from nas.tune.jobs import Resources, missing

    resources = Resources.of(opts)
    objectives = list(config.objectives)
    run_records = run.trials()
    front = run.front(objectives)
    picked = pick_archs(aggregate(run_records), front, opts.archs, opts.pick, objectives)
    if len(picked) < 2:
        raise UsageError(f"{run.path}: {len(picked)} complete architecture(s); the check needs at least 2")
    seeds = [config.seed + k for k in range(opts.seeds)]
    in_run = {
        (FIDELITY_RECORDS, r.arch_id, int(r.seed), r.epochs)
        for r in run_records
        if r.status == "complete" and r.seed is not None and rung_of(r) == 0  # a promoted one is not the proxy's
    }
    jobs = missing(plan_jobs(picked, seeds, proxy_epochs, long_epochs, opts.same_subset, opts.deploy_file), run, in_run)
    deploy = deployment(config.proxy, config.space.get("input_size") or [config.proxy.image_size] * 2, long_epochs)
    deploy = replace(deploy, subset=opts.images) if opts.images is not None else deploy
    front_ids = [a.arch_id for a in front]
    return _Plan(
        run,
        config,
        objectives,
        run_records,
        front_ids,
        picked,
        seeds,
        proxy_epochs,
        long_epochs,
        deploy,
        jobs,
        resources,
    )


def _train(opts: FidelityOptions, plan: _Plan, start: float) -> dict[str, Dataset]:
    """Say what the check compares and what it trains, then train the missing evaluations on Ray
    (`nas.tune.jobs.run_jobs`); returns the datasets loaded for them (none when nothing is missing)."""
    from nas.trial import TrialSettings
    from nas.tune.jobs import load_datasets, run_jobs, sized

    run, jobs = plan.run, plan.jobs
    long_file = FIDELITY_RECORDS if opts.same_subset else opts.deploy_file
    n_long = sum(j.file == long_file and j.epochs == plan.long_epochs for j in jobs)
    what = "the same subset, longer (not deployment)" if opts.same_subset else "deployment-like"
    what += ", scored on the test split" if opts.score_on == "test" and not opts.same_subset else ""
    print(
        f"{run.path}: {len(plan.picked)} architectures ({sum(a.arch_id in plan.front_ids for a in plan.picked)} on "
        f"the front), seeds {', '.join(map(str, plan.seeds))}; {plan.proxy_epochs} epochs (the proxy) vs "
        f"{plan.long_epochs} epochs {what}; to train: {n_long} long and {len(jobs) - n_long} proxy evaluations",
        flush=True,
    )
    if not jobs:
        return {}
    proxies = {"proxy": plan.config.proxy, "deploy": plan.deploy}
    data_dir = opts.data_dir or plan.config.options.get("data_dir")
    # the run's data and split: its split seed is the run's seed
    datasets = load_datasets({k: proxies[k] for k in {j.data for j in jobs}}, data_dir, plan.config.seed)
    if opts.score_on == "test" and "deploy" in datasets:
        datasets["deploy"] = scored_on_test(datasets["deploy"], with_val=opts.images is None)
    num_classes = next(iter(datasets.values())).num_classes
    settings = TrialSettings(
        proxy=plan.config.proxy,
        num_classes=num_classes,
        limits=dict(plan.config.limits),
        device=plan.resources.device,
        measure=(),
    )  # costs are the run's
    run_jobs(run, sized(jobs, datasets), datasets, settings, plan.resources, name="fidelity", start=start)
    return datasets


def _summary(opts: FidelityOptions, plan: _Plan, datasets: Mapping[str, Dataset], start: float) -> dict[str, Any]:
    """fidelity.json's contents: the report of the picked architectures' accuracies, with what the
    long training is, and this invocation's evaluations, failures and minutes."""
    run, run_records, seeds = plan.run, plan.run_records, plan.seeds
    records = run.trials(FIDELITY_RECORDS)
    deployed = run.trials(opts.deploy_file)
    long_records = [*run_records, *records] if opts.same_subset else deployed
    reused = {
        (r.arch_id, r.seed)
        for r in run_records
        if r.status == "complete" and r.epochs == plan.proxy_epochs and rung_of(r) == 0
    }
    rows = _gather(
        plan.picked, [*run_records, *records], long_records, seeds, plan.proxy_epochs, plan.long_epochs, plan.objectives
    )
    picked_ids = {a.arch_id for a in plan.picked}
    proxy_only = pareto.front(aggregate([r for r in run_records if rung_of(r) == 0]), plan.objectives)
    archive = Archive(plan.objectives)
    for r in run_records:
        archive.add(r)
    flags = {row["arch_id"]: row.get("separable") for row in archive.summary(None, reproduce=False)["front"]}
    return {
        "run": str(run.path),
        **report(
            rows,
            [i for i in plan.front_ids if i in picked_ids],
            plan.objectives,
            seeds,
            plan.proxy_epochs,
            plan.long_epochs,
            {**_reference(opts, plan, datasets), "pick": opts.pick},
            rung0_front=[a.arch_id for a in proxy_only if a.arch_id in picked_ids],
            separable={a: flags[a] for a in plan.front_ids if a in picked_ids and a in flags},
            expected=_expected(archive, len(seeds)),
        ),
        "evaluations_run": len(plan.jobs),
        "evaluations_reused": sum((a.arch_id, s) in reused for a in plan.picked for s in seeds),
        "failed": sum(r.status != "complete" for r in [*records, *deployed]),
        "minutes": (time.perf_counter() - start) / 60,  # this invocation's wall time
        "train_minutes": sum(r.seconds for r in [*records, *deployed]) / 60,
    }


def _expected(archive: Archive, seeds: int) -> dict[str, Any] | None:
    """How the run expects its front to reproduce in a retraining with as many seeds as the check's
    (`RungArchive.reproduction` at its top rung), with the chance of each printed point (`p_front`)."""
    again = archive.at(archive.rung).reproduction(seeds)
    if again is None:
        return None
    printed = {a.arch_id for a in archive.front()}
    return {**again, "p_front": {a: p for a, p in again["p_front"].items() if a in printed}}


def _reference(opts: FidelityOptions, plan: _Plan, datasets: Mapping[str, Dataset]) -> dict[str, Any]:
    """What the long training is (`report`'s `reference`): deployment-like or the same subset, its
    image size and training images (a deployment's from its data, else from the last report)."""
    if opts.same_subset:
        return {
            "reference": SAME_SUBSET,
            "long_image_size": plan.config.proxy.image_size,
            "long_train_images": plan.config.data.train_images,
        }
    return {
        "reference": DEPLOYMENT,
        "scored_on": opts.score_on,
        "long_subset": opts.images,
        "long_image_size": plan.deploy.image_size,
        "long_train_images": len(datasets["deploy"].train_y)
        if "deploy" in datasets
        else _previous(plan.run, DEPLOYMENT, opts.score_on, opts.images).get("long_train_images"),
    }


def _previous(run: RunFolder, reference: str, scored_on: str = "val", subset: int | None = None) -> dict[str, Any]:
    """The last report against `reference` scored on `scored_on` with training `subset`, if any:
    what an invocation that loads no data does not know again (how many training images the
    reference had)."""
    try:
        summary = json.loads((run.path / FIDELITY_JSON).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(summary, dict) or summary.get("reference") != reference:
        return {}
    same = summary.get("scored_on", "val") == scored_on and summary.get("long_subset") == subset
    return summary if same else {}
