"""The fidelity check: its statistics on cases with known answers, and one real tiny check on Ray."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas.dashboard import render_html
from nas.fidelity import (
    DEPLOY_RECORDS,
    DEPLOY_TEST_RECORDS,
    FIDELITY_JSON,
    FIDELITY_RECORDS,
    ArchFidelity,
    deployment,
    fidelity_stats,
    format_table,
    long_front,
    pick_archs,
    report,
    seed_values,
)
from nas.net.arch import Arch
from nas.run.folder import RunFolder, TrialRecord, aggregate
from nas.trial import TrialSettings, evaluate
from runs import copy_run

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1]


def _archs(proxy: list[list[float]], long: list[list[float]]) -> list[ArchFidelity]:
    return [
        ArchFidelity(f"a{i}", dict(zip(SEEDS, p)), dict(zip(SEEDS, q)), costs={"macs": float(i)})
        for i, (p, q) in enumerate(zip(proxy, long))
    ]


def test_a_proxy_equal_to_long_training_ranks_perfectly():
    accs = [[0.50, 0.52], [0.60, 0.61], [0.70, 0.73], [0.80, 0.80]]
    s = fidelity_stats(_archs(accs, accs), SEEDS)
    assert s["kendall_tau"] == pytest.approx(1) and s["spearman_rho"] == pytest.approx(1)
    assert s["seed0_kendall_tau"] == pytest.approx(1) and s["seed0_spearman_rho"] == pytest.approx(1)
    assert s["test_retest_tau"] == pytest.approx(1)  # the seeds rank alike
    stds = [statistics.stdev(a) for a in accs]
    assert s["proxy_seed_std"] == pytest.approx(statistics.mean(stds)) == pytest.approx(s["long_seed_std"])
    assert s["long_range"] == pytest.approx(0.80 - 0.51)
    assert s["long_range_over_seed_std"] == pytest.approx(0.29 / statistics.mean(stds))
    assert s["architectures"] == 4


def test_a_reversed_proxy_ranks_at_minus_one_and_identical_seeds_retest_at_one():
    proxy = [[0.9, 0.9], [0.8, 0.8], [0.7, 0.7], [0.6, 0.6], [0.5, 0.5]]
    long = [[0.5, 0.6], [0.6, 0.7], [0.7, 0.8], [0.8, 0.9], [0.9, 1.0]]
    s = fidelity_stats(_archs(proxy, long), SEEDS)
    assert s["kendall_tau"] == pytest.approx(-1) and s["spearman_rho"] == pytest.approx(-1)
    assert s["seed0_kendall_tau"] == pytest.approx(-1)
    assert s["test_retest_tau"] == pytest.approx(1)  # identical accuracies at both seeds
    assert s["proxy_seed_std"] == 0
    # accuracy rises with MACs: every point is on the front of accuracy vs MACs
    assert long_front(_archs(proxy, long), ["accuracy", "macs"]) == ["a0", "a1", "a2", "a3", "a4"]


def test_the_reference_test_retest_and_the_like_for_like_proxy_tau():
    # long training: seed 1 swaps the two best of seed 0; the proxy's seeds are long's seeds 0 and 0
    long = [[0.50, 0.50], [0.60, 0.60], [0.70, 0.80], [0.80, 0.70]]
    proxy = [[0.10, 0.10], [0.20, 0.20], [0.30, 0.30], [0.40, 0.40]]  # ranks like long's seed 0
    s = fidelity_stats(_archs(proxy, long), SEEDS)
    assert s["long_test_retest_tau"] == pytest.approx(4 / 6)  # 6 pairs, 5 concordant, 1 discordant
    # each proxy seed against long seed 0 (τ 1) and long seed 1 (τ 4/6): the mean of four pairs
    assert s["pair_kendall_tau"] == pytest.approx((1 + 4 / 6) / 2)
    assert s["retest_share"] == pytest.approx((1 + 4 / 6) / 2 / (4 / 6))
    assert fidelity_stats(_archs(proxy, long), [0])["long_test_retest_tau"] is None  # one seed: no retest


def test_undefined_statistics_are_none_not_nan():
    one_seed = [ArchFidelity(f"a{i}", {0: 0.5}, {0: 0.5 + i / 10}) for i in range(3)]
    s = fidelity_stats(one_seed, [0])
    assert s["kendall_tau"] is None  # a constant proxy ranks nothing
    assert s["test_retest_tau"] is None and s["proxy_seed_std"] is None and s["long_range_over_seed_std"] is None
    assert s["long_range"] == pytest.approx(0.2)


def test_picks_the_front_then_spreads_over_accuracy():
    recs = [
        TrialRecord(number=i, arch_id=f"x{i}", arch={}, status="complete", accuracy=acc, macs=100 - i, seed=0)
        for i, acc in enumerate([0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.90])
    ]
    recs.append(TrialRecord(number=8, arch_id="failed", arch={}, status="failed", seed=0))
    archs = aggregate(recs)
    front = [archs[-2]]  # pretend x7 alone is the front
    picked = [a.arch_id for a in pick_archs(archs, front, 4)]
    # the front, then the rest at accuracies 0.70 (best), 0.40 (middle), 0.10 (worst)
    assert picked == ["x7", "x6", "x3", "x0"]
    assert [a.arch_id for a in pick_archs(archs, front, 4)] == picked  # deterministic
    assert len(pick_archs(archs, front, 50)) == 8  # never the failed one


def test_seed_values_keep_the_first_complete_evaluation_of_each_seed():
    def rec(n: int, arch_id: str, seed: int, acc: float | None, status: str = "complete", epochs: int = 2):
        return TrialRecord(
            n, arch_id, {}, status, accuracy=acc, acc_per_epoch=[0.1, acc or 0.0], epochs=epochs, seed=seed
        )

    records = [
        rec(0, "b", 1, 0.6),
        rec(1, "a", 0, 0.5, status="failed"),  # failed: not an accuracy
        rec(2, "a", 0, 0.4),
        rec(3, "a", 0, 0.9),  # a rerun of seed 0: the first record wins
        rec(4, "a", 1, 0.7, epochs=3),  # other epochs
        rec(5, "a", 5, 0.8),  # not one of the seeds
        rec(6, "b", 0, 0.3),
        rec(7, "c", 0, 0.2),  # not asked for
    ]
    assert seed_values(records, ["b", "a", "z"], [0, 1], 2) == [{0: 0.3, 1: 0.6}, {0: 0.4}, {}]
    assert list(seed_values(records, ["b"], [0, 1], 2)[0]) == [0, 1]  # in seed order, whatever the records' order
    assert seed_values(records, ["a"], [0, 1], 3) == [{1: 0.7}]
    # a value that is undefined for the first record of a seed leaves the seed to the next one that has one
    first_undefined = seed_values(records, ["a"], [0], 2, lambda r: None if r.number == 2 else r.acc_per_epoch[0])
    assert first_undefined == [{0: 0.1}]


def test_ctrl_c_and_sigterm_stop_the_jobs_through_the_stopper_and_the_handlers_come_back():
    import os
    import signal

    from nas.cli import StopSignals
    from nas.tune.jobs import _OnInterrupt

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stopper = _OnInterrupt()
    with StopSignals(stopper.interrupt) as signals:  # as run_jobs sets them
        signals.catch(signal.SIGINT, signal.SIGTERM)
        received = signals.received
        assert not stopper.interrupted and not stopper.stop_all()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.interrupted and stopper.stop_all() and stopper("trial", {}) and received == [signal.SIGTERM]
        if not before[1]:  # a second: at once, as Ctrl-C where nothing else handled SIGTERM; kept in received
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
            assert received == [signal.SIGTERM, signal.SIGTERM]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def fidelity(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nas.fidelity", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


@pytest.mark.slow
def test_fidelity_check_of_a_real_run(small_run, tmp_path):
    run = RunFolder(copy_run(small_run, tmp_path / "run"))  # a copy: the other tests' run stays as it is
    proxy_epochs = run.config().proxy.epochs
    assert fidelity(str(tmp_path / "nope")).returncode == 2
    for bad_args in (
        ["--epochs", str(proxy_epochs - 1)],
        ["--epochs", str(proxy_epochs), "--same-subset"],
        ["--epochs", "three"],
    ):
        bad = fidelity(str(run.path), *bad_args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr, bad.stderr

    proc = fidelity(str(run.path), "--archs", "3", "--epochs", "3", "--seeds", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records, deployed = run.trials(FIDELITY_RECORDS), run.trials(DEPLOY_RECORDS)
    summary = json.loads((run.path / FIDELITY_JSON).read_text())
    run_records = run.trials()
    assert summary["seeds"] == [0, 1] and summary["long_epochs"] == 3 and summary["proxy_epochs"] == proxy_epochs
    assert len(summary["archs"]) == 3 and summary["architectures"] == 3
    front = [a.arch_id for a in run.front()]
    assert [a["arch_id"] for a in summary["archs"]][: len(front)] == front[:3]
    picked = {a["arch_id"] for a in summary["archs"]}
    # the run holds seed 0 of every architecture: only seed 1's proxy and both seeds' deployment ones are trained
    assert all(r.status == "complete" for r in [*records, *deployed])
    assert sorted((r.arch_id, r.seed, r.epochs) for r in deployed) == sorted(
        [(a, 0, 3) for a in picked] + [(a, 1, 3) for a in picked]
    )
    assert sorted((r.arch_id, r.seed, r.epochs) for r in records) == sorted((a, 1, proxy_epochs) for a in picked)
    assert summary["evaluations_run"] == len(records) + len(deployed) == 9 and summary["evaluations_reused"] == 3
    assert proc.stdout.count(": acc ") == 9  # a progress line per evaluation
    # deployment-like: the whole training split (the proxy trained on a 400-image subset), the same validation
    # split, the network's input size: the record is what that training gives, to the bit
    config = run.config()
    deploy = deployment(config.proxy, config.space["input_size"], 3)
    data = deploy.load_data(seed=0)
    assert summary["reference"] == "deployment" and summary["long_train_images"] == len(data.train_y) > 1000
    assert torch.equal(data.val_y, config.proxy.load_data(seed=0).val_y)
    first = next(r for r in deployed if r.seed == 0)
    torch.set_num_threads(1)
    again = evaluate(Arch.from_dict(first.arch), data, TrialSettings(proxy=deploy, num_classes=10, measure=()), seed=0)
    assert again.record.acc_per_epoch == first.acc_per_epoch
    for a in summary["archs"]:
        long = [r for r in deployed if r.arch_id == a["arch_id"]]
        proxy = [r for r in [*run_records, *records] if r.arch_id == a["arch_id"] and r.epochs == proxy_epochs]
        assert sorted(r.seed for r in long) == [0, 1] and sorted(r.seed for r in proxy) == [0, 1]
        assert all(len(r.acc_per_epoch) == 3 for r in long)
        assert a["long_accuracies"] == [next(r.accuracy for r in long if r.seed == s) for s in (0, 1)]
        assert a["proxy_accuracies"] == [next(r.accuracy for r in proxy if r.seed == s) for s in (0, 1)]
        assert a["long_mean"] == pytest.approx(statistics.mean(a["long_accuracies"]))
        assert a["long_std"] == pytest.approx(statistics.stdev(a["long_accuracies"]))
        assert a["proxy_mean"] == pytest.approx(statistics.mean(a["proxy_accuracies"]))
    assert summary["proxy_seed_std"] == pytest.approx(statistics.mean(a["proxy_std"] for a in summary["archs"]))
    assert set(summary["proxy_front_kept"]) <= set(summary["long_front"]) <= picked
    assert "long_test_retest_tau" in summary and "pair_kendall_tau" in summary
    assert "Kendall" in proc.stdout and "deployment-like training (all" in proc.stdout
    assert "deploy training's own test-retest" in proc.stdout

    # resume: nothing is trained again, the report is the same
    again = fidelity(str(run.path), "--archs", "3", "--epochs", "3", "--seeds", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "to train: 0 long and 0 proxy" in again.stdout and ": acc " not in again.stdout
    assert len(run.trials(FIDELITY_RECORDS)) + len(run.trials(DEPLOY_RECORDS)) == 9
    resumed = json.loads((run.path / FIDELITY_JSON).read_text())
    assert resumed["archs"] == summary["archs"] and resumed["kendall_tau"] == summary["kendall_tau"]
    assert resumed["long_train_images"] == summary["long_train_images"]

    # the old comparison, by a flag and labelled as what it is: longer on the proxy's subset, into fidelity.jsonl
    old = fidelity(str(run.path), "--archs", "3", "--epochs", "3", "--seeds", "2", "--same-subset")
    assert old.returncode == 0, old.stderr[-3000:]
    assert "to train: 6 long and 0 proxy" in old.stdout and "not deployment" in old.stdout
    same = json.loads((run.path / FIDELITY_JSON).read_text())
    assert same["reference"] == "same subset" and same["long_train_images"] == config.data.train_images == 400
    assert sorted((r.arch_id, r.seed) for r in run.trials(FIDELITY_RECORDS) if r.epochs == 3) == sorted(
        (a, s) for a in picked for s in (0, 1)
    )
    assert same["archs"] != summary["archs"]  # another reference, other long accuracies
    assert fidelity(str(run.path), "--archs", "3", "--epochs", "3").returncode == 0  # back to deployment: all there
    assert json.loads((run.path / FIDELITY_JSON).read_text())["archs"] == summary["archs"]

    # the dashboard's panel: the scatter of proxy vs long means, with the statistics in its title
    page, _ = render_html(run)
    assert "Does the proxy rank like deployment training?" in page and '"plot-fidelity"' in page.replace("'", '"')
    assert all(a["arch_id"] in page for a in summary["archs"])
    page_without, _ = render_html(RunFolder(small_run))
    assert "plot-fidelity" not in page_without


def test_the_continue_with_line_and_the_lock_keep_every_option(small_run, monkeypatch, capsys):
    """A stopped check's 'continue with' line, and the command its lock names to a second writer,
    are the check's own command line: --archs, --seeds and --epochs kept, not a bare RUN."""
    import nas.fidelity.cli as cli

    argv = [str(small_run), "--archs", "3", "--seeds", "2", "--epochs", "4"]
    seen = {}

    def stopped(opts, command=None):
        seen["command"] = command
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "check", stopped)
    assert cli.main(argv) == 130
    again = f"python -m nas.fidelity {small_run} --archs 3 --seeds 2 --epochs 4"
    assert seen["command"] == again
    assert capsys.readouterr().err.strip() == f"interrupted; continue with: {again}"


