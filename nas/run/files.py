"""Files written whole: what a crash, a power loss or a full disk can never leave half written.

A file is replaced whole (`write_atomic`, `copy_atomic`: a temp file beside it, fsynced, then a
rename), a folder is written whole (`folder_written_whole`), and an append-only file of lines is
repaired to end with a whole line (`repair_tail`: a torn tail is set aside, never deleted). The
run folder (`nas.run.folder`), checkpoints (`nas.train`) and exports (`nas.export`) write through
these; the module knows nothing of what the files hold.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TMP",
    "TORN",
    "write_atomic",
    "copy_atomic",
    "save_safetensors",
    "occupied",
    "folder_written_whole",
    "repair_tail",
]

TMP, TORN = ".tmp", ".torn-"  # a file being replaced; the torn tail of an append-only file, set aside


def _replace_with(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Replace `path` by what `write` writes: a temp file beside it, fsynced, then a rename, so a
    reader or a crash sees the old file or the new one. On any failure (ENOSPC: a full disk)
    the temp file is removed and the old file stays as it was."""
    tmp = path.with_name(path.name + TMP)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Replace the file `path` with `data` (see `_replace_with`)."""
    _replace_with(Path(path), lambda f: f.write(data.encode() if isinstance(data, str) else data))


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy `src` over `dst`, replacing it whole (see `_replace_with`)."""
    with open(src, "rb") as s:
        _replace_with(Path(dst), lambda f: shutil.copyfileobj(s, f))


def save_safetensors(state: dict[str, Any], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, a failed write raised as the OSError it is (safetensors reports a
    full disk as a SafetensorError, `... I/O error: No space left on device (os error 28)`)."""
    import re

    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(state, str(path), metadata=metadata)
    except SafetensorError as e:
        code = re.search(r"(?:code: |os error )(\d+)", str(e))  # how safetensors versions spell an errno
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None


def occupied(path: str | Path) -> str | None:
    """Why writing a folder at `path` would overwrite something (None: it is free or empty)."""
    path = Path(path)
    if path.is_dir():
        return f"{path}: the folder exists and is not empty" if any(path.iterdir()) else None
    return f"{path}: exists and is not a folder" if path.exists() or path.is_symlink() else None


@contextlib.contextmanager
def folder_written_whole(dst: str | Path) -> Iterator[Path]:
    """Write a folder whole: yields a temp folder beside `dst` to fill; when the block ends without
    an error it replaces `dst` (any old contents moved aside, then removed), else it is removed
    and `dst` stays as it was."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # a folder as mkdir makes it, not mkdtemp's private one
    try:
        yield tmp
        for path in tmp.rglob("*"):  # files as open() makes them (safetensors writes its own 0600)
            if path.is_file() and not path.is_symlink():
                os.chmod(path, 0o666 & ~umask)
        old = None
        if dst.exists() or dst.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
            os.replace(dst, old / dst.name)
        try:
            os.replace(tmp, dst)
        except BaseException:
            if old is not None:
                os.replace(old / dst.name, dst)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _side_path(path: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    side, n = path.with_name(f"{path.name}{TORN}{stamp}"), 1
    while side.exists():
        side, n = path.with_name(f"{path.name}{TORN}{stamp}-{n}"), n + 1
    return side


def repair_tail(path: Path, whole: Callable[[bytes], bool]) -> str | None:
    """Make an append-only file of lines end with a whole line, so the next append starts one.

    The bytes after the last line end are either a whole record that lost its line end (`whole`
    says so: the line end is added) or a torn one (they are moved to `<path>.torn-<time>` and the
    file is cut back to its last whole line). Returns a one-line report, or None if the file
    already ended with a line end.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with open(path, "rb+") as f:
        end = pos = f.seek(0, os.SEEK_END)
        tail = b""
        while pos > 0:  # read backwards to the last line end
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            i = chunk.rfind(b"\n")
            if i >= 0:
                tail, pos = chunk[i + 1 :] + tail, pos + i + 1
                break
            tail = chunk + tail
        if not tail:
            return None
        if whole(tail):
            f.seek(end)
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            return f"{path}: its last line was whole but had no line end; added it"
        side = _side_path(path)
        write_atomic(side, tail)
        f.truncate(pos)
        f.flush()
        os.fsync(f.fileno())
    return (
        f"{path}: set aside a torn last line ({len(tail)} bytes, a write cut short) in {side.name}; "
        f"every whole record is kept"
    )
