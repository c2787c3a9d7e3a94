"""The run in words, for the terminal: the front with standard errors, and the seed noise.

>>> from nas.search.report import front_report
>>> run = RunFolder('results/RUN')
>>> print(front_report(run.write_pareto(), run.trials(), run.path))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.cli import shell_command
from nas.run.ladder import rung_of

if TYPE_CHECKING:
    from nas.data.dataset import Dataset
    from nas.proxy import ProxyConfig
    from nas.run.record import TrialRecord
    from nas.search.options import SearchOptions
    from nas.space.space import SearchSpace

__all__ = [
    "front_report",
    "start_notes",
    "noise_line",
    "reproduction_clause",
    "long_trial_note",
    "small_data_note",
    "proxy_note",
    "listed",
    "promotion_lines",
]

# A trial that trains on more images x epochs than this takes minutes rather than seconds on a CPU:
# the digits proxy (1,150 images x 10 epochs) takes 2-6 s on 2 cores, and Fashion-MNIST from disk
# (48,000 x 10) 1.5-7 min, so 100,000 is about a minute a trial for the small spaces.
LONG_TRIAL = 100_000
# Fewer training images than this per class, or fewer validation images than FEW_VAL, and the
# accuracies a search compares are mostly noise (each validation image is 1/n of the accuracy).
FEW_PER_CLASS, FEW_VAL = 10, 50


def front_report(summary: dict[str, Any], records: Sequence[TrialRecord], path: Path) -> str:
    """The run at `path` in words: the counts of its `records`, its Pareto front of mean accuracies
    as a table and one line on seed noise, from its pareto.json `summary` (`Archive.summary`)."""
    lines = []
    counts = {s: sum(r.status == s for r in records) for s in ("complete", "stopped", "failed", "infeasible")}
    front = summary["front"]
    lines.append(
        f"\n{len(records)} evaluations of {summary['architectures']} architectures "
        f"({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); Pareto front"
        + (f" at rung {summary['rung']} (promoted)" if summary.get("rung") else "")
        + f": {len(front)} architectures"
        + (f", hypervolume {summary['hypervolume']:.4f}" if summary["hypervolume"] is not None else "")
    )
    lines.append(
        f"  {'arch id':12}  {'accuracy ± s.e. (seeds)':>24}  {'MACs':>10}  {'params':>9}  "
        f"{'latency':>9}  reference  P(front)  within noise of"
    )
    for row in front:
        se = f"± {row['accuracy_se']:.4f}" if row["accuracy_se"] is not None else "± ?     "
        lat = f"{row['latency']:.2f}ms" if row.get("latency") is not None else "-"
        p = f"{row['p_front']:.2f}" if row.get("p_front") is not None else "-"
        lines.append(
            f"  {row['arch_id']:12}  {row['accuracy']:.4f} {se} ({row['seeds']:>2})  "
            f"{row['macs'] / 1e6:9.3f}M  {row['params'] / 1e3:8.1f}k  {lat:>9}  {row['reference'] or '':9}  "
            f"{p:>8}  {listed(row['unseparable_from'])}"
        )
    lines.append(noise_line(summary, path))
    lines.append(f"\nrun folder: {path}   dashboard: {shell_command('dashboard', path)}")
    return "\n".join(lines)


def listed(ids: list[str], most: int = 5) -> str:
    """Up to `most` ids, then how many more: 'a, b, c and 12 more'."""
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def noise_line(summary: dict[str, Any], path: Path) -> str:
    """One line: the seed noise against the gaps between the front's points, and the check of the
    run at `path`. A promoted front is flagged with the noise of its rung (`Archive.summary`): its
    points are compared with the points scored at that rung, with that rung's seed std."""
    check = f"check the proxy against the training you deploy: {shell_command('fidelity', path)}"
    if summary["seed_std"] is None:
        return f"seed noise: unknown (no architecture has 2 seeds; --race 3 re-evaluates the front); {check}"
    accs = sorted(row["accuracy"] for row in summary["front"])
    gaps = [b - a for a, b in zip(accs, accs[1:])]
    gap = f"{100 * min(gaps):.2f}-{100 * max(gaps):.2f}" if gaps else "no"
    flagged = sum(not row["separable"] for row in summary["front"])
    at = f" at rung {summary['rung']}, where the front was scored" if summary.get("rung") else ""
    return (
        f"seed noise{at}: accuracy std {100 * summary['seed_std']:.2f} points between seeds; front neighbours are "
        f"{gap} points apart; {flagged} of {len(summary['front'])} front points are within the noise of a "
        f"dominated point{reproduction_clause(summary)}; {check}"
    )


