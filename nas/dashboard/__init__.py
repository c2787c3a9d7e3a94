"""What a run found, as pictures: `python -m nas.dashboard results/RUN`.

Writes two files into the run folder (or --out DIR):

  dashboard.html  one self-contained page (plotly.js inlined, no CDN, works offline):
                  * accuracy against each cost objective the trials measured (MACs, params,
                    latency, memory), one plot each: every trial is a point, coloured by its
                    non-domination rank over the run's objectives (0 = the Pareto front; Optuna's
                    fast non-dominated sort), the 2-D front of that plot as a step line, the knee
                    (what `python -m nas.export --pick knee` exports) as a star; stopped trials
                    (lower fidelity) as open circles, failed and infeasible ones (no accuracy: drawn
                    at 0) as crosses and diamonds. Hovering shows the arch id, its metrics and the
                    per-block map (conv or ACmix, kernels, heads, learned α/β); clicking a point
                    shows its block table and the export command.
                  * the hypervolume after each trial (pareto.hypervolume_history);
                  * a table of the front and one of every trial (errors of failed ones included).
  pareto.png      the same fronts for papers and READMEs (matplotlib).

It reads trials.jsonl as it is, so it works while a search is still appending to it (0 or 1
trials included). `--serve` then starts optuna-dashboard on the run's Optuna study
(study.journal), bound to 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from nas.cli import shell_command
from nas.fidelity.reference import DEPLOYMENT, long_label
from nas.net.arch import Arch
from nas.net.model import describe_block
from nas.run import pareto
from nas.run.archive import Archive, ArchResult
from nas.run.files import write_atomic
from nas.run.folder import RunConfig, RunError, RunFolder, TrialRecord
from nas.run.pareto import COSTS, OBJECTIVES
from nas.search.report import listed

__all__ = [
    'TrialView',
    'RunData',
    'DashboardFiles',
    'trial_views',
    'pareto_figures',
    'hypervolume_figure',
    'render_html',
    'render_png',
    'write_dashboard',
    'serve',
    'main',
]

HTML, PNG = 'dashboard.html', 'pareto.png'
LABELS = {name: o.label for name, o in OBJECTIVES.items()}
# how each kind of trial is drawn: (legend name, plotly symbol, matplotlib marker, colour)
KINDS = {
    'stopped': ('stopped early (lower fidelity)', 'circle-open', 'o', '#7f7f7f'),
    'failed': ('failed (no accuracy: drawn at 0)', 'x-thin-open', 'x', '#d62728'),
    'infeasible': ('infeasible (over a limit)', 'diamond-open', 'D', '#ff7f0e'),
    'unranked': ('complete, an objective unmeasured', 'square-open', 's', '#17becf'),
}
COLORSCALE = 'Plasma'


# ---------------------------------------------------------------------------------- the data


@dataclass
class TrialView:
    """One architecture (all its evaluations, one per seed) as the dashboard shows it."""

    record: ArchResult
    kind: str  # 'ranked' (on some front), or a key of KINDS
    rank: int | None  # non-domination rank over the run's objectives (0 = Pareto front)
    blocks: list[dict[str, Any]] = field(default_factory=list)  # RunFolder.block_map
    is_knee: bool = False
    summary: str = ''  # the architecture in one line (Arch.summary)

    @property
    def y(self) -> float:
        """Accuracy as plotted: the mean over seeds (0 for an architecture that has none)."""
        return float(self.record.accuracy) if self.record.accuracy is not None else 0.0


def _kind(r: ArchResult, ranks: dict[int, int]) -> str:
    """How an architecture is drawn: 'ranked' (it has a front rank), else a key of KINDS."""
    if r.number in ranks:
        return 'ranked'
    if r.status == 'infeasible' or (r.status == 'complete' and not r.feasible):
        return 'infeasible'
    if r.status in ('stopped', 'failed'):
        return r.status
    return 'unranked'


def trial_views(run: RunFolder, archive: Archive) -> list[TrialView]:
    """A TrialView per architecture of `archive`: rank, kind, per-block map (learned α/β), knee
    flag, all on the means over seeds."""
    objectives = archive.objectives
    archs = archive.architectures
    ranks = pareto.ranks(archs, objectives)
    k = pareto.knee(archive.front(), objectives)
    views = []
    for r in archs:
        try:
            arch = Arch.from_dict(r.arch)
            blocks, summary = run.block_map(r.record, arch), arch.summary()
        except (ValueError, TypeError):  # an arch this version cannot read: show the record anyway
            blocks, summary = [], ''
        views.append(
            TrialView(
                r,
                _kind(r, ranks),
                ranks.get(r.number),
                blocks,
                is_knee=k is not None and k.number == r.number,
                summary=summary,
            )
        )
    return views


@dataclass
class CostPlot:
    """One accuracy-vs-cost plot as the page and the PNG both draw it: the architectures with
    that cost measured, the 2-D front of accuracy against that cost, and the axis scale."""

    cost: str
    points: list[TrialView]  # the architectures with this cost measured, in the run's order
    front: list[ArchResult]  # the 2-D front of accuracy against this cost (the step line)
    missing: int  # architectures without this cost (not drawn)

    def of_kind(self, kind: str) -> list[TrialView]:
        """The points of one kind ('ranked' or a key of KINDS)."""
        return [v for v in self.points if v.kind == kind]

    def xs(self, views: Sequence[TrialView]) -> list[float]:
        """The cost of each of `views` (points of this plot), as plotted."""
        return [float(v.record.value(self.cost)) for v in views]

    def front_xy(self) -> tuple[list[float], list[float]]:
        """The 2-D front's costs and accuracies, in the front's order (increasing cost)."""
        return [float(r.value(self.cost)) for r in self.front], [float(r.accuracy) for r in self.front]

    @property
    def log(self) -> bool:
        """Whether the cost axis is logarithmic: the nonzero costs span more than a factor of 20."""
        vals = [float(v.record.value(self.cost)) for v in self.points if v.record.value(self.cost)]
        return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 20


@dataclass
class RunData:
    """A run as the dashboard shows it, read once for the page and the PNG: its records, every
    architecture over its seeds with the front (`Archive`) and pareto.json's summary of it, the
    hypervolume after each evaluation, a view per architecture and, per cost, what its plot
    shows (`plot`, computed once for both files)."""

    config: RunConfig
    records: list[TrialRecord]
    archive: Archive
    hypervolumes: list[float]
    scales: dict[str, float]
    scales_from_data: bool
    views: list[TrialView]
    summary: dict[str, Any]  # pareto.json's content (`Archive.summary`; its hypervolume on `scales`)
    costs: list[str]  # the cost objectives plotted (`measured_costs`)
    _plots: dict[str, CostPlot] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def read(cls, run: RunFolder) -> RunData:
        """Read the run folder (run.yaml, trials.jsonl) and aggregate it, once."""
        config = run.config()
        records = run.trials()
        objectives = list(config.objectives)
        scales, from_data = _scales(config, records, objectives)
        archive = Archive(objectives)
        hypervolumes: list[float] = []
        for record in records:  # the hypervolume moves only when the front does
            changed = archive.add(record)
            hypervolumes.append(archive.hypervolume(scales) if changed or not hypervolumes else hypervolumes[-1])
        views = trial_views(run, archive)
        summary = archive.summary(scales)
        return cls(
            config,
            records,
            archive,
            hypervolumes,
            scales,
            from_data,
            views,
            summary,
            measured_costs(records, objectives),
        )

    @property
    def hypervolume(self) -> float:
        """The hypervolume after the last evaluation (0 before any)."""
        return self.hypervolumes[-1] if self.records else 0.0

    @property
    def max_rank(self) -> int:
        """The highest front rank of any architecture (0 when none is ranked)."""
        return max([v.rank for v in self.views if v.rank is not None], default=0)

    def plot(self, cost: str) -> CostPlot:
        """What the accuracy-vs-`cost` plot shows, computed on the first call and kept."""
        if cost not in self._plots:
            points = [v for v in self.views if v.record.value(cost) is not None]
            self._plots[cost] = CostPlot(cost, points, self._front_2d(cost), len(self.views) - len(points))
        return self._plots[cost]

    def _front_2d(self, cost: str) -> list[ArchResult]:
        """The front of accuracy against `cost` alone, over every architecture's means: the
        Archive's own front when those are the run's objectives."""
        if self.archive.objectives == ['accuracy', cost]:
            return self.archive.front()
        return pareto.front(self.archive.architectures, ['accuracy', cost])


def measured_costs(records: Sequence[TrialRecord], objectives: Sequence[str]) -> list[str]:
    """The cost objectives to plot: the run's own first, then any other that some trial measured."""
    own = [o for o in objectives if o != 'accuracy']
    return own + [c for c in COSTS if c not in own and any(r.value(c) is not None for r in records)]


