"""Promotion: after the proxy search, its front and the points within its noise trained again at a
higher rung of the fidelity ladder, so that the front the user gets is not a short proxy's.

The ladder (`nas.search.rungs`; run.yaml `ladder`, written when the run starts, so a resume knows it):

* rung 0 is the search's proxy (its training subset, epochs and image size);
* rung 1 is deployment-like training: the deployment the proxy was calibrated against when it came
  from `python -m nas.calibrate` (run.yaml `calibration`: its training images, epochs and image
  size), else the whole training split at the networks' input size for `--promote-epochs`, by
  default DEFAULT_EPOCHS_FACTOR x the proxy's epochs (`--promote-epochs` also overrides a
  calibration's epochs). Validation is the run's own split, so rungs compare on the same images.
  Before rung 1 trains anything its epochs are fitted to the compute (`fit`): where the proxy's
  front would not fit in it, rung 1 takes the most epochs at which it does (down to the proxy's),
  since a printed front is the promoted networks' front; --promote-epochs or --promote-images fix
  rung 1 as given. The fitted epochs are written to run.yaml's ladder before anything trains.

What is promoted, as multi-objective successive halving (MO-ASHA) promotes: the proxy's front and
the dominated points within its noise (`Archive.band`), in order of non-dominated rank and, within
a rank, of crowding distance (the ends of a rank first, then the points in its emptiest stretches),
at most `--promote` architectures, each with `--promote-seeds` seeds (PROMOTE_SEEDS by default: the
run's seed + 0, 1, ...; more seeds make the printed front steadier, `nas.run.reproduce`), as
long as their estimated cost stays within `--promote-share` of the search's compute. Costs are
counted in proxy trials, so that the plan follows from the records alone and does not flip with
the machine's load: one rung-1 evaluation costs the ratio of the rungs' work (training images x
epochs x pixels) in proxy trials, and the search's compute is its trained proxy evaluations (a
trial stopped early counts its share of the epochs). Every architecture is costed alike: on the
default task a proxy trial's seconds do not follow its MACs (correlation -0.02 over 191 trials),
and an architecture's own seconds are one noisy measurement. With `--time-budget` the search
keeps 1 / (1 + share) of it for the proxy and the promotion takes what is left: a promotion that
would not fit in those seconds (at the run's mean proxy trial, as many at once as the cluster
runs) is shrunk to what does, and no evaluation starts after the time budget. Fewer than two
architectures that fit are not promoted (a ranking needs two).

The promotion is a fixed list of evaluations run with `nas.tune.jobs.run_jobs` (the search's
resources, its lock) and appended to trials.jsonl with `rung: 1`. Its plan follows from the rung-0
records alone, so a stopped promotion resumes with `--resume`, training only the evaluations that
no complete rung-1 record holds. The archive then ranks the promoted rung first (`nas.run.archive`):
the front printed, pareto.json, the knee and exports are the promoted pool's, and pareto.json's
`fidelity` says how the proxy ranks the promoted architectures against rung 1 (`check_lines`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.run import pareto
from nas.run.archive import Archive, ArchResult
from nas.run.folder import PARETO, TRIALS, RunConfig, RunFolder, TrialRecord
from nas.run.ladder import rung_of
from nas.search.report import promotion_lines
from nas.search.rungs import DEFAULT_EPOCHS_FACTOR, Rung
from nas.train.estimate import work as _work  # the shared cost model

if TYPE_CHECKING:
    from nas.data.dataset import Dataset
    from nas.search.options import SearchOptions

__all__ = [
    "PROMOTE_SEEDS",
    "crowding",
    "promotion_order",
    "choose",
    "Plan",
    "plan",
    "fit",
    "planned",
    "plan_line",
    "promote",
    "check_lines",
    "rung_weights",
    "add_promote_arguments",
]

PROMOTE_SEEDS = 2  # seeds per promoted architecture by default: a mean, a standard error and a test-retest
DATA_KEY = "rung1"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


# --------------------------------------------------------------------------- what to promote


def crowding(losses: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each row of `losses` (points of one rank): per objective, the
    gap between its two neighbours over the objective's range, summed; the ends are infinite."""
    n, m = losses.shape
    out = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(losses[:, j], kind="stable")
        span = losses[order[-1], j] - losses[order[0], j]
        out[order[0]] = out[order[-1]] = np.inf
        if span > 0:
            out[order[1:-1]] += (losses[order[2:], j] - losses[order[:-2], j]) / span
    return out


