"""Promotion up the fidelity ladder: records say their rung, the archive ranks the highest rung
first, the ladder, the choice of what to promote (rank, crowding, count, compute share), and a
search that promotes, is stopped during the promotion and resumes it without retraining."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from nas.errors import UsageError
from nas.proxy import ProxyConfig
from nas.run import pareto
from nas.run.archive import Archive, aggregate, seed_std
from nas.run.folder import DataInfo, RecordError, RunConfig, RunFolder, TrialRecord, check_record
from nas.run.ladder import rank_agreement, rung_of
from nas.search.options import RESUMABLE, SearchOptions
from nas.search.promote import PROMOTE_SEEDS, choose, crowding, fit, plan, plan_line, planned, promotion_order
from nas.search.rungs import DEFAULT_EPOCHS_FACTOR, Rung, ladder, run_ladder

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "premove-digits"
OBJ = ["accuracy", "macs"]


def rec(n: int, arch: str, acc: float | None, macs: int, seed: int = 0, rung: int = 0, **kw) -> TrialRecord:
    status = kw.pop("status", "complete" if acc is not None else "failed")
    return TrialRecord(
        number=n, arch_id=arch, arch={}, status=status, accuracy=acc, macs=macs, seed=seed, rung=rung, **kw
    )


# --------------------------------------------------------------------------- records and the archive


def test_a_record_says_its_rung_and_an_old_one_is_rung_0():
    old = json.loads((FIXTURE / "trials.jsonl").read_text().splitlines()[0])
    assert "rung" not in old and check_record(old).rung == 0
    assert json.loads(check_record({**old, "rung": 1}).to_json())["rung"] == 1
    with pytest.raises(RecordError, match="rung"):
        check_record({**old, "rung": -1})


def test_accuracy_is_taken_at_the_highest_rung_and_costs_at_any():
    a, b, c = aggregate(
        [
            rec(0, "a", 0.60, 100, weights="weights/a.safetensors", latency_ms=2.0),
            rec(1, "b", 0.70, 200),
            rec(2, "c", 0.65, 50),
            rec(3, "a", 0.90, 100, seed=0, rung=1),
            rec(4, "a", 0.92, 100, seed=1, rung=1),
            rec(5, "b", None, 200, seed=0, rung=1),  # failed at rung 1: it stays at rung 0
        ]
    )
    assert (a.rung, a.seeds, a.accuracies) == (1, 2, [0.90, 0.92]) and a.accuracy == pytest.approx(0.91)
    assert (a.number, a.weights, a.value("latency"), a.summary()["rung"]) == (0, "weights/a.safetensors", 2.0, 1)
    assert (b.rung, b.accuracy, b.status) == (0, 0.70, "complete")
    # the promoted pool's front is the front; what was not promoted ranks below every promoted point
    assert [p.arch_id for p in pareto.front([a, b, c], OBJ)] == ["a"]
    assert pareto.ranks([a, b, c], OBJ) == {0: 0, 1: 1, 2: 1}
    assert seed_std([a, b, c]) == pytest.approx(np.std([0.90, 0.92], ddof=1))


def promoted_run(rng: random.Random, n_archs: int, evaluations: int) -> list[TrialRecord]:
    """A random proxy run (ties, several seeds, failures), then 2 rung-1 seeds of a third of its
    complete architectures (a rung-1 accuracy 0.2 higher, noisier), one of them failed."""
    records = []
    quality = [rng.random() * 0.7 for _ in range(n_archs)]
    for n in range(evaluations):
        i = rng.randrange(n_archs)
        acc = None if rng.random() < 0.05 else round(quality[i] + rng.gauss(0, 0.03), 2)
        records.append(rec(n, f"a{i:02d}", acc, rng.choice([1, 2, 3, 5, 8]) * 100 + i, seed=n))
    macs = {r.arch_id: r.macs for r in records}
    done = sorted({r.arch_id for r in records if r.status == "complete"})
    for arch in rng.sample(done, len(done) // 3):
        for seed in range(2):
            acc = None if rng.random() < 0.05 else round(quality[int(arch[1:])] + 0.2 + rng.gauss(0, 0.05), 2)
            records.append(rec(len(records), arch, acc, macs[arch], seed=seed, rung=1))
    return records


@pytest.mark.parametrize("seed", range(3))
def test_the_archive_ranks_the_highest_rung_first_as_the_batch_functions_do(seed):
    records = promoted_run(random.Random(seed), n_archs=24, evaluations=60)
    archive = Archive(OBJ)
    scales = {"macs": 2000.0}
    for k, record in enumerate(records, 1):
        archive.add(record)
        archs = aggregate(records[:k])
        sigma = seed_std(archs)
        ids = lambda points: [p.arch_id for p in points]  # noqa: E731
        assert ids(archive.front()) == ids(pareto.front(archs, OBJ))
        assert archive.sigma == pytest.approx(sigma) if sigma else archive.sigma is None
        assert ids(archive.band()) == ids(pareto.noise_band(archs, OBJ, sigma))
        assert archive.unseparable() == pareto.unseparable(archs, OBJ, sigma)
        assert archive.hypervolume(scales) == pytest.approx(pareto.hypervolume(archs, OBJ, scales))
    # racing stays on the proxy's rung: as the batch targets of the proxy's records alone
    proxy = aggregate([r for r in records if rung_of(r) == 0])
    batch = pareto.race_targets(proxy, OBJ, seed_std(proxy), race=3)
    assert [(a.arch_id, n) for a, n in archive.race_targets(race=3)] == [(a.arch_id, n) for a, n in batch]
    summary = archive.summary(scales)
    assert summary["rung"] == 1 and {row["rung"] for row in summary["front"]} == {1}
    assert [r["rung"] for r in summary["rungs"]] == [0, 1]
    both = [
        a for a in aggregate(records) if a.rung == 1 and any(r.rung == 0 and r.accuracy is not None for r in a.records)
    ]
    assert summary["fidelity"]["architectures"] == len(both) and summary["fidelity"]["seeds"] == [0, 1]
    on_proxy_front = {a.arch_id for a in pareto.front(proxy, OBJ)} & {a.arch_id for a in both}
    kept = on_proxy_front & {a.arch_id for a in pareto.front(aggregate(records), OBJ)}
    assert (summary["fidelity"]["proxy_front"], summary["fidelity"]["kept"]) == (len(on_proxy_front), len(kept))


def test_rank_agreement_of_the_rungs():
    out = rank_agreement([0.1, 0.2, 0.3, 0.4], [0.5, 0.7, 0.6, 0.9], [{0: 0.5, 1: 0.5}, {0: 0.7}, {0: 0.6}, {0: 0.9}])
    assert out["kendall_tau"] == pytest.approx(2 / 3) and out["spearman_rho"] == pytest.approx(0.8)
    assert out["seeds"] == [0, 1] and out["retest_tau"] is None  # one architecture has both seeds
    assert rank_agreement([0.1, 0.2], [0.1, 0.2], [{}, {}])["kendall_tau"] is None


def test_the_premove_run_reads_at_rung_0_with_no_fidelity(tmp_path):
    run = RunFolder(shutil.copytree(FIXTURE, tmp_path / "run"))
    assert {r.rung for r in run.trials()} == {0} and run.config().ladder == []
    summary = run.write_pareto()
    assert summary["rung"] == 0 and summary["fidelity"] is None
    assert [p["arch_id"] for p in summary["front"]] == [
        p["arch_id"] for p in json.loads((FIXTURE / "pareto.json").read_text())["front"]
    ]


# --------------------------------------------------------------------------- the ladder


def test_the_ladder_default_option_and_calibration():
    proxy = ProxyConfig(dataset="symmetry", image_size=12, subset=1500, epochs=5)
    base, top = ladder(proxy, [16, 16])
    assert (base.rung, base.subset, base.epochs, base.image_size, base.source) == (0, 1500, 5, 12, "proxy")
    assert (top.rung, top.subset, top.epochs, top.image_size) == (1, None, DEFAULT_EPOCHS_FACTOR * 5, 16)
    assert ladder(proxy, [16, 16], epochs=7)[1].epochs == 7 and ladder(proxy, [16, 24])[1].image_size == 12
    deploy = {"key": "nall-e20-16px", "train_images": 4500, "epochs": 20, "image_size": 16}
    top = ladder(proxy, [16, 16], {"deploy": deploy})[1]
    assert (top.subset, top.epochs, top.image_size, top.source) == (None, 20, 16, "calibration")
    deploy = {**deploy, "key": "n15000-e10-28px", "train_images": 15000, "epochs": 10, "image_size": 28}
    top = ladder(proxy, [28, 28], {"deploy": deploy}, epochs=3)[1]
    assert (top.subset, top.epochs, top.image_size, top.source) == (15000, 3, 28, "option")  # not fitted
    assert Rung.from_dict({**top.__dict__}).proxy(proxy).subset == 15000
    # --promote-images: a training subset for rung 1, with or without a calibration
    top = ladder(proxy, [16, 16], images=8000)[1]
    assert (top.subset, top.epochs, top.source) == (8000, DEFAULT_EPOCHS_FACTOR * 5, "option")
    assert ladder(proxy, [28, 28], {"deploy": deploy}, images=5000)[1].subset == 5000
    assert "8,000 training images" in top.describe()


def test_a_run_keeps_the_ladder_it_started_with():
    config = RunConfig(proxy=ProxyConfig(epochs=3, subset=100), space={"input_size": [16, 16]})
    config.data = DataInfo(train_images=100)
    rungs = run_ladder(config, None)
    assert [r["epochs"] for r in rungs] == [3, 6] and rungs[0]["train_images"] == 100
    config.ladder = rungs
    assert run_ladder(config, 9) == rungs  # a resume knows its rungs; --promote-epochs cannot change them
    assert RunConfig.from_dict(config.to_dict()).ladder == rungs


# --------------------------------------------------------------------------- the choice


def test_crowding_puts_the_ends_first_then_the_emptiest_stretch():
    losses = np.array([[0.0, 4.0], [1.0, 3.0], [1.5, 2.5], [3.0, 1.0], [4.0, 0.0]])
    c = crowding(losses)
    assert np.isinf(c[0]) and np.isinf(c[4])
    assert c[1:4].tolist() == [0.75, 1.0, 1.25]  # the gaps between neighbours, over each objective's range
    assert np.isinf(crowding(losses[:2])).all()


def test_promotion_takes_the_front_by_crowding_then_the_points_within_its_noise():
    # a proxy front of four (accuracy up with MACs), one point just behind it (within the noise),
    # and one far behind (not promoted); two seeds each, seed std ~1 point
    points = {"f1": (0.60, 100), "f2": (0.70, 200), "f3": (0.71, 300), "f4": (0.80, 400)}
    points |= {"near": (0.695, 250), "far": (0.40, 350)}
    records = []
    for arch, (acc, macs) in points.items():
        for seed in range(2):
            records.append(rec(len(records), arch, acc + (0.01 if seed else -0.01), macs, seed=seed, seconds=2.0))
    archive = Archive(OBJ)
    for r in records:
        archive.add(r)
    order = [a.arch_id for a in promotion_order(archive)]
    assert order[:2] == ["f1", "f4"] and set(order[2:4]) == {"f2", "f3"} and order[4:] == ["near"]
    by_id = {a.arch_id: a for a in archive.architectures}
    ranked = [by_id[i] for i in order]
    assert [a.arch_id for a in choose(ranked, 3, 1e9, lambda a: 1.0)] == order[:3]  # at most --promote
    assert [a.arch_id for a in choose(ranked, 9, 2.5, lambda a: 1.0)] == order[:2]  # within the share
    costly = lambda a: 5.0 if a.arch_id == "f4" else 1.0  # noqa: E731
    assert [a.arch_id for a in choose(ranked, 9, 3.0, costly)] == ["f1", *order[2:4]]  # one too dear is passed over
    assert choose(ranked, 9, 1.5, lambda a: 1.0) == []  # a ranking needs two


def test_the_plan_follows_from_the_records_and_leaves_out_what_is_done():
    records = [rec(i, f"a{i}", 0.5 + 0.05 * i, 100 * (i + 1), seconds=10.0, train_seconds=8.0) for i in range(4)]
    config = RunConfig(objectives=OBJ, seed=3, proxy=ProxyConfig(epochs=2, subset=100, image_size=8))
    config.data = DataInfo(train_images=100, image_size=8)
    rung = Rung(1, None, 4, 8, "default", train_images=200)  # 4x the work: 2 seeds x 4 = 8 proxy trials each
    p = plan(records, config, rung, most=12, share=4.1)  # 4.1 x 4 proxy trials = 16.4: two fit
    assert (p.ratio, p.units, p.search_s) == (4.0, 4.0, 40.0)
    assert (p.budget_s, p.estimate_s) == (pytest.approx(16.4 * 8), pytest.approx(2 * 8 * 8.0))  # at 8 s a proxy trial
    assert len(p.chosen) == 2 and p.seeds == [3, 4] and len(p.todo) == 2 * PROMOTE_SEEDS and not p.by_time
    assert plan(records, config, rung, most=12, share=3.9).chosen == []  # one fits: a ranking needs two
    # 2 of the 4 front points: the line says the printed front is theirs alone, and what promotes more
    assert p.front == 4 and "fewer than the proxy front's 4 points" in plan_line(p, SearchOptions())
    assert "--promote-share" in plan_line(p, SearchOptions())
    assert "fewer than" not in plan_line(plan(records, config, rung, most=12, share=9), SearchOptions())
    capped = plan_line(plan(records, config, rung, most=2, share=9), SearchOptions(promote=2))
    assert "fewer than the proxy front's 4 points" in capped and "a larger --promote promotes more" in capped
    first = p.chosen[0]
    done = [
        rec(10, first.arch_id, 0.9, first.macs, seed=3, rung=1),
        rec(11, first.arch_id, None, first.macs, seed=4, rung=1),
    ]
    again = plan(records + done, config, rung, most=12, share=4.1)
    assert [a.arch_id for a in again.chosen] == [a.arch_id for a in p.chosen]  # the rung-1 records do not move it
    assert [(a.arch_id, s) for a, s in again.todo] == [(first.arch_id, 4)] + [(p.chosen[1].arch_id, s) for s in (3, 4)]


def test_the_plan_does_not_depend_on_measured_seconds_but_a_time_budget_shrinks_it():
    config = RunConfig(objectives=OBJ, seed=0, proxy=ProxyConfig(epochs=2, subset=100, image_size=8))
    config.data = DataInfo(train_images=100, image_size=8)
    rung = Rung(1, None, 2, 8, "default", train_images=100)  # as much work as a proxy trial: 2 a promotion
    rng = random.Random(0)
    plans = []
    for _ in range(5):  # the same run on a loaded machine and a quiet one: only the seconds differ
        records = [rec(i, f"a{i}", 0.5 + 0.05 * i, 100 * (i + 1), seconds=rng.uniform(1, 30)) for i in range(6)]
        records.append(rec(6, "s", 0.1, 50, status="stopped", epochs=1, seconds=rng.uniform(1, 30)))  # half a trial
        plans.append(plan(records, config, rung, most=12, share=1.6))  # 1.6 x 6.5 = 10.4: 5 of the 6 fit
    assert {p.units for p in plans} == {6.5} and {len(p.chosen) for p in plans} == {5}
    assert {tuple(a.arch_id for a in p.chosen) for p in plans} == {tuple(a.arch_id for a in plans[0].chosen)}
    records = [rec(i, f"a{i}", 0.5 + 0.05 * i, 100 * (i + 1), seconds=10.0) for i in range(8)]
    full = plan(records, config, rung, most=12, share=1.0)  # 8 proxy trials: 4 architectures x 2 seeds
    assert len(full.chosen) == 4 and not full.by_time
    assert len(plan(records, config, rung, most=12, share=1.0, limit_s=100.0, slots=1).chosen) == 4
    short = plan(records, config, rung, most=12, share=1.0, limit_s=45.0, slots=1)  # 4.5 proxy trials of 10 s
    assert short.by_time and [a.arch_id for a in short.chosen] == [a.arch_id for a in full.chosen[:2]]
    assert len(plan(records, config, rung, most=12, share=1.0, limit_s=45.0, slots=2).chosen) == 4
    assert plan(records, config, rung, most=12, share=1.0, limit_s=30.0, slots=1).chosen == []
    # --promote-seeds 4: each architecture costs twice as much, so half as many fit, each with 4 seeds
    steadier = plan(records, config, rung, most=12, share=1.0, n_seeds=4)
    assert [a.arch_id for a in steadier.chosen] == [a.arch_id for a in full.chosen[:2]]
    assert steadier.seeds == [0, 1, 2, 3] and len(steadier.todo) == 8
    assert steadier.estimate_s == pytest.approx(full.estimate_s)


def _four_front_points() -> tuple[list[TrialRecord], RunConfig]:
    """4 proxy trials of real architectures (the fixture run's first 4), all on the front; the proxy
    2 epochs on 100 images (no validation images)."""
    archs = {}
    for line in (FIXTURE / "trials.jsonl").read_text().splitlines():
        r = json.loads(line)
        archs.setdefault(r["arch_id"], r["arch"])
    records = [
        TrialRecord(number=i, arch_id=a, arch=archs[a], status="complete", accuracy=0.5 + 0.05 * i, macs=100 * (i + 1))
        for i, a in enumerate(list(archs)[:4])
    ]
    records = [replace(r, seconds=10.0, seed=0) for r in records]
    config = RunConfig(objectives=OBJ, seed=0, proxy=ProxyConfig(epochs=2, subset=100, image_size=8))
    config.data = DataInfo(train_images=100, image_size=8)
    return records, config


def test_rung_1_is_fitted_to_the_compute_so_that_the_proxy_front_is_promoted():
    records, config = _four_front_points()
    deploy = Rung(1, None, 8, 8, "calibration", train_images=200)  # e epochs: e proxy trials, 2e an architecture
    assert plan(records, config, deploy, most=12, share=4.0).chosen == []  # 16 proxy trials: one fits at 8 epochs
    p = fit(records, config, deploy, most=12, share=4.0)
    assert (p.rung.epochs, p.rung.fitted_from, len(p.chosen)) == (2, 8, 4)  # the whole front, at 2 epochs
    assert (
        "rung 1 trains 2 of its 8 epochs, so that the proxy front" in plan_line(p, SearchOptions())
        and "fitted from 8" in p.rung.describe()
    )
    assert (fit(records, config, deploy, most=12, share=9.0).rung.epochs, len(p.chosen)) == (
        4,
        4,
    )  # 36: the most that fit
    kept = fit(records, config, deploy, most=2, share=9.0)  # --promote 2: two fit at its 8 epochs
    assert (kept.rung, len(kept.chosen)) == (deploy, 2) and "trains" not in plan_line(kept, SearchOptions(promote=2))
    again = fit(records, config, p.rung, most=12, share=9.0)  # fitted again (no rung-1 record yet): from the 8
    assert (again.rung.epochs, again.rung.fitted_from) == (4, 8)
    # never to the proxy's fidelity: where nothing above it fits, rung 1 stays as it was and promotes none
    same_images = Rung(1, None, 4, 8, "default", train_images=100)  # e epochs: e / 2 proxy trials
    none = fit(records, config, same_images, most=12, share=1.0)  # 4 proxy trials: at 3 epochs 1 fits, 2 is the proxy
    assert (none.rung, none.chosen) == (same_images, [])


def test_the_fitted_rung_is_written_before_anything_trains_and_options_or_a_trained_rung_keep_theirs(tmp_path):
    records, config = _four_front_points()
    config.ladder = [asdict(Rung(0, 100, 2, 8, "proxy", 100)), asdict(Rung(1, None, 8, 8, "calibration", 200))]
    run = RunFolder(tmp_path / "run")
    run.write_config(config)
    for r in records:
        run.append(r)
    opts = SearchOptions(promote=12, promote_share=4.0)
    p = planned(run, run.config(), Rung.from_dict(run.config().ladder[1]), opts, None, 1)
    assert (p.rung.epochs, len(p.chosen)) == (2, 4)
    assert Rung.from_dict(run.config().ladder[1]) == p.rung  # a resume plans at the fitted rung
    run.append(replace(records[0], number=9, rung=1, epochs=2, accuracy=0.7))  # it trained: a resume keeps its rung
    wider = SearchOptions(promote=12, promote_share=9.0)
    assert planned(run, run.config(), p.rung, wider, None, 1).rung == p.rung
    option = Rung(1, None, 8, 8, "option", 200)  # --promote-epochs 8: as given, though nothing fits
    config.ladder[1] = asdict(option)
    other = RunFolder(tmp_path / "other")
    other.write_config(config)
    for r in records:
        other.append(r)
    assert planned(other, other.config(), option, opts, None, 1).rung == option
    assert other.config().ladder[1] == asdict(option)


# --------------------------------------------------------------------------- end to end


def _rung1(run: RunFolder) -> list[TrialRecord]:
    return [r for r in run.trials() if r.rung == 1]


@pytest.mark.slow
def test_a_search_promotes_is_stopped_during_the_promotion_and_resumes_it_without_retraining(tmp_path):
    args = ["--space", str(ROOT / "search_spaces" / "digits.yaml"), "--budget", "6", "--epochs", "1"]
    args += ["--subset", "300", "--race", "2", "--promote-epochs", "1", "--promote-share", "50", "--promote", "3"]
    args += ["--max-concurrent", "1", "--results-dir", str(tmp_path), "--name", "run", "--quiet"]
    run = RunFolder(tmp_path / "run")
    driver = subprocess.Popen(
        [sys.executable, "-m", "nas.search", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 400
    while time.time() < deadline and driver.poll() is None and not (run.trials_path.exists() and _rung1(run)):
        time.sleep(0.2)
    assert driver.poll() is None, driver.communicate()[1][-3000:]
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 143, err[-3000:]
    assert "promotion: 3 of the" in out and "continue with" in err
    before = run.trials_path.read_text()
    stopped = _rung1(run)
    assert 1 <= len(stopped) < 3 * PROMOTE_SEEDS, "the stop should land during the promotion"

    resumed = subprocess.run(
        [sys.executable, "-m", "nas.search", "--resume", str(run.path)], cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{3 * PROMOTE_SEEDS - len(stopped)} of {3 * PROMOTE_SEEDS} evaluations to train" in resumed.stdout
    assert run.trials_path.read_text().startswith(before)  # appended to, never rewritten
    promoted = _rung1(run)
    pairs = [(r.arch_id, r.seed) for r in promoted]
    assert len(pairs) == len(set(pairs)) == 3 * PROMOTE_SEEDS  # every one once: nothing retrained
    assert all(r.status == "complete" and r.epochs == 1 for r in promoted)
    assert len(run.trials()) - len(promoted) == before.count("\n") - len(stopped)  # no proxy trial added

    summary = json.loads((run.path / "pareto.json").read_text())
    assert summary["rung"] == 1 and {p["rung"] for p in summary["front"]} == {1}
    assert [p["arch_id"] for p in summary["front"]] == [a.arch_id for a in run.front()]
    assert {p["arch_id"] for p in summary["front"]} <= {r.arch_id for r in promoted}
    assert summary["fidelity"]["architectures"] == 3 and summary["fidelity"]["seeds"] == [0, 1]
    assert "Pareto front at rung 1 (promoted)" in resumed.stdout and "Kendall τ" in resumed.stdout
    assert run.config().ladder[1]["train_images"] > 300

    again = subprocess.run(
        [sys.executable, "-m", "nas.search", "--resume", str(run.path)], cwd=ROOT, capture_output=True, text=True
    )
    assert again.returncode == 0 and f"0 of {3 * PROMOTE_SEEDS} evaluations to train" in again.stdout
    assert len(_rung1(run)) == 3 * PROMOTE_SEEDS


@pytest.mark.parametrize(
    "options, message",
    [
        ({"promote": 1}, "--promote must be 0 .off. or at least 2"),
        ({"promote": -3}, "--promote must be 0"),
        ({"promote_share": 0}, "--promote-share must be a number > 0"),
        ({"promote_epochs": 0}, "--promote-epochs must be an int >= 1"),
        ({"promote_images": 0}, "--promote-images must be an int >= 1"),
        ({"promote_images": 2.5}, "--promote-images must be an int >= 1"),
        ({"promote_seeds": 1}, "--promote-seeds must be at least 2"),
    ],
)
def test_bad_promotion_options_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        SearchOptions(**options).checked()
    # how many and how much a resume may change; what rung 1 is, it may not
    assert {"promote", "promote_share", "promote_seeds"} <= RESUMABLE
    assert not {"promote_epochs", "promote_images"} & RESUMABLE


def test_the_noise_flags_of_a_promoted_front_use_the_noise_of_its_rung():
    # the proxy is noisy (std ~0.1): its front's neighbours are within its noise; rung 1 is quiet
    # (std ~0.001), and the same gaps there are far outside it
    points = {"a": (0.60, 100), "b": (0.62, 200), "c": (0.64, 300)}
    records = []
    for arch, (acc, macs) in points.items():
        for seed, d in enumerate((-0.1, 0.1)):
            records.append(rec(len(records), arch, acc + d, macs, seed=seed))
    proxy = Archive(OBJ)
    for r in records:
        proxy.add(r)
    assert proxy.summary(None)["seed_std"] == pytest.approx(np.std([-0.1, 0.1], ddof=1))
    for arch, (acc, macs) in points.items():
        for seed, d in enumerate((-0.001, 0.001)):
            records.append(rec(len(records), arch, acc + 0.2 + d, macs, seed=seed, rung=1))
    archive = Archive(OBJ)
    for r in records:
        archive.add(r)
    summary = archive.summary(None)
    assert summary["rung"] == 1 and summary["seed_std"] == pytest.approx(np.std([-0.001, 0.001], ddof=1))
    assert all(row["separable"] for row in summary["front"])  # rung 1's noise, not the proxy's
    from nas.search.report import noise_line

    line = noise_line(summary, Path("run"))
    assert "seed noise at rung 1, where the front was scored: accuracy std 0.14 points" in line
    assert "0 of 3 front points are within the noise" in line
