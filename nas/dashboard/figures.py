"""The page's plotly figures over `RunData`: accuracy against each cost objective (`pareto_figures`,
with `hover_text` on every point) and the hypervolume after each evaluation (`hypervolume_figure`)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nas.dashboard.cells import format_noise, format_value
from nas.dashboard.style import COLORSCALE, KINDS, LABELS
from nas.net.model import describe_block
from nas.run.record import TrialRecord

if TYPE_CHECKING:
    from nas.dashboard.data import CostPlot, RunData, TrialView

HOVER_BLOCKS = 1000  # up to this many architectures the hover lists every block; beyond, one line each


def hover_text(v: TrialView, costs: Sequence[str], blocks: bool = True) -> str:
    """What hovering a point shows: its id, rank, metrics with their noise and, per block, the
    op with its settings and learned α/β (`blocks`), else the architecture in one line."""
    r = v.record
    head = f"<b>{r.arch_id}</b>  #{r.number} {r.status}" + (f" ({r.reference})" if r.reference else "")
    rank = (
        "front rank " + str(v.rank) + (" (Pareto front)" if v.rank == 0 else "") + (", knee" if v.is_knee else "")
        if v.rank is not None
        else KINDS[v.kind][0]
    )
    metrics = " · ".join(f"{o} {format_value(o, r.value(o))}" for o in ("accuracy", *costs))
    lines = [head, rank, metrics + format_noise(r.seeds, r.accuracy_se), f"{r.epochs} epochs, {r.seconds:.1f} s"]
    if v.scored:
        lines.insert(3, "scored by " + html.escape(v.scored))
    if r.error:
        lines.append(html.escape(r.error[:120]))
    if blocks:
        lines += [describe_block(b) for b in v.blocks]
    elif v.summary:
        lines.append(html.escape(v.summary))
    return "<br>".join(lines)


def pareto_figures(data: RunData) -> dict[str, Any]:
    """One plotly Figure per cost objective the run measured (`RunData.costs`): accuracy against
    it, every architecture with that cost."""
    views = data.views
    hovers = {v.record.arch_id: hover_text(v, data.costs, blocks=len(views) <= HOVER_BLOCKS) for v in views}
    return {cost: _pareto_figure(data.plot(cost), hovers, data.max_rank) for cost in data.costs}


def _pareto_figure(plot: CostPlot, hovers: dict[str, str], max_rank: int) -> Any:
    """The plotly Figure of one accuracy-vs-cost plot: the 2-D front as a step line, the ranked
    points coloured by rank, the other kinds in their symbols, the knee annotated."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if plot.front:
        x, y = plot.front_xy()
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line=dict(shape="hv", color="rgba(80,80,80,0.6)", dash="dot"),
                name=f"Pareto front, accuracy vs {plot.cost}",
                hoverinfo="skip",
            )
        )
    good = plot.of_kind("ranked")
    promoted = plot.promoted()
    if promoted:  # a promoted run: the promoted points, where the proxy had them, and the proxy's alone
        fig.add_trace(_proxy_trace(plot, promoted))
        proxy = [v for v in good if v.record.rung == 0]
        fig.add_trace(
            _ranked_trace(plot, promoted, hovers, max_rank, "promoted, scored at rung 1+ (colour: front rank)")
        )
        if proxy:
            fig.add_trace(_ranked_trace(plot, proxy, hovers, max_rank, "scored by the proxy alone", scale=False))
    elif good:
        fig.add_trace(_ranked_trace(plot, good, hovers, max_rank))
    for kind, (label, symbol, _, colour) in KINDS.items():
        sel = plot.of_kind(kind)
        if sel:
            fig.add_trace(
                go.Scatter(
                    x=plot.xs(sel),
                    y=[v.y for v in sel],
                    mode="markers",
                    name=label,
                    customdata=[v.record.number for v in sel],
                    text=[hovers[v.record.arch_id] for v in sel],
                    hovertemplate="%{text}<extra></extra>",
                    marker=dict(symbol=symbol, color=colour, size=10, line=dict(width=2, color=colour)),
                )
            )
    for v in plot.points:
        if v.is_knee:
            fig.add_annotation(x=plot.xs([v])[0], y=v.y, text="knee", showarrow=True, arrowhead=2, ax=25, ay=-25)
    _pareto_layout(fig, plot)
    return fig