def test_front_agreement_is_precision_and_recall_of_the_printed_front():
    from nas.fidelity import front_agreement

    f = front_agreement(["a", "b", "c", "d"], ["b", "d", "e"])
    assert (f["precision"], f["recall"]) == (0.5, pytest.approx(2 / 3))
    assert (f["kept"], f["missed"], f["extra"]) == (["b", "d"], ["e"], ["a", "c"])
    assert front_agreement([], ["a"])["precision"] is None and front_agreement(["a"], [])["recall"] is None
    # the run's noise flags against the long front, in the report
    archs = _archs([[0.5, 0.5], [0.6, 0.6], [0.7, 0.7]], [[0.5, 0.5], [0.4, 0.4], [0.7, 0.7]])
    summary = report(archs, ["a0", "a1", "a2"], ["accuracy", "macs"], SEEDS, 1, 2, separable={"a1": True, "a2": False})
    assert summary["long_front"] == ["a0", "a2"]
    assert summary["noise_flags"] == {
        "separable": ["a1"],
        "within_noise": ["a2"],
        "separable_kept": [],
        "within_noise_kept": ["a2"],
    }
    assert summary["front_agreement"]["precision"] == pytest.approx(2 / 3)
    # deployment's own front test-retest: seed 0's front is a0, a2 (a1 below a0); seed 1's is a0, a1 (a2 below a0)
    archs = _archs([[0.5, 0.5], [0.6, 0.6], [0.7, 0.7]], [[0.6, 0.3], [0.4, 0.5], [0.7, 0.2]])
    retest = report(archs, ["a2"], ["accuracy", "macs"], SEEDS, 1, 2)["long_retest_front_agreement"]
    assert (retest["kept"], retest["missed"], retest["extra"]) == (["a0"], ["a1"], ["a2"])
    assert (retest["precision"], retest["recall"]) == (0.5, 0.5)
    assert report(archs, [], ["accuracy", "macs"], [0], 1, 2)["long_retest_front_agreement"] is None
    # with 4 seeds the retest is seeds 0, 1's front against seeds 2, 3's (a 2-seed reference a side)
    halves = [[0.6, 0.3], [0.4, 0.5], [0.7, 0.2]]  # each half's mean, as seed 0 and seed 1 above
    four = [
        ArchFidelity(f"a{i}", {0: 0.5}, {0: p, 1: p, 2: q, 3: q}, costs={"macs": float(i)})
        for i, (p, q) in enumerate(halves)
    ]
    summary = report(four, ["a2"], ["accuracy", "macs"], [0, 1, 2, 3], 1, 2)
    retest = summary["long_retest_front_agreement"]
    assert (retest["kept"], retest["missed"], retest["extra"]) == (["a0"], ["a1"], ["a2"])
    assert "(seeds 0, 1's front against seeds 2, 3's" in format_table({**summary, "reference": None})
    # what the search expected of its front, beside what was measured
    expected = {"retrain_seeds": 4, "precision": 0.71, "recall": 0.64, "points": 3, "p_front": {"a0": 0.9, "a2": 0.3}}
    summary = report(four, ["a0", "a2"], ["accuracy", "macs"], [0, 1, 2, 3], 1, 2, expected=expected)
    assert summary["expected_reproduction"] == expected and summary["long_front"] == ["a0"]  # 4-seed means tie
    table = format_table({**summary, "reference": None})
    assert (
        "the search expected its front to reproduce at precision 0.71, recall 0.64 in a retraining with 4 new seeds"
        in table
    )
    assert "P(front): 1.2 expected on the front of noise-free means, 1 on the" in table
    assert "mean P(front) 0.90 of those on it, 0.30 of those off it" in table


