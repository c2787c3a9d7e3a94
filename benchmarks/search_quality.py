"""Search quality: hypervolume per architecture and per compute second, the default sampler against random.

    python benchmarks/search_quality.py                                # default space, 50/100/200/400, 5 seeds
    python benchmarks/search_quality.py --budgets 50 100 --seeds 0 1   # quicker
    python benchmarks/search_quality.py --samplers evolution tpe random --budgets 100 --seeds 0 1 2
    python benchmarks/search_quality.py -- --race 1                    # options after -- go to every nas.search

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

Goals (issue 22): default@100 >= random@200 and default@200 >= random@400; <= 5% random fill-ins and
<= 20% duplicate asks.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from nas import pareto
from nas.options import DEFAULT_SPACE, SearchOptions
from nas.results import STUDY_NAME, RunFolder, aggregate

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
    kinds = [t.user_attrs.get('proposal') for t in study.trials if 'proposal' in t.user_attrs]
    asked = [k for k in kinds if k != 'queued']
    if not asked:
        return 0.0, 0.0
    return (sum(k in ('repaired', 'fill-in') for k in asked) / len(asked),
            sum(k == 'fill-in' for k in asked) / len(asked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--samplers", nargs="+", default=[SearchOptions().sampler, "random"],
                        help="candidates, then the baseline (last)")
    parser.add_argument("--space", default=str(DEFAULT_SPACE))
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    parser.add_argument("search_options", nargs="*", help="after --: passed to python -m nas.search as they are")
    args = parser.parse_args()
    budgets = sorted(args.budgets)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        for seed in args.seeds:
            for sampler in args.samplers:
                name = f"{sampler}-{seed}"
                start = time.perf_counter()
                if not (where / name / "run.yaml").exists():
                    subprocess.run([sys.executable, "-m", "nas.search", "--budget", str(budgets[-1]), "--space",
                                    args.space, "--sampler", sampler, "--seed", str(seed), "--results-dir", str(where),
                                    "--name", name, "--quiet", *args.search_options],
                                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
                minutes = (time.perf_counter() - start) / 60
                run = RunFolder(where / name)
                dup, fill = proposal_shares(run)
                for b in budgets:
                    hv, seconds, evals = at_budget(run, b)
                    rows.append({"sampler": sampler, "seed": seed, "budget": b, "hv": hv, "seconds": seconds,
                                 "evals": evals, "dup": dup, "fill": fill, "minutes": minutes})
                print(f"{sampler:10} seed {seed}: " + ", ".join(
                    f"@{r['budget']} {r['hv']:.4f}" for r in rows if r['sampler'] == sampler and r['seed'] == seed)
                    + f"; duplicate asks {100 * dup:.0f}%, fill-ins {100 * fill:.0f}%, {minutes:.1f} min", flush=True)

    def mean(sampler: str, budget: int, key: str) -> float:
        return statistics.mean(r[key] for r in rows if r["sampler"] == sampler and r["budget"] == budget)

    print(f"\n{args.space}, seeds {args.seeds} {' '.join(args.search_options)}")
    print(f"{'sampler':10} {'budget':>6} {'hypervolume':>11} {'std':>7} {'compute s':>9} {'evals':>6} "
          f"{'dup asks':>8} {'fill-ins':>8}")
    for sampler in args.samplers:
        for b in budgets:
            hv = [r["hv"] for r in rows if r["sampler"] == sampler and r["budget"] == b]
            print(f"{sampler:10} {b:6d} {statistics.mean(hv):11.4f} {statistics.pstdev(hv):7.4f} "
                  f"{mean(sampler, b, 'seconds'):9.0f} {mean(sampler, b, 'evals'):6.0f} "
                  f"{100 * mean(sampler, b, 'dup'):7.0f}% {100 * mean(sampler, b, 'fill'):7.0f}%")
    baseline = args.samplers[-1]
    for sampler in args.samplers[:-1]:
        for b in budgets:
            if 2 * b in budgets:
                ours, theirs = mean(sampler, b, "hv"), mean(baseline, 2 * b, "hv")
                wins = sum(r["hv"] >= q["hv"] for r in rows for q in rows if r["sampler"] == sampler
                           and q["sampler"] == baseline and r["budget"] == b and q["budget"] == 2 * b
                           and r["seed"] == q["seed"])
                print(f"{sampler}@{b} / {baseline}@{2 * b}: {ours / theirs:.3f} (at {mean(sampler, b, 'seconds') / mean(baseline, 2 * b, 'seconds'):.2f}x "
                      f"the compute; {wins} of {len(args.seeds)} seeds >=)")
            ours, same = mean(sampler, b, "hv"), mean(baseline, b, "hv")
            print(f"{sampler}@{b} / {baseline}@{b}: {ours / same:.3f}")


if __name__ == "__main__":
    main()
