"""The search end to end: real Ray Tune, real Optuna, real proxy training (tiny budgets)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml

from nas.run import pareto as nas_pareto
from nas.run.folder import STUDY_NAME, RunConfig, RunFolder
from nas.search.options import SAMPLERS
from nas.space import load_space
from runs import copy_run, record_of

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "search_spaces" / "digits.yaml"
FAST = [
    "--epochs",
    "1",
    "--subset",
    "300",
    "--race",
    "1",
]  # ~1 s a trial, one seed each: plumbing tests; the default promotion plans none (a rung-1 evaluation costs
# ~10 proxy trials of these, ~5 fitted to their 1 epoch: `nas.search.promote.fit`), so the counts are the search's


def search(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m nas.search ARGS`, on the digits space unless ARGS name a space or a run to resume."""
    space = [] if {"--space", "--resume"} & set(args) else ["--space", str(DIGITS)]
    return subprocess.run(
        [sys.executable, "-m", "nas.search", *space, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        **kwargs,
    )


def ray_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def write_space(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(DIGITS.read_text())
    edit(raw)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_small_search_writes_the_run_folder(tmp_path):
    # The search's local Ray under a temp dir of its own (RAY_TMPDIR), so that the check below sees
    # only its processes, whatever other Ray runs on the machine.
    ray_tmp = tempfile.mkdtemp(prefix="rays", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    seen, done = set(), threading.Event()

    def watch() -> None:  # what the search's Ray puts under RAY_TMPDIR while it runs
        while not done.wait(0.2):
            seen.update(p.name for p in Path(ray_tmp).iterdir())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    proc = search(
        "--budget",
        "5",
        "--results-dir",
        str(tmp_path),
        "--name",
        "run",
        "--seed",
        "3",
        *FAST,
        env={**os.environ, "RAY_TMPDIR": ray_tmp},
    )
    done.set()
    watcher.join()
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    config = run.config()
    assert config.objectives == ["accuracy", "macs"] and config.sampler == "evolution" and config.seed == 3
    assert config.space_fingerprint == load_space(DIGITS).fingerprint
    assert config.data.num_classes == 10 and config.versions["torch"]

    records = run.trials()
    assert len(records) == 5
    assert len({r.arch_id for r in records}) == 5  # no architecture trained twice
    assert {r.reference for r in records} >= {"all_conv", "all_acmix", "paper"}
    for r in records:
        assert r.status == "complete" and r.epochs == 1 and 0.0 <= r.accuracy <= 1.0
        assert r.macs > 0 and r.params > 0 and r.latency_ms > 0 and r.memory_mb is not None
        assert run.weights_path(r.arch_id).is_file() and r.weights == f"weights/{r.arch_id}.safetensors"
        assert r.acc_per_epoch == [r.accuracy]

    # The front in pareto.json is the Optuna study's own Pareto set.
    pareto = json.loads((run.path / "pareto.json").read_text())
    study = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 5
    assert {t.user_attrs["arch_id"] for t in study.best_trials} == {p["arch_id"] for p in pareto["front"]}
    assert pareto["hypervolume"] > 0
    # The terminal ends with the front.
    assert "Pareto front:" in proc.stdout and all(p["arch_id"] in proc.stdout for p in pareto["front"])
    assert any(name.startswith("nas-ray-") for name in seen), "the search's Ray did not use RAY_TMPDIR"
    assert not _processes_under(ray_tmp)  # the local Ray went away with the search
    assert not list(Path(ray_tmp).iterdir())  # and its temporary folder with it
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
def test_resume_after_kill_loses_nothing_and_retrains_nothing(tmp_path):
    args = [
        "--space",
        str(DIGITS),
        "--budget",
        "7",
        "--results-dir",
        str(tmp_path),
        "--name",
        "run",
        "--epochs",
        "2",
        "--subset",
        "300",
        "--max-concurrent",
        "1",
        "--race",
        "1",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.search", *args],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trials = tmp_path / "run" / "trials.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not trials.is_file() or len(trials.read_text().splitlines()) < 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, mid-run
    proc.wait()
    before = RunFolder(tmp_path / "run").trials()
    assert 2 <= len(before) < 7, "the kill should land mid-run"

    resumed = search("--resume", str(tmp_path / "run"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    after = RunFolder(tmp_path / "run").trials()
    assert [r.arch_id for r in after[: len(before)]] == [r.arch_id for r in before]  # nothing lost
    assert len(after) == 7
    assert len({r.arch_id for r in after}) == 7  # nothing trained twice
    study = optuna.load_study(study_name=STUDY_NAME, storage=RunFolder(tmp_path / "run").storage())
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.mark.slow
def test_racing_gives_every_front_point_three_seeds_and_optuna_their_means(tmp_path):
    proc = search(
        "--budget",
        "6",
        "--results-dir",
        str(tmp_path),
        "--name",
        "run",
        "--seed",
        "5",
        "--epochs",
        "1",
        "--subset",
        "300",
        "--race",
        "3",
        "--promote",
        "0",  # the proxy's front, as racing left it (its re-evaluations would pay for a fitted rung 1)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    records = run.trials()
    archs = {r.arch_id for r in records}
    assert len(archs) == 6 and len(records) > 6  # the budget counts architectures; re-evaluations on top
    for arch_id in archs:  # evaluation k of an architecture has seed 5 + k: no seed twice
        seeds = [r.seed for r in records if r.arch_id == arch_id]
        assert sorted(seeds) == list(range(5, 5 + len(seeds)))
    pareto_json = json.loads((run.path / "pareto.json").read_text())
    assert pareto_json["seed_std"] is not None and pareto_json["architectures"] == 6
    for row in pareto_json["front"]:
        accs = [r.accuracy for r in records if r.arch_id == row["arch_id"]]
        assert row["seeds"] == len(accs) >= 3 and row["accuracy"] == pytest.approx(sum(accs) / len(accs))
        assert row["accuracy_se"] == pytest.approx(statistics.stdev(accs) / len(accs) ** 0.5)
        assert f"{row['arch_id']}  {row['accuracy']:.4f} ± {row['accuracy_se']:.4f} ({row['seeds']:>2})" in proc.stdout
    assert "seed noise: accuracy std" in proc.stdout and "python -m nas.fidelity" in proc.stdout
    # the last pareto.json says how the front would reproduce, and so does the last line
    again = pareto_json["reproduction"]
    assert again["retrain_seeds"] == 2 and again["points"] >= len(pareto_json["front"])
    assert f"about {again['precision']:.2f} of its points would stay on the front" in proc.stdout
    assert all(0 <= row["p_front"] <= 1 for row in pareto_json["front"])
    # Optuna was told each architecture's mean over its seeds, once it wanted no more seeds
    study = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())
    told = {}
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            told[t.user_attrs["arch_id"]] = t  # the last word on an architecture counts
    for row in pareto_json["front"]:
        assert told[row["arch_id"]].values[0] == pytest.approx(row["accuracy"])
        assert told[row["arch_id"]].user_attrs["seeds"] == row["seeds"]
    # Optuna's latest word on each architecture gives the same front (an earlier single-seed word on
    # an architecture raced later stays in the study: Optuna cannot re-tell a finished trial)
    latest = [
        SimpleNamespace(
            number=i,
            status="complete",
            feasible=True,
            arch_id=a,
            value=lambda o, t=t: t.values[["accuracy", "macs"].index(o)],
        )
        for i, (a, t) in enumerate(told.items())
    ]
    assert {p.arch_id for p in nas_pareto.front(latest, ["accuracy", "macs"])} == {
        r["arch_id"] for r in pareto_json["front"]
    }


@pytest.mark.slow
def test_resume_refuses_a_changed_space(tmp_path):
    space = write_space(tmp_path, lambda raw: None)
    run = RunFolder(tmp_path / "run")
    run.write_config(
        RunConfig(
            space_fingerprint=load_space(space).fingerprint,
            options={"space": str(space), "budget": 2, "objectives": ["accuracy", "macs"]},
        )
    )
    write_space(tmp_path, lambda raw: raw["stages"][1].update(channels={"choices": [32, 48]}))
    proc = search("--resume", str(run.path))
    assert proc.returncode == 2
    assert "search space changed" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_resume_refuses_changing_what_defines_the_search(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(options={"space": str(DIGITS), "seed": 0, "budget": 2}))
    proc = search("--resume", str(run.path), "--seed", "1")
    assert proc.returncode == 2 and "cannot change --seed" in proc.stderr


@pytest.mark.slow
def test_failing_trials_are_recorded_and_bounded_by_max_failures(tmp_path):
    space = write_space(tmp_path, lambda raw: raw["proxy"].update(lr=1e30, optimizer="sgd"))  # NaN at once
    proc = search(
        "--space",
        str(space),
        "--budget",
        "8",
        "--results-dir",
        str(tmp_path),
        "--name",
        "run",
        "--max-failures",
        "1",
        "--max-concurrent",
        "1",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunFolder(tmp_path / "run").trials()
    assert 2 <= len(records) < 8  # stopped after the second failure, not at the budget
    assert all(r.status == "failed" and "non-finite training loss" in r.error for r in records)
    assert "more than --max-failures 1" in proc.stdout
    assert json.loads((tmp_path / "run" / "pareto.json").read_text())["front"] == []


@pytest.mark.slow
def test_hard_limits_are_constraints_and_keep_the_front_feasible(tmp_path):
    limit = 420_000  # between the cheapest and the dearest architectures of the digits space
    proc = search("--budget", "6", "--results-dir", str(tmp_path), "--name", "run", "--max-macs", str(limit), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    records = run.trials()
    over = [r for r in records if r.macs > limit]
    assert over and all(r.status == "infeasible" and r.epochs == 0 and r.accuracy is None for r in over)
    assert all(r.constraints == [r.macs - limit] for r in records)
    assert all(r.macs <= limit for r in run.front())
    study = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())
    assert all(t.user_attrs["constraints"][0] <= 0 for t in study.best_trials)
    assert {t.user_attrs["arch_id"] for t in study.best_trials} == {r.arch_id for r in run.front()}


@pytest.mark.slow
def test_a_small_space_is_exhausted_without_retraining(tmp_path):
    # One decision with two values: two architectures, however large the budget.
    def tiny(raw):
        raw["blocks"].update(op="conv", heads=2, k_att=3)
        raw["stages"][1].update(depth=1, channels=32)
        raw["stages"][0]["blocks"] = {"op": {"choices": ["conv", "acmix"]}}

    space = write_space(tmp_path, tiny)
    assert load_space(space).size == 2
    proc = search(
        "--space",
        str(space),
        "--budget",
        "6",
        "--results-dir",
        str(tmp_path),
        "--name",
        "run",
        "--sampler",
        "random",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunFolder(tmp_path / "run").trials()
    assert len(records) == 2 and len({r.arch_id for r in records}) == 2
    assert "exhausted" in proc.stdout


@pytest.mark.slow
def test_the_time_budget_starts_nothing_new_and_records_what_was_running(tmp_path):
    # trials of several seconds (3 epochs) and a budget that ends while two of them run
    proc = search(
        "--budget",
        "100",
        "--time-budget",
        "4",
        "--results-dir",
        str(tmp_path),
        "--name",
        "run",
        "--epochs",
        "3",
        "--subset",
        "600",
        "--race",
        "1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    records = run.trials()
    assert 1 <= len(records) < 100 and all(r.status == "complete" for r in records)  # none killed
    assert all(r.epochs == 3 for r in records)  # each ran to its end
    study = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())
    started = [t for t in study.trials if t.user_attrs.get("arch_id")]
    assert len(started) == len(records)  # every architecture started was recorded, none left behind
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in started)
    assert f"stopped at {len(records)}/100 architectures; continue with" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_named_sampler_runs_past_its_random_start_up(tmp_path, sampler):
    # 14 trials: past GP's 10 random start-up trials, and several NSGA generations (population 4).
    proc = search(
        "--budget",
        "14",
        "--sampler",
        sampler,
        "--results-dir",
        str(tmp_path),
        "--name",
        "run",
        "--epochs",
        "1",
        "--subset",
        "200",
        "--race",
        "1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    records = run.trials()
    assert run.config().sampler == sampler
    assert len(records) == 14 and len({r.arch_id for r in records}) == 14
    assert all(r.status == "complete" for r in records)
    study = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert (
        len(told) == 14
        and [t.user_attrs["arch_id"] for t in told if t.number < 3]
        == [r.arch_id for r in sorted(records, key=lambda r: r.optuna_number)][:3]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,message",
    [
        (["--objectives", "macs", "params"], "give accuracy and at least one cost objective"),
        (["--objectives", "accuracy", "flops"], "unknown flops"),
        (["--budget", "0"], "--budget must be at least 1"),
        (["--space", "no/such.yaml"], "no/such.yaml"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "cifar10"),
        (["--resume", "/nonexistent/run"], "no such run folder"),
        pytest.param(
            ["--gpus-per-trial", "1"],
            "--gpus-per-trial 1: this machine has 0 GPUs",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
        (["--cpus-per-trial", "64"], "--cpus-per-trial 64: this machine has"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, message):
    proc = search(*argv, "--results-dir", str(tmp_path))
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing half-made left behind


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(temp: str) -> set[int]:
    """The processes of a Ray cluster started with --temp-dir TEMP: each names its session folder."""
    out = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()} - {os.getpid()}


def _stop_cluster(temp: str) -> None:
    """Stop the cluster this test started, and nothing else (not `ray stop`, which stops every Ray
    process of the machine, a user's search included)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _processes_under(temp)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 15
        while _processes_under(temp) and time.time() < deadline:
            time.sleep(0.2)


@pytest.mark.slow
def test_search_on_an_existing_two_node_ray_cluster(tmp_path):
    ray = str(Path(sys.executable).with_name("ray"))
    others = ray_processes()  # Ray processes this test did not start: they must survive it
    port = _free_port()
    # Ray 2.60 heads require token authentication; every process of the cluster shares the token.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    head = [
        "--num-cpus",
        "1",
        "--num-gpus",
        "0",
        "--include-dashboard",
        "false",
        "--node-ip-address",
        "127.0.0.1",
        "--temp-dir",
        temp,
    ]
    try:
        subprocess.run(
            [ray, "start", "--head", "--port", str(port), *head], check=True, capture_output=True, env=env, timeout=120
        )
        subprocess.run(
            [
                ray,
                "start",
                "--address",
                f"127.0.0.1:{port}",
                "--num-cpus",
                "1",
                "--num-gpus",
                "0",
                "--node-ip-address",
                "127.0.0.1",
            ],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
        raylets = {
            int(p) for p in subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True).stdout.split()
        }
        assert len(raylets & _processes_under(temp)) == 2  # both nodes live under the test's temp dir
        proc = search(
            "--budget",
            "4",
            "--results-dir",
            str(tmp_path),
            "--name",
            "run",
            "--address",
            f"127.0.0.1:{port}",
            "--epochs",
            "5",
            "--race",
            "1",
            env=env,
        )  # trials outlast a worker start
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = RunFolder(tmp_path / "run")
        assert run.config().ray == {"address": f"127.0.0.1:{port}", "nodes": 2, "cpus": 2.0}
        records = run.trials()
        assert len(records) == 4 and all(r.status == "complete" for r in records)
        assert len({r.node for r in records}) == 2  # trials ran on both nodes
    finally:
        mine = _processes_under(temp)
        _stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)
    assert not mine & others  # no other Ray process was signalled
    assert not _processes_under(temp)  # and the test's cluster is gone


# --------------------------------------------------------------------------- refused before anything starts


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--epochs", "-1"], "--epochs: expected an int >= 1, got -1"),
        (["--epochs", "0"], "--epochs: expected an int >= 1, got 0"),
        (["--batch-size", "0"], "--batch-size: expected an int >= 1"),
        (["--subset", "0"], "--subset: expected"),
        (["--subset", "-5"], "--subset: expected"),
        (["--subset", "300.5"], "--subset: a count of images must be a whole number"),
        (["--budget", "-3"], "--budget must be at least 1"),
        (["--time-budget", "0"], "--time-budget must be a number of seconds > 0"),
        (["--time-budget", "nan"], "--time-budget must be a number of seconds > 0"),
        (["--max-macs=-2M"], "--max-macs must be > 0"),
        (["--max-params", "0"], "--max-params must be > 0"),
        (["--max-latency-ms", "inf"], "--max-latency-ms: not a finite number"),
        (["--max-concurrent", "0"], "--max-concurrent must be an int >= 1"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
        (["--gpus-per-trial", "-1"], "--gpus-per-trial must be a number >= 0"),
        (["--max-failures", "-1"], "--max-failures must be an int >= 0"),
        (["--seed", "-1"], "--seed must be an int >= 0"),
        (["--name", "../escape"], "--name '../escape': give a plain folder name"),
        (["--name", "a/b"], "--name 'a/b': give a plain folder name"),
        (["--name", ".."], "--name '..': give a plain folder name"),
        (["--budget", "ten"], "argument --budget: invalid int value: 'ten'"),  # argparse's own errors
        (["--sampler", "cmaes"], "argument --sampler: invalid choice: 'cmaes'"),
        (["--max-macs", "2X"], "argument --max-macs: not a number: '2X'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_values_are_refused_before_anything_starts(tmp_path, capsys, monkeypatch, argv, message):
    import nas.search
    import nas.search.driver

    def no_ray(*a, **k):
        raise AssertionError("Ray must not start for a bad value")

    monkeypatch.setattr(nas.search.driver, "_search", no_ray)  # nothing past the checks may run
    try:
        code = nas.search.main([*argv, "--results-dir", str(tmp_path / "results")])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "results").exists()  # no folder made


def test_amounts_parse_alike_in_search_and_export():
    from nas.cli import amount
    from nas.export.cli import _parser
    from nas.search import SearchOptions, build_parser

    opts = SearchOptions.from_dict(vars(build_parser().parse_args(["--max-macs", "2M", "--max-params", "50k"])))
    assert opts.checked().limits == {"macs": 2e6, "params": 5e4}
    assert _parser().parse_args(["run", "--max-macs", "2M"]).max_macs == 2e6 == amount("2M") == amount("2e6")
    assert SearchOptions(max_macs="1.5k").checked().max_macs == 1500.0  # nas.search.run(max_macs='1.5k')


def test_long_trials_are_announced_with_how_to_shorten_them():
    from nas.search.report import LONG_TRIAL, long_trial_note

    assert long_trial_note(1150, 10) is None  # digits: seconds a trial
    note = long_trial_note(48_000, 10)  # Fashion-MNIST from disk: minutes a trial
    assert "48,000 images x 10 epochs" in note and "--subset 10000" in note and "--epochs 2" in note
    assert 10000 * 10 <= LONG_TRIAL and "\n" not in note


# --------------------------------------------------------------------------- the recorder: full disk, progress


class _Trial:
    """What Tune hands a callback about a trial: id, config, last result."""

    def __init__(self, trial_id, record, final=True):
        from dataclasses import asdict

        self.trial_id = trial_id
        self.config = {
            "arch_id": record.arch_id,
            "arch": record.arch,
            "seed": 0,
            "optuna_number": record.number,
            "optuna_params": {},
        }
        self.last_result = {
            "final": final,
            "accuracy": record.accuracy,
            "epoch": record.epochs,
            "record": asdict(record),
        }


def _recorder(tmp_path, **kw):
    from nas.search.recorder import Recorder
    from nas.search.state import RunState

    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(objectives=["accuracy", "macs"]))

    def rec(i):
        return record_of(i, accuracy=0.9, epochs=4, acc_per_epoch=[0.9], seconds=2.0, train_seconds=2.0)

    return run, rec, Recorder(run, RunState(["accuracy", "macs"]), budget=5, **kw)


def test_a_full_disk_stops_the_search_cleanly_and_records_nothing_as_failed(tmp_path, monkeypatch, capsys):
    import errno

    from nas.run.folder import RunFolder as RF
    from nas.search.recorder import HaltStopper

    run, rec, recorder = _recorder(tmp_path)
    recorder.on_trial_complete(0, [], _Trial("t0", rec(0)))
    assert [r.number for r in run.trials()] == [0]

    def full(self, record, file=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.trials_path))

    monkeypatch.setattr(RF, "append", full)
    recorder.on_trial_complete(0, [], _Trial("t1", rec(1)))  # trained fully; the disk is full: no traceback
    monkeypatch.undo()
    assert recorder.disk_error.errno == errno.ENOSPC and recorder.unrecorded == rec(1).arch_id
    assert HaltStopper(recorder).stop_all()  # Tune stops every trial
    recorder.on_trial_complete(0, [], _Trial("t2", rec(2), final=False))  # stopped by that: not recorded
    recorder.on_trial_error(0, [], _Trial("t3", rec(3)))
    records = run.trials()
    assert [r.number for r in records] == [0] and not any(r.status == "failed" for r in records)
    assert recorder.failures == 0 and not list(run.path.rglob("*.tmp"))


def test_a_trial_that_fails_on_a_full_disk_is_not_counted_as_failed(tmp_path):
    run, rec, recorder = _recorder(tmp_path)
    trial = _Trial("t0", rec(0))
    trial.error_msg = "OSError: [Errno 28] No space left on device: '/tmp/ray/checkpoint'"
    recorder.on_trial_error(0, [], trial)
    assert recorder.halted and recorder.failures == 0 and run.trials() == []


def test_progress_of_running_trials(tmp_path, capsys):
    from nas.search.progress import PROGRESS_EVERY

    run, rec, recorder = _recorder(tmp_path, epochs=4)
    progress = recorder.progress  # the display, a Tune callback of its own
    progress.tty = False
    trial = _Trial("t0", rec(0), final=False)
    result = {"epoch": 2, "accuracy": 0.5, "record": {"train_seconds": 10.0}}
    progress._shown -= PROGRESS_EVERY + 1
    progress.on_trial_result(0, [], trial, result)
    progress.on_trial_result(0, [], trial, {**result, "epoch": 3})  # within PROGRESS_EVERY: no line
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "\r" not in out
    assert f"{rec(0).arch_id} epoch 2/4 acc 0.500 ~0:00:10" in out and "run ~" in out

    progress.tty = True  # on a terminal: one line, updated in place
    progress._shown -= 1
    progress.on_trial_result(0, [], trial, {**result, "epoch": 3})
    out = capsys.readouterr().out
    assert out.startswith("\r\x1b[K") and "\n" not in out and "epoch 3/4" in out
    recorder.on_trial_complete(0, [], _Trial("t0", rec(0)))  # the finished line replaces the status line
    out = capsys.readouterr().out
    assert out.startswith("\r\x1b[K[   1/5]") and out.endswith("\n")

    _, _, quiet = _recorder(tmp_path / "q", epochs=4, quiet=True)
    quiet.progress._shown -= PROGRESS_EVERY + 1
    quiet.progress.on_trial_result(0, [], trial, result)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- the study agrees with trials.jsonl


def _study_of(folder, records, budget=20):
    from nas.search import SearchOptions
    from nas.search.study import open_study

    opts = SearchOptions(space=DIGITS, sampler="random", budget=budget).checked()
    return open_study(folder, opts, load_space(DIGITS), records)


def test_a_missing_or_stale_journal_is_rebuilt_from_trials_jsonl(small_run, tmp_path):
    records = RunFolder(small_run).trials()
    run = RunFolder(copy_run(small_run, tmp_path / "half", n_lines=4))  # no study.journal
    study, stale, queue, notes = _study_of(run, run.trials())
    assert len(notes) == 1 and "missing; rebuilt from trials.jsonl (4 architectures" in notes[0]
    shutil.copy(small_run / "trials.jsonl", run.trials_path)  # the journal now lacks 4 finished trials
    run_study, stale, queue, notes = _study_of(run, records)
    assert len(notes) == 1 and "stale (4 of the 8 finished trials absent)" in notes[0]
    study = run_study.journal
    assert [t.params for t in run_study.work.trials] == [t.params for t in study.trials]  # the working copy
    by_arch = {t.user_attrs["arch_id"]: t for t in study.trials}
    assert set(by_arch) == {r.arch_id for r in records}
    states = {"complete": "COMPLETE", "infeasible": "COMPLETE", "stopped": "PRUNED", "failed": "FAIL"}
    assert all(by_arch[r.arch_id].state.name == states[r.status] for r in records)
    front = {r.arch_id for r in RunFolder(small_run).front()}
    assert {t.user_attrs["arch_id"] for t in study.best_trials} == front  # the sampler sees what was done
    assert _study_of(run, records)[3] == []  # nothing more to rebuild
    for line in notes:
        assert "\n" not in line


def test_a_damaged_journal_is_moved_aside_and_rebuilt(small_run, tmp_path):
    run = RunFolder(copy_run(small_run, tmp_path / "run"))
    shutil.copy(small_run / "study.journal", run.study_path)
    lines = run.study_path.read_bytes().split(b"\n")
    run.study_path.write_bytes(b"\n".join(lines[:3] + [b"{broken"] + lines[3:]))  # broken in the middle
    study, _, _, notes = _study_of(run, run.trials())
    assert "unreadable" in notes[0] and list(run.path.glob("study.journal.damaged-*"))
    assert len([t for t in study.journal.trials if t.state.is_finished()]) == 8


def test_an_architecture_started_but_not_recorded_is_evaluated_first_on_resume(small_run, tmp_path):
    run = RunFolder(copy_run(small_run, tmp_path / "run"))
    shutil.copy(small_run / "study.journal", run.study_path)
    space = load_space(DIGITS)
    study, _, queue, _ = _study_of(run, run.trials())
    done = {r.arch_id for r in run.trials()}
    _, arch, _, _ = study.ask()  # a trial the full disk (or a kill) kept out of trials.jsonl: asked, never recorded
    lost = arch.arch_id
    assert lost not in done  # the sampler proposes only architectures not seen
    study, stale, queue, _ = _study_of(run, run.trials())
    assert stale == 1 and [space.point(p).arch_id for p in queue][:1] == [lost]  # evaluated first


# --------------------------------------------------------------------------- real searches: crash, full disk, resume


@pytest.mark.slow
def test_resume_after_a_torn_tail_and_a_lost_journal_loses_nothing(tmp_path):
    proc = search("--budget", "3", "--results-dir", str(tmp_path), "--name", "run", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    lines = run.trials_path.read_bytes().splitlines(keepends=True)
    torn = lines[-1][:60]
    run.trials_path.write_bytes(b"".join(lines[:-1]) + torn)  # the last record cut in half
    run.study_path.unlink()  # and the study lost
    kept = [r.arch_id for r in run.trials()]
    assert len(kept) == 2

    resumed = search("--resume", str(run.path), "--budget", "5")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "set aside a torn last line" in resumed.stdout and "missing; rebuilt from trials.jsonl" in resumed.stdout
    after = run.trials()
    assert [r.arch_id for r in after[:2]] == kept and len(after) == 5  # nothing lost
    assert len({r.arch_id for r in after}) == 5  # nothing trained twice
    assert [p.read_bytes() for p in run.path.glob("trials.jsonl.torn-*")] == [torn]
    study = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())
    told = [t.user_attrs["arch_id"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(told) == sorted(r.arch_id for r in after)


ENOSPC_ON_THIRD_APPEND = """
import errno, sys
from nas.run.folder import RunFolder
append, calls = RunFolder.append, []
def full_disk(self, record):
    calls.append(record.arch_id)
    if len(calls) == 3:
        raise OSError(errno.ENOSPC, 'No space left on device', str(self.trials_path))
    return append(self, record)
RunFolder.append = full_disk
from nas.search import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_full_disk_stops_cleanly_and_resume_finishes_that_trial(tmp_path):
    args = [
        "--space",
        str(DIGITS),
        "--budget",
        "4",
        "--results-dir",
        str(tmp_path),
        "--name",
        "run",
        "--max-concurrent",
        "1",
        *FAST,
    ]
    proc = subprocess.run(
        [sys.executable, "-c", ENOSPC_ON_THIRD_APPEND, *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "--resume" in err, err
    assert "Traceback" not in proc.stderr
    run = RunFolder(tmp_path / "run")
    before = run.trials()
    assert len(before) == 2 and all(r.status == "complete" for r in before)
    assert not list(run.path.rglob("*.tmp"))
    lost = err.split(" trained but not recorded")[0].split("(")[-1]
    assert lost and lost not in {r.arch_id for r in before}

    resumed = search("--resume", str(run.path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = run.trials()
    assert [r.arch_id for r in after[:2]] == [r.arch_id for r in before] and len(after) == 4
    assert after[2].arch_id == lost and after[2].status == "complete"  # finished first, not failed
    assert len({r.arch_id for r in after}) == 4
