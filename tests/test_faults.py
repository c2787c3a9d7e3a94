"""Faults a careful user or an adversary meets, each one line and a known exit status,
and nothing recorded lost or changed: two writers of one run, SIGTERM, Ray addresses, data and
space files that moved or changed, records that parse but are wrong, file-system faults, bad
arguments. Real processes, real Ray where a search runs, real files."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from nas.run.folder import TRIALS, DataInfo, RunFolder
from nas.search.options import SearchOptions
from nas.space import load_space
from runs import copy_run

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "search_spaces" / "digits.yaml"


def nas(verb: str, *args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m nas.VERB ARGS` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", f"nas.{verb}", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        **kwargs,
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text[-3000:]
    return lines[0]


def files_of(folder: Path) -> dict[str, bytes]:
    """What a run folder holds (Ray's own folder aside), to show that nothing recorded changed."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "ray" not in p.relative_to(folder).parts and p.name != "run.lock"
    }


# --------------------------------------------------------------------------- two writers, SIGTERM, a dead worker


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _trial_worker(driver: int) -> int | None:
    """The Ray worker process of the driver's local Ray that is running a trial now."""
    for pid in _descendants(driver):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                return pid
        except OSError:
            pass
    return None


def _wait_for(what, timeout: float = 240, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_one_writer_per_run_readers_meanwhile_a_dead_worker_and_sigterm(tmp_path):
    results = tmp_path / "res ü"  # a resume command must survive being pasted into a shell
    # A budget of 8: trials finish while the readers below run, and one must still be left to kill
    # and another to stop (a failed architecture counts against the budget).
    args = [
        "--space",
        DIGITS,
        "--budget",
        "8",
        "--results-dir",
        results,
        "--name",
        "run",
        "--epochs",
        "60",
        "--subset",
        "300",
        "--race",
        "1",
        "--max-concurrent",
        "1",
    ]
    cmd = [sys.executable, "-m", "nas.search", *map(str, args)]
    # Two new runs of one name started together: one writes the run, the other is refused in one line.
    pair = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    loser = _wait_for(lambda: next((p for p in pair if p.poll() is not None), None))
    writer = pair[1 - pair.index(loser)]
    out, err = loser.communicate()
    assert loser.returncode == 2, err[-3000:]
    assert f"in use by python -m nas.search (pid {writer.pid} on {socket.gethostname()}" in one_line(err)
    run = RunFolder(results / "run")
    _wait_for(lambda: run.trials_path.is_file() and run.trials())  # the writer has recorded a trial

    # Other writers are refused at once, naming the holder and how to go on; readers work meanwhile.
    for proc in (nas("search", "--resume", run.path), nas("fidelity", run.path)):
        line = one_line(proc.stderr)
        assert proc.returncode == 2 and f"pid {writer.pid}" in line and f"kill {writer.pid}" in line, line
        assert line.endswith(f"continue with: python -m nas.search --resume {shlex.quote(str(run.path))}")
    dash = nas("dashboard", run.path, "--no-png")
    assert dash.returncode == 0 and (run.path / "dashboard.html").is_file(), dash.stderr[-3000:]

    # A trial's worker killed (the kernel's OOM killer, an admin): a failed trial with a short reason.
    worker = _wait_for(lambda: _trial_worker(writer.pid))
    os.kill(worker, signal.SIGKILL)
    failed = _wait_for(lambda: [r for r in run.trials() if r.status == "failed"])
    assert "worker process died" in failed[0].error and len(failed[0].error) < 150 and "\n" not in failed[0].error

    # SIGTERM, what a cluster's scheduler sends: running trials stop cleanly, one line, exit 143.
    _wait_for(lambda: _trial_worker(writer.pid))  # a trial is running again
    before = run.trials_path.read_bytes()
    writer.send_signal(signal.SIGTERM)
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 143, err[-3000:]
    line = one_line(err)  # neither the killed worker nor the stop left Ray's noise on stderr
    assert line.startswith("interrupted (SIGTERM); nothing recorded is lost; continue with: ")
    assert run.trials_path.read_bytes() == before  # the stopped trial is not recorded, nothing is lost
    assert not (run.path / "run.lock").read_text()  # released

    # The suggested command, pasted into a shell, finishes the run: nothing trained twice.
    resumed = subprocess.run(
        ["sh", "-c", line.split("continue with: ", 1)[1]],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = run.trials()
    assert run.trials_path.read_bytes().startswith(before) and len({r.arch_id for r in records}) == 8
    assert len({(r.arch_id, r.seed) for r in records}) == len(records)  # no (architecture, seed) twice


# --------------------------------------------------------------------------- in-process: a run resumed without training


@pytest.fixture
def cli(capsys):
    """Run a `python -m nas.VERB` main in this process, as in a process of its own (warnings about
    bad records not yet given): (exit status, stdout, stderr)."""
    from nas.run import folder as results

    handler = signal.getsignal(signal.SIGTERM)

    def run(verb: str, *argv: str | Path) -> tuple[int, str, str]:
        import importlib

        getattr(results, "_REPORTED", set()).clear()
        capsys.readouterr()  # only what this command says
        try:
            code = importlib.import_module(f"nas.{verb}").main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            code = e.code
        finally:
            signal.signal(signal.SIGTERM, handler)  # main() handles SIGTERM; pytest's own stays
        out, err = capsys.readouterr()
        return code, out, err

    return run


def resumable(src: Path, dst: Path, **options) -> RunFolder:
    """A copy of the run folder `src` that `--resume` takes up without training (its budget is the
    architectures it holds), with run.yaml as nas.search writes it for `options` (its space, data,
    options, data fingerprint)."""
    from nas.run.folder import aggregate
    from nas.search.options import proxy_changes

    run = RunFolder(copy_run(src, dst))
    shutil.copy(src / "study.journal", run.study_path)
    opts = SearchOptions(
        **{"space": DIGITS, "budget": len(aggregate(run.trials())), "race": 1, "subset": 400, **options}
    ).checked()
    space = load_space(opts.space)
    data = replace(space.proxy, **proxy_changes(opts)).checked().load_data(opts.data_dir, seed=opts.seed)
    config = run.config()
    config.options, config.space_file, config.space = opts.to_dict(), str(opts.space), space.to_dict()
    config.space_fingerprint, config.data = space.fingerprint, DataInfo.of(data)
    run.write_config(config)
    return run


def _idx(folder: Path, seed: int, n_train: int = 120) -> Path:
    """A small MNIST in its distributed IDX files: `n_train` training images, 20 test images."""
    import struct

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name, n, shape in (("train", n_train, (28, 28)), ("t10k", 20, (28, 28))):
        images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            head = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (folder / f"{name}-{kind}-ubyte").write_bytes(head + arr.tobytes())
    return folder


def test_a_run_is_bound_to_its_data(small_run, tmp_path, cli):
    data = _idx(tmp_path / "mnist", seed=0)
    run = resumable(small_run, tmp_path / "run", dataset="mnist", data_dir=data, subset=None)
    assert len(run.config().data.fingerprint) == 16
    moved = tmp_path / "elsewhere" / "mnist"
    shutil.copytree(data, moved)
    shutil.rmtree(data)
    code, out, err = cli("search", "--resume", run.path, "--data-dir", moved)  # a moved copy of the same files
    assert code == 0 and "reached" in out, err

    other = _idx(tmp_path / "other", seed=1)  # another dataset of the same name and the same sizes
    before = files_of(run.path)
    code, out, err = cli("search", "--resume", run.path, "--data-dir", other)
    line = one_line(err)
    assert code == 2 and "was searched on other data" in line and f"--data-dir {moved}" in line, line
    assert line.count("96 train / 24 val") == 2 and "fingerprint" in line  # same sizes: the fingerprint tells
    assert files_of(run.path) == before  # nothing recorded changed

    config = run.config()  # a run written before fingerprints: resumed on the same name and sizes
    config.data = replace(config.data, fingerprint="")
    run.write_config(config)
    code, out, err = cli("search", "--resume", run.path, "--data-dir", moved)
    assert code == 0, err
    smaller = _idx(tmp_path / "smaller", seed=0, n_train=60)
    code, out, err = cli("search", "--resume", run.path, "--data-dir", smaller)
    assert code == 2 and "was searched on other data" in one_line(err)


def test_a_run_resumes_from_its_stored_space_when_the_file_moved(small_run, tmp_path, cli):
    space = tmp_path / "my space.yaml"
    shutil.copy(DIGITS, space)
    run = resumable(small_run, tmp_path / "run", space=space)
    space.unlink()
    code, out, err = cli("search", "--resume", run.path)
    assert code == 0 and "reached" in out, err
    assert f"note: the space file {space} is gone; resuming with the space {run.path / 'run.yaml'} stores" in out

    changed = yaml.safe_load(DIGITS.read_text())  # the file back, but not the same space: refused as before
    changed["stages"][1]["channels"] = {"choices": [32, 48]}
    space.write_text(yaml.safe_dump(changed))
    code, out, err = cli("search", "--resume", run.path)
    assert code == 2 and "search space changed" in one_line(err)


def test_resume_names_a_missing_run_as_given(tmp_path, cli):
    code, out, err = cli("search", "--resume", "results/no-such-run", "--results-dir", tmp_path)
    assert code == 2 and one_line(err) == (
        f"error: --resume results/no-such-run: no such run folder (nor {tmp_path / 'results/no-such-run'})"
    )


# --------------------------------------------------------------------------- records that parse but are wrong


def _break_best(src: Path, dst: Path, edit) -> tuple[RunFolder, int, str]:
    """A copy of a run whose most accurate record (a front point) is edited by `edit(dict)` (which
    may return a whole line instead); returns the run, that line's number and the record's arch id."""
    run = RunFolder(copy_run(src, dst))
    shutil.copy(src / "study.journal", run.study_path)
    lines = run.trials_path.read_text().splitlines(keepends=True)
    best = max((r for r in run.trials() if r.status == "complete"), key=lambda r: r.accuracy)
    d = json.loads(lines[best.number])
    line = edit(d)
    lines[best.number] = (line if isinstance(line, str) else json.dumps(d)) + "\n"
    run.trials_path.write_text("".join(lines))
    return run, best.number + 1, best.arch_id


BAD_RECORDS = {  # what a hand edit, another version or a copy between runs leaves: (field named, edit)
    "accuracy abc": ("accuracy", lambda d: d.update(accuracy="abc")),
    "accuracy NaN": ("accuracy", lambda d: d.update(accuracy=float("nan"))),
    "accuracy 1.5": ("accuracy", lambda d: d.update(accuracy=1.5)),
    "MACs -5": ("macs", lambda d: d.update(macs=-5)),
    "params many": ("params", lambda d: d.update(params="many")),
    "arch_id null": ("arch_id", lambda d: d.update(arch_id=None)),
    "arch_id of another arch": ("arch_id", lambda d: d.update(arch_id="0123456789ab")),
    "arch that does not build": ("arch", lambda d: d["arch"].update(stages=[])),
    "unknown status": ("status", lambda d: d.update(status="done")),
    "no status": ("status", lambda d: d.pop("status") and None),
    "epochs -1": ("epochs", lambda d: d.update(epochs=-1)),
    "not JSON": ("not a JSON record", lambda d: '{"number": 3, "arch_id": '),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_a_wrong_record_is_skipped_with_one_warning_naming_file_line_and_field(small_run, tmp_path, capsys, case):
    field, edit = BAD_RECORDS[case]
    good = RunFolder(small_run).trials()
    run, line, arch_id = _break_best(small_run, tmp_path / "run", edit)
    records = run.trials()
    assert [r.number for r in records] == [r.number for r in good if r.number != line - 1]
    warning = one_line(capsys.readouterr().err)
    assert warning.startswith(f"warning: {run.trials_path}:{line}: {field}") and "record skipped" in warning
    run.trials(), run.front()
    assert capsys.readouterr().err == ""  # said once, however often it is read
    assert arch_id not in {a.arch_id for a in run.front()}  # the front leaves it out, and said so


def test_every_reader_skips_a_wrong_record_the_same_way(small_run, tmp_path, cli):
    run, line, arch_id = _break_best(small_run, tmp_path / "run", lambda d: d.update(accuracy="abc"))
    warning = f"warning: {run.trials_path}:{line}: accuracy: expected a number in [0, 1] or null, got 'abc'"
    code, out, err = cli("dashboard", run.path, "--no-png")
    assert code == 0 and one_line(err).startswith(warning), err
    code, out, err = cli("export", run.path, "--out", tmp_path / "export")
    assert code == 0 and one_line(err).startswith(warning) and arch_id not in out, err
    # a resume too: the architecture no longer counts as evaluated (a budget of the others is reached)
    run = resumable(run.path, tmp_path / "resumed")
    before = files_of(run.path)
    code, out, err = cli("search", "--resume", run.path)
    assert (
        code == 0
        and "reached" in out
        and one_line(err).startswith(warning.replace(str(tmp_path / "run"), str(tmp_path / "resumed")))
    ), err
    assert before["trials.jsonl"] == files_of(run.path)["trials.jsonl"]  # the file is never changed


# --------------------------------------------------------------------------- file-system faults


def read_only(folder: Path, cmd: list, **kwargs) -> subprocess.CompletedProcess:
    """Run `cmd` (a process of its own) with `folder` read-only: its write permissions taken away,
    or, for root (whom permissions do not stop), a read-only bind mount in a mount namespace of
    the command's own."""
    cmd = [str(c) for c in cmd]
    run = lambda c: subprocess.run(c, capture_output=True, text=True, timeout=300, cwd=ROOT, **kwargs)  # noqa: E731
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p, mode in modes.items():
            p.chmod(mode & ~0o222)
        try:
            return run(cmd)
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind -o ro {shlex.quote(str(folder))} {shlex.quote(str(folder))}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("running as root without a mount namespace: cannot make a folder read-only")
    mount = f'mount --bind -o ro {shlex.quote(str(folder))} {shlex.quote(str(folder))} && exec "$@"'
    return run(["unshare", "-m", "sh", "-c", mount, "sh", *cmd])


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["search", "resume", "dashboard", "export"])
def test_a_read_only_results_folder_is_one_line(small_run, tmp_path, verb):
    results = tmp_path / "results"
    run = resumable(small_run, results / "run")
    before = files_of(results)
    argv = {
        "search": ["search", "--space", DIGITS, "--results-dir", results, "--name", "new"],
        "resume": ["search", "--resume", run.path],
        "dashboard": ["dashboard", run.path],
        "export": ["export", run.path],
    }[verb]
    proc = read_only(results, [sys.executable, "-m", f"nas.{argv[0]}", *argv[1:]])
    line = one_line(proc.stderr)
    assert proc.returncode == 2 and str(results) in line, line
    assert ("Read-only file system" in line or "Permission denied" in line) and "Traceback" not in proc.stdout
    if verb in ("dashboard", "export"):
        assert "give --out DIR" in line
    assert files_of(results) == before and not (results / "new").exists()


def test_a_file_where_a_folder_belongs_and_a_folder_where_a_file_belongs(small_run, tmp_path, cli):
    (tmp_path / "file").write_text("")
    code, out, err = cli("search", "--space", DIGITS, "--results-dir", tmp_path / "file")
    assert (
        code == 2
        and one_line(err) == f"error: --results-dir {tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a folder"
        and not out
    )
    for name in (TRIALS, "study.journal"):
        run = resumable(small_run, tmp_path / name / "run")
        (run.path / name).unlink()
        (run.path / name).mkdir()
        before = files_of(run.path)
        code, out, err = cli("search", "--resume", run.path)
        assert code == 2 and one_line(err).startswith(f"error: {run.path / name}: not a file"), err
        assert files_of(run.path) == before and not list(run.path.glob("ray"))  # refused before Ray, before training
    for verb in ("dashboard", "export"):  # readers: one line too
        code, out, err = cli(verb, tmp_path / TRIALS / "run")
        assert code == 2 and one_line(err).startswith(f"error: {tmp_path / TRIALS / 'run' / TRIALS}: cannot read it")


NO_SPACE_AT_ALL = """
import errno, os, sys
def full(fd):
    raise OSError(errno.ENOSPC, 'No space left on device')
os.fsync = full  # every write that must reach the disk fails, as on a full disk
from nas.search import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_disk_full_from_the_start_is_one_line_and_leaves_nothing(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_SPACE_AT_ALL,
            "--space",
            str(DIGITS),
            "--results-dir",
            str(tmp_path),
            "--name",
            "run",
            "--budget",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    line = one_line(proc.stderr)
    assert (
        proc.returncode == 2
        and line == f"error: {tmp_path / 'run'}: cannot write the run folder (No space left on device)"
    ), line
    assert "None" not in line and "--resume" not in line and not any(tmp_path.iterdir())


FULL_FOR_TUNE_TOO = """
import errno, sys
import ray.train._internal.storage as storage
from nas.run.folder import RunFolder
copy, append, appends = storage._pyarrow_fs_copy_files, RunFolder.append, []
def copy_on_a_full_disk(*args, **kwargs):  # Tune saving its experiment state: full once we are
    if len(appends) >= 2:
        raise OSError(errno.ENOSPC, 'No space left on device')
    return copy(*args, **kwargs)
def append_on_a_full_disk(self, record, file='trials.jsonl'):
    appends.append(record.arch_id)
    if len(appends) >= 3:
        raise OSError(errno.ENOSPC, 'No space left on device', str(self.trials_path))
    return append(self, record, file)
storage._pyarrow_fs_copy_files, RunFolder.append = copy_on_a_full_disk, append_on_a_full_disk
from nas.search import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_disk_that_fills_under_tunes_own_state_sync_is_still_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            FULL_FOR_TUNE_TOO,
            "--space",
            str(DIGITS),
            "--budget",
            "5",
            "--results-dir",
            str(tmp_path),
            "--name",
            "run",
            "--max-concurrent",
            "1",
            "--epochs",
            "1",
            "--subset",
            "300",
            "--race",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    line = one_line(proc.stderr)  # not Tune's pyarrow tracebacks first
    assert proc.returncode == 1 and "No space left on device" in line and "--resume" in line, line
    assert len(RunFolder(tmp_path / "run").trials()) == 2


FILE_SIZE_LIMIT = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as a full disk fails one
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def _with_a_file_size_limit(limit: int, verb: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, str(limit), f"nas.{verb}", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_a_write_that_fails_in_export_or_train_is_one_line_and_keeps_the_old_folder(small_run, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.txt").write_text("the export before")
    proc = _with_a_file_size_limit(20_000, "export", small_run, "--out", out, "--force")
    line = one_line(proc.stderr)
    assert proc.returncode == 1 and "File too large; nothing was written" in line and "model.safetensors" in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["export"] and (out / "old.txt").read_text() == "the export before"

    arch = tmp_path / "arch.json"
    RunFolder(small_run).trials()[0]  # an architecture of the run
    arch.write_text(json.dumps(RunFolder(small_run).trials()[0].arch))
    ckpt = tmp_path / "ckpt"
    proc = _with_a_file_size_limit(
        20_000, "train", "--arch", arch, "--epochs", "1", "--subset", "64", "--threads", "1", "--out", ckpt
    )
    line = one_line(proc.stderr)
    assert proc.returncode == 1 and "File too large; no checkpoint was written" in line, line
    assert not ckpt.exists() and [p.name for p in tmp_path.iterdir()] == ["export", "arch.json"]


def test_a_disk_that_fills_while_pareto_json_is_written_says_the_trial_was_recorded(tmp_path, monkeypatch):
    from nas.run import folder as results
    from test_search import _recorder, _Trial

    run, rec, recorder = _recorder(tmp_path)
    write = results.write_atomic

    def full_for_pareto(path, data):
        if Path(path).name == "pareto.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, data)

    monkeypatch.setattr(results, "write_atomic", full_for_pareto)
    recorder.on_trial_complete(0, [], _Trial("t0", rec(0)))
    assert recorder.halted and recorder.disk_error.errno == errno.ENOSPC
    assert recorder.unrecorded is None and [r.arch_id for r in run.trials()] == [rec(0).arch_id]


# --------------------------------------------------------------------------- joining Ray


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_port():
    """A port where a server answers, but not as Ray's (an HTTP server)."""
    import http.server
    import threading

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.mark.slow
def test_an_address_where_no_ray_answers_is_one_line_before_any_folder(tmp_path, http_port):
    # Processes of their own with a timeout: Ray retries such an address forever (the fault itself).
    results = tmp_path / "results"
    base = ["--space", DIGITS, "--results-dir", results, "--budget", "2"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    port = _closed_port()
    proc = nas("search", *base, "--address", f"127.0.0.1:{port}", timeout=150, env=env)
    assert proc.returncode == 2 and one_line(proc.stderr) == (
        f"error: --address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); start one with "
        f"ray start --head, or leave --address out for a local Ray"
    )
    proc = nas("search", *base, "--address", f"127.0.0.1:{http_port}", timeout=150, env=env)
    assert proc.returncode == 2 and "something else listens there, not a Ray cluster" in one_line(proc.stderr)
    proc = nas("search", *base, timeout=150, env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"})  # exported
    line = one_line(proc.stderr)  # joined as --address would be, and how to ignore it
    assert proc.returncode == 2 and f"RAY_ADDRESS=127.0.0.1:{port} (exported): no Ray cluster answers there" in line
    assert "env -u RAY_ADDRESS" in line and "joining the Ray cluster at" in proc.stdout
    assert not results.exists()


@pytest.mark.slow
def test_auto_with_no_cluster_is_one_line_before_any_folder(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "RAY_TMPDIR": str(tmp_path / "ray"),
    }  # no cluster file of an earlier `ray start`
    alone = []  # Ray's 'auto' joins any cluster running on the machine (its legacy fallback): hide them
    if subprocess.run(["pgrep", "-f", "gcs_server"], capture_output=True).stdout.strip():
        alone = ["unshare", "--pid", "--fork", "--mount-proc"]  # a process namespace of its own (root)
        if subprocess.run([*alone, "true"], capture_output=True).returncode != 0:
            pytest.skip("a Ray cluster runs on this machine, and Ray's 'auto' would join it")
    proc = subprocess.run(
        [
            *alone,
            sys.executable,
            "-m",
            "nas.search",
            "--space",
            str(DIGITS),
            "--results-dir",
            str(tmp_path / "results"),
            "--address",
            "auto",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
        env=env,
    )
    line = one_line(proc.stderr)
    assert proc.returncode == 2 and line.startswith(
        "error: --address auto: cannot join a Ray cluster (Could not find any running Ray instance"
    ), line
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- arguments and inputs


def test_a_name_too_long_for_a_folder_is_one_line(tmp_path, cli):
    code, out, err = cli("search", "--name", "x" * 300, "--results-dir", tmp_path / "results")
    assert (
        code == 2
        and one_line(err) == "error: --name is 300 bytes long; a folder name takes at most 255 (give a shorter one)"
        and not (tmp_path / "results").exists()
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--epochs", "0"], "--epochs: expected an int >= 1, got 0"),
        (["--momentum", "-1"], "--momentum: expected a number in [0, 1), got -1.0"),
        (["--image-size", "100000"], "--image-size: expected an int in 1..4096, got 100000"),
        (["--device", "tpu"], "--device: expected one of auto, cpu, cuda, cuda:N, mps, got 'tpu'"),
    ],
)
def test_train_refuses_bad_numbers_and_devices_in_one_line(small_run, tmp_path, cli, argv, message):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(RunFolder(small_run).trials()[0].arch))
    code, out, err = cli("train", "--arch", arch, "--out", tmp_path / "ckpt", *argv)
    assert code == 2 and one_line(err) == f"error: {message}" and not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        ([], "the following arguments are required: run"),
        (["run", "--archs", "many"], "argument --archs: invalid int value: 'many'"),
    ],
)
def test_fidelity_argument_errors_are_one_line(cli, argv, message):
    code, out, err = cli("fidelity", *argv)
    assert code == 2 and message in one_line(err) and "usage:" not in err


@pytest.mark.slow
def test_data_preview_faults_and_arguments_are_one_line(tmp_path, cli):
    (tmp_path / "file").write_text("")
    cases = [
        (["--rows", "0"], "--rows must be in 1..32, got 0"),
        (["--rows", "-2"], "--rows must be in 1..32, got -2"),
        (["--rows", "1000", "--cols", "1000"], "--rows must be in 1..32, got 1000"),
        (["--preview", tmp_path / "grid.xyz"], f"{tmp_path / 'grid.xyz'}: unknown image format .xyz"),
        (["--preview", tmp_path], f"{tmp_path} is a folder; give a file name such as {tmp_path / 'preview.png'}"),
        (["--preview", tmp_path / "file" / "grid.png"], f"{tmp_path / 'file'}: Not a directory"),
        (["--rows", "x"], "argument --rows: invalid int value: 'x'"),
    ]
    for argv, message in cases:
        if "--preview" not in argv:
            argv = [*argv, "--preview", tmp_path / "grid.png"]
        code, out, err = cli("data", *argv)
        assert code == 2 and message in one_line(err), (argv, err)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # nothing written
    code, out, err = cli("data", "--preview", tmp_path / "grid", "--rows", "1", "--cols", "2")
    assert code == 0 and out.strip() == f"wrote {tmp_path / 'grid.png'}" and (tmp_path / "grid.png").is_file()
    proc = read_only(tmp_path, [sys.executable, "-m", "nas.data", "--preview", tmp_path / "ro.png"])
    assert proc.returncode == 2 and "nothing was written" in one_line(proc.stderr)


def test_space_files_mean_what_they_say(tmp_path, cli):
    from nas.space import SpaceError

    raw = DIGITS.read_text()
    assert "lr:" in raw
    exp = tmp_path / "exp.yaml"  # YAML 1.1 reads 1e-3 as a string; a user means a number
    exp.write_text(
        "\n".join(
            line.split("lr:")[0] + "lr: 1e-3" if line.strip().startswith("lr:") else line for line in raw.splitlines()
        )
    )
    assert load_space(exp).proxy.lr == 0.001
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        yaml.safe_dump({**yaml.safe_load(raw), "proxy": {**yaml.safe_load(raw)["proxy"], "dataset": "imagenet"}})
    )
    with pytest.raises(SpaceError) as e:
        load_space(unknown)
    assert str(unknown) in str(e.value) and "proxy.dataset" in str(e.value) and "imagenet" in str(e.value)
    code, out, err = cli("space", unknown)
    assert code == 2 and "proxy.dataset: expected one of digits" in one_line(err)


def test_an_idx_label_out_of_range_is_named_as_such(tmp_path):
    from nas.data import DataError, load_dataset

    folder = _idx(tmp_path / "mnist", seed=0)
    labels = folder / "train-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[-1] = 12
    labels.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        load_dataset("mnist", folder)
    assert "train labels must be 0..9, found 12 (1 labels out of range)" in str(e.value)


# --------------------------------------------------------------------------- a word where one is due


def test_settings_that_will_not_do_what_they_seem_get_a_note(tmp_path):
    from PIL import Image

    from nas.search.report import start_notes

    space = load_space(DIGITS)
    data = replace(space.proxy, subset=300, batch_size=512).load_data(seed=0)
    opts = SearchOptions(budget=1000).checked()
    notes = start_notes(space, data, replace(space.proxy, batch_size=512), opts)
    assert any(n.startswith("note: --budget 1000 is more than the 220 architectures of this space") for n in notes)
    assert any(n.startswith("note: the batch size 512 is more than the 300 training images") for n in notes)
    for split, n in (("train", 3), ("val", 1)):  # a dataset of 3 training images
        for i in range(n):
            (tmp_path / split / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / split / f"c{i % 2}" / f"{i}.png")
    tiny = replace(space.proxy, dataset="imagefolder", image_size=16, val_fraction=0.34, subset=None).load_data(
        tmp_path, seed=0
    )
    notes = start_notes(space, tiny, space.proxy, SearchOptions(budget=10).checked())
    assert [n for n in notes if n.startswith("warning: imagefolder gives only 2 training and 1 validation images")]
    assert all("\n" not in n for n in notes)
