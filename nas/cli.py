"""What every `python -m nas.<verb>` shares: one command frame, one-line errors, amounts such as 2M, Ctrl-C and SIGTERM.

    >>> from nas.cli import ArgumentParser, amount
    >>> amount('2M'), amount('1.5k'), amount('2e6')
    (2000000.0, 1500.0, 2000000.0)

Conventions (docs/development.md): bad input exits with status 2 and one line that names the
problem, argparse's own errors (a bad int, an unknown choice) included; Ctrl-C exits 130 after
the command's clean stop, and SIGTERM (what a cluster's scheduler or a container stop sends) is
handled the same way and exits 143. A command suggested to the user (`shell_command`) is quoted
for the shell, so a path with spaces or non-ASCII letters pastes as it is. Imports nothing of nas,
so every module can use it.

The frame, `command`, wraps each command's `main` and is the one place that maps what ends a
command to what the user sees: a `NasError` (bad input) to `error: ...` and exit 2; a file-system
fault to `error: PATH: what happened` and exit 1 (2 where the place cannot be written at all:
`fault_exit`); SIGTERM to 143 and Ctrl-C to 130. A command adds what the user should do next to
the exception it lets through, as a note (`err.add_note('continue with: python -m nas.search
--resume RUN')`); the frame prints the notes on the same line.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import math
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from nas.errors import NasError, UsageError

__all__ = [
    "command",
    "ArgumentParser",
    "amount",
    "add_resource_options",
    "shell_command",
    "fault_exit",
    "fault_line",
    "Terminated",
    "raise_terminated",
    "stop_on_sigterm",
    "StopSignals",
    "hms",
    "check_place",
    "check_folder_name",
    "hold",
    "let_go",
    "held",
    "NAME_MAX",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_FAULT",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_FAULT = 1  # a fault in the middle of the work (a full disk): what was done is kept
# a place that cannot be written at all: bad input (exit 2), unlike a disk that fills up (exit 1)
_UNWRITABLE = (
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.EEXIST,
    errno.ENOENT,
)

NAME_MAX = 255  # bytes in a file name on Linux, macOS and Windows file systems alike
_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def amount(text: str | float | int) -> float:
    """'2e6', '2M', '1.5k', '3G' (or a number) -> float; k/M/G/T are powers of 1000.

    Raises:
        argparse.ArgumentTypeError: not a finite number (argparse shows its message as it is).
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        t = str(text).strip().lower()
        try:
            value = float(t[:-1]) * _SUFFIX[t[-1]] if t and t[-1] in _SUFFIX else float(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r} (e.g. 2e6 or 2M)") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (`error: ... (see --help)`, exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def shell_command(verb: str, *args: str | Path) -> str:
    """`python -m nas.VERB ARGS...` with every argument quoted for a POSIX shell (shlex.quote)."""
    return " ".join([f"python -m nas.{verb}", *(shlex.quote(str(a)) for a in args)])


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the command stops as it does on Ctrl-C, then exits EXIT_TERMINATED."""


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: raise Terminated in the main thread, as Ctrl-C raises KeyboardInterrupt."""
    raise Terminated()


def stop_on_sigterm() -> None:
    """From now on SIGTERM raises Terminated (a KeyboardInterrupt) instead of killing the process,
    so that a command's clean stop on Ctrl-C runs for it too. Main thread only; else a no-op."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)


class StopSignals:
    """Ctrl-C and SIGTERM (a cluster's scheduler, a container stop) during a Tune run: our handler
    instead of Tune's, so the command knows. The first signal calls `stop` (which stops Tune
    cleanly) and is kept in `received`; a second one is kept there too and acts at once, through
    the handler there was before (else as Ctrl-C). `restore`, or leaving the `with` block, puts the previous handlers
    back. Signal handlers can be set in the main thread only: elsewhere this does nothing."""

    def __init__(self, stop: Callable[[], None]):
        self.stop = stop
        self.main = threading.current_thread() is threading.main_thread()
        self.previous: dict[int, Any] = {}
        self.received: list[int] = []

    def __call__(self, signum: int, frame: Any) -> None:
        self.stop()
        self.received.append(signum)
        signal.signal(signum, self._again)  # a second one: at once

    def _again(self, signum: int, frame: Any) -> None:
        """A second signal: kept in `received` (Ray turns the exception it raises inside a wait into
        a plain KeyboardInterrupt: `received` still says it was SIGTERM), then the handler there was."""
        self.received.append(signum)
        handler = self.previous.get(signum) or signal.default_int_handler
        if callable(handler):
            handler(signum, frame)

    def catch(self, *signums: int) -> None:
        """Handle `signums` from now on."""
        if self.main:
            for signum in signums:
                handler = signal.signal(signum, self)
                self.previous.setdefault(signum, handler)

    def restore(self) -> None:
        """The handlers there were before."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.previous.clear()

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def check_folder_name(name: str, under: str = "--results-dir") -> None:
    """--name: a plain folder name (no "/", no "..") that a file system takes (NAME_MAX bytes);
    UsageError, one line, otherwise. `under` names where the folder goes."""
    if name in ("", ".", "..") or any(c in name for c in ("/", "\\", "\0", os.sep)):
        raise UsageError(f'--name {name!r}: give a plain folder name (no "/", no ".."); the folder goes under {under}')
    if len(os.fsencode(name)) > NAME_MAX:
        raise UsageError(
            f"--name is {len(os.fsencode(name))} bytes long; a folder name takes at most {NAME_MAX} (give a shorter one)"
        )


