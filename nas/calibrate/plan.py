"""The calibration's plan, before anything trains: what each evaluation will cost, what the whole
takes on the trials Ray runs at once, whether it fits `--time-budget`, and settings that fit.

Costs are timed, not guessed: each panel network trains a few steps and scores a validation batch
at deployment's image size with the thread count a trial gets (`nas.train.estimate.time_steps`);
at each other image size of the grid, TIMED_AT_SIZE networks (the cheapest, middle and dearest by
MACs) are timed too and the others scaled by the median of their ratios. An evaluation's seconds
follow from its steps per epoch, validation batches and epochs (`StepTimes.seconds`). The jobs get
these seconds, so the progress lines' time left (`nas.tune.progress`) is weighted by them.

The plan is printed per setting (deployment, each candidate): evaluations to train, seconds each,
trial time; then the total's wall time on the slots Ray gives (evaluations in order on the first
slot free, `nas.tune.progress.finish_times`) and what fits in `--time-budget`. A plan over the
budget is refused (UsageError, exit 2) with the settings that fit named as options: deployment's
training images first (down to 2x the largest candidate subset), then its epochs (down to the
candidates' most), then the panel (down to PANEL_FLOOR networks), unless `--partial` asks to train
what fits now and continue with the same command later. Without a budget the plan is printed and
run; one over an hour names what would fit one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from nas.calibrate.panel import Candidate
from nas.cli import hms
from nas.data.dataset import Dataset
from nas.errors import UsageError
from nas.proxy import ProxyConfig
from nas.train.estimate import StepTimes, time_steps
from nas.tune.progress import finish_times, makespan

__all__ = ["TIMED_AT_SIZE", "PANEL_FLOOR", "time_panel", "Fit", "propose", "CalibrationPlan"]

TIMED_AT_SIZE = 3  # networks timed at each image size besides deployment's (all are timed at deployment's)
PANEL_FLOOR = 8  # a proposal keeps at least this many networks: fewer, and a τ moves by ±0.2 from seed noise
HOUR = 3600.0


def _timing_data(like: Dataset, size: int, images: int) -> Dataset:
    """Random images of `like`'s channels at `size` pixels: speed does not depend on the values."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(images, like.in_chans, size, size, generator=g)
    y = torch.randint(0, like.num_classes, (images,), generator=g)
    return replace(like, train_x=x, train_y=y, val_x=x, val_y=y, image_size=size)


def time_panel(
    panel: Sequence[dict[str, Any]], sizes: Sequence[int], like: Dataset, proxy: ProxyConfig, device: str, threads: int
) -> dict[tuple[str, int], StepTimes]:
    """Every panel network's `StepTimes` at every size in `sizes` (the first, deployment's, timed
    for all; the others for TIMED_AT_SIZE of them, the rest scaled), keyed by (arch id, size)."""
    from nas.net.arch import Arch
    from nas.net.cost import measure_cost
    from nas.net.model import create_model

    def model_of(p: dict[str, Any], size: int) -> Any:
        def build() -> Any:
            arch = Arch.from_dict(p["arch"])
            model = create_model(arch, num_classes=like.num_classes)
            measure_cost(model, (like.in_chans, size, size), device, latency=False, memory=False)
            return model

        return build

    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        data = {s: _timing_data(like, s, max(proxy.batch_size * 3, 512)) for s in sizes}
        times = {
            (p["arch_id"], sizes[0]): time_steps(model_of(p, sizes[0]), data[sizes[0]], proxy, device) for p in panel
        }
        by_macs = sorted(panel, key=lambda p: p.get("macs") or 0)
        sample = [by_macs[round(i)] for i in _spread(len(by_macs), TIMED_AT_SIZE)]
        for s in sizes[1:]:
            timed = {p["arch_id"]: time_steps(model_of(p, s), data[s], proxy, device) for p in sample}
            ratio = statistics.median(_ratio(timed[i], times[(i, sizes[0])]) for i in timed)
            for p in panel:
                times[(p["arch_id"], s)] = timed.get(p["arch_id"]) or _scaled(times[(p["arch_id"], sizes[0])], ratio)
    finally:
        torch.set_num_threads(saved)
    return times