def test_the_report_says_whether_the_promotions_rung_ranks_the_promoted_like_the_long_training():
    long = [0.70, 0.74, 0.78, 0.82, 0.86]
    proxy = [0.50, 0.48, 0.55, 0.53, 0.60]  # τ 0.6 against the long means
    seeds = [0, 1]

    def archs(rung1: list[float], rungs: list[int]) -> list[ArchFidelity]:
        return [
            ArchFidelity(
                f"a{i}", {0: p, 1: p}, {0: q, 1: q + 0.001 * i}, costs={"macs": float(i)}, search=r, search_rung=k
            )
            for i, (p, q, r, k) in enumerate(zip(proxy, long, rung1, rungs))
        ]

    better = report(archs([0.80, 0.81, 0.83, 0.84, 0.9], [1] * 5), [], ["accuracy", "macs"], seeds, 5, 20)
    assert better["promoted"] == 5 and better["promoted_kendall_tau"] == pytest.approx(1.0)
    assert better["promoted_proxy_kendall_tau"] == pytest.approx(0.6)
    table = format_table({**better, "reference": None})
    assert "over the 5 promoted architectures of the pool" in table
    assert "Kendall τ 1.00, the proxy's with 0.60" in table and "ranks them more like the" in table
    worse = report(archs([0.84, 0.83, 0.82, 0.81, 0.9], [1] * 5), [], ["accuracy", "macs"], seeds, 5, 20)
    assert "ranks them no more like the" in format_table({**worse, "reference": None})
    # only the promoted count; a run without promotion says nothing of it
    unpromoted = report(archs([0.80, 0.81, 0.83, 0.84, 0.9], [0] * 5), [], ["accuracy", "macs"], seeds, 5, 20)
    assert unpromoted["promoted"] == 0 and unpromoted["promoted_kendall_tau"] is None
    assert "promoted architectures of the pool" not in format_table({**unpromoted, "reference": None})


