"""The calibration itself: its options, its folder and definition, and the evaluations trained on Ray.

A proxy is a measurement instrument: a short training (a subset of the training images, a few
epochs, an image size) and a number read off it (its rank signal, `nas.proxy`). The space file's
proxy was fitted to the space's own dataset; on other data it may rank networks unlike the
training you deploy. A calibration measures candidate proxies against that training on your data:

1. **A panel** of `--archs` architectures (`nas.calibrate.panel`).
2. **Deployment-like training** of each (`nas.fidelity.reference.deployment`): the whole training split
   (or `--deploy-subset` images), the networks' input size, `--deploy-epochs` (default 4x the space
   proxy's), `--seeds` seeds (seed k is `--seed` + k), scored on the validation split, which is
   the one a search with the same `--seed` scores on. The official test split is never used.
3. **Candidate proxies**: every `--subsets` x `--epochs` x `--image-sizes`, trained with the same
   seeds, measured and picked from (`nas.calibrate.stats`).

Everything goes to RESULTS/NAME (default results/calibrate-<space>-<dataset>):

    calibration.yaml            what defines the calibration: space, data, seed, panel, deployment,
                                seeds; the grid last asked for
    evaluations/<key>.jsonl     every evaluation, one JSON line (trials.jsonl's format) appended as it
                                finishes, one file per training setting (key: n<images|all>-e<epochs>-<px>px)
    calibration.json            the report: deployment's numbers, the table, the signal, the pick
    proxy.yaml                  the picked proxy as a `proxy:` section (with `rank_by`) and the
                                calibration it came from: `python -m nas.search --proxy proxy.yaml`
    ray/                        Ray Tune's experiment folders

Before anything trains, the panel is timed and the plan printed (`nas.calibrate.plan`): a plan
over `--time-budget` is refused, naming settings that fit, unless `--partial` asks to train what
fits now. Every evaluation runs on Ray Tune with the search's resource options (`nas.tune.jobs`),
with progress lines while it runs; running the same command again trains only what is missing (a
failed evaluation is tried again), so an interrupted or partial calibration continues where it
stopped. A changed space, dataset,
seed, panel size, deployment or seeds is refused (use another --name); a changed grid just trains
the new candidates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nas.calibrate.panel import EVALUATIONS, Candidate, candidate_grid, pick_panel
from nas.calibrate.report import CALIBRATION_JSON, PROXY_YAML, calibration_report, proxy_file_text
from nas.errors import UsageError
from nas.fidelity.reference import deployment
from nas.proxy import ProxyConfig
from nas.run.files import write_atomic
from nas.run.folder import RunError, RunFolder, package_versions
from nas.run.lock import RunLock
from nas.search.options import DEFAULT_SPACE
from nas.tune.progress import PROGRESS_EVERY

if TYPE_CHECKING:  # nas.tune.jobs imports Ray: only the calibration itself needs it
    from nas.data.dataset import Dataset
    from nas.tune.jobs import Job, Resources

__all__ = ["CalibrateOptions", "calibrate"]

PROJECT = Path(__file__).resolve().parents[2]
CALIBRATION_YAML = "calibration.yaml"
DEFINING = ("space_fingerprint", "dataset", "seed", "val_fraction", "archs", "seeds", "deploy")


@dataclass
class CalibrateOptions:
    """The command line's options (see `nas.calibrate.cli.build_parser`)."""

    space: Path = DEFAULT_SPACE
    dataset: str | None = None  # None: the space proxy's
    data_dir: Path | None = None
    seed: int = 0
    archs: int = 24  # halves of 12: the pick on one, its confirmation on the other (docs/proxy.md)
    seeds: int = 2
    subsets: list[int] = field(default_factory=lambda: [500, 1000, 2000, 4000])
    epochs: list[int] = field(default_factory=lambda: [3, 5, 8])
    image_sizes: list[int] | None = None  # None: the input size and 3/4 of it, where the space allows
    deploy_epochs: int | None = None  # None: 4x the space proxy's
    deploy_subset: int | None = None  # None: the whole training split
    share: float = 0.9
    time_budget: float | None = None
    partial: bool = False  # with time_budget: train what fits now, not refuse a plan over it
    progress_every: float = PROGRESS_EVERY
    name: str | None = None
    results_dir: Path = Path("results")
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    address: str | None = None


