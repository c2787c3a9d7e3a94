"""Is the search's "how the front would reproduce" honest? And what would a steadier front take?

    python benchmarks/front_reproduction.py                  # simulated pools: predicted against measured
    python benchmarks/front_reproduction.py --run results/<run>   # a run's front with more seeds per network
    python benchmarks/front_reproduction.py --run results/<run> --fidelity   # predicted against its nas.fidelity check

Simulated pools (the first table): n networks whose true accuracy rises with the log of their cost
plus a spread `tau` (points), each measured as the mean of `seeds` seeds with seed std `sigma`
(points); the front of those means is "printed", and a retraining of the same networks with 2 new
seeds gives the reference front. Per setting it prints the precision and recall the printed front
measured against that reference (mean over the simulations) beside what `nas.run.reproduce`
predicted from the printed means alone, and what a flat prior (the means taken as the truth)
would have predicted. A predictor is honest where its mean matches the measured mean.

`--run` reads a run folder's top-rung front and the points within its noise, and prints the
precision and recall its front is expected to reach against a 2-seed retraining, then what a front
measured with s seeds per network would reach against a retraining with s seeds (s = 2, 4, 8,
16): what a steadier front, and a steadier reference, would cost in seeds. With `--fidelity` it
reads the run's fidelity.json (`python -m nas.fidelity RUN --pick ranks --score-on test`, best with
`--seeds 4`) and sets what the search predicted beside what deployment measured: the printed front
against the front of each half of deployment's seeds and of all of them, over the checked pool.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.fidelity.stats import front_agreement  # noqa: E402
from nas.run.reproduce import fronts, reproduction  # noqa: E402

SETTINGS = [  # (networks, sigma points, seeds, tau points): the default task's noise, a calmer and a wider pool
    (17, 1.3, 2, 0.5),
    (17, 1.3, 2, 1.5),
    (17, 1.3, 2, 3.0),
    (17, 0.5, 2, 1.5),
    (30, 1.3, 2, 1.5),
    (17, 1.3, 4, 1.5),
]


def _flat(acc: np.ndarray, se: np.ndarray, costs: np.ndarray, sigma: float, rng: np.random.Generator, draws: int):
    """Precision and recall predicted with the means taken as the truth."""
    truth = acc + se * rng.standard_normal((draws, len(acc)))
    ref = fronts(truth + sigma / np.sqrt(2) * rng.standard_normal(truth.shape), costs)
    printed = fronts(acc[None], costs)
    both = (printed & ref).sum(1)
    return float(np.mean(both / printed.sum())), float(np.mean(both / np.maximum(1, ref.sum(1))))


def simulate(sims: int, draws: int, seed: int) -> list[tuple]:
    """The first table's rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, sigma, seeds, tau in SETTINGS:
        got = []
        for k in range(sims):
            costs = np.exp(rng.uniform(0, 3, (n, 1)))
            truth = 80 + 3 * np.log(costs[:, 0]) + tau * rng.standard_normal(n)
            acc = truth + sigma / np.sqrt(seeds) * rng.standard_normal(n)
            ref = truth + sigma / np.sqrt(2) * rng.standard_normal(n)
            printed, front = fronts(acc[None], costs)[0], fronts(ref[None], costs)[0]
            both = (printed & front).sum()
            r = reproduction(acc, np.full(n, seeds), costs, sigma, 2, draws, seed=k)
            flat = _flat(acc, np.full(n, sigma / np.sqrt(seeds)), costs, sigma, rng, draws)
            got.append((both / printed.sum(), both / front.sum(), r["precision"], r["recall"], *flat))
        rows.append(((n, sigma, seeds, tau), np.mean(got, axis=0)))
    return rows


def _top(path: Path):
    """The run's archive at its top rung (`RungArchive`), from trials.jsonl."""
    from nas.run.archive import Archive
    from nas.run.folder import RunFolder

    run = RunFolder(path)
    archive = Archive(run.config().objectives)
    for r in run.trials():
        archive.add(r)
    return archive.at(archive.rung)


