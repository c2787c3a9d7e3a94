"""Trial placement on GPUs, proven without GPUs: a local Ray cluster that declares 4 fake GPUs runs
real searches (the trials train on the CPU), and the records say which GPU ids Ray gave each trial.
Overlaps are checked from the records' start and finish times."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from nas.net.cost import training_memory_mb
from nas.net.model import create_model, default_arch
from nas.run.folder import RunFolder
from nas.tune.session import CUDA_CONTEXT_MB, GPU_GRID, gpu_fraction

ROOT = Path(__file__).resolve().parent.parent
FAST = [  # placement tests; the default promotion plans none (each would cost ~10 of their few proxy trials)
    "--space",
    "search_spaces/digits.yaml",
    "--epochs",
    "1",
    "--subset",
    "200",
    "--race",
    "1",
    "--sampler",
    "random",
]


def test_gpu_fraction_rule():
    gpu = 80_000.0
    assert gpu_fraction(10, gpu) == 1 / GPU_GRID  # a small proxy: the smallest share
    # 10 GB with 25% headroom and a CUDA context on an 80 GB GPU: 13.1 GB, two steps of 10 GB
    assert gpu_fraction(10_000, gpu) == pytest.approx(2 / GPU_GRID)
    assert gpu_fraction((gpu / GPU_GRID - CUDA_CONTEXT_MB) / 1.25, gpu) == pytest.approx(1 / GPU_GRID)  # exactly one
    assert gpu_fraction(70_000, gpu) == 1.0 and gpu_fraction(500_000, gpu) == 1.0  # never more than one GPU


def test_training_memory_grows_with_the_batch_and_covers_the_weights():
    arch = default_arch()
    model = create_model(arch)
    size = (arch.in_chans, *arch.input_size)
    small, large = training_memory_mb(model, size, 8), training_memory_mb(model, size, 64)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    assert 4 * weights < small < large


_RUNS = iter(range(10**6))


def _searcher(history: list, gpu_memory_mb: float | None = 8000.0):
    from nas.search.options import SearchOptions
    from nas.search.searcher import ArchSearcher
    from nas.search.state import RunState
    from nas.search.study import open_study
    from nas.space import load_space

    space = load_space(ROOT / "search_spaces" / "digits.yaml")
    run = RunFolder(Path(tempfile.mkdtemp(prefix="gpus-searcher-")) / f"run{next(_RUNS)}")
    run.path.mkdir()
    opts = SearchOptions(space=ROOT / "search_spaces" / "digits.yaml", sampler="random", budget=5).checked()
    study, _, _, _ = open_study(run, opts, space, history)
    return space, ArchSearcher(
        study,
        space,
        RunState(["accuracy", "macs"], history),
        {},
        seed=0,
        budget=5,
        gpu_memory_mb=gpu_memory_mb,
        batch_size=64,
    )


def test_an_out_of_memory_trial_is_retried_once_on_a_whole_gpu():
    from nas.run.folder import TrialRecord

    arch = default_arch()
    oom = TrialRecord(
        number=0,
        arch_id=arch.arch_id,
        arch=arch.to_dict(),
        status="failed",
        seed=0,
        error="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    space, searcher = _searcher([oom])
    retry = searcher.suggest("t1")
    assert retry["arch_id"] == arch.arch_id and retry["seed"] == 0 and retry["gpus"] == 1.0
    # the retry is running: not asked again; a new architecture gets its share from its memory
    fresh = searcher.suggest("t2")
    assert fresh["arch_id"] != arch.arch_id and fresh["gpus"] == 1 / GPU_GRID
    # once the retry failed too, its failure counts: no third try
    _, searcher = _searcher([oom, TrialRecord(**{**oom.__dict__, "number": 1})])
    assert searcher.suggest("t3")["arch_id"] != arch.arch_id
    # a failure that is not out-of-memory, or a search without auto, is not retried
    other = TrialRecord(**{**oom.__dict__, "error": "ValueError: bad"})
    assert _searcher([other])[1].suggest("t4")["arch_id"] != arch.arch_id
    assert _searcher([oom], gpu_memory_mb=None)[1].suggest("t5")["arch_id"] != arch.arch_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stamp(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


@pytest.fixture(scope="module")
def fake_gpu_cluster():
    """A one-node Ray cluster on 127.0.0.1 with 8 CPUs and 4 GPUs declared; stopped by killing
    only its own processes (never `ray stop`, which would take a user's Ray with it)."""
    ray = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp = tempfile.mkdtemp(prefix="rayg", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    subprocess.run(
        [
            ray,
            "start",
            "--head",
            "--port",
            str(port),
            "--num-cpus",
            "8",
            "--num-gpus",
            "4",
            "--include-dashboard",
            "false",
            "--node-ip-address",
            "127.0.0.1",
            "--temp-dir",
            temp,
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        out = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True).stdout.split()
        out += subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True, text=True).stdout.split()
        for pid in {int(p) for p in out} - {os.getpid()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def _search(tmp_path: Path, name: str, address: str, env: dict, *args: str) -> RunFolder:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nas.search",
            "--results-dir",
            str(tmp_path),
            "--name",
            name,
            "--address",
            address,
            *FAST,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return RunFolder(tmp_path / name)


@pytest.mark.slow
def test_placement_on_fake_gpus(fake_gpu_cluster, tmp_path):
    address, env = fake_gpu_cluster
    # half a GPU each: no GPU id ever holds more than two running trials, up to 8 run at once
    records = _search(tmp_path, "half", address, env, "--budget", "8", "--gpus-per-trial", "0.5").trials()
    assert len(records) == 8 and all(r.status == "complete" and len(r.gpu_ids) == 1 for r in records)
    assert all(r.device == "cpu" for r in records)  # no CUDA here: the trial trained on the CPU
    spans = {
        g: [(_stamp(r.started_at), _stamp(r.finished_at)) for r in records if g in r.gpu_ids]
        for g in {g for r in records for g in r.gpu_ids}
    }
    assert set(spans) <= {"0", "1", "2", "3"} and all(_max_overlap(s) <= 2 for s in spans.values())
    assert 2 <= _max_overlap([s for ss in spans.values() for s in ss]) <= 8
    # a whole GPU each: concurrent trials never share an id
    records = _search(tmp_path, "whole", address, env, "--budget", "4", "--gpus-per-trial", "1").trials()
    for g in {g for r in records for g in r.gpu_ids}:
        assert _max_overlap([(_stamp(r.started_at), _stamp(r.finished_at)) for r in records if g in r.gpu_ids]) == 1
    # two GPUs each: two ids
    records = _search(tmp_path, "two", address, env, "--budget", "2", "--gpus-per-trial", "2").trials()
    assert all(len(set(r.gpu_ids)) == 2 for r in records)
    # auto: small digits proxies on (declared) 8 GB GPUs get the smallest share, an eighth
    run = _search(
        tmp_path, "auto", address, env, "--budget", "4", "--gpus-per-trial", "auto", "--gpu-memory-mb", "8000"
    )
    assert all(len(r.gpu_ids) == 1 for r in run.trials())
    # more GPUs than a node has: one line, before anything runs
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nas.search",
            "--results-dir",
            str(tmp_path),
            "--name",
            "big",
            "--address",
            address,
            "--gpus-per-trial",
            "5",
            *FAST,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 2 and "--gpus-per-trial 5" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_eight_trials_in_flight_never_share_an_architecture(fake_gpu_cluster, tmp_path):
    """8 CPUs declared: up to 8 trials run at once, each a different architecture, none evaluated
    twice, with the default sampler (its proposals see the ones in flight)."""
    from nas.search.options import SearchOptions

    address, env = fake_gpu_cluster
    records = _search(
        tmp_path,
        "eight",
        address,
        env,
        "--budget",
        "24",
        "--max-concurrent",
        "8",
        "--gpus-per-trial",
        "0",
        "--sampler",
        SearchOptions().sampler,
        "--epochs",
        "3",
        "--subset",
        "400",
        "--promote",
        "0",  # the proxy search's trials alone: a promotion trains its front again, by design
    ).trials()
    assert len(records) == 24 and len({r.arch_id for r in records}) == 24
    spans = [(_stamp(r.started_at), _stamp(r.finished_at), r.arch_id) for r in records]
    assert _max_overlap([(a, b) for a, b, _ in spans]) >= 3  # really side by side (workers start one by one)
    for i, (a, b, arch) in enumerate(spans):
        assert not any(arch == other and a < d and c < b for c, d, other in spans[i + 1 :])


@pytest.mark.slow
def test_data_reaches_a_worker_once(tmp_path):
    # one worker (one trial at a time, actors reused): only its first trial fetches the data
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nas.search",
            "--results-dir",
            str(tmp_path),
            "--name",
            "run",
            "--budget",
            "4",
            "--max-concurrent",
            "1",
            *FAST,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunFolder(tmp_path / "run").trials()
    assert records[0].setup_seconds > 0 and all(r.setup_seconds < records[0].setup_seconds for r in records[1:])
