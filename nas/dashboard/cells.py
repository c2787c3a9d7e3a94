"""How the page writes values: objectives ('91.20%', '1.234 M', '3.1 ms'), a mean's noise over
seeds, plain numbers and percentages ('–' when unknown), and HTML tables of such cells."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any


def format_value(obj: str, v: float | None) -> str:
    """A value of objective `obj` as the tables and hovers show it ('91.20%', '1.234 M', '3.1 ms')."""
    if v is None:
        return "–"
    if obj == "accuracy":
        return f"{100 * v:.2f}%"
    if obj in ("macs", "params"):
        return f"{v / 1e6:.3f} M" if v >= 1e5 else f"{v / 1e3:.1f} k"
    return f"{v:.3g} {'ms' if obj == 'latency' else 'MB'}"


def format_noise(seeds: int, se: float | None) -> str:
    """' ± 0.31% (3 seeds)': the standard error `se` of a mean accuracy, and the seeds behind it."""
    if seeds < 2:
        return f" ({seeds} seed)" if seeds else ""
    return f" ± {100 * se:.2f}% ({seeds} seeds)"


def format_number(x: float | None, fmt: str = ".2f") -> str:
    """`x` formatted, or '–' when it is unknown."""
    return "–" if x is None else format(x, fmt)


def format_percent(mean: float | None, std: float | None) -> str:
    """A fraction and its std as percentage points ('91.20 ± 0.80'), '–' when unknown."""
    return "–" if mean is None else f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    left: Sequence[int] = (),
    row_class: Sequence[str] | None = None,
) -> str:
    """An HTML table of `rows` (cells already HTML) under `header`; the columns in `left` left-aligned,
    `row_class` a class per row ('' for none)."""
    if not rows:
        return '<p class="empty">none yet</p>'
    th = "".join(f'<th class="{"l" if i in left else ""}">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = []
    for j, row in enumerate(rows):
        cls = f' class="{row_class[j]}"' if row_class and row_class[j] else ""
        tds = "".join(f'<td class="{"l" if i in left else ""}">{c}</td>' for i, c in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"
