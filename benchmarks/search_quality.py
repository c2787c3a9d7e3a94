"""Search quality: does the default sampler at budget B reach random search's hypervolume at 2B?

    python benchmarks/search_quality.py                          # default space, tpe@100 vs random@200, seeds 0 1 2
    python benchmarks/search_quality.py --budget 30 --seeds 0 1  # quicker
    python benchmarks/search_quality.py --samplers tpe nsga2 gp random   # more candidates (the last is the baseline)
    python benchmarks/search_quality.py -- --race 1              # options after -- go to every nas.search

Each (sampler, seed) is a real `python -m nas.search` run (racing on, as by default) on the same
space with the same proxy. The candidates run at --budget, the baseline (the last sampler, random
by default) at --baseline-budget (default 2x). The hypervolume is each run's own, on the
architectures' means over seeds (the aggregated front), normalised by the space's scales, so all
runs share one scale. The slot overhead column is benchmarks/search_overhead.py's measure for
the same runs. The baseline's hypervolume after its first --budget architectures is read
from the same run (random at equal budget, for free).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nas import pareto
from nas.options import DEFAULT_SPACE, SearchOptions
from nas.results import RunFolder, aggregate
from search_overhead import slot_overhead  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]


def hypervolume_at(run: RunFolder, budget: int) -> float:
    """The run's hypervolume when its `budget`-th distinct architecture finished (with the seeds
    racing had spent by then)."""
    records, seen, upto = run.trials(), set(), 0
    for upto, r in enumerate(records, 1):
        seen.add(r.arch_id)
        if len(seen) >= budget:
            break
    config = run.config()
    return pareto.hypervolume(aggregate(records[:upto]), config.objectives, config.hypervolume_scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--budget", type=int, default=100, help="the candidates' --budget")
    parser.add_argument("--baseline-budget", type=int, default=None, help="the baseline's --budget (default 2x)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=[SearchOptions().sampler, "random"],
                        help="candidates, then the baseline (last)")
    parser.add_argument("--space", default=str(DEFAULT_SPACE))
    parser.add_argument("search_options", nargs="*", help="after --: passed to python -m nas.search as they are")
    args = parser.parse_args()
    baseline = args.samplers[-1]
    budgets = {s: args.budget for s in args.samplers[:-1]}
    budgets[baseline] = args.baseline_budget or 2 * args.budget
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in args.samplers:
            for seed in args.seeds:
                name = f"{sampler}-{seed}"
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "nas.search", "--budget", str(budgets[sampler]), "--space",
                                args.space, "--sampler", sampler, "--seed", str(seed), "--results-dir", tmp,
                                "--name", name, "--quiet", *args.search_options],
                               check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
                wall = time.perf_counter() - start
                minutes = wall / 60
                run = RunFolder(Path(tmp) / name)
                summary = run.write_pareto()
                row = {"sampler": sampler, "seed": seed, "hv": summary["hypervolume"],
                       "hv_at_budget": hypervolume_at(run, args.budget), "front": len(summary["front"]),
                       "evals": summary["trials"], "minutes": minutes,
                       "overhead": slot_overhead(run, wall)}
                rows.append(row)
                print(f"{sampler:8} seed {seed} budget {budgets[sampler]}: hypervolume {row['hv']:.4f} "
                      f"(at {args.budget}: {row['hv_at_budget']:.4f}), front {row['front']}, "
                      f"{row['evals']} evaluations, {minutes:.1f} min, slot overhead {100 * row['overhead']:.1f}%", flush=True)
    print(f"\n{args.space}, seeds {args.seeds} {' '.join(args.search_options)}")
    print(f"{'sampler':8} {'budget':>6} {'hypervolume':>11} {'std':>7} {'min':>7} {'max':>7} {'front':>6} "
          f"{'evals':>6} {'minutes':>8} {'overhead':>8}")

    def line(label: str, budget: int, hv: list[float], rs: list[dict]) -> None:
        print(f"{label:8} {budget:6d} {statistics.mean(hv):11.4f} {statistics.pstdev(hv):7.4f} {min(hv):7.4f} "
              f"{max(hv):7.4f} {statistics.mean(r['front'] for r in rs):6.1f} "
              f"{statistics.mean(r['evals'] for r in rs):6.0f} {statistics.mean(r['minutes'] for r in rs):8.1f} "
              f"{100 * statistics.mean(r['overhead'] for r in rs):7.1f}%")

    means = {}
    for sampler in args.samplers:
        rs = [r for r in rows if r["sampler"] == sampler]
        means[sampler] = statistics.mean(r["hv"] for r in rs)
        line(sampler, budgets[sampler], [r["hv"] for r in rs], rs)
    base_at = [r["hv_at_budget"] for r in rows if r["sampler"] == baseline]
    print(f"{baseline:8} {args.budget:6d} {statistics.mean(base_at):11.4f} {statistics.pstdev(base_at):7.4f} "
          f"{min(base_at):7.4f} {max(base_at):7.4f}   (the same runs after {args.budget} architectures)")
    for sampler in args.samplers[:-1]:
        print(f"{sampler}@{budgets[sampler]} / {baseline}@{budgets[baseline]} mean hypervolume: "
              f"{means[sampler] / means[baseline]:.3f}; / {baseline}@{args.budget}: "
              f"{means[sampler] / statistics.mean(base_at):.3f}")


if __name__ == "__main__":
    main()