def run_rows(path: Path) -> list[tuple[str, float, float]]:
    """The --run table: (what, precision, recall), as the run's own `RungArchive.reproduction`."""
    top = _top(path)
    if not top.sigma:
        raise SystemExit(f"{path}: no architecture at its top rung has 2 seeds: no seed noise to go on")
    now = top.reproduction()
    rows = [("the front as measured, against a 2-seed retraining", *_pr(now))]
    for s in (2, 4, 8, 16):
        r = top.reproduction(s, measured_seeds=s)
        rows.append((f"a front measured with {s} seeds per network, against a {s}-seed retraining", *_pr(r)))
    print(
        f"{path}: rung {top.rung}, {now['points']} points (the front and those within its noise), seed std "
        f"{100 * top.sigma:.2f} points"
    )
    return rows


def fidelity_rows(path: Path) -> list[tuple[str, float, float, float, float]]:
    """The --fidelity table: (deployment seeds, predicted P, R, measured P, R)."""
    fid = json.loads((path / "fidelity.json").read_text())
    top = _top(path)
    costs = [o for o in fid["objectives"] if o != "accuracy"]
    archs = [a for a in fid["archs"] if all(x is not None for x in a["long_accuracies"])]
    printed = [a["arch_id"] for a in archs if a["arch_id"] in fid["proxy_front"]]
    cost = np.array([[float(a[c]) for c in costs] for a in archs])
    seeds = list(fid["seeds"])
    half = len(seeds) // 2
    groups = [seeds[:half], seeds[half:], seeds] if half >= 1 and len(seeds) > 2 else [seeds]
    rows = []
    for group in groups:
        acc = np.array([[a["long_accuracies"][seeds.index(s)] for s in group] for a in archs]).mean(axis=1)
        front = [a["arch_id"] for a, on in zip(archs, fronts(acc[None], cost)[0]) if on]
        measured = front_agreement(printed, front)  # as nas.fidelity measures it
        r = top.reproduction(len(group))
        label = f"seed{'s' if len(group) > 1 else ''} {', '.join(map(str, group))}"
        rows.append((label, r["precision"], r["recall"], measured["precision"], measured["recall"]))
    print(f"{path}: {len(archs)} networks checked, {len(printed)} of them on the printed front")
    return rows


def _pr(r: dict) -> tuple[float, float]:
    return r["precision"], r["recall"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, default=None, help="a run folder: its front with more seeds per network")
    p.add_argument("--fidelity", action="store_true", help="with --run: predicted against its fidelity.json")
    p.add_argument("--sims", type=int, default=200, help="simulated pools per setting")
    p.add_argument(
        "--draws",
        type=int,
        default=2000,
        help="Monte Carlo draws per prediction of the simulated pools (--run uses the search's own)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    start = time.perf_counter()
    if args.run and args.fidelity:
        print("| deployment's front of | predicted P / R | measured P / R |\n|---|---|---|")
        for what, pp, pr_, mp, mr in fidelity_rows(args.run):
            print(f"| {what} | {pp:.2f} / {pr_:.2f} | {mp:.2f} / {mr:.2f} |")
    elif args.run:
        print("| front | precision | recall |\n|---|---|---|")
        for what, prec, rec in run_rows(args.run):
            print(f"| {what} | {prec:.2f} | {rec:.2f} |")
    else:
        print(f"{args.sims} simulated pools per row; predicted from the printed means alone\n")
        print(
            "| networks, seed std, seeds, spread (points) | measured P / R | predicted (nas.run.reproduce) | flat prior |"
        )
        print("|---|---|---|---|")
        for (n, sigma, seeds, tau), m in simulate(args.sims, args.draws, args.seed):
            print(
                f"| {n}, {sigma:g}, {seeds}, {tau:g} | {m[0]:.2f} / {m[1]:.2f} | {m[2]:.2f} / {m[3]:.2f} | "
                f"{m[4]:.2f} / {m[5]:.2f} |"
            )
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