def promotion_order(archive: Archive) -> list[ArchResult]:
    """The proxy's front and the points within its noise, in the order they are promoted: by
    non-dominated rank, within a rank by crowding distance (largest first), then by number."""
    objectives = archive.objectives
    pool = {a.arch_id for a in archive.front()} | {a.arch_id for a in archive.band()}
    cands = pareto.candidates(archive.architectures, objectives)
    ranks = pareto.ranks(cands, objectives)
    keys: dict[str, tuple[int, float, int]] = {}
    for k in sorted(set(ranks.values())):
        group = [a for a in cands if ranks[a.number] == k]
        for a, c in zip(group, crowding(pareto.losses_of(group, objectives))):
            keys[a.arch_id] = (k, -float(c), a.number)
    return sorted((a for a in cands if a.arch_id in pool), key=lambda a: keys[a.arch_id])


def choose(
    order: Sequence[ArchResult], most: int, budget_s: float, cost_s: Callable[[ArchResult], float]
) -> list[ArchResult]:
    """The first of `order` that fit: at most `most`, each taken while the estimated seconds of what
    is taken (`cost_s` of each) stay within `budget_s` (one that does not fit is passed over for the
    next); none when fewer than 2 fit."""
    chosen, spent = [], 0.0
    for a in order:
        if len(chosen) >= most:
            break
        if spent + cost_s(a) <= budget_s:
            chosen.append(a)
            spent += cost_s(a)
    return chosen if len(chosen) >= 2 else []


