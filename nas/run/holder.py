"""Who holds a run folder's lock: the description of its holder in RUN/run.lock (JSON).

`nas.run.lock` takes and writes the lock; this module only reads what it says, so that the run
folder's writers (`nas.run.folder`) can name the holder's resume command when a write fails.

    >>> holder = holder_of('results/run')     # None: nobody holds it (or the file names no process)
    >>> holder.pid, holder.host, holder.resume
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOCK_FILE", "Holder", "holder_of"]

LOCK_FILE = "run.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a run folder's lock, as its lock file says."""

    pid: int
    host: str
    command: str = ""
    resume: str = ""  # the command that continues the holder's work after it stops
    since: str = ""

    @classmethod
    def parse(cls, raw: bytes) -> Holder | None:
        """The holder `raw` describes; None for an empty (released), torn or foreign file, or one
        whose fields have other types: a pid that is no positive int or an empty host names no
        process to wait for or to stop."""
        try:
            d = json.loads(raw)
            holder = cls(**{k: d[k] for k in ("pid", "host", "command", "resume", "since") if k in d})
        except (ValueError, TypeError, KeyError):
            return None
        pid_ok = isinstance(holder.pid, int) and not isinstance(holder.pid, bool) and holder.pid > 0
        texts_ok = all(isinstance(v, str) for v in (holder.host, holder.command, holder.resume, holder.since))
        return holder if pid_ok and texts_ok and holder.host else None

    def describe(self) -> str:
        what = self.command.split(" --", 1)[0] if self.command else "another process"
        return f"{what} (pid {self.pid} on {self.host}{', since ' + self.since if self.since else ''})"


def holder_of(folder: str | Path) -> Holder | None:
    """The description in a run folder's lock file (None: none, or released)."""
    try:
        return Holder.parse((Path(folder) / LOCK_FILE).read_bytes())
    except OSError:
        return None
