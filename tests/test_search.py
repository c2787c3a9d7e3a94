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
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml

from nas import pareto as nas_pareto
from nas.results import STUDY_NAME, RunConfig, RunFolder
from nas.space import load_space

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "search_spaces" / "digits.yaml"
FAST = ["--epochs", "1", "--subset", "300", "--race", "1"]  # ~1 s a trial, one seed each: plumbing tests


def search(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m nas.search ARGS`, on the digits space unless ARGS name a space or a run to resume."""
    space = [] if {"--space", "--resume"} & set(args) else ["--space", str(DIGITS)]
    return subprocess.run([sys.executable, "-m", "nas.search", *space, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kwargs)


def ray_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def write_space(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(DIGITS.read_text())
    edit(raw)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_small_search_writes_the_run_folder(tmp_path):
    before = ray_processes()
    proc = search("--budget", "5", "--results-dir", str(tmp_path), "--name", "run", "--seed", "3", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    config = run.config()
    assert config.objectives == ["accuracy", "macs"] and config.sampler == "tpe" and config.seed == 3
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
    assert ray_processes() <= before  # the local Ray went away with the search


def test_resume_after_kill_loses_nothing_and_retrains_nothing(tmp_path):
    args = ["--space", str(DIGITS), "--budget", "7", "--results-dir", str(tmp_path), "--name", "run",
            "--epochs", "2", "--subset", "300", "--max-concurrent", "1", "--race", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "nas.search", *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def test_racing_gives_every_front_point_three_seeds_and_optuna_their_means(tmp_path):
    proc = search("--budget", "6", "--results-dir", str(tmp_path), "--name", "run", "--seed", "5",
                  "--epochs", "1", "--subset", "300", "--race", "3")
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
    latest = [SimpleNamespace(number=i, status="complete", feasible=True, arch_id=a,
                              value=lambda o, t=t: t.values[["accuracy", "macs"].index(o)])
              for i, (a, t) in enumerate(told.items())]
    assert {p.arch_id for p in nas_pareto.front(latest, ["accuracy", "macs"])} == {
        r["arch_id"] for r in pareto_json["front"]}


def test_resume_refuses_a_changed_space(tmp_path):
    space = write_space(tmp_path, lambda raw: None)
    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(space_fingerprint=load_space(space).fingerprint,
                               options={"space": str(space), "budget": 2, "objectives": ["accuracy", "macs"]}))
    write_space(tmp_path, lambda raw: raw["stages"][1].update(channels={"choices": [32, 48]}))
    proc = search("--resume", str(run.path))
    assert proc.returncode == 2
    assert "search space changed" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_resume_refuses_changing_what_defines_the_search(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(options={"space": str(DIGITS), "seed": 0, "budget": 2}))
    proc = search("--resume", str(run.path), "--seed", "1")
    assert proc.returncode == 2 and "cannot change --seed" in proc.stderr


def test_failing_trials_are_recorded_and_bounded_by_max_failures(tmp_path):
    space = write_space(tmp_path, lambda raw: raw["proxy"].update(lr=1e30, optimizer="sgd"))  # NaN at once
    proc = search("--space", str(space), "--budget", "8", "--results-dir", str(tmp_path), "--name", "run",
                  "--max-failures", "1", "--max-concurrent", "1", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunFolder(tmp_path / "run").trials()
    assert 2 <= len(records) < 8  # stopped after the second failure, not at the budget
    assert all(r.status == "failed" and "non-finite training loss" in r.error for r in records)
    assert "more than --max-failures 1" in proc.stdout
    assert json.loads((tmp_path / "run" / "pareto.json").read_text())["front"] == []


def test_hard_limits_are_constraints_and_keep_the_front_feasible(tmp_path):
    limit = 420_000  # between the cheapest and the dearest architectures of the digits space
    proc = search("--budget", "6", "--results-dir", str(tmp_path), "--name", "run", "--max-macs", str(limit),
                  *FAST)
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


def test_a_small_space_is_exhausted_without_retraining(tmp_path):
    # One decision with two values: two architectures, however large the budget.
    def tiny(raw):
        raw["blocks"].update(op="conv", heads=2, k_att=3)
        raw["stages"][1].update(depth=1, channels=32)
        raw["stages"][0]["blocks"] = {"op": {"choices": ["conv", "acmix"]}}

    space = write_space(tmp_path, tiny)
    assert load_space(space).size == 2
    proc = search("--space", str(space), "--budget", "6", "--results-dir", str(tmp_path), "--name", "run",
                  "--sampler", "random", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunFolder(tmp_path / "run").trials()
    assert len(records) == 2 and len({r.arch_id for r in records}) == 2
    assert "exhausted" in proc.stdout


@pytest.mark.parametrize("sampler", ["gp", "nsga2", "nsga3"])
def test_every_named_sampler_runs_past_its_random_start_up(tmp_path, sampler):
    # 14 trials: past GP's 10 random start-up trials, and several NSGA generations (population 4).
    proc = search("--budget", "14", "--sampler", sampler, "--results-dir", str(tmp_path), "--name", "run",
                  "--epochs", "1", "--subset", "200", "--race", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    records = run.trials()
    assert run.config().sampler == sampler
    assert len(records) == 14 and len({r.arch_id for r in records}) == 14
    assert all(r.status == "complete" for r in records)
    study = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(told) == 14 and [t.user_attrs["arch_id"] for t in told if t.number < 3] == [
        r.arch_id for r in sorted(records, key=lambda r: r.optuna_number)][:3]


@pytest.mark.parametrize("argv,message", [
    (["--objectives", "macs", "params"], "give accuracy and at least one cost objective"),
    (["--objectives", "accuracy", "flops"], "unknown flops"),
    (["--budget", "0"], "--budget must be at least 1"),
    (["--space", "no/such.yaml"], "no/such.yaml"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "cifar10"),
    (["--resume", "/nonexistent/run"], "no such run folder"),
    pytest.param(["--gpus-per-trial", "1"], "--gpus-per-trial 1: this machine has 0 GPUs",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
    (["--cpus-per-trial", "64"], "--cpus-per-trial 64: this machine has"),
])
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


def test_search_on_an_existing_two_node_ray_cluster(tmp_path):
    ray = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    # Ray 2.60 heads require token authentication; every process of the cluster shares the token.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    head = ["--num-cpus", "1", "--num-gpus", "0", "--include-dashboard", "false", "--node-ip-address", "127.0.0.1",
            "--temp-dir", temp]
    try:
        subprocess.run([ray, "start", "--head", "--port", str(port), *head], check=True, capture_output=True,
                       env=env, timeout=120)
        subprocess.run([ray, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--num-gpus", "0",
                        "--node-ip-address", "127.0.0.1"], check=True, capture_output=True, env=env, timeout=120)
        proc = search("--budget", "4", "--results-dir", str(tmp_path), "--name", "run",
                      "--address", f"127.0.0.1:{port}", "--epochs", "5", "--race", "1", env=env)  # trials outlast a worker start
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = RunFolder(tmp_path / "run")
        assert run.config().ray == {"address": f"127.0.0.1:{port}", "nodes": 2, "cpus": 2.0}
        records = run.trials()
        assert len(records) == 4 and all(r.status == "complete" for r in records)
        assert len({r.node for r in records}) == 2  # trials ran on both nodes
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
