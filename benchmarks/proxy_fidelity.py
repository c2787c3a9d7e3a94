"""Proxy fidelity on the default space: does the search's proxy rank like deployment training?

    python benchmarks/proxy_fidelity.py                         # budget 100, 12 architectures, 4x epochs, 2 seeds
    python benchmarks/proxy_fidelity.py --budget 30 --archs 8   # smaller
    python benchmarks/proxy_fidelity.py -- --race 1             # options after -- go to nas.search

A user's run, as a user runs it: `python -m nas.search` (default space, racing on) into a temp
folder, then `python -m nas.fidelity` on it (deployment-like training: the whole training split,
4x the proxy's epochs; add `--same-subset` to the fidelity options with `--fidelity-option`). One
table: Kendall τ and Spearman ρ between the proxy and deployment (the racing means, and the first
seed alone, i.e. what a one-seed search ranks by), deployment's own test-retest τ and the proxy's
one-seed τ against it, the proxy's test-retest τ (seed 0 vs seed 1), the mean seed std of the
proxy and of deployment, the deployment means' range in their seed stds, and the minutes each step
took.
The anchors to compare with: reduced training (EcoNAS) ρ 0.61 and the best zero-cost proxy ρ 0.82
against full training on NAS-Bench-201 (Abdelfattah et al., ICLR 2021).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], log: Path) -> float:
    """Run `python -m ...` from the project root, output to `log`; minutes taken."""
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} failed (exit {proc.returncode}):\n{log.read_text()[-3000:]}")
    return (time.perf_counter() - start) / 60


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=100, help="the search's --budget")
    parser.add_argument("--archs", type=int, default=12, help="nas.fidelity's --archs")
    parser.add_argument("--epochs", type=int, default=None, help="nas.fidelity's --epochs (default: 4x the proxy's)")
    parser.add_argument("--seeds", type=int, default=2, help="nas.fidelity's --seeds")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folder here instead of a temp folder")
    parser.add_argument(
        "--fidelity-option",
        action="append",
        default=[],
        help="passed to nas.fidelity (repeatable), e.g. --fidelity-option=--same-subset",
    )
    parser.add_argument("search_options", nargs="*", help="after --: passed to python -m nas.search as they are")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = args.keep or Path(tmp)
        run = results / "proxy-fidelity"
        search_min = _run(
            [
                "nas.search",
                "--budget",
                str(args.budget),
                "--results-dir",
                str(results),
                "--name",
                run.name,
                *args.search_options,
            ],
            Path(tmp) / "search.log",
        )
        fid_args = ["nas.fidelity", str(run), "--archs", str(args.archs), "--seeds", str(args.seeds)]
        fid_args += (["--epochs", str(args.epochs)] if args.epochs else []) + args.fidelity_option
        fid_min = _run(fid_args, Path(tmp) / "fidelity.log")
        s = json.loads((run / "fidelity.json").read_text())
        pareto = json.loads((run / "pareto.json").read_text())
    seeds_on_front = [p["seeds"] for p in pareto["front"]]
    print(
        f"\ndefault space, search --budget {args.budget} {' '.join(args.search_options)}; long: {s.get('reference')}, "
        f"{s.get('long_train_images')} images; "
        f"{s['architectures']} architectures ({len(s['proxy_front'])} of the front), "
        f"{s['proxy_epochs']} (proxy) vs {s['long_epochs']} epochs, seeds {s['seeds']}; "
        f"front seeds {min(seeds_on_front, default=0)}-{max(seeds_on_front, default=0)}"
    )
    rows = [
        ("Kendall τ, proxy means vs long", _f(s["kendall_tau"])),
        ("Spearman ρ, proxy means vs long", _f(s["spearman_rho"])),
        ("Kendall τ, proxy seed 0 vs long", _f(s["seed0_kendall_tau"])),
        ("Spearman ρ, proxy seed 0 vs long", _f(s["seed0_spearman_rho"])),
        ("test-retest τ, proxy seed 0 vs 1", _f(s["test_retest_tau"])),
        ("test-retest τ, long seed 0 vs 1", _f(s.get("long_test_retest_tau"))),
        ("Kendall τ, one proxy seed vs one long seed", _f(s.get("pair_kendall_tau"))),
        ("  its share of long's test-retest τ", _f(s.get("retest_share"))),
        ("proxy seed std (points)", _f(None if s["proxy_seed_std"] is None else 100 * s["proxy_seed_std"], ".2f")),
        ("long seed std (points)", _f(None if s["long_seed_std"] is None else 100 * s["long_seed_std"], ".2f")),
        ("long range / long seed std", _f(s["long_range_over_seed_std"], ".1f")),
        ("proxy front points on the long front", f"{len(s['proxy_front_kept'])} of {len(s['proxy_front'])}"),
        ("search minutes", f"{search_min:.1f}"),
        ("fidelity minutes", f"{fid_min:.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':{width}}  value")
    for name, value in rows:
        print(f"{name:{width}}  {value:>6}")
    print("anchors (NAS-Bench-201, Abdelfattah et al. 2021): reduced training ρ 0.61, best zero-cost proxy ρ 0.82")


if __name__ == "__main__":
    main()