def _proxy_trace(plot: CostPlot, promoted: Sequence[TrialView]) -> Any:
    """Where the proxy put each promoted point: a small grey ring, joined to the promoted score."""
    import plotly.graph_objects as go

    xs, ys = [], []
    for v in promoted:
        px, py = plot.proxy_xy([v])
        if py:
            xs += [px[0], px[0], None]
            ys += [py[0], v.y, None]
    return go.Scatter(
        x=xs,
        y=ys,
        mode="lines+markers",
        name="the proxy's score of a promoted point",
        line=dict(color="rgba(120,120,120,0.5)", width=1),
        marker=dict(symbol="circle-open", color="#7f7f7f", size=[6, 0, 0] * (len(xs) // 3)),
        hoverinfo="skip",
    )


def _ranked_trace(
    plot: CostPlot,
    good: Sequence[TrialView],
    hovers: dict[str, str],
    max_rank: int,
    name: str = "complete (colour: front rank)",
    scale: bool = True,
) -> Any:
    """The ranked points of a plot: coloured by front rank, the knee a star, seed error bars; in a
    promoted run the promoted points are diamonds and those the proxy alone scored are smaller."""
    import plotly.graph_objects as go

    def symbol(v: TrialView) -> str:
        return "star" if v.is_knee else "diamond" if v.record.rung > 0 else "circle"

    def size(v: TrialView) -> int:
        return 16 if v.is_knee else 12 if v.record.rung > 0 else 10 if not v.scored else 7

    return go.Scatter(
        x=plot.xs(good),
        y=[v.y for v in good],
        mode="markers",
        name=name,
        customdata=[v.record.number for v in good],
        text=[hovers[v.record.arch_id] for v in good],
        hovertemplate="%{text}<extra></extra>",
        error_y=dict(
            type="data",
            array=[v.record.accuracy_se or 0.0 for v in good],
            thickness=1,
            width=3,
            color="rgba(60,60,60,0.7)",
        ),
        marker=dict(
            color=[v.rank for v in good],
            colorscale=COLORSCALE,
            cmin=0,
            cmax=max(max_rank, 1),
            size=[size(v) for v in good],
            symbol=[symbol(v) for v in good],
            line=dict(width=[2 if v.rank == 0 else 0.5 for v in good], color="black"),
            colorbar=dict(title=dict(text="front rank"), thickness=12, dtick=1 if max_rank <= 12 else None),
            **({} if scale else {"showscale": False}),  # one colour bar for both traces of a promoted run
        ),
    )


def _pareto_layout(fig: Any, plot: CostPlot) -> None:
    """Title (with the architectures left out for want of the cost), axes and legend of a plot."""
    cost, missing = plot.cost, plot.missing
    fig.update_layout(
        title=dict(text=f"accuracy vs {cost}" + (f" ({missing} trials without {cost} not shown)" if missing else "")),
        xaxis=dict(title=dict(text=LABELS[cost]), type="log" if plot.log else "linear"),
        yaxis=dict(title=dict(text=LABELS["accuracy"]), tickformat=".0%"),
        hovermode="closest",
        height=460,
        margin=dict(l=60, r=20, t=50, b=50),
        legend=dict(orientation="h", y=-0.2),
        template="plotly_white",
    )


def hypervolume_figure(
    records: Sequence[TrialRecord],
    hv: Sequence[float],
    objectives: Sequence[str],
    scales: dict[str, float],
    from_data: bool,
) -> Any:
    """The hypervolume after each evaluation (`hv`, on the architectures' means over the seeds
    evaluated so far: `RunData.hypervolumes`)."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Scatter(
            x=[r.number for r in records],
            y=hv,
            mode="lines+markers",
            line=dict(shape="hv"),
            name="hypervolume",
            hovertemplate="after trial #%{x}: %{y:.4f}<extra></extra>",
        )
    )
    scale_txt = ", ".join(f"{o} / {s:.4g}" for o, s in scales.items() if o in objectives)
    fig.update_layout(
        title=dict(
            text="hypervolume of the front over trials",
            subtitle=dict(
                text=f"losses 1 − accuracy, {scale_txt}; reference point 1"
                + (" (scales from the data: run.yaml has no hypervolume_scale)" if from_data else "")
            ),
        ),
        xaxis=dict(title=dict(text="trial (in the order they finished)")),
        yaxis=dict(title=dict(text="hypervolume")),
        height=340,
        margin=dict(l=60, r=20, t=70, b=50),
        template="plotly_white",
    )
    return fig