def _fmt(obj: str, v: float | None) -> str:
    """A value of objective `obj` as the tables and hovers show it ('91.20%', '1.234 M', '3.1 ms')."""
    if v is None:
        return '–'
    if obj == 'accuracy':
        return f"{100 * v:.2f}%"
    if obj in ('macs', 'params'):
        return f"{v / 1e6:.3f} M" if v >= 1e5 else f"{v / 1e3:.1f} k"
    return f"{v:.3g} {'ms' if obj == 'latency' else 'MB'}"


def _noise(seeds: int, se: float | None) -> str:
    """' ± 0.31% (3 seeds)': the standard error `se` of a mean accuracy, and the seeds behind it."""
    if seeds < 2:
        return f" ({seeds} seed)" if seeds else ''
    return f" ± {100 * se:.2f}% ({seeds} seeds)"


def _num(x: float | None, fmt: str = '.2f') -> str:
    """`x` formatted, or '–' when it is unknown."""
    return '–' if x is None else format(x, fmt)


def _pct(mean: float | None, std: float | None) -> str:
    """A fraction and its std as percentage points ('91.20 ± 0.80'), '–' when unknown."""
    return '–' if mean is None else f'{100 * mean:.2f}' + ('' if std is None else f' ± {100 * std:.2f}')


HOVER_BLOCKS = 1000  # up to this many architectures the hover lists every block; beyond, one line each


