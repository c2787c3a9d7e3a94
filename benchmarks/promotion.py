"""What promotion costs and what it says: one real search with promotion on, then a table.

    python benchmarks/promotion.py                        # the default task: python -m nas.search --budget 100
    python benchmarks/promotion.py --budget 40 -- --dataset fashion-mnist --data-dir ~/data --proxy P/proxy.yaml
    python benchmarks/promotion.py --run results/<run>    # the table of a run already made
    python benchmarks/promotion.py --run results/<run> --deploy 20   # and the front against deployment's

It runs `python -m nas.search` (options after -- go to it as they are) and reads its run folder:
the proxy search's wall time and compute (its rung-0 trials), the promotion's (rung 1), the
promotion's share of the search's compute, the front before promotion (the proxy's) and after
(the promoted pool's, as printed), and the in-search rank agreement of pareto.json's `fidelity`
(Kendall τ and Spearman ρ of the proxy against rung 1, rung 1's own test-retest τ). The machine's
load average is printed beside it: on a shared machine the wall times say more about the load.

`--deploy N` then checks the printed front against deployment (the issue's goal): `python -m
nas.fidelity RUN --archs N --pick ranks --score-on test` trains the front and the next ranks (N in
all) deployment-like with 2 seeds, scored on the test split that neither the search nor its
promotion saw, and a second table gives the printed front's precision and recall against
deployment's front over that pool, the same for the proxy's own front (what the search printed
before promotion), and the rank agreement of the printed accuracies with deployment's against
deployment's own test-retest τ, and the same agreement within deployment's seed noise
(`nas.fidelity.stats.noise_agreement`) with the largest accuracy gap between the fronts.
`--deploy-images N` trains deployment on N training images (`nas.fidelity --images`), for data
too large to train whole for every network of the pool. Options after -- that name the data
(--data-dir) are not needed: the check reads the run's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.run import pareto  # noqa: E402
from nas.run.archive import aggregate  # noqa: E402
from nas.run.folder import RunFolder  # noqa: E402


def _span(records) -> float:
    """Wall seconds from the first record's start to the last one's end."""
    starts = [datetime.fromisoformat(r.started_at) for r in records if r.started_at]
    ends = [datetime.fromisoformat(r.finished_at) for r in records if r.finished_at]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


def table(run: RunFolder, wall: float | None) -> list[tuple[str, str]]:
    """The rows of the table for one run folder."""
    records = run.trials()
    proxy, promoted = [r for r in records if r.rung == 0], [r for r in records if r.rung >= 1]
    config, summary = run.config(), json.loads((run.path / "pareto.json").read_text())
    before = pareto.front(aggregate(proxy), config.objectives)
    after = [p["arch_id"] for p in summary["front"]]
    f = summary.get("fidelity") or {}
    compute = [sum(r.seconds for r in rs) for rs in (proxy, promoted)]
    n = len({r.arch_id for r in promoted})

    def num(x):
        return "-" if x is None else f"{x:.2f}"

    rung = config.ladder[1] if len(config.ladder) > 1 else {}
    return [
        ("command wall time (min)", "-" if wall is None else f"{wall / 60:.1f}"),
        (
            "proxy search: evaluations, wall (min), compute (min)",
            f"{len(proxy)}, {_span(proxy) / 60:.1f}, {compute[0] / 60:.1f}",
        ),
        (
            "rung 1",
            f"{rung.get('train_images') or 'all'} images, {rung.get('epochs')} epochs, "
            f"{rung.get('image_size')}px ({rung.get('source')}"
            + (f", fitted from {rung['fitted_from']} epochs)" if rung.get("fitted_from") else ")"),
        ),
        (
            "promotion: architectures x seeds, wall (min), compute (min)",
            f"{n} x {len(promoted) / (n or 1):.1f}, {_span(promoted) / 60:.1f}, {compute[1] / 60:.1f}",
        ),
        ("promotion's share of the search's compute", f"{compute[1] / (compute[0] or 1):.2f}"),
        (
            "front before (proxy) / after (promoted)",
            f"{len(before)} / {len(after)} points, {len({a.arch_id for a in before} & set(after))} in both",
        ),
        (
            "in-search Kendall τ / Spearman ρ, proxy vs rung 1",
            f"{num(f.get('kendall_tau'))} / "
            f"{num(f.get('spearman_rho'))} over {f.get('architectures', 0)} architectures",
        ),
        ("rung 1's own test-retest τ", num(f.get("retest_tau"))),
        ("promoted proxy-front points that stay on rung 1's front", f"{f.get('kept')} of {f.get('proxy_front')}"),
        (
            "seed std: proxy / rung 1 (points)",
            " / ".join(num(r["seed_std"] and 100 * r["seed_std"]) for r in summary.get("rungs", [])),
        ),
        ("load average (1, 5, 15 min) at the end", ", ".join(f"{x:.1f}" for x in os.getloadavg())),
    ]


def deploy_table(s: dict) -> list[tuple[str, str]]:
    """The rows of the goal's table from a fidelity.json of `--pick ranks --score-on test`."""

    def num(x):
        return "-" if x is None else f"{x:.2f}"

    def agreement(f):
        return (
            "-"
            if not f
            else f"{num(f['precision'])} / {num(f['recall'])} ({len(f['kept'])} kept, {len(f['missed'])} missed)"
        )

    def noise(f):
        gap = "-" if not f or f["max_gap"] is None else f"{100 * f['max_gap']:.2f}"
        return "-" if not f else f"{num(f['precision'])} / {num(f['recall'])}, {gap}"

    printed, own = s.get("front_agreement"), s.get("rung0_front_agreement")
    tau, retest = s.get("search_kendall_tau"), s.get("long_test_retest_tau")
    return [
        (
            "deployment",
            f"{s.get('long_train_images')} images, {s['long_epochs']} epochs, scored on {s.get('scored_on')}",
        ),
        ("pool: architectures (printed front points)", f"{s['architectures']} ({len(s['proxy_front'])})"),
        ("deployment's front in the pool", f"{len(s['long_front'])} points"),
        ("printed front vs deployment's: precision / recall", agreement(printed)),
        ("the proxy's own front (no promotion): precision / recall", agreement(own)),
        (
            "deployment's own front test-retest (its first half of the seeds' front vs the second's)",
            agreement(s.get("long_retest_front_agreement")),
        ),
        (
            "within deployment's noise: printed front precision / recall, largest gap (points)",
            noise(s.get("noise_agreement")),
        ),
        ("the same, the proxy's own front", noise(s.get("rung0_noise_agreement"))),
        ("the same, deployment's first half of the seeds vs the second", noise(s.get("long_retest_noise_agreement"))),
        ("printed accuracies vs deployment: Kendall τ", num(tau)),
        ("the proxy's means vs deployment: Kendall τ", num(s.get("kendall_tau"))),
        ("deployment's own test-retest τ", num(retest)),
        ("printed τ / deployment's test-retest τ", num(tau / retest) if tau is not None and retest else "-"),
        (
            "seed std: proxy / deployment (points)",
            f"{num(100 * (s['proxy_seed_std'] or 0))} / {num(100 * (s['long_seed_std'] or 0))}",
        ),
        ("load average (1, 5, 15 min) at the end", ", ".join(f"{x:.1f}" for x in os.getloadavg())),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--results-dir", type=Path, default=ROOT / "results" / "bench-promotion")
    p.add_argument("--run", type=Path, default=None, help="tabulate this run folder instead of searching")
    p.add_argument("--deploy", type=int, default=0, help="then check the front against deployment on this many archs")
    p.add_argument("--deploy-epochs", type=int, default=None, help="deployment's epochs (default: nas.fidelity's)")
    p.add_argument("--deploy-images", type=int, default=None, help="deployment's training images (default: all)")
    p.add_argument("search_options", nargs="*", help="after --: passed to python -m nas.search as they are")
    args = p.parse_args()
    wall = None
    if args.run is None:
        name = datetime.now().strftime("%Y%m%d-%H%M%S")
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "nas.search", "--budget", str(args.budget), "--quiet"]
        cmd += ["--results-dir", str(args.results_dir), "--name", name, *args.search_options]
        subprocess.run(cmd, check=True, cwd=ROOT)
        wall = time.perf_counter() - start
        args.run = args.results_dir / name
    rows = table(RunFolder(args.run), wall)
    print(f"\n| {args.run} | |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if args.deploy:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "nas.fidelity", str(args.run), "--archs", str(args.deploy)]
        cmd += ["--pick", "ranks", "--score-on", "test"]
        cmd += ["--epochs", str(args.deploy_epochs)] if args.deploy_epochs else []
        cmd += ["--images", str(args.deploy_images)] if args.deploy_images else []
        subprocess.run(cmd, check=True, cwd=ROOT)
        summary = json.loads((args.run / "fidelity.json").read_text())
        print(f"\n| against deployment ({time.perf_counter() - start:.0f} s) | |\n|---|---|")
        for k, v in deploy_table(summary):
            print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
