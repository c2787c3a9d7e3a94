"""Framework overhead of a search: wall time not spent inside trials, over the total.

    python benchmarks/search_overhead.py                 # the default space, --budget 100
    python benchmarks/search_overhead.py --budget 20     # quicker
    python benchmarks/search_overhead.py --budget 1000 --extra --epochs 1 --subset 64 --race 1   # does the driver keep up?

Runs `python -m nas.search` as a user would (a fresh process, a local Ray), then reads the trials'
own start/finish times and durations from trials.jsonl. A trial's time is everything inside the
trainable: building the model, costing it (params, MACs, latency, memory), proxy training and
evaluation. Everything else is framework: process start and imports, Ray start-up and shutdown,
scheduling, reporting, writing the run folder. Printed two ways:

- idle wall: the share of the wall time during which no trial was running;
- slot overhead: 1 − Σ trial seconds / (wall × trial slots), the share of the machine's trial
  capacity not spent in trials (this also counts slots left empty by scheduling);
- slot use per window of `--window` trials: whether the driver keeps the slots busy as the run
  grows (a driver whose cost per trial grows starves them late in the run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from nas.run.folder import RunFolder
from search_quality import proposal_shares  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def slot_overhead(run: RunFolder, wall: float) -> float:
    """1 - Σ trial seconds / (wall x trial slots) of a run that took `wall` seconds."""
    config = run.config()
    slots = config.options.get("max_concurrent") or max(
        1, int(config.ray.get("cpus", 1) // config.options["cpus_per_trial"])
    )
    return 1 - sum(r.seconds for r in run.trials()) / (wall * slots)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--window", type=int, default=100, help="trials per window of the slot-use table (0: none)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more nas.search options")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "nas.search",
            "--budget",
            str(args.budget),
            "--results-dir",
            tmp,
            "--name",
            "run",
            "--quiet",
            *args.extra,
        ]
        start = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.time() - start
        run = RunFolder(Path(tmp) / "run")
        records = run.trials()
        config = run.config()
        slots = config.options.get("max_concurrent") or max(
            1, int(config.ray.get("cpus", 1) // config.options["cpus_per_trial"])
        )
        overhead = slot_overhead(run, wall)
        dup, fill = proposal_shares(run)
    stamp = lambda s: datetime.fromisoformat(s).timestamp()  # noqa: E731
    intervals = [(stamp(r.started_at), stamp(r.finished_at)) for r in records if r.started_at]
    busy = union_seconds(intervals)
    in_trials = sum(r.seconds for r in records)
    training = sum(r.train_seconds for r in records)
    first, last = min(a for a, _ in intervals), max(b for _, b in intervals)
    print(
        f"{' '.join(cmd[1:3])} --budget {args.budget} {' '.join(args.extra)}: {len(records)} trials, "
        f"{slots} trial slots\n"
    )
    rows = [
        ("wall time, process start to exit", wall),
        ("  start-up: process start to first trial", first - start),
        ("  wind-down: last trial to process exit", start + wall - last),
        ("wall time with a trial running", busy),
        ("Σ trial seconds (build + cost + train + evaluate)", in_trials),
        ("  of which training and evaluation", training),
    ]
    for name, value in rows:
        print(f"{name:52} {value:9.1f} s")
    print(f"\n{'idle wall (no trial running) / wall':52} {100 * (1 - busy / wall):8.1f} %")
    print(f"{'duplicate asks / random fill-ins (of the proposals)':52} {100 * dup:6.1f} % / {100 * fill:.1f} %")
    print(f"{'slot overhead: 1 - Σ trial s / (wall x slots)':52} {100 * overhead:8.1f} %")
    print(f"{'mean trial':52} {in_trials / max(1, len(records)):9.2f} s")
    print("target: overhead <= 10 % of the wall time; the default budget 100 within 10 minutes")
    if args.window and len(records) >= 2 * args.window:
        print(
            f"\nslot use per {args.window} trials (Σ trial seconds / (span x slots), span from the first start "
            f"to the last finish of the window, trials in the order they finished):"
        )
        uses = []
        for k in range(0, len(records) - args.window + 1, args.window):
            part = records[k : k + args.window]
            span = max(stamp(r.finished_at) for r in part) - min(stamp(r.started_at) for r in part)
            uses.append(sum(r.seconds for r in part) / (span * slots))
            print(f"  trials {k:>5}-{k + args.window:<5} {100 * uses[-1]:6.1f} %")
        print(f"last / first window: {uses[-1] / uses[0]:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