def hover_text(v: TrialView, costs: Sequence[str], blocks: bool = True) -> str:
    """What hovering a point shows: its id, rank, metrics with their noise and, per block, the
    op with its settings and learned α/β (`blocks`), else the architecture in one line."""
    r = v.record
    head = f"<b>{r.arch_id}</b>  #{r.number} {r.status}" + (f" ({r.reference})" if r.reference else '')
    rank = (
        'front rank ' + str(v.rank) + (' (Pareto front)' if v.rank == 0 else '') + (', knee' if v.is_knee else '')
        if v.rank is not None
        else KINDS[v.kind][0]
    )
    metrics = ' · '.join(f"{o} {_fmt(o, r.value(o))}" for o in ('accuracy', *costs))
    lines = [head, rank, metrics + _noise(r.seeds, r.accuracy_se), f"{r.epochs} epochs, {r.seconds:.1f} s"]
    if r.error:
        lines.append(html.escape(r.error[:120]))
    if blocks:
        lines += [describe_block(b) for b in v.blocks]
    elif v.summary:
        lines.append(html.escape(v.summary))
    return '<br>'.join(lines)


def _scales(
    run_config: RunConfig, records: Sequence[TrialRecord], objectives: Sequence[str]
) -> tuple[dict[str, float], bool]:
    """run.yaml's hypervolume_scale, or (when it lacks one) twice the largest measured cost."""
    scales = dict(run_config.hypervolume_scale)
    from_data = False
    for o in objectives:
        if o != 'accuracy' and not scales.get(o):
            vals = [float(r.value(o)) for r in records if r.value(o) is not None]
            scales[o] = 2.0 * max(vals) if vals else 1.0
            from_data = True
    return scales, from_data


# ---------------------------------------------------------------------------------- plotly figures


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
                mode='lines',
                line=dict(shape='hv', color='rgba(80,80,80,0.6)', dash='dot'),
                name=f'Pareto front, accuracy vs {plot.cost}',
                hoverinfo='skip',
            )
        )
    good = plot.of_kind('ranked')
    if good:
        fig.add_trace(_ranked_trace(plot, good, hovers, max_rank))
    for kind, (label, symbol, _, colour) in KINDS.items():
        sel = plot.of_kind(kind)
        if sel:
            fig.add_trace(
                go.Scatter(
                    x=plot.xs(sel),
                    y=[v.y for v in sel],
                    mode='markers',
                    name=label,
                    customdata=[v.record.number for v in sel],
                    text=[hovers[v.record.arch_id] for v in sel],
                    hovertemplate='%{text}<extra></extra>',
                    marker=dict(symbol=symbol, color=colour, size=10, line=dict(width=2, color=colour)),
                )
            )
    for v in plot.points:
        if v.is_knee:
            fig.add_annotation(x=plot.xs([v])[0], y=v.y, text='knee', showarrow=True, arrowhead=2, ax=25, ay=-25)
    _pareto_layout(fig, plot)
    return fig


