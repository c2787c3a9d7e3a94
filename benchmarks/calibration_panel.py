"""How large a calibration's panel must be for its intervals to separate candidates.

    python benchmarks/calibration_panel.py results/calibrate-symmetry-symmetry
    python benchmarks/calibration_panel.py FOLDER --sizes 6 8 12 16 --draws 20 --extrapolate 24 32 48

From a finished calibration folder's records (calibration.yaml's panel and seeds, evaluations/*.jsonl),
for panels of each size: the median width of the 90% intervals of τ and of the share of
deployment's test-retest τ over every candidate x signal, the median width of the paired interval of
the τ difference between two options, the share of option pairs whose difference interval excludes
0 (separated), and whether the best τ is separated from the runner-up's. The method, printed with the
table: `nas.calibrate.bootstrap` (networks with replacement, seeds with replacement per network drawn,
τ averaged over the seed pairings, the same resamples for every option), on panels of each size
*measured* as `--draws` random subsets of the recorded networks (sizes up to the panel's), and
*extrapolated* above it (widths x sqrt(n / size) from the whole panel's widths, the 1/sqrt(n) a
bootstrap interval shrinks by; virtual panels, not measurements). `--pool` also measures the
folders' networks pooled into one panel (calibrations of one grid run with other `--seed` values).
A pick on half the panel works with half of these sizes.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.calibrate.bootstrap import (  # noqa: E402
    LEVEL,
    RESAMPLES,
    deploy_signs,
    draw,
    interval,
    retest_samples,
    tau_samples,
)
from nas.calibrate.intervals import matrix  # noqa: E402
from nas.fidelity.stats import seed_values  # noqa: E402
from nas.proxy import SIGNALS, score  # noqa: E402
from nas.run.folder import RunFolder  # noqa: E402


def load(folder: Path) -> tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]:
    """Deployment's accuracies (networks x seeds) and every complete candidate's values per signal."""
    definition = yaml.safe_load((folder / "calibration.yaml").read_text())
    ids, seeds = [p["arch_id"] for p in definition["panel"]], definition["seeds"]
    deploy_key = "n{}-e{}-{}px".format(
        definition["deploy"]["subset"] or "all", definition["deploy"]["epochs"], definition["deploy"]["image_size"]
    )
    run = RunFolder(folder)

    def values(key: str, signal: str) -> np.ndarray:
        epochs = int(key.split("-e")[1].split("-")[0])
        records = run.trials(f"evaluations/{key}.jsonl")
        return matrix(
            seed_values(records, ids, seeds, epochs, lambda r: score(r.acc_per_epoch, r.loss_per_epoch, signal)), seeds
        )

    deploy = values(deploy_key, "accuracy")
    options = {}
    for key in definition["grid"]:
        if (folder / "evaluations" / f"{key}.jsonl").is_file():
            for s in SIGNALS:
                v = values(key, s)
                if not np.isnan(v).any():
                    options[(key, s)] = v
    return deploy, options


def widths(deploy: np.ndarray, options: dict, rows: list[int], seed: int, count: int) -> dict[str, float]:
    """The interval widths on the networks `rows`, from one bootstrap."""
    res = draw(rows, deploy.shape[1], count, seed)
    signs, retest = deploy_signs(deploy, res), retest_samples(deploy, res)
    taus = {o: tau_samples(v, deploy, res, signs) for o, v in options.items()}
    point = {o: float(np.nanmean(t)) for o, t in taus.items()}

    def width(samples: np.ndarray) -> float:
        ci = interval(samples)
        return math.nan if ci is None else ci[1] - ci[0]

    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {o: np.where(retest > 0, t / retest, np.nan) for o, t in taus.items()}
    diffs = {(a, b): interval(taus[a] - taus[b]) for a, b in itertools.combinations(options, 2)}
    ranked = sorted(options, key=lambda o: -point[o])
    lead = ranked[0]
    runner = next((o for o in ranked[1:] if o[0] != lead[0]), None)
    lead_ci = interval(taus[lead] - taus[runner]) if runner else None
    return {
        "tau": statistics.median(width(t) for t in taus.values()),
        "share": statistics.median(width(s) for s in shares.values()),
        "diff": statistics.median(ci[1] - ci[0] for ci in diffs.values() if ci),
        "separated": statistics.mean(bool(ci and (ci[0] > 0 or ci[1] < 0)) for ci in diffs.values()),
        "lead": float(lead_ci is not None and lead_ci[0] > 0),
        "gap": point[lead] - point[runner] if runner else math.nan,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path, nargs="+", help="finished calibration folders, each measured on its own")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="measured panel sizes (default: 6, 8, ... n)")
    p.add_argument("--extrapolate", type=int, nargs="+", default=[24, 32, 48, 64], help="virtual panel sizes above n")
    p.add_argument("--draws", type=int, default=10, help="random subsets per measured size")
    p.add_argument("--resamples", type=int, default=RESAMPLES)
    p.add_argument(
        "--pool",
        action="store_true",
        help="also pool the folders' networks into one panel (calibrations of one grid with other --seed values: "
        "other networks, data split and training seeds)",
    )
    args = p.parse_args()
    panels = [(str(f), *load(f)) for f in args.folder]
    if args.pool and len(panels) > 1:
        common = set.intersection(*(set(o) for _, _, o in panels))
        pooled = {o: np.vstack([opts[o] for _, _, opts in panels]) for o in sorted(common)}
        panels.append(("pooled: " + " + ".join(n for n, _, _ in panels), np.vstack([d for _, d, _ in panels]), pooled))
    for folder, deploy, options in panels:
        n = deploy.shape[0]
        sizes = [s for s in (args.sizes or range(6, n + 1, 2)) if 4 <= s <= n]
        rng = np.random.default_rng(0)
        print(
            f"\n{folder}: {n} networks x {deploy.shape[1]} seeds, {len(options)} candidate x signal options, "
            f"{args.resamples} resamples, {round(100 * LEVEL)}% percentile intervals (nas.calibrate.bootstrap)"
        )
        head = f"{'networks':>8} {'how':>12} {'τ width':>8} {'share w':>8} {'Δτ width':>9} {'pairs sep':>9} {'lead sep':>8}"
        print(head + f" {'lead gap':>8}")
        full = None
        for size in sizes:
            subsets = (
                [list(range(n))]
                if size == n
                else [sorted(rng.choice(n, size, replace=False)) for _ in range(args.draws)]
            )
            w = [widths(deploy, options, rows, k, args.resamples) for k, rows in enumerate(subsets)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # one candidate: no gap to a runner-up
                row = {k: float(np.nanmean([x[k] for x in w])) for k in w[0]}
            full = row if size == n else full
            how = "whole panel" if size == n else f"{len(subsets)} subsets"
            print(
                f"{size:>8} {how:>12} {row['tau']:>8.2f} {row['share']:>8.2f} {row['diff']:>9.2f} "
                f"{row['separated']:>9.2f} {row['lead']:>8.2f} {row['gap']:>8.2f}"
            )
        for size in (s for s in args.extrapolate if full and s > n):
            k = math.sqrt(n / size)
            print(
                f"{size:>8} {'extrapolated':>12} {full['tau'] * k:>8.2f} {full['share'] * k:>8.2f} "
                f"{full['diff'] * k:>9.2f} {'':>9} {'':>8} {'':>8}"
            )
        print(
            "τ width, share w: the median width of the intervals over the options; Δτ width: the median width of the "
            "paired interval of two options' τ difference; pairs sep: the share of option pairs whose difference "
            "interval excludes 0; lead sep: the share of subsets where the best τ is separated from the best other "
            "candidate's; lead gap: that τ difference (mean over the subsets); extrapolated: x sqrt(n / size)"
        )


if __name__ == "__main__":
    main()