# --------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """A promotion as the records define it: what rung 1 is, the architectures promoted (in
    order) and the seeds, the compute it may take and is estimated to take, and the jobs that no
    complete rung-1 record holds yet. Costs are counted in proxy trials (`units`: one proxy
    evaluation of the run's proxy epochs is 1), which follow from the records alone; seconds are
    those units at the run's mean proxy seconds."""

    rung: Rung
    order: list[ArchResult]  # every candidate for promotion, in promotion order
    chosen: list[ArchResult]
    seeds: list[int]
    search_s: float  # the proxy search's compute: its trials' seconds
    budget_s: float  # what the promotion may take: --promote-share of search_s, or what --time-budget leaves
    estimate_s: float  # of every chosen evaluation
    todo: list[tuple[ArchResult, int]]  # (architecture, seed) not complete at rung 1
    ratio: float = 1.0  # one rung-1 evaluation, in proxy trials
    units: float = 0.0  # the proxy search, in proxy trials
    limit_s: float | None = None  # the seconds --time-budget leaves (None: no time budget)
    slots: int = 1  # evaluations at once, for limit_s
    by_time: bool = False  # --time-budget, not --promote-share, bounded the choice
    front: int = 0  # the proxy front's points: a promotion of fewer prints a front of part of it


@dataclass
class _Proxy:
    """What a plan takes from the rung-0 records, whatever rung 1 is."""

    order: list[ArchResult]
    front: int
    units: float  # the proxy search's trained evaluations, in proxy trials
    unit_s: float  # the mean proxy trial's seconds
    search_s: float


def _proxy(records: Sequence[TrialRecord], config: RunConfig) -> _Proxy:
    proxy_records = [r for r in records if rung_of(r) == 0]
    archive = Archive(config.objectives)
    for r in proxy_records:
        archive.add(r)
    epochs = config.proxy.epochs or 1
    trained = [r for r in proxy_records if r.status in ("complete", "stopped")]
    units = sum(min(1.0, (r.epochs or epochs) / epochs) for r in trained)
    unit_s = sum(r.train_seconds or r.seconds for r in trained) / (units or 1.0)
    search_s = sum(r.seconds for r in proxy_records)
    return _Proxy(promotion_order(archive), len(archive.front()), units, unit_s, search_s)


def _ratio(config: RunConfig, rung: Rung) -> float:
    """One evaluation at `rung`, in proxy trials: the rungs' work."""
    val, size = config.data.val_images, config.data.image_size
    base = _work(config.data.train_images, config.proxy.epochs or 1, config.proxy.image_size or size, val)
    return _work(rung.train_images, rung.epochs, rung.image_size or size, val) / (base or 1.0)


def plan(
    records: Sequence[TrialRecord],
    config: RunConfig,
    rung: Rung,
    most: int,
    share: float,
    limit_s: float | None = None,
    slots: int = 1,
    view: _Proxy | None = None,
    n_seeds: int = PROMOTE_SEEDS,
) -> Plan:
    """The promotion of a run with these records (see the module docstring); `rung` must know its
    training images. `limit_s`: the wall seconds --time-budget leaves, `slots` evaluations at once,
    `n_seeds` seeds per architecture (--promote-seeds).

    Which architectures fit does not depend on measured seconds: every rung-1 evaluation costs
    `ratio` proxy trials (the rungs' work: (3 x training images + validation images) x epochs x
    pixels) and the search's
    compute is its proxy trials (each weighted by the epochs it trained), so the same records give
    the same plan on any machine and load. Only a --time-budget, a wall-clock limit, converts
    seconds (at the run's mean proxy trial) into proxy trials."""
    v = view or _proxy(records, config)
    ratio = _ratio(config, rung)
    budget = share * v.units
    by_time = limit_s is not None and limit_s * slots < budget * v.unit_s
    if by_time:
        budget = limit_s * slots / (v.unit_s or 1.0)
    chosen = choose(v.order, most, budget + 1e-9, lambda a: n_seeds * ratio)
    seeds = [config.seed + k for k in range(n_seeds)]
    done = {
        (r.arch_id, r.seed)
        for r in records
        if rung_of(r) == rung.rung and r.status == "complete" and r.accuracy is not None
    }
    todo = [(a, s) for a in chosen for s in seeds if (a.arch_id, s) not in done]
    estimate = len(chosen) * n_seeds * ratio * v.unit_s
    fixed = (rung, v.order, chosen, seeds, v.search_s, budget * v.unit_s, estimate, todo, ratio, v.units)
    return Plan(*fixed, limit_s, slots, by_time, v.front)


def fit(
    records: Sequence[TrialRecord],
    config: RunConfig,
    rung: Rung,
    most: int,
    share: float,
    limit_s: float | None = None,
    slots: int = 1,
    n_seeds: int = PROMOTE_SEEDS,
) -> Plan:
    """The plan at rung 1 fitted to the promotion's compute: rung 1's epochs (those it had before any
    fitting, `fitted_from`) where they let the proxy's front be promoted (all of its points, or
    `most`), else the most epochs of those that do, down to the proxy's epochs, and where none
    does, those that promote the most; the plan's rung says `fitted_from` when its epochs are
    fewer. A printed front is the promoted networks' front: on Fashion-MNIST 5 promoted printed 4
    points with a 2.5-point gap to deployment's front, 16 promoted (the same rung) 8 points, 0.16
    points from it (docs/benchmarks.md). Only before rung 1 trained anything, and never where
    --promote-epochs or --promote-images set it (`Rung.source` 'option'): `promote` decides."""
    view = _proxy(records, config)
    top = rung.fitted_from or rung.epochs
    best: Plan | None = None
    floor = min(top, max(1, config.proxy.epochs or 1))  # the proxy's epochs
    for epochs in range(top, floor - 1, -1):
        at = replace(rung, epochs=epochs, fitted_from=top if epochs < top else None)
        p = plan(records, config, at, most, share, limit_s, slots, view, n_seeds)
        if epochs < top and p.ratio <= 1.0:
            break  # no higher fidelity than the proxy's
        best = p if best is None or len(p.chosen) > len(best.chosen) else best
        if len(p.chosen) >= min(p.front, most):
            return p
    assert best is not None  # the first epochs always plan
    return best


# --------------------------------------------------------------------------- running it


def rung_weights(arch_id: str, rung: int) -> str:
    """The name a promoted architecture's weights are kept under: weights/<arch id>.rung<k>.safetensors."""
    return f"{arch_id}.rung{rung}"


def _rung_data(folder: RunFolder, config: RunConfig, data_dir: Any) -> tuple[Rung, Dataset]:
    """Rung 1 of the run's ladder with its data loaded (its training images written into run.yaml's
    ladder once known)."""
    from nas.tune.jobs import load_datasets

    rung = Rung.from_dict(config.ladder[1])
    data = load_datasets({DATA_KEY: rung.proxy(config.proxy)}, data_dir, config.seed)[DATA_KEY]
    if rung.train_images != len(data.train_y):
        rung = replace(rung, train_images=len(data.train_y))
        config.ladder[1] = asdict(rung)
        folder.write_config(config)
    return rung, data


def promote(
    folder: RunFolder, opts: SearchOptions, gpus: float, address: str | None, deadline: float | None = None
) -> Plan | None:
    """Promote the run's proxy front (see the module docstring): plan it from the records (rung 1
    fitted to the compute first, `fit`, unless options set it or it trained already), say so,
    train what is missing and say what it cost. `deadline` (time.monotonic(); --time-budget): the
    promotion is shrunk to what fits before it, and no evaluation starts after it. None when
    --promote is 0 or the run has no ladder.

    Raises:
        KeyboardInterrupt: Ctrl-C (nas.cli.Terminated for SIGTERM) stopped it; what finished is recorded.
    """
    config = folder.config()
    if not opts.promote or len(config.ladder) < 2:
        return None
    start = time.perf_counter()
    rung, data = _rung_data(folder, config, opts.data_dir)
    limit_s = None if deadline is None else max(0.0, deadline - time.monotonic())
    slots = _slots(config, opts, gpus)
    p = planned(folder, config, rung, opts, limit_s, slots)
    print(plan_line(p, opts), flush=True)
    if p.todo:
        _train(folder, config, p, data, opts, gpus, address, start)
    return p


def planned(
    folder: RunFolder, config: RunConfig, rung: Rung, opts: SearchOptions, limit_s: float | None, slots: int
) -> Plan:
    """The run's promotion from its records: rung 1 fitted to the compute (`fit`) unless options set
    it or it trained already, a fitted rung 1 written to run.yaml before anything trains (a resume
    keeps it)."""
    records = folder.trials()
    fixed = rung.source == "option" or any(rung_of(r) >= 1 for r in records)
    how = (opts.promote, opts.promote_share, limit_s, slots)
    p = (plan if fixed else fit)(records, config, rung, *how, n_seeds=opts.promote_seeds)
    if p.rung != rung:
        config.ladder[1] = asdict(p.rung)
        folder.write_config(config)
    return p


def _slots(config: RunConfig, opts: SearchOptions, gpus: float) -> int:
    """How many promoted evaluations run at once on the cluster the search ran on (run.yaml `ray`)."""
    from nas.tune.session import fitting_trials

    cluster = {"CPU": float(config.ray.get("cpus") or 1), "GPU": float(config.ray.get("gpus") or 0)}
    return opts.max_concurrent or fitting_trials(cluster, opts.cpus_per_trial, gpus)


def plan_line(p: Plan, opts: SearchOptions) -> str:
    """What the promotion trains, or why it trains nothing; and, when it trains fewer than the proxy's
    front, what that costs and what promotes more."""
    where = f"rung 1 ({p.rung.describe()}; one evaluation ~{p.ratio:.1f} proxy trials)"
    bound = (
        f"what --time-budget leaves, {_minutes(p.limit_s or 0)} x {p.slots} at once"
        if p.by_time
        else f"--promote-share {opts.promote_share:g} of the search's {p.units:g} proxy trials"
    )
    more = "a larger --time-budget" if p.by_time else "a larger --promote-share"
    more = f"{more} or a cheaper rung 1 (--promote-epochs, --promote-images) promotes more"
    if not p.chosen:
        return (
            f"promotion: none: fewer than 2 of the {len(p.order)} front and within-noise points fit in {bound} "
            f"at {where}; {more}"
        )
    if len(p.chosen) >= opts.promote:
        more = "a larger --promote promotes more"
    which = "the" if len(p.chosen) >= min(p.front, opts.promote) else "more of the"
    fitted = (
        f"; rung 1 trains {p.rung.epochs} of its {p.rung.fitted_from} epochs, so that {which} proxy front's "
        f"{p.front} points fit (--promote-epochs sets them)"
        if p.rung.fitted_from
        else ""
    )
    short = (
        f"; that is fewer than the proxy front's {p.front} points, and the front printed is the promoted ones' "
        f"alone: {more}"
        if len(p.chosen) < p.front
        else ""
    )
    return (
        f"promotion: {len(p.chosen)} of the {len(p.order)} front and within-noise points, {len(p.seeds)} seeds "
        f"each, at {where}: ~{_minutes(p.estimate_s)} of compute ({p.estimate_s / (p.search_s or 1):.2f} of the "
        f"search's {_minutes(p.search_s)}), within {bound}; {len(p.todo)} of {len(p.chosen) * len(p.seeds)} "
        f"evaluations to train{fitted}{short}"
    )


def _train(
    folder: RunFolder,
    config: RunConfig,
    p: Plan,
    data: Dataset,
    opts: SearchOptions,
    gpus: float,
    address: str | None,
    start: float,
) -> None:
    """The missing rung-1 evaluations on Ray Tune, appended to trials.jsonl as they finish."""
    from nas.trial import TrialSettings
    from nas.tune.jobs import Job, Resources, run_jobs, sized

    label = f"rung {p.rung.rung}, {p.rung.epochs} epochs:"
    jobs = [
        Job(
            a.arch_id,
            a.arch,
            s,
            DATA_KEY,
            p.rung.epochs,
            TRIALS,
            label,
            rung=p.rung.rung,
            keep=rung_weights(a.arch_id, p.rung.rung),
        )
        for a, s in p.todo
    ]  # the first complete seed's weights are kept, as a proxy trial's are
    resources = Resources(opts.cpus_per_trial, gpus, opts.max_concurrent, address).checked()
    settings = TrialSettings(
        proxy=config.proxy, num_classes=data.num_classes, limits={}, device=resources.device, measure=()
    )  # costs are the proxy trials'; the trainable takes the job's epochs
    datasets = {DATA_KEY: data}
    deadline = None if p.limit_s is None else time.time() + p.limit_s  # --time-budget: none starts after it
    run_jobs(folder, sized(jobs, datasets), datasets, settings, resources, "promote", deadline, start)


# --------------------------------------------------------------------------- the check it gives


def check_lines(folder: RunFolder) -> list[str]:
    """The search's last lines on its promotion: what rung the front is at, the compute it took,
    and the proxy's rank agreement with rung 1 over the promoted architectures (pareto.json's
    `fidelity`, as the search's report last wrote it); none without a promoted front."""
    try:
        summary = json.loads((folder.path / PARETO).read_text())
    except (OSError, ValueError):
        return []
    return promotion_lines(summary, folder.trials(), folder.path)


# --------------------------------------------------------------------------- the command line


def add_promote_arguments(p: argparse.ArgumentParser, dflt: Callable[[str], Any]) -> None:
    """--promote, --promote-share, --promote-epochs and --promote-images."""
    g = p.add_argument_group("promotion (the front trained again, deployment-like, after the search)")
    g.add_argument(
        "--promote",
        type=int,
        default=dflt("promote"),
        help="at most this many architectures of the front and within its noise are trained again at "
        "rung 1, --promote-seeds seeds each; the front printed is then theirs (0: off)",
    )
    g.add_argument(
        "--promote-seeds",
        type=int,
        default=dflt("promote_seeds"),
        help=f"seeds per promoted architecture (default {PROMOTE_SEEDS}); more make the printed front steadier "
        "and cost as many more rung-1 evaluations each (the search's last line says how its front would reproduce)",
    )
    g.add_argument(
        "--promote-share",
        type=float,
        default=dflt("promote_share"),
        help="the promotion's compute, at most this share of the proxy search's (counted in proxy trials: from its records alone)",
    )
    g.add_argument(
        "--promote-epochs",
        type=int,
        default=dflt("promote_epochs"),
        help="rung 1's epochs, on the whole training split at the networks' input size; default: the "
        f"deployment a --proxy from nas.calibrate was fitted to, else {DEFAULT_EPOCHS_FACTOR}x the proxy's epochs",
    )
    g.add_argument(
        "--promote-images",
        type=int,
        default=dflt("promote_images"),
        help="rung 1's training images (a seeded subset of the training split); default: the deployment a "
        "--proxy from nas.calibrate was fitted to, else all of them",
    )