def _ranked_trace(plot: CostPlot, good: Sequence[TrialView], hovers: dict[str, str], max_rank: int) -> Any:
    """The ranked points of a plot: coloured by front rank, the knee a star, seed error bars."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=plot.xs(good),
        y=[v.y for v in good],
        mode='markers',
        name='complete (colour: front rank)',
        customdata=[v.record.number for v in good],
        text=[hovers[v.record.arch_id] for v in good],
        hovertemplate='%{text}<extra></extra>',
        error_y=dict(
            type='data',
            array=[v.record.accuracy_se or 0.0 for v in good],
            thickness=1,
            width=3,
            color='rgba(60,60,60,0.7)',
        ),
        marker=dict(
            color=[v.rank for v in good],
            colorscale=COLORSCALE,
            cmin=0,
            cmax=max(max_rank, 1),
            size=[16 if v.is_knee else 10 for v in good],
            symbol=['star' if v.is_knee else 'circle' for v in good],
            line=dict(width=[2 if v.rank == 0 else 0.5 for v in good], color='black'),
            colorbar=dict(title=dict(text='front rank'), thickness=12, dtick=1 if max_rank <= 12 else None),
        ),
    )


def _pareto_layout(fig: Any, plot: CostPlot) -> None:
    """Title (with the architectures left out for want of the cost), axes and legend of a plot."""
    cost, missing = plot.cost, plot.missing
    fig.update_layout(
        title=dict(text=f"accuracy vs {cost}" + (f" ({missing} trials without {cost} not shown)" if missing else '')),
        xaxis=dict(title=dict(text=LABELS[cost]), type='log' if plot.log else 'linear'),
        yaxis=dict(title=dict(text=LABELS['accuracy']), tickformat='.0%'),
        hovermode='closest',
        height=460,
        margin=dict(l=60, r=20, t=50, b=50),
        legend=dict(orientation='h', y=-0.2),
        template='plotly_white',
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
            mode='lines+markers',
            line=dict(shape='hv'),
            name='hypervolume',
            hovertemplate='after trial #%{x}: %{y:.4f}<extra></extra>',
        )
    )
    scale_txt = ', '.join(f"{o} / {s:.4g}" for o, s in scales.items() if o in objectives)
    fig.update_layout(
        title=dict(
            text='hypervolume of the front over trials',
            subtitle=dict(
                text=f"losses 1 − accuracy, {scale_txt}; reference point 1"
                + (' (scales from the data: run.yaml has no hypervolume_scale)' if from_data else '')
            ),
        ),
        xaxis=dict(title=dict(text='trial (in the order they finished)')),
        yaxis=dict(title=dict(text='hypervolume')),
        height=340,
        margin=dict(l=60, r=20, t=70, b=50),
        template='plotly_white',
    )
    return fig


def fidelity_panel(run: RunFolder) -> tuple[Any, str] | None:
    """The fidelity check's scatter (proxy mean vs long mean per architecture, std over seeds as
    error bars, τ, ρ and test-retest in the title) and its table; None without fidelity.json."""
    path = run.path / 'fidelity.json'
    if not path.is_file():
        return None
    s = json.loads(path.read_text())
    deploy = s.get('reference') == DEPLOYMENT  # a report from before the deployment-like default: the same subset
    long = 'deployment' if deploy else 'longer training'
    return _fidelity_figure(s, long), _fidelity_head(s, deploy, long) + _fidelity_table(s, long)


def _fidelity_figure(s: dict[str, Any], long: str) -> Any:
    """The scatter of fidelity.json `s`: proxy mean vs `long` mean of each architecture that has both."""
    import plotly.graph_objects as go

    rows = [a for a in s['archs'] if a['proxy_mean'] is not None and a['long_mean'] is not None]
    fig = go.Figure(
        go.Scatter(
            x=[100 * a['proxy_mean'] for a in rows],
            y=[100 * a['long_mean'] for a in rows],
            mode='markers',
            error_x=dict(type='data', array=[100 * (a['proxy_std'] or 0) for a in rows]),
            error_y=dict(type='data', array=[100 * (a['long_std'] or 0) for a in rows]),
            marker=dict(size=9, color=['#d62728' if a['on_proxy_front'] else '#1f77b4' for a in rows]),
            text=[
                a['arch_id']
                + (' (proxy front)' if a['on_proxy_front'] else '')
                + (' (long front)' if a['on_long_front'] else '')
                for a in rows
            ],
            hovertemplate='%{text}<br>proxy %{x:.2f}, long %{y:.2f}<extra></extra>',
            name='architectures',
        )
    )
    fig.update_layout(
        title=dict(
            text=f"proxy vs {long}: Kendall τ {_num(s['kendall_tau'])}, Spearman ρ "
            f"{_num(s['spearman_rho'])}; {long}'s own test-retest τ {_num(s.get('long_test_retest_tau'))}",
            subtitle=dict(
                text=f"{s['proxy_epochs']} vs {s['long_epochs']} epochs, seeds "
                f"{', '.join(map(str, s['seeds']))}; error bars: std over seeds; red: proxy front"
            ),
        ),
        xaxis=dict(title=dict(text=f"proxy accuracy % ({s['proxy_epochs']} epochs, mean)")),
        yaxis=dict(title=dict(text=f"{long} accuracy % after {s['long_epochs']} epochs (mean)")),
        height=380,
        margin=dict(l=60, r=20, t=80, b=50),
        template='plotly_white',
    )
    return fig


def _fidelity_head(s: dict[str, Any], deploy: bool, long: str) -> str:
    """The heading and the paragraph of statistics over the fidelity table."""
    return (
        f"<h2>Does the proxy rank like {'deployment training' if deploy else 'longer training'}? "
        f"(<code>python -m nas.fidelity</code>)</h2><p>Against {html.escape(long_label(s))}: Kendall τ "
        f"{_num(s['kendall_tau'])}, Spearman ρ {_num(s['spearman_rho'])} (first seed alone: τ "
        f"{_num(s['seed0_kendall_tau'])}); the reference's own test-retest τ {_num(s.get('long_test_retest_tau'))}, "
        f"one proxy seed vs one reference seed τ {_num(s.get('pair_kendall_tau'))}; the proxy's test-retest τ "
        f"{_num(s['test_retest_tau'])}; seed std: proxy {_pct(s['proxy_seed_std'], None)}, {long} "
        f"{_pct(s['long_seed_std'], None)} points; {len(s['proxy_front_kept'])} of {len(s['proxy_front'])} proxy "
        f"front points stay on the {long} front.</p>"
    )


def _fidelity_table(s: dict[str, Any], long: str) -> str:
    """Every architecture of the fidelity check: its means ± std and which fronts it is on."""
    return _table(
        ['arch id', 'proxy (mean ± std)', f'{long} (mean ± std)', 'proxy front', f'{long} front'],
        [
            [
                f"<code>{html.escape(a['arch_id'])}</code>",
                _pct(a['proxy_mean'], a['proxy_std']),
                _pct(a['long_mean'], a['long_std']),
                '●' if a['on_proxy_front'] else '',
                '●' if a['on_long_front'] else '',
            ]
            for a in s['archs']
        ],
        left=(0,),
    )


def calibration_section(config: RunConfig) -> str:
    """The table of the calibration the run's proxy came from (run.yaml `calibration`, from
    `nas.search --proxy`); '' for a run on a proxy that was not calibrated."""
    cal = config.calibration
    if not cal.get('table'):
        return ''
    signals = [k for k in cal['table'][0] if isinstance(cal['table'][0][k], dict)]
    rows = [
        [
            f"<code>{html.escape(r['key'])}</code>" + (' ◀ this run' if r['key'] == cal.get('candidate') else ''),
            _num(r['seconds'], '.1f'),
            _num(r['cost_ratio'], '.3f'),
            _num(r.get('accuracy_noise_ratio')),
            *[f"{_num(r[s]['tau'])} · {_num(r[s]['share'])}" + (' ✓' if r[s]['qualified'] else '') for s in signals],
        ]
        for r in cal['table']
    ]
    d = cal.get('deploy') or {}
    head = (
        f"<h2>The proxy's calibration (<code>python -m nas.calibrate</code>)</h2><p>{html.escape(str(cal.get('verdict', '')))}"
        f"<br>Against deployment-like training on {html.escape(str(cal.get('dataset')))}: "
        f"{_num(d.get('train_images'), ',')} images × {d.get('epochs')} epochs, {_num(d.get('seconds'), '.1f')} s "
        f"per evaluation, test-retest τ {_num(d.get('retest'))}. Accuracy std/gap: the proxy's accuracy seed std "
        f"over the median gap between neighbouring panel networks (below 1 to qualify); per rank signal: τ (one proxy seed "
        f"vs one deployment seed) · its share of deployment's test-retest τ; ✓ qualifies. Folder: "
        f"<code>{html.escape(str(cal.get('folder')))}</code></p>"
    )
    return head + _table(
        ['proxy', 's / evaluation', '× deployment', 'accuracy std/gap', *[f'{s}: τ · share' for s in signals]],
        rows,
        left=(0,),
    )


# ---------------------------------------------------------------------------------- HTML

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>acmix-nas · {title}</title>
<script>
window.__errors = [];
function __report(msg) {{
  window.__errors.push(String(msg));
  var el = document.getElementById('js-errors');
  if (el) {{ el.textContent = window.__errors.join('\\n'); el.hidden = false; }}
}}
window.addEventListener('error', function (e) {{ __report(e.message || e); }});
window.addEventListener('unhandledrejection', function (e) {{ __report(e.reason); }});
</script>
<script>{plotly_js}</script>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; margin-bottom: 0.2em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
.meta {{ color: #555; }} .plots {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1em; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ddd; padding: 3px 7px; text-align: right; }}
th {{ background: #f4f4f4; }} td.l, th.l {{ text-align: left; }} tr.knee td {{ background: #fff6d5; }}
code {{ background: #f4f4f4; padding: 0 3px; }} #details {{ border: 1px solid #ccc; padding: 0.6em 1em; margin-top: 1em; }}
#js-errors {{ color: #b00; white-space: pre-wrap; }} .empty {{ color: #777; font-style: italic; }}
</style></head>
<body>
<h1>acmix-nas run <code>{title}</code></h1>
<div class="meta">{meta}</div>
<pre id="js-errors" hidden></pre>
<p>Status: <span id="render-status">not rendered</span>;
points drawn: <span id="n-points">0</span></p>
{empty}
<div class="plots">{plot_divs}</div>
<div id="details" hidden></div>
{fidelity}
<h2>Pareto front ({n_front} of {n_trials} trials)</h2>
{front_table}
<details><summary><b>All trials</b> ({n_trials})</summary>{all_table}</details>
<script id="figures" type="application/json">{figures_json}</script>
<script id="trials" type="application/json">{trials_json}</script>
<script>
(function () {{
  var figs = JSON.parse(document.getElementById('figures').textContent);
  var trials = JSON.parse(document.getElementById('trials').textContent);
  var details = document.getElementById('details');
  function esc(s) {{ var d = document.createElement('div'); d.textContent = s == null ? '' : String(s); return d.innerHTML; }}
  function show(num) {{
    var t = trials[num]; if (!t) return;
    var rows = t.blocks.map(function (b) {{
      return '<tr>' + [b.stage, b.index, b.block, b.op, b.width, b.stride, b.feat_size.join('x'),
        b.kernel, b.heads, b.k_att, b.k_conv,
        b.alpha == null ? '' : b.alpha.toFixed(3), b.beta == null ? '' : b.beta.toFixed(3),
        b.rates || ''].map(function (v) {{ return '<td>' + esc(v == null ? '' : v) + '</td>'; }}).join('') + '</tr>';
    }}).join('');
    details.innerHTML = '<b>' + esc(t.arch_id) + '</b> (#' + t.number + ', ' + esc(t.status) + ') ' + esc(t.summary) +
      '<br>export: <code>' + esc(t.export) + '</code>' +
      '<table><tr><th>stage</th><th>block</th><th>kind</th><th>op</th><th>width</th><th>stride</th><th>output</th>' +
      '<th>kernel</th><th>heads</th><th>k_att</th><th>k_conv</th><th>α</th><th>β</th><th>α/β</th></tr>' + rows + '</table>';
    details.hidden = false;
  }}
  var jobs = Object.keys(figs).map(function (key) {{
    var gd = document.getElementById('plot-' + key);
    return Plotly.newPlot(gd, figs[key].data, figs[key].layout,
                          {{displaylogo: false, responsive: true}}).then(function () {{
      if (gd.on) gd.on('plotly_click', function (ev) {{ if (ev.points.length) show(ev.points[0].customdata); }});
      var n = gd.querySelectorAll('.scatterlayer .point').length;
      gd.setAttribute('data-points', String(n));
      return n;
    }});
  }});
  Promise.all(jobs).then(function (counts) {{
    var first = document.querySelector('.plots [id^="plot-"]');
    document.getElementById('n-points').textContent = first ? first.getAttribute('data-points') : '0';
    document.getElementById('render-status').textContent = window.__errors.length ? 'errors' : 'rendered';
  }}, function (e) {{ __report(e); }});
}})();
</script>
</body></html>
"""