def test_noise_agreement_tells_fronts_apart_only_beyond_the_seed_noise():
    from nas.fidelity import front_agreement, noise_agreement, pooled_std

    # MACs = i; two seeds 0.02 apart everywhere: sigma = 0.02 / sqrt(2), the margin between two
    # 2-seed means 2 sigma = 0.0283. The long front is a0, a1, a2, a4; a3 is 0.02 behind a2 (within
    # the noise), a5 0.05 behind a4 (beyond it).
    means = [0.80, 0.85, 0.86, 0.84, 0.90, 0.85]
    archs = _archs([[0.5, 0.5]] * 6, [[m - 0.01, m + 0.01] for m in means])
    sigma = pooled_std(a.long for a in archs)
    assert sigma == pytest.approx(0.02 / 2**0.5)
    assert long_front(archs, ["accuracy", "macs"]) == ["a0", "a1", "a2", "a4"]
    n = noise_agreement(["a0", "a1", "a5", "a4"], archs, ["accuracy", "macs"], sigma)
    assert n["held"] == ["a0", "a1", "a4"] and n["precision"] == 0.75  # a5 is beaten beyond the noise by a4
    assert n["covered"] == ["a0", "a1", "a2", "a4"] and n["recall"] == 1.0  # a2 matched by a1 within it
    assert n["gaps"] == pytest.approx({"a0": 0.0, "a1": 0.0, "a2": 0.01, "a4": 0.0}) and n["max_gap"] == pytest.approx(
        0.01
    )
    strict = front_agreement(["a0", "a1", "a5", "a4"], ["a0", "a1", "a2", "a4"])
    assert (strict["precision"], strict["recall"]) == (0.75, 0.75)  # strictly, missing a2 counts
    # a printed point within the noise of a better one is held; a gap beyond the noise is not covered
    n = noise_agreement(["a0", "a3", "a4"], archs, ["accuracy", "macs"], sigma)
    assert n["held"] == ["a0", "a3", "a4"] and n["covered"] == ["a0", "a4"]
    assert n["gaps"]["a1"] == pytest.approx(0.05) and n["max_gap"] == pytest.approx(0.06)
    # nothing printed as cheap as a0: its gap is unknown, so is the largest
    n = noise_agreement(["a4"], archs, ["accuracy", "macs"], sigma)
    assert n["gaps"]["a0"] is None and n["max_gap"] is None and n["recall"] == 0.25
    # a tighter noise separates a3 from a2 too
    assert noise_agreement(["a3"], archs, ["accuracy", "macs"], 0.005)["held"] == []
    assert noise_agreement(["a0"], archs, ["accuracy", "macs"], None) is None  # one seed: no noise to judge by
    # in the report: the printed front, and deployment's own retest at one seed a side
    summary = report(archs, ["a0", "a1", "a5", "a4"], ["accuracy", "macs"], SEEDS, 1, 2)
    assert summary["noise_agreement"]["covered"] == ["a0", "a1", "a2", "a4"]
    assert summary["long_retest_noise_agreement"]["precision"] == 1.0  # seeds shift alike: the fronts agree
    assert "within the long noise" in format_table({**summary, "architectures": 6, "reference": None})


