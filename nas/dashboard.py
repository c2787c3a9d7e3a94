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

from nas import pareto
from nas.arch import Arch
from nas.archive import Archive, ArchResult
from nas.cli import shell_command
from nas.fidelity import DEPLOYMENT, long_label
from nas.files import write_atomic
from nas.model import describe_block
from nas.pareto import COSTS, OBJECTIVES
from nas.report import listed
from nas.results import RunConfig, RunError, RunFolder, TrialRecord

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
LABELS = {
    'accuracy': 'validation accuracy',
    'macs': 'MACs (one image)',
    'params': 'parameters',
    'latency': 'latency (ms)',
    'memory': 'peak memory (MB)',
}
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
class RunData:
    """A run as the dashboard shows it, read once for the page and the PNG: its records, every
    architecture over its seeds with the front (`Archive`), the hypervolume after each evaluation,
    and a view per architecture."""

    config: RunConfig
    records: list[TrialRecord]
    archive: Archive
    hypervolumes: list[float]
    scales: dict[str, float]
    scales_from_data: bool
    views: list[TrialView]

    @classmethod
    def read(cls, run: RunFolder) -> RunData:
        config = run.config()
        records = run.trials()
        objectives = list(config.objectives)
        scales, from_data = _scales(config, records, objectives)
        archive = Archive(objectives)
        hypervolumes: list[float] = []
        for record in records:  # the hypervolume moves only when the front does
            changed = archive.add(record)
            hypervolumes.append(archive.hypervolume(scales) if changed or not hypervolumes else hypervolumes[-1])
        return cls(config, records, archive, hypervolumes, scales, from_data, trial_views(run, archive))


def measured_costs(records: Sequence[TrialRecord], objectives: Sequence[str]) -> list[str]:
    """The cost objectives to plot: the run's own first, then any other that some trial measured."""
    own = [o for o in objectives if o != 'accuracy']
    return own + [c for c in COSTS if c not in own and any(r.value(c) is not None for r in records)]


def _fmt(obj: str, v: float | None) -> str:
    if v is None:
        return '–'
    if obj == 'accuracy':
        return f"{100 * v:.2f}%"
    if obj in ('macs', 'params'):
        return f"{v / 1e6:.3f} M" if v >= 1e5 else f"{v / 1e3:.1f} k"
    return f"{v:.3g} {'ms' if obj == 'latency' else 'MB'}"


def _noise(a: ArchResult) -> str:
    """' ± 0.31% (3 seeds)': the standard error of the mean accuracy, and the seeds behind it."""
    if a.seeds < 2:
        return f" ({a.seeds} seed)" if a.seeds else ''
    return f" ± {100 * a.accuracy_se:.2f}% ({a.seeds} seeds)"


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
    lines = [head, rank, metrics + _noise(r), f"{r.epochs} epochs, {r.seconds:.1f} s"]
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


