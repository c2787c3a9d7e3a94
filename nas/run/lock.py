"""One writer per run folder: the lock every process that writes a run folder holds.

    >>> with RunLock('results/run', command='python -m nas.search ...',
    ...              resume="python -m nas.search --resume results/run") as lock:
    ...     ...                     # the only writer of results/run until the block ends

`nas.search` (new runs and `--resume`), `nas.fidelity` and `nas.calibrate` hold it while they
write; readers (`nas.dashboard`, `nas.export`) never take it, so they work while a search runs.
A second writer is refused at once: `RunLocked`, one line naming the holder (its command, pid,
host and start) and how to wait or continue.

How it works. `RUN/run.lock` is locked with flock(2) and holds the holder's description (JSON).
The kernel drops an flock when its process ends, however it ends (kill -9, a crash, a power loss
of the machine), so a lock left by a dead process is simply free: the next writer takes it and
says whose it was. Nothing has to be deleted by hand and two processes can never both take it.

Shared storage (NFS, a cluster's file system): Linux's NFS client emulates flock with the
server's byte-range locks (NFSv4, or NFSv3 with lockd), so the lock holds across hosts. Some
mounts keep locks local to each host (NFS `local_lock=flock|all`, BeeGFS without global locks);
for those the holder touches the lock file every `HEARTBEAT_S` seconds, and a writer that gets
the flock while the file names a holder on another host seen within `STALE_S` seconds refuses
all the same. A file system without locks at all (flock fails with ENOLCK or EOPNOTSUPP) falls
back to that check alone, which a race of two starts within a moment can defeat: put run folders
on storage with locks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nas.cli import hold, let_go
from nas.run.folder import RunError
from nas.run.holder import LOCK_FILE, Holder, holder_of

__all__ = ["LOCK_FILE", "HEARTBEAT_S", "STALE_S", "STARTING_S", "Holder", "RunLock", "RunLocked", "holder_of"]

HEARTBEAT_S = 20.0  # the holder touches the lock file this often
STALE_S = 120.0  # a holder on another host not seen for this long is gone (clocks may differ a little)
STARTING_S = 2.0  # how long a refused writer waits for the holder to name itself
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _holder_soon(fd: int) -> Holder | None:
    """The holder the lock file names; a holder that took the flock a moment ago writes its name
    just after it, so an empty file is read again for up to STARTING_S (two searches started
    together: the refused one names the other, as a later one would)."""
    deadline = time.monotonic() + STARTING_S
    while (holder := Holder.parse(os.pread(fd, 1 << 16, 0))) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return holder


class RunLocked(RunError):
    """Another process writes this run folder: one line naming it and how to wait or continue."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """The exclusive lock of one run folder (see the module docstring); a context manager.

    Args:
        folder: the run folder; made (with its parents) if it does not exist.
        command: what holds it, for the refusal line of a second writer.
        resume: the command that continues this holder's work, for that line.

    `acquire()` raises `RunLocked` when another process holds it and `RunError` (one line) when
    the folder cannot be written (read-only, a file in the way, a full disk); it returns a note
    (one line) when it took over a lock left by a holder that is gone, else None.
    """

    def __init__(self, folder: str | Path, command: str = "", resume: str = ""):
        self.folder = Path(folder)
        self.command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self.resume = resume
        self.note: str | None = None  # set by acquire(): a lock taken over from a holder that is gone
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> str | None:
        if self._fd is not None:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"{self.folder}: cannot write the run folder ({e.strerror or e})") from None
        if (self.path.exists() or self.path.is_symlink()) and not self.path.is_file():
            what = "a folder" if self.path.is_dir() else "not a regular file"
            raise RunError(
                f"{self.path}: {what}, not the run's lock file, so no process can take the lock; move it out "
                f"of the run folder (a missing {LOCK_FILE} is made anew)"
            )
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise RunError(f"{self.folder}: cannot write the run folder ({e.strerror or e})") from None
        try:
            note = self._take(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self.note = fd, note
        hold(self)  # a command that must end at once releases it and says its resume (nas.cli.held)
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, args=(fd, self._stop), name="run-lock heartbeat", daemon=True
        )
        self._beat.start()
        return note

    def _take(self, fd: int) -> str | None:
        locks = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(self._refusal(_holder_soon(fd))) from None
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise RunError(f"{self.path}: cannot lock it ({e.strerror or e})") from None
            locks = False  # a file system without locks: the holder's description alone decides
        raw = os.pread(fd, 1 << 16, 0)
        before = Holder.parse(raw)
        me = socket.gethostname()
        note = None
        if before is None and raw.strip():  # the flock was free: nothing that file says can be waited for
            note = f"{self.path}: took over a lock file that named no holder (not one this version writes)"
        elif before is not None and (before.pid, before.host) != (os.getpid(), me):
            age = time.time() - os.fstat(fd).st_mtime
            if before.host == me and (locks or not _pid_alive(before.pid)):
                note = f"{self.folder}: took over the lock of pid {before.pid}, which is no longer running"
            elif before.host != me and age >= STALE_S:
                note = (
                    f"{self.folder}: took over the lock of pid {before.pid} on {before.host}, "
                    f"not seen for {age / 60:.0f} min"
                )
            else:  # alive here without flock, or seen lately on a host whose locks do not reach us
                if locks:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                raise RunLocked(self._refusal(before, seen=age if before.host != me else None))
        info = Holder(
            os.getpid(),
            me,
            self.command,
            self.resume,
            datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(asdict(info)) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no half-written holder left behind
            raise RunError(f"{self.folder}: cannot write the run folder ({e.strerror or e})") from None
        return note

    def _refusal(self, holder: Holder | None, seen: float | None = None) -> str:
        if holder is None:
            return f"{self.folder}: another process is starting to write this run folder; try again in a moment"
        line = f"{self.folder}: in use by {holder.describe()}"
        if seen is not None:
            line += f", seen {seen:.0f} s ago: this file system's locks do not reach across hosts"
        line += f"; only one process may write a run folder. Wait for it to finish, or stop it (kill {holder.pid}"
        line += f" on {holder.host}: it stops cleanly)" + (
            f" and continue with: {holder.resume}" if holder.resume else ""
        )
        return line

    @staticmethod
    def _heartbeat(fd: int, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(fd)  # the lock file's mtime: seen now (the server's clock on NFS)
            except OSError:
                return

    def release(self) -> None:
        """Give the lock up; the lock file stays, emptied."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        let_go(self)
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)  # it touches fd: done before fd is closed and its number reused
        try:
            os.ftruncate(fd, 0)  # no holder described: a reader sees it free
        except OSError:
            pass
        finally:
            os.close(fd)  # drops the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
