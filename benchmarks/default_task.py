"""Does a space's task separate its architectures, and does its proxy rank them like longer training?

Takes a search space (default: search_spaces/symmetry.yaml), its reference points and random
samples of it (Optuna RandomSampler) up to --archs distinct architectures, and trains every one
with the space's `proxy:` settings at --proxy-seeds seeds and for --long-factor x the proxy's epochs
at --long-seeds seeds, on the same data split. Prints one row per architecture (proxy accuracy per
seed, long accuracy per seed, seconds), then:

- range / seed std: the spread of the long accuracies (max - min of the per-architecture means)
  over the mean per-architecture seed std of long training (target >= 5);
- Kendall tau-b and Spearman rho of the proxy against long training: per proxy seed against the
  long mean, averaged over proxy seeds (targets >= 0.6 and >= 0.8), and of the means;
- test-retest tau of the proxy between seeds (mean over seed pairs; target >= 0.8), and the same
  for the mean of K seeds where the seeds allow it;
- seconds per proxy trial on one thread (wall and CPU), and the minutes the measurement took.

One process, one torch thread: a trial takes one core, as in a search with two parallel trials.
CPU seconds (time.process_time) are shown beside wall seconds because a shared machine inflates
wall time.

    python benchmarks/default_task.py                        # 12 archs, 2 + 2 seeds, ~15 min
    python benchmarks/default_task.py --archs 6 --long-factor 2 --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import optuna
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout this script belongs to, not another installed copy

from nas.arch import Arch  # noqa: E402
from nas.data import load_dataset  # noqa: E402
from nas.model import create_model  # noqa: E402
from nas.space import SearchSpace, load_space  # noqa: E402
from nas.train import TrainConfig, train  # noqa: E402


# --------------------------------------------------------------------------- rank statistics

def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    a = np.asarray(a, dtype=float)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        tie = a == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(x, y) -> float:
    """Spearman's rho: Pearson correlation of the tie-averaged ranks."""
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / den) if den else float("nan")


def kendall_tau_b(x, y) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    i, j = np.triu_indices(len(x), k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    den = math.sqrt(np.count_nonzero(sx) * np.count_nonzero(sy))
    return float((sx * sy).sum() / den) if den else float("nan")


def _check_statistics() -> None:
    """Known answers (also scipy.stats' on these inputs): a tie-free swap and a case with ties."""
    assert abs(kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) - 4 / 6) < 1e-12
    assert abs(spearman([1, 2, 3, 4], [1, 3, 2, 4]) - 0.8) < 1e-12
    x, y = [1, 2, 2, 3, 4], [1, 3, 2, 2, 4]   # scipy.stats: tau-b 2/3, rho 29/38
    assert abs(kendall_tau_b(x, y) - 2 / 3) < 1e-12 and abs(spearman(x, y) - 29 / 38) < 1e-12
    assert kendall_tau_b([3, 2, 1], [1, 2, 3]) == -1.0 and spearman([1, 2, 3], [5, 6, 9]) == 1.0


# --------------------------------------------------------------------------- the measurement

@dataclass
class Row:
    name: str
    arch_id: str
    summary: str
    acmix_blocks: int
    blocks: int
    proxy: list[float] = field(default_factory=list)
    long: list[float] = field(default_factory=list)
    proxy_wall: list[float] = field(default_factory=list)
    proxy_cpu: list[float] = field(default_factory=list)
    long_wall: list[float] = field(default_factory=list)


def pick_archs(space: SearchSpace, n: int, seed: int) -> dict[str, Arch]:
    """The reference points, then distinct random samples, `n` in all."""
    out = dict(space.reference_points())
    seen = {a.arch_id for a in out.values()}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    tries = 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        trial = study.ask()
        arch = space.sample(trial)
        study.tell(trial, 0.0)
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            out[f"random{len(out) - len(space.reference_points())}"] = arch
    return out