def test_picks_the_front_then_the_next_ranks():
    # MACs rise with i; x1, x3, x5 passed as the front; among the rest x2 (0.30) dominates x4 (0.20): x0 and
    # x2 are the next rank, x4 the one after
    accs = [0.10, 0.50, 0.30, 0.60, 0.20, 0.90]
    recs = [
        TrialRecord(number=i, arch_id=f"x{i}", arch={}, status="complete", accuracy=acc, macs=10 + i, seed=0)
        for i, acc in enumerate(accs)
    ]
    archs = aggregate(recs)
    front = [a for a in archs if a.arch_id in ("x1", "x3", "x5")]  # rank 0 by construction
    picked = [a.arch_id for a in pick_archs(archs, front, 5, "ranks")]
    assert picked == ["x1", "x3", "x5", "x0", "x2"]  # the front, then the next rank by increasing MACs
    assert [a.arch_id for a in pick_archs(archs, front, 6, "ranks")][-1] == "x4"
    assert [a.arch_id for a in pick_archs(archs, front, 5)] != picked  # spread picks by accuracy instead


@pytest.mark.slow
def test_a_promoted_run_is_checked_at_its_rungs_and_scored_on_the_test_split(small_run, tmp_path):
    """In a promoted run the proxy's side of the check is rung 0 alone (a promoted evaluation at
    the same epochs is not the proxy's), the printed accuracy is the highest rung's, the report
    gives the printed front's and the proxy's own front's precision and recall; `--score-on test`
    trains on every training image, scores on the test split and keeps its own records file."""
    run = RunFolder(copy_run(small_run, tmp_path / "run"))
    epochs = run.config().proxy.epochs
    front = [a.arch_id for a in run.front()][:2]
    base = max(r.number for r in run.trials()) + 1
    lines = [json.loads(line) for line in run.trials_path.read_text().splitlines()]
    promoted = [
        {**r, "number": base + i, "rung": 1, "accuracy": 0.0123 + 0.001 * i}
        for i, r in enumerate(r for r in lines if r["arch_id"] in front and r.get("seed") == 0)
    ]
    with run.trials_path.open("a") as f:
        f.writelines(json.dumps(p) + "\n" for p in promoted)
    proc = fidelity(str(run.path), "--archs", "4", "--epochs", str(epochs), "--seeds", "1", "--pick", "ranks")
    proc = fidelity(*proc.args[3:], "--score-on", "test") if proc.returncode == 0 else proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run.path / FIDELITY_JSON).read_text())
    assert summary["scored_on"] == "test" and summary["pick"] == "ranks"
    rows = {a["arch_id"]: a for a in summary["archs"]}
    printed = [a.arch_id for a in run.front()]
    assert summary["proxy_front"] == [a for a in printed if a in rows]
    for p in promoted:  # the rung-1 accuracy is what the run prints; the proxy's column is rung 0's
        assert rows[p["arch_id"]]["search_rung"] == 1 and rows[p["arch_id"]]["search_mean"] == p["accuracy"]
        assert rows[p["arch_id"]]["proxy_accuracies"] != [p["accuracy"]]
    assert summary["rung0_front_agreement"] is not None and "precision" in summary["front_agreement"]
    flags = summary["noise_flags"]
    assert sorted(flags["separable"] + flags["within_noise"]) == sorted(summary["proxy_front"])
    assert summary["expected_reproduction"] is None  # one seed each at rung 1: no seed noise to predict from
    assert set(flags["separable_kept"]) | set(flags["within_noise_kept"]) == set(summary["proxy_front_kept"])
    tested, validated = run.trials(DEPLOY_TEST_RECORDS), run.trials(DEPLOY_RECORDS)
    assert len(tested) == len(validated) == 4 and {r.arch_id for r in tested} == set(rows)
    assert [r.accuracy for r in tested] != [r.accuracy for r in validated]  # other data, other scores
    config = run.config()
    data = deployment(config.proxy, config.space["input_size"], epochs).load_data(seed=0)
    assert summary["long_train_images"] == len(data.train_y) + len(data.val_y)
    assert "scored on the test split" in proc.stdout and "precision" in proc.stdout
    # --images: deployment-like training on a subset, in a records file of its own (a record's key has no images)
    subset = fidelity(*proc.args[3:], "--images", "300")
    assert subset.returncode == 0, subset.stderr[-3000:]
    assert len(run.trials(DEPLOY_TEST_RECORDS.replace(".jsonl", "-n300.jsonl"))) == 4
    assert json.loads((run.path / FIDELITY_JSON).read_text())["long_train_images"] == 300
    assert "a subset of 300 training images" in subset.stdout and len(run.trials(DEPLOY_TEST_RECORDS)) == 4
