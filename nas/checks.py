"""What a plain value read from YAML, JSON or a command line is: the type checks every config shares.

YAML and JSON give bools where a number is expected (`true` is an int to Python), and infinities
and NaN where a finite number is; these say no to both.

    >>> is_int(True), is_num(float('inf')), is_num(float('inf'), finite=False)
    (False, False, True)
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["is_int", "is_num"]


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any, finite: bool = True) -> bool:
    """An int or float that is not a bool (and is finite, unless `finite` is False)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (not finite or math.isfinite(v))
