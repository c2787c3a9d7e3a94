"""How a front of noisy means would reproduce (nas.run.reproduce): the front of every draw, the
shrunk posterior, and predictions that match what simulated retrainings measure."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from nas.run import pareto
from nas.run.archive import Archive
from nas.run.folder import TrialRecord
from nas.run.reproduce import fronts, posterior, reproduction
from nas.search.report import noise_line


class _P:
    def __init__(self, number: int, acc: float, costs: np.ndarray):
        self.number, self.status, self.acc, self.costs = number, "complete", acc, costs
        self.feasible = True

    def value(self, objective: str) -> float:
        return self.acc if objective == "accuracy" else float(self.costs[["macs", "params"].index(objective)])


@pytest.mark.parametrize("n_costs", [1, 2])
def test_the_front_of_every_draw_is_the_batch_front_with_ties(n_costs):
    rng = np.random.default_rng(n_costs)
    objectives = ["accuracy", "macs", "params"][: 1 + n_costs]
    for _ in range(150):
        n = int(rng.integers(1, 14))
        acc = rng.integers(0, 4, (5, n)).astype(float)  # coarse: ties in accuracy
        costs = rng.integers(0, 4, (n, n_costs)).astype(float)  # and in cost
        got = fronts(acc, costs)
        for row, mask in zip(acc, got):
            points = [_P(i, a, c) for i, (a, c) in enumerate(zip(row, costs))]
            assert set(np.flatnonzero(mask)) == {p.number for p in pareto.front(points, objectives)}


def test_the_posterior_shrinks_a_lucky_mean_towards_the_fit_by_its_noise():
    costs = np.exp(np.linspace(0, 3, 12))[:, None]
    acc = 0.80 + 0.03 * np.log(costs[:, 0])
    acc[5] += 0.05  # one lucky point
    noisy, exact = posterior(acc, np.full(12, 0.02), costs), posterior(acc, np.full(12, 1e-6), costs)
    assert noisy[0][5] < acc[5] - 0.005  # pulled towards the line
    assert exact[0] == pytest.approx(acc, abs=1e-6)  # no noise: nothing to shrink
    assert (noisy[1] > 0).all() and (noisy[1] < 0.02**2).all()


def test_a_front_far_beyond_the_noise_reproduces_and_a_dominated_point_has_no_chance():
    costs = np.array([[1.0], [2.0], [3.0], [2.5]])
    acc = np.array([0.5, 0.7, 0.9, 0.6])  # the last is 10 points behind a cheaper point
    r = reproduction(acc, np.full(4, 2), costs, sigma=0.005)
    assert r["precision"] == pytest.approx(1.0) and r["recall"] == pytest.approx(1.0)
    assert r["p_front"].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.0])


def test_within_the_noise_the_front_is_expected_to_change_and_more_seeds_steady_it():
    rng = np.random.default_rng(3)
    costs = np.exp(rng.uniform(0, 3, (17, 1)))
    acc = 0.80 + 0.03 * np.log(costs[:, 0]) + 0.015 * rng.standard_normal(17)
    noisy = reproduction(acc, np.full(17, 2), costs, sigma=0.013)
    assert noisy["precision"] < 0.9 and noisy["recall"] < 0.9
    steadier = [reproduction(acc, np.full(17, 2), costs, 0.013, s, measured_seeds=s)["recall"] for s in (2, 8)]
    assert steadier[1] > steadier[0] + 0.1
    assert reproduction(acc, np.full(17, 2), costs, 0.013)["recall"] == noisy["recall"]  # seeded: the same numbers


def test_the_prediction_matches_what_simulated_retrainings_measure():
    """Pools like the default task's (17 networks, seed std 1.3 points, 2 seeds): over 60 pools the
    mean predicted precision and recall are within 0.07 of the mean measured against a retraining
    with 2 new seeds (the flat prior's recall is 0.1-0.15 too high here: benchmarks/front_reproduction.py)."""
    rng = np.random.default_rng(7)
    measured, predicted = [], []
    for k in range(60):
        costs = np.exp(rng.uniform(0, 3, (17, 1)))
        truth = 80 + 3 * np.log(costs[:, 0]) + 1.0 * rng.standard_normal(17)
        acc = truth + 1.3 / np.sqrt(2) * rng.standard_normal(17)
        ref = truth + 1.3 / np.sqrt(2) * rng.standard_normal(17)
        printed, front = fronts(acc[None], costs)[0], fronts(ref[None], costs)[0]
        measured.append(((printed & front).sum() / printed.sum(), (printed & front).sum() / front.sum()))
        r = reproduction(acc, np.full(17, 2), costs, 1.3, draws=500, seed=k)
        predicted.append((r["precision"], r["recall"]))
    assert np.mean(predicted, axis=0) == pytest.approx(np.mean(measured, axis=0), abs=0.07)


def _record(number: int, arch: int, acc: float, macs: float, seed: int) -> TrialRecord:
    return TrialRecord(
        number=number,
        arch_id=f"{arch:012x}",
        arch={},
        status="complete",
        accuracy=acc,
        params=1000,
        macs=macs,
        seed=seed,
    )


def test_the_run_summary_says_how_its_front_would_reproduce():
    rng = random.Random(0)
    archive = Archive(["accuracy", "macs"])
    n = 0
    for arch in range(20):
        quality = 0.7 + 0.02 * arch + rng.gauss(0, 0.01)
        for seed in range(2):
            archive.add(_record(n, arch, quality + rng.gauss(0, 0.01), 1000.0 * (arch + 1), seed))
            n += 1
    summary = archive.summary(None)
    again = summary["reproduction"]
    assert again["retrain_seeds"] == 2 and 0 < again["precision"] <= 1 and 0 < again["recall"] <= 1
    assert all(0 <= row["p_front"] <= 1 for row in summary["front"])
    assert "retrained with 2 new seeds each, about" in noise_line(summary, Path("r"))
    quiet = archive.summary(None, reproduce=False)
    assert quiet["reproduction"] is None and all(row["p_front"] is None for row in quiet["front"])
