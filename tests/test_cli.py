"""The command frame (nas.cli.command): what ends a command becomes one line and one exit status."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from nas.cli import command
from nas.errors import NasError, UsageError


def _framed(exc: BaseException | None = None, status: int | None = None):
    @command
    def main(argv: list[str]) -> int | None:
        if exc is not None:
            raise exc
        return status

    return main


def test_a_returned_status_passes_through_and_none_is_0() -> None:
    assert _framed(status=3)([]) == 3
    assert _framed()([]) == 0


def test_bad_input_is_one_line_and_exit_2_with_the_commands_notes(capsys) -> None:
    err = UsageError("--budget: expected an int >= 1, got 0")
    err.add_note("nothing was written")
    assert _framed(err)([]) == 2
    assert capsys.readouterr().err == "error: --budget: expected an int >= 1, got 0; nothing was written\n"
    assert _framed(NasError("a\n  b"))([]) == 2
    assert capsys.readouterr().err == "error: a b\n"


def test_a_full_disk_is_exit_1_and_an_unwritable_place_exit_2_naming_the_path(capsys) -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/r/trials.jsonl")
    full.add_note("continue with: python -m nas.search --resume /runs/r")
    assert _framed(full)([]) == 1
    assert capsys.readouterr().err == (
        "error: /runs/r/trials.jsonl: No space left on device; continue with: python -m nas.search --resume /runs/r\n"
    )
    assert _framed(OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro"))([]) == 2
    assert capsys.readouterr().err == "error: /ro: Read-only file system\n"


def test_ctrl_c_is_130_and_sigterm_143_silent_unless_the_command_says_what_was_kept(capsys) -> None:
    from nas.cli import Terminated

    assert _framed(KeyboardInterrupt())([]) == 130
    assert capsys.readouterr().err == ""
    stopped = Terminated()
    stopped.add_note("stopped; continue with: python -m nas.search --resume r")
    assert _framed(stopped)([]) == 143
    assert capsys.readouterr().err == "stopped; continue with: python -m nas.search --resume r\n"


def test_a_bug_is_not_hidden() -> None:
    with pytest.raises(ZeroDivisionError):
        _framed(ZeroDivisionError())([])


@pytest.mark.slow
def test_sigterm_to_the_process_group_ends_a_framed_command_with_143(tmp_path) -> None:
    """As `timeout`, Slurm and systemd send it: to every process of the group, the command included."""
    script = tmp_path / "cmd.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from nas.cli import command

            @command
            def main(argv):
                try:
                    print('ready', flush=True)
                    time.sleep(60)
                except KeyboardInterrupt as e:
                    e.add_note('stopped; nothing lost')
                    raise

            sys.exit(main())
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout.readline() == "ready\n"
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and time.monotonic() - t0 < 30
    assert err == "stopped; nothing lost\n"