def _spread(n: int, k: int) -> list[float]:
    return sorted({(n - 1) * i / max(1, k - 1) for i in range(min(n, k))})


def _ratio(a: StepTimes, b: StepTimes) -> float:
    return (a.step + a.eval_batch) / ((b.step + b.eval_batch) or 1e-9)


def _scaled(t: StepTimes, ratio: float) -> StepTimes:
    return replace(t, step=t.step * ratio, eval_batch=t.eval_batch * ratio)


# --------------------------------------------------------------------------- fitting a budget


@dataclass(frozen=True)
class Fit:
    """Settings that fit a budget: deployment's training images and epochs, the panel's size, and
    the estimated wall seconds of the calibration with them."""

    deploy_subset: int
    deploy_epochs: int
    archs: int
    wall: float

    def options(self) -> str:
        return f"--deploy-subset {self.deploy_subset} --deploy-epochs {self.deploy_epochs} --archs {self.archs}"


def _round_down(n: float) -> int:
    """`n` rounded down to two significant digits (12345 -> 12000)."""
    n = max(1, int(n))
    unit = 10 ** max(0, len(str(n)) - 2)
    return n // unit * unit


def propose(
    deploy_times: Sequence[StepTimes],
    cand_seconds: Sequence[float],
    seeds: int,
    val_images: int,
    deploy: tuple[int, int],
    floors: tuple[int, int, int],
    slots: int,
    budget: float,
) -> Fit | None:
    """The largest deployment (balanced between its images and epochs, each kept as close to its
    share of `deploy` = (images, epochs) as the other allows), then the largest panel, whose
    calibration fits `budget` wall seconds; None when even `floors` = (images, epochs, networks)
    does not. `deploy_times` and `cand_seconds` are per panel network (its candidates' seconds
    summed, per seed); a smaller panel is costed as networks spread over this one."""
    images, epochs = deploy
    low_n, low_e, low_a = min(floors[0], images), min(floors[1], epochs), min(floors[2], len(deploy_times))

    def wall(n: int, e: int, a: int) -> float:
        kept = [round(i) for i in _spread(len(deploy_times), a)]
        dep = [deploy_times[i].seconds(n, val_images, e) for i in kept for _ in range(seeds)]
        return makespan([*dep, *(cand_seconds[i] for i in kept for _ in range(seeds))], slots)

    best: Fit | None = None
    for e in range(epochs, low_e - 1, -1):
        if wall(low_n, e, len(deploy_times)) > budget:
            continue
        lo, hi = low_n, images  # the most images that fit at e epochs
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if wall(mid, e, len(deploy_times)) <= budget else (lo, mid - 1)
        n = max(low_n, _round_down(lo)) if lo < images else images
        fit = Fit(n, e, len(deploy_times), wall(n, e, len(deploy_times)))
        if best is None or min(n / images, e / epochs) > min(best.deploy_subset / images, best.deploy_epochs / epochs):
            best = fit
    if best is not None:
        return best
    for a in range(len(deploy_times) - 1, low_a - 1, -1):
        if wall(low_n, low_e, a) <= budget:
            return Fit(low_n, low_e, a, wall(low_n, low_e, a))
    return None


# --------------------------------------------------------------------------- the plan in words


