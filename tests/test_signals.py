"""Stops as clusters send them, and a Ray that dies under a command: nas.search, nas.fidelity and
nas.calibrate each started in a session of their own (as `timeout`, Slurm, systemd and `docker
stop` see a job) and sent SIGTERM to the whole process group, once or twice; or a process of
their local Ray (the raylet, the GCS) killed. Each ends with one line (the command that continues)
and its exit status, nothing recorded is lost, and no process of its Ray is left running. Real
processes, real Ray, real training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.run.folder import RunFolder
from nas.tune.head import session_processes
from runs import copy_run

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "search_spaces" / "digits.yaml"
HANG_S = 180  # a guard against a command that never ends, not a measure of speed


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[3])


def _tree(pid: int) -> dict[int, str]:
    """The live descendants of `pid`: pid -> its command line's start."""
    parents = {p: s[0] for p in map(int, filter(str.isdigit, os.listdir("/proc"))) if (s := _stat(p))}
    out, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child in (c for c, p in parents.items() if p == parent):
            try:
                out[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            todo.append(child)
    return out


class Command:
    """`python -m nas.VERB ARGS` as a job: a session and process group of its own."""

    def __init__(self, tmp_path: Path, verb: str, *args: object):
        self.err_path = tmp_path / f"{verb}.err"
        with open(tmp_path / f"{verb}.out", "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"nas.{verb}", *map(str, args)],
                cwd=ROOT,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.sessions: set[int] = {self.proc.pid}  # the job's, and those of the processes it started

    def running(self, what: bytes) -> int | None:
        """A process of the job whose command line starts with `what` (a Ray worker running a trial:
        b'ray::ImplicitFunc'); keeps the sessions of the job's processes meanwhile."""
        found = None
        for pid, cmdline in _tree(self.proc.pid).items():
            if (s := _stat(pid)) is not None:
                self.sessions.add(s[1])
            if cmdline.startswith(what.decode()) or os.path.basename(cmdline.split(" ")[0]) == what.decode():
                found = pid
        if self.proc.poll() is not None:
            raise AssertionError(f"the command ended first: {self.err_path.read_text()[-3000:]}")
        return found

    def wait_for(self, what: bytes) -> int:
        deadline = time.monotonic() + HANG_S * 2
        while time.monotonic() < deadline:
            pid = self.running(what)
            if pid:
                return pid
            time.sleep(0.2)
        raise AssertionError(f"no {what!r} process within {HANG_S * 2} s")

    def end(self) -> tuple[int, str]:
        """Its exit status and its stderr's one line; and none of its processes is left."""
        self.proc.wait(HANG_S)
        err = self.err_path.read_text()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
        left = {sid: session_processes(sid) for sid in self.sessions}
        assert not any(left.values()), f"left running: {left}"
        return self.proc.returncode, lines[0]


def _term_the_group(cmd: Command, times: int) -> None:
    os.killpg(cmd.proc.pid, signal.SIGTERM)
    if times == 2:
        time.sleep(0.5)  # the second arrives while the first is being handled
        os.killpg(cmd.proc.pid, signal.SIGTERM)


def _search_args(tmp_path: Path, name: str) -> list[object]:
    """A digits search whose trials run long enough to be stopped; its results in a folder whose
    name the resume command must quote for a shell."""
    where = ["--results-dir", tmp_path / "res ü", "--name", name]
    return ["--space", DIGITS, *where, *"--budget 4 --epochs 60 --subset 300 --race 1 --max-concurrent 1".split()]


@pytest.mark.slow
@pytest.mark.parametrize("times", [1, 2])
def test_sigterm_to_the_group_stops_a_search_with_one_line_and_no_ray_left(tmp_path, times):
    cmd = Command(tmp_path, "search", *_search_args(tmp_path, "run"))
    cmd.wait_for(b"ray::ImplicitFunc")
    run = RunFolder(tmp_path / "res ü" / "run")
    before = run.trials_path.read_bytes() if run.trials_path.is_file() else b""
    _term_the_group(cmd, times)
    status, line = cmd.end()
    assert status == 143, line
    assert (
        line
        == f"interrupted (SIGTERM); nothing recorded is lost; continue with: python -m nas.search --resume '{run.path}'"
    )
    assert (run.trials_path.read_bytes() if run.trials_path.is_file() else b"").startswith(before)
    assert not (run.path / "run.lock").read_text()  # released


@pytest.mark.slow
def test_sigterm_to_the_group_twice_stops_a_fidelity_check_with_one_line(small_run, tmp_path):
    run = copy_run(small_run, tmp_path / "run")
    args = [run, "--archs", "3", "--seeds", "2", "--epochs", "60", "--max-concurrent", "1"]
    cmd = Command(tmp_path, "fidelity", *args)
    cmd.wait_for(b"ray::ImplicitFunc")
    _term_the_group(cmd, 2)
    status, line = cmd.end()
    assert status == 143, line
    assert line == f"interrupted; continue with: python -m nas.fidelity {' '.join(map(str, args))}"


@pytest.mark.slow
def test_sigterm_to_the_group_stops_a_calibration_with_one_line(tmp_path):
    args = ["--space", DIGITS, "--dataset", "symmetry", "--archs", "3", "--subsets", "200", "--epochs", "1"]
    args += ["--deploy-epochs", "60", "--deploy-subset", "800", "--max-concurrent", "1"]
    args += ["--results-dir", tmp_path, "--name", "cal"]
    cmd = Command(tmp_path, "calibrate", *args)
    cmd.wait_for(b"ray::ImplicitFunc")
    _term_the_group(cmd, 1)
    status, line = cmd.end()
    assert status == 143, line
    assert line.startswith("interrupted; continue with: python -m nas.calibrate ")


@pytest.mark.slow
@pytest.mark.parametrize("victim, name", [("raylet", "raylet"), ("gcs_server", "GCS")])
def test_a_ray_process_that_dies_under_a_search_is_one_line_with_the_resume_command(tmp_path, victim, name):
    cmd = Command(tmp_path, "search", *_search_args(tmp_path, "run"))
    cmd.wait_for(b"ray::ImplicitFunc")
    run = RunFolder(tmp_path / "res ü" / "run")
    before = run.trials_path.read_bytes() if run.trials_path.is_file() else b""
    os.kill(cmd.wait_for(victim.encode()), signal.SIGKILL)
    status, line = cmd.end()
    assert status == 1, line
    assert line.startswith(f"error: Ray's {name} died (exit code -9"), line  # not Ray's own log
    assert line.endswith(f"nothing recorded is lost; continue with: python -m nas.search --resume '{run.path}'")
    assert (run.trials_path.read_bytes() if run.trials_path.is_file() else b"").startswith(before)

    assert not (run.path / "run.lock").read_text()  # released: the next writer takes it without a word
