"""Search quality: hypervolume per architecture and per compute second, the default sampler against random.

    python benchmarks/search_quality.py                                # default space, 50/100/200/400, 5 seeds
    python benchmarks/search_quality.py --budgets 50 100 --seeds 0 1   # quicker
    python benchmarks/search_quality.py --samplers evolution tpe random --budgets 100 --seeds 0 1 2
    python benchmarks/search_quality.py -- --race 1                    # options after -- go to every nas.search
    python benchmarks/search_quality.py --surrogate RUNS --samplers evolution tpe random   # minutes, not days

Each (sampler, seed) is one real `python -m nas.search` run (racing on, as by default) to the largest
budget; the hypervolume at each smaller budget is read from the same run when its budget-th
distinct architecture finished, with the seeds racing had spent by then (a search to budget B
evaluates the same architectures as the first B of a longer run up to racing's budget share). The
hypervolume is the run's own, on the architectures' means over seeds (the aggregated front),
normalised by the space's scales, so all runs share one scale. Compute seconds are the trials' own
seconds (costing, proxy training, scoring) summed up to that point, racing's re-evaluations
included. The proposals columns come from the study: the share of asks whose first proposal was
an architecture already seen (repaired to an unseen neighbour) and the share of architectures that
were random fill-ins.

--surrogate RUNS: real searches of 400 architectures take hours each on a 2-core machine, so 5 seeds
x 4 budgets x 2 samplers do not fit a session. This mode fits a random forest on every
architecture the real runs under RUNS evaluated on this space (their mean accuracy and seconds per
evaluation, one-hot parameters of the full encoding; its 5-fold cross-validated R^2 is printed) and
drives the real searcher and recorder (benchmarks/driver_scale.py's loop, racing on) with it as
the evaluation: the forest's accuracy plus Gaussian seed noise of the runs' pooled seed std, the
architecture's real MACs, the forest's seconds. Each budget is its own run (samplers size their
populations by the budget). It ranks samplers on a task with the real one's structure and noise
(in the spirit of surrogate NAS benchmarks such as NAS-Bench-301); it is not a real search, and the
table says so.

Goals: default@100 >= random@200 and default@200 >= random@400; <= 5% random fill-ins and
<= 20% duplicate asks.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

import driver_scale  # beside this script (benchmarks/ is on sys.path when run as a script)
from nas.net.arch import Arch
from nas.run import pareto
from nas.run.archive import seed_std
from nas.run.folder import STUDY_NAME, RunFolder, aggregate
from nas.search.options import DEFAULT_SPACE, SearchOptions
from nas.space import SearchSpace, load_space

ROOT = Path(__file__).resolve().parents[1]


def at_budget(run: RunFolder, budget: int) -> tuple[float, float, int]:
    """(hypervolume, compute seconds, evaluations) when the run's `budget`-th distinct architecture
    finished."""
    records, seen, upto = run.trials(), set(), 0
    for upto, r in enumerate(records, 1):
        seen.add(r.arch_id)
        if len(seen) >= budget:
            break
    config = run.config()
    hv = pareto.hypervolume(aggregate(records[:upto]), config.objectives, config.hypervolume_scale)
    return hv, sum(r.seconds for r in records[:upto]), upto


def proposal_shares(run: RunFolder) -> tuple[float, float]:
    """(duplicate asks, random fill-ins) as shares of the sampler's proposals (queued ones left out)."""
    study = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())
    kinds = [t.user_attrs.get("proposal") for t in study.trials if "proposal" in t.user_attrs]
    asked = [k for k in kinds if k != "queued"]
    if not asked:
        return 0.0, 0.0
    return (
        sum(k in ("repaired", "fill-in") for k in asked) / len(asked),
        sum(k == "fill-in" for k in asked) / len(asked),
    )