def check_place(results_dir: Path, name: str | None = None, flag: str = "--results-dir") -> Path:
    """The up-front checks of every command that writes a folder (nas.search's run, nas.calibrate's
    calibration, nas.fidelity's records in a run): `name` (--name) a plain folder name a file
    system takes, and the folder `results_dir`/`name` (`results_dir` without a name) either a
    folder, or not there yet under a writable folder. Nothing is made; the folder is returned.
    `flag` names `results_dir` in the line ('' for a folder given as it is).

    Raises:
        UsageError: one line (exit 2), before anything is written or Ray starts.
    """
    where = f"{flag} {results_dir}: " if flag else ""
    if name is not None:
        check_folder_name(name, flag or "it")
    path = Path(results_dir) / name if name is not None else Path(results_dir)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path and not path.is_dir() and name is not None:
        raise UsageError(f"{path}: exists and is not a folder; pick another --name")
    if not existing.is_dir():
        raise UsageError(f"{where}{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        raise UsageError(
            f"{where}cannot write in {existing} ({os.strerror(errno.EROFS if read_only else errno.EACCES)})"
        )
    return path


_HELD: list[Any] = []  # what this process holds, first taken first (hold, let_go, held)


def hold(thing: Any) -> None:
    """Say that this process holds `thing` (a run folder's lock, `nas.run.lock.RunLock`: it has
    `release()` and `resume`, the command that continues its work) until `let_go(thing)`."""
    _HELD.append(thing)


def let_go(thing: Any) -> None:
    """`thing` is held no more."""
    with contextlib.suppress(ValueError):
        _HELD.remove(thing)


def held() -> list[Any]:
    """What this process holds now, first taken first: what a command that must end at once
    (`nas.tune.head`: its Ray died under it) releases, and whose `resume` its line says."""
    return list(_HELD)


def fault_exit(e: OSError) -> int:
    """The exit status for a file-system fault: EXIT_USAGE for a place that cannot be written at
    all (read-only, no permission, a file where a folder should be, a name too long), EXIT_FAULT
    for one that happens in the middle of the work (a full disk, an I/O error)."""
    return EXIT_USAGE if e.errno in _UNWRITABLE else EXIT_FAULT


def add_resource_options(parser: argparse.ArgumentParser, what: str = "evaluation") -> None:
    """The search's resource options for a command that trains a fixed list of evaluations on Ray
    (nas.fidelity, nas.calibrate): --cpus-per-trial, --gpus-per-trial, --max-concurrent, --address."""
    g = parser.add_argument_group("resources (as for python -m nas.search)")
    g.add_argument("--cpus-per-trial", type=float, default=1.0, help=f"CPUs per {what} (torch threads)")
    g.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help=f"GPUs per {what}, fractions allowed; default: 1 when CUDA is present, else 0",
    )
    g.add_argument("--max-concurrent", type=int, default=None, help=f"{what}s at once; default: as resources allow")
    g.add_argument(
        "--address",
        default=None,
        help="join an existing Ray cluster ('auto' or host:port); default: a local Ray for this command",
    )


def _line(head: str, err: BaseException) -> str:
    """`head`, then the notes a command added to `err`, on one line."""
    notes = [" ".join(str(n).split()) for n in getattr(err, "__notes__", ())]
    return "; ".join([head, *notes]) if head else "; ".join(notes)


def fault_line(err: OSError) -> str:
    """`error: PATH: what happened` for a file-system fault, the command's notes after it."""
    what = err.strerror or " ".join(str(err).split()) or type(err).__name__
    where = f"{err.filename}: " if err.filename else ""
    return _line(f"error: {where}{what}", err)


def command(main: Callable[[list[str]], int | None]) -> Callable[[list[str] | None], int]:
    """The frame of a `python -m nas.<verb>`: `main(argv)` runs with SIGTERM raising `Terminated`,
    and whatever ends it becomes an exit status and at most one line on stderr:

    | what ends the command | line | status |
    |---|---|---|
    | `main` returns n (or None) | its own | n (0) |
    | argparse's --help or its one-line error (SystemExit) | argparse's | 0, 2 |
    | a `NasError` (bad input; argparse's own errors exit 2 already) | `error: ...` | 2 |
    | an `OSError` | `error: PATH: what happened` | 1, or 2 where the place cannot be written at all |
    | SIGTERM (`Terminated`) | the notes, if any | 143 |
    | Ctrl-C (`KeyboardInterrupt`) | the notes, if any | 130 |

    The notes a command added to the exception (`add_note`: what was kept, the resume command) go
    on the same line. `argv` None reads `sys.argv[1:]`.

        >>> @command
        ... def main(argv):
        ...     raise NasError(f'--budget: expected an int >= 1, got {argv[0]!r}')
        >>> main(['x'])   # prints: error: --budget: expected an int >= 1, got 'x'
        2
    """

    @functools.wraps(main)
    def framed(argv: list[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        stop_on_sigterm()
        try:
            status = main(argv)
        except SystemExit as e:  # argparse: --help (0) or its one-line error (2)
            return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
        except NasError as e:
            print(_line(f"error: {' '.join(str(e).split())}", e), file=sys.stderr)
            return EXIT_USAGE
        except Terminated as e:
            _say(_line("", e))
            return EXIT_TERMINATED
        except KeyboardInterrupt as e:
            _say(_line("", e))
            return EXIT_INTERRUPTED
        except OSError as e:
            print(fault_line(e), file=sys.stderr)
            return fault_exit(e)
        return 0 if status is None else int(status)

    return framed


def _say(line: str) -> None:
    if line:
        print(line, file=sys.stderr)


def hms(seconds: float) -> str:
    """A duration as 'H:MM:SS', for progress lines."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
