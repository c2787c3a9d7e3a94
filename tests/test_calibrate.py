"""nas.calibrate: its statistics and pick on cases with known answers, and one real calibration on
Ray on the generated symmetry data (killed, repaired, resumed), whose proxy a search then takes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from nas.calibrate import CandidateResult, SignalStats, candidate_sizes, pick, signal_stats
from nas.dashboard import render_html
from nas.errors import UsageError
from nas.fidelity import default_epochs
from nas.net.arch import Arch
from nas.proxy import SIGNALS, ProxyConfig, load_proxy_file, mean_score, score
from nas.run.folder import RunFolder, TrialRecord
from nas.search.options import SearchOptions
from nas.search.report import proxy_note
from nas.space import load_space
from nas.trial import TrialSettings, evaluate

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "search_spaces" / "digits.yaml"
SYMMETRY = ROOT / "search_spaces" / "symmetry.yaml"
SEEDS = [0, 1]


# --------------------------------------------------------------------------- known answers


def test_rank_signals_read_the_last_half_of_the_epochs():
    acc, loss = [0.2, 0.5, 0.6, 0.7, 0.9], [2.0, 1.5, 1.0, 0.8, 0.6]
    assert score(acc, loss, "accuracy") == 0.9
    assert score(acc, loss, "mean_acc") == pytest.approx((0.6 + 0.7 + 0.9) / 3)  # ceil(5 / 2) = 3 epochs
    assert score(acc, loss, "train_loss") == pytest.approx(-(1.0 + 0.8 + 0.6))  # lower loss, higher score
    assert score([], [], "accuracy") is None
    runs = [
        TrialRecord(0, "a", {}, "complete", accuracy=0.9, acc_per_epoch=acc, loss_per_epoch=loss),
        TrialRecord(1, "a", {}, "complete", accuracy=0.7, acc_per_epoch=[0.5, 0.7], loss_per_epoch=[1.0, 0.5]),
    ]
    assert mean_score(runs, "accuracy") == pytest.approx(0.8)  # the architecture's mean accuracy, as the front has it
    assert mean_score(runs, "train_loss") == pytest.approx((-2.4 - 0.5) / 2)
    assert mean_score([], "accuracy") is None
    with pytest.raises(ValueError, match="unknown rank signal"):
        score(acc, loss, "val_loss")
    assert ProxyConfig.from_dict({"rank_by": "train_loss"}).rank_by == "train_loss"
    with pytest.raises(ValueError, match="rank_by"):
        ProxyConfig.from_dict({"rank_by": "loss"})
    assert "rank_by" not in ProxyConfig().to_dict()  # at its default: old spaces keep their fingerprints


def _per_seed(*columns: list[float]) -> list[dict[int, float]]:
    return [dict(zip(SEEDS, values)) for values in zip(*columns)]


def test_a_proxy_that_ranks_like_a_deployment_seed_reaches_its_test_retest_tau():
    d0, d1 = [0.60, 0.70, 0.80, 0.90, 0.95], [0.60, 0.80, 0.70, 0.90, 0.95]  # one swap: τ 0.8
    deploy = _per_seed(d0, d1)
    proxy = _per_seed([0.30, 0.40, 0.50, 0.60, 0.70], [0.31, 0.42, 0.49, 0.61, 0.70])  # ranks like seed 0
    s = signal_stats("accuracy", proxy, deploy, SEEDS, deploy_retest=0.8)
    # each proxy seed: τ 1 against deployment seed 0, 0.8 against seed 1
    assert s.tau == pytest.approx(0.9) and s.share == pytest.approx(0.9 / 0.8) and s.retest == pytest.approx(1)
    assert s.median_gap == pytest.approx(0.1)  # means 0.305, 0.41, 0.495, 0.605, 0.70: gaps .105 .085 .11 .095
    assert s.seed_std == pytest.approx((7e-5) ** 0.5) and s.noise_ratio < 1 and s.qualified
    noisy = _per_seed([0.30, 0.40, 0.50, 0.60, 0.70], [0.50, 0.60, 0.30, 0.70, 0.40])
    n = signal_stats("accuracy", noisy, deploy, SEEDS, deploy_retest=0.8)
    assert n.noise_ratio > 1 and not n.qualified  # its seeds disagree by more than the panel's gaps
    # another signal qualifies by its τ and the accuracy's noise: the front reports accuracy
    assert not signal_stats("train_loss", proxy, deploy, SEEDS, 0.8, accuracy_noise=1.5).qualified
    assert signal_stats("train_loss", proxy, deploy, SEEDS, 0.8, accuracy_noise=0.5).qualified
    reversed_ = _per_seed([0.7, 0.6, 0.5, 0.4, 0.3], [0.7, 0.6, 0.5, 0.4, 0.3])
    assert signal_stats("accuracy", reversed_, deploy, SEEDS, 0.8).tau == pytest.approx(-0.9)


def _result(
    key: str, seconds: float, taus: dict[str, float], ratio: float = 0.5, retest: float = 0.8, share_needed: float = 0.9
) -> CandidateResult:
    r = CandidateResult(
        key, 100, 1, 16, evaluations=10, expected=10, seconds=2 * seconds, cpu_seconds=seconds, cost=seconds
    )
    r.signals = {
        s: SignalStats(s, t, t / retest, t, t, 0.9, 0.01, 0.02, ratio, t >= share_needed * retest and ratio < 1)
        for s, t in taus.items()
    }
    return r


def test_the_pick_is_the_cheapest_qualifying_candidate_with_the_best_signal():
    taus = lambda a, m, l: {"accuracy": a, "mean_acc": m, "train_loss": l}  # noqa: E731, E741
    results = [
        _result("slow-good", 9.0, taus(0.80, 0.80, 0.80)),
        _result("cheap-bad", 1.0, taus(0.30, 0.35, 0.20)),
        _result("mid-good", 4.0, taus(0.75, 0.76, 0.74)),
        _result("mid-lossy", 3.0, taus(0.50, 0.40, 0.74)),
    ]
    choice = pick(results)  # mean τ: accuracy 0.5875, mean_acc 0.5775, train_loss 0.62
    assert choice["mean_tau"]["train_loss"] == pytest.approx(0.62)
    assert choice["signal"] == "train_loss" and choice["pick"] == ("mid-lossy", "train_loss")
    results[3] = _result("mid-lossy", 3.0, taus(0.50, 0.40, 0.60))  # train_loss's mean drops to 0.585
    choice = pick(results)
    assert choice["signal"] == "accuracy" and choice["pick"] == ("mid-good", "accuracy") and choice["closest"] is None
    # the cheapest candidate qualifying with another signal only, when none does with the best signal
    only_loss = [_result("a", 2.0, taus(0.5, 0.5, 0.74)), _result("b", 5.0, taus(0.6, 0.6, 0.5))]
    assert pick(only_loss)["pick"] == ("a", "train_loss")
    # none qualifies: the closest is the highest share among those below the noise bar
    none = [_result("quiet", 2.0, taus(0.5, 0.5, 0.5)), _result("loud", 1.0, taus(0.7, 0.7, 0.7), ratio=2.0)]
    assert pick(none)["pick"] is None and pick(none)["closest"] == ("quiet", "accuracy")
    incomplete = _result("x", 1.0, taus(0.9, 0.9, 0.9))
    incomplete.evaluations = 9
    assert pick([incomplete])["pick"] is None and pick([incomplete])["closest"] is None


def test_nothing_is_picked_from_candidates_measured_while_deployment_is_not():
    # every candidate's evaluations complete and costed, deployment's not (a failed deployment
    # evaluation): the candidates have no signals yet, and pick says so instead of a KeyError
    waiting = [_result("a", 1.0, {}), _result("b", 2.0, {})]
    assert all(r.complete and r.cost is not None and not r.signals for r in waiting)
    choice = pick(waiting)
    assert choice["pick"] is None and choice["closest"] is None
    assert choice["mean_tau"] == {"accuracy": None, "mean_acc": None, "train_loss": None}


def test_image_sizes_follow_the_space_strides():
    space = load_space(SYMMETRY)  # stem /2, stages /2, /1, /2: 12px still leaves 2x2
    assert candidate_sizes(space, None) == [16, 12]
    assert candidate_sizes(space, [16, 8, 4, 32]) == [16, 8]  # at 4px the last stage would stride a 1px map; 32 > input
    assert candidate_sizes(load_space(DIGITS), [16, 12, 3]) == [16, 12, 3]


def test_the_data_of_each_setting_is_loaded_by_its_key_and_missing_data_is_a_usage_error(tmp_path):
    from nas.tune.jobs import load_datasets

    proxy = replace(load_space(SYMMETRY).proxy, subset=200)
    data = load_datasets({"small": proxy, "big": replace(proxy, subset=None, image_size=12)}, None, seed=0)
    assert list(data) == ["small", "big"]
    assert len(data["small"].train_y) == 200 < len(data["big"].train_y) and data["big"].image_size == 12
    with pytest.raises(UsageError, match="cifar10"):
        load_datasets({"x": replace(proxy, dataset="cifar10")}, tmp_path / "none", seed=0)


def test_the_search_names_the_command_that_fits_an_unfitted_proxy():
    space = load_space(DIGITS)
    opts = SearchOptions(space=DIGITS, dataset="symmetry", seed=2)
    line = proxy_note(space, opts, replace(space.proxy, dataset="symmetry"), {})
    assert line.count("\n") == 0 and "fitted to digits, never to symmetry" in line
    assert f"python -m nas.calibrate --space {DIGITS} --dataset symmetry --seed 2" in line
    assert proxy_note(space, SearchOptions(space=DIGITS), space.proxy, {}) is None  # its own data: nothing to say
    # a calibration with intervals: the line says whether the pick was decided or tied, and the held-out check
    opts = SearchOptions(space=DIGITS, proxy=Path("p.yaml"))
    base = {"folder": "results/cal", "dataset": space.proxy.dataset, "space_fingerprint": space.fingerprint}
    tied = {**base, "qualified": True, "decided": False, "tied": [["a", "acc"], ["a", "loss"], ["b", "acc"]]}
    line = proxy_note(space, opts, space.proxy, {**tied, "confirmation": "confirmed"})
    assert "qualified, tied with 1 other candidate(s), the cheapest; on the held-out half: confirmed" in line
    assert "qualified, decided" in proxy_note(space, opts, space.proxy, {**base, "qualified": True, "decided": True})
    assert "decided" not in proxy_note(space, opts, space.proxy, {**base, "qualified": True})  # an older proxy.yaml


# --------------------------------------------------------------------------- a real calibration


def calibrate(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nas.calibrate", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.mark.slow
def test_calibration_end_to_end_killed_repaired_resumed_then_searched_with(tmp_path):
    args = [
        "--space",
        str(DIGITS),
        "--dataset",
        "symmetry",
        "--archs",
        "3",
        "--subsets",
        "200",
        "--epochs",
        "1",
        "2",
        "--image-sizes",
        "16",
        "12",
        "--deploy-epochs",
        "2",
        "--deploy-subset",
        "800",
        "--max-concurrent",
        "1",
        "--results-dir",
        str(tmp_path),
        "--name",
        "cal",
    ]
    folder = tmp_path / "cal"
    for bad, message in (
        (["--archs", "2"], "--archs must be at least 3"),
        (["--dataset", "cifar10", "--data-dir", str(tmp_path / "none")], "cifar10"),
        (["--subsets", "5000"], "every one is at least the 800 training images"),
    ):
        proc = calibrate(*args, *bad)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert not folder.exists()  # refused before anything is made

    # killed mid-way: what finished is kept
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.calibrate", *args],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deploy_file = folder / "evaluations" / "n800-e2-16px.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not deploy_file.is_file() or len(deploy_file.read_text().splitlines()) < 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = deploy_file.read_text()
    assert 2 <= len(kept.splitlines()) < 6, "the kill should land among the deployment evaluations"
    with deploy_file.open("a") as f:
        f.write('{"number": 9, "arch_id": "torn')  # a write cut short

    # a time budget: the torn tail is set aside, a few evaluations run, the rest waits
    budgeted = calibrate(*args, "--time-budget", "1", "--partial")
    assert budgeted.returncode == 0, budgeted.stderr[-3000:]
    assert "set aside a torn last line" in budgeted.stdout and "not trained yet" in budgeted.stdout
    assert list(folder.glob("evaluations/n800-e2-16px.jsonl.torn-*"))
    assert deploy_file.read_text().startswith(kept)  # nothing finished was lost

    # Ctrl-C: the running evaluations stop cleanly, nothing half-done is recorded, exit 130
    def lines() -> int:
        return sum(len(f.read_text().splitlines()) for f in folder.glob("evaluations/*.jsonl"))

    before = lines()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.calibrate", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and lines() < before + 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (out[-2000:], err[-2000:])
    assert f"interrupted; continue with: python -m nas.calibrate {' '.join(args)}" in err and "Traceback" not in err
    records = [r for f in folder.glob("evaluations/*.jsonl") for r in RunFolder(folder).trials(f"evaluations/{f.name}")]
    assert before + 2 <= len(records) and all(r.status == "complete" for r in records)

    full = calibrate(*args)
    assert full.returncode == 0, full.stderr[-3000:]
    report = json.loads((folder / "calibration.json").read_text())
    keys = ["n200-e1-12px", "n200-e1-16px", "n200-e2-12px", "n200-e2-16px"]
    assert sorted(c["key"] for c in report["candidates"]) == keys
    for key in [*keys, "n800-e2-16px"]:  # every evaluation exactly once: none lost, none trained twice
        records = RunFolder(folder).trials(f"evaluations/{key}.jsonl")
        assert sorted((r.arch_id, r.seed) for r in records) == sorted(
            (p["arch_id"], s) for p in report["panel"] for s in SEEDS
        ), key
        assert all(r.status == "complete" and r.epochs == int(key.split("-e")[1].split("-")[0]) for r in records)
    assert [p["name"] for p in report["panel"]] == ["all_conv", "all_acmix", "paper"]
    assert report["deploy"]["train_images"] == 800 and report["deploy"]["retest"] is not None
    assert report["cost_by"] == "cpu"  # every evaluation has its CPU time
    for c in report["candidates"]:
        assert c["evaluations"] == c["expected"] == 6 and set(c["signals"]) == set(SIGNALS)
        assert c["cost_ratio"] == pytest.approx(c["cpu_seconds"] / report["deploy"]["cpu_seconds"])
        assert 0 < c["cpu_seconds"] < 3 * c["seconds"]
    assert report["signal"] in SIGNALS and (report["pick"] or report["closest"])
    assert "deployment: 800 images x 2 epochs at 16px" in full.stdout and "mean τ" in full.stdout

    # the records are what that training gives: the candidate's subset and image size, to the bit
    c12 = RunFolder(folder).trials("evaluations/n200-e2-12px.jsonl")[0]
    data = replace(load_space(DIGITS).proxy, dataset="symmetry", subset=200, image_size=12).load_data(seed=0)
    torch.set_num_threads(1)
    two_epochs = replace(load_space(DIGITS).proxy, epochs=2)
    again = evaluate(
        Arch.from_dict(c12.arch), data, TrialSettings(proxy=two_epochs, num_classes=4, measure=()), seed=c12.seed
    )
    assert again.record.acc_per_epoch == c12.acc_per_epoch and len(data.train_y) == 200 and data.image_size == 12

    # again: nothing to train, the same report
    same = calibrate(*args)
    assert same.returncode == 0 and "to train: 0 deployment and 0 proxy evaluations" in same.stdout
    assert json.loads((folder / "calibration.json").read_text())["candidates"] == report["candidates"]
    changed = calibrate(*args[:-4], "--deploy-epochs", "3", *args[-4:])
    assert changed.returncode == 2 and "another deploy" in changed.stderr

    # the proxy file: the pick as a proxy: section a search takes, with its calibration
    proxy, calibration = load_proxy_file(folder / "proxy.yaml")
    key, signal_name = report["pick"] or report["closest"]
    assert proxy.rank_by == signal_name and proxy.dataset == "symmetry" and proxy.subset == 200
    assert f"n200-e{proxy.epochs}-{proxy.image_size}px" == key
    assert calibration["candidate"] == key and calibration["qualified"] == (report["pick"] is not None)
    with pytest.raises(UsageError, match="proxy.epochs"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({"proxy": {**proxy.to_dict(), "epochs": 0}}))
        load_proxy_file(bad)
    searched = subprocess.run(
        [
            sys.executable,
            "-m",
            "nas.search",
            "--space",
            str(DIGITS),
            "--proxy",
            str(folder / "proxy.yaml"),
            "--budget",
            "2",
            "--race",
            "1",
            "--results-dir",
            str(tmp_path),
            "--name",
            "run",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert searched.returncode == 0, searched.stderr[-3000:]
    assert f"calibrated in {folder}" in searched.stdout and "never to" not in searched.stdout
    run = RunFolder(tmp_path / "run")
    config = run.config()
    assert config.proxy == proxy and config.calibration["candidate"] == key
    assert config.calibration["file"] == str(folder / "proxy.yaml")
    assert all(r.epochs == proxy.epochs for r in run.trials()) and config.data.train_images == 200
    assert default_epochs(config) == 2  # nas.fidelity checks the run against the calibration's deployment
    page, _ = render_html(run)
    assert "The proxy's calibration" in page and all(k in page for k in keys) and "◀ this run" in page
    assert re.search(r"· [-\d.]+ \[[-\d.]+, [-\d.]+\]", page)  # a share with its bootstrap interval


def test_a_calibration_is_refused_a_folder_another_process_writes(tmp_path):
    """The run-folder lock: a live search's folder (or a second calibration's) is refused before
    anything is written into it, with one line naming the holder."""
    from nas.calibrate import CalibrateOptions, calibrate

    folder = tmp_path / "cal"
    hold = (
        "import sys, time\nfrom nas.run.lock import RunLock\n"
        "lock = RunLock(sys.argv[1], command='python -m nas.search --name cal', resume='python -m nas.search --resume cal')\n"
        "lock.acquire()\nprint('held', flush=True)\ntime.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline() == "held\n"
        opts = CalibrateOptions(
            space=DIGITS, archs=3, seeds=2, subsets=[100], epochs=[1], deploy_epochs=1, deploy_subset=200
        )
        with pytest.raises(UsageError, match="in use by python -m nas.search") as refused:
            calibrate(replace(opts, name="cal", results_dir=tmp_path))
        assert "\n" not in str(refused.value)
        assert sorted(p.name for p in folder.iterdir()) == ["run.lock"]  # nothing of the calibration's
    finally:
        holder.kill()
        holder.wait()
