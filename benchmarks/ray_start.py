"""Ray start-up and shutdown of a command's local Ray: its own session (`nas.tune.session.local_ray`:
`ray start --head --block` in a new session, joined with `ray.init(address=...)`) against the
in-process `ray.init()` it replaced, whose processes shared the command's process group.

    python benchmarks/ray_start.py              # 3 rounds of each, alternating
    python benchmarks/ray_start.py --rounds 5

Each measurement runs in a fresh process that has imported Ray already (the import is not
timed): "up" is from the call until Ray takes tasks (ray.cluster_resources answers), "down" the
shutdown (for the new way: ray.shutdown and the head's processes stopped). Medians, and the
ratio new / old measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OLD = """
import json, logging, time, ray, torch
t = time.perf_counter()
ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False, num_gpus=torch.cuda.device_count())
ray.cluster_resources()
up = time.perf_counter() - t
t = time.perf_counter()
ray.shutdown()
print(json.dumps({"up": up, "down": time.perf_counter() - t}))
"""

NEW = """
import json, time, ray
from nas.tune.session import local_ray
t = time.perf_counter()
with local_ray():
    ray.cluster_resources()
    up = time.perf_counter() - t
    t = time.perf_counter()
print(json.dumps({"up": up, "down": time.perf_counter() - t}))
"""


def measure(code: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"ray.init() in process (old)": [], "own session (new)": []}
    for _ in range(args.rounds):
        runs["ray.init() in process (old)"].append(measure(OLD))
        runs["own session (new)"].append(measure(NEW))
    base = {k: statistics.median(r[k] for r in runs["ray.init() in process (old)"]) for k in ("up", "down")}
    print(f"| local Ray ({args.rounds} rounds, medians) | up s | down s | up / old | up+down / old |")
    print("|---|---|---|---|---|")
    for name, rs in runs.items():
        up, down = statistics.median(r["up"] for r in rs), statistics.median(r["down"] for r in rs)
        print(f"| {name} | {up:.2f} | {down:.2f} | {up / base['up']:.2f} | {(up + down) / sum(base.values()):.2f} |")


if __name__ == "__main__":
    main()
