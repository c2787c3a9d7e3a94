"""How good is `nas.calibrate`'s plan: its estimated seconds against the evaluations' own, its wall
time against the run's, and its time left as the run goes.

    python benchmarks/calibrate_plan.py                              # the default space on its own task
    python benchmarks/calibrate_plan.py -- --archs 12 --deploy-epochs 20
    python benchmarks/calibrate_plan.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        -- --deploy-subset 6000 --deploy-epochs 5

A user's calibration, as a user runs it (options after `--` go to it), its output redirected to a
log. From the log: the plan per setting (seconds each, trial time) and its wall time, every
progress line's time left. From the records (evaluations/*.jsonl): each setting's measured seconds.
One table per setting, estimate / truth; then the wall time, and the time left said at each
finished evaluation against the time that was really left (said / true; 1 is exact). The times are
this machine's, as loaded as it is (uptime's load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAN_LINE = re.compile(r"^  (deployment|proxy) (\S+): (\d+) evaluations, ~(.+?) each, ~(\S+) of trial time")
WALL_LINE = re.compile(r"^  total: (\d+) evaluations, ~(\S+) of trial time, ~(\S+) wall")
DONE_LINE = re.compile(r"^\[\s*(\d+)/(\d+)\] (\d+:\d\d:\d\d) .*\| ~(\d+:\d\d:\d\d) left")


def _seconds(text: str) -> float:
    if text.endswith(" s"):
        return float(text[:-2])
    h, m, s = (int(x) for x in text.split(":"))
    return 3600 * h + 60 * m + s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=None, help="nas.calibrate --dataset (default: the space's)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the calibration here (default: a temp folder)")
    parser.add_argument("rest", nargs="*", help="options for nas.calibrate, after --")
    args = parser.parse_args()
    results = args.keep or Path(tempfile.mkdtemp(prefix="calplan-"))
    cmd = [sys.executable, "-m", "nas.calibrate", "--results-dir", str(results), "--name", "cal"]
    cmd += ["--archs", "6", "--subsets", "500", "1000", "--epochs", "2", "4", "--deploy-epochs", "8"]
    cmd += (["--dataset", args.dataset] if args.dataset else []) + (
        ["--data-dir", args.data_dir] if args.data_dir else []
    )
    cmd += args.rest
    log = results / "log.txt"
    results.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {' '.join(cmd[2:])}", flush=True)
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    minutes = (time.perf_counter() - start) / 60
    text = log.read_text()
    if proc.returncode != 0:
        sys.exit(f"nas.calibrate failed (exit {proc.returncode}):\n{text[-3000:]}")
    _tables(text, results / "cal")
    print(f"\ncommand: {minutes:.1f} min; load average after: {os.getloadavg()[0]:.2f}; log: {log}")


def _tables(text: str, folder: Path) -> None:
    """The estimate per setting against its records, the wall time, and the time left as it went."""
    lines = text.splitlines()
    print(f"\n{'setting':<28} {'evals':>5} {'est. s each':>11} {'true s each':>11} {'est/true':>8}")
    for ln in lines:
        m = PLAN_LINE.match(ln)
        if not m:
            continue
        records = [json.loads(r) for r in (folder / "evaluations" / f"{m[2]}.jsonl").read_text().splitlines()]
        true = sum(r["seconds"] for r in records) / len(records)
        est = _seconds(m[4])
        print(f"{m[1] + ' ' + m[2]:<28} {len(records):>5} {est:>11.2f} {true:>11.2f} {est / true:>8.2f}")
    wall = next(WALL_LINE.match(ln) for ln in lines if WALL_LINE.match(ln))
    records = [json.loads(r) for f in (folder / "evaluations").glob("*.jsonl") for r in f.read_text().splitlines()]
    true_trial = sum(r["seconds"] for r in records)
    done = [DONE_LINE.match(ln) for ln in lines if DONE_LINE.match(ln)]
    end = _seconds(done[-1][3])
    at = [datetime.fromisoformat(r[k]) for r in records for k in ("started_at", "finished_at")]
    true_wall = (max(at) - min(at)).total_seconds()
    print(f"\ntrial time: estimated {wall[2]}, true {true_trial:.0f} s (est/true {_seconds(wall[2]) / true_trial:.2f})")
    print(
        f"wall, first start to last end: estimated {wall[3]}, true {true_wall:.0f} s (est/true "
        f"{_seconds(wall[3]) / true_wall:.2f})"
    )
    print(f"\n{'finished':>8} {'elapsed':>8} {'said left':>9} {'true left':>9} {'said/true':>9}")
    for d in done:
        said, true = _seconds(d[4]), end - _seconds(d[3])
        if true > 0:
            print(f"{d[1] + '/' + d[2]:>8} {d[3]:>8} {said:>9.0f} {true:>9.0f} {said / true:>9.2f}")


if __name__ == "__main__":
    main()
