"""Dashboard scale: `python -m nas.dashboard` on runs of 1,000 to 10,000 trials.

    python benchmarks/dashboard_scale.py                     # 1,000, 3,000 and 10,000 trials
    python benchmarks/dashboard_scale.py --trials 10000

The runs are synthetic (tests/runs.py `synthetic_run`: architectures of the default space, costs
from a formula, accuracies with seed noise, a third of the evaluations more seeds of recent
architectures), written once into a temp folder. Each is timed as a user runs it, a new process
from start to exit (imports included), wall and CPU seconds, with the page's size. Goal:
<= 15 s at 10,000 trials; the page opening in headless Chromium is tests/test_dashboard.py's.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from runs import synthetic_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 3000, 10_000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.trials:
            run = synthetic_run(Path(tmp) / f"run{n}", n)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "nas.dashboard", str(run)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL
            )
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            size = (run / "dashboard.html").stat().st_size / 1e6
            rows.append((n, wall, cpu, size))
            print(f"{n} trials: {wall:.1f} s wall, {cpu:.1f} s CPU, dashboard.html {size:.1f} MB", flush=True)
    print(f"\n{'trials':>7} {'wall s':>7} {'CPU s':>7} {'page MB':>8}")
    for n, wall, cpu, size in rows:
        print(f"{n:7d} {wall:7.1f} {cpu:7.1f} {size:8.1f}")


if __name__ == "__main__":
    main()
