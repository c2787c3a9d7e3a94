"""The incremental Archive agrees with the batch functions of nas.run.pareto after every evaluation."""

from __future__ import annotations

import random

import pytest

from nas.run import pareto
from nas.run.archive import Archive, aggregate, seed_std
from nas.run.folder import TrialRecord


def random_run(rng: random.Random, n_archs: int, evaluations: int, objectives: list[str]) -> list[TrialRecord]:
    """Evaluations of `n_archs` architectures in a random order: most complete, some failed,
    stopped or infeasible; costs drawn from few values (ties), accuracies from a coarse grid (ties
    between means), several seeds for many."""
    costs = {i: {o: rng.choice([1, 2, 3, 5, 8, 13]) * 1000 for o in pareto.COSTS} for i in range(n_archs)}
    quality = {i: rng.random() for i in range(n_archs)}
    status = {
        i: rng.choices(["complete", "failed", "infeasible", "stopped"], [0.8, 0.07, 0.07, 0.06])[0]
        for i in range(n_archs)
    }
    records = []
    for n in range(evaluations):
        i = rng.randrange(n_archs) if records and rng.random() < 0.45 else len({r.arch_id for r in records}) % n_archs
        st = status[i] if rng.random() < 0.9 else "failed"
        acc = round(min(1.0, max(0.0, quality[i] + rng.gauss(0, 0.04))), 2) if st in ("complete", "stopped") else None
        records.append(
            TrialRecord(
                number=n,
                arch_id=f"{i:012x}",
                arch={},
                status=st,
                accuracy=acc,
                params=costs[i]["params"],
                macs=costs[i]["macs"],
                latency_ms=costs[i]["latency"] / 1000,
                memory_mb=costs[i]["memory"] / 100,
                constraints=[1.0] if status[i] == "infeasible" else [],
                seed=n,
            )
        )
    return records


@pytest.mark.parametrize("objectives", [["accuracy", "macs"], ["accuracy", "macs", "params"]])
@pytest.mark.parametrize("seed", range(4))
def test_the_archive_agrees_with_the_batch_front_band_flags_and_targets_after_every_evaluation(objectives, seed):
    rng = random.Random(seed)
    records = random_run(rng, n_archs=40, evaluations=160, objectives=objectives)
    archive = Archive(objectives)
    scales = {o: 20_000.0 for o in objectives if o != "accuracy"}
    changes = 0
    for k, record in enumerate(records, 1):
        front_before = [a.arch_id for a in archive.front()]
        changed = archive.add(record)
        archs = aggregate(records[:k])
        sigma = seed_std(archs)
        front = pareto.front(archs, objectives)
        ids = lambda points: [p.arch_id for p in points]  # noqa: E731
        assert ids(archive.front()) == ids(front)
        assert (changed or ids(front) == front_before) and (
            archive.sigma == pytest.approx(sigma) if sigma else archive.sigma is None
        )
        changes += changed
        assert ids(archive.band()) == ids(pareto.noise_band(archs, objectives, sigma))
        assert archive.unseparable() == pareto.unseparable(archs, objectives, sigma)
        for repeats, race, band in ((1, 3, True), (1, 3, False), (2, 1, False), (3, 3, True)):
            batch = [
                (a.arch_id, n)
                for a, n in pareto.race_targets(archs, objectives, sigma, repeats=repeats, race=race, band=band)
                if a.seeds < n
            ]
            ours = [
                (a.arch_id, n) for a, n in archive.race_targets(repeats=repeats, race=race, band=band) if a.seeds < n
            ]
            assert ours == batch
        assert archive.hypervolume(scales) == pytest.approx(pareto.hypervolume(archs, objectives, scales))
    assert 0 < changes < len(records)  # the run moved its front, and not at every evaluation
    summary = archive.summary(scales)
    assert summary["trials"] == len(records) and summary["architectures"] == len(aggregate(records))
    assert [row["arch_id"] for row in summary["front"]] == [
        a.arch_id for a in pareto.front(aggregate(records), objectives)
    ]