class Surrogate:
    """A random forest on the real evaluations of a space: mean accuracy and seconds per evaluation
    from the one-hot parameters of the full encoding, plus seeded Gaussian seed noise."""

    def __init__(self, space: SearchSpace, runs_dir: Path):
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.model_selection import cross_val_score

        self.space = space
        runs = [RunFolder(p.parent) for p in sorted(runs_dir.rglob("trials.jsonl"))]
        runs = [
            r for r in runs if (r.path / "run.yaml").is_file() and r.config().space_fingerprint == space.fingerprint
        ]
        if not runs:
            sys.exit(f"--surrogate: no run of {space.path} under {runs_dir}")
        archs = [a for a in aggregate([t for r in runs for t in r.trials()]) if a.accuracy is not None]
        self.noise = seed_std(archs) or 0.0
        x = np.array([self.features(Arch.from_dict(a.arch)) for a in archs])
        y = np.array([[a.accuracy, a.seconds / len(a.records)] for a in archs])
        self.r2 = cross_val_score(
            RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=0), x, y[:, 0], cv=5
        ).mean()
        self.model = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=0).fit(x, y)
        self.scale = runs[0].config().hypervolume_scale["macs"]
        self.runs, self.size = len(runs), len(archs)
        self.cache: dict[str, tuple[float, float]] = {}

    def features(self, arch: Arch) -> list[float]:
        params = self.space.params_of(arch)
        return [
            float(params.get(name) == choice) for name, dist in self.space.encoding.items() for choice in dist.choices
        ]

    def __call__(self, config: dict, costs) -> dict:
        """The trainable's final result for one evaluation (driver_scale's `evaluate`)."""
        arch = Arch.from_dict(config["arch"])
        if arch.arch_id not in self.cache:
            self.cache[arch.arch_id] = tuple(self.model.predict([self.features(arch)])[0])
        mean, seconds = self.cache[arch.arch_id]
        accuracy = mean + random.Random(f"{arch.arch_id}-{config['seed']}").gauss(0.0, self.noise)
        params, macs = costs(arch)
        return driver_scale.final_result(config, accuracy, params, macs, seconds)