def _check(opts: CalibrateOptions) -> None:
    for flag, values, low in (
        ("--subsets", opts.subsets, 1),
        ("--epochs", opts.epochs, 1),
        ("--image-sizes", opts.image_sizes or [1], 1),
    ):
        if not values or any(v < low for v in values):
            raise UsageError(f"{flag} takes numbers >= {low}, got {values}")
    if opts.archs < 3:
        raise UsageError(f"--archs must be at least 3 (Kendall τ needs three), got {opts.archs}")
    if opts.seeds < 2:
        raise UsageError(f"--seeds must be at least 2 (test-retest τ and seed std need two), got {opts.seeds}")
    if opts.deploy_epochs is not None and opts.deploy_epochs < 1:
        raise UsageError(f"--deploy-epochs must be at least 1, got {opts.deploy_epochs}")
    if opts.deploy_subset is not None and opts.deploy_subset < 1:
        raise UsageError(f"--deploy-subset must be at least 1, got {opts.deploy_subset}")
    if not 0 < opts.share <= 1:
        raise UsageError(f"--share must be in (0, 1], got {opts.share}")
    if opts.time_budget is not None and not opts.time_budget > 0:
        raise UsageError(f"--time-budget must be a number of seconds > 0, got {opts.time_budget}")
    if opts.partial and opts.time_budget is None:
        raise UsageError("--partial trains what fits in --time-budget: give one")
    if not opts.progress_every >= 0:
        raise UsageError(f"--progress-every must be a number of seconds >= 0, got {opts.progress_every}")
    if opts.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {opts.seed}")
    if opts.name is not None and (opts.name in ("", ".", "..") or "/" in opts.name):
        raise UsageError(f"--name {opts.name!r}: give a plain folder name under --results-dir")


def _load_space(path: Path) -> Any:
    from nas.space.decision import SpaceError
    from nas.space.space import load_space

    if not path.exists() and not path.is_absolute() and (PROJECT / path).exists():
        path = PROJECT / path  # the shipped spaces, from any working directory
    try:
        return load_space(path)
    except SpaceError as e:
        raise UsageError(str(e)) from None


def _definition(folder: RunFolder, definition: dict[str, Any]) -> dict[str, Any]:
    """calibration.yaml: the stored definition when the folder has one (refused if it differs in a
    defining key), else `definition`, written."""
    path = folder.path / CALIBRATION_YAML
    if path.is_file():
        stored = yaml.safe_load(path.read_text()) or {}
        changed = [k for k in DEFINING if stored.get(k) != definition[k]]
        if changed:
            raise UsageError(
                f"{folder.path}: a calibration with another {', '.join(changed)} (see {path}); "
                f"continue it with the same options, or pick another --name"
            )
        definition = {**stored, "grid": definition["grid"], "data_dir": definition["data_dir"]}
    folder.path.mkdir(parents=True, exist_ok=True)
    (folder.path / EVALUATIONS).mkdir(exist_ok=True)
    write_atomic(path, yaml.safe_dump(definition, sort_keys=False, allow_unicode=True))
    return definition


@dataclass
class _SetUp:
    """What a calibration runs with, once its options, space and data are checked and its
    calibration.yaml is written."""

    folder: RunFolder
    definition: dict[str, Any]  # calibration.yaml's contents
    space: Any  # nas.space.SearchSpace
    base: ProxyConfig  # the space's proxy, on the dataset asked for
    cands: list[Candidate]  # deployment, then the candidate proxies cheapest first
    panel: list[dict[str, Any]]
    seeds: list[int]
    data: dict[str, Dataset]  # data key -> the data loaded so far (deployment's)
    full: Dataset  # deployment's data
    resources: Resources
    lock: RunLock  # the folder's one-writer lock, held while the calibration runs


