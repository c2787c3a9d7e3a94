"""The two files into a run folder (or another): dashboard.html and pareto.png from one read of the run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.dashboard.data import RunData
from nas.dashboard.html import render_html
from nas.dashboard.png import render_png
from nas.run.files import write_atomic
from nas.run.folder import RunFolder

HTML, PNG = "dashboard.html", "pareto.png"


@dataclass
class DashboardFiles:
    """What `write_dashboard` wrote, render_html's summary and how long it took."""

    html: Path
    png: Path | None
    summary: dict[str, Any]
    seconds: float


def write_dashboard(run: RunFolder, out: Path | None = None, png: bool = True) -> DashboardFiles:
    """Write dashboard.html (and pareto.png) for `run` into `out` (default: the run folder),
    each replaced atomically so a browser reloading it never sees half a file."""
    t0 = time.perf_counter()
    run.require()
    out = Path(out) if out else run.path
    out.mkdir(parents=True, exist_ok=True)
    data = RunData.read(run)  # one read of the run for both files
    page, summary = render_html(run, data)
    write_atomic(out / HTML, page)  # a failed write (a full disk) leaves no temp file behind
    png_path = render_png(run, out / PNG, data) if png else None
    return DashboardFiles(out / HTML, png_path, summary, time.perf_counter() - t0)
