"""How the dashboard draws: each objective's axis label, each kind of trial's legend name, symbol,
marker and colour, and the colour scale of the front ranks; shared by the page and the PNG."""

from __future__ import annotations

from nas.run.pareto import OBJECTIVES

__all__ = ["LABELS", "KINDS", "COLORSCALE"]

LABELS = {name: o.label for name, o in OBJECTIVES.items()}
# how each kind of trial is drawn: (legend name, plotly symbol, matplotlib marker, colour)
KINDS = {
    "stopped": ("stopped early (lower fidelity)", "circle-open", "o", "#7f7f7f"),
    "failed": ("failed (no accuracy: drawn at 0)", "x-thin-open", "x", "#d62728"),
    "infeasible": ("infeasible (over a limit)", "diamond-open", "D", "#ff7f0e"),
    "unranked": ("complete, an objective unmeasured", "square-open", "s", "#17becf"),
}
COLORSCALE = "Plasma"