def calibrate(opts: CalibrateOptions, command: str = "") -> dict[str, Any]:
    """Run (or continue) a calibration; returns calibration.json's contents (also written, with
    proxy.yaml once a candidate is measured).

    Raises:
        UsageError: bad options, a missing dataset, a folder of another calibration, a folder another
            process writes (a search, a second calibration: the run-folder lock, `nas.run.lock`).
    """
    start = time.perf_counter()
    setup = _set_up(opts, command)
    try:
        return _calibrate(opts, setup, start)
    finally:
        setup.lock.release()


def _calibrate(opts: CalibrateOptions, setup: _SetUp, start: float) -> dict[str, Any]:
    """The calibration, inside its folder's lock: train what is missing, then the report and proxy.yaml."""
    _train(opts, setup, start)
    folder = setup.folder
    report = calibration_report(folder, setup.definition, setup.cands, setup.panel, setup.seeds, opts.share)
    report["minutes"] = (time.perf_counter() - start) / 60
    write_atomic(folder.path / CALIBRATION_JSON, json.dumps(report, indent=2, allow_nan=False))
    choice = report["pick"] or report["closest"]
    if choice:
        write_atomic(folder.path / PROXY_YAML, proxy_file_text(folder, setup.definition, report, setup.base, choice))
    return report


def _set_up(opts: CalibrateOptions, command: str) -> _SetUp:
    """Check the options, the resources, the space and deployment's data (before anything is
    written), then make or continue the calibration's folder and its calibration.yaml."""
    from nas.tune.jobs import Resources, load_datasets

    _check(opts)
    resources = Resources.of(opts)
    space = _load_space(opts.space)
    base = space.proxy if opts.dataset is None else replace(space.proxy, dataset=opts.dataset)
    deploy_epochs = opts.deploy_epochs or 4 * space.proxy.epochs
    deploy_proxy = deployment(base, space.input_size, deploy_epochs)
    deploy_cand = Candidate(opts.deploy_subset, deploy_epochs, deploy_proxy.image_size)
    data = load_datasets({deploy_cand.data_key: deploy_cand.proxy(base)}, opts.data_dir, opts.seed)
    full = data[deploy_cand.data_key]
    if full.in_chans != space.in_chans:
        raise UsageError(
            f"{opts.space}: in_chans is {space.in_chans} but dataset {full.name} has {full.in_chans} channel(s)"
        )
    grid = candidate_grid(space, deploy_cand, len(full.train_y), opts.subsets, opts.epochs, opts.image_sizes)
    name = opts.name or f"calibrate-{space.name}-{full.name}"
    folder = RunFolder(opts.results_dir / name)
    seeds = [opts.seed + k for k in range(opts.seeds)]
    lock = _lock(folder, command)
    try:
        definition = _define(folder, opts, command, space, base, full, deploy_cand, grid, seeds)
    except BaseException:
        lock.release()
        raise
    cands = [deploy_cand, *grid]
    return _SetUp(folder, definition, space, base, cands, definition["panel"], seeds, data, full, resources, lock)


def _lock(folder: RunFolder, command: str) -> RunLock:
    """The folder's lock, taken before anything is written into it: a search's folder, or one a
    second calibration writes, is refused with one line naming its holder (UsageError)."""
    what = command or "python -m nas.calibrate"
    lock = RunLock(folder.path, command=what, resume=what)
    try:
        note = lock.acquire()
    except RunError as e:
        raise UsageError(str(e)) from None
    if note:
        print(note, flush=True)
    return lock


def _define(
    folder: RunFolder,
    opts: CalibrateOptions,
    command: str,
    space: Any,
    base: ProxyConfig,
    full: Dataset,
    deploy: Candidate,
    grid: Sequence[Candidate],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """calibration.yaml's contents, written: this calibration's definition (`_definition`: refused
    when the folder holds another), with its panel, drawn once on the first invocation."""
    definition = _definition(
        folder,
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "space_file": str(opts.space),
            "space": space.name,
            "space_fingerprint": space.fingerprint,
            "dataset": full.name,
            "data_dir": None if opts.data_dir is None else str(opts.data_dir),
            "seed": opts.seed,
            "val_fraction": base.val_fraction,
            "val_images": len(full.val_y),
            "archs": opts.archs,
            "seeds": list(seeds),
            "deploy": {**asdict(deploy), "train_images": len(full.train_y)},
            "grid": [c.key for c in grid],
            "base_proxy": base.to_dict(),
            "versions": package_versions(),
            "panel": None,
        },
    )
    if definition["panel"] is None:
        definition["panel"] = pick_panel(space, opts.archs, opts.seed, full.num_classes)
        write_atomic(folder.path / CALIBRATION_YAML, yaml.safe_dump(definition, sort_keys=False, allow_unicode=True))
    return definition


