"""A command's own local Ray, in a session of its own: what a signal to the command's process group spares.

`ray.init()` without an address starts Ray's processes (GCS, raylet, its workers) as children of
the command, in its process group: SIGTERM to the group (what `timeout`, Slurm, systemd and
`docker stop` send) killed them under the command, which then waited 60 s for the GCS and died
with Ray's own log line. `LocalHead` starts the same local Ray with Ray's documented command,
`ray start --head --block`, in a new session (`start_new_session=True`), so a signal to the
command's group reaches the command alone; the command joins it with `ray.init(address=...)` and
stops it itself on every way out (`stop`: SIGTERM, which `ray start --block` answers by stopping
its processes, then SIGKILL to whatever of its session is left). The head gets SIGTERM when the
command dies, even of SIGKILL (PR_SET_PDEATHSIG), and `ray start --block` takes its processes down
with it, so nothing is left running either way.

A Ray process that dies anyway (the kernel's OOM killer, a kill -9) is seen by `watch`, a thread
that looks at the head's processes twice a second: it keeps a `RayDied` (an OSError: one line,
exit 1, the command adds the resume command) naming the process, sends Ray's own messages about
it to /dev/null, and calls back, so the Tune run stops and the command raises it. A command
stuck in a call to the dead Ray (Tune's clean-up waits for the GCS for 60 s, then Ray ends the
process with its own line) is ended by the thread after `GRACE_S`: the same one line, with the
command that continues from the run folder's lock (`nas.cli.held`), exit 1.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from nas.cli import EXIT_FAULT, held

__all__ = ["LocalHead", "RayDied", "session_processes", "signals_held", "START_TIMEOUT_S", "STOP_TIMEOUT_S"]

START_TIMEOUT_S = 120.0  # ray start on a loaded machine: the longest wait before one line says it did not start
STOP_TIMEOUT_S = 20.0  # ray start --block's own stop (it drains for up to 30 s): then SIGKILL
POLL_S = 0.5
GRACE_S = 5.0  # after a Ray process died: how long the command may take to stop on its own
ADDRESS_FILE = "ray_current_cluster"  # what `ray start` writes into its --temp-dir once the head is up
# what the head's processes are, by their command line: the names the line says
_NAMES = {"gcs_server": "GCS", "raylet": "raylet", "log_monitor.py": "log monitor", "monitor.py": "autoscaler monitor"}
_NAMES |= {"dashboard.py": "dashboard", "gcs_server": "GCS"}
_EXIT_LINE = re.compile(r"^\s+(\S+) \[exit code=(.*)\]\s*$", re.M)  # ray start's ray_process_exit.log


class RayDied(ChildProcessError):
    """A process of the command's local Ray died under it: `error: Ray's raylet died (...)`, exit 1."""

    def __init__(self, what: str, why: str, logs: Path | None):
        where = f"; its log: {logs}" if logs else ""
        super().__init__(None, f"Ray's {what} died ({why}{where})")


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, session id) of `pid`, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[3])


def session_processes(sid: int) -> list[int]:
    """The live processes of session `sid` (Linux: /proc; elsewhere none are found)."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()] if os.path.isdir("/proc") else []
    return [p for p in pids if (s := _stat(p)) is not None and s[2] == sid and s[0] != "Z"]


def _name(pid: int) -> str:
    args = _cmdline(pid)
    for arg in args[:3]:
        base = os.path.basename(arg)
        if base in _NAMES:
            return _NAMES[base]
    return os.path.basename(args[0]) if args and args[0] else f"process {pid}"


def _die_with_parent() -> None:
    """In the head's process, before ray start runs: SIGTERM when the command dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalHead:
    """`ray start --head --block` in a session of its own, for one command; see the module."""

    def __init__(self, num_gpus: int):
        self.num_gpus = num_gpus
        self.proc: subprocess.Popen | None = None
        self.temp: Path | None = None
        self.address: str | None = None
        self.died: RayDied | None = None
        self.on_death: list[Callable[[], None]] = []
        self._watched: dict[int, str] = {}
        self._stopping = threading.Event()

    def start(self) -> str:
        """Start the head and wait until it is up; its address (host:port). ChildProcessError with
        ray start's last line if it does not start."""
        # under RAY_TMPDIR where it is set, as Ray's own local head would be (a cluster's scratch
        # disk, or a short path: Ray's socket paths must stay under 107 bytes)
        self.temp = Path(tempfile.mkdtemp(prefix="nas-ray-", dir=os.environ.get("RAY_TMPDIR") or None))
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        env.setdefault("RAY_AUTH_MODE", "disabled")  # as ray.init's own local Ray
        argv = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--port=0"]
        argv += [f"--temp-dir={self.temp}", "--include-dashboard=false", f"--num-gpus={self.num_gpus}"]
        with open(self.temp / "ray-start.log", "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        address_file, deadline = self.temp / ADDRESS_FILE, time.monotonic() + START_TIMEOUT_S
        while not (address_file.is_file() and address_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.temp / "ray-start.log").read_text(errors="replace").strip().splitlines()[-1:]
                raise ChildProcessError(None, f"ray start did not start a local Ray ({' '.join(tail) or 'no output'})")
            time.sleep(0.05)
        self.address = address_file.read_text().strip()
        return self.address

    def watch(self) -> None:
        """From now on, a thread watches the head's processes (see the module)."""
        assert self.proc is not None
        pid = self.proc.pid
        self._watched = {p: _name(p) for p in session_processes(pid) if (s := _stat(p)) is not None and s[1] == pid}
        threading.Thread(target=self._watch, name="nas-ray-watch", daemon=True).start()

    def _watch(self) -> None:
        assert self.proc is not None
        while not self._stopping.wait(POLL_S):
            gone = [n for p, n in self._watched.items() if (s := _stat(p)) is None or s[0] == "Z"]
            code = self.proc.poll()
            if not gone and code is None:
                continue
            if self._stopping.is_set():
                return
            self.died = self._death(gone)
            _hide_fd2()
            for callback in self.on_death:
                with contextlib.suppress(Exception):
                    callback()
            if not self._stopping.wait(GRACE_S):  # the command is stuck in a call to the dead Ray
                self._abort()
            return

    def _abort(self) -> None:
        """End the command now, as its own stop would: Ray's processes killed, the run folder's lock
        released, one line with the command that continues (the lock's), exit 1. Every record is
        appended whole as it finishes, so nothing recorded is lost."""
        assert self.died is not None and self.proc is not None
        for pid in [self.proc.pid, *session_processes(self.proc.pid)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        locks = held()
        for lock in reversed(locks):
            with contextlib.suppress(OSError):
                lock.release()
        hint = next((lock.resume for lock in locks if lock.resume), "")
        line = f"error: {self.died.strerror}; nothing recorded is lost" + (f"; continue with: {hint}" if hint else "")
        with contextlib.suppress(OSError, ValueError):
            print(line, file=sys.stderr, flush=True)
        os._exit(EXIT_FAULT)

    def _death(self, gone: list[str]) -> RayDied:
        """What died, as ray start's own exit log says once it has taken the rest down (its first
        line), else as seen here."""
        assert self.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(3 * POLL_S + 1)  # ray start looks once a second, logs, then stops the rest
        logs = self._logs()
        said = (
            _EXIT_LINE.findall((logs / "ray_process_exit.log").read_text(errors="replace"))
            if logs and (logs / "ray_process_exit.log").is_file()
            else []
        )
        if said:
            what, code = said[0]
            return RayDied(_NAMES.get(what, what), f"exit code {code}", logs)
        code = self.proc.poll()
        if gone:
            return RayDied(gone[0], "it is gone" if code is None else f"it is gone; ray start ended, exit {code}", logs)
        return RayDied("head (ray start)", f"exit {code}", logs)

    def _logs(self) -> Path | None:
        logs = sorted(self.temp.glob("session_*/logs")) if self.temp else []
        return logs[-1] if logs else None

    def stop(self) -> None:
        """Stop the head and everything of its session (Ctrl-C and SIGTERM wait until it is done);
        its temporary folder is removed unless a process died (its logs are named in the line)."""
        self._stopping.set()
        if self.proc is None:
            return
        with signals_held():
            if self.proc.poll() is None:
                self.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(STOP_TIMEOUT_S)
            for pid in [self.proc.pid, *session_processes(self.proc.pid)]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()
        if self.died is None and self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back while Ray is stopped (a second one would leave its processes
    running): kept, then handled as they would have been once it is done. Main thread only
    (elsewhere Python runs no handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: kept.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in kept[:1]:
            signal.raise_signal(signum)


def _hide_fd2() -> None:
    """What Ray writes to file descriptor 2 from now on, for the rest of the process (the dead
    process's log tail, the GCS reconnect's fatal line), goes to /dev/null; Python's own
    sys.stderr keeps the terminal, for the command's one line."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        sys.stderr = os.fdopen(saved, "w", buffering=1, closefd=False)