def reproduction_clause(summary: dict[str, Any]) -> str:
    """'; retrained with 2 new seeds each, about 0.66 of its points would stay on the front and it
    would have 0.64 of that front (P(front): each point's chance on the noise-free front)', from
    pareto.json's `reproduction` (`RungArchive.reproduction`); '' without one."""
    r = summary.get("reproduction")
    if not r:
        return ""
    return (
        f"; retrained with {r['retrain_seeds']} new seeds each, about {r['precision']:.2f} of its points would stay "
        f"on the front and it would have {r['recall']:.2f} of that front (seed noise alone; P(front): each point's "
        "chance on the front of noise-free means)"
    )


def long_trial_note(images: int, epochs: int) -> str | None:
    """A line for the start of a search whose trials train long (images x epochs over LONG_TRIAL),
    saying how --subset and --epochs shorten them; None for short trials."""
    if images * epochs <= LONG_TRIAL:
        return None
    subset = max(100, LONG_TRIAL // max(1, epochs) // 100 * 100)
    shorter = [
        f"--subset {subset:,}".replace(",", "") if subset < images else "",
        f"--epochs {max(1, LONG_TRIAL // images)}" if epochs > max(1, LONG_TRIAL // images) else "",
    ]
    return (
        f"note: each trial trains on {images:,} images x {epochs} epochs ({images * epochs:,} image-epochs): "
        f"minutes a trial on a CPU; "
        + " or ".join(x for x in shorter if x)
        + f" brings it under {LONG_TRIAL:,} (a proxy ranks architectures; it need not train them fully)"
    )


def small_data_note(data: Dataset) -> str | None:
    """A warning for data too small to rank networks on (see FEW_PER_CLASS, FEW_VAL); None otherwise."""
    train, val = len(data.train_y), len(data.val_y)
    if train >= FEW_PER_CLASS * data.num_classes and val >= FEW_VAL:
        return None
    return (
        f"warning: {data.name} gives only {train} training and {val} validation images for {data.num_classes} "
        f"classes: an accuracy on {val} images moves in steps of {100 / max(1, val):.1f} points, so the search "
        f"ranks mostly noise; use more images (--subset, the dataset)"
    )


def proxy_note(space: SearchSpace, opts: SearchOptions, proxy: ProxyConfig, calibration: dict[str, Any]) -> str | None:
    """A line for the start of a search on a proxy that was never fitted to its data (another dataset
    than the space file's proxy, and no --proxy): the command that fits it. With --proxy, the line
    says which calibration it is and whether it qualified, and warns if it was fitted to another
    dataset or space. None for the space's own proxy on its own data."""
    fit = shell_command(
        "calibrate",
        "--space",
        opts.space,
        "--dataset",
        proxy.dataset,
        *(["--data-dir", opts.data_dir] if opts.data_dir else []),
        *(["--seed", str(opts.seed)] if opts.seed else []),
    )
    what = f"{proxy.subset or 'all'} images x {proxy.epochs} epochs at {proxy.image_size}px"
    if opts.proxy is None:
        if proxy.dataset == space.proxy.dataset:
            return None
        return (
            f"note: this proxy ({what}) was fitted to {space.proxy.dataset}, never to {proxy.dataset}: it may rank "
            f"networks unlike the training you deploy; fit it with: {fit}, then search with --proxy "
            f"<its folder>/proxy.yaml"
        )
    if not calibration.get("folder"):
        return f"proxy: {opts.proxy} ({what}, rank signal {proxy.rank_by}), not from python -m nas.calibrate"
    status = (
        "qualified"
        if calibration.get("qualified")
        else "not qualified (no candidate reached the bar; this is the closest)"
    )
    if calibration.get("decided") is not None:  # a calibration with intervals: was the pick separated?
        tied = len({t[0] for t in calibration.get("tied") or []})  # candidates (each with its signals)
        status += ", decided" if calibration["decided"] else f", tied with {tied - 1} other candidate(s), the cheapest"
    if calibration.get("confirmation"):
        status += f"; on the held-out half: {calibration['confirmation']}"
    other = [
        f"dataset {calibration.get('dataset')}" if calibration.get("dataset") != proxy.dataset else "",
        f"space {calibration.get('space')}" if calibration.get("space_fingerprint") != space.fingerprint else "",
    ]
    other = [o for o in other if o]
    return f"proxy: {what}, rank signal {proxy.rank_by}, calibrated in {calibration['folder']}: {status}" + (
        f"; but calibrated for {' and '.join(other)}: recalibrate with {fit}" if other else ""
    )


def start_notes(
    space: SearchSpace,
    data: Dataset,
    proxy: ProxyConfig,
    opts: SearchOptions,
    calibration: dict[str, Any] | None = None,
) -> list[str]:
    """Lines for the start of a search whose settings will not do what they seem to, and which
    calibration its proxy comes from (or that it was never fitted to this data). `calibration` is
    the --proxy file's ({} or None without one: `_proxy`)."""
    notes = [note for note in [proxy_note(space, opts, proxy, calibration or {})] if note]
    if math.isfinite(space.size) and opts.budget > space.size:
        notes.append(
            f"note: --budget {opts.budget} is more than the {int(space.size):,} architectures of this space; "
            f"the search ends when every one is evaluated"
        )
    if proxy.batch_size > len(data.train_y):
        notes.append(
            f"note: the batch size {proxy.batch_size} is more than the {len(data.train_y)} training images; "
            f"every epoch is one batch of {len(data.train_y)}"
        )
    few = small_data_note(data)
    if few:
        notes.append(few)
    if not opts.quiet:
        long = long_trial_note(len(data.train_y), proxy.epochs)
        if long:
            notes.append(long)
    return notes


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def promotion_lines(summary: dict[str, Any], records: Sequence[TrialRecord], path: Any) -> list[str]:
    """`check_lines` of a run at `path` with these records and this pareto.json `summary` (the
    dashboard shows them too); none when its front is not promoted (no `fidelity`)."""
    f = summary.get("fidelity")
    if not f:
        return []
    rungs = {r["rung"]: r for r in summary.get("rungs", [])}

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    seeds = f.get("seeds") or []
    pair = f"seed {seeds[0]} vs seed {seeds[1]}" if len(seeds) == 2 else "two seeds"
    spent = [sum(r.seconds for r in records if rung_of(r) == k) for k in (0, f["rung"])]
    return [
        f"the Pareto front is at rung {f['rung']}: {rungs.get(f['rung'], {}).get('architectures', '?')} promoted "
        f"architectures trained deployment-like took {_minutes(spent[1])} of compute, "
        f"{spent[1] / (spent[0] or 1):.2f} of the proxy search's {_minutes(spent[0])}",
        f"the proxy's own check, free: {f.get('kept', '?')} of the {f.get('proxy_front', '?')} proxy front points "
        f"trained at rung {f['rung']} stay on its front; over the {f['architectures']} promoted architectures the "
        f"proxy's means rank like rung {f['rung']}'s with Kendall τ {num(f['kendall_tau'])}, Spearman ρ "
        f"{num(f['spearman_rho'])} (along a front accuracy rises with cost, so these are high by construction); "
        f"rung {f['rung']}'s own test-retest τ ({pair}, one seed against another) {num(f['retest_tau'])}; "
        f"deeper: {shell_command('fidelity', path)}",
    ]