def _plan(setup: _SetUp) -> list[Job]:
    """Every evaluation of the calibration: per setting (deployment first), architecture and seed."""
    from nas.tune.jobs import Job

    deploy = setup.cands[0]
    return [
        Job(
            p["arch_id"],
            p["arch"],
            s,
            c.data_key,
            c.epochs,
            c.file,
            f"{'deployment' if c == deploy else 'proxy'} {c.key}",
        )
        for c in setup.cands
        for p in setup.panel
        for s in setup.seeds
    ]


def _data(opts: CalibrateOptions, setup: _SetUp, jobs: Sequence[Job]) -> dict[str, Dataset]:
    """The data of every setting `jobs` train, by its key: deployment's as loaded, the others loaded."""
    from nas.tune.jobs import load_datasets

    wanted: dict[str, ProxyConfig] = {}
    for c in setup.cands:
        if c.data_key not in setup.data and any(j.data == c.data_key for j in jobs):
            wanted.setdefault(c.data_key, c.proxy(setup.base))
    return {**setup.data, **load_datasets(wanted, opts.data_dir, opts.seed)}


def _train(opts: CalibrateOptions, setup: _SetUp, start: float) -> None:
    """Say what the calibration holds and what it trains, load the data that needs, time the panel
    and print the plan once Ray is up (refused when over --time-budget, `nas.calibrate.plan`), then
    train the evaluations not recorded yet on Ray (`nas.tune.jobs.run_jobs`) until done or the budget."""
    from nas.calibrate.plan import PANEL_FLOOR, build_plan
    from nas.trial import TrialSettings
    from nas.tune.jobs import missing, run_jobs, sized

    folder, deploy, plan = setup.folder, setup.cands[0], _plan(setup)
    jobs = missing(plan, folder)
    n_deploy = sum(j.file == deploy.file for j in jobs)
    print(
        f"{folder.path}: space {setup.space.name}, {setup.full.summary()}; panel of {len(setup.panel)} "
        f"architectures, seeds {', '.join(map(str, setup.seeds))}; deployment {deploy.key}, "
        f"{len(setup.cands) - 1} candidate proxies; to train: {n_deploy} deployment and {len(jobs) - n_deploy} "
        f"proxy evaluations",
        flush=True,
    )
    if not jobs:
        return
    data = _data(opts, setup, jobs)
    resources = setup.resources
    floors = (2 * max(opts.subsets), max(opts.epochs), PANEL_FLOOR)
    timed = build_plan(
        sized(jobs, data),
        setup.cands,
        setup.panel,
        len(setup.seeds),
        data,
        setup.base,
        resources.device,
        max(1, int(resources.cpus_per_trial)),
        floors,
        continued=len(jobs) < len(plan),
    )

    def check(slots: int) -> None:
        print("\n".join(timed.lines(slots, opts.time_budget)), flush=True)
        timed.check(slots, opts.time_budget, opts.partial)

    settings = TrialSettings(proxy=setup.base, num_classes=setup.full.num_classes, device=resources.device, measure=())
    deadline = time.time() + opts.time_budget if opts.time_budget else None
    run_jobs(
        folder,
        timed.jobs,
        data,
        settings,
        resources,
        "calibrate",
        deadline,
        start,
        plan=check,
        every=opts.progress_every,
    )
    left = len(missing(plan, folder))
    if left:
        print(
            f"{left} evaluations not trained yet (time budget or failures); run the same command again to continue",
            flush=True,
        )
