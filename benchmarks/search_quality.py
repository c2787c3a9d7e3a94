"""Search quality: hypervolume at equal budget, the default sampler (TPE) vs random search.

    python benchmarks/search_quality.py                       # digits, budget 30, seeds 0 1 2
    python benchmarks/search_quality.py --budget 50 --seeds 0 1 2 3 4 --samplers tpe nsga2 random

Each (sampler, seed) is a real `python -m nas.search` run on the same space with the same proxy;
the hypervolume is the run's own (normalised accuracy/MACs losses against (1, 1), see
nas/results.py), so all runs share one scale. Same seed, same reference points and same proxy
accuracy for the same architecture: the samplers differ only in which architectures they pick.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from nas.results import RunFolder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=["tpe", "random"], help="the first is the one compared")
    parser.add_argument("--space", default="search_spaces/digits.yaml")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in args.samplers:
            for seed in args.seeds:
                name = f"{sampler}-{seed}"
                subprocess.run([sys.executable, "-m", "nas.search", "--budget", str(args.budget), "--space",
                                args.space, "--sampler", sampler, "--seed", str(seed), "--results-dir", tmp,
                                "--name", name, "--quiet"], check=True, stdout=subprocess.DEVNULL)
                run = RunFolder(Path(tmp) / name)
                summary = run.write_pareto()
                best = max((r.accuracy for r in run.trials() if r.accuracy is not None), default=0.0)
                rows.append((sampler, seed, summary["hypervolume"], len(summary["front"]), best))
                print(f"{sampler:8} seed {seed}: hypervolume {summary['hypervolume']:.4f}, "
                      f"front {len(summary['front'])}, best accuracy {best:.4f}", flush=True)
    print(f"\n{args.space}, budget {args.budget}, seeds {args.seeds}")
    print(f"{'sampler':8} {'hypervolume mean':>17} {'std':>7} {'min':>7} {'max':>7} {'front':>6} {'best acc':>9}")
    means = {}
    for sampler in args.samplers:
        hv = [r[2] for r in rows if r[0] == sampler]
        means[sampler] = statistics.mean(hv)
        print(f"{sampler:8} {means[sampler]:17.4f} {statistics.pstdev(hv):7.4f} {min(hv):7.4f} {max(hv):7.4f} "
              f"{statistics.mean(r[3] for r in rows if r[0] == sampler):6.1f} "
              f"{statistics.mean(r[4] for r in rows if r[0] == sampler):9.4f}")
    first = args.samplers[0]
    for other in args.samplers[1:]:
        print(f"{first} / {other} mean hypervolume: {means[first] / means[other]:.3f}")


if __name__ == "__main__":
    main()