def _dur(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else hms(seconds)


@dataclass
class CalibrationPlan:
    """A calibration's evaluations to train (`nas.tune.jobs.Job`s with their estimated seconds, in
    the order they run) and what a proposal needs: deployment's setting and data, the candidates,
    the panel's timings at deployment's size and its candidates' seconds, the floors."""

    jobs: list[Any]
    deploy: Candidate
    deploy_images: int  # deployment's training images
    val_images: int
    cands: list[Candidate]  # deployment, then the candidates
    deploy_times: list[StepTimes]  # per panel network
    cand_seconds: list[float]  # per panel network: its candidates' seconds, one seed
    seeds: int
    floors: tuple[int, int, int]  # deployment images, epochs, panel networks a proposal keeps
    continued: bool = False  # some of its evaluations are recorded: other settings need another --name
    timing: float = 0.0  # the seconds the timing took

    def lines(self, slots: int, budget: float | None) -> list[str]:
        """The plan per setting, the total on `slots` trials at a time, and what fits `budget`."""
        out = [
            f"plan ({slots} trial(s) at a time; seconds from steps timed here in {self.timing:.0f} s, on this "
            f"machine's load):"
        ]
        for c in self.cands:
            seconds = [j.seconds for j in self.jobs if j.file == c.file]
            if seconds:
                what = "deployment" if c == self.deploy else "proxy"
                out.append(
                    f"  {what} {c.key}: {len(seconds)} evaluations, ~{_dur(sum(seconds) / len(seconds))} each, "
                    f"~{hms(sum(seconds))} of trial time"
                )
        ends = finish_times([j.seconds for j in self.jobs], slots)
        wall = max(ends, default=0.0)
        out.append(
            f"  total: {len(self.jobs)} evaluations, ~{hms(sum(j.seconds for j in self.jobs))} of trial time, "
            f"~{hms(wall)} wall"
        )
        if budget is not None:
            fits = sum(e <= budget for e in ends)
            out.append(f"  --time-budget {hms(budget)}: {fits} of the {len(self.jobs)} evaluations fit")
        elif wall > HOUR:
            fit = self.fit(slots, HOUR)
            out.append(
                "  no --time-budget: it runs to the end; "
                + (f"to fit an hour: {fit.options()} (~{hms(fit.wall)})" if fit else "an hour fits none of it")
            )
        return out

    def fit(self, slots: int, budget: float) -> Fit | None:
        """Settings whose whole calibration fits `budget` (`propose`)."""
        return propose(
            self.deploy_times,
            self.cand_seconds,
            self.seeds,
            self.val_images,
            (self.deploy_images, self.deploy.epochs),
            self.floors,
            slots,
            budget,
        )

    def check(self, slots: int, budget: float | None, partial: bool) -> None:
        """Refuse a plan over `budget` (UsageError, one line naming settings that fit) unless `partial`."""
        wall = makespan([j.seconds for j in self.jobs], slots)
        if budget is None or partial or wall <= budget:
            return
        fit = self.fit(slots, budget)
        then = (
            f"settings that fit{' (under a new --name)' if self.continued else ''}: {fit.options()} "
            f"(~{hms(fit.wall)} wall)"
            if fit
            else "nothing fits at the smallest deployment and panel proposed; fewer --subsets, --epochs or "
            "--image-sizes, or a larger --time-budget"
        )
        raise UsageError(
            f"the calibration needs ~{hms(wall)} wall on {slots} trial(s) at a time, over --time-budget "
            f"{hms(budget)}; {then}; or --partial to train what fits now and continue later with the same command"
        )


def build_plan(
    jobs: Sequence[Any],
    cands: Sequence[Candidate],
    panel: Sequence[dict[str, Any]],
    seeds: int,
    data: dict[str, Dataset],
    base: ProxyConfig,
    device: str,
    threads: int,
    floors: tuple[int, int, int],
    continued: bool = False,
) -> CalibrationPlan:
    """The plan of `jobs` (the evaluations to train, deployment's first; `cands` deployment, then
    the candidates; `data` each setting's data by its key): the panel timed (`time_panel`) and
    each job given its estimated seconds."""
    deploy = cands[0]
    full = data[deploy.data_key]
    sizes = list(dict.fromkeys(c.image_size for c in cands))
    start = time.perf_counter()
    times = time_panel(panel, sizes, full, base, device, threads)
    by_file = {c.file: c for c in cands}
    val = len(full.val_y)

    def images(c: Candidate) -> int:
        return (
            len(data[c.data_key].train_y)
            if c.data_key in data
            else min(c.subset or len(full.train_y), len(full.train_y))
        )

    def seconds(arch_id: str, c: Candidate) -> float:
        return times[(arch_id, c.image_size)].seconds(images(c), val, c.epochs)

    timed = [replace(j, seconds=seconds(j.arch_id, by_file[j.file])) for j in jobs]
    return CalibrationPlan(
        timed,
        deploy,
        len(full.train_y),
        val,
        list(cands),
        [times[(p["arch_id"], deploy.image_size)] for p in panel],
        [sum(seconds(p["arch_id"], c) for c in cands[1:]) for p in panel],
        seeds,
        floors,
        continued,
        time.perf_counter() - start,
    )
