"""The errors a user can cause: one base, `NasError`, that every user-facing error derives from.

A command maps a `NasError` to one line naming the problem and exit status 2 (`nas.cli.command`);
anything else is a bug or a fault of the machine. Each family raises its own subclass, kept beside
the code that knows the rule (`ArchError` in nas.net.arch, `SpaceError` in nas.space, `DataError`
in nas.data, `ProxyError` in nas.proxy, `RecordError` and `RunError` in nas.run, `ExportError` in
nas.export); `UsageError` is for a command's own options. They stay `ValueError`s, so code that
caught a ValueError before still does.

    >>> issubclass(UsageError, NasError) and issubclass(NasError, ValueError)
    True
"""

from __future__ import annotations

__all__ = ["NasError", "UsageError"]


class NasError(ValueError):
    """A problem with what the user gave (a file, an option, a record): str(error) says what, in one line."""


class UsageError(NasError):
    """A command-line option or API argument that cannot be used; the message names it."""