def run_one(arch: Arch, data, cfg: TrainConfig) -> tuple[float, float, float]:
    """(final validation accuracy, wall seconds, CPU seconds) of one training."""
    torch.manual_seed(cfg.seed)
    model = create_model(arch, num_classes=data.num_classes)
    w0, c0 = time.perf_counter(), time.process_time()
    last = None
    for last in train(model, data, cfg):
        if last.status != "ok":
            break
    acc = float("nan") if last is None or last.status != "ok" else last.val_acc
    return acc, time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "symmetry.yaml")
    ap.add_argument("--archs", type=int, default=12, help="architectures (reference points first)")
    ap.add_argument("--proxy-seeds", type=int, default=2)
    ap.add_argument("--long-seeds", type=int, default=2)
    ap.add_argument("--long-factor", type=float, default=4.0, help="long epochs = factor x proxy's")
    ap.add_argument("--sample-seed", type=int, default=0, help="seeds the random architectures")
    ap.add_argument("--data-seed", type=int, default=0, help="seeds the validation split")
    ap.add_argument("--epochs", type=int, default=None, help="override the proxy's epochs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows and numbers here")
    args = ap.parse_args(argv)
    _check_statistics()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space = load_space(args.space)
    proxy = dict(space.proxy)
    if args.epochs:
        proxy["epochs"] = args.epochs
    data = load_dataset(proxy.get("dataset", "digits"), proxy.get("data_dir"),
                        image_size=proxy.get("image_size"), val_fraction=proxy.get("val_fraction", 0.2),
                        subset=proxy.get("subset"), seed=args.data_seed)
    long_epochs = max(1, round(proxy["epochs"] * args.long_factor))
    print(f"space {space.name} ({space.size:,} architectures); {data.summary()}")
    print("proxy: " + ", ".join(f"{k}={v}" for k, v in proxy.items()) + f"; long: {long_epochs} epochs")
    archs = pick_archs(space, args.archs, args.sample_seed)
    t_start = time.perf_counter()
    rows: list[Row] = []
    head = (f"{'arch':10s} {'id':12s} {'A/blk':>5s}  {'proxy acc per seed':>20s}  {'long acc per seed':>18s}"
            f"  {'proxy s wall/cpu':>16s}  {'long s':>6s}  network")
    print(head)
    for name, arch in archs.items():
        blocks = [b for *_, b in arch.blocks()]
        row = Row(name, arch.arch_id, arch.summary(), sum(b.op == "acmix" for b in blocks), len(blocks))
        for s in range(args.proxy_seeds):
            acc, wall, cpu = run_one(arch, data, TrainConfig.from_dict({**proxy, "seed": s}))
            row.proxy.append(acc)
            row.proxy_wall.append(wall)
            row.proxy_cpu.append(cpu)
        for s in range(args.long_seeds):
            acc, wall, _ = run_one(arch, data, TrainConfig.from_dict({**proxy, "epochs": long_epochs, "seed": s}))
            row.long.append(acc)
            row.long_wall.append(wall)
        rows.append(row)
        print(f"{name:10s} {arch.arch_id:12s} {row.acmix_blocks:>2d}/{row.blocks:<2d}  "
              f"{' '.join(f'{a:6.3f}' for a in row.proxy):>20s}  {' '.join(f'{a:6.3f}' for a in row.long):>18s}"
              f"  {np.mean(row.proxy_wall):7.1f}/{np.mean(row.proxy_cpu):<7.1f}  {np.mean(row.long_wall):6.1f}"
              f"  {arch.summary().split(' | ', 1)[1]}", flush=True)

    P = np.array([r.proxy for r in rows])   # archs x proxy seeds
    L = np.array([r.long for r in rows])    # archs x long seeds
    long_mean, proxy_mean = L.mean(1), P.mean(1)
    seed_std = float(L.std(1, ddof=1).mean()) if L.shape[1] > 1 else float("nan")
    proxy_std = float(P.std(1, ddof=1).mean()) if P.shape[1] > 1 else float("nan")
    spread = float(long_mean.max() - long_mean.min())
    numbers = dict(
        archs=len(rows), proxy_epochs=proxy["epochs"], long_epochs=long_epochs,
        long_range=spread, long_seed_std=seed_std, proxy_seed_std=proxy_std,
        range_over_seed_std=spread / seed_std if seed_std > 0 else float("inf"),
        tau=float(np.mean([kendall_tau_b(P[:, s], long_mean) for s in range(P.shape[1])])),
        rho=float(np.mean([spearman(P[:, s], long_mean) for s in range(P.shape[1])])),
        tau_of_means=kendall_tau_b(proxy_mean, long_mean), rho_of_means=spearman(proxy_mean, long_mean),
        test_retest_tau=float(np.mean([kendall_tau_b(P[:, a], P[:, b])
                                       for a, b in itertools.combinations(range(P.shape[1]), 2)]))
        if P.shape[1] > 1 else float("nan"),
        long_test_retest_tau=float(np.mean([kendall_tau_b(L[:, a], L[:, b])
                                            for a, b in itertools.combinations(range(L.shape[1]), 2)]))
        if L.shape[1] > 1 else float("nan"),
        proxy_seconds_wall=float(np.mean([r.proxy_wall for r in rows])),
        proxy_seconds_cpu=float(np.mean([r.proxy_cpu for r in rows])),
        minutes=(time.perf_counter() - t_start) / 60,
    )
    if P.shape[1] >= 4:  # the proxy's test-retest when each side is the mean of K seeds
        for k in range(2, P.shape[1] // 2 + 1):
            numbers[f"test_retest_tau_mean_of_{k}"] = kendall_tau_b(P[:, :k].mean(1), P[:, k:2 * k].mean(1))
    print()
    print(f"long accuracy range {spread * 100:.1f} points over mean seed std {seed_std * 100:.2f} points: "
          f"ratio {numbers['range_over_seed_std']:.1f} (target >= 5)")
    print(f"proxy vs long ({long_epochs} epochs): Kendall tau {numbers['tau']:.3f} (target >= 0.6), "
          f"Spearman rho {numbers['rho']:.3f} (target >= 0.8); of the seed means: tau "
          f"{numbers['tau_of_means']:.3f}, rho {numbers['rho_of_means']:.3f}")
    print(f"proxy test-retest tau {numbers['test_retest_tau']:.3f} (target >= 0.8); proxy seed std "
          f"{proxy_std * 100:.2f} points; long test-retest tau {numbers['long_test_retest_tau']:.3f}"
          + "".join(f"; {k} {v:.3f}" for k, v in numbers.items() if k.startswith("test_retest_tau_mean")))
    print(f"proxy trial: {numbers['proxy_seconds_wall']:.1f} s wall, {numbers['proxy_seconds_cpu']:.1f} s CPU "
          f"(mean, 1 thread); measurement took {numbers['minutes']:.1f} min")
    by_name = {r.name: r for r in rows}
    refs = [k for k in ("all_conv", "all_acmix", "paper") if k in by_name]
    print("reference points, long accuracy (mean of seeds): " + ", ".join(
        f"{k} {np.mean(by_name[k].long) * 100:.1f}" for k in refs))
    if args.json:
        args.json.write_text(json.dumps(dict(space=str(args.space), proxy=proxy, numbers=numbers,
                                             rows=[asdict(r) for r in rows]), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
