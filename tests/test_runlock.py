"""One writer per run folder: the lock, between real processes. No Ray, no training."""

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nas.run.lock import LOCK_FILE, STALE_S, STARTING_S, RunLock, RunLocked, holder_of

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from nas.run.lock import RunLock
with RunLock(sys.argv[1], command='python -m nas.search --name run', resume=sys.argv[2]):
    print('held', flush=True)
    time.sleep(600)
"""


def _holder(folder: Path, resume: str = "python -m nas.search --resume 'res ü/run'") -> subprocess.Popen:
    """Another process that holds the lock of `folder` until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), resume], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow
def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        start = time.monotonic()
        with pytest.raises(RunLocked) as refused:
            RunLock(folder).acquire()
        assert time.monotonic() - start < 5  # at once, not after a wait
        line = str(refused.value)
        assert "\n" not in line and f"pid {holder.pid} on {socket.gethostname()}" in line
        assert "python -m nas.search" in line and f"kill {holder.pid}" in line
        assert "continue with: python -m nas.search --resume 'res ü/run'" in line
        assert holder_of(folder).pid == holder.pid  # readers may look, and take nothing
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_refused_while_the_holder_is_still_naming_itself_waits_for_its_name(tmp_path):
    # two searches started together: one has the flock and has not yet written its name
    folder = tmp_path / "run"
    folder.mkdir()
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        name = json.dumps({"pid": 4242, "host": socket.gethostname(), "command": "python -m nas.search"})
        timer = threading.Timer(0.3, lambda: os.pwrite(fd, (name + "\n").encode(), 0))
        timer.start()
        with pytest.raises(RunLocked, match="in use by python -m nas.search .pid 4242"):
            RunLock(folder).acquire()
        timer.join()
        os.ftruncate(fd, 0)  # one that never names itself: the refusal says so after STARTING_S
        start = time.monotonic()
        with pytest.raises(RunLocked, match="another process is starting to write this run folder"):
            RunLock(folder).acquire()
        assert STARTING_S <= time.monotonic() - start < STARTING_S + 5
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_lock_left_by_a_dead_process_is_taken_over_and_said_so(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    holder.send_signal(signal.SIGKILL)  # dies holding it: no clean release
    holder.wait()
    assert holder_of(folder).pid == holder.pid  # its description is still there
    with RunLock(folder, command="python -m nas.search --resume run") as lock:
        assert lock.note == f"{folder}: took over the lock of pid {holder.pid}, which is no longer running"
        assert holder_of(folder).pid == os.getpid()
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):  # one writer, even in one process
            RunLock(folder).acquire()
    assert holder_of(folder) is None  # released: the file stays, empty
    with RunLock(folder) as again:
        assert again.note is None  # a clean release leaves nothing to take over


def test_a_holder_on_another_host_is_refused_while_it_is_seen(tmp_path):
    # A mount whose locks stay on each host (NFS local_lock, BeeGFS without global locks) grants
    # the flock here although a process on another host holds it: its heartbeat still refuses.
    folder = tmp_path / "run"
    folder.mkdir()
    lock_file = folder / LOCK_FILE
    lock_file.write_text(
        json.dumps(
            {
                "pid": 4242,
                "host": "node-17",
                "command": "python -m nas.search --budget 50",
                "resume": "python -m nas.search --resume run",
                "since": "10:00",
            }
        )
    )
    with pytest.raises(RunLocked) as refused:
        RunLock(folder).acquire()
    assert "pid 4242 on node-17" in str(refused.value) and "do not reach across hosts" in str(refused.value)
    old = time.time() - STALE_S - 60
    os.utime(lock_file, (old, old))  # not seen for longer than STALE_S: gone
    with RunLock(folder) as lock:
        assert lock.note.startswith(f"{folder}: took over the lock of pid 4242 on node-17, not seen for")


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(Exception) as e:
        RunLock(tmp_path / "file" / "run").acquire()
    assert type(e.value).__name__ == "RunError" and "\n" not in str(e.value)
    assert str(e.value).startswith(f"{tmp_path / 'file' / 'run'}: cannot write the run folder (")


@pytest.mark.parametrize(
    "held",
    [
        {"pid": "abc", "host": 5},  # wrong types: no process to wait for or to stop
        {"pid": True, "host": "node-17"},
        {"pid": -3, "host": "node-17", "command": "python -m nas.search"},
        {"pid": 4242, "host": ""},
        {"pid": 4242, "host": "node-17", "resume": ["python", "-m"]},
        [4242, "node-17"],
        "not json {",
    ],
)
def test_a_lock_file_that_names_no_holder_is_taken_at_once_and_said_so(tmp_path, held):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_FILE).write_text(held if isinstance(held, str) else json.dumps(held))
    assert holder_of(folder) is None
    start = time.monotonic()
    with RunLock(folder, resume="python -m nas.search --resume run") as lock:  # not refused for STALE_S
        assert time.monotonic() - start < 5
        assert (
            lock.note
            == f"{folder / LOCK_FILE}: took over a lock file that named no holder (not one this version writes)"
        )
        assert holder_of(folder).pid == os.getpid()


def test_a_lock_file_that_is_a_folder_is_named_as_such(tmp_path):
    folder = tmp_path / "run"
    (folder / LOCK_FILE).mkdir(parents=True)
    with pytest.raises(Exception) as e:
        RunLock(folder).acquire()
    line = str(e.value)
    assert type(e.value).__name__ == "RunError" and "\n" not in line
    assert line.startswith(f"{folder / LOCK_FILE}: a folder, not the run's lock file") and "move it out" in line
    assert (folder / LOCK_FILE).is_dir()  # nothing removed