def _json_for_script(obj: Any) -> str:
    """JSON safe inside <script>: '</' cannot close the element."""
    return obj.replace('</', '<\\/') if isinstance(obj, str) else json.dumps(obj).replace('</', '<\\/')


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    left: Sequence[int] = (),
    row_class: Sequence[str] | None = None,
) -> str:
    """An HTML table of `rows` (cells already HTML) under `header`; the columns in `left` left-aligned,
    `row_class` a class per row ('' for none)."""
    if not rows:
        return '<p class="empty">none yet</p>'
    th = ''.join(f'<th class="{"l" if i in left else ""}">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = []
    for j, row in enumerate(rows):
        cls = f' class="{row_class[j]}"' if row_class and row_class[j] else ''
        tds = ''.join(f'<td class="{"l" if i in left else ""}">{c}</td>' for i, c in enumerate(row))
        body.append(f'<tr{cls}>{tds}</tr>')
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def render_html(run: RunFolder, data: RunData | None = None) -> tuple[str, dict[str, Any]]:
    """The dashboard page, and a summary (trials, front size, points per plot, hypervolume)."""
    import plotly.offline

    data = data or RunData.read(run)
    records, costs = data.records, data.costs
    figures_json, plot_divs, fidelity = _figures(run, data)
    n_front, hv = len(data.summary['front']), data.hypervolume
    page = _PAGE.format(
        title=html.escape(data.config.name or run.path.name),
        meta=_meta(run, data),
        empty=_EMPTY if not records else '',
        plot_divs=plot_divs,
        plotly_js=plotly.offline.get_plotlyjs(),
        n_front=n_front,
        n_trials=len(records),
        front_table=_front_table(run, data),
        all_table=_all_table(data),
        fidelity=fidelity + calibration_section(data.config),
        figures_json=_json_for_script(figures_json),
        trials_json=_json_for_script(_trials_json(run, data.views)),
    )
    points = {c: len(data.plot(c).points) for c in costs}
    return page, dict(trials=len(records), front=n_front, points=points, costs=costs, hypervolume=hv)


_EMPTY = (
    '<p class="empty">No finished trials yet: this page shows the run as it is; run the command again '
    'to refresh it.</p>'
)


def _figures(run: RunFolder, data: RunData) -> tuple[str, str, str]:
    """The page's plots: their figures as one JSON object (key -> plotly figure), a <div> per
    plot, and the fidelity check's section ('' before `python -m nas.fidelity` has run)."""
    import plotly.io as pio

    figs = pareto_figures(data)
    hv_fig = hypervolume_figure(
        data.records, data.hypervolumes, data.config.objectives, data.scales, data.scales_from_data
    )
    fidelity = fidelity_panel(run)  # only once python -m nas.fidelity has run
    panels = [*figs.items(), ('hypervolume', hv_fig)] + ([('fidelity', fidelity[0])] if fidelity else [])
    fig_json = '{' + ','.join(f'{json.dumps(k)}:{pio.to_json(f, validate=False)}' for k, f in panels) + '}'
    plot_divs = ''.join(f'<div id="plot-{k}"></div>' for k, _ in panels)
    return fig_json, plot_divs, fidelity[1] if fidelity else ''


def _meta(run: RunFolder, data: RunData) -> str:
    """The lines under the title: objectives, sampler, space, data, device; the trials by status,
    the front's size and the hypervolume."""
    config, records = data.config, data.records
    counts = Counter(r.status for r in records)
    return (
        f"objectives: {', '.join(f'{o} ({OBJECTIVES[o][1]})' for o in config.objectives)} · sampler "
        f"{html.escape(config.sampler)}, seed {config.seed} · space "
        f"<code>{html.escape(config.space_file or '?')}</code> · data {html.escape(config.data.dataset)}"
        f" · device {html.escape(config.device)}<br>"
        f"{len(records)} trials: "
        + (', '.join(f"{n} {s}" for s, n in counts.most_common()) or 'none yet')
        + f" · front: {len(data.summary['front'])} · hypervolume {data.hypervolume:.4f} · written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )


def _front_table(run: RunFolder, data: RunData) -> str:
    """The table of the front: pareto.json's entries (`Archive.summary`: means, noise, whether
    each is separable from the points behind it), with the knee marked and each export command."""
    by_num = {v.record.number: v for v in data.views}
    fcosts = [o for o in data.config.objectives if o != 'accuracy']
    shown = fcosts + [c for c in data.costs if c not in fcosts]
    rows, classes = [], []
    for i, a in enumerate(data.summary['front'], 1):
        v = by_num[a['number']]
        n_acmix = sum(b['op'] == 'acmix' for b in v.blocks)
        rows.append(
            [
                i,
                f"<code>{a['arch_id']}</code>" + (' ★ knee' if v.is_knee else ''),
                html.escape(a['reference'] or ''),
                _fmt('accuracy', a['accuracy']) + _noise(a['seeds'], a['accuracy_se']),
                'yes' if a['separable'] else '⚠ within noise of ' + listed(a['unseparable_from']),
                *[_fmt(c, a[c]) for c in shown],
                v.record.epochs,
                f"{n_acmix}/{len(v.blocks)}",
                html.escape(v.summary),
                f"<code>{html.escape(shell_command('export', run.path, '--arch-id', a['arch_id']))}</code>",
            ]
        )
        classes.append('knee' if v.is_knee else '')
    header = ['#', 'arch id', 'reference', 'accuracy (mean ± s.e.)', 'separable', *shown]
    header += ['epochs', 'ACmix blocks', 'architecture', 'export']
    return _table(header, rows, left=(1, 2, 4, 7 + len(shown), 8 + len(shown)), row_class=classes)


def _all_table(data: RunData) -> str:
    """The table of every evaluation (seeds apart), with the rank of its architecture's mean and
    the error of a failed one."""
    costs = data.costs
    rank_of = {v.record.arch_id: v.rank for v in data.views}
    rows = [
        [
            r.number,
            f"<code>{r.arch_id}</code>",
            '' if r.seed is None else r.seed,
            html.escape(r.status),
            '' if rank_of.get(r.arch_id) is None else rank_of[r.arch_id],
            _fmt('accuracy', r.accuracy),
            *[_fmt(c, r.value(c)) for c in costs],
            r.epochs,
            f"{r.seconds:.1f}",
            html.escape(r.error or ''),
        ]
        for r in data.records
    ]
    return _table(
        ['#', 'arch id', 'seed', 'status', 'rank (of its mean)', 'accuracy', *costs, 'epochs', 'seconds', 'error'],
        rows,
        left=(1, 3, 9 + len(costs)),
    )


def _trials_json(run: RunFolder, views: Sequence[TrialView]) -> dict[int, dict[str, Any]]:
    """What clicking a point shows, by its number: its block table, its summary, its export command."""
    return {
        v.record.number: dict(
            number=v.record.number,
            arch_id=v.record.arch_id,
            status=v.record.status,
            blocks=v.blocks,
            summary=v.summary,
            export=shell_command('export', run.path, '--arch-id', v.record.arch_id),
        )
        for v in views
    }


# ---------------------------------------------------------------------------------- PNG


def render_png(run: RunFolder, path: Path, data: RunData | None = None) -> Path:
    """pareto.png: accuracy against each cost objective, trials coloured by front rank."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    data = data or RunData.read(run)
    config, max_rank = data.config, data.max_rank
    costs = data.costs or [c for c in config.objectives if c != 'accuracy'] or ['macs']
    fig, axes = plt.subplots(1, len(costs), figsize=(4.8 * len(costs) + 1.2, 4.6), squeeze=False, layout='constrained')
    cmap = plt.get_cmap(COLORSCALE.lower(), max_rank + 1)
    norm = matplotlib.colors.BoundaryNorm([k - 0.5 for k in range(max_rank + 2)], cmap.N)
    ranked = [_draw_plot(ax, data.plot(cost), cmap, norm) for ax, cost in zip(axes[0], costs)]
    if any(v.kind == 'ranked' for v in data.views):
        fig.colorbar(
            [sc for sc in ranked if sc is not None][-1],
            ax=axes[0].tolist(),
            label='front rank (0 = Pareto front)',
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
        ax.step(*plot.front_xy(), where='post', color='0.4', ls=':', lw=1.2, label='Pareto front', zorder=1)
    good = plot.of_kind('ranked')
    sc = _draw_ranked(ax, plot, good, cmap, norm) if good else None
    for kind, (label, _, marker, colour) in KINDS.items():
        sel = plot.of_kind(kind)
        if sel:
            style = dict(c=colour) if marker == 'x' else dict(facecolors='none', edgecolors=colour)
            ax.scatter(plot.xs(sel), [v.y for v in sel], marker=marker, s=36, label=label, zorder=2, **style)
    if plot.log:
        ax.set_xscale('log')
    ax.set_xlabel(LABELS[plot.cost])
    ax.set_ylabel(LABELS['accuracy'])
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    if not plot.points:
        ax.text(0.5, 0.5, 'no trials yet', transform=ax.transAxes, ha='center', va='center', color='0.5')
    return sc


def _draw_ranked(ax: Any, plot: CostPlot, good: Sequence[TrialView], cmap: Any, norm: Any) -> Any:
    """The ranked points of a plot on `ax`: seed error bars, the points coloured by front rank,
    a star round the knee; returns their scatter."""
    seeded = [v for v in good if v.record.accuracy_se is not None]  # error bars where there are seeds
    if seeded:
        ax.errorbar(
            plot.xs(seeded),
            [v.y for v in seeded],
            fmt='none',
            yerr=[v.record.accuracy_se for v in seeded],
            ecolor='0.4',
            elinewidth=0.8,
            zorder=2,
        )
    sc = ax.scatter(
        plot.xs(good),
        [v.y for v in good],
        c=[v.rank for v in good],
        cmap=cmap,
        norm=norm,
        s=36,
        edgecolors='black',
        linewidths=[1.2 if v.rank == 0 else 0.3 for v in good],
        label='complete',
        zorder=3,
    )
    for v in good:
        if v.is_knee:
            ax.scatter(
                plot.xs([v]),
                [v.y],
                marker='*',
                s=260,
                facecolors='none',
                edgecolors='black',
                linewidths=1.2,
                label='knee',
                zorder=4,
            )
    return sc


def _shared_legend(fig: Any, axes: Sequence[Any]) -> None:
    """One legend under the plots: each label once, from whichever plot has it first."""
    legend: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    if legend:
        fig.legend(
            list(legend.values()), list(legend), loc='outside lower center', ncol=min(len(legend), 4), fontsize=8
        )


def _png_bytes(fig: Any) -> bytes:
    """The matplotlib figure as PNG bytes (150 dpi)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=150, bbox_inches='tight')
    return buf.getvalue()


# ---------------------------------------------------------------------------------- files, server


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


def serve(run: RunFolder, host: str = '127.0.0.1', port: int = 8080, storage: str | None = None) -> None:
    """optuna-dashboard on the run's study (its journal, or an RDB URL); blocks until interrupted."""
    from optuna_dashboard import run_server

    if storage is None:
        _require_study(run, storage)
        storage_obj: Any = run.storage()
    else:
        storage_obj = storage
    run_server(storage_obj, host=host, port=port)


def _require_study(run: RunFolder, storage: str | None) -> None:
    """Refuse to serve a run that has no Optuna study (unless `storage` names another)."""
    if storage is None and not run.study_path.is_file():
        raise RunError(f"{run.path}: no Optuna study ({run.study_path.name}) to serve")


def _refuse_serving(run: RunFolder, args: argparse.Namespace) -> None:
    """--serve refused before anything is written or said about serving: no study to serve, or a
    port out of range or taken."""
    _require_study(run, args.storage)
    if not 0 <= args.port <= 65535:
        raise RunError(f"--port must be in 0..65535, got {args.port}")
    busy = port_in_use(args.host, args.port)
    if busy:
        raise RunError(f"{busy}; pick another --port")


def port_in_use(host: str, port: int) -> str | None:
    """Why optuna-dashboard could not listen on host:port (None: it can), found by binding it."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"cannot serve on {host}:{port} ({e.strerror or e})"
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a closed port may be reused
        try:
            s.bind(addr)
        except OSError as e:
            return f"cannot serve on {host}:{port} ({e.strerror or e})"
    return None


def _parser() -> argparse.ArgumentParser:
    """The command line of `python -m nas.dashboard`."""
    from nas.cli import ArgumentParser

    ap = ArgumentParser(
        prog='python -m nas.dashboard',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description='Write dashboard.html (self-contained, offline) and pareto.png for a run folder; '
        '--serve also starts optuna-dashboard on its Optuna study.',
    )
    ap.add_argument('run', type=Path, help='run folder, e.g. results/RUN')
    ap.add_argument(
        '--out', type=Path, default=None, help='folder for dashboard.html and pareto.png; None means the run folder'
    )
    ap.add_argument('--no-png', action='store_true', help='skip pareto.png')
    ap.add_argument('--serve', action='store_true', help="then start optuna-dashboard on the run's study")
    ap.add_argument('--host', default='127.0.0.1', help='address optuna-dashboard binds to (0.0.0.0: every interface)')
    ap.add_argument('--port', type=int, default=8080, help='port of optuna-dashboard')
    ap.add_argument('--storage', default=None, help="an Optuna storage URL to serve instead of the run's study.journal")
    return ap


def main(argv: list[str] | None = None) -> int:
    """`python -m nas.dashboard`: write the files, say what they hold, then serve if asked."""
    from nas.cli import EXIT_INTERRUPTED, fault_exit

    args = _parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        run = RunFolder(args.run).require()
        if args.serve:
            _refuse_serving(run, args)
        files = write_dashboard(run, args.out, png=not args.no_png)
        s = files.summary
        print(
            f"wrote {files.html} ({files.html.stat().st_size / 1e6:.1f} MB)"
            + (f" and {files.png}" if files.png else '')
            + f" in {files.seconds:.1f} s: {s['trials']} trials, {s['front']} on the front, "
            f"hypervolume {s['hypervolume']:.4f}",
            flush=True,
        )
        if args.serve:
            _require_study(run, args.storage)
            print(f"serving optuna-dashboard at http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
            try:
                serve(run, args.host, args.port, args.storage)
            except OSError as e:
                raise RunError(f"cannot serve on {args.host}:{args.port} ({e.strerror or e})") from None
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only run folder, a full disk: each file is replaced whole or not at all
        print(
            f"error: {e.filename or args.out or args.run}: {e.strerror or e}; nothing was written"
            + ('' if args.out else '; give --out DIR to write the dashboard elsewhere'),
            file=sys.stderr,
        )
        return fault_exit(e)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0
