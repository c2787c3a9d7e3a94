"""pareto.png: the page's accuracy-vs-cost plots drawn with matplotlib, for papers and READMEs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.dashboard.data import CostPlot, RunData, TrialView
from nas.dashboard.style import COLORSCALE, KINDS, LABELS
from nas.run.files import write_atomic
from nas.run.folder import RunFolder


def render_png(run: RunFolder, path: Path, data: RunData | None = None) -> Path:
    """pareto.png: accuracy against each cost objective, trials coloured by front rank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = data or RunData.read(run)
    config, max_rank = data.config, data.max_rank
    costs = data.costs or [c for c in config.objectives if c != "accuracy"] or ["macs"]
    fig, axes = plt.subplots(1, len(costs), figsize=(4.8 * len(costs) + 1.2, 4.6), squeeze=False, layout="constrained")
    cmap = plt.get_cmap(COLORSCALE.lower(), max_rank + 1)
    norm = matplotlib.colors.BoundaryNorm([k - 0.5 for k in range(max_rank + 2)], cmap.N)
    ranked = [_draw_plot(ax, data.plot(cost), cmap, norm) for ax, cost in zip(axes[0], costs)]
    if any(v.kind == "ranked" for v in data.views):
        fig.colorbar(
            [sc for sc in ranked if sc is not None][-1],
            ax=axes[0].tolist(),
            label="front rank (0 = Pareto front)",
            shrink=0.85,
            ticks=list(range(max_rank + 1)) if max_rank <= 12 else None,
        )
    _shared_legend(fig, axes[0])
    fig.suptitle(
        f"{config.name or run.path.name}: {len(data.records)} trials, "
        f"{len(data.summary['front'])} on the front ({', '.join(config.objectives)})",
        fontsize=10,
    )
    path = Path(path)
    try:
        write_atomic(path, _png_bytes(fig))
    finally:
        plt.close(fig)
    return path


def _draw_plot(ax: Any, plot: CostPlot, cmap: Any, norm: Any) -> Any:
    """Draw one accuracy-vs-cost plot on matplotlib axes `ax`; the ranked points' scatter (for
    the colour bar), None when it has none."""
    import matplotlib

    if plot.front:
        ax.step(*plot.front_xy(), where="post", color="0.4", ls=":", lw=1.2, label="Pareto front", zorder=1)
    good = plot.of_kind("ranked")
    sc = _draw_ranked(ax, plot, good, cmap, norm) if good else None
    for kind, (label, _, marker, colour) in KINDS.items():
        sel = plot.of_kind(kind)
        if sel:
            style = dict(c=colour) if marker == "x" else dict(facecolors="none", edgecolors=colour)
            ax.scatter(plot.xs(sel), [v.y for v in sel], marker=marker, s=36, label=label, zorder=2, **style)
    if plot.log:
        ax.set_xscale("log")
    ax.set_xlabel(LABELS[plot.cost])
    ax.set_ylabel(LABELS["accuracy"])
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    if not plot.points:
        ax.text(0.5, 0.5, "no trials yet", transform=ax.transAxes, ha="center", va="center", color="0.5")
    return sc


def _draw_ranked(ax: Any, plot: CostPlot, good: Sequence[TrialView], cmap: Any, norm: Any) -> Any:
    """The ranked points of a plot on `ax`: seed error bars, the points coloured by front rank,
    a star round the knee; returns their scatter."""
    seeded = [v for v in good if v.record.accuracy_se is not None]  # error bars where there are seeds
    if seeded:
        ax.errorbar(
            plot.xs(seeded),
            [v.y for v in seeded],
            fmt="none",
            yerr=[v.record.accuracy_se for v in seeded],
            ecolor="0.4",
            elinewidth=0.8,
            zorder=2,
        )
    promoted = plot.promoted()
    if promoted:
        _draw_proxy_scores(ax, plot, promoted)
    groups = [
        (promoted, "D", 44, "promoted (rung 1+)"),
        ([v for v in good if v.record.rung == 0], "o", 16, "scored by the proxy alone"),
    ]
    for views, marker, size, label in groups if promoted else [(good, "o", 36, "complete")]:
        if views:
            sc = ax.scatter(
                plot.xs(views),
                [v.y for v in views],
                c=[v.rank for v in views],
                cmap=cmap,
                norm=norm,
                s=size,
                marker=marker,
                edgecolors="black",
                linewidths=[1.2 if v.rank == 0 else 0.3 for v in views],
                label=label,
                zorder=3,
            )
    for v in good:
        if v.is_knee:
            ax.scatter(
                plot.xs([v]),
                [v.y],
                marker="*",
                s=260,
                facecolors="none",
                edgecolors="black",
                linewidths=1.2,
                label="knee",
                zorder=4,
            )
    return sc


def _draw_proxy_scores(ax: Any, plot: CostPlot, promoted: Sequence[TrialView]) -> None:
    """Where the proxy had each promoted point: a small grey ring, joined to its promoted score."""
    for v in promoted:
        px, py = plot.proxy_xy([v])
        if py:
            ax.plot([px[0], px[0]], [py[0], v.y], color="0.6", lw=0.8, zorder=1)
            label = "the proxy's score of a promoted point"
            ax.scatter(px, py, marker="o", s=14, facecolors="none", edgecolors="0.5", zorder=2, label=label)


def _shared_legend(fig: Any, axes: Sequence[Any]) -> None:
    """One legend under the plots: each label once, from whichever plot has it first."""
    legend: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    if legend:
        fig.legend(
            list(legend.values()), list(legend), loc="outside lower center", ncol=min(len(legend), 4), fontsize=8
        )


def _png_bytes(fig: Any) -> bytes:
    """The matplotlib figure as PNG bytes (150 dpi)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    return buf.getvalue()