def pareto_figures(views: Sequence[TrialView], objectives: Sequence[str], costs: Sequence[str]) -> dict[str, Any]:
    """One plotly Figure per cost objective: accuracy against it, every trial with that cost."""
    import plotly.graph_objects as go

    records = [v.record for v in views]
    max_rank = max([v.rank for v in views if v.rank is not None], default=0)
    hovers = {v.record.arch_id: hover_text(v, costs, blocks=len(views) <= HOVER_BLOCKS) for v in views}
    figs = {}
    for cost in costs:
        fig = go.Figure()
        has = [v for v in views if v.record.value(cost) is not None]
        front2d = pareto.front(records, ['accuracy', cost])
        if front2d:
            fig.add_trace(
                go.Scatter(
                    x=[float(r.value(cost)) for r in front2d],
                    y=[float(r.accuracy) for r in front2d],
                    mode='lines',
                    line=dict(shape='hv', color='rgba(80,80,80,0.6)', dash='dot'),
                    name=f'Pareto front, accuracy vs {cost}',
                    hoverinfo='skip',
                )
            )
        good = [v for v in has if v.kind == 'ranked']
        if good:
            fig.add_trace(
                go.Scatter(
                    x=[float(v.record.value(cost)) for v in good],
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
            )
        for kind, (label, symbol, _, colour) in KINDS.items():
            sel = [v for v in has if v.kind == kind]
            if sel:
                fig.add_trace(
                    go.Scatter(
                        x=[float(v.record.value(cost)) for v in sel],
                        y=[v.y for v in sel],
                        mode='markers',
                        name=label,
                        customdata=[v.record.number for v in sel],
                        text=[hovers[v.record.arch_id] for v in sel],
                        hovertemplate='%{text}<extra></extra>',
                        marker=dict(symbol=symbol, color=colour, size=10, line=dict(width=2, color=colour)),
                    )
                )
        for v in has:
            if v.is_knee:
                fig.add_annotation(
                    x=float(v.record.value(cost)), y=v.y, text='knee', showarrow=True, arrowhead=2, ax=25, ay=-25
                )
        vals = [float(v.record.value(cost)) for v in has if v.record.value(cost)]
        log = bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 20
        missing = len(views) - len(has)
        fig.update_layout(
            title=dict(
                text=f"accuracy vs {cost}" + (f" ({missing} trials without {cost} not shown)" if missing else '')
            ),
            xaxis=dict(title=dict(text=LABELS[cost]), type='log' if log else 'linear'),
            yaxis=dict(title=dict(text=LABELS['accuracy']), tickformat='.0%'),
            hovermode='closest',
            height=460,
            margin=dict(l=60, r=20, t=50, b=50),
            legend=dict(orientation='h', y=-0.2),
            template='plotly_white',
        )
        figs[cost] = fig
    return figs


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
    import plotly.graph_objects as go

    path = run.path / 'fidelity.json'
    if not path.is_file():
        return None
    s = json.loads(path.read_text())
    deploy = s.get('reference') == DEPLOYMENT  # a report from before the deployment-like default: the same subset
    long = 'deployment' if deploy else 'longer training'
    rows = [a for a in s['archs'] if a['proxy_mean'] is not None and a['long_mean'] is not None]
    num = lambda x: '–' if x is None else f'{x:.2f}'  # noqa: E731
    pct = lambda m, sd: '–' if m is None else f'{100 * m:.2f}' + ('' if sd is None else f' ± {100 * sd:.2f}')  # noqa: E731
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
            text=f"proxy vs {long}: Kendall τ {num(s['kendall_tau'])}, Spearman ρ "
            f"{num(s['spearman_rho'])}; {long}'s own test-retest τ {num(s.get('long_test_retest_tau'))}",
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
    table = _table(
        ['arch id', 'proxy (mean ± std)', f'{long} (mean ± std)', 'proxy front', f'{long} front'],
        [
            [
                f"<code>{html.escape(a['arch_id'])}</code>",
                pct(a['proxy_mean'], a['proxy_std']),
                pct(a['long_mean'], a['long_std']),
                '●' if a['on_proxy_front'] else '',
                '●' if a['on_long_front'] else '',
            ]
            for a in s['archs']
        ],
        left=(0,),
    )
    head = (
        f"<h2>Does the proxy rank like {'deployment training' if deploy else 'longer training'}? "
        f"(<code>python -m nas.fidelity</code>)</h2><p>Against {html.escape(long_label(s))}: Kendall τ "
        f"{num(s['kendall_tau'])}, Spearman ρ {num(s['spearman_rho'])} (first seed alone: τ "
        f"{num(s['seed0_kendall_tau'])}); the reference's own test-retest τ {num(s.get('long_test_retest_tau'))}, "
        f"one proxy seed vs one reference seed τ {num(s.get('pair_kendall_tau'))}; the proxy's test-retest τ "
        f"{num(s['test_retest_tau'])}; seed std: proxy {pct(s['proxy_seed_std'], None)}, {long} "
        f"{pct(s['long_seed_std'], None)} points; {len(s['proxy_front_kept'])} of {len(s['proxy_front'])} proxy "
        f"front points stay on the {long} front.</p>"
    )
    return fig, head + table


def calibration_section(config: RunConfig) -> str:
    """The table of the calibration the run's proxy came from (run.yaml `calibration`, from
    `nas.search --proxy`); '' for a run on a proxy that was not calibrated."""
    cal = config.calibration
    if not cal.get('table'):
        return ''
    num = lambda x, fmt='.2f': '–' if x is None else format(x, fmt)  # noqa: E731
    signals = [k for k in cal['table'][0] if isinstance(cal['table'][0][k], dict)]
    rows = [
        [
            f"<code>{html.escape(r['key'])}</code>" + (' ◀ this run' if r['key'] == cal.get('candidate') else ''),
            num(r['seconds'], '.1f'),
            num(r['cost_ratio'], '.3f'),
            num(r.get('accuracy_noise_ratio')),
            *[f"{num(r[s]['tau'])} · {num(r[s]['share'])}" + (' ✓' if r[s]['qualified'] else '') for s in signals],
        ]
        for r in cal['table']
    ]
    d = cal.get('deploy') or {}
    head = (
        f"<h2>The proxy's calibration (<code>python -m nas.calibrate</code>)</h2><p>{html.escape(str(cal.get('verdict', '')))}"
        f"<br>Against deployment-like training on {html.escape(str(cal.get('dataset')))}: "
        f"{num(d.get('train_images'), ',')} images × {d.get('epochs')} epochs, {num(d.get('seconds'), '.1f')} s "
        f"per evaluation, test-retest τ {num(d.get('retest'))}. Accuracy std/gap: the proxy's accuracy seed std "
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
    import plotly.io as pio
    import plotly.offline

    data = data or RunData.read(run)
    config, records, views, archive = data.config, data.records, data.views, data.archive
    objectives = list(config.objectives)
    costs = measured_costs(records, objectives)
    archs = archive.architectures
    front = archive.front()
    unseparable = archive.unseparable()
    ids = {a.number: a.arch_id for a in archs}
    scales = data.scales
    figs = pareto_figures(views, objectives, costs)
    hv_fig = hypervolume_figure(records, data.hypervolumes, objectives, scales, data.scales_from_data)
    fidelity = fidelity_panel(run)  # only once python -m nas.fidelity has run
    panels = [*figs.items(), ('hypervolume', hv_fig)] + ([('fidelity', fidelity[0])] if fidelity else [])
    fig_json = '{' + ','.join(f'{json.dumps(k)}:{pio.to_json(f, validate=False)}' for k, f in panels) + '}'
    plot_divs = ''.join(f'<div id="plot-{k}"></div>' for k, _ in panels)

    name = config.name or run.path.name
    counts = Counter(r.status for r in records)
    hv = data.hypervolumes[-1] if records else 0.0
    meta = (
        f"objectives: {', '.join(f'{o} ({OBJECTIVES[o][1]})' for o in objectives)} · sampler "
        f"{html.escape(config.sampler)}, seed {config.seed} · space "
        f"<code>{html.escape(config.space_file or '?')}</code> · data {html.escape(config.data.dataset)}"
        f" · device {html.escape(config.device)}<br>"
        f"{len(records)} trials: "
        + (', '.join(f"{n} {s}" for s, n in counts.most_common()) or 'none yet')
        + f" · front: {len(front)} · hypervolume {hv:.4f} · written {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    empty = (
        '<p class="empty">No finished trials yet: this page shows the run as it is; run the command again '
        'to refresh it.</p>'
        if not records
        else ''
    )

    by_num = {v.record.number: v for v in views}
    fcosts = [o for o in objectives if o != 'accuracy']
    extra = [c for c in costs if c not in fcosts]
    front_rows, front_cls = [], []
    for i, r in enumerate(front, 1):
        v = by_num[r.number]
        n_acmix = sum(b['op'] == 'acmix' for b in v.blocks)
        front_rows.append(
            [
                i,
                f"<code>{r.arch_id}</code>" + (' ★ knee' if v.is_knee else ''),
                html.escape(r.reference or ''),
                _fmt('accuracy', r.accuracy) + _noise(r),
                (
                    '⚠ within noise of ' + listed([ids[n] for n in unseparable[r.number]])
                    if r.number in unseparable
                    else 'yes'
                ),
                *[_fmt(c, r.value(c)) for c in fcosts + extra],
                r.epochs,
                f"{n_acmix}/{len(v.blocks)}",
                html.escape(v.summary),
                f"<code>{html.escape(shell_command('export', run.path, '--arch-id', r.arch_id))}</code>",
            ]
        )
        front_cls.append('knee' if v.is_knee else '')
    front_table = _table(
        [
            '#',
            'arch id',
            'reference',
            'accuracy (mean ± s.e.)',
            'separable',
            *(fcosts + extra),
            'epochs',
            'ACmix blocks',
            'architecture',
            'export',
        ],
        front_rows,
        left=(1, 2, 4, 7 + len(fcosts + extra), 8 + len(fcosts + extra)),
        row_class=front_cls,
    )
    rank_of = {v.record.arch_id: v.rank for v in views}
    all_rows = [
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
        for r in records
    ]
    all_table = _table(
        ['#', 'arch id', 'seed', 'status', 'rank (of its mean)', 'accuracy', *costs, 'epochs', 'seconds', 'error'],
        all_rows,
        left=(1, 3, 9 + len(costs)),
    )
    trials_json = {
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
    page = _PAGE.format(
        title=html.escape(name),
        meta=meta,
        empty=empty,
        plot_divs=plot_divs,
        plotly_js=plotly.offline.get_plotlyjs(),
        n_front=len(front),
        n_trials=len(records),
        front_table=front_table,
        all_table=all_table,
        fidelity=(fidelity[1] if fidelity else '') + calibration_section(config),
        figures_json=_json_for_script(fig_json),
        trials_json=_json_for_script(trials_json),
    )
    points = {c: sum(v.record.value(c) is not None for v in views) for c in costs}
    return page, dict(trials=len(records), front=len(front), points=points, costs=costs, hypervolume=hv)


# ---------------------------------------------------------------------------------- PNG


def render_png(run: RunFolder, path: Path, data: RunData | None = None) -> Path:
    """pareto.png: accuracy against each cost objective, trials coloured by front rank."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    data = data or RunData.read(run)
    config, records, views = data.config, data.records, data.views
    objectives = list(config.objectives)
    costs = measured_costs(records, objectives) or [c for c in objectives if c != 'accuracy'] or ['macs']
    max_rank = max([v.rank for v in views if v.rank is not None], default=0)
    fig, axes = plt.subplots(1, len(costs), figsize=(4.8 * len(costs) + 1.2, 4.6), squeeze=False, layout='constrained')
    cmap = plt.get_cmap(COLORSCALE.lower(), max_rank + 1)
    norm = matplotlib.colors.BoundaryNorm([k - 0.5 for k in range(max_rank + 2)], cmap.N)
    for ax, cost in zip(axes[0], costs):
        has = [v for v in views if v.record.value(cost) is not None]
        front2d = pareto.front([v.record for v in views], ['accuracy', cost])
        if front2d:
            ax.step(
                [float(r.value(cost)) for r in front2d],
                [float(r.accuracy) for r in front2d],
                where='post',
                color='0.4',
                ls=':',
                lw=1.2,
                label='Pareto front',
                zorder=1,
            )
        good = [v for v in has if v.kind == 'ranked']
        seeded = [v for v in good if v.record.accuracy_se is not None]  # error bars where there are seeds
        if seeded:
            ax.errorbar(
                [float(v.record.value(cost)) for v in seeded],
                [v.y for v in seeded],
                fmt='none',
                yerr=[v.record.accuracy_se for v in seeded],
                ecolor='0.4',
                elinewidth=0.8,
                zorder=2,
            )
        if good:
            sc = ax.scatter(
                [float(v.record.value(cost)) for v in good],
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
                        [float(v.record.value(cost))],
                        [v.y],
                        marker='*',
                        s=260,
                        facecolors='none',
                        edgecolors='black',
                        linewidths=1.2,
                        label='knee',
                        zorder=4,
                    )
        for kind, (label, _, marker, colour) in KINDS.items():
            sel = [v for v in has if v.kind == kind]
            if sel:
                style = dict(c=colour) if marker == 'x' else dict(facecolors='none', edgecolors=colour)
                ax.scatter(
                    [float(v.record.value(cost)) for v in sel],
                    [v.y for v in sel],
                    marker=marker,
                    s=36,
                    label=label,
                    zorder=2,
                    **style,
                )
        vals = [float(v.record.value(cost)) for v in has if v.record.value(cost)]
        if vals and min(vals) > 0 and max(vals) / min(vals) > 20:
            ax.set_xscale('log')
        ax.set_xlabel(LABELS[cost])
        ax.set_ylabel(LABELS['accuracy'])
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.grid(alpha=0.3)
        if not has:
            ax.text(0.5, 0.5, 'no trials yet', transform=ax.transAxes, ha='center', va='center', color='0.5')
    if any(v.kind == 'ranked' for v in views):
        fig.colorbar(
            sc,
            ax=axes[0].tolist(),
            label='front rank (0 = Pareto front)',
            shrink=0.85,
            ticks=list(range(max_rank + 1)) if max_rank <= 12 else None,
        )
    legend: dict[str, Any] = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    if legend:
        fig.legend(
            list(legend.values()), list(legend), loc='outside lower center', ncol=min(len(legend), 4), fontsize=8
        )
    fig.suptitle(
        f"{config.name or run.path.name}: {len(records)} trials, "
        f"{len(data.archive.front())} on the front ({', '.join(objectives)})",
        fontsize=10,
    )
    path = Path(path)
    try:
        write_atomic(path, _png_bytes(fig))
    finally:
        plt.close(fig)
    return path


def _png_bytes(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=150, bbox_inches='tight')
    return buf.getvalue()


# ---------------------------------------------------------------------------------- files, server


@dataclass
class DashboardFiles:
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
        if not run.study_path.is_file():
            raise RunError(f"{run.path}: no Optuna study ({run.study_path.name}) to serve")
        storage_obj: Any = run.storage()
    else:
        storage_obj = storage
    run_server(storage_obj, host=host, port=port)


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


def main(argv: list[str] | None = None) -> int:
    from nas.cli import EXIT_INTERRUPTED, ArgumentParser, fault_exit

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
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        run = RunFolder(args.run).require()
        if args.serve:  # refused before anything is written or said about serving
            if args.storage is None and not run.study_path.is_file():
                raise RunError(f"{run.path}: no Optuna study ({run.study_path.name}) to serve")
            if not 0 <= args.port <= 65535:
                raise RunError(f"--port must be in 0..65535, got {args.port}")
            busy = port_in_use(args.host, args.port)
            if busy:
                raise RunError(f"{busy}; pick another --port")
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
            if args.storage is None and not run.study_path.is_file():
                raise RunError(f"{run.path}: no Optuna study ({run.study_path.name}) to serve")
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


if __name__ == '__main__':
    sys.exit(main())