def surrogate_rows(args, budgets: list[int]) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space)
    model = Surrogate(space, args.surrogate)
    print(
        f"surrogate: a random forest on {model.size} architectures of {model.runs} real runs under "
        f"{args.surrogate}; 5-fold cross-validated R^2 of accuracy {model.r2:.2f}; seed noise {model.noise:.4f}",
        flush=True,
    )
    costs, rows = driver_scale.Costs(space, num_classes=4), []
    for seed in args.seeds:
        for sampler in args.samplers:
            for b in budgets:
                start = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    *_, info = driver_scale.drive(
                        space,
                        sampler,
                        b,
                        args.concurrency,
                        3,
                        seed,
                        [],
                        100,
                        costs,
                        Path(tmp) / "run",
                        evaluate=model,
                        scale=model.scale,
                        quiet=True,
                    )
                asked = {k: v for k, v in info["proposals"].items() if k != "queued"}
                total = max(1, sum(asked.values()))
                rows.append(
                    {
                        "sampler": sampler,
                        "seed": seed,
                        "budget": b,
                        "hv": info["hypervolume"],
                        "seconds": info["seconds"],
                        "evals": info["evaluations"],
                        "dup": (asked.get("repaired", 0) + asked.get("fill-in", 0)) / total,
                        "fill": asked.get("fill-in", 0) / total,
                        "minutes": (time.perf_counter() - start) / 60,
                    }
                )
                print(f"{sampler:10} seed {seed} @{b}: {rows[-1]['hv']:.4f}, proposals {info['proposals']}", flush=True)
    costs.save()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=[SearchOptions().sampler, "random"],
        help="candidates, then the baseline (last)",
    )
    parser.add_argument("--space", default=str(DEFAULT_SPACE))
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    parser.add_argument(
        "--surrogate",
        type=Path,
        default=None,
        metavar="RUNS",
        help="rank the samplers on a surrogate fitted on the real runs under RUNS (see above)",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="trials in flight (--surrogate)")
    parser.add_argument(
        "--history-window",
        type=int,
        default=None,
        help="trials a TPE or GP ask reads (nas.search.study.HISTORY_WINDOW; 0: all of them; --surrogate)",
    )
    parser.add_argument("search_options", nargs="*", help="after --: passed to python -m nas.search as they are")
    args = parser.parse_args()
    budgets = sorted(args.budgets)
    if args.history_window is not None:
        import nas.search.study

        nas.search.study.HISTORY_WINDOW = args.history_window or None
    rows = surrogate_rows(args, budgets) if args.surrogate else []
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        for seed in args.seeds if not args.surrogate else []:
            for sampler in args.samplers:
                name = f"{sampler}-{seed}"
                start = time.perf_counter()
                if not (where / name / "run.yaml").exists():
                    subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "nas.search",
                            "--budget",
                            str(budgets[-1]),
                            "--space",
                            args.space,
                            "--sampler",
                            sampler,
                            "--seed",
                            str(seed),
                            "--results-dir",
                            str(where),
                            "--name",
                            name,
                            "--quiet",
                            *args.search_options,
                        ],
                        check=True,
                        stdout=subprocess.DEVNULL,
                        cwd=ROOT,
                    )
                minutes = (time.perf_counter() - start) / 60
                run = RunFolder(where / name)
                dup, fill = proposal_shares(run)
                for b in budgets:
                    hv, seconds, evals = at_budget(run, b)
                    rows.append(
                        {
                            "sampler": sampler,
                            "seed": seed,
                            "budget": b,
                            "hv": hv,
                            "seconds": seconds,
                            "evals": evals,
                            "dup": dup,
                            "fill": fill,
                            "minutes": minutes,
                        }
                    )
                print(
                    f"{sampler:10} seed {seed}: "
                    + ", ".join(
                        f"@{r['budget']} {r['hv']:.4f}" for r in rows if r["sampler"] == sampler and r["seed"] == seed
                    )
                    + f"; duplicate asks {100 * dup:.0f}%, fill-ins {100 * fill:.0f}%, {minutes:.1f} min",
                    flush=True,
                )

    def mean(sampler: str, budget: int, key: str) -> float:
        return statistics.mean(r[key] for r in rows if r["sampler"] == sampler and r["budget"] == budget)

    kind = (
        f"SURROGATE (a forest on real evaluations, not a real search), {args.concurrency} in flight"
        if args.surrogate
        else "real searches"
    )
    print(f"\n{args.space}, {kind}, seeds {args.seeds} {' '.join(args.search_options)}")
    print(
        f"{'sampler':10} {'budget':>6} {'hypervolume':>11} {'std':>7} {'compute s':>9} {'evals':>6} "
        f"{'dup asks':>8} {'fill-ins':>8}"
    )
    for sampler in args.samplers:
        for b in budgets:
            hv = [r["hv"] for r in rows if r["sampler"] == sampler and r["budget"] == b]
            print(
                f"{sampler:10} {b:6d} {statistics.mean(hv):11.4f} {statistics.pstdev(hv):7.4f} "
                f"{mean(sampler, b, 'seconds'):9.0f} {mean(sampler, b, 'evals'):6.0f} "
                f"{100 * mean(sampler, b, 'dup'):7.0f}% {100 * mean(sampler, b, 'fill'):7.0f}%"
            )
    baseline = args.samplers[-1]
    for sampler in args.samplers[:-1]:
        for b in budgets:
            if 2 * b in budgets:
                ours, theirs = mean(sampler, b, "hv"), mean(baseline, 2 * b, "hv")
                wins = sum(
                    r["hv"] >= q["hv"]
                    for r in rows
                    for q in rows
                    if r["sampler"] == sampler
                    and q["sampler"] == baseline
                    and r["budget"] == b
                    and q["budget"] == 2 * b
                    and r["seed"] == q["seed"]
                )
                print(
                    f"{sampler}@{b} / {baseline}@{2 * b}: {ours / theirs:.3f} (at {mean(sampler, b, 'seconds') / mean(baseline, 2 * b, 'seconds'):.2f}x "
                    f"the compute; {wins} of {len(args.seeds)} seeds >=)"
                )
            ours, same = mean(sampler, b, "hv"), mean(baseline, b, "hv")
            print(f"{sampler}@{b} / {baseline}@{b}: {ours / same:.3f}")


if __name__ == "__main__":
    main()
