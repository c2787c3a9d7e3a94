"""nas.run.pareto and the aggregate over seeds (results.ArchResult) on cases with known answers."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from nas.run import pareto
from nas.run.folder import ArchResult, TrialRecord, aggregate, seed_std

OBJ = ["accuracy", "macs"]


def _rec(n: int, arch: str, acc: float | None, macs: int, status: str = "complete", seed: int = 0) -> TrialRecord:
    return TrialRecord(number=n, arch_id=arch, arch={}, status=status, accuracy=acc, macs=macs, seed=seed)


def test_ranks_front_and_knee_on_arrays():
    # (accuracy, macs): a, b, c on the front; d dominated by b; e dominated by d
    values = [(0.90, 100), (0.95, 200), (0.99, 400), (0.94, 300), (0.93, 350)]
    losses = pareto.as_losses(values, OBJ)
    assert losses[0].tolist() == [-0.90, 100]
    assert pareto.nondominated_ranks(losses).tolist() == [0, 0, 0, 1, 2]
    front = losses[:3]
    # scaled over the front: a (0, 1)->... b is closest to the ideal point (0, 0)
    assert pareto.knee_index(front) == 1
    assert pareto.normalise(losses[:1], OBJ, {"macs": 1000}).tolist() == [[pytest.approx(0.10), 0.1]]
    # one point at (0.5, 0.5) dominates a quarter of the unit square
    assert pareto.hypervolume_of(np.array([[0.5, 0.5], [1.5, 0.1]])) == pytest.approx(0.25)


def test_aggregate_means_standard_errors_and_pooled_seed_std():
    recs = [
        _rec(0, "a", 0.90, 100),
        _rec(1, "a", 0.94, 100, seed=1),
        _rec(2, "b", 0.80, 50),
        _rec(3, "a", None, 100, "failed", seed=2),
        _rec(4, "c", 0.5, 10, "stopped"),
        _rec(5, "b", 0.84, 50, seed=1),
        _rec(6, "b", 0.82, 50, seed=2),
    ]
    a, b, c = aggregate(recs)
    assert (a.arch_id, a.seeds, a.number, a.status) == ("a", 2, 0, "complete")
    assert a.accuracy == pytest.approx(0.92) and a.value("macs") == 100
    assert a.accuracy_std == pytest.approx(statistics.stdev([0.90, 0.94]))
    assert a.accuracy_se == pytest.approx(statistics.stdev([0.90, 0.94]) / 2**0.5)
    assert b.accuracy == pytest.approx(0.82) and b.seeds == 3
    assert c.status == "stopped" and c.accuracy == 0.5 and c.accuracy_se is None
    assert seed_std([a, b, c]) == pytest.approx(
        ((statistics.variance([0.90, 0.94]) + statistics.variance([0.80, 0.84, 0.82])) / 2) ** 0.5
    )
    assert [p.arch_id for p in pareto.front([a, b, c], OBJ)] == ["b", "a"]


def _arch(n: int, accs: list[float], macs: int) -> ArchResult:
    return ArchResult([_rec(n * 10 + i, f"x{n}", acc, macs, seed=i) for i, acc in enumerate(accs)])


def test_noise_band_and_unseparable_front_points():
    sigma = 0.01  # pooled seed std: one seed has s.e. 0.01, a margin of 2 * sqrt(2) * 0.01 = 0.028
    f1 = _arch(1, [0.90], 100)  # front
    f2 = _arch(2, [0.95], 200)  # front
    near = _arch(3, [0.94], 250)  # dominated by f2 by 0.01 < 0.028: within the noise
    far = _arch(4, [0.80], 300)  # dominated by f1 and f2 by 0.10 and more: separable
    cheap = _arch(5, [0.89], 90)  # cheaper than f1 and 0.01 behind... it is on the front itself
    pts = [f1, f2, near, far, cheap]
    assert [p.arch_id for p in pareto.front(pts, OBJ)] == ["x5", "x1", "x2"]
    assert [p.arch_id for p in pareto.noise_band(pts, OBJ, sigma)] == ["x3"]
    # `near` costs more than f2, so it cannot dominate f2 however noisy: no front point is flagged
    assert pareto.unseparable(pts, OBJ, sigma) == {}
    same_cost = _arch(7, [0.94], 200)  # as dear as f2 and 0.01 behind: it may truly dominate f2
    assert pareto.unseparable([f1, f2, same_cost], OBJ, sigma) == {f2.number: [same_cost.number]}
    assert pareto.unseparable([f1, f2, same_cost], OBJ, None) == {}  # noise unknown: nothing flagged


def test_race_targets_front_first_then_band_then_repeats():
    sigma = 0.01
    f1, f2 = _arch(1, [0.90, 0.91, 0.90], 100), _arch(2, [0.95], 200)
    near, far = _arch(3, [0.94], 250), _arch(4, [0.80], 300)
    pts = [far, near, f2, f1]
    got = [(p.arch_id, n) for p, n in pareto.race_targets(pts, OBJ, sigma, race=3)]
    assert got == [("x2", 3), ("x1", 3), ("x3", 3)]  # fewest seeds first on the front, then the band
    assert [(p.arch_id, n) for p, n in pareto.race_targets(pts, OBJ, sigma, race=3, band=False)] == [
        ("x2", 3),
        ("x1", 3),
    ]
    assert {(p.arch_id, n) for p, n in pareto.race_targets(pts, OBJ, sigma, repeats=2)} == {
        ("x1", 2),
        ("x2", 2),
        ("x3", 2),
        ("x4", 2),
    }
    assert pareto.race_targets(pts, OBJ, sigma) == []
